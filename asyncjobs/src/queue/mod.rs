//! Work queues: a `CHORIA_AJ_Q_<name>` work-queue stream with a `WORKERS`
//! pull consumer (docs/storage.md §3.3).

pub mod flow;
pub(crate) mod lane;
pub mod pause;
mod stream;

pub use flow::RateLimit;
pub use pause::{PauseUntil, QueuePause};
pub(crate) use stream::validate_replicas;
pub use stream::StreamDetails;

use crate::error::{Error, Result};
use crate::task::Retention;
use std::time::Duration;

/// Name of the queue used when none is configured (`DEFAULT`; one
/// definition with the macro's, in the grammar crate).
pub use asyncjobs_grammar::DEFAULT_QUEUE_NAME;
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
/// Zero values get the defaults of docs/storage.md §4.3 when the queue is created:
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
    /// How long its finished tasks are kept, stored with the queue so
    /// every process follows it; `None`: each client's own
    /// ([`ClientBuilder::retention`](crate::ClientBuilder::retention),
    /// docs/processing.md §2.19).
    pub retention: Option<Retention>,
    /// At most this many task starts per period across every worker
    /// (ours, stored in its stream's metadata; docs/processing.md §2.22);
    /// `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// How priorities age: a waiting task counts one priority higher per
    /// this much time it has waited; `None`: strict, a higher priority
    /// always first (ours, stored in its stream's metadata;
    /// docs/processing.md §2.21).
    pub priority_aging: Option<Duration>,
    /// At most this many tasks of one key run at once across every worker
    /// (ours, stored in its stream's metadata; docs/processing.md §2.24);
    /// `None`: no limit.
    pub key_concurrency: Option<u32>,
    /// At most this many starts of one key's tasks per period across every
    /// worker (ours, stored in its stream's metadata; docs/processing.md
    /// §2.24); `None`: no limit.
    pub key_rate_limit: Option<RateLimit>,
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
            retention: None,
            rate_limit: None,
            priority_aging: None,
            key_concurrency: None,
            key_rate_limit: None,
            no_create: false,
        }
    }

    /// The queue called `name` with the settings it is created with when
    /// nothing else is said: [`Queue::default_queue`] for `DEFAULT`,
    /// [`Queue::new`] otherwise.
    pub fn defaults_for(name: &str) -> Queue {
        if name == DEFAULT_QUEUE_NAME {
            Queue::default_queue()
        } else {
            Queue::new(name)
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
    /// Keeps the queue's finished tasks as `retention` says, whichever
    /// client finishes them (applies when the queue is created; change it
    /// later with [`QueueUpdate::retention`]).
    ///
    /// ```
    /// use asyncjobs::{Queue, Retention};
    /// use std::time::Duration;
    /// let r = Retention::default().complete(Some(Duration::from_secs(3600))).unwrap();
    /// let q = Queue::new("THUMBNAILS").retention(r);
    /// assert_eq!(q.retention, Some(r));
    /// ```
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Limits the queue's task starts across every worker
    /// (docs/processing.md §2.22).
    ///
    /// ```
    /// let q = asyncjobs::Queue::new("API").rate_limit("10/s".parse().unwrap());
    /// assert_eq!(q.rate_limit.unwrap().starts, 10);
    /// ```
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Lets waiting tasks gain one priority level per `every` they wait
    /// (at least 1 second; docs/processing.md §2.21); the default is strict.
    pub fn priority_aging(mut self, every: Duration) -> Self {
        self.priority_aging = Some(every);
        self
    }

    /// Lets at most `n` tasks of one key run at once across every worker
    /// (1 to 10,000; docs/processing.md §2.24).
    ///
    /// ```
    /// let q = asyncjobs::Queue::new("INVOICES").key_concurrency(1);
    /// assert_eq!(q.key_concurrency, Some(1));
    /// ```
    pub fn key_concurrency(mut self, n: u32) -> Self {
        self.key_concurrency = Some(n);
        self
    }

    /// Limits the starts of each key's tasks across every worker
    /// (docs/processing.md §2.24).
    pub fn key_rate_limit(mut self, limit: RateLimit) -> Self {
        self.key_rate_limit = Some(limit);
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

    /// The handler run time this queue gives: its `max_run_time`, or
    /// [`DEFAULT_MAX_RUN_TIME`] (one hour) when that is zero, as Go does.
    pub fn effective_max_run_time(&self) -> Duration {
        if self.max_run_time.is_zero() {
            DEFAULT_MAX_RUN_TIME
        } else {
            self.max_run_time
        }
    }

    /// The queue-wide concurrency this queue gives: its `max_concurrent`,
    /// or [`DEFAULT_MAX_CONCURRENT`] when that is zero or less.
    pub fn effective_max_concurrent(&self) -> i64 {
        if self.max_concurrent > 0 {
            self.max_concurrent
        } else {
            DEFAULT_MAX_CONCURRENT
        }
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

/// Subject prefix under which earlier versions held a queue's work items
/// in the queue's own stream (`CHORIA_AJ.S.<queue>.<id>`); such items are
/// still honoured (docs/storage.md §3.4).
pub(crate) const LEGACY_HELD_PREFIX: &str = "CHORIA_AJ.S.";

/// A task's held item of an earlier version, in its queue's stream.
pub(crate) fn legacy_held_subject(queue: &str, task_id: &str) -> String {
    format!("{LEGACY_HELD_PREFIX}{queue}.{task_id}")
}

/// Subject prefix of the messages in [`HELD_STREAM`](crate::HELD_STREAM)
/// that hold a work item until it is due (JetStream message schedules,
/// ADR-51); queue and task id follow.
pub(crate) const HELD_ITEM_PREFIX: &str = "CHORIA_AJ.W.";

/// The subject holding a task's work item until it is due: one per task,
/// so a newer schedule replaces an older one.
pub(crate) fn held_item_subject(queue: &str, task_id: &str) -> String {
    format!("{HELD_ITEM_PREFIX}{queue}.{task_id}")
}

/// Subject prefix of the items a schedule released when due, waiting in
/// [`HELD_STREAM`](crate::HELD_STREAM) for a worker of the queue to move
/// them into the queue; queue and task id follow.
pub(crate) const RELEASED_ITEM_PREFIX: &str = "CHORIA_AJ.R.";

/// The subject a held item is released to when due.
pub(crate) fn released_item_subject(queue: &str, task_id: &str) -> String {
    format!("{RELEASED_ITEM_PREFIX}{queue}.{task_id}")
}

/// Queue names must be non-empty and free of the characters JetStream refuses in stream names
/// (`asyncjobs_grammar::is_valid_queue_name`, which `#[task_handler(queue = …)]` also checks).
pub(crate) fn validate_queue_name(name: &str) -> Result<()> {
    if !asyncjobs_grammar::is_valid_queue_name(name) {
        return Err(Error::QueueNameInvalid(name.to_string()));
    }
    Ok(())
}

/// Changes for [`Client::configure_queue`](crate::Client::configure_queue);
/// `None` leaves a setting unchanged.
#[derive(Debug, Clone, Default)]
pub struct QueueUpdate {
    /// Maximum item age (0 = unlimited, otherwise at least 2 minutes).
    pub max_age: Option<Duration>,
    /// Maximum waiting items (0 or less = unlimited).
    pub max_entries: Option<i64>,
    /// Maximum deliveries per item (0 or less = unlimited).
    pub max_tries: Option<i64>,
    /// Handler run time, the consumer's ack wait (at least 1 second).
    pub max_run_time: Option<Duration>,
    /// Queue-wide concurrency (at most 10000; 0 or less = the default 100).
    pub max_concurrent: Option<i64>,
    /// Stream replicas (1 to 5).
    pub replicas: Option<usize>,
    /// How long the queue's finished tasks are kept (stored in its
    /// stream's metadata; every process follows it within 30 seconds).
    pub retention: Option<Retention>,
    /// The queue's rate limit; `Some(None)` removes it.
    pub rate_limit: Option<Option<RateLimit>>,
    /// How the queue's priorities age; `Some(None)`: strict.
    pub priority_aging: Option<Option<Duration>>,
    /// Most tasks of one key running at once; `Some(None)` removes it.
    pub key_concurrency: Option<Option<u32>>,
    /// The rate limit of each key; `Some(None)` removes it.
    pub key_rate_limit: Option<Option<RateLimit>>,
}

impl QueueUpdate {
    /// Checks the limits of docs/interfaces.md §1.7: max age 0 or at least
    /// 2 minutes, run time at least 1 second, concurrency at most 10000,
    /// replicas 1 to 5.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        if let Some(age) = self.max_age {
            if !age.is_zero() && age < Duration::from_secs(120) {
                return Err(Error::Config("shortest max age is 2 minutes".into()));
            }
        }
        if let Some(rt) = self.max_run_time {
            if rt < Duration::from_secs(1) {
                return Err(Error::Config("shortest run-time is 1 second".into()));
            }
        }
        if let Some(c) = self.max_concurrent {
            if c > 10_000 {
                return Err(Error::Config("largest concurrency is 10000".into()));
            }
        }
        if let Some(r) = self.replicas {
            validate_replicas(r)?;
        }
        if let Some(Some(l)) = &self.rate_limit {
            l.validate()?;
        }
        if let Some(Some(l)) = &self.key_rate_limit {
            l.validate()?;
        }
        if let Some(Some(n)) = self.key_concurrency {
            flow::check_key_concurrency(n)?;
        }
        if let Some(Some(a)) = self.priority_aging {
            if a < Duration::from_secs(1) {
                return Err(Error::Config(
                    "priority aging must be at least 1s (or strict)".into(),
                ));
            }
        }
        Ok(())
    }

    /// True when the queue's stream changes (age, entries, replicas, retention).
    pub(crate) fn changes_stream(&self) -> bool {
        self.max_age.is_some()
            || self.max_entries.is_some()
            || self.replicas.is_some()
            || self.retention.is_some()
            || self.rate_limit.is_some()
            || self.priority_aging.is_some()
            || self.key_concurrency.is_some()
            || self.key_rate_limit.is_some()
    }

    /// True when the `WORKERS` consumer changes (tries, run time, concurrency).
    pub(crate) fn changes_consumer(&self) -> bool {
        self.max_tries.is_some() || self.max_run_time.is_some() || self.max_concurrent.is_some()
    }
}

/// What the server reports about a queue.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// The queue's settings as stored on the server.
    pub queue: Queue,
    /// The queue's stream: items waiting or in flight, bytes, first and
    /// last item times, storage and replicas.
    pub stream: StreamDetails,
    /// Items delivered but not acknowledged.
    pub ack_pending: u64,
    /// Items not yet delivered.
    pub pending: u64,
    /// Pull requests waiting.
    pub waiting: u64,
    /// Items delivered more than once and not yet acknowledged.
    pub redelivered: u64,
    /// False when the `WORKERS` consumer is missing.
    pub has_consumer: bool,
    /// Set while the queue is paused: no worker gets an item until it ends
    /// or is lifted ([`Client::pause_queue`](crate::Client::pause_queue)).
    pub paused: Option<QueuePause>,
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
