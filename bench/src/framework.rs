//! The framework's measurements: enqueueing (one by one and batched),
//! processing at concurrency 10 and 100, enqueue and processing at once,
//! and latency, each through the public `asyncjobs` API as a user's
//! producer and `asyncjobs::main!` worker would run it.

use crate::cpu;
use crate::harness::{
    cleanup, connect, noop_router, on_current_thread, producer, tasks, verify_complete,
    wait_drained, Done,
};
use crate::opts::Opts;
use crate::report::percentiles;
use asyncjobs::{Client, Router, Task, TaskContext};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// `Client::enqueue` one task after another, on a current-thread
/// runtime of its own (the producer's runtime is the user's; this is the
/// flavour the best raw client uses).
pub async fn enqueue_seq(url: &str, opts: &Opts, rep: usize) -> f64 {
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

/// `Client::enqueue_many`, on a current-thread runtime of its own.
pub async fn enqueue_batch(url: &str, opts: &Opts, rep: usize) -> f64 {
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

/// `--no-scheduled-waits`: framework workers wait by NAK (Go's way) and
/// leave the `WORKERS` consumer unfiltered.
static NO_SCHEDULED_WAITS: AtomicBool = AtomicBool::new(false);

/// Sets `--no-scheduled-waits` for every framework worker of the run.
pub fn set_no_scheduled_waits(on: bool) {
    NO_SCHEDULED_WAITS.store(on, Ordering::Relaxed);
}

/// A framework worker as `asyncjobs::main!` runs it: on a
/// [`WorkerThreads`](asyncjobs::program::WorkerThreads) of its own (a
/// current-thread runtime for the worker, a pool of `handler_threads`
/// for the handlers), bound to `queue`, until `stop`.
pub fn spawn_worker(
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
                .replicas(crate::replicas::get())
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

/// `--tasks` queued tasks processed by a worker of `concurrency`, in
/// tasks/s (its CPU span is left for [`cpu::take`]).
pub async fn process(url: &str, opts: &Opts, rep: usize, concurrency: usize) -> f64 {
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
    let worker = spawn_worker(
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
/// follow-up tasks would). Timed until the last handler has run and the
/// queue is drained, as the best raw client is: the worker's shutdown
/// comes after the clock (until 2026-12-08 it was inside it, which cost
/// this row up to a third at 5,000 tasks).
pub async fn e2e(url: &str, opts: &Opts, rep: usize) -> f64 {
    let q = format!("BENCH_E2E_{rep}");
    let client = connect(url, &q, opts).await;
    let done = Done::new(opts.tasks);
    let mut ts = tasks(opts.tasks);
    let ids: Vec<String> = ts.iter().map(|t| t.id.clone()).collect();
    let stop = CancellationToken::new();
    let (url2, q2, threads, d, stop2) = (
        url.to_string(),
        q.clone(),
        opts.handler_threads,
        done.clone(),
        stop.clone(),
    );
    let started = Instant::now();
    let cpu = cpu::Span::start();
    let mut running = tokio::task::spawn_blocking(move || {
        let rt = asyncjobs::program::WorkerThreads::new(threads).expect("worker runtime");
        let pool = rt.handlers();
        rt.block_on(async move {
            let client = Client::builder()
                .url(url2)
                .replicas(crate::replicas::get())
                .bind_queue(q2)
                .build()
                .await
                .unwrap();
            let mut worker = client.worker(noop_router(d)).concurrency(100);
            if let Some(pool) = pool {
                worker = worker.handler_pool(pool);
            }
            let worker = tokio::spawn(worker.run(stop2.clone()));
            for r in client.enqueue_many(&mut ts).await {
                r.unwrap();
            }
            stop2.cancelled().await;
            worker.await.unwrap().unwrap();
        })
    });
    tokio::select! {
        _ = done.reached() => {}
        // an enqueue or the worker failed: its panic, not a hang
        r = &mut running => panic!("the worker's thread ended before every task ran: {r:?}"),
    }
    wait_drained(&client, &q, opts.tasks).await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    cpu.finish(opts.tasks);
    stop.cancel();
    running.await.unwrap();
    verify_complete(&client, &q, &ids).await;
    cleanup(&client, &q).await;
    rate
}

/// Enqueue-to-handler-start latencies at a steady light rate, in ms.
pub async fn latency(url: &str, opts: &Opts, rep: usize) -> (f64, f64) {
    let q = format!("BENCH_LAT_{rep}");
    let client = connect(url, &q, opts).await;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
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
