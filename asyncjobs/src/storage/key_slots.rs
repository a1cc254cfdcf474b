//! Per-key concurrency shared by every worker of a cluster: the tasks
//! holding a key's slots, one record per key in `CHORIA_AJ_LIMITS`
//! (`conc.<queue>.<key name>`), changed by compare-and-set
//! (docs/processing.md §2.24, docs/storage.md §5.9).
//!
//! A holder is removed by its worker when the try ends. A worker that dies
//! leaves its holder behind; when every slot is taken, holders older than
//! [`STALE_AFTER`] whose task is no longer `active` are removed (a dead
//! worker's try is handed back within the rescue time, docs/processing.md
//! §2.14, so its slot comes back within that plus this).

use super::limits::queue_part;
use super::Storage;
use crate::error::{Error, Result};
use crate::task::TaskState;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// A holder is judged only this long after it took its slot: younger, its
/// task may not yet be saved `active`.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// Compare-and-set attempts before a take or release gives up for now.
const ATTEMPTS: usize = 8;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Holders {
    holders: Vec<Holder>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    /// The task's id.
    id: String,
    /// When it took the slot (server time, ns since the Unix epoch).
    at: i128,
    /// The try's own token: two deliveries of one task racing to start it
    /// hold two slots, and the one that does not start gives back its
    /// own, never the other's.
    #[serde(default)]
    token: String,
}

fn slots_key(queue: &str, key: &str) -> String {
    format!(
        "conc.{}.{}",
        queue_part(queue),
        crate::queue::lane::key_name(key)
    )
}

impl Storage {
    /// Whether a take of one of `limit` slots of `key` in `queue` may
    /// succeed at server time `now` (a read): a slot is free, or a holder
    /// is old enough to be judged stale by the take.
    ///
    /// Errors: the bucket cannot be read.
    pub(crate) async fn key_slot_may_free(
        &self,
        queue: &str,
        key: &str,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let bucket = self.limits_bucket().await?;
        let what = || format!("reading key {key:?}'s slots in queue {queue}");
        let Some(w) = bucket.written(&slots_key(queue, key), what).await? else {
            return Ok(true);
        };
        let held = decode(&w.value).holders;
        let now_ns = now.unix_timestamp_nanos();
        Ok(held.len() < limit as usize
            || held
                .iter()
                .any(|h| now_ns - h.at >= STALE_AFTER.as_nanos() as i128))
    }

    /// Takes one of `limit` slots of `key` in `queue` for a try of task
    /// `id` (its `token`) at server time `now`: true when taken, false when
    /// every slot is held by a live try.
    ///
    /// Errors: the bucket cannot be read or written, or it kept changing
    /// ([`Error::StorageNotReady`]); nothing is taken then.
    pub(crate) async fn take_key_slot(
        &self,
        queue: &str,
        key: &str,
        id: &str,
        token: &str,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let bucket = self.limits_bucket().await?;
        let name = slots_key(queue, key);
        let what = || format!("taking a slot of key {key:?} in queue {queue}");
        let now_ns = now.unix_timestamp_nanos();
        let mut judged = false;
        for _ in 0..ATTEMPTS {
            let written = bucket.written(&name, what).await?;
            let mut held = written
                .as_ref()
                .map(|w| decode(&w.value))
                .unwrap_or_default();
            if held.holders.iter().any(|h| h.token == token) {
                return Ok(true);
            }
            // an earlier try of this task that is old enough to be judged:
            // this task runs again only when that try is dead or stale
            // (docs/processing.md §2.14), so this try takes its slot over
            let stale = STALE_AFTER.as_nanos() as i128;
            if let Some(h) = held
                .holders
                .iter_mut()
                .find(|h| h.id == id && now_ns - h.at >= stale)
            {
                h.token = token.to_string();
                h.at = now_ns;
                if let Some(w) = &written {
                    if bucket
                        .update_if(&name, encode(&held), w.revision, what)
                        .await?
                        .is_some()
                    {
                        return Ok(true);
                    }
                }
                continue;
            }
            if held.holders.len() >= limit as usize {
                if judged {
                    return Ok(false);
                }
                judged = true;
                let before = held.holders.len();
                held.holders = self.live_holders(held.holders, now_ns).await;
                if held.holders.len() == before {
                    return Ok(false);
                }
                // stale holders gone: take a freed slot, or write the
                // pruned list when still full
            }
            let full = held.holders.len() >= limit as usize;
            if !full {
                held.holders.push(Holder {
                    id: id.to_string(),
                    at: now_ns,
                    token: token.to_string(),
                });
            }
            let value = encode(&held);
            let stored = match &written {
                Some(w) => bucket.update_if(&name, value, w.revision, what).await?,
                None => bucket.create(&name, value, what).await?,
            };
            if stored.is_some() {
                return Ok(!full);
            }
        }
        Err(Error::StorageNotReady(format!(
            "{} kept changing under {ATTEMPTS} attempts",
            what()
        )))
    }

    /// Gives the slot of `key` in `queue` held by the try `token` back (not
    /// held is fine).
    ///
    /// Errors: the bucket cannot be read or written (the holder is then
    /// removed once judged stale).
    pub(crate) async fn release_key_slot(&self, queue: &str, key: &str, token: &str) -> Result<()> {
        let bucket = self.limits_bucket().await?;
        let name = slots_key(queue, key);
        let what = || format!("giving back a slot of key {key:?} in queue {queue}");
        for _ in 0..ATTEMPTS {
            let Some(w) = bucket.written(&name, what).await? else {
                return Ok(());
            };
            let mut held = decode(&w.value);
            let before = held.holders.len();
            held.holders.retain(|h| h.token != token);
            if held.holders.len() == before {
                return Ok(());
            }
            if bucket
                .update_if(&name, encode(&held), w.revision, what)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(Error::StorageNotReady(format!(
            "{} kept changing under {ATTEMPTS} attempts",
            what()
        )))
    }

    /// The holders still live: younger than [`STALE_AFTER`], or whose task
    /// is `active` (or cannot be read just now).
    async fn live_holders(&self, holders: Vec<Holder>, now_ns: i128) -> Vec<Holder> {
        let mut live = Vec::with_capacity(holders.len());
        for h in holders {
            if now_ns - h.at < STALE_AFTER.as_nanos() as i128 {
                live.push(h);
                continue;
            }
            match self.load_task(&h.id).await {
                Ok(t) if t.state == TaskState::Active => live.push(h),
                Ok(_) | Err(Error::TaskNotFound(_)) => {
                    tracing::info!(task = %h.id, "a key slot's holder is no longer running; its slot is free");
                }
                Err(_) => live.push(h),
            }
        }
        live
    }
}

fn decode(value: &[u8]) -> Holders {
    serde_json::from_slice(value).unwrap_or_default()
}

fn encode(held: &Holders) -> bytes::Bytes {
    serde_json::to_vec(held).unwrap_or_default().into()
}
