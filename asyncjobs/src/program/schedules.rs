//! Schedules declared in code (docs/processing.md §2.20): gathering those
//! of `#[task_handler(cron = ...)]` and `main!(schedule = ...)` before
//! connecting, storing them at start, the scheduler every worker runs by
//! default, and the warning when no process fires them.

use super::{ProgramError, WorkerArgs};
use crate::client::Client;
use crate::registry::Handlers;
use crate::scheduler::{Declaration, ScheduleError, ScheduledTask, Scheduler};
use crate::task::TaskBuilder;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A schedule given to [`App::schedule`](super::App::schedule) or
/// `asyncjobs::main!(schedule = ...)`: a [`ScheduledTask`], or a `Result`
/// of one whose error is reported when the worker starts.
pub trait IntoSchedule {
    /// The schedule, or why there is none.
    fn into_schedule(self) -> Result<ScheduledTask, String>;
}

impl IntoSchedule for ScheduledTask {
    fn into_schedule(self) -> Result<ScheduledTask, String> {
        Ok(self)
    }
}

impl<E: std::fmt::Display> IntoSchedule for Result<ScheduledTask, E> {
    fn into_schedule(self) -> Result<ScheduledTask, String> {
        self.map_err(|e| e.to_string())
    }
}

/// A schedule named `name` that creates tasks like `task` in `queue` on
/// `cron`, for `asyncjobs::main!(schedule = ...)`: `task` may be a typed
/// handler's `task(&payload)` builder, whose deadline becomes the
/// schedule's deadline offset ([`ScheduledTask::new`]).
///
/// ```no_run
/// mod reports {
///     #[derive(serde::Serialize, serde::Deserialize)]
///     pub struct Report { pub format: String }
///
///     #[asyncjobs::task_handler("report:weekly", queue = "REPORTS")]
///     pub async fn weekly(r: Report) -> Result<String, asyncjobs::HandlerError> {
///         Ok(r.format)
///     }
/// }
///
/// asyncjobs::main!(
///     schedule = asyncjobs::program::schedule(
///         "weekly_pdf",
///         "0 3 * * MON",
///         reports::weekly::QUEUE,
///         reports::weekly::task(&reports::Report { format: "pdf".into() }),
///     ),
/// );
/// ```
///
/// # Errors
/// The task does not build, or the schedule is invalid (the worker
/// reports either at start).
pub fn schedule(
    name: &str,
    cron: &str,
    queue: &str,
    task: TaskBuilder,
) -> Result<ScheduledTask, ScheduleError> {
    ScheduledTask::new(name, cron, queue, &task.build()?)
}

/// Every schedule the program declares, checked before connecting: those
/// of the handlers that run here, then those of `main!`, marked as
/// declared by the program (`package`). A name declared twice with other
/// content is refused.
pub(super) fn plan(
    handlers: &Handlers,
    declared: &[Result<ScheduledTask, String>],
    package: Option<&str>,
) -> Result<Vec<ScheduledTask>, ProgramError> {
    let mut all: Vec<ScheduledTask> = Vec::new();
    for def in handlers.iter() {
        match def.declared_schedule() {
            None => {}
            Some(Ok(st)) => all.push(st),
            Some(Err(e)) => {
                return Err(ProgramError::Schedule {
                    name: crate::scheduler::declared_schedule_name(def.task_type()),
                    reason: match e {
                        ScheduleError::InvalidRecord { reason, .. } => reason,
                        e => format!("handler {}: {e}", def.name()),
                    },
                })
            }
        }
    }
    let place = format!("asyncjobs::main! of {}", package.unwrap_or("the program"));
    for (i, d) in declared.iter().enumerate() {
        let st = d.clone().map_err(|reason| ProgramError::Schedule {
            name: format!("#{} of asyncjobs::main!", i + 1),
            reason,
        })?;
        st.validate().map_err(|e| ProgramError::Schedule {
            name: st.name.clone(),
            reason: e.to_string(),
        })?;
        let place = st.declared_in.clone().unwrap_or_else(|| place.clone());
        all.push(st.with_declared_in(place));
    }
    for (i, st) in all.iter().enumerate() {
        if let Some(other) = all[..i].iter().find(|o| o.name == st.name) {
            if !other.same_tasks_as(st) {
                return Err(ProgramError::Schedule {
                    name: st.name.clone(),
                    reason: format!(
                        "declared twice with different content, in {} and in {}",
                        other.declared_in.as_deref().unwrap_or("code"),
                        st.declared_in.as_deref().unwrap_or("code")
                    ),
                });
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|st| seen.insert(st.name.clone()));
    Ok(all)
}

/// Stores every declared schedule
/// ([`Client::declare_scheduled_task`]), logging what changed; a
/// schedule someone else created under a declared name is kept with a
/// warning naming both.
pub(super) async fn register(
    client: &Client,
    schedules: &[ScheduledTask],
) -> Result<(), ProgramError> {
    for st in schedules {
        let declared_in = st.declared_in.as_deref().unwrap_or("code");
        let outcome = match client.declare_scheduled_task(st).await {
            Ok(outcome) => outcome,
            // someone stored a record we cannot read under the name: theirs
            Err(ScheduleError::InvalidRecord { reason, .. }) => {
                tracing::warn!(schedule = %st.name, %reason, declared_in, "a record that does not decode is stored under the name of a schedule declared in code; it is kept and the declared one is not stored (delete it with `ajc task cron rm {}`)", st.name);
                continue;
            }
            Err(e) => {
                return Err(ProgramError::Schedule {
                    name: st.name.clone(),
                    reason: e.to_string(),
                })
            }
        };
        match outcome {
            Declaration::Created => {
                tracing::info!(schedule = %st.name, cron = %st.schedule, task_type = %st.task_type, queue = %st.queue, declared_in, "stored the schedule declared in code")
            }
            Declaration::Unchanged => {
                tracing::debug!(schedule = %st.name, "the declared schedule is stored already")
            }
            Declaration::Updated { previous } => {
                tracing::info!(schedule = %st.name, cron = %st.schedule, previous_cron = %previous.schedule, declared_in, "replaced the stored schedule with the one declared in code")
            }
            Declaration::Kept { stored } => tracing::warn!(
                schedule = %st.name,
                declared = %describe(st),
                stored = %describe(&stored),
                declared_in,
                "a schedule named {} that was not declared in code is stored with other content; it is kept and the one declared in {declared_in} is not stored (delete the stored one with `ajc task cron rm {}` to use the declared one)",
                st.name, st.name
            ),
        }
    }
    Ok(())
}

/// A schedule in one line, for the warning about a kept schedule.
fn describe(st: &ScheduledTask) -> String {
    format!(
        "{:?} {} into {}{}",
        st.schedule,
        st.task_type,
        st.queue,
        match &st.payload {
            Some(p) => format!(" with {} bytes of payload", p.len()),
            None => String::new(),
        }
    )
}

/// The scheduler this worker runs: `--scheduler NAME` (its failure stops
/// the worker), else one named after the host and process unless
/// `--no-scheduler` (its failure is only logged); `None` with
/// `--no-scheduler`.
pub(super) fn scheduler_name(args: &WorkerArgs) -> Option<(String, bool)> {
    match (&args.scheduler, args.no_scheduler) {
        (Some(name), _) => Some((name.clone(), true)),
        (None, true) => None,
        (None, false) => {
            let host = crate::worker::presence::hostname();
            let host = if host.is_empty() {
                "worker".into()
            } else {
                host
            };
            Some((format!("{host}-{}", std::process::id()), false))
        }
    }
}

/// Runs the task scheduler `name` beside the workers, until `shutdown`;
/// unless `explicit`, a failure is logged and the workers go on.
pub(super) fn spawn_scheduler(
    workers: &mut JoinSet<(String, crate::Result<()>)>,
    client: &Client,
    name: &str,
    explicit: bool,
    shutdown: &CancellationToken,
) {
    let scheduler = Scheduler::new(client.clone(), name.to_string());
    let stop = shutdown.clone();
    let label = format!("scheduler {name}");
    tracing::info!(scheduler = %name, "starting task scheduler (it fires the stored schedules while it leads the election)");
    workers.spawn(async move {
        let res = scheduler.run(stop).await.map_err(crate::Error::from);
        match res {
            Err(e) if !explicit => {
                tracing::warn!(error = %e, "the task scheduler stopped; this worker goes on without firing schedules");
                (label, Ok(()))
            }
            res => (label, res),
        }
    });
}

/// How long a worker without a scheduler waits for some scheduler to lead
/// before it warns: a starting scheduler campaigns within its 5 s splay.
const LEADER_GRACE: Duration = Duration::from_secs(15);

/// With `--no-scheduler`: warns once when schedules are stored and no
/// scheduler leads the election within [`LEADER_GRACE`] of the start, since
/// no process then fires them.
pub(super) fn spawn_unfired_warning(
    workers: &mut JoinSet<(String, crate::Result<()>)>,
    client: &Client,
    shutdown: &CancellationToken,
) {
    let client = client.clone();
    let stop = shutdown.clone();
    workers.spawn(async move {
        let label = "unfired schedules check".to_string();
        let started = tokio::time::Instant::now();
        loop {
            if let Ok(Some(_)) = client.scheduler_leader().await {
                return (label, Ok(()));
            }
            if started.elapsed() >= LEADER_GRACE {
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => return (label, Ok(())),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        if let Ok(stored) = client.scheduled_tasks().await {
            if !stored.is_empty() {
                let names: Vec<&str> = stored.iter().map(|s| s.name.as_str()).collect();
                tracing::warn!(
                    schedules = %names.join(", "),
                    "{} schedule(s) are stored but no process runs a task scheduler, so none fires: this worker runs with --no-scheduler; start a worker without it, or `ajc task cron scheduler NAME`",
                    stored.len()
                );
            }
        }
        (label, Ok(()))
    });
}
