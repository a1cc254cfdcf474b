//! One API replica's share of the statistics (see the module above): it
//! follows every task state event, sums them by queue, task type and
//! interval, and when an interval has ended (plus a grace for late
//! events) writes each queue's record unless another replica wrote it
//! first. Run times come from the task ages a try's `active` and
//! `complete` events give ([`run_time`]).

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
        // each running try's `active` event: when it arrived, and the
        // task's age it gave
        let mut starts: HashMap<String, (std::time::Instant, Duration)> = HashMap::new();
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
                            starts.insert(e.task_id.clone(), (std::time::Instant::now(), e.task_age));
                        }
                        TaskState::Complete => {
                            figures.completed += 1;
                            if let Some(start) = starts.remove(&e.task_id) {
                                runs.push(run_time(start, e.task_age).as_millis() as u64);
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
                    let mut ended = vec![];
                    while written_up_to < due {
                        let at = written_up_to;
                        let (this, later) = std::mem::take(&mut summing)
                            .into_iter()
                            .partition::<BTreeMap<_, _>, _>(|k| k.0 .1 == at);
                        summing = later;
                        summing.retain(|k, _| k.1 > at);
                        ended.push((at, this.into_iter().map(|((q, _), s)| (q, s)).collect()));
                        written_up_to += secs;
                    }
                    if !ended.is_empty() {
                        // written aside: events meanwhile are timed as they
                        // arrive, not once the writes are done
                        let (client, js) = (inner.client.clone(), js.clone());
                        tokio::spawn(write_ended(client, js, secs as u64, replicas, ended));
                    }
                }
            }
        }
    });
}

/// Writes the record of every queue for each ended interval: the queues
/// with events there, and every other queue with its depth.
async fn write_ended(
    client: asyncjobs::Client,
    js: jetstream::Context,
    seconds: u64,
    replicas: usize,
    ended: Vec<(i64, BTreeMap<String, Summing>)>,
) {
    for (at, mut sums) in ended {
        let mut queues = client.queue_names().await.unwrap_or_default();
        queues.extend(
            sums.keys()
                .filter(|q| !queues.contains(q))
                .cloned()
                .collect::<Vec<_>>(),
        );
        for queue in queues {
            let mine = sums.remove(&queue).unwrap_or_default();
            let depth = client.queue_info(&queue).await.ok().map(|i| i.pending);
            let record = finish(&queue, at, seconds, depth, mine);
            write(&js, &record, replicas).await;
        }
    }
}

/// A try's run time from its `active` event (when it arrived, and the
/// task's age it gave) and the `complete` event's task age: the ages'
/// difference, both taken by the worker as it published (Go's workers
/// too), so a replica slow to read its events does not shorten it; the
/// time between the events' arrival when an age is missing (a task with
/// Go's zero creation time).
fn run_time(active: (std::time::Instant, Duration), complete_age: Duration) -> Duration {
    let (arrived, active_age) = active;
    if active_age.is_zero() || complete_age.is_zero() {
        return arrived.elapsed();
    }
    complete_age.saturating_sub(active_age)
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
        replica: crate::replica().to_string(),
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

#[cfg(test)]
mod run_time_tests {
    use super::*;

    #[test]
    fn a_run_time_is_the_difference_of_the_ages_the_worker_gave() {
        // read late: the arrival says nothing, the ages say 30 ms
        let arrived = std::time::Instant::now();
        let ran = run_time(
            (arrived, Duration::from_millis(500)),
            Duration::from_millis(530),
        );
        assert_eq!(ran, Duration::from_millis(30));
        // an age going back (clocks) is no negative run
        assert_eq!(
            run_time(
                (arrived, Duration::from_millis(530)),
                Duration::from_millis(500)
            ),
            Duration::ZERO
        );
        // without ages, the arrival times
        assert!(
            run_time((arrived, Duration::ZERO), Duration::from_millis(530))
                < Duration::from_secs(5)
        );
    }
}
