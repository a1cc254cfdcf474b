//! [`QueueSettings`]: what handlers declare about their queue, compared
//! with the queue the server has and laid over the creation defaults.

use crate::queue::Queue;
use std::time::Duration;

/// Settings a handler declares for its queue, applied when
/// `asyncjobs::main!()` creates the queue (an existing queue keeps its own:
/// the first creator wins).
///
/// Set with `#[task_handler(..., queue_run_time = "10m", queue_max_tries = 50,
/// queue_concurrency = 20)]`; `None` leaves the queue default (`DEFAULT`:
/// 1 minute run time, 100 tries, 100 concurrent handlers; other queues:
/// 1 hour, unlimited, 100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSettings {
    /// How long a handler may run before its task is redelivered
    /// ([`Queue::max_run_time`]).
    pub max_run_time: Option<Duration>,
    /// Deliveries per task before it expires, `0` for unlimited
    /// ([`Queue::max_tries`]).
    pub max_tries: Option<i64>,
    /// Handlers running at once across every worker of the queue
    /// ([`Queue::max_concurrent`]).
    pub max_concurrent: Option<i64>,
}

impl QueueSettings {
    /// The declared settings `queue` (as the server has it) does not
    /// have, as `name declared X, the queue has Y`; empty when it agrees.
    pub fn differences(&self, queue: &Queue) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(d) = self.max_run_time {
            if d != queue.effective_max_run_time() {
                out.push(format!(
                    "queue_run_time declared {}, the queue has {}",
                    crate::wire::format_duration(d),
                    crate::wire::format_duration(queue.effective_max_run_time())
                ));
            }
        }
        if let Some(n) = self.max_tries {
            let has = queue.max_tries.max(0);
            if n.max(0) != has {
                out.push(format!(
                    "queue_max_tries declared {n}, the queue has {has} (0: unlimited)"
                ));
            }
        }
        if let Some(n) = self.max_concurrent {
            if n != queue.effective_max_concurrent() {
                out.push(format!(
                    "queue_concurrency declared {n}, the queue has {}",
                    queue.effective_max_concurrent()
                ));
            }
        }
        out
    }

    /// True when nothing is declared.
    pub fn is_empty(&self) -> bool {
        *self == QueueSettings::default()
    }

    /// `queue` with the declared settings applied.
    pub fn apply(&self, mut queue: Queue) -> Queue {
        if let Some(d) = self.max_run_time {
            queue.max_run_time = d;
        }
        if let Some(n) = self.max_tries {
            queue.max_tries = n;
        }
        if let Some(n) = self.max_concurrent {
            queue.max_concurrent = n;
        }
        queue
    }
}
