//! Batches: the bucket `CHORIA_AJ_BATCHES` of batch records, the checks
//! a batch's tasks pass before anything is written, and a member's state
//! as the store has it (docs/processing.md §2.23, docs/storage.md §3.9).

use super::enqueue::{Leaderless, END_HEADROOM, ENQUEUE_RECORD};
use super::{Bucket, Storage};
use crate::batch::{BatchRecord, BatchTask};
use crate::error::{Error, Result};
use crate::task::{is_valid_name, Task};
use time::OffsetDateTime;

/// The bucket of batch records: key the batch id, value its record.
pub const BATCHES_BUCKET: &str = "CHORIA_AJ_BATCHES";

impl Storage {
    /// The batch bucket; created (history 1, no TTL, this client's storage
    /// and replicas) when `create` is set and it is missing, else `None`.
    async fn batches_bucket(&self, create: bool) -> Result<Option<Bucket>> {
        if create {
            return self
                .open_or_create_bucket(
                    BATCHES_BUCKET,
                    "asyncjobs batches",
                    std::time::Duration::ZERO,
                    None,
                )
                .await
                .map(Some);
        }
        let open = || format!("binding bucket {BATCHES_BUCKET}");
        Ok(self.open_bucket(BATCHES_BUCKET, open).await?)
    }

    /// Readies a batch's task for its enqueue into `queue` and checks what
    /// the enqueue would refuse, so a batch is refused before anything is
    /// written: the queue set and the task signed, the record's size (with
    /// the room to end it), and for a delayed task the server's schedules
    /// and the queue (docs/storage.md §10.2).
    pub(crate) async fn ready_batch_task(&self, queue: &str, task: &mut Task) -> Result<()> {
        self.ready_record(queue, task)?;
        self.check_size(ENQUEUE_RECORD, task.to_json()?.len() + END_HEADROOM)?;
        if let Some(due) = task.run_at.filter(|t| *t > OffsetDateTime::now_utc()) {
            Box::pin(self.prepare_delayed(queue, due)).await?;
        }
        Ok(())
    }

    /// Stores a new batch's record (a KV create: the id is new). A store
    /// without a leader is waited out for up to 15 s, as an enqueue does;
    /// a create that was stored although its answer was lost is found
    /// again and counts.
    pub(crate) async fn store_batch(&self, record: &BatchRecord) -> Result<()> {
        let body = serde_json::to_vec(record).map_err(|e| Error::json("encoding batch", e))?;
        self.check_size("batch record", body.len())?;
        let bucket = self
            .batches_bucket(true)
            .await?
            .ok_or_else(|| Error::StorageNotReady(format!("bucket {BATCHES_BUCKET}")))?;
        let id = record.id.as_str();
        let mut wait = Leaderless::new();
        loop {
            let created = bucket
                .create(id, body.clone().into(), || format!("storing batch {id}"))
                .await;
            match created {
                Ok(Some(_)) => return Ok(()),
                // an earlier try was stored: ours if it holds our record
                Ok(None) => {
                    let held = bucket.get(id, || format!("reading batch {id}")).await?;
                    return match held {
                        Some(v) if v[..] == body[..] => Ok(()),
                        _ => Err(Error::Config(format!(
                            "a batch with id {id} exists already"
                        ))),
                    };
                }
                Err(e)
                    if e.is_transient()
                        && Box::pin(wait.again(self, &format!("KV_{BATCHES_BUCKET}"))).await =>
                {
                    tracing::debug!(batch = %id, error = %e, "batch bucket did not answer (electing a leader?); storing again");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The record of batch `id`.
    ///
    /// # Errors
    /// [`Error::BatchNotFound`] when there is none (or no bucket, or an id
    /// that cannot be one); [`Error::Json`] when it does not decode.
    pub(crate) async fn load_batch(&self, id: &str) -> Result<BatchRecord> {
        let not_found = || Error::BatchNotFound(id.to_string());
        if !is_valid_name(id) {
            return Err(not_found());
        }
        let Some(bucket) = self.batches_bucket(false).await? else {
            return Err(not_found());
        };
        let value = bucket
            .get(id, || format!("reading batch {id}"))
            .await?
            .ok_or_else(not_found)?;
        serde_json::from_slice(&value).map_err(|e| Error::json(format!("decoding batch {id}"), e))
    }

    /// Task `id` of a batch as the store has it: its record, or the state
    /// its discard marker remembers, or missing.
    pub(crate) async fn batch_task(&self, id: &str) -> Result<BatchTask> {
        match self.load_task(id).await {
            Ok(t) => Ok(BatchTask::of(&t)),
            Err(Error::TaskNotFound(_)) => {
                let mut t = BatchTask::missing(id);
                if let Some(state) = self.discarded_state(id).await? {
                    t.state = Some(state);
                    t.discarded = true;
                }
                Ok(t)
            }
            Err(Error::InvalidTaskRecord { reason, .. }) => {
                let mut t = BatchTask::missing(id);
                t.state = Some(crate::TaskState::Unknown);
                t.last_err = format!("its record does not decode: {reason}");
                Ok(t)
            }
            Err(e) => Err(e),
        }
    }
}
