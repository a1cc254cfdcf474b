//! The fault suite of issue 14: tasks run through several worker
//! processes (`test-worker`, handler type `fault`) while (1) random workers
//! are SIGKILLed and restarted, (2) nats-server is killed and restarted on
//! the same store, (3) on a three-node cluster the node leading the queue
//! stream, then the one leading the task stream, is killed and restarted,
//! (4) workers are SIGKILLed while the server is restarted.
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
use asyncjobs_tests::{js_api_answer, wait_for, NatsCluster, NatsServer};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

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
/// on its own, the queue empty.
async fn check(
    scenario: &'static str,
    client: &Client,
    fleet: &mut Fleet,
    produced: &Produced,
    server_restarts: usize,
    leader_kills: usize,
) {
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
