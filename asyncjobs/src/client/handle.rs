//! Typed handles to enqueued tasks, as returned by the `enqueue` helpers
//! `#[task_handler]` generates.

use crate::client::Client;
use crate::error::Error;
use crate::task::{Task, TaskState};
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// An enqueued task whose result decodes as `T`.
///
/// ```no_run
/// #[asyncjobs::task_handler("math:double")]
/// async fn double(n: i64) -> Result<i64, asyncjobs::HandlerError> { Ok(n * 2) }
///
/// # fn main() {}
/// # async fn demo(client: asyncjobs::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let handle = double::enqueue(&client, 21).await?;
/// println!("enqueued {}", handle.id());
/// let answer: i64 = handle.wait(&client, std::time::Duration::from_secs(30)).await?;
/// assert_eq!(answer, 42);
/// # Ok(()) }
/// ```
pub struct TaskHandle<T> {
    id: String,
    _output: PhantomData<fn() -> T>,
}

impl<T> Clone for TaskHandle<T> {
    fn clone(&self) -> Self {
        TaskHandle::new(self.id.clone())
    }
}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("output", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> TaskHandle<T> {
    /// A handle for an existing task id whose result is a `T`.
    pub fn new(id: impl Into<String>) -> TaskHandle<T> {
        TaskHandle {
            id: id.into(),
            _output: PhantomData,
        }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Loads the task's current record.
    pub async fn load(&self, client: &Client) -> crate::Result<Task> {
        client.load_task(&self.id).await
    }
}

impl<T: DeserializeOwned> TaskHandle<T> {
    /// The decoded result once the task is complete, `None` before.
    pub async fn result(&self, client: &Client) -> crate::Result<Option<T>> {
        let task = self.load(client).await?;
        if task.state != TaskState::Complete {
            return Ok(None);
        }
        task.result_as()
    }

    /// Polls the task until it completes and returns its result; fails when
    /// it reaches another final state (expired, terminated, …) or `timeout`
    /// passes first.
    pub async fn wait(&self, client: &Client, timeout: Duration) -> Result<T, WaitError> {
        use futures::StreamExt;
        let started = Instant::now();
        // Subscribe before loading, so a change between the load and the
        // subscription cannot be missed; every event triggers a reload (the
        // record, not the event, is the truth). Events are best effort, so
        // the record is also re-read every second.
        let mut events = client.watch_task(&self.id).await?;
        loop {
            let task = self.load(client).await?;
            match task.state {
                TaskState::Complete => {
                    return task
                        .result_as::<T>()?
                        .ok_or_else(|| WaitError::Failed(Box::new(task)))
                }
                s if s.is_final() => return Err(WaitError::Failed(Box::new(task))),
                _ if started.elapsed() >= timeout => {
                    return Err(WaitError::Timeout {
                        timeout,
                        task: Box::new(task),
                    })
                }
                _ => {}
            }
            let left = timeout.saturating_sub(started.elapsed());
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), events.next()).await;
        }
    }
}

/// Why [`TaskHandle::wait`] did not return a result. `{:?}` prints the
/// message (not the task's payload bytes).
#[derive(thiserror::Error)]
pub enum WaitError {
    /// Loading or decoding the task failed.
    #[error(transparent)]
    Client(#[from] Error),
    /// The task reached a final state other than `complete`.
    #[error("task {} ended {}: {}", .0.id, .0.state, .0.last_err)]
    Failed(Box<Task>),
    /// The task was not final in time.
    #[error("task {} still {} after {timeout:?}{}{}", task.id, task.state, last_error(task), not_taken(task))]
    Timeout {
        /// How long was waited.
        timeout: Duration,
        /// The task as last seen.
        task: Box<Task>,
    },
}

impl fmt::Debug for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            WaitError::Client(_) => "Client",
            WaitError::Failed(_) => "Failed",
            WaitError::Timeout { .. } => "Timeout",
        };
        crate::error::debug_as_message(f, self, variant)
    }
}

/// A hint when no worker has taken the task yet.
fn not_taken(task: &Task) -> String {
    if task.state == TaskState::New && task.tries == 0 {
        format!(
            " (no worker has taken it: is a worker running for queue {}?)",
            task.queue
        )
    } else {
        String::new()
    }
}

fn last_error(task: &Task) -> String {
    if task.last_err.is_empty() {
        String::new()
    } else {
        format!(" (last error: {})", task.last_err)
    }
}

impl WaitError {
    /// The task as last seen, when it was loaded.
    pub fn task(&self) -> Option<&Task> {
        match self {
            WaitError::Client(_) => None,
            WaitError::Failed(t) | WaitError::Timeout { task: t, .. } => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_no_worker_took_says_so_and_debug_hides_the_payload() {
        let mut task = Task::new("report:build", &vec![1u8; 64]).unwrap();
        task.queue = "REPORTS".into();
        let e = WaitError::Timeout {
            timeout: Duration::from_secs(5),
            task: Box::new(task.clone()),
        };
        assert!(
            e.to_string()
                .ends_with("(no worker has taken it: is a worker running for queue REPORTS?)"),
            "{e}"
        );
        assert_eq!(format!("{e:?}"), e.to_string());
        task.state = TaskState::Retry;
        task.tries = 1;
        let e = WaitError::Timeout {
            timeout: Duration::from_secs(5),
            task: Box::new(task),
        };
        assert!(!e.to_string().contains("no worker"), "{e}");
    }
}
