//! Tries of crashed workers run again within about 30 s, whatever the
//! queue's run time (docs/processing.md §2.14).
//!
//! Every Rust worker keeps a lease in `CHORIA_AJ_LEASES` naming the tries
//! it runs: written when a try starts or ends (at most every
//! [`MIN_WRITE_GAP`]) and renewed every third of `rescue_after`. Every
//! worker also looks at the others' leases: one not renewed for
//! `rescue_after` (by the server's timestamps) belongs to a dead worker,
//! whose tries still `active` at the recorded sequence are saved `retry`
//! and given a fresh work item (`Storage::rescue_task`). A worker that
//! cannot renew its lease for two thirds of `rescue_after` stops its own
//! tries first, so a rescued try never runs beside the one it replaces.
//! Go workers write no lease: their tries wait for the run time, as in Go.

use super::Shared;
use crate::storage::{Bucket, WorkerLease};
use crate::throttle::{warn_throttled, Throttle};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// The default of `Worker::crash_rescue`.
pub const DEFAULT_RESCUE_AFTER: Duration = Duration::from_secs(30);

/// Writes of a lease are at least this far apart.
const MIN_WRITE_GAP: Duration = Duration::from_millis(250);

/// The tries this worker runs, and whether it must stop them (its lease
/// could not be renewed).
#[derive(Debug)]
pub(crate) struct Leases {
    /// The worker's id (its presence id).
    pub id: String,
    /// Presumed dead after this long without a renewal; `None`: no leases.
    pub rescue_after: Option<Duration>,
    running: Mutex<BTreeMap<String, u64>>,
    changed: Notify,
    /// True while this worker's tries must stop (the lease is not renewed).
    pub fenced: watch::Sender<bool>,
}

impl Leases {
    pub(crate) fn new(id: String, rescue_after: Option<Duration>) -> Self {
        Self {
            id,
            rescue_after,
            running: Mutex::default(),
            changed: Notify::new(),
            fenced: watch::channel(false).0,
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A try of `id` runs with its record at `seq` (started, or its record
    /// saved again while it runs).
    pub(crate) fn holds(&self, id: &str, seq: u64) {
        if self.rescue_after.is_none() {
            return;
        }
        self.running().insert(id.to_string(), seq);
        self.changed.notify_one();
    }

    /// The try of `id` ended (its outcome saved or not).
    pub(crate) fn released(&self, id: &str) {
        if self.rescue_after.is_none() {
            return;
        }
        if self.running().remove(id).is_some() {
            self.changed.notify_one();
        }
    }
}

/// Keeps this worker's lease and rescues the tries of dead workers, until
/// `stop`; then removes the lease.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let leases = &shared.leases;
    let Some(rescue_after) = leases.rescue_after else {
        return;
    };
    let Some(bucket) = shared.storage.leases_bucket(true).await else {
        return;
    };
    let renew_every = rescue_after / 3;
    let fence_after = rescue_after * 2 / 3;
    let mut written_empty = true;
    let mut last_ok = Instant::now();
    let mut next_scan = Instant::now() + renew_every;
    loop {
        let held = leases.running().clone();
        if held.is_empty() {
            if !written_empty
                && bucket
                    .delete(&leases.id, || "removing the worker lease".into())
                    .await
                    .is_ok()
            {
                written_empty = true;
            }
            last_ok = Instant::now();
        } else if tokio::time::timeout(
            fence_after
                .saturating_sub(last_ok.elapsed())
                .max(MIN_WRITE_GAP),
            write(&shared, &bucket, held, rescue_after),
        )
        .await
        .unwrap_or(false)
        {
            written_empty = false;
            last_ok = Instant::now();
            leases
                .fenced
                .send_if_modified(|f| std::mem::replace(f, false));
        } else if last_ok.elapsed() > fence_after
            && leases
                .fenced
                .send_if_modified(|f| !std::mem::replace(f, true))
        {
            crate::metrics::background_error("lease");
            tracing::error!(queue = %shared.name, unrenewed = ?last_ok.elapsed(),
                "the worker lease could not be renewed; stopping this worker's running tries before other workers run them again");
        }
        if Instant::now() >= next_scan {
            next_scan = Instant::now() + renew_every;
            // a server that does not answer must not hold up the renewals
            let _ = tokio::time::timeout(renew_every, rescue_dead(&shared, &bucket)).await;
        }
        let wait = renew_every.min(next_scan.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = leases.changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        tokio::time::sleep(MIN_WRITE_GAP).await;
    }
    let _ = bucket
        .delete(&leases.id, || "removing the worker lease".into())
        .await;
}

/// Writes this worker's lease; whether it was written.
async fn write(
    shared: &Shared,
    bucket: &Bucket,
    running: BTreeMap<String, u64>,
    rescue_after: Duration,
) -> bool {
    let lease = WorkerLease {
        worker: shared.leases.id.clone(),
        queue: shared.name.clone(),
        host: super::presence::hostname(),
        pid: std::process::id(),
        rescue_after_secs: rescue_after.as_secs().max(1),
        running,
        renewed: time::OffsetDateTime::UNIX_EPOCH,
    };
    let body = serde_json::to_vec(&lease).unwrap_or_default();
    match bucket
        .put(&lease.worker, body.into(), || {
            "renewing the worker lease".into()
        })
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "renewing the worker lease failed");
            false
        }
    }
}

/// Looks at every other worker's lease; rescues the tries of those not
/// renewed in time and removes their lease.
async fn rescue_dead(shared: &Shared, bucket: &Bucket) {
    let keys = match bucket.keys(|| "listing worker leases".into()).await {
        Ok(keys) => keys,
        Err(e) => {
            crate::metrics::background_error("lease");
            warn_throttled!(RESCUE_WARN, error = %e, "cannot list worker leases; tries of crashed workers wait for their queue's run time");
            return;
        }
    };
    let now = shared.storage.clock().now();
    for key in keys.iter().filter(|k| **k != shared.leases.id) {
        let Ok(Some(written)) = bucket
            .written(key, || format!("reading worker lease {key}"))
            .await
        else {
            continue;
        };
        let Ok(lease) = serde_json::from_slice::<WorkerLease>(&written.value) else {
            continue;
        };
        let quiet = now - written.at;
        if quiet < time::Duration::seconds(lease.rescue_after_secs.max(1) as i64) {
            continue;
        }
        let why = format!(
            "its worker {} (pid {} on {}) stopped renewing its lease {:.0}s ago; presumed dead, running it again",
            lease.worker,
            lease.pid,
            lease.host,
            quiet.as_seconds_f64()
        );
        let mut all = true;
        for (id, seq) in &lease.running {
            match shared.storage.rescue_task(id, *seq, written.at, &why).await {
                Ok(true) => {
                    crate::metrics::task_rescued(&lease.queue);
                    tracing::warn!(task = %id, worker = %lease.worker, queue = %lease.queue, "{why}");
                }
                Ok(false) => {}
                Err(e) => {
                    all = false;
                    tracing::warn!(task = %id, worker = %lease.worker, error = %e, "running a dead worker's try again failed; trying again later");
                }
            }
        }
        if all {
            let _ = bucket
                .delete_at_revision(key, written.revision, || {
                    format!("removing worker lease {key}")
                })
                .await;
        }
    }
}

static RESCUE_WARN: Throttle = Throttle::new(Duration::from_secs(60));
