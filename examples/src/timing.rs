//! A middleware that logs and times every task, per handler: one line
//! when the task starts and one when it ends, with its type, id, try,
//! duration and outcome. `src/bin/timed-worker.rs` runs the email handlers
//! with it.
//!
//! ```
//! use asyncjobs::router::from_fn;
//! use asyncjobs::testing::{TestTask, TestWorker};
//! use asyncjobs_examples::{email, timing};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> asyncjobs::Result<()> {
//! let worker = TestWorker::new()
//!     .middleware(from_fn(timing::log_and_time))
//!     .handler(email::send_email::HANDLER)?;
//! let task = TestTask::for_handler(email::send_email::HANDLER).payload(&email::NewEmail {
//!     to: "a@example.net".into(),
//!     subject: "hi".into(),
//! });
//! // the middleware passes the handler's result through
//! let receipt: email::Receipt = worker.run(task).await.result().unwrap();
//! assert_eq!(receipt.attempt, 1);
//! # Ok(()) }
//! ```

use asyncjobs::router::Next;
use asyncjobs::{HandlerResult, Task, TaskContext};
use std::time::Instant;

/// Logs the start and end of a task at INFO (a failed try at WARN) with
/// the `target` `asyncjobs_examples::timing`, and records how long the
/// handler took in milliseconds (`elapsed_ms`). Use it with
/// [`asyncjobs::router::from_fn`]:
/// `asyncjobs::main!(middleware = from_fn(log_and_time))`.
pub async fn log_and_time(ctx: TaskContext, task: Task, next: Next) -> HandlerResult {
    let (task_type, id, try_) = (task.task_type.clone(), task.id.clone(), ctx.tries());
    tracing::info!(r#type = %task_type, id = %id, try_, "task started");
    let started = Instant::now();
    let result = next.run(ctx, task).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match &result {
        Ok(_) => tracing::info!(r#type = %task_type, id = %id, try_, elapsed_ms, "task completed"),
        Err(e) => tracing::warn!(
            r#type = %task_type,
            id = %id,
            try_,
            elapsed_ms,
            terminate = e.is_terminate(),
            error = %e,
            "task failed"
        ),
    }
    result
}
