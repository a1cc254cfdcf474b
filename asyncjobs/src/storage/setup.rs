//! Creating what the runtime needs on the server: the task store, the
//! exhausted-advisories stream and the held-items stream with their
//! consumers, the configuration and elections buckets, and queues with
//! their `WORKERS` consumer (docs/storage.md §3, §4). An existing stream or
//! consumer is used unchanged.

use super::{api, exhausted_subject, ns, Storage, RETENTION_METADATA};
use super::{
    CONFIG_BUCKET, ELECTIONS_BUCKET, EXHAUSTED_STREAM, HELD_STREAM, RELEASE_CONSUMER, TASKS_STREAM,
};
use crate::error::{nats, Error, NatsError, NatsErrorKind, Result};
use crate::queue::flow::{
    KEY_CONCURRENCY_METADATA, KEY_RATE_LIMIT_METADATA, PRIORITY_AGING_METADATA, RATE_LIMIT_METADATA,
};
use crate::queue::{
    validate_queue_name, Queue, HELD_ITEM_PREFIX, RELEASED_ITEM_PREFIX, WORKERS_CONSUMER,
};
use async_nats::jetstream::{self, ErrorCode};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Storage {
    pub(super) async fn create_stream(&self, name: &str, config: Value) -> Result<()> {
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
            self.learn_expiry(&existing);
            return Ok(());
        }
        let mut config = json!({
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
        if self.capabilities().ttl {
            // finished records expire by their retention (docs/storage.md
            // §3.8; Go creates it without, a deliberate difference)
            config["allow_msg_ttl"] = true.into();
        }
        self.create_stream(TASKS_STREAM, config).await?;
        // created here, or concurrently by another process with its own settings
        if let Some(created) = self.stream_details(TASKS_STREAM).await? {
            self.direct_loads
                .store(created.allow_direct, Ordering::Relaxed);
            self.learn_expiry(&created);
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

    /// Creates [`HELD_STREAM`] unless it exists (with this client's
    /// storage settings; an existing one is used unchanged). Checked at
    /// most every few seconds.
    pub(crate) async fn prepare_held_stream(&self) -> Result<()> {
        if self.delays().held_fresh() {
            return Ok(());
        }
        if self.stream_details(HELD_STREAM).await?.is_none() {
            let config = json!({
                "name": HELD_STREAM,
                "description": "Choria Async Jobs work items held until due",
                "subjects": [format!("{HELD_ITEM_PREFIX}>"), format!("{RELEASED_ITEM_PREFIX}>")],
                "retention": "workqueue",
                "max_consumers": -1,
                // one schedule per task: a newer one replaces an older
                "max_msgs_per_subject": 1,
                "max_msgs": -1,
                "max_bytes": -1,
                "max_age": 0,
                "max_msg_size": -1,
                "storage": self.storage_type(),
                // required by message schedules; nothing is discarded
                // without size limits
                "discard": "old",
                "num_replicas": self.settings.replicas.max(1),
                "allow_msg_schedules": true,
            });
            self.create_stream(HELD_STREAM, config).await?;
        }
        self.delays().held = Some(std::time::Instant::now());
        Ok(())
    }

    /// Makes [`HELD_STREAM`] ready: the stream, and the durable consumer
    /// [`RELEASE_CONSUMER`] every worker reads released items from (for
    /// every queue). `false`, changing nothing, when the server is older
    /// than 2.12 (no message schedules).
    pub(crate) async fn prepare_held(&self) -> Result<bool> {
        if !self.supports_schedules() {
            return Ok(false);
        }
        self.prepare_held_stream().await?;
        self.held_consumer().await?;
        Ok(true)
    }

    /// The durable consumer [`RELEASE_CONSUMER`] on [`HELD_STREAM`] (made
    /// when missing): the items released for every queue, to move into it.
    pub(crate) async fn held_consumer(&self) -> Result<jetstream::consumer::PullConsumer> {
        self.stream(HELD_STREAM)
            .await?
            .get_or_create_consumer(
                RELEASE_CONSUMER,
                jetstream::consumer::pull::Config {
                    durable_name: Some(RELEASE_CONSUMER.to_string()),
                    filter_subject: format!("{RELEASED_ITEM_PREFIX}>"),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    // items a full queue refused wait for their next offer
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                nats(
                    format!("creating consumer {HELD_STREAM}.{RELEASE_CONSUMER}"),
                    e,
                )
                .into()
            })
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
    pub(super) fn kv_config(&self, bucket: &str, description: &str, ttl: Duration) -> Value {
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
            let mut config = json!({
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
            // the queue's own retention and flow settings (docs/storage.md
            // §3.3, §3.8; docs/processing.md §2.21, §2.22)
            let mut metadata = serde_json::Map::new();
            if let Some(r) = &queue.retention {
                metadata.insert(RETENTION_METADATA.into(), r.to_string().into());
            }
            if let Some(l) = &queue.rate_limit {
                metadata.insert(RATE_LIMIT_METADATA.into(), l.to_string().into());
            }
            if let Some(a) = queue.priority_aging {
                metadata.insert(
                    PRIORITY_AGING_METADATA.into(),
                    crate::wire::format_duration(a).into(),
                );
            }
            if let Some(n) = queue.key_concurrency {
                metadata.insert(KEY_CONCURRENCY_METADATA.into(), n.to_string().into());
            }
            if let Some(l) = &queue.key_rate_limit {
                metadata.insert(KEY_RATE_LIMIT_METADATA.into(), l.to_string().into());
            }
            if !metadata.is_empty() {
                config["metadata"] = metadata.into();
            }
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
}
