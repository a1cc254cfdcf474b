//! [`Handlers`]: a set of handler definitions (the inventory or an
//! explicit list), its checks (duplicate task types, missing states,
//! conflicting queue settings) and the routers it builds per queue.

use super::{HandlerDef, QueueSettings};
use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::router::Router;
use crate::state::{MissingState, MissingStates, States};
use std::fmt;

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
