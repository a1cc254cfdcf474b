//! What the long-running commands (`task process`, `task cron scheduler`,
//! `server run`) share: stopping on SIGINT or SIGTERM, and the `--monitor`
//! Prometheus listener.

use crate::error::{CliError, Result};
use clap::Args;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// `--monitor PORT` and where it listens.
#[derive(Args, Debug, Clone, Copy)]
pub struct MonitorArgs {
    /// Runs monitoring on the given port
    #[arg(long = "monitor", value_name = "PORT")]
    pub port: Option<u16>,
    /// Address the --monitor listener binds (all interfaces, as Go, by default)
    #[arg(
        long = "monitor-bind",
        value_name = "ADDR",
        env = "AJC_MONITOR_BIND",
        default_value = "0.0.0.0"
    )]
    pub bind: std::net::IpAddr,
}

/// A token cancelled on SIGINT or SIGTERM. The handlers are installed
/// before this returns, so a signal arriving right after is not fatal.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = (term, int);
            let term = async {
                match term.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term => {}
                _ = int => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

/// Serves `GET /metrics` (the Prometheus text format of the asyncjobs
/// registry) as `--monitor`/`--monitor-bind` say, until `stop`.
pub async fn serve_metrics(m: MonitorArgs, stop: CancellationToken) -> Result<()> {
    let Some(port) = m.port else {
        return Ok(());
    };
    let (bound, _server) = asyncjobs::metrics::serve(SocketAddr::new(m.bind, port), stop)
        .await
        .map_err(|e| {
            CliError::msg(format!(
                "cannot listen on {}:{port} for --monitor: {e}",
                m.bind
            ))
        })?;
    tracing::info!(address = %bound, "serving Prometheus metrics on /metrics");
    Ok(())
}
