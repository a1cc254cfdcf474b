//! The worker side of request-reply: [`RequestReply`], a handler that sends
//! the task to a service and turns its reply into the task's outcome.

use super::{
    subject_for, to_std, CANCEL_SUBJECT_HEADER, CONTENT_TYPE_HEADER, DEADLINE_HEADER, ERROR_HEADER,
    TASK_CONTENT_TYPE, TERMINATE_HEADER, TRACEPARENT_HEADER,
};
use crate::handler::{to_output, Handler, HandlerError, HandlerResult, TaskContext};
use crate::task::Task;
use async_nats::HeaderMap;
use base64::Engine;
use futures::future::BoxFuture;
use std::time::Duration;
use time::OffsetDateTime;

/// A request needs at least this long before the handler deadline.
const MIN_DEADLINE: Duration = Duration::from_secs(3);
/// The service is told to reply this long before the handler deadline.
const SERVICE_MARGIN: time::Duration = time::Duration::seconds(2);
/// The worker stops waiting for a reply this long before the handler deadline.
const REPLY_MARGIN: Duration = Duration::from_secs(1);

/// `deadline − 2 s`, truncated to whole seconds, as RFC 3339 UTC.
pub(super) fn deadline_header_value(deadline: OffsetDateTime) -> String {
    let t = (deadline - SERVICE_MARGIN)
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    crate::wire::format_time(&t)
}

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
/// | other reply | `complete`, result = base64 of the body (see [`reply_payload`](super::reply_payload)) |
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
    // where a cancel of the task is announced, for the service to stop too
    headers.insert(
        CANCEL_SUBJECT_HEADER,
        crate::task::cancel::cancel_subject(task.queue_or_default(), &task.id).as_str(),
    );
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
