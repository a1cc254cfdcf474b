//! The task lifecycle's states (docs/processing.md §1): the state field of
//! every task record, as Go names it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The lifecycle state of a task (docs/processing.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TaskState {
    /// Unknown state (`""`, or a state name this version does not know).
    #[default]
    Unknown,
    /// Enqueued, waiting for a worker.
    New,
    /// A handler is running it.
    Active,
    /// A handler failed; it will be tried again.
    Retry,
    /// Past its deadline or out of tries.
    Expired,
    /// A handler asked for it not to be retried, or its payload is unusable.
    Terminated,
    /// Completed successfully; the result is stored.
    Complete,
    /// The work item could not be published.
    QueueError,
    /// Waiting for its dependencies to complete.
    Blocked,
    /// A dependency failed, so it can never run.
    Unreachable,
}

impl TaskState {
    /// The wire string of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Unknown => "",
            TaskState::New => "new",
            TaskState::Active => "active",
            TaskState::Retry => "retry",
            TaskState::Expired => "expired",
            TaskState::Terminated => "terminated",
            TaskState::Complete => "complete",
            TaskState::QueueError => "queue_error",
            TaskState::Blocked => "blocked",
            TaskState::Unreachable => "unreachable",
        }
    }

    /// True for the states a task ends in when it failed for good
    /// (`expired`, `terminated`, `unreachable`, `queue_error`): the dead
    /// letters [`Client::replay_tasks`](crate::Client::replay_tasks) takes.
    pub fn is_dead_letter(&self) -> bool {
        matches!(
            self,
            TaskState::Expired
                | TaskState::Terminated
                | TaskState::Unreachable
                | TaskState::QueueError
        )
    }

    /// Parses a state name; `completed` is accepted for `complete`.
    pub fn from_name(name: &str) -> Option<TaskState> {
        Some(match name {
            "" => TaskState::Unknown,
            "new" => TaskState::New,
            "active" => TaskState::Active,
            "retry" => TaskState::Retry,
            "expired" => TaskState::Expired,
            "terminated" => TaskState::Terminated,
            "complete" | "completed" => TaskState::Complete,
            "queue_error" => TaskState::QueueError,
            "blocked" => TaskState::Blocked,
            "unreachable" => TaskState::Unreachable,
            _ => return None,
        })
    }

    /// States a task does not leave without an explicit retry.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TaskState::Complete
                | TaskState::Expired
                | TaskState::Terminated
                | TaskState::Unreachable
                | TaskState::QueueError
        )
    }
}

impl Serialize for TaskState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        Ok(s.and_then(|s| TaskState::from_name(&s)).unwrap_or_default())
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
