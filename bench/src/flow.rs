//! Flow control (docs/processing.md §2.21, §2.22, §2.24), `--flow`:
//!
//! - **priority**: the wait of a priority-9 task enqueued behind
//!   `--flow-backlog` priority-0 tasks, against one task's run time;
//! - **fairness**: tenant A enqueues `--flow-tenant` tasks, then tenant B
//!   10; how long B's tasks wait, with keys (fair turns) and without;
//! - **rate**: a rate limit of `--flow-rate`/s over 3 worker processes:
//!   the start rate the server's `active` events show over
//!   `--flow-rate-secs`; and processing at concurrency 100 under a limit
//!   far above capacity beside the unlimited queue (paired).

use crate::framework::spawn_worker;
use crate::harness::{cleanup, connect, noop_router, tasks, Done};
use crate::opts::Opts;
use asyncjobs::{Client, Queue, RateLimit, Router, Task, TaskContext};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long one task of the priority measurement runs.
const RUN: Duration = Duration::from_millis(2);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Enqueues `ts` in chunks of 10,000 (`enqueue_many` each).
async fn enqueue_all(client: &Client, ts: &mut [Task]) {
    for chunk in ts.chunks_mut(10_000) {
        for r in client.enqueue_many(chunk).await {
            r.unwrap();
        }
    }
}

/// When each named task's handler started; the others just count.
#[derive(Default)]
struct Starts {
    at: Mutex<Vec<(String, Instant)>>,
}

/// A `bench` handler that runs `run`, counts in `done`, and records the
/// start of tasks whose payload is a string (the ones a measurement
/// follows).
fn watching_router(done: Arc<Done>, starts: Arc<Starts>, run: Duration) -> Router {
    Router::new()
        .handle("bench", move |_ctx: TaskContext, t: Task| {
            if let Ok(name) = t.payload_as::<String>() {
                starts.at.lock().unwrap().push((name, Instant::now()));
            }
            done.add();
            async move {
                if !run.is_zero() {
                    tokio::time::sleep(run).await;
                }
                asyncjobs::handler::to_output(&())
            }
        })
        .unwrap()
}

async fn started(starts: &Starts, name: &str) -> Instant {
    loop {
        if let Some((_, t)) = starts.at.lock().unwrap().iter().find(|(n, _)| n == name) {
            return *t;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The wait (ms) of a task of `priority` enqueued behind `backlog`
/// priority-0 tasks, with a worker of concurrency 10 running them.
async fn priority_wait(url: &str, opts: &Opts, rep: usize, priority: u8) -> f64 {
    let q = format!("BENCH_PRIO_{rep}_{priority}");
    let client = connect(url, &q, opts).await;
    enqueue_all(&client, &mut tasks(opts.flow_backlog)).await;
    let done = Done::new(usize::MAX);
    let starts = Arc::new(Starts::default());
    let stop = CancellationToken::new();
    let worker = spawn_worker(
        url,
        &q,
        10,
        opts.handler_threads,
        watching_router(done.clone(), starts.clone(), RUN),
        stop.clone(),
    );
    while done.count() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut high = Task::builder("bench")
        .payload(&"high")
        .priority(priority)
        .build()
        .unwrap();
    let t0 = Instant::now();
    client.enqueue(&mut high).await.unwrap();
    let wait = started(&starts, "high").await - t0;
    stop.cancel();
    worker.await.unwrap();
    cleanup(&client, &q).await;
    wait.as_secs_f64() * 1000.0
}

/// Tenant A's `--flow-tenant` tasks, then tenant B's 10: B's median and
/// longest wait (ms) from its enqueue to its start, and A's rate (tasks/s)
/// before B arrives; `keyed` gives the tasks their tenant's key.
async fn tenant_waits(url: &str, opts: &Opts, keyed: bool) -> (f64, f64, f64) {
    let q = format!("BENCH_FAIR_{}", if keyed { "KEYS" } else { "PLAIN" });
    let client = connect(url, &q, opts).await;
    let mut a: Vec<Task> = (0..opts.flow_tenant)
        .map(|i| {
            let b = Task::builder("bench").payload(&json!({ "n": i }));
            if keyed { b.key("tenant-a") } else { b }.build().unwrap()
        })
        .collect();
    enqueue_all(&client, &mut a).await;
    let done = Done::new(usize::MAX);
    let starts = Arc::new(Starts::default());
    let stop = CancellationToken::new();
    let worker = spawn_worker(
        url,
        &q,
        100,
        opts.handler_threads,
        watching_router(done.clone(), starts.clone(), Duration::ZERO),
        stop.clone(),
    );
    // A's rate from its 500th to its 2,500th task (the worker warmed up,
    // before B arrives: B's window is too short to rate A by)
    while done.count() < 500 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (a_from, t_a) = (done.count(), Instant::now());
    while done.count() < 2500 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let a_rate = (done.count() - a_from) as f64 / t_a.elapsed().as_secs_f64();
    let mut sent = Vec::new();
    for i in 0..10 {
        let name = format!("b-{i}");
        let b = Task::builder("bench").payload(&name);
        let mut t = if keyed { b.key("tenant-b") } else { b }.build().unwrap();
        sent.push((name, Instant::now()));
        client.enqueue(&mut t).await.unwrap();
    }
    let mut waits = Vec::new();
    for (name, at) in &sent {
        waits.push((started(&starts, name).await - *at).as_secs_f64() * 1000.0);
    }
    stop.cancel();
    worker.await.unwrap();
    cleanup(&client, &q).await;
    let longest = waits.iter().copied().fold(0.0, f64::max);
    (median(waits), longest, a_rate)
}

/// Starts per second over `--flow-rate-secs` of a queue limited to
/// `--flow-rate`/s, served by three worker processes (concurrency 50
/// each), from the server's `active` events.
async fn rate_over_processes(url: &str, opts: &Opts) -> (f64, usize) {
    let q = "BENCH_RATE";
    let limit: RateLimit = format!("{}/s", opts.flow_rate).parse().unwrap();
    let client = Client::builder()
        .url(url)
        .queue(
            Queue::new(q)
                .max_run_time(Duration::from_secs(60))
                .max_concurrent(1000)
                .rate_limit(limit),
        )
        .build()
        .await
        .unwrap();
    let secs = opts.flow_rate_secs;
    let n = (opts.flow_rate as usize) * (secs as usize + 10) + 1000;
    enqueue_all(&client, &mut tasks(n)).await;
    let nc = client.nats().clone();
    let mut events = nc.subscribe("CHORIA_AJ.E.task_state.>").await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(
            std::process::Command::new(&exe)
                .args(["--child-worker", &format!("rate|{q}|50|{url}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    // warm-up: the workers are running and the limit is reached
    let warm = Instant::now() + Duration::from_secs(3);
    let mut counted = 0usize;
    let mut measuring: Option<Instant> = None;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .ok()
            .flatten()
            .expect("task events flow");
        let active = serde_json::from_slice::<Value>(&ev.payload)
            .map(|v| v["state"] == "active")
            .unwrap_or(false);
        let now = Instant::now();
        match measuring {
            None if now >= warm => measuring = Some(now),
            None => continue,
            Some(start) if now - start >= Duration::from_secs(secs) => break,
            Some(_) => {}
        }
        if active {
            counted += 1;
        }
    }
    let elapsed = measuring.unwrap().elapsed().as_secs_f64();
    nc.publish(format!("bench.release.{q}"), "".into())
        .await
        .unwrap();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    cleanup(&client, q).await;
    (counted as f64 / elapsed, counted)
}

/// `--tasks` processed at concurrency 100, with `limit` on the queue.
async fn process_limited(url: &str, opts: &Opts, rep: usize, limit: Option<RateLimit>) -> f64 {
    let q = format!("BENCH_RL_{rep}_{}", limit.is_some());
    let mut queue = Queue::new(&q)
        .max_run_time(Duration::from_secs(60))
        .max_concurrent(1000);
    if let Some(l) = limit {
        queue = queue.rate_limit(l);
    }
    let mut b = Client::builder().url(url).queue(queue);
    if opts.memory {
        b = b.memory_storage();
    }
    let client = b.build().await.unwrap();
    enqueue_all(&client, &mut tasks(opts.tasks)).await;
    let done = Done::new(opts.tasks);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let worker = spawn_worker(
        url,
        &q,
        100,
        opts.handler_threads,
        noop_router(done.clone()),
        stop.clone(),
    );
    done.reached().await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    worker.await.unwrap();
    cleanup(&client, &q).await;
    rate
}

/// Every flow measurement: lines on stderr and figures in `extra`.
pub async fn report(url: &str, opts: &Opts, reps: usize, extra: &mut Map<String, Value>) {
    // priority
    let waits: Vec<f64> = {
        let mut v = Vec::new();
        for rep in 0..reps {
            v.push(priority_wait(url, opts, rep, 9).await);
        }
        v
    };
    let plain = priority_wait(url, opts, 0, 0).await;
    let high = median(waits);
    eprintln!(
        "priority: a priority-9 task behind {} priority-0 tasks (c10, {} ms each) waits {high:.1} ms \
         (median of {reps}); a priority-0 task: {plain:.0} ms",
        opts.flow_backlog,
        RUN.as_millis()
    );
    extra.insert("flow_priority_wait_ms".into(), json!(high));
    extra.insert("flow_no_priority_wait_ms".into(), json!(plain.round()));

    // fairness
    let (k_med, k_max, k_rate) = tenant_waits(url, opts, true).await;
    let (p_med, p_max, p_rate) = tenant_waits(url, opts, false).await;
    eprintln!(
        "fairness: tenant B's 10 tasks behind tenant A's {}: with keys median {k_med:.1} ms, longest \
         {k_max:.1} ms (A's rate before {k_rate:.0}/s); without keys median {p_med:.0} ms, longest {p_max:.0} ms \
         (A's rate before {p_rate:.0}/s)",
        opts.flow_tenant
    );
    extra.insert("flow_fair_b_wait_ms".into(), json!(k_max));
    extra.insert("flow_unfair_b_wait_ms".into(), json!(p_max.round()));
    extra.insert("flow_fair_a_per_sec".into(), json!(k_rate.round()));
    extra.insert("flow_unfair_a_per_sec".into(), json!(p_rate.round()));

    // rate limit far above capacity, paired with the unlimited queue
    let far: RateLimit = "1000000/s".parse().unwrap();
    let mut ratios = Vec::new();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let w = process_limited(url, opts, rep, Some(far)).await;
        let wo = process_limited(url, opts, rep, None).await;
        ratios.push(w / wo);
        with.push(w);
        without.push(wo);
    }
    let (w, wo, r) = (median(with), median(without), median(ratios));
    eprintln!(
        "rate limit 1000000/s (far above capacity), c100: {w:.0}/s vs unlimited {wo:.0}/s: {:.0}% (paired {:.0}%)",
        w / wo * 100.0,
        r * 100.0
    );
    extra.insert("flow_far_limit_per_sec".into(), json!(w.round()));
    extra.insert("flow_unlimited_per_sec".into(), json!(wo.round()));

    // rate limit over three processes
    let (observed, counted) = rate_over_processes(url, opts).await;
    eprintln!(
        "rate limit {}/s, 3 worker processes: {observed:.1} starts/s over {} s ({counted} starts): {:+.1}%",
        opts.flow_rate,
        opts.flow_rate_secs,
        (observed / opts.flow_rate as f64 - 1.0) * 100.0
    );
    extra.insert("flow_rate_limit".into(), json!(opts.flow_rate));
    extra.insert("flow_rate_observed".into(), json!(observed));
}
