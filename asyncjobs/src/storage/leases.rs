//! Worker leases: which tries each running Rust worker holds, renewed
//! while it lives, so the tries of a worker that died are run again long
//! before the queue's run time (docs/storage.md §5.8, docs/processing.md
//! §2.14).

use super::buckets::Bucket;
use super::Storage;
use crate::error::{Error, Result};
use crate::task::TaskState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The bucket of worker leases: key = worker id, value = [`WorkerLease`].
/// Ours only; Go neither writes nor reads it.
pub const LEASES_BUCKET: &str = "CHORIA_AJ_LEASES";

/// How long the bucket keeps a lease no one renewed or removed (a backstop:
/// the worker that finds it expired removes it).
const KEEP: Duration = Duration::from_secs(3600);

/// What a running worker holds, as written to [`LEASES_BUCKET`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerLease {
    /// The worker's id (as in its presence record).
    pub worker: String,
    /// Its queue.
    pub queue: String,
    /// Its host name.
    #[serde(default)]
    pub host: String,
    /// Its process id.
    #[serde(default)]
    pub pid: u32,
    /// After how long without a renewal it is presumed dead (whole
    /// seconds).
    pub rescue_after_secs: u64,
    /// The tries it runs: task id → the sequence of the task's record as
    /// this worker last saved it.
    #[serde(default)]
    pub running: BTreeMap<String, u64>,
    /// When it was last written (the server's time; not stored in the
    /// value, read from the record).
    #[serde(skip, default = "crate::wire::zero_time")]
    pub renewed: time::OffsetDateTime,
}

impl Storage {
    /// Opens [`LEASES_BUCKET`], creating it when `create` is set; `None`
    /// when it is missing (and not created) or cannot be opened (logged
    /// when creating).
    /// Does nothing on a server too old for it (`capabilities.rs`:
    /// reported once, at start).
    pub(crate) async fn leases_bucket(&self, create: bool) -> Option<Bucket> {
        if !self.capabilities().presence {
            return None;
        }
        if !create {
            return self.open_bucket(LEASES_BUCKET, String::new).await.ok()?;
        }
        // this client's replicas: a lease that cannot be renewed makes
        // its worker stop its tries, so one node dying must not take it
        self.open_or_create_bucket(LEASES_BUCKET, "asyncjobs worker leases", KEEP, None)
            .await
            .map_err(|e| tracing::warn!(error = %e, "cannot create the worker leases bucket; tries of a crashed worker wait for the queue's run time"))
            .ok()
    }

    /// The lease naming task `id` among its running tries, if any.
    pub(crate) async fn task_holder(&self, id: &str) -> Result<Option<WorkerLease>> {
        Ok(self
            .leases()
            .await?
            .into_iter()
            .find(|lease| lease.running.contains_key(id)))
    }

    /// Every worker lease, with its last renewal (server time); empty when
    /// the bucket does not exist. Undecodable leases are left out.
    pub(crate) async fn leases(&self) -> Result<Vec<WorkerLease>> {
        let Some(bucket) = self.leases_bucket(false).await else {
            return Ok(vec![]);
        };
        let mut all = vec![];
        for key in bucket.keys(|| "listing worker leases".into()).await? {
            let Some(written) = bucket
                .written(&key, || format!("reading worker lease {key}"))
                .await?
            else {
                continue;
            };
            if let Ok(mut lease) = serde_json::from_slice::<WorkerLease>(&written.value) {
                lease.renewed = written.at;
                all.push(lease);
            }
        }
        Ok(all)
    }

    /// Hands a try of a dead worker back: when task `id` is still `active`
    /// with its record at `seq` (nothing saved it since the dead worker
    /// did), or at a later sequence of the same try (a progress or renewal
    /// save the lease, last written at `lease_written`, had not caught up
    /// with: the try started no later than that write), it is saved `retry`
    /// with `why` as `last_err` (at the record's sequence, so two rescuers
    /// cannot both win) and a fresh work item is published to its queue.
    /// A try another worker started after the lease's last write is not
    /// touched. Whether it was handed back.
    ///
    /// # Errors
    /// Loading, saving or publishing failed (a publish failure leaves the
    /// task `retry` without an item: the reconcile pass ends it).
    pub(crate) async fn rescue_task(
        &self,
        id: &str,
        seq: u64,
        lease_written: time::OffsetDateTime,
        why: &str,
    ) -> Result<bool> {
        let mut task = match self.load_task(id).await {
            Ok(t) => t,
            Err(Error::TaskNotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let same_try =
            task.seq == seq || (task.seq > seq && task.tried.is_some_and(|t| t <= lease_written));
        if task.state != TaskState::Active || !same_try {
            return Ok(false);
        }
        task.state = TaskState::Retry;
        task.last_err = why.to_string();
        match self.save_task(&mut task).await {
            Ok(()) => {}
            Err(Error::ConcurrentUpdate(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        let sent = self
            .publish_item_at(
                &task.queue,
                id,
                crate::queue::lane::Lane::of(&task),
                task.key.as_deref(),
                None,
                false,
                super::Due::Now,
            )
            .await
            .map_err(|e| crate::error::nats(format!("publishing the work item of task {id}"), e))?
            .await
            .map_err(|e| crate::error::nats(format!("publishing the work item of task {id}"), e))?;
        tracing::debug!(task = %id, seq = sent.sequence, "published a work item for the rescued try");
        Ok(true)
    }
}
