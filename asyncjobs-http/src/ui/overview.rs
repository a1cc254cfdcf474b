//! The overview page (`/ui/`): queues with their depth and limits, task
//! counts by state, workers, the scheduler leader and the schedules.

use super::page::{limit, query, render, short_time, STATES};
use super::schedules::{schedule_rows, ScheduleRow};
use crate::Api;
use askama::Template;
use asyncjobs::worker::presence::WorkerPresence;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::time::Duration;

struct QueueRow {
    name: String,
    depth: u64,
    in_flight: u64,
    pending: u64,
    redelivered: u64,
    max_age: String,
    max_tries: String,
    max_run_time: String,
    max_concurrent: i64,
    max_entries: String,
    discard_old: bool,
    /// The queue's own retention of finished tasks, or what applies without.
    retention: String,
    /// Its flow settings at a glance (`10/s · key 5 · aging 30s`), empty
    /// when it has none.
    flow: String,
    /// Each flow setting as the configure form takes it (`none`, aging
    /// `strict`, when unset).
    rate_limit: String,
    priority_aging: String,
    key_concurrency: String,
    key_rate_limit: String,
    has_consumer: bool,
    /// `paused until …[, since …]` while paused.
    paused: Option<String>,
    /// Items wait and no running worker serves the queue
    /// ([`asyncjobs::Serving::NoWorker`]).
    unserved: bool,
}

struct WorkerRow {
    id: String,
    queue: String,
    host: String,
    pid: u32,
    started: String,
    seen: String,
    concurrency: usize,
    task_types: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    read_only: bool,
    csrf: String,
    notice: Option<String>,
    queues: Vec<QueueRow>,
    charts: Vec<super::charts::Chart>,
    chart_width: usize,
    chart_height: usize,
    states: Vec<(&'static str, u64)>,
    /// What the counts are: how many tasks, when counted.
    counts_note: String,
    /// Marks a stored count (`data-counted-ago`), `None` when live.
    counted_ago: Option<u64>,
    workers: Vec<WorkerRow>,
    /// The nats-server version worker presence needs, when the server is
    /// older (workers cannot announce themselves).
    presence_needs: Option<&'static str>,
    leader: Option<String>,
    schedules: Vec<ScheduleRow>,
    problems: Vec<String>,
}

/// A duration setting, `unlimited` when zero.
fn human(d: Duration) -> String {
    if d.is_zero() {
        "unlimited".into()
    } else {
        asyncjobs::format_duration(d)
    }
}

/// A queue's flow settings in a few words (docs/processing.md §2.21 to
/// §2.23): its rate limit, `key N` (per-key concurrency), `key 2/s` (per-key
/// rate limit), `aging 30s`; empty when none is set.
fn flow(q: &asyncjobs::Queue) -> String {
    let mut parts = vec![];
    if let Some(l) = &q.rate_limit {
        parts.push(l.to_string());
    }
    if let Some(n) = q.key_concurrency {
        parts.push(format!("key {n}"));
    }
    if let Some(l) = &q.key_rate_limit {
        parts.push(format!("key {l}"));
    }
    if let Some(a) = q.priority_aging {
        parts.push(format!("aging {}", asyncjobs::format_duration(a)));
    }
    parts.join(" · ")
}

/// `/ui/`: what cannot be read is listed as a problem on the page.
pub(super) async fn overview(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let mut problems = vec![];
    let presence = api.client.capabilities().presence;
    let running = api.client.workers().await.unwrap_or_else(|e| {
        problems.push(format!("listing workers: {e}"));
        vec![]
    });
    let queues = queue_rows(&api, presence, &running, &mut problems).await;
    let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    let charts = super::charts::charts(&api, &names, &mut problems).await;
    let counts = state_counts(&api, &mut problems).await;
    let workers = worker_rows(running);
    let leader = api.client.scheduler_leader().await.unwrap_or_else(|e| {
        problems.push(format!("reading the scheduler leader: {e}"));
        None
    });
    let schedules = schedule_rows(&api, &mut problems).await;
    render(
        StatusCode::OK,
        &Overview {
            read_only: api.read_only(),
            csrf: api.csrf().await,
            notice: q.get("notice").cloned(),
            queues,
            charts,
            chart_width: super::charts::WIDTH,
            chart_height: super::charts::HEIGHT,
            states: counts.0,
            counts_note: counts.1,
            counted_ago: counts.2,
            workers,
            presence_needs: (!presence).then_some(asyncjobs::capabilities::PRESENCE_NEEDS),
            leader,
            schedules,
            problems,
        },
    )
}

/// Every queue by name, with its depth and settings, and whether a worker
/// serves it (judged from `presence` and the `running` workers).
async fn queue_rows(
    api: &Api,
    presence: bool,
    running: &[WorkerPresence],
    problems: &mut Vec<String>,
) -> Vec<QueueRow> {
    let mut queues = vec![];
    match api.client.queue_names().await {
        Ok(mut names) => {
            names.sort();
            for name in names {
                match api.client.queue_info(&name).await {
                    Ok(i) => queues.push(QueueRow {
                        name: i.queue.name.clone(),
                        depth: i.stream.messages,
                        in_flight: i.ack_pending,
                        pending: i.pending,
                        redelivered: i.redelivered,
                        max_age: human(i.queue.max_age),
                        max_tries: limit(i.queue.max_tries),
                        max_run_time: human(i.queue.max_run_time),
                        max_concurrent: i.queue.max_concurrent,
                        max_entries: limit(i.queue.max_entries),
                        discard_old: i.queue.discard_old,
                        retention: match i.queue.retention {
                            Some(r) => r.to_string(),
                            None => "each process's own".into(),
                        },
                        flow: flow(&i.queue),
                        rate_limit: or_none(i.queue.rate_limit),
                        priority_aging: match i.queue.priority_aging {
                            Some(a) => asyncjobs::format_duration(a),
                            None => "strict".into(),
                        },
                        key_concurrency: or_none(i.queue.key_concurrency),
                        key_rate_limit: or_none(i.queue.key_rate_limit),
                        has_consumer: i.has_consumer,
                        paused: i.paused.map(|p| {
                            let since = p
                                .since
                                .map(|t| format!(", since {}", asyncjobs::wire::format_time(&t)))
                                .unwrap_or_default();
                            format!("paused {}{since}", p.until)
                        }),
                        unserved: i.pending > 0
                            && matches!(
                                asyncjobs::Serving::judge(&i, presence, running, None),
                                asyncjobs::Serving::NoWorker { .. }
                            ),
                    }),
                    Err(e) => problems.push(format!("queue {name}: {e}")),
                }
            }
        }
        Err(e) => problems.push(format!("listing queues: {e}")),
    }
    queues
}

/// A setting as text, `none` when unset.
fn or_none<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}

/// Tasks by state (`stats::counts`): counted now for a store of at most
/// 10,000 tasks, else the last count the cluster stored, with its age.
async fn state_counts(
    api: &Api,
    problems: &mut Vec<String>,
) -> (Vec<(&'static str, u64)>, String, Option<u64>) {
    use crate::stats::counts::{for_overview, Shown, LIVE_MAX, RECOUNT_AFTER};
    let of = |c: &crate::stats::counts::StateCounts| {
        STATES
            .iter()
            .map(|s| (*s, c.states.get(*s).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
    };
    match for_overview(api).await {
        Ok(Shown::Live(c)) => (of(&c), format!("All {} stored tasks.", c.total), None),
        Ok(Shown::Stored(c)) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            let ago = u64::try_from((now as i64 - c.at_ms) / 1000).unwrap_or(0);
            let note = format!(
                "{} stored tasks, counted {ago} s ago (the count took {}); a store of more than {LIVE_MAX} tasks is counted again in the background once its count is {} old.",
                c.total,
                asyncjobs::format_duration(Duration::from_millis(c.took_ms)),
                asyncjobs::format_duration(RECOUNT_AFTER),
            );
            (of(&c), note, Some(ago))
        }
        Ok(Shown::Counting) => (
            vec![],
            format!("More than {LIVE_MAX} stored tasks: they are being counted in the background; reload in a moment."),
            None,
        ),
        Err(e) => {
            problems.push(format!("counting tasks: {e}"));
            (vec![], "The counts could not be read.".into(), None)
        }
    }
}

/// The workers that announce themselves.
fn worker_rows(running: Vec<WorkerPresence>) -> Vec<WorkerRow> {
    running
        .into_iter()
        .map(|w| WorkerRow {
            id: w.id,
            queue: w.queue,
            host: w.host,
            pid: w.pid,
            started: short_time(&w.started),
            seen: short_time(&w.seen),
            concurrency: w.concurrency,
            task_types: w.task_types.join(", "),
        })
        .collect()
}
