//! The storage boundary: every JetStream call the runtime makes, for the
//! task stream, work queues and KV buckets (docs/storage.md §3 to §5, §10).
//!
//! Reads and administration use async-nats's typed calls and match the
//! server's [`ErrorCode`]s; the create and update bodies that must equal
//! Go's byte for byte (the golden configurations) go through [`api`].
//! Work items are written by one path ([`Storage::publish_item_at`]).

mod api;
mod item;

pub(crate) use item::WorkItem;

use crate::error::{nats, Error, NatsError, NatsErrorKind, Result};
use crate::events::TaskStateChangeEvent;
use crate::queue::{
    item_subject, items_filter, scheduled_item_subject, validate_queue_name, Queue, QueueInfo,
    QUEUE_STREAM_PREFIX, SCHEDULED_ITEM_PREFIX, WORKERS_CONSUMER,
};
use crate::task::{Task, TaskState};
use async_nats::header::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, stream, ErrorCode};
use async_nats::StatusCode;
use base64::Engine;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The stream holding one record per task.
pub const TASKS_STREAM: &str = "CHORIA_AJ_TASKS";
/// Subject prefix of task records; the id follows.
pub const TASK_SUBJECT_PREFIX: &str = "CHORIA_AJ.T.";
/// KV bucket for scheduled tasks and other configuration.
pub const CONFIG_BUCKET: &str = "CHORIA_AJ_CONFIGURATION";
/// KV bucket for leader elections.
pub const ELECTIONS_BUCKET: &str = "CHORIA_AJ_ELECTIONS";
/// KV bucket remembering the final state of tasks whose record was deleted
/// because their state is discarded (key = task id, value
/// `{"state":"complete"}`), so their dependants can still be judged.
/// Created on demand by the first discard; Go neither writes nor reads it.
pub const DISCARDED_BUCKET: &str = "CHORIA_AJ_DISCARDED";

/// Stream capturing JetStream's max-deliveries advisories for the
/// `WORKERS` consumers of every queue, so a work item the server stopped
/// delivering is noticed even when no worker was running at the time.
/// Work-queue retention, one durable consumer per queue (named after it);
/// Go neither writes nor reads it.
pub const EXHAUSTED_STREAM: &str = "CHORIA_AJ_EXHAUSTED";

/// Subject of the max-deliveries advisory of a queue's `WORKERS` consumer.
pub(crate) fn exhausted_subject(queue: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{QUEUE_STREAM_PREFIX}{queue}.{WORKERS_CONSUMER}")
}

/// Settings used when storage is created, and how records are written.
#[derive(Debug, Clone)]
pub(crate) struct StorageSettings {
    pub memory: bool,
    pub replicas: usize,
    pub task_retention: Duration,
    pub discard: Vec<TaskState>,
    pub keys: Keys,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            memory: false,
            replicas: 1,
            task_retention: Duration::ZERO,
            discard: Vec::new(),
            keys: Keys::none(),
        }
    }
}

#[cfg(feature = "signing")]
pub(crate) use crate::signing::Keys;

/// Without the `signing` feature nothing is signed or verified.
#[cfg(not(feature = "signing"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys;

#[cfg(not(feature = "signing"))]
impl Keys {
    pub(crate) fn none() -> Keys {
        Keys
    }
    pub(crate) fn signs(&self) -> bool {
        false
    }
    pub(crate) fn sign(&self, _: &mut Task) -> Result<()> {
        Ok(())
    }
    pub(crate) fn resign(&self, _: &mut Task) -> Result<()> {
        Ok(())
    }
    pub(crate) fn verify(&self, _: &Task) -> Result<()> {
        Ok(())
    }
}

/// Replicas must be 1 to 5 (JetStream's limit).
pub(crate) fn validate_replicas(n: usize) -> Result<()> {
    if !(1..=5).contains(&n) {
        return Err(Error::Config("replicas must be between 1 and 5".into()));
    }
    Ok(())
}

/// What the server reports about one stream: the task store, a queue's
/// stream or a KV bucket's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDetails {
    /// The stream's name.
    pub name: String,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Time of the oldest message (`None` when empty).
    pub first_time: Option<OffsetDateTime>,
    /// Time of the newest message (`None` when empty).
    pub last_time: Option<OffsetDateTime>,
    /// How long messages are kept (zero = forever).
    pub max_age: Duration,
    /// Message limit (-1 = unlimited).
    pub max_messages: i64,
    /// When full, the oldest message is dropped instead of refusing new ones.
    pub discard_old: bool,
    /// Memory storage rather than file storage.
    pub memory: bool,
    /// Replicas.
    pub replicas: usize,
    /// Whether any replica may answer direct gets (`allow_direct`).
    pub allow_direct: bool,
}

impl StreamDetails {
    fn from_info(info: &stream::Info) -> StreamDetails {
        let time = |t: OffsetDateTime| (t.year() > 1 && t.unix_timestamp() != 0).then_some(t);
        let empty = info.state.messages == 0;
        StreamDetails {
            name: info.config.name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            first_time: if empty {
                None
            } else {
                time(info.state.first_timestamp)
            },
            last_time: if empty {
                None
            } else {
                time(info.state.last_timestamp)
            },
            max_age: info.config.max_age,
            max_messages: info.config.max_messages,
            discard_old: info.config.discard == stream::DiscardPolicy::Old,
            memory: info.config.storage == stream::StorageType::Memory,
            replicas: info.config.num_replicas.max(1),
            allow_direct: info.config.allow_direct,
        }
    }
}

/// Task store and queue access over one NATS connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Storage {
    nc: async_nats::Client,
    js: jetstream::Context,
    settings: Arc<StorageSettings>,
    /// Whether task loads use direct gets (the task stream allows them):
    /// learnt when the task store is prepared, cleared when a direct get
    /// finds no responder.
    direct_loads: Arc<AtomicBool>,
    /// What delayed enqueues and held-item removals have learnt.
    delays: Arc<std::sync::Mutex<DelayCache>>,
}

/// How long a delayed enqueue trusts the limits it read (a queue's and the
/// task store's max age) before reading them again.
const DELAY_LIMITS_TTL: Duration = Duration::from_secs(10);

/// What is known about queues holding scheduled items, so a delayed
/// enqueue or a retry does not read the stream and consumer configurations
/// every time.
#[derive(Debug, Default)]
struct DelayCache {
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

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(i64::MAX as u128) as u64
}

impl Storage {
    pub(crate) fn new(nc: async_nats::Client, settings: StorageSettings) -> Storage {
        let js = jetstream::new(nc.clone());
        Storage {
            nc,
            js,
            settings: Arc::new(settings),
            direct_loads: Arc::new(AtomicBool::new(false)),
            delays: Arc::default(),
        }
    }

    fn delays(&self) -> std::sync::MutexGuard<'_, DelayCache> {
        self.delays.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The NATS connection.
    pub(crate) fn nats(&self) -> &async_nats::Client {
        &self.nc
    }

    /// The JetStream context (for acknowledging delivered items).
    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Checks a loaded task's signature with the configured keys.
    pub(crate) fn verify(&self, task: &Task) -> Result<()> {
        self.settings.keys.verify(task)
    }

    fn storage_type(&self) -> &'static str {
        if self.settings.memory {
            "memory"
        } else {
            "file"
        }
    }

    pub(crate) fn max_payload(&self) -> usize {
        self.nc.server_info().max_payload
    }

    pub(crate) fn check_size(&self, what: &'static str, size: usize) -> Result<()> {
        let max = self.max_payload();
        // leave room for headers and protocol overhead
        if max > 0 && size + 256 > max {
            return Err(Error::PayloadTooLarge { what, size, max });
        }
        Ok(())
    }

    async fn stream(&self, name: &str) -> Result<stream::Stream<()>> {
        self.js
            .get_stream_no_info(name)
            .await
            .map_err(|e| nats(format!("stream {name}"), e).into())
    }

    /// The stream's details, `None` when it does not exist.
    pub(crate) async fn stream_details(&self, name: &str) -> Result<Option<StreamDetails>> {
        match self.js.get_stream(name).await {
            Ok(mut s) => Ok(Some(StreamDetails::from_info(
                s.info()
                    .await
                    .map_err(|e| nats(format!("stream {name}"), e))?,
            ))),
            Err(e) => {
                let e = nats(format!("loading stream {name}"), e);
                if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    // ----- preparation -------------------------------------------------------------------

    async fn create_stream(&self, name: &str, config: Value) -> Result<()> {
        match api::request::<Value>(&self.js, &format!("STREAM.CREATE.{name}"), &config, || {
            format!("creating stream {name}")
        })
        .await
        {
            Ok(_) => Ok(()),
            // created concurrently by another process: fine, it is loaded unchanged
            Err(e) if api::is(&e, ErrorCode::STREAM_NAME_EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates `CHORIA_AJ_TASKS` unless it exists (an existing stream is used unchanged).
    pub(crate) async fn prepare_tasks(&self) -> Result<()> {
        if let Some(existing) = self.stream_details(TASKS_STREAM).await? {
            // a store Go created does not allow direct gets: loads there
            // use STREAM.MSG.GET (the stream is not changed behind its
            // owner's back)
            self.direct_loads
                .store(existing.allow_direct, Ordering::Relaxed);
            return Ok(());
        }
        let config = json!({
            "name": TASKS_STREAM,
            "description": "Choria Async Jobs Tasks",
            "subjects": ["CHORIA_AJ.T.*"],
            "retention": "limits",
            "max_consumers": -1,
            "max_msgs_per_subject": 1,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": ns(self.settings.task_retention),
            "max_msg_size": -1,
            "storage": self.storage_type(),
            "discard": "old",
            "num_replicas": self.settings.replicas.max(1),
            "sealed": false,
            "deny_delete": false,
            "deny_purge": false,
            "allow_rollup_hdrs": false,
            // Go creates it with false; loads by direct get cost the
            // server and the worker less (no JSON and base64 envelope),
            // and Go's STREAM.MSG.GET loads work either way (docs/storage.md §3.2,
            // a deliberate difference)
            "allow_direct": true,
            "mirror_direct": false,
            "consumer_limits": {},
        });
        self.create_stream(TASKS_STREAM, config).await?;
        // created here, or concurrently by another process with its own settings
        if let Some(created) = self.stream_details(TASKS_STREAM).await? {
            self.direct_loads
                .store(created.allow_direct, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Creates [`EXHAUSTED_STREAM`] unless it exists, and the durable
    /// consumer of `queue` on it: from then on every max-deliveries
    /// advisory of the queue is kept (7 days at most) until a worker of
    /// the queue handles it.
    pub(crate) async fn prepare_exhausted(&self, queue: &str) -> Result<()> {
        validate_queue_name(queue)?;
        if self.stream_details(EXHAUSTED_STREAM).await?.is_none() {
            let config = json!({
                "name": EXHAUSTED_STREAM,
                "description": "Choria Async Jobs work items whose deliveries ran out",
                // `*` only matches whole tokens: every stream's WORKERS consumer
                "subjects": [format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.{WORKERS_CONSUMER}")],
                "retention": "workqueue",
                "max_consumers": -1,
                "max_msgs": 1_000_000,
                "max_bytes": -1,
                "max_age": ns(Duration::from_secs(7 * 24 * 3600)),
                "max_msg_size": -1,
                "storage": self.storage_type(),
                "discard": "old",
                "num_replicas": self.settings.replicas.max(1),
            });
            self.create_stream(EXHAUSTED_STREAM, config).await?;
        }
        let stream = self.stream(EXHAUSTED_STREAM).await?;
        stream
            .get_or_create_consumer(
                queue,
                jetstream::consumer::pull::Config {
                    durable_name: Some(queue.to_string()),
                    filter_subject: exhausted_subject(queue),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats(format!("creating consumer {EXHAUSTED_STREAM}.{queue}"), e))?;
        Ok(())
    }

    /// The durable consumer of `queue` on [`EXHAUSTED_STREAM`].
    pub(crate) async fn exhausted_consumer(
        &self,
        queue: &str,
    ) -> Result<jetstream::consumer::PullConsumer> {
        self.stream(EXHAUSTED_STREAM)
            .await?
            .get_consumer(queue)
            .await
            .map_err(|e| {
                NatsError::new(
                    NatsErrorKind::JetStream,
                    format!("loading consumer {EXHAUSTED_STREAM}.{queue}"),
                )
                .with_source(e)
                .into()
            })
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

    /// Creates the configuration and elections KV buckets unless they exist.
    pub(crate) async fn prepare_buckets(&self) -> Result<()> {
        for (bucket, description, ttl) in [
            (
                CONFIG_BUCKET,
                "Choria Async Jobs Configuration",
                Duration::ZERO,
            ),
            (
                ELECTIONS_BUCKET,
                "Choria Async Jobs Leader Elections",
                Duration::from_secs(10),
            ),
        ] {
            let name = format!("KV_{bucket}");
            if self.stream_details(&name).await?.is_some() {
                continue;
            }
            self.create_stream(&name, self.kv_config(bucket, description, ttl))
                .await?;
        }
        Ok(())
    }

    /// The stream configuration Go's KV buckets are created with (docs/storage.md
    /// §5.1): one value per key, `ttl` as max age (zero = forever), a
    /// duplicate window of the TTL when shorter than 2 minutes.
    fn kv_config(&self, bucket: &str, description: &str, ttl: Duration) -> Value {
        let dupe = if !ttl.is_zero() && ttl < Duration::from_secs(120) {
            ttl
        } else {
            Duration::from_secs(120)
        };
        json!({
            "name": format!("KV_{bucket}"),
            "description": description,
            "subjects": [format!("$KV.{bucket}.>")],
            "retention": "limits",
            "max_consumers": -1,
            "max_msgs": -1,
            "max_bytes": -1,
            "discard": "new",
            "max_age": ns(ttl),
            "max_msgs_per_subject": 1,
            "max_msg_size": -1,
            "storage": self.storage_type(),
            "num_replicas": self.settings.replicas.max(1),
            "duplicate_window": ns(dupe),
            "deny_delete": true,
            "allow_rollup_hdrs": true,
            "compression": "none",
            "allow_direct": true,
            "mirror_direct": false,
            "consumer_limits": {},
        })
    }

    /// Creates or loads a queue (or only loads it when `no_create`), returning
    /// the queue as the server has it.
    pub(crate) async fn prepare_queue(&self, queue: &Queue) -> Result<Queue> {
        validate_queue_name(&queue.name)?;
        let stream = queue.stream_name();
        if self.stream_details(&stream).await?.is_none() {
            if queue.no_create {
                return Err(Error::QueueNotFound(queue.name.clone()));
            }
            let config = json!({
                "name": stream,
                "description": "Choria Async Jobs Work Queue",
                "subjects": [format!("CHORIA_AJ.Q.{}.>", queue.name)],
                "retention": "workqueue",
                "max_consumers": -1,
                "max_msgs_per_subject": 1,
                "max_msgs": if queue.max_entries > 0 { queue.max_entries } else { -1 },
                "max_bytes": -1,
                "max_age": ns(queue.max_age),
                "max_msg_size": -1,
                "storage": self.storage_type(),
                "discard": if queue.discard_old { "old" } else { "new" },
                "num_replicas": self.settings.replicas.max(1),
                "sealed": false,
                "deny_delete": false,
                "deny_purge": false,
                "allow_rollup_hdrs": false,
                "allow_direct": false,
                "mirror_direct": false,
                "consumer_limits": {},
            });
            self.create_stream(&stream, config).await?;
        }
        if self.workers_info(&stream, &queue.name).await?.is_none() {
            if queue.no_create {
                return Err(Error::QueueConsumerNotFound(queue.name.clone()));
            }
            let config = json!({
                "stream_name": stream,
                "config": {
                    "ack_policy": "explicit",
                    "ack_wait": ns(queue.effective_max_run_time()),
                    "deliver_policy": "all",
                    "durable_name": WORKERS_CONSUMER,
                    "name": WORKERS_CONSUMER,
                    "max_ack_pending": queue.effective_max_concurrent(),
                    "max_deliver": if queue.max_tries > 0 { queue.max_tries } else { -1 },
                    "replay_policy": "instant",
                    "num_replicas": 0,
                    "pause_until": "0001-01-01T00:00:00Z",
                },
                "action": "",
            });
            api::request::<Value>(
                &self.js,
                &format!("CONSUMER.CREATE.{stream}.{WORKERS_CONSUMER}"),
                &config,
                || format!("creating consumer {stream}.{WORKERS_CONSUMER}"),
            )
            .await?;
        }
        Ok(self.queue_info(&queue.name).await?.queue)
    }

    // ----- task records ------------------------------------------------------------------

    /// Saves the task with optimistic concurrency and publishes its state event.
    pub(crate) async fn save_task(&self, task: &mut Task) -> Result<()> {
        let ack = self.start_save(task).await?;
        self.finish_save(task, ack).await
    }

    /// Sends the task record; the returned future resolves to its publish ack.
    pub(crate) async fn start_save(&self, task: &Task) -> Result<PublishAckFuture> {
        let body = task.to_json()?;
        self.check_size("task record", body.len())?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            task.seq.to_string().as_str(),
        );
        self.js
            .publish_with_headers(
                format!("{TASK_SUBJECT_PREFIX}{}", task.id),
                headers,
                body.into(),
            )
            .await
            .map_err(|e| Error::TaskUpdateFailed(nats(format!("saving task {}", task.id), e)))
    }

    /// Awaits a record's publish ack, remembers its sequence and publishes the event.
    pub(crate) async fn finish_save(&self, task: &mut Task, ack: PublishAckFuture) -> Result<()> {
        match ack.await {
            Ok(ack) => {
                task.seq = ack.sequence;
                crate::metrics::task_update(task.state);
                self.publish_event(task).await;
                Ok(())
            }
            Err(e) => {
                crate::metrics::task_update_error();
                Err(match e.kind() {
                    PublishErrorKind::WrongLastSequence => Error::ConcurrentUpdate(task.id.clone()),
                    PublishErrorKind::StreamNotFound => Error::StorageNotReady(format!(
                        "task store {TASKS_STREAM} did not answer (no responders for {TASK_SUBJECT_PREFIX}{}): it does not exist, or has no leader",
                        task.id
                    )),
                    _ => Error::TaskUpdateFailed(nats(format!("saving task {}", task.id), e)),
                })
            }
        }
    }

    /// Publishes the task's state change event (best effort, like Go).
    pub(crate) async fn publish_event(&self, task: &Task) {
        let event = TaskStateChangeEvent::for_task(task);
        // an event is about 300 bytes, more with a long error
        let mut body = Vec::with_capacity(384 + event.last_error.len());
        match serde_json::to_writer(&mut body, &event) {
            Ok(()) => {
                if let Err(e) = self.nc.publish(event.subject(), body.into()).await {
                    tracing::warn!(task = %task.id, error = %e, "publishing task state event failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "encoding task state event failed"),
        }
    }

    /// Saves the task, or deletes it when its state is in the discard list.
    ///
    /// Before the record is deleted its final state is written to
    /// [`DISCARDED_BUCKET`], so a dependant still sees the dependency as
    /// `complete` (or failed). When that marker cannot be written the
    /// record is saved instead of deleted: keeping it is better than
    /// stranding its dependants.
    pub(crate) async fn save_or_discard(&self, task: &mut Task) -> Result<()> {
        if self.settings.discard.contains(&task.state) {
            // boxed: the marker's KV calls would otherwise grow every
            // in-flight task's future, discarding or not
            return Box::pin(self.discard(task)).await;
        }
        self.save_task(task).await
    }

    /// Records the final state of a task in a discard state, then deletes it.
    async fn discard(&self, task: &mut Task) -> Result<()> {
        if let Err(e) = self.mark_discarded(task).await {
            tracing::warn!(task = %task.id, state = %task.state, error = %e,
                "cannot record the final state of a discarded task; keeping its record instead");
            return self.save_task(task).await;
        }
        self.publish_event(task).await;
        match self.delete_task(&task.id).await {
            Ok(()) | Err(Error::TaskNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates [`DISCARDED_BUCKET`] unless it exists: a KV bucket with one
    /// value per key, keeping markers as long as the task store keeps
    /// records (its `max_age`).
    async fn prepare_discarded(&self) -> Result<()> {
        let name = format!("KV_{DISCARDED_BUCKET}");
        if self.stream_details(&name).await?.is_some() {
            return Ok(());
        }
        let max_age = self
            .tasks_info()
            .await
            .map(|d| d.max_age)
            .unwrap_or_default();
        let config = self.kv_config(
            DISCARDED_BUCKET,
            "Choria Async Jobs Discarded Tasks",
            max_age,
        );
        self.create_stream(&name, config).await
    }

    /// Writes the final state of a task about to be discarded to
    /// [`DISCARDED_BUCKET`], creating the bucket on first use.
    async fn mark_discarded(&self, task: &Task) -> Result<()> {
        let subject = format!("$KV.{DISCARDED_BUCKET}.{}", task.id);
        let body = json!({ "state": task.state }).to_string().into_bytes();
        let mut created = false;
        loop {
            let sent = match self.js.publish(subject.clone(), body.clone().into()).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == PublishErrorKind::StreamNotFound && !created => {
                    self.prepare_discarded().await?;
                    created = true;
                }
                Err(e) => {
                    return Err(nats(format!("recording discarded task {}", task.id), e).into())
                }
            }
        }
    }

    /// The final state a discarded task was deleted in, `None` when there is
    /// no marker for it (never discarded, or the marker has aged out).
    pub(crate) async fn discarded_state(&self, id: &str) -> Result<Option<TaskState>> {
        if !crate::task::is_valid_name(id) {
            return Ok(None);
        }
        let bucket = self.stream(&format!("KV_{DISCARDED_BUCKET}")).await?;
        match bucket
            .get_last_raw_message_by_subject(&format!("$KV.{DISCARDED_BUCKET}.{id}"))
            .await
        {
            Ok(m) => {
                let deleted = m
                    .headers
                    .get("KV-Operation")
                    .is_some_and(|op| op.as_str() != "PUT");
                if deleted {
                    return Ok(None);
                }
                #[derive(Deserialize)]
                struct Marker {
                    state: TaskState,
                }
                Ok(serde_json::from_slice::<Marker>(&m.payload)
                    .map(|m| m.state)
                    .ok())
            }
            Err(e) => {
                let e = nats(format!("loading the discard marker of {id}"), e);
                if api::is(&e, ErrorCode::NO_MESSAGE_FOUND)
                    || api::is(&e, ErrorCode::STREAM_NOT_FOUND)
                {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Loads a task and verifies its signature when keys are configured.
    pub(crate) async fn load_verified(&self, id: &str) -> Result<Task> {
        let task = self.load_task(id).await?;
        self.settings.keys.verify(&task)?;
        Ok(task)
    }

    /// Loads the latest version of a task.
    pub(crate) async fn load_task(&self, id: &str) -> Result<Task> {
        let (seq, data) = self.load_task_raw(id).await?;
        let mut task =
            serde_json::from_slice::<Task>(&data).map_err(|e| Error::InvalidTaskRecord {
                id: id.to_string(),
                reason: e.to_string(),
            })?;
        task.seq = seq;
        Ok(task)
    }

    async fn load_task_raw(&self, id: &str) -> Result<(u64, bytes::Bytes)> {
        if !crate::task::is_valid_name(id) {
            return Err(Error::TaskIdInvalid(id.to_string()));
        }
        if self.direct_loads.load(Ordering::Relaxed) {
            match self.direct_load(id).await? {
                Some(found) => return Ok(found),
                // direct gets no longer answered (the stream's
                // allow_direct was turned off): load the Go way from now on
                None => self.direct_loads.store(false, Ordering::Relaxed),
            }
        }
        self.message_get_load(id).await
    }

    /// Loads a task's latest record by direct get (`$JS.API.DIRECT.GET.
    /// CHORIA_AJ_TASKS.CHORIA_AJ.T.<id>`): the stored bytes come back as
    /// the reply's payload and the sequence in its `Nats-Sequence` header.
    /// `None` when nothing answers direct gets.
    async fn direct_load(&self, id: &str) -> Result<Option<(u64, bytes::Bytes)>> {
        let subject = format!("$JS.API.DIRECT.GET.{TASKS_STREAM}.{TASK_SUBJECT_PREFIX}{id}");
        let reply = match self.nc.request(subject, bytes::Bytes::new()).await {
            Ok(reply) => reply,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => return Ok(None),
            Err(e) => return Err(nats(format!("loading task {id}"), e).into()),
        };
        match reply.status {
            Some(StatusCode::NOT_FOUND) => return Err(Error::TaskNotFound(id.to_string())),
            Some(StatusCode::NO_RESPONDERS) => return Ok(None),
            Some(status) if status != StatusCode::OK => {
                return Err(Error::StorageNotReady(format!(
                    "loading task {id}: direct get answered {status} {}",
                    reply.description.as_deref().unwrap_or("")
                )))
            }
            _ => {}
        }
        let seq = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .ok_or_else(|| Error::InvalidTaskRecord {
                id: id.to_string(),
                reason: "direct get reply without a Nats-Sequence header".into(),
            })?;
        Ok(Some((seq, reply.payload)))
    }

    /// Loads a task's latest record by `STREAM.MSG.GET`, as Go does.
    async fn message_get_load(&self, id: &str) -> Result<(u64, bytes::Bytes)> {
        // STREAM.MSG.GET decoded into just what a load needs (sequence and
        // data): async-nats's get_last_raw_message_by_subject also decodes
        // headers and the time, which costs the worker's hot path ~15%.
        #[derive(Deserialize)]
        struct Reply {
            message: Stored,
        }
        #[derive(Deserialize)]
        struct Stored {
            seq: u64,
            #[serde(default)]
            data: String,
        }
        let body = json!({ "last_by_subj": format!("{TASK_SUBJECT_PREFIX}{id}") });
        let reply: Reply = api::request(
            &self.js,
            &format!("STREAM.MSG.GET.{TASKS_STREAM}"),
            &body,
            || format!("loading task {id}"),
        )
        .await
        .map_err(|e| self.task_error(id, e))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(reply.message.data)
            .map_err(|e| Error::InvalidTaskRecord {
                id: id.to_string(),
                reason: format!("invalid message data: {e}"),
            })?;
        Ok((reply.message.seq, data.into()))
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

    /// See [`Client::reconcile_tasks`](crate::Client::reconcile_tasks).
    pub(crate) async fn reconcile_tasks(
        &self,
        queue: Option<&str>,
        grace: Duration,
    ) -> Result<Vec<String>> {
        let mut tasks = Box::pin(self.list_tasks().await?);
        let cutoff = OffsetDateTime::now_utc() - grace;
        let mut ended = Vec::new();
        while let Some(task) = tasks.next().await {
            let mut task = task?;
            let waiting = matches!(
                task.state,
                TaskState::New | TaskState::Retry | TaskState::Blocked | TaskState::Active
            );
            let last_change = task.tried.unwrap_or(task.created).max(task.created);
            if !waiting
                || last_change > cutoff
                || task.queue.is_empty()
                || queue.is_some_and(|q| q != task.queue)
                || self.holds_item(&task.queue, &task.id).await?
            {
                continue;
            }
            let was = task.state;
            task.state = TaskState::Expired;
            task.last_err = format!(
                "work item lost: queue {} no longer holds one for this {was} task (dropped by the queue's max age or max entries, purged, or the queue was deleted); retry the task to run it again",
                task.queue
            );
            match self.save_task(&mut task).await {
                Ok(()) => {
                    tracing::warn!(task = %task.id, queue = %task.queue, state = %was, "work item lost; task expired");
                    ended.push(task.id);
                }
                // changed meanwhile: something is handling it
                Err(Error::ConcurrentUpdate(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ended)
    }

    /// Maps "no such message" and "no such stream" to their meaning for task `id`.
    fn task_error(&self, id: &str, e: NatsError) -> Error {
        if api::is(&e, ErrorCode::NO_MESSAGE_FOUND) {
            Error::TaskNotFound(id.to_string())
        } else if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
            Error::StorageNotReady("task store not initialized".into())
        } else {
            e.into()
        }
    }

    /// Deletes a task record (work items are untouched).
    pub(crate) async fn delete_task(&self, id: &str) -> Result<()> {
        let (seq, data) = self.load_task_raw(id).await?;
        let tasks = self.stream(TASKS_STREAM).await?;
        tasks
            .delete_message(seq)
            .await
            .map(|_| ())
            .map_err(|e| self.task_error(id, nats(format!("deleting task {id}"), e)))?;
        // a held item (delayed task, wait for a retry or dependencies)
        // goes with it: it would only end as "task not found" when due
        if let Ok(task) = serde_json::from_slice::<Task>(&data) {
            if let Err(e) = self.cancel_held(&task.queue, id).await {
                tracing::warn!(task = %id, error = %e, "the deleted task's held item stays until due");
            }
        }
        Ok(())
    }

    /// Removes every task record.
    pub(crate) async fn purge_tasks(&self) -> Result<()> {
        let tasks = self.stream(TASKS_STREAM).await?;
        match tasks.purge().await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.task_error("", nats("purging the task store", e))),
        }
    }

    /// The task store's details.
    pub(crate) async fn tasks_info(&self) -> Result<StreamDetails> {
        self.stream_details(TASKS_STREAM)
            .await?
            .ok_or_else(|| Error::StorageNotReady("task store not initialized".into()))
    }

    // ----- enqueue -----------------------------------------------------------------------

    /// Saves the task into `queue` and publishes its work item (docs/storage.md §10.2).
    ///
    /// A publish answered "no responders" while its stream exists (a
    /// cluster electing a new stream leader after a node died, which takes
    /// seconds) is sent again, pausing 100 ms doubling to 1 s, for up to
    /// [`LEADERLESS_PATIENCE`]; "no responders" is never stored, so
    /// sending again cannot duplicate. A stream the server says does not
    /// exist fails at once.
    pub(crate) async fn enqueue(&self, queue: &str, task: &mut Task) -> Result<()> {
        // the trace context the caller is in, read before the publish span
        // is entered (a producer outside any span sends none)
        let outer = task.traceparent.clone().or_else(current_traceparent);
        let span = crate::spans::publish(queue, task);
        tracing::Instrument::instrument(self.enqueue_in_span(queue, task, outer), span).await
    }

    /// [`Storage::enqueue`] inside its `publish` span; `outer` is the
    /// caller's trace context.
    async fn enqueue_in_span(
        &self,
        queue: &str,
        task: &mut Task,
        outer: Option<String>,
    ) -> Result<()> {
        // a delayed task: checked before anything is written
        let due = task.run_at.filter(|t| *t > OffsetDateTime::now_utc());
        if let (Some(due), Some(deadline)) = (due, task.deadline) {
            if deadline < due {
                return Err(Error::DeadlineBeforeDue { deadline, due });
            }
        }
        // cold paths are boxed: this future is held per task in flight
        // (`enqueue_many` holds hundreds)
        if let Some(due) = due {
            Box::pin(self.prepare_delayed(queue, due)).await?;
        }
        let mut wait = Leaderless::new();
        loop {
            let ack = self.start_enqueue(queue, task).await?;
            match self.finish_save(task, ack).await {
                Err(Error::StorageNotReady(why))
                    if Box::pin(wait.again(self, TASKS_STREAM)).await =>
                {
                    tracing::debug!(task = %task.id, %why, "task store without a leader; saving again");
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        // a retried task's earlier item may still be in the dedupe window
        let dedupe = task.state != TaskState::Retry;
        // the consumer's span is a child of this enqueue's (with `otel`)
        let traceparent = crate::spans::traceparent(&tracing::Span::current(), outer);
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        loop {
            let sent = self
                .publish_item_at(
                    queue,
                    &task.id,
                    traceparent.clone(),
                    dedupe && due.is_none(),
                    due,
                )
                .await;
            let outcome = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match &outcome {
                Ok(ack) if !ack.duplicate => {
                    crate::metrics::enqueue(queue);
                    return Ok(());
                }
                Err(e)
                    if e.kind() == PublishErrorKind::StreamNotFound
                        && Box::pin(wait.again(self, &stream)).await =>
                {
                    tracing::debug!(task = %task.id, queue, "queue without a leader; publishing the item again");
                }
                _ => return Box::pin(self.item_not_taken(queue, task, outcome, &mut wait)).await,
            }
        }
    }

    /// Makes `queue` ready for delayed items: the server must run message
    /// schedules and the queue must hold scheduled items (enabled here).
    async fn prepare_delayed(&self, queue: &str, due: OffsetDateTime) -> Result<()> {
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

    /// Whether `stream` may exist although a request to it got no
    /// responders: true unless the server says it does not exist or
    /// JetStream is off (a busy or electing cluster may not answer at all).
    async fn may_exist(&self, stream: &str) -> bool {
        match api::request::<Value>(
            &self.js,
            &format!("STREAM.INFO.{stream}"),
            &json!({}),
            || format!("loading stream {stream}"),
        )
        .await
        {
            Err(e) => ![
                ErrorCode::STREAM_NOT_FOUND,
                ErrorCode::JETSTREAM_NOT_ENABLED,
                ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT,
            ]
            .into_iter()
            .any(|code| api::is(&e, code)),
            Ok(_) => true,
        }
    }

    /// Validates the task and sends its record; see [`Storage::enqueue`].
    pub(crate) async fn start_enqueue(
        &self,
        queue: &str,
        task: &mut Task,
    ) -> Result<PublishAckFuture> {
        match task.state {
            TaskState::New | TaskState::Retry | TaskState::Blocked => {}
            other => return Err(Error::CannotEnqueue(other)),
        }
        validate_queue_name(queue)?;
        task.queue = queue.to_string();
        if self.settings.keys.signs() && task.signature.is_empty() {
            self.settings.keys.sign(task)?;
        }
        self.start_save(task).await
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
            publish = publish.header(item::TRACEPARENT_HEADER, tp.as_str());
        }
        let subject = match due {
            None => item_subject(queue, task_id),
            Some(due) => {
                publish = publish
                    .header(item::SCHEDULE_HEADER, item::schedule_at(due).as_str())
                    .header(
                        item::SCHEDULE_TARGET_HEADER,
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
        let consumer = match api::config(
            &self.js,
            &format!("CONSUMER.INFO.{stream}.{WORKERS_CONSUMER}"),
            || format!("loading consumer {stream}.{WORKERS_CONSUMER}"),
        )
        .await
        {
            Ok(c) => c,
            Err(e) if api::is(&e, ErrorCode::CONSUMER_NOT_FOUND) => {
                return Err(Error::QueueConsumerNotFound(queue.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
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
    fn holding(&self, queue: &str, stream_config: &Value) -> Duration {
        let age = Duration::from_nanos(stream_config["max_age"].as_u64().unwrap_or(0));
        let mut d = self.delays();
        d.holding.insert(queue.to_string());
        d.queue_age
            .insert(queue.to_string(), (std::time::Instant::now(), age));
        age
    }

    /// A work item the queue did not take (a duplicate, or a failed
    /// publish): marks the task `queue_error` (that save waits out a
    /// leaderless task store too, so no record is left `new` without an
    /// item when it can be helped) and returns the error for the caller.
    async fn item_not_taken(
        &self,
        queue: &str,
        task: &mut Task,
        outcome: std::result::Result<jetstream::publish::PublishAck, PublishError>,
        wait: &mut Leaderless,
    ) -> Result<()> {
        let (last_err, err) = match outcome {
            // taken, but as a duplicate of an item still in the window
            Ok(_) => (
                "duplicate work queue item".to_string(),
                Error::DuplicateItem,
            ),
            // the record says what the caller is told (Go: `queue not
            // found: nats: no responders available for request`)
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                let err = Error::QueueNotFound(queue.to_string());
                (err.to_string(), err)
            }
            Err(e) => {
                let reason = publish_error_text(&e);
                (
                    reason.clone(),
                    Error::EnqueueRejected {
                        queue: queue.to_string(),
                        reason,
                        source: nats(format!("publishing the work item of {}", task.id), e),
                    },
                )
            }
        };
        crate::metrics::enqueue_error(queue);
        task.state = TaskState::QueueError;
        task.last_err = last_err;
        loop {
            match self.save_task(task).await {
                Err(Error::StorageNotReady(_)) if wait.again(self, TASKS_STREAM).await => {}
                other => {
                    other?;
                    break;
                }
            }
        }
        Err(err)
    }

    /// Re-enqueues a task by id: state `retry`, result cleared (docs/storage.md §10.5).
    pub(crate) async fn retry_task(&self, queue: &str, id: &str) -> Result<Task> {
        let mut task = match self.load_task(id).await {
            Err(Error::TaskNotFound(_)) => {
                if let Ok(Some(state)) = self.discarded_state(id).await {
                    return Err(Error::TaskDiscarded {
                        id: id.to_string(),
                        state,
                    });
                }
                return Err(Error::TaskNotFound(id.to_string()));
            }
            other => other?,
        };
        // runs now: an item held for it (delayed, or waiting for a retry
        // or dependencies) goes, so it does not run twice
        task.run_at = None;
        self.cancel_held(&task.queue, id).await?;
        task.state = TaskState::Retry;
        task.result = None;
        if task.queue != queue {
            // the signature covers the queue: re-sign when we can (Go keeps
            // the now invalid signature, docs/go-differences.md §14)
            task.queue = queue.to_string();
            self.settings.keys.resign(&mut task)?;
        }
        self.enqueue(queue, &mut task).await?;
        Ok(task)
    }

    // ----- queues ------------------------------------------------------------------------

    /// Names of all queues, sorted.
    pub(crate) async fn queue_names(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            total: usize,
            #[serde(default)]
            streams: Option<Vec<String>>,
        }
        let mut names = Vec::new();
        loop {
            let page: Page = api::request(
                &self.js,
                "STREAM.NAMES",
                &json!({"subject": "CHORIA_AJ.Q.>", "offset": names.len()}),
                || "listing queues".into(),
            )
            .await?;
            let got = page.streams.unwrap_or_default();
            let done = got.is_empty();
            names.extend(got);
            if done || names.len() >= page.total {
                break;
            }
        }
        let mut names: Vec<String> = names
            .into_iter()
            .map(|n| {
                n.strip_prefix(QUEUE_STREAM_PREFIX)
                    .map(str::to_string)
                    .unwrap_or(n)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The `WORKERS` consumer of a queue's stream, `None` when it is missing.
    async fn workers_info(
        &self,
        stream: &str,
        queue: &str,
    ) -> Result<Option<jetstream::consumer::Info>> {
        let s = self.stream(stream).await?;
        match s.consumer_info(WORKERS_CONSUMER).await {
            Ok(i) => Ok(Some(i)),
            Err(e) => {
                let e = nats(format!("loading consumer {stream}.{WORKERS_CONSUMER}"), e);
                if api::is(&e, ErrorCode::CONSUMER_NOT_FOUND) {
                    Ok(None)
                } else if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
                    Err(Error::QueueNotFound(queue.to_string()))
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Settings and state of a queue; a missing `WORKERS` consumer is reported, not an error.
    pub(crate) async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        let stream_name = format!("{QUEUE_STREAM_PREFIX}{name}");
        let stream = self
            .stream_details(&stream_name)
            .await?
            .ok_or_else(|| Error::QueueNotFound(name.to_string()))?;
        let consumer = self.workers_info(&stream_name, name).await?;
        let mut queue = Queue::new(name);
        queue.max_age = stream.max_age;
        queue.max_entries = stream.max_messages;
        queue.discard_old = stream.discard_old;
        if let Some(c) = &consumer {
            queue.max_run_time = c.config.ack_wait;
            queue.max_concurrent = c.config.max_ack_pending;
            queue.max_tries = c.config.max_deliver;
        }
        Ok(QueueInfo {
            queue,
            stream,
            ack_pending: consumer.as_ref().map_or(0, |c| c.num_ack_pending as u64),
            pending: consumer.as_ref().map_or(0, |c| c.num_pending),
            waiting: consumer.as_ref().map_or(0, |c| c.num_waiting as u64),
            redelivered: consumer.as_ref().map_or(0, |c| c.num_redelivered as u64),
            has_consumer: consumer.is_some(),
        })
    }

    /// Removes every item from a queue (task records untouched).
    pub(crate) async fn purge_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let s = self.stream(&format!("{QUEUE_STREAM_PREFIX}{name}")).await?;
        match s.purge().await {
            Ok(_) => Ok(()),
            Err(e) => Err(queue_error(name, nats(format!("purging queue {name}"), e))),
        }
    }

    /// Removes every item from a queue and saves the tasks they referenced
    /// that were still waiting (`new`, `retry`, `blocked`) as `terminated`
    /// with `last_err` naming the purge; returns how many were marked.
    /// Items published after the purge started are kept.
    pub(crate) async fn purge_queue_terminating(&self, name: &str) -> Result<u64> {
        validate_queue_name(name)?;
        let stream_name = format!("{QUEUE_STREAM_PREFIX}{name}");
        let mut stream = self
            .js
            .get_stream(&stream_name)
            .await
            .map_err(|e| queue_error(name, nats(format!("loading queue {name}"), e)))?;
        let state = stream
            .info()
            .await
            .map_err(|e| nats(format!("loading queue {name}"), e))?
            .state
            .clone();
        let (first, last) = (state.first_sequence, state.last_sequence);
        let mut ids = Vec::new();
        if last >= first && last > 0 {
            for seq in first..=last {
                match stream.get_raw_message(seq).await {
                    Ok(m) => {
                        if let Ok(item) = WorkItem::decode(&m.payload) {
                            ids.push(item.job);
                        }
                    }
                    Err(e) => {
                        let e = nats(format!("reading queue {name}"), e);
                        if !api::is(&e, ErrorCode::NO_MESSAGE_FOUND) {
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        stream
            .purge()
            .sequence(last + 1)
            .await
            .map_err(|e| queue_error(name, nats(format!("purging queue {name}"), e)))?;
        let mut marked = 0;
        for id in ids {
            let Ok(mut task) = self.load_task(&id).await else {
                continue;
            };
            if !matches!(
                task.state,
                TaskState::New | TaskState::Retry | TaskState::Blocked
            ) || task.queue != name
            {
                continue;
            }
            task.state = TaskState::Terminated;
            task.last_err = format!("work item removed: queue {name} was purged");
            match self.save_task(&mut task).await {
                Ok(()) => marked += 1,
                Err(Error::ConcurrentUpdate(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(marked)
    }

    /// Deletes a queue's stream.
    pub(crate) async fn delete_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        match self
            .js
            .delete_stream(format!("{QUEUE_STREAM_PREFIX}{name}"))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(queue_error(name, nats(format!("deleting queue {name}"), e))),
        }
    }

    /// Updates a stream's configuration with `change` (STREAM.INFO then
    /// STREAM.UPDATE of the configuration exactly as the server has it).
    pub(crate) async fn update_stream(
        &self,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<()> {
        let mut config = match api::config(&self.js, &format!("STREAM.INFO.{name}"), || {
            format!("loading stream {name}")
        })
        .await
        {
            Ok(c) => c,
            Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => {
                return Err(Error::StorageNotReady(format!("stream {name} not found")))
            }
            Err(e) => return Err(e.into()),
        };
        change(&mut config);
        api::request::<Value>(&self.js, &format!("STREAM.UPDATE.{name}"), &config, || {
            format!("updating stream {name}")
        })
        .await?;
        Ok(())
    }

    /// Updates the `WORKERS` consumer of a queue with `change`.
    pub(crate) async fn update_workers(
        &self,
        queue: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<()> {
        validate_queue_name(queue)?;
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let mut config = match api::config(
            &self.js,
            &format!("CONSUMER.INFO.{stream}.{WORKERS_CONSUMER}"),
            || format!("loading consumer {stream}.{WORKERS_CONSUMER}"),
        )
        .await
        {
            Ok(c) => c,
            Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => {
                return Err(Error::QueueNotFound(queue.into()))
            }
            Err(e) if api::is(&e, ErrorCode::CONSUMER_NOT_FOUND) => {
                return Err(Error::QueueConsumerNotFound(queue.into()))
            }
            Err(e) => return Err(e.into()),
        };
        change(&mut config);
        let body = json!({"stream_name": stream, "config": config, "action": ""});
        api::request::<Value>(
            &self.js,
            &format!("CONSUMER.CREATE.{stream}.{WORKERS_CONSUMER}"),
            &body,
            || format!("updating consumer {stream}.{WORKERS_CONSUMER}"),
        )
        .await?;
        Ok(())
    }

    /// Streams the tasks stored when the listing starts, each at most once,
    /// through an ordered consumer.
    ///
    /// The stream's last sequence `S` is read first. Since the stream keeps
    /// one record per task (`max_msgs_per_subject` 1) and sequences are
    /// never reused, each task has at most one record at a sequence ≤ `S`,
    /// ever, and a task created after the start has none: the first pass
    /// yields every record up to `S`. A task saved while the listing runs,
    /// before the listing reached it, has lost that record and moved past
    /// `S`; further passes (at most 4) read on to the end the stream had
    /// when the previous pass finished and yield such tasks, skipping ids
    /// already yielded (the listing remembers yielded ids) and tasks
    /// created after the listing started (by their `created` time). The
    /// listing ends once as many tasks were yielded as were stored at the
    /// start, at the stream's end, or after the last pass.
    pub(crate) async fn list_tasks(
        &self,
    ) -> Result<impl futures::Stream<Item = Result<Task>> + Send + 'static> {
        let started = OffsetDateTime::now_utc();
        let info = match self.js.get_stream(TASKS_STREAM).await {
            Ok(mut s) => s
                .info()
                .await
                .map_err(|e| nats("listing tasks", e))?
                .state
                .clone(),
            Err(e) => {
                let e = nats("listing tasks", e);
                return Err(if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
                    Error::StorageNotReady("task store not initialized".into())
                } else {
                    e.into()
                });
            }
        };
        let messages = if info.messages == 0 {
            None
        } else {
            let consumer = self
                .stream(TASKS_STREAM)
                .await?
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| nats("listing tasks", e))?;
            // every record was removed between the two requests
            if consumer.cached_info().num_pending == 0 {
                None
            } else {
                Some(
                    consumer
                        .messages()
                        .await
                        .map_err(|e| nats("listing tasks", e))?,
                )
            }
        };
        let state = Listing {
            messages,
            snapshot: info.last_sequence,
            end: None,
            yielded: std::collections::HashSet::new(),
            started,
            total: info.messages,
            passes: 4,
        };
        Ok(futures::stream::unfold(state, |mut st| async move {
            loop {
                let messages = st.messages.as_mut()?;
                let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
                let msg = match next {
                    Err(_) => {
                        st.messages = None;
                        let e = NatsError::new(
                            NatsErrorKind::TimedOut,
                            "listing tasks: no message within 10s",
                        );
                        return Some((Err(e.into()), st));
                    }
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => {
                        st.messages = None;
                        return Some((Err(nats("listing tasks", e).into()), st));
                    }
                    Ok(Some(Ok(msg))) => msg,
                };
                let (seq, pending) = msg
                    .info()
                    .map(|i| (i.stream_sequence, i.pending))
                    .unwrap_or((st.snapshot, 0));
                let second_pass = seq > st.snapshot;
                let end = st.end.unwrap_or(st.snapshot);
                if seq > end {
                    // a pass is over: read on to the stream's end as it is
                    // now, a bounded number of times
                    if st.passes == 0 {
                        return None;
                    }
                    st.passes -= 1;
                    st.end = Some(seq + pending);
                }
                if pending == 0 {
                    st.messages = None;
                }
                let id = msg
                    .subject
                    .strip_prefix(TASK_SUBJECT_PREFIX)
                    .unwrap_or(&msg.subject)
                    .to_string();
                if st.yielded.contains(&id) {
                    continue;
                }
                let item = serde_json::from_slice::<Task>(&msg.payload)
                    .map(|mut t| {
                        t.seq = seq;
                        t
                    })
                    .map_err(|e| Error::InvalidTaskRecord {
                        id: id.clone(),
                        reason: e.to_string(),
                    });
                if second_pass && !matches!(&item, Ok(t) if t.created <= st.started) {
                    continue;
                }
                st.yielded.insert(id);
                if st.yielded.len() as u64 >= st.total {
                    // every task present at the start has been listed
                    st.messages = None;
                }
                return Some((item, st));
            }
        }))
    }

    /// One page of stored tasks in store order, starting at stream sequence
    /// `from` (1 for the first page): up to `limit` tasks `keep` accepts,
    /// reading at most `scan` records. Returns them with the sequence the
    /// next page starts at, or `None` at the store's end. Records that do
    /// not decode are skipped with a warning (a page is for people).
    pub(crate) async fn page_tasks(
        &self,
        from: u64,
        limit: usize,
        scan: usize,
        keep: impl Fn(&Task) -> bool,
    ) -> Result<(Vec<Task>, Option<u64>)> {
        let consumer = self
            .stream(TASKS_STREAM)
            .await?
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| nats("paging tasks", e))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok((vec![], None));
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| nats("paging tasks", e))?;
        let (mut tasks, mut scanned) = (Vec::new(), 0usize);
        loop {
            let msg = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
                Err(_) => {
                    return Err(NatsError::new(
                        NatsErrorKind::TimedOut,
                        "paging tasks: no message within 10s",
                    )
                    .into())
                }
                Ok(None) => return Ok((tasks, None)),
                Ok(Some(Err(e))) => return Err(nats("paging tasks", e).into()),
                Ok(Some(Ok(msg))) => msg,
            };
            let (seq, pending) =
                msg.info()
                    .map(|i| (i.stream_sequence, i.pending))
                    .map_err(|e| {
                        NatsError::new(NatsErrorKind::InvalidReply, format!("paging tasks: {e}"))
                    })?;
            scanned += 1;
            match serde_json::from_slice::<Task>(&msg.payload) {
                Ok(mut t) => {
                    t.seq = seq;
                    if keep(&t) {
                        tasks.push(t);
                    }
                }
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "paging tasks: a record does not decode")
                }
            }
            if pending == 0 {
                return Ok((tasks, None));
            }
            if tasks.len() >= limit || scanned >= scan {
                return Ok((tasks, Some(seq + 1)));
            }
        }
    }
}

/// The state of a [`Storage::list_tasks`] listing.
struct Listing {
    messages: Option<jetstream::consumer::pull::Ordered>,
    /// The stream's last sequence when the listing started.
    snapshot: u64,
    /// Where the second pass ends, once it has begun.
    end: Option<u64>,
    /// Ids yielded so far.
    yielded: std::collections::HashSet<String>,
    /// When the listing started: later tasks are not listed.
    started: OffsetDateTime,
    /// Tasks stored when the listing started.
    total: u64,
    /// Further passes allowed after the first.
    passes: u32,
}

/// Maps "no such stream" to [`Error::QueueNotFound`].
fn queue_error(name: &str, e: NatsError) -> Error {
    if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
        Error::QueueNotFound(name.to_string())
    } else {
        e.into()
    }
}

/// A `traceparent` for a producer running inside a tracing span: a new
/// trace id with the span's id as parent.
fn current_traceparent() -> Option<String> {
    let span = tracing::Span::current().id()?;
    let trace: u128 = rand::random::<u128>() | 1;
    Some(format!("00-{trace:032x}-{:016x}-01", span.into_u64()))
}

fn publish_error_text(e: &PublishError) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(src) => format!("{}: {src}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// How long an enqueue waits for a stream without a leader (see
/// [`Storage::enqueue`]): a cluster elects a new stream leader within a few
/// seconds of losing one.
pub(crate) const LEADERLESS_PATIENCE: Duration = Duration::from_secs(15);

/// The pauses of one enqueue waiting out leaderless streams.
struct Leaderless {
    until: std::time::Instant,
    pause: Duration,
}

impl Leaderless {
    fn new() -> Leaderless {
        Leaderless {
            until: std::time::Instant::now() + LEADERLESS_PATIENCE,
            pause: Duration::from_millis(100),
        }
    }

    /// After "no responders" from `stream`: pauses and returns true when
    /// it is worth sending again (time is left and the stream may exist).
    async fn again(&mut self, storage: &Storage, stream: &str) -> bool {
        if std::time::Instant::now() >= self.until || !storage.may_exist(stream).await {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        true
    }
}

/// Whether a `major.minor.patch` server version is at least `major.minor`.
fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
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
