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

/// True once `pid` has exited (gone, or a zombie nobody reaped yet).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // the state follows the command name in parentheses
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// The (shell, child) pids each run of the script below wrote, oldest first.
fn runs(dir: &std::path::Path) -> Vec<(u32, u32, std::time::SystemTime)> {
    let mut runs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            if !e.file_name().to_string_lossy().starts_with("run.") {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            let mut it = text.split_whitespace().map(|p| p.parse::<u32>());
            let (Some(Ok(shell)), Some(Ok(child))) = (it.next(), it.next()) else {
                return None;
            };
            Some((shell, child, e.metadata().ok()?.modified().ok()?))
        })
        .collect();
    runs.sort_by_key(|r| r.2);
    runs
}

/// Kind J (issue 14): SIGKILL a worker while its external command (a shell
/// script with a child of its own) runs: neither may outlive the worker,
/// and the task runs again only after the first try's lease has passed.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn killed_worker_leaves_no_external_command_running() {
    use std::os::unix::fs::PermissionsExt;
    const RUN_TIME: u64 = 6;
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("ORPHAN").max_run_time(Duration::from_secs(RUN_TIME)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("handler.sh");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n/bin/sleep 300 &\necho \"$$ $!\" > {}/run.$$\nwait\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_test-worker"))
            .args([server.url().as_str(), "ORPHAN"])
            .env("TEST_WORKER_COMMAND", &script)
            .env("TEST_WORKER_RUN_TIME", RUN_TIME.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn test-worker")
    };

    let mut first = spawn();
    let mut task = Task::new("work", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let (shell, child, _) = wait_for(Duration::from_secs(15), "the command to start", || {
        let r = runs(&out);
        async move { r.first().copied() }
    })
    .await;
    assert!(!process_gone(shell) && !process_gone(child));
    let tried = client.load_task(&task.id).await.unwrap().tried.unwrap();

    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = spawn();
    wait_for(
        Duration::from_secs(5),
        "the killed worker's command and its child to end",
        || async { (process_gone(shell) && process_gone(child)).then_some(()) },
    )
    .await;

    // the task runs again, but only once the first try's lease is over
    wait_for(Duration::from_secs(30), "the task to run again", || {
        let r = runs(&out);
        async move { (r.len() >= 2).then_some(()) }
    })
    .await;
    let again = client.load_task(&task.id).await.unwrap();
    assert_eq!(again.tries, 2);
    let gap = again.tried.unwrap() - tried;
    assert!(
        gap >= time::Duration::seconds(RUN_TIME as i64),
        "second try started {gap} after the first, within the first one's lease"
    );
    second.kill().unwrap();
    second.wait().unwrap();
    let (shell, child, _) = runs(&out)[1];
    wait_for(
        Duration::from_secs(5),
        "the second command to end with its worker",
        || async { (process_gone(shell) && process_gone(child)).then_some(()) },
    )
    .await;
}
