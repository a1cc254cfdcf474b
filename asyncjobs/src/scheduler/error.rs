//! What can go wrong with scheduled tasks and the scheduler.

use crate::cron::CronError;
use crate::election::ElectionError;
use crate::error::Error;

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
    /// [`Scheduler::run`](super::Scheduler::run) was called while already running.
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
