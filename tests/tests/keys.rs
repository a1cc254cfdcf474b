//! Flow-control keys (docs/processing.md §2.24) against a real
//! nats-server: per-key concurrency holds across workers, one key's
//! backlog does not hold up another key's tasks, a per-key rate holds, a
//! killed worker's key slot comes back, bad keys are refused at once, the
//! limit holds across a server restart, a limit set while workers run
//! is followed, and a worker waiting on busy keys still pulls.

use asyncjobs::{Client, Error, Queue, RateLimit, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(90);

/// The shard of a key, as docs/storage.md §2.1 defines it (FNV-1a 64 of
/// its bytes, modulo 16): tests pick keys in different shards.
fn shard(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) % 16
}

#[derive(Default)]
struct Seen {
    running: HashMap<String, usize>,
    most: HashMap<String, usize>,
    order: Vec<String>,
    starts: Vec<(String, Instant)>,
}

/// A handler recording, per key, how many run at once, the order tasks
/// start in (their payloads) and when; each takes `run`.
fn recording(seen: &Arc<Mutex<Seen>>, run: Duration) -> Router {
    let seen = seen.clone();
    Router::new()
        // the test worker's type, run again after its worker died
        .handle("work", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"again")
        })
        .unwrap()
        .handle("job", move |_ctx: TaskContext, task: Task| {
            let seen = seen.clone();
            async move {
                let key = task.key.clone().unwrap_or_default();
                let name: String = task.payload_as()?;
                {
                    let mut s = seen.lock().unwrap();
                    let n = s.running.entry(key.clone()).or_default();
                    *n += 1;
                    let n = *n;
                    let most = s.most.entry(key.clone()).or_default();
                    *most = (*most).max(n);
                    s.order.push(name);
                    s.starts.push((key.clone(), Instant::now()));
                }
                tokio::time::sleep(run).await;
                *seen.lock().unwrap().running.get_mut(&key).unwrap() -= 1;
                asyncjobs::handler::to_output(&"ok")
            }
        })
        .unwrap()
}

async fn enqueue(client: &Client, name: &str, key: Option<&str>) -> String {
    let mut b = Task::builder("job").payload(&name);
    if let Some(k) = key {
        b = b.key(k);
    }
    let mut task = b.build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    task.id
}

async fn all_complete(client: &Client, ids: &[String]) {
    for id in ids {
        let done = wait_for_state(client, id, TaskState::Complete, T).await;
        // waiting for a key's limits is no try
        assert_eq!(done.tries, 1, "{id}");
    }
}

#[tokio::test]
async fn per_key_concurrency_holds_across_workers() {
    let server = NatsServer::start();
    let queue = Queue::new("KEYS").key_concurrency(2);
    let producer = client(&server, queue.clone()).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let c = client(&server, queue.clone()).await;
        let router = recording(&seen, Duration::from_millis(150));
        workers.push(spawn_worker(c.worker(router).concurrency(10)));
    }
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(enqueue(&producer, &format!("a-{i}"), Some("tenant-a")).await);
    }
    for i in 0..4 {
        ids.push(enqueue(&producer, &format!("b-{i}"), Some("tenant-b")).await);
    }
    all_complete(&producer, &ids).await;
    for w in workers {
        w.stop().await;
    }
    let s = seen.lock().unwrap();
    assert_eq!(s.order.len(), 16);
    assert!(
        s.most["tenant-a"] <= 2,
        "tenant-a ran {} at once",
        s.most["tenant-a"]
    );
    assert!(
        s.most["tenant-b"] <= 2,
        "tenant-b ran {} at once",
        s.most["tenant-b"]
    );
}

#[tokio::test]
async fn one_keys_backlog_does_not_hold_up_another_keys_task() {
    let (a, b) = ("tenant-a", "tenant-b");
    assert_ne!(shard(a), shard(b));
    let server = NatsServer::start();
    let c = client(&server, Queue::new("FAIR")).await;
    let mut ids = Vec::new();
    for i in 0..150 {
        ids.push(enqueue(&c, &format!("a-{i}"), Some(a)).await);
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = spawn_worker(
        c.worker(recording(&seen, Duration::from_millis(10)))
            .concurrency(2),
    );
    wait_for(T, "the backlog started", || async {
        (seen.lock().unwrap().order.len() >= 5).then_some(())
    })
    .await;
    let mut bs = Vec::new();
    for i in 0..3 {
        bs.push(enqueue(&c, &format!("b-{i}"), Some(b)).await);
    }
    let started_before = seen.lock().unwrap().order.len();
    for id in &bs {
        wait_for_state(&c, id, TaskState::Complete, T).await;
    }
    let order = seen.lock().unwrap().order.clone();
    let last_b = order.iter().rposition(|n| n.starts_with("b-")).unwrap();
    // turns between two keys (and the plain queue): B's three tasks start
    // within a few starts, not after A's remaining backlog
    assert!(
        last_b <= started_before + 12,
        "B's last task started {last_b}th; {started_before} had started when B enqueued: {order:?}"
    );
    ids.extend(bs);
    all_complete(&c, &ids).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_per_key_rate_holds_and_other_keys_are_not_slowed() {
    let server = NatsServer::start();
    let limit: RateLimit = "4/s".parse().unwrap();
    let queue = Queue::new("KRATE").key_rate_limit(limit);
    let c = client(&server, queue.clone()).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = spawn_worker(
        c.worker(recording(&seen, Duration::from_millis(1)))
            .concurrency(10),
    );
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(enqueue(&c, &format!("api-{i}"), Some("remote-api")).await);
    }
    for i in 0..3 {
        ids.push(enqueue(&c, &format!("other-{i}"), Some("other-api")).await);
    }
    all_complete(&c, &ids).await;
    worker.stop().await;
    let s = seen.lock().unwrap();
    let starts: Vec<Instant> = s
        .starts
        .iter()
        .filter(|(k, _)| k == "remote-api")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(starts.len(), 10);
    // one start every 250 ms at most: any five span at least four intervals
    for w in starts.windows(5) {
        let span = w[4] - w[0];
        assert!(
            span >= Duration::from_millis(800),
            "5 starts within {span:?}"
        );
    }
    // the other key has its own rate: its three started long before the
    // limited key's ten were done
    let last_api = starts.last().copied().unwrap();
    let others_done = s
        .starts
        .iter()
        .filter(|(k, _)| k == "other-api")
        .all(|(_, t)| *t < last_api);
    assert!(others_done, "the other key waited for the limited one");
}

/// `kill -9` of a worker running the only task a key may run: its slot
/// comes back once the task is no longer `active` (the rescue of the
/// dead worker's try), and the key's next task runs.
#[tokio::test]
async fn a_killed_workers_key_slot_comes_back() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let queue = Queue::new("KCRASH")
        .key_concurrency(1)
        .max_run_time(Duration::from_secs(2));
    let c = client(&server, queue).await;
    let mut started = c.nats().subscribe("test.started.>").await.unwrap();
    c.nats().flush().await.unwrap();
    // the test worker's type
    let mut first = Task::builder("work").key("k").build().unwrap();
    c.enqueue(&mut first).await.unwrap();
    let first = first.id;
    let mut crashing = asyncjobs_tests::hanging_worker(
        env!("CARGO_BIN_EXE_test-worker"),
        &server.url(),
        "KCRASH",
        &[("TEST_WORKER_BIND", "1")],
    );
    tokio::time::timeout(Duration::from_secs(30), started.next())
        .await
        .expect("the first worker starts the task")
        .unwrap();
    crashing.kill().unwrap();
    crashing.wait().unwrap();
    let second = enqueue(&c, "second", Some("k")).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = spawn_worker(c.worker(recording(&seen, Duration::from_millis(1))));
    wait_for_state(&c, &second, TaskState::Complete, T).await;
    wait_for_state(&c, &first, TaskState::Complete, T).await;
    worker.stop().await;
}

#[tokio::test]
async fn bad_keys_and_limits_are_refused_at_once() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("KEYS")).await;
    for key in ["", &"x".repeat(129), "a\nb"] {
        let err = Task::builder("job").key(key).build().unwrap_err();
        assert!(matches!(err, Error::KeyInvalid(_)), "{key:?}: {err}");
    }
    assert!(Task::builder("job").key("x".repeat(128)).build().is_ok());
    let mut task = Task::new("job", &()).unwrap();
    task.key = Some(String::new());
    assert!(matches!(
        c.enqueue(&mut task).await,
        Err(Error::KeyInvalid(_))
    ));
    assert!(matches!(
        c.load_task(&task.id).await,
        Err(Error::TaskNotFound(_))
    ));
    for n in [0, 10_001] {
        let update = asyncjobs::QueueUpdate {
            key_concurrency: Some(Some(n)),
            ..Default::default()
        };
        let err = c.configure_queue("KEYS", update).await.unwrap_err();
        assert!(err.to_string().contains("per-key concurrency"), "{err}");
    }
}

/// The server is killed (SIGKILL) and started again on its store while
/// a key's tasks run at its limit: the key's slots are in the limits
/// bucket, so after the restart no more than the limit of the key's tasks
/// ever run at once, and every task completes.
#[tokio::test]
async fn per_key_concurrency_holds_across_a_server_restart() {
    let mut server = NatsServer::start();
    let queue = Queue::new("KRESTART").key_concurrency(2);
    let producer = client(&server, queue.clone()).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let c = client(&server, queue.clone()).await;
        let router = recording(&seen, Duration::from_millis(400));
        workers.push(spawn_worker(c.worker(router).concurrency(8)));
    }
    let mut ids = Vec::new();
    for i in 0..14 {
        ids.push(enqueue(&producer, &format!("a-{i}"), Some("tenant-a")).await);
    }
    wait_for(T, "three of the key's tasks to start", || async {
        (seen.lock().unwrap().order.len() >= 3).then_some(())
    })
    .await;
    server.restart();
    for id in &ids {
        // a try whose save met the restart may run again: the state is
        // what counts here, the limit below
        wait_for_state(&producer, id, TaskState::Complete, T).await;
    }
    for w in workers {
        w.stop().await;
    }
    let s = seen.lock().unwrap();
    assert!(s.order.len() >= 14, "{} starts", s.order.len());
    assert!(
        s.most["tenant-a"] <= 2,
        "tenant-a ran {} at once across the restart",
        s.most["tenant-a"]
    );
}

/// A per-key limit set while workers run is followed by them (within
/// their queue refresh), though no other setting of the queue changed: a
/// worker that kept its first reading ran the key's tasks ten at once.
#[tokio::test]
async fn a_per_key_limit_set_while_workers_run_is_followed() {
    let log = asyncjobs_tests::capture_logs("asyncjobs=info");
    let server = NatsServer::start();
    let c = client(&server, Queue::new("KLATER")).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let router = recording(&seen, Duration::from_millis(150));
    let worker = spawn_worker(c.worker(router).concurrency(10));
    let update = asyncjobs::QueueUpdate {
        key_concurrency: Some(Some(1)),
        ..Default::default()
    };
    c.configure_queue("KLATER", update).await.unwrap();
    wait_for(T, "the worker to follow the new setting", || async {
        log.lines_with("queue settings changed")
            .iter()
            .any(|l| l.contains("KLATER") && l.contains("key_concurrency=Some(1)"))
            .then_some(())
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(enqueue(&c, &format!("a-{i}"), Some("tenant-a")).await);
    }
    all_complete(&c, &ids).await;
    worker.stop().await;
    let most = seen.lock().unwrap().most["tenant-a"];
    assert_eq!(most, 1, "tenant-a ran {most} at once under a limit of 1");
}

/// A worker that claims an item whose task runs elsewhere (here a Go-like
/// worker pulled it from `WORKERS` and saved it `active`) hands it back
/// for the rest of that run time, held (docs/processing.md §2.21): only
/// that item waits. Another key's task
/// in the same shard, enqueued after, still runs at once. (The whole shard
/// was passed over for the delay, an hour by default, and the worker's
/// slots waited instead of pulling; a pull already waiting at the server
/// can still take the task then, so priority.rs's test of the same name is
/// the one that fails without the fix.)
#[tokio::test]
async fn an_item_handed_back_for_a_running_task_holds_up_nothing_else() {
    let server = NatsServer::start();
    let queue = Queue::new("KDEFER").max_run_time(Duration::from_secs(600));
    let c = client(&server, queue).await;
    let running = enqueue(&c, "elsewhere", Some("a")).await;
    let (_held, taken) = asyncjobs_tests::take_like_go(&c, "KDEFER").await;
    assert_eq!(taken, running);
    // a Rust worker claims that item, finds the task running, hands it back
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = spawn_worker(c.worker(recording(&seen, Duration::from_millis(1))));
    let lane = format!("CHORIA_AJ.Q.KDEFER.K{}.{running}", shard("a"));
    asyncjobs_tests::handed_back(&c, "KDEFER", &lane, &running, T).await;

    // another key of the same shard, enqueued now, runs at once
    let other = (0..)
        .map(|i| format!("b{i}"))
        .find(|k| shard(k) == shard("a"))
        .unwrap();
    let next = enqueue(&c, "same shard", Some(&other)).await;
    let done = wait_for_state(&c, &next, TaskState::Complete, Duration::from_secs(20)).await;
    assert_eq!(done.tries, 1);
    assert_eq!(
        c.load_task(&running).await.unwrap().state,
        TaskState::Active
    );
    worker.stop().await;
}

/// A worker whose lanes hold only items of busy keys still pulls now and
/// then (`lanes::PULL_AT_LEAST_EVERY`, 2 s): an item in no lane, such as
/// the backup of a claim whose worker died before its try started, is
/// handed out only by `WORKERS`, and runs meanwhile. (Such a worker
/// waited on the busy key and never pulled: the item waited for the key's
/// running task, 60 s here.)
#[tokio::test]
async fn an_item_in_no_lane_runs_while_every_key_is_busy() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("KSTUCK").key_concurrency(1)).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let one_slot = |c: &Client| {
        spawn_worker(
            c.worker(recording(&seen, Duration::from_secs(60)))
                .concurrency(1)
                .shutdown_grace(Duration::from_millis(200)),
        )
    };
    // a worker runs the key's first task, with no slot left to pull with
    let busy = one_slot(&c);
    enqueue(&c, "first", Some("k")).await;
    wait_for(T, "the key's first task to start", || async {
        (!seen.lock().unwrap().order.is_empty()).then_some(())
    })
    .await;
    // the key's next task waits in its shard
    enqueue(&c, "second", Some("k")).await;
    // a task whose claim's worker died after the backup and the lane
    // item's delete: the backup is all that is left of it
    let js = async_nats::jetstream::new(c.nats().clone());
    let mut orphan = Task::builder("job").payload(&"orphan").build().unwrap();
    orphan.queue = "KSTUCK".into();
    asyncjobs_tests::save_by_hand(&js, &orphan).await;
    let item = format!(r#"{{"kind":0,"job":"{}"}}"#, orphan.id);
    js.publish(format!("CHORIA_AJ.Q.KSTUCK.B.{}", orphan.id), item.into())
        .await
        .unwrap()
        .await
        .unwrap();
    // a worker starting now finds only the busy key's item in the lanes
    let waiting = one_slot(&c);
    // well before the key's running task ends
    wait_for(
        Duration::from_secs(30),
        "the orphan's try to start",
        || async {
            seen.lock()
                .unwrap()
                .order
                .contains(&"orphan".to_string())
                .then_some(())
        },
    )
    .await;
    let order = seen.lock().unwrap().order.clone();
    assert_eq!(order, vec!["first".to_string(), "orphan".to_string()]);
    waiting.stop().await;
    busy.stop().await;
}
