//! Testing handlers without a NATS server.
//!
//! A `#[task_handler]` function stays a plain `async fn`: call it directly
//! with a context from [`TestTask::context`]. To test what the worker does
//! around it, [`TestWorker`] runs handlers in process the way a worker
//! does: routing by task type, middleware, shared state, payload decoding,
//! result encoding, and the outcome the worker would record: `complete`,
//! `retry`, `terminated` or `expired`.
//!
//! ```
//! mod shop {
//!     use asyncjobs::{task_handler, HandlerError, State, TaskContext};
//!
//!     #[derive(serde::Serialize, serde::Deserialize)]
//!     pub struct Order { pub id: u32, pub total_cents: u64 }
//!
//!     #[derive(Clone)]
//!     pub struct Tax(pub u64);
//!
//!     #[task_handler("order:confirm", queue = "ORDERS", max_tries = 3)]
//!     pub async fn confirm(
//!         ctx: TaskContext,
//!         State(tax): State<Tax>,
//!         order: Order,
//!     ) -> Result<String, HandlerError> {
//!         if order.total_cents == 0 {
//!             return Err(asyncjobs::terminate("an order needs a total"));
//!         }
//!         if ctx.tries() < 2 {
//!             return Err(HandlerError::retry("payment service busy"));
//!         }
//!         Ok(format!("order {} confirmed, {} cents tax", order.id, order.total_cents * tax.0 / 100))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use asyncjobs::testing::{TestTask, TestWorker};
//! use asyncjobs::TaskState;
//!
//! let worker = TestWorker::new()
//!     .state(shop::Tax(20))
//!     .handler(shop::confirm::HANDLER)?;
//!
//! // typed round trip: payload in, tries until a final state, typed result out
//! let order = shop::Order { id: 7, total_cents: 1000 };
//! let confirmed = worker.call(shop::confirm::TYPED, order).await?;
//! assert_eq!(confirmed, "order 7 confirmed, 200 cents tax");
//!
//! // one try, as the worker would record it
//! let first = TestTask::for_handler(shop::confirm::HANDLER)
//!     .payload(&shop::Order { id: 8, total_cents: 500 });
//! let outcome = worker.run(first.clone()).await;
//! assert_eq!(outcome.state(), TaskState::Retry);
//! assert_eq!(outcome.last_err(), "payment service busy");
//! assert_eq!(worker.run(first.tries(2)).await.state(), TaskState::Complete);
//!
//! // a failing last try expires the task; a terminate error ends it at once
//! let last = TestTask::for_handler(shop::confirm::HANDLER)
//!     .payload(&shop::Order { id: 9, total_cents: 500 })
//!     .max_tries(1);
//! assert_eq!(worker.run(last).await.state(), TaskState::Expired);
//! let err = worker.call(shop::confirm::TYPED, shop::Order { id: 10, total_cents: 0 }).await.unwrap_err();
//! assert_eq!((err.state, err.tries), (TaskState::Terminated, 1));
//!
//! // a payload that does not decode terminates, as on a worker
//! let bad = TestTask::new("order:confirm").raw_payload(r#"{"id":"x"}"#);
//! assert_eq!(worker.run(bad).await.state(), TaskState::Terminated);
//! # Ok(()) }
//! ```
//!
//! What is not simulated: JetStream (redelivery timing, acknowledgements,
//! the retry policy's delays: tries follow each other at once), the
//! queue's run time (a handler is never cancelled for taking too long) and
//! dependencies.

use crate::error::Error;
use crate::handler::{BoxHandler, Handler, HandlerError, HandlerOutput, TaskContext};
use crate::queue::{Queue, DEFAULT_QUEUE_NAME};
use crate::registry::{HandlerDef, Handlers};
use crate::router::Router;
use crate::state::States;
use crate::task::{Task, TaskBuilder, TaskState};
use crate::worker::execute::panic_message;
use crate::worker::gates::{self, Gate};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Tries [`TestWorker::run_to_end`] makes when neither the task nor its
/// queue limits them.
pub const UNLIMITED_TRIES_CAP: i64 = 25;

/// A handler declared with `#[task_handler]` with its payload and result
/// types: `<fn>::TYPED`, for [`TestWorker::call`].
pub struct TypedHandlerDef<P, O> {
    def: HandlerDef,
    _types: PhantomData<fn(P) -> O>,
}

impl<P, O> TypedHandlerDef<P, O> {
    #[doc(hidden)]
    pub const fn __new(def: HandlerDef) -> Self {
        TypedHandlerDef {
            def,
            _types: PhantomData,
        }
    }

    /// The untyped registration (`<fn>::HANDLER`).
    pub fn def(&self) -> HandlerDef {
        self.def
    }
}

impl<P, O> Clone for TypedHandlerDef<P, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P, O> Copy for TypedHandlerDef<P, O> {}

impl<P, O> fmt::Debug for TypedHandlerDef<P, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedHandlerDef")
            .field("def", &self.def)
            .field("payload", &std::any::type_name::<P>())
            .field("output", &std::any::type_name::<O>())
            .finish()
    }
}

/// A task as a worker hands it to its handler: which try it is, its
/// payload, id, deadlines and cancellation. Build one, then take its
/// [`context`](TestTask::context) to call a handler function directly, or
/// [`run`](TestWorker::run) it.
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
    task: Task,
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
    /// [`TestWorker`] expires a task past it without running the handler.
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

/// How one try ended, as the worker would record it.
#[derive(Debug)]
pub struct Outcome {
    state: TaskState,
    tries: i64,
    output: Option<HandlerOutput>,
    error: Option<HandlerError>,
    last_err: String,
}

impl Outcome {
    /// The task's state after this try: `complete`, `retry` (it will be
    /// tried again), `terminated` (the handler asked to stop, or the
    /// payload did not decode) or `expired` (the failing try was the last
    /// allowed, or the task was past its deadline or out of tries before
    /// it started).
    pub fn state(&self) -> TaskState {
        self.state
    }

    /// The try this outcome is of (1 for the first).
    pub fn tries(&self) -> i64 {
        self.tries
    }

    /// The result JSON the task record would hold, when complete.
    pub fn output(&self) -> Option<&HandlerOutput> {
        self.output.as_ref()
    }

    /// The handler's error, when it returned one (not for a panic or an
    /// expiry before the try).
    pub fn error(&self) -> Option<&HandlerError> {
        self.error.as_ref()
    }

    /// The `last_err` the task record would hold (empty when complete).
    pub fn last_err(&self) -> &str {
        &self.last_err
    }

    /// The decoded result.
    ///
    /// # Errors
    /// [`Failed`] when the task did not complete, or its result does not
    /// decode as `T`.
    pub fn result<T: DeserializeOwned>(&self) -> Result<T, Failed> {
        let output = self.output.as_ref().ok_or_else(|| self.failed())?;
        serde_json::from_str(output.get()).map_err(|e| Failed {
            state: self.state,
            tries: self.tries,
            last_err: format!(
                "the result {} does not decode as {}: {e}",
                output.get(),
                std::any::type_name::<T>()
            ),
        })
    }

    fn failed(&self) -> Failed {
        Failed {
            state: self.state,
            tries: self.tries,
            last_err: self.last_err.clone(),
        }
    }
}

/// A task that did not complete (or whose result did not decode), from
/// [`TestWorker::call`] and [`Outcome::result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The final state.
    pub state: TaskState,
    /// Tries made.
    pub tries: i64,
    /// What the task record's `last_err` would say.
    pub last_err: String,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task ended {} after {} tr{}: {}",
            self.state,
            self.tries,
            if self.tries == 1 { "y" } else { "ies" },
            self.last_err
        )
    }
}

impl std::error::Error for Failed {}

/// Runs handlers in process as a worker does, without a server: see the
/// [module documentation](self).
///
/// Register states before the handlers that take them (a handler's states
/// are looked up when it is registered, as on a worker at start-up).
#[derive(Default)]
pub struct TestWorker {
    router: Router,
    handlers: Handlers,
    queues: HashMap<String, Queue>,
}

impl fmt::Debug for TestWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestWorker")
            .field("router", &self.router)
            .field("queues", &self.queues)
            .finish()
    }
}

impl TestWorker {
    /// No handlers, states or middleware.
    pub fn new() -> TestWorker {
        TestWorker::default()
    }

    /// Registers `value` for [`State<T>`](crate::State) arguments of its type.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> TestWorker {
        self.router = self.router.with_state(value);
        self
    }

    /// Registers every value of `states`.
    pub fn states(mut self, states: &States) -> TestWorker {
        self.router = self.router.with_states(states);
        self
    }

    /// Wraps every handler in `middleware` (first added = outermost), as
    /// [`Router::layer`] does.
    pub fn middleware(
        mut self,
        middleware: impl Fn(BoxHandler) -> BoxHandler + Send + Sync + 'static,
    ) -> TestWorker {
        self.router = self.router.layer(middleware);
        self
    }

    /// Registers a `#[task_handler]` (`<fn>::HANDLER`) for its task type.
    ///
    /// # Errors
    /// [`Error::MissingState`] when it takes a state not registered
    /// before; a configuration error when its task type is taken.
    pub fn handler(mut self, def: HandlerDef) -> crate::Result<TestWorker> {
        self.router = self.router.register(def)?;
        self.handlers = self.handlers.with(def);
        Ok(self)
    }

    /// Registers a handler written without the macro, as
    /// [`Router::handle`] does.
    ///
    /// # Errors
    /// An invalid or taken task type.
    pub fn handle(
        mut self,
        task_type: impl Into<String>,
        handler: impl Handler,
    ) -> crate::Result<TestWorker> {
        self.router = self.router.handle(task_type, handler)?;
        Ok(self)
    }

    /// Uses `queue`'s limits (its `max_tries`) for tasks of that queue
    /// instead of the settings its handlers declare.
    pub fn queue(mut self, queue: Queue) -> TestWorker {
        self.queues.insert(queue.name.clone(), queue);
        self
    }

    /// The settings of `name` the worker would create it with.
    fn queue_settings(&self, name: &str) -> Queue {
        if let Some(q) = self.queues.get(name) {
            return q.clone();
        }
        self.handlers.queue(name).unwrap_or_else(|_| {
            if name == DEFAULT_QUEUE_NAME {
                Queue::default_queue()
            } else {
                Queue::new(name)
            }
        })
    }

    /// Runs one try of `task`: the deadline and tries checks a worker makes
    /// before a try, then the task's handler (through middleware, payload
    /// decoding and result encoding), then the outcome as the worker would
    /// record it. A panicking handler is a failed try, `handler panicked: …`.
    pub async fn run(&self, task: TestTask) -> Outcome {
        let tries = task.task.tries;
        let limit = self
            .queue_settings(&task.task.queue)
            .effective_max_tries(task.task.max_tries);
        let expired = |last_err: &str| Outcome {
            state: TaskState::Expired,
            tries,
            output: None,
            error: None,
            last_err: last_err.to_string(),
        };
        // the worker's own gates, on the record as it was before this try
        let mut before = task.task.clone();
        before.tries = tries - 1;
        before.state = TaskState::New;
        let queue = self.queue_settings(&task.task.queue);
        if let Gate::Expire(why) = gates::gate(&before, &queue, OffsetDateTime::now_utc()) {
            return expired(why.last_err());
        }
        let ctx = task.context();
        let run = AssertUnwindSafe(self.router.dispatch(ctx, task.task))
            .catch_unwind()
            .await;
        let failure = |error: Option<HandlerError>, last_err: String| Outcome {
            state: if limit.is_some_and(|l| tries >= l) {
                TaskState::Expired
            } else {
                TaskState::Retry
            },
            tries,
            output: None,
            error,
            last_err,
        };
        match run {
            Ok(Ok(output)) => Outcome {
                state: TaskState::Complete,
                tries,
                output: Some(output),
                error: None,
                last_err: String::new(),
            },
            Ok(Err(e)) if e.is_terminate() => Outcome {
                state: TaskState::Terminated,
                tries,
                output: None,
                last_err: e.message().to_string(),
                error: Some(e),
            },
            Ok(Err(e)) => {
                let last_err = e.message().to_string();
                failure(Some(e), last_err)
            }
            Err(panic) => failure(
                None,
                format!("handler panicked: {}", panic_message(&*panic)),
            ),
        }
    }

    /// Runs tries of `task` one after the other until it completes, is
    /// terminated or expires, as a worker would with no delay between
    /// tries; when neither the task nor its queue limits tries, stops
    /// after [`UNLIMITED_TRIES_CAP`] with the last `retry` outcome.
    pub async fn run_to_end(&self, task: TestTask) -> Outcome {
        let mut task = task;
        loop {
            let next = task.clone().tries(task.task.tries + 1);
            let outcome = self.run(task).await;
            if outcome.state != TaskState::Retry || outcome.tries >= UNLIMITED_TRIES_CAP {
                return outcome;
            }
            task = next;
        }
    }

    /// The typed round trip: builds the task as the handler's `enqueue`
    /// does (`<fn>::task(&payload)`: its task type, queue and defaults),
    /// runs it to the end ([`run_to_end`](TestWorker::run_to_end)) and
    /// decodes the result as the handler's output type.
    ///
    /// # Errors
    /// [`Failed`] when the task did not complete (its final state, tries
    /// and `last_err`), or when the payload cannot be encoded.
    pub async fn call<P: Serialize, O: DeserializeOwned>(
        &self,
        handler: TypedHandlerDef<P, O>,
        payload: P,
    ) -> Result<O, Failed> {
        let def = handler.def();
        let builder = crate::macro_support::task_builder(
            def.task_type(),
            &payload,
            def.max_tries(),
            def.deadline(),
        );
        let task = TestTask::from_builder(builder).map_err(|e: Error| Failed {
            state: TaskState::New,
            tries: 0,
            last_err: e.to_string(),
        })?;
        self.run_to_end(task.queue(def.queue())).await.result::<O>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[crate::task_handler("t:panics", crate = "crate")]
    async fn panics(n: u8) -> Result<u8, HandlerError> {
        if n == 0 {
            panic!("zero");
        }
        Ok(n)
    }

    #[crate::task_handler("t:fails", queue = "T_FAILS", queue_max_tries = 3, crate = "crate")]
    async fn fails(_: ()) -> Result<u8, HandlerError> {
        Err(HandlerError::retry("always"))
    }

    #[crate::task_handler("t:forever", queue = "T_FOREVER", max_tries = 0, crate = "crate")]
    async fn forever(_: ()) -> Result<u8, HandlerError> {
        Err(HandlerError::retry("again"))
    }

    #[test]
    fn a_new_task_is_on_its_first_try() {
        let ctx = TestTask::new("x").context();
        assert_eq!(ctx.tries(), 1);
        assert_eq!(ctx.task().state, TaskState::Active);
        assert!(TestTask::new("x").cancelled().context().is_cancelled());
    }

    #[tokio::test]
    async fn panics_and_limits_are_classified_as_a_worker_would() {
        let worker = TestWorker::new()
            .handler(panics::HANDLER)
            .unwrap()
            .handler(fails::HANDLER)
            .unwrap()
            .handler(forever::HANDLER)
            .unwrap();
        let outcome = worker
            .run(TestTask::for_handler(panics::HANDLER).payload(&0))
            .await;
        assert_eq!(outcome.state(), TaskState::Retry);
        assert_eq!(outcome.last_err(), "handler panicked: zero");
        assert!(outcome.error().is_none());

        // the queue's declared limit: 3 tries
        let outcome = worker
            .run_to_end(TestTask::for_handler(fails::HANDLER).max_tries(0))
            .await;
        assert_eq!((outcome.state(), outcome.tries()), (TaskState::Expired, 3));
        assert_eq!(outcome.last_err(), "always");
        let failed = worker.call(fails::TYPED, ()).await.unwrap_err();
        assert_eq!(
            failed.to_string(),
            "task ended expired after 3 tries: always"
        );

        // neither task nor queue limits tries: capped
        let outcome = worker
            .run_to_end(TestTask::for_handler(forever::HANDLER))
            .await;
        assert_eq!(
            (outcome.state(), outcome.tries()),
            (TaskState::Retry, UNLIMITED_TRIES_CAP)
        );

        // past its deadline or out of tries: expired without running
        let past = OffsetDateTime::now_utc() - std::time::Duration::from_secs(1);
        let outcome = worker
            .run(
                TestTask::for_handler(panics::HANDLER)
                    .payload(&0)
                    .deadline(past),
            )
            .await;
        assert_eq!(outcome.state(), TaskState::Expired);
        assert_eq!(outcome.last_err(), "past deadline");
        let outcome = worker
            .run(
                TestTask::for_handler(panics::HANDLER)
                    .payload(&0)
                    .max_tries(2)
                    .tries(3),
            )
            .await;
        assert_eq!(outcome.last_err(), "exceeded maximum tries");

        // an unknown type is retried, as on a worker
        let outcome = worker.run(TestTask::new("t:unknown")).await;
        assert_eq!(outcome.state(), TaskState::Retry);
    }

    #[tokio::test]
    async fn middleware_and_plain_handlers_run_too() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let worker = TestWorker::new()
            .middleware(crate::router::from_fn(move |ctx, task, next| {
                counted.fetch_add(1, Ordering::SeqCst);
                next.run(ctx, task)
            }))
            .handle(
                "plain",
                crate::typed(|ctx: TaskContext, n: u32| async move {
                    Ok::<_, HandlerError>(n + ctx.tries() as u32)
                }),
            )
            .unwrap();
        let outcome = worker
            .run(TestTask::new("plain").payload(&40).tries(2))
            .await;
        assert_eq!(outcome.result::<u32>().unwrap(), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let err = outcome.result::<String>().unwrap_err();
        assert!(
            err.last_err
                .contains("does not decode as alloc::string::String"),
            "{err}"
        );
    }
}
