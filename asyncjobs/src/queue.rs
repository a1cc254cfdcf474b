//! Work queues: a `CHORIA_AJ_Q_<name>` work-queue stream with a `WORKERS`
//! pull consumer (reference §1.3).

use crate::error::{Error, Result};
use std::time::Duration;

/// Name of the queue used when none is configured.
pub const DEFAULT_QUEUE_NAME: &str = "DEFAULT";
/// Stream name prefix of work queues.
pub const QUEUE_STREAM_PREFIX: &str = "CHORIA_AJ_Q_";
/// Name of the durable pull consumer workers share.
pub const WORKERS_CONSUMER: &str = "WORKERS";
/// Handler run time used when a queue is created with none (Go `DefaultJobRunTime`).
pub const DEFAULT_MAX_RUN_TIME: Duration = Duration::from_secs(3600);
/// Per-queue concurrency used when a queue is created with none.
pub const DEFAULT_MAX_CONCURRENT: i64 = 100;

/// A work queue's settings.
///
/// Zero values get the defaults of reference §1.3 when the queue is created:
/// unlimited age, entries and tries, one hour run time, 100 concurrent
/// handlers. After the queue is created or loaded, the client's copy holds
/// the values the server reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Queue name; the stream is `CHORIA_AJ_Q_<name>`.
    pub name: String,
    /// How long items may wait before the server discards them (0 = forever).
    pub max_age: Duration,
    /// Maximum waiting items (0 or -1 = unlimited).
    pub max_entries: i64,
    /// When full, drop the oldest item instead of refusing new ones.
    pub discard_old: bool,
    /// Maximum deliveries of one item (0 = unlimited, stored as -1).
    pub max_tries: i64,
    /// How long a handler may run before the item is redelivered (0 = 1 hour).
    pub max_run_time: Duration,
    /// Maximum handlers running across all workers (0 = 100).
    pub max_concurrent: i64,
    /// Bind to an existing queue only, never create it.
    pub no_create: bool,
}

impl Queue {
    /// A queue named `name` with all settings at their defaults.
    pub fn new(name: impl Into<String>) -> Queue {
        Queue {
            name: name.into(),
            max_age: Duration::ZERO,
            max_entries: 0,
            discard_old: false,
            max_tries: 0,
            max_run_time: Duration::ZERO,
            max_concurrent: 0,
            no_create: false,
        }
    }

    /// The `DEFAULT` queue with Go's defaults: 1 minute run time, 100 tries, 100 concurrent.
    pub fn default_queue() -> Queue {
        Queue {
            max_tries: 100,
            max_run_time: Duration::from_secs(60),
            max_concurrent: 100,
            ..Queue::new(DEFAULT_QUEUE_NAME)
        }
    }

    /// Sets the maximum item age.
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }
    /// Sets the maximum number of waiting items.
    pub fn max_entries(mut self, n: i64) -> Self {
        self.max_entries = n;
        self
    }
    /// Discard the oldest item when full instead of refusing new ones.
    pub fn discard_old(mut self, yes: bool) -> Self {
        self.discard_old = yes;
        self
    }
    /// Sets the maximum number of deliveries per item.
    pub fn max_tries(mut self, n: i64) -> Self {
        self.max_tries = n;
        self
    }
    /// Sets the handler run time limit (the consumer's ack wait).
    pub fn max_run_time(mut self, d: Duration) -> Self {
        self.max_run_time = d;
        self
    }
    /// Sets the queue-wide concurrency cap (the consumer's max ack pending).
    pub fn max_concurrent(mut self, n: i64) -> Self {
        self.max_concurrent = n;
        self
    }

    /// The JetStream stream name.
    pub fn stream_name(&self) -> String {
        format!("{QUEUE_STREAM_PREFIX}{}", self.name)
    }

    /// The subject a work item for `task_id` is published on.
    pub fn item_subject(&self, task_id: &str) -> String {
        item_subject(&self.name, task_id)
    }

    /// Checks the name is usable as part of a stream name and subject.
    pub fn validate(&self) -> Result<()> {
        validate_queue_name(&self.name)
    }

    /// The effective number of tries a task may have on this queue: the
    /// smaller of the task's and the queue's limit (either may be unlimited).
    pub fn effective_max_tries(&self, task_max_tries: i64) -> Option<i64> {
        match (task_max_tries > 0, self.max_tries > 0) {
            (true, true) => Some(task_max_tries.min(self.max_tries)),
            (true, false) => Some(task_max_tries),
            (false, true) => Some(self.max_tries),
            (false, false) => None,
        }
    }
}

/// The subject of a work item.
pub(crate) fn item_subject(queue: &str, task_id: &str) -> String {
    format!("CHORIA_AJ.Q.{queue}.{task_id}")
}

/// Queue names must be non-empty and free of the characters JetStream refuses in stream names.
pub(crate) fn validate_queue_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| matches!(c, '>' | '*' | '.' | ' ' | '/' | '\\' | '\0') || c.is_whitespace())
    {
        return Err(Error::QueueNameInvalid(name.to_string()));
    }
    Ok(())
}

/// What the server reports about a queue.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// The queue's settings as stored on the server.
    pub queue: Queue,
    /// Items waiting or in flight.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Replicas of the stream.
    pub replicas: usize,
    /// Whether the stream is memory based.
    pub memory: bool,
    /// Items delivered but not acknowledged.
    pub ack_pending: u64,
    /// Items not yet delivered.
    pub pending: u64,
    /// Pull requests waiting.
    pub waiting: u64,
    /// False when the `WORKERS` consumer is missing.
    pub has_consumer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_queue_name("EMAIL").is_ok());
        assert!(validate_queue_name("").is_err());
        assert!(validate_queue_name("a.b").is_err());
        assert!(validate_queue_name("a b").is_err());
        assert!(validate_queue_name("a>").is_err());
    }

    #[test]
    fn effective_tries() {
        let q = Queue::default_queue();
        assert_eq!(q.effective_max_tries(10), Some(10));
        assert_eq!(q.effective_max_tries(0), Some(100));
        assert_eq!(q.effective_max_tries(500), Some(100));
        assert_eq!(Queue::new("x").effective_max_tries(0), None);
    }
}
