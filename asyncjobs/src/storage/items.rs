//! Work items: the one publish path (to the queue at once, or held in
//! [`HELD_STREAM`] by a JetStream message schedule until due), finding and
//! removing items (docs/storage.md §3.4, §10.10).

use super::work_item::{self, WorkItem};
use super::{api, Storage, HELD_STREAM};
use crate::error::{nats, Error, Result};
use crate::queue::lane::{any_lane_subject, Lane, KEY_HEADER};
use crate::queue::{
    held_item_subject, item_subject, legacy_held_subject, released_item_subject,
    validate_queue_name, LEGACY_HELD_PREFIX, QUEUE_STREAM_PREFIX,
};
use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::{self, ErrorCode};
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;

impl Storage {
    pub(super) fn delays(&self) -> std::sync::MutexGuard<'_, DelayCache> {
        self.delays.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The task id of the work item at `seq` in `queue`'s stream, `None`
    /// when that message is gone (or is not a work item).
    pub(crate) async fn item_at(&self, queue: &str, seq: u64) -> Result<Option<String>> {
        let stream = self
            .stream(&format!("{QUEUE_STREAM_PREFIX}{queue}"))
            .await?;
        match stream.get_raw_message(seq).await {
            Ok(m) => Ok(WorkItem::decode(&m.payload).ok().map(|i| i.job)),
            Err(e) => {
                let e = nats(format!("reading queue {queue}"), e);
                if api::is(&e, ErrorCode::NO_MESSAGE_FOUND) {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Removes the message at `seq` from `queue`'s stream (gone already is fine).
    pub(crate) async fn delete_item_at(&self, queue: &str, seq: u64) -> Result<()> {
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        match self
            .delete_msg(&stream, seq, || {
                format!("deleting item {seq} of queue {queue}")
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if api::is_gone(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `queue` holds a work item for task `id`: waiting or in
    /// flight on `CHORIA_AJ.Q.<queue>.<id>`, held until due in
    /// [`HELD_STREAM`] (on `CHORIA_AJ.W.<queue>.<id>`, or released on
    /// `CHORIA_AJ.R.<queue>.<id>` and waiting to be moved into the queue),
    /// or held by an earlier version on `CHORIA_AJ.S.<queue>.<id>`. A missing
    /// queue holds none.
    pub(crate) async fn holds_item(&self, queue: &str, id: &str) -> Result<bool> {
        validate_queue_name(queue)?;
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let mut lookups = vec![
            (stream.as_str(), item_subject(queue, id)),
            // in a priority's lane (docs/processing.md §2.21)
            (stream.as_str(), any_lane_subject(queue, id)),
        ];
        // read now: a queue deleted a moment ago holds nothing
        match self.read_queue_legacy_items(queue).await? {
            // no queue: nothing will ever deliver an item for it
            None => return Ok(false),
            Some(true) => lookups.push((stream.as_str(), legacy_held_subject(queue, id))),
            Some(false) => {}
        }
        for (stream, subject) in lookups {
            if self.has_message(stream, &subject, queue, id).await? {
                return Ok(true);
            }
        }
        self.has_held_item(queue, id).await
    }

    /// Whether [`HELD_STREAM`] has an item for task `id` of `queue`, held
    /// until due or released and not yet moved into the queue.
    pub(crate) async fn has_held_item(&self, queue: &str, id: &str) -> Result<bool> {
        if !self.supports_schedules() {
            return Ok(false);
        }
        for subject in [
            held_item_subject(queue, id),
            released_item_subject(queue, id),
        ] {
            if self.has_message(HELD_STREAM, &subject, queue, id).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `stream` has a message on `subject` (a missing stream has
    /// none); `queue` and `id` name the task's work item in errors.
    async fn has_message(
        &self,
        stream: &str,
        subject: &str,
        queue: &str,
        id: &str,
    ) -> Result<bool> {
        let found = api::request::<Value>(
            &self.js,
            &format!("STREAM.MSG.GET.{stream}"),
            &json!({ "last_by_subj": subject }),
            || format!("looking for the work item of {id} in queue {queue}"),
        )
        .await;
        match found {
            Ok(_) => Ok(true),
            Err(e)
                if api::is(&e, ErrorCode::NO_MESSAGE_FOUND)
                    || api::is(&e, ErrorCode::STREAM_NOT_FOUND) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Checks that a task due at `due` can be held for `queue`: the server
    /// runs message schedules, [`HELD_STREAM`] exists (created here), the
    /// queue exists, and the task store keeps records that long.
    pub(super) async fn prepare_delayed(&self, queue: &str, due: OffsetDateTime) -> Result<()> {
        if !self.supports_schedules() {
            return Err(Error::SchedulesUnsupported {
                version: self.nc.server_info().version,
            });
        }
        self.prepare_held_stream().await?;
        // an item released for a missing queue would wait forever
        self.queue_holds_legacy_items(queue)
            .await?
            .ok_or_else(|| Error::QueueNotFound(queue.to_string()))?;
        let wait = Duration::try_from(due - OffsetDateTime::now_utc()).unwrap_or_default();
        let cached = DelayCache::fresh(self.delays().retention.as_ref());
        let retention = match cached {
            Some(r) => r,
            None => {
                let r = self.tasks_info().await?.max_age;
                self.delays().retention = Some((std::time::Instant::now(), r));
                r
            }
        };
        if !retention.is_zero() && wait > retention {
            return Err(Error::Config(format!(
                "the task store keeps records at most {}: a task due in {} would be gone before it runs",
                crate::wire::format_duration(retention),
                crate::wire::format_duration(Duration::from_secs(wait.as_secs()))
            )));
        }
        Ok(())
    }

    /// Whether `queue`'s stream still has the subject earlier versions held
    /// items on (`None`: the queue does not exist). Read at most every
    /// [`DELAY_LIMITS_TTL`].
    async fn queue_holds_legacy_items(&self, queue: &str) -> Result<Option<bool>> {
        if let Some(legacy) = DelayCache::fresh(self.delays().queues.get(queue)) {
            return Ok(Some(legacy));
        }
        self.read_queue_legacy_items(queue).await
    }

    /// [`Storage::queue_holds_legacy_items`] read from the server now.
    async fn read_queue_legacy_items(&self, queue: &str) -> Result<Option<bool>> {
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let config = match api::config(&self.js, &format!("STREAM.INFO.{stream}"), || {
            format!("loading queue {queue}")
        })
        .await
        {
            Ok(c) => c,
            Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => {
                self.delays().queues.remove(queue);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let legacy_subject = format!("{LEGACY_HELD_PREFIX}{queue}.>");
        let legacy = config["subjects"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s == &json!(legacy_subject)));
        self.delays()
            .queues
            .insert(queue.to_string(), (std::time::Instant::now(), legacy));
        Ok(Some(legacy))
    }

    /// Removes a task's held item (a delayed task's, or one waiting for its
    /// next try or its dependencies), held or already released, if it has
    /// one: a retried or deleted task must not run again from it.
    pub(crate) async fn cancel_held(&self, queue: &str, id: &str) -> Result<()> {
        if queue.is_empty() || !self.supports_schedules() {
            return Ok(());
        }
        validate_queue_name(queue)?;
        let purge = |stream: String, filter: String| async move {
            let found = api::request::<Value>(
                &self.js,
                &format!("STREAM.PURGE.{stream}"),
                &json!({ "filter": filter }),
                || format!("removing the held item of task {id}"),
            )
            .await;
            match found {
                Ok(_) => Ok(()),
                Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => Ok(()),
                Err(e) => Err(e),
            }
        };
        purge(HELD_STREAM.into(), held_item_subject(queue, id)).await?;
        purge(HELD_STREAM.into(), released_item_subject(queue, id)).await?;
        if self.queue_holds_legacy_items(queue).await? == Some(true) {
            purge(
                format!("{QUEUE_STREAM_PREFIX}{queue}"),
                legacy_held_subject(queue, id),
            )
            .await?;
        }
        Ok(())
    }

    /// Removes every work item of task `id` in `queue`: waiting or in
    /// flight on `CHORIA_AJ.Q.<queue>.<id>` (a worker holding it finds its
    /// acknowledgement a no-op), and its held item ([`Storage::cancel_held`]).
    /// A cancelled task needs none: a Go worker runs a `terminated` task
    /// whose item it is given (docs/processing.md §2.16). A missing queue
    /// holds none.
    pub(crate) async fn remove_items(&self, queue: &str, id: &str) -> Result<()> {
        validate_queue_name(queue)?;
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        // its plain item, and one in a priority's lane (docs/processing.md §2.21)
        let lane = any_lane_subject(queue, id);
        for filter in [item_subject(queue, id), lane] {
            let found = api::request::<Value>(
                &self.js,
                &format!("STREAM.PURGE.{stream}"),
                &json!({ "filter": filter }),
                || format!("removing the work item of task {id}"),
            )
            .await;
            match found {
                Ok(_) => {}
                Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        self.cancel_held(queue, id).await
    }

    /// Sends the work item of a saved task: the one path for every item
    /// (enqueue, retry, delayed tasks, the worker's re-arm near the
    /// delivery limit, and the release of a held item). With `dedupe` the
    /// item carries the task id as `Nats-Msg-Id`; `traceparent` travels in
    /// a header.
    ///
    /// With [`Due::Now`] it is published to the queue at once. Otherwise it
    /// is held in [`HELD_STREAM`] by a JetStream message schedule (ADR-51,
    /// nats-server 2.12+) on `CHORIA_AJ.W.<queue>.<id>`, released when due
    /// (whole seconds, rounded up) to `CHORIA_AJ.R.<queue>.<id>`, and moved
    /// into the queue by a worker of it (`worker/release.rs`). The queue's
    /// stream and consumer are never changed for it, and the item the queue
    /// gets is an ordinary work item, so Go workers process it unchanged.
    // the item's own facts, each needed by some caller: a struct for them
    // would only rename the arguments
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn publish_item_at(
        &self,
        queue: &str,
        task_id: &str,
        lane: Lane,
        key: Option<&str>,
        traceparent: Option<String>,
        dedupe: bool,
        due: Due,
    ) -> std::result::Result<PublishAckFuture, PublishError> {
        let due = match due {
            Due::Now => None,
            Due::At(t) => Some(t),
            Due::In(d) => Some(self.clock().now() + d),
        };
        let body = WorkItem::new(task_id).encode();
        let mut publish = jetstream::message::PublishMessage::build().payload(body.into());
        if dedupe {
            publish = publish.message_id(task_id);
        }
        if let Some(tp) = traceparent {
            publish = publish.header(work_item::TRACEPARENT_HEADER, tp.as_str());
        }
        if let (Lane::Shard(_), Some(key)) = (lane, key) {
            publish = publish.header(KEY_HEADER, key);
        }
        let subject = match due {
            None => lane.item_subject(queue, task_id),
            Some(due) => {
                publish = publish
                    .header(
                        work_item::SCHEDULE_HEADER,
                        work_item::schedule_at(due).as_str(),
                    )
                    .header(
                        work_item::SCHEDULE_TARGET_HEADER,
                        lane.released_subject(queue, task_id).as_str(),
                    );
                held_item_subject(queue, task_id)
            }
        };
        self.js.send_publish(subject, publish).await
    }

    /// Releases a task's held item now instead of when its schedule is
    /// due: a plain item on `CHORIA_AJ.R.<queue>.<id>`, moved into the
    /// queue like any released item, then the schedule is removed (only
    /// messages older than the release, so a newer hold survives).
    /// `dedupe` is the release's `Nats-Msg-Id`: workers releasing the same
    /// task for the same reason send it once (docs/storage.md §10.11).
    ///
    /// Errors: the publish or the purge failed (the task then waits for
    /// its schedule).
    pub(crate) async fn release_held_now(&self, queue: &str, id: &str, dedupe: &str) -> Result<()> {
        validate_queue_name(queue)?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(WorkItem::new(id).encode().into())
            .message_id(dedupe);
        let what = || format!("releasing the held item of task {id}");
        let ack = self
            .js
            .send_publish(released_item_subject(queue, id), publish)
            .await
            .map_err(|e| nats(what(), e))?
            .await
            .map_err(|e| nats(what(), e))?;
        if ack.duplicate {
            return Ok(());
        }
        api::request::<Value>(
            &self.js,
            &format!("STREAM.PURGE.{HELD_STREAM}"),
            &json!({ "filter": held_item_subject(queue, id), "seq": ack.sequence }),
            what,
        )
        .await?;
        Ok(())
    }

    /// Whether the connected server runs JetStream message schedules
    /// (nats-server 2.12 or later).
    pub(crate) fn supports_schedules(&self) -> bool {
        self.capabilities().schedules
    }
}

/// How long what was read about the held-items stream, a queue and the
/// task store is trusted before it is read again.
pub(super) const DELAY_LIMITS_TTL: Duration = Duration::from_secs(10);

/// What delayed enqueues, waits and held-item removals have learnt, so they
/// do not read stream configurations every time.
#[derive(Debug, Default)]
pub(super) struct DelayCache {
    /// When [`HELD_STREAM`] was last seen to exist.
    pub(super) held: Option<std::time::Instant>,
    /// Queues seen to exist, each with whether its stream still has the
    /// subject of earlier versions' held items, and when that was read.
    queues: std::collections::HashMap<String, (std::time::Instant, bool)>,
    /// The task store's max age, with when it was read.
    retention: Option<(std::time::Instant, Duration)>,
}

impl DelayCache {
    fn fresh<T: Copy>(entry: Option<&(std::time::Instant, T)>) -> Option<T> {
        entry
            .filter(|(at, _)| at.elapsed() < DELAY_LIMITS_TTL)
            .map(|(_, v)| *v)
    }

    /// Whether [`HELD_STREAM`] was seen to exist within the last
    /// [`DELAY_LIMITS_TTL`].
    pub(super) fn held_fresh(&self) -> bool {
        self.held.is_some_and(|at| at.elapsed() < DELAY_LIMITS_TTL)
    }
}

/// When a work item [`Storage::publish_item_at`] writes is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// At once: published to the queue.
    Now,
    /// At this time (a task's `run_at`, by the clock that set it).
    At(OffsetDateTime),
    /// After this long by the server's clock, which releases held items
    /// (docs/processing.md §2.13): a worker's retry backoff, wait or
    /// hand-back; never the local clock, which may disagree.
    In(Duration),
}

#[cfg(test)]
mod version_tests {
    use crate::capabilities::version_at_least;

    #[test]
    fn server_versions_compare_by_major_and_minor() {
        assert!(version_at_least("2.12.0", 2, 12));
        assert!(version_at_least("2.15.1", 2, 12));
        assert!(version_at_least("3.0.0", 2, 12));
        assert!(version_at_least("v2.12.0-beta.1", 2, 12));
        assert!(!version_at_least("2.11.9", 2, 12));
        assert!(!version_at_least("2.9.0", 2, 12));
        assert!(!version_at_least("", 2, 12));
        assert!(!version_at_least("garbage", 2, 12));
    }
}
