//! Tasks whose type no handler of this worker takes (docs/processing.md
//! §2.6, "No handler"). In a fleet, another worker of the queue may have
//! the handler, or be about to be deployed: the task is left for it
//! without a try, and ends `expired` only when its deadline, or the
//! worker's unhandled wait, passes with no live worker of the queue
//! announcing the type ([`decide::unhandled`](super::decide::unhandled())).
//!
//! The first such task of a type is logged at WARN (once per type per
//! worker), later ones at DEBUG; the task's `last_err` says what it waits
//! for, saved once, its state and tries unchanged.

use super::decide::{self, Action, Unrouted, CONFLICT_DELAY};
use super::outcome::{nak, wait as wait_item};
use super::{Delivered, Shared};
use crate::error::Error;
use crate::format_duration;
use crate::task::{Task, TaskState};
use crate::throttle::{warn_throttled, Throttle};
use async_nats::jetstream::message::Acker;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Default of [`Worker::unhandled_wait`](crate::Worker::unhandled_wait).
pub const DEFAULT_UNHANDLED_WAIT: Duration = Duration::from_secs(3600);

/// How many types are remembered as warned about; types past these are
/// warned about at most once per [`LOG_EVERY`](super::outcome::LOG_EVERY)
/// (a flood of made-up types cannot grow the set without bound).
const MAX_WARNED: usize = 1024;

/// How long a read of the worker presence records is used.
const PRESENCE_FRESH: Duration = Duration::from_secs(5);

/// What a worker remembers about unhandled types.
#[derive(Default)]
pub(crate) struct Unhandled {
    /// The types already warned about.
    warned: Mutex<HashSet<String>>,
    /// The task types each live worker of the queue announces, as last
    /// read, and when.
    announced: Mutex<Option<(Instant, Vec<Vec<String>>)>>,
}

impl Unhandled {
    /// Whether this is the first task of `task_type` this worker passes on.
    fn first_of(&self, task_type: &str) -> Option<bool> {
        let mut warned = self.warned.lock().expect("warned lock");
        if warned.contains(task_type) {
            return Some(false);
        }
        if warned.len() >= MAX_WARNED {
            return None;
        }
        warned.insert(task_type.to_string());
        Some(true)
    }
}

/// What this worker knows about a type it has no route for.
fn unrouted<'a>(shared: &'a Shared, handles: &'a str, task: &Task) -> Unrouted<'a> {
    Unrouted {
        queue: &shared.name,
        handles,
        suggestion: shared.router.suggestion(&task.task_type),
        wait: shared.settings.unhandled_wait,
    }
}

/// The verdict on a task whose type no route of this worker takes; the
/// worker presence is read only once the task's wait has passed.
pub(crate) async fn judge(shared: &Shared, task: &Task, now: OffsetDateTime) -> Action {
    let handles = shared.router.handled_list();
    let known = unrouted(shared, &handles, task);
    let elsewhere = match decide::unhandled_until(task, known.wait, now) {
        Some(until) if now >= until => handled_elsewhere(shared, &task.task_type).await,
        _ => false,
    };
    decide::unhandled(task, &known, now, elsewhere)
}

/// Whether a live worker of this queue announces a handler for `task_type`
/// (its presence record, `presence.rs`; Go workers write none). A failed
/// read counts as none, so the task still ends.
async fn handled_elsewhere(shared: &Shared, task_type: &str) -> bool {
    let cached = shared
        .unhandled
        .announced
        .lock()
        .expect("announced lock")
        .as_ref()
        .filter(|(at, _)| at.elapsed() < PRESENCE_FRESH)
        .map(|(_, types)| types.clone());
    let announced = match cached {
        Some(types) => types,
        None => match super::presence::list(&shared.storage).await {
            Ok(all) => {
                let types: Vec<Vec<String>> = all
                    .into_iter()
                    .filter(|w| w.queue == shared.name)
                    .map(|w| w.task_types)
                    .collect();
                *shared.unhandled.announced.lock().expect("announced lock") =
                    Some((Instant::now(), types.clone()));
                types
            }
            Err(e) => {
                tracing::debug!(queue = %shared.name, error = %e, "reading the worker presence failed");
                return false;
            }
        },
    };
    // routed as the router does: the type, a prefix of it, or "" (all)
    announced
        .iter()
        .flatten()
        .any(|t| task_type.starts_with(t.as_str()))
}

/// Passes the task on (no try): logs it (WARN for the first of its type),
/// saves `note` as its `last_err` when it differs (state and tries
/// unchanged; a task found `active` past its lease is left as it is), then
/// hands the item back for `delay`. A save that finds the record changed
/// (another worker took the task) hands the item back for 1 s, to be
/// judged again on the newer record.
pub(crate) async fn pass_on(
    shared: &Shared,
    acker: &Acker,
    item: &Delivered,
    task: &mut Task,
    delay: Duration,
    note: String,
) {
    log(shared, task, delay);
    if task.last_err != note && task.state != TaskState::Active {
        let mut noted = task.clone();
        noted.last_err = note;
        match shared.storage.save_task(&mut noted).await {
            Ok(()) => *task = noted,
            Err(Error::ConcurrentUpdate(_)) => {
                tracing::debug!(task = %task.id, "the task changed while it was passed on; judging it again");
                return nak(shared, acker, item, CONFLICT_DELAY).await;
            }
            // a record the store can never take (a limit lowered since the
            // enqueue): waiting would strand it, so it ends as any record
            // that cannot be saved does (docs/processing.md §2.6)
            Err(e) if e.is_permanent() => {
                return Box::pin(super::outcome::unsaveable(shared, acker, task, e)).await;
            }
            Err(e) => {
                static SAVE: Throttle = Throttle::new(super::outcome::LOG_EVERY);
                warn_throttled!(SAVE, task = %task.id, error = %e, "saving why the task waits for a handler failed");
            }
        }
    }
    wait_item(shared, acker, item, delay).await;
    // The server hands an item to the oldest waiting pull request. A
    // worker that passes items on at once pulls again at once, in step
    // with the whole seconds held items are released on, so its requests
    // would keep being the oldest and a worker with the handler might
    // never get the item. Holding the slot for a random part of a second
    // puts this worker's next request out of step.
    let hold = Duration::from_millis(rand::random::<u64>() % 1000);
    tokio::select! {
        _ = tokio::time::sleep(hold) => {}
        _ = shared.hard_stop.cancelled() => {}
    }
}

fn log(shared: &Shared, task: &Task, delay: Duration) {
    let handles = shared.router.handled_list();
    let hint = shared
        .router
        .suggestion(&task.task_type)
        .map(|t| format!("did you mean \"{t}\"?"))
        .unwrap_or_default();
    let wait = format_duration(shared.settings.unhandled_wait);
    let next = "left for a worker of the queue that handles it, without a try; \
        each task of the type expires when none takes it by its deadline or, without one, within the wait";
    match shared.unhandled.first_of(&task.task_type) {
        Some(true) => {
            tracing::warn!(task = %task.id, r#type = %task.task_type, queue = %shared.name, %handles, %hint, %wait,
                "this worker has no handler for the task type: {next} (logged once per type; DEBUG from now on)");
        }
        Some(false) => {
            tracing::debug!(task = %task.id, r#type = %task.task_type, queue = %shared.name, ?delay,
                "no handler for the task type; passed on");
        }
        None => {
            static MANY: Throttle = Throttle::new(super::outcome::LOG_EVERY);
            warn_throttled!(MANY, task = %task.id, r#type = %task.task_type, queue = %shared.name, %handles, %hint, %wait,
                "this worker has no handler for the task type: {next}");
        }
    }
}
