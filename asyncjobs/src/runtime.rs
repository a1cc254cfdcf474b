//! The worker program `asyncjobs::main!()` generates: flags and environment,
//! logging, metrics, one worker per queue for every registered handler, and
//! graceful shutdown on SIGINT/SIGTERM.
//!
//! ```no_run
//! mod email {
//!     #[derive(serde::Serialize, serde::Deserialize)]
//!     pub struct NewEmail { to: String }
//!
//!     #[asyncjobs::task_handler("email:new", queue = "EMAIL")]
//!     pub async fn send_email(email: NewEmail) -> Result<String, asyncjobs::HandlerError> {
//!         Ok(format!("sent to {}", email.to))
//!     }
//! }
//!
//! asyncjobs::main!();
//! ```
//!
//! [`App`] is what `main!` runs, for programs that need their own `main`
//! but want the same flags: add shared state and middleware, then
//! [`App::main`]. Lower down, [`WorkerArgs`], [`Handlers`], [`start`] and
//! [`RunningWorkers::stop`] are public too.

use crate::client::Client;
use crate::connect::{self, Connect};
use crate::error::Error;
use crate::handler::BoxHandler;
use crate::queue::Queue;
use crate::registry::{DuplicateHandlers, HandlerDef, Handlers, QueueSettings};
use crate::router::{Middleware, Router};
use crate::state::{MissingStates, States};
use crate::wire::{format_duration, parse_duration};
use clap::Parser;
use std::fmt::Write as _;
use std::future::Future;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "remote")]
mod service;
#[cfg(feature = "remote")]
pub use service::{
    Route, Service, Settings as ServiceSettings, DEFAULT_METRICS_PORT, DOCKER_COMMANDS_DIR,
};

/// The server used when neither `--url`, `NATS_URL` nor a context is given
/// (the same as [`connect::DEFAULT_URL`]).
pub const DEFAULT_NATS_URL: &str = connect::DEFAULT_URL;
/// Default `--concurrency` ([`worker::DEFAULT_CONCURRENCY`](crate::worker::DEFAULT_CONCURRENCY)).
pub use crate::worker::DEFAULT_CONCURRENCY;
/// The connection name the worker shows the server.
pub const CONNECTION_NAME: &str = "asyncjobs worker";
/// Default `--shutdown-grace`.
pub use crate::worker::DEFAULT_SHUTDOWN_GRACE;

/// Generates `fn main()` running every `#[task_handler]` of the program as a
/// worker; see [`runtime`](crate::runtime) and `--help` of the built binary.
///
/// ```no_run
/// mod handlers {
///     #[asyncjobs::task_handler("greet")]
///     pub async fn greet(name: String) -> Result<String, asyncjobs::HandlerError> {
///         Ok(format!("hello {name}"))
///     }
/// }
///
/// asyncjobs::main!();
/// ```
///
/// # Handlers in a library
///
/// Handlers declared in a library crate, including the package's own
/// `src/lib.rs`, are registered only when the library is linked into the
/// program, and a binary that uses nothing of a library does not link it.
/// Name such libraries first: `asyncjobs::main!(shop)` in `src/bin/worker.rs`
/// of package `shop` (`asyncjobs::main!(shop, more_handlers)` for several)
/// links each (as `extern crate shop as _;`). Without it the worker finds no
/// handler and exits with an error saying so (as does `--list-handlers`).
///
/// # Options
///
/// After the crates, `key = value` options, each may be repeated:
///
/// * `state = <expr>`: a value for handlers' [`State<T>`](crate::State)
///   arguments, looked up by its type. The expression is evaluated on the
///   worker's tokio runtime after the flags are parsed (not for `--help` or
///   `--list-handlers`), inside an `async` block, so it may `.await`:
///   `state = Db::connect(&std::env::var("DATABASE_URL").unwrap()).await`.
///   A handler needing a state no option provides makes the worker refuse to
///   start, naming the type and the handler.
/// * `middleware = <expr>`: a middleware wrapping every handler, made with
///   [`router::from_fn`](crate::router::from_fn) or any
///   `Fn(BoxHandler) -> BoxHandler` (see
///   [`Middleware`](crate::router::Middleware)); the first given is the
///   outermost. Evaluated like `state`.
/// * `service = <expr>` (feature `remote`): run as a packaged handler
///   service instead, a [`Service`](crate::runtime::Service) listing the
///   task types it serves (what `ajc package` generates): one queue, the
///   Go generator's `AJ_*` environment variables instead of the flags.
///
/// ```no_run
/// mod jobs {
///     #[derive(Clone)]
///     pub struct Mailer { pub relay: String }
///
///     #[asyncjobs::task_handler("email:new")]
///     pub async fn send(
///         asyncjobs::State(mailer): asyncjobs::State<Mailer>,
///         to: String,
///     ) -> Result<String, asyncjobs::HandlerError> {
///         Ok(format!("{to} via {}", mailer.relay))
///     }
/// }
///
/// async fn log(
///     ctx: asyncjobs::TaskContext,
///     task: asyncjobs::Task,
///     next: asyncjobs::router::Next,
/// ) -> asyncjobs::HandlerResult {
///     let started = std::time::Instant::now();
///     let result = next.run(ctx, task).await;
///     eprintln!("took {:?}", started.elapsed());
///     result
/// }
///
/// asyncjobs::main!(
///     state = jobs::Mailer { relay: "smtp.example.net".into() },
///     middleware = asyncjobs::router::from_fn(log),
/// );
/// ```
///
/// The same with your own `main`: [`App`](crate::runtime::App).
#[macro_export]
macro_rules! main {
    ($($input:tt)*) => {
        $crate::__main_parse!([] [] [] [] $($input)*);
    };
}

/// Parses `asyncjobs::main!`'s input. Not part of the public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __main_parse {
    // done
    ([$($krate:ident)*] [$($state:expr,)*] [$($mw:expr,)*] [$($svc:expr,)*] $(,)?) => {
        $(
            extern crate $krate as _;
        )*

        fn main() -> ::std::process::ExitCode {
            $crate::runtime::App::new()
                .__program(
                    ::core::option_env!("CARGO_PKG_NAME"),
                    &[$(::core::stringify!($krate)),*],
                )
                $(.service($svc))*
                .setup(|__app| async move {
                    __app
                        $(.state($state))*
                        $(.middleware($mw))*
                })
                .main()
        }
    };
    // `state = expr`
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] $(,)? state = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)*] [$($s,)* $value,] [$($m,)*] [$($v,)*] $($($rest)*)?);
    };
    // `middleware = expr`
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] $(,)? middleware = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)*] [$($s,)*] [$($m,)* $value,] [$($v,)*] $($($rest)*)?);
    };
    // `service = expr`
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] $(,)? service = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)*] [$($s,)*] [$($m,)*] [$($v,)* $value,] $($($rest)*)?);
    };
    // another option
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] $(,)? $key:ident = $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "unknown asyncjobs::main! option `",
            ::core::stringify!($key),
            "`: the options are `state = <expr>`, `middleware = <expr>` and `service = <expr>`, \
             after the names of library crates holding handlers"
        ));
    };
    // a library crate
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] $(,)? $krate:ident $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)* $krate] [$($s,)*] [$($m,)*] [$($v,)*] $($($rest)*)?);
    };
}

/// Configuration of the generated worker, from flags and environment.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    about = "Runs the asyncjobs task handlers of this program as a worker: one worker per queue named by its handlers.",
    long_about = None,
    after_help = "Each handler runs on the queue its #[task_handler] attribute names (DEFAULT when none). SIGINT or SIGTERM stops pulling new tasks and lets running handlers finish within --shutdown-grace; a second signal exits at once."
)]
pub struct WorkerArgs {
    /// NATS server URL(s), comma separated [default: nats://127.0.0.1:4222]
    #[arg(long, env = "NATS_URL", value_name = "URL")]
    pub url: Option<String>,

    /// Connect with this NATS CLI context (server, credentials, TLS); takes precedence over --url
    #[arg(long, env = "NATS_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,

    /// How many tasks each queue's worker handles at once
    #[arg(long, env = "ASYNCJOBS_CONCURRENCY", value_name = "N", default_value_t = DEFAULT_CONCURRENCY, value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Wait between tries of a failed task: "default" and "10m" wait 1 to 10
    /// minutes (growing with each try, plus up to 90% jitter), "1h" 10 to 60
    /// minutes, "1m" 1 to 60 seconds. A handler can choose its own delay
    /// with HandlerError::retry_after
    #[arg(long, env = "ASYNCJOBS_RETRY_POLICY", value_name = "NAME", default_value = "default", value_parser = ["default", "10m", "1h", "1m"])]
    pub retry_policy: String,

    /// Serve Prometheus metrics on this port, path /metrics (0 picks a free port)
    #[arg(long, env = "ASYNCJOBS_METRICS_PORT", value_name = "PORT")]
    pub metrics_port: Option<u16>,

    /// Address the metrics listener binds
    #[arg(long, env = "ASYNCJOBS_METRICS_BIND", value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub metrics_bind: IpAddr,

    /// Log filter: error, warn, info, debug, trace, or tracing directives such as "info,asyncjobs=debug"
    #[arg(long, env = "ASYNCJOBS_LOG_LEVEL", value_name = "FILTER", default_value = "info", value_parser = parse_log_filter)]
    pub log_level: String,

    /// Threads for CPU-heavy handlers: the worker pulls, loads, saves,
    /// acknowledges and runs handlers on one thread; a handler holding it
    /// for 250 µs or more in one poll moves to a pool of this many threads
    /// (default: the CPU cores), and so do later tasks of its type once a
    /// poll used that much CPU time. 0: no pool, every handler on the
    /// worker's thread
    #[arg(long, env = "ASYNCJOBS_HANDLER_THREADS", value_name = "N")]
    pub handler_threads: Option<usize>,

    /// Run only the handlers of these queues (repeat or comma separate; default: every queue)
    #[arg(
        long = "queue",
        env = "ASYNCJOBS_QUEUES",
        value_name = "QUEUE",
        value_delimiter = ','
    )]
    pub queues: Vec<String>,

    /// How long running handlers may take to finish after a shutdown signal
    #[arg(long, env = "ASYNCJOBS_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Run time of the queues this worker creates (how long a handler may
    /// run before its task is redelivered), over what handlers declare;
    /// defaults: 1m for DEFAULT, 1h for other queues. Existing queues keep
    /// theirs (ajc queue configure changes them)
    #[arg(long, env = "ASYNCJOBS_QUEUE_RUN_TIME", value_name = "DURATION", value_parser = parse_run_time)]
    pub queue_run_time: Option<Duration>,

    /// Tries per task of the queues this worker creates (0: unlimited), over
    /// what handlers declare; defaults: 100 for DEFAULT, unlimited otherwise
    #[arg(long, env = "ASYNCJOBS_QUEUE_MAX_TRIES", value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub queue_max_tries: Option<i64>,

    /// Handlers running at once across all workers of the queues this worker
    /// creates (1 to 10000), over what handlers declare; default 100
    #[arg(long, env = "ASYNCJOBS_QUEUE_CONCURRENCY", value_name = "N", value_parser = clap::value_parser!(i64).range(1..=10000))]
    pub queue_concurrency: Option<i64>,

    /// Also run the highly available task scheduler under this name (schedules
    /// stored in CHORIA_AJ_CONFIGURATION fire while this instance is leader)
    #[arg(long, env = "AJC_SCHEDULER_NAME", value_name = "NAME")]
    pub scheduler: Option<String>,

    /// Print the registered handlers and exit
    #[arg(long)]
    pub list_handlers: bool,

    /// Export traces over OTLP/HTTP to this collector, for example
    /// http://127.0.0.1:4318 (feature `otel`; OTEL_SERVICE_NAME and the
    /// SDK's sampling variables apply)
    #[cfg(feature = "otel")]
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

impl Default for WorkerArgs {
    /// The values the flags default to, without reading the environment.
    fn default() -> Self {
        WorkerArgs {
            url: None,
            context: None,
            concurrency: DEFAULT_CONCURRENCY,
            retry_policy: "default".into(),
            metrics_port: None,
            metrics_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            log_level: "info".into(),
            handler_threads: None,
            queues: Vec::new(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            queue_run_time: None,
            queue_max_tries: None,
            queue_concurrency: None,
            scheduler: None,
            list_handlers: false,
            #[cfg(feature = "otel")]
            otlp_endpoint: None,
        }
    }
}

impl WorkerArgs {
    /// Parses `args` (the first is the program name) and the environment.
    pub fn try_from_args<I, T>(args: I) -> Result<WorkerArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        WorkerArgs::try_parse_from(args)
    }

    /// Where the worker connects, for messages: `NATS context "name"` or
    /// the URL list (see [`Connect::describe`]).
    pub fn server(&self) -> String {
        self.connection().describe()
    }

    /// How the worker connects: `--context` when given (it takes
    /// precedence over `--url`), else `--url` or [`DEFAULT_NATS_URL`]; named
    /// [`CONNECTION_NAME`], with the default 5 second time-out.
    pub fn connection(&self) -> Connect {
        let from_env = |var: &str, value: &String| std::env::var(var).ok().as_ref() == Some(value);
        match (&self.context, &self.url) {
            (Some(c), _) => Connect::context(c.clone()).origin(if from_env("NATS_CONTEXT", c) {
                format!("NATS context {c:?} from NATS_CONTEXT")
            } else {
                format!("NATS context {c:?} from --context")
            }),
            (None, Some(u)) => Connect::url(u.clone()).origin(if from_env("NATS_URL", u) {
                "NATS_URL environment variable"
            } else {
                "--url flag"
            }),
            (None, None) => Connect::default()
                .origin("default: no --url, --context, NATS_URL or NATS_CONTEXT given"),
        }
        .name(CONNECTION_NAME)
    }
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a whole number of at least 1".into()),
    }
}

/// Crates whose logs stay at WARN when `--log-level` is a bare level
/// (NATS client internals, HTTP and TLS stacks): `--log-level debug` shows
/// asyncjobs and the program's own debug lines, not theirs. Name a crate
/// in the filter to see it (`debug,async_nats=debug`).
const QUIET_DEPENDENCIES: &[&str] = &["async_nats", "hyper", "h2", "tower", "rustls", "mio"];

/// `router` wrapped in `middleware`, the first given outermost (see
/// [`App::middleware`]).
fn layered(router: Router, middleware: &[Middleware]) -> Router {
    middleware.iter().fold(router, |router, m| {
        let m = m.clone();
        router.layer(move |next| m(next))
    })
}

/// What keeps the log and trace output of [`init_logging`] working: the
/// OTLP exporter's guard (spans are flushed when it drops), if any.
pub(crate) type LoggingGuard = Option<LoggingFlush>;

#[cfg(feature = "otel")]
pub(crate) type LoggingFlush = crate::otel::OtelGuard;
#[cfg(not(feature = "otel"))]
pub(crate) type LoggingFlush = std::convert::Infallible;

/// Installs the worker's log output: stderr (colour on a terminal), filtered
/// by `level` as [`log_directives`] reads it (an invalid filter falls back to
/// `info`), and, with feature `otel` and an `otlp_endpoint`, spans exported
/// over OTLP/HTTP under the program's name (`OTEL_SERVICE_NAME` overrides
/// it). Used by [`App::main`] workers and packaged [`Service`]s alike; does
/// nothing when a subscriber is already installed.
///
/// Without feature `otel` an `otlp_endpoint` is logged as ignored.
///
/// # Errors
/// The OTLP exporter could not be built (for example an invalid endpoint).
pub(crate) fn init_logging(
    level: &str,
    otlp_endpoint: Option<&str>,
) -> Result<LoggingGuard, String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    let Some(endpoint) = otlp_endpoint else {
        let _ = registry.try_init();
        return Ok(None);
    };
    #[cfg(feature = "otel")]
    {
        let service = std::env::args()
            .next()
            .and_then(|p| {
                std::path::Path::new(&p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "asyncjobs-worker".into());
        let (layer, guard) = crate::otel::otlp_layer(&service, Some(endpoint))?;
        let _ = registry.with(layer).try_init();
        Ok(Some(guard))
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = registry.try_init();
        tracing::warn!(
            otlp_endpoint = endpoint,
            "traces are not exported: this program was built without the asyncjobs feature `otel` (add features = [\"otel\"] to its asyncjobs dependency)"
        );
        Ok(None)
    }
}

/// The tracing directives for a `--log-level` value: a bare level more
/// verbose than WARN also holds [`QUIET_DEPENDENCIES`] at WARN; anything
/// else is used as given.
pub(crate) fn log_directives(level: &str) -> String {
    match level
        .trim()
        .parse::<tracing_subscriber::filter::LevelFilter>()
    {
        Ok(l) if l > tracing_subscriber::filter::LevelFilter::WARN => {
            let mut d = level.trim().to_string();
            for c in QUIET_DEPENDENCIES {
                d.push_str(&format!(",{c}=warn"));
            }
            d
        }
        _ => level.to_string(),
    }
}

fn parse_run_time(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d < Duration::from_secs(1) => Err("the shortest run time is 1s".into()),
        d => Ok(d),
    }
}

impl WorkerArgs {
    /// The `--queue-*` flags as settings laid over what handlers declare.
    fn queue_overrides(&self, declared: QueueSettings) -> QueueSettings {
        QueueSettings {
            max_run_time: self.queue_run_time.or(declared.max_run_time),
            max_tries: self.queue_max_tries.or(declared.max_tries),
            max_concurrent: self.queue_concurrency.or(declared.max_concurrent),
        }
    }
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Why the worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No handler is registered. The message says how to fix it: annotate
    /// `async fn`s with `#[asyncjobs::task_handler(...)]`, and name the
    /// library holding them in `asyncjobs::main!(<crate>)` (a library the
    /// binary does not use is not linked, so its handlers are not
    /// registered).
    #[error("{}", no_handlers_message(package.as_deref(), linked))]
    NoHandlers {
        /// The package of the program (`CARGO_PKG_NAME`) when known: its
        /// library is the likely home of the handlers.
        package: Option<String>,
        /// The crates named in `asyncjobs::main!(...)`.
        linked: Vec<String>,
    },
    /// Handlers take [`State<T>`](crate::State)s that were not registered.
    #[error("{0}")]
    MissingStates(#[from] MissingStates),
    /// `--queue` names a queue no handler uses.
    #[error("no handlers run on queue {queue}; the handlers use: {known}")]
    UnknownQueue {
        /// The requested queue.
        queue: String,
        /// The queues that have handlers.
        known: String,
    },
    /// Two handlers take the same task type on the same queue.
    #[error("{0}")]
    Duplicates(#[from] DuplicateHandlers),
    /// A setting is invalid.
    #[error("{0}")]
    Config(Error),
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS ({server}): {source} (set --url, NATS_URL or --context)")]
    Connect {
        /// The URL or context tried.
        server: String,
        /// What went wrong.
        source: Error,
    },
    /// Creating or loading a queue or the task store failed.
    #[error("cannot prepare queue {queue}: {source}")]
    Queue {
        /// The queue.
        queue: String,
        /// What went wrong.
        source: Error,
    },
    /// The metrics listener could not bind.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A queue's worker stopped with an error.
    #[error("worker for queue {queue} failed: {source}")]
    Worker {
        /// The queue.
        queue: String,
        /// What went wrong.
        source: Error,
    },
    /// A queue's worker panicked.
    #[error("worker for queue {queue} panicked")]
    WorkerPanicked {
        /// The queue.
        queue: String,
    },
}

/// The message of [`RuntimeError::NoHandlers`].
fn no_handlers_message(package: Option<&str>, linked: &[String]) -> String {
    let mut m = String::from(
        "no task handlers registered: annotate async fns with \
         #[asyncjobs::task_handler(\"<task type>\")]",
    );
    if !linked.is_empty() {
        let _ = write!(
            m,
            "; the crates named in asyncjobs::main!({}) declare none",
            linked.join(", ")
        );
        return m;
    }
    let lib = package.map(|p| p.replace('-', "_"));
    let lib = lib.as_deref().unwrap_or("your_lib_crate");
    let _ = write!(
        m,
        ". If they are in a library, such as this package's src/lib.rs, the binary must \
         link it or they are not registered: write `asyncjobs::main!({lib});` (the \
         library's crate name) instead of `asyncjobs::main!();`"
    );
    m
}

/// A future building the program's states and middleware (see [`App::setup`]).
type Setup = Box<dyn FnOnce(App) -> Pin<Box<dyn Future<Output = App>>>>;

/// The worker program `asyncjobs::main!()` runs, as a builder: which
/// handlers, their shared state and middleware, then the same flags,
/// logging and shutdown as `main!`.
///
/// ```no_run
/// mod jobs {
///     #[derive(Clone)]
///     pub struct Db(pub std::sync::Arc<str>);
///
///     #[asyncjobs::task_handler("report:build")]
///     pub async fn build(
///         asyncjobs::State(db): asyncjobs::State<Db>,
///         name: String,
///     ) -> Result<String, asyncjobs::HandlerError> {
///         Ok(format!("{name} from {}", db.0))
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     asyncjobs::runtime::App::new()
///         .state(jobs::Db("postgres://localhost/shop".into()))
///         .middleware(asyncjobs::router::from_fn(|ctx, task, next| async move {
///             let result = next.run(ctx, task).await;
///             result
///         }))
///         .main()
/// }
/// ```
pub struct App {
    handlers: Option<Handlers>,
    states: States,
    middleware: Vec<Middleware>,
    setup: Option<Setup>,
    package: Option<&'static str>,
    linked: Vec<&'static str>,
    handler_runtime: Option<tokio::runtime::Handle>,
    #[cfg(feature = "remote")]
    service: Option<Service>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("handlers", &self.handlers)
            .field("states", &self.states)
            .field("middleware", &self.middleware.len())
            .field("setup", &self.setup.is_some())
            .field("package", &self.package)
            .field("linked", &self.linked)
            .field("handler_runtime", &self.handler_runtime.is_some())
            .finish()
    }
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// Every handler of the program ([`Handlers::registered`]), no state,
    /// no middleware.
    pub fn new() -> App {
        App {
            handlers: None,
            states: States::new(),
            middleware: Vec::new(),
            setup: None,
            package: None,
            linked: Vec::new(),
            handler_runtime: None,
            #[cfg(feature = "remote")]
            service: None,
        }
    }

    /// Runs as the packaged handler `service` (see [`Service`]): its
    /// handlers on its one queue, configured by the `AJ_*` environment
    /// variables; [`main`](App::main) then reads no flags.
    #[cfg(feature = "remote")]
    pub fn service(mut self, service: Service) -> App {
        self.service = Some(service);
        self
    }

    /// Runs these handlers instead of every registered one.
    pub fn handlers(mut self, handlers: Handlers) -> App {
        self.handlers = Some(handlers);
        self
    }

    /// Registers `value` for handlers' [`State<T>`](crate::State) arguments
    /// of its type (a value of the same type given before is replaced).
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> App {
        self.states.insert(value);
        self
    }

    /// Registers every value of `states`, as [`state`](App::state) does.
    pub fn states(mut self, states: &States) -> App {
        self.states.extend(states);
        self
    }

    /// Wraps every handler of every queue in `middleware`, such as one made
    /// with [`from_fn`](crate::router::from_fn); the first added is the
    /// outermost (see [`Middleware`]).
    pub fn middleware(
        mut self,
        middleware: impl Fn(BoxHandler) -> BoxHandler + Send + Sync + 'static,
    ) -> App {
        self.middleware.push(std::sync::Arc::new(middleware));
        self
    }

    /// Runs `setup` on the worker's tokio runtime once the flags are parsed
    /// and before the worker starts (never for `--help` or
    /// `--list-handlers`), to add states and middleware that need async
    /// set-up, such as a database pool. `asyncjobs::main!(state = ...)`
    /// uses it. A later call replaces an earlier one.
    ///
    /// ```no_run
    /// # #[derive(Clone)] struct Pool;
    /// # impl Pool { async fn connect(_: &str) -> Pool { Pool } }
    /// fn main() -> std::process::ExitCode {
    ///     asyncjobs::runtime::App::new()
    ///         .setup(|app| async move { app.state(Pool::connect("postgres://db/shop").await) })
    ///         .main()
    /// }
    /// ```
    pub fn setup<F, Fut>(mut self, setup: F) -> App
    where
        F: FnOnce(App) -> Fut + 'static,
        Fut: Future<Output = App> + 'static,
    {
        self.setup = Some(Box::new(move |app| Box::pin(setup(app))));
        self
    }

    /// What `main!` knows about the program: its package and the crates it
    /// names. Not part of the public API.
    #[doc(hidden)]
    pub fn __program(mut self, package: Option<&'static str>, linked: &[&'static str]) -> App {
        self.package = package;
        self.linked = linked.to_vec();
        self
    }

    fn registered(&self) -> Handlers {
        self.handlers.clone().unwrap_or_else(Handlers::registered)
    }

    fn no_handlers(&self) -> RuntimeError {
        RuntimeError::NoHandlers {
            package: self.package.map(str::to_string),
            linked: self.linked.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// Parses flags and environment (exiting on `--help` or a bad flag),
    /// then runs [`main_with`](App::main_with).
    pub fn main(self) -> ExitCode {
        #[cfg(feature = "remote")]
        if self.service.is_some() {
            return self.main_service();
        }
        self.main_with(WorkerArgs::parse())
    }

    /// [`main`](App::main) of a packaged [`Service`].
    #[cfg(feature = "remote")]
    fn main_service(self) -> ExitCode {
        let registered = self.registered();
        match self.service {
            Some(s) => service::main(&s, registered, self.states, self.middleware, self.setup),
            None => ExitCode::FAILURE,
        }
    }

    /// Runs a worker until SIGINT/SIGTERM, or lists the handlers with
    /// `--list-handlers` (exit code 1 when there are none or they
    /// conflict). Errors are printed to stderr and give exit code 1.
    pub fn main_with(mut self, args: WorkerArgs) -> ExitCode {
        let handlers = self.registered();
        if args.list_handlers {
            if handlers.is_empty() {
                eprintln!("error: {}", self.no_handlers());
                return ExitCode::FAILURE;
            }
            print!("{}", handler_table(&handlers));
            if let Err(e) = handlers.check() {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            return ExitCode::SUCCESS;
        }
        if handlers.is_empty() {
            eprintln!("error: {}", self.no_handlers());
            return ExitCode::FAILURE;
        }
        self.handlers = Some(handlers);
        #[cfg(feature = "otel")]
        let otlp = args.otlp_endpoint.as_deref();
        #[cfg(not(feature = "otel"))]
        let otlp = None;
        // flushes the spans when the worker ends
        let _logging = match init_logging(&args.log_level, otlp) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let runtime = match WorkerRuntime::new(args.handler_threads) {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the tokio runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(pool) = runtime.handlers() {
            self.handler_runtime = Some(pool);
        }
        match runtime.block_on(self.run_until_signal(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn run_until_signal(mut self, args: &WorkerArgs) -> Result<(), RuntimeError> {
        if let Some(setup) = self.setup.take() {
            self = setup(self).await;
        }
        self.start(args).await?.run_until_signal().await
    }

    /// Checks the handlers, states and queue settings, connects, prepares
    /// every queue the handlers name (creating missing ones with the
    /// settings [`Handlers::queue`] gives), starts the metrics listener if
    /// asked, and starts one worker per queue. The [`setup`](App::setup)
    /// function is not run here.
    ///
    /// # Errors
    /// Without connecting: [`RuntimeError::NoHandlers`],
    /// [`RuntimeError::UnknownQueue`], [`RuntimeError::Duplicates`],
    /// [`RuntimeError::MissingStates`] (every missing state of every
    /// handler) and [`RuntimeError::Config`] (conflicting queue settings, a
    /// bad retry policy). Then [`RuntimeError::Connect`],
    /// [`RuntimeError::Queue`] and [`RuntimeError::Metrics`].
    pub async fn start(&self, args: &WorkerArgs) -> Result<RunningWorkers, RuntimeError> {
        let registered = self.registered();
        if registered.is_empty() {
            return Err(self.no_handlers());
        }
        start_with(
            args,
            &registered,
            &self.states,
            &self.middleware,
            self.handler_runtime.clone(),
        )
        .await
    }

    /// Runs handlers on `runtime` rather than where [`App::start`] runs
    /// ([`Worker::handler_runtime`](crate::Worker::handler_runtime));
    /// [`App::main`] sets it to its [`WorkerRuntime`]'s pool.
    pub fn handler_runtime(mut self, runtime: tokio::runtime::Handle) -> App {
        self.handler_runtime = Some(runtime);
        self
    }
}

/// The runtimes of a worker program: a current-thread runtime for the
/// worker (pulls, loads, saves, acks and the handlers that wait on I/O:
/// JetStream round trips run fastest with no thread hand-offs, leaving the
/// other cores to nats-server) and a multi-thread pool that CPU-heavy
/// handlers move to, so they still use every core
/// ([`Worker::handler_runtime`](crate::Worker::handler_runtime)).
/// `asyncjobs::main!` runs on one.
///
/// ```
/// let rt = asyncjobs::runtime::WorkerRuntime::new(Some(2)).unwrap();
/// assert_eq!(rt.handler_threads(), 2);
/// let pool = rt.handlers().expect("a pool of 2 threads");
/// let answer = rt.block_on(async move { pool.spawn(async { 6 * 7 }).await.unwrap() });
/// assert_eq!(answer, 42);
/// ```
#[derive(Debug)]
pub struct WorkerRuntime {
    worker: tokio::runtime::Runtime,
    handlers: Option<tokio::runtime::Runtime>,
    handler_threads: usize,
}

impl WorkerRuntime {
    /// A worker runtime with `handler_threads` handler threads (`None`:
    /// one per CPU core as [`std::thread::available_parallelism`] counts
    /// them; `Some(0)`: no pool, handlers run on the worker's thread).
    ///
    /// # Errors
    /// The operating system refused a thread or the I/O driver.
    pub fn new(handler_threads: Option<usize>) -> std::io::Result<WorkerRuntime> {
        let handler_threads = handler_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let worker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handlers = match handler_threads {
            0 => None,
            n => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("asyncjobs-handler")
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(WorkerRuntime {
            worker,
            handlers,
            handler_threads,
        })
    }

    /// Handler threads (0: handlers run on the worker's thread).
    pub fn handler_threads(&self) -> usize {
        self.handler_threads
    }

    /// The handler pool, for [`Worker::handler_runtime`](crate::Worker::handler_runtime)
    /// (`None` without one).
    pub fn handlers(&self) -> Option<tokio::runtime::Handle> {
        self.handlers.as_ref().map(|rt| rt.handle().clone())
    }

    /// Runs `future` on the worker's thread (the calling thread) to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.worker.block_on(future)
    }
}

/// What `asyncjobs::main!()` called before [`App`]: [`App::new`]`.main()`.
pub fn main() -> ExitCode {
    App::new().main()
}

/// Runs a worker for `handlers` until SIGINT/SIGTERM, or lists them with
/// `--list-handlers`: [`App::main_with`] with these handlers, no state and
/// no middleware.
pub fn main_with(args: WorkerArgs, handlers: Handlers) -> ExitCode {
    App::new().handlers(handlers).main_with(args)
}

struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.int) => "SIGINT",
                _ = recv(&mut self.term) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// The workers started by [`start`], one per queue.
pub struct RunningWorkers {
    shutdown: CancellationToken,
    workers: JoinSet<(String, crate::Result<()>)>,
    queues: Vec<String>,
    metrics_addr: Option<SocketAddr>,
    metrics: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWorkers")
            .field("queues", &self.queues)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

impl RunningWorkers {
    /// The queues being processed.
    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// Where metrics are served, when `--metrics-port` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A token that stops every worker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Asks every worker to stop (see [`WorkerArgs::shutdown_grace`]).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every worker has stopped. When one fails, the others are
    /// stopped too and the first failure is returned.
    pub async fn wait(mut self) -> Result<(), RuntimeError> {
        let mut first_error = None;
        while let Some(joined) = self.workers.join_next().await {
            let error = match joined {
                Ok((_, Ok(()))) => continue,
                Ok((queue, Err(source))) => RuntimeError::Worker { queue, source },
                Err(e) => RuntimeError::WorkerPanicked {
                    queue: if e.is_panic() {
                        "(unknown)".into()
                    } else {
                        "(cancelled)".into()
                    },
                },
            };
            tracing::error!(error = %error, "stopping every worker");
            self.shutdown.cancel();
            first_error.get_or_insert(error);
        }
        self.shutdown.cancel();
        if let Some(m) = self.metrics.take() {
            let _ = m.await;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits until the workers stop, stopping them gracefully on SIGINT or
    /// SIGTERM; a second signal exits the process at once (status 130).
    pub async fn run_until_signal(self) -> Result<(), RuntimeError> {
        let token = self.shutdown_token();
        let signals = tokio::spawn(async move {
            let mut signals = Signals::new();
            let name = signals.next().await;
            tracing::info!(
                signal = name,
                "shutting down: finishing running tasks (signal again to exit at once)"
            );
            token.cancel();
            let name = signals.next().await;
            eprintln!(
                "received {name} again: exiting without waiting for running tasks; \
                 they run again once their queue's run time (the WORKERS ack wait) has passed"
            );
            std::process::exit(130);
        });
        let result = self.wait().await;
        signals.abort();
        if result.is_ok() {
            tracing::info!("worker stopped");
        }
        result
    }

    /// [`shutdown`](Self::shutdown) then [`wait`](Self::wait).
    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.shutdown();
        self.wait().await
    }
}

async fn connect(args: &WorkerArgs) -> Result<async_nats::Client, RuntimeError> {
    args.connection()
        .open()
        .await
        .map_err(|failure| RuntimeError::Connect {
            server: args.server(),
            source: match failure {
                connect::Failure::Config(e) => e,
                connect::Failure::Unreachable { source, .. } => {
                    crate::error::nats("", source).into()
                }
            },
        })
}

/// [`App::start`] with these handlers, no state and no middleware.
pub async fn start(args: &WorkerArgs, handlers: &Handlers) -> Result<RunningWorkers, RuntimeError> {
    start_with(args, handlers, &States::new(), &[], None).await
}

async fn start_with(
    args: &WorkerArgs,
    handlers: &Handlers,
    states: &States,
    middleware: &[Middleware],
    handler_runtime: Option<tokio::runtime::Handle>,
) -> Result<RunningWorkers, RuntimeError> {
    let handlers = select_queues(args, handlers)?;
    handlers.check()?;
    handlers.check_states(states)?;
    crate::retry::policy_by_name(&args.retry_policy).map_err(RuntimeError::Config)?;
    let queues = handlers.queues();
    let routers = queues
        .iter()
        .map(|q| {
            let declared = args.queue_overrides(handlers.declared_settings(q)?);
            let settings = declared.apply(Queue::defaults_for(q));
            let router = layered(handlers.router_with(q, states)?, middleware);
            Ok((*q, declared, settings, router))
        })
        .collect::<crate::Result<Vec<(&str, QueueSettings, Queue, Router)>>>()
        .map_err(RuntimeError::Config)?;

    let nc = connect(args).await?;
    let mut clients = Vec::with_capacity(routers.len());
    for (queue, declared, settings, router) in routers {
        let client = Client::builder()
            .nats_client(nc.clone())
            .queue(settings)
            .build()
            .await
            .map_err(|source| RuntimeError::Queue {
                queue: queue.to_string(),
                source,
            })?;
        let differences = declared.differences(client.queue());
        if !differences.is_empty() {
            // the first creator of a queue decides its settings
            tracing::warn!(queue, differences = %differences.join("; "),
                "the queue exists with other settings than its handlers declare; they are not changed (use `ajc queue configure {queue}` or Client::configure_queue)");
        }
        clients.push((queue.to_string(), client, router));
    }

    let shutdown = CancellationToken::new();
    let (metrics_addr, metrics) = match args.metrics_port {
        Some(port) => {
            let (bound, server) =
                serve_metrics(SocketAddr::new(args.metrics_bind, port), &shutdown).await?;
            (Some(bound), Some(server))
        }
        None => (None, None),
    };

    let mut workers = JoinSet::new();
    let mut names = Vec::new();
    if let (Some(name), Some((_, client, _))) = (&args.scheduler, clients.first()) {
        let scheduler = crate::scheduler::Scheduler::new(client.clone(), name.clone());
        let stop = shutdown.clone();
        let label = format!("scheduler {name}");
        tracing::info!(scheduler = %name, "starting task scheduler");
        workers.spawn(async move {
            let res = scheduler.run(stop).await.map_err(crate::Error::from);
            (label, res)
        });
    }
    for (queue, client, router) in clients {
        tracing::info!(
            queue = %queue,
            handlers = ?router.task_types().collect::<Vec<_>>(),
            concurrency = args.concurrency,
            queue_concurrency = client.queue().effective_max_concurrent(),
            run_time = %format_duration(client.queue().effective_max_run_time()),
            "starting worker (concurrency: this worker's handlers at once; queue_concurrency: all workers' together)"
        );
        let mut worker = client
            .worker(router)
            .concurrency(args.concurrency)
            .retry_policy_name(&args.retry_policy)
            .map_err(RuntimeError::Config)?
            .shutdown_grace(args.shutdown_grace);
        if let Some(pool) = &handler_runtime {
            worker = worker.handler_runtime(pool.clone());
        }
        let stop = shutdown.clone();
        names.push(queue.clone());
        workers.spawn(async move { (queue, worker.run(stop).await) });
    }
    Ok(RunningWorkers {
        shutdown,
        workers,
        queues: names,
        metrics_addr,
        metrics,
    })
}

/// Starts the Prometheus listener on `addr` until `shutdown`; returns the
/// bound address (port 0 picks one) and the listener's task.
///
/// # Errors
/// [`RuntimeError::Metrics`] when `addr` cannot be bound.
async fn serve_metrics(
    addr: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), RuntimeError> {
    let (bound, server) = crate::metrics::serve(addr, shutdown.clone())
        .await
        .map_err(|source| RuntimeError::Metrics { addr, source })?;
    tracing::info!(address = %bound, "serving metrics at /metrics");
    Ok((bound, server))
}

fn select_queues(args: &WorkerArgs, handlers: &Handlers) -> Result<Handlers, RuntimeError> {
    if handlers.is_empty() {
        return Err(RuntimeError::NoHandlers {
            package: None,
            linked: Vec::new(),
        });
    }
    if args.queues.is_empty() {
        return Ok(handlers.clone());
    }
    let known = handlers.queues();
    for q in &args.queues {
        if !known.contains(&q.as_str()) {
            return Err(RuntimeError::UnknownQueue {
                queue: q.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(handlers.clone().only_queues(&args.queues))
}

/// The `--list-handlers` table: task type, queue, function, payload and
/// result types, settings (task defaults, queue settings, states taken)
/// and source location, one handler per line.
pub fn handler_table(handlers: &Handlers) -> String {
    if handlers.is_empty() {
        return "no task handlers registered\n".into();
    }
    let rows: Vec<[String; 6]> = handlers.iter().map(handler_row).collect();
    let header = [
        "TASK TYPE",
        "QUEUE",
        "HANDLER",
        "PAYLOAD -> RESULT",
        "SETTINGS",
        "LOCATION",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn handler_row(def: &HandlerDef) -> [String; 6] {
    let task_type = if def.task_type().is_empty() {
        "\"\" (catch-all)".to_string()
    } else {
        def.task_type().to_string()
    };
    let mut defaults = Vec::new();
    if let Some(n) = def.max_tries() {
        defaults.push(format!("max_tries={n}"));
    }
    if let Some(d) = def.deadline() {
        defaults.push(format!("deadline={}", format_duration(d)));
    }
    let queue = def.queue_settings();
    if let Some(d) = queue.max_run_time {
        defaults.push(format!("queue_run_time={}", format_duration(d)));
    }
    if let Some(n) = queue.max_tries {
        defaults.push(format!("queue_max_tries={n}"));
    }
    if let Some(n) = queue.max_concurrent {
        defaults.push(format!("queue_concurrency={n}"));
    }
    for state in def.state_types() {
        defaults.push(format!("State<{state}>"));
    }
    [
        task_type,
        def.queue().to_string(),
        def.name().to_string(),
        format!("{} -> {}", def.payload_type(), def.output_type()),
        if defaults.is_empty() {
            "-".into()
        } else {
            defaults.join(" ")
        },
        def.location(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    mod jobs {
        use crate::{HandlerError, State};

        #[derive(Clone)]
        pub(super) struct Db;

        #[crate::task_handler("rt:stateful", queue = "RT_STATE", crate = "crate")]
        pub(super) async fn stateful(State(_db): State<Db>, n: u8) -> Result<u8, HandlerError> {
            Ok(n)
        }

        #[crate::task_handler(
            "rt:a",
            queue = "RT_CONFLICT",
            queue_run_time = "5m",
            crate = "crate"
        )]
        pub(super) async fn a(n: u8) -> Result<u8, HandlerError> {
            Ok(n)
        }

        #[crate::task_handler(
            "rt:b",
            queue = "RT_CONFLICT",
            queue_run_time = "10m",
            crate = "crate"
        )]
        pub(super) async fn b(n: u8) -> Result<u8, HandlerError> {
            Ok(n)
        }
    }

    fn unreachable_server() -> WorkerArgs {
        WorkerArgs {
            url: Some("nats://127.0.0.1:1".into()),
            ..WorkerArgs::default()
        }
    }

    #[test]
    fn no_handlers_names_the_fix() {
        let e = App::new()
            .__program(Some("my-shop"), &[])
            .no_handlers()
            .to_string();
        assert!(e.starts_with("no task handlers registered"), "{e}");
        assert!(e.contains("`asyncjobs::main!(my_shop);`"), "{e}");
        let e = App::new().no_handlers().to_string();
        assert!(e.contains("`asyncjobs::main!(your_lib_crate);`"), "{e}");
        let e = App::new()
            .__program(Some("shop"), &["shop"])
            .no_handlers()
            .to_string();
        assert!(
            e.ends_with("the crates named in asyncjobs::main!(shop) declare none"),
            "{e}"
        );
    }

    #[test]
    fn listing_no_handlers_fails() {
        let args = WorkerArgs {
            list_handlers: true,
            ..WorkerArgs::default()
        };
        let code = App::new().handlers(Handlers::new()).main_with(args.clone());
        assert_eq!(code, ExitCode::FAILURE);
        let code = App::new()
            .handlers(Handlers::new().with(jobs::a::HANDLER))
            .main_with(args);
        assert_eq!(code, ExitCode::SUCCESS);
    }

    #[tokio::test]
    async fn missing_states_and_conflicting_queue_settings_stop_the_start() {
        // both are checked before connecting: no server is needed
        let handlers = Handlers::new().with(jobs::stateful::HANDLER);
        let err = App::new()
            .handlers(handlers.clone())
            .start(&unreachable_server())
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::MissingStates(_)), "{err}");
        let e = err.to_string();
        assert!(
            e.contains("jobs::stateful (task type \"rt:stateful\"")
                && e.contains("takes State<asyncjobs::runtime::tests::jobs::Db>"),
            "{e}"
        );
        let err = App::new()
            .handlers(handlers)
            .state(jobs::Db)
            .start(&unreachable_server())
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Connect { .. }), "{err}");

        let handlers = Handlers::new()
            .with(jobs::a::HANDLER)
            .with(jobs::b::HANDLER);
        let err = App::new()
            .handlers(handlers)
            .start(&unreachable_server())
            .await
            .unwrap_err();
        let e = err.to_string();
        assert!(
            e.contains("handlers on queue RT_CONFLICT declare different queue_run_time")
                && e.contains("says 5m")
                && e.contains("says 10m"),
            "{e}"
        );
    }

    #[test]
    fn the_table_shows_settings_and_states() {
        let table = handler_table(
            &Handlers::new()
                .with(jobs::a::HANDLER)
                .with(jobs::stateful::HANDLER),
        );
        assert!(table.contains("queue_run_time=5m"), "{table}");
        assert!(table.contains("State<Db>"), "{table}");
    }

    #[test]
    fn durations() {
        // the grammar itself is tested in wire; here: the flag uses it
        let a = WorkerArgs::try_from_args(["worker", "--shutdown-grace", "1.5m"]).unwrap();
        assert_eq!(a.shutdown_grace, Duration::from_secs(90));
        let e = WorkerArgs::try_from_args(["worker", "--shutdown-grace", "1d"]).unwrap_err();
        assert!(e.to_string().contains("expected a Go duration"), "{e}");
        assert!(WorkerArgs::try_from_args(["worker", "--shutdown-grace", "-1s"]).is_err());
    }

    #[test]
    fn defaults_match_the_flags() {
        let parsed = WorkerArgs::try_from_args(["worker"]).unwrap();
        // the environment may set NATS_URL and friends; compare the rest
        let expected = WorkerArgs {
            url: parsed.url.clone(),
            context: parsed.context.clone(),
            ..WorkerArgs::default()
        };
        if std::env::vars().all(|(k, _)| !k.starts_with("ASYNCJOBS_")) {
            assert_eq!(parsed, expected);
        }
        assert!(WorkerArgs::try_from_args(["worker", "--concurrency", "0"]).is_err());
        assert_eq!(
            WorkerArgs::try_from_args(["worker", "--handler-threads", "0"])
                .unwrap()
                .handler_threads,
            Some(0)
        );
        assert!(WorkerArgs::try_from_args(["worker", "--handler-threads", "-1"]).is_err());
        assert!(WorkerArgs::try_from_args(["worker", "--retry-policy", "weekly"]).is_err());
        assert!(WorkerArgs::try_from_args(["worker", "--log-level", "info,=["]).is_err());
        let a = WorkerArgs::try_from_args([
            "worker",
            "--queue-run-time",
            "10m",
            "--queue-concurrency",
            "5",
        ])
        .unwrap();
        let declared = QueueSettings {
            max_run_time: Some(Duration::from_secs(60)),
            max_tries: Some(3),
            max_concurrent: None,
        };
        assert_eq!(
            a.queue_overrides(declared),
            QueueSettings {
                max_run_time: Some(Duration::from_secs(600)),
                max_tries: Some(3),
                max_concurrent: Some(5),
            }
        );
        for bad in [
            ["--queue-run-time", "10ms"],
            ["--queue-concurrency", "0"],
            ["--queue-max-tries", "-1"],
        ] {
            assert!(
                WorkerArgs::try_from_args(["worker", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            log_directives("debug"),
            "debug,async_nats=warn,hyper=warn,h2=warn,tower=warn,rustls=warn,mio=warn"
        );
        assert_eq!(log_directives("warn"), "warn");
        assert_eq!(log_directives("error"), "error");
        assert_eq!(
            log_directives("debug,async_nats=debug"),
            "debug,async_nats=debug"
        );
        let a = WorkerArgs::try_from_args(["worker", "--queue", "A,B", "--queue", "C"]).unwrap();
        assert_eq!(a.queues, vec!["A", "B", "C"]);
    }

    #[test]
    fn the_help_shows_the_default_url() {
        use clap::CommandFactory;
        let help = WorkerArgs::command().render_help().to_string();
        assert!(help.contains(connect::DEFAULT_URL), "{help}");
    }

    #[test]
    fn connection_settings() {
        let mut a = WorkerArgs::default();
        assert_eq!(a.server(), connect::DEFAULT_URL);
        a.url = Some("nats://a:1,nats://b:2".into());
        assert_eq!(a.server(), "nats://a:1,nats://b:2");
        a.context = Some("prod".into());
        assert_eq!(a.server(), "NATS context \"prod\"");
        assert_eq!(
            a.connection(),
            Connect::context("prod")
                .name(CONNECTION_NAME)
                .origin("NATS context \"prod\" from --context")
        );
    }
}
