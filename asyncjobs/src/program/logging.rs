//! The generated worker's log and trace output: stderr filtered by
//! `--log-level` (dependencies' noise held at WARN) and, with feature
//! `otel`, spans exported over OTLP.

use std::io::IsTerminal;

/// Crates whose logs stay at WARN when `--log-level` is a bare level
/// (NATS client internals, HTTP and TLS stacks): `--log-level debug` shows
/// asyncjobs and the program's own debug lines, not theirs. Name a crate
/// in the filter to see it (`debug,async_nats=debug`).
const QUIET_DEPENDENCIES: &[&str] = &["async_nats", "hyper", "h2", "tower", "rustls", "mio"];

/// What keeps the log and trace output of [`init_logging`] working: the
/// OTLP exporter's guard (spans are flushed when it drops), if any.
pub(super) type LoggingGuard = Option<LoggingFlush>;

#[cfg(feature = "otel")]
pub(super) type LoggingFlush = crate::otel::OtelGuard;
#[cfg(not(feature = "otel"))]
pub(super) type LoggingFlush = std::convert::Infallible;

/// Installs the worker's log output: stderr (colour on a terminal), filtered
/// by `level` as [`log_directives`] reads it (an invalid filter falls back to
/// `info`), and, with feature `otel` and an `otlp_endpoint`, spans exported
/// over OTLP/HTTP under the program's name (`OTEL_SERVICE_NAME` overrides
/// it). Used by [`App::main`](super::App::main) workers and packaged [`Service`](super::Service)s alike; does
/// nothing when a subscriber is already installed.
///
/// Without feature `otel` an `otlp_endpoint` is logged as ignored.
///
/// # Errors
/// The OTLP exporter could not be built (for example an invalid endpoint).
pub(super) fn init_logging(
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
pub(super) fn log_directives(level: &str) -> String {
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
