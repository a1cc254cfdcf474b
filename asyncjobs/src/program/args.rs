//! The generated worker's command line: [`WorkerArgs`], its flags and
//! environment variables, their parsers, and how they turn into a
//! connection and queue settings.

use super::{CONNECTION_NAME, DEFAULT_CONCURRENCY, DEFAULT_SHUTDOWN_GRACE};
use crate::connect::Connect;
use crate::registry::QueueSettings;
use crate::wire::parse_duration;
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

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

    /// Threads of the handler pool (default: the CPU cores, at least 2):
    /// a task type's handlers run there until they have shown they do not
    /// hold their thread, then on the worker's own thread; a type that
    /// blocks its thread gets a thread per task. 0: no pool, handlers on
    /// the worker's thread
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

    /// How long finished tasks are kept, for queues without their own
    /// retention: STATE=DURATION pairs, comma separated (states complete,
    /// expired, terminated, unreachable, queue_error; failed for all but
    /// complete; all), a duration of at least 1s or forever; `forever` alone
    /// keeps every record (default: complete=24h, failed=168h)
    #[arg(long, env = "ASYNCJOBS_RETENTION", value_name = "SPEC", default_value = "default", hide_default_value = true, value_parser = parse_retention)]
    pub retention: crate::task::Retention,

    /// Name of the highly available task scheduler this worker runs
    /// (schedules stored in CHORIA_AJ_CONFIGURATION fire while it leads the
    /// election) [default: HOST-PID, this host name and process id]
    #[arg(long, env = "AJC_SCHEDULER_NAME", value_name = "NAME")]
    pub scheduler: Option<String>,

    /// Do not run the task scheduler (every worker takes part in its
    /// leader election by default); schedules declared in code are still
    /// stored, and a warning says when no process fires them
    #[arg(long, env = "ASYNCJOBS_NO_SCHEDULER", conflicts_with = "scheduler")]
    pub no_scheduler: bool,

    /// Print the registered handlers and exit
    #[arg(long)]
    pub list_handlers: bool,

    /// Export traces over OTLP/HTTP to this collector, for example
    /// http://127.0.0.1:4318 (feature `otel`; OTEL_SERVICE_NAME and the
    /// SDK's sampling variables apply)
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
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
            retention: crate::task::Retention::default(),
            scheduler: None,
            no_scheduler: false,
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
    /// precedence over `--url`), else `--url` or [`DEFAULT_NATS_URL`](super::DEFAULT_NATS_URL); named
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

    /// The `--queue-*` flags as settings laid over what handlers declare.
    pub(super) fn queue_overrides(&self, declared: QueueSettings) -> QueueSettings {
        QueueSettings {
            max_run_time: self.queue_run_time.or(declared.max_run_time),
            max_tries: self.queue_max_tries.or(declared.max_tries),
            max_concurrent: self.queue_concurrency.or(declared.max_concurrent),
        }
    }
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a whole number of at least 1".into()),
    }
}

fn parse_run_time(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d < Duration::from_secs(1) => Err("the shortest run time is 1s".into()),
        d => Ok(d),
    }
}

fn parse_retention(s: &str) -> Result<crate::task::Retention, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}
