//! The workers page (`/ui/workers`): every running asyncjobs worker with
//! its queue, concurrency, version, host, last heartbeat and the tries it
//! runs (from its presence record and its lease, docs/storage.md §5.5 and
//! §5.8), and each queue as its `WORKERS` consumer sees it, so workers that
//! do not announce themselves (Go's, or any on a server too old for worker
//! presence) show as what they leave there: pull requests waiting and
//! deliveries in flight.

use super::page::{render, short_time};
use crate::Api;
use askama::Template;
use asyncjobs::worker::presence::WorkerPresence;
use asyncjobs::worker::WorkerLease;
use asyncjobs::Serving;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;
use time::OffsetDateTime;

/// How many of a worker's running tries the page names (the count is
/// always given).
const TRIES_SHOWN: usize = 20;

/// One announcing worker.
struct WorkerRow {
    id: String,
    queue: String,
    host: String,
    pid: u32,
    version: String,
    concurrency: usize,
    task_types: String,
    started: String,
    seen: String,
    /// Seconds since its last heartbeat (the page's clock against the
    /// server's timestamps).
    seen_ago: i64,
    /// How many tries it runs, by its lease.
    running: usize,
    /// The first [`TRIES_SHOWN`] of them, by task id.
    tries: Vec<String>,
}

/// One queue as its consumer sees it.
struct QueueRow {
    name: String,
    announced: usize,
    waiting: u64,
    in_flight: u64,
    /// Pull requests of workers that do not announce themselves (a lower
    /// bound, `Serving::unannounced_pulls`).
    unannounced_pulls: u64,
    /// Whether only workers that do not announce themselves are seen.
    only_unannounced: bool,
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    read_only: bool,
    workers: Vec<WorkerRow>,
    queues: Vec<QueueRow>,
    /// The nats-server version worker presence needs, when the server is
    /// older.
    presence_needs: Option<&'static str>,
    problems: Vec<String>,
}

/// `/ui/workers`: what cannot be read is listed as a problem on the page.
pub(super) async fn workers(State(api): State<Api>) -> Response {
    let mut problems = vec![];
    let presence = api.client.capabilities().presence;
    let running = api.client.workers().await.unwrap_or_else(|e| {
        problems.push(format!("listing workers: {e}"));
        vec![]
    });
    let leases = api.client.worker_leases().await.unwrap_or_else(|e| {
        problems.push(format!("reading the workers' leases: {e}"));
        vec![]
    });
    let queues = queue_rows(&api, &running, &mut problems).await;
    render(
        StatusCode::OK,
        &WorkersPage {
            read_only: api.read_only(),
            workers: worker_rows(running, leases, OffsetDateTime::now_utc()),
            queues,
            presence_needs: (!presence).then_some(asyncjobs::capabilities::PRESENCE_NEEDS),
            problems,
        },
    )
}

/// The announcing workers by queue and host, each with its lease's tries.
fn worker_rows(
    running: Vec<WorkerPresence>,
    leases: Vec<WorkerLease>,
    now: OffsetDateTime,
) -> Vec<WorkerRow> {
    let mut tries: HashMap<String, Vec<String>> = leases
        .into_iter()
        .map(|l| (l.worker, l.running.into_keys().collect()))
        .collect();
    let mut rows: Vec<WorkerRow> = running
        .into_iter()
        .map(|w| {
            let mine = tries.remove(&w.id).unwrap_or_default();
            WorkerRow {
                running: mine.len(),
                tries: mine.into_iter().take(TRIES_SHOWN).collect(),
                seen_ago: (now - w.seen).whole_seconds().max(0),
                started: short_time(&w.started),
                seen: short_time(&w.seen),
                task_types: w.task_types.join(", "),
                id: w.id,
                queue: w.queue,
                host: w.host,
                pid: w.pid,
                version: w.version,
                concurrency: w.concurrency,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.queue, &a.host, a.pid).cmp(&(&b.queue, &b.host, b.pid)));
    rows
}

/// Every queue with its consumer's pull requests and deliveries.
async fn queue_rows(
    api: &Api,
    running: &[WorkerPresence],
    problems: &mut Vec<String>,
) -> Vec<QueueRow> {
    let mut names = match api.client.queue_names().await {
        Ok(n) => n,
        Err(e) => {
            problems.push(format!("listing queues: {e}"));
            return vec![];
        }
    };
    names.sort();
    let mut rows = vec![];
    for name in names {
        match api.client.queue_info(&name).await {
            Ok(i) => {
                let announced = running.iter().filter(|w| w.queue == name).count();
                rows.push(QueueRow {
                    announced,
                    waiting: i.waiting,
                    in_flight: i.ack_pending,
                    unannounced_pulls: Serving::unannounced_pulls(&i, running),
                    only_unannounced: announced == 0
                        && i.has_consumer
                        && (i.waiting > 0 || i.ack_pending > 0),
                    name,
                });
            }
            Err(e) => problems.push(format!("queue {name}: {e}")),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn presence(id: &str, queue: &str, seen: OffsetDateTime) -> WorkerPresence {
        serde_json::from_value(serde_json::json!({
            "id": id, "queue": queue, "host": "h", "pid": 7,
            "started": "2026-12-07T10:00:00Z",
            "seen": asyncjobs::wire::format_time(&seen),
            "concurrency": 4, "task_types": ["a", "b"], "version": "0.1.0",
        }))
        .unwrap()
    }

    #[test]
    fn each_worker_gets_its_own_leases_tries() {
        let now = OffsetDateTime::now_utc();
        let lease: WorkerLease = serde_json::from_value(serde_json::json!({
            "worker": "W1", "queue": "Q", "rescue_after_secs": 30,
            "running": (0..25).map(|i| (format!("T{i:02}"), i)).collect::<BTreeMap<_, _>>(),
        }))
        .unwrap();
        let rows = worker_rows(
            vec![
                presence("W2", "Q", now),
                presence("W1", "Q", now - time::Duration::seconds(12)),
            ],
            vec![lease],
            now,
        );
        let w1 = rows.iter().find(|r| r.id == "W1").unwrap();
        assert_eq!((w1.running, w1.tries.len()), (25, TRIES_SHOWN));
        assert_eq!(w1.tries[0], "T00");
        assert!((12..=13).contains(&w1.seen_ago), "{}", w1.seen_ago);
        let w2 = rows.iter().find(|r| r.id == "W2").unwrap();
        assert_eq!((w2.running, w2.task_types.as_str()), (0, "a, b"));
    }
}
