//! Task priorities (docs/processing.md §2.21) against a real nats-server:
//! a worker with a free slot starts the highest-priority task first,
//! oldest first within a priority, whether the backlog was there before it
//! started or the priority task arrives while it works through one; a
//! retried priority task keeps its priority; the `WORKERS` consumer a Go
//! worker pulls from still hands out every item; bad priorities are
//! refused at once; a claimed try's acknowledgements reach its worker; a
//! lost claim's backup goes with the winner's try; an item handed back for
//! a task running elsewhere is held, and reruns it if its runner died.

use asyncjobs::{Client, Error, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A worker with one slot whose handler records the order tasks start in
/// (their payloads) and takes `run` each.
fn recording_worker(
    client: &Client,
    run: Duration,
) -> (asyncjobs_tests::RunningWorker, Arc<Mutex<Vec<String>>>) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let router = Router::new()
        .handle("job", move |_ctx: TaskContext, task: Task| {
            let seen = seen.clone();
            async move {
                let name: String = task.payload_as()?;
                seen.lock().unwrap().push(name);
                tokio::time::sleep(run).await;
                asyncjobs::handler::to_output(&"done")
            }
        })
        .unwrap();
    (spawn_worker(client.worker(router).concurrency(1)), order)
}

async fn enqueue(client: &Client, name: &str, priority: u8) -> String {
    let mut task = Task::builder("job")
        .payload(&name)
        .priority(priority)
        .build()
        .unwrap();
    client.enqueue(&mut task).await.unwrap();
    task.id
}

async fn all_complete(client: &Client, ids: &[String]) {
    for id in ids {
        wait_for_state(client, id, TaskState::Complete, T).await;
    }
}

#[tokio::test]
async fn a_backlog_queued_before_the_worker_starts_runs_by_priority_then_arrival() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PRIO")).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(enqueue(&client, &format!("low-{i}"), 0).await);
    }
    ids.push(enqueue(&client, "p3-first", 3).await);
    ids.push(enqueue(&client, "p9", 9).await);
    ids.push(enqueue(&client, "p3-second", 3).await);
    let (worker, order) = recording_worker(&client, Duration::from_millis(5));
    all_complete(&client, &ids).await;
    worker.stop().await;
    let order = order.lock().unwrap().clone();
    let mut expected = vec!["p9".to_string(), "p3-first".into(), "p3-second".into()];
    expected.extend((0..20).map(|i| format!("low-{i}")));
    assert_eq!(order, expected);
    // the record says its priority; a default task's record has no field
    let p9 = client.load_task(&ids[21]).await.unwrap();
    assert_eq!(p9.priority, 9);
    let low = client.load_task(&ids[0]).await.unwrap();
    assert!(!String::from_utf8(low.to_json().unwrap())
        .unwrap()
        .contains("priority"));
}

#[tokio::test]
async fn a_priority_task_arriving_behind_a_backlog_runs_next() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PRIO")).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(enqueue(&client, &format!("low-{i}"), 0).await);
    }
    let (worker, order) = recording_worker(&client, Duration::from_millis(100));
    // the worker is working through the backlog
    wait_for(T, "the backlog started", || async {
        (order.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    let high = enqueue(&client, "high", 7).await;
    let started_before = order.lock().unwrap().len();
    wait_for_state(&client, &high, TaskState::Complete, T).await;
    let position = order
        .lock()
        .unwrap()
        .iter()
        .position(|n| n == "high")
        .unwrap();
    // at most the task running when it arrived, and one already claimed
    // by a pull in flight, start before it: not the backlog's 28
    assert!(
        position <= started_before + 1,
        "high started {position}th; {started_before} had started when it arrived"
    );
    ids.push(high);
    all_complete(&client, &ids).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_retried_priority_task_keeps_its_priority() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PRIO")).await;
    let tries = Arc::new(Mutex::new(0));
    let counted = tries.clone();
    let router = Router::new()
        .handle("flaky", move |_ctx: TaskContext, _task: Task| {
            let counted = counted.clone();
            async move {
                let n = {
                    let mut t = counted.lock().unwrap();
                    *t += 1;
                    *t
                };
                if n == 1 {
                    return Err(asyncjobs::HandlerError::retry("first try fails"));
                }
                asyncjobs::handler::to_output(&n)
            }
        })
        .unwrap();
    let worker = spawn_worker(
        client
            .worker(router)
            .retry_policy(asyncjobs_tests::fast_retry()),
    );
    let mut task = Task::builder("flaky").priority(5).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!((done.tries, done.priority), (2, 5));
    worker.stop().await;
}

#[tokio::test]
async fn the_workers_consumer_a_go_worker_pulls_from_hands_out_every_item_in_arrival_order() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PRIO")).await;
    let a = enqueue(&client, "a", 0).await;
    let b = enqueue(&client, "b", 9).await;
    let c = enqueue(&client, "c", 0).await;
    // a raw pull on WORKERS, as a Go worker makes it (no Rust worker runs)
    let nc = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(nc);
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("WORKERS", "CHORIA_AJ_Q_PRIO")
        .await
        .unwrap();
    use futures::StreamExt;
    let mut batch = consumer
        .fetch()
        .max_messages(3)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let mut jobs = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        // Go's work item, byte for byte in meaning
        assert_eq!(body["kind"], 0);
        jobs.push(body["job"].as_str().unwrap().to_string());
        m.ack().await.unwrap();
    }
    assert_eq!(jobs, [a, b, c]);
}

#[tokio::test]
async fn priorities_out_of_range_are_refused_at_once() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PRIO")).await;
    let err = Task::builder("job").priority(10).build().unwrap_err();
    assert!(matches!(err, Error::PriorityInvalid(10)), "{err}");
    assert!(err.to_string().contains("0 (the default) to 9"), "{err}");
    // set on the record directly: refused before anything is stored
    let mut task = Task::new("job", &()).unwrap();
    task.priority = 200;
    let err = client.enqueue(&mut task).await.unwrap_err();
    assert!(matches!(err, Error::PriorityInvalid(200)), "{err}");
    assert!(matches!(
        client.load_task(&task.id).await,
        Err(Error::TaskNotFound(_))
    ));
}

#[tokio::test]
async fn under_aging_a_task_that_waited_long_enough_overtakes_a_higher_priority() {
    let server = NatsServer::start();
    let queue = Queue::new("AGED").priority_aging(Duration::from_secs(1));
    let client = client(&server, queue).await;
    assert_eq!(
        client
            .queue_info("AGED")
            .await
            .unwrap()
            .queue
            .priority_aging,
        Some(Duration::from_secs(1))
    );
    let old = enqueue(&client, "old-low", 0).await;
    let created = client.load_task(&old).await.unwrap().created;
    // the passing of time is this feature's input: waited for, not slept
    wait_for(T, "the low task has waited 3 s", || async {
        (time::OffsetDateTime::now_utc() - created >= time::Duration::milliseconds(3200))
            .then_some(())
    })
    .await;
    let ids = vec![
        old,
        enqueue(&client, "p2", 2).await,
        enqueue(&client, "p9", 9).await,
    ];
    let (worker, order) = recording_worker(&client, Duration::from_millis(5));
    all_complete(&client, &ids).await;
    worker.stop().await;
    // p9 ranks 9; the low task 3 (three seconds at one level a second)
    // beats p2's 2
    assert_eq!(*order.lock().unwrap(), ["p9", "old-low", "p2"]);
}

/// `kill -9` of the worker running a claimed priority task: the claim's
/// backup item is still in the queue, so another worker runs the task
/// again (the record is `active` under a dead lease) and it completes.
#[tokio::test]
async fn a_claimed_priority_task_whose_worker_is_killed_runs_again() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let client = asyncjobs::Client::builder()
        .url(server.url())
        .queue(Queue::new("CRASH").max_run_time(Duration::from_secs(2)))
        .build()
        .await
        .unwrap();
    let mut started = client.nats().subscribe("test.started.>").await.unwrap();
    client.nats().flush().await.unwrap();
    let mut task = Task::builder("work").priority(9).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let mut crashing = asyncjobs_tests::hanging_worker(
        env!("CARGO_BIN_EXE_test-worker"),
        &server.url(),
        "CRASH",
        &[("TEST_WORKER_BIND", "1")],
    );
    tokio::time::timeout(Duration::from_secs(30), started.next())
        .await
        .expect("the first worker starts the task")
        .unwrap();
    crashing.kill().unwrap();
    crashing.wait().unwrap();
    let router = Router::new()
        .handle("work", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"second run")
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router));
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!((done.tries, done.priority), (2, 9));
    worker.stop().await;
}

/// The siblings of the case above: 18 claimed tasks in nine lanes, so the worker's own
/// slots race for lane items. A claim that lost its item once the winner's
/// try was `active` deleted its backup, which had replaced the winner's
/// (one item per subject), and a try killed before its lease listed it
/// (up to 250 ms) was left `active` with no item at all (the case above
/// failed so one run in six). The loser now replaces its backup with an
/// item held until the try's lease ends (processing.md §2.21).
#[tokio::test]
async fn claimed_priority_tasks_whose_worker_is_killed_all_run_again() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let client = asyncjobs::Client::builder()
        .url(server.url())
        .queue(Queue::new("CRASH").max_run_time(Duration::from_secs(2)))
        .build()
        .await
        .unwrap();
    let mut started = client.nats().subscribe("test.started.>").await.unwrap();
    client.nats().flush().await.unwrap();
    let mut ids = Vec::new();
    // one or two items in each of the nine lanes: a claim that finds a
    // lane's end looks at it again, and races the claim still taking its
    // last item
    for p in 0..18 {
        let mut task = Task::builder("work").priority(1 + p % 9).build().unwrap();
        client.enqueue(&mut task).await.unwrap();
        ids.push(task.id);
    }
    let mut crashing = asyncjobs_tests::hanging_worker(
        env!("CARGO_BIN_EXE_test-worker"),
        &server.url(),
        "CRASH",
        &[("TEST_WORKER_BIND", "1"), ("TEST_WORKER_CONCURRENCY", "18")],
    );
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < ids.len() {
        let m = tokio::time::timeout(Duration::from_secs(30), started.next())
            .await
            .expect("the first worker starts every task")
            .unwrap();
        seen.insert(m.subject.to_string());
    }
    crashing.kill().unwrap();
    crashing.wait().unwrap();
    let router = Router::new()
        .handle("work", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"second run")
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router));
    for id in &ids {
        let done = wait_for_state(&client, id, TaskState::Complete, T).await;
        assert_eq!(done.tries, 2, "task {id}");
    }
    worker.stop().await;
}

/// The subjects of `queue`'s stream that hold items, with their counts.
async fn lane_subjects(client: &Client, queue: &str) -> std::collections::BTreeMap<String, u64> {
    let v = asyncjobs_tests::js_api(
        client.nats(),
        &format!("STREAM.INFO.CHORIA_AJ_Q_{queue}"),
        r#"{"subjects_filter":">"}"#,
    )
    .await;
    serde_json::from_value(v["state"]["subjects"].clone()).unwrap_or_default()
}

/// A claimed try's acknowledgements reach its worker's claim inbox: handed
/// back at shutdown (`-NAK`), the item returns to its lane and its backup
/// goes; run to the end (`+ACK`), the backup goes. (The inbox was
/// subscribed one token deep while the acknowledgements are three deeper:
/// none arrived, every backup stayed until `WORKERS` handed it out, and a
/// mixed fleet's Go workers held those of running tasks for the run time,
/// filling the consumer's `max_ack_pending`.)
#[tokio::test]
async fn a_claimed_tries_acknowledgements_reach_its_worker() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PACK")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    // enqueued before the worker starts: it claims the lane's item
    let id = enqueue(&client, "held", 5).await;
    let lane = format!("CHORIA_AJ.Q.PACK.P5.{id}");
    let backup = format!("CHORIA_AJ.Q.PACK.B.{id}");
    let worker = spawn_worker(
        client
            .worker(gated(gate.clone(), started_tx.clone()))
            .concurrency(1)
            .shutdown_grace(Duration::from_millis(200)),
    );
    tokio::time::timeout(T, started.recv())
        .await
        .expect("the task starts")
        .unwrap();
    let subjects = lane_subjects(&client, "PACK").await;
    assert!(
        subjects.contains_key(&backup) && !subjects.contains_key(&lane),
        "{subjects:?}"
    );

    // shut down while it runs: the try is handed back to its lane
    worker.stop().await;
    wait_for(T, "the item back in its lane, its backup gone", || async {
        let s = lane_subjects(&client, "PACK").await;
        (s.contains_key(&lane) && !s.contains_key(&backup)).then_some(())
    })
    .await;

    // claimed again and run to the end: the backup goes with the +ACK
    gate.add_permits(1);
    let worker = spawn_worker(
        client
            .worker(gated(gate.clone(), started_tx))
            .concurrency(1),
    );
    wait_for_state(&client, &id, TaskState::Complete, T).await;
    wait_for(T, "the backup deleted", || async {
        lane_subjects(&client, "PACK")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    worker.stop().await;
}

/// Handlers of type `job` that say they started on `started`, then run
/// until `gate` gives them a permit.
fn gated(
    gate: Arc<tokio::sync::Semaphore>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
) -> Router {
    Router::new()
        .handle("job", move |_ctx: TaskContext, _t: Task| {
            let (gate, started) = (gate.clone(), started.clone());
            async move {
                let _ = started.send(());
                gate.acquire().await.expect("gate").forget();
                asyncjobs::handler::to_output(&"done")
            }
        })
        .unwrap()
}

/// Two claims of one lane item race: the loser's backup, published after
/// the winner's, replaces it (one item per subject), and the loser leaves
/// it, as it is the winner's now. The winner's end removes that backup
/// too, so nothing of the task is left in the queue, and a Go-like worker
/// that pulled the backup meanwhile (Go holds an item of an `active` task
/// for its ack wait) is let go. (The winner deleted only its own backup,
/// by its sequence: the loser's stayed, and a mixed run's Go workers held
/// such backups for an hour after their tasks completed.)
#[tokio::test]
async fn a_lost_claims_backup_goes_with_the_winners_try() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PLOST")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let id = enqueue(&client, "raced", 5).await;
    let backup = format!("CHORIA_AJ.Q.PLOST.B.{id}");
    let worker = spawn_worker(
        client
            .worker(gated(gate.clone(), started_tx))
            .concurrency(1),
    );
    tokio::time::timeout(T, started.recv())
        .await
        .expect("the task starts")
        .unwrap();
    // the losing claim's backup, published after the winner's
    let js = async_nats::jetstream::new(client.nats().clone());
    let mine = js
        .get_stream("CHORIA_AJ_Q_PLOST")
        .await
        .unwrap()
        .get_last_raw_message_by_subject(&backup)
        .await
        .unwrap();
    js.publish(backup.clone(), mine.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    let subjects = lane_subjects(&client, "PLOST").await;
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    // a Go-like worker takes it from WORKERS and holds it
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("WORKERS", "CHORIA_AJ_Q_PLOST")
        .await
        .unwrap();
    let mut pulled = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let _held = pulled.next().await.and_then(Result::ok);

    gate.add_permits(1);
    wait_for_state(&client, &id, TaskState::Complete, T).await;
    wait_for(T, "no backup left, no delivery held", || async {
        let pending =
            asyncjobs_tests::js_api(client.nats(), "CONSUMER.INFO.CHORIA_AJ_Q_PLOST.WORKERS", "")
                .await["num_ack_pending"]
                .as_u64();
        (lane_subjects(&client, "PLOST").await.is_empty() && pending == Some(0)).then_some(())
    })
    .await;
    worker.stop().await;
}

/// A worker that claims an item whose task runs elsewhere (a Go-like
/// worker pulled it and saved it `active`) hands that item back for the
/// rest of the run time, held, so no other worker is handed it meanwhile
/// (it went back into the lane at once, and a Go worker pulling it held
/// it for its ack wait), and only that item waits: a priority task of the
/// same lane enqueued behind plain ones still runs first among them (the
/// whole lane was passed over for the delay, ten minutes here, and its
/// tasks ran in arrival order).
#[tokio::test]
async fn an_item_handed_back_for_a_running_task_holds_up_nothing_else() {
    let server = NatsServer::start();
    let queue = Queue::new("PDEFER").max_run_time(Duration::from_secs(600));
    let client = client(&server, queue).await;
    let running = enqueue(&client, "elsewhere", 5).await;
    let (_held, taken) = asyncjobs_tests::take_like_go(&client, "PDEFER").await;
    assert_eq!(taken, running);
    let (worker, order) = recording_worker(&client, Duration::from_millis(200));
    let lane = format!("CHORIA_AJ.Q.PDEFER.P5.{running}");
    asyncjobs_tests::handed_back(&client, "PDEFER", &lane, &running, T).await;

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(enqueue(&client, &format!("plain-{i}"), 0).await);
    }
    ids.push(enqueue(&client, "urgent", 5).await);
    all_complete(&client, &ids).await;
    worker.stop().await;
    let order = order.lock().unwrap().clone();
    let at = order.iter().position(|n| n == "urgent").unwrap();
    // a plain task pulled before it arrived may run first
    assert!(at <= 1, "the priority task ran at {at}: {order:?}");
    assert_eq!(
        client.load_task(&running).await.unwrap().state,
        TaskState::Active
    );
}

/// The held item of a task handed back because it ran elsewhere still
/// runs it again when the worker running it died: due when the run time
/// is over, it enters the lane and is claimed, and the task, `active`
/// past its run time, gets its second try.
#[tokio::test]
async fn a_handed_back_item_runs_its_task_again_when_its_runner_died() {
    let server = NatsServer::start();
    let queue = Queue::new("PDIED").max_run_time(Duration::from_secs(3));
    let client = client(&server, queue).await;
    let id = enqueue(&client, "orphaned", 5).await;
    // a Go-like worker takes it and dies (its delivery is never acknowledged)
    let (held, taken) = asyncjobs_tests::take_like_go(&client, "PDIED").await;
    assert_eq!(taken, id);
    drop(held);
    let (worker, order) = recording_worker(&client, Duration::from_millis(1));
    let lane = format!("CHORIA_AJ.Q.PDIED.P5.{id}");
    asyncjobs_tests::handed_back(&client, "PDIED", &lane, &id, T).await;
    let done = wait_for_state(&client, &id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 2);
    assert_eq!(order.lock().unwrap().clone(), vec!["orphaned".to_string()]);
    worker.stop().await;
}

/// Saves `task` by hand at the sequence it was read at, as a Go worker
/// writes a record; whether the server took it.
async fn save_like_go(js: &async_nats::jetstream::Context, task: &Task) -> bool {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        task.sequence().to_string().as_str(),
    );
    let sent = js
        .publish_with_headers(
            format!("CHORIA_AJ.T.{}", task.id),
            headers,
            serde_json::to_vec(task).unwrap().into(),
        )
        .await;
    match sent {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

/// A worker doing what Go's does with the items `WORKERS` hands it, lane
/// items included: an `active` task's item is left unacknowledged (held
/// for the ack wait), a final one's acknowledged, any other task saved
/// `active`, run for a few milliseconds, saved `complete` and its item
/// acknowledged (ten at a time, 50 ms each). Runs until `stop`.
async fn go_like_worker(client: Client, queue: &str, stop: tokio_util::sync::CancellationToken) {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(client.nats().clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("WORKERS", format!("CHORIA_AJ_Q_{queue}"))
        .await
        .unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    // ten slots, as a Go worker's concurrency
    let slots = Arc::new(tokio::sync::Semaphore::new(10));
    while !stop.is_cancelled() {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let Ok(mut one) = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_millis(200))
            .messages()
            .await
        else {
            continue;
        };
        let Some(Ok(msg)) = one.next().await else {
            continue;
        };
        let (client, js, held) = (client.clone(), js.clone(), held.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let item: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
            let Some(id) = item["job"].as_str() else {
                return;
            };
            let Ok(mut t) = client.load_task(id).await else {
                return;
            };
            match t.state {
                TaskState::Active => held.lock().unwrap().push(msg),
                s if s.is_final() => {
                    let _ = msg.ack().await;
                }
                _ => {
                    t.state = TaskState::Active;
                    t.tries += 1;
                    t.tried = Some(time::OffsetDateTime::now_utc());
                    if !save_like_go(&js, &t).await {
                        // Go's "modified concurrently": left for the ack wait
                        held.lock().unwrap().push(msg);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Ok(mut done) = client.load_task(id).await {
                        if done.state == TaskState::Active {
                            done.state = TaskState::Complete;
                            save_like_go(&js, &done).await;
                        }
                    }
                    let _ = msg.ack().await;
                }
            }
        });
    }
}

/// Rust workers claiming lane items beside a Go-like worker pulling the
/// same items from `WORKERS`: every task completes, none runs twice, and
/// once they all have, no claim's backup is left in the queue. (Traced
/// runs beside real Go workers left 1 to 3 backups per 500 tasks: a claim
/// that lost its lane item to a Go worker's acknowledgement, or to a claim
/// that had already handed the item back, left its backup, which no one
/// removed, and a Go worker handed it while its task ran held it for the
/// queue's run time. That race is too narrow to be met here on demand:
/// this test guards the mixed fleet's end state, and passes without the
/// fix too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_beside_a_go_worker_leave_no_backup() {
    let server = NatsServer::start();
    let queue = Queue::new("PMIX").max_run_time(Duration::from_secs(600));
    let client = client(&server, queue).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let go = tokio::spawn(go_like_worker(client.clone(), "PMIX", stop.clone()));
    let router = || {
        Router::new()
            .handle("job", |_ctx: TaskContext, _t: Task| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                asyncjobs::handler::to_output(&"rust")
            })
            .unwrap()
    };
    let workers: Vec<_> = (0..2)
        .map(|_| spawn_worker(client.worker(router()).concurrency(8)))
        .collect();
    let mut ids = Vec::new();
    // a producer trickling tasks in, as one enqueueing per request does:
    // each item is raced for by the Rust claims and the Go-like pulls
    for i in 0..300u32 {
        ids.push(enqueue(&client, &format!("t{i}"), (i % 10) as u8).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in &ids {
        let done = wait_for_state(&client, id, TaskState::Complete, T).await;
        assert_eq!(done.tries, 1, "{id} ran twice");
    }
    wait_for(T, "no claim backup left in the queue", || async {
        let left: Vec<String> = lane_subjects(&client, "PMIX")
            .await
            .into_keys()
            .filter(|s| s.starts_with("CHORIA_AJ.Q.PMIX.B."))
            .collect();
        left.is_empty().then_some(())
    })
    .await;
    stop.cancel();
    go.await.unwrap();
    for w in workers {
        w.stop().await;
    }
}
