//! Running a [`Service`]: its `main` (`--help`, `--list-handlers`, the
//! settings, logging and threads), the router its routes make, and the
//! one worker bound to its queue.

use super::{shown, Route, Service, Settings};
use crate::client::Client;
use crate::connect::{self, Connect};
use crate::error::Error;
use crate::program::app::Setup;
use crate::program::logging::init_logging;
use crate::program::running::{layered, serve_metrics};
use crate::program::{App, RunningWorkers, WorkerThreads, CONNECTION_NAME};
use crate::registry::Handlers;
use crate::remote::{ExternalCommand, RequestReply};
use crate::router::{Middleware, Router};
use crate::state::States;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs `service` as the program: answers `--help` and `--list-handlers`,
/// refuses other arguments, then works until SIGINT/SIGTERM.
pub(in crate::program) fn main(
    service: &Service,
    registered: Handlers,
    states: States,
    middleware: Vec<Middleware>,
    setup: Option<Setup>,
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
        ["--list-handlers"] => return list_routes(service, &registered),
        _ => return fail(&"no command line arguments accepted (only --help and --list-handlers)"),
    }
    let settings = match service.settings(|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let level = if settings.debug { "debug" } else { "info" };
    // flushes the spans when the service ends
    let _logging = match init_logging(level, settings.otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(e) => return fail(&e),
    };
    let threads = match WorkerThreads::new(None) {
        Ok(threads) => threads,
        Err(e) => return fail(&format!("cannot start the tokio runtime: {e}")),
    };
    let pool = threads.handlers();
    let run = async {
        let mut app = App::new().states(&states);
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
    match threads.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// `--list-handlers` of a service: each route and what serves it, exit
/// code 1 when one cannot be served.
fn list_routes(service: &Service, registered: &Handlers) -> ExitCode {
    let mut ok = true;
    for r in &service.routes {
        match route_description(r, registered) {
            Err(e) => {
                ok = false;
                println!("{}\terror: {e}", shown(r.task_type()));
            }
            Ok(line) => println!("{}\t{line}", shown(r.task_type())),
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
    handler_pool: Option<tokio::runtime::Handle>,
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
    let (nc, api) = Connect::context(settings.nats_context.clone())
        .origin(format!("NATS context {:?}", settings.nats_context))
        .name(CONNECTION_NAME)
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
    let router = layered(router, middleware);
    let mut builder = Client::builder()
        .nats_client(nc)
        .jetstream_api(api)
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
    let (bound, metrics) = serve_metrics(settings.metrics, &shutdown)
        .await
        .map_err(|e| e.to_string())?;
    let mut worker = client
        .worker(router)
        .concurrency(settings.concurrency)
        .retry_policy_name(&settings.retry_policy)
        .map_err(|e: Error| e.to_string())?;
    if let Some(pool) = handler_pool {
        worker = worker.handler_pool(pool);
    }
    let mut workers = JoinSet::new();
    let stop = shutdown.clone();
    let queue = settings.queue.clone();
    workers.spawn(async move { (queue, worker.run(stop).await) });
    Ok(RunningWorkers::new(
        shutdown,
        workers,
        vec![settings.queue.clone()],
        Some((bound, metrics)),
    ))
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
