//! The serving side of request-reply: [`RequestReplyServer`] runs an
//! ordinary handler for requests from Go or Rust workers, and
//! [`RunningServer`] is one serving in the background.

use super::{
    subject_for, to_std, CANCEL_SUBJECT_HEADER, CONTENT_TYPE_HEADER, DEADLINE_HEADER,
    DEFAULT_QUEUE_GROUP, ERROR_HEADER, TASK_CONTENT_TYPE, TERMINATE_HEADER,
};
use crate::connection_watch::{Change, ConnectionWatch};
use crate::error::{NatsError, NatsErrorKind};
use crate::handler::{BoxHandler, Handler, TaskContext};
use crate::task::{is_valid_name, Task};
use crate::throttle::{warn_throttled, Throttle};
use async_nats::HeaderMap;
use futures::StreamExt;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Serves one task type as a request-reply handler (the other end of
/// [`RequestReply`](super::RequestReply), for Go and Rust workers alike).
///
/// Each request runs `handler` with a [`TaskContext`] whose
/// [`handler_deadline`](TaskContext::handler_deadline) is the request's
/// `AJ-Handler-Deadline`; a handler still running then is cancelled and
/// answered with `AJ-Error`. Successful output is the reply body (the JSON the
/// handler produced), a retryable error is `AJ-Error`, a terminating one
/// `AJ-Terminate`, and a panic `AJ-Error: handler panicked: …` — the service
/// keeps running. When the request names the task's cancel subject
/// (`AJ-Cancel-Subject`, sent by Rust workers) the service listens on it
/// while the handler runs, and a cancel of the task fires the handler's
/// [`cancelled`](TaskContext::cancelled). [`TaskContext::mark_in_progress`] is not available to
/// remote handlers (the work item belongs to the worker).
///
/// A lost connection, a request without a reply subject and a reply that
/// cannot be sent are logged at WARN (throttled) and counted in
/// `background_error_total{loop="request_reply"}`; the client subscribes
/// again when the connection is back (docs/processing.md §6.3).
///
/// Requests are shared between the members of a queue group
/// ([`DEFAULT_QUEUE_GROUP`] unless [`queue_group`](Self::queue_group) says
/// otherwise), so several services can serve one type.
///
/// ```no_run
/// use asyncjobs::remote::RequestReplyServer;
/// use asyncjobs::{typed, HandlerError};
///
/// #[derive(serde::Deserialize)]
/// struct Email { to: String }
///
/// # async fn demo() -> asyncjobs::Result<()> {
/// let nc = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
/// let handler = typed(|_ctx, email: Email| async move {
///     Ok::<_, HandlerError>(format!("sent to {}", email.to))
/// });
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// RequestReplyServer::new(nc, "email:new", handler)
///     .concurrency(20)
///     .run(shutdown)
///     .await?;
/// # Ok(()) }
/// ```
pub struct RequestReplyServer {
    nc: async_nats::Client,
    task_type: String,
    handler: BoxHandler,
    queue_group: String,
    concurrency: usize,
}

impl std::fmt::Debug for RequestReplyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestReplyServer")
            .field("task_type", &self.task_type)
            .field("queue_group", &self.queue_group)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl RequestReplyServer {
    /// Serves `task_type` (`""` = the catch-all subject) with `handler`.
    pub fn new(
        nc: async_nats::Client,
        task_type: &str,
        handler: impl Handler,
    ) -> RequestReplyServer {
        RequestReplyServer {
            nc,
            task_type: task_type.to_string(),
            handler: Arc::new(handler),
            queue_group: DEFAULT_QUEUE_GROUP.to_string(),
            concurrency: 10,
        }
    }

    /// Joins this queue group instead of [`DEFAULT_QUEUE_GROUP`].
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.queue_group = group.into();
        self
    }

    /// Runs at most `n` handlers at once (default 10, minimum 1); further
    /// requests wait in the subscription.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The subject this service listens on.
    pub fn subject(&self) -> String {
        subject_for(&self.task_type)
    }

    /// Subscribes (and waits until the server knows the subscription), then
    /// serves in the background until [`RunningServer::stop`].
    pub async fn start(self) -> crate::Result<RunningServer> {
        self.start_with(CancellationToken::new()).await
    }

    /// Serves until `shutdown` is cancelled, then stops gracefully (see
    /// [`RunningServer::stop`]). Returns an error if the subscription
    /// cannot be made or ends while serving (the connection was closed).
    pub async fn run(self, shutdown: CancellationToken) -> crate::Result<()> {
        self.start_with(shutdown.child_token()).await?.wait().await
    }

    async fn start_with(self, stop: CancellationToken) -> crate::Result<RunningServer> {
        if !self.task_type.is_empty() && !is_valid_name(&self.task_type) {
            return Err(crate::Error::TaskTypeInvalid(self.task_type));
        }
        let subject = self.subject();
        let sub = self
            .nc
            .queue_subscribe(subject.clone(), self.queue_group.clone())
            .await
            .map_err(|e| crate::error::nats(format!("subscribing to {subject}"), e))?;
        self.nc
            .flush()
            .await
            .map_err(|e| crate::error::nats(format!("subscribing to {subject}"), e))?;
        tracing::info!(%subject, group = %self.queue_group, "serving request-reply handler");
        // looked at from now on, so a loss before the task first runs counts
        let connection = ConnectionWatch::new(&self.nc);
        let handle = tokio::spawn(serve(
            self.nc,
            subject.clone(),
            sub,
            connection,
            self.handler,
            self.concurrency,
            stop.clone(),
        ));
        Ok(RunningServer {
            subject,
            stop,
            handle: Some(handle),
        })
    }
}

/// A [`RequestReplyServer`] serving in the background. Dropping it stops the
/// service too, without waiting.
#[derive(Debug)]
pub struct RunningServer {
    subject: String,
    stop: CancellationToken,
    handle: Option<JoinHandle<crate::Result<()>>>,
}

impl RunningServer {
    /// The subject being served.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Stops taking requests (draining the subscription, so requests already
    /// delivered to this service are still answered), waits for running
    /// handlers to reply, and returns.
    pub async fn stop(self) -> crate::Result<()> {
        self.stop.cancel();
        self.wait().await
    }

    async fn wait(mut self) -> crate::Result<()> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        handle.await.map_err(|e| {
            crate::Error::from(
                NatsError::new(
                    NatsErrorKind::Transport,
                    "request-reply service task failed",
                )
                .with_source(e),
            )
        })?
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The `loop` label of `background_error_total` for request-reply services.
const LOOP: &str = "request_reply";

/// At most one line per this per kind of unexpected answer.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve(
    nc: async_nats::Client,
    subject: String,
    mut sub: async_nats::Subscriber,
    mut connection: ConnectionWatch,
    handler: BoxHandler,
    concurrency: usize,
    stop: CancellationToken,
) -> crate::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut running = tokio::task::JoinSet::new();
    let mut draining = false;
    let result = loop {
        while running.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = stop.cancelled(), if !draining => {
                draining = true;
                let _ = sub.drain().await;
                continue;
            }
        };
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = stop.cancelled(), if !draining => {
                draining = true;
                let _ = sub.drain().await;
                continue;
            }
            _ = connection.tick() => {
                name_connection_change(connection.look(&nc), &subject);
                continue;
            }
        };
        let Some(msg) = msg else {
            break if draining {
                Ok(())
            } else {
                Err(NatsError::new(
                    NatsErrorKind::Transport,
                    "request-reply subscription closed",
                )
                .into())
            };
        };
        let (nc, handler) = (nc.clone(), handler.clone());
        running.spawn(async move {
            let _permit = permit;
            answer(nc, handler, msg).await;
        });
    };
    while running.join_next().await.is_some() {}
    result
}

/// Names what happened to the connection (the client subscribes again by
/// itself): requests published while it was down were not served here.
fn name_connection_change(change: Option<Change>, subject: &str) {
    match change {
        None => {}
        Some(Change::Lost) => {
            static LOST: Throttle = Throttle::new(LOG_EVERY);
            warn_throttled!(LOST, %subject,
                "lost the connection to NATS: requests are not served here until it is back");
            crate::metrics::background_error(LOOP);
        }
        Some(Change::Back) => {
            tracing::info!(%subject, "the connection to NATS is back: serving requests again")
        }
        Some(Change::LostAndBack) => {
            static MISSED: Throttle = Throttle::new(LOG_EVERY);
            warn_throttled!(MISSED, %subject,
                "the connection to NATS was lost and made again: requests meanwhile were not served here");
            crate::metrics::background_error(LOOP);
        }
    }
}

/// A reply: optional error header and body.
struct Reply {
    header: Option<(&'static str, String)>,
    body: bytes::Bytes,
}

impl Reply {
    fn error(text: impl std::fmt::Display) -> Reply {
        Reply {
            header: Some((ERROR_HEADER, header_safe(text.to_string()))),
            body: bytes::Bytes::new(),
        }
    }

    fn terminate(text: impl std::fmt::Display) -> Reply {
        Reply {
            header: Some((TERMINATE_HEADER, header_safe(text.to_string()))),
            body: bytes::Bytes::new(),
        }
    }
}

/// Header values are one non-empty line.
pub(super) fn header_safe(text: String) -> String {
    let text = text.replace(['\r', '\n'], " ");
    let text = text.trim();
    if text.is_empty() {
        "handler failed".to_string()
    } else {
        text.to_string()
    }
}

async fn answer(nc: async_nats::Client, handler: BoxHandler, msg: async_nats::Message) {
    let Some(reply_to) = msg.reply.clone() else {
        static NO_REPLY: Throttle = Throttle::new(LOG_EVERY);
        warn_throttled!(NO_REPLY, subject = %msg.subject, "ignoring a task request without a reply subject");
        crate::metrics::background_error(LOOP);
        return;
    };
    let reply = handle_request(&nc, handler, &msg).await;
    let sent = match reply.header {
        Some((name, value)) => {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.as_str());
            nc.publish_with_headers(reply_to, headers, reply.body).await
        }
        None => nc.publish(reply_to, reply.body).await,
    };
    if let Err(e) = sent {
        static UNSENT: Throttle = Throttle::new(LOG_EVERY);
        warn_throttled!(UNSENT, subject = %msg.subject, error = %e, "sending request-reply answer failed");
        crate::metrics::background_error(LOOP);
    }
}

/// Fires `cancel` when a notice arrives on the task's cancel subject (the
/// request's `AJ-Cancel-Subject`, checked to be one); `None` without one,
/// or when the subscription is refused (the worker stops the try anyway).
async fn watch_cancel(
    nc: &async_nats::Client,
    subject: Option<String>,
    cancel: CancellationToken,
) -> Option<JoinHandle<()>> {
    let subject = subject.filter(|s| {
        s.strip_prefix(crate::task::cancel::CANCEL_SUBJECT_PREFIX)
            .is_some_and(|rest| rest.split('.').count() == 2 && !rest.contains(['*', '>', ' ']))
    })?;
    let mut sub = nc.subscribe(subject).await.ok()?;
    Some(tokio::spawn(async move {
        if sub.next().await.is_some() {
            cancel.cancel();
        }
    }))
}

async fn handle_request(
    nc: &async_nats::Client,
    handler: BoxHandler,
    msg: &async_nats::Message,
) -> Reply {
    let get = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
    };
    if let Some(ct) = get(CONTENT_TYPE_HEADER) {
        if ct != TASK_CONTENT_TYPE {
            return Reply::error(format!(
                "unsupported content type {ct:?}, expected {TASK_CONTENT_TYPE:?}"
            ));
        }
    }
    let task = match Task::from_json(&msg.payload) {
        Ok(t) => t,
        Err(e) => return Reply::error(format!("invalid task request: {e}")),
    };
    let deadline = match get(DEADLINE_HEADER) {
        None => None,
        Some(v) => match crate::wire::parse_time(&v) {
            Ok(t) => Some(t),
            Err(e) => return Reply::error(format!("invalid {DEADLINE_HEADER} {v:?}: {e}")),
        },
    };
    let cancel = CancellationToken::new();
    let ctx = TaskContext {
        task: Arc::new(task.clone()),
        cancel: cancel.clone(),
        lease: None,
        deadline,
        traceparent: get("traceparent"),
    };
    let id = task.id.clone();
    let watch = watch_cancel(nc, get(CANCEL_SUBJECT_HEADER), cancel.clone()).await;
    // the watch ends with the request, however it ends
    let _unwatch = watch.map(AbortOnDrop);
    let mut join = tokio::spawn(async move { handler.call(ctx, task).await });
    let until = deadline.map(|d| to_std(d - OffsetDateTime::now_utc()));
    let outcome = tokio::select! {
        r = &mut join => r,
        _ = tokio::time::sleep(until.unwrap_or_default()), if until.is_some() => {
            cancel.cancel();
            join.abort();
            tracing::warn!(task = %id, "remote handler did not finish before its deadline");
            return Reply::error(format!(
                "handler did not finish before its deadline {}",
                get(DEADLINE_HEADER).unwrap_or_default()
            ));
        }
    };
    match outcome {
        Ok(Ok(output)) => Reply {
            header: None,
            body: bytes::Bytes::copy_from_slice(output.get().as_bytes()),
        },
        Ok(Err(e)) if e.is_terminate() => Reply::terminate(e.message()),
        Ok(Err(e)) => Reply::error(e.message()),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let text = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            tracing::error!(task = %id, panic = %text, "remote handler panicked");
            Reply::error(format!("handler panicked: {text}"))
        }
        Err(_) => Reply::error("handler was cancelled"),
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
