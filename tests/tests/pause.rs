//! Pausing a queue (docs/storage.md §4.4) against a real nats-server: no
//! worker gets an item while the queue is paused, enqueueing goes on, a
//! pause survives worker and server restarts and queue changes, a pause
//! with an end lifts by itself, and bad requests change nothing.

use asyncjobs::{
    Client, Error, PauseUntil, Queue, QueueInfo, QueueUpdate, Router, Task, TaskContext, TaskState,
};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer, RunningWorker};
use std::time::Duration;
use time::OffsetDateTime;

const T: Duration = Duration::from_secs(20);

fn start(client: &Client) -> RunningWorker {
    let router = Router::new()
        .handle("thumb:make", |_ctx: TaskContext, _task: Task| async {
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap();
    spawn_worker(client.worker(router))
}

async fn enqueue(client: &Client) -> String {
    let mut task = Task::new("thumb:make", &"a.png").unwrap();
    client.enqueue(&mut task).await.unwrap();
    task.id
}

/// Waits until the server holds `items` undelivered items of the queue
/// while a worker's pull request waits for them: a snapshot an unpaused
/// consumer never shows (the server hands a waiting request an item at
/// once), so the items are held back by the pause, not yet to come.
async fn held_back(client: &Client, queue: &str, items: u64) -> QueueInfo {
    wait_for(T, "a waiting worker and undelivered items", || async {
        let info = client.queue_info(queue).await.unwrap();
        (info.waiting >= 1 && info.pending == items && info.ack_pending == 0).then_some(info)
    })
    .await
}

#[tokio::test]
async fn a_paused_queue_delivers_nothing_until_resumed_and_enqueueing_goes_on() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("THUMBS")).await;
    let worker = start(&client);
    // the queue works before the pause
    let first = enqueue(&client).await;
    wait_for_state(&client, &first, TaskState::Complete, T).await;

    let before = OffsetDateTime::now_utc();
    let info = client
        .pause_queue("THUMBS", PauseUntil::Resumed)
        .await
        .unwrap();
    let pause = info.paused.expect("paused");
    assert_eq!(pause.until, PauseUntil::Resumed);
    let since = pause.since.expect("since recorded");
    assert!(since >= before - time::Duration::seconds(1), "{since}");

    let a = enqueue(&client).await;
    let b = enqueue(&client).await;
    held_back(&client, "THUMBS", 2).await;
    for id in [&a, &b] {
        let t = client.load_task(id).await.unwrap();
        assert_eq!((t.state, t.tries), (TaskState::New, 0), "{id}");
    }

    let info = client.resume_queue("THUMBS").await.unwrap();
    assert!(info.paused.is_none());
    for id in [&a, &b] {
        wait_for_state(&client, id, TaskState::Complete, T).await;
    }
    // resuming a queue that is not paused changes nothing
    assert!(client
        .resume_queue("THUMBS")
        .await
        .unwrap()
        .paused
        .is_none());
    worker.stop().await;
}

#[tokio::test]
async fn a_pause_with_an_end_lifts_by_itself() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("THUMBS")).await;
    let worker = start(&client);
    let end = OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let info = client
        .pause_queue("THUMBS", PauseUntil::Time(end))
        .await
        .unwrap();
    assert_eq!(info.paused.unwrap().until, PauseUntil::Time(end));
    let id = enqueue(&client).await;
    let t = wait_for_state(&client, &id, TaskState::Complete, T).await;
    // it ran after the end, not before (both times the server's and this
    // machine's, one clock)
    assert!(t.tried.expect("tried") >= end - time::Duration::milliseconds(50));
    assert!(client.queue_info("THUMBS").await.unwrap().paused.is_none());
    worker.stop().await;
}

#[tokio::test]
async fn a_pause_survives_worker_and_server_restarts_and_queue_changes() {
    let logs = asyncjobs_tests::capture_logs("asyncjobs=info");
    let mut server = NatsServer::start();
    let client = client(&server, Queue::new("RESTART")).await;
    let worker = start(&client);
    let id = enqueue(&client).await;
    wait_for_state(&client, &id, TaskState::Complete, T).await;
    client
        .pause_queue("RESTART", PauseUntil::Resumed)
        .await
        .unwrap();
    worker.stop().await;

    // a queue change rewrites the consumer's configuration: the pause stays
    let info = client
        .configure_queue(
            "RESTART",
            QueueUpdate {
                max_concurrent: Some(7),
                ..QueueUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.queue.max_concurrent, 7);
    assert_eq!(info.paused.unwrap().until, PauseUntil::Resumed);

    server.restart();
    let info = wait_for(T, "the queue after the restart", || async {
        client.queue_info("RESTART").await.ok()
    })
    .await;
    assert_eq!(info.paused.unwrap().until, PauseUntil::Resumed);

    // a worker started on the paused queue does not lift the pause, and
    // says why it starts nothing; it notices the resume by itself
    let worker = start(&client);
    let id = enqueue(&client).await;
    let info = held_back(&client, "RESTART", 1).await;
    assert!(info.paused.is_some());
    let said = wait_for(T, "the worker to say the queue is paused", || async {
        let lines = logs.lines_with("the queue is paused until resumed");
        lines
            .iter()
            .any(|l| l.contains("RESTART") && l.contains("WARN"))
            .then_some(lines)
    })
    .await;
    assert!(
        said[0].contains("`ajc queue resume RESTART` lifts it"),
        "{said:?}"
    );
    client.resume_queue("RESTART").await.unwrap();
    wait_for_state(&client, &id, TaskState::Complete, T).await;
    wait_for(T, "the worker to notice the resume", || async {
        (!logs.lines_with("the queue's pause ended").is_empty()).then_some(())
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn bad_pauses_are_refused_and_change_nothing() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("THUMBS")).await;
    client.prepare_queue(&Queue::new("THUMBS")).await.unwrap();

    let e = client
        .pause_queue("NOPE", PauseUntil::Resumed)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::QueueNotFound(ref q) if q == "NOPE"),
        "{e}"
    );
    let e = client.resume_queue("NOPE").await.unwrap_err();
    assert!(
        matches!(e, Error::QueueNotFound(ref q) if q == "NOPE"),
        "{e}"
    );

    let past = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let e = client
        .pause_queue("THUMBS", PauseUntil::Time(past))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("has passed"),
        "{e}"
    );
    let e = client
        .pause_queue("a.b", PauseUntil::Resumed)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::QueueNameInvalid(_)), "{e}");
    assert!(client.queue_info("THUMBS").await.unwrap().paused.is_none());
}

#[tokio::test]
async fn a_server_before_2_11_refuses_a_pause_naming_the_version_and_changes_nothing() {
    let server = NatsServer::start_2_10();
    let client = client(&server, Queue::new("THUMBS")).await;
    assert!(!client.capabilities().pause);
    assert!(
        client
            .capabilities()
            .summary()
            .unwrap()
            .contains("pausing queues need 2.11"),
        "{:?}",
        client.capabilities()
    );
    client.prepare_queue(&Queue::new("THUMBS")).await.unwrap();
    let e = client
        .pause_queue("THUMBS", PauseUntil::Resumed)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::ServerTooOld { needs: "2.11", .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("pausing a queue needs nats-server 2.11 or later; the server runs 2.10."),
        "{e}"
    );
    let e = client.resume_queue("THUMBS").await.unwrap_err();
    assert!(matches!(e, Error::ServerTooOld { .. }), "{e:?}");
    // nothing was written: the consumer has no record of a pause
    let nc = async_nats::connect(server.url()).await.unwrap();
    let info = asyncjobs_tests::js_api(&nc, "CONSUMER.INFO.CHORIA_AJ_Q_THUMBS.WORKERS", "").await;
    assert!(
        info["config"]["metadata"]
            .get("asyncjobs_paused_since")
            .is_none(),
        "{info}"
    );
    // the queue still works
    let worker = start(&client);
    let id = enqueue(&client).await;
    wait_for_state(&client, &id, TaskState::Complete, T).await;
    worker.stop().await;
}
