//! The output blocks several commands share (docs/interfaces.md §1.6): task
//! storage, configuration storage, leader elections and work queues, each
//! as the Go tool prints it and as JSON.

use crate::error::Result;
use crate::format::{age, go_time, humanize_nanos, iec_bytes, limit, rfc3339, ucomma};
use asyncjobs::{Client, QueueInfo, StreamDetails};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;
use time::OffsetDateTime;

/// An optional time as RFC 3339 JSON or `null`.
fn opt_time(t: Option<OffsetDateTime>) -> Value {
    t.map(|t| Value::String(rfc3339(t))).unwrap_or(Value::Null)
}

/// The `Entries`, `Memory Based` and `Replicas` lines every storage block starts with.
fn storage_lines(out: &mut String, i: &StreamDetails) {
    let _ = writeln!(
        out,
        "{:>16}: {} @ {}",
        "Entries",
        ucomma(i.messages),
        iec_bytes(i.bytes)
    );
    let _ = writeln!(out, "{:>16}: {}", "Memory Based", i.memory);
    let _ = writeln!(out, "{:>16}: {}", "Replicas", i.replicas);
}

/// The `entries`, `bytes`, `memory` and `replicas` every storage block's JSON starts with.
fn storage_json(i: &StreamDetails) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    o.insert("entries".into(), i.messages.into());
    o.insert("bytes".into(), i.bytes.into());
    o.insert("memory".into(), i.memory.into());
    o.insert("replicas".into(), i.replicas.into());
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
pub struct TasksBlock(pub Option<StreamDetails>);

impl TasksBlock {
    /// Loads the task store's details.
    pub async fn load(client: &Client) -> Result<TasksBlock> {
        match client.tasks_info().await {
            Ok(i) => Ok(TasksBlock(Some(i))),
            Err(asyncjobs::Error::StorageNotReady(_)) => Ok(TasksBlock(None)),
            Err(e) => Err(e.into()),
        }
    }

    /// The Go `Tasks Storage:` block.
    pub fn human(&self) -> String {
        let mut out = String::from("Tasks Storage:\n\n");
        let Some(i) = &self.0 else {
            out.push_str("  Not initialized, create it with 'ajc task initialize'\n");
            return out;
        };
        storage_lines(&mut out, i);
        let _ = writeln!(
            out,
            "{:>16}: {}",
            "Archive Period",
            humanize_nanos(i.max_age.as_nanos() as i64)
        );
        time_line(&mut out, "First Entry", i.first_time);
        time_line(&mut out, "Last Update", i.last_time);
        out
    }

    /// JSON: `null` when the store does not exist.
    pub fn json(&self) -> Value {
        let Some(i) = &self.0 else {
            return Value::Null;
        };
        let mut o = storage_json(i);
        o.insert(
            "archive_period".into(),
            (i.max_age.as_nanos() as i64).into(),
        );
        o.insert("first_entry".into(), opt_time(i.first_time));
        o.insert("last_update".into(), opt_time(i.last_time));
        Value::Object(o)
    }
}

/// The configuration KV bucket (`CHORIA_AJ_CONFIGURATION`).
#[derive(Debug, Clone)]
pub struct ConfigBlock(pub Option<StreamDetails>);

impl ConfigBlock {
    /// Loads the bucket's details.
    pub async fn load(client: &Client) -> Result<ConfigBlock> {
        Ok(ConfigBlock(client.config_bucket_info().await?))
    }

    /// The Go `Configuration Storage:` block.
    pub fn human(&self) -> String {
        let mut out = String::from("Configuration Storage:\n\n");
        let Some(i) = &self.0 else {
            out.push_str("  Not initialized, it is created when a schedule is added\n");
            return out;
        };
        storage_lines(&mut out, i);
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
    info: StreamDetails,
    leaders: Result<Vec<(String, String)>, String>,
}

impl ElectionsBlock {
    /// Loads the bucket and its current keys; `None` when it does not exist.
    pub async fn load(client: &Client) -> Result<Option<ElectionsBlock>> {
        let Some(info) = client.elections_bucket_info().await? else {
            return Ok(None);
        };
        let leaders = tokio::time::timeout(Duration::from_secs(2), leaders(client))
            .await
            .unwrap_or_else(|_| Err("timeout".into()));
        Ok(Some(ElectionsBlock { info, leaders }))
    }

    /// The Go `Leader Elections:` block.
    pub fn human(&self) -> String {
        let i = &self.info;
        let mut out = String::from("Leader Elections:\n\n");
        storage_lines(&mut out, i);
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
async fn leaders(client: &Client) -> Result<Vec<(String, String)>, String> {
    asyncjobs::election::leaders_via(
        client.nats(),
        client.jetstream_api(),
        asyncjobs::ELECTIONS_BUCKET,
    )
    .await
    .map_err(|e| e.to_string())
}

/// A work queue: the runtime's [`QueueInfo`] plus the first/last item times.
#[derive(Debug, Clone)]
pub struct QueueBlock {
    /// What the runtime reports.
    pub info: QueueInfo,
}

impl QueueBlock {
    /// Loads a queue (an error when it does not exist).
    pub async fn load(client: &Client, name: &str) -> Result<QueueBlock> {
        let info = client.queue_info(name).await?;
        Ok(QueueBlock { info })
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
        storage_lines(&mut out, &i.stream);
        let _ = writeln!(
            out,
            "{:>16}: {}",
            "Archive Period",
            humanize_nanos(q.max_age.as_nanos() as i64)
        );
        if i.has_consumer {
            let _ = writeln!(out, "{:>16}: {}", "Max Task Tries", limit(q.max_tries));
            let _ = writeln!(
                out,
                "{:>16}: {}",
                "Max Run Time",
                humanize_nanos(q.max_run_time.as_nanos() as i64)
            );
            let _ = writeln!(out, "{:>16}: {}", "Max Concurrent", limit(q.max_concurrent));
            if let Some(p) = &i.paused {
                let until = match p.until {
                    asyncjobs::PauseUntil::Resumed => "until resumed".to_string(),
                    asyncjobs::PauseUntil::Time(t) => format!("until {}", go_time(t)),
                };
                let since = p
                    .since
                    .map(|t| format!(", since {} ({} ago)", go_time(t), age(t)))
                    .unwrap_or_default();
                let _ = writeln!(out, "{:>16}: {until}{since}", "Paused");
            }
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
        // only a queue with its own: Go's block is unchanged otherwise
        if let Some(r) = &q.retention {
            let _ = writeln!(out, "{:>16}: {r}", "Keep Finished");
        }
        // the flow settings, each only when set (ours; docs/processing.md
        // §2.21 to §2.23)
        if let Some(l) = &q.rate_limit {
            let _ = writeln!(out, "{:>16}: {l}", "Rate Limit");
        }
        if let Some(a) = q.priority_aging {
            let _ = writeln!(
                out,
                "{:>16}: {}",
                "Priority Aging",
                asyncjobs::format_duration(a)
            );
        }
        if let Some(n) = q.key_concurrency {
            let _ = writeln!(out, "{:>16}: {n}", "Key Concurrency");
        }
        if let Some(l) = &q.key_rate_limit {
            let _ = writeln!(out, "{:>16}: {l}", "Key Rate Limit");
        }
        time_line(&mut out, "First Item", i.stream.first_time);
        time_line(&mut out, "Last Item", i.stream.last_time);
        out
    }

    /// JSON; durations in nanoseconds as Go encodes them.
    pub fn json(&self) -> Value {
        let i = &self.info;
        let q = &i.queue;
        json!({
            "name": q.name,
            "entries": i.stream.messages,
            "bytes": i.stream.bytes,
            "memory": i.stream.memory,
            "replicas": i.stream.replicas,
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
            "paused": i.paused.map(|p| json!({
                "since": opt_time(p.since),
                "until": match p.until {
                    asyncjobs::PauseUntil::Resumed => Value::Null,
                    asyncjobs::PauseUntil::Time(t) => json!(rfc3339(t)),
                },
            })),
            "retention": q.retention.map(|r| r.to_string()),
            "rate_limit": q.rate_limit.map(|l| l.to_string()),
            "priority_aging": q.priority_aging.map(|a| a.as_nanos() as u64),
            "key_concurrency": q.key_concurrency,
            "key_rate_limit": q.key_rate_limit.map(|l| l.to_string()),
            "first_item": opt_time(i.stream.first_time),
            "last_item": opt_time(i.stream.last_time),
        })
    }
}
