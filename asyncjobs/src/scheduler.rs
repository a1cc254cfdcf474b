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

use crate::client::Client;
use crate::cron::{CronError, CronSchedule};
use crate::election::{Election, ElectionError, ElectionOptions};
use crate::error::{nats, Error};
use crate::events::LeaderElectedEvent;
use crate::storage::CONFIG_BUCKET;
use crate::task::{is_valid_name, Task};
use crate::wire::{self, bytes_go, duration_go, null_default, time_go};
use async_nats::jetstream::kv;
use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// KV key prefix of scheduled tasks; the name follows.
pub const SCHEDULED_TASK_KEY_PREFIX: &str = "scheduled_tasks.";
/// Smallest deadline offset a schedule may have.
pub const MIN_SCHEDULE_DEADLINE: Duration = Duration::from_secs(30);

/// Errors of scheduled-task storage and the scheduler. Messages start with
/// Go's text where Go has one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The schedule has no name.
    #[error("name is required")]
    NameRequired,
    /// The name does not match `^[a-zA-Z0-9_:-]+$`.
    #[error("name is invalid: must match ^[a-zA-Z0-9_:-]+$ (got {0:?})")]
    NameInvalid(String),
    /// The name contains `:`, which Go's name rule allows but KV keys do not.
    #[error("name is invalid: {0:?} contains ':', which KV keys cannot hold")]
    NameNotAKey(String),
    /// The cron spec is empty.
    #[error("schedule is required")]
    ScheduleRequired,
    /// The target queue is empty.
    #[error("queue name is required")]
    QueueRequired,
    /// The cron spec does not parse.
    #[error("invalid cron schedule: {source} (schedule {schedule:?})")]
    InvalidSchedule {
        /// The spec.
        schedule: String,
        /// The parser's reason.
        #[source]
        source: CronError,
    },
    /// The task type does not match `^[a-zA-Z0-9_:-]+$`.
    #[error("task type is invalid: must match ^[a-zA-Z0-9_:-]+$ (got {0:?})")]
    TaskTypeInvalid(String),
    /// The deadline offset is under 30 s.
    #[error("deadline too short: tasks must get at least 30s (got {0}s)")]
    DeadlineTooShort(i64),
    /// A schedule with this name exists.
    #[error("scheduled task already exist: {0}")]
    AlreadyExists(String),
    /// No schedule with this name.
    #[error("scheduled task not found: {0}")]
    NotFound(String),
    /// The stored record does not decode.
    #[error("invalid scheduled task {name}: {reason}")]
    InvalidRecord {
        /// Schedule name (from the key).
        name: String,
        /// Decoder error.
        reason: String,
    },
    /// The leader election could not start.
    #[error(transparent)]
    Election(#[from] ElectionError),
    /// [`Scheduler::run`] was called while already running.
    #[error("scheduler already running")]
    AlreadyRunning,
    /// A client or storage error.
    #[error(transparent)]
    Client(#[from] Error),
}

impl From<ScheduleError> for Error {
    fn from(e: ScheduleError) -> Error {
        match e {
            ScheduleError::Client(e) => e,
            other => Error::Config(other.to_string()),
        }
    }
}

/// How the scheduler turns a schedule's stored payload into task payloads.
///
/// Stored in the record as `"payload_encoding"`: absent for [`Go`](Self::Go)
/// (so the record is exactly what Go writes), `"raw"` for
/// [`Raw`](Self::Raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadEncoding {
    /// What the Go scheduler does (docs/go-differences.md §36): each task's payload is the JSON
    /// string of the base64 of the stored payload, or `null` when the
    /// schedule has none. Every record written by Go reads as this.
    #[default]
    Go,
    /// Each task's payload is the stored payload, unchanged. The default for
    /// schedules made with [`ScheduledTask::new`].
    Raw,
}

impl PayloadEncoding {
    fn is_go(&self) -> bool {
        *self == PayloadEncoding::Go
    }
}

impl Serialize for PayloadEncoding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            PayloadEncoding::Go => "go",
            PayloadEncoding::Raw => "raw",
        })
    }
}

impl<'de> Deserialize<'de> for PayloadEncoding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s.as_deref() {
            None | Some("") | Some("go") => Ok(PayloadEncoding::Go),
            Some("raw") => Ok(PayloadEncoding::Raw),
            Some(other) => Err(serde::de::Error::custom(format!(
                "unknown payload_encoding {other:?} (expected \"raw\" or \"go\")"
            ))),
        }
    }
}

/// A schedule: when to create which task in which queue (docs/storage.md §8.4).
///
/// Serialized exactly like Go's `ScheduledTask`; see the
/// [module documentation](self) for the one extra key.
///
/// ```
/// use asyncjobs::{ScheduledTask, Task};
/// let template = Task::builder("cleanup").max_tries(2).build().unwrap();
/// let st = ScheduledTask::new("nightly_cleanup", "@daily", "DEFAULT", &template).unwrap();
/// assert_eq!(st.max_tries, 2);
/// assert!(ScheduledTask::new("bad name", "@daily", "DEFAULT", &template).is_err());
/// assert!(ScheduledTask::new("x", "* * * * 7", "DEFAULT", &template).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduledTask {
    /// Unique name, also the KV key suffix.
    #[serde(default, deserialize_with = "null_default", alias = "Name")]
    pub name: String,
    /// Cron spec (see [`crate::cron`]).
    #[serde(default, deserialize_with = "null_default", alias = "Schedule")]
    pub schedule: String,
    /// Queue the tasks are enqueued into (not checked to exist).
    #[serde(default, deserialize_with = "null_default", alias = "Queue")]
    pub queue: String,
    /// Type of the tasks.
    #[serde(default, deserialize_with = "null_default", alias = "TaskType")]
    pub task_type: String,
    /// The template task's payload bytes.
    #[serde(with = "bytes_go", default, alias = "Payload")]
    pub payload: Option<Vec<u8>>,
    /// Each task's deadline is its creation time plus this (zero: no deadline).
    #[serde(
        with = "duration_go",
        default,
        skip_serializing_if = "Duration::is_zero",
        alias = "Deadline"
    )]
    pub deadline: Duration,
    /// Each task's max tries (0: the task default, 10).
    #[serde(default, deserialize_with = "null_default", alias = "MaxTries")]
    pub max_tries: i64,
    /// When the schedule was created (UTC); also the anchor of `@every` slots.
    #[serde(with = "time_go", default = "wire::zero_time", alias = "CreatedAt")]
    pub created_at: OffsetDateTime,
    /// How task payloads are derived from [`payload`](Self::payload).
    #[serde(default, skip_serializing_if = "PayloadEncoding::is_go")]
    pub payload_encoding: PayloadEncoding,
}

impl ScheduledTask {
    /// A schedule named `name` that creates tasks like `template` in `queue`
    /// on `schedule`, validated as Go's `NewScheduledTask` does (in this
    /// order: name, schedule, queue, cron syntax, deadline ≥ 30 s).
    ///
    /// The template's deadline, if any, becomes an offset: deadline minus
    /// now, rounded to whole seconds. Payload encoding is
    /// [`PayloadEncoding::Raw`].
    pub fn new(
        name: impl Into<String>,
        schedule: impl Into<String>,
        queue: impl Into<String>,
        template: &Task,
    ) -> Result<ScheduledTask, ScheduleError> {
        let now = OffsetDateTime::now_utc();
        // deadline offset in whole seconds, checked after the other fields (Go's order)
        let offset = template
            .deadline
            .map(|d| round_to_seconds((d - now).whole_nanoseconds()));
        let st = ScheduledTask {
            name: name.into(),
            schedule: schedule.into(),
            queue: queue.into(),
            task_type: template.task_type.clone(),
            payload: template.payload.clone(),
            deadline: Duration::from_secs(offset.unwrap_or(0).max(0) as u64),
            max_tries: template.max_tries,
            created_at: now,
            payload_encoding: PayloadEncoding::Raw,
        };
        let mut check = st.clone();
        check.deadline = Duration::ZERO;
        check.validate()?;
        if let Some(secs) = offset {
            if secs < MIN_SCHEDULE_DEADLINE.as_secs() as i64 {
                return Err(ScheduleError::DeadlineTooShort(secs));
            }
        }
        Ok(st)
    }

    /// Sets how task payloads are derived from the stored payload.
    pub fn with_payload_encoding(mut self, encoding: PayloadEncoding) -> Self {
        self.payload_encoding = encoding;
        self
    }

    /// Checks the fields as creation does, returning the parsed schedule.
    pub fn validate(&self) -> Result<CronSchedule, ScheduleError> {
        if self.name.is_empty() {
            return Err(ScheduleError::NameRequired);
        }
        if !is_valid_name(&self.name) {
            return Err(ScheduleError::NameInvalid(self.name.clone()));
        }
        if self.name.contains(':') {
            return Err(ScheduleError::NameNotAKey(self.name.clone()));
        }
        if self.schedule.is_empty() {
            return Err(ScheduleError::ScheduleRequired);
        }
        if self.queue.is_empty() {
            return Err(ScheduleError::QueueRequired);
        }
        let cron = self.cron()?;
        if !self.deadline.is_zero() && self.deadline < MIN_SCHEDULE_DEADLINE {
            return Err(ScheduleError::DeadlineTooShort(
                self.deadline.as_secs() as i64
            ));
        }
        if !is_valid_name(&self.task_type) {
            return Err(ScheduleError::TaskTypeInvalid(self.task_type.clone()));
        }
        Ok(cron)
    }

    /// Parses the cron spec.
    pub fn cron(&self) -> Result<CronSchedule, ScheduleError> {
        CronSchedule::parse(&self.schedule).map_err(|source| ScheduleError::InvalidSchedule {
            schedule: self.schedule.clone(),
            source,
        })
    }

    /// Decodes a stored record (Go's capitalised legacy keys are accepted).
    pub fn from_json(data: &[u8]) -> Result<ScheduledTask, serde_json::Error> {
        serde_json::from_slice(data)
    }

    /// Encodes the record as stored.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a scheduled task always encodes")
    }

    /// The KV key of the record.
    pub fn key(&self) -> String {
        format!("{SCHEDULED_TASK_KEY_PREFIX}{}", self.name)
    }

    /// The payload each task created by this schedule gets (see [`PayloadEncoding`]).
    pub fn task_payload(&self) -> Option<Vec<u8>> {
        match self.payload_encoding {
            PayloadEncoding::Raw => self.payload.clone(),
            PayloadEncoding::Go => Some(match &self.payload {
                None => b"null".to_vec(),
                Some(p) => serde_json::to_vec(&base64::engine::general_purpose::STANDARD.encode(p))
                    .expect("a string encodes"),
            }),
        }
    }

    /// A task as the scheduler creates it now: type, payload, deadline
    /// (now + offset) and max tries from the schedule, with a new id.
    pub fn to_task(&self) -> crate::Result<Task> {
        self.build_task(None)
    }

    fn build_task(&self, id: Option<String>) -> crate::Result<Task> {
        let mut b = Task::builder(self.task_type.clone());
        if let Some(id) = id {
            b = b.id(id);
        }
        if let Some(p) = self.task_payload() {
            b = b.raw_payload(p);
        }
        if !self.deadline.is_zero() {
            b = b.deadline(OffsetDateTime::now_utc() + self.deadline);
        }
        if self.max_tries > 0 {
            b = b.max_tries(self.max_tries);
        }
        b.build()
    }
}

/// Go's `Duration.Round(time.Second)`: halves away from zero.
fn round_to_seconds(nanos: i128) -> i64 {
    let half = 500_000_000;
    let r = if nanos >= 0 {
        (nanos + half) / 1_000_000_000
    } else {
        (nanos - half) / 1_000_000_000
    };
    r.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The id of the task a schedule creates for a slot: a KSUID whose time is
/// the slot and whose 16 payload bytes are FNV-1a-128 of the name and slot.
/// Every scheduler instance computes the same id for the same slot.
pub fn slot_task_id(schedule_name: &str, slot: OffsetDateTime) -> String {
    let secs = slot.unix_timestamp();
    let hash = fnv1a_128(format!("asyncjobs.scheduled_task\0{schedule_name}\0{secs}").as_bytes());
    crate::ksuid::with_payload(secs, &hash.to_be_bytes())
}

fn fnv1a_128(data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    data.iter()
        .fold(OFFSET, |h, &b| (h ^ b as u128).wrapping_mul(PRIME))
}

/// Longest wait between attempts to watch the scheduled tasks again.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(30);

async fn config_store(client: &Client) -> Result<kv::Store, ScheduleError> {
    client
        .storage()
        .jetstream()
        .get_key_value(CONFIG_BUCKET)
        .await
        .map_err(|e| {
            if e.to_string().contains("not found") {
                Error::StorageNotReady("configuration bucket not configured".into())
            } else {
                Error::from(nats(format!("binding bucket {CONFIG_BUCKET}"), e))
            }
            .into()
        })
}

fn decode_record(name: &str, data: &[u8]) -> Result<ScheduledTask, ScheduleError> {
    ScheduledTask::from_json(data).map_err(|e| ScheduleError::InvalidRecord {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// Scheduled-task storage (`CHORIA_AJ_CONFIGURATION`, keys `scheduled_tasks.<name>`).
impl Client {
    /// Validates and stores a new schedule (KV create); an existing name is
    /// [`ScheduleError::AlreadyExists`]. The queue is not checked to exist.
    pub async fn create_scheduled_task(&self, task: &ScheduledTask) -> Result<(), ScheduleError> {
        task.validate()?;
        let store = config_store(self).await?;
        match store.create(task.key(), task.to_json().into()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(ScheduleError::AlreadyExists(task.name.clone()))
            }
            Err(e) => {
                Err(Error::from(nats(format!("storing scheduled task {}", task.name), e)).into())
            }
        }
    }

    /// Like Go's `NewScheduledTask`: builds the schedule from a template task
    /// ([`ScheduledTask::new`]) and stores it.
    pub async fn new_scheduled_task(
        &self,
        name: &str,
        schedule: &str,
        queue: &str,
        template: &Task,
    ) -> Result<ScheduledTask, ScheduleError> {
        let st = ScheduledTask::new(name, schedule, queue, template)?;
        self.create_scheduled_task(&st).await?;
        Ok(st)
    }

    /// Loads a schedule by name.
    pub async fn load_scheduled_task(&self, name: &str) -> Result<ScheduledTask, ScheduleError> {
        if !is_valid_name(name) || name.contains(':') {
            return Err(ScheduleError::NotFound(name.to_string()));
        }
        let store = config_store(self).await?;
        let entry = store
            .entry(format!("{SCHEDULED_TASK_KEY_PREFIX}{name}"))
            .await
            .map_err(|e| Error::from(nats(format!("loading scheduled task {name}"), e)))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => decode_record(name, &e.value),
            _ => Err(ScheduleError::NotFound(name.to_string())),
        }
    }

    /// All schedules, sorted by name. Records that do not decode are
    /// skipped with a warning.
    pub async fn scheduled_tasks(&self) -> Result<Vec<ScheduledTask>, ScheduleError> {
        let store = config_store(self).await?;
        let mut keys = store
            .keys()
            .await
            .map_err(|e| Error::from(nats("listing scheduled tasks", e)))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| Error::from(nats("listing scheduled tasks", e)))?;
            if let Some(name) = key.strip_prefix(SCHEDULED_TASK_KEY_PREFIX) {
                names.push(name.to_string());
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match self.load_scheduled_task(&name).await {
                Ok(st) => out.push(st),
                // deleted since the key listing
                Err(ScheduleError::NotFound(_)) => {}
                Err(ScheduleError::InvalidRecord { name, reason }) => {
                    tracing::warn!(schedule = %name, %reason, "skipping undecodable scheduled task")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Validates and stores a schedule whether or not it exists (KV put).
    /// A running scheduler replaces its timer for it.
    pub async fn update_scheduled_task(&self, task: &ScheduledTask) -> Result<(), ScheduleError> {
        task.validate()?;
        let store = config_store(self).await?;
        store
            .put(task.key(), task.to_json().into())
            .await
            .map_err(|e| Error::from(nats(format!("storing scheduled task {}", task.name), e)))?;
        Ok(())
    }

    /// Deletes a schedule (KV delete marker); running schedulers drop it.
    pub async fn delete_scheduled_task(&self, name: &str) -> Result<(), ScheduleError> {
        self.load_scheduled_task(name).await.map(|_| ())?;
        let store = config_store(self).await?;
        store
            .delete(format!("{SCHEDULED_TASK_KEY_PREFIX}{name}"))
            .await
            .map_err(|e| Error::from(nats(format!("deleting scheduled task {name}"), e)))?;
        Ok(())
    }
}

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

struct Entry {
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

struct Inner {
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
        let store = config_store(&self.inner.client).await?;
        // paused until the election is won (Go starts at 0 even when not leading, docs/go-differences.md §38)
        crate::metrics::scheduler_paused(self.inner.election_options.is_some());
        let election = match &self.inner.election_options {
            None => None,
            Some(options) => {
                let nc = self.inner.client.nats().clone();
                let name = self.inner.name.clone();
                let component = options.key.clone();
                let lost_name = name.clone();
                let election = Election::builder(nc.clone(), name.clone())
                    .options(options.clone())
                    .on_won(move || {
                        crate::metrics::scheduler_paused(false);
                        tracing::info!(scheduler = %name, "became leader, scheduling tasks");
                        let event = LeaderElectedEvent::new(name.clone(), component.clone());
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
                Some((token, handle))
            }
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

    /// Follows the stored schedules until `stop`. Each time the watch is
    /// (re)made, the schedules are re-read from scratch: those no longer
    /// stored stop (the bucket may have been deleted and re-created, so
    /// revisions cannot be trusted) and the stored ones are applied (a
    /// schedule that did not change keeps running). A failing watch keeps
    /// the running schedules, logs what is wrong and is made again after
    /// 1 s, doubling to [`WATCH_BACKOFF_MAX`].
    async fn watch(&self, store: kv::Store, stop: &CancellationToken) -> Result<(), ScheduleError> {
        let pattern = format!("{SCHEDULED_TASK_KEY_PREFIX}*");
        let mut started = false;
        let mut backoff = Duration::from_secs(1);
        loop {
            let watch = match self.prune_to_stored(&store).await {
                Ok(()) => store.watch_with_history(&pattern).await.map_err(|e| {
                    Error::from(nats(
                        format!("watching scheduled tasks in {CONFIG_BUCKET}"),
                        e,
                    ))
                }),
                Err(e) => Err(e),
            };
            match watch {
                Err(e) if !started => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff,
                        "cannot read the scheduled tasks (is the {CONFIG_BUCKET} bucket missing?); running schedules continue");
                }
                Ok(mut watch) => {
                    if started {
                        tracing::info!("reading the scheduled tasks again");
                    }
                    started = true;
                    loop {
                        let item = tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            item = watch.next() => item,
                        };
                        match item {
                            Some(Ok(entry)) => {
                                backoff = Duration::from_secs(1);
                                self.apply(entry, stop);
                            }
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "scheduled tasks watch failed; making it again");
                                break;
                            }
                            None => {
                                tracing::warn!("scheduled tasks watch ended; making it again");
                                break;
                            }
                        }
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(WATCH_BACKOFF_MAX);
        }
    }

    /// Stops the running schedules that are no longer stored.
    async fn prune_to_stored(&self, store: &kv::Store) -> Result<(), Error> {
        let mut keys = store.keys().await.map_err(|e| {
            Error::from(nats(
                format!("listing scheduled tasks in {CONFIG_BUCKET}"),
                e,
            ))
        })?;
        let mut stored = std::collections::HashSet::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| {
                Error::from(nats(
                    format!("listing scheduled tasks in {CONFIG_BUCKET}"),
                    e,
                ))
            })?;
            if let Some(name) = key.strip_prefix(SCHEDULED_TASK_KEY_PREFIX) {
                stored.insert(name.to_string());
            }
        }
        let mut entries = self.inner.entries.lock().expect("scheduler entries");
        entries.retain(|name, entry| {
            let keep = stored.contains(name);
            if !keep {
                entry.stop.cancel();
                crate::metrics::scheduler_schedules_changed(-1);
                tracing::info!(schedule = %name, "removed schedule (no longer stored)");
            }
            keep
        });
        Ok(())
    }

    fn apply(&self, entry: kv::Entry, run: &CancellationToken) {
        let Some(name) = entry.key.strip_prefix(SCHEDULED_TASK_KEY_PREFIX) else {
            return;
        };
        let name = name.to_string();
        let mut entries = self.inner.entries.lock().expect("scheduler entries");
        let parsed = match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => None,
            kv::Operation::Put => match decode_record(&name, &entry.value) {
                Ok(st) => match st.cron() {
                    Ok(cron) => Some((st, cron)),
                    Err(e) => {
                        tracing::warn!(schedule = %name, error = %e, "scheduled task has an invalid schedule; not scheduling it");
                        crate::metrics::scheduler_error(&st.task_type, &st.queue);
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "undecodable scheduled task; not scheduling it");
                    crate::metrics::scheduler_error("", "");
                    None
                }
            },
        };
        match parsed {
            None => {
                if let Some(old) = entries.remove(&name) {
                    old.stop.cancel();
                    crate::metrics::scheduler_schedules_changed(-1);
                    tracing::info!(schedule = %name, "removed schedule");
                }
            }
            Some((st, cron)) => {
                if entries.get(&name).is_some_and(|old| old.task == st) {
                    return;
                }
                match entries.remove(&name) {
                    Some(old) => {
                        old.stop.cancel();
                        tracing::info!(schedule = %name, spec = %st.schedule, "replaced schedule");
                    }
                    None => {
                        crate::metrics::scheduler_schedules_changed(1);
                        tracing::info!(schedule = %name, spec = %st.schedule, queue = %st.queue, "added schedule");
                    }
                }
                let stop = run.child_token();
                tokio::spawn(run_schedule(
                    self.inner.clone(),
                    name.clone(),
                    st.clone(),
                    cron.with_anchor(st.created_at),
                    stop.clone(),
                ));
                entries.insert(name, Entry { task: st, stop });
            }
        }
    }
}

async fn run_schedule(
    inner: Arc<Inner>,
    name: String,
    st: ScheduledTask,
    cron: CronSchedule,
    stop: CancellationToken,
) {
    let mut after = OffsetDateTime::now_utc();
    // slots that passed while this scheduler was not the leader
    let mut missed = std::collections::VecDeque::new();
    loop {
        let Some(slot) = cron.next_after(after) else {
            tracing::warn!(schedule = %name, spec = %st.schedule, "schedule never fires again");
            return;
        };
        // wait for the slot by the wall clock, re-checking at least every
        // minute, and every second while missed slots wait for leadership
        loop {
            let now = OffsetDateTime::now_utc();
            if !missed.is_empty() && inner.is_leader() {
                for old in catch_up(&mut missed, now, inner.misfire_window) {
                    tracing::info!(schedule = %name, slot = %old, "firing a slot missed while not the leader");
                    fire(&inner, &name, &st, old).await;
                }
            }
            if now >= slot {
                break;
            }
            let most = if missed.is_empty() { 60 } else { 1 };
            let wait: Duration = (slot - now)
                .try_into()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(1), Duration::from_secs(most));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if stop.is_cancelled() {
            return;
        }
        if inner.is_leader() {
            fire(&inner, &name, &st, slot).await;
        } else if !inner.misfire_window.is_zero() {
            missed.push_back(slot);
            if missed.len() > MAX_MISSED {
                missed.pop_front();
            }
        }
        after = slot.max(OffsetDateTime::now_utc());
    }
}

/// Most missed slots remembered per schedule (an `@every 1s` schedule
/// fills 120 in the default window).
const MAX_MISSED: usize = 10_000;

/// The missed slots still inside the misfire window, oldest first; the
/// list is emptied.
fn catch_up(
    missed: &mut std::collections::VecDeque<OffsetDateTime>,
    now: OffsetDateTime,
    window: Duration,
) -> Vec<OffsetDateTime> {
    missed
        .drain(..)
        .filter(|slot| now - *slot <= window)
        .collect()
}

async fn fire(inner: &Inner, name: &str, st: &ScheduledTask, slot: OffsetDateTime) {
    if !inner.is_leader() {
        tracing::debug!(schedule = %name, %slot, "not the leader; skipping");
        return;
    }
    let mut task = match st.build_task(Some(slot_task_id(name, slot))) {
        Ok(t) => t,
        Err(e) => {
            crate::metrics::scheduler_error(&st.task_type, &st.queue);
            tracing::warn!(schedule = %name, error = %e, "cannot build the scheduled task");
            return;
        }
    };
    // cheap check first; the conditional save below is the real guard
    if inner.client.load_task(&task.id).await.is_ok() {
        tracing::debug!(schedule = %name, task = %task.id, %slot, "slot already fired by another scheduler");
        return;
    }
    let span = crate::spans::schedule(name, &st.queue);
    let enqueued =
        tracing::Instrument::instrument(inner.client.enqueue_to(&st.queue, &mut task), span).await;
    match enqueued {
        Ok(()) => {
            crate::metrics::scheduler_scheduled(&st.task_type, &st.queue);
            tracing::info!(schedule = %name, task = %task.id, queue = %st.queue, %slot, "created scheduled task");
        }
        Err(Error::ConcurrentUpdate(_)) => {
            tracing::debug!(schedule = %name, task = %task.id, %slot, "slot already fired by another scheduler");
        }
        Err(Error::DuplicateItem) => {
            // the queue saw this slot's work item already; the record just
            // saved (now queue_error) is a phantom of a discarded task
            let _ = inner.client.delete_task(&task.id).await;
            tracing::debug!(schedule = %name, task = %task.id, %slot, "slot already fired (duplicate work item)");
        }
        Err(e) => {
            crate::metrics::scheduler_error(&st.task_type, &st.queue);
            tracing::warn!(schedule = %name, task = %task.id, queue = %st.queue, error = %e, "creating scheduled task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn catch_up_fires_missed_slots_inside_the_window_oldest_first() {
        let now = time::macros::datetime!(2026-11-29 12:00:00 UTC);
        let mut missed: std::collections::VecDeque<OffsetDateTime> = [300, 90, 30, 0]
            .into_iter()
            .map(|s| now - Duration::from_secs(s))
            .collect();
        let due = catch_up(&mut missed, now, Duration::from_secs(120));
        assert_eq!(
            due,
            [90, 30, 0].map(|s| now - Duration::from_secs(s)).to_vec()
        );
        assert!(missed.is_empty());
        assert!(catch_up(&mut missed, now, Duration::from_secs(120)).is_empty());
    }

    #[test]
    fn slot_ids_are_deterministic_ksuids() {
        use svix_ksuid::KsuidLike;
        let slot = datetime!(2024-06-01 12:05 UTC);
        let a = slot_task_id("backup", slot);
        assert_eq!(a, slot_task_id("backup", slot));
        assert_ne!(a, slot_task_id("backup2", slot));
        assert_ne!(a, slot_task_id("backup", slot + time::Duration::minutes(5)));
        assert_eq!(a.len(), 27);
        assert!(is_valid_name(&a));
        let k: svix_ksuid::Ksuid = a.parse().unwrap();
        assert_eq!(k.timestamp::<OffsetDateTime>(), slot);
    }

    #[test]
    fn go_payload_encoding() {
        let mut st: ScheduledTask = ScheduledTask::from_json(
            br#"{"name":"n","schedule":"@daily","queue":"Q","task_type":"t","payload":"eyJhIjoxfQ==","max_tries":0,"created_at":"2024-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(st.payload_encoding, PayloadEncoding::Go);
        assert_eq!(st.task_payload().unwrap(), br#""eyJhIjoxfQ==""#);
        st.payload = None;
        assert_eq!(st.task_payload().unwrap(), b"null");
        st.payload_encoding = PayloadEncoding::Raw;
        assert_eq!(st.task_payload(), None);
        st.payload = Some(br#"{"a":1}"#.to_vec());
        assert_eq!(st.task_payload().unwrap(), br#"{"a":1}"#);
        let json = String::from_utf8(st.to_json()).unwrap();
        assert!(json.ends_with(r#","payload_encoding":"raw"}"#), "{json}");
        let t = st.to_task().unwrap();
        assert_eq!(t.max_tries, 10);
        assert_eq!(t.deadline, None);
    }

    #[test]
    fn rounding() {
        assert_eq!(round_to_seconds(29_500_000_000), 30);
        assert_eq!(round_to_seconds(29_499_999_999), 29);
        assert_eq!(round_to_seconds(-1_500_000_000), -2);
    }
}
