//! Unique tasks: the key bucket `CHORIA_AJ_UNIQUE` and the enqueue that
//! holds a key (docs/processing.md §2.18, docs/storage.md §3.7).

use super::{Bucket, Storage};
use crate::capabilities::version_at_least;
use crate::error::{Error, Result};
use crate::task::{Task, Unique};
use std::time::Duration;

/// The bucket of uniqueness keys: key → the id of the task holding it.
pub const UNIQUE_BUCKET: &str = "CHORIA_AJ_UNIQUE";

/// A key whose task is not found is taken over only once it is this old:
/// younger, its enqueue may still be saving the task.
const PENDING_GRACE: Duration = Duration::from_secs(30);

/// Holding a key is tried this often when it keeps changing under us.
const ATTEMPTS: usize = 5;

impl Storage {
    /// The key bucket, created when missing (per-message TTLs: nats-server
    /// 2.11 or later). Looked up at every unique enqueue, so a bucket
    /// deleted meanwhile is made again.
    async fn unique_bucket(&self) -> Result<Bucket> {
        let version = &self.nc.server_info().version;
        if !version_at_least(version, 2, 11) {
            return Err(Error::ServerTooOld {
                feature: "unique tasks",
                needs: "2.11",
                version: version.clone(),
            });
        }
        self.open_or_create_bucket(
            UNIQUE_BUCKET,
            "asyncjobs unique task keys",
            Duration::ZERO,
            Some(Duration::from_secs(1)),
        )
        .await
    }

    /// Enqueues a unique task: holds its key (created, or taken over from
    /// a finished or lost task), then enqueues; a key held by an earlier
    /// task refuses with [`Error::TaskExists`]; an enqueue that fails
    /// gives the key back.
    pub(super) async fn enqueue_unique(
        &self,
        queue: &str,
        task: &mut Task,
        unique: Unique,
    ) -> Result<()> {
        let bucket = self.unique_bucket().await?;
        let key = unique.key.as_str();
        let ctx = || format!("holding unique key {key:?}");
        for _ in 0..ATTEMPTS {
            let value = bytes::Bytes::from(task.id.clone());
            let held = match unique.period {
                Some(p) => {
                    let ttl =
                        Duration::from_secs(p.as_secs().max(1) + u64::from(p.subsec_nanos() > 0));
                    bucket.create_with_ttl(key, value, ttl, ctx).await?
                }
                None => bucket.create(key, value, ctx).await?,
            };
            let revision = match held {
                Some(rev) => rev,
                None => match self.take_over(&bucket, task, &unique).await? {
                    Some(rev) => rev,
                    // changed under us: look again
                    None => continue,
                },
            };
            return match self.enqueue_plain(queue, task).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    if let Err(k) = bucket
                        .delete_at_revision(key, revision, || {
                            format!("giving back unique key {key:?}")
                        })
                        .await
                    {
                        tracing::warn!(task = %task.id, key, error = %k,
                            "the enqueue failed and its unique key could not be given back; a later enqueue takes it over once it sees the task missing");
                    }
                    Err(e)
                }
            };
        }
        Err(Error::ConcurrentUpdate(format!("unique key {key}")))
    }

    /// The key exists: refuses with [`Error::TaskExists`] while its task
    /// holds it, else takes it over (compare and set) and returns the new
    /// revision; `None` when it changed meanwhile.
    async fn take_over(
        &self,
        bucket: &Bucket,
        task: &Task,
        unique: &Unique,
    ) -> Result<Option<u64>> {
        let key = unique.key.as_str();
        let Some(held) = bucket
            .written(key, || format!("reading unique key {key:?}"))
            .await?
        else {
            return Ok(None);
        };
        let holder = String::from_utf8_lossy(&held.value).into_owned();
        let exists = || {
            Err(Error::TaskExists {
                key: key.to_string(),
                id: holder.clone(),
            })
        };
        if holder == task.id {
            return exists();
        }
        // within its period the key stands, whatever became of its task
        if unique.period.is_some() {
            return exists();
        }
        match self.load_task(&holder).await {
            Ok(t) if !t.state.is_final() => return exists(),
            Ok(_) => {}
            Err(Error::TaskNotFound(_)) => {
                // deleted by a discard policy once final: free at once
                let discarded = matches!(self.discarded_state(&holder).await, Ok(Some(_)));
                let age = time::OffsetDateTime::now_utc() - held.at;
                if !discarded && age < PENDING_GRACE {
                    // its enqueue may still be saving it
                    return exists();
                }
            }
            Err(e) => return Err(e),
        }
        Ok(bucket
            .update_if(
                key,
                bytes::Bytes::from(task.id.clone()),
                held.revision,
                || format!("taking over unique key {key:?}"),
            )
            .await?)
    }
}
