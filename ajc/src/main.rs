//! `ajc`: the command-line tool of asyncjobs, a drop-in for the Go Choria
//! Async Jobs `ajc` (docs/interfaces.md §1). See [`cli::LONG_ABOUT`] for where it
//! deliberately differs.

mod blocks;
mod cli;
mod commands;
mod connect;
mod error;
mod flags;
mod format;
mod long_running;
mod package;
mod table;
mod ui;

use clap::Parser;
use cli::Cli;
use commands::Ctx;
use error::CliError;
use std::process::ExitCode;

/// Log timestamps as `HH:MM:SS` (UTC), like the Go tool's logrus setup.
struct Clock;

impl tracing_subscriber::fmt::time::FormatTime for Clock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", format::clock(time::OffsetDateTime::now_utc()))
    }
}

/// What flushes the exported spans when `main` ends: the OTLP exporter's
/// guard with the feature `otel`; without it there is never one.
#[cfg(feature = "otel")]
type TraceGuard = asyncjobs::otel::OtelGuard;
#[cfg(not(feature = "otel"))]
type TraceGuard = std::convert::Infallible;

/// Logs to stderr: info by default (without the NATS client's lines),
/// debug with `--debug`; `RUST_LOG` overrides both. With an OTLP endpoint
/// (`--otlp-endpoint` of `task process` and `server run`), spans are also
/// exported; the returned guard flushes them. An ajc built without the
/// feature `otel` refuses the endpoint (README, "Tracing with
/// OpenTelemetry"): traces asked for are not dropped silently.
fn init_logging(debug: bool, otlp: Option<&str>) -> Result<Option<TraceGuard>, String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = if debug {
        "debug,async_nats=info"
    } else {
        // the NATS client's own lines (for example `authorization
        // violation`) would repeat the one error ajc prints
        "info,async_nats=off,asyncjobs::connect=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_timer(Clock)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    let Some(endpoint) = otlp else {
        let _ = registry.try_init();
        return Ok(None);
    };
    #[cfg(feature = "otel")]
    {
        let (layer, guard) = asyncjobs::otel::otlp_layer("ajc", Some(endpoint))?;
        let _ = registry.with(layer).try_init();
        Ok(Some(guard))
    }
    #[cfg(not(feature = "otel"))]
    {
        drop(registry);
        Err(without_otel(endpoint))
    }
}

/// The refusal of an OTLP endpoint by an ajc built without the feature
/// `otel`: what asked for export, and the command that builds an ajc able
/// to do it.
#[cfg(not(feature = "otel"))]
fn without_otel(endpoint: &str) -> String {
    format!(
        "--otlp-endpoint {endpoint} (or OTEL_EXPORTER_OTLP_ENDPOINT) asks for trace export, \
         but this ajc was built without the feature `otel`; rebuild it with \
         `cargo install --path ajc --features otel`, or unset OTEL_EXPORTER_OTLP_ENDPOINT"
    )
}

/// Runs the chosen command.
async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Ctx {
        global: cli.global.clone(),
        ui: ui::Ui::detect(),
    };
    let result = cli.command.run(&ctx).await;
    connect::flush_all().await;
    result
}

/// Prints an error as the Go tool does.
fn report(err: &CliError, context: &str) {
    match err {
        CliError::UnknownContext(_) => {
            eprintln!(
                "ajc: no NATS context {context:?} found, create one using 'nats context' or pass --server URL"
            );
            let known = connect::known_contexts();
            if !known.is_empty() {
                eprintln!();
                eprintln!("Known contexts: {}", known.join("\n                "));
            }
        }
        CliError::Message(m) => eprintln!("ajc runtime error: {m}"),
    }
}

/// Parses, runs and turns errors into exit status 1.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // help and version go to stdout and succeed; usage errors exit 1 like Go
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let _otel = match init_logging(cli.global.debug, cli.otlp_endpoint()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("ajc runtime error: {e}");
            return ExitCode::from(1);
        }
    };
    // One thread: every command is JetStream round trips (and `task
    // process` hands tasks to other processes), which run fastest without
    // thread hand-offs and leave the other cores to nats-server.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ajc runtime error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let context = cli.global.context.clone();
    let result = runtime.block_on(run(cli));
    // do not wait for background tasks (subscriptions, metrics listener)
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, &context);
            ExitCode::from(1)
        }
    }
}
