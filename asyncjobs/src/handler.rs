//! Handlers: what runs a task, what it may return, and what it can see.

use crate::task::{Task, TaskResult};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// The JSON a successful handler stores as the task result.
pub type HandlerOutput = Box<RawValue>;

/// What a handler returns.
pub type HandlerResult = Result<HandlerOutput, HandlerError>;

/// Why a handler failed, and whether the task may be tried again.
///
/// Any error converts into a retryable `HandlerError` with `?` (including
/// `anyhow::Error` and `Box<dyn Error + Send + Sync>`); use
/// [`HandlerError::terminate`] or [`terminate`] to stop retries.
pub struct HandlerError {
    message: String,
    terminate: bool,
    retry_after: Option<Duration>,
    no_handler: bool,
    undecodable_payload: bool,
}

impl HandlerError {
    /// A failure that will be retried after the worker's retry policy's
    /// backoff (see [`Worker::retry_policy`](crate::Worker::retry_policy)).
    pub fn retry(message: impl fmt::Display) -> HandlerError {
        HandlerError {
            message: message.to_string(),
            terminate: false,
            retry_after: None,
            no_handler: false,
            undecodable_payload: false,
        }
    }

    /// A failure to be retried after `delay` instead of the retry
    /// policy's backoff, for example when a rate-limited API says when to
    /// come back. The try still counts against the task's tries.
    ///
    /// ```
    /// use asyncjobs::HandlerError;
    /// use std::time::Duration;
    /// let e = HandlerError::retry_after("rate limited", Duration::from_secs(30));
    /// assert_eq!(e.retry_delay(), Some(Duration::from_secs(30)));
    /// assert!(!e.is_terminate());
    /// ```
    pub fn retry_after(message: impl fmt::Display, delay: Duration) -> HandlerError {
        HandlerError {
            retry_after: Some(delay),
            ..HandlerError::retry(message)
        }
    }

    /// A failure that terminates the task: no more tries.
    pub fn terminate(message: impl fmt::Display) -> HandlerError {
        HandlerError {
            terminate: true,
            ..HandlerError::retry(message)
        }
    }

    /// The delay asked for with [`HandlerError::retry_after`].
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The router has no handler for the task's type (a retryable error,
    /// logged as an error by the worker).
    pub(crate) fn no_handler(message: String) -> HandlerError {
        HandlerError {
            no_handler: true,
            ..HandlerError::retry(message)
        }
    }

    /// True for [`HandlerError::no_handler`].
    pub(crate) fn is_no_handler(&self) -> bool {
        self.no_handler
    }

    /// The framework terminated the task because its payload does not
    /// decode as the handler's payload type ([`decode_payload`]): the
    /// handler never ran. The worker's log says so instead of blaming the
    /// handler (docs/processing.md §2.8).
    pub(crate) fn undecodable_payload(message: String) -> HandlerError {
        HandlerError {
            undecodable_payload: true,
            ..HandlerError::terminate(message)
        }
    }

    /// True for an error of [`decode_payload`].
    pub(crate) fn is_undecodable_payload(&self) -> bool {
        self.undecodable_payload
    }

    /// The error text stored in `last_err`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True if the task must not be retried.
    pub fn is_terminate(&self) -> bool {
        self.terminate
    }
}

/// Wraps any error so the task is terminated instead of retried.
///
/// ```
/// fn check(n: i32) -> Result<(), asyncjobs::HandlerError> {
///     if n < 0 {
///         return Err(asyncjobs::terminate("negative numbers are never valid"));
///     }
///     Ok(())
/// }
/// assert!(check(-1).unwrap_err().is_terminate());
/// ```
pub fn terminate(err: impl fmt::Display) -> HandlerError {
    HandlerError::terminate(err)
}

impl<E> From<E> for HandlerError
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn from(e: E) -> Self {
        let e: Box<dyn std::error::Error + Send + Sync> = e.into();
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        HandlerError::retry(message)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("message", &self.message)
            .field("terminate", &self.terminate)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Encodes a handler's return value as the stored result.
pub fn to_output<T: Serialize + ?Sized>(value: &T) -> HandlerResult {
    let json = serde_json::to_string(value)
        .map_err(|e| HandlerError::retry(format!("encoding handler result: {e}")))?;
    RawValue::from_string(json)
        .map_err(|e| HandlerError::retry(format!("encoding handler result: {e}")))
}

/// A running try's lease: until when it may run. The worker moves it with
/// heartbeats and with the queue's run time (raised or lowered while the
/// try runs); handlers see it through [`TaskContext::handler_deadline`].
/// A handler's own time-out (docs/processing.md §2.7) is a fixed
/// [`limit`](Lease::limit) beside it that nothing moves.
pub(crate) struct Lease {
    /// When the handler is stopped unless the lease is extended.
    pub deadline: tokio::sync::watch::Sender<tokio::time::Instant>,
    /// How far a heartbeat extends the lease: the queue's run time, as the
    /// worker last read it.
    pub max_run_time: std::sync::Mutex<Duration>,
    pub acker: Option<Arc<async_nats::jetstream::message::Acker>>,
    /// A heartbeat from the handler (the worker renews the record).
    pub changed: tokio::sync::Notify,
    /// The handler's time-out: when it is stopped whatever the lease says
    /// (`None`: no time-out, or one too long to count).
    pub limit: Option<(tokio::time::Instant, Duration)>,
    /// The handler's latest progress report, saved by the worker at most
    /// every [`PROGRESS_EVERY`](crate::task::progress::PROGRESS_EVERY).
    pub progress: tokio::sync::watch::Sender<Option<crate::task::TaskProgress>>,
}

impl Lease {
    /// A lease of `run_time` from now.
    pub(crate) fn new(
        run_time: Duration,
        acker: Option<Arc<async_nats::jetstream::message::Acker>>,
    ) -> Lease {
        Lease {
            deadline: tokio::sync::watch::channel(tokio::time::Instant::now() + run_time).0,
            max_run_time: std::sync::Mutex::new(run_time),
            acker,
            changed: tokio::sync::Notify::new(),
            limit: None,
            progress: tokio::sync::watch::channel(None).0,
        }
    }

    /// The lease with the handler's time-out `timeout` counted from now.
    pub(crate) fn with_timeout(mut self, timeout: Option<Duration>) -> Lease {
        self.limit = timeout.and_then(|t| Some((tokio::time::Instant::now().checked_add(t)?, t)));
        self
    }

    /// The current deadline.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        *self.deadline.borrow()
    }

    /// When the handler is stopped unless the lease is extended or, with
    /// a time-out, at the latest: the earlier of the two.
    pub(crate) fn stop_at(&self) -> tokio::time::Instant {
        match self.limit {
            Some((at, _)) => at.min(self.deadline()),
            None => self.deadline(),
        }
    }

    /// Moves the deadline to `to` (earlier or later).
    pub(crate) fn set_deadline(&self, to: tokio::time::Instant) {
        self.deadline
            .send_if_modified(|d| std::mem::replace(d, to) != to);
    }

    /// Moves the deadline to `to` when that is later.
    pub(crate) fn extend_to(&self, to: tokio::time::Instant) {
        self.deadline.send_if_modified(|d| {
            let later = to > *d;
            if later {
                *d = to;
            }
            later
        });
    }

    /// The queue's run time as the lease follows it.
    pub(crate) fn run_time(&self) -> Duration {
        *self.max_run_time.lock().expect("lease lock")
    }
}

/// What a handler can see about the task it runs, and how it can extend its lease.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) task: Arc<Task>,
    pub(crate) cancel: CancellationToken,
    pub(crate) lease: Option<Arc<Lease>>,
    pub(crate) deadline: Option<OffsetDateTime>,
    pub(crate) traceparent: Option<String>,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.task.id)
            .field("type", &self.task.task_type)
            .field("queue", &self.task.queue)
            .field("tries", &self.task.tries)
            .field("deadline", &self.deadline)
            .field("traceparent", &self.traceparent)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// A context for calling a handler directly (for example in unit tests):
    /// no lease, never cancelled, no handler deadline.
    ///
    /// `task` is taken as it is stored before a try, and the context shows
    /// it as the worker's handler would see it: state `active` and `tries`
    /// incremented, so a new task's first try reports
    /// [`tries()`](Self::tries) `== 1`. For other values (a later try, a
    /// handler deadline, cancellation) use
    /// [`testing::TestTask`](crate::testing::TestTask).
    ///
    /// ```
    /// let task = asyncjobs::Task::new("email:new", &"a@example.net").unwrap();
    /// let ctx = asyncjobs::TaskContext::detached(task);
    /// assert_eq!(ctx.tries(), 1);
    /// ```
    pub fn detached(mut task: Task) -> TaskContext {
        task.state = crate::task::TaskState::Active;
        task.tries += 1;
        task.tried = Some(OffsetDateTime::now_utc());
        let task_traceparent = task.traceparent.clone();
        TaskContext {
            task: Arc::new(task),
            cancel: CancellationToken::new(),
            lease: None,
            deadline: None,
            traceparent: task_traceparent,
        }
    }

    /// The task being handled (state `active`, tries already incremented).
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.task.id
    }

    /// The task type.
    pub fn task_type(&self) -> &str {
        &self.task.task_type
    }

    /// The queue the task came from.
    pub fn queue(&self) -> &str {
        &self.task.queue
    }

    /// Which try this is (1 for the first).
    pub fn tries(&self) -> i64 {
        self.task.tries
    }

    /// When the handler will be cancelled unless it extends its lease. It
    /// moves while the handler runs: heartbeats
    /// ([`mark_in_progress`](Self::mark_in_progress), the worker's
    /// automatic ones) extend it, and it follows the queue's run time when
    /// that is raised or lowered (docs/processing.md §2.7); see
    /// [`deadline_changed`](Self::deadline_changed).
    ///
    /// A handler registered with a time-out (`#[task_handler(..., timeout
    /// = "30s")]`, [`HandlerOptions::timeout`](crate::router::HandlerOptions::timeout))
    /// is stopped at the try's start plus that time-out however the lease
    /// moves: the deadline is then the earlier of the two.
    pub fn handler_deadline(&self) -> Option<OffsetDateTime> {
        match &self.lease {
            Some(lease) => {
                let left = lease
                    .stop_at()
                    .saturating_duration_since(tokio::time::Instant::now());
                Some(OffsetDateTime::now_utc() + left)
            }
            None => self.deadline,
        }
    }

    /// Resolves when the [handler deadline](Self::handler_deadline) moves
    /// (a heartbeat, or a change of the queue's run time): a handler that
    /// sets its own timers from the deadline (an external program, a
    /// request to another service) reads it again then. Never resolves
    /// outside a worker.
    pub async fn deadline_changed(&self) {
        match &self.lease {
            Some(lease) => {
                let mut moved = lease.deadline.subscribe();
                let _ = moved.changed().await;
            }
            None => std::future::pending().await,
        }
    }

    /// The W3C `traceparent` the producer sent with the work item, if any
    /// (also recorded on the handler's tracing span).
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// Results of the dependencies, if the task asked for them.
    pub fn dependency_results(&self) -> &BTreeMap<String, Option<TaskResult>> {
        &self.task.dependency_results
    }

    /// The decoded result of dependency `id`.
    pub fn dependency_result<T: DeserializeOwned>(&self, id: &str) -> crate::Result<Option<T>> {
        match self.task.dependency_results.get(id) {
            Some(Some(r)) => r.decode().map(Some),
            _ => Ok(None),
        }
    }

    /// Resolves when the worker gives up on this handler (run time or the
    /// handler's time-out exceeded, its task cancelled, or shutdown).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// True once the worker gave up on this handler.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Reports how far the handler is: `percent` from 0 to 100 and what it
    /// is doing (cut to 256 bytes). The worker keeps it on the task record
    /// (`Task::progress`) and in its state event, shown by `ajc task view`,
    /// the HTTP API and the dashboard. Saves are at most one a second per
    /// task; reports in between are merged, the latest kept, so a chatty
    /// handler cannot flood the server. It is not a heartbeat: it neither
    /// extends the run time nor counts a try (docs/processing.md §2.17).
    /// Outside a worker (a [`TestWorker`](crate::testing::TestWorker), a
    /// context built by hand) it is checked and otherwise ignored.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for a percent above 100;
    /// nothing is kept then.
    ///
    /// ```
    /// # async fn handler(ctx: asyncjobs::TaskContext) -> asyncjobs::Result<()> {
    /// for n in 0..10u8 {
    ///     ctx.progress(n * 10, format!("image {} of 10", n + 1))?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn progress(&self, percent: u8, message: impl Into<String>) -> crate::Result<()> {
        let progress = crate::task::TaskProgress::new(percent, message)?;
        if let Some(lease) = &self.lease {
            lease.progress.send_replace(Some(progress));
        }
        Ok(())
    }

    /// Tells JetStream the task is still being worked on (`+WPI`) and extends
    /// this handler's run time by another full `max_run_time`.
    pub async fn mark_in_progress(&self) -> crate::Result<()> {
        let lease = self.lease.as_ref().ok_or_else(|| {
            crate::Error::Config("task is not being processed by a handler".into())
        })?;
        if let Some(acker) = &lease.acker {
            tokio::time::timeout(
                Duration::from_secs(2),
                acker.ack_with(async_nats::jetstream::AckKind::Progress),
            )
            .await
            .map_err(|_| {
                crate::error::NatsError::new(
                    crate::error::NatsErrorKind::TimedOut,
                    "in-progress acknowledgement timed out",
                )
            })?
            .map_err(|e| {
                crate::error::NatsError::new(
                    crate::error::NatsErrorKind::Transport,
                    "in-progress acknowledgement",
                )
                .with_source(e)
            })?;
        }
        lease.set_deadline(tokio::time::Instant::now() + lease.run_time());
        lease.changed.notify_one();
        Ok(())
    }
}

/// Something that handles tasks.
///
/// Implemented for every `Fn(TaskContext, Task) -> impl Future<Output = HandlerResult>`.
pub trait Handler: Send + Sync + 'static {
    /// Runs the task.
    fn call(&self, ctx: TaskContext, task: Task) -> BoxFuture<'static, HandlerResult>;
}

impl<F, Fut> Handler for F
where
    F: Fn(TaskContext, Task) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, ctx: TaskContext, task: Task) -> BoxFuture<'static, HandlerResult> {
        Box::pin((self)(ctx, task))
    }
}

/// A shared, type-erased handler.
pub type BoxHandler = Arc<dyn Handler>;

/// A handler taking a typed payload and returning a typed result.
///
/// A payload that does not decode as `P` terminates the task with an error
/// naming the type and the decoder's message; a JSON string holding a `P`
/// (what Go's `ajc task add` stores) is accepted, see [`decode_payload`].
///
/// ```
/// use asyncjobs::{typed, Router};
/// #[derive(serde::Deserialize)]
/// struct Email { to: String }
/// let router = Router::new().handle("email:new", typed(|_ctx, email: Email| async move {
///     Ok::<_, asyncjobs::HandlerError>(format!("sent to {}", email.to))
/// })).unwrap();
/// ```
pub fn typed<P, T, E, F, Fut>(f: F) -> impl Handler
where
    P: DeserializeOwned + Send + 'static,
    T: Serialize + Send + 'static,
    E: Into<HandlerError> + Send + 'static,
    F: Fn(TaskContext, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    move |ctx: TaskContext, task: Task| {
        let payload = decode_payload::<P>(&task);
        let fut = payload.map(|p| f(ctx, p));
        async move {
            let value = fut?.await.map_err(Into::into)?;
            to_output(&value)
        }
    }
}

/// Decodes a task payload, turning failure into a terminating error that
/// names the expected type.
///
/// A payload that is a JSON *string* whose content decodes as `P` is
/// accepted too: Go's `ajc task add TYPE '{"to":"x"}'` stores its argument
/// that way (`"{\"to\":\"x\"}"`, docs/go-differences.md §31). A `P` that itself
/// decodes from a string (`String`, `serde_json::Value`) gets the string,
/// as before; when neither decodes, the error is the one for the payload
/// as stored.
pub fn decode_payload<P: DeserializeOwned>(task: &Task) -> Result<P, HandlerError> {
    let bytes = task.payload.as_deref().unwrap_or(b"null");
    serde_json::from_slice(bytes).or_else(|e| {
        serde_json::from_slice::<String>(bytes)
            .ok()
            .and_then(|inner| serde_json::from_str(&inner).ok())
            .ok_or_else(|| {
                HandlerError::undecodable_payload(format!(
                    "invalid payload for task type {:?}: expected {}: {e}",
                    task.task_type,
                    std::any::type_name::<P>()
                ))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Email {
        to: String,
    }

    #[test]
    fn payload_stored_as_a_json_string_by_go_ajc_decodes() {
        // what Go's `ajc task add email '{"to":"x"}'` stores
        let task = Task::new("email", &r#"{"to":"x"}"#).unwrap();
        assert_eq!(
            task.payload.as_deref(),
            Some(br#""{\"to\":\"x\"}""#.as_slice())
        );
        assert_eq!(
            decode_payload::<Email>(&task).unwrap(),
            Email { to: "x".into() }
        );
        // the plain form still decodes
        let task = Task::new("email", &serde_json::json!({"to": "y"})).unwrap();
        assert_eq!(decode_payload::<Email>(&task).unwrap().to, "y");
        // types that decode from a string get the string itself
        let task = Task::new("email", &r#"{"to":"x"}"#).unwrap();
        assert_eq!(decode_payload::<String>(&task).unwrap(), r#"{"to":"x"}"#);
        assert_eq!(
            decode_payload::<serde_json::Value>(&task).unwrap(),
            serde_json::Value::String(r#"{"to":"x"}"#.into())
        );
    }

    #[test]
    fn a_string_that_is_not_the_type_still_terminates() {
        let task = Task::new("email", &r#"{"from":"x"}"#).unwrap();
        let e = decode_payload::<Email>(&task).unwrap_err();
        assert!(e.is_terminate());
        assert!(
            e.message().contains("invalid type: string"),
            "the error is about the payload as stored: {}",
            e.message()
        );
        let task = Task::new("email", &"not json").unwrap();
        assert!(decode_payload::<Email>(&task).unwrap_err().is_terminate());
    }
}
