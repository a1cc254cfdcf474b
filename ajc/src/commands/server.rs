//! `ajc server run`: the HTTP API of `asyncjobs-http` (docs/interfaces.md §2) on
//! a TCP port, with Go's flags, bind rules, TLS and mutual TLS.

use super::Ctx;
use crate::cli::{ServerCmd, ServerRunArgs};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use asyncjobs::queue::DEFAULT_QUEUE_NAME;
use asyncjobs_http::server::{check_bind, rustls_config, serve, TlsFiles};
use asyncjobs_http::{ApiOptions, Auth};

/// Runs a `server` subcommand.
pub async fn run(ctx: &Ctx, cmd: &ServerCmd) -> Result<()> {
    match cmd {
        ServerCmd::Run(a) => server_run(ctx, a).await,
    }
}

async fn server_run(ctx: &Ctx, a: &ServerRunArgs) -> Result<()> {
    let tls = TlsFiles {
        cert: a.tls_cert.clone(),
        key: a.tls_key.clone(),
        client_ca: a.tls_client_ca.clone(),
    };
    tls.validate().map_err(CliError::msg)?;
    let addr = check_bind(&a.bind, a.unsafe_bind, tls.mutual()).map_err(CliError::msg)?;
    let queue = match (&a.queue, a.allow_create_default) {
        (Some(q), _) => q.clone(),
        (None, true) => DEFAULT_QUEUE_NAME.to_string(),
        (None, false) => {
            return Err(CliError::msg(
                "--queue is required unless --allow-create-default is set",
            ))
        }
    };
    let read_timeout = a
        .read_timeout
        .non_negative("--read-timeout")
        .map_err(CliError::msg)?;
    let write_timeout = a
        .write_timeout
        .non_negative("--write-timeout")
        .map_err(CliError::msg)?;
    let tls_config = if tls.enabled() {
        Some(rustls_config(&tls).map_err(|e| CliError::msg(e.to_string()))?)
    } else {
        None
    };
    let client = client(&ctx.global, Prepare::Queue(queue.clone()), Ok).await?;
    let options = ApiOptions {
        allow_create_default: a.allow_create_default,
        max_body: a.max_body,
        auth: if tls.mutual() {
            Auth::MutualTls
        } else {
            Auth::None
        },
        read_timeout,
        write_timeout,
        ui: !a.no_ui,
        read_only: a.read_only,
        // a loopback server answers only for loopback host names (no DNS
        // rebinding from a web page)
        loopback_hosts_only: addr.ip().is_loopback(),
        ..ApiOptions::default()
    };
    let app = asyncjobs_http::router(client, options);
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| CliError::msg(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::msg(e.to_string()))?;
    let stop = super::process::shutdown_on_signals();
    let scheme = if tls.enabled() { "https" } else { "http" };
    tracing::info!(
        "HTTP API listening on {scheme}://{local} (queue {queue}, auth {}{})",
        if tls.mutual() { "mtls" } else { "none" },
        match (a.no_ui, a.read_only) {
            (true, _) => String::new(),
            (false, ro) => format!(
                ", dashboard {scheme}://{local}/ui/{}",
                if ro { " read-only" } else { "" }
            ),
        }
    );
    serve(listener, app, tls_config, write_timeout, stop)
        .await
        .map_err(|e| CliError::msg(format!("HTTP server failed: {e}")))
}
