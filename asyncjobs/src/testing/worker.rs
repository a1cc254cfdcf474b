//! [`TestWorker`]: handlers run in process as a worker runs them, the
//! worker's gates before each try and its classification of the outcome.

use super::{Failed, Outcome, TestTask, TypedHandlerDef, UNLIMITED_TRIES_CAP};
use crate::error::Error;
use crate::handler::{BoxHandler, Handler, HandlerError};
use crate::queue::{Queue, DEFAULT_QUEUE_NAME};
use crate::registry::{HandlerDef, Handlers};
use crate::router::Router;
use crate::state::States;
use crate::task::TaskState;
use crate::worker::decide::handler_timed_out;
use crate::worker::execute::panic_message;
use crate::worker::gates::{self, Gate};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use time::OffsetDateTime;

/// Runs handlers in process as a worker does, without a server: see the
/// [module documentation](super).
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
    /// record it. A panicking handler is a failed try, `handler panicked: …`,
    /// and so is one still running at its time-out
    /// ([`HandlerOptions::timeout`](crate::router::HandlerOptions::timeout),
    /// `timeout = "…"` in the attribute), `handler "<type>" exceeded its
    /// time-out of <d>`: it is dropped then, as on a worker (this needs
    /// tokio's timer, as in `#[tokio::test]`).
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
        let timeout = self.router.timeout_for(&task.task.task_type);
        let task_type = task.task.task_type.clone();
        let run = AssertUnwindSafe(self.router.dispatch(ctx, task.task)).catch_unwind();
        let run = match timeout {
            Some(timeout) => tokio::time::timeout(timeout, run).await.ok(),
            None => Some(run.await),
        };
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
        let Some(run) = run else {
            let timeout = timeout.expect("only a time-out stops a try");
            return failure(None, handler_timed_out(&task_type, timeout));
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
            0,
            def.deadline(),
            None,
        );
        let task = TestTask::from_builder(builder).map_err(|e: Error| Failed {
            state: TaskState::New,
            tries: 0,
            last_err: e.to_string(),
        })?;
        self.run_to_end(task.queue(def.queue())).await.result::<O>()
    }
}
