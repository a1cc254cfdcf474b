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

use crate::error::{Error, Result};
use crate::handler::BoxHandler;
use crate::queue::{Queue, DEFAULT_QUEUE_NAME};
use crate::router::Router;
use crate::state::{MissingState, MissingStates, States};
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
    pub queue_settings: QueueSettings,
    pub states: &'static [StateDecl],
    pub make: fn(&States) -> std::result::Result<BoxHandler, MissingState>,
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

/// Two handlers registered for the same task type on the same queue.
#[derive(Debug, Clone)]
pub struct Duplicate {
    /// The queue.
    pub queue: &'static str,
    /// The task type.
    pub task_type: &'static str,
    /// The handler registered first (in registry order).
    pub first: HandlerDef,
    /// The other handler.
    pub second: HandlerDef,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "duplicate handler for task type \"{}\" on queue {}: {} at {} and {} at {}",
            self.task_type,
            self.queue,
            self.first.name(),
            self.first.location(),
            self.second.name(),
            self.second.location()
        )
    }
}

/// Handlers found to conflict by [`Handlers::check`].
#[derive(Debug, Clone)]
pub struct DuplicateHandlers(pub Vec<Duplicate>);

impl fmt::Display for DuplicateHandlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DuplicateHandlers {}

/// A set of handler definitions: the inventory ([`Handlers::registered`])
/// or an explicit list ([`Handlers::with`]).
#[derive(Debug, Clone, Default)]
pub struct Handlers {
    defs: Vec<HandlerDef>,
}

impl Handlers {
    /// An empty set; add handlers with [`Handlers::with`].
    ///
    /// ```
    /// #[asyncjobs::task_handler("greet")]
    /// async fn greet(name: String) -> Result<String, asyncjobs::HandlerError> {
    ///     Ok(format!("hello {name}"))
    /// }
    /// fn main() {
    ///     let handlers = asyncjobs::Handlers::new().with(greet::HANDLER);
    ///     assert_eq!(handlers.queues(), vec!["DEFAULT"]);
    /// }
    /// ```
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Every handler declared with `#[task_handler]` in the program, sorted
    /// by queue, task type and location.
    pub fn registered() -> Handlers {
        let mut defs: Vec<HandlerDef> =
            inventory::iter::<HandlerDef>.into_iter().copied().collect();
        defs.sort_by(|a, b| {
            (a.queue(), a.task_type(), a.d.file, a.d.line).cmp(&(
                b.queue(),
                b.task_type(),
                b.d.file,
                b.d.line,
            ))
        });
        Handlers { defs }
    }

    /// Adds a handler.
    pub fn with(mut self, def: HandlerDef) -> Handlers {
        self.defs.push(def);
        self
    }

    /// Keeps only the handlers of the named queues.
    pub fn only_queues<S: AsRef<str>>(mut self, queues: &[S]) -> Handlers {
        self.defs
            .retain(|d| queues.iter().any(|q| q.as_ref() == d.queue()));
        self
    }

    /// The handlers, in order.
    pub fn iter(&self) -> impl Iterator<Item = &HandlerDef> {
        self.defs.iter()
    }

    /// Number of handlers.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// True when there are no handlers.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// The queues the handlers name, sorted and deduplicated.
    pub fn queues(&self) -> Vec<&'static str> {
        let mut queues: Vec<&'static str> = self.defs.iter().map(|d| d.queue()).collect();
        queues.sort_unstable();
        queues.dedup();
        queues
    }

    /// Reports every pair of handlers for the same task type on the same
    /// queue, naming both source locations.
    pub fn check(&self) -> std::result::Result<(), DuplicateHandlers> {
        let mut dups = Vec::new();
        for (i, a) in self.defs.iter().enumerate() {
            let earlier = self.defs[..i]
                .iter()
                .find(|b| b.queue() == a.queue() && b.task_type() == a.task_type());
            if let Some(first) = earlier {
                dups.push(Duplicate {
                    queue: a.queue(),
                    task_type: a.task_type(),
                    first: *first,
                    second: *a,
                });
            }
        }
        if dups.is_empty() {
            Ok(())
        } else {
            Err(DuplicateHandlers(dups))
        }
    }

    /// Every state a handler takes that `states` lacks, all at once.
    pub fn check_states(&self, states: &States) -> std::result::Result<(), MissingStates> {
        let missing: Vec<MissingState> = self
            .defs
            .iter()
            .flat_map(|d| d.missing_states(states))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(MissingStates(missing))
        }
    }

    /// The settings `asyncjobs::main!()` creates `queue` with: `DEFAULT`
    /// with Go's defaults ([`Queue::default_queue`]), other queues with
    /// [`Queue::new`]'s, then what the queue's handlers declare
    /// ([`HandlerDef::queue_settings`]).
    ///
    /// # Errors
    /// [`Error::Config`] when two handlers of the queue declare different
    /// values for one setting, naming both.
    pub fn queue(&self, queue: &str) -> Result<Queue> {
        let merged = self.declared_settings(queue)?;
        Ok(merged.apply(Queue::defaults_for(queue)))
    }

    /// What the handlers of `queue` declare about it, merged.
    ///
    /// # Errors
    /// As [`queue`](Self::queue): two handlers declaring different values.
    pub fn declared_settings(&self, queue: &str) -> Result<QueueSettings> {
        let mut merged = QueueSettings::default();
        let mut from: [Option<&HandlerDef>; 3] = [None; 3];
        for def in self.defs.iter().filter(|d| d.queue() == queue) {
            let s = def.queue_settings();
            merge(
                &mut merged.max_run_time,
                s.max_run_time,
                &mut from[0],
                def,
                "queue_run_time",
                |d| crate::wire::format_duration(*d),
            )?;
            merge(
                &mut merged.max_tries,
                s.max_tries,
                &mut from[1],
                def,
                "queue_max_tries",
                i64::to_string,
            )?;
            merge(
                &mut merged.max_concurrent,
                s.max_concurrent,
                &mut from[2],
                def,
                "queue_concurrency",
                i64::to_string,
            )?;
        }
        Ok(merged)
    }

    /// A router with every handler of `queue`.
    ///
    /// # Errors
    /// As [`router_with`](Self::router_with) with no states.
    pub fn router(&self, queue: &str) -> Result<Router> {
        self.router_with(queue, &States::new())
    }

    /// A router with every handler of `queue`, their
    /// [`State`](crate::State) arguments taken from `states`.
    ///
    /// # Errors
    /// [`Error::MissingState`] when a handler takes a state `states`
    /// lacks; a configuration error when two handlers take the same task
    /// type.
    pub fn router_with(&self, queue: &str, states: &States) -> Result<Router> {
        self.defs
            .iter()
            .filter(|d| d.queue() == queue)
            .try_fold(Router::new().with_states(states), |router, def| {
                router.register(*def)
            })
    }
}

/// Records `value` of one queue setting declared by `def`, failing when an
/// earlier handler declared another value.
fn merge<'a, T: PartialEq + Copy>(
    slot: &mut Option<T>,
    value: Option<T>,
    from: &mut Option<&'a HandlerDef>,
    def: &'a HandlerDef,
    option: &str,
    show: impl Fn(&T) -> String,
) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    match (*slot, *from) {
        (Some(old), Some(first)) if old != value => Err(Error::Config(format!(
            "handlers on queue {} declare different {option}: {} at {} says {}, {} at {} says {}",
            def.queue(),
            first.name(),
            first.location(),
            show(&old),
            def.name(),
            def.location(),
            show(&value),
        ))),
        (Some(_), _) => Ok(()),
        (None, _) => {
            *slot = Some(value);
            *from = Some(def);
            Ok(())
        }
    }
}

impl<'a> IntoIterator for &'a Handlers {
    type Item = &'a HandlerDef;
    type IntoIter = std::slice::Iter<'a, HandlerDef>;

    fn into_iter(self) -> Self::IntoIter {
        self.defs.iter()
    }
}

impl Router {
    /// Registers a handler declared with `#[task_handler]` for its task type
    /// (its queue is not consulted: the router serves whichever queue its
    /// worker processes).
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
    /// [`Error::MissingState`] when the handler takes a
    /// [`State<T>`](crate::State) no [`with_state`](Router::with_state)
    /// call registered before; a configuration error when the task type is
    /// taken.
    pub fn register(self, def: HandlerDef) -> Result<Router> {
        let handler = def.handler_with(self.states())?;
        self.handle(def.task_type(), move |ctx, task| handler.call(ctx, task))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn declared_settings_are_compared_with_the_queue() {
        use std::time::Duration;
        let declared = QueueSettings {
            max_run_time: Some(Duration::from_secs(600)),
            max_tries: Some(0),
            max_concurrent: Some(20),
        };
        let mut q = Queue::new("REPORTS")
            .max_run_time(Duration::from_secs(600))
            .max_concurrent(20);
        q.max_tries = -1;
        assert!(declared.differences(&q).is_empty());
        let other = Queue::new("REPORTS")
            .max_run_time(Duration::from_secs(3600))
            .max_concurrent(100)
            .max_tries(5);
        assert_eq!(
            declared.differences(&other),
            [
                "queue_run_time declared 10m0s, the queue has 1h0m0s",
                "queue_max_tries declared 0, the queue has 5 (0: unlimited)",
                "queue_concurrency declared 20, the queue has 100",
            ]
        );
        assert!(QueueSettings::default().differences(&other).is_empty());
    }

    use super::*;
    use crate::handler::HandlerError;

    #[crate::task_handler("reg:plain", crate = "crate")]
    async fn plain(n: u8) -> std::result::Result<u8, HandlerError> {
        Ok(n)
    }

    #[crate::task_handler(
        "reg:set",
        queue = "REG_SET",
        queue_run_time = "10m",
        queue_max_tries = 0,
        queue_concurrency = 3,
        crate = "crate"
    )]
    async fn set(n: u8) -> std::result::Result<u8, HandlerError> {
        Ok(n)
    }

    #[crate::task_handler("reg:same", queue = "REG_SET", queue_run_time = "10m", crate = "crate")]
    async fn same(n: u8) -> std::result::Result<u8, HandlerError> {
        Ok(n)
    }

    #[test]
    fn queue_defaults_and_declared_settings() {
        let handlers = Handlers::new()
            .with(plain::HANDLER)
            .with(set::HANDLER)
            .with(same::HANDLER);
        // nothing declared: Go's defaults for DEFAULT, the creation defaults otherwise
        assert_eq!(handlers.queue("DEFAULT").unwrap(), Queue::default_queue());
        assert_eq!(handlers.queue("OTHER").unwrap(), Queue::new("OTHER"));
        // declared, and agreeing where two handlers say the same
        let q = handlers.queue("REG_SET").unwrap();
        assert_eq!(q.max_run_time, Duration::from_secs(600));
        assert_eq!(q.max_tries, 0);
        assert_eq!(q.max_concurrent, 3);
        assert_eq!(
            set::HANDLER.queue_settings(),
            QueueSettings {
                max_run_time: Some(Duration::from_secs(600)),
                max_tries: Some(0),
                max_concurrent: Some(3),
            }
        );
        assert!(plain::HANDLER.queue_settings().is_empty());
    }
}
