//! The handler registry: every `#[task_handler]` submits a [`HandlerDef`]
//! to an [`inventory`] collection before `main` runs; [`Handlers`] reads it
//! (or is filled explicitly, for tests and platforms where inventory cannot
//! work), checks it and builds one [`Router`] per queue.
//!
//! ```
//! use asyncjobs::{task_handler, Handlers, Router};
//!
//! #[task_handler("math:double", queue = "MATH")]
//! async fn double(n: i64) -> Result<i64, std::convert::Infallible> {
//!     Ok(n * 2)
//! }
//!
//! fn main() {
//!     // explicit registration
//!     let router = Router::new().register(double::HANDLER).unwrap();
//!     assert_eq!(router.route_for("math:double"), Some("math:double"));
//!
//!     // the inventory, as asyncjobs::main!() uses it
//!     let handlers = Handlers::registered();
//!     assert!(handlers.iter().any(|h| h.task_type() == "math:double" && h.queue() == "MATH"));
//!     handlers.check().unwrap();
//!     let router = handlers.router("MATH").unwrap();
//!     assert!(!router.is_empty());
//! }
//! ```

// one file each: what a handler declares about its queue
// (queue_settings), the set of handlers and its checks (handlers)
mod handlers;
mod queue_settings;
#[cfg(test)]
mod tests;

pub use handlers::{Duplicate, DuplicateHandlers, Handlers};
pub use queue_settings::QueueSettings;

use crate::error::Result;
use crate::handler::BoxHandler;
use crate::queue::{Queue, DEFAULT_QUEUE_NAME};
use crate::router::Router;
use crate::state::{MissingState, States};
use std::any::TypeId;
use std::fmt;
use std::time::Duration;

/// What `#[task_handler]` declares. Not part of the public API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Declared {
    pub task_type: &'static str,
    pub queue: Option<&'static str>,
    pub name: &'static str,
    pub file: &'static str,
    pub line: u32,
    pub payload_type: &'static str,
    pub output_type: &'static str,
    pub max_tries: Option<i64>,
    pub deadline: Option<Duration>,
    pub timeout: Option<Duration>,
    pub cron: Option<DeclaredCron>,
    pub queue_settings: QueueSettings,
    pub states: &'static [StateDecl],
    pub make: fn(&States) -> std::result::Result<BoxHandler, MissingState>,
}

/// What `cron = "…"` declares. Not part of the public API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct DeclaredCron {
    /// The cron spec, checked by the macro (a time zone name is not).
    pub spec: &'static str,
    /// Whether the handler's payload type decodes from JSON `null`, what
    /// the tasks of the schedule carry (`Err`: serde's reason).
    pub null_payload: fn() -> std::result::Result<(), String>,
}

/// A `State<T>` argument of a handler. Not part of the public API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct StateDecl {
    /// `T` as written in the signature.
    pub type_name: &'static str,
    /// `TypeId::of::<State<T>>` (the argument's type).
    pub type_id: fn() -> TypeId,
    /// `std::any::type_name::<T>`, for messages.
    pub full_name: fn() -> &'static str,
}

/// A handler declared with `#[task_handler]`: its task type, queue, source
/// location and a constructor for the handler itself.
///
/// Every annotated function has one as `<fn_name>::HANDLER`.
#[derive(Clone, Copy)]
pub struct HandlerDef {
    d: Declared,
}

impl HandlerDef {
    #[doc(hidden)]
    pub const fn __new(d: Declared) -> HandlerDef {
        HandlerDef { d }
    }

    /// The task type handled (`""` is the catch-all).
    pub fn task_type(&self) -> &'static str {
        self.d.task_type
    }

    /// The queue whose worker runs it (`DEFAULT` when the attribute names none).
    pub fn queue(&self) -> &'static str {
        self.d.queue.unwrap_or(DEFAULT_QUEUE_NAME)
    }

    /// The queue named in the attribute, if any.
    pub fn declared_queue(&self) -> Option<&'static str> {
        self.d.queue
    }

    /// The queue as a worker or the typed `enqueue` creates it when it is
    /// missing: [`queue_settings`](Self::queue_settings) applied to the
    /// defaults (`DEFAULT`'s own for the default queue).
    pub fn queue_to_create(&self) -> Queue {
        self.queue_settings()
            .apply(Queue::defaults_for(self.queue()))
    }

    /// The function's path, such as `my_worker::email::send_email`.
    pub fn name(&self) -> &'static str {
        self.d.name
    }

    /// Where the function is declared, as `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.d.file, self.d.line)
    }

    /// The payload type as written in the function signature.
    pub fn payload_type(&self) -> &'static str {
        self.d.payload_type
    }

    /// The result type as written in the function signature.
    pub fn output_type(&self) -> &'static str {
        self.d.output_type
    }

    /// Maximum tries the typed enqueue helper sets, if the attribute has one.
    pub fn max_tries(&self) -> Option<i64> {
        self.d.max_tries
    }

    /// The deadline offset the typed enqueue helper applies, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.d.deadline
    }

    /// The handler's time-out (`timeout = "30s"` in the attribute), if
    /// any: each try is stopped this long after it started and fails
    /// naming it (see [`HandlerOptions::timeout`](crate::router::HandlerOptions::timeout)).
    pub fn timeout(&self) -> Option<Duration> {
        self.d.timeout
    }

    /// The cron spec the attribute declares (`cron = "0 3 * * *"`), if any.
    pub fn cron(&self) -> Option<&'static str> {
        self.d.cron.map(|c| c.spec)
    }

    /// The schedule `cron = "…"` declares, as a worker started with
    /// `asyncjobs::main!()` stores it (docs/processing.md §2.20): named
    /// [`declared_schedule_name`](crate::scheduler::declared_schedule_name)
    /// of the task type, into the handler's queue, tasks without payload
    /// (JSON `null`) with the attribute's `max_tries` and `deadline`,
    /// marked as declared in the function's path. `None` without `cron`.
    ///
    /// # Errors
    /// The spec is refused (an unknown `TZ=` zone: the macro checks the
    /// rest), the deadline is under 30 s, or the handler's payload type
    /// does not decode from `null` (give such schedules a payload with
    /// `main!(schedule = …)`).
    pub fn declared_schedule(
        &self,
    ) -> Option<std::result::Result<crate::ScheduledTask, crate::ScheduleError>> {
        let cron = self.d.cron?;
        let name = crate::scheduler::declared_schedule_name(self.d.task_type);
        if let Err(reason) = (cron.null_payload)() {
            return Some(Err(crate::ScheduleError::InvalidRecord {
                name,
                reason: format!(
                    "handler {} declares cron = {:?} but its payload type {} does not decode from null, \
                     the payload of the tasks it would create ({reason}); declare the schedule with a \
                     payload in asyncjobs::main!(schedule = ...) instead",
                    self.d.name, cron.spec, self.d.payload_type
                ),
            }));
        }
        let mut template = crate::Task::builder(self.d.task_type);
        if let Some(n) = self.d.max_tries {
            template = template.max_tries(n);
        }
        if let Some(d) = self.d.deadline {
            template = template.deadline_in(d);
        }
        Some(
            template
                .build()
                .map_err(crate::ScheduleError::from)
                .and_then(|t| crate::ScheduledTask::new(name, cron.spec, self.queue(), &t))
                .map(|st| st.with_declared_in(self.d.name)),
        )
    }

    /// The settings the handler declares for its queue (`queue_run_time`,
    /// `queue_max_tries`, `queue_concurrency` in the attribute).
    pub fn queue_settings(&self) -> QueueSettings {
        self.d.queue_settings
    }

    /// The `T` of each [`State<T>`](crate::State) argument, as written in the
    /// signature.
    pub fn state_types(&self) -> Vec<&'static str> {
        self.d.states.iter().map(|s| s.type_name).collect()
    }

    /// The states the handler takes that `states` lacks, one
    /// [`MissingState`] each (empty when it has everything).
    pub fn missing_states(&self, states: &States) -> Vec<MissingState> {
        self.d
            .states
            .iter()
            .filter(|s| !states.contains_arg((s.type_id)()))
            .map(|s| self.missing((s.full_name)()))
            .collect()
    }

    fn missing(&self, type_name: &'static str) -> MissingState {
        MissingState {
            type_name,
            handler: self.d.name,
            task_type: self.d.task_type,
            location: self.location(),
        }
    }

    /// A new instance of the handler, for handlers without
    /// [`State`](crate::State) arguments.
    ///
    /// # Errors
    /// [`MissingState`] when the handler takes a state; use
    /// [`handler_with`](Self::handler_with).
    pub fn handler(&self) -> std::result::Result<BoxHandler, MissingState> {
        self.handler_with(&States::new())
    }

    /// A new instance of the handler, its [`State`](crate::State) arguments
    /// taken from `states` (cloned once here, then once per task).
    ///
    /// # Errors
    /// [`MissingState`] naming the first state `states` lacks and this
    /// handler.
    pub fn handler_with(&self, states: &States) -> std::result::Result<BoxHandler, MissingState> {
        (self.d.make)(states).map_err(|m| MissingState {
            handler: self.d.name,
            task_type: self.d.task_type,
            location: self.location(),
            ..m
        })
    }
}

impl fmt::Debug for HandlerDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerDef")
            .field("task_type", &self.d.task_type)
            .field("queue", &self.queue())
            .field("name", &self.d.name)
            .field("location", &self.location())
            .finish()
    }
}

inventory::collect!(HandlerDef);

impl Router {
    /// Registers a handler declared with `#[task_handler]` for its task type
    /// (its queue is not consulted: the router serves whichever queue its
    /// worker processes), with its `timeout` when the attribute has one.
    ///
    /// ```
    /// #[asyncjobs::task_handler("greet")]
    /// async fn greet(name: String) -> Result<String, asyncjobs::HandlerError> {
    ///     Ok(format!("hello {name}"))
    /// }
    /// fn main() {
    ///     let router = asyncjobs::Router::new().register(greet::HANDLER).unwrap();
    ///     assert_eq!(router.route_for("greet"), Some("greet"));
    /// }
    /// ```
    ///
    /// # Errors
    /// [`Error::MissingState`](crate::Error::MissingState) when the handler takes a
    /// [`State<T>`](crate::State) no [`with_state`](Router::with_state)
    /// call registered before; a configuration error when the task type is
    /// taken.
    pub fn register(self, def: HandlerDef) -> Result<Router> {
        let handler = def.handler_with(self.states())?;
        let mut options = crate::router::HandlerOptions::new();
        if let Some(timeout) = def.timeout() {
            options = options.timeout(timeout);
        }
        self.handle_with_options(
            def.task_type(),
            move |ctx, task| handler.call(ctx, task),
            options,
        )
    }
}
