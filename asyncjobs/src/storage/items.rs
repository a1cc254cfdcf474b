//! Work items in a queue's stream: the one publish path (at once, or held
//! by a JetStream message schedule until due), finding and removing items,
//! and making a queue hold scheduled items (docs/storage.md).

use super::work_item::{self, WorkItem};
use super::{api, Storage};
use crate::error::{nats, Error, Result};
use crate::queue::{
    item_subject, items_filter, scheduled_item_subject, validate_queue_name, QUEUE_STREAM_PREFIX,
    SCHEDULED_ITEM_PREFIX, WORKERS_CONSUMER,
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
        let stream = self
            .stream(&format!("{QUEUE_STREAM_PREFIX}{queue}"))
            .await?;
        match stream.delete_message(seq).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = nats(format!("deleting item {seq} of queue {queue}"), e);
                if api::is(&e, ErrorCode::NO_MESSAGE_FOUND) {
                    Ok(())
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Whether `queue` holds a work item for task `id`: waiting or in
    /// flight on `CHORIA_AJ.Q.<queue>.<id>`, or held until due on
    /// `CHORIA_AJ.S.<queue>.<id>`. A missing queue holds none.
    pub(crate) async fn holds_item(&self, queue: &str, id: &str) -> Result<bool> {
        validate_queue_name(queue)?;
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        for subject in [item_subject(queue, id), scheduled_item_subject(queue, id)] {
            let found = api::request::<Value>(
                &self.js,
                &format!("STREAM.MSG.GET.{stream}"),
                &json!({ "last_by_subj": subject }),
                || format!("looking for the work item of {id} in queue {queue}"),
            )
            .await;
            match found {
                Ok(_) => return Ok(true),
                Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => return Ok(false),
                Err(e) if api::is(&e, ErrorCode::NO_MESSAGE_FOUND) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Makes `queue` ready for delayed items: the server must run message
    /// schedules and the queue must hold scheduled items (enabled here).
    pub(super) async fn prepare_delayed(&self, queue: &str, due: OffsetDateTime) -> Result<()> {
        if !self.supports_schedules() {
            return Err(Error::SchedulesUnsupported {
                version: self.nc.server_info().version,
            });
        }
        let cached = DelayCache::fresh(self.delays().queue_age.get(queue));
        let queue_age = match cached {
            Some(age) => age,
            // enabling reads the stream (and records its max age)
            None => self.enable_scheduled_items(queue).await?.ok_or_else(|| {
                Error::SchedulesUnsupported {
                    version: self.nc.server_info().version,
                }
            })?,
        };
        // the held item and the record are messages like any other: a
        // stream's max age would discard them before the task is due
        let wait = Duration::try_from(due - OffsetDateTime::now_utc()).unwrap_or_default();
        if !queue_age.is_zero() && wait > queue_age {
            return Err(Error::Config(format!(
                "queue {queue} keeps items at most {}: a task due in {} would be discarded before it runs",
                crate::wire::format_duration(queue_age),
                crate::wire::format_duration(Duration::from_secs(wait.as_secs()))
            )));
        }
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

    /// Removes a task's held item (a delayed task's, or one waiting for its
    /// next try or its dependencies) from `queue`, if it has one: a retried
    /// or deleted task must not run again from it. Queues that hold no
    /// scheduled items have none to remove.
    pub(crate) async fn cancel_held(&self, queue: &str, id: &str) -> Result<()> {
        if queue.is_empty() || !self.supports_schedules() {
            return Ok(());
        }
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let api_subject = format!("STREAM.PURGE.{stream}");
        let body = json!({ "filter": scheduled_item_subject(queue, id) });
        let purge = || {
            api::request::<Value>(&self.js, &api_subject, &body, move || {
                format!("removing the held item of task {id}")
            })
        };
        let known = self.delays().holding.contains(queue);
        if known {
            // known to hold scheduled items: no need to read the stream
            match purge().await {
                Ok(_) => return Ok(()),
                Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => {
                    self.delays().holding.remove(queue);
                    return Ok(());
                }
                // the queue may have been recreated without them: look
                Err(_) => {
                    self.delays().holding.remove(queue);
                }
            }
        }
        let config = match api::config(&self.js, &format!("STREAM.INFO.{stream}"), || {
            format!("loading queue {queue}")
        })
        .await
        {
            Ok(c) => c,
            Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let held = format!("{SCHEDULED_ITEM_PREFIX}{queue}.>");
        if !config["subjects"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s == &json!(held)))
        {
            return Ok(());
        }
        self.delays().holding.insert(queue.to_string());
        purge().await?;
        Ok(())
    }

    /// Sends the work item of a saved task: the one path for every item
    /// (enqueue, retry, delayed tasks, and the worker's re-arm near the
    /// delivery limit). With `dedupe` the item carries the task id as
    /// `Nats-Msg-Id`; `traceparent` travels in a header.
    ///
    /// Without `due` it is published at once; with `due`, as a JetStream message
    /// schedule (ADR-51, nats-server 2.12+) that holds the item on
    /// `CHORIA_AJ.S.<queue>.<id>` and publishes it to its usual subject at
    /// `due` (whole seconds, rounded up); the queue must hold scheduled
    /// items ([`Storage::enable_scheduled_items`]). The published item is
    /// an ordinary work item, so Go workers process it unchanged.
    pub(crate) async fn publish_item_at(
        &self,
        queue: &str,
        task_id: &str,
        traceparent: Option<String>,
        dedupe: bool,
        due: Option<OffsetDateTime>,
    ) -> std::result::Result<PublishAckFuture, PublishError> {
        let body = WorkItem::new(task_id).encode();
        let mut publish = jetstream::message::PublishMessage::build().payload(body.into());
        if dedupe {
            publish = publish.message_id(task_id);
        }
        if let Some(tp) = traceparent {
            publish = publish.header(work_item::TRACEPARENT_HEADER, tp.as_str());
        }
        let subject = match due {
            None => item_subject(queue, task_id),
            Some(due) => {
                publish = publish
                    .header(
                        work_item::SCHEDULE_HEADER,
                        work_item::schedule_at(due).as_str(),
                    )
                    .header(
                        work_item::SCHEDULE_TARGET_HEADER,
                        item_subject(queue, task_id).as_str(),
                    );
                scheduled_item_subject(queue, task_id)
            }
        };
        self.js.send_publish(subject, publish).await
    }

    /// Whether the connected server runs JetStream message schedules
    /// (nats-server 2.12 or later).
    pub(crate) fn supports_schedules(&self) -> bool {
        version_at_least(&self.nc.server_info().version, 2, 12)
    }

    /// Lets a queue hold work items until they are due, so a task waiting
    /// for its retry time or its dependencies holds no `max_ack_pending`
    /// slot: the `WORKERS` consumer is filtered to `CHORIA_AJ.Q.<queue>.>`
    /// (Go creates it unfiltered; it then still sees every work item), and
    /// the stream gains the subject `CHORIA_AJ.S.<queue>.>`,
    /// `allow_msg_schedules` and discard `old` (schedules require it; a
    /// queue without entry or byte limits never discards, so this changes
    /// nothing for it). The changes are idempotent; the consumer is changed
    /// first, so it never delivers a held item.
    ///
    /// Returns the queue's max age (zero: none) once it holds scheduled
    /// items, or `Ok(None)`, changing nothing, when the server is older
    /// than 2.12. Errors: [`Error::Config`] for a queue with a size limit
    /// and discard `new` (it refuses items when full; dropping the oldest
    /// instead would lose tasks), [`Error::QueueNotFound`] /
    /// [`Error::QueueConsumerNotFound`], or the server's refusal (for
    /// example an older server in the cluster).
    pub(crate) async fn enable_scheduled_items(&self, queue: &str) -> Result<Option<Duration>> {
        validate_queue_name(queue)?;
        if !self.supports_schedules() {
            return Ok(None);
        }
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let stream_config = match api::config(&self.js, &format!("STREAM.INFO.{stream}"), || {
            format!("loading queue {queue}")
        })
        .await
        {
            Ok(c) => c,
            Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => {
                return Err(Error::QueueNotFound(queue.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let limited = |key: &str| stream_config[key].as_i64().is_some_and(|n| n > 0);
        if stream_config["discard"] == "new" && (limited("max_msgs") || limited("max_bytes")) {
            // schedules need discard old; switching would turn "refuse new
            // items when full" into "drop the oldest"
            return Err(Error::Config(format!(
                "queue {queue} refuses new items when full (max entries with discard new), and message schedules need discard old"
            )));
        }
        let held = format!("{SCHEDULED_ITEM_PREFIX}{queue}.>");
        let filter = items_filter(queue);
        let consumer = self.workers_config(queue).await?;
        let has_held = stream_config["subjects"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s == &json!(held)));
        if consumer["filter_subject"] == json!(filter)
            && has_held
            && stream_config["allow_msg_schedules"] == json!(true)
        {
            // already done: no read-modify-write that could undo a
            // concurrent `configure_queue`
            return Ok(Some(self.holding(queue, &stream_config)));
        }
        // written from the configurations just read: no second read
        let mut consumer = consumer;
        consumer["filter_subject"] = json!(filter);
        api::request::<Value>(
            &self.js,
            &format!("CONSUMER.CREATE.{stream}.{WORKERS_CONSUMER}"),
            &json!({"stream_name": stream, "config": consumer, "action": ""}),
            || format!("updating consumer {stream}.{WORKERS_CONSUMER}"),
        )
        .await?;
        let mut config = stream_config;
        if !has_held {
            match config["subjects"].as_array_mut() {
                Some(list) => list.push(json!(held)),
                None => config["subjects"] = json!([filter, held]),
            }
        }
        config["allow_msg_schedules"] = json!(true);
        // required by schedules; without size limits it changes nothing
        config["discard"] = json!("old");
        api::request::<Value>(
            &self.js,
            &format!("STREAM.UPDATE.{stream}"),
            &config,
            || format!("updating stream {stream}"),
        )
        .await?;
        Ok(Some(self.holding(queue, &config)))
    }

    /// Records that `queue` holds scheduled items, and its max age from
    /// `stream_config` (nanoseconds, as the API gives it); returns the age.
    pub(super) fn holding(&self, queue: &str, stream_config: &Value) -> Duration {
        let age = Duration::from_nanos(stream_config["max_age"].as_u64().unwrap_or(0));
        let mut d = self.delays();
        d.holding.insert(queue.to_string());
        d.queue_age
            .insert(queue.to_string(), (std::time::Instant::now(), age));
        age
    }
}

/// How long a delayed enqueue trusts the limits it read (a queue's and the
/// task store's max age) before reading them again.
pub(super) const DELAY_LIMITS_TTL: Duration = Duration::from_secs(10);

/// What is known about queues holding scheduled items, so a delayed
/// enqueue or a retry does not read the stream and consumer configurations
/// every time.
#[derive(Debug, Default)]
pub(super) struct DelayCache {
    /// Queues known to hold scheduled items: a queue keeps that once
    /// enabled (a removal that finds the queue changed forgets it).
    holding: std::collections::HashSet<String>,
    /// A queue's max age, with when it was read.
    queue_age: std::collections::HashMap<String, (std::time::Instant, Duration)>,
    /// The task store's max age, with when it was read.
    retention: Option<(std::time::Instant, Duration)>,
}

impl DelayCache {
    fn fresh<T: Copy>(entry: Option<&(std::time::Instant, T)>) -> Option<T> {
        entry
            .filter(|(at, _)| at.elapsed() < DELAY_LIMITS_TTL)
            .map(|(_, v)| *v)
    }
}

/// Whether a `major.minor.patch` server version is at least `major.minor`.
pub(super) fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[cfg(test)]
mod version_tests {
    use super::version_at_least;

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
