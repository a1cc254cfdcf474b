//! One API replica's share of the statistics (see the module above): it
//! follows every task state event, sums them by queue, task type and
//! interval, and when an interval has ended (plus a grace for late
//! events) writes each queue's record unless another replica wrote it
//! first. Run times are the time between a task's `active` and its
//! `complete` event as this replica received them.

use super::{percentiles, StatsRecord, TypeFigures, KEEP, STREAM, SUBJECT_PREFIX};
use crate::streams::NotStored;
use crate::Api;
use async_nats::jetstream;
use asyncjobs::events::Event;
use asyncjobs::TaskState;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use time::OffsetDateTime;

/// Most tries whose start is remembered for their run time; beyond, the
/// oldest starts are forgotten (those tries count without a run time).
const STARTS_MAX: usize = 200_000;

/// One interval of one queue, being summed.
#[derive(Default)]
struct Summing {
    types: BTreeMap<String, (TypeFigures, Vec<u64>)>,
}

/// Follows the events and writes the records until the router is gone
/// (its `Api` dropped: the task holds only a weak reference).
pub(crate) fn start(api: &Api) {
    let weak = std::sync::Arc::downgrade(&api.0);
    let interval = api.options.stats_interval;
    let replicas = api.options.replicas;
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let (nc, js) = match weak.upgrade() {
            Some(inner) => (inner.client.nats().clone(), inner.client.jetstream()),
            None => return,
        };
        let mut events = match asyncjobs::events::watch(&nc, None).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "statistics: cannot follow the task events; this replica writes none");
                return;
            }
        };
        let secs = interval.as_secs().max(1) as i64;
        let grace = Duration::from_secs((secs as u64 / 2).clamp(2, 30));
        // the first interval this replica saw from its start
        let first = (OffsetDateTime::now_utc().unix_timestamp() / secs + 1) * secs;
        let mut summing: BTreeMap<(String, i64), Summing> = BTreeMap::new();
        let mut starts: HashMap<String, std::time::Instant> = HashMap::new();
        let mut written_up_to = first;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                e = events.next() => {
                    let Some(e) = e else { return };
                    let Ok(Event::TaskState(e)) = e else { continue };
                    let now = OffsetDateTime::now_utc().unix_timestamp();
                    let at = now / secs * secs;
                    if at < first || e.queue.is_empty() {
                        continue;
                    }
                    let entry = summing.entry((e.queue.clone(), at)).or_default();
                    let (figures, runs) = entry.types.entry(e.task_type.clone()).or_default();
                    match e.state {
                        TaskState::Active => {
                            if starts.len() >= STARTS_MAX {
                                starts.clear();
                            }
                            starts.insert(e.task_id.clone(), std::time::Instant::now());
                        }
                        TaskState::Complete => {
                            figures.completed += 1;
                            if let Some(s) = starts.remove(&e.task_id) {
                                runs.push(s.elapsed().as_millis() as u64);
                            }
                        }
                        TaskState::Retry => {
                            figures.retried += 1;
                            starts.remove(&e.task_id);
                        }
                        TaskState::Terminated | TaskState::Expired | TaskState::QueueError
                        | TaskState::Unreachable => {
                            figures.failed += 1;
                            starts.remove(&e.task_id);
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    let Some(inner) = weak.upgrade() else { return };
                    let now = OffsetDateTime::now_utc() - grace;
                    let due = now.unix_timestamp() / secs * secs; // intervals before this have ended
                    while written_up_to < due {
                        let at = written_up_to;
                        let queues = match inner.client.queue_names().await {
                            Ok(q) => q,
                            Err(_) => summing.keys().filter(|k| k.1 == at).map(|k| k.0.clone()).collect(),
                        };
                        for queue in queues {
                            let sums = summing.remove(&(queue.clone(), at)).unwrap_or_default();
                            let depth = inner.client.queue_info(&queue).await.ok().map(|i| i.pending);
                            let record = finish(&queue, at, secs as u64, depth, sums);
                            write(&js, &record, replicas).await;
                        }
                        summing.retain(|k, _| k.1 > at);
                        written_up_to += secs;
                    }
                }
            }
        }
    });
}

/// The record of `sums`.
fn finish(queue: &str, start: i64, seconds: u64, depth: Option<u64>, sums: Summing) -> StatsRecord {
    let types = sums
        .types
        .into_iter()
        .map(|(t, (mut f, mut runs))| {
            let (p50, p95, p99, max) = percentiles(&mut runs);
            f.runs = runs.len() as u64;
            (f.p50_ms, f.p95_ms, f.p99_ms, f.max_ms) = (p50, p95, p99, max);
            (t, f)
        })
        .collect();
    StatsRecord {
        queue: queue.to_string(),
        start,
        seconds,
        depth,
        types,
        replica: crate::access::audit::replica().to_string(),
    }
}

/// Writes `record` unless its interval's subject holds one already (the
/// replica that wrote first wins); creates the stream when missing.
async fn write(js: &jetstream::Context, record: &StatsRecord, replicas: usize) {
    let subject = format!("{SUBJECT_PREFIX}{}.{}", record.queue, record.start);
    let Ok(body) = serde_json::to_vec(record) else {
        return;
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
    let sent =
        crate::streams::publish_creating(js, &subject, headers, body, || create(js, replicas))
            .await;
    match sent {
        Ok(()) => {}
        // another replica wrote the interval first
        Err(NotStored::Refused(e))
            if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {}
        Err(NotStored::NoStream(e)) => {
            tracing::error!(error = %e, "statistics: cannot create the stream {STREAM}")
        }
        Err(e) => {
            tracing::warn!(queue = %record.queue, error = %e, "statistics: writing an interval failed; it is missing unless another replica wrote it")
        }
    }
}

pub(crate) async fn create(js: &jetstream::Context, replicas: usize) -> Result<(), String> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        description: Some("asyncjobs: per queue and interval task statistics".into()),
        subjects: vec![format!("{SUBJECT_PREFIX}>")],
        max_age: KEEP,
        num_replicas: replicas.max(1),
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::Old,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}
