//! Scheduled tasks and the highly available task scheduler (docs/storage.md §8.4, docs/processing.md §7).
//!
//! A [`ScheduledTask`] is a cron schedule plus a task template (type,
//! payload, deadline offset, max tries, target queue), stored as JSON under
//! `scheduled_tasks.<name>` in the `CHORIA_AJ_CONFIGURATION` KV bucket, in
//! the same format Go uses. [`Client`] gets methods to create, load, list,
//! update and delete them. A [`Scheduler`] watches the bucket and, while it
//! is the elected leader, enqueues a task each time a schedule fires.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use asyncjobs::{Client, Scheduler, ScheduledTask, Task};
//! use std::time::Duration;
//!
//! let client = Client::connect("nats://127.0.0.1:4222").await?;
//! let template = Task::builder("report:daily")
//!     .payload(&serde_json::json!({"format": "pdf"}))
//!     .deadline_in(Duration::from_secs(3600))
//!     .max_tries(3)
//!     .build()?;
//! let schedule = ScheduledTask::new("daily_report", "0 6 * * *", "REPORTS", &template)?;
//! client.create_scheduled_task(&schedule).await?;
//!
//! // in one or more scheduler processes: only the elected leader enqueues
//! let stop = tokio_util::sync::CancellationToken::new();
//! Scheduler::new(client.clone(), "scheduler-1").run(stop).await?;
//! # Ok(()) }
//! ```
//!
//! # Differences from the Go scheduler
//!
//! * **Payloads are not double-encoded** (docs/go-differences.md §36) for schedules created here.
//!   The Go scheduler hands the stored payload bytes to `NewTask`, which
//!   JSON-encodes them again, so its tasks carry the JSON *string* of the
//!   base64 of the payload (`null` when there is none). Records written by
//!   this crate carry an extra key `"payload_encoding":"raw"` and produce
//!   tasks whose payload is exactly the stored payload. Records without that
//!   key — everything Go writes — are treated as Go treats them, so a
//!   schedule created with `ajc task cron add` yields byte-for-byte the task
//!   payload the Go scheduler would produce. Go readers ignore the unknown
//!   key (and a Go tool re-saving the record drops it, turning it back into
//!   a Go schedule). A Go *scheduler* ignores it too: if Go schedulers may
//!   fire your schedules, create them with
//!   `.with_payload_encoding(PayloadEncoding::Go)` so every scheduler
//!   produces the same tasks. See [`PayloadEncoding`].
//! * **Updates replace the schedule** (docs/go-differences.md §37): a changed record stops the old
//!   timer before the new one starts; deletes forget the name; the
//!   `task_scheduler_schedules_total` gauge is exact.
//! * **Every metric is counted** (docs/go-differences.md §38): `task_scheduler_scheduled_count`
//!   per task created, `task_scheduler_schedule_error_count` per failed
//!   creation or unusable record; `task_scheduler_paused` is 1 from the
//!   start until the election is won (Go starts it at 0, docs/go-differences.md §38) and again
//!   after the scheduler stops.
//! * **One task per slot across instances.** Each fire uses a deterministic
//!   task id (a KSUID whose time is the slot and whose payload is a hash of
//!   the schedule name and slot) and the task record is written with
//!   "expected last subject sequence 0", so a second scheduler that fires
//!   the same slot — two instances that both think they lead during a
//!   hand-over — is refused by the server and creates nothing. The work item
//!   carries the same id as `Nats-Msg-Id`, so the queue's duplicate window
//!   also drops a repeat whose record was already discarded (the phantom
//!   `queue_error` record that repeat saved is deleted again). The ids are
//!   valid, time-sortable KSUIDs. Go schedulers use random ids, so between a
//!   Go and a Rust scheduler only the election prevents double fires.
//! * **`@every` slots are shared**: `created_at + k·interval` instead of
//!   "interval since this scheduler process started", so all instances
//!   agree on the slots (see [`crate::cron`]).
//! * **Listing** waits for the bucket's real end of data instead of
//!   returning an empty list after a silent 5 s timeout (docs/go-differences.md §41).

mod declared;
mod error;
mod fire;
mod schedule;
mod watch;

pub use declared::{declared_schedule_name, Declaration};
pub use error::ScheduleError;
pub(crate) use schedule::decode_record;
pub use schedule::{
    slot_task_id, PayloadEncoding, ScheduledTask, MIN_SCHEDULE_DEADLINE, SCHEDULED_TASK_KEY_PREFIX,
};

use crate::client::Client;
use crate::election::{Election, ElectionOptions};
use crate::events::LeaderElectedEvent;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Configures a [`Scheduler`]; see [`Scheduler::builder`].
#[derive(Debug)]
pub struct SchedulerBuilder {
    client: Client,
    name: String,
    election: Option<ElectionOptions>,
    misfire_window: Duration,
}

/// How far back a scheduler that becomes the leader fires the slots it
/// skipped while it was not (see [`SchedulerBuilder::misfire_window`]): two
/// minutes, the work queues' duplicate window, which also stops a slot whose
/// task record was already discarded from being fired twice.
pub const DEFAULT_MISFIRE_WINDOW: Duration = Duration::from_secs(120);

impl SchedulerBuilder {
    /// Election bucket, key and timings (default: Go's, on `CHORIA_AJ_ELECTIONS`).
    pub fn election(mut self, options: ElectionOptions) -> Self {
        self.election = Some(options);
        self
    }

    /// Do not campaign: this scheduler always considers itself the leader.
    /// Only for a single instance (or tests): two of these both fire every
    /// slot; the server refuses the second creation (see the module docs),
    /// but the work is wasted.
    pub fn without_election(mut self) -> Self {
        self.election = None;
        self
    }

    /// The misfire policy: a slot that passed while this scheduler was not
    /// the leader (for example while the old leader was dying and the
    /// election had not moved yet) is fired when it becomes the leader, if
    /// the slot is at most `window` old (default [`DEFAULT_MISFIRE_WINDOW`],
    /// 2 minutes). Slots another leader already fired are skipped: every
    /// slot has one deterministic task id ([`slot_task_id`]). A window longer
    /// than the queue's duplicate window can fire again a slot whose task
    /// was completed and discarded. A zero window fires no missed slot (Go's
    /// behaviour).
    pub fn misfire_window(mut self, window: Duration) -> Self {
        self.misfire_window = window;
        self
    }

    /// The scheduler.
    pub fn build(self) -> Scheduler {
        Scheduler {
            inner: Arc::new(Inner {
                client: self.client,
                name: self.name,
                misfire_window: self.misfire_window,
                election_options: self.election,
                election: Mutex::new(None),
                running: AtomicBool::new(false),
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }
}

pub(super) struct Entry {
    task: ScheduledTask,
    stop: CancellationToken,
}

/// Stops what a run started and resets the scheduler when the run ends
/// (returns or is dropped).
struct RunGuard {
    inner: Arc<Inner>,
    token: CancellationToken,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.token.cancel();
        let removed: Vec<Entry> = self
            .inner
            .entries
            .lock()
            .expect("scheduler entries")
            .drain()
            .map(|(_, e)| e)
            .collect();
        for e in &removed {
            e.stop.cancel();
        }
        crate::metrics::scheduler_schedules_changed(-(removed.len() as i64));
        crate::metrics::scheduler_paused(true);
        *self.inner.election.lock().expect("scheduler election") = None;
        self.inner.running.store(false, Ordering::SeqCst);
    }
}

pub(super) struct Inner {
    client: Client,
    name: String,
    misfire_window: Duration,
    election_options: Option<ElectionOptions>,
    election: Mutex<Option<Election>>,
    running: AtomicBool,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Inner {
    fn is_leader(&self) -> bool {
        if !self.running.load(Ordering::SeqCst) {
            return false;
        }
        if self.election_options.is_none() {
            return true;
        }
        self.election
            .lock()
            .expect("scheduler election")
            .as_ref()
            .is_some_and(|e| e.is_leader())
    }

    /// Until when a previous leader may have fired slots (see
    /// [`Election::previous_leader_until`]); `None` without an election.
    fn previous_leader_until(&self) -> Option<time::OffsetDateTime> {
        self.election
            .lock()
            .expect("scheduler election")
            .as_ref()
            .and_then(|e| e.previous_leader_until())
    }
}

/// Creates the tasks of every stored schedule while it is the elected
/// leader; see the [module documentation](self). Cheap to clone.
///
/// ```no_run
/// # async fn demo(client: asyncjobs::Client) -> Result<(), asyncjobs::scheduler::ScheduleError> {
/// use asyncjobs::Scheduler;
/// let scheduler = Scheduler::new(client, "scheduler-1");
/// let stop = tokio_util::sync::CancellationToken::new();
/// let handle = tokio::spawn({
///     let (scheduler, stop) = (scheduler.clone(), stop.clone());
///     async move { scheduler.run(stop).await }
/// });
/// // ...
/// println!("leader: {}, schedules: {:?}", scheduler.is_leader(), scheduler.schedules());
/// stop.cancel();
/// handle.await.unwrap()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("name", &self.inner.name)
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler called `name` (its election identity) with Go's election defaults.
    pub fn new(client: Client, name: impl Into<String>) -> Scheduler {
        Scheduler::builder(client, name).build()
    }

    /// A builder for other election settings.
    pub fn builder(client: Client, name: impl Into<String>) -> SchedulerBuilder {
        SchedulerBuilder {
            client,
            name: name.into(),
            election: Some(ElectionOptions::default()),
            misfire_window: DEFAULT_MISFIRE_WINDOW,
        }
    }

    /// The scheduler's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// True while running and leading (always true while running without election).
    pub fn is_leader(&self) -> bool {
        self.inner.is_leader()
    }

    /// Names of the schedules currently loaded, sorted.
    pub fn schedules(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .entries
            .lock()
            .expect("scheduler entries")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Campaigns for leadership and runs every stored schedule until `stop`
    /// is cancelled. Fails at start if the configuration bucket is missing
    /// or the election bucket is unusable.
    pub async fn run(&self, stop: CancellationToken) -> Result<(), ScheduleError> {
        if self.inner.running.swap(true, Ordering::SeqCst) {
            return Err(ScheduleError::AlreadyRunning);
        }
        // everything started below ends with this token, also when the
        // future is dropped instead of `stop` being cancelled
        let token = stop.child_token();
        let _cleanup = RunGuard {
            inner: self.inner.clone(),
            token: token.clone(),
        };
        self.run_inner(&token).await
    }

    async fn run_inner(&self, stop: &CancellationToken) -> Result<(), ScheduleError> {
        let store = self.inner.client.storage().config_bucket().await?;
        // paused until the election is won (Go starts at 0 even when not leading, docs/go-differences.md §38)
        crate::metrics::scheduler_paused(self.inner.election_options.is_some());
        let election = match &self.inner.election_options {
            None => None,
            Some(options) => Some(self.start_election(options, stop).await?),
        };
        let result = self.watch(store, stop).await;
        if let Some((token, handle)) = election {
            token.cancel();
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "election ended with an error"),
                Err(e) => tracing::warn!(error = %e, "election task failed"),
            }
        }
        result
    }

    /// Starts campaigning: a win resumes firing and announces the leader
    /// (a [`LeaderElectedEvent`]), a loss pauses. Returns the token that
    /// ends the campaign and its task.
    async fn start_election(
        &self,
        options: &ElectionOptions,
        stop: &CancellationToken,
    ) -> Result<(CancellationToken, ElectionTask), ScheduleError> {
        let nc = self.inner.client.nats().clone();
        let name = self.inner.name.clone();
        let component = options.key.clone();
        let lost_name = name.clone();
        let election = Election::builder(nc.clone(), name.clone())
            .jetstream_api(self.inner.client.jetstream_api().clone())
            .options(options.clone())
            .on_won(move || {
                crate::metrics::scheduler_paused(false);
                tracing::info!(scheduler = %name, "became leader, scheduling tasks");
                announce_leader(
                    &nc,
                    LeaderElectedEvent::new(name.clone(), component.clone()),
                );
            })
            .on_lost(move || {
                crate::metrics::scheduler_paused(true);
                tracing::info!(scheduler = %lost_name, "lost leadership, pausing");
            })
            .build()
            .await?;
        *self.inner.election.lock().expect("scheduler election") = Some(election.clone());
        let token = stop.child_token();
        let handle = tokio::spawn({
            let token = token.clone();
            async move { election.run(token).await }
        });
        Ok((token, handle))
    }
}

/// A running campaign.
type ElectionTask = tokio::task::JoinHandle<Result<(), crate::election::ElectionError>>;

/// Publishes `event` (best effort, from the election's callback).
fn announce_leader(nc: &async_nats::Client, event: LeaderElectedEvent) {
    let nc = nc.clone();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            match serde_json::to_vec(&event) {
                Ok(body) => {
                    if let Err(e) = nc.publish(event.subject(), body.into()).await {
                        tracing::warn!(error = %e, "publishing leader elected event failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "encoding leader elected event failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests;
