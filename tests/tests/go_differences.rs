//! One test per deliberate difference from the Go worker (see the crate
//! documentation, "Where this differs from the Go implementation"). Each
//! would fail against the Go behaviour described in docs/go-differences.md.

use asyncjobs::{Client, HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{
    client, fast_retry, js_api, spawn_worker, wait_for, wait_for_state, NatsServer, RunningWorker,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(20);

fn start(client: &Client, router: Router) -> RunningWorker {
    spawn_worker(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .dependency_poll_interval(Duration::from_millis(50)),
    )
}

async fn consumer_delivered(nc: &async_nats::Client, queue: &str) -> u64 {
    let info = js_api(
        nc,
        &format!("CONSUMER.INFO.CHORIA_AJ_Q_{queue}.WORKERS"),
        "",
    )
    .await;
    info["delivered"]["consumer_seq"].as_u64().unwrap_or(0)
}

async fn drained(client: &Client, queue: &str) {
    wait_for(T, "the queue to hold no items", || async {
        let i = client.queue_info(queue).await.unwrap();
        (i.stream.messages == 0 && i.ack_pending == 0).then_some(())
    })
    .await;
}

fn counting(calls: Arc<AtomicUsize>, fail: bool) -> Router {
    Router::new()
        .handle("t", move |_ctx: TaskContext, _t: Task| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if fail {
                    Err(HandlerError::retry("always fails"))
                } else {
                    asyncjobs::handler::to_output(&"ok")
                }
            }
        })
        .unwrap()
}

/// docs/go-differences.md §1: Go leaves the item of a task past its max tries for redelivery
/// after the ack wait (1 h here); we remove it at once.
#[tokio::test]
async fn past_max_tries_on_delivery_is_acked_at_once() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("Q").max_run_time(Duration::from_secs(3600)),
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut task = Task::builder("t").max_tries(1).build().unwrap();
    task.tries = 1;
    client.enqueue(&mut task).await.unwrap();
    let worker = start(&client, counting(calls.clone(), false));
    let t = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(t.last_err, "exceeded maximum tries");
    drained(&client, "Q").await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    worker.stop().await;
}

/// docs/go-differences.md §2: Go never acks an item whose task cannot be loaded; it is
/// redelivered every ack wait forever. We terminate it at once.
#[tokio::test]
async fn item_for_a_missing_task_is_terminated_at_once() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("Q").max_run_time(Duration::from_secs(3600)),
    )
    .await;
    let mut task = Task::new("t", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    client.delete_task(&task.id).await.unwrap();
    let worker = start(&client, counting(Arc::default(), false));
    drained(&client, "Q").await;
    worker.stop().await;
}

/// docs/go-differences.md §3: every blocked NAK counts against max_deliver in Go, so a task that
/// waits longer than max_deliver checks is never delivered again and stays
/// blocked. Here it still runs when its dependency completes.
#[tokio::test]
async fn long_blocked_task_does_not_exhaust_max_deliver() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q").max_tries(3)).await;
    assert_eq!(client.queue().max_tries, 3);
    let parents = asyncjobs_tests::client(&server, Queue::new("PARENTS")).await;
    let mut parent = Task::new("t", &1).unwrap();
    parents.enqueue(&mut parent).await.unwrap();
    let mut child = Task::builder("t")
        .depends_on([parent.id.clone()])
        .build()
        .unwrap();
    client.enqueue(&mut child).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let worker = start(&client, counting(calls.clone(), false));
    let nc = client.nats().clone();
    wait_for(T, "more checks than max_deliver allows", || async {
        (consumer_delivered(&nc, "Q").await >= 10).then_some(())
    })
    .await;
    assert_eq!(
        client.load_task(&child.id).await.unwrap().state,
        TaskState::Blocked
    );
    let pworker = start(&parents, counting(calls.clone(), false));
    wait_for_state(&client, &child.id, TaskState::Complete, T).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.stop().await;
    pworker.stop().await;
}

/// docs/go-differences.md §3 with tracing: the fresh item that replaces one near max_deliver
/// is written by the same path as enqueue, so it keeps the `traceparent`.
#[tokio::test]
async fn rearmed_item_keeps_its_traceparent() {
    use futures::StreamExt;
    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q").max_tries(3)).await;
    let parents = asyncjobs_tests::client(&server, Queue::new("PARENTS")).await;
    let mut parent = Task::new("t", &1).unwrap();
    parents.enqueue(&mut parent).await.unwrap();
    let mut items = client.nats().subscribe("CHORIA_AJ.Q.Q.>").await.unwrap();
    client.nats().flush().await.unwrap();
    let mut child = Task::builder("t")
        .depends_on([parent.id.clone()])
        .traceparent(TP)
        .build()
        .unwrap();
    client.enqueue(&mut child).await.unwrap();
    let worker = start(&client, counting(Arc::new(AtomicUsize::new(0)), false));
    for n in 0..3 {
        let msg = tokio::time::timeout(T, items.next())
            .await
            .unwrap_or_else(|_| panic!("work item {n} (re-armed) within {T:?}"))
            .unwrap();
        let tp = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("traceparent"))
            .map(|v| v.as_str().to_string());
        assert_eq!(
            tp.as_deref(),
            Some(TP),
            "work item {n} keeps its traceparent"
        );
    }
    worker.stop().await;
}

/// docs/go-differences.md §4: Go ignores the queue's max tries in the error path unless tries
/// equals it exactly and leaves the task in `retry` once deliveries run out.
/// Here the smaller of the task's and the queue's limit expires the task.
#[tokio::test]
async fn queue_max_tries_caps_task_max_tries() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q").max_tries(2)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut task = Task::new("t", &1).unwrap();
    assert_eq!(task.max_tries, 10);
    client.enqueue(&mut task).await.unwrap();
    let worker = start(&client, counting(calls.clone(), true));
    let t = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(t.tries, 2);
    assert_eq!(t.last_err, "always fails");
    drained(&client, "Q").await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.stop().await;
}

/// docs/go-differences.md §5: Go runs a `terminated` task again when an item for it is delivered.
#[tokio::test]
async fn terminated_task_is_not_rerun_on_redelivery() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new()
        .handle("t", move |_ctx: TaskContext, _t: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Err(asyncjobs::terminate("bad input")) }
        })
        .unwrap();
    let worker = start(&client, router);
    let mut task = Task::new("t", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for_state(&client, &task.id, TaskState::Terminated, T).await;
    drained(&client, "Q").await;
    // a stray item for the same task (as a redelivery would be)
    let js = async_nats::jetstream::new(client.nats().clone());
    js.publish(
        format!("CHORIA_AJ.Q.Q.{}", task.id),
        format!(r#"{{"kind":0,"job":"{}"}}"#, task.id).into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    drained(&client, "Q").await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Terminated);
    assert_eq!(t.tries, 1);
    worker.stop().await;
}

/// Graceful shutdown: a running handler finishes within the grace period,
/// and one that does not is handed back to the queue at once (Go cancels
/// handlers and leaves items for the ack wait).
#[tokio::test]
async fn graceful_shutdown_finishes_or_hands_back_running_tasks() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("Q").max_run_time(Duration::from_secs(3600)),
    )
    .await;
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let (r, s) = (release.clone(), started.clone());
    let router = Router::new()
        .handle("finishes", move |_ctx: TaskContext, _t: Task| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.notified().await;
                asyncjobs::handler::to_output(&"finished during shutdown")
            }
        })
        .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .shutdown_grace(Duration::from_secs(20))
            .run(stop.clone()),
    );
    let mut task = Task::new("finishes", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for(T, "the handler to start", || async {
        (started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    stop.cancel();
    // not finished yet: the worker waits
    tokio::task::yield_now().await;
    assert!(!worker.is_finished());
    release.notify_one();
    worker.await.unwrap().unwrap();
    assert_eq!(
        client.load_task(&task.id).await.unwrap().state,
        TaskState::Complete
    );

    // a handler that ignores shutdown is cancelled after the grace period and
    // its task is redelivered at once to the next worker
    let hang = Router::new()
        .handle("hangs", |_ctx: TaskContext, _t: Task| async move {
            std::future::pending::<()>().await;
            asyncjobs::handler::to_output(&())
        })
        .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(
        client
            .worker(hang)
            .retry_policy(fast_retry())
            .shutdown_grace(Duration::from_millis(200))
            .run(stop.clone()),
    );
    let mut stuck = Task::new("hangs", &1).unwrap();
    client.enqueue(&mut stuck).await.unwrap();
    wait_for_state(&client, &stuck.id, TaskState::Active, T).await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    let t = client.load_task(&stuck.id).await.unwrap();
    assert_eq!(t.state, TaskState::Retry);
    assert_eq!(t.last_err, "worker shut down before the handler finished");
    let ok = Router::new()
        .handle("hangs", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&"second worker")
        })
        .unwrap();
    let worker = start(&client, ok);
    let done = wait_for_state(&client, &stuck.id, TaskState::Complete, T).await;
    // the try the shutdown interrupted does not count (issue 14, kind D)
    assert_eq!(done.tries, 1);
    worker.stop().await;
}

/// docs/go-differences.md §31: Go's `ajc task add TYPE '{"to":"x"}'` stores the argument as a
/// JSON string; a typed handler decodes the string's content instead of
/// terminating the task.
#[tokio::test]
async fn typed_handler_accepts_a_payload_stored_as_a_json_string() {
    #[derive(serde::Deserialize)]
    struct Email {
        to: String,
    }
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let router = Router::new()
        .handle(
            "email",
            asyncjobs::typed(|_ctx, email: Email| async move {
                Ok::<_, HandlerError>(format!("sent to {}", email.to))
            }),
        )
        .unwrap();
    let mut task = Task::new("email", &r#"{"to":"x"}"#).unwrap();
    assert_eq!(
        task.payload.as_deref(),
        Some(br#""{\"to\":\"x\"}""#.as_slice())
    );
    client.enqueue(&mut task).await.unwrap();
    let worker = start(&client, router);
    let t = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(
        t.result_as::<String>().unwrap().as_deref(),
        Some("sent to x")
    );
    worker.stop().await;
}
