//! Issue 30 item 5: a log line names who acted. A payload that does not
//! decode as a typed handler's payload type is terminated by the worker
//! before the handler runs, and the log says so; a handler that
//! terminates its task is still named as the one that did
//! (docs/processing.md §2.8).

use asyncjobs::{typed, HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[derive(serde::Deserialize)]
struct Resize {
    #[allow(dead_code)]
    width: u32,
}

#[tokio::test]
async fn an_undecodable_payload_is_terminated_by_the_worker_not_the_handler() {
    let log = asyncjobs_tests::capture_logs("asyncjobs=info");
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let router = Router::new()
        .handle(
            "image:resize",
            typed(|_ctx: TaskContext, _r: Resize| async move { Ok::<_, HandlerError>(()) }),
        )
        .unwrap()
        .handle("order:confirm", |_ctx: TaskContext, _t: Task| async move {
            Err(asyncjobs::terminate("order 7 does not exist"))
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router));
    let mut bad = Task::new("image:resize", &serde_json::json!({"width": "wide"})).unwrap();
    client.enqueue(&mut bad).await.unwrap();
    let mut order = Task::new("order:confirm", &()).unwrap();
    client.enqueue(&mut order).await.unwrap();
    wait_for_state(&client, &bad.id, TaskState::Terminated, T).await;
    wait_for_state(&client, &order.id, TaskState::Terminated, T).await;
    wait_for(T, "both log lines", || async {
        (log.lines_with(&bad.id).iter().any(|l| l.contains("ERROR"))
            && log
                .lines_with(&order.id)
                .iter()
                .any(|l| l.contains("ERROR")))
        .then_some(())
    })
    .await;

    let bad_lines = log.lines_with(&bad.id);
    let line = bad_lines
        .iter()
        .find(|l| l.contains("ERROR"))
        .unwrap_or_else(|| panic!("{bad_lines:#?}"));
    assert!(!line.contains("the handler terminated"), "{line}");
    for part in [
        "the payload does not decode as the handler's payload type",
        "the worker terminated the task without running its handler",
        "invalid payload for task type",
    ] {
        assert!(line.contains(part), "{part:?} missing in {line}");
    }
    let order_lines = log.lines_with(&order.id);
    assert!(
        order_lines.iter().any(|l| l.contains("ERROR")
            && l.contains("the handler terminated the task")
            && l.contains("order 7 does not exist")),
        "{order_lines:#?}"
    );
    worker.stop().await;
}
