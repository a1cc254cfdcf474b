//! Issue 21: what a newcomer meets at run time — failures that are
//! visible in the log, a handler-chosen retry delay, clear connection and
//! queue errors.

use asyncjobs::{Client, HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A retry policy of exactly 10 minutes.
#[derive(Debug)]
struct TenMinutes;

impl asyncjobs::RetryPolicy for TenMinutes {
    fn duration(&self, _attempt: u64) -> Duration {
        Duration::from_secs(600)
    }
}

fn router() -> Router {
    Router::new()
        .handle("email:new", |ctx: TaskContext, _t: Task| async move {
            if ctx.tries() == 1 {
                Err(HandlerError::retry_after(
                    "smtp server busy",
                    Duration::from_secs(1),
                ))
            } else {
                asyncjobs::handler::to_output(&"sent")
            }
        })
        .unwrap()
        .handle("order:confirm", |_ctx: TaskContext, _t: Task| async move {
            Err(asyncjobs::terminate("order 7 does not exist"))
        })
        .unwrap()
}

/// Item 1: a failed try is a WARN naming the task, its type, the try out
/// of the tries allowed, the next try's time and the error; a terminated
/// task is an ERROR; an unknown type is a WARN (once per type, with a
/// suggestion and the known types) and no try; a completion is a DEBUG line; the connection is an
/// INFO line with the server's name and version.
/// Item 6: the handler's `retry_after` delay is used instead of the
/// worker's policy (10 minutes here).
#[tokio::test]
async fn failures_are_logged_and_retry_after_is_honoured() {
    let log = asyncjobs_tests::capture_logs("asyncjobs=debug");
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let worker = spawn_worker(client.worker(router()).retry_policy(TenMinutes));
    let mut email = Task::new("email:new", &()).unwrap();
    client.enqueue(&mut email).await.unwrap();
    let mut order = Task::new("order:confirm", &()).unwrap();
    client.enqueue(&mut order).await.unwrap();
    let mut typo = Task::new("emial:new", &()).unwrap();
    client.enqueue(&mut typo).await.unwrap();

    let done = wait_for_state(&client, &email.id, TaskState::Complete, T).await;
    assert_eq!(
        done.tries, 2,
        "retried after the handler's 1 s, not 10 minutes"
    );
    wait_for_state(&client, &order.id, TaskState::Terminated, T).await;
    wait_for(T, "the log lines", || async {
        (log.lines_with(&typo.id).iter().any(|l| l.contains("WARN"))
            && log.lines_with("task complete").len() == 1)
            .then_some(())
    })
    .await;

    let failed = log.lines_with(&email.id);
    let warn = failed
        .iter()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no WARN for the failed try: {failed:#?}"));
    for part in [
        "email:new",
        "try=1 of 10",
        "next_try=",
        "smtp server busy",
        "trying again",
    ] {
        assert!(warn.contains(part), "{part:?} missing in {warn}");
    }
    assert!(log
        .lines_with("task complete")
        .iter()
        .all(|l| l.contains("DEBUG") && l.contains(&email.id)));

    let terminated = log.lines_with(&order.id);
    assert!(
        terminated
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("order 7 does not exist")),
        "{terminated:#?}"
    );
    let unknown = log.lines_with(&typo.id);
    assert!(
        unknown.iter().any(|l| l.contains("WARN")
            && l.contains(r#"did you mean "email:new"?"#)
            && l.contains(r#""order:confirm""#)),
        "{unknown:#?}"
    );
    let typo = client.load_task(&typo.id).await.unwrap();
    assert_eq!((typo.state, typo.tries), (TaskState::New, 0), "not tried");
    let connected = log.lines_with("connected to NATS");
    assert!(
        connected
            .iter()
            .any(|l| l.contains("INFO") && l.contains("version=") && l.contains(&server.url())),
        "{connected:#?}"
    );

    // a lost connection is a warning, getting it back is info
    let mut server = server;
    server.stop();
    wait_for(T, "the lost connection in the log", || async {
        log.lines_with("lost the connection to NATS")
            .iter()
            .any(|l| l.contains("WARN"))
            .then_some(())
    })
    .await;
    server.restart();
    wait_for(T, "the reconnection in the log", || async {
        log.lines_with("reconnected to NATS")
            .iter()
            .any(|l| l.contains("INFO"))
            .then_some(())
    })
    .await;
    worker.stop().await;
}

/// Item 5: a server without JetStream is named as such, with the fix.
#[tokio::test]
async fn a_server_without_jetstream_is_named() {
    let server = NatsServer::start_without_jetstream();
    let err = Client::builder()
        .url(server.url())
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("JetStream is not enabled") && err.contains("-js"),
        "{err}"
    );
}

/// Item 5: a malformed URL blames the URL.
#[tokio::test]
async fn a_malformed_url_is_named() {
    for url in ["nats://127.0.0.1:notaport", "nats://[::1", "://nohost"] {
        let err = Client::builder()
            .url(url)
            .build()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid NATS URL") && err.contains(url),
            "{url}: {err}"
        );
    }
}

mod invoices {
    #[asyncjobs::task_handler(
        "invoice:send",
        queue = "INVOICES",
        queue_run_time = "10m",
        queue_concurrency = 7
    )]
    pub async fn send(n: u32) -> Result<u32, asyncjobs::HandlerError> {
        Ok(n)
    }
}

/// Item 4: the typed `enqueue` into a queue no one created creates it with
/// the handler's declared settings (no `queue_error` record), and uses an
/// existing queue as it is.
#[tokio::test]
async fn typed_enqueue_creates_a_missing_queue_with_declared_settings() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let first = invoices::send::enqueue(&client, 1).await.unwrap();
    let info = client.queue_info("INVOICES").await.unwrap();
    assert_eq!(info.queue.max_run_time, Duration::from_secs(600));
    assert_eq!(info.queue.max_concurrent, 7);
    let task = client.load_task(first.id()).await.unwrap();
    assert_eq!(
        (task.state, task.queue.as_str()),
        (TaskState::New, "INVOICES")
    );

    // another client: the queue exists, so its settings are left alone
    client
        .configure_queue(
            "INVOICES",
            asyncjobs::QueueUpdate {
                max_concurrent: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let other = asyncjobs_tests::client(&server, Queue::new("Q")).await;
    invoices::send::enqueue(&other, 2).await.unwrap();
    let info = client.queue_info("INVOICES").await.unwrap();
    assert_eq!(info.queue.max_concurrent, 3);
    assert_eq!(info.stream.messages, 2);
}
