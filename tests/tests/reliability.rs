//! Issue 14's faults: every accepted task ends in a defined state or stays
//! runnable. Each test fails on the behaviour the issue describes.

use asyncjobs::{Client, Error, HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

async fn drained(client: &Client) {
    let queue = client.queue().name.clone();
    wait_for(T, "the queue to hold no items", || async {
        let i = client.queue_info(&queue).await.unwrap();
        (i.stream.messages == 0 && i.ack_pending == 0).then_some(())
    })
    .await;
}

/// Kind A: a result the server cannot store ends the task after one run,
/// naming the size and the limit, instead of re-running the handler until
/// its tries are used up.
#[tokio::test]
async fn result_too_large_to_save_terminates_after_one_run() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new()
        .handle("big", move |_ctx: TaskContext, _t: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { asyncjobs::handler::to_output(&"x".repeat(2_000_000)) }
        })
        .unwrap();
    let mut task = Task::new("big", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let t = wait_for_state(&client, &task.id, TaskState::Terminated, T).await;
    assert_eq!(t.tries, 1);
    assert!(t.result.is_none());
    assert!(
        t.last_err.contains("2000") && t.last_err.contains("max_payload"),
        "last_err names the size and the limit: {}",
        t.last_err
    );
    drained(&client).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran once");
    worker.stop().await;
}

/// Kind A, `last_err` itself: a handler error of megabytes is cut so the
/// failed try can still be saved.
#[tokio::test]
async fn huge_error_messages_are_cut_to_fit() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let router = Router::new()
        .handle("fails", |_ctx: TaskContext, _t: Task| async move {
            Err(HandlerError::retry("e".repeat(3_000_000)))
        })
        .unwrap();
    let mut task = Task::builder("fails").max_tries(2).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let t = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(t.tries, 2);
    assert!(t.last_err.len() < 4200, "{}", t.last_err.len());
    assert!(
        t.last_err.ends_with("more bytes cut)"),
        "{}",
        &t.last_err[4000..]
    );
    drained(&client).await;
    worker.stop().await;
}

/// Kind D: a try the worker itself interrupted (shutdown past its grace)
/// does not use up the task's tries; it runs again after the restart.
#[tokio::test]
async fn shutdown_interruption_does_not_use_a_try() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let router = {
        let (calls, started) = (calls.clone(), started.clone());
        move || {
            let (calls, started) = (calls.clone(), started.clone());
            Router::new()
                .handle("slow", move |_ctx: TaskContext, _t: Task| {
                    let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                    let started = started.clone();
                    async move {
                        if first {
                            started.notify_one();
                            std::future::pending::<()>().await;
                        }
                        asyncjobs::handler::to_output(&"done")
                    }
                })
                .unwrap()
        }
    };
    let mut task = Task::builder("slow").max_tries(1).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let worker = spawn_worker(
        client
            .worker(router())
            .shutdown_grace(Duration::from_millis(100)),
    );
    tokio::time::timeout(T, started.notified())
        .await
        .expect("the handler starts");
    worker.stop().await;
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Retry);
    assert_eq!(t.tries, 0, "the interrupted try is not counted");
    let worker = spawn_worker(client.worker(router()));
    let t = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(t.tries, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.stop().await;
}

/// Bad input gets a clear error at once: a queue name JetStream cannot
/// take is refused before any request is sent (it used to wait 10 s and
/// then report a time-out, which is what a request would give here too).
#[tokio::test]
async fn invalid_queue_names_are_refused_before_any_request() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let invalid = |r: asyncjobs::Result<()>| matches!(r, Err(Error::QueueNameInvalid(_)));
    for name in ["A.B", "A B", "A*", "A>", ""] {
        assert!(
            invalid(client.queue_info(name).await.map(|_| ())),
            "queue_info({name:?})"
        );
        let update = asyncjobs::QueueUpdate {
            max_tries: Some(3),
            ..Default::default()
        };
        assert!(
            invalid(client.configure_queue(name, update).await.map(|_| ())),
            "configure_queue({name:?})"
        );
        assert!(
            invalid(client.purge_queue(name).await),
            "purge_queue({name:?})"
        );
        assert!(
            invalid(client.delete_queue(name).await),
            "delete_queue({name:?})"
        );
        let mut t = Task::new("t", &()).unwrap();
        assert!(
            invalid(client.enqueue_to(name, &mut t).await),
            "enqueue_to({name:?})"
        );
        assert!(
            invalid(client.prepare_queue(&Queue::new(name)).await.map(|_| ())),
            "prepare_queue({name:?})"
        );
    }
}

/// A counter of the process's metrics for `queue`.
fn counter(name: &str, queue: &str) -> f64 {
    let prefix = format!("choria_asyncjobs_{name}{{queue=\"{queue}\"}} ");
    asyncjobs::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
        .unwrap_or(0.0)
}

/// Kind F (and issue 29): the queue a worker pulls from is deleted under
/// it. The worker says so and creates it again with the settings it had
/// (its run time as configured after it started, not a default), without
/// sending pull requests in a busy loop meanwhile, and works on.
#[tokio::test]
async fn deleted_queue_is_created_again_with_its_settings() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("GONE")).await;
    let router = Router::new()
        .handle("t", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&"ok")
        })
        .unwrap();
    // configured after the queue was created (the worker reads it at start)
    let update = asyncjobs::QueueUpdate {
        max_run_time: Some(Duration::from_secs(300)),
        ..Default::default()
    };
    client.configure_queue("GONE", update).await.unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let mut task = Task::new("t", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for_state(&client, &task.id, TaskState::Complete, T).await;

    let polls_before = counter("queue_poll_total", "GONE");
    client.delete_queue("GONE").await.unwrap();
    let info = wait_for(T, "the worker to create the queue again", || async {
        client
            .queue_info("GONE")
            .await
            .ok()
            .filter(|i| i.has_consumer)
    })
    .await;
    assert_eq!(info.queue.max_run_time, Duration::from_secs(300));
    let polls = counter("queue_poll_total", "GONE") - polls_before;
    // a busy loop sends thousands of pull requests meanwhile
    assert!(polls <= 50.0, "{polls} pull requests");

    let mut task = Task::new("t", &2).unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    worker.stop().await;
}

/// Kind C: a running worker follows its queue's settings. The run time is
/// raised after the worker started; a try longer than the old run time is
/// not killed at the old one.
#[tokio::test]
async fn raised_run_time_reaches_a_running_worker() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("SLOW").max_run_time(Duration::from_secs(1)),
    )
    .await;
    let router = Router::new()
        .handle("slow", |_ctx: TaskContext, _t: Task| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            asyncjobs::handler::to_output(&"finished")
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    // the worker is up once its pull requests wait on the queue
    wait_for(T, "the worker to start", || async {
        let i = client.queue_info("SLOW").await.unwrap();
        (i.waiting > 0).then_some(())
    })
    .await;
    let update = asyncjobs::QueueUpdate {
        max_run_time: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let info = client.configure_queue("SLOW", update).await.unwrap();
    assert_eq!(info.queue.max_run_time, Duration::from_secs(30));
    let mut task = Task::builder("slow").max_tries(1).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let t = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(t.tries, 1);
    worker.stop().await;
}

/// Purging a queue removes the items tasks wait for: on request the tasks
/// are marked so none claims to wait forever (a plain purge keeps Go's
/// behaviour and leaves them `new`).
#[tokio::test]
async fn purge_can_terminate_the_tasks_it_strands() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PURGED")).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut t = Task::new("t", &n).unwrap();
        client.enqueue(&mut t).await.unwrap();
        ids.push(t.id);
    }
    assert_eq!(client.purge_queue_terminating("PURGED").await.unwrap(), 3);
    for id in &ids {
        let t = client.load_task(id).await.unwrap();
        assert_eq!(t.state, TaskState::Terminated);
        assert_eq!(t.last_err, "work item removed: queue PURGED was purged");
    }
    drained(&client).await;

    let mut kept = Task::new("t", &10).unwrap();
    client.enqueue(&mut kept).await.unwrap();
    client.purge_queue("PURGED").await.unwrap();
    assert_eq!(
        client.load_task(&kept.id).await.unwrap().state,
        TaskState::New
    );
}

/// A retry policy that always waits the same time.
#[derive(Debug)]
struct Fixed(Duration);

impl asyncjobs::RetryPolicy for Fixed {
    fn duration(&self, _attempt: u64) -> Duration {
        self.0
    }
}

fn fixed(d: Duration) -> Fixed {
    Fixed(d)
}

/// A router with an always failing `fail` and a succeeding `ok`.
fn fail_and_ok() -> Router {
    Router::new()
        .handle("fail", |_ctx: TaskContext, _t: Task| async move {
            Err(HandlerError::from("always fails"))
        })
        .unwrap()
        .handle("ok", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
}

async fn workers_config(client: &Client, queue: &str) -> serde_json::Value {
    let nc = client.nats();
    asyncjobs_tests::js_api(
        nc,
        &format!("CONSUMER.INFO.CHORIA_AJ_Q_{queue}.WORKERS"),
        "",
    )
    .await["config"]
        .clone()
}

async fn stream_config(client: &Client, queue: &str) -> serde_json::Value {
    asyncjobs_tests::js_api(
        client.nats(),
        &format!("STREAM.INFO.CHORIA_AJ_Q_{queue}"),
        "",
    )
    .await["config"]
        .clone()
}

/// Items held in `CHORIA_AJ_HELD` until due (or released and not yet moved).
async fn held_count(client: &Client) -> u64 {
    asyncjobs_tests::js_api(client.nats(), "STREAM.INFO.CHORIA_AJ_HELD", "").await["state"]
        ["messages"]
        .as_u64()
        .unwrap_or(0)
}

/// Kind I: a task waiting out its retry backoff holds none of the queue's
/// concurrency slots: with all three slots' tasks waiting 10 minutes, a
/// new task runs at once. The waits are held outside the queue, which
/// (created as Go creates it) keeps exactly the configuration it had.
#[tokio::test]
async fn waiting_for_a_retry_holds_no_slot() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q").max_concurrent(3)).await;
    let before = workers_config(&client, "Q").await;
    assert!(before.get("filter_subject").is_none(), "{before}");
    let stream_before = stream_config(&client, "Q").await;

    let mut failing = Vec::new();
    for _ in 0..3 {
        let mut t = Task::new("fail", &()).unwrap();
        client.enqueue(&mut t).await.unwrap();
        failing.push(t.id);
    }
    let worker = spawn_worker(
        client
            .worker(fail_and_ok())
            .concurrency(10)
            .retry_policy(fixed(Duration::from_secs(600))),
    );
    for id in &failing {
        let t = wait_for_state(&client, id, TaskState::Retry, T).await;
        assert_eq!(t.tries, 1);
    }
    let mut ok = Task::new("ok", &()).unwrap();
    client.enqueue(&mut ok).await.unwrap();
    wait_for_state(&client, &ok.id, TaskState::Complete, T).await;

    // the three waits are held outside the queue, none pending on the consumer
    let info = client.queue_info("Q").await.unwrap();
    assert_eq!(info.ack_pending, 0);
    assert_eq!(info.stream.messages, 0);
    assert_eq!(held_count(&client).await, 3);
    // the queue is as its creator made it
    assert_eq!(workers_config(&client, "Q").await, before);
    assert_eq!(stream_config(&client, "Q").await, stream_before);
    for id in &failing {
        assert_eq!(client.load_task(id).await.unwrap().state, TaskState::Retry);
    }
    worker.stop().await;
}

/// Kind I: a scheduled retry reaches the queue when it is due and runs, and
/// the backoff follows the task's failed tries (a fresh item is always the
/// first delivery).
#[tokio::test]
async fn scheduled_retries_run_when_due_until_tries_run_out() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q").max_concurrent(1)).await;
    let mut t = Task::builder("fail").max_tries(3).build().unwrap();
    client.enqueue(&mut t).await.unwrap();
    let worker = spawn_worker(
        client
            .worker(fail_and_ok())
            .retry_policy(fixed(Duration::from_secs(1))),
    );
    let done = wait_for_state(&client, &t.id, TaskState::Expired, T).await;
    assert_eq!(done.tries, 3);
    assert_eq!(done.last_err, "always fails");
    drained(&client).await;
    worker.stop().await;
}

/// Kind I, dependencies: a task waiting for a dependency holds no slot either.
#[tokio::test]
async fn waiting_for_dependencies_holds_no_slot() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q").max_concurrent(1)).await;
    client
        .prepare_queue(&Queue::new("ELSEWHERE"))
        .await
        .unwrap();
    // a dependency no worker runs yet
    let mut dep = Task::new("ok", &()).unwrap();
    client.enqueue_to("ELSEWHERE", &mut dep).await.unwrap();
    let mut blocked = Task::builder("ok")
        .depends_on([dep.id.clone()])
        .build()
        .unwrap();
    client.enqueue(&mut blocked).await.unwrap();
    let worker = spawn_worker(
        client
            .worker(fail_and_ok())
            .dependency_poll_interval(Duration::from_secs(2)),
    );
    wait_for(T, "the blocked task's item to be held", || async {
        let i = client.queue_info("Q").await.unwrap();
        (i.ack_pending == 0 && i.stream.messages == 0 && held_count(&client).await == 1)
            .then_some(())
    })
    .await;
    let mut ok = Task::new("ok", &()).unwrap();
    client.enqueue(&mut ok).await.unwrap();
    wait_for_state(&client, &ok.id, TaskState::Complete, T).await;
    assert_eq!(
        client.load_task(&blocked.id).await.unwrap().state,
        TaskState::Blocked
    );

    // once the dependency completes, the waiting task runs on its next look
    let other = spawn_worker(
        Client::builder()
            .url(server.url())
            .queue(Queue::new("ELSEWHERE"))
            .build()
            .await
            .unwrap()
            .worker(fail_and_ok()),
    );
    wait_for_state(&client, &blocked.id, TaskState::Complete, T).await;
    other.stop().await;
    worker.stop().await;
}

/// Kind I, queues an earlier version changed to hold items in their own
/// stream (`CHORIA_AJ.S.<queue>.>`, discard old, a filtered `WORKERS`): an
/// item held there still runs, also when a tool re-created the consumer
/// without its filter (the task runs at once, never stranded), and the
/// worker changes nothing of the queue.
#[tokio::test]
async fn items_held_by_an_earlier_version_still_run() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    // the queue as an earlier version left it
    let mut stream = stream_config(&client, "Q").await;
    stream["subjects"] = serde_json::json!(["CHORIA_AJ.Q.Q.>", "CHORIA_AJ.S.Q.>"]);
    stream["allow_msg_schedules"] = serde_json::json!(true);
    stream["discard"] = serde_json::json!("old");
    let r = asyncjobs_tests::js_api(
        client.nats(),
        "STREAM.UPDATE.CHORIA_AJ_Q_Q",
        &stream.to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    // a task whose item that version held for 10 minutes
    let mut t = Task::new("ok", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();
    client.purge_queue("Q").await.unwrap();
    let due = time::OffsetDateTime::now_utc() + Duration::from_secs(600);
    let js = async_nats::jetstream::new(client.nats().clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Schedule",
        format!(
            "@at {}",
            due.replace_nanosecond(0)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        )
        .as_str(),
    );
    headers.insert(
        "Nats-Schedule-Target",
        format!("CHORIA_AJ.Q.Q.{}", t.id).as_str(),
    );
    js.publish_with_headers(
        format!("CHORIA_AJ.S.Q.{}", t.id),
        headers,
        serde_json::json!({"kind": 0, "job": t.id})
            .to_string()
            .into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // the consumer as a tool that does not know the filter re-creates it
    let consumer = workers_config(&client, "Q").await;
    assert!(consumer.get("filter_subject").is_none(), "{consumer}");
    let stream_before = stream_config(&client, "Q").await;
    let worker = spawn_worker(client.worker(fail_and_ok()));
    let done = wait_for_state(&client, &t.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 1);
    assert_eq!(workers_config(&client, "Q").await, consumer);
    assert_eq!(stream_config(&client, "Q").await, stream_before);
    worker.stop().await;
}

/// Kind I, where schedules cannot be used: waits stay NAKs with delay
/// (Go's behaviour) and the queue keeps the configuration Go gave it.
async fn waits_stay_naks(queue: Queue, scheduled_waits: bool) {
    let server = NatsServer::start();
    let client = client(&server, queue).await;
    let mut t = Task::new("fail", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();
    let worker = spawn_worker(
        client
            .worker(fail_and_ok())
            .scheduled_waits(scheduled_waits)
            .retry_policy(fixed(Duration::from_secs(600))),
    );
    wait_for_state(&client, &t.id, TaskState::Retry, T).await;
    wait_for(T, "the waiting item to stay pending", || async {
        let i = client.queue_info("Q").await.unwrap();
        (i.ack_pending == 1).then_some(())
    })
    .await;
    assert!(workers_config(&client, "Q")
        .await
        .get("filter_subject")
        .is_none());
    let stream = asyncjobs_tests::js_api(client.nats(), "STREAM.INFO.CHORIA_AJ_Q_Q", "").await;
    assert_eq!(
        stream["config"]["subjects"],
        serde_json::json!(["CHORIA_AJ.Q.Q.>"])
    );
    worker.stop().await;
}

/// Kind I, opted out with `scheduled_waits(false)`.
#[tokio::test]
async fn scheduled_waits_can_be_turned_off() {
    waits_stay_naks(Queue::new("Q"), false).await;
}

/// Kind I: a queue that refuses items when full (max entries, discard new)
/// holds its waits outside it too, and keeps its limit and discard policy.
#[tokio::test]
async fn size_limited_queue_keeps_discard_new_and_holds_waits_outside() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q").max_entries(100)).await;
    let stream_before = stream_config(&client, "Q").await;
    let consumer_before = workers_config(&client, "Q").await;
    let mut t = Task::new("fail", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();
    let worker = spawn_worker(
        client
            .worker(fail_and_ok())
            .retry_policy(fixed(Duration::from_secs(600))),
    );
    wait_for_state(&client, &t.id, TaskState::Retry, T).await;
    wait_for(T, "the wait to be held outside the queue", || async {
        let i = client.queue_info("Q").await.unwrap();
        (i.ack_pending == 0 && held_count(&client).await == 1).then_some(())
    })
    .await;
    assert_eq!(stream_config(&client, "Q").await, stream_before);
    assert_eq!(stream_before["discard"], "new");
    assert_eq!(workers_config(&client, "Q").await, consumer_before);
    worker.stop().await;
}

/// Kind C: a try that finishes after another try took its task over (its
/// worker was paused or cut off past its lease) drops its outcome and
/// leaves the work item to the newer try. Acknowledging it would remove
/// the item the newer try runs on, so a newer try whose worker dies would
/// leave the task `active` forever.
#[tokio::test]
async fn late_finish_leaves_the_newer_tries_item() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("Q").max_run_time(Duration::from_secs(3)),
    )
    .await;
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (s, r, c) = (started.clone(), release.clone(), calls.clone());
    let router = Router::new()
        .handle("slow", move |_ctx: TaskContext, _t: Task| {
            let (s, r) = (s.clone(), r.clone());
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    s.notify_one();
                    r.notified().await;
                    asyncjobs::handler::to_output(&"late")
                } else {
                    asyncjobs::handler::to_output(&"rerun")
                }
            }
        })
        .unwrap();
    let mut t = Task::new("slow", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();
    let worker = spawn_worker(client.worker(router));
    started.notified().await;

    // another worker's newer try takes the task over
    let mut running = client.load_task(&t.id).await.unwrap();
    assert_eq!((running.state, running.tries), (TaskState::Active, 1));
    running.tries = 2;
    running.tried = Some(time::OffsetDateTime::now_utc());
    overwrite_record(&client, &running).await;

    // the late try finishes; its result is dropped and the item kept, so
    // when the newer try's lease passes without an outcome the task reruns
    release.notify_one();
    let done = wait_for_state(&client, &t.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 3);
    assert_eq!(
        done.result.unwrap().payload.get(),
        r#""rerun""#,
        "the late try's result must not stand"
    );
    drained(&client).await;
    worker.stop().await;
}

/// Writes `task` as its stored record, as another process would.
async fn overwrite_record(client: &Client, task: &Task) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        task.sequence().to_string().as_str(),
    );
    let js = async_nats::jetstream::new(client.nats().clone());
    js.publish_with_headers(
        format!("CHORIA_AJ.T.{}", task.id),
        headers,
        task.to_json().unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Kind B, on a queue with max tries 1 (no delivery to spare): the only
/// delivery's worker dies mid-try while no other worker runs. The server
/// never delivers the item again; its max-deliveries advisory is kept,
/// and a worker started later expires the task and removes the item.
#[tokio::test]
async fn exhausted_item_expires_its_task_even_when_found_later() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("Q")
            .max_tries(1)
            .max_run_time(Duration::from_secs(1)),
    )
    .await;
    // a worker ran on the queue once (it keeps the queue's advisories)
    spawn_worker(client.worker(fail_and_ok())).stop().await;
    let mut t = Task::new("ok", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();

    // a worker that dies mid-try: takes the item, saves the try, stops
    let js = async_nats::jetstream::new(client.nats().clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("CHORIA_AJ_Q_Q")
        .await
        .unwrap()
        .get_consumer("WORKERS")
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let _taken = batch.next().await.unwrap().unwrap();
    let mut running = client.load_task(&t.id).await.unwrap();
    running.state = TaskState::Active;
    running.tries = 1;
    running.tried = Some(time::OffsetDateTime::now_utc());
    overwrite_record(&client, &running).await;

    wait_for(T, "the max-deliveries advisory to be kept", || async {
        let s = asyncjobs_tests::js_api(
            client.nats(),
            &format!("STREAM.INFO.{}", asyncjobs::EXHAUSTED_STREAM),
            "",
        )
        .await;
        (s["state"]["messages"].as_u64() == Some(1)).then_some(())
    })
    .await;
    let worker = spawn_worker(client.worker(fail_and_ok()));
    let done = wait_for_state(&client, &t.id, TaskState::Expired, T).await;
    assert_eq!(done.tries, 1);
    assert!(
        done.last_err.contains("delivered 1 times") && done.last_err.contains("worker stopped"),
        "{}",
        done.last_err
    );
    drained(&client).await;
    worker.stop().await;
}

/// Kind C: a try kept alive by heartbeats past the queue's run time is
/// not mistaken for an abandoned one. Its record's lease follows the
/// heartbeats, so a duplicate item arriving then waits for the running
/// try instead of starting a second run (or, on the last delivery a queue
/// allows, the max-deliveries reaper expiring it).
#[tokio::test]
async fn heartbeats_keep_the_recorded_lease_alive() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("Q").max_run_time(Duration::from_secs(1)),
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let past_lease = Arc::new(tokio::sync::Notify::new());
    let (c, p) = (calls.clone(), past_lease.clone());
    let router = Router::new()
        .handle("long", move |ctx: TaskContext, _t: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            let p = p.clone();
            async move {
                // 4 s of heartbeats every 250 ms: past run time + margin (3 s)
                for beat in 0..16 {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    ctx.mark_in_progress().await.expect("heartbeat");
                    if beat == 13 {
                        p.notify_one();
                    }
                }
                asyncjobs::handler::to_output(&"done")
            }
        })
        .unwrap();
    let mut t = Task::new("long", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();
    let worker = spawn_worker(client.worker(router));
    past_lease.notified().await;
    // a duplicate item for the running task (as an operator's tool or a
    // second producer might publish)
    let js = async_nats::jetstream::new(client.nats().clone());
    js.publish(
        format!("CHORIA_AJ.Q.Q.{}", t.id),
        format!(r#"{{"kind":0,"job":"{}"}}"#, t.id).into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let done = wait_for_state(&client, &t.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 1);
    drained(&client).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran twice");
    worker.stop().await;
}

/// Enqueues a task made 10 minutes ago and removes its work item, as a
/// queue's max age or max entries would.
async fn task_with_lost_item(client: &Client, queue: &str) -> Task {
    let mut t = Task::new("ok", &()).unwrap();
    t.created = time::OffsetDateTime::now_utc() - Duration::from_secs(600);
    client.enqueue_to(queue, &mut t).await.unwrap();
    let nc = client.nats();
    let stream = format!("CHORIA_AJ_Q_{queue}");
    let m = asyncjobs_tests::js_api(
        nc,
        &format!("STREAM.MSG.GET.{stream}"),
        &format!(r#"{{"last_by_subj":"CHORIA_AJ.Q.{queue}.{}"}}"#, t.id),
    )
    .await;
    let seq = m["message"]["seq"].as_u64().expect("the item");
    let r = asyncjobs_tests::js_api(
        nc,
        &format!("STREAM.MSG.DELETE.{stream}"),
        &format!(r#"{{"seq":{seq}}}"#),
    )
    .await;
    assert_eq!(r["success"], true, "{r}");
    t
}

/// Kind B, items lost: a task whose work item the queue no longer holds
/// (dropped by max age or max entries, purged, deleted) never runs; a
/// reconcile pass expires it naming the loss, leaves a task whose item is
/// there and young tasks alone, and a worker runs one pass at start.
#[tokio::test]
async fn tasks_whose_item_was_lost_are_expired() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let lost = task_with_lost_item(&client, "Q").await;
    let mut kept = Task::new("ok", &()).unwrap();
    kept.created = time::OffsetDateTime::now_utc() - Duration::from_secs(600);
    client.enqueue(&mut kept).await.unwrap();
    let mut young = Task::new("ok", &()).unwrap();
    client.enqueue(&mut young).await.unwrap();
    client
        .nats()
        .request(
            "$JS.API.STREAM.PURGE.CHORIA_AJ_Q_Q",
            format!(r#"{{"filter":"CHORIA_AJ.Q.Q.{}"}}"#, young.id).into(),
        )
        .await
        .unwrap();

    let ended = client
        .reconcile_tasks(Some("Q"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ended, std::slice::from_ref(&lost.id));
    let t = client.load_task(&lost.id).await.unwrap();
    assert_eq!(t.state, TaskState::Expired);
    assert!(
        t.last_err.starts_with("work item lost: queue Q"),
        "{}",
        t.last_err
    );
    assert_eq!(
        client.load_task(&kept.id).await.unwrap().state,
        TaskState::New
    );
    assert_eq!(
        client.load_task(&young.id).await.unwrap().state,
        TaskState::New
    );

    // a worker's start-up pass does the same for its queue
    let w = Client::builder()
        .url(server.url())
        .queue(Queue::new("W").max_run_time(Duration::from_secs(1)))
        .build()
        .await
        .unwrap();
    let lost_w = task_with_lost_item(&w, "W").await;
    let worker = spawn_worker(
        w.worker(fail_and_ok())
            .reconcile_at_start(Some(Duration::ZERO)),
    );
    wait_for_state(&w, &lost_w.id, TaskState::Expired, T).await;
    worker.stop().await;
}

/// Kind F, the task store: deleted under a running worker, enqueues fail
/// naming it, the worker keeps running, and once the store is re-created
/// (any client build does) tasks run again; an item whose record went
/// with the store is terminated, not retried forever.
#[tokio::test]
async fn deleted_task_store_is_reported_and_recovered() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let worker = spawn_worker(client.worker(fail_and_ok()));
    let mut before = Task::new("ok", &()).unwrap();
    client.enqueue(&mut before).await.unwrap();
    wait_for_state(&client, &before.id, TaskState::Complete, T).await;

    let r = asyncjobs_tests::js_api(client.nats(), "STREAM.DELETE.CHORIA_AJ_TASKS", "").await;
    assert_eq!(r["success"], true, "{r}");
    // an item whose record is gone with the store
    let js = async_nats::jetstream::new(client.nats().clone());
    js.publish(
        "CHORIA_AJ.Q.Q.orphan",
        r#"{"kind":0,"job":"orphan"}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut refused = Task::new("ok", &()).unwrap();
    let err = client.enqueue(&mut refused).await.unwrap_err().to_string();
    assert!(err.contains("CHORIA_AJ_TASKS"), "{err}");

    let again = asyncjobs_tests::client(&server, Queue::new("Q")).await;
    let mut after = Task::new("ok", &()).unwrap();
    again.enqueue(&mut after).await.unwrap();
    wait_for_state(&again, &after.id, TaskState::Complete, T).await;
    drained(&again).await;
    worker.stop().await;
}

/// A task with this payload, whose record is `size` bytes (within a few).
fn task_of_record_size(size: usize) -> Task {
    let mut n = size;
    loop {
        let t = Task::new("big", &"x".repeat(n)).unwrap();
        let len = serde_json::to_vec(&t).unwrap().len();
        if len.abs_diff(size) <= 4 {
            return t;
        }
        n = (n as i64 + (size as i64 - len as i64) * 3 / 4) as usize;
    }
}

/// Issue 29, kind A: a record too close to the server's limit to be ended
/// (its final state, times, tries and error added) is refused at enqueue,
/// before anything is written; one with that room is taken.
#[tokio::test]
async fn a_record_without_room_to_end_it_is_refused_at_enqueue() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let max = client.nats().server_info().max_payload;
    let mut tight = task_of_record_size(max - 256 - 400);
    let err = client.enqueue(&mut tight).await.unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("room to end it"), "{err}");
    assert!(matches!(
        client.load_task(&tight.id).await,
        Err(Error::TaskNotFound(_))
    ));
    let mut roomy = task_of_record_size(max - 256 - 1024 - 200);
    client.enqueue(&mut roomy).await.unwrap();
    // and a worker can end it: it fails for good
    let router = Router::new()
        .handle("big", |_ctx: TaskContext, _t: Task| async move {
            Err::<Box<serde_json::value::RawValue>, _>(HandlerError::terminate("e".repeat(10_000)))
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router));
    let t = wait_for_state(&client, &roomy.id, TaskState::Terminated, T).await;
    assert_eq!(t.tries, 1);
    worker.stop().await;
}

/// Issue 29, kind A: a limit lowered after the task was enqueued (the task
/// store's max message size) refuses every record of it; the worker still
/// ends it, in a final state whose record is made small enough (the
/// payload removed, and said so), instead of leaving it `new`.
#[tokio::test]
async fn a_task_whose_records_a_lowered_limit_refuses_still_ends() {
    // "ok" is tried (the active record is refused); "big" has no handler
    // and is passed on untried (the record noting why is refused)
    for task_type in ["ok", "big"] {
        a_task_whose_records_a_lowered_limit_refuses_still_ends_as(task_type).await;
    }
}

async fn a_task_whose_records_a_lowered_limit_refuses_still_ends_as(task_type: &str) {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let mut task = Task::new(task_type, &"x".repeat(10_000)).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let mut config = asyncjobs_tests::js_api(client.nats(), "STREAM.INFO.CHORIA_AJ_TASKS", "")
        .await["config"]
        .clone();
    config["max_msg_size"] = serde_json::json!(2048);
    let r = asyncjobs_tests::js_api(
        client.nats(),
        "STREAM.UPDATE.CHORIA_AJ_TASKS",
        &config.to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let worker = spawn_worker(client.worker(fail_and_ok()));
    let t = wait_for_state(&client, &task.id, TaskState::Terminated, T).await;
    assert!(t.payload.is_none());
    assert!(
        t.last_err.starts_with("payload of") && t.last_err.contains("removed"),
        "{}",
        t.last_err
    );
    drained(&client).await;
    worker.stop().await;
}

/// Issue 29: `WORKERS` deleted and created again by another tool as a push
/// consumer. Pull requests are answered with an error: the worker names
/// the answer, counts it and asks again at most about once a second instead
/// of looping, and works again once the consumer is fixed.
#[tokio::test]
async fn a_push_consumer_named_workers_is_reported_not_hammered() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PUSHED")).await;
    let r = asyncjobs_tests::js_api(
        client.nats(),
        "CONSUMER.DELETE.CHORIA_AJ_Q_PUSHED.WORKERS",
        "",
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let push = serde_json::json!({"stream_name": "CHORIA_AJ_Q_PUSHED", "config": {
        "durable_name": "WORKERS", "deliver_subject": "elsewhere.pushed", "ack_policy": "explicit"
    }});
    let r = asyncjobs_tests::js_api(
        client.nats(),
        "CONSUMER.CREATE.CHORIA_AJ_Q_PUSHED.WORKERS",
        &push.to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    // pull requests seen on the wire over a few seconds
    let watcher = async_nats::connect(server.url()).await.unwrap();
    let mut pulls = watcher
        .subscribe("$JS.API.CONSUMER.MSG.NEXT.CHORIA_AJ_Q_PUSHED.WORKERS")
        .await
        .unwrap();
    watcher.flush().await.unwrap();
    let errors_before = counter("queue_poll_error_total", "PUSHED");
    let worker = spawn_worker(client.worker(fail_and_ok()).retry_policy(fast_retry()));
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut seen = 0u32;
    while let Ok(Some(_)) = tokio::time::timeout_at(until, pulls.next()).await {
        seen += 1;
    }
    assert!(seen <= 40, "{seen} pull requests in 4 s");
    assert!(counter("queue_poll_error_total", "PUSHED") > errors_before);

    // fixed by hand: the worker serves again
    let r = asyncjobs_tests::js_api(
        client.nats(),
        "CONSUMER.DELETE.CHORIA_AJ_Q_PUSHED.WORKERS",
        "",
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    client.prepare_queue(&Queue::new("PUSHED")).await.unwrap();
    let mut t = Task::new("ok", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();
    wait_for_state(&client, &t.id, TaskState::Complete, T).await;
    worker.stop().await;
}

/// A typed handler whose queue a producer creates on its first enqueue.
#[asyncjobs::task_handler("typed:probe", queue = "TYPED", queue_run_time = "2m")]
async fn typed_probe(n: u32) -> Result<u32, HandlerError> {
    Ok(n)
}

/// Issue 29: a typed producer whose queue was deleted after it checked for
/// it creates it again, with the handler's declared settings, and the task
/// is enqueued into it, instead of answering "queue not found" until the
/// producer restarts.
#[tokio::test]
async fn a_typed_producer_creates_its_deleted_queue_again() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let first = typed_probe::enqueue(&client, 1).await.unwrap();
    assert_eq!(client.load_task(first.id()).await.unwrap().queue, "TYPED");
    client.delete_queue("TYPED").await.unwrap();
    let second = typed_probe::enqueue(&client, 2).await.unwrap();
    let task = client.load_task(second.id()).await.unwrap();
    assert_eq!(task.state, TaskState::New);
    let info = client.queue_info("TYPED").await.unwrap();
    assert_eq!(info.queue.max_run_time, Duration::from_secs(120));
    assert_eq!(info.stream.messages, 1);
}
