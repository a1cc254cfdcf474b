//! Reading and changing queues: names, settings and state, and updates of
//! a stream's or the `WORKERS` consumer's configuration as the server has it.

use super::TASKS_STREAM;
use super::{api, Storage, RETENTION_METADATA};
use crate::capabilities::{version_at_least, PAUSE_NEEDS};
use crate::error::{nats, Error, NatsError, Result};
use crate::queue::flow::{
    parse_priority_aging, KEY_CONCURRENCY_METADATA, KEY_RATE_LIMIT_METADATA,
    PRIORITY_AGING_METADATA, RATE_LIMIT_METADATA,
};
use crate::queue::pause::{PauseUntil, QueuePause, PAUSED_SINCE_KEY};
use crate::queue::{
    validate_queue_name, Queue, QueueInfo, QueueUpdate, QUEUE_STREAM_PREFIX, WORKERS_CONSUMER,
};
use async_nats::jetstream::{self, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

impl Storage {
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
    pub(super) async fn workers_info(
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
        queue.retention = stream
            .metadata
            .get(RETENTION_METADATA)
            .and_then(|r| r.parse().ok());
        queue.rate_limit = stream
            .metadata
            .get(RATE_LIMIT_METADATA)
            .and_then(|r| r.parse().ok());
        queue.priority_aging = stream
            .metadata
            .get(PRIORITY_AGING_METADATA)
            .and_then(|a| parse_priority_aging(a).ok().flatten());
        queue.key_concurrency = stream
            .metadata
            .get(KEY_CONCURRENCY_METADATA)
            .and_then(|n| n.parse().ok());
        queue.key_rate_limit = stream
            .metadata
            .get(KEY_RATE_LIMIT_METADATA)
            .and_then(|r| r.parse().ok());
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
            paused: consumer.as_ref().and_then(pause_of),
        })
    }

    /// Pauses a queue's `WORKERS` consumer until `until` (docs/storage.md
    /// §4.4): a consumer update records when the pause began (kept when a
    /// pause is extended), then `CONSUMER.PAUSE` sets its end; returns the
    /// queue as it is then.
    ///
    /// # Errors
    /// [`Error::ServerTooOld`] before nats-server 2.11, [`Error::Config`]
    /// for an end that has passed, [`Error::QueueNotFound`],
    /// [`Error::QueueConsumerNotFound`], or the update's failure.
    pub(crate) async fn pause_queue(&self, name: &str, until: PauseUntil) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        self.needs_pause()?;
        let now = time::OffsetDateTime::now_utc();
        let end = until.stored();
        if end <= now {
            return Err(Error::Config(format!(
                "the pause of queue {name} would end at {}, which has passed",
                crate::wire::format_time(&end)
            )));
        }
        // when it began first: a pause without it would read "since
        // unknown"; a record of it without a pause is not read. A pause
        // that is extended keeps when it began.
        self.update_workers(name, |c| {
            let paused_now = c["pause_until"]
                .as_str()
                .and_then(|t| crate::wire::parse_time(t).ok())
                .is_some_and(|t| t > now);
            if paused_now && c["metadata"][PAUSED_SINCE_KEY].is_string() {
                return;
            }
            if !c["metadata"].is_object() {
                c["metadata"] = json!({});
            }
            c["metadata"][PAUSED_SINCE_KEY] = crate::wire::format_time(&now).into();
        })
        .await?;
        self.pause_workers(
            name,
            json!({ "pause_until": crate::wire::format_time(&end) }),
        )
        .await?;
        self.queue_info(name).await
    }

    /// Lifts a queue's pause (docs/storage.md §4.4); a queue that is not
    /// paused is left as it is. Returns the queue as it is then.
    ///
    /// # Errors
    /// As [`Storage::pause_queue`], without the end's.
    pub(crate) async fn resume_queue(&self, name: &str) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        self.needs_pause()?;
        let info = self.queue_info(name).await?;
        if !info.has_consumer {
            return Err(Error::QueueConsumerNotFound(name.to_string()));
        }
        self.pause_workers(name, json!({})).await?;
        self.update_workers(name, |c| {
            if let Some(m) = c["metadata"].as_object_mut() {
                m.remove(PAUSED_SINCE_KEY);
            }
        })
        .await?;
        self.queue_info(name).await
    }

    /// Sends `CONSUMER.PAUSE` for a queue's `WORKERS` consumer (`{}`
    /// lifts the pause).
    async fn pause_workers(&self, queue: &str, body: Value) -> Result<()> {
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        api::request::<Value>(
            &self.js,
            &format!("CONSUMER.PAUSE.{stream}.{WORKERS_CONSUMER}"),
            &body,
            || format!("pausing consumer {stream}.{WORKERS_CONSUMER}"),
        )
        .await
        .map_err(|e| {
            if api::is(&e, ErrorCode::CONSUMER_NOT_FOUND) {
                Error::QueueConsumerNotFound(queue.into())
            } else {
                queue_error(queue, e)
            }
        })?;
        Ok(())
    }

    /// [`Error::ServerTooOld`] when the server cannot pause consumers.
    fn needs_pause(&self) -> Result<()> {
        let version = &self.nc.server_info().version;
        if version_at_least(version, 2, 11) {
            Ok(())
        } else {
            Err(Error::ServerTooOld {
                feature: "pausing a queue",
                needs: PAUSE_NEEDS,
                version: version.clone(),
            })
        }
    }

    /// Applies a validated [`QueueUpdate`] to the queue's stream (age,
    /// entries, replicas) and `WORKERS` consumer (tries, run time,
    /// concurrency), each read and written back with every other field as
    /// the server has it; returns the queue as it is then.
    pub(crate) async fn configure_queue(
        &self,
        name: &str,
        update: &QueueUpdate,
    ) -> Result<QueueInfo> {
        self.queue_info(name).await?;
        if update.changes_stream() {
            self.update_stream(&Queue::new(name).stream_name(), |c| {
                if let Some(d) = update.max_age {
                    c["max_age"] = (d.as_nanos() as u64).into();
                }
                if let Some(n) = update.max_entries {
                    c["max_msgs"] = (if n > 0 { n } else { -1 }).into();
                }
                if let Some(r) = update.replicas {
                    c["num_replicas"] = r.into();
                }
                if let Some(r) = &update.retention {
                    if !c["metadata"].is_object() {
                        c["metadata"] = json!({});
                    }
                    c["metadata"][RETENTION_METADATA] = r.to_string().into();
                }
                let mut set = |key: &str, value: Option<String>| {
                    if !c["metadata"].is_object() {
                        c["metadata"] = json!({});
                    }
                    match value {
                        Some(v) => c["metadata"][key] = v.into(),
                        None => {
                            if let Some(m) = c["metadata"].as_object_mut() {
                                m.remove(key);
                            }
                        }
                    }
                };
                if let Some(l) = &update.rate_limit {
                    set(RATE_LIMIT_METADATA, l.map(|l| l.to_string()));
                }
                if let Some(n) = &update.key_concurrency {
                    set(KEY_CONCURRENCY_METADATA, n.map(|n| n.to_string()));
                }
                if let Some(l) = &update.key_rate_limit {
                    set(KEY_RATE_LIMIT_METADATA, l.map(|l| l.to_string()));
                }
                if let Some(a) = &update.priority_aging {
                    set(PRIORITY_AGING_METADATA, a.map(crate::wire::format_duration));
                }
            })
            .await?;
            self.forget_retention(name);
        }
        if update.changes_consumer() {
            self.update_workers(name, |c| {
                if let Some(t) = update.max_tries {
                    c["max_deliver"] = (if t > 0 { t } else { -1 }).into();
                }
                if let Some(d) = update.max_run_time {
                    c["ack_wait"] = (d.as_nanos() as u64).into();
                }
                if let Some(n) = update.max_concurrent {
                    c["max_ack_pending"] = Queue::new(name)
                        .max_concurrent(n)
                        .effective_max_concurrent()
                        .into();
                }
            })
            .await?;
        }
        self.queue_info(name).await
    }

    /// Changes the task store's retention and/or replicas (validated by the caller).
    pub(crate) async fn configure_tasks(
        &self,
        retention: Option<Duration>,
        replicas: Option<usize>,
    ) -> Result<()> {
        self.update_stream(TASKS_STREAM, |c| {
            if let Some(d) = retention {
                c["max_age"] = (d.as_nanos() as u64).into();
            }
            if let Some(r) = replicas {
                c["num_replicas"] = r.into();
            }
        })
        .await
    }

    /// Updates a stream's configuration with `change` (STREAM.INFO then
    /// STREAM.UPDATE of the configuration exactly as the server has it).
    pub(super) async fn update_stream(
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

    /// The configuration of a queue's `WORKERS` consumer exactly as the
    /// server has it (for updates that keep every other field).
    ///
    /// # Errors
    /// [`Error::QueueNotFound`], [`Error::QueueConsumerNotFound`], or the
    /// request's failure.
    pub(super) async fn workers_config(&self, queue: &str) -> Result<Value> {
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        match api::config(
            &self.js,
            &format!("CONSUMER.INFO.{stream}.{WORKERS_CONSUMER}"),
            || format!("loading consumer {stream}.{WORKERS_CONSUMER}"),
        )
        .await
        {
            Ok(c) => Ok(c),
            Err(e) if api::is(&e, ErrorCode::STREAM_NOT_FOUND) => {
                Err(Error::QueueNotFound(queue.into()))
            }
            Err(e) if api::is(&e, ErrorCode::CONSUMER_NOT_FOUND) => {
                Err(Error::QueueConsumerNotFound(queue.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Updates the `WORKERS` consumer of a queue with `change`.
    pub(super) async fn update_workers(
        &self,
        queue: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<()> {
        validate_queue_name(queue)?;
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let mut config = self.workers_config(queue).await?;
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
}

/// The pause a `WORKERS` consumer reports: only while the server says it
/// is paused, whatever its configuration or metadata still hold.
fn pause_of(c: &jetstream::consumer::Info) -> Option<QueuePause> {
    if !c.paused {
        return None;
    }
    let until = c.config.pause_until?;
    Some(QueuePause {
        since: c
            .config
            .metadata
            .get(PAUSED_SINCE_KEY)
            .and_then(|t| crate::wire::parse_time(t).ok()),
        until: PauseUntil::from_stored(until),
    })
}

/// Maps "no such stream" to [`Error::QueueNotFound`].
pub(super) fn queue_error(name: &str, e: NatsError) -> Error {
    if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
        Error::QueueNotFound(name.to_string())
    } else {
        e.into()
    }
}
