//! What the server reports about a stream (a queue's, the task store's, a
//! KV bucket's), and the replica rule every stream follows.

use crate::error::{Error, Result};
use async_nats::jetstream::stream;
use std::time::Duration;
use time::OffsetDateTime;

/// Replicas must be 1 to 5 (JetStream's limit).
pub(crate) fn validate_replicas(n: usize) -> Result<()> {
    if !(1..=5).contains(&n) {
        return Err(Error::Config("replicas must be between 1 and 5".into()));
    }
    Ok(())
}

/// What the server reports about one stream: the task store, a queue's
/// stream or a KV bucket's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDetails {
    /// The stream's name.
    pub name: String,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Time of the oldest message (`None` when empty).
    pub first_time: Option<OffsetDateTime>,
    /// Time of the newest message (`None` when empty).
    pub last_time: Option<OffsetDateTime>,
    /// How long messages are kept (zero = forever).
    pub max_age: Duration,
    /// Message limit (-1 = unlimited).
    pub max_messages: i64,
    /// When full, the oldest message is dropped instead of refusing new ones.
    pub discard_old: bool,
    /// Memory storage rather than file storage.
    pub memory: bool,
    /// Replicas.
    pub replicas: usize,
    /// Whether any replica may answer direct gets (`allow_direct`).
    pub allow_direct: bool,
    /// Whether messages may carry their own time to live (`allow_msg_ttl`,
    /// nats-server 2.11): finished task records expire only then.
    pub allow_msg_ttl: bool,
    /// The stream's metadata (nats-server 2.10).
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl StreamDetails {
    pub(crate) fn from_info(info: &stream::Info) -> StreamDetails {
        let time = |t: OffsetDateTime| (t.year() > 1 && t.unix_timestamp() != 0).then_some(t);
        let empty = info.state.messages == 0;
        StreamDetails {
            name: info.config.name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            first_time: if empty {
                None
            } else {
                time(info.state.first_timestamp)
            },
            last_time: if empty {
                None
            } else {
                time(info.state.last_timestamp)
            },
            max_age: info.config.max_age,
            max_messages: info.config.max_messages,
            discard_old: info.config.discard == stream::DiscardPolicy::Old,
            memory: info.config.storage == stream::StorageType::Memory,
            replicas: info.config.num_replicas.max(1),
            allow_direct: info.config.allow_direct,
            allow_msg_ttl: info.config.allow_message_ttl,
            metadata: info
                .config
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}
