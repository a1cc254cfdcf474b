//! The packaged handler service ([`Service`]) that `ajc package` generates.

use super::{RunningWorkers, WorkerRuntime};
use crate::client::Client;
use crate::connect::{self, Connect};
use crate::error::Error;
use crate::registry::Handlers;
use crate::remote::{ExternalCommand, RequestReply};
use crate::router::{Middleware, Router};
use crate::state::States;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where a generated Docker image keeps command handlers (Go's layout).
pub const DOCKER_COMMANDS_DIR: &str = "/handler/commands";
/// The port metrics are served on unless `AJ_METRICS_PORT` says otherwise.
pub const DEFAULT_METRICS_PORT: u16 = 8080;

/// How one listed task type is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A `#[task_handler]` for this type in a crate the program links.
    Linked(String),
    /// An external command, relative to the commands directory (or absolute).
    Command {
        /// The task type.
        task_type: String,
        /// The program.
        command: String,
    },
    /// A request-reply service on `CHORIA_AJ.H.T.<type>`.
    Remote(String),
}

/// How a task type reads in messages (`""` is every type).
fn shown(t: &str) -> &str {
    if t.is_empty() {
        "\"\" (every type)"
    } else {
        t
    }
}

impl Route {
    /// The task type routed.
    pub fn task_type(&self) -> &str {
        match self {
            Route::Linked(t) | Route::Remote(t) => t,
            Route::Command { task_type, .. } => task_type,
        }
    }
}

/// A packaged handler service (what `ajc package` generates, docs/interfaces.md
/// §1.8): one work queue and the handlers listed by task type (a
/// `#[task_handler]` of a linked crate, an external command or a
/// request-reply service), configured by the same `AJ_*` environment
/// variables as the Go generator's service. Run it with `asyncjobs::main!`'s
/// `service = ...` option or [`App::service`](super::App::service).
///
/// ```no_run
/// // src/main.rs of a generated project; a crate declaring
/// // #[task_handler("email:new")] is named first: asyncjobs::main!(email_handlers, service = ...)
/// asyncjobs::main!(
///     service = asyncjobs::runtime::Service::new("example.net/email")
///         .queue("EMAIL")
///         .nats_context("AJ_EMAIL")
///         .retry_policy("10m")
///         .discard(["completed"])
///         .command("webhook:call", "webhook/call.sh")
///         .remote("audit:log"),
/// );
/// ```
///
/// | Variable | Meaning | Default |
/// |---|---|---|
/// | `AJ_WORK_QUEUE` | the queue to bind (it must exist, as in Go) | [`Service::queue`] |
/// | `AJ_NATS_CONTEXT` | the NATS context to connect with (`XDG_CONFIG_HOME` locates it) | [`Service::nats_context`] |
/// | `AJ_CONCURRENCY` | handlers at once | the CPU cores |
/// | `AJ_DEBUG` | `1`: debug logging | info |
/// | `AJ_RETRY_POLICY` | `default`, `10m`, `1h` or `1m` | [`Service::retry_policy`] |
/// | `AJ_VERIFICATION_KEY` | hex ed25519 public key: tasks must be signed by it | none |
/// | `AJ_METRICS_PORT` | Prometheus port, `/metrics` (not in Go: fixed 8080 there) | 8080 |
/// | `AJ_METRICS_BIND` | address metrics bind (not in Go) | `0.0.0.0` |
/// | `AJ_COMMANDS_DIR` | where command handlers live (not in Go) | [`Service::commands_dir`] |
/// | `OTEL_EXPORTER_OTLP_ENDPOINT` | export traces over OTLP/HTTP to this collector (not in Go; needs the asyncjobs feature `otel`, ignored with a warning otherwise; `OTEL_SERVICE_NAME` names the service) | none |
///
/// Differences from Go's generated service: the queue and context default
/// to the packaged values instead of being required (the image sets them
/// either way); `--help` and `--list-handlers` are answered; the variables
/// marked above are additions; "Verification Optional" is logged
/// truthfully (Go always logs `false`, docs/go-differences.md §59). A start-up
/// failure (unknown context, missing queue, a listed type no linked crate
/// declares, a missing command) ends the program with status 1 and the
/// cause, followed by the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    name: String,
    queue: String,
    nats_context: String,
    retry_policy: String,
    discard: Vec<String>,
    signatures_optional: bool,
    commands_dir: PathBuf,
    routes: Vec<Route>,
}

impl Service {
    /// A service called `name` (shown in logs and `--help`): queue
    /// `DEFAULT`, context `AJ`, retry policy `default`, commands under
    /// [`DOCKER_COMMANDS_DIR`], no handlers yet.
    pub fn new(name: impl Into<String>) -> Service {
        Service {
            name: name.into(),
            queue: crate::queue::DEFAULT_QUEUE_NAME.into(),
            nats_context: "AJ".into(),
            retry_policy: "default".into(),
            discard: Vec::new(),
            signatures_optional: false,
            commands_dir: DOCKER_COMMANDS_DIR.into(),
            routes: Vec::new(),
        }
    }

    /// The queue bound when `AJ_WORK_QUEUE` is not set.
    pub fn queue(mut self, queue: impl Into<String>) -> Service {
        self.queue = queue.into();
        self
    }

    /// The NATS context used when `AJ_NATS_CONTEXT` is not set.
    pub fn nats_context(mut self, name: impl Into<String>) -> Service {
        self.nats_context = name.into();
        self
    }

    /// The retry policy used when `AJ_RETRY_POLICY` is not set.
    pub fn retry_policy(mut self, name: impl Into<String>) -> Service {
        self.retry_policy = name.into();
        self
    }

    /// Task states whose records are deleted when reached (`completed`,
    /// `expired`, `terminated`; see [`ClientBuilder::discard_states_by_name`](crate::ClientBuilder::discard_states_by_name)).
    pub fn discard<S: Into<String>>(mut self, states: impl IntoIterator<Item = S>) -> Service {
        self.discard.extend(states.into_iter().map(Into::into));
        self
    }

    /// With `AJ_VERIFICATION_KEY` set, also accept unsigned tasks.
    pub fn task_signatures_optional(mut self, yes: bool) -> Service {
        self.signatures_optional = yes;
        self
    }

    /// Where relative [`command`](Service::command) paths are resolved
    /// unless `AJ_COMMANDS_DIR` is set.
    pub fn commands_dir(mut self, dir: impl Into<PathBuf>) -> Service {
        self.commands_dir = dir.into();
        self
    }

    /// Handles `task_type` with the `#[task_handler]` declared for it in a
    /// crate the program links (its declared queue is not consulted: every
    /// handler serves the service's queue).
    pub fn handler(mut self, task_type: impl Into<String>) -> Service {
        self.routes.push(Route::Linked(task_type.into()));
        self
    }

    /// Handles `task_type` with an external command (docs/processing.md §6.4).
    pub fn command(mut self, task_type: impl Into<String>, command: impl Into<String>) -> Service {
        self.routes.push(Route::Command {
            task_type: task_type.into(),
            command: command.into(),
        });
        self
    }

    /// Handles `task_type` by calling the request-reply service listening
    /// on `CHORIA_AJ.H.T.<task_type>` (docs/processing.md §6.2).
    pub fn remote(mut self, task_type: impl Into<String>) -> Service {
        self.routes.push(Route::Remote(task_type.into()));
        self
    }

    /// The handlers, in the order given.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// What the service prints for `--help` and after a start-up error.
    pub fn usage(&self) -> String {
        let mut u = format!(
            "This is a generated handler service ({}) for Choria Asynchronous Jobs.\n\nIt hosts the following handlers:\n\n",
            self.name
        );
        for r in &self.routes {
            let _ = match r {
                Route::Linked(t) => {
                    writeln!(u, " - {}: #[task_handler] in a linked crate", shown(t))
                }
                Route::Command { task_type, command } => writeln!(
                    u,
                    " - {}: using command {}",
                    shown(task_type),
                    self.commands_dir.join(command).display()
                ),
                Route::Remote(t) => writeln!(u, " - {}: remote request-reply service", shown(t)),
            };
        }
        let _ = write!(
            u,
            "\nThe following environment variables are supported:\n\n\
             \x20- AJ_WORK_QUEUE: the work queue to consume from (default {queue})\n\
             \x20- AJ_NATS_CONTEXT: the NATS context to connect with (default {ctx})\n\
             \x20- AJ_CONCURRENCY: the number of handlers run at once (default: the CPU cores)\n\
             \x20- AJ_DEBUG: 1 for debug logging\n\
             \x20- AJ_RETRY_POLICY: the retry policy [default, 10m, 1h, 1m] (default {retry})\n\
             \x20- AJ_VERIFICATION_KEY: a hex ed25519 public key that verifies task signatures\n\
             \x20- AJ_METRICS_PORT, AJ_METRICS_BIND: Prometheus metrics listener (default 0.0.0.0:{DEFAULT_METRICS_PORT}, /metrics)\n\
             \x20- AJ_COMMANDS_DIR: where command handlers are (default {dir})\n\
             \x20- OTEL_EXPORTER_OTLP_ENDPOINT: export traces over OTLP/HTTP to this collector (feature otel)\n",
            queue = self.queue,
            ctx = self.nats_context,
            retry = self.retry_policy,
            dir = self.commands_dir.display(),
        );
        u
    }

    /// The settings in effect with the environment `var` reads (a lookup
    /// such as `|k| std::env::var(k).ok()`).
    ///
    /// # Errors
    /// A message naming the variable: `AJ_CONCURRENCY must be a whole
    /// number of at least 1`, an unknown retry policy, a bad port or address.
    pub fn settings(&self, var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let set = |k: &str| var(k).filter(|v| !v.is_empty());
        let concurrency = match set("AJ_CONCURRENCY") {
            None => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "AJ_CONCURRENCY must be a whole number of at least 1, not {v:?}"
                    ))
                }
            },
        };
        let retry_policy = set("AJ_RETRY_POLICY").unwrap_or_else(|| self.retry_policy.clone());
        crate::retry::policy_by_name(&retry_policy).map_err(|e| format!("AJ_RETRY_POLICY: {e}"))?;
        let port = match set("AJ_METRICS_PORT") {
            None => DEFAULT_METRICS_PORT,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("AJ_METRICS_PORT must be a port number, not {v:?}"))?,
        };
        let bind = match set("AJ_METRICS_BIND") {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("AJ_METRICS_BIND must be an IP address, not {v:?}"))?,
        };
        let verification_key = set("AJ_VERIFICATION_KEY");
        #[cfg(feature = "signing")]
        if let Some(k) = &verification_key {
            crate::signing::Keys::from_public_hex(k.trim())
                .map_err(|e| format!("AJ_VERIFICATION_KEY: {e}"))?;
        }
        Ok(Settings {
            queue: set("AJ_WORK_QUEUE").unwrap_or_else(|| self.queue.clone()),
            nats_context: set("AJ_NATS_CONTEXT").unwrap_or_else(|| self.nats_context.clone()),
            concurrency,
            debug: var("AJ_DEBUG").as_deref() == Some("1"),
            retry_policy,
            verification_key,
            metrics: SocketAddr::new(bind, port),
            commands_dir: set("AJ_COMMANDS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| self.commands_dir.clone()),
            otlp_endpoint: set("OTEL_EXPORTER_OTLP_ENDPOINT"),
        })
    }
}

/// A [`Service`]'s settings once the environment is read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// The queue bound.
    pub queue: String,
    /// The NATS context connected with.
    pub nats_context: String,
    /// Handlers at once.
    pub concurrency: usize,
    /// Debug logging.
    pub debug: bool,
    /// The retry policy's name.
    pub retry_policy: String,
    /// The hex public key tasks must be signed with.
    pub verification_key: Option<String>,
    /// Where metrics are served.
    pub metrics: SocketAddr,
    /// Where relative commands are resolved.
    pub commands_dir: PathBuf,
    /// The OTLP/HTTP collector spans are exported to
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`; needs the asyncjobs feature `otel`).
    pub otlp_endpoint: Option<String>,
}

/// Runs `service` as the program: answers `--help` and `--list-handlers`,
/// refuses other arguments, then works until SIGINT/SIGTERM.
pub(super) fn main(
    service: &Service,
    registered: Handlers,
    states: States,
    middleware: Vec<Middleware>,
    setup: Option<super::Setup>,
) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!(
            "Choria Async Jobs handler service failed: {e}\n\n{}",
            service.usage()
        );
        ExitCode::FAILURE
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {}
        ["--help"] | ["-h"] => {
            print!("{}", service.usage());
            return ExitCode::SUCCESS;
        }
        ["--list-handlers"] => {
            let mut ok = true;
            for r in &service.routes {
                match route_description(r, &registered) {
                    Err(e) => {
                        ok = false;
                        println!("{}\terror: {e}", shown(r.task_type()));
                    }
                    Ok(line) => println!("{}\t{line}", shown(r.task_type())),
                }
            }
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        _ => return fail(&"no command line arguments accepted (only --help and --list-handlers)"),
    }
    let settings = match service.settings(|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let level = if settings.debug { "debug" } else { "info" };
    // flushes the spans when the service ends
    let _logging = match super::init_logging(level, settings.otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(e) => return fail(&e),
    };
    let runtime = match WorkerRuntime::new(None) {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the tokio runtime: {e}")),
    };
    let pool = runtime.handlers();
    let run = async {
        let mut app = super::App::new().states(&states);
        for m in middleware {
            app.middleware.push(m);
        }
        if let Some(setup) = setup {
            app = setup(app).await;
        }
        let workers = start(
            service,
            &settings,
            &registered,
            &app.states,
            &app.middleware,
            pool,
        )
        .await?;
        workers.run_until_signal().await.map_err(|e| e.to_string())
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// What `--list-handlers` shows for a route, or why it cannot be served.
fn route_description(route: &Route, registered: &Handlers) -> Result<String, String> {
    match route {
        Route::Linked(t) => find(registered, t).map(|d| format!("{} ({})", d.name(), d.location())),
        Route::Command { command, .. } => Ok(format!("command {command}")),
        Route::Remote(t) => Ok(format!("request-reply {}", crate::remote::subject_for(t))),
    }
}

/// The one registered handler for `task_type`.
fn find(registered: &Handlers, task_type: &str) -> Result<crate::HandlerDef, String> {
    let found: Vec<_> = registered
        .iter()
        .filter(|d| d.task_type() == task_type)
        .collect();
    match found[..] {
        [one] => Ok(*one),
        [] => Err(format!(
            "no #[task_handler(\"{task_type}\")] is linked into this program: add the crate declaring it to Cargo.toml and name it in asyncjobs::main!(<crate>, ...)"
        )),
        _ => Err(format!(
            "task type {task_type} has {} #[task_handler]s linked: {}",
            found.len(),
            found.iter().map(|d| d.location()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Connects, binds the queue and starts the worker.
async fn start(
    service: &Service,
    settings: &Settings,
    registered: &Handlers,
    states: &States,
    middleware: &[Middleware],
    handler_runtime: Option<tokio::runtime::Handle>,
) -> Result<RunningWorkers, String> {
    if service.routes.is_empty() {
        return Err("no task handlers listed".into());
    }
    tracing::info!(service = %service.name, "Choria Async Jobs handler service");
    tracing::info!(
        nats_context = %settings.nats_context,
        queue = %settings.queue,
        concurrency = settings.concurrency,
        retry_policy = %settings.retry_policy,
        discard = ?service.discard,
        verification_key = settings.verification_key.as_deref().unwrap_or("none"),
        verification_optional = settings.verification_key.is_some() && service.signatures_optional,
        metrics = %settings.metrics,
        "settings"
    );
    let nc = Connect::context(settings.nats_context.clone())
        .origin(format!("NATS context {:?}", settings.nats_context))
        .name(super::CONNECTION_NAME)
        .open()
        .await
        .map_err(|f| match f {
            connect::Failure::Config(e) => plain(e),
            connect::Failure::Unreachable { source, .. } => format!(
                "cannot connect with NATS context {:?}: {source}",
                settings.nats_context
            ),
        })?;
    let mut router = Router::new().with_states(states);
    for route in &service.routes {
        let added = match route {
            Route::Linked(t) => router.register(find(registered, t)?),
            Route::Command { task_type, command } => {
                let path = resolve(&settings.commands_dir, command);
                let cmd = ExternalCommand::new(&path)
                    .map_err(|e| format!("task type {task_type}: {}", plain(e)))?;
                router.handle(task_type.clone(), cmd)
            }
            Route::Remote(t) => router.handle(t.clone(), RequestReply::new(nc.clone(), t)),
        };
        router = added.map_err(|e| format!("task type {}: {}", route.task_type(), plain(e)))?;
    }
    let router = super::layered(router, middleware);
    let mut builder = Client::builder()
        .nats_client(nc)
        .bind_queue(settings.queue.clone())
        .discard_states_by_name(&service.discard)
        .map_err(|e| e.to_string())?;
    if let Some(key) = &settings.verification_key {
        builder = verification(builder, key, service.signatures_optional)?;
    }
    let client = builder.build().await.map_err(|e| match e {
        Error::QueueNotFound(q) | Error::QueueConsumerNotFound(q) => format!(
            "cannot bind queue {q}: it does not exist (or has no WORKERS consumer); create it with `ajc queue add {q}`"
        ),
        e => format!("cannot bind queue {}: {e}", settings.queue),
    })?;
    let shutdown = CancellationToken::new();
    let (bound, metrics) = super::serve_metrics(settings.metrics, &shutdown)
        .await
        .map_err(|e| e.to_string())?;
    let mut worker = client
        .worker(router)
        .concurrency(settings.concurrency)
        .retry_policy_name(&settings.retry_policy)
        .map_err(|e: Error| e.to_string())?;
    if let Some(pool) = handler_runtime {
        worker = worker.handler_runtime(pool);
    }
    let mut workers = JoinSet::new();
    let stop = shutdown.clone();
    let queue = settings.queue.clone();
    workers.spawn(async move { (queue, worker.run(stop).await) });
    Ok(RunningWorkers {
        shutdown,
        workers,
        queues: vec![settings.queue.clone()],
        metrics_addr: Some(bound),
        metrics: Some(metrics),
    })
}

#[cfg(feature = "signing")]
fn verification(
    builder: crate::ClientBuilder,
    key: &str,
    optional: bool,
) -> Result<crate::ClientBuilder, String> {
    let keys = crate::signing::Keys::from_public_hex(key.trim())
        .map_err(|e| format!("AJ_VERIFICATION_KEY: {e}"))?
        .optional(optional);
    Ok(builder.signing_keys(keys))
}

#[cfg(not(feature = "signing"))]
fn verification(_: crate::ClientBuilder, _: &str, _: bool) -> Result<crate::ClientBuilder, String> {
    Err("AJ_VERIFICATION_KEY is set but asyncjobs was built without the `signing` feature".into())
}

/// An error's message without the "invalid configuration:" of a [`Error::Config`].
fn plain(e: Error) -> String {
    match e {
        Error::Config(m) => m,
        other => other.to_string(),
    }
}

fn resolve(dir: &Path, command: &str) -> PathBuf {
    let p = Path::new(command);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_environment_overrides_the_packaged_settings() {
        let s = Service::new("x")
            .queue("EMAIL")
            .nats_context("CTX")
            .retry_policy("10m");
        let d = s.settings(env(&[])).unwrap();
        assert_eq!(
            (
                d.queue.as_str(),
                d.nats_context.as_str(),
                d.retry_policy.as_str()
            ),
            ("EMAIL", "CTX", "10m")
        );
        assert_eq!(d.metrics, "0.0.0.0:8080".parse().unwrap());
        assert!(!d.debug);
        assert_eq!(d.otlp_endpoint, None);
        let o = s
            .settings(env(&[
                ("AJ_WORK_QUEUE", "OTHER"),
                ("AJ_NATS_CONTEXT", "C2"),
                ("AJ_CONCURRENCY", "7"),
                ("AJ_DEBUG", "1"),
                ("AJ_RETRY_POLICY", "1h"),
                ("AJ_METRICS_PORT", "0"),
                ("AJ_METRICS_BIND", "127.0.0.1"),
                ("AJ_COMMANDS_DIR", "/c"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ]))
            .unwrap();
        assert_eq!(
            (o.queue.as_str(), o.nats_context.as_str(), o.concurrency),
            ("OTHER", "C2", 7)
        );
        assert!(o.debug);
        assert_eq!(o.retry_policy, "1h");
        assert_eq!(o.metrics, "127.0.0.1:0".parse().unwrap());
        assert_eq!(o.commands_dir, PathBuf::from("/c"));
        assert_eq!(o.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let s = Service::new("x");
        for (k, v) in [
            ("AJ_CONCURRENCY", "0"),
            ("AJ_CONCURRENCY", "many"),
            ("AJ_RETRY_POLICY", "2d"),
            ("AJ_METRICS_PORT", "99999"),
            ("AJ_METRICS_BIND", "example.net"),
        ] {
            let e = s.settings(env(&[(k, v)])).unwrap_err();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn usage_lists_the_handlers() {
        let u = Service::new("svc")
            .handler("a")
            .command("b", "b/run.sh")
            .remote("c")
            .usage();
        assert!(u.contains(" - a: #[task_handler] in a linked crate"), "{u}");
        assert!(
            u.contains(" - b: using command /handler/commands/b/run.sh"),
            "{u}"
        );
        assert!(u.contains(" - c: remote request-reply service"), "{u}");
    }
}
