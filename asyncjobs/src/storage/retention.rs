//! The retention of finished task records (docs/processing.md §2.19,
//! docs/storage.md §3.8): the per-message TTL a final save carries, the
//! queue's own retention (its stream's metadata) and the client's default,
//! and turning on per-message TTL in a task store that lacks it.

use super::{Storage, TASKS_STREAM};
use crate::capabilities::{version_at_least, TTL_NEEDS};
use crate::error::{Error, Result};
use crate::queue::{StreamDetails, QUEUE_STREAM_PREFIX};
use crate::task::{Retention, Task};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The queue stream's metadata key holding the queue's [`Retention`] in
/// its text form (docs/storage.md §3.3, §3.8).
pub(crate) const RETENTION_METADATA: &str = "asyncjobs.retention";

/// How long a queue's retention, as read from its stream, is used before
/// it is read again: a change reaches every process within this.
pub(crate) const RETENTION_REFRESH: Duration = Duration::from_secs(30);

/// How soon a queue's retention, or the task store's settings, are read
/// again after a first read failed (meanwhile records are kept).
const RETENTION_RETRY: Duration = Duration::from_secs(1);

/// The read time to remember for a first read that failed, so that what
/// is kept `fresh_for` is read again after [`RETENTION_RETRY`].
fn retry_soon(fresh_for: Duration) -> Instant {
    Instant::now()
        .checked_sub(fresh_for - RETENTION_RETRY)
        .unwrap_or_else(Instant::now)
}

/// What a client knows of a queue's retention ([`Storage::retention_of`]).
enum Cached {
    /// Read within [`RETENTION_REFRESH`]: the retention to use.
    Fresh(Retention),
    /// Read before; the queue's own (`None`: the client's default).
    Stale(Option<Retention>),
    /// Never read.
    Unknown,
}

/// How long what was read of the task store (whether it allows
/// per-message TTL, its `max_age`) is used before it is read again: an
/// operator's `ajc task retention --enable` or `ajc task configure`
/// reaches running processes within this.
pub(crate) const EXPIRY_RECHECK: Duration = Duration::from_secs(60);

/// What the final saves need of the task store, and when it was read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expiry {
    /// `allow_msg_ttl`.
    allowed: bool,
    /// The store's own age limit (zero: none): no TTL is longer.
    max_age: Duration,
    at: Instant,
}

/// `None` until the store is read.
pub(super) type ExpiryAllowed = Option<Expiry>;

/// Each queue's own retention (`None`: the client's default) and when it was read.
pub(super) type QueueRetentions = HashMap<String, (Option<Retention>, Instant)>;

/// What a task store's retention of finished records is, for reports
/// ([`Client::retention_status`](crate::Client::retention_status)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionStatus {
    /// The task store lets records expire (`allow_msg_ttl`): finished
    /// records are removed by the server when their retention ends. When
    /// false, every record is kept as the store's `max_age` says.
    pub expiry_allowed: bool,
    /// The retention this client gives queues without their own.
    pub default: Retention,
    /// The store's own age limit for every record (zero = none).
    pub max_age: Duration,
}

impl Storage {
    /// The TTL the save of `task` carries: its final state's retention
    /// (the queue's own, else the client's), no longer than the store's
    /// `max_age` (an operator's or Go's choice is not extended); `None`
    /// for a task that is not final, kept forever, or in a store without
    /// per-message TTL.
    pub(crate) async fn record_ttl(&self, task: &Task) -> Option<Duration> {
        if !task.state.is_final() {
            return None;
        }
        let store = self.expiry().await.filter(|e| e.allowed)?;
        let keep = self
            .retention_of(task.queue_or_default())
            .await
            .keep(task.state)?;
        let ttl = if store.max_age.is_zero() {
            keep
        } else {
            keep.min(store.max_age)
        };
        // the server's shortest TTL is 1 s (a store whose max_age is
        // shorter removes the record by that age anyway)
        (ttl >= crate::task::retention::MIN_KEEP).then_some(ttl)
    }

    /// What was read of the task store, read again every [`EXPIRY_RECHECK`]
    /// (by one save; the others use what was read before meanwhile, and so
    /// does that save when the read fails). The first read is one save's
    /// too, the others waiting for it (a bulk cancel's saves come all at
    /// once); while it fails, records get no TTL and it is tried again
    /// after [`RETENTION_RETRY`].
    async fn expiry(&self) -> Option<Expiry> {
        let before = match self.cached_expiry() {
            Ok(e) => return Some(e),
            Err(before) => before,
        };
        let _reading = match before {
            Some(_) => None,
            None => {
                let guard = self.first_reads.lock().await;
                if let Ok(e) = self.cached_expiry() {
                    return Some(e);
                }
                Some(guard)
            }
        };
        match self.tasks_info().await {
            Ok(d) => Some(self.learn_expiry(&d)),
            Err(_) if before.is_some() => before,
            Err(_) => {
                // no TTL meanwhile (kept rather than removed early)
                let unknown = Expiry {
                    allowed: false,
                    max_age: Duration::ZERO,
                    at: retry_soon(EXPIRY_RECHECK),
                };
                *self.ttl_allowed.lock().unwrap_or_else(|e| e.into_inner()) = Some(unknown);
                None
            }
        }
    }

    /// What is known of the task store: `Ok` while fresh, else what was
    /// read before (`None`: never), marked fresh for the others while this
    /// caller reads it again.
    fn cached_expiry(&self) -> std::result::Result<Expiry, Option<Expiry>> {
        let mut known = self.ttl_allowed.lock().unwrap_or_else(|e| e.into_inner());
        match known.as_mut() {
            Some(e) if e.at.elapsed() < EXPIRY_RECHECK => Ok(*e),
            Some(e) => {
                let old = *e;
                e.at = Instant::now();
                Err(Some(old))
            }
            None => Err(None),
        }
    }

    pub(super) fn learn_expiry(&self, store: &StreamDetails) -> Expiry {
        let e = Expiry {
            allowed: store.allow_msg_ttl,
            max_age: store.max_age,
            at: Instant::now(),
        };
        *self.ttl_allowed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        e
    }

    /// After a refused save that carried a TTL: true when the task store no
    /// longer allows it (it was replaced by one made without), so the save
    /// is sent again without.
    pub(super) async fn expiry_lost(&self) -> bool {
        let sent_ttl = matches!(
            *self.ttl_allowed.lock().unwrap_or_else(|e| e.into_inner()),
            Some(Expiry { allowed: true, .. })
        );
        if !sent_ttl {
            return false;
        }
        match self.tasks_info().await {
            Ok(d) if !d.allow_msg_ttl => {
                tracing::warn!("the task store {TASKS_STREAM} no longer allows per-message TTL (it was replaced?): finished records are kept forever");
                self.learn_expiry(&d);
                true
            }
            _ => false,
        }
    }

    /// The retention of `queue`'s finished tasks: the queue's own when it
    /// has one, else the client's ([`RETENTION_REFRESH`] old at most). While
    /// the queue cannot be read, what was read before is used, and before
    /// anything was read, [`Retention::forever`]: a record is better kept
    /// than removed early.
    pub(crate) async fn retention_of(&self, queue: &str) -> Retention {
        let before = match self.cached_retention(queue) {
            Cached::Fresh(r) => return r,
            Cached::Stale(own) => Some(own),
            Cached::Unknown => None,
        };
        // Before anything was read, one save reads and the others wait for
        // it: a worker's first completions come all at once, and each would
        // otherwise read the queue's stream (a hundred reads at concurrency
        // 100).
        let _reading = match before {
            Some(_) => None,
            None => {
                let guard = self.first_reads.lock().await;
                if let Cached::Fresh(r) = self.cached_retention(queue) {
                    return r;
                }
                Some(guard)
            }
        };
        match self.read_queue_retention(queue).await {
            Ok(own) => {
                let mut map = self.retentions.lock().unwrap_or_else(|e| e.into_inner());
                map.insert(queue.to_string(), (own, Instant::now()));
                own.unwrap_or(self.settings.retention)
            }
            Err(e) => {
                tracing::debug!(queue, error = %e, "reading the queue's retention failed");
                match before {
                    Some(own) => own.unwrap_or(self.settings.retention),
                    None => {
                        // kept until read; the saves waiting meanwhile do
                        // not each wait for a read of their own, and the
                        // next read is in RETENTION_RETRY
                        let at = retry_soon(RETENTION_REFRESH);
                        let mut map = self.retentions.lock().unwrap_or_else(|e| e.into_inner());
                        map.insert(queue.to_string(), (Some(Retention::forever()), at));
                        Retention::forever()
                    }
                }
            }
        }
    }

    /// What is known of `queue`'s retention. A stale entry is marked
    /// fresh for the others while this caller reads it again.
    fn cached_retention(&self, queue: &str) -> Cached {
        let mut map = self.retentions.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(queue) {
            Some((r, at)) if at.elapsed() < RETENTION_REFRESH => {
                Cached::Fresh(r.unwrap_or(self.settings.retention))
            }
            Some((r, at)) => {
                // this save reads it again; the others use the old one meanwhile
                *at = Instant::now();
                Cached::Stale(*r)
            }
            None => Cached::Unknown,
        }
    }

    /// The retention stored with `queue`: none for a queue without one (or
    /// without its stream: a Go-created task's queue may be gone), or one
    /// whose value does not parse (logged).
    async fn read_queue_retention(&self, queue: &str) -> Result<Option<Retention>> {
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let Some(details) = self.stream_details(&stream).await? else {
            return Ok(None);
        };
        let Some(text) = details.metadata.get(RETENTION_METADATA) else {
            return Ok(None);
        };
        match text.parse() {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                tracing::warn!(queue, value = %text, error = %e,
                    "the retention stored with the queue is not valid; using the client's");
                Ok(None)
            }
        }
    }

    /// Forgets what was read of `queue`'s retention (it was just changed here).
    pub(crate) fn forget_retention(&self, queue: &str) {
        let mut map = self.retentions.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(queue);
    }

    /// The task store's retention as this client sees it.
    pub(crate) async fn retention_status(&self) -> Result<RetentionStatus> {
        let d = self.tasks_info().await?;
        self.learn_expiry(&d);
        Ok(RetentionStatus {
            expiry_allowed: d.allow_msg_ttl,
            default: self.settings.retention,
            max_age: d.max_age,
        })
    }

    /// Turns on per-message TTL in the task store (it cannot be turned off
    /// again); `false` when it was on already.
    ///
    /// # Errors
    /// [`Error::ServerTooOld`] before nats-server 2.11, or the update's error.
    pub(crate) async fn allow_expiry(&self) -> Result<bool> {
        let version = &self.nc.server_info().version;
        if !version_at_least(version, 2, 11) {
            return Err(Error::ServerTooOld {
                feature: "the retention of finished tasks",
                needs: TTL_NEEDS,
                version: version.clone(),
            });
        }
        let d = self.tasks_info().await?;
        if d.allow_msg_ttl {
            self.learn_expiry(&d);
            return Ok(false);
        }
        self.update_stream(TASKS_STREAM, |c| {
            c["allow_msg_ttl"] = true.into();
        })
        .await?;
        self.learn_expiry(&self.tasks_info().await?);
        Ok(true)
    }

    /// Logs once (per storage) at WARN when a queue with `queue_own`
    /// retention would expire finished records but the task store keeps them: it lacks
    /// per-message TTL and says what turns it on.
    pub(crate) async fn warn_if_kept_forever(&self, queue_own: Option<Retention>) {
        if queue_own.unwrap_or(self.settings.retention) == Retention::forever() {
            return;
        }
        let Ok(d) = self.tasks_info().await else {
            return;
        };
        self.learn_expiry(&d);
        if d.allow_msg_ttl || self.retention_warned.swap(true, Ordering::Relaxed) {
            return;
        }
        let version = &self.nc.server_info().version;
        if version_at_least(version, 2, 11) {
            tracing::warn!(
                "finished task records are kept forever: the task store {TASKS_STREAM} does not allow per-message TTL (it was made by Go, an operator, or before nats-server {TTL_NEEDS}); `ajc task retention --enable` turns it on, a retention of `forever` silences this"
            );
        }
    }
}
