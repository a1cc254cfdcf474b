//! How the framework scales with cores and with the work: a CPU-bound
//! handler on 1 and on 2 handler threads, processing with a large backlog
//! against an empty queue, and listing a large task store; each with the
//! line it prints and its figures of the `--json` summary (`report_*`).

use crate::best;
use crate::framework::spawn_worker;
use crate::harness::{cleanup, connect, noop_router, tasks, wait_drained, Done};
use crate::opts::Opts;
use crate::report::stats;
use asyncjobs::{Router, Task, TaskContext};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Rounds of [`spin`] per millisecond of one core, measured once.
fn rounds_per_ms() -> u64 {
    static ROUNDS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ROUNDS.get_or_init(|| {
        let started = Instant::now();
        spin(2_000_000);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        (2_000_000.0 / ms) as u64
    })
}

/// Pure CPU work: `rounds` of integer mixing.
fn spin(rounds: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..rounds {
        x = black_box(x.rotate_left(7) ^ i).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    }
    x
}

/// How much faster two threads of pure CPU work run than one on this
/// machine (each thread spinning `ms` milliseconds' worth): the bound for
/// the CPU-bound handler's scaling.
pub fn machine_scaling(ms: u64) -> f64 {
    let rounds = rounds_per_ms() * ms;
    let one = {
        let started = Instant::now();
        black_box(spin(rounds));
        started.elapsed().as_secs_f64()
    };
    let two = {
        let started = Instant::now();
        let others: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(move || black_box(spin(rounds))))
            .collect();
        for t in others {
            t.join().unwrap();
        }
        started.elapsed().as_secs_f64()
    };
    2.0 * one / two
}

/// Tasks/s of a handler doing `opts.cpu_work_ms` of CPU work per task,
/// concurrency 100, on `handler_threads` handler threads.
pub async fn cpu_bound(url: &str, opts: &Opts, rep: usize, handler_threads: usize) -> f64 {
    let q = format!("BENCH_CPU{handler_threads}_{rep}");
    let client = connect(url, &q, opts).await;
    let n = opts.cpu_tasks;
    let mut ts = tasks(n);
    for r in client.enqueue_many(&mut ts).await {
        r.unwrap();
    }
    let rounds = rounds_per_ms() * opts.cpu_work_ms;
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let router = Router::new()
        .handle("bench", move |_ctx: TaskContext, _t: Task| {
            let c = c.clone();
            async move {
                black_box(spin(rounds));
                c.fetch_add(1, Ordering::Relaxed);
                asyncjobs::handler::to_output(&())
            }
        })
        .unwrap();
    let stop = CancellationToken::new();
    let worker = spawn_worker(url, &q, 100, Some(handler_threads), router, stop.clone());
    // timed from the first completion: the worker's start (connection,
    // consumer, reconcile pass) is the same for any number of threads and
    // would weigh more on the shorter run
    while count.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (started, first) = (Instant::now(), count.load(Ordering::Relaxed));
    while (count.load(Ordering::Relaxed) as usize) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = (n as u64 - first) as f64 / started.elapsed().as_secs_f64();
    wait_drained(&client, &q, n).await;
    stop.cancel();
    worker.await.unwrap();
    assert_eq!(count.load(Ordering::Relaxed) as usize, n);
    cleanup(&client, &q).await;
    rate
}

/// Tasks/s processing `opts.tasks` tasks at concurrency 100 from a queue
/// that holds `backlog` tasks in all (the first `opts.tasks` are timed).
pub async fn with_backlog(url: &str, opts: &Opts, backlog: usize) -> f64 {
    let q = format!("BENCH_BACKLOG_{backlog}");
    let client = connect(url, &q, opts).await;
    let n = opts.tasks.min(backlog);
    for chunk in (0..backlog).collect::<Vec<_>>().chunks(10_000) {
        let mut ts = tasks(chunk.len());
        for r in client.enqueue_many(&mut ts).await {
            r.unwrap();
        }
    }
    let done = Done::new(n);
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
    let rate = n as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    worker.await.unwrap();
    if backlog == n {
        wait_drained(&client, &q, n).await;
    }
    cleanup(&client, &q).await;
    rate
}

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the peak resident memory to the current (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// What listing a store of `stored` tasks costs.
pub struct Listing {
    pub stored: usize,
    /// `Client::list_tasks` over every task: seconds, and the growth of
    /// this process's peak RSS while it ran (MiB).
    pub client_secs: f64,
    pub client_peak_mib: f64,
    /// `ajc task ls` (default limit) as a process: seconds and peak RSS
    /// (MiB), when the `ajc` binary sits beside this one.
    pub ajc: Option<(f64, f64)>,
}

/// Fills the task store with `stored` tasks, then lists them.
pub async fn listing(url: &str, opts: &Opts, stored: usize) -> Listing {
    let q = "BENCH_LIST";
    let client = connect(url, q, opts).await;
    for chunk in (0..stored).collect::<Vec<_>>().chunks(10_000) {
        let mut ts = tasks(chunk.len());
        for r in client.enqueue_many(&mut ts).await {
            r.unwrap();
        }
    }
    // the tasks stay stored; their work items are not needed
    client.purge_queue(q).await.unwrap();
    reset_peak_rss();
    let before = peak_rss_mib();
    let started = Instant::now();
    let mut listed = 0usize;
    let mut all = client.list_tasks(usize::MAX).await.unwrap();
    while let Some(t) = all.next().await {
        t.unwrap();
        listed += 1;
    }
    let client_secs = started.elapsed().as_secs_f64();
    let client_peak_mib = peak_rss_mib() - before;
    assert_eq!(listed, stored);
    let ajc = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("ajc")))
        .filter(|p| p.exists())
        .map(|ajc| run_ajc_ls(&ajc, url));
    cleanup(&client, q).await;
    Listing {
        stored,
        client_secs,
        client_peak_mib,
        ajc,
    }
}

/// Seconds and peak RSS (MiB) of `ajc task ls --state expired` (a scan
/// of every record that matches none) against `url`.
///
/// The peak is the child's own `VmHWM`, sampled every 2 ms until it exits:
/// `wait4`'s `ru_maxrss` would not do, since Linux carries the parent's
/// high-water mark across fork and exec into the child's figure.
fn run_ajc_ls(ajc: &std::path::Path, url: &str) -> (f64, f64) {
    let started = Instant::now();
    let mut child = std::process::Command::new(ajc)
        .args(["--server", url, "task", "ls", "--state", "expired"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("running ajc");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0.0f64;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .as_deref()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("waiting for ajc") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "ajc task ls failed: {status}");
    (secs, peak_kib / 1024.0)
}

/// `--cpu-tasks`: the CPU-bound handler on 1 and 2 handler threads beside
/// what two threads of pure CPU work give on this machine; a line and
/// three `extra` figures.
pub async fn report_cpu_bound(url: &str, opts: &Opts, reps: usize, extra: &mut Map<String, Value>) {
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        one.push(cpu_bound(url, opts, rep, 1).await);
        two.push(cpu_bound(url, opts, rep, 2).await);
    }
    let (one, two) = (stats(&one).unwrap().1, stats(&two).unwrap().1);
    let machine = machine_scaling(opts.cpu_work_ms * 500);
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

/// `--backlog`: the first `--tasks` processed from an empty queue and from
/// one holding `--backlog`, for the framework and the best raw client; a
/// line and two `extra` figures.
pub async fn report_backlog(url: &str, opts: &Opts, extra: &mut Map<String, Value>) {
    let empty = with_backlog(url, opts, opts.tasks).await;
    let full = with_backlog(url, opts, opts.backlog).await;
    let best_empty = best::process_from(url, opts, "BEST_BACKLOG_E", 100, opts.tasks).await;
    let best_full = best::process_from(url, opts, "BEST_BACKLOG_F", 100, opts.backlog).await;
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

/// `--list-tasks`: listing a store of that many tasks (and `ajc task ls`
/// when it sits beside this binary); a line and two `extra` figures.
pub async fn report_listing(url: &str, opts: &Opts, extra: &mut Map<String, Value>) {
    let l = listing(url, opts, opts.list_tasks).await;
    eprintln!(
        "listing {} stored tasks: Client::list_tasks {:.2} s, peak RSS +{:.1} MiB{}",
        l.stored,
        l.client_secs,
        l.client_peak_mib,
        match l.ajc {
            Some((secs, mib)) => format!(
                "; `ajc task ls --state expired` (scans all) {secs:.2} s, peak RSS {mib:.1} MiB"
            ),
            None => String::new(),
        }
    );
    extra.insert("list_secs".into(), serde_json::json!(l.client_secs));
    extra.insert("list_peak_mib".into(), serde_json::json!(l.client_peak_mib));
}

/// `--chain`: a dependency chain of that many links (each task depends on
/// the one before), all enqueued up front, run by one worker with the
/// default dependency poll; the time from the first enqueue to the last
/// task's end, a line and two `extra` figures. A dependant starts when its
/// dependency ends (docs/processing.md §2.5), not at the next 5 s poll.
pub async fn report_chain(url: &str, opts: &Opts, extra: &mut Map<String, Value>) {
    let n = opts.chain;
    let q = "BENCH_CHAIN";
    let client = crate::harness::connect(url, q, opts).await;
    // every link is stored before the worker starts, so each dependant is
    // first judged while its dependency has not run: it waits, and only
    // its dependency's end starts it
    let mut before: Option<String> = None;
    for i in 0..n {
        let mut b = asyncjobs::Task::builder("bench").payload(&serde_json::json!({ "n": i }));
        if let Some(dep) = before.take() {
            b = b.depends_on([dep]);
        }
        let mut t = b.build().expect("chain task");
        client.enqueue(&mut t).await.expect("enqueue a chain link");
        before = Some(t.id);
    }
    let done = crate::harness::Done::new(n);
    let stop = tokio_util::sync::CancellationToken::new();
    let started = std::time::Instant::now();
    let worker = crate::framework::spawn_worker(
        url,
        q,
        10,
        opts.handler_threads,
        crate::harness::noop_router(done.clone()),
        stop.clone(),
    );
    done.reached().await;
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    worker.await.unwrap();
    crate::harness::cleanup(&client, q).await;
    eprintln!(
        "dependency chain of {n} links (all stored before the worker starts, instant handlers): \
         {secs:.2} s from the worker's start, {:.1} ms per link (a 5 s dependency poll would \
         take about {:.0} s)",
        secs * 1000.0 / n as f64,
        n as f64 * 5.0 / 2.0
    );
    extra.insert("chain_links".into(), serde_json::json!(n));
    extra.insert("chain_secs".into(), serde_json::json!(secs));
}
