//! Building a [`Task`] with its options (payload, deadline, tries,
//! dependencies, delay, signature) checked.

use super::{is_valid_name, new_id, Task, TaskState, DEFAULT_MAX_TRIES};
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// The longest unique period: 10 years (a key's TTL is whole seconds; no
/// real period is longer, and the arithmetic stays far from overflow).
const MAX_UNIQUE_PERIOD: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Builds a [`Task`]; see [`Task::builder`].
#[derive(Debug)]
pub struct TaskBuilder {
    task_type: String,
    payload: std::result::Result<Option<Vec<u8>>, serde_json::Error>,
    id: Option<String>,
    deadline: Option<OffsetDateTime>,
    run_at: Option<OffsetDateTime>,
    max_tries: i64,
    dependencies: Vec<String>,
    load_dependencies: bool,
    any_outcome: bool,
    traceparent: Option<String>,
    /// `Some(None)`: unique by the default key.
    unique_key: Option<Option<String>>,
    unique_period: Option<Duration>,
    priority: u8,
    key: Option<String>,
}

impl TaskBuilder {
    /// A builder of a task of `task_type` with every option at its default.
    pub(super) fn new(task_type: String) -> TaskBuilder {
        TaskBuilder {
            task_type,
            payload: Ok(None),
            id: None,
            deadline: None,
            run_at: None,
            max_tries: DEFAULT_MAX_TRIES,
            dependencies: Vec::new(),
            load_dependencies: false,
            any_outcome: false,
            traceparent: None,
            unique_key: None,
            unique_period: None,
            priority: 0,
            key: None,
        }
    }

    /// Uses the JSON encoding of `payload` as the payload.
    pub fn payload<P: Serialize + ?Sized>(mut self, payload: &P) -> Self {
        self.payload = serde_json::to_vec(payload).map(Some);
        self
    }

    /// Uses `bytes` verbatim as the payload.
    pub fn raw_payload(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.payload = Ok(Some(bytes.into()));
        self
    }

    /// Uses a custom id instead of a new KSUID (must match `^[a-zA-Z0-9_:-]+$`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The latest time a handler may start the task; later deliveries expire it.
    pub fn deadline(mut self, deadline: OffsetDateTime) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the deadline to now plus `d`.
    pub fn deadline_in(self, d: Duration) -> Self {
        self.deadline(OffsetDateTime::now_utc() + d)
    }

    /// Delays the task: its record is saved at once (it can be listed,
    /// viewed, deleted and retried), and its work item reaches the queue at
    /// `at` (whole seconds, rounded up), held by the JetStream server
    /// itself (a message schedule, nats-server 2.12+), so no process of
    /// ours needs to run meanwhile and the delay survives restarts. A time
    /// already past enqueues at once.
    ///
    /// Enqueueing fails, writing nothing, against an older server
    /// ([`Error::SchedulesUnsupported`]) and when the deadline is earlier
    /// than `at` ([`Error::DeadlineBeforeDue`]).
    ///
    /// ```
    /// let t = asyncjobs::Task::builder("report:monthly")
    ///     .run_in(std::time::Duration::from_secs(3600))
    ///     .build()
    ///     .unwrap();
    /// assert!(t.run_at.is_some());
    /// ```
    pub fn run_at(mut self, at: OffsetDateTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Delays the task by `d` from now; see [`TaskBuilder::run_at`].
    pub fn run_in(self, d: Duration) -> Self {
        self.run_at(OffsetDateTime::now_utc() + d)
    }

    /// Maximum handler invocations (default 10; 0 = only the queue's limit applies).
    pub fn max_tries(mut self, tries: i64) -> Self {
        self.max_tries = tries;
        self
    }

    /// Tasks that must complete first; the task starts `blocked`.
    pub fn depends_on<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for id in ids {
            let id = id.into();
            if !self.dependencies.contains(&id) {
                self.dependencies.push(id);
            }
        }
        self
    }

    /// Load the dependencies' results into the task before it runs.
    pub fn load_dependency_results(mut self) -> Self {
        self.load_dependencies = true;
        self
    }

    /// Run once every dependency has ended, whatever its outcome (a
    /// batch's callback does, docs/processing.md §2.23), instead of only
    /// when all of them completed: a failed dependency does not make the
    /// task `unreachable`, and with
    /// [`load_dependency_results`](TaskBuilder::load_dependency_results)
    /// its entry in `dependency_results` is `None` (`null`), a completed
    /// one's its result. Not Go's rule: a Go worker delivered the task
    /// still ends it `unreachable` when a dependency failed.
    ///
    /// ```
    /// let task = asyncjobs::Task::builder("report:summary")
    ///     .depends_on(["a", "b"])
    ///     .dependencies_any_outcome()
    ///     .load_dependency_results()
    ///     .build()
    ///     .unwrap();
    /// assert!(task.dependencies_any_outcome);
    /// assert_eq!(task.state, asyncjobs::TaskState::Blocked);
    /// ```
    pub fn dependencies_any_outcome(mut self) -> Self {
        self.any_outcome = true;
        self
    }

    /// A W3C `traceparent` to carry to the handler (see
    /// [`TaskContext::traceparent`](crate::TaskContext::traceparent)). When none
    /// is given and the producer runs inside a tracing span, one is made.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Makes the task unique by `key` while it has not finished: an
    /// enqueue, from any producer, that finds an earlier task with the same
    /// key not yet final is refused with [`Error::TaskExists`] naming that
    /// task; once it has finished (or is gone) the key is taken over.
    /// Needs nats-server 2.11 (docs/processing.md §2.18). A Go worker runs
    /// such a task as any other; a Go producer ignores the key.
    ///
    /// The key is checked when the task is built: 1 to 200 bytes of
    /// letters, digits, `-`, `_`, `=`, `/` and inner `.`
    /// ([`Unique::check_key`](crate::task::Unique::check_key)).
    ///
    /// ```
    /// let t = asyncjobs::Task::builder("invoice:send")
    ///     .payload(&42)
    ///     .unique("invoice-42")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(t.unique().unwrap().key, "invoice-42");
    /// ```
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(Some(key.into()));
        self
    }

    /// Makes the task unique by its type and payload while it has not
    /// finished ([`Unique::default_key`](crate::task::Unique::default_key));
    /// see [`TaskBuilder::unique`].
    pub fn unique_by_payload(mut self) -> Self {
        self.unique_key = Some(None);
        self
    }

    /// Makes the task unique for `period` from the first enqueue, finished
    /// or not: enqueues within it are refused with [`Error::TaskExists`].
    /// Uses the key set by [`TaskBuilder::unique`], or the type and payload
    /// when none is. The key expires by itself (a per-message TTL of
    /// nats-server 2.11; whole seconds, at least one).
    ///
    /// ```
    /// let t = asyncjobs::Task::builder("report:daily")
    ///     .unique_for(std::time::Duration::from_secs(3600))
    ///     .build()
    ///     .unwrap();
    /// assert!(t.unique().unwrap().key.starts_with("t-"));
    /// ```
    pub fn unique_for(mut self, period: Duration) -> Self {
        self.unique_period = Some(period);
        if self.unique_key.is_none() {
            self.unique_key = Some(None);
        }
        self
    }

    /// Sets the task's priority: 0 (the default) to
    /// [`MAX_PRIORITY`](super::MAX_PRIORITY) (9); a worker with a free slot
    /// starts the highest-priority task first, oldest first within a
    /// priority (docs/processing.md §2.21). Go workers on the queue run it
    /// in their own (arrival) order.
    ///
    /// Errors at [`build`](Self::build): [`Error::PriorityInvalid`] above 9.
    ///
    /// ```
    /// let task = asyncjobs::Task::builder("email:new").priority(9).build().unwrap();
    /// assert_eq!(task.priority, 9);
    /// assert!(asyncjobs::Task::builder("email:new").priority(10).build().is_err());
    /// ```
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the task's flow-control key (a customer, a tenant, a remote
    /// API): the queue's per-key concurrency and rate limits apply to it,
    /// and keys take turns, so one key's backlog does not hold up another
    /// key's tasks (docs/processing.md §2.24).
    ///
    /// Errors at [`build`](Self::build): [`Error::KeyInvalid`] for an
    /// empty key, one over 128 bytes or with a control character.
    ///
    /// ```
    /// let task = asyncjobs::Task::builder("invoice:send").key("customer-42").build().unwrap();
    /// assert_eq!(task.key.as_deref(), Some("customer-42"));
    /// assert!(asyncjobs::Task::builder("invoice:send").key("").build().is_err());
    /// ```
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Validates and builds the task.
    pub fn build(self) -> Result<Task> {
        if !is_valid_name(&self.task_type) {
            return Err(Error::TaskTypeInvalid(self.task_type));
        }
        let payload = self
            .payload
            .map_err(|e| Error::json("encoding task payload", e))?;
        let id = self.id.unwrap_or_else(new_id);
        if !is_valid_name(&id) {
            return Err(Error::TaskIdInvalid(id));
        }
        if let Some(k) = &self.key {
            super::check_key(k)?;
        }
        if self.priority > super::MAX_PRIORITY {
            return Err(Error::PriorityInvalid(self.priority.into()));
        }
        if let (Some(deadline), Some(due)) = (self.deadline, self.run_at) {
            if deadline < due {
                return Err(Error::DeadlineBeforeDue { deadline, due });
            }
        }
        let unique = match self.unique_key {
            None => None,
            Some(key) => {
                let key = match key {
                    Some(k) => {
                        super::Unique::check_key(&k)?;
                        k
                    }
                    None => super::Unique::default_key(&self.task_type, payload.as_deref()),
                };
                if self
                    .unique_period
                    .is_some_and(|p| p < Duration::from_secs(1) || p > MAX_UNIQUE_PERIOD)
                {
                    return Err(Error::Config(format!(
                        "unique period must be at least 1s and at most 87600h (10 years) (got {})",
                        crate::wire::format_duration(self.unique_period.unwrap_or_default())
                    )));
                }
                Some(super::Unique {
                    key,
                    period: self.unique_period,
                })
            }
        };
        let state = if self.dependencies.is_empty() {
            TaskState::New
        } else {
            TaskState::Blocked
        };
        Ok(Task {
            id,
            task_type: self.task_type,
            queue: String::new(),
            dependencies: self.dependencies,
            dependency_results: BTreeMap::new(),
            load_dependencies: self.load_dependencies,
            payload,
            deadline: self.deadline,
            run_at: self.run_at,
            max_tries: self.max_tries,
            result: None,
            state,
            created: OffsetDateTime::now_utc(),
            tried: None,
            tries: 0,
            last_err: String::new(),
            signature: String::new(),
            progress: None,
            priority: self.priority,
            key: self.key,
            batch: String::new(),
            dependencies_any_outcome: self.any_outcome,
            unique,
            seq: 0,
            traceparent: self.traceparent,
        })
    }
}
