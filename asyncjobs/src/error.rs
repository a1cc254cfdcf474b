//! Errors returned by the client, storage and worker.
//!
//! [`Error`] keeps the messages of the Go implementation (so logs and
//! `last_err` read the same across implementations) and carries its cause:
//! [`std::error::Error::source`] gives the NATS client's error where there
//! is one, and a failed NATS or JetStream call is a [`NatsError`] whose
//! [`kind`](NatsError::kind) callers can match on.

use crate::task::state::TaskState;
use async_nats::jetstream::ErrorCode;
use std::fmt;

/// The result type used throughout this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error cause.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a NATS or JetStream call; see [`NatsError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsErrorKind {
    /// The connection could not be made (address, DNS, TLS, authentication).
    Connect,
    /// The server did not answer in time.
    TimedOut,
    /// Nobody answers on the subject: JetStream is not enabled, or the
    /// stream the subject belongs to does not exist.
    NoResponders,
    /// The JetStream API refused the request; the server's error code is
    /// [`NatsError::jetstream_code`].
    JetStream,
    /// The connection failed while sending or receiving.
    Transport,
    /// The server answered with something this client cannot read.
    InvalidReply,
}

impl NatsErrorKind {
    /// True when trying again later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            NatsErrorKind::Connect
                | NatsErrorKind::TimedOut
                | NatsErrorKind::NoResponders
                | NatsErrorKind::Transport
        )
    }
}

/// A failed NATS or JetStream call: what was being done, the kind of
/// failure and the client's error as [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct NatsError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: NatsErrorKind,
    code: Option<ErrorCode>,
    context: String,
    source: Option<BoxError>,
}

impl NatsError {
    /// A failure of `kind` while doing `context` (for example `"creating stream X"`).
    pub(crate) fn new(kind: NatsErrorKind, context: impl Into<String>) -> NatsError {
        NatsError(Box::new(Inner {
            kind,
            code: None,
            context: context.into(),
            source: None,
        }))
    }

    /// Attaches the cause.
    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> NatsError {
        self.0.source = Some(source.into());
        self
    }

    /// A JetStream API error reply.
    pub(crate) fn api(context: impl Into<String>, e: async_nats::jetstream::Error) -> NatsError {
        NatsError(Box::new(Inner {
            kind: NatsErrorKind::JetStream,
            code: Some(e.error_code()),
            context: context.into(),
            source: Some(Box::new(e)),
        }))
    }

    /// The kind of failure.
    pub fn kind(&self) -> NatsErrorKind {
        self.0.kind
    }

    /// The JetStream API error code (for example
    /// [`ErrorCode::STREAM_NOT_FOUND`]) when the server refused the request.
    pub fn jetstream_code(&self) -> Option<ErrorCode> {
        self.0.code
    }

    /// True when trying again later may succeed: a transient
    /// [kind](NatsErrorKind::is_transient), or JetStream's "system temporarily
    /// unavailable" refusal ([`ErrorCode::CLUSTER_NOT_AVAILABLE`], 10008),
    /// which a cluster answers while it has no meta leader or quorum.
    pub fn is_transient(&self) -> bool {
        self.0.kind.is_transient() || self.0.code == Some(ErrorCode::CLUSTER_NOT_AVAILABLE)
    }
}

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.context)?;
        if let Some(source) = &self.0.source {
            if !self.0.context.is_empty() {
                f.write_str(": ")?;
            }
            write!(f, "{source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NatsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Classifies the async-nats error kinds this crate meets.
pub(crate) trait Classify {
    /// The kind of failure and, for JetStream API errors, the server's code.
    fn classify(&self) -> (NatsErrorKind, Option<ErrorCode>);
}

impl<K: Classify + Clone + PartialEq + fmt::Debug + fmt::Display>
    From<(String, async_nats::error::Error<K>)> for NatsError
where
    async_nats::error::Error<K>: std::error::Error + Send + Sync + 'static,
{
    fn from((context, e): (String, async_nats::error::Error<K>)) -> NatsError {
        let (kind, code) = e.kind().classify();
        // errors such as a refused publish carry the server's reply as their source
        let code = code.or_else(|| {
            std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
                .map(|e| e.error_code())
        });
        NatsError(Box::new(Inner {
            kind,
            code,
            context,
            source: Some(Box::new(e)),
        }))
    }
}

/// Wraps an async-nats error with what was being done.
pub(crate) fn nats<K>(context: impl Into<String>, e: async_nats::error::Error<K>) -> NatsError
where
    K: Classify + Clone + PartialEq + fmt::Debug + fmt::Display,
    async_nats::error::Error<K>: std::error::Error + Send + Sync + 'static,
{
    NatsError::from((context.into(), e))
}

macro_rules! classify {
    ($($ty:path => |$k:ident| $body:expr;)*) => {$(
        impl Classify for $ty {
            fn classify(&self) -> (NatsErrorKind, Option<ErrorCode>) {
                #[allow(unused_imports)]
                use NatsErrorKind::*;
                let $k = self;
                $body
            }
        }
    )*};
}

use async_nats::jetstream::{context as jsc, kv, stream};

classify! {
    async_nats::ConnectErrorKind => |k| (match k {
        async_nats::ConnectErrorKind::TimedOut => TimedOut,
        _ => Connect,
    }, None);
    async_nats::RequestErrorKind => |k| (match k {
        async_nats::RequestErrorKind::TimedOut => TimedOut,
        async_nats::RequestErrorKind::NoResponders => NoResponders,
        _ => Transport,
    }, None);
    async_nats::PublishErrorKind => |_k| (Transport, None);
    async_nats::SubscribeErrorKind => |_k| (Transport, None);
    async_nats::client::FlushErrorKind => |_k| (Transport, None);
    jsc::RequestErrorKind => |k| (match k {
        jsc::RequestErrorKind::TimedOut => TimedOut,
        jsc::RequestErrorKind::NoResponders => NoResponders,
        _ => Transport,
    }, None);
    jsc::PublishErrorKind => |k| (match k {
        jsc::PublishErrorKind::StreamNotFound => NoResponders,
        jsc::PublishErrorKind::TimedOut => TimedOut,
        jsc::PublishErrorKind::BrokenPipe => Transport,
        _ => JetStream,
    }, None);
    jsc::GetStreamErrorKind => |k| match k {
        jsc::GetStreamErrorKind::JetStream(e) => (JetStream, Some(e.error_code())),
        jsc::GetStreamErrorKind::Request => (Transport, None),
        _ => (JetStream, None),
    };
    jsc::CreateStreamErrorKind => |k| match k {
        jsc::CreateStreamErrorKind::JetStream(e) => (JetStream, Some(e.error_code())),
        jsc::CreateStreamErrorKind::TimedOut => (TimedOut, None),
        jsc::CreateStreamErrorKind::Response => (Transport, None),
        _ => (JetStream, None),
    };
    stream::LastRawMessageErrorKind => |k| match k {
        stream::LastRawMessageErrorKind::JetStream(e) => (JetStream, Some(e.error_code())),
        stream::LastRawMessageErrorKind::NoMessageFound => (JetStream, Some(ErrorCode::NO_MESSAGE_FOUND)),
        _ => (Transport, None),
    };
    stream::DeleteMessageErrorKind => |k| match k {
        stream::DeleteMessageErrorKind::JetStream(e) => (JetStream, Some(e.error_code())),
        stream::DeleteMessageErrorKind::TimedOut => (TimedOut, None),
        stream::DeleteMessageErrorKind::Request => (Transport, None),
    };
    stream::PurgeErrorKind => |k| match k {
        stream::PurgeErrorKind::JetStream(e) => (JetStream, Some(e.error_code())),
        stream::PurgeErrorKind::TimedOut => (TimedOut, None),
        stream::PurgeErrorKind::Request => (Transport, None),
    };
    stream::ConsumerErrorKind => |k| match k {
        stream::ConsumerErrorKind::JetStream(e) => (JetStream, Some(e.error_code())),
        stream::ConsumerErrorKind::TimedOut => (TimedOut, None),
        stream::ConsumerErrorKind::Request => (Transport, None),
        _ => (JetStream, None),
    };
    async_nats::jetstream::consumer::StreamErrorKind => |k| (match k {
        async_nats::jetstream::consumer::StreamErrorKind::TimedOut => TimedOut,
        _ => Transport,
    }, None);
    async_nats::jetstream::consumer::pull::MessagesErrorKind => |_k| (Transport, None);
    kv::EntryErrorKind => |k| (match k {
        kv::EntryErrorKind::TimedOut => TimedOut,
        _ => Transport,
    }, None);
    kv::PutErrorKind => |k| (match k {
        kv::PutErrorKind::InvalidKey => JetStream,
        _ => Transport,
    }, None);
    kv::CreateErrorKind => |k| (match k {
        kv::CreateErrorKind::AlreadyExists | kv::CreateErrorKind::InvalidKey => JetStream,
        _ => Transport,
    }, None);
    jsc::ConsumerInfoErrorKind => |k| match k {
        jsc::ConsumerInfoErrorKind::JetStream(e) => (JetStream, Some(e.error_code())),
        jsc::ConsumerInfoErrorKind::NotFound => (JetStream, Some(ErrorCode::CONSUMER_NOT_FOUND)),
        jsc::ConsumerInfoErrorKind::StreamNotFound => (JetStream, Some(ErrorCode::STREAM_NOT_FOUND)),
        jsc::ConsumerInfoErrorKind::TimedOut => (TimedOut, None),
        jsc::ConsumerInfoErrorKind::NoResponders => (NoResponders, None),
        jsc::ConsumerInfoErrorKind::Request => (Transport, None),
        _ => (JetStream, None),
    };
    async_nats::jetstream::consumer::pull::OrderedErrorKind => |k| (match k {
        async_nats::jetstream::consumer::pull::OrderedErrorKind::NoResponders => NoResponders,
        _ => Transport,
    }, None);
    kv::UpdateErrorKind => |k| (match k {
        kv::UpdateErrorKind::TimedOut => TimedOut,
        kv::UpdateErrorKind::WrongLastRevision => JetStream,
        _ => Transport,
    }, None);
    kv::WatchErrorKind => |k| (match k {
        kv::WatchErrorKind::TimedOut => TimedOut,
        _ => Transport,
    }, None);
    kv::WatcherErrorKind => |_k| (Transport, None);
    jsc::KeyValueErrorKind => |k| (match k {
        jsc::KeyValueErrorKind::GetBucket => JetStream,
        _ => Transport,
    }, None);
}

/// Everything that can go wrong talking to the task store and queues.
///
/// Messages start with the text the Go implementation uses where one exists,
/// so logs and `last_err` values read the same across implementations.
///
/// `{:?}` prints the message too (what `main() -> Result<(), Box<dyn
/// Error>>` shows when `?` returns an error); `{:#?}` adds the variant.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No task record exists for the id.
    #[error("task not found: {0}")]
    TaskNotFound(String),
    /// The task's record was deleted because its final state is in a
    /// worker's discard list ([`crate::ClientBuilder::discard_states`]):
    /// only that state is remembered, so it cannot be retried or loaded.
    #[error("task {id} was discarded in state {state}: its record is gone, so it cannot be retried (enqueue it again as a new task)")]
    TaskDiscarded {
        /// The task id.
        id: String,
        /// The final state it was discarded in.
        state: TaskState,
    },
    /// The task type does not match `^[a-zA-Z0-9_:-]+$`.
    #[error("task type is invalid: must match ^[a-zA-Z0-9_:-]+$ (got {0:?})")]
    TaskTypeInvalid(String),
    /// The task id does not match `^[a-zA-Z0-9_:-]+$`.
    #[error("task ID is invalid: must match ^[a-zA-Z0-9_:-]+$ (got {0:?})")]
    TaskIdInvalid(String),
    /// Only `new`, `retry` and `blocked` tasks can be enqueued.
    #[error("cannot enqueue a task in state \"{0}\"")]
    CannotEnqueue(TaskState),
    /// The queue's stream does not exist. The message says how to create
    /// it: `ajc queue add <name>`, [`Client::prepare_queue`](crate::Client::prepare_queue),
    /// or starting a worker for it (which creates its queue).
    #[error("queue not found: {0} (no stream CHORIA_AJ_Q_{0}; create it with `ajc queue add {0}`, Client::prepare_queue, or by starting a worker for it)")]
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
        /// The client's error.
        #[source]
        source: NatsError,
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
    /// Saving the task record failed.
    #[error("failed updating task state: {0}")]
    TaskUpdateFailed(#[source] NatsError),
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
    /// A NATS or JetStream request failed; match on [`NatsError::kind`].
    #[error("nats: {0}")]
    Nats(#[from] NatsError),
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
    /// A delayed task needs JetStream message schedules.
    #[error("delayed tasks need nats-server 2.12 or later (JetStream message schedules); the server runs {version}")]
    SchedulesUnsupported {
        /// The server's version.
        version: String,
    },
    /// A feature needs a newer nats-server than the one connected; nothing
    /// was written.
    #[error("{feature} needs nats-server {needs} or later; the server runs {version}")]
    ServerTooOld {
        /// What was asked for, for example `pausing a queue`.
        feature: &'static str,
        /// The oldest server version that has it.
        needs: &'static str,
        /// The server's version.
        version: String,
    },
    /// A unique task's key is held by an earlier task (not yet finished,
    /// or within the key's period): nothing was written.
    #[error("task {id} exists already with unique key {key:?}: not enqueued")]
    TaskExists {
        /// The key.
        key: String,
        /// The earlier task's id.
        id: String,
    },
    /// A delayed task's deadline is earlier than its due time: it could
    /// never run.
    #[error("the deadline {} is before the task is due ({}): it could never run", crate::wire::format_time(.deadline), crate::wire::format_time(.due))]
    DeadlineBeforeDue {
        /// The task's deadline.
        deadline: time::OffsetDateTime,
        /// When it is due.
        due: time::OffsetDateTime,
    },
    /// A task's priority is outside 0 (the default) to
    /// [`MAX_PRIORITY`](crate::task::MAX_PRIORITY) (docs/processing.md §2.21).
    #[error("task priority must be 0 (the default) to 9 (runs first) (got {0})")]
    PriorityInvalid(i64),
    /// A task's flow-control key is empty, longer than 128 bytes, or holds
    /// a control character (docs/processing.md §2.24).
    #[error("invalid task key {0:?}: 1 to 128 bytes without control characters")]
    KeyInvalid(String),
    /// A batch with no members (docs/processing.md §2.23): nothing was
    /// written.
    #[error("a batch needs at least one member (got 0): nothing was enqueued")]
    BatchEmpty,
    /// A batch with more members than
    /// [`MAX_BATCH_MEMBERS`](crate::batch::MAX_BATCH_MEMBERS): nothing was
    /// written.
    #[error("a batch holds at most {max} members (got {count}): split it into batches of {max} or fewer; nothing was enqueued")]
    BatchTooLarge {
        /// How many members were given.
        count: usize,
        /// The most a batch may have.
        max: usize,
    },
    /// A member or the callback of a batch cannot join it (already
    /// enqueued, an invalid type or id, a unique key, a duplicate id…):
    /// nothing was written.
    #[error("batch {which} cannot be enqueued: {reason}; nothing was enqueued")]
    BatchTaskInvalid {
        /// Which task: `member 3 (task <id>)` or `callback (task <id>)`.
        which: String,
        /// Why.
        reason: String,
    },
    /// Workers of the batch's queue announce themselves and none handles
    /// the callback's type, so it would never run: nothing was written.
    #[error("no running worker of queue {queue} handles the callback's task type {task_type} (its workers handle {}): start a worker with a handler for {task_type} on queue {queue}, or give the callback a type they handle; nothing was enqueued", if .handled.is_empty() { "no type".to_string() } else { .handled.join(", ") })]
    BatchCallbackUnhandled {
        /// The batch's queue.
        queue: String,
        /// The callback's type.
        task_type: String,
        /// The types the queue's announcing workers handle.
        handled: Vec<String>,
    },
    /// No batch record exists for the id.
    #[error("batch not found: {0}")]
    BatchNotFound(String),
    /// The batch's record is stored, but not every member or its callback
    /// was enqueued (the callback is held back while a member is not):
    /// [`Client::batch`](crate::Client::batch) shows which,
    /// [`Client::retry_batch`](crate::Client::retry_batch) finishes the
    /// batch, [`Client::cancel_batch`](crate::Client::cancel_batch) ends
    /// it (docs/processing.md §2.23).
    #[error("batch {id} is stored but {not_enqueued} of its tasks were not enqueued (first: {first_error}): its status shows which (Client::batch, `ajc batch info {id}`); retry the batch to finish it (Client::retry_batch, `ajc batch retry {id}`) or cancel it (`ajc batch cancel {id}`)")]
    BatchIncomplete {
        /// The batch id.
        id: String,
        /// How many members (and the callback) were not enqueued.
        not_enqueued: usize,
        /// The first failure, as text.
        first_error: String,
    },
    /// A handler takes a [`State<T>`](crate::State) for which no value was
    /// registered; the message names the type and the handler.
    #[error("{0}")]
    MissingState(#[from] crate::state::MissingState),
}

impl Error {
    pub(crate) fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            context: context.into(),
            source,
        }
    }

    /// True for errors that will not go away by retrying the same operation:
    /// everything but transient NATS failures ([`NatsError::is_transient`]),
    /// failed saves of the task record (unless the stream refuses the
    /// record's size) and storage that is not (yet) there.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Nats(e) => !e.is_transient(),
            // a save is tried again unless the stream can never take the record
            Error::TaskUpdateFailed(e) => {
                e.jetstream_code() == Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)
            }
            Error::StorageNotReady(_) => false,
            _ => true,
        }
    }

    /// The NATS failure behind this error, if there is one.
    pub fn nats_error(&self) -> Option<&NatsError> {
        match self {
            Error::Nats(e)
            | Error::TaskUpdateFailed(e)
            | Error::EnqueueRejected { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// Writes `message`, and with `{:#?}` the type's own name for it too.
pub(crate) fn debug_as_message(
    f: &mut fmt::Formatter<'_>,
    message: &dyn fmt::Display,
    variant: &str,
) -> fmt::Result {
    if f.alternate() {
        write!(f, "{variant}: {message}")
    } else {
        write!(f, "{message}")
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the variant's name only: fields may hold payloads
        let variant = match self {
            Error::Nats(_) => "Nats",
            Error::TaskNotFound(_) => "TaskNotFound",
            Error::QueueNotFound(_) => "QueueNotFound",
            Error::StorageNotReady(_) => "StorageNotReady",
            Error::Config(_) => "Config",
            Error::ConcurrentUpdate(_) => "ConcurrentUpdate",
            _ => "Error",
        };
        debug_as_message(f, self, variant)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_prints_the_message() {
        let e = Error::QueueNotFound("X".into());
        assert_eq!(format!("{e:?}"), e.to_string());
        assert_eq!(format!("{e:#?}"), format!("QueueNotFound: {e}"));
        // what `main() -> Result<(), Box<dyn Error>>` shows
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(format!("{boxed:?}").starts_with("queue not found: X (no stream"));
    }

    use super::*;

    #[test]
    fn nats_errors_carry_kind_and_source() {
        let e: Error = NatsError::new(NatsErrorKind::TimedOut, "loading task x")
            .with_source("deadline has elapsed")
            .into();
        assert_eq!(e.to_string(), "nats: loading task x: deadline has elapsed");
        assert!(!e.is_permanent());
        let src = std::error::Error::source(&e).expect("source");
        assert_eq!(src.to_string(), "loading task x: deadline has elapsed");
        assert!(std::error::Error::source(src).is_some());
        assert_eq!(
            e.nats_error().map(NatsError::kind),
            Some(NatsErrorKind::TimedOut)
        );
    }

    #[test]
    fn api_refusals_are_permanent() {
        let e = Error::Nats(NatsError::new(NatsErrorKind::JetStream, "creating stream"));
        assert!(e.is_permanent());
        assert!(!Error::StorageNotReady("x".into()).is_permanent());
        assert!(Error::TaskNotFound("x".into()).is_permanent());
    }
}
