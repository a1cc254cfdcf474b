//! The retention of finished task records (docs/processing.md §2.19): a
//! final save carries its state's retention as a per-message TTL and the
//! server removes the record when it ends; unfinished records and states
//! kept forever stay; a queue's own retention beats the client's; a store
//! made without per-message TTL keeps every record (with one WARN) until an
//! operator turns it on; bad retentions are refused at once.
//!
//! "Stays" is judged against a sentinel: a record with a shorter retention
//! saved after it, whose removal proves the server's expiry has run past it.

use asyncjobs::{Client, Error, Queue, Retention, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{
    fast_retry, golden_config, js_api, spawn_worker, test_log, wait_for, wait_for_state, NatsServer,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn client_with(server: &NatsServer, queue: Queue, retention: &str) -> Client {
    test_log();
    Client::builder()
        .url(server.url())
        .queue(queue)
        .retention(retention.parse().unwrap())
        .build()
        .await
        .unwrap()
}

/// A router whose `ok` tasks complete and whose `bad` tasks terminate.
fn router() -> Router {
    Router::new()
        .handle("ok", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
        .handle("bad", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::HandlerResult::Err(asyncjobs::handler::terminate("refused"))
        })
        .unwrap()
}

async fn enqueue(client: &Client, kind: &str) -> Task {
    let mut t = Task::new(kind, &serde_json::json!({})).unwrap();
    client.enqueue(&mut t).await.unwrap();
    t
}

/// Waits until task `id`'s record is gone.
async fn gone(client: &Client, id: &str, what: &str) {
    wait_for(T, what, || async {
        matches!(client.load_task(id).await, Err(Error::TaskNotFound(_))).then_some(())
    })
    .await;
}

/// The case: completed tasks kept shorter than failed ones. A
/// completed record goes after its 2 s; a terminated one (kept an hour)
/// and a waiting one stay; the state events were still sent.
#[tokio::test]
async fn finished_records_expire_by_their_state() {
    let server = NatsServer::start();
    let c = client_with(&server, Queue::new("KEEP"), "complete=2s,failed=1h").await;
    let waiting = client_with(&server, Queue::new("KEEP_IDLE"), "all=1s").await;
    let idle = enqueue(&waiting, "ok").await;
    let failed = enqueue(&c, "bad").await;
    let done = enqueue(&c, "ok").await;
    let worker = spawn_worker(c.worker(router()).retry_policy(fast_retry()));
    wait_for_state(&c, &failed.id, TaskState::Terminated, T).await;
    let complete = wait_for_state(&c, &done.id, TaskState::Complete, T).await;
    assert!(complete.result.is_some());
    gone(&c, &done.id, "the completed record expires").await;
    assert_eq!(
        c.load_task(&failed.id).await.unwrap().state,
        TaskState::Terminated,
        "a terminated record is kept for its own retention"
    );
    assert_eq!(
        c.load_task(&idle.id).await.unwrap().state,
        TaskState::New,
        "an unfinished record never expires"
    );
    worker.stop().await;
}

/// A queue's own retention (stored with it) applies whichever client
/// finishes its tasks; another client reads it back; a change made here
/// applies at once.
#[tokio::test]
async fn a_queues_retention_beats_the_clients() {
    let server = NatsServer::start();
    let own: Retention = "complete=1s".parse().unwrap();
    let creator = client_with(&server, Queue::new("OWN").retention(own), "forever").await;
    // a worker whose own retention keeps everything
    let c = client_with(&server, Queue::new("OWN"), "forever").await;
    assert_eq!(
        c.queue_info("OWN").await.unwrap().queue.retention,
        Some(own)
    );
    let worker = spawn_worker(c.worker(router()).retry_policy(fast_retry()));
    let t = enqueue(&creator, "ok").await;
    gone(&c, &t.id, "the queue's retention expires the record").await;

    // kept forever from now on, changed through the worker's own client
    let update = asyncjobs::QueueUpdate {
        retention: Some(Retention::forever()),
        ..Default::default()
    };
    c.configure_queue("OWN", update).await.unwrap();
    let kept = enqueue(&creator, "ok").await;
    wait_for_state(&c, &kept.id, TaskState::Complete, T).await;
    // sentinel: a record of another queue with 1 s, finished after it
    let other = client_with(&server, Queue::new("OWN_SENTINEL"), "all=1s").await;
    let w2 = spawn_worker(other.worker(router()).retry_policy(fast_retry()));
    let s = enqueue(&other, "ok").await;
    wait_for_state(&other, &s.id, TaskState::Complete, T).await;
    gone(&other, &s.id, "the sentinel expires").await;
    assert_eq!(
        c.load_task(&kept.id).await.unwrap().state,
        TaskState::Complete,
        "kept forever by the queue's new retention"
    );
    worker.stop().await;
    w2.stop().await;
}

/// A record saved again in a state that is not final (a retry) loses its
/// TTL: it is not removed while it waits.
#[tokio::test]
async fn a_retried_task_no_longer_expires() {
    let server = NatsServer::start();
    let c = client_with(&server, Queue::new("AGAIN"), "all=2s").await;
    let worker = spawn_worker(c.worker(router()).retry_policy(fast_retry()));
    let t = enqueue(&c, "bad").await;
    wait_for_state(&c, &t.id, TaskState::Terminated, T).await;
    worker.stop().await;
    // no worker: it waits in `retry`
    c.retry_task(&t.id).await.unwrap();
    // the sentinel finishes after the retry was saved, with the same 2 s
    let sentinel = client_with(&server, Queue::new("AGAIN_SENTINEL"), "all=2s").await;
    let w2 = spawn_worker(sentinel.worker(router()).retry_policy(fast_retry()));
    let s = enqueue(&sentinel, "ok").await;
    gone(&sentinel, &s.id, "the sentinel expires").await;
    assert_eq!(
        c.load_task(&t.id).await.unwrap().state,
        TaskState::Retry,
        "the waiting retry keeps its record"
    );
    w2.stop().await;
}

/// A store made as Go makes it (no per-message TTL) keeps every record;
/// a worker says so once at WARN. An operator's `allow_task_expiry` turns
/// expiry on: records finished from then on expire, earlier ones stay.
#[tokio::test]
async fn a_store_without_ttl_keeps_records_until_expiry_is_allowed() {
    let log = asyncjobs_tests::capture_logs("asyncjobs=warn");
    let server = NatsServer::start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let mut config = golden_config("stream_CHORIA_AJ_TASKS.info.json");
    config["allow_msg_ttl"] = false.into();
    let created = js_api(&nc, "STREAM.CREATE.CHORIA_AJ_TASKS", &config.to_string()).await;
    assert_eq!(created["config"]["allow_msg_ttl"].as_bool(), Some(false));

    let c = client_with(&server, Queue::new("GOSTORE"), "all=1s").await;
    let worker = spawn_worker(c.worker(router()).retry_policy(fast_retry()));
    let early = enqueue(&c, "ok").await;
    wait_for_state(&c, &early.id, TaskState::Complete, T).await;
    let warned = wait_for(T, "the kept-forever warning", || async {
        let l = log.lines_with("finished task records are kept forever");
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0].contains("ajc task retention --enable"),
        "{}",
        warned[0]
    );
    assert!(!c.retention_status().await.unwrap().expiry_allowed);

    assert!(c.allow_task_expiry().await.unwrap(), "turned on now");
    assert!(!c.allow_task_expiry().await.unwrap(), "on already");
    let info = js_api(&nc, "STREAM.INFO.CHORIA_AJ_TASKS", "").await;
    assert_eq!(info["config"]["allow_msg_ttl"].as_bool(), Some(true));
    let later = enqueue(&c, "ok").await;
    gone(
        &c,
        &later.id,
        "a record finished after expiry was allowed expires",
    )
    .await;
    assert_eq!(
        c.load_task(&early.id).await.unwrap().state,
        TaskState::Complete,
        "a record saved without a TTL stays"
    );
    worker.stop().await;
}

/// A store replaced while a worker runs, by one without per-message TTL:
/// the final save that carried a TTL is refused once, sent again without,
/// and the task still ends (nothing stranded `active`).
#[tokio::test]
async fn a_store_replaced_without_ttl_still_takes_final_saves() {
    let server = NatsServer::start();
    let c = client_with(&server, Queue::new("SWAP"), "all=1h").await;
    let worker = spawn_worker(c.worker(router()).retry_policy(fast_retry()));
    let first = enqueue(&c, "ok").await;
    wait_for_state(&c, &first.id, TaskState::Complete, T).await;
    // replaced as Go would make it
    let nc = async_nats::connect(server.url()).await.unwrap();
    js_api(&nc, "STREAM.DELETE.CHORIA_AJ_TASKS", "").await;
    let mut config = golden_config("stream_CHORIA_AJ_TASKS.info.json");
    config["allow_msg_ttl"] = false.into();
    js_api(&nc, "STREAM.CREATE.CHORIA_AJ_TASKS", &config.to_string()).await;
    let second = enqueue(&c, "ok").await;
    wait_for_state(&c, &second.id, TaskState::Complete, T).await;
    worker.stop().await;
}

/// Bad retentions are refused at once, naming what is wrong.
#[test]
fn bad_retentions_are_refused() {
    for (bad, says) in [
        ("complete=0s", "at least 1s"),
        ("complete=-5s", "negative"),
        ("active=1h", "final states"),
        ("complete=1d", "unknown unit"),
        ("complete:1h", "STATE=DURATION"),
        ("finished=1h", "unknown state"),
    ] {
        let e = bad.parse::<Retention>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

/// A server before 2.11 has no per-message TTL: the store is made without
/// it and records are kept; nothing fails.
#[tokio::test]
async fn an_old_server_keeps_records() {
    let server = NatsServer::start_2_10();
    let c = client_with(&server, Queue::new("OLD"), "all=1s").await;
    assert!(!c.capabilities().ttl);
    assert!(!c.retention_status().await.unwrap().expiry_allowed);
    let worker = spawn_worker(c.worker(router()).retry_policy(fast_retry()));
    let t = enqueue(&c, "ok").await;
    wait_for_state(&c, &t.id, TaskState::Complete, T).await;
    match c.allow_task_expiry().await {
        Err(Error::ServerTooOld { needs, .. }) => assert_eq!(needs, "2.11"),
        other => panic!("refused on 2.10: {other:?}"),
    }
    worker.stop().await;
}

/// A store whose own age limit (`max_age`, Go's `TaskRetention`, `ajc task
/// configure`) is shorter than a retention: the record's TTL is cut to it,
/// so an operator's limit is never extended by a longer TTL.
#[tokio::test]
async fn the_stores_age_limit_is_not_extended() {
    let server = NatsServer::start();
    test_log();
    let c = Client::builder()
        .url(server.url())
        .queue(Queue::new("SHORT"))
        .task_retention(Duration::from_secs(3))
        .retention("all=1h".parse().unwrap())
        .build()
        .await
        .unwrap();
    let worker = spawn_worker(c.worker(router()).retry_policy(fast_retry()));
    let t = enqueue(&c, "ok").await;
    wait_for_state(&c, &t.id, TaskState::Complete, T).await;
    gone(
        &c,
        &t.id,
        "the record goes by the store's 3 s, not the 1 h retention",
    )
    .await;
    worker.stop().await;
}

/// A worker's first completions come all at once (200 queued, concurrency
/// 100): one of them reads the queue's retention from its stream and the
/// others wait for that read, rather than each sending its own (a hundred
/// `STREAM.INFO` requests at once); every record still takes the queue's
/// retention. Requests are counted by listening on the JetStream API
/// subject beside the server.
#[tokio::test]
async fn the_first_completions_read_the_queues_retention_once() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let own: Retention = "complete=1s".parse().unwrap();
    let c = client_with(&server, Queue::new("HERD").retention(own), "forever").await;
    let mut ts: Vec<Task> = (0..200)
        .map(|_| Task::new("ok", &serde_json::json!({})).unwrap())
        .collect();
    for r in c.enqueue_many(&mut ts).await {
        r.unwrap();
    }
    let listener = async_nats::connect(server.url()).await.unwrap();
    let mut infos = listener
        .subscribe("$JS.API.STREAM.INFO.CHORIA_AJ_Q_HERD")
        .await
        .unwrap();
    listener.flush().await.unwrap();
    let worker = spawn_worker(c.worker(router()).concurrency(100));
    for t in &ts {
        gone(&c, &t.id, "the queue's retention expires every record").await;
    }
    worker.stop().await;
    // the worker's start reads the queue too (its settings): a few
    // requests, not one per completion
    let mut seen = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), infos.next()).await {
        seen += 1;
    }
    assert!(
        seen <= 10,
        "{seen} STREAM.INFO requests for the queue while 200 tasks completed"
    );
}

/// The same for the task store's settings (whether records may expire): a
/// client that did not prepare the store (`no_storage_init`, as tools
/// use) cancelling 100 tasks at once reads the store once, not once per
/// final save, and every cancelled record still takes its TTL.
#[tokio::test]
async fn the_first_final_saves_read_the_task_store_once() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let creator = client_with(&server, Queue::new("HERD2"), "forever").await;
    let mut ts: Vec<Task> = (0..100)
        .map(|_| Task::new("ok", &serde_json::json!({})).unwrap())
        .collect();
    for r in creator.enqueue_many(&mut ts).await {
        r.unwrap();
    }
    let tool = Client::builder()
        .url(server.url())
        .bind_queue("HERD2")
        .no_storage_init()
        .retention("all=1s".parse().unwrap())
        .build()
        .await
        .unwrap();
    let listener = async_nats::connect(server.url()).await.unwrap();
    let mut infos = listener
        .subscribe("$JS.API.STREAM.INFO.CHORIA_AJ_TASKS")
        .await
        .unwrap();
    listener.flush().await.unwrap();
    let cancels = ts.iter().map(|t| tool.cancel_task(&t.id, "test"));
    for r in futures::future::join_all(cancels).await {
        r.unwrap();
    }
    for t in &ts {
        gone(&creator, &t.id, "a cancelled record expires after its 1 s").await;
    }
    let mut seen = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), infos.next()).await {
        seen += 1;
    }
    assert!(
        seen <= 5,
        "{seen} STREAM.INFO requests for the task store while 100 tasks were cancelled"
    );
}
