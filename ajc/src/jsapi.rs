//! Raw JetStream API requests for what the runtime's client does not expose:
//! stream-level details for the storage blocks (first/last entry times,
//! storage type, replicas, retention).

use crate::error::{CliError, Result};
use serde::Deserialize;
use serde_json::Value;

/// JetStream error code: stream not found.
pub const STREAM_NOT_FOUND: u64 = 10059;

/// A JetStream API error reply.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiError {
    /// JetStream error code.
    #[serde(default)]
    pub err_code: u64,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// The parts of a stream's configuration the blocks show.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// Retention in nanoseconds (0 = forever).
    pub max_age: i64,
    /// `file` or `memory`.
    pub storage: String,
    /// Replicas.
    pub num_replicas: usize,
    /// Message limit (−1 = unlimited).
    pub max_msgs: i64,
    /// `old` or `new`.
    pub discard: String,
}

/// The parts of a stream's state the blocks show.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StreamState {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Time of the first message.
    pub first_ts: Option<String>,
    /// Time of the last message.
    pub last_ts: Option<String>,
}

/// `$JS.API.STREAM.INFO` reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StreamInfo {
    /// Configuration.
    pub config: StreamConfig,
    /// State.
    pub state: StreamState,
}

impl StreamInfo {
    /// True for memory storage.
    pub fn memory(&self) -> bool {
        self.config.storage == "memory"
    }
}

/// One request to `$JS.API.<api>`: the decoded reply, or the JetStream error.
pub async fn request<T: serde::de::DeserializeOwned>(
    nc: &async_nats::Client,
    api: &str,
    body: Option<&Value>,
) -> Result<std::result::Result<T, ApiError>> {
    let payload: Vec<u8> = match body {
        Some(b) => serde_json::to_vec(b).unwrap_or_default(),
        None => Vec::new(),
    };
    let msg = nc
        .request(format!("$JS.API.{api}"), payload.into())
        .await
        .map_err(|e| CliError::msg(format!("JetStream request {api} failed: {e}")))?;
    #[derive(Deserialize)]
    struct Probe {
        error: Option<ApiError>,
    }
    if let Ok(Probe { error: Some(e) }) = serde_json::from_slice::<Probe>(&msg.payload) {
        return Ok(Err(e));
    }
    serde_json::from_slice(&msg.payload)
        .map(Ok)
        .map_err(|e| CliError::msg(format!("invalid JetStream reply to {api}: {e}")))
}

/// Stream info, `None` when the stream does not exist.
pub async fn stream_info(nc: &async_nats::Client, name: &str) -> Result<Option<StreamInfo>> {
    match request::<StreamInfo>(nc, &format!("STREAM.INFO.{name}"), None).await? {
        Ok(i) => Ok(Some(i)),
        Err(e) if e.err_code == STREAM_NOT_FOUND => Ok(None),
        Err(e) => Err(CliError::msg(format!(
            "loading stream {name} failed: {}",
            e.description
        ))),
    }
}
