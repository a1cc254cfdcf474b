//! Issue 30 items 2 and 4: a process connecting to a server too old for a
//! feature says once, at start, what is off and which version brings it
//! (`asyncjobs::capabilities`); and the cluster tells whether a running
//! worker serves a queue and a task type (`Client::serving`,
//! docs/processing.md §2.15).

use asyncjobs::{Queue, Router, Serving, Task, TaskContext};
use asyncjobs_tests::{client, spawn_worker, wait_for, NatsServer};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The only test of this binary that captures logs (one global subscriber
/// per binary).
#[tokio::test]
async fn an_old_server_is_reported_once_at_start_with_what_it_lacks() {
    let log = asyncjobs_tests::capture_logs("asyncjobs=warn");
    let old = NatsServer::start_old();
    let c = client(&old, Queue::new("OLD")).await;
    let caps = c.capabilities();
    assert!(caps.version.starts_with("2.11"), "{caps:?}");
    assert!(!caps.schedules && caps.presence, "{caps:?}");
    let reported = log.lines_with("delayed tasks and held retries need 2.12");
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert!(
        reported[0].contains("WARN")
            && reported[0].contains(&format!("nats-server {}", caps.version))
            && reported[0].contains("this is off")
            && !reported[0].contains("presence"),
        "{}",
        reported[0]
    );
    // a second client and a worker of the same process say nothing more
    let again = client(&old, Queue::new("OLD")).await;
    let router = Router::new()
        .handle("t", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&())
        })
        .unwrap();
    let worker = spawn_worker(again.worker(router));
    // the worker announces itself on 2.11 (presence is on there)
    wait_for(T, "the worker's presence", || async {
        (!c.workers().await.unwrap().is_empty()).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(
        log.lines_with("need 2.12").len(),
        1,
        "{:#?}",
        log.lines_with("need")
    );
    assert!(log.lines_with("untagged enum").is_empty());

    // a current server lacks nothing and is not reported
    let server = NatsServer::start();
    let current = client(&server, Queue::new("NEW")).await;
    let caps = current.capabilities();
    assert!(caps.schedules && caps.presence, "{caps:?}");
    assert_eq!(caps.summary(), None);
    assert!(log
        .lines_with(&format!("nats-server {}", caps.version))
        .is_empty());
}

#[tokio::test]
async fn serving_tells_a_queue_nobody_serves_and_a_type_nobody_handles() {
    let server = NatsServer::start();
    let lonely = client(&server, Queue::new("LONELY")).await;
    let mut task = Task::new("image:resize", &()).unwrap();
    lonely.enqueue(&mut task).await.unwrap();
    let s = lonely
        .serving("LONELY", Some("image:resize"))
        .await
        .unwrap();
    assert_eq!(
        s,
        Serving::NoWorker {
            queue: "LONELY".into()
        }
    );
    assert!(s
        .warning()
        .unwrap()
        .starts_with("no running worker serves queue LONELY"));

    let served = client(&server, Queue::new("SERVED")).await;
    let router = Router::new()
        .handle("email:", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&())
        })
        .unwrap();
    let worker = spawn_worker(served.worker(router));
    wait_for(T, "the worker to announce itself", || async {
        (served.serving("SERVED", Some("email:new")).await.unwrap() == Serving::Served)
            .then_some(())
    })
    .await;
    assert_eq!(
        served.serving("SERVED", None).await.unwrap(),
        Serving::Served
    );
    let s = served
        .serving("SERVED", Some("image:resize"))
        .await
        .unwrap();
    assert_eq!(
        s,
        Serving::NoHandler {
            queue: "SERVED".into(),
            task_type: "image:resize".into(),
            handled: vec!["email:".into()],
        }
    );
    worker.stop().await;
    // a stopped worker removes its record: nobody serves the queue
    wait_for(T, "the stopped worker to be gone", || async {
        matches!(
            served.serving("SERVED", None).await.unwrap(),
            Serving::NoWorker { .. }
        )
        .then_some(())
    })
    .await;
    // the untyped enqueue goes to the client's queue, whatever the type
    // (after the worker stopped: an item it passed on would count as
    // pulled until the server hands it out again)
    let mut stray = Task::new("image:resize", &()).unwrap();
    served.enqueue(&mut stray).await.unwrap();
    assert_eq!(stray.queue, "SERVED");
}
