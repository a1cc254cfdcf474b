//! Errors returned by the client, storage and worker.

use crate::task::TaskState;

/// The result type used throughout this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to the task store and queues.
///
/// Messages start with the text the Go implementation uses where one exists,
/// so logs and `last_err` values read the same across implementations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No task record exists for the id.
    #[error("task not found: {0}")]
    TaskNotFound(String),
    /// The task type does not match `^[a-zA-Z0-9_:-]+$`.
    #[error("task type is invalid: must match ^[a-zA-Z0-9_:-]+$ (got {0:?})")]
    TaskTypeInvalid(String),
    /// The task id does not match `^[a-zA-Z0-9_:-]+$`.
    #[error("task ID is invalid: must match ^[a-zA-Z0-9_:-]+$ (got {0:?})")]
    TaskIdInvalid(String),
    /// Only `new`, `retry` and `blocked` tasks can be enqueued.
    #[error("cannot enqueue a task in state \"{0}\"")]
    CannotEnqueue(TaskState),
    /// The queue's stream does not exist.
    #[error("queue not found: {0}")]
    QueueNotFound(String),
    /// The queue's stream exists but its `WORKERS` consumer does not.
    #[error("queue consumer not found: queue {0} has no WORKERS consumer")]
    QueueConsumerNotFound(String),
    /// A queue name is empty or contains characters JetStream refuses.
    #[error("queue name is invalid: {0:?} (must be non-empty without '.', '*', '>', spaces, '/' or '\\')")]
    QueueNameInvalid(String),
    /// The work item was a duplicate of one published within the dedupe window.
    #[error("duplicate work queue item")]
    DuplicateItem,
    /// The queue refused the work item (for example it is full and discards new items).
    #[error("work item rejected by queue {queue}: {reason}")]
    EnqueueRejected {
        /// The queue that refused the item.
        queue: String,
        /// The server's reason.
        reason: String,
    },
    /// A message is larger than the server's `max_payload`.
    #[error("{what} is {size} bytes, larger than the server's max_payload of {max} bytes")]
    PayloadTooLarge {
        /// What was being written.
        what: &'static str,
        /// Encoded size.
        size: usize,
        /// The server limit.
        max: usize,
    },
    /// Saving the task record failed (including optimistic concurrency conflicts).
    #[error("failed updating task state: {0}")]
    TaskUpdateFailed(String),
    /// Someone else saved the task since this copy was loaded.
    #[error(
        "failed updating task state: task {0} was modified concurrently (wrong last sequence)"
    )]
    ConcurrentUpdate(String),
    /// A stored record could not be decoded.
    #[error("invalid task record {id}: {reason}")]
    InvalidTaskRecord {
        /// Task id (from the subject).
        id: String,
        /// Decoder error.
        reason: String,
    },
    /// A payload or result could not be encoded or decoded.
    #[error("{context}: {source}")]
    Json {
        /// What was being encoded or decoded.
        context: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A NATS or JetStream request failed.
    #[error("nats: {0}")]
    Nats(String),
    /// Invalid client, queue or policy configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `unknown retry policy: <name>`.
    #[error("unknown retry policy: {0}")]
    UnknownRetryPolicy(String),
    /// `unknown discard policy: <name>`.
    #[error("unknown discard policy: {0}")]
    UnknownDiscardPolicy(String),
    /// Storage was not prepared (see [`ClientBuilder::no_storage_init`](crate::ClientBuilder::no_storage_init)).
    #[error("storage not ready: {0}")]
    StorageNotReady(String),
    /// A signature could not be made or did not verify.
    #[error("{0}")]
    Signature(String),
    /// No tasks are stored.
    #[error("no tasks found")]
    NoTasks,
}

impl Error {
    pub(crate) fn nats(e: impl std::fmt::Display) -> Self {
        Error::Nats(e.to_string())
    }

    pub(crate) fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            context: context.into(),
            source,
        }
    }

    /// True for errors that will not go away by retrying the same operation.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            Error::Nats(_) | Error::TaskUpdateFailed(_) | Error::StorageNotReady(_)
        )
    }
}
