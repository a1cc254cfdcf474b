//! asyncjobs benchmark: the framework beside raw async-nats doing the same
//! JetStream operations, in the same run.
//!
//! `cargo run --release -p asyncjobs-bench -- --help`

mod best;
mod cpu;
mod raw;
mod scaling;
mod server;

use asyncjobs::{Client, Queue, Router, Task, TaskContext};
use clap::Parser;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(about = "Throughput, latency and memory of asyncjobs beside raw JetStream")]
struct Opts {
    /// Use this NATS server instead of starting one (tests purge what they create).
    #[arg(long)]
    server: Option<String>,
    /// Memory storage instead of file storage.
    #[arg(long)]
    memory: bool,
    /// Tasks per throughput measurement.
    #[arg(long, default_value_t = 5000)]
    tasks: usize,
    /// Repetitions of every measurement (min/median/max are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Tasks per second for the latency measurement.
    #[arg(long, default_value_t = 200)]
    latency_rate: u64,
    /// Tasks for the latency measurement.
    #[arg(long, default_value_t = 400)]
    latency_tasks: usize,
    /// Tasks held in flight for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    inflight: usize,
    /// Handler threads of the framework's worker runtime (default: the
    /// CPU cores, as `asyncjobs::main!`; 0: handlers on the worker's thread).
    #[arg(long)]
    handler_threads: Option<usize>,
    /// Framework workers without scheduled waits (their `WORKERS` consumer
    /// stays unfiltered; see the backlog measurement).
    #[arg(long)]
    no_scheduled_waits: bool,
    /// Milliseconds of CPU work per task of the CPU-bound handler measurement.
    #[arg(long, default_value_t = 2)]
    cpu_work_ms: u64,
    /// Tasks of the CPU-bound handler measurement (0 skips it).
    #[arg(long, default_value_t = 2000)]
    cpu_tasks: usize,
    /// Tasks queued for the backlog measurement (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    backlog: usize,
    /// Tasks stored for the listing measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    list_tasks: usize,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
    /// Only one processing measurement, repeated `--reps` times, for a
    /// profiler: `fw-enqueue-batch`, `fw-c10`, `fw-c100`, `fw-e2e`, or the
    /// same with `best-` (prints tasks/s, and client and server CPU µs per
    /// task for the processing ones).
    #[arg(long)]
    only: Option<String>,
    /// Internal: run a worker process for the memory measurement.
    #[arg(long, hide = true)]
    child_worker: Option<String>,
}

/// One measurement's samples: the framework, the best raw client and the
/// raw client with the framework's structure (empty where not measured).
struct Row {
    name: String,
    ours: Vec<f64>,
    best: Vec<f64>,
    structure: Vec<f64>,
}

#[derive(Default)]
struct Results {
    rows: Vec<Row>,
}

fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some((s[0], s[s.len() / 2], s[s.len() - 1]))
}

/// The median of the per-repetition ratios `ours[i] / best[i]`: each
/// repetition measures both sides minutes apart at most, so this ratio is
/// steadier than the ratio of the medians when the machine's speed drifts
/// between repetitions (`None` without paired samples).
fn paired_ratio(ours: &[f64], best: &[f64]) -> Option<f64> {
    if ours.is_empty() || ours.len() != best.len() {
        return None;
    }
    let ratios: Vec<f64> = ours
        .iter()
        .zip(best)
        .filter(|(_, b)| **b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    stats(&ratios).map(|s| s.1)
}

impl Results {
    fn add(
        &mut self,
        name: &str,
        ours: Vec<f64>,
        best: Vec<f64>,
        structure: Vec<f64>,
        unit: &'static str,
    ) {
        let cell = |v: &[f64]| match stats(v) {
            Some((lo, mid, hi)) => format!("{mid:>9.1} [{lo:>8.1}..{hi:>8.1}]"),
            None => format!("{:>29}", "-"),
        };
        let ratio = |v: &[f64]| match (stats(&ours), stats(v)) {
            (Some(a), Some(b)) if b.1 > 0.0 => {
                if unit == "tasks/s" {
                    format!("{:>4.0}%", a.1 / b.1 * 100.0)
                } else {
                    format!("{:>4.2}x", a.1 / b.1)
                }
            }
            _ => "     ".to_string(),
        };
        let paired = match paired_ratio(&ours, &best) {
            Some(r) if unit == "tasks/s" => format!(" (paired {:>3.0}%)", r * 100.0),
            Some(r) => format!(" (paired {r:>4.2}x)"),
            None => String::new(),
        };
        eprintln!(
            "{name:<28} {} | best raw {} {}{paired} | raw as framework {} {} {unit}",
            cell(&ours),
            cell(&best),
            ratio(&best),
            cell(&structure),
            ratio(&structure),
        );
        self.rows.push(Row {
            name: name.to_string(),
            ours,
            best,
            structure,
        });
    }

    /// Medians of the framework, best raw and structural raw samples.
    fn medians(&self, name: &str) -> [Option<f64>; 3] {
        let r = self.rows.iter().find(|r| r.name == name).expect("measured");
        [&r.ours, &r.best, &r.structure].map(|v| stats(v).map(|s| s.1))
    }

    /// [`paired_ratio`] of the framework and the best raw client.
    fn paired(&self, name: &str) -> Option<f64> {
        let r = self.rows.iter().find(|r| r.name == name).expect("measured");
        paired_ratio(&r.ours, &r.best)
    }
}

async fn connect(url: &str, queue: &str, opts: &Opts) -> Client {
    let mut b = Client::builder().url(url).queue(
        Queue::new(queue)
            .max_run_time(Duration::from_secs(60))
            .max_concurrent(1000),
    );
    if opts.memory {
        b = b.memory_storage();
    }
    b.build().await.expect("client")
}

fn tasks(n: usize) -> Vec<Task> {
    (0..n)
        .map(|i| {
            Task::new(
                "bench",
                &serde_json::json!({"n": i, "to": "user@example.net"}),
            )
            .unwrap()
        })
        .collect()
}

async fn cleanup(client: &Client, queue: &str) {
    let _ = client.delete_queue(queue).await;
    let _ = client.purge_tasks().await;
}

/// Tasks finished in a measurement, and a wake-up when the target count
/// is reached: the timed section waits for it without polling (a poll
/// loop costs CPU and, through `queue_info`, server requests, which
/// would be charged to the side being measured).
pub(crate) struct Done {
    count: AtomicU64,
    target: u64,
    reached: tokio::sync::Notify,
}

impl Done {
    pub(crate) fn new(target: usize) -> Arc<Done> {
        Arc::new(Done {
            count: AtomicU64::new(0),
            target: target as u64,
            reached: tokio::sync::Notify::new(),
        })
    }

    /// Counts one finished task.
    pub(crate) fn add(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            // stores a permit when nobody waits yet
            self.reached.notify_one();
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    /// Returns once the target count is reached.
    pub(crate) async fn reached(&self) {
        if self.count() as u64 >= self.target {
            return;
        }
        self.reached.notified().await;
    }
}

/// A router whose `bench` handler does nothing but count.
fn noop_router(done: Arc<Done>) -> Router {
    Router::new()
        .handle("bench", move |_ctx: TaskContext, _t: Task| {
            done.add();
            async move { asyncjobs::handler::to_output(&()) }
        })
        .unwrap()
}

/// Waits until `queue` holds no items (every task acknowledged).
async fn wait_drained(client: &Client, queue: &str, expect: usize) {
    let started = Instant::now();
    loop {
        let info = client.queue_info(queue).await.unwrap();
        if info.stream.messages == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "queue {queue} still has {} of {expect} items",
            info.stream.messages
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every task complete and the queue empty: checked after each run.
async fn verify_complete(client: &Client, queue: &str, ids: &[String]) {
    assert_eq!(
        client.queue_info(queue).await.unwrap().stream.messages,
        0,
        "queue {queue} not empty"
    );
    for id in ids {
        let t = client.load_task(id).await.unwrap();
        assert_eq!(
            t.state,
            asyncjobs::TaskState::Complete,
            "task {id} is {}",
            t.state
        );
    }
}

/// `Client::enqueue` one task after another, on a current-thread
/// runtime of its own (the producer's runtime is the user's; this is the
/// flavour the best raw client uses).
async fn fw_enqueue_seq(url: &str, opts: &Opts, rep: usize) -> f64 {
    let q = format!("BENCH_ES_{rep}");
    let client = connect(url, &q, opts).await;
    let ts = tasks(opts.tasks);
    let (url2, q2) = (url.to_string(), q.clone());
    let rate = on_current_thread(move || async move {
        let client = producer(&url2, &q2).await;
        let started = Instant::now();
        for mut t in ts {
            client.enqueue(&mut t).await.unwrap();
        }
        started.elapsed()
    })
    .await;
    let rate = opts.tasks as f64 / rate.as_secs_f64();
    assert_eq!(
        client.queue_info(&q).await.unwrap().stream.messages as usize,
        opts.tasks
    );
    cleanup(&client, &q).await;
    rate
}

/// A producer's client of `queue` (bound, as the queue exists).
async fn producer(url: &str, queue: &str) -> Client {
    Client::builder()
        .url(url)
        .bind_queue(queue)
        .build()
        .await
        .expect("producer client")
}

/// `Client::enqueue_many`, on a current-thread runtime of its own.
async fn fw_enqueue_batch(url: &str, opts: &Opts, rep: usize) -> f64 {
    let q = format!("BENCH_EB_{rep}");
    let client = connect(url, &q, opts).await;
    let mut ts = tasks(opts.tasks);
    let (url2, q2) = (url.to_string(), q.clone());
    let elapsed = on_current_thread(move || async move {
        let client = producer(&url2, &q2).await;
        let started = Instant::now();
        for r in client.enqueue_many(&mut ts).await {
            r.unwrap();
        }
        started.elapsed()
    })
    .await;
    let rate = opts.tasks as f64 / elapsed.as_secs_f64();
    assert_eq!(
        client.queue_info(&q).await.unwrap().stream.messages as usize,
        opts.tasks
    );
    cleanup(&client, &q).await;
    rate
}

/// Runs `make()`'s future on a new thread with a current-thread runtime
/// (the flavour the best raw client runs on), from async code.
pub(crate) async fn on_current_thread<F, Fut, T>(make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("current-thread runtime")
            .block_on(make())
    })
    .await
    .expect("benchmark thread")
}

/// `--no-scheduled-waits`: framework workers wait by NAK (Go's way) and
/// leave the `WORKERS` consumer unfiltered.
static NO_SCHEDULED_WAITS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// A framework worker as `asyncjobs::main!` runs it: on a
/// [`WorkerThreads`](asyncjobs::program::WorkerThreads) of its own (a
/// current-thread runtime for the worker, a pool of `handler_threads`
/// for the handlers), bound to `queue`, until `stop`.
fn spawn_fw_worker(
    url: &str,
    queue: &str,
    concurrency: usize,
    handler_threads: Option<usize>,
    router: Router,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (url, queue) = (url.to_string(), queue.to_string());
    let no_scheduled_waits = NO_SCHEDULED_WAITS.load(Ordering::Relaxed);
    tokio::task::spawn_blocking(move || {
        let rt = asyncjobs::program::WorkerThreads::new(handler_threads).expect("worker runtime");
        let pool = rt.handlers();
        rt.block_on(async move {
            let client = Client::builder()
                .url(url)
                .bind_queue(queue)
                .build()
                .await
                .expect("worker client");
            let mut worker = client.worker(router).concurrency(concurrency);
            if no_scheduled_waits {
                worker = worker.scheduled_waits(false);
            }
            if let Some(pool) = pool {
                worker = worker.handler_pool(pool);
            }
            worker.run(stop).await.expect("worker");
        })
    })
}

async fn fw_process(url: &str, opts: &Opts, rep: usize, concurrency: usize) -> f64 {
    let q = format!("BENCH_P{concurrency}_{rep}");
    let client = connect(url, &q, opts).await;
    let mut ts = tasks(opts.tasks);
    for r in client.enqueue_many(&mut ts).await {
        r.unwrap();
    }
    let done = Done::new(opts.tasks);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let cpu = cpu::Span::start();
    let worker = spawn_fw_worker(
        url,
        &q,
        concurrency,
        opts.handler_threads,
        noop_router(done.clone()),
        stop.clone(),
    );
    // every handler has run; then the last outcomes are saved and acked
    done.reached().await;
    wait_drained(&client, &q, opts.tasks).await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    cpu.finish(opts.tasks);
    stop.cancel();
    worker.await.unwrap();
    assert_eq!(done.count(), opts.tasks);
    let ids: Vec<String> = ts.iter().map(|t| t.id.clone()).collect();
    verify_complete(&client, &q, &ids).await;
    cleanup(&client, &q).await;
    rate
}

/// Enqueue (`enqueue_many`) and processing (concurrency 100) at once, both
/// on the worker's runtime and connection (as a handler enqueuing
/// follow-up tasks would).
async fn fw_e2e(url: &str, opts: &Opts, rep: usize) -> f64 {
    let q = format!("BENCH_E2E_{rep}");
    let client = connect(url, &q, opts).await;
    let done = Done::new(opts.tasks);
    let mut ts = tasks(opts.tasks);
    let ids: Vec<String> = ts.iter().map(|t| t.id.clone()).collect();
    let (url2, q2, threads, d) = (
        url.to_string(),
        q.clone(),
        opts.handler_threads,
        done.clone(),
    );
    let started = Instant::now();
    let cpu = cpu::Span::start();
    tokio::task::spawn_blocking(move || {
        let rt = asyncjobs::program::WorkerThreads::new(threads).expect("worker runtime");
        let pool = rt.handlers();
        rt.block_on(async move {
            let client = Client::builder()
                .url(url2)
                .bind_queue(q2)
                .build()
                .await
                .unwrap();
            let stop = CancellationToken::new();
            let mut worker = client.worker(noop_router(d.clone())).concurrency(100);
            if let Some(pool) = pool {
                worker = worker.handler_pool(pool);
            }
            let worker = tokio::spawn(worker.run(stop.clone()));
            for r in client.enqueue_many(&mut ts).await {
                r.unwrap();
            }
            d.reached().await;
            stop.cancel();
            worker.await.unwrap().unwrap();
        })
    })
    .await
    .unwrap();
    wait_drained(&client, &q, opts.tasks).await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    cpu.finish(opts.tasks);
    verify_complete(&client, &q, &ids).await;
    cleanup(&client, &q).await;
    rate
}

/// Enqueue-to-handler-start latencies at a steady light rate, in ms.
async fn fw_latency(url: &str, opts: &Opts, rep: usize) -> (f64, f64) {
    let q = format!("BENCH_LAT_{rep}");
    let client = connect(url, &q, opts).await;
    let sent: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let (s, l) = (sent.clone(), lat.clone());
    let done = Done::new(opts.latency_tasks);
    let d = done.clone();
    let router = Router::new()
        .handle("bench", move |ctx: TaskContext, _t: Task| {
            let now = Instant::now();
            if let Some(t0) = s.lock().unwrap().get(ctx.id()) {
                l.lock()
                    .unwrap()
                    .push(now.duration_since(*t0).as_secs_f64() * 1000.0);
            }
            d.add();
            async move { asyncjobs::handler::to_output(&()) }
        })
        .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(client.worker(router).concurrency(100).run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await; // worker pulling
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.latency_rate as f64));
    for mut t in tasks(opts.latency_tasks) {
        tick.tick().await;
        sent.lock().unwrap().insert(t.id.clone(), Instant::now());
        client.enqueue(&mut t).await.unwrap();
    }
    // as the raw client: no polling while the last tasks are handled
    done.reached().await;
    wait_drained(&client, &q, opts.latency_tasks).await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    cleanup(&client, &q).await;
    let v = lat.lock().unwrap().clone();
    assert_eq!(v.len(), opts.latency_tasks);
    percentiles(v)
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (p(0.50), p(0.99))
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Idle and in-flight RSS of a worker process (framework or raw).
async fn memory(url: &str, opts: &Opts, raw: bool) -> (f64, f64) {
    let q = if raw { "BENCH_MEM_RAW" } else { "BENCH_MEM" };
    let client = connect(url, q, opts).await;
    let mut sub = client
        .nats()
        .subscribe(format!("bench.started.{q}"))
        .await
        .unwrap();
    client.nats().flush().await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--child-worker",
            &format!(
                "{}|{q}|{}|{}",
                if raw { "raw" } else { "fw" },
                opts.inflight,
                url
            ),
        ])
        .spawn()
        .unwrap();
    // ready when it answers
    futures::StreamExt::next(&mut sub).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_mib(child.id());
    let mut ts = tasks(opts.inflight);
    for r in client.enqueue_many(&mut ts).await {
        r.unwrap();
    }
    let nc = client.nats().clone();
    loop {
        let info = client.queue_info(q).await.unwrap();
        if info.ack_pending as usize >= opts.inflight {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let inflight = rss_mib(child.id());
    nc.publish(format!("bench.release.{q}"), "".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    wait_drained(&client, q, opts.inflight).await;
    let _ = child.kill();
    let _ = child.wait();
    cleanup(&client, q).await;
    (idle, inflight)
}

fn child_worker(spec: &str) {
    let mut parts = spec.splitn(4, '|');
    let (kind, q, inflight, url) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parts.next().unwrap().parse::<usize>().unwrap(),
        parts.next().unwrap().to_string(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let nc = async_nats::connect(&url).await.unwrap();
        let release = Arc::new(tokio::sync::Notify::new());
        let mut sub = nc.subscribe(format!("bench.release.{q}")).await.unwrap();
        let r = release.clone();
        tokio::spawn(async move {
            futures::StreamExt::next(&mut sub).await;
            r.notify_waiters();
        });
        nc.publish(format!("bench.started.{q}"), "".into())
            .await
            .unwrap();
        nc.flush().await.unwrap();
        if kind == "raw" {
            raw::hold_inflight(nc, &q, inflight, release).await;
        } else {
            let client = Client::builder()
                .nats_client(nc)
                .bind_queue(q)
                .build()
                .await
                .unwrap();
            let router = Router::new()
                .handle("bench", move |_ctx: TaskContext, _t: Task| {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        asyncjobs::handler::to_output(&())
                    }
                })
                .unwrap();
            client
                .worker(router)
                .concurrency(inflight)
                .run(CancellationToken::new())
                .await
                .unwrap();
        }
    });
}

fn main() {
    let opts = Opts::parse();
    if let Some(spec) = &opts.child_worker {
        child_worker(spec);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(opts));
}

async fn run(opts: Opts) {
    NO_SCHEDULED_WAITS.store(opts.no_scheduled_waits, Ordering::Relaxed);
    let server = match &opts.server {
        Some(_) => None,
        None => Some(server::Server::start(opts.memory)),
    };
    if let Some(s) = &server {
        cpu::set_server_pid(s.pid());
    }
    let url = opts
        .server
        .clone()
        .unwrap_or_else(|| server.as_ref().unwrap().url());
    eprintln!(
        "asyncjobs benchmark: {} tasks x {} reps, {} storage, server {url}",
        opts.tasks,
        opts.reps,
        if opts.memory { "memory" } else { "file" }
    );
    if let Some(only) = &opts.only {
        for rep in 0..opts.reps.max(1) {
            let rate = match only.as_str() {
                "fw-enqueue-batch" => fw_enqueue_batch(&url, &opts, rep).await,
                "best-enqueue-batch" => best::enqueue_pipelined(&url, &opts, rep).await,
                "fw-c10" => fw_process(&url, &opts, rep, 10).await,
                "fw-c100" => fw_process(&url, &opts, rep, 100).await,
                "fw-e2e" => fw_e2e(&url, &opts, rep).await,
                "best-c10" => best::process(&url, &opts, rep, 10).await,
                "best-c100" => best::process(&url, &opts, rep, 100).await,
                "best-e2e" => best::e2e(&url, &opts, rep).await,
                other => panic!("--only {other}: not a measurement"),
            };
            let (client, server) = cpu::take();
            eprintln!(
                "{only}: {rate:.0} tasks/s, client CPU {client:.0} µs/task, server CPU {:.0} µs/task",
                server.unwrap_or(0.0)
            );
        }
        return;
    }
    eprintln!("best raw client: {}", best::CONFIGURATION);
    eprintln!("raw as framework: the framework's structure (multi-thread runtime, a spawn per item, STREAM.MSG.GET loads)");
    let mut res = Results::default();
    let reps = opts.reps.max(1);
    // per rep: [framework, best, structure] for each rate measurement, and
    // (client, server) CPU spans for the processing ones
    let mut rates: Vec<Vec<[f64; 3]>> = Vec::new();
    let mut spans: Vec<Vec<[cpu::PerTask; 3]>> = Vec::new();
    let mut latencies: Vec<[f64; 4]> = Vec::new();
    for rep in 0..reps {
        let mut row = Vec::new();
        row.push([
            fw_enqueue_seq(&url, &opts, rep).await,
            best::enqueue_seq(&url, &opts, rep).await,
            raw::enqueue_seq(&url, &opts, rep).await,
        ]);
        row.push([
            fw_enqueue_batch(&url, &opts, rep).await,
            best::enqueue_pipelined(&url, &opts, rep).await,
            raw::enqueue_pipelined(&url, &opts, rep).await,
        ]);
        let mut cpu_row = Vec::new();
        for concurrency in [10, 100] {
            let ours = fw_process(&url, &opts, rep, concurrency).await;
            let c0 = cpu::take();
            let b = best::process(&url, &opts, rep, concurrency).await;
            let c1 = cpu::take();
            let r = raw::process(&url, &opts, rep, concurrency).await;
            let c2 = cpu::take();
            row.push([ours, b, r]);
            cpu_row.push([c0, c1, c2]);
        }
        let ours = fw_e2e(&url, &opts, rep).await;
        let c0 = cpu::take();
        let b = best::e2e(&url, &opts, rep).await;
        let c1 = cpu::take();
        let r = raw::e2e(&url, &opts, rep).await;
        let c2 = cpu::take();
        row.push([ours, b, r]);
        cpu_row.push([c0, c1, c2]);
        rates.push(row);
        spans.push(cpu_row);
        let (p50, p99) = fw_latency(&url, &opts, rep).await;
        let (rp50, rp99) = raw::latency(&url, &opts, rep).await;
        latencies.push([p50, rp50, p99, rp99]);
    }
    let col = |i: usize, side: usize| rates.iter().map(|r| r[i][side]).collect::<Vec<f64>>();
    for (i, name) in [
        "enqueue (sequential)",
        "enqueue (batch/pipelined)",
        "process c10",
        "process c100",
        "enqueue+process",
    ]
    .into_iter()
    .enumerate()
    {
        res.add(name, col(i, 0), col(i, 1), col(i, 2), "tasks/s");
    }
    // CPU per task over the timed sections: this process (the client:
    // producer and worker) and nats-server
    let client_cpu =
        |k: usize, side: usize| spans.iter().map(|r| r[k][side].0).collect::<Vec<f64>>();
    let server_cpu = |k: usize, side: usize| {
        spans
            .iter()
            .filter_map(|r| r[k][side].1)
            .collect::<Vec<f64>>()
    };
    for (k, name) in ["process c10", "process c100", "enqueue+process"]
        .into_iter()
        .enumerate()
    {
        res.add(
            &format!("{name} client CPU"),
            client_cpu(k, 0),
            client_cpu(k, 1),
            client_cpu(k, 2),
            "µs/task",
        );
        res.add(
            &format!("{name} server CPU"),
            server_cpu(k, 0),
            server_cpu(k, 1),
            server_cpu(k, 2),
            "µs/task",
        );
    }
    let lat = |i: usize| latencies.iter().map(|r| r[i]).collect::<Vec<f64>>();
    res.add("latency p50", lat(0), vec![], lat(1), "ms");
    res.add("latency p99", lat(2), vec![], lat(3), "ms");
    let mut extra = serde_json::Map::new();
    if opts.cpu_tasks > 0 {
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            one.push(scaling::cpu_bound(&url, &opts, rep, 1).await);
            two.push(scaling::cpu_bound(&url, &opts, rep, 2).await);
        }
        let (one, two) = (stats(&one).unwrap().1, stats(&two).unwrap().1);
        let machine = scaling::machine_scaling(opts.cpu_work_ms * 500);
        eprintln!(
            "CPU-bound handler ({} ms/task, c100): 1 handler thread {one:.1} tasks/s, 2 threads {two:.1} tasks/s: {:.2}x \
             (two threads of pure CPU work on this machine: {machine:.2}x one)",
            opts.cpu_work_ms,
            two / one
        );
        extra.insert(
            "machine_two_thread_scaling".into(),
            serde_json::json!((machine * 100.0).round() / 100.0),
        );
        extra.insert(
            "cpu_bound_1_thread_per_sec".into(),
            serde_json::json!(one.round()),
        );
        extra.insert(
            "cpu_bound_2_threads_per_sec".into(),
            serde_json::json!(two.round()),
        );
    }
    if opts.backlog > 0 {
        let empty = scaling::with_backlog(&url, &opts, opts.tasks).await;
        let full = scaling::with_backlog(&url, &opts, opts.backlog).await;
        let best_empty = best::process_from(&url, &opts, "BEST_BACKLOG_E", 100, opts.tasks).await;
        let best_full = best::process_from(&url, &opts, "BEST_BACKLOG_F", 100, opts.backlog).await;
        eprintln!(
            "process c100, first {} tasks: empty queue {empty:.1} tasks/s, {} queued {full:.1} tasks/s: {:.0}% \
             (best raw: {best_empty:.1} and {best_full:.1} tasks/s: {:.0}%)",
            opts.tasks,
            opts.backlog,
            full / empty * 100.0,
            best_full / best_empty * 100.0
        );
        extra.insert(
            "backlog_empty_per_sec".into(),
            serde_json::json!(empty.round()),
        );
        extra.insert(
            "backlog_full_per_sec".into(),
            serde_json::json!(full.round()),
        );
    }
    if opts.list_tasks > 0 {
        let l = scaling::listing(&url, &opts, opts.list_tasks).await;
        eprintln!(
            "listing {} stored tasks: Client::list_tasks {:.2} s, peak RSS +{:.1} MiB{}",
            l.stored,
            l.client_secs,
            l.client_peak_mib,
            match l.ajc {
                Some((secs, mib)) => format!("; `ajc task ls --state expired` (scans all) {secs:.2} s, peak RSS {mib:.1} MiB"),
                None => String::new(),
            }
        );
        extra.insert("list_secs".into(), serde_json::json!(l.client_secs));
        extra.insert("list_peak_mib".into(), serde_json::json!(l.client_peak_mib));
    }
    let (idle, inflight) = memory(&url, &opts, false).await;
    let (ridle, rinflight) = memory(&url, &opts, true).await;
    res.add("worker RSS idle", vec![idle], vec![], vec![ridle], "MiB");
    let inflight_name = format!("worker RSS {} in flight", opts.inflight);
    res.add(
        &inflight_name,
        vec![inflight],
        vec![],
        vec![rinflight],
        "MiB",
    );
    if opts.json {
        let mut out = serde_json::Map::new();
        for (key, name) in [
            ("enqueue_per_sec", "enqueue (sequential)"),
            ("enqueue_batch_per_sec", "enqueue (batch/pipelined)"),
            ("process_c10_per_sec", "process c10"),
            ("process_c100_per_sec", "process c100"),
            ("e2e_per_sec", "enqueue+process"),
            ("latency_p50_ms", "latency p50"),
            ("latency_p99_ms", "latency p99"),
            ("rss_idle_mib", "worker RSS idle"),
            ("rss_inflight_mib", inflight_name.as_str()),
            ("process_c10_client_cpu_us", "process c10 client CPU"),
            ("process_c100_client_cpu_us", "process c100 client CPU"),
            ("e2e_client_cpu_us", "enqueue+process client CPU"),
            ("process_c10_server_cpu_us", "process c10 server CPU"),
            ("process_c100_server_cpu_us", "process c100 server CPU"),
            ("e2e_server_cpu_us", "enqueue+process server CPU"),
        ] {
            for (prefix, median) in ["", "best_", "raw_"].into_iter().zip(res.medians(name)) {
                if let Some(m) = median {
                    out.insert(
                        format!("{prefix}{key}"),
                        serde_json::json!((m * 100.0).round() / 100.0),
                    );
                }
            }
            if let Some(r) = res.paired(name) {
                out.insert(
                    format!("paired_ratio_{key}"),
                    serde_json::json!((r * 1000.0).round() / 1000.0),
                );
            }
        }
        out.extend(extra);
        out.insert("tasks".into(), opts.tasks.into());
        out.insert("reps".into(), reps.into());
        out.insert(
            "storage".into(),
            if opts.memory { "memory" } else { "file" }.into(),
        );
        println!("{}", serde_json::Value::Object(out));
    }
    drop(server);
}
