//! Handlers outside the process: NATS request-reply services and external
//! commands (docs/processing.md §6.2 and §6.4).
//!
//! * [`RequestReply`] is a [`Handler`](crate::Handler) that sends the task
//!   to a service on `CHORIA_AJ.H.T.<type>` and turns the reply into the
//!   task's outcome. Any language with a NATS client can serve it (see
//!   `examples/remote-python/`).
//! * [`RequestReplyServer`] is the serving side in Rust: it runs an ordinary
//!   [`Handler`](crate::Handler) (a closure, [`typed`](crate::typed), …) for
//!   requests from Go or Rust workers, in a queue group.
//! * [`ExternalCommand`] is a [`Handler`](crate::Handler) that runs a
//!   program with the task JSON in a temporary file named by
//!   `CHORIA_AJ_TASK`.
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
//!   time, [`TaskContext::handler_deadline`](crate::TaskContext::handler_deadline)). The Go worker has none and
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
//! * An external command is finished when its process exits: its output is
//!   read for a short grace after that, then what it left in its process
//!   group is ended (Go reads until the pipes close, so a background
//!   process holding them keeps the try running; docs/go-differences.md
//!   §61).

// one file each: the worker side of request-reply (request_reply), its
// serving side (server), external commands (command) and, on Linux, the
// supervisor that kills a command's processes when the worker dies
mod command;
mod request_reply;
mod server;
#[cfg(target_os = "linux")]
mod supervisor;
#[cfg(test)]
mod tests;

pub use command::ExternalCommand;
pub use request_reply::RequestReply;
pub use server::{RequestReplyServer, RunningServer};

use crate::task::TaskResult;
use base64::Engine;
use std::time::Duration;

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
/// Request header naming the core NATS subject a cancel notice of the task
/// is published on (`CHORIA_AJ.CANCEL.<queue>.<id>`): a service may
/// subscribe to it to stop its work when the task is cancelled
/// (docs/processing.md §6.2; not sent by Go).
pub const CANCEL_SUBJECT_HEADER: &str = "AJ-Cancel-Subject";
/// Header carrying the W3C trace context to request-reply handlers.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The queue group [`RequestReplyServer`] joins unless told otherwise.
pub const DEFAULT_QUEUE_GROUP: &str = "asyncjobs";

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

/// `d` as a std duration, zero when negative.
fn to_std(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}
