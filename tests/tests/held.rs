//! Issue 29, held items in a mixed fleet: a wait (a retry's backoff, a
//! dependency poll, a delayed task) is held in `CHORIA_AJ_HELD`, never in
//! the queue's own stream, so no limit the queue's creator (or a Go
//! `ajc queue configure`) sets ever drops it, and no worker changes the
//! queue's configuration for it.

use asyncjobs::{Client, HandlerError, Queue, QueueUpdate, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A retry policy that always waits the same time.
#[derive(Debug)]
struct Fixed(Duration);

impl asyncjobs::RetryPolicy for Fixed {
    fn duration(&self, _attempt: u64) -> Duration {
        self.0
    }
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

/// Items in `CHORIA_AJ_HELD`: waiting for their time, or released and not
/// yet taken by the queue.
async fn held_count(client: &Client) -> u64 {
    asyncjobs_tests::js_api(client.nats(), "STREAM.INFO.CHORIA_AJ_HELD", "").await["state"]
        ["messages"]
        .as_u64()
        .unwrap_or(0)
}

/// Items released by their schedule and not yet taken by their queue.
async fn released_count(client: &Client) -> u64 {
    let info = asyncjobs_tests::js_api(
        client.nats(),
        "STREAM.INFO.CHORIA_AJ_HELD",
        &serde_json::json!({ "subjects_filter": "CHORIA_AJ.R.>" }).to_string(),
    )
    .await;
    info["state"]["subjects"]
        .as_object()
        .map_or(0, |s| s.values().filter_map(|n| n.as_u64()).sum())
}

/// `flaky` fails its first try; `block` waits until `gate` opens.
fn router(gate: Arc<tokio::sync::Semaphore>) -> Router {
    let tries = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    Router::new()
        .handle("flaky", move |ctx: TaskContext, _t: Task| {
            let first = tries.lock().unwrap().insert(ctx.id().to_string());
            async move {
                if first {
                    Err(HandlerError::from("first try fails"))
                } else {
                    asyncjobs::handler::to_output(&"done")
                }
            }
        })
        .unwrap()
        .handle("block", move |_ctx: TaskContext, _t: Task| {
            let gate = gate.clone();
            async move {
                let _pass = gate.acquire().await;
                asyncjobs::handler::to_output(&"done")
            }
        })
        .unwrap()
}

/// The reported case: a queue created as Go creates it, a worker holding
/// three retries, then a size limit of 5 (`ajc queue configure Q
/// --entries 5`, Go's or ours) and five new tasks that fill the queue. All
/// five are accepted, the three retries stay held while the queue is full
/// (a released item the queue refuses is kept and offered again), and
/// every task completes once the queue drains. The queue keeps the
/// configuration its creator and the operator gave it.
#[tokio::test]
async fn held_retries_survive_a_size_limit_set_later() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let worker = spawn_worker(
        client
            .worker(router(gate.clone()))
            .concurrency(1)
            .retry_policy(Fixed(Duration::from_secs(2))),
    );
    let mut flaky = Vec::new();
    for _ in 0..3 {
        let mut t = Task::new("flaky", &()).unwrap();
        client.enqueue(&mut t).await.unwrap();
        flaky.push(t.id);
    }
    for id in &flaky {
        wait_for_state(&client, id, TaskState::Retry, T).await;
    }
    let update = QueueUpdate {
        max_entries: Some(5),
        ..QueueUpdate::default()
    };
    client.configure_queue("Q", update).await.unwrap();
    let mut blocked = Vec::new();
    for _ in 0..5 {
        let mut t = Task::new("block", &()).unwrap();
        client.enqueue(&mut t).await.unwrap();
        blocked.push(t.id);
    }
    // the queue is full: one block task runs, four wait
    let info = client.queue_info("Q").await.unwrap();
    assert_eq!(info.stream.messages, 5);
    // the retries come due while it is full: released, refused, still held
    wait_for(T, "the three retries to be released", || async {
        (released_count(&client).await == 3).then_some(())
    })
    .await;
    assert_eq!(held_count(&client).await, 3, "a held retry was lost");
    assert_eq!(client.queue_info("Q").await.unwrap().stream.messages, 5);
    for id in &flaky {
        assert_eq!(client.load_task(id).await.unwrap().state, TaskState::Retry);
    }
    gate.add_permits(100);
    for id in blocked.iter().chain(&flaky) {
        wait_for_state(&client, id, TaskState::Complete, T).await;
    }
    let stream = stream_config(&client, "Q").await;
    assert_eq!(stream["discard"], "new");
    assert_eq!(stream["max_msgs"], 5);
    assert_eq!(stream["subjects"], serde_json::json!(["CHORIA_AJ.Q.Q.>"]));
    assert!(stream.get("allow_msg_schedules").is_none_or(|v| v == false));
    assert_eq!(held_count(&client).await, 0);
    worker.stop().await;
}

/// A queue deleted while a retry is held: the released item waits until
/// the queue is back, then runs.
#[tokio::test]
async fn a_held_retry_waits_for_its_deleted_queue() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(100));
    let worker = spawn_worker(
        client
            .worker(router(gate.clone()))
            .retry_policy(Fixed(Duration::from_secs(2))),
    );
    let mut t = Task::new("flaky", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();
    wait_for_state(&client, &t.id, TaskState::Retry, T).await;
    // Q's own worker would create its queue again; a worker of another
    // queue is left to move released items
    worker.stop().await;
    let other_client = asyncjobs_tests::client(&server, Queue::new("OTHER")).await;
    let other = spawn_worker(other_client.worker(router(gate.clone())));
    client.delete_queue("Q").await.unwrap();
    wait_for(T, "the retry to be released", || async {
        (released_count(&client).await == 1).then_some(())
    })
    .await;
    assert_eq!(held_count(&client).await, 1, "the released item was lost");
    client.prepare_queue(&Queue::new("Q")).await.unwrap();
    wait_for(
        T,
        "the released item to move into the queue again",
        || async { (held_count(&client).await == 0).then_some(()) },
    )
    .await;
    let worker = spawn_worker(
        client
            .worker(router(gate))
            .retry_policy(Fixed(Duration::from_secs(2))),
    );
    wait_for_state(&client, &t.id, TaskState::Complete, T).await;
    worker.stop().await;
    other.stop().await;
}

/// The reconcile pass finds a waiting task whose held item is gone (the
/// held-items stream purged by hand) and ends it; a task whose queue was
/// deleted loses the item held for it too.
#[tokio::test]
async fn reconcile_ends_tasks_whose_held_item_is_gone() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    client.prepare_queue(&Queue::new("GONE")).await.unwrap();
    let later = || {
        Task::builder("flaky")
            .run_in(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let mut kept = later();
    client.enqueue(&mut kept).await.unwrap();
    let mut purged = later();
    client.enqueue(&mut purged).await.unwrap();
    let mut orphan = later();
    client.enqueue_to("GONE", &mut orphan).await.unwrap();
    assert_eq!(held_count(&client).await, 3);
    let r = asyncjobs_tests::js_api(
        client.nats(),
        "STREAM.PURGE.CHORIA_AJ_HELD",
        &serde_json::json!({ "filter": format!("CHORIA_AJ.W.Q.{}", purged.id) }).to_string(),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    client.delete_queue("GONE").await.unwrap();
    let mut ended = client.reconcile_tasks(None, Duration::ZERO).await.unwrap();
    ended.sort();
    let mut expected = vec![purged.id.clone(), orphan.id.clone()];
    expected.sort();
    assert_eq!(ended, expected);
    for id in &expected {
        let t = client.load_task(id).await.unwrap();
        assert_eq!(t.state, TaskState::Expired);
        assert!(t.last_err.starts_with("work item lost"), "{}", t.last_err);
    }
    assert_eq!(
        client.load_task(&kept.id).await.unwrap().state,
        TaskState::New
    );
    // the deleted queue's held item went with its task
    wait_for(T, "only the kept task's item to be held", || async {
        (held_count(&client).await == 1).then_some(())
    })
    .await;
}

/// Issue 29: a full store (a 6 MB file-store limit) refuses enqueues of
/// 60 KB tasks. An enqueue the caller is told failed leaves no record, or
/// one in a final state (`queue_error`) — never a `new` record without a
/// work item that no worker will ever pick up.
#[tokio::test]
async fn a_refused_enqueue_leaves_no_waiting_record() {
    let server = NatsServer::start_with_config("jetstream { max_file_store: 6MB }");
    let client = client(&server, Queue::new("FULL")).await;
    let payload = "x".repeat(60_000);
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let mut t = Task::new("big", &payload).unwrap();
        match client.enqueue(&mut t).await {
            Ok(()) => accepted.push(t.id),
            Err(e) => refused.push((t.id, e.to_string())),
        }
        if refused.len() >= 10 {
            break;
        }
    }
    assert!(
        !accepted.is_empty() && refused.len() >= 10,
        "{} accepted",
        accepted.len()
    );
    for (id, why) in &refused {
        match client.load_task(id).await {
            Err(asyncjobs::Error::TaskNotFound(_)) => {}
            Ok(t) => assert_eq!(t.state, TaskState::QueueError, "{id} refused with {why}"),
            Err(e) => panic!("loading {id}: {e}"),
        }
    }
    let info = client.queue_info("FULL").await.unwrap();
    assert_eq!(info.stream.messages as usize, accepted.len());
}

/// Go's `ajc task retry` of a task waiting for its next try in a full
/// queue (`--entries 5`, discard new) is accepted: Go keeps the waiting
/// item in the queue, and the retry's item replaces it on the same subject,
/// which a full queue still takes (recorded with Go's `ajc`, nats-server
/// 2.15.1). Ours holds that item outside the queue, so a full queue refuses
/// the retry's item: the retry must then keep the task waiting, held, not
/// end it `queue_error` with its held item gone (docs/storage.md §10.5). It
/// runs once the queue has room.
#[tokio::test]
async fn retrying_a_held_task_into_a_full_queue_keeps_it() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q").max_entries(1)).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let worker = spawn_worker(
        client
            .worker(router(gate.clone()))
            .concurrency(1)
            .retry_policy(Fixed(Duration::from_secs(3600))),
    );
    let mut flaky = Task::new("flaky", &()).unwrap();
    client.enqueue(&mut flaky).await.unwrap();
    wait_for_state(&client, &flaky.id, TaskState::Retry, T).await;
    assert_eq!(held_count(&client).await, 1);
    // one running task fills the queue
    let mut block = Task::new("block", &()).unwrap();
    client.enqueue(&mut block).await.unwrap();
    wait_for_state(&client, &block.id, TaskState::Active, T).await;
    assert_eq!(client.queue_info("Q").await.unwrap().stream.messages, 1);

    let retried = client.retry_task(&flaky.id).await;
    let t = client.load_task(&flaky.id).await.unwrap();
    assert!(
        retried.is_ok(),
        "retry refused: {retried:?}; task {:?}",
        t.state
    );
    assert_eq!(t.state, TaskState::Retry, "{}", t.last_err);
    assert_eq!(held_count(&client).await, 1, "the retry lost the held item");

    gate.add_permits(100);
    wait_for_state(&client, &block.id, TaskState::Complete, T).await;
    let done = wait_for_state(&client, &flaky.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 2);
    assert_eq!(held_count(&client).await, 0);
    worker.stop().await;
}
