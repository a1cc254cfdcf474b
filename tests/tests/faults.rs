//! The fault suite of issue 14: tasks run through several worker
//! processes (`test-worker`, handler type `fault`) while (1) random workers
//! are SIGKILLed and restarted, (2) nats-server is killed and restarted on
//! the same store, (3) on a three-node cluster the node leading the queue
//! stream, then the one leading the task stream, is killed and restarted,
//! (4) workers are SIGKILLed while the server is restarted, (6) the
//! server's store fills up, (7) the tasks are enqueued through the HTTP API
//! while hostile unauthenticated clients attack the same HTTP server.
//!
//! Every accepted task must end `complete`, no task may run more often than
//! its tries, none may be left `active`, `new` or `retry`, and the queue
//! must end empty. Each handler run appends its task id to a file of its
//! worker process before it does anything else (a line written with one
//! `write` survives a SIGKILL of the writer), so duplicate executions are
//! counted exactly. Each scenario prints one table row of figures.
//!
//! The normal `cargo test` runs a small size; `ASYNCJOBS_FAULT_TASKS=10000`
//! runs the full size (see `scripts/fault-suite`). `ASYNCJOBS_FAULT_SEED`
//! repeats a run's random choices; `ASYNCJOBS_FAULT_LOG` is the workers'
//! `RUST_LOG` (default `warn`, each worker's log is in the run directory,
//! kept when a test fails, or always with `ASYNCJOBS_FAULT_KEEP` set).

use asyncjobs::{Client, Queue, Task, TaskState};
use asyncjobs_http::server::{serve_with_limits, ConnectionLimits};
use asyncjobs_tests::{js_api_answer, wait_for, NatsCluster, NatsServer};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Tasks of the small version that runs in every `cargo test`.
const SMALL_TASKS: usize = 1_500;
/// Worker processes.
const WORKERS: usize = 3;
/// Each task's tries (and the queue's deliveries before an item is replaced).
const TRIES: i64 = 10;
/// The queue's run time (its consumer's ack wait): a killed try's task runs
/// again once its lease (run time + 2 s) has passed.
const RUN_TIME: Duration = Duration::from_secs(2);
/// Handlers per worker process.
const CONCURRENCY: usize = 8;
/// How long each handler runs.
const HANDLER_MS: u64 = 40;
/// Tasks enqueued at a time; the producer keeps at most `BACKLOG` items
/// waiting so that enqueueing goes on throughout the faults.
const BATCH: usize = 100;
const BACKLOG: u64 = 600;

fn tasks() -> usize {
    std::env::var("ASYNCJOBS_FAULT_TASKS")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .expect("ASYNCJOBS_FAULT_TASKS is a number of tasks")
        })
        .unwrap_or(SMALL_TASKS)
}

fn full_size() -> bool {
    tasks() >= 10_000
}

/// How long the whole run may take before the test fails.
fn run_timeout() -> Duration {
    Duration::from_secs(120 + tasks() as u64 / 20)
}

fn rng(scenario: &str) -> StdRng {
    let seed = std::env::var("ASYNCJOBS_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("{scenario}: seed {seed} (ASYNCJOBS_FAULT_SEED={seed} repeats it)");
    StdRng::seed_from_u64(seed)
}

// ----- worker processes ---------------------------------------------------------------

/// Starts a `test-worker` process bound to `queue` whose `fault` handler
/// records its runs in `dir` and sleeps `sleep_ms`; its log goes to `log`.
fn worker_process(
    url: &str,
    queue: &str,
    dir: &std::path::Path,
    concurrency: usize,
    sleep_ms: u64,
    log: &std::path::Path,
) -> Child {
    let log = std::fs::File::create(log).expect("worker log");
    Command::new(env!("CARGO_BIN_EXE_test-worker"))
        .args([url, queue])
        .env("TEST_WORKER_RECORD", dir)
        .env("TEST_WORKER_BIND", "1")
        .env("TEST_WORKER_CONCURRENCY", concurrency.to_string())
        .env("TEST_WORKER_SLEEP_MS", sleep_ms.to_string())
        .env(
            "RUST_LOG",
            std::env::var("ASYNCJOBS_FAULT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn test-worker")
}

/// The worker processes of one scenario; every one still running is
/// SIGKILLed when this is dropped, also when the test fails (the run
/// directory with the execution records and worker logs is then kept).
struct Fleet {
    url: String,
    queue: String,
    dir: Option<tempfile::TempDir>,
    /// Each slot's running worker and its spawn number (its log's name).
    procs: Vec<Option<(Child, usize)>>,
    spawned: usize,
    kills: usize,
    restarts: usize,
    /// Workers that exited without being killed: (slot, status, log file).
    exits: Vec<(usize, String, String)>,
}

impl Fleet {
    fn start(url: &str, queue: &str, n: usize) -> Fleet {
        let mut fleet = Fleet {
            url: url.to_string(),
            queue: queue.to_string(),
            dir: Some(tempfile::tempdir().expect("run directory")),
            procs: (0..n).map(|_| None).collect(),
            spawned: 0,
            kills: 0,
            restarts: 0,
            exits: Vec::new(),
        };
        for slot in 0..n {
            fleet.spawn(slot);
        }
        fleet
    }

    fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().expect("run directory").path()
    }

    fn spawn(&mut self, slot: usize) {
        assert!(self.procs[slot].is_none(), "worker {slot} is running");
        self.spawned += 1;
        let log = self.dir().join(format!("worker.{}.log", self.spawned));
        let child = worker_process(
            &self.url,
            &self.queue,
            self.dir(),
            CONCURRENCY,
            HANDLER_MS,
            &log,
        );
        self.procs[slot] = Some((child, self.spawned));
    }

    /// SIGKILLs the worker in `slot` and reaps it.
    fn kill(&mut self, slot: usize) {
        let (mut child, _) = self.procs[slot].take().expect("a running worker");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping a killed worker");
        self.kills += 1;
    }

    /// Starts a worker in the empty `slot` again.
    fn restart(&mut self, slot: usize) {
        self.spawn(slot);
        self.restarts += 1;
    }

    /// Notes workers that exited on their own and starts them again.
    fn reap(&mut self) {
        for slot in 0..self.procs.len() {
            let (status, spawn) = match self.procs[slot].as_mut() {
                Some((child, spawn)) => match child.try_wait() {
                    Ok(Some(status)) => (status, *spawn),
                    _ => continue,
                },
                None => continue,
            };
            self.procs[slot] = None;
            let log = format!("worker.{spawn}.log");
            println!("worker in slot {slot} exited on its own: {status} (log {log})");
            self.exits.push((slot, status.to_string(), log));
            self.restart(slot);
        }
    }

    /// Every handler run recorded so far.
    fn executions(&self) -> Executions {
        let mut ex = Executions::default();
        for entry in std::fs::read_dir(self.dir()).expect("run directory") {
            let entry = entry.expect("run directory entry");
            if !entry.file_name().to_string_lossy().starts_with("exec.") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).expect("execution record");
            for line in text.lines() {
                let (mark, id) = line.split_once(' ').expect("an execution line");
                let counts = ex.runs.entry(id.to_string()).or_default();
                match mark {
                    "S" => counts.0 += 1,
                    "E" => counts.1 += 1,
                    other => panic!("unknown execution mark {other:?}"),
                }
            }
        }
        ex
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (mut child, _) in self.procs.iter_mut().filter_map(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() || std::env::var_os("ASYNCJOBS_FAULT_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "fault suite: execution records and worker logs kept in {}",
                    kept.display()
                );
            }
        }
    }
}

/// Handler runs per task id: (started, finished).
#[derive(Default)]
struct Executions {
    runs: HashMap<String, (u32, u32)>,
}

impl Executions {
    fn started(&self) -> usize {
        self.runs.len()
    }
}

// ----- producing ----------------------------------------------------------------------

/// What the producer did: the tasks the library accepted (enqueue returned
/// `Ok`) and the ones it refused, with the error.
struct Produced {
    accepted: Vec<String>,
    refused: Vec<(String, String)>,
    started: OffsetDateTime,
}

/// Enqueues `total` tasks in batches, keeping at most [`BACKLOG`] items
/// waiting (a batch is tried anyway when the queue cannot be asked), so
/// enqueueing goes on while the faults happen. A refused task is replaced by
/// a new one.
async fn produce(client: Client, total: usize) -> Produced {
    produce_counting(client, total, Arc::default()).await
}

/// [`produce`], counting refused enqueues in `refusals` as they happen.
async fn produce_counting(
    client: Client,
    total: usize,
    refusals: Arc<std::sync::atomic::AtomicUsize>,
) -> Produced {
    let started = OffsetDateTime::now_utc();
    let mut accepted = Vec::with_capacity(total);
    let mut refused = Vec::new();
    let queue = client.queue().name.clone();
    while accepted.len() < total {
        let backlog = tokio::time::timeout(Duration::from_secs(2), client.queue_info(&queue)).await;
        if let Ok(Ok(info)) = backlog {
            if info.stream.messages >= BACKLOG {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let n = BATCH.min(total - accepted.len());
        let batch = (0..n).map(|i| {
            let client = client.clone();
            let mut task = Task::builder("fault")
                .payload(&(accepted.len() + i))
                .max_tries(TRIES)
                .build()
                .unwrap();
            async move {
                // (enqueue_many's future cannot be spawned: rustc's
                // "FnOnce is not general enough" on its closure)
                let r = tokio::time::timeout(Duration::from_secs(60), client.enqueue(&mut task))
                    .await
                    .map_err(|_| "enqueue did not return in 60 s".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                (task.id, r)
            }
        });
        let results: Vec<_> = futures::stream::iter(batch).buffered(BATCH).collect().await;
        for (id, result) in results {
            match result {
                Ok(()) => accepted.push(id),
                Err(e) => {
                    refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    refused.push((id, e));
                }
            }
        }
        if !refused.is_empty() && accepted.len() < total {
            // the server is away: do not spin
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Produced {
        accepted,
        refused,
        started,
    }
}

// ----- checking -----------------------------------------------------------------------

/// Every stored task by id (one listing), or `None` while the server cannot
/// answer.
async fn list_all(client: &Client) -> Option<HashMap<String, Task>> {
    let listing = async {
        let mut stream = client.list_tasks(usize::MAX).await.ok()?;
        let mut all = HashMap::new();
        while let Some(task) = stream.next().await {
            let task = task.ok()?;
            all.insert(task.id.clone(), task);
        }
        Some(all)
    };
    tokio::time::timeout(Duration::from_secs(60), listing)
        .await
        .ok()
        .flatten()
}

/// Waits (polling) until the queue is empty and every accepted task is
/// `complete`, or `timeout` passes; returns the last listing either way.
async fn settle(client: &Client, accepted: &[String], timeout: Duration) -> HashMap<String, Task> {
    let started = Instant::now();
    let queue = client.queue().name.clone();
    let mut last = None;
    loop {
        let info = tokio::time::timeout(Duration::from_secs(5), client.queue_info(&queue)).await;
        let empty = matches!(&info, Ok(Ok(i)) if i.stream.messages == 0);
        if empty || started.elapsed() >= timeout {
            if let Some(mut all) = list_all(client).await {
                // a record the listing missed is loaded by id
                let missing: Vec<&String> = accepted
                    .iter()
                    .filter(|id| !all.contains_key(*id))
                    .collect();
                for id in missing {
                    if let Ok(t) = client.load_task(id).await {
                        all.insert(id.clone(), t);
                    }
                }
                let done = accepted
                    .iter()
                    .all(|id| all.get(id).is_some_and(|t| t.state == TaskState::Complete));
                if (empty && done) || started.elapsed() >= timeout {
                    return all;
                }
                last = Some(all);
            } else if started.elapsed() >= timeout {
                return last.unwrap_or_default();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The figures of one scenario.
struct Figures {
    scenario: &'static str,
    tasks: usize,
    refused: usize,
    kills: usize,
    worker_restarts: usize,
    worker_exits: usize,
    server_restarts: usize,
    leader_kills: usize,
    lost: usize,
    over_tries: usize,
    unrun: usize,
    duplicates: u64,
    tasks_run_again: usize,
    finished_twice: usize,
    max_runs: u32,
    drain: Duration,
}

impl Figures {
    fn print(&self) {
        println!(
            "| scenario | tasks | refused enqueues | worker kills | worker restarts | \
             unexpected worker exits | server restarts | leader kills | lost | over tries | \
             complete, never run | duplicate executions | tasks run again | ran to the end \
             twice | max runs of a task | time to drain |"
        );
        println!("|{}", " --- |".repeat(16));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
            self.scenario,
            self.tasks,
            self.refused,
            self.kills,
            self.worker_restarts,
            self.worker_exits,
            self.server_restarts,
            self.leader_kills,
            self.lost,
            self.over_tries,
            self.unrun,
            self.duplicates,
            self.tasks_run_again,
            self.finished_twice,
            self.max_runs,
            self.drain.as_secs_f64(),
        );
    }
}

/// Waits for the run to settle, counts the figures, prints them and
/// asserts: every accepted task `complete` (lost = 0), none run more often
/// than its tries, none complete without a recorded run, no worker exited
/// on its own, the queue empty. Returns the time to drain.
async fn check(
    scenario: &'static str,
    client: &Client,
    fleet: &mut Fleet,
    produced: &Produced,
    server_restarts: usize,
    leader_kills: usize,
) -> Duration {
    let all = settle(client, &produced.accepted, run_timeout()).await;
    fleet.reap();
    let ex = fleet.executions();
    let mut lost = Vec::new();
    let mut over = Vec::new();
    let mut unrun = Vec::new();
    let mut last_done = produced.started;
    for id in &produced.accepted {
        let runs = ex.runs.get(id).copied().unwrap_or_default();
        match all.get(id) {
            Some(t) if t.state == TaskState::Complete => {
                if let Some(r) = &t.result {
                    last_done = last_done.max(r.completed);
                }
                if runs.0 == 0 {
                    unrun.push(id);
                }
            }
            other => lost.push((id, other, runs)),
        }
        let tries = all.get(id).map_or(0, |t| t.tries);
        if i64::from(runs.0) > TRIES || tries > TRIES {
            over.push((id, runs, tries));
        }
    }
    let runs_of_accepted = || produced.accepted.iter().filter_map(|id| ex.runs.get(id));
    let figures = Figures {
        scenario,
        tasks: produced.accepted.len(),
        refused: produced.refused.len(),
        kills: fleet.kills,
        worker_restarts: fleet.restarts,
        worker_exits: fleet.exits.len(),
        server_restarts,
        leader_kills,
        lost: lost.len(),
        over_tries: over.len(),
        unrun: unrun.len(),
        duplicates: runs_of_accepted()
            .map(|r| u64::from(r.0.saturating_sub(1)))
            .sum(),
        tasks_run_again: runs_of_accepted().filter(|r| r.0 > 1).count(),
        finished_twice: runs_of_accepted().filter(|r| r.1 > 1).count(),
        max_runs: runs_of_accepted().map(|r| r.0).max().unwrap_or(0),
        drain: (last_done - produced.started)
            .try_into()
            .unwrap_or_default(),
    };
    figures.print();
    let drain = figures.drain;

    // the refused enqueues are not promised anything; say where they ended
    let mut refusals: BTreeMap<(String, String), (usize, &str)> = BTreeMap::new();
    for (id, err) in &produced.refused {
        let state = all
            .get(id)
            .map_or("no record".to_string(), |t| t.state.to_string());
        refusals
            .entry((state, err.replace(id.as_str(), "<id>")))
            .or_insert((0, id.as_str()))
            .0 += 1;
    }
    for ((state, err), (n, id)) in &refusals {
        let record = all
            .get(*id)
            .map(|t| String::from_utf8_lossy(&t.to_json().unwrap_or_default()).into_owned())
            .unwrap_or_else(|| "none".into());
        println!(
            "{scenario}: {n} refused enqueues left {state}, error {err:?}; e.g. {id}, record {record}"
        );
    }

    let evidence = |id: &str| {
        let record = all
            .get(id)
            .map(|t| String::from_utf8_lossy(&t.to_json().unwrap_or_default()).into_owned())
            .unwrap_or_else(|| "no record".into());
        let runs = ex.runs.get(id).copied().unwrap_or_default();
        format!(
            "task {id}: {} handler runs started, {} finished; record {record}",
            runs.0, runs.1
        )
    };
    assert!(
        lost.is_empty(),
        "{scenario}: {} accepted tasks did not end complete (run directory kept), e.g.:\n{}",
        lost.len(),
        lost.iter()
            .take(10)
            .map(|(id, _, _)| evidence(id))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        over.is_empty(),
        "{scenario}: {} tasks ran more often than their {TRIES} tries, e.g.:\n{}",
        over.len(),
        over.iter()
            .take(10)
            .map(|(id, _, _)| evidence(id))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        unrun.is_empty(),
        "{scenario}: {} tasks are complete but their handler never ran, e.g.:\n{}",
        unrun.len(),
        unrun
            .iter()
            .take(10)
            .map(|id| evidence(id))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        fleet.exits.is_empty(),
        "{scenario}: worker processes exited without being killed: {:?} (logs in the run directory)",
        fleet.exits
    );
    let info = client.queue_info(&client.queue().name).await.unwrap();
    assert_eq!(info.stream.messages, 0, "{scenario}: queue left with items");
    drain
}

/// Waits until handlers have started `n` distinct tasks, noting (and
/// restarting) workers that exit on their own meanwhile.
async fn progress(fleet: &mut Fleet, n: usize) {
    wait_for(
        run_timeout(),
        &format!("handlers to have started {n} tasks"),
        || {
            fleet.reap();
            let started = fleet.executions().started();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (started >= n).then_some(())
            }
        },
    )
    .await;
}

fn queue(name: &str) -> Queue {
    Queue::new(name).max_run_time(RUN_TIME).max_tries(TRIES)
}

// ----- the scenarios ------------------------------------------------------------------

/// SIGKILLs a random worker every 0.5–1.5 s and starts it again (at once
/// or up to 0.5 s later) until handlers have started every task; with a
/// `server`, also restarts it whenever the share of tasks started passes
/// the next of `restart_at`. Returns the server restarts.
async fn kill_workers(
    fleet: &mut Fleet,
    rng: &mut StdRng,
    total: usize,
    mut server: Option<&mut NatsServer>,
    restart_at: &[f64],
) -> usize {
    let chaos = Instant::now();
    let mut restarts = 0;
    loop {
        let started = fleet.executions().started();
        if started >= total {
            return restarts;
        }
        assert!(
            chaos.elapsed() < run_timeout(),
            "only {started} of {total} tasks started in {:?}",
            run_timeout()
        );
        if let (Some(server), Some(at)) = (server.as_deref_mut(), restart_at.get(restarts)) {
            if started as f64 >= total as f64 * at {
                server.restart();
                restarts += 1;
                println!("server restarted with {started} tasks started");
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..1500))).await;
        fleet.reap();
        let slot = rng.gen_range(0..WORKERS);
        fleet.kill(slot);
        if rng.gen_bool(0.5) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
        }
        fleet.restart(slot);
    }
}

/// (1) Random workers are SIGKILLed (every 0.5–1.5 s, one at a time) and
/// started again, until every task has started at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkills_lose_no_task() {
    let total = tasks();
    let mut rng = rng("worker-kills");
    let server = NatsServer::start();
    let client = Client::builder()
        .url(server.url())
        .queue(queue("FAULT_KILL"))
        .build()
        .await
        .unwrap();
    let mut fleet = Fleet::start(&server.url(), "FAULT_KILL", WORKERS);
    let producer = tokio::spawn(produce(client.clone(), total));

    kill_workers(&mut fleet, &mut rng, total, None, &[]).await;
    let produced = producer.await.unwrap();
    check("worker kills", &client, &mut fleet, &produced, 0, 0).await;
}

/// (2) nats-server is SIGKILLed and started again on the same store while
/// workers run and the producer enqueues (twice in the small version, three
/// times in the full one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarts_lose_no_task() {
    let total = tasks();
    let mut server = NatsServer::start();
    let client = Client::builder()
        .url(server.url())
        .queue(queue("FAULT_RESTART"))
        .build()
        .await
        .unwrap();
    let mut fleet = Fleet::start(&server.url(), "FAULT_RESTART", WORKERS);
    let producer = tokio::spawn(produce(client.clone(), total));

    let at: &[f64] = if full_size() {
        &[0.2, 0.45, 0.7]
    } else {
        &[0.3, 0.6]
    };
    for fraction in at {
        progress(&mut fleet, (total as f64 * fraction) as usize).await;
        server.restart();
        println!(
            "server restarted with {} tasks started",
            fleet.executions().started()
        );
    }
    progress(&mut fleet, total).await;
    let produced = producer.await.unwrap();
    check(
        "server restarts",
        &client,
        &mut fleet,
        &produced,
        at.len(),
        0,
    )
    .await;
}

/// (1) and (2) at once: random workers are SIGKILLed while nats-server is
/// restarted (twice in the small version, four times in the full one), so
/// kills land on tries the restart held up or made run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kills_and_server_restarts_lose_no_task() {
    let total = tasks();
    let mut rng = rng("mixed");
    let mut server = NatsServer::start();
    let client = Client::builder()
        .url(server.url())
        .queue(queue("FAULT_MIXED"))
        .build()
        .await
        .unwrap();
    let mut fleet = Fleet::start(&server.url(), "FAULT_MIXED", WORKERS);
    let producer = tokio::spawn(produce(client.clone(), total));
    let at: &[f64] = if full_size() {
        &[0.2, 0.4, 0.6, 0.8]
    } else {
        &[0.3, 0.6]
    };
    let restarts = kill_workers(&mut fleet, &mut rng, total, Some(&mut server), at).await;
    let produced = producer.await.unwrap();
    check(
        "worker kills + server restarts",
        &client,
        &mut fleet,
        &produced,
        restarts,
        0,
    )
    .await;
}

/// The name of the node leading `stream`, once it has one that is not `not`.
async fn leader(nc: &async_nats::Client, stream: &str, not: Option<&str>) -> String {
    wait_for(
        Duration::from_secs(60),
        &format!("a leader for {stream}"),
        || async {
            let v = js_api_answer(nc, &format!("STREAM.INFO.{stream}")).await?;
            let name = v["cluster"]["leader"].as_str()?;
            (Some(name) != not).then(|| name.to_string())
        },
    )
    .await
}

/// Waits until `node` is a current replica of `stream` again (or leads it).
async fn caught_up(nc: &async_nats::Client, stream: &str, node: &str) {
    wait_for(
        Duration::from_secs(60),
        &format!("{node} to be a current replica of {stream}"),
        || async {
            let v = js_api_answer(nc, &format!("STREAM.INFO.{stream}")).await?;
            if v["cluster"]["leader"] == node {
                return Some(());
            }
            let replicas = v["cluster"]["replicas"].as_array()?;
            replicas
                .iter()
                .any(|r| r["name"] == node && r["current"] == true)
                .then_some(())
        },
    )
    .await;
}

/// (3) On a three-node cluster (queue and task stream with three
/// replicas) the node leading the queue stream is killed and restarted,
/// then the node leading the task stream (twice each in the full version).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_kills_lose_no_task() {
    let total = tasks();
    let mut cluster = NatsCluster::start(3).await;
    let client = Client::builder()
        .url(cluster.urls())
        .replicas(3)
        .queue(queue("FAULT_HA"))
        .build()
        .await
        .unwrap();
    let nc = client.nats().clone();
    let queue_stream = client.queue().stream_name();
    let tasks_stream = asyncjobs::TASKS_STREAM.to_string();
    for stream in [&queue_stream, &tasks_stream] {
        let v = js_api_answer(&nc, &format!("STREAM.INFO.{stream}"))
            .await
            .unwrap();
        assert_eq!(v["config"]["num_replicas"], 3, "{stream}: {v}");
    }
    let mut fleet = Fleet::start(&cluster.urls(), "FAULT_HA", WORKERS);
    let producer = tokio::spawn(produce(client.clone(), total));

    let plan: &[(f64, &String)] = if full_size() {
        &[
            (0.15, &queue_stream),
            (0.35, &tasks_stream),
            (0.55, &queue_stream),
            (0.75, &tasks_stream),
        ]
    } else {
        &[(0.25, &queue_stream), (0.6, &tasks_stream)]
    };
    for (fraction, stream) in plan {
        progress(&mut fleet, (total as f64 * fraction) as usize).await;
        let dead = leader(&nc, stream, None).await;
        let index = cluster.index_of(&dead).expect("leader is a cluster node");
        let killed = Instant::now();
        cluster.node_mut(index).stop();
        let next = leader(&nc, stream, Some(&dead)).await;
        println!(
            "killed {dead}, leader of {stream}, with {} tasks started; {next} leads after {:.1} s",
            fleet.executions().started(),
            killed.elapsed().as_secs_f64()
        );
        // leaders of both streams, then the node back and caught up
        leader(&nc, &queue_stream, Some(&dead)).await;
        leader(&nc, &tasks_stream, Some(&dead)).await;
        cluster.node_mut(index).restart();
        caught_up(&nc, &queue_stream, &dead).await;
        caught_up(&nc, &tasks_stream, &dead).await;
    }
    progress(&mut fleet, total).await;
    let produced = producer.await.unwrap();
    check(
        "cluster leader kills",
        &client,
        &mut fleet,
        &produced,
        0,
        plan.len(),
    )
    .await;
}

/// A worker process, SIGKILLed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Handler runs the worker process `pid` started, from its record in `dir`.
fn runs_started(dir: &std::path::Path, pid: u32) -> usize {
    std::fs::read_to_string(dir.join(format!("exec.{pid}")))
        .map(|t| t.lines().filter(|l| l.starts_with("S ")).count())
        .unwrap_or(0)
}

/// Found by the fault suite (server restarts: tasks whose handler "ran to
/// the end twice"): a try whose outcome save stalls past its lease is
/// overtaken by a newer try on the same work item; when the late save then
/// fails on the changed record, the old try must not acknowledge the item,
/// or the newer try's item is gone and the task is left `active` for good
/// once that try's worker dies. Worker A's connection is frozen (a proxy)
/// after its handler starts; B runs the task again past A's lease; A's
/// connection flows again, its save conflicts; B is SIGKILLed mid-try: the
/// item must still be there and the task must complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_outcome_of_an_overtaken_try_leaves_the_newer_tries_item() {
    let server = NatsServer::start();
    let client = Client::builder()
        .url(server.url())
        .queue(queue("FAULT_LATE"))
        .build()
        .await
        .unwrap();
    let proxy = asyncjobs_tests::Proxy::start(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| dir.path().join(name);
    let a = Killed(worker_process(
        &proxy.url(),
        "FAULT_LATE",
        dir.path(),
        1,
        1_000,
        &log("a.log"),
    ));
    let mut task = Task::builder("fault").max_tries(TRIES).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for(
        Duration::from_secs(20),
        "worker A to start the task",
        || {
            let n = runs_started(dir.path(), a.0.id());
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
    // A's handler ends in 1 s; its outcome save waits behind the frozen proxy
    proxy.freeze();
    let b = Killed(worker_process(
        &server.url(),
        "FAULT_LATE",
        dir.path(),
        1,
        60_000,
        &log("b.log"),
    ));
    // past A's lease (run time + 2 s) B runs the task again
    wait_for(
        Duration::from_secs(20),
        "worker B to run the task again",
        || {
            let n = runs_started(dir.path(), b.0.id());
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
    let running = client.load_task(&task.id).await.unwrap();
    assert_eq!((running.state, running.tries), (TaskState::Active, 2));
    proxy.thaw();
    // A's save meets B's record; once A is done with it, it asks for work
    let info = wait_for(
        Duration::from_secs(10),
        "worker A to finish its late outcome and pull again",
        || async {
            let info = client.queue_info("FAULT_LATE").await.ok()?;
            (info.waiting >= 1).then_some(info)
        },
    )
    .await;
    assert_eq!(
        info.stream.messages, 1,
        "the late outcome of try 1 removed the work item try 2 runs on"
    );
    drop(b); // SIGKILL mid-try
    let done = asyncjobs_tests::wait_for_state(
        &client,
        &task.id,
        TaskState::Complete,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done.tries, 3);
    drop(a);
}

/// (6) The server's store fills up while workers run and the producer
/// enqueues: a ballast stream takes the room, every write is refused
/// ("insufficient resources") for a while, then the ballast is deleted, as
/// an operator frees the disk. A refused enqueue is told to its caller and
/// leaves nothing waiting; nothing accepted is lost, run twice or left
/// waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_loses_and_strands_no_task() {
    let total = tasks();
    let server = NatsServer::start_with_config("jetstream { max_file_store: 16MB }");
    let client = Client::builder()
        .url(server.url())
        .queue(queue("FAULT_FULL"))
        .build()
        .await
        .unwrap();
    let nc = client.nats().clone();
    let created = asyncjobs_tests::js_api(
        &nc,
        "STREAM.CREATE.BALLAST",
        r#"{"name":"BALLAST","subjects":["ballast.>"],"storage":"file"}"#,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");

    let mut fleet = Fleet::start(&server.url(), "FAULT_FULL", WORKERS);
    let refusals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producer = tokio::spawn(produce_counting(client.clone(), total, refusals.clone()));
    // the store fills up while the workers are busy
    wait_for(Duration::from_secs(60), "work under way", || async {
        let info = client.queue_info("FAULT_FULL").await.ok()?;
        (info.stream.messages >= 200).then_some(())
    })
    .await;
    let js = async_nats::jetstream::new(nc.clone());
    let block = vec![b'b'; 256 * 1024];
    let mut ballast = 0usize;
    loop {
        let sent = match js.publish("ballast.x", block.clone().into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if !sent {
            break;
        }
        ballast += block.len();
        assert!(ballast < 64 << 20, "the store never filled");
    }
    println!(
        "full store: a ballast of {} KiB filled the store mid-run",
        ballast / 1024
    );
    // an enqueue now is refused, and the caller is told so with the cause;
    // it leaves no record waiting for an item that was never written
    let mut probe = Task::new("fault", &0).unwrap();
    let refused = client
        .enqueue(&mut probe)
        .await
        .expect_err("the full store took a task");
    assert!(
        refused.to_string().contains("insufficient resources"),
        "the refusal does not name the full store: {refused}"
    );
    match client.load_task(&probe.id).await {
        Err(asyncjobs::Error::TaskNotFound(_)) => {}
        Ok(t) => assert_eq!(
            t.state,
            TaskState::QueueError,
            "a refused enqueue left {t:?}"
        ),
        Err(e) => panic!("loading the refused task: {e}"),
    }
    let deleted = asyncjobs_tests::js_api(&nc, "STREAM.DELETE.BALLAST", "").await;
    assert!(deleted.get("error").is_none(), "{deleted}");
    let produced = producer.await.unwrap();
    println!(
        "full store: the producer saw {} refused enqueues",
        refusals.load(std::sync::atomic::Ordering::Relaxed)
    );
    check("full store", &client, &mut fleet, &produced, 0, 0).await;
}

// ----- hostile HTTP clients -----------------------------------------------------------

/// The HTTP server's limits in the hostile-client scenario: a cap the
/// flood goes over, and a header timeout (Go's is 5 s) short enough that
/// the slots the attackers hold come free while the tasks are enqueued.
fn http_limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(2),
        max_connections: 128,
    }
}
/// Create requests the legitimate client has in flight at once.
const HTTP_CREATES: usize = 16;
/// Tasks created before the attacks start, for the latency without them.
const CALM_TASKS: usize = 100;
/// Connections trickling headers, and silent connections, kept open.
const SLOW_CONNECTIONS: usize = 40;
const SILENT_CONNECTIONS: usize = 40;
/// Connections each flood wave opens at once: over the cap.
const FLOOD_WAVE: usize = 192;
/// How long an attack may go without an answer or a close before it counts
/// as one the server left hanging.
const HUNG: Duration = Duration::from_secs(60);

/// The API served the way `ajc server run` does (`serve_with_limits`), on
/// its own thread and runtime, as a separate server process would be; a
/// crash ends the thread.
struct HttpServer {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl HttpServer {
    fn start(url: String, queue_name: &'static str, limits: ConnectionLimits) -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let client = Client::builder()
                    .url(url)
                    .queue(queue(queue_name))
                    .build()
                    .await
                    .map_err(std::io::Error::other)?;
                let app = asyncjobs_http::router(client, asyncjobs_http::ApiOptions::default());
                serve_with_limits(listener, app, None, Duration::from_secs(1), stopped, limits)
                    .await
            })
        });
        HttpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the server's thread ended (it only ends when stopped).
    fn ended(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the server and returns how its thread ended.
    fn stop(mut self) -> Result<std::io::Result<()>, String> {
        self.stop.cancel();
        let thread = self.thread.take().expect("a running server");
        thread.join().map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into())
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the attackers sent and how the server answered.
#[derive(Default)]
struct Tally {
    /// Attacks begun, by kind.
    sent: BTreeMap<&'static str, usize>,
    /// Attacks the server answered (by kind and status) or closed (`closed`).
    answers: BTreeMap<&'static str, BTreeMap<String, usize>>,
    /// Attacks the server answered otherwise than with a 4xx, left hanging
    /// for [`HUNG`], or could not be reached for: (kind, what happened).
    wrong: Vec<(&'static str, String)>,
    /// Attacks still open when the attackers stopped: (kind, age).
    in_flight: Vec<(&'static str, Duration)>,
}

type SharedTally = Arc<std::sync::Mutex<Tally>>;

/// An attack's end: the status it was refused with or `closed`, or what
/// was wrong.
type Outcome = Result<String, String>;

fn status_outcome(status: u16) -> Outcome {
    if (400..500).contains(&status) {
        Ok(status.to_string())
    } else {
        Err(format!("answered {status}"))
    }
}

fn reqwest_outcome(r: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match r {
        Ok(r) => status_outcome(r.status().as_u16()),
        Err(e) if e.is_timeout() => Err(format!("no answer in {HUNG:?}")),
        Err(e) if e.is_connect() => Err(format!("could not connect: {e}")),
        // the server closed the connection
        Err(_) => Ok("closed".into()),
    }
}

/// A raw TCP connection that sends `text` (then `trickle` one byte every
/// 100 ms, for ever), or nothing when both are empty, and reads until the
/// server closes it: its outcome is the status of any answer, or `closed`.
async fn raw_connection(addr: std::net::SocketAddr, text: &[u8], trickle: &[u8]) -> Outcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + HUNG;
    let mut s = match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("could not connect: {e}")),
        Err(_) => return Err(format!("not connected in {HUNG:?}")),
    };
    let (mut rd, mut wr) = s.split();
    let mut writing = wr.write_all(text).await.is_ok();
    let mut bytes = trickle.iter().cycle();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n.min(512 - head.len().min(512))]),
            },
            _ = tick.tick(), if writing && !trickle.is_empty() => {
                let b = *bytes.next().expect("a byte to trickle");
                writing = wr.write_all(&[b]).await.is_ok();
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("neither answered nor closed in {HUNG:?}"));
            }
        }
    }
    if head.starts_with(&[0, 0]) && head.get(3) == Some(&4) {
        return Ok(http2_answer(&head));
    }
    match head.get(..12) {
        None => Ok("closed".into()),
        Some(line) if line.starts_with(b"HTTP/1.") => std::str::from_utf8(&line[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or_else(
                || Err(format!("answered {:?}", String::from_utf8_lossy(&head))),
                status_outcome,
            ),
        Some(_) => Err(format!("answered {:?}", String::from_utf8_lossy(&head))),
    }
}

/// How the server ended an HTTP/2 connection whose answer starts
/// `head` (HTTP/2 frames, the first its SETTINGS): `h2 GOAWAY` when a
/// GOAWAY frame is among them, else `h2 closed`.
fn http2_answer(head: &[u8]) -> String {
    let mut at = 0;
    while let Some(frame) = head.get(at..at + 9) {
        if frame[3] == 7 {
            return "h2 GOAWAY".into();
        }
        at +=
            9 + (usize::from(frame[0]) << 16 | usize::from(frame[1]) << 8 | usize::from(frame[2]));
    }
    "h2 closed".into()
}

/// Repeats `attack` (one at a time, `pace` apart) until `stop`, counting
/// each as `kind`; one in flight at the stop is noted with its age.
async fn keep_attacking<F, Fut>(
    kind: &'static str,
    tally: SharedTally,
    stop: CancellationToken,
    pace: Duration,
    attack: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    loop {
        *tally.lock().unwrap().sent.entry(kind).or_default() += 1;
        let began = Instant::now();
        let outcome = tokio::select! {
            o = attack() => o,
            _ = stop.cancelled() => {
                tally.lock().unwrap().in_flight.push((kind, began.elapsed()));
                return;
            }
        };
        record(&tally, kind, outcome);
        tokio::select! {
            _ = tokio::time::sleep(pace) => {}
            _ = stop.cancelled() => return,
        }
    }
}

fn record(tally: &SharedTally, kind: &'static str, outcome: Outcome) {
    let mut t = tally.lock().unwrap();
    match outcome {
        Ok(answer) => {
            *t.answers
                .entry(kind)
                .or_default()
                .entry(answer)
                .or_default() += 1
        }
        Err(wrong) => t.wrong.push((kind, wrong)),
    }
}

/// Starts every attacker against `addr`: bodies of 200,000 nested arrays
/// (400 KB, under the body limit) to each route taking JSON, invented
/// methods, connections trickling headers or an HTTP/2 preface, silent
/// connections, and waves of [`FLOOD_WAVE`] silent connections.
fn attack(
    addr: std::net::SocketAddr,
    tally: &SharedTally,
    stop: &CancellationToken,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    // a new connection for each request, as the legitimate client has
    let http = reqwest::Client::builder()
        .timeout(HUNG)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let deep: Arc<str> = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)).into();
    for (i, route) in [
        "/v1/tasks",
        "/v1/tasks/retry",
        "/v1/queues",
        "/v1/schedules",
    ]
    .into_iter()
    .enumerate()
    {
        let (http, deep) = (http.clone(), deep.clone());
        let go = move || {
            let r = http
                .post(format!("http://{addr}{route}"))
                .header("content-type", "application/json")
                .body(deep.to_string())
                .send();
            async move { reqwest_outcome(r.await) }
        };
        // the four routes in turn, about 40 bodies a second in all
        let pace = Duration::from_millis(100 + i as u64);
        set.spawn(keep_attacking(
            "deep JSON",
            tally.clone(),
            stop.clone(),
            pace,
            go,
        ));
    }
    for (i, method) in ["FROBNICATE", "BREW", "PROPPATCH", "X"]
        .into_iter()
        .enumerate()
    {
        let http = http.clone();
        let routes = [
            "/v1/tasks",
            "/v1/queues",
            "/v1/info",
            "/v1/tasks/x",
            "/v1/schedules",
        ];
        let n = std::sync::atomic::AtomicUsize::new(i);
        let go = move || {
            let route = routes[n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % routes.len()];
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = http.request(method, format!("http://{addr}{route}")).send();
            async move { reqwest_outcome(r.await) }
        };
        set.spawn(keep_attacking(
            "invented method",
            tally.clone(),
            stop.clone(),
            Duration::from_millis(40),
            go,
        ));
    }
    for i in 0..SLOW_CONNECTIONS {
        let (text, trickle): (&'static [u8], &'static [u8]) = if i % 2 == 0 {
            (
                b"POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
                b"a",
            )
        } else {
            // the HTTP/2 preface, slower than the header timeout allows
            (b"", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        };
        let go = move || raw_connection(addr, text, trickle);
        let pace = Duration::from_millis(50);
        set.spawn(keep_attacking(
            "slowloris",
            tally.clone(),
            stop.clone(),
            pace,
            go,
        ));
    }
    for i in 0..SILENT_CONNECTIONS {
        // silent from the start, or after a whole HTTP/2 preface
        let (kind, text): (&'static str, &'static [u8]) = if i % 2 == 0 {
            ("silent", b"")
        } else {
            (
                "silent after h2 preface",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            )
        };
        let go = move || raw_connection(addr, text, b"");
        let pace = Duration::from_millis(50);
        set.spawn(keep_attacking(kind, tally.clone(), stop.clone(), pace, go));
    }
    let (tally, stop) = (tally.clone(), stop.clone());
    set.spawn(async move {
        while !stop.is_cancelled() {
            let mut wave = tokio::task::JoinSet::new();
            for _ in 0..FLOOD_WAVE {
                wave.spawn(raw_connection(addr, b"", b""));
            }
            *tally.lock().unwrap().sent.entry("flood").or_default() += FLOOD_WAVE;
            let began = Instant::now();
            loop {
                let next = tokio::select! {
                    n = wave.join_next() => n,
                    _ = stop.cancelled() => {
                        let age = began.elapsed();
                        let mut t = tally.lock().unwrap();
                        t.in_flight.extend((0..wave.len()).map(|_| ("flood", age)));
                        return;
                    }
                };
                match next {
                    Some(outcome) => record(&tally, "flood", outcome.expect("a flood connection")),
                    None => break,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
    set
}

/// The legitimate client's create requests: how long each took and how
/// each was answered (`201`, `200` for a repeat of one whose answer was
/// lost, another status, or the error).
#[derive(Default)]
struct Creates {
    latencies: Vec<Duration>,
    answers: BTreeMap<String, usize>,
}

impl Creates {
    fn median_and_max(&self) -> (Duration, Duration) {
        let mut l = self.latencies.clone();
        l.sort();
        (
            l.get(l.len() / 2).copied().unwrap_or_default(),
            l.last().copied().unwrap_or_default(),
        )
    }
}

/// Creates task `n` (type `fault`, [`TRIES`] tries) with `POST /v1/tasks`
/// and the idempotency key `hostile-<n>`, repeating the request until it is
/// answered 201 or 200; returns its id, each try's time and answer.
async fn create_over_http(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> (String, Vec<(Duration, String)>) {
    let key = format!("hostile-{n}");
    let body = serde_json::json!({"type": "fault", "payload": n, "max_tries": TRIES});
    let mut tries = Vec::new();
    loop {
        let started = Instant::now();
        let r = http
            .post(format!("{base}/v1/tasks"))
            .header("idempotency-key", &key)
            .json(&body)
            .send()
            .await;
        let answer = match r {
            Ok(r) if r.status() == 201 || r.status() == 200 => {
                let status = r.status().as_u16().to_string();
                match r.json::<serde_json::Value>().await {
                    Ok(v) => {
                        tries.push((started.elapsed(), status));
                        let id = v["id"].as_str().expect("a created task's id");
                        return (id.to_string(), tries);
                    }
                    Err(e) => format!("{status}, body lost: {e}"),
                }
            }
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timed out".into(),
            Err(e) if e.is_connect() => "no connection".into(),
            Err(_) => "connection closed".into(),
        };
        tries.push((started.elapsed(), answer));
        assert!(
            tries.len() < 100,
            "task {n}: 100 create requests not accepted: {tries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates tasks `from..to` over HTTP, [`HTTP_CREATES`] at a time, keeping
/// at most [`BACKLOG`] items waiting, like [`produce`]. The refused tries
/// are listed by their idempotency key.
async fn produce_over_http(
    client: Client,
    base: String,
    from: usize,
    to: usize,
    creates: Arc<std::sync::Mutex<Creates>>,
) -> Produced {
    let started = OffsetDateTime::now_utc();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let queue = client.queue().name.clone();
    let mut accepted = Vec::with_capacity(to - from);
    let mut refused = Vec::new();
    let mut next = from;
    while next < to {
        let backlog = tokio::time::timeout(Duration::from_secs(2), client.queue_info(&queue)).await;
        if let Ok(Ok(info)) = backlog {
            if info.stream.messages >= BACKLOG {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let batch = next..(next + BATCH).min(to);
        next = batch.end;
        let created: Vec<_> = futures::stream::iter(batch)
            .map(|n| {
                let (http, base) = (&http, &base);
                async move { (n, create_over_http(http, base, n).await) }
            })
            .buffer_unordered(HTTP_CREATES)
            .collect()
            .await;
        let mut c = creates.lock().unwrap();
        for (n, (id, tries)) in created {
            accepted.push(id);
            for (took, answer) in tries {
                c.latencies.push(took);
                if answer != "201" && answer != "200" {
                    refused.push((format!("key hostile-{n}"), answer.clone()));
                }
                *c.answers.entry(answer).or_default() += 1;
            }
        }
    }
    Produced {
        accepted,
        refused,
        started,
    }
}

fn counts<K: std::fmt::Display>(m: &BTreeMap<K, usize>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// (7) The tasks are created through the HTTP API (`POST /v1/tasks` with
/// an idempotency key, repeated until answered 201 or 200) while hostile
/// unauthenticated clients attack the same server all along: 400 KB
/// bodies nested 200,000 deep, invented methods, slowloris connections,
/// silent connections and waves of connections over its cap. Every task
/// the API accepted must end `complete`, none run more often than its
/// tries, none be created twice; the server must answer every attack with
/// a 4xx or close its connection, and never crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_clients_lose_no_task() {
    let total = tasks();
    let server = NatsServer::start();
    let client = Client::builder()
        .url(server.url())
        .queue(queue("FAULT_HTTP"))
        .build()
        .await
        .unwrap();
    let http = HttpServer::start(server.url(), "FAULT_HTTP", http_limits());
    let base = http.base();
    wait_for(Duration::from_secs(30), "the HTTP API to answer", || {
        let url = format!("{base}/v1/info");
        async move {
            let r = reqwest::get(url).await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    let mut fleet = Fleet::start(&server.url(), "FAULT_HTTP", WORKERS);

    // the latency of a create without attacks, for comparison
    let calm = Arc::new(std::sync::Mutex::new(Creates::default()));
    let first = produce_over_http(client.clone(), base.clone(), 0, CALM_TASKS, calm.clone()).await;

    let tally = SharedTally::default();
    let stop = CancellationToken::new();
    let mut attackers = attack(http.addr, &tally, &stop);
    let creates = Arc::new(std::sync::Mutex::new(Creates::default()));
    let rest = produce_over_http(
        client.clone(),
        base.clone(),
        CALM_TASKS,
        total,
        creates.clone(),
    )
    .await;
    // the attacks go on until every task has started
    progress(&mut fleet, total).await;
    stop.cancel();
    while attackers.join_next().await.is_some() {}
    // the server still serves, then stops as asked
    assert!(!http.ended(), "the HTTP server ended under attack");
    let info = reqwest::get(format!("{base}/v1/info")).await;
    assert!(
        info.as_ref().is_ok_and(|r| r.status() == 200),
        "the HTTP server does not answer after the attacks: {info:?}"
    );
    let ended = http.stop();

    let produced = Produced {
        accepted: [first.accepted, rest.accepted].concat(),
        refused: [first.refused, rest.refused].concat(),
        started: first.started,
    };
    let drain = check("hostile HTTP clients", &client, &mut fleet, &produced, 0, 0).await;
    // a create whose answer was lost and whose repeat created another task
    // would leave a task nobody was told of
    let accepted: std::collections::HashSet<&String> = produced.accepted.iter().collect();
    let stored = list_all(&client).await.expect("listing the tasks");
    let unasked: Vec<&String> = stored.keys().filter(|id| !accepted.contains(id)).collect();

    let tally = tally.lock().unwrap();
    let creates = creates.lock().unwrap();
    let (median, max) = creates.median_and_max();
    let (calm_median, calm_max) = calm.lock().unwrap().median_and_max();
    let sent = |kind| tally.sent.get(kind).copied().unwrap_or(0);
    let answers = |kind| tally.answers.get(kind).map(counts).unwrap_or_default();
    let oldest = tally
        .in_flight
        .iter()
        .max_by_key(|(_, age)| *age)
        .map(|(kind, age)| format!("{kind}, {:.1} s", age.as_secs_f64()))
        .unwrap_or_default();
    println!(
        "| scenario | tasks | create requests under attack (answers) | create latency median / max \
         (calm: median / max) | deep JSON bodies (answers) | invented methods (answers) | \
         slowloris connections (answers) | silent connections (answers) | connections silent \
         after an HTTP/2 preface (answers) | flood connections, \
         waves (answers) | attacks in flight at the stop (the oldest) | wrong answers | tasks nobody asked \
         for | time to drain |"
    );
    println!("|{}", " --- |".repeat(14));
    println!(
        "| hostile HTTP clients | {} | {} ({}) | {:.0} ms / {:.0} ms ({:.0} ms / {:.0} ms) | {} ({}) | {} ({}) | {} ({}) | {} ({}) | {} ({}) | {}, {} ({}) | {} ({}) | {} | {} | {:.1} s |",
        produced.accepted.len(),
        creates.latencies.len(),
        counts(&creates.answers),
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        calm_median.as_secs_f64() * 1e3,
        calm_max.as_secs_f64() * 1e3,
        sent("deep JSON"),
        answers("deep JSON"),
        sent("invented method"),
        answers("invented method"),
        sent("slowloris"),
        answers("slowloris"),
        sent("silent"),
        answers("silent"),
        sent("silent after h2 preface"),
        answers("silent after h2 preface"),
        sent("flood"),
        sent("flood") / FLOOD_WAVE,
        answers("flood"),
        tally.in_flight.len(),
        oldest,
        tally.wrong.len(),
        unasked.len(),
        drain.as_secs_f64(),
    );
    let mut wrong: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, what) in &tally.wrong {
        *wrong.entry(format!("{kind}: {what}")).or_default() += 1;
    }
    assert!(
        tally.wrong.is_empty(),
        "attacks the server neither refused with a 4xx nor closed: {}",
        counts(&wrong)
    );
    assert!(
        unasked.is_empty(),
        "{} tasks were created that no answer named, e.g. {:?}",
        unasked.len(),
        unasked.iter().take(5).collect::<Vec<_>>()
    );
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the HTTP server failed: {e}"),
        Err(panic) => panic!("the HTTP server panicked: {panic}"),
    }
}
