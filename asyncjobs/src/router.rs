//! Routing task types to handlers, with middleware (docs/processing.md §6.1).

use crate::error::{Error, Result};
use crate::handler::{BoxHandler, Handler, HandlerError, HandlerResult, TaskContext};
use crate::state::States;
use crate::task::{is_valid_name, Task};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Code that runs around handlers: logging, timing, metrics, tracing,
/// authorisation, error translation.
///
/// A middleware is a function from the handler it wraps (`next`) to a new
/// handler. It is applied once, when the router is built, never per task;
/// the handler it returns is called for every task, with the task's
/// [`TaskContext`] and [`Task`] (the payload still as JSON bytes), and
/// returns what the task's record will show: `Ok` with the result JSON, or
/// a [`HandlerError`] that is retried or, with
/// [`HandlerError::terminate`], ends the task. A middleware may act before
/// and after calling `next`, change the error, or not call `next` at all
/// (the task then ends as the middleware says).
///
/// Write one with [`from_fn`] as an `async` closure or function:
///
/// ```
/// use asyncjobs::router::{from_fn, Next};
/// use asyncjobs::{HandlerResult, Router, Task, TaskContext};
///
/// async fn timing(ctx: TaskContext, task: Task, next: Next) -> HandlerResult {
///     let started = std::time::Instant::now();
///     let result = next.run(ctx, task).await;
///     eprintln!("took {:?}, ok: {}", started.elapsed(), result.is_ok());
///     result
/// }
///
/// let router = Router::new().layer(from_fn(timing));
/// ```
///
/// or by hand, as a function taking and returning a [`BoxHandler`]:
///
/// ```
/// use asyncjobs::handler::{BoxHandler, Handler};
/// use asyncjobs::router::Middleware;
/// use asyncjobs::{Task, TaskContext};
/// use std::sync::Arc;
///
/// let count_calls: Middleware = Arc::new(|next: BoxHandler| -> BoxHandler {
///     Arc::new(move |ctx: TaskContext, task: Task| {
///         // runs before the handler; the future it returns is the handler's
///         next.call(ctx, task)
///     })
/// });
/// ```
///
/// Add middleware to every route with [`Router::layer`] (or
/// `asyncjobs::main!(middleware = ...)`,
/// [`program::App::middleware`](crate::program::App::middleware)), or to one
/// route with [`Router::handle_with`]. The first added is the outermost: it
/// sees the task first and the result last; global middleware wraps
/// per-route middleware. A task whose type no handler takes is not passed
/// through middleware.
///
/// This alias is the stored form ([`Router::handle_with`] takes a list of
/// them); `layer`, `App::middleware` and `main!` take any
/// `Fn(BoxHandler) -> BoxHandler`, such as what [`from_fn`] returns or a
/// closure. Pass a `Middleware` value `m` to them as `move |next| m(next)`.
pub type Middleware = Arc<dyn Fn(BoxHandler) -> BoxHandler + Send + Sync>;

/// The rest of the chain a [`from_fn`] middleware wraps: the next
/// middleware, or the handler itself.
#[derive(Clone)]
pub struct Next {
    inner: BoxHandler,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next").finish_non_exhaustive()
    }
}

impl Next {
    /// Runs the rest of the chain for the task and returns its result.
    pub fn run(self, ctx: TaskContext, task: Task) -> BoxFuture<'static, HandlerResult> {
        self.inner.call(ctx, task)
    }
}

/// A middleware from an `async` function or closure taking the task's
/// context, the task and [`Next`], and returning the task's
/// [`HandlerResult`].
///
/// The function is called for every task; calling `next.run(ctx, task)`
/// runs the handler (and any inner middleware). The result goes to
/// [`Router::layer`], [`program::App::middleware`](crate::program::App::middleware)
/// or `asyncjobs::main!(middleware = ...)` as it is, and is a
/// [`Middleware`] once wrapped in an `Arc` (`Arc::new(from_fn(f))`, for
/// [`Router::handle_with`]).
///
/// ```
/// use asyncjobs::router::{from_fn, Next};
/// use asyncjobs::{HandlerError, HandlerResult, Router, Task, TaskContext};
///
/// async fn refuse_on_sunday(ctx: TaskContext, task: Task, next: Next) -> HandlerResult {
///     if task.task_type.starts_with("sunday:") {
///         return Err(HandlerError::terminate("no work on Sundays"));
///     }
///     next.run(ctx, task).await
/// }
///
/// async fn ok(_: TaskContext, _: Task) -> HandlerResult { asyncjobs::handler::to_output(&"done") }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let router = Router::new()
///     .handle("", ok).unwrap()
///     .layer(from_fn(refuse_on_sunday));
/// let task = Task::new("sunday:lunch", &()).unwrap();
/// let err = router.dispatch(TaskContext::detached(task.clone()), task).await.unwrap_err();
/// assert!(err.is_terminate());
/// # }
/// ```
pub fn from_fn<F, Fut>(f: F) -> impl Fn(BoxHandler) -> BoxHandler + Clone + Send + Sync + 'static
where
    F: Fn(TaskContext, Task, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let f = Arc::new(f);
    move |inner: BoxHandler| -> BoxHandler {
        let f = f.clone();
        Arc::new(move |ctx: TaskContext, task: Task| {
            f(
                ctx,
                task,
                Next {
                    inner: inner.clone(),
                },
            )
        })
    }
}

/// How one task type's handler is registered with
/// [`Router::handle_with_options`]: its per-route middleware and its
/// time-out.
///
/// ```
/// use asyncjobs::router::{from_fn, HandlerOptions, Next};
/// use asyncjobs::{HandlerResult, Router, Task, TaskContext};
/// use std::time::Duration;
///
/// async fn resize(_: TaskContext, _: Task) -> HandlerResult {
///     asyncjobs::handler::to_output(&"resized")
/// }
/// async fn log(ctx: TaskContext, task: Task, next: Next) -> HandlerResult {
///     eprintln!("resizing {}", task.id);
///     next.run(ctx, task).await
/// }
///
/// let router = Router::new()
///     .handle_with_options(
///         "image:resize",
///         resize,
///         HandlerOptions::new()
///             .timeout(Duration::from_secs(30))
///             .middleware(from_fn(log)),
///     )
///     .unwrap();
/// assert_eq!(router.timeout_for("image:resize"), Some(Duration::from_secs(30)));
/// ```
#[derive(Clone, Default)]
pub struct HandlerOptions {
    middleware: Vec<Middleware>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for HandlerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerOptions")
            .field("middleware", &self.middleware.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HandlerOptions {
    /// No middleware, no time-out (the queue's run time alone bounds a try).
    pub fn new() -> HandlerOptions {
        HandlerOptions::default()
    }

    /// Adds per-route middleware (the first added is the outermost, inside
    /// the global middleware); see [`Middleware`] and [`from_fn`].
    pub fn middleware(
        mut self,
        middleware: impl Fn(BoxHandler) -> BoxHandler + Send + Sync + 'static,
    ) -> HandlerOptions {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Stops each try of the handler `timeout` after it started: the
    /// handler is cancelled as at the queue's run time, and the try fails
    /// (retried by the retry policy, `expired` when no tries are left) with
    /// `last_err` `handler "<task type>" exceeded its time-out of <d>`
    /// (`<d>` in Go's notation, such as `30s` or `1m30s`).
    ///
    /// A try ends at the earlier of this time-out and the queue's run time,
    /// which still bounds the lease; heartbeats
    /// ([`TaskContext::mark_in_progress`], `Worker::auto_heartbeat`) extend
    /// the lease but never the time-out, and
    /// [`TaskContext::handler_deadline`] reports the earlier of the two.
    /// The time-out is the worker's configuration: it is not stored in the
    /// task and a Go worker on the same queue knows nothing of it
    /// (docs/processing.md §2.7, docs/go-differences.md).
    ///
    /// [`Router::handle_with_options`] refuses a zero time-out.
    pub fn timeout(mut self, timeout: Duration) -> HandlerOptions {
        self.timeout = Some(timeout);
        self
    }
}

struct Route {
    handler: BoxHandler,
    middleware: Vec<Middleware>,
    timeout: Option<Duration>,
}

/// Chooses the handler for a task type: exact match, then the longest
/// registered prefix, then the catch-all `""`.
///
/// ```
/// use asyncjobs::{Router, Task, HandlerResult, TaskContext};
/// async fn any(_: TaskContext, _: Task) -> HandlerResult { asyncjobs::handler::to_output(&"ok") }
/// let router = Router::new()
///     .handle("things:", any).unwrap()
///     .handle("things:specific", any).unwrap()
///     .handle("", any).unwrap();
/// assert_eq!(router.route_for("things:other"), Some("things:"));
/// assert_eq!(router.route_for("things:specific:x"), Some("things:specific"));
/// assert_eq!(router.route_for("x"), Some(""));
/// ```
#[derive(Default)]
pub struct Router {
    routes: HashMap<String, Route>,
    /// registered types, longest first
    by_length: Vec<String>,
    global: Vec<Middleware>,
    compiled: HashMap<String, BoxHandler>,
    states: States,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("task_types", &self.by_length)
            .field("middleware", &self.global.len())
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// Registers `handler` for `task_type` (`""` is the catch-all).
    pub fn handle(self, task_type: impl Into<String>, handler: impl Handler) -> Result<Router> {
        self.handle_with(task_type, handler, Vec::new())
    }

    /// Registers a handler with per-route middleware (first = outermost);
    /// [`handle_with_options`](Router::handle_with_options) also sets a
    /// time-out.
    pub fn handle_with(
        self,
        task_type: impl Into<String>,
        handler: impl Handler,
        middleware: Vec<Middleware>,
    ) -> Result<Router> {
        self.handle_with_options(
            task_type,
            handler,
            HandlerOptions {
                middleware,
                timeout: None,
            },
        )
    }

    /// Registers a handler with [`HandlerOptions`]: per-route middleware
    /// and a time-out for each try.
    ///
    /// # Errors
    /// [`Error::TaskTypeInvalid`] for a task type that is neither `""` nor
    /// a valid name; [`Error::Config`] when the task type is taken or the
    /// time-out is zero.
    pub fn handle_with_options(
        mut self,
        task_type: impl Into<String>,
        handler: impl Handler,
        options: HandlerOptions,
    ) -> Result<Router> {
        let task_type = task_type.into();
        if !task_type.is_empty() && !is_valid_name(&task_type) {
            return Err(Error::TaskTypeInvalid(task_type));
        }
        if self.routes.contains_key(&task_type) {
            return Err(Error::Config(format!(
                "duplicate handler for task type \"{task_type}\""
            )));
        }
        if options.timeout == Some(Duration::ZERO) {
            return Err(Error::Config(format!(
                "the time-out of the handler for task type \"{task_type}\" is zero: every try would time out at once"
            )));
        }
        self.routes.insert(
            task_type.clone(),
            Route {
                handler: Arc::new(handler),
                middleware: options.middleware,
                timeout: options.timeout,
            },
        );
        self.by_length.push(task_type);
        self.by_length
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.compile();
        Ok(self)
    }

    /// Adds global middleware wrapping every route, registered before or
    /// after (first added = outermost); see [`Middleware`] and [`from_fn`].
    pub fn layer(
        mut self,
        middleware: impl Fn(BoxHandler) -> BoxHandler + Send + Sync + 'static,
    ) -> Router {
        self.global.push(Arc::new(middleware));
        self.compile();
        self
    }

    /// Registers `value` as the [`State<T>`](crate::State) of its type for
    /// handlers [`register`](Router::register)ed after this call (a value of
    /// the same type registered before is replaced).
    ///
    /// ```
    /// mod jobs {
    ///     #[derive(Clone)]
    ///     pub struct Greeting(pub &'static str);
    ///
    ///     #[asyncjobs::task_handler("greet")]
    ///     pub async fn greet(
    ///         asyncjobs::State(g): asyncjobs::State<Greeting>,
    ///         name: String,
    ///     ) -> Result<String, asyncjobs::HandlerError> {
    ///         Ok(format!("{} {name}", g.0))
    ///     }
    /// }
    ///
    /// let router = asyncjobs::Router::new()
    ///     .with_state(jobs::Greeting("hello"))
    ///     .register(jobs::greet::HANDLER)
    ///     .unwrap();
    /// assert_eq!(router.route_for("greet"), Some("greet"));
    /// ```
    pub fn with_state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Router {
        self.states.insert(value);
        self
    }

    /// Registers every value of `states`, as [`with_state`](Router::with_state) does.
    pub fn with_states(mut self, states: &States) -> Router {
        self.states.extend(states);
        self
    }

    /// The states registered with [`with_state`](Router::with_state).
    pub fn states(&self) -> &States {
        &self.states
    }

    fn compile(&mut self) {
        self.compiled = self
            .routes
            .iter()
            .map(|(t, r)| {
                let mut h = r.handler.clone();
                for m in r.middleware.iter().rev().chain(self.global.iter().rev()) {
                    h = m(h);
                }
                (t.clone(), h)
            })
            .collect();
    }

    /// The registered type that would handle `task_type`, if any.
    pub fn route_for(&self, task_type: &str) -> Option<&str> {
        if let Some((k, _)) = self.routes.get_key_value(task_type) {
            return Some(k.as_str());
        }
        self.by_length
            .iter()
            .find(|prefix| task_type.starts_with(prefix.as_str()))
            .map(String::as_str)
    }

    /// The time-out of the handler that would handle `task_type` (see
    /// [`HandlerOptions::timeout`]), if it has one.
    pub fn timeout_for(&self, task_type: &str) -> Option<Duration> {
        self.route_for(task_type)
            .and_then(|t| self.routes.get(t))
            .and_then(|r| r.timeout)
    }

    /// The registered task types.
    pub fn task_types(&self) -> impl Iterator<Item = &str> {
        self.by_length.iter().map(String::as_str)
    }

    /// True when no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// `no handler for task type "<type>"`, with the closest registered
    /// type when one is near (`did you mean "email:new"?`) and the types
    /// this router handles.
    fn no_handler_message(&self, task_type: &str) -> String {
        let mut msg = format!("no handler for task type \"{task_type}\"");
        if let Some(t) = self.suggestion(task_type) {
            msg.push_str(&format!(": did you mean \"{t}\"?"));
        }
        msg.push_str(&format!(" (this worker handles: {})", self.handled_list()));
        msg
    }

    /// The registered type closest to `task_type`, when one is near (a
    /// likely typo).
    pub(crate) fn suggestion(&self, task_type: &str) -> Option<&str> {
        self.task_types()
            .filter(|t| !t.is_empty())
            .map(|t| (edit_distance(task_type, t), t))
            .filter(|(d, t)| *d <= (t.chars().count() / 3).max(2))
            .min()
            .map(|(_, t)| t)
    }

    /// The registered types, sorted and quoted: `"email:new", "order:confirm"`.
    pub(crate) fn handled_list(&self) -> String {
        let mut known: Vec<&str> = self.task_types().collect();
        known.sort_unstable();
        known
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Runs the task through its handler; an unroutable type gives the
    /// retryable `no handler for task type "<type>"` error (not wrapped in middleware).
    pub fn dispatch(&self, ctx: TaskContext, task: Task) -> BoxFuture<'static, HandlerResult> {
        match self
            .route_for(&task.task_type)
            .and_then(|t| self.compiled.get(t))
        {
            Some(h) => h.call(ctx, task),
            None => {
                let msg = self.no_handler_message(&task.task_type);
                Box::pin(async move { Err(HandlerError::no_handler(msg)) })
            }
        }
    }
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_get_a_suggestion_and_the_known_types() {
        let r = Router::new()
            .handle("email:new", ok)
            .unwrap()
            .handle("order:confirm", ok)
            .unwrap();
        assert_eq!(
            r.no_handler_message("emial:new"),
            "no handler for task type \"emial:new\": did you mean \"email:new\"? (this worker handles: \"email:new\", \"order:confirm\")"
        );
        assert_eq!(
            r.no_handler_message("invoice:pay"),
            "no handler for task type \"invoice:pay\" (this worker handles: \"email:new\", \"order:confirm\")"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("é", "e"), 1);
    }
    use std::sync::Mutex;

    async fn ok(_: TaskContext, t: Task) -> HandlerResult {
        crate::handler::to_output(&t.task_type)
    }

    #[test]
    fn routing_order() {
        let r = Router::new()
            .handle("", ok)
            .unwrap()
            .handle("things:", ok)
            .unwrap()
            .handle("things:specific", ok)
            .unwrap()
            .handle("things:very:specific", ok)
            .unwrap();
        assert_eq!(r.route_for("things:other"), Some("things:"));
        assert_eq!(r.route_for("things:very:other"), Some("things:"));
        assert_eq!(
            r.route_for("things:specific:other"),
            Some("things:specific")
        );
        assert_eq!(r.route_for("x"), Some(""));
        assert!(Router::new()
            .handle("a", ok)
            .unwrap()
            .handle("a", ok)
            .is_err());
        assert!(Router::new().handle("a b", ok).is_err());
    }

    #[tokio::test]
    async fn a_handler_time_out_follows_its_route() {
        let minute = Duration::from_secs(60);
        let log = Arc::new(Mutex::new(Vec::<&str>::new()));
        let seen = log.clone();
        let r = Router::new()
            .handle_with_options(
                "image:",
                ok,
                HandlerOptions::new().timeout(minute).middleware(
                    move |next: BoxHandler| -> BoxHandler {
                        let seen = seen.clone();
                        Arc::new(move |ctx: TaskContext, task: Task| {
                            seen.lock().unwrap().push("route");
                            next.call(ctx, task)
                        })
                    },
                ),
            )
            .unwrap()
            .handle("image:thumbnail", ok)
            .unwrap()
            .handle("", ok)
            .unwrap();
        // the route's time-out, for the types it takes
        assert_eq!(r.timeout_for("image:"), Some(minute));
        assert_eq!(r.timeout_for("image:resize"), Some(minute));
        assert_eq!(r.timeout_for("image:thumbnail"), None);
        assert_eq!(r.timeout_for("other"), None);
        assert_eq!(Router::new().timeout_for("x"), None);
        // the options' middleware is the route's
        let task = Task::new("image:resize", &1).unwrap();
        r.dispatch(TaskContext::detached(task.clone()), task)
            .await
            .unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["route"]);
        // a zero time-out is refused, naming the type
        let err = Router::new()
            .handle_with_options("t", ok, HandlerOptions::new().timeout(Duration::ZERO))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("time-out of the handler for task type \"t\" is zero"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn middleware_order_and_not_found() {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let mw = |name: &'static str, log: Arc<Mutex<Vec<String>>>| -> Middleware {
            Arc::new(move |next: BoxHandler| -> BoxHandler {
                let log = log.clone();
                Arc::new(move |ctx: TaskContext, task: Task| {
                    log.lock().unwrap().push(name.to_string());
                    next.call(ctx, task)
                })
            })
        };
        let (g1, g2, r1) = (
            mw("G1", log.clone()),
            mw("G2", log.clone()),
            mw("R1", log.clone()),
        );
        let router = Router::new()
            .layer(move |h| g1(h))
            .handle_with("t", ok, vec![r1])
            .unwrap()
            .layer(move |h| g2(h));
        let task = Task::new("t", &1).unwrap();
        router
            .dispatch(TaskContext::detached(task.clone()), task)
            .await
            .unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["G1", "G2", "R1"]);

        let task = Task::new("other", &1).unwrap();
        let err = router
            .dispatch(TaskContext::detached(task.clone()), task)
            .await
            .unwrap_err();
        assert_eq!(
            err.message(),
            "no handler for task type \"other\" (this worker handles: \"t\")"
        );
        assert!(!err.is_terminate());
        assert_eq!(log.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn from_fn_middleware_wraps_in_order_and_can_answer_itself() {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let logging = |name: &'static str, log: Arc<Mutex<Vec<String>>>| {
            from_fn(move |ctx: TaskContext, task: Task, next: Next| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(format!("{name} before"));
                    let result = next.run(ctx, task).await;
                    log.lock().unwrap().push(format!("{name} after"));
                    result
                }
            })
        };
        let refuse = from_fn(|ctx: TaskContext, task: Task, next: Next| async move {
            if task.task_type == "refused" {
                return Err(HandlerError::terminate("refused by middleware"));
            }
            next.run(ctx, task).await
        });
        let router = Router::new()
            .handle("", ok)
            .unwrap()
            .layer(logging("outer", log.clone()))
            .layer(logging("inner", log.clone()))
            .layer(refuse);
        let task = Task::new("t", &1).unwrap();
        let out = router
            .dispatch(TaskContext::detached(task.clone()), task)
            .await
            .unwrap();
        assert_eq!(out.get(), "\"t\"");
        assert_eq!(
            *log.lock().unwrap(),
            vec!["outer before", "inner before", "inner after", "outer after"]
        );
        let task = Task::new("refused", &1).unwrap();
        let err = router
            .dispatch(TaskContext::detached(task.clone()), task)
            .await
            .unwrap_err();
        assert!(err.is_terminate());
        assert_eq!(err.message(), "refused by middleware");
    }
}
