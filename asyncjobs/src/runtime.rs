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
//! The pieces are public for programs that need their own `main`: parse
//! [`WorkerArgs`] (or fill one in), pick [`Handlers`], [`start`] them and
//! [`RunningWorkers::stop`] when done.

use crate::client::Client;
use crate::connect::{self, Connect};
use crate::error::Error;
use crate::queue::{Queue, DEFAULT_QUEUE_NAME};
use crate::registry::{DuplicateHandlers, HandlerDef, Handlers};
use crate::router::Router;
use crate::wire::{format_duration, parse_duration};
use clap::Parser;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
/// Handlers declared in library crates are registered only when the library
/// is linked into the program. A binary that does not otherwise use such a
/// library names it: `asyncjobs::main!(my_handlers, more_handlers);` links
/// each (as `extern crate my_handlers as _;`).
#[macro_export]
macro_rules! main {
    ($($handlers_crate:ident),* $(,)?) => {
        $(
            extern crate $handlers_crate as _;
        )*

        fn main() -> ::std::process::ExitCode {
            $crate::runtime::main()
        }
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

    /// Also run the highly available task scheduler under this name (schedules
    /// stored in CHORIA_AJ_CONFIGURATION fire while this instance is leader)
    #[arg(long, env = "AJC_SCHEDULER_NAME", value_name = "NAME")]
    pub scheduler: Option<String>,

    /// Print the registered handlers and exit
    #[arg(long)]
    pub list_handlers: bool,
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
            queues: Vec::new(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            scheduler: None,
            list_handlers: false,
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

fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Why the worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No handler is registered (or none for the selected queues).
    #[error("no task handlers registered: annotate async fns with #[asyncjobs::task_handler(\"<task type>\")]")]
    NoHandlers,
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

/// What `asyncjobs::main!()` calls: parses flags and environment (exiting
/// on `--help` or a bad flag), then runs [`main_with`] with every handler in
/// the program.
pub fn main() -> ExitCode {
    main_with(WorkerArgs::parse(), Handlers::registered())
}

/// Runs a worker for `handlers` until SIGINT/SIGTERM, or lists them with
/// `--list-handlers`. Errors are printed to stderr and give exit code 1.
pub fn main_with(args: WorkerArgs, handlers: Handlers) -> ExitCode {
    if args.list_handlers {
        print!("{}", handler_table(&handlers));
        if let Err(e) = handlers.check() {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(&args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_until_signal(&args, &handlers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_until_signal(args: &WorkerArgs, handlers: &Handlers) -> Result<(), RuntimeError> {
    let workers = start(args, handlers).await?;
    let token = workers.shutdown_token();
    let signals = tokio::spawn(async move {
        let mut signals = Signals::new();
        let name = signals.next().await;
        tracing::info!(
            signal = name,
            "shutting down: finishing running tasks (signal again to exit at once)"
        );
        token.cancel();
        let name = signals.next().await;
        eprintln!("received {name} again: exiting without waiting for running tasks");
        std::process::exit(130);
    });
    let result = workers.wait().await;
    signals.abort();
    if result.is_ok() {
        tracing::info!("worker stopped");
    }
    result
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

    /// [`shutdown`](Self::shutdown) then [`wait`](Self::wait).
    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.shutdown();
        self.wait().await
    }
}

fn queue_settings(name: &str) -> Queue {
    if name == DEFAULT_QUEUE_NAME {
        Queue::default_queue()
    } else {
        Queue::new(name)
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

/// Connects, prepares every queue the handlers name (creating missing ones
/// with default settings, `DEFAULT` with Go's), starts the metrics listener
/// if asked, and starts one worker per queue.
pub async fn start(args: &WorkerArgs, handlers: &Handlers) -> Result<RunningWorkers, RuntimeError> {
    let handlers = select_queues(args, handlers)?;
    handlers.check()?;
    crate::retry::policy_by_name(&args.retry_policy).map_err(RuntimeError::Config)?;
    let queues = handlers.queues();
    let routers = queues
        .iter()
        .map(|q| handlers.router(q).map(|r| (*q, r)))
        .collect::<crate::Result<Vec<(&str, Router)>>>()
        .map_err(RuntimeError::Config)?;

    let nc = connect(args).await?;
    let mut clients = Vec::with_capacity(routers.len());
    for (queue, router) in routers {
        let client = Client::builder()
            .nats_client(nc.clone())
            .queue(queue_settings(queue))
            .build()
            .await
            .map_err(|source| RuntimeError::Queue {
                queue: queue.to_string(),
                source,
            })?;
        clients.push((queue.to_string(), client, router));
    }

    let shutdown = CancellationToken::new();
    let (metrics_addr, metrics) = match args.metrics_port {
        Some(port) => {
            let addr = SocketAddr::new(args.metrics_bind, port);
            let (bound, server) = crate::metrics::serve(addr, shutdown.clone())
                .await
                .map_err(|source| RuntimeError::Metrics { addr, source })?;
            tracing::info!(address = %bound, "serving metrics at /metrics");
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
            "starting worker"
        );
        let worker = client
            .worker(router)
            .concurrency(args.concurrency)
            .retry_policy_name(&args.retry_policy)
            .map_err(RuntimeError::Config)?
            .shutdown_grace(args.shutdown_grace);
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

fn select_queues(args: &WorkerArgs, handlers: &Handlers) -> Result<Handlers, RuntimeError> {
    if handlers.is_empty() {
        return Err(RuntimeError::NoHandlers);
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

/// The `--list-handlers` table.
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
        "DEFAULTS",
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
        assert!(WorkerArgs::try_from_args(["worker", "--retry-policy", "weekly"]).is_err());
        assert!(WorkerArgs::try_from_args(["worker", "--log-level", "info,=["]).is_err());
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
