//! Crashes and restarts: a SIGKILLed worker process and a restarted server
//! must not lose tasks.

use asyncjobs::{Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, wait_for, wait_for_state, NatsServer};
use futures::StreamExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn spawn_worker(url: &str, queue: &str, hang: bool) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-worker"));
    cmd.args([url, queue])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if hang {
        cmd.env("TEST_WORKER_HANG", "1");
    }
    cmd.spawn().expect("spawn test-worker")
}

#[tokio::test]
async fn killed_worker_task_is_redelivered_and_completed_by_another() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("CRASH").max_run_time(Duration::from_secs(2)),
    )
    .await;
    let mut started = client.nats().subscribe("test.started.>").await.unwrap();
    client.nats().flush().await.unwrap();

    let mut first = spawn_worker(&server.url(), "CRASH", true);
    let mut task = Task::new("work", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();

    let msg = tokio::time::timeout(Duration::from_secs(15), started.next())
        .await
        .expect("first worker starts the task")
        .unwrap();
    let first_pid: u32 = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
    assert_eq!(first_pid, first.id());
    assert_eq!(
        client.load_task(&task.id).await.unwrap().state,
        TaskState::Active
    );

    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let mut second = spawn_worker(&server.url(), "CRASH", false);
    let done = wait_for_state(
        &client,
        &task.id,
        TaskState::Complete,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done.result_as::<u32>().unwrap(), Some(second.id()));
    assert_eq!(done.tries, 2, "the killed try counts");
    wait_for(Duration::from_secs(10), "queue to drain", || async {
        let info = client.queue_info("CRASH").await.unwrap();
        (info.stream.messages == 0).then_some(())
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test]
async fn server_restart_mid_run_loses_nothing() {
    let mut server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("RESTART").max_run_time(Duration::from_secs(5)),
    )
    .await;
    let router = Router::new()
        .handle("t", |_ctx: TaskContext, t: Task| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            asyncjobs::handler::to_output(&t.id)
        })
        .unwrap();
    let mut tasks: Vec<Task> = (0..300).map(|i| Task::new("t", &i).unwrap()).collect();
    for r in client.enqueue_many(&mut tasks).await {
        r.unwrap();
    }
    let stop = CancellationToken::new();
    let worker = tokio::spawn(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .concurrency(20)
            .run(stop.clone()),
    );

    // restart while tasks are being processed
    wait_for(
        Duration::from_secs(30),
        "some tasks to complete",
        || async {
            let done = client.load_task(&tasks[30].id).await.ok()?;
            (done.state == TaskState::Complete).then_some(())
        },
    )
    .await;
    server.restart();

    for t in &tasks {
        let done =
            wait_for_state(&client, &t.id, TaskState::Complete, Duration::from_secs(90)).await;
        assert_eq!(
            done.result_as::<String>().unwrap().as_deref(),
            Some(t.id.as_str())
        );
    }
    // new work after the restart is processed too
    let mut late = Task::new("t", &"late").unwrap();
    client.enqueue(&mut late).await.unwrap();
    wait_for_state(
        &client,
        &late.id,
        TaskState::Complete,
        Duration::from_secs(30),
    )
    .await;
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Issue 14 kind B: the handler's worker dies on every try and is
/// restarted only after the task's lease has passed. On the item's last
/// delivery the server will never deliver it again, so a try run on it
/// would leave the task `active` forever; the worker replaces the item
/// first, and the task ends `expired` with its tries used up.
#[tokio::test]
async fn tries_that_keep_killing_the_worker_end_expired_not_active() {
    let server = NatsServer::start();
    let run_time = Duration::from_secs(2);
    let client = client(
        &server,
        Queue::new("DIES").max_run_time(run_time).max_tries(3),
    )
    .await;
    let mut started = client.nats().subscribe("test.started.>").await.unwrap();
    client.nats().flush().await.unwrap();
    let mut task = Task::new("work", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();

    for n in 1..=3 {
        // restart only once the dead try's lease (run time + 2 s) is over
        wait_for(
            Duration::from_secs(30),
            "the last try's lease to pass",
            || async {
                let t = client.load_task(&task.id).await.unwrap();
                let over = t.tried.is_none_or(|tried| {
                    time::OffsetDateTime::now_utc() - tried > run_time + Duration::from_secs(3)
                });
                over.then_some(())
            },
        )
        .await;
        let mut worker = spawn_worker(&server.url(), "DIES", true);
        tokio::time::timeout(Duration::from_secs(30), started.next())
            .await
            .unwrap_or_else(|_| panic!("try {n} starts"))
            .unwrap();
        worker.kill().unwrap(); // SIGKILL mid-try
        worker.wait().unwrap();
        assert_eq!(client.load_task(&task.id).await.unwrap().tries, n);
    }

    let mut last = spawn_worker(&server.url(), "DIES", false);
    let t = wait_for_state(
        &client,
        &task.id,
        TaskState::Expired,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(t.tries, 3);
    assert!(
        t.last_err.starts_with("exceeded maximum tries"),
        "{}",
        t.last_err
    );
    assert!(
        t.last_err.contains("stopped without recording"),
        "{}",
        t.last_err
    );
    wait_for(Duration::from_secs(10), "queue to drain", || async {
        let info = client.queue_info("DIES").await.unwrap();
        (info.stream.messages == 0 && info.ack_pending == 0).then_some(())
    })
    .await;
    last.kill().unwrap();
    last.wait().unwrap();
}
