//! JetStream storage: the task stream, work queues, KV buckets and the
//! exact JetStream API calls of reference §1 and §4.

use crate::error::{Error, Result};
use crate::events::TaskStateChangeEvent;
use crate::queue::{
    item_subject, validate_queue_name, Queue, QueueInfo, QUEUE_STREAM_PREFIX, WORKERS_CONSUMER,
};
use crate::task::{Task, TaskState};
use async_nats::header::HeaderMap;
use async_nats::jetstream;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// The stream holding one record per task.
pub const TASKS_STREAM: &str = "CHORIA_AJ_TASKS";
/// Subject prefix of task records; the id follows.
pub const TASK_SUBJECT_PREFIX: &str = "CHORIA_AJ.T.";
/// KV bucket for scheduled tasks and other configuration.
pub const CONFIG_BUCKET: &str = "CHORIA_AJ_CONFIGURATION";
/// KV bucket for leader elections.
pub const ELECTIONS_BUCKET: &str = "CHORIA_AJ_ELECTIONS";

const JS_ERR_STREAM_NOT_FOUND: u64 = 10059;
const JS_ERR_CONSUMER_NOT_FOUND: u64 = 10014;
const JS_ERR_NO_MESSAGE_FOUND: u64 = 10037;

/// Settings used when storage is created.
#[derive(Debug, Clone)]
pub(crate) struct StorageSettings {
    pub memory: bool,
    pub replicas: usize,
    pub task_retention: Duration,
    pub discard: Vec<TaskState>,
    pub keys: crate::signing::Keys,
}

/// An error reply from the JetStream API.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ApiError {
    #[serde(default)]
    pub err_code: u64,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug)]
pub(crate) enum ApiFailure {
    Api(ApiError),
    Transport(String),
}

impl ApiFailure {
    fn code(&self) -> Option<u64> {
        match self {
            ApiFailure::Api(e) => Some(e.err_code),
            ApiFailure::Transport(_) => None,
        }
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Api(e) => write!(f, "{} (JetStream error {})", e.description, e.err_code),
            ApiFailure::Transport(e) => f.write_str(e),
        }
    }
}

#[derive(Deserialize)]
struct StoredMessage {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
struct MsgGetResponse {
    message: StoredMessage,
}

/// Stream and consumer state as reported by the server (subset).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StreamInfoRaw {
    pub config: Value,
    pub state: StreamStateRaw,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct StreamStateRaw {
    #[serde(default)]
    pub messages: u64,
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConsumerInfoRaw {
    pub config: Value,
    #[serde(default)]
    pub num_ack_pending: u64,
    #[serde(default)]
    pub num_pending: u64,
    #[serde(default)]
    pub num_waiting: u64,
}

/// Task store and queue access over one NATS connection.
#[derive(Clone)]
pub(crate) struct Storage {
    pub nc: async_nats::Client,
    pub js: jetstream::Context,
    pub settings: StorageSettings,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(i64::MAX as u128) as u64
}

impl Storage {
    pub fn new(nc: async_nats::Client, settings: StorageSettings) -> Storage {
        let js = jetstream::new(nc.clone());
        Storage { nc, js, settings }
    }

    fn storage_type(&self) -> &'static str {
        if self.settings.memory {
            "memory"
        } else {
            "file"
        }
    }

    /// One JetStream API request (`$JS.API.<api>`), decoding the reply or its error.
    pub async fn api<T: DeserializeOwned>(&self, api: &str, body: &Value) -> Result<T, ApiFailure> {
        let subject = format!("$JS.API.{api}");
        let payload = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(serde_json::to_vec(body).expect("JSON value encodes"))
        };
        let msg = self
            .nc
            .request(subject, payload)
            .await
            .map_err(|e| ApiFailure::Transport(format!("JetStream API {api}: {e}")))?;
        #[derive(Deserialize)]
        struct ErrProbe {
            error: Option<ApiError>,
        }
        if let Ok(ErrProbe { error: Some(e) }) = serde_json::from_slice::<ErrProbe>(&msg.payload) {
            return Err(ApiFailure::Api(e));
        }
        serde_json::from_slice(&msg.payload)
            .map_err(|e| ApiFailure::Transport(format!("JetStream API {api}: invalid reply: {e}")))
    }

    pub fn max_payload(&self) -> usize {
        self.nc.server_info().max_payload
    }

    pub fn check_size(&self, what: &'static str, size: usize) -> Result<()> {
        let max = self.max_payload();
        // leave room for headers and protocol overhead
        if max > 0 && size + 256 > max {
            return Err(Error::PayloadTooLarge { what, size, max });
        }
        Ok(())
    }

    // ----- preparation -------------------------------------------------------------------

    async fn stream_exists(&self, name: &str) -> Result<bool> {
        match self
            .api::<Value>(&format!("STREAM.INFO.{name}"), &Value::Null)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(JS_ERR_STREAM_NOT_FOUND) => Ok(false),
            Err(e) => Err(Error::nats(e)),
        }
    }

    async fn create_stream(&self, name: &str, config: Value) -> Result<()> {
        match self
            .api::<Value>(&format!("STREAM.CREATE.{name}"), &config)
            .await
        {
            Ok(_) => Ok(()),
            // created concurrently by another process: fine, it is loaded unchanged
            Err(ApiFailure::Api(e)) if e.err_code == 10058 => Ok(()),
            Err(e) => Err(Error::Nats(format!("creating stream {name}: {e}"))),
        }
    }

    /// Creates `CHORIA_AJ_TASKS` unless it exists (an existing stream is used unchanged).
    pub async fn prepare_tasks(&self) -> Result<()> {
        if self.stream_exists(TASKS_STREAM).await? {
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
            "allow_direct": false,
            "mirror_direct": false,
            "consumer_limits": {},
        });
        self.create_stream(TASKS_STREAM, config).await
    }

    /// Creates the configuration and elections KV buckets unless they exist.
    pub async fn prepare_buckets(&self) -> Result<()> {
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
            if self.stream_exists(&name).await? {
                continue;
            }
            let dupe = if !ttl.is_zero() && ttl < Duration::from_secs(120) {
                ttl
            } else {
                Duration::from_secs(120)
            };
            let config = json!({
                "name": name,
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
            });
            self.create_stream(&name, config).await?;
        }
        Ok(())
    }

    /// Creates or loads a queue (or only loads it when `no_create`), returning
    /// the queue as the server has it.
    pub async fn prepare_queue(&self, queue: &Queue) -> Result<Queue> {
        validate_queue_name(&queue.name)?;
        let stream = queue.stream_name();
        if !self.stream_exists(&stream).await? {
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
        match self
            .api::<Value>(
                &format!("CONSUMER.INFO.{stream}.{WORKERS_CONSUMER}"),
                &Value::Null,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some(JS_ERR_CONSUMER_NOT_FOUND) => {
                if queue.no_create {
                    return Err(Error::QueueConsumerNotFound(queue.name.clone()));
                }
                let run_time = if queue.max_run_time.is_zero() {
                    crate::queue::DEFAULT_MAX_RUN_TIME
                } else {
                    queue.max_run_time
                };
                let config = json!({
                    "stream_name": stream,
                    "config": {
                        "ack_policy": "explicit",
                        "ack_wait": ns(run_time),
                        "deliver_policy": "all",
                        "durable_name": WORKERS_CONSUMER,
                        "name": WORKERS_CONSUMER,
                        "max_ack_pending": if queue.max_concurrent > 0 { queue.max_concurrent } else { crate::queue::DEFAULT_MAX_CONCURRENT },
                        "max_deliver": if queue.max_tries > 0 { queue.max_tries } else { -1 },
                        "replay_policy": "instant",
                        "num_replicas": 0,
                        "pause_until": "0001-01-01T00:00:00Z",
                    },
                    "action": "",
                });
                self.api::<Value>(
                    &format!("CONSUMER.CREATE.{stream}.{WORKERS_CONSUMER}"),
                    &config,
                )
                .await
                .map_err(|e| {
                    Error::Nats(format!(
                        "creating consumer {stream}.{WORKERS_CONSUMER}: {e}"
                    ))
                })?;
            }
            Err(e) => return Err(Error::nats(e)),
        }
        Ok(self.queue_info(&queue.name).await?.queue)
    }

    // ----- tasks -------------------------------------------------------------------------

    /// Saves the task with optimistic concurrency and publishes its state event.
    pub async fn save_task(&self, task: &mut Task) -> Result<()> {
        let ack = self.start_save(task).await?;
        self.finish_save(task, ack).await
    }

    /// Sends the task record; the returned future resolves to its publish ack.
    pub async fn start_save(&self, task: &Task) -> Result<jetstream::context::PublishAckFuture> {
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
            .map_err(|e| Error::TaskUpdateFailed(publish_error_text(&e)))
    }

    /// Awaits a record's publish ack, remembers its sequence and publishes the event.
    pub async fn finish_save(
        &self,
        task: &mut Task,
        ack: jetstream::context::PublishAckFuture,
    ) -> Result<()> {
        use jetstream::context::PublishErrorKind;
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
                        "task store {TASKS_STREAM} not found (no responders for {TASK_SUBJECT_PREFIX}{})",
                        task.id
                    )),
                    _ => Error::TaskUpdateFailed(publish_error_text(&e)),
                })
            }
        }
    }

    /// Publishes the task's state change event (best effort, like Go).
    pub async fn publish_event(&self, task: &Task) {
        let event = TaskStateChangeEvent::for_task(task);
        match serde_json::to_vec(&event) {
            Ok(body) => {
                if let Err(e) = self.nc.publish(event.subject(), body.into()).await {
                    tracing::warn!(task = %task.id, error = %e, "publishing task state event failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "encoding task state event failed"),
        }
    }

    /// Saves the task, or deletes it when its state is in the discard list.
    pub async fn save_or_discard(&self, task: &mut Task) -> Result<()> {
        if self.settings.discard.contains(&task.state) {
            self.publish_event(task).await;
            return match self.delete_task(&task.id).await {
                Ok(()) | Err(Error::TaskNotFound(_)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        self.save_task(task).await
    }

    /// Loads a task and verifies its signature when keys are configured.
    pub async fn load_verified(&self, id: &str) -> Result<Task> {
        let task = self.load_task(id).await?;
        self.settings.keys.verify(&task)?;
        Ok(task)
    }

    /// Loads the latest version of a task.
    pub async fn load_task(&self, id: &str) -> Result<Task> {
        let (seq, data) = self.load_task_raw(id).await?;
        let mut task =
            serde_json::from_slice::<Task>(&data).map_err(|e| Error::InvalidTaskRecord {
                id: id.to_string(),
                reason: e.to_string(),
            })?;
        task.seq = seq;
        Ok(task)
    }

    async fn load_task_raw(&self, id: &str) -> Result<(u64, Vec<u8>)> {
        if !crate::task::is_valid_name(id) {
            return Err(Error::TaskIdInvalid(id.to_string()));
        }
        let body = json!({ "last_by_subj": format!("{TASK_SUBJECT_PREFIX}{id}") });
        match self
            .api::<MsgGetResponse>(&format!("STREAM.MSG.GET.{TASKS_STREAM}"), &body)
            .await
        {
            Ok(r) => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(r.message.data.unwrap_or_default())
                    .map_err(|e| Error::InvalidTaskRecord {
                        id: id.to_string(),
                        reason: format!("invalid message data: {e}"),
                    })?;
                Ok((r.message.seq, data))
            }
            Err(e) if e.code() == Some(JS_ERR_NO_MESSAGE_FOUND) => {
                Err(Error::TaskNotFound(id.to_string()))
            }
            Err(e) if e.code() == Some(JS_ERR_STREAM_NOT_FOUND) => {
                Err(Error::StorageNotReady("task store not initialized".into()))
            }
            Err(e) => Err(Error::nats(e)),
        }
    }

    /// Deletes a task record (work items are untouched).
    pub async fn delete_task(&self, id: &str) -> Result<()> {
        let (seq, _) = self.load_task_raw(id).await?;
        match self
            .api::<Value>(
                &format!("STREAM.MSG.DELETE.{TASKS_STREAM}"),
                &json!({ "seq": seq }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(JS_ERR_NO_MESSAGE_FOUND) => {
                Err(Error::TaskNotFound(id.to_string()))
            }
            Err(e) => Err(Error::nats(e)),
        }
    }

    /// Removes every task record.
    pub async fn purge_tasks(&self) -> Result<()> {
        self.api::<Value>(&format!("STREAM.PURGE.{TASKS_STREAM}"), &json!({}))
            .await
            .map(|_| ())
            .map_err(Error::nats)
    }

    // ----- enqueue -----------------------------------------------------------------------

    /// Saves the task into `queue` and publishes its work item (reference §4.2).
    pub async fn enqueue(&self, queue: &str, task: &mut Task) -> Result<()> {
        let ack = self.start_enqueue(queue, task).await?;
        self.finish_save(task, ack).await?;
        let item = self.start_item(queue, task).await;
        self.finish_item(queue, task, item).await
    }

    /// Validates the task and sends its record; see [`Storage::enqueue`].
    pub async fn start_enqueue(
        &self,
        queue: &str,
        task: &mut Task,
    ) -> Result<jetstream::context::PublishAckFuture> {
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

    /// Sends the work item for a saved task.
    pub async fn start_item(
        &self,
        queue: &str,
        task: &Task,
    ) -> std::result::Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>
    {
        let body = work_item(&task.id);
        let mut publish = jetstream::message::PublishMessage::build().payload(body.into());
        if task.state != TaskState::Retry {
            publish = publish.message_id(&task.id);
        }
        let traceparent = task.traceparent.clone().or_else(current_traceparent);
        if let Some(tp) = traceparent {
            publish = publish.header(TRACEPARENT_HEADER, tp.as_str());
        }
        self.js
            .send_publish(item_subject(queue, &task.id), publish)
            .await
    }

    /// Interprets the work item's publish outcome; failures mark the task `queue_error`.
    pub async fn finish_item(
        &self,
        queue: &str,
        task: &mut Task,
        sent: std::result::Result<
            jetstream::context::PublishAckFuture,
            jetstream::context::PublishError,
        >,
    ) -> Result<()> {
        use jetstream::context::PublishErrorKind;
        let outcome = match sent {
            Ok(fut) => fut.await,
            Err(e) => Err(e),
        };
        let (last_err, err) = match outcome {
            Ok(ack) if ack.duplicate => (
                "duplicate work queue item".to_string(),
                Error::DuplicateItem,
            ),
            Ok(_) => {
                crate::metrics::enqueue(queue);
                return Ok(());
            }
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => (
                "queue not found: nats: no responders available for request".to_string(),
                Error::QueueNotFound(queue.to_string()),
            ),
            Err(e) => {
                let reason = publish_error_text(&e);
                (
                    reason.clone(),
                    Error::EnqueueRejected {
                        queue: queue.to_string(),
                        reason,
                    },
                )
            }
        };
        crate::metrics::enqueue_error(queue);
        task.state = TaskState::QueueError;
        task.last_err = last_err;
        self.save_task(task).await?;
        Err(err)
    }

    /// Re-enqueues a task by id: state `retry`, result cleared (reference §4.4).
    pub async fn retry_task(&self, queue: &str, id: &str) -> Result<Task> {
        let mut task = self.load_task(id).await?;
        task.state = TaskState::Retry;
        task.result = None;
        if task.queue != queue {
            // the signature covers the queue: re-sign when we can (Go keeps
            // the now invalid signature, §16.14)
            task.queue = queue.to_string();
            self.settings.keys.resign(&mut task)?;
        }
        self.enqueue(queue, &mut task).await?;
        Ok(task)
    }

    // ----- queues ------------------------------------------------------------------------

    /// Names of all queues, sorted.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            #[derive(Deserialize)]
            struct Page {
                #[serde(default)]
                total: usize,
                #[serde(default)]
                streams: Option<Vec<String>>,
            }
            let page: Page = self
                .api(
                    "STREAM.NAMES",
                    &json!({"subject": "CHORIA_AJ.Q.>", "offset": offset}),
                )
                .await
                .map_err(Error::nats)?;
            let got = page.streams.unwrap_or_default();
            offset += got.len();
            names.extend(got);
            if offset >= page.total || names.is_empty() {
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

    /// Settings and state of a queue; a missing `WORKERS` consumer is reported, not an error.
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        let stream = format!("{QUEUE_STREAM_PREFIX}{name}");
        let info: StreamInfoRaw = match self
            .api(&format!("STREAM.INFO.{stream}"), &Value::Null)
            .await
        {
            Ok(i) => i,
            Err(e) if e.code() == Some(JS_ERR_STREAM_NOT_FOUND) => {
                return Err(Error::QueueNotFound(name.to_string()))
            }
            Err(e) => return Err(Error::nats(e)),
        };
        let consumer: Option<ConsumerInfoRaw> = match self
            .api(
                &format!("CONSUMER.INFO.{stream}.{WORKERS_CONSUMER}"),
                &Value::Null,
            )
            .await
        {
            Ok(c) => Some(c),
            Err(e) if e.code() == Some(JS_ERR_CONSUMER_NOT_FOUND) => None,
            Err(e) => return Err(Error::nats(e)),
        };
        let sc = &info.config;
        let i64_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        let mut queue = Queue::new(name);
        queue.max_age = Duration::from_nanos(i64_of(sc, "max_age").max(0) as u64);
        queue.max_entries = i64_of(sc, "max_msgs");
        queue.discard_old = sc.get("discard").and_then(Value::as_str) == Some("old");
        if let Some(c) = &consumer {
            queue.max_run_time = Duration::from_nanos(i64_of(&c.config, "ack_wait").max(0) as u64);
            queue.max_concurrent = i64_of(&c.config, "max_ack_pending");
            queue.max_tries = i64_of(&c.config, "max_deliver");
        }
        Ok(QueueInfo {
            queue,
            messages: info.state.messages,
            bytes: info.state.bytes,
            replicas: i64_of(sc, "num_replicas").max(1) as usize,
            memory: sc.get("storage").and_then(Value::as_str) == Some("memory"),
            ack_pending: consumer.as_ref().map(|c| c.num_ack_pending).unwrap_or(0),
            pending: consumer.as_ref().map(|c| c.num_pending).unwrap_or(0),
            waiting: consumer.as_ref().map(|c| c.num_waiting).unwrap_or(0),
            has_consumer: consumer.is_some(),
        })
    }

    /// Removes every item from a queue (task records untouched).
    pub async fn purge_queue(&self, name: &str) -> Result<()> {
        match self
            .api::<Value>(
                &format!("STREAM.PURGE.{QUEUE_STREAM_PREFIX}{name}"),
                &json!({}),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(JS_ERR_STREAM_NOT_FOUND) => {
                Err(Error::QueueNotFound(name.to_string()))
            }
            Err(e) => Err(Error::nats(e)),
        }
    }

    /// Deletes a queue's stream.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        match self
            .api::<Value>(
                &format!("STREAM.DELETE.{QUEUE_STREAM_PREFIX}{name}"),
                &Value::Null,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(JS_ERR_STREAM_NOT_FOUND) => {
                Err(Error::QueueNotFound(name.to_string()))
            }
            Err(e) => Err(Error::nats(e)),
        }
    }

    /// Message count and bytes of the task store.
    pub async fn tasks_info(&self) -> Result<(u64, u64)> {
        match self
            .api::<StreamInfoRaw>(&format!("STREAM.INFO.{TASKS_STREAM}"), &Value::Null)
            .await
        {
            Ok(i) => Ok((i.state.messages, i.state.bytes)),
            Err(e) if e.code() == Some(JS_ERR_STREAM_NOT_FOUND) => {
                Err(Error::StorageNotReady("task store not initialized".into()))
            }
            Err(e) => Err(Error::nats(e)),
        }
    }

    /// Updates a stream's configuration with `change` (STREAM.INFO then STREAM.UPDATE).
    pub async fn update_stream(&self, name: &str, change: impl FnOnce(&mut Value)) -> Result<()> {
        let info: StreamInfoRaw = match self.api(&format!("STREAM.INFO.{name}"), &Value::Null).await
        {
            Ok(i) => i,
            Err(e) if e.code() == Some(JS_ERR_STREAM_NOT_FOUND) => {
                return Err(Error::StorageNotReady(format!("stream {name} not found")))
            }
            Err(e) => return Err(Error::nats(e)),
        };
        let mut config = info.config;
        change(&mut config);
        self.api::<Value>(&format!("STREAM.UPDATE.{name}"), &config)
            .await
            .map(|_| ())
            .map_err(|e| Error::Nats(format!("updating stream {name}: {e}")))
    }

    /// Updates the `WORKERS` consumer of a queue with `change`.
    pub async fn update_workers(&self, queue: &str, change: impl FnOnce(&mut Value)) -> Result<()> {
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let info: ConsumerInfoRaw = match self
            .api(
                &format!("CONSUMER.INFO.{stream}.{WORKERS_CONSUMER}"),
                &Value::Null,
            )
            .await
        {
            Ok(i) => i,
            Err(e) if e.code() == Some(JS_ERR_STREAM_NOT_FOUND) => {
                return Err(Error::QueueNotFound(queue.into()))
            }
            Err(e) if e.code() == Some(JS_ERR_CONSUMER_NOT_FOUND) => {
                return Err(Error::QueueConsumerNotFound(queue.into()))
            }
            Err(e) => return Err(Error::nats(e)),
        };
        let mut config = info.config;
        change(&mut config);
        let body = json!({"stream_name": stream, "config": config, "action": ""});
        self.api::<Value>(
            &format!("CONSUMER.CREATE.{stream}.{WORKERS_CONSUMER}"),
            &body,
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            Error::Nats(format!(
                "updating consumer {stream}.{WORKERS_CONSUMER}: {e}"
            ))
        })
    }

    /// Streams every stored task through an ordered consumer, ending at the
    /// last message present when the listing started.
    pub async fn list_tasks(
        &self,
    ) -> Result<impl futures::Stream<Item = Result<Task>> + Send + 'static> {
        let (count, _) = self.tasks_info().await?;
        let stream = self
            .js
            .get_stream_no_info(TASKS_STREAM)
            .await
            .map_err(Error::nats)?;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(Error::nats)?;
        let messages = if count == 0 {
            None
        } else {
            Some(consumer.messages().await.map_err(Error::nats)?)
        };
        let state = (messages, false);
        Ok(futures::stream::unfold(
            state,
            |(messages, done)| async move {
                let mut messages = messages?;
                if done {
                    return None;
                }
                let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
                match next {
                    Err(_) => Some((
                        Err(Error::Nats("listing tasks: no message within 10s".into())),
                        (None, true),
                    )),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((Err(Error::nats(e)), (None, true))),
                    Ok(Some(Ok(msg))) => {
                        let last = msg.info().map(|i| i.pending == 0).unwrap_or(true);
                        let id = msg
                            .subject
                            .strip_prefix(TASK_SUBJECT_PREFIX)
                            .unwrap_or(&msg.subject)
                            .to_string();
                        let item = serde_json::from_slice::<Task>(&msg.payload)
                            .map(|mut t| {
                                t.seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                                t
                            })
                            .map_err(|e| Error::InvalidTaskRecord {
                                id,
                                reason: e.to_string(),
                            });
                        Some((item, (Some(messages), last)))
                    }
                }
            },
        ))
    }
}

/// Header carrying the W3C trace context on work items (Go workers ignore it).
pub(crate) const TRACEPARENT_HEADER: &str = "traceparent";

/// A `traceparent` for a producer running inside a tracing span: a new
/// trace id with the span's id as parent.
fn current_traceparent() -> Option<String> {
    let span = tracing::Span::current().id()?;
    let trace: u128 = rand::random::<u128>() | 1;
    Some(format!("00-{trace:032x}-{:016x}-01", span.into_u64()))
}

/// The work item body, exactly as Go writes it: `{"kind":0,"job":"<id>"}`.
pub(crate) fn work_item(id: &str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct ProcessItem<'a> {
        kind: u8,
        job: &'a str,
    }
    serde_json::to_vec(&ProcessItem { kind: 0, job: id }).expect("work item encodes")
}

fn publish_error_text(e: &jetstream::context::PublishError) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(src) => format!("{}: {src}", e.kind()),
        None => e.kind().to_string(),
    }
}
