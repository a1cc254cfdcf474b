//! The scheduled task record (docs/storage.md): a cron schedule with a task
//! template, stored as JSON in the configuration bucket as Go stores it,
//! and the deterministic id of the task each slot creates.

use super::ScheduleError;
use crate::cron::CronSchedule;
use crate::task::{is_valid_name, Task};
use crate::wire::{self, bytes_go, duration_go, null_default, time_go};
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;
use time::OffsetDateTime;

/// KV key prefix of scheduled tasks; the name follows.
pub const SCHEDULED_TASK_KEY_PREFIX: &str = "scheduled_tasks.";

/// Smallest deadline offset a schedule may have.
pub const MIN_SCHEDULE_DEADLINE: Duration = Duration::from_secs(30);

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
/// [module documentation](super) for the one extra key.
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
    /// Where the schedule is declared in code (`#[task_handler(cron = ...)]`
    /// or `asyncjobs::main!(schedule = ...)`), such as
    /// `reports::daily`; `None` for schedules an operator created
    /// (docs/processing.md §2.20). Stored as the extra key `declared_in`,
    /// which Go ignores (and drops when it re-saves the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_in: Option<String>,
    /// Paused by an operator ([`Client::pause_scheduled_task`]): a Rust
    /// scheduler fires none of its slots until it is resumed; slots that
    /// pass meanwhile are not made up. Stored as the extra key `paused`
    /// (only when true), which Go ignores: a Go scheduler leading the
    /// election fires it anyway, and drops the key when it re-saves the
    /// record (docs/go-differences.md).
    ///
    /// [`Client::pause_scheduled_task`]: crate::Client::pause_scheduled_task
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
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
            declared_in: None,
            paused: false,
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

    /// Marks the schedule as declared in code at `place` (see
    /// [`declared_in`](Self::declared_in) and
    /// [`Client::declare_scheduled_task`](crate::Client::declare_scheduled_task)).
    pub fn with_declared_in(mut self, place: impl Into<String>) -> Self {
        self.declared_in = Some(place.into());
        self
    }

    /// True when both create the same tasks at the same times: every field
    /// but [`created_at`](Self::created_at) and
    /// [`declared_in`](Self::declared_in) is equal.
    pub fn same_tasks_as(&self, other: &ScheduledTask) -> bool {
        self.name == other.name
            && self.schedule == other.schedule
            && self.queue == other.queue
            && self.task_type == other.task_type
            && self.payload == other.payload
            && self.deadline == other.deadline
            && self.max_tries == other.max_tries
            && self.payload_encoding == other.payload_encoding
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

    /// When the schedule fires next after `after`, as a running scheduler
    /// times it (an `@every` interval counted from
    /// [`created_at`](Self::created_at)); `None` when it never fires again
    /// or its spec does not parse.
    ///
    /// ```
    /// # use asyncjobs::{ScheduledTask, Task};
    /// let task = Task::new("report:daily", &()).unwrap();
    /// let st = ScheduledTask::new("daily", "0 6 * * *", "REPORTS", &task).unwrap();
    /// let now = time::macros::datetime!(2026-12-07 10:00 UTC);
    /// assert_eq!(st.next_fire(now), Some(time::macros::datetime!(2026-12-08 06:00 UTC)));
    /// ```
    pub fn next_fire(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        self.cron()
            .ok()?
            .with_anchor(self.created_at)
            .next_after(after)
    }

    /// A task as the scheduler creates it now: type, payload, deadline
    /// (now + offset) and max tries from the schedule, with a new id.
    pub fn to_task(&self) -> crate::Result<Task> {
        self.build_task(None)
    }

    pub(super) fn build_task(&self, id: Option<String>) -> crate::Result<Task> {
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
pub(super) fn round_to_seconds(nanos: i128) -> i64 {
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

pub(crate) fn decode_record(name: &str, data: &[u8]) -> Result<ScheduledTask, ScheduleError> {
    ScheduledTask::from_json(data).map_err(|e| ScheduleError::InvalidRecord {
        name: name.to_string(),
        reason: e.to_string(),
    })
}
