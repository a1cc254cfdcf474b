//! The output blocks several commands share (reference §13.2): task
//! storage, configuration storage, leader elections and work queues, each
//! as the Go tool prints it and as JSON.

use crate::error::Result;
use crate::format::{age, go_time, humanize_nanos, iec_bytes, parse_js_time, rfc3339, ucomma};
use crate::jsapi::{stream_info, StreamInfo};
use asyncjobs::{Client, QueueInfo};
use futures::StreamExt;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;
use time::OffsetDateTime;

/// An optional time as RFC 3339 JSON or `null`.
fn opt_time(t: Option<OffsetDateTime>) -> Value {
    t.map(|t| Value::String(rfc3339(t))).unwrap_or(Value::Null)
}

/// The `Entries`, `Memory Based` and `Replicas` lines every storage block starts with.
fn storage_lines(out: &mut String, messages: u64, bytes: u64, memory: bool, replicas: usize) {
    let _ = writeln!(
        out,
        "{:>16}: {} @ {}",
        "Entries",
        ucomma(messages),
        iec_bytes(bytes)
    );
    let _ = writeln!(out, "{:>16}: {}", "Memory Based", memory);
    let _ = writeln!(out, "{:>16}: {}", "Replicas", replicas);
}

/// The `entries`, `bytes`, `memory` and `replicas` every storage block's JSON starts with.
fn storage_json(i: &StreamInfo) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    o.insert("entries".into(), i.state.messages.into());
    o.insert("bytes".into(), i.state.bytes.into());
    o.insert("memory".into(), i.memory().into());
    o.insert("replicas".into(), i.config.num_replicas.into());
    o
}

/// A `label: <time> (<age>)` line when the time is set.
fn time_line(out: &mut String, label: &str, t: Option<OffsetDateTime>) {
    if let Some(t) = t {
        let _ = writeln!(out, "{label:>16}: {} ({})", go_time(t), age(t));
    }
}

/// The task store (`CHORIA_AJ_TASKS`); `None` when it does not exist.
#[derive(Debug, Clone)]
pub struct TasksBlock(pub Option<StreamInfo>);

impl TasksBlock {
    /// Loads the task store's stream info.
    pub async fn load(nc: &async_nats::Client) -> Result<TasksBlock> {
        Ok(TasksBlock(stream_info(nc, asyncjobs::TASKS_STREAM).await?))
    }

    /// The Go `Tasks Storage:` block.
    pub fn human(&self) -> String {
        let mut out = String::from("Tasks Storage:\n\n");
        let Some(i) = &self.0 else {
            out.push_str("  Not initialized, create it with 'ajc task initialize'\n");
            return out;
        };
        storage_lines(
            &mut out,
            i.state.messages,
            i.state.bytes,
            i.memory(),
            i.config.num_replicas,
        );
        let _ = writeln!(
            out,
            "{:>16}: {}",
            "Archive Period",
            humanize_nanos(i.config.max_age)
        );
        time_line(
            &mut out,
            "First Entry",
            parse_js_time(i.state.first_ts.as_deref()),
        );
        time_line(
            &mut out,
            "Last Update",
            parse_js_time(i.state.last_ts.as_deref()),
        );
        out
    }

    /// JSON: `null` when the store does not exist.
    pub fn json(&self) -> Value {
        let Some(i) = &self.0 else {
            return Value::Null;
        };
        let mut o = storage_json(i);
        o.insert("archive_period".into(), i.config.max_age.into());
        o.insert(
            "first_entry".into(),
            opt_time(parse_js_time(i.state.first_ts.as_deref())),
        );
        o.insert(
            "last_update".into(),
            opt_time(parse_js_time(i.state.last_ts.as_deref())),
        );
        Value::Object(o)
    }
}

/// The configuration KV bucket (`CHORIA_AJ_CONFIGURATION`).
#[derive(Debug, Clone)]
pub struct ConfigBlock(pub Option<StreamInfo>);

impl ConfigBlock {
    /// Loads the bucket's stream info.
    pub async fn load(nc: &async_nats::Client) -> Result<ConfigBlock> {
        Ok(ConfigBlock(
            stream_info(nc, &format!("KV_{}", asyncjobs::CONFIG_BUCKET)).await?,
        ))
    }

    /// The Go `Configuration Storage:` block.
    pub fn human(&self) -> String {
        let mut out = String::from("Configuration Storage:\n\n");
        let Some(i) = &self.0 else {
            out.push_str("  Not initialized, it is created when a schedule is added\n");
            return out;
        };
        storage_lines(
            &mut out,
            i.state.messages,
            i.state.bytes,
            i.memory(),
            i.config.num_replicas,
        );
        out
    }

    /// JSON: `null` when the bucket does not exist.
    pub fn json(&self) -> Value {
        let Some(i) = &self.0 else {
            return Value::Null;
        };
        Value::Object(storage_json(i))
    }
}

/// The leader elections KV bucket (`CHORIA_AJ_ELECTIONS`) and its leaders.
#[derive(Debug, Clone)]
pub struct ElectionsBlock {
    info: StreamInfo,
    leaders: Result<Vec<(String, String)>, String>,
}

impl ElectionsBlock {
    /// Loads the bucket and its current keys; `None` when it does not exist.
    pub async fn load(nc: &async_nats::Client) -> Result<Option<ElectionsBlock>> {
        let Some(info) = stream_info(nc, &format!("KV_{}", asyncjobs::ELECTIONS_BUCKET)).await?
        else {
            return Ok(None);
        };
        let leaders = tokio::time::timeout(Duration::from_secs(2), leaders(nc))
            .await
            .unwrap_or_else(|_| Err("timeout".into()));
        Ok(Some(ElectionsBlock { info, leaders }))
    }

    /// The Go `Leader Elections:` block.
    pub fn human(&self) -> String {
        let i = &self.info;
        let mut out = String::from("Leader Elections:\n\n");
        storage_lines(
            &mut out,
            i.state.messages,
            i.state.bytes,
            i.memory(),
            i.config.num_replicas,
        );
        let _ = writeln!(out, "{:>16}:", "Elections");
        let indent = " ".repeat(18);
        match &self.leaders {
            Err(e) => {
                let _ = writeln!(out, "{indent}Could not determine election status: {e}");
            }
            Ok(l) if l.is_empty() => {
                let _ = writeln!(out, "{indent}No leader elections active");
            }
            Ok(l) => {
                for (k, v) in l {
                    let _ = writeln!(out, "{indent}{k}: {v}");
                }
            }
        }
        out
    }

    /// JSON, with the leaders as an object of key to leader name.
    pub fn json(&self) -> Value {
        let i = &self.info;
        let leaders = match &self.leaders {
            Ok(l) => Value::Object(
                l.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
            Err(_) => Value::Null,
        };
        let mut o = storage_json(i);
        o.insert("leaders".into(), leaders);
        Value::Object(o)
    }
}

/// The keys and values of the elections bucket, sorted by key.
async fn leaders(nc: &async_nats::Client) -> Result<Vec<(String, String)>, String> {
    let js = async_nats::jetstream::new(nc.clone());
    let kv = js
        .get_key_value(asyncjobs::ELECTIONS_BUCKET)
        .await
        .map_err(|e| e.to_string())?;
    let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    while let Some(k) = keys.next().await {
        names.push(k.map_err(|e| e.to_string())?);
    }
    names.sort();
    let mut out = Vec::new();
    for k in names {
        if let Ok(Some(v)) = kv.get(&k).await {
            out.push((k, String::from_utf8_lossy(&v).to_string()));
        }
    }
    Ok(out)
}

/// A work queue: the runtime's [`QueueInfo`] plus the first/last item times.
#[derive(Debug, Clone)]
pub struct QueueBlock {
    /// What the runtime reports.
    pub info: QueueInfo,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
}

impl QueueBlock {
    /// Loads a queue (an error when it does not exist).
    pub async fn load(client: &Client, name: &str) -> Result<QueueBlock> {
        let info = client.queue_info(name).await?;
        let raw = stream_info(client.nats(), &info.queue.stream_name()).await?;
        let (first, last) = raw
            .map(|r| {
                (
                    parse_js_time(r.state.first_ts.as_deref()),
                    parse_js_time(r.state.last_ts.as_deref()),
                )
            })
            .unwrap_or((None, None));
        Ok(QueueBlock { info, first, last })
    }

    /// Loads every queue, sorted by name.
    pub async fn load_all(client: &Client) -> Result<Vec<QueueBlock>> {
        let mut out = Vec::new();
        for name in client.queue_names().await? {
            match QueueBlock::load(client, &name).await {
                Ok(b) => out.push(b),
                // removed since the names were listed
                Err(e) if e.to_string().starts_with("queue not found") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The Go `<name> Work Queue:` block; a missing `WORKERS` consumer is
    /// reported instead of the consumer settings.
    pub fn human(&self) -> String {
        let i = &self.info;
        let q = &i.queue;
        let mut out = format!("{} Work Queue:\n\n", q.name);
        storage_lines(&mut out, i.messages, i.bytes, i.memory, i.replicas);
        let _ = writeln!(
            out,
            "{:>16}: {}",
            "Archive Period",
            humanize_nanos(q.max_age.as_nanos() as i64)
        );
        if i.has_consumer {
            let _ = writeln!(out, "{:>16}: {}", "Max Task Tries", q.max_tries);
            let _ = writeln!(
                out,
                "{:>16}: {}",
                "Max Run Time",
                humanize_nanos(q.max_run_time.as_nanos() as i64)
            );
            let _ = writeln!(out, "{:>16}: {}", "Max Concurrent", q.max_concurrent);
        } else {
            let _ = writeln!(
                out,
                "{:>16}: missing, workers cannot process this queue (recreate it)",
                "WORKERS Consumer"
            );
        }
        if q.max_entries == -1 {
            let _ = writeln!(out, "{:>16}: unlimited", "Max Entries");
        } else {
            let _ = writeln!(
                out,
                "{:>16}: {}",
                "Max Entries",
                crate::format::comma(q.max_entries)
            );
            let _ = writeln!(out, "{:>16}: {}", "Discard Old", q.discard_old);
        }
        time_line(&mut out, "First Item", self.first);
        time_line(&mut out, "Last Item", self.last);
        out
    }

    /// JSON; durations in nanoseconds as Go encodes them.
    pub fn json(&self) -> Value {
        let i = &self.info;
        let q = &i.queue;
        json!({
            "name": q.name,
            "entries": i.messages,
            "bytes": i.bytes,
            "memory": i.memory,
            "replicas": i.replicas,
            "max_age": q.max_age.as_nanos() as u64,
            "max_entries": q.max_entries,
            "discard_old": q.discard_old,
            "has_consumer": i.has_consumer,
            "max_tries": if i.has_consumer { json!(q.max_tries) } else { Value::Null },
            "max_runtime": if i.has_consumer { json!(q.max_run_time.as_nanos() as u64) } else { Value::Null },
            "max_concurrent": if i.has_consumer { json!(q.max_concurrent) } else { Value::Null },
            "ack_pending": i.ack_pending,
            "pending": i.pending,
            "waiting": i.waiting,
            "first_item": opt_time(self.first),
            "last_item": opt_time(self.last),
        })
    }
}
