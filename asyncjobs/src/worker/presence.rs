//! Worker presence: while it runs, a worker keeps a record of itself in the
//! `CHORIA_AJ_WORKERS` KV bucket (refreshed every [`REFRESH`], kept
//! [`TTL`] by the bucket), so operators and the dashboard see which workers
//! are alive. Go workers do not write it; a Go-only fleet shows none.
//! Failures to write are logged and never stop the worker.

use crate::storage::Storage;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use crate::storage::WORKERS_BUCKET;
/// How long a record outlives its last refresh.
pub const TTL: Duration = Duration::from_secs(30);
/// How often a running worker refreshes its record.
pub const REFRESH: Duration = Duration::from_secs(10);

/// What a running worker says about itself (the JSON of its record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerPresence {
    /// Unique id of this worker run (KSUID).
    pub id: String,
    /// The queue it processes.
    pub queue: String,
    /// Host name of its machine.
    #[serde(default)]
    pub host: String,
    /// Its process id.
    #[serde(default)]
    pub pid: u32,
    /// When it started.
    #[serde(with = "crate::wire::time_go")]
    pub started: OffsetDateTime,
    /// When it last refreshed this record.
    #[serde(with = "crate::wire::time_go")]
    pub seen: OffsetDateTime,
    /// Its concurrency.
    #[serde(default)]
    pub concurrency: usize,
    /// The task types it handles.
    #[serde(default)]
    pub task_types: Vec<String>,
    /// The asyncjobs version it runs.
    #[serde(default)]
    pub version: String,
}

/// This machine's host name, as workers announce it (empty when it cannot
/// be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// Keeps this worker's record until `stop`, then removes it.
pub(crate) async fn run(
    id: String,
    storage: Storage,
    queue: String,
    concurrency: usize,
    task_types: Vec<String>,
    stop: CancellationToken,
) {
    let Some(bucket) = storage.presence_bucket(true, TTL).await else {
        return;
    };
    let now = storage.clock().now();
    let mut record = WorkerPresence {
        id,
        queue,
        host: hostname(),
        pid: std::process::id(),
        started: now,
        seen: now,
        concurrency,
        task_types,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut tick = tokio::time::interval(REFRESH);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        record.seen = storage.clock().now();
        let body = serde_json::to_vec(&record).unwrap_or_default();
        let sent = storage.clock().local();
        let put = bucket
            .put(&record.id, body.into(), || {
                "refreshing the worker presence".into()
            })
            .await;
        let received = storage.clock().local();
        if put.is_ok() {
            measure_skew(&storage, &bucket, &record.id, sent, received).await;
        }
        match put {
            Ok(_) if std::mem::take(&mut failing) => {
                tracing::info!("the worker presence is refreshed again");
            }
            Ok(_) => {}
            Err(e) => {
                crate::metrics::background_error("presence");
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "refreshing the worker presence failed; the worker may not be listed until it works again");
                } else {
                    tracing::debug!(error = %e, "worker presence not refreshed");
                }
            }
        }
    }
    let _ = bucket
        .purge(&record.id, || "removing the worker presence".into())
        .await;
}

/// Measures this process's clock against the server's: the presence
/// write just made was stamped by the server between `sent` and
/// `received` (docs/processing.md §2.13).
async fn measure_skew(
    storage: &Storage,
    bucket: &crate::storage::Bucket,
    key: &str,
    sent: OffsetDateTime,
    received: OffsetDateTime,
) {
    if let Ok(Some(written)) = bucket
        .written(key, || "reading the worker presence".into())
        .await
    {
        storage.clock().observe(written.at, sent, received);
    }
}

/// The records of the workers running now, by queue and start time (see
/// [`Client::workers`](crate::Client::workers)).
pub(crate) async fn list(storage: &Storage) -> crate::Result<Vec<WorkerPresence>> {
    let Some(bucket) = storage.presence_bucket(false, TTL).await else {
        return Ok(vec![]);
    };
    let keys = bucket.keys(|| "listing workers".into()).await?;
    let mut all = Vec::with_capacity(keys.len());
    for key in keys {
        if let Ok(Some(v)) = bucket.get(&key, String::new).await {
            if let Ok(w) = serde_json::from_slice::<WorkerPresence>(&v) {
                all.push(w);
            }
        }
    }
    all.sort_by(|a, b| (&a.queue, a.started).cmp(&(&b.queue, b.started)));
    Ok(all)
}
