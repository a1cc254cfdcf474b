//! `ajc server run`: the HTTP API of `asyncjobs-http` (docs/interfaces.md §2) on
//! a TCP port, with Go's flags, bind rules, TLS and mutual TLS.

use super::Ctx;
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::format::{parse_duration, GoDuration};
use crate::long_running::shutdown_on_signals;
use asyncjobs::queue::DEFAULT_QUEUE_NAME;
use asyncjobs_http::server::{check_bind, rustls_config, serve, Guards, TlsFiles};
use asyncjobs_http::{ApiOptions, Auth};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `ajc server …`.
#[derive(Subcommand, Debug)]
pub enum ServerCmd {
    /// Serves the HTTP API (Go's routes and JSON, docs/interfaces.md §2)
    Run(ServerRunArgs),
}

/// `ajc server run` (Go's flags and defaults, docs/interfaces.md §2.1).
#[derive(Args, Debug)]
pub struct ServerRunArgs {
    /// Address to listen on (an IP address or localhost, with a port; 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub bind: String,
    /// PEM certificate chain to serve TLS with (needs --tls-key)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: every client must present a certificate chaining to it (mutual TLS)
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Queue tasks are enqueued into (it must exist)
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Without --queue, use (and create) the DEFAULT queue; lets POST /v1/queues create DEFAULT
    #[arg(long)]
    pub allow_create_default: bool,
    /// Longest time to read a request body
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub read_timeout: GoDuration,
    /// Longest time to answer a request (streams and waits excepted); also the shutdown grace
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub write_timeout: GoDuration,
    /// Length of one statistics interval this replica sums and writes (whole seconds; 0 writes none)
    #[arg(long, default_value = "1m", value_parser = parse_duration, value_name = "DURATION")]
    pub stats_interval: GoDuration,
    /// Keep every task state event this long (stream CHORIA_AJ_HISTORY) so task pages show
    /// each task's timeline; none kept without it
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub keep_history: Option<GoDuration>,
    /// Largest request body in bytes
    #[arg(long, default_value_t = 524288, value_name = "BYTES")]
    pub max_body: usize,
    /// Listen on an address other hosts can reach without client certificates or tokens over TLS
    #[arg(long)]
    pub unsafe_bind: bool,
    /// Do not serve the web dashboard under /ui/
    #[arg(long)]
    pub no_ui: bool,
    /// Refuse every action, the API's and the dashboard's (any method but GET, HEAD, OPTIONS)
    #[arg(long)]
    pub read_only: bool,
    /// Require a token from every client: a file of `<role> <name> <token>` lines (role viewer
    /// or operator, token at least 16 characters), or `<role> <name> cert <common name>` for a
    /// client certificate (with --tls-client-ca); every action is audited with the name
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Export traces over OTLP/HTTP to this collector, for example
    /// http://127.0.0.1:4318 (OTEL_SERVICE_NAME and the SDK's sampling
    /// variables apply; needs an ajc built with the feature otel:
    /// cargo install --path ajc --features otel)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

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
    let guards = Guards {
        unsafe_bind: a.unsafe_bind,
        mutual_tls: tls.mutual(),
        tls: tls.enabled(),
        tokens: a.tokens.is_some(),
    };
    let addr = check_bind(&a.bind, guards).map_err(CliError::msg)?;
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
    let stats_interval = a
        .stats_interval
        .non_negative("--stats-interval")
        .map_err(CliError::msg)?;
    let keep_history = match &a.keep_history {
        Some(d) => {
            let d = d.non_negative("--keep-history").map_err(CliError::msg)?;
            if d.is_zero() {
                return Err(CliError::msg(
                    "--keep-history must be longer than 0s (leave it out to keep no history)",
                ));
            }
            Some(d)
        }
        None => None,
    };
    let tls_config = if tls.enabled() {
        Some(rustls_config(&tls).map_err(|e| CliError::msg(e.to_string()))?)
    } else {
        None
    };
    let credentials = match &a.tokens {
        None => Vec::new(),
        Some(path) => read_credentials(path)?,
    };
    let client = client(&ctx.global, Prepare::Queue(queue.clone()), Ok).await?;
    let options = ApiOptions {
        allow_create_default: a.allow_create_default,
        max_body: a.max_body,
        auth: if tls.mutual() {
            Auth::MutualTls
        } else if !credentials.is_empty() {
            Auth::Token
        } else {
            Auth::None
        },
        read_timeout,
        write_timeout,
        ui: !a.no_ui,
        read_only: a.read_only,
        credentials,
        stats_interval,
        keep_history,
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
    let stop = shutdown_on_signals();
    let scheme = if tls.enabled() { "https" } else { "http" };
    tracing::info!(
        "HTTP API listening on {scheme}://{local} (queue {queue}, auth {}{})",
        match (tls.mutual(), a.tokens.is_some()) {
            (true, true) => "mtls and tokens",
            (true, false) => "mtls",
            (false, true) => "tokens",
            (false, false) => "none",
        },
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

/// The credentials of `--tokens`: refused with the line at fault, or when
/// the file holds none.
fn read_credentials(path: &std::path::Path) -> Result<Vec<asyncjobs_http::Credential>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::msg(format!("cannot read --tokens {}: {e}", path.display())))?;
    let credentials = asyncjobs_http::parse_credentials(&text)
        .map_err(|e| CliError::msg(format!("--tokens {}: {e}", path.display())))?;
    if credentials.is_empty() {
        return Err(CliError::msg(format!(
            "--tokens {}: the file names no credential (lines `<role> <name> <token>` or `<role> <name> cert <common name>`)",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(),
                    "the tokens file is readable by other users; chmod 600 it");
            }
        }
    }
    Ok(credentials)
}
