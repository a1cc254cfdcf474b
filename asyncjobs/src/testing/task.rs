//! [`TestTask`]: the task of one try and the context its handler gets.

use crate::handler::TaskContext;
use crate::queue::DEFAULT_QUEUE_NAME;
use crate::registry::HandlerDef;
use crate::task::{Task, TaskBuilder, TaskState};
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// A task as a worker hands it to its handler: which try it is, its
/// payload, id, deadlines and cancellation. Build one, then take its
/// [`context`](TestTask::context) to call a handler function directly, or
/// [`run`](super::TestWorker::run) it.
///
/// ```
/// use asyncjobs::testing::TestTask;
///
/// let task = TestTask::new("email:new")
///     .payload(&"a@example.net")
///     .id("email-1")
///     .tries(3)
///     .handler_deadline(time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(60));
/// let ctx = task.context();
/// assert_eq!((ctx.id(), ctx.tries(), ctx.queue()), ("email-1", 3, "DEFAULT"));
/// assert!(ctx.handler_deadline().is_some() && !ctx.is_cancelled());
/// ```
#[derive(Debug, Clone)]
pub struct TestTask {
    /// The task as the handler sees it: `active`, `tries` = this try.
    pub(super) task: Task,
    handler_deadline: Option<OffsetDateTime>,
    cancel: CancellationToken,
}

impl TestTask {
    /// The first try of a new task of `task_type` on `DEFAULT`, payload
    /// `null`, a new id, the task default of 10 tries, no deadline.
    pub fn new(task_type: impl Into<String>) -> TestTask {
        let mut task = Task::builder("placeholder")
            .build()
            .expect("a valid task type builds");
        task.task_type = task_type.into();
        TestTask::from_task(task)
    }

    /// The first try of a task for the handler `def`: its task type, queue
    /// and the defaults `enqueue` applies (`max_tries`, `deadline`);
    /// payload `null` until [`payload`](TestTask::payload).
    pub fn for_handler(def: HandlerDef) -> TestTask {
        let mut builder = Task::builder(def.task_type());
        if let Some(n) = def.max_tries() {
            builder = builder.max_tries(n);
        }
        if let Some(d) = def.deadline() {
            builder = builder.deadline_in(d);
        }
        match builder.build() {
            Ok(task) => TestTask::from_task(task).queue(def.queue()),
            // the catch-all "" is not a valid task type to build
            Err(_) => TestTask::new(def.task_type()).queue(def.queue()),
        }
    }

    /// The next try of `task` as stored (a new task: its first try), on
    /// its queue (`DEFAULT` when it has none yet).
    pub fn from_task(mut task: Task) -> TestTask {
        if task.queue.is_empty() {
            task.queue = DEFAULT_QUEUE_NAME.to_string();
        }
        task.state = TaskState::Active;
        task.tries += 1;
        task.tried = Some(OffsetDateTime::now_utc());
        TestTask {
            task,
            handler_deadline: None,
            cancel: CancellationToken::new(),
        }
    }

    /// The task `builder` makes, such as `<fn>::task(&payload)` (the typed
    /// builder `#[task_handler]` generates), on `DEFAULT`.
    ///
    /// # Errors
    /// What [`TaskBuilder::build`] reports: an invalid task type or id, a
    /// payload that does not encode.
    pub fn from_builder(builder: TaskBuilder) -> crate::Result<TestTask> {
        builder.build().map(TestTask::from_task)
    }

    /// Sets the payload to the JSON encoding of `payload`.
    ///
    /// # Panics
    /// When `payload` cannot be encoded as JSON (a map with non-string
    /// keys, a failing `Serialize` implementation).
    pub fn payload<P: Serialize + ?Sized>(mut self, payload: &P) -> TestTask {
        let bytes = serde_json::to_vec(payload)
            .unwrap_or_else(|e| panic!("test payload does not encode as JSON: {e}"));
        self.task.payload = Some(bytes);
        self
    }

    /// Sets the payload bytes verbatim (for payloads a producer in another
    /// language might send, or that do not decode).
    pub fn raw_payload(mut self, bytes: impl Into<Vec<u8>>) -> TestTask {
        self.task.payload = Some(bytes.into());
        self
    }

    /// Sets the task id.
    pub fn id(mut self, id: impl Into<String>) -> TestTask {
        self.task.id = id.into();
        self
    }

    /// Sets the queue the task comes from.
    pub fn queue(mut self, queue: impl Into<String>) -> TestTask {
        self.task.queue = queue.into();
        self
    }

    /// Makes this try number `n` (1 for the first), what
    /// [`TaskContext::tries`] reports.
    pub fn tries(mut self, n: i64) -> TestTask {
        self.task.tries = n;
        self
    }

    /// Sets the task's maximum tries (0: only the queue's limit).
    pub fn max_tries(mut self, n: i64) -> TestTask {
        self.task.max_tries = n;
        self
    }

    /// Sets the task's deadline, the latest time a try may start: a
    /// [`TestWorker`](super::TestWorker) expires a task past it without running the handler.
    pub fn deadline(mut self, at: OffsetDateTime) -> TestTask {
        self.task.deadline = Some(at);
        self
    }

    /// Sets when the handler's lease ends
    /// ([`TaskContext::handler_deadline`]; a worker sets the start of the
    /// try plus the queue's run time).
    pub fn handler_deadline(mut self, at: OffsetDateTime) -> TestTask {
        self.handler_deadline = Some(at);
        self
    }

    /// Sets the W3C `traceparent` the producer sent.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> TestTask {
        self.task.traceparent = Some(traceparent.into());
        self
    }

    /// Cancels the context, as a worker does when it gives up on a handler
    /// ([`TaskContext::is_cancelled`] is true, [`TaskContext::cancelled`]
    /// resolves at once).
    pub fn cancelled(self) -> TestTask {
        self.cancel.cancel();
        self
    }

    /// The task as the handler sees it (`active`, `tries` = this try).
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The context a handler gets for this try (no lease:
    /// [`TaskContext::mark_in_progress`] fails).
    pub fn context(&self) -> TaskContext {
        TaskContext {
            task: Arc::new(self.task.clone()),
            cancel: self.cancel.clone(),
            lease: None,
            deadline: self.handler_deadline,
            traceparent: self.task.traceparent.clone(),
        }
    }
}
