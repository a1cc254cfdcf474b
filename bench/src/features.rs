//! The cost of each feature when used, `--features`: `--tasks` tasks
//! enqueued up front, then processed at concurrency 100 by one framework
//! worker in this process (timed as [`crate::framework::process`]: from starting
//! the worker until every handler has run and the queue's stream is
//! empty; client and server CPU over that window), each feature on a
//! queue of its own, beside the plain queue in the same repetition:
//!
//! - **plain**: [`crate::framework::process`]'s tasks and queue; measured first
//!   and last in each repetition, the other rows' ratios are to the mean
//!   of the two (its own row's ratio is last / first: the drift); one
//!   more plain run, thrown away, warms the server up before them;
//! - **priorities**: priorities 0 to 9 in turn (`TaskBuilder::priority`;
//!   the queue needs nothing, strict order by default; every task above 0
//!   waits in a lane and is claimed, docs/processing.md §2.21);
//! - **rate limit**: `Queue::rate_limit` 1,000,000/s, far above capacity
//!   (as `--flow` measures it, §2.22);
//! - **keys**: 1,000 keys in turn (`TaskBuilder::key`), at most 1 running
//!   per key (`Queue::key_concurrency(1)`, §2.24);
//! - **unique**: every task `TaskBuilder::unique` with a key of its own
//!   (needs nats-server 2.11; §2.18);
//! - **progress**: the handler reports `ctx.progress(50, "half")` once
//!   (§2.17);
//! - **batches**: enqueued by `Client::enqueue_batch` in batches of 100,
//!   without a callback (§2.23).
//!
//! The enqueue is timed too (the same client, one call after another:
//! `enqueue_many` in chunks of 10,000, batches one after another): the
//! rate is shown for the features whose cost is at enqueue (priorities,
//! keys, unique, batches) beside the plain queue's `enqueue_many`.

use crate::cpu;
use crate::framework::spawn_worker;
use crate::harness::{cleanup, noop_router, verify_complete, wait_drained, Done};
use crate::opts::Opts;
use crate::report::stats;
use asyncjobs::{Client, Queue, Router, Task, TaskContext};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Processing concurrency of every row.
const CONCURRENCY: usize = 100;
/// Keys of the keys row, in turn.
const KEYS: usize = 1000;
/// Members of each batch of the batches row.
const BATCH: usize = 100;
/// The rate limit row's limit.
const FAR_LIMIT: &str = "1000000/s";

#[derive(Clone, Copy, PartialEq)]
enum Feature {
    Plain,
    Priorities,
    RateLimit,
    Keys,
    Unique,
    Progress,
    Batches,
}

/// The rows in the order measured: name, JSON key, what it needs.
const FEATURES: [(Feature, &str, &str, &str); 7] = [
    (Feature::Plain, "plain", "plain", "-"),
    (
        Feature::Priorities,
        "priorities 0..=9",
        "priorities",
        "nothing (strict order)",
    ),
    (
        Feature::RateLimit,
        "rate limit 1000000/s",
        "rate_limit",
        "Queue::rate_limit",
    ),
    (
        Feature::Keys,
        "1000 keys, 1 per key",
        "keys",
        "Queue::key_concurrency(1)",
    ),
    (Feature::Unique, "unique keys", "unique", "nats-server 2.11"),
    (Feature::Progress, "progress once", "progress", "-"),
    (Feature::Batches, "batches of 100", "batches", "no callback"),
];

impl Feature {
    /// Its cost is at enqueue: the enqueue rate is shown.
    fn enqueue_shown(self) -> bool {
        matches!(
            self,
            Feature::Plain
                | Feature::Priorities
                | Feature::Keys
                | Feature::Unique
                | Feature::Batches
        )
    }

    /// The queue `name` with this feature's settings (else
    /// [`crate::harness::connect`]'s).
    fn queue(self, name: &str) -> Queue {
        let q = Queue::new(name)
            .max_run_time(Duration::from_secs(60))
            .max_concurrent(1000);
        match self {
            Feature::RateLimit => q.rate_limit(FAR_LIMIT.parse().unwrap()),
            Feature::Keys => q.key_concurrency(1),
            _ => q,
        }
    }

    /// `n` tasks of type `bench` with [`crate::harness::tasks`]'s payload,
    /// built with this feature; `run` makes unique keys unique.
    fn tasks(self, n: usize, run: &str) -> Vec<Task> {
        (0..n)
            .map(|i| {
                let b = Task::builder("bench").payload(&json!({"n": i, "to": "user@example.net"}));
                let b = match self {
                    Feature::Priorities => b.priority((i % 10) as u8),
                    Feature::Keys => b.key(format!("key-{}", i % KEYS)),
                    Feature::Unique => b.unique(format!("bench-{run}-{i}")),
                    _ => b,
                };
                b.build().unwrap()
            })
            .collect()
    }

    /// The worker's router: [`noop_router`], with a progress report for
    /// the progress row.
    fn router(self, done: Arc<Done>) -> Router {
        if self != Feature::Progress {
            return noop_router(done);
        }
        Router::new()
            .handle("bench", move |ctx: TaskContext, _t: Task| {
                let done = done.clone();
                async move {
                    ctx.progress(50, "half")?;
                    done.add();
                    asyncjobs::handler::to_output(&())
                }
            })
            .unwrap()
    }

    /// Enqueues `ts` as a user of this feature would.
    async fn enqueue(self, client: &Client, ts: &mut [Task]) {
        if self == Feature::Batches {
            for chunk in ts.chunks_mut(BATCH) {
                client.enqueue_batch(chunk, None).await.unwrap();
            }
            return;
        }
        for chunk in ts.chunks_mut(10_000) {
            for r in client.enqueue_many(chunk).await {
                r.unwrap();
            }
        }
    }
}

/// One run: enqueue tasks/s, processing tasks/s, client and server CPU
/// µs per task of the processing.
struct Sample {
    enqueue: f64,
    rate: f64,
    cpu: f64,
    server: Option<f64>,
}

/// `f` on a new queue `name`: `--tasks` enqueued (timed), then processed
/// at concurrency 100 (timed); `run` goes into unique keys.
async fn measure(url: &str, opts: &Opts, name: &str, run: &str, f: Feature) -> Sample {
    let mut b = Client::builder().url(url).queue(f.queue(name));
    if opts.memory {
        b = b.memory_storage();
    }
    let client = b.build().await.expect("client");
    let mut ts = f.tasks(opts.tasks, run);
    let started = Instant::now();
    f.enqueue(&client, &mut ts).await;
    let enqueue = opts.tasks as f64 / started.elapsed().as_secs_f64();
    let ids: Vec<String> = ts.iter().map(|t| t.id.clone()).collect();
    let done = Done::new(opts.tasks);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let span = cpu::Span::start();
    let worker = spawn_worker(
        url,
        name,
        CONCURRENCY,
        opts.handler_threads,
        f.router(done.clone()),
        stop.clone(),
    );
    done.reached().await;
    wait_drained(&client, name, opts.tasks).await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    span.finish(opts.tasks);
    let (cpu, server) = cpu::take();
    stop.cancel();
    worker.await.unwrap();
    assert_eq!(done.count(), opts.tasks, "{name}: handlers run");
    verify_complete(&client, name, &ids).await;
    cleanup(&client, name).await;
    Sample {
        enqueue,
        rate,
        cpu,
        server,
    }
}

/// Rounded to 0.1 (`null` without samples).
fn rounded(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |m| json!((m * 10.0).round() / 10.0))
}

fn median(v: &[f64]) -> Option<f64> {
    stats(v).map(|s| s.1)
}

/// `median [min..max]`, or `-`, right-aligned in 24 columns.
fn cell(v: &[f64]) -> String {
    let text = match stats(v) {
        Some((lo, mid, hi)) => format!("{mid:.0} [{lo:.0}..{hi:.0}]"),
        None => "-".into(),
    };
    format!("{text:>24}")
}

/// Every feature, `reps` times, each repetition between two plain runs:
/// rows on stderr, figures in `extra` under `features`.
pub async fn report(url: &str, opts: &Opts, reps: usize, extra: &mut Map<String, Value>) {
    // unique keys of this run: a server given by --server may hold older ones
    let run = format!("{}-{}", std::process::id(), asyncjobs::task::new_id());
    // per repetition: a sample per feature, then the last plain run
    let mut samples: Vec<Vec<Sample>> = Vec::new();
    // a plain run thrown away: the first run after the server's start is
    // the slowest, and would make the plain rate of the first repetition
    // a mean of two unlike runs
    measure(url, opts, "BENCH_FEAT_WARM", &run, Feature::Plain).await;
    for rep in 0..reps {
        let mut row = Vec::new();
        for (i, (f, ..)) in FEATURES.iter().enumerate() {
            let name = format!("BENCH_FEAT{i}_{rep}");
            row.push(measure(url, opts, &name, &format!("{run}-{rep}"), *f).await);
        }
        let name = format!("BENCH_FEAT{}_{rep}", FEATURES.len());
        row.push(measure(url, opts, &name, &run, Feature::Plain).await);
        samples.push(row);
    }
    // the plain rate and enqueue rate of each repetition: the mean of its
    // first and last runs
    let plain =
        |r: &Vec<Sample>, of: fn(&Sample) -> f64| (of(&r[0]) + of(&r[FEATURES.len()])) / 2.0;
    eprintln!(
        "features: {} tasks enqueued, then processed at c{CONCURRENCY}; ratios paired with the plain \
         queue of the same repetition (mean of its first and last run; plain's own: last/first)",
        opts.tasks
    );
    eprintln!(
        "{:<22} {:>24} {:>9} {:>7} {:>10} {:>10} | {:>24} {:>9} {:>7} | needs",
        "feature",
        "processing/s",
        "plain/s",
        "ratio",
        "client µs",
        "server µs",
        "enqueue/s",
        "plain/s",
        "ratio"
    );
    let mut out = Map::new();
    for (k, (f, name, key, needs)) in FEATURES.iter().enumerate() {
        let col = |of: fn(&Sample) -> f64| samples.iter().map(|r| of(&r[k])).collect::<Vec<_>>();
        let rates = col(|s| s.rate);
        let enqueues = col(|s| s.enqueue);
        let cpus = col(|s| s.cpu);
        let servers: Vec<f64> = samples.iter().filter_map(|r| r[k].server).collect();
        let plain_rates: Vec<f64> = samples.iter().map(|r| plain(r, |s| s.rate)).collect();
        let plain_enqueues: Vec<f64> = samples.iter().map(|r| plain(r, |s| s.enqueue)).collect();
        let (ratios, enqueue_ratios): (Vec<f64>, Vec<f64>) = if *f == Feature::Plain {
            samples
                .iter()
                .map(|r| {
                    (
                        r[FEATURES.len()].rate / r[0].rate,
                        r[FEATURES.len()].enqueue / r[0].enqueue,
                    )
                })
                .unzip()
        } else {
            samples
                .iter()
                .map(|r| {
                    (
                        r[k].rate / plain(r, |s| s.rate),
                        r[k].enqueue / plain(r, |s| s.enqueue),
                    )
                })
                .unzip()
        };
        let pct = |v: &[f64]| median(v).map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
        let us = |v: &[f64]| median(v).map_or("-".into(), |m| format!("{m:.0}"));
        let enqueue_cells = if f.enqueue_shown() {
            format!(
                "{} {:>9.0} {:>7}",
                cell(&enqueues),
                median(&plain_enqueues).unwrap_or(0.0),
                pct(&enqueue_ratios)
            )
        } else {
            format!("{:>24} {:>9} {:>7}", "-", "-", "-")
        };
        eprintln!(
            "{name:<22} {} {:>9.0} {:>7} {:>10} {:>10} | {enqueue_cells} | {needs}",
            cell(&rates),
            median(&plain_rates).unwrap_or(0.0),
            pct(&ratios),
            us(&cpus),
            us(&servers),
        );
        let mut o = Map::new();
        o.insert("per_sec".into(), rounded(median(&rates)));
        o.insert("plain_per_sec".into(), rounded(median(&plain_rates)));
        o.insert(
            "ratio_to_plain".into(),
            json!(median(&ratios).map(|r| (r * 1000.0).round() / 1000.0)),
        );
        o.insert("client_cpu_us_per_task".into(), rounded(median(&cpus)));
        o.insert("server_cpu_us_per_task".into(), rounded(median(&servers)));
        if f.enqueue_shown() {
            o.insert("enqueue_per_sec".into(), rounded(median(&enqueues)));
            o.insert(
                "plain_enqueue_per_sec".into(),
                rounded(median(&plain_enqueues)),
            );
            o.insert(
                "enqueue_ratio_to_plain".into(),
                json!(median(&enqueue_ratios).map(|r| (r * 1000.0).round() / 1000.0)),
            );
        }
        o.insert("needs".into(), json!(needs));
        out.insert((*key).into(), Value::Object(o));
    }
    extra.insert("features".into(), Value::Object(out));
}
