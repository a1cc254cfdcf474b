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

use crate::error::Result;
use crate::handler::BoxHandler;
use crate::queue::DEFAULT_QUEUE_NAME;
use crate::router::Router;
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
    pub make: fn() -> BoxHandler,
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

    /// A new instance of the handler.
    pub fn handler(&self) -> BoxHandler {
        (self.d.make)()
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

    /// A router with every handler of `queue`.
    pub fn router(&self, queue: &str) -> Result<Router> {
        self.defs
            .iter()
            .filter(|d| d.queue() == queue)
            .try_fold(Router::new(), |router, def| router.register(*def))
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
    pub fn register(self, def: HandlerDef) -> Result<Router> {
        let handler = def.handler();
        self.handle(def.task_type(), move |ctx, task| handler.call(ctx, task))
    }
}
