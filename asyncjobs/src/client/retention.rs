//! The retention of finished task records as a [`Client`] sees it, and
//! turning on their expiry in a task store that lacks it
//! (docs/processing.md §2.19).

use super::Client;
use crate::error::Result;
use crate::storage::RetentionStatus;

impl Client {
    /// Whether the task store lets finished records expire, and the
    /// retention this client gives queues without their own
    /// ([`ClientBuilder::retention`](crate::ClientBuilder::retention)).
    /// A queue's own is in [`QueueInfo`](crate::QueueInfo)'s
    /// `queue.retention`.
    ///
    /// # Errors
    /// [`Error::StorageNotReady`](crate::Error::StorageNotReady) when the
    /// task store does not exist, or the server's error.
    pub async fn retention_status(&self) -> Result<RetentionStatus> {
        self.inner.storage.retention_status().await
    }

    /// Lets finished records expire in a task store made without
    /// per-message TTL (by Go, an operator, or on a server older than
    /// 2.11): sets `allow_msg_ttl` on `CHORIA_AJ_TASKS`. The server cannot
    /// turn it off again; records saved before keep no TTL. Returns `false`
    /// when it was on already. This changes a setting another process
    /// chose, so nothing calls it but an operator's command (`ajc task
    /// retention --enable`).
    ///
    /// # Errors
    /// [`Error::ServerTooOld`](crate::Error::ServerTooOld) before
    /// nats-server 2.11, [`Error::StorageNotReady`](crate::Error::StorageNotReady)
    /// without a task store, or the update's error.
    pub async fn allow_task_expiry(&self) -> Result<bool> {
        self.inner.storage.allow_expiry().await
    }
}
