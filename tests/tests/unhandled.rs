//! Issue 30 item 9: a task whose type the worker has no handler for is not
//! tried. It is passed on (state and tries unchanged) for a worker of the
//! queue that has the handler, warned about once per type, and ends
//! `expired`, naming the type, when none takes it within the worker's
//! unhandled wait (docs/processing.md §2.6).

use asyncjobs::{HandlerResult, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{capture_logs, client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn ok(_: TaskContext, t: Task) -> HandlerResult {
    asyncjobs::handler::to_output(&t.task_type)
}

fn emails() -> Router {
    Router::new().handle("email:new", ok).unwrap()
}

/// (a) A worker without the handler leaves the task `new` with no try,
/// saying why in `last_err`, and warns once for the type however many
/// deliveries and tasks it sees; (b) a worker with the handler started
/// later on the same queue runs it.
#[tokio::test]
async fn an_unknown_type_waits_untried_for_a_worker_with_its_handler() {
    let log = capture_logs("asyncjobs=debug");
    let server = NatsServer::start();
    let client = client(&server, Queue::new("IMAGES")).await;
    let without = spawn_worker(client.worker(emails()));
    let mut first = Task::new("image:resize", &()).unwrap();
    client.enqueue(&mut first).await.unwrap();
    let mut second = Task::new("image:resize", &()).unwrap();
    client.enqueue(&mut second).await.unwrap();

    let noted = wait_for(T, "the task's note", || async {
        client
            .load_task(&first.id)
            .await
            .ok()
            .filter(|t| !t.last_err.is_empty())
    })
    .await;
    assert!(
        noted.last_err.starts_with(
            "waiting for a worker of queue IMAGES that handles task type \"image:resize\" (a worker handling \"email:new\" passed it on); it expires unless one takes it by "
        ),
        "{}",
        noted.last_err
    );
    // several deliveries of each, none a try
    wait_for(T, "several deliveries", || async {
        let passed = |id: &str| {
            log.lines_with(id)
                .iter()
                .filter(|l| l.contains("passed on"))
                .count()
        };
        (passed(&first.id) >= 3 && passed(&second.id) >= 2).then_some(())
    })
    .await;
    for id in [&first.id, &second.id] {
        let t = client.load_task(id).await.unwrap();
        assert_eq!((t.state, t.tries), (TaskState::New, 0), "{t:?}");
    }
    let warns: Vec<String> = log
        .lines_with("type=image:resize")
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:#?}");
    for part in [
        "no handler for the task type",
        "queue=IMAGES",
        r#"handles="email:new""#,
        "wait=1h0m0s",
        "left for a worker of the queue that handles it",
    ] {
        assert!(warns[0].contains(part), "{part:?} missing in {}", warns[0]);
    }
    assert!(
        log.lines_with("image:resize")
            .iter()
            .all(|l| !l.contains("ERROR")),
        "no ERROR for a type another worker may handle"
    );

    // a worker with the handler joins the queue, and the one without it
    // leaves (handing back what it holds): while both pull, each delivery
    // may go to the one without, which passes it on with a wait that
    // grows with the task's age, so "within T" would be a coin toss
    let with = spawn_worker(client.worker(Router::new().handle("image:resize", ok).unwrap()));
    without.stop().await;
    for id in [&first.id, &second.id] {
        let done = wait_for_state(&client, id, TaskState::Complete, T).await;
        assert_eq!(done.tries, 1, "one try, by the worker with the handler");
        assert_eq!(done.last_err, "");
    }
    with.stop().await;
}

/// (c) With no worker of the queue handling the type, the task ends
/// `expired` after the unhandled wait, naming the type, the wait, the
/// types the worker handles and the closest of them; no try was spent.
#[tokio::test]
async fn an_unknown_type_expires_after_the_unhandled_wait() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("TYPO")).await;
    let worker = spawn_worker(
        client
            .worker(emails())
            .unhandled_wait(Duration::from_secs(2)),
    );
    let mut task = Task::new("emial:new", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let ended = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(
        ended.last_err,
        "no worker of queue TYPO handles task type \"emial:new\" (waited 2s; this worker handles: \"email:new\"); did you mean \"email:new\"?"
    );
    assert_eq!(ended.tries, 0);
    worker.stop().await;
}

/// A task with a deadline waits for a handler until its deadline, not the
/// worker's wait, and then says what it waited for.
#[tokio::test]
async fn an_unknown_type_with_a_deadline_waits_until_it() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("DEADLINE")).await;
    let worker = spawn_worker(
        client
            .worker(emails())
            .unhandled_wait(Duration::from_millis(1)),
    );
    let mut task = Task::builder("video:encode")
        .deadline_in(Duration::from_secs(6))
        .build()
        .unwrap();
    client.enqueue(&mut task).await.unwrap();
    let noted = wait_for(T, "the task's note", || async {
        client
            .load_task(&task.id)
            .await
            .ok()
            .filter(|t| !t.last_err.is_empty())
    })
    .await;
    assert_eq!(
        noted.state,
        TaskState::New,
        "the wait of 1 ms does not apply"
    );
    assert!(
        noted
            .last_err
            .contains("it expires unless one takes it by its deadline"),
        "{}",
        noted.last_err
    );
    let ended = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert!(
        ended.last_err.starts_with(
            "past deadline while waiting for a worker of queue DEADLINE that handles task type \"video:encode\""
        ),
        "{}",
        ended.last_err
    );
    assert_eq!(ended.tries, 0);
    worker.stop().await;
}
