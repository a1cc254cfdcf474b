//! Handlers outside the process: NATS request-reply services and external
//! commands (docs/processing.md §6.2 and §6.4).
//!
//! * [`RequestReply`] is a [`Handler`] that sends the task to a service on
//!   `CHORIA_AJ.H.T.<type>` and turns the reply into the task's outcome. Any
//!   language with a NATS client can serve it (see `examples/remote-python/`).
//! * [`RequestReplyServer`] is the serving side in Rust: it runs an ordinary
//!   [`Handler`] (a closure, [`typed`](crate::typed), …) for requests from Go
//!   or Rust workers, in a queue group.
//! * [`ExternalCommand`] is a [`Handler`] that runs a program with the task
//!   JSON in a temporary file named by `CHORIA_AJ_TASK`.
//!
//! ## The request-reply protocol
//!
//! The worker publishes the task JSON (state `active`, `tries` already
//! counted) to `CHORIA_AJ.H.T.<type>` (`CHORIA_AJ.H.T.catchall` for the
//! catch-all type `""`) with the headers
//!
//! | Header | Value |
//! |---|---|
//! | `AJ-Content-Type` | `application/x-asyncjobs-task+json` |
//! | `AJ-Handler-Deadline` | handler deadline − 2 s, UTC, RFC 3339 without fraction (`2022-02-09T17:34:31Z`) |
//!
//! and reads one reply:
//!
//! | Reply | Outcome |
//! |---|---|
//! | header `AJ-Terminate: <text>` | task `terminated`, `last_err` = `<text>: terminate task` |
//! | header `AJ-Error: <text>` | retried, `last_err` = `<text>` |
//! | anything else | `complete`; the reply body is the result |
//!
//! **The result is stored as Go stores it:** the Go worker keeps the reply
//! body as a `[]byte`, which its JSON encoder writes as a base64 *string*, so
//! `result.payload` is `"<base64 of the body>"`, not the body itself. This
//! crate does the same so Go and Rust readers see the same record; decode it
//! with [`reply_payload`] (and then as JSON if the service replied with JSON,
//! as [`RequestReplyServer`] does).
//!
//! ## Where this differs from the Go implementation
//!
//! * The deadline is the real handler deadline (start + the queue's max run
//!   time, [`TaskContext::handler_deadline`]). The Go worker has none and
//!   fails every request-reply task with `request-reply requires deadline
//!   context` (docs/go-differences.md §33).
//! * The worker waits for the reply until one second before the handler
//!   deadline (Go waits for the deadline itself, racing its own cancellation),
//!   so a silent service is reported as `request-reply callout failed:
//!   timed out …` rather than as a generic run-time overrun.
//! * External commands: only stdout is the result; a failure's `last_err`
//!   carries the exit status *and* the end of stderr; the command runs in its
//!   own process group, and the whole group is killed at the deadline, on
//!   cancellation, or when the worker abandons the handler. On Linux the
//!   group is also killed when the worker process dies, even by `kill -9`
//!   (Go leaves the command running as an orphan, so a retry overlaps it).

use crate::error::{NatsError, NatsErrorKind};
use crate::handler::{to_output, BoxHandler, Handler, HandlerError, HandlerResult, TaskContext};
use crate::task::{is_valid_name, Task, TaskResult};
use async_nats::HeaderMap;
use base64::Engine;
use futures::future::BoxFuture;
use futures::StreamExt;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Request subjects are this prefix followed by the task type.
pub const SUBJECT_PREFIX: &str = "CHORIA_AJ.H.T.";
/// Header naming the request body's content type.
pub const CONTENT_TYPE_HEADER: &str = "AJ-Content-Type";
/// The content type of a task request.
pub const TASK_CONTENT_TYPE: &str = "application/x-asyncjobs-task+json";
/// Header carrying the time by which the service must reply.
pub const DEADLINE_HEADER: &str = "AJ-Handler-Deadline";
/// Reply header: the task failed with this text and will be retried.
pub const ERROR_HEADER: &str = "AJ-Error";
/// Reply header: the task failed with this text and must not be retried.
pub const TERMINATE_HEADER: &str = "AJ-Terminate";
/// Environment variable naming the task file given to external commands.
pub const TASK_FILE_ENV: &str = "CHORIA_AJ_TASK";
/// Header carrying the W3C trace context to request-reply handlers.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The queue group [`RequestReplyServer`] joins unless told otherwise.
pub const DEFAULT_QUEUE_GROUP: &str = "asyncjobs";

/// A request needs at least this long before the handler deadline.
const MIN_DEADLINE: Duration = Duration::from_secs(3);
/// The service is told to reply this long before the handler deadline.
const SERVICE_MARGIN: time::Duration = time::Duration::seconds(2);
/// The worker stops waiting for a reply this long before the handler deadline.
const REPLY_MARGIN: Duration = Duration::from_secs(1);
/// How much of a failing command's stderr goes into `last_err`.
const STDERR_LIMIT: usize = 4096;

/// The request subject for a task type: `CHORIA_AJ.H.T.<type>`, or
/// `CHORIA_AJ.H.T.catchall` for the catch-all type `""`.
///
/// ```
/// assert_eq!(asyncjobs::remote::subject_for("email:new"), "CHORIA_AJ.H.T.email:new");
/// assert_eq!(asyncjobs::remote::subject_for(""), "CHORIA_AJ.H.T.catchall");
/// ```
pub fn subject_for(task_type: &str) -> String {
    if task_type.is_empty() {
        format!("{SUBJECT_PREFIX}catchall")
    } else {
        format!("{SUBJECT_PREFIX}{task_type}")
    }
}

/// The reply body a request-reply service returned, decoded from the
/// base64 string Go-compatible workers store in `result.payload`.
///
/// ```
/// # fn demo(task: asyncjobs::Task) -> asyncjobs::Result<()> {
/// if let Some(result) = &task.result {
///     let body = asyncjobs::remote::reply_payload(result)?;
///     println!("the service replied {}", String::from_utf8_lossy(&body));
/// }
/// # Ok(()) }
/// ```
pub fn reply_payload(result: &TaskResult) -> crate::Result<Vec<u8>> {
    let encoded: String = result.decode()?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| crate::Error::Config(format!("result is not a base64 reply body: {e}")))
}

fn to_std(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// `deadline − 2 s`, truncated to whole seconds, as RFC 3339 UTC.
fn deadline_header_value(deadline: OffsetDateTime) -> String {
    let t = (deadline - SERVICE_MARGIN)
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    crate::wire::format_time(&t)
}

// ----- request-reply: worker side -------------------------------------------------------

/// A handler that delegates tasks to a NATS request-reply service
/// (docs/processing.md §6.2; Go's `Mux.RequestReply`).
///
/// The subject comes from the task type given here (the type the route is
/// registered for), so a catch-all route `""` calls `CHORIA_AJ.H.T.catchall`.
/// The handler needs at least 3 s before the handler deadline, so give the
/// queue a max run time comfortably above that.
///
/// | What happens | Task outcome |
/// |---|---|
/// | reply with `AJ-Terminate: x` | `terminated`, `last_err` `x: terminate task` |
/// | reply with `AJ-Error: x` | retried, `last_err` `x` |
/// | other reply | `complete`, result = base64 of the body (see [`reply_payload`]) |
/// | no service listening | retried, `request-reply callout failed: nats: no responders available for request …` |
/// | no reply in time | retried, `request-reply callout failed: timed out …` |
/// | less than 3 s to the deadline | retried, `deadline too short: …` |
///
/// ```no_run
/// use asyncjobs::{remote::RequestReply, Client, Router};
/// # async fn demo() -> asyncjobs::Result<()> {
/// let client = Client::connect("nats://127.0.0.1:4222").await?;
/// let router = Router::new()
///     .handle("email:new", RequestReply::new(client.nats().clone(), "email:new"))?;
/// client.worker(router).run(tokio_util::sync::CancellationToken::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RequestReply {
    nc: async_nats::Client,
    subject: String,
}

impl RequestReply {
    /// Calls the service for `task_type` over `nc`.
    pub fn new(nc: async_nats::Client, task_type: &str) -> RequestReply {
        RequestReply {
            nc,
            subject: subject_for(task_type),
        }
    }

    /// The subject requests are sent to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl std::fmt::Debug for RequestReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestReply")
            .field("subject", &self.subject)
            .finish()
    }
}

impl Handler for RequestReply {
    fn call(&self, ctx: TaskContext, task: Task) -> BoxFuture<'static, HandlerResult> {
        let nc = self.nc.clone();
        let subject = self.subject.clone();
        Box::pin(async move { request(nc, subject, ctx, task).await })
    }
}

async fn request(
    nc: async_nats::Client,
    subject: String,
    ctx: TaskContext,
    task: Task,
) -> HandlerResult {
    let Some(deadline) = ctx.handler_deadline() else {
        return Err(HandlerError::retry(
            "request-reply requires deadline context",
        ));
    };
    let left = to_std(deadline - OffsetDateTime::now_utc());
    if left < MIN_DEADLINE {
        return Err(HandlerError::retry(format!(
            "deadline too short: request-reply needs at least {}s before the handler deadline, \
             {:.1}s left (raise the queue's max run time)",
            MIN_DEADLINE.as_secs(),
            left.as_secs_f64()
        )));
    }
    let body = task
        .to_json()
        .map_err(|e| HandlerError::retry(format!("could not encode task: {e}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE_HEADER, TASK_CONTENT_TYPE);
    headers.insert(DEADLINE_HEADER, deadline_header_value(deadline).as_str());
    // the remote handler continues this try's trace
    if let Some(tp) = crate::spans::traceparent(&tracing::Span::current(), ctx.traceparent.clone())
    {
        headers.insert(TRACEPARENT_HEADER, tp.as_str());
    }
    let wait = left - REPLY_MARGIN;
    let req = async_nats::Request::new()
        .headers(headers)
        .payload(body.into())
        .timeout(Some(wait));
    tracing::debug!(task = %task.id, %subject, "calling request-reply handler");
    let reply = tokio::select! {
        r = nc.send_request(subject.clone(), req) => r,
        _ = ctx.cancelled() => {
            return Err(HandlerError::retry(format!(
                "request-reply callout failed: cancelled while waiting for {subject}"
            )));
        }
    };
    let msg = reply.map_err(|e| {
        use async_nats::RequestErrorKind as K;
        HandlerError::retry(match e.kind() {
            K::NoResponders => format!(
                "request-reply callout failed: nats: no responders available for request \
                 (nothing is serving {subject})"
            ),
            K::TimedOut => format!(
                "request-reply callout failed: timed out: no reply from {subject} within {:.1}s",
                wait.as_secs_f64()
            ),
            _ => format!("request-reply callout failed: {e}"),
        })
    })?;
    interpret_reply(&msg)
}

fn header<'a>(msg: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    msg.headers
        .as_ref()?
        .get(name)
        .map(|v| v.as_str())
        .filter(|v| !v.is_empty())
}

fn interpret_reply(msg: &async_nats::Message) -> HandlerResult {
    if let Some(v) = header(msg, TERMINATE_HEADER) {
        return Err(HandlerError::terminate(format!("{v}: terminate task")));
    }
    if let Some(v) = header(msg, ERROR_HEADER) {
        return Err(HandlerError::retry(v));
    }
    to_output(&base64::engine::general_purpose::STANDARD.encode(&msg.payload))
}

// ----- request-reply: service side ------------------------------------------------------

/// Serves one task type as a request-reply handler (the other end of
/// [`RequestReply`], for Go and Rust workers alike).
///
/// Each request runs `handler` with a [`TaskContext`] whose
/// [`handler_deadline`](TaskContext::handler_deadline) is the request's
/// `AJ-Handler-Deadline`; a handler still running then is cancelled and
/// answered with `AJ-Error`. Successful output is the reply body (the JSON the
/// handler produced), a retryable error is `AJ-Error`, a terminating one
/// `AJ-Terminate`, and a panic `AJ-Error: handler panicked: …` — the service
/// keeps running. [`TaskContext::mark_in_progress`] is not available to
/// remote handlers (the work item belongs to the worker).
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
        let handle = tokio::spawn(serve(
            self.nc,
            sub,
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

async fn serve(
    nc: async_nats::Client,
    mut sub: async_nats::Subscriber,
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
fn header_safe(text: String) -> String {
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
        tracing::warn!(subject = %msg.subject, "ignoring a task request without a reply subject");
        return;
    };
    let reply = handle_request(handler, &msg).await;
    let sent = match reply.header {
        Some((name, value)) => {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.as_str());
            nc.publish_with_headers(reply_to, headers, reply.body).await
        }
        None => nc.publish(reply_to, reply.body).await,
    };
    if let Err(e) = sent {
        tracing::warn!(subject = %msg.subject, error = %e, "sending request-reply answer failed");
    }
}

async fn handle_request(handler: BoxHandler, msg: &async_nats::Message) -> Reply {
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

// ----- external commands ----------------------------------------------------------------

/// A handler that runs a program for each task (docs/processing.md §6.4; Go's
/// `Mux.ExternalProcess`).
///
/// The program is run with no arguments, stdin closed, and an environment
/// holding only `CHORIA_AJ_TASK=<file>` (plus anything added with
/// [`env`](Self::env)), where `<file>` is a temporary file
/// (`asyncjobs-task*` in the system temp directory) holding the task JSON. The
/// file is removed afterwards in every case.
///
/// * exit status 0: the task completes; its result is stdout as a JSON
///   string (as Go stores it), e.g. `"done\n"`.
/// * non-zero exit: retried with `last_err` `execution failed: exit status
///   <n>: <end of stderr>` (Go stops after `exit status <n>`).
/// * still running at the handler deadline: the program and every process
///   in its process group are killed and the try fails with `execution
///   failed: signal: killed: still running at the handler deadline …` (plus
///   the end of stderr). The kill comes slightly early — a quarter of the
///   run time, at most 1 s, before the deadline — so this message, rather
///   than the worker's generic time-out, ends up in `last_err`. The group is
///   also killed when the handler is cancelled (worker shutdown) or its
///   future is dropped.
/// * the worker process dies (Linux): the group is killed too, so a task
///   never runs twice at once — its retry waits for the first try's lease
///   (the queue's run time plus a margin), by which time nothing of the
///   first try is left. The process the worker spawns forks once more and
///   stays as a tiny supervisor (it never execs, exits as the command did,
///   and is the pid and process group leader the worker sees); it kills the
///   group within ~0.1 s of the worker's death. Processes that leave the
///   group (`setsid`, `setpgid`, daemonising) are not covered. On other
///   Unix systems only the process group is used.
/// * a missing program: `command not found: <path>` at construction and on
///   each call.
///
/// ```no_run
/// use asyncjobs::{remote::ExternalCommand, Router};
/// # fn demo() -> asyncjobs::Result<()> {
/// let router = Router::new()
///     .handle("webhook:call", ExternalCommand::new("/usr/local/bin/webhook-call")?)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ExternalCommand {
    path: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl ExternalCommand {
    /// Runs the program at `path` (a relative path is resolved against the
    /// current directory now). Fails with `command not found: <path>` if it
    /// does not exist or is a directory.
    pub fn new(path: impl AsRef<Path>) -> crate::Result<ExternalCommand> {
        let path = std::path::absolute(path.as_ref())
            .map_err(|e| crate::Error::Config(format!("command not found: {e}")))?;
        check_command(&path).map_err(crate::Error::Config)?;
        Ok(ExternalCommand {
            path,
            env: Vec::new(),
        })
    }

    /// Adds an environment variable for the program (by default it gets
    /// only `CHORIA_AJ_TASK`, not even `PATH`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The program's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn check_command(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Ok(()),
        _ => Err(format!("command not found: {}", path.display())),
    }
}

impl Handler for ExternalCommand {
    fn call(&self, ctx: TaskContext, task: Task) -> BoxFuture<'static, HandlerResult> {
        let cmd = self.clone();
        Box::pin(async move { cmd.run(ctx, task).await })
    }
}

/// Why the program was killed.
enum Stop {
    Exited(std::io::Result<std::process::ExitStatus>),
    Deadline,
    Cancelled,
}

/// Kills the process group and stops the pipe readers if the handler ends
/// (or is dropped by the worker) while the program may still run.
struct ProcessGuard {
    pid: Option<u32>,
    armed: bool,
    readers: Vec<JoinHandle<()>>,
}

impl ProcessGuard {
    fn kill_group(&self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions; a negative
            // pid addresses the process group the child leads (it was
            // started with `process_group(0)`).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if self.armed {
            self.kill_group();
        }
        for r in &self.readers {
            r.abort();
        }
    }
}

fn spawn_reader(
    pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    buf: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.lock()
                .expect("pipe buffer")
                .extend_from_slice(&chunk[..n]);
        }
    })
}

/// The end of stderr, trimmed, at most [`STDERR_LIMIT`] bytes.
fn stderr_tail(buf: &[u8]) -> String {
    let text = String::from_utf8_lossy(buf);
    let text = text.trim();
    if text.len() <= STDERR_LIMIT {
        return text.to_string();
    }
    let mut start = text.len() - STDERR_LIMIT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Go's `exec.ExitError` wording: `exit status N` or `signal: killed`.
fn describe_status(status: &std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                1 => "hangup".to_string(),
                2 => "interrupt".to_string(),
                6 => "aborted".to_string(),
                9 => "killed".to_string(),
                11 => "segmentation fault".to_string(),
                13 => "broken pipe".to_string(),
                15 => "terminated".to_string(),
                n => format!("signal {n}"),
            };
            return format!("signal: {name}");
        }
    }
    status.to_string()
}

impl ExternalCommand {
    async fn run(self, ctx: TaskContext, task: Task) -> HandlerResult {
        check_command(&self.path).map_err(HandlerError::retry)?;
        let json = task
            .to_json()
            .map_err(|e| HandlerError::retry(format!("could not encode task: {e}")))?;
        // Removed when dropped: on every return path and when the worker
        // drops this future.
        let task_file = write_task_file(&json).map_err(|e| {
            HandlerError::retry(format!("execution failed: writing the task file: {e}"))
        })?;

        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.env_clear().env(TASK_FILE_ENV, &task_file);
        // the command continues this try's trace (W3C TRACEPARENT, as
        // OpenTelemetry's environment-variable propagation names it)
        if let Some(tp) =
            crate::spans::traceparent(&tracing::Span::current(), ctx.traceparent.clone())
        {
            cmd.env("TRACEPARENT", tp);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        supervisor::install(&mut cmd);
        let started = std::time::Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| HandlerError::retry(format!("execution failed: {e}")))?;
        let (stdout, stderr) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let mut guard = ProcessGuard {
            pid: child.id(),
            armed: true,
            readers: vec![
                spawn_reader(child.stdout.take(), stdout.clone()),
                spawn_reader(child.stderr.take(), stderr.clone()),
            ],
        };
        tracing::debug!(task = %task.id, command = %self.path.display(), pid = ?guard.pid, "started external command");

        // Kill slightly before the handler deadline so the failure names the
        // command rather than being a generic run-time overrun.
        let kill_in = ctx.handler_deadline().map(|d| {
            let left = to_std(d - OffsetDateTime::now_utc());
            left.saturating_sub((left / 4).min(Duration::from_secs(1)))
        });
        let stop = {
            let readers = &mut guard.readers;
            let finished = async {
                let status = child.wait().await;
                for r in readers.iter_mut() {
                    let _ = r.await;
                }
                status
            };
            tokio::select! {
                s = finished => Stop::Exited(s),
                _ = tokio::time::sleep(kill_in.unwrap_or_default()), if kill_in.is_some() => Stop::Deadline,
                _ = ctx.cancelled() => Stop::Cancelled,
            }
        };
        let status = match stop {
            Stop::Exited(Ok(status)) => {
                guard.armed = false;
                status
            }
            Stop::Exited(Err(e)) => {
                return Err(HandlerError::retry(format!("execution failed: {e}")));
            }
            Stop::Deadline | Stop::Cancelled => {
                guard.kill_group();
                let _ = child.kill().await;
                guard.armed = false;
                // the group is gone, so the pipes close; collect what it wrote
                let readers = std::mem::take(&mut guard.readers);
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    futures::future::join_all(readers),
                )
                .await;
                let why = if matches!(stop, Stop::Deadline) {
                    format!(
                        "still running at the handler deadline after {:.1}s",
                        started.elapsed().as_secs_f64()
                    )
                } else {
                    "the handler was cancelled".to_string()
                };
                let tail = stderr_tail(&stderr.lock().expect("pipe buffer"));
                let mut msg = format!("execution failed: signal: killed: {why}");
                if !tail.is_empty() {
                    msg.push_str(": ");
                    msg.push_str(&tail);
                }
                return Err(HandlerError::retry(msg));
            }
        };
        drop(task_file);
        if !status.success() {
            let tail = stderr_tail(&stderr.lock().expect("pipe buffer"));
            let mut msg = format!("execution failed: {}", describe_status(&status));
            if !tail.is_empty() {
                msg.push_str(": ");
                msg.push_str(&tail);
            }
            return Err(HandlerError::retry(msg));
        }
        let out = std::mem::take(&mut *stdout.lock().expect("pipe buffer"));
        to_output(&String::from_utf8_lossy(&out))
    }
}

/// Keeps an external command's processes from outliving the worker.
///
/// The process the worker spawns (the leader of the command's new process
/// group) forks before `exec`: the fork runs the command, and the leader
/// stays behind as a small supervisor that never execs. It waits for the
/// command and exits as it did (same code, or the same signal), and it
/// watches a pipe whose write end only the worker holds: when the worker
/// dies — even by `kill -9` — the pipe reports end of file and the
/// supervisor kills its whole process group, the command and every process
/// the command started that stayed in the group (a shell script's `sleep`).
/// A process that moves to another group or session (`setsid`, `setpgid`,
/// a daemonising double fork) is not covered.
///
/// Everything here runs in the forked child of a multi-threaded process, so
/// it uses only async-signal-safe system calls and never allocates.
#[cfg(target_os = "linux")]
mod supervisor {
    use std::sync::OnceLock;

    /// How often the supervisor looks at the worker's pipe while the
    /// command runs (it notices the command's exit at once).
    const WATCH_NS: libc::c_long = 100_000_000;

    /// (read end, write end), both close-on-exec; the write end stays open
    /// for the life of the worker process.
    static DEATH_PIPE: OnceLock<Option<(libc::c_int, libc::c_int)>> = OnceLock::new();

    fn death_pipe() -> Option<(libc::c_int, libc::c_int)> {
        *DEATH_PIPE.get_or_init(|| {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: pipe2 writes two descriptors into the two-element array.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
            if rc != 0 {
                tracing::warn!(
                    error = %std::io::Error::last_os_error(),
                    "external commands are not supervised: could not create a pipe"
                );
                return None;
            }
            Some((fds[0], fds[1]))
        })
    }

    pub(super) fn install(cmd: &mut tokio::process::Command) {
        let Some((read_fd, _)) = death_pipe() else {
            return;
        };
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls (see `supervise`).
        unsafe {
            cmd.pre_exec(move || supervise(read_fd));
        }
    }

    /// In the spawned child: forks; the fork returns and goes on to exec
    /// the command, this process supervises it and never returns.
    unsafe fn supervise(read_fd: libc::c_int) -> std::io::Result<()> {
        let mut chld: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        // blocked before the fork so the command's exit cannot be missed
        if libc::sigprocmask(libc::SIG_BLOCK, &chld, &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let command = libc::fork();
        if command < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if command == 0 {
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            return Ok(());
        }
        // The supervisor keeps only the pipe's read end: without the write
        // end the pipe ends when the worker dies; without stdout, stderr
        // and the spawn's error pipe, the worker sees those end when the
        // command (not the supervisor) closes them.
        close_all_but(read_fd);
        let wait = libc::timespec {
            tv_sec: 0,
            tv_nsec: WATCH_NS,
        };
        loop {
            let mut status: libc::c_int = 0;
            let r = libc::waitpid(command, &mut status, libc::WNOHANG);
            if r == command {
                exit_as(status);
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
            let mut pfd = libc::pollfd {
                fd: read_fd,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut pfd, 1, 0) > 0 {
                // the worker is gone (or the pipe broke): end the group,
                // this supervisor included
                libc::kill(0, libc::SIGKILL);
                libc::_exit(137);
            }
            libc::sigtimedwait(&chld, std::ptr::null_mut(), &wait);
        }
    }

    unsafe fn close_all_but(keep: libc::c_int) {
        for (from, to) in [(0, keep - 1), (keep + 1, libc::c_int::MAX)] {
            if from > to {
                continue;
            }
            let rc = libc::syscall(
                libc::SYS_close_range,
                from as libc::c_uint,
                to as libc::c_uint,
                0,
            );
            if rc != 0 {
                // kernels before 5.9
                for fd in from..=to.min(65_535) {
                    libc::close(fd);
                }
            }
        }
    }

    /// Ends the supervisor the way the command ended.
    unsafe fn exit_as(status: libc::c_int) -> ! {
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &action, std::ptr::null_mut());
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(127)
    }
}

fn write_task_file(json: &[u8]) -> std::io::Result<tempfile::TempPath> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix("asyncjobs-task")
        .tempfile()?;
    file.write_all(json)?;
    file.flush()?;
    Ok(file.into_temp_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_deadline_header() {
        assert_eq!(subject_for("a:b"), "CHORIA_AJ.H.T.a:b");
        assert_eq!(subject_for(""), "CHORIA_AJ.H.T.catchall");
        let d = time::macros::datetime!(2022-02-09 17:34:33.987654321 UTC);
        assert_eq!(deadline_header_value(d), "2022-02-09T17:34:31Z");
        let d = time::macros::datetime!(2022-02-09 19:34:33.5 +02:00);
        assert_eq!(deadline_header_value(d), "2022-02-09T17:34:31Z");
    }

    #[test]
    fn stderr_is_trimmed_and_bounded() {
        assert_eq!(stderr_tail(b"  boom\n"), "boom");
        let long = "é".repeat(STDERR_LIMIT);
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.starts_with('…'));
        assert!(tail.len() <= STDERR_LIMIT + '…'.len_utf8());
        assert_eq!(header_safe("a\r\nb".into()), "a  b");
        assert_eq!(header_safe(" ".into()), "handler failed");
    }

    #[tokio::test]
    async fn request_reply_needs_a_deadline() {
        let task = Task::new("t", &1).unwrap();
        let ctx = TaskContext::detached(task.clone());
        // never connects: the deadline check comes first
        let nc = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        let err = RequestReply::new(nc, "t")
            .call(ctx, task)
            .await
            .unwrap_err();
        assert_eq!(err.message(), "request-reply requires deadline context");
        assert!(!err.is_terminate());
    }
}
