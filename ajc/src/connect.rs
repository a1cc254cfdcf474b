//! Connecting: a NATS CLI context (`--context`, env `CONTEXT`, default
//! `AJC`) like the Go tool, or `--server URL` / `NATS_URL` when there is no
//! context file; then a client with exactly the storage preparation the
//! command allows.

use crate::error::{CliError, Result};
use crate::flags::Global;
use asyncjobs::connect::{Connect, JetStreamApi};
use asyncjobs::natscontext::context_dir;
use asyncjobs::{Client, ClientBuilder};
use std::time::Duration;

/// The connection name the server shows, as the Go CLI sets it.
pub fn connection_name() -> String {
    format!(
        "Choria Asynchronous Jobs CLI version {}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Names of the contexts in the context directory, sorted.
pub fn known_contexts() -> Vec<String> {
    let Some(dir) = context_dir() else {
        return Vec::new();
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.strip_suffix(".json").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// How to connect: the context named by `--context` when its file exists
/// (with `--server` overriding its URL), else `--server` directly.
fn connection(g: &Global) -> Result<Connect> {
    let direct = |server: &String| Connect::url(server.clone());
    if g.context.is_empty() {
        return g
            .server
            .as_ref()
            .map(direct)
            .ok_or_else(|| CliError::msg("no NATS Context specified"));
    }
    let exists = context_dir()
        .map(|d| d.join(format!("{}.json", g.context)).is_file())
        .unwrap_or(false);
    if !exists {
        return g
            .server
            .as_ref()
            .map(direct)
            .ok_or_else(|| CliError::UnknownContext(g.context.clone()));
    }
    Ok(Connect::context(g.context.clone()).server_override(g.server.clone()))
}

/// Connects to NATS as the global flags say; also the JetStream API the
/// context selects (`jetstream_domain`, `jetstream_api_prefix`; see
/// docs/interfaces.md §4).
pub async fn nats(g: &Global) -> Result<(async_nats::Client, JetStreamApi)> {
    let (nc, api) = connection(g)?
        .name(connection_name())
        .ping_interval(Duration::from_secs(30))
        .connect_with_jetstream()
        .await
        .map_err(|e| match e {
            // "cannot connect to NATS at <url>: <reason>", without "nats: "
            asyncjobs::Error::Nats(m) => CliError::msg(m.to_string()),
            other => other.into(),
        })?;
    OPEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(nc.clone());
    Ok((nc, api))
}

/// Every connection a command opened: flushed before `ajc` exits.
static OPEN: std::sync::Mutex<Vec<async_nats::Client>> = std::sync::Mutex::new(Vec::new());

/// Flushes what the command's connections still buffer (a task's state
/// events, a cancel's notice), at most 2 s each: the process exits next,
/// and core NATS messages are sent from a buffer.
pub async fn flush_all() {
    let open = std::mem::take(&mut *OPEN.lock().unwrap_or_else(|p| p.into_inner()));
    for nc in open {
        let _ = tokio::time::timeout(Duration::from_secs(2), nc.flush()).await;
    }
}

/// How much storage a command may prepare.
#[derive(Debug, Clone)]
pub enum Prepare {
    /// Nothing is created or loaded (read-only and removal commands).
    Nothing,
    /// The task store and KV buckets are created when missing, and this
    /// queue is bound: `DEFAULT` is created with Go's defaults when
    /// missing, any other queue must exist.
    Queue(String),
}

/// A client on a fresh connection; `tune` adjusts the builder (signing
/// keys, concurrency, …).
pub async fn client(
    g: &Global,
    prepare: Prepare,
    tune: impl FnOnce(ClientBuilder) -> Result<ClientBuilder>,
) -> Result<Client> {
    let (nc, api) = nats(g).await?;
    let mut b = Client::builder()
        .nats_client(nc)
        .jetstream_api(api)
        .connection_name(connection_name());
    b = match prepare {
        Prepare::Nothing => b.no_storage_init(),
        Prepare::Queue(q) if q == asyncjobs::queue::DEFAULT_QUEUE_NAME => {
            b.queue(asyncjobs::Queue::default_queue())
        }
        Prepare::Queue(q) => b.bind_queue(q),
    };
    let b = tune(b)?;
    Ok(b.build().await?)
}
