//! Worker processes, `--worker-procs 1,2,4`: `--tasks` tasks queued up
//! front (untimed), then processed at a total concurrency of 100 split
//! over N worker processes on the one queue (100/N each, the remainder
//! to the first ones), the framework beside the best raw client split the
//! same way, paired in each repetition.
//!
//! Each worker is a child process of this binary (`--child-worker
//! procs|…`, the mechanism of the memory measurement): the framework's
//! runs a [`Worker`](asyncjobs::Worker) on
//! [`WorkerThreads`](asyncjobs::program::WorkerThreads) as
//! `asyncjobs::main!` would, the best raw client's runs
//! [`best::Items`] on a current-thread runtime. A child connects and
//! looks up its queue, prints `ready` and waits for a `go` line on its
//! stdin, so process start-up and connecting are outside the timed
//! window on both sides. The clock runs from the `go` lines until the
//! queue's stream is empty (every item acknowledged after its outcome was
//! saved; [`wait_drained`]'s `queue_info` every 2 ms from this process,
//! the same on both sides, nothing per task). Then each child is told
//! `stop` and answers `done <count>`; the counts must add up to the tasks
//! and every task must be complete. CPU per task is the children's
//! (user + system from `/proc/<pid>/stat`, summed over them) over the
//! timed window; the server's over the same window beside it. One run of
//! the best raw client, thrown away, warms the server up first.

use crate::best;
use crate::cpu;
use crate::harness::{cleanup, connect, noop_router, tasks, verify_complete, wait_drained, Done};
use crate::opts::Opts;
use crate::report::{stats, Results};
use asyncjobs::Client;
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio_util::sync::CancellationToken;

/// Total concurrency, split over the processes.
const TOTAL_CONCURRENCY: usize = 100;

/// The process counts measured when `--only workers` names none.
const DEFAULT_PROCS: [usize; 3] = [1, 2, 4];

/// Who runs in the children.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Framework,
    Best,
}

impl Side {
    fn tag(self) -> &'static str {
        match self {
            Side::Framework => "fw",
            Side::Best => "best",
        }
    }
}

/// The concurrency of child `i` of `n`: 100/n, the remainder to the
/// first ones, so the children add up to 100.
fn share(i: usize, n: usize) -> usize {
    TOTAL_CONCURRENCY / n + usize::from(i < TOTAL_CONCURRENCY % n)
}

/// A running child and its pipes.
struct Child {
    proc: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    /// Starts a `side` worker of `q` at `concurrency`.
    fn spawn(side: Side, q: &str, concurrency: usize, url: &str, opts: &Opts) -> Child {
        let threads = opts
            .handler_threads
            .map(|t| t.to_string())
            .unwrap_or_default();
        let spec = format!(
            "procs|{}|{q}|{concurrency}|{threads}|{}|{url}",
            side.tag(),
            opts.no_scheduled_waits
        );
        let mut proc = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child-worker", &spec])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("worker process");
        let stdin = proc.stdin.take().unwrap();
        let lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        Child { proc, stdin, lines }
    }

    /// The child's next line.
    async fn line(&mut self) -> String {
        self.lines
            .next_line()
            .await
            .unwrap()
            .expect("worker process ended early")
    }

    async fn say(&mut self, word: &str) {
        self.stdin
            .write_all(format!("{word}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// CPU seconds so far.
    fn cpu(&self) -> f64 {
        let pid = self.proc.id().expect("worker process running");
        cpu::cpu_seconds(&pid.to_string()).unwrap_or(0.0)
    }
}

/// One side, one split: tasks/s, the children's CPU µs per task and the
/// server's (when known).
async fn measure(url: &str, opts: &Opts, rep: usize, side: Side, n: usize) -> [f64; 3] {
    let q = format!("BENCH_WP{n}_{}_{rep}", side.tag().to_uppercase());
    let client = connect(url, &q, opts).await;
    let mut ts = tasks(opts.tasks);
    for chunk in ts.chunks_mut(10_000) {
        for r in client.enqueue_many(chunk).await {
            r.unwrap();
        }
    }
    let ids: Vec<String> = ts.iter().map(|t| t.id.clone()).collect();
    let mut children: Vec<Child> = (0..n)
        .map(|i| Child::spawn(side, &q, share(i, n), url, opts))
        .collect();
    for c in children.iter_mut() {
        assert_eq!(c.line().await, "ready");
    }
    let cpu0: f64 = children.iter().map(Child::cpu).sum();
    let span = cpu::Span::start();
    let started = Instant::now();
    for c in children.iter_mut() {
        c.say("go").await;
    }
    wait_drained(&client, &q, opts.tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1: f64 = children.iter().map(Child::cpu).sum();
    span.finish(opts.tasks);
    let (_, server) = cpu::take();
    let mut processed = 0;
    for mut c in children {
        c.say("stop").await;
        let done = c.line().await;
        processed += done
            .strip_prefix("done ")
            .and_then(|d| d.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("worker process said {done:?}"));
        c.proc.wait().await.unwrap();
    }
    assert_eq!(
        processed, opts.tasks,
        "tasks processed by the {n} processes"
    );
    verify_complete(&client, &q, &ids).await;
    cleanup(&client, &q).await;
    [
        opts.tasks as f64 / elapsed,
        (cpu1 - cpu0) * 1e6 / opts.tasks as f64,
        server.unwrap_or(f64::NAN),
    ]
}

/// The median, rounded to 0.1.
fn median(v: &[f64]) -> Value {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    match stats(&v) {
        Some((_, m, _)) => json!((m * 10.0).round() / 10.0),
        None => Value::Null,
    }
}

/// Every process count of `--worker-procs` (1, 2, 4 when none), `reps`
/// times each, both sides paired: rows on stderr, figures in `extra`
/// under `worker_procs`.
pub async fn report(url: &str, opts: &Opts, reps: usize, extra: &mut Map<String, Value>) {
    let procs = if opts.worker_procs.is_empty() {
        DEFAULT_PROCS.to_vec()
    } else {
        opts.worker_procs.clone()
    };
    eprintln!(
        "worker processes: {} queued tasks at concurrency {TOTAL_CONCURRENCY} split over N \
         processes; CPU: the children's, summed",
        opts.tasks
    );
    // per process count, per repetition: [side][rate, cpu, server]
    let mut samples: Vec<Vec<[[f64; 3]; 2]>> = vec![Vec::new(); procs.len()];
    // thrown away: the first run after the server's start is the slowest
    measure(url, opts, usize::MAX, Side::Best, 1).await;
    for rep in 0..reps {
        for (k, &n) in procs.iter().enumerate() {
            assert!(
                (1..=TOTAL_CONCURRENCY).contains(&n),
                "--worker-procs {n}: 1 to {TOTAL_CONCURRENCY}"
            );
            let fw = measure(url, opts, rep, Side::Framework, n).await;
            let best = measure(url, opts, rep, Side::Best, n).await;
            samples[k].push([fw, best]);
        }
    }
    let mut res = Results::default();
    let mut out = Vec::new();
    for (k, &n) in procs.iter().enumerate() {
        let col = |side: usize, i: usize| samples[k].iter().map(|s| s[side][i]).collect::<Vec<_>>();
        let each = if TOTAL_CONCURRENCY.is_multiple_of(n) {
            format!("c{} each", TOTAL_CONCURRENCY / n)
        } else {
            format!(
                "c{}-{} each",
                TOTAL_CONCURRENCY / n,
                TOTAL_CONCURRENCY / n + 1
            )
        };
        let name = format!("{n} procs ({each})");
        res.add(&name, col(0, 0), col(1, 0), vec![], "tasks/s");
        res.add(
            &format!("{n} procs CPU"),
            col(0, 1),
            col(1, 1),
            vec![],
            "µs/task",
        );
        let finite = |v: Vec<f64>| v.into_iter().filter(|x| x.is_finite()).collect::<Vec<_>>();
        res.add(
            &format!("{n} procs server CPU"),
            finite(col(0, 2)),
            finite(col(1, 2)),
            vec![],
            "µs/task",
        );
        let ratios: Vec<f64> = samples[k].iter().map(|s| s[0][0] / s[1][0]).collect();
        out.push(json!({
            "procs": n,
            "per_sec": median(&col(0, 0)),
            "best_per_sec": median(&col(1, 0)),
            "paired_ratio": stats(&ratios).map(|s| (s.1 * 1000.0).round() / 1000.0),
            "cpu_us_per_task": median(&col(0, 1)),
            "best_cpu_us_per_task": median(&col(1, 1)),
            "server_cpu_us_per_task": median(&col(0, 2)),
            "best_server_cpu_us_per_task": median(&col(1, 2)),
        }));
    }
    extra.insert("worker_procs".into(), Value::Array(out));
}

/// `--child-worker procs|SIDE|QUEUE|CONCURRENCY|HANDLER_THREADS|NO_SCHEDULED_WAITS|URL`:
/// a worker process of [`measure`]. Prints `ready` once connected, starts
/// on a `go` line, stops on the next line (or end of input) and prints
/// `done <tasks processed>`.
pub fn child(spec: &str) {
    let mut parts = spec.splitn(6, '|');
    let mut next = || {
        parts
            .next()
            .expect("--child-worker procs|…: too few fields")
    };
    let (side, q, concurrency, threads, no_waits, url) = (
        next().to_string(),
        next().to_string(),
        next().parse::<usize>().unwrap(),
        next().parse::<usize>().ok(),
        next() == "true",
        next().to_string(),
    );
    match side.as_str() {
        "fw" => child_framework(&url, q, concurrency, threads, no_waits),
        "best" => child_best(&url, q, concurrency),
        _ => panic!("--child-worker procs|{side}: not a side"),
    }
}

/// This process's stdin, a line at a time.
fn stdin_lines() -> Lines<BufReader<tokio::io::Stdin>> {
    BufReader::new(tokio::io::stdin()).lines()
}

/// Waits for the `go` line.
async fn wait_go(lines: &mut Lines<BufReader<tokio::io::Stdin>>) {
    let line = lines.next_line().await.unwrap();
    assert_eq!(line.as_deref(), Some("go"), "worker process told {line:?}");
}

/// A framework worker process, as `asyncjobs::main!` runs one.
fn child_framework(
    url: &str,
    q: String,
    concurrency: usize,
    threads: Option<usize>,
    no_scheduled_waits: bool,
) {
    let rt = asyncjobs::program::WorkerThreads::new(threads).expect("worker runtime");
    let pool = rt.handlers();
    rt.block_on(async move {
        let client = Client::builder()
            .url(url)
            .bind_queue(q)
            .build()
            .await
            .expect("worker client");
        let done = Done::new(usize::MAX);
        let mut lines = stdin_lines();
        println!("ready");
        wait_go(&mut lines).await;
        let mut worker = client
            .worker(noop_router(done.clone()))
            .concurrency(concurrency);
        if no_scheduled_waits {
            worker = worker.scheduled_waits(false);
        }
        if let Some(pool) = pool {
            worker = worker.handler_pool(pool);
        }
        let stop = CancellationToken::new();
        let run = tokio::spawn(worker.run(stop.clone()));
        let _ = lines.next_line().await;
        stop.cancel();
        run.await.unwrap().expect("worker");
        println!("done {}", done.count());
    });
}

/// A best raw client worker process: [`best::Items`] on a current-thread
/// runtime.
fn child_best(url: &str, q: String, concurrency: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("current-thread runtime");
    rt.block_on(async move {
        let nc = async_nats::connect(url).await.unwrap();
        let items = best::Items::open(nc, &q).await;
        let mut lines = stdin_lines();
        println!("ready");
        wait_go(&mut lines).await;
        let done = Cell::new(0);
        let stop = async move {
            let _ = lines.next_line().await;
        };
        items.process(concurrency, usize::MAX, stop, &done).await;
        println!("done {}", done.get());
    });
}
