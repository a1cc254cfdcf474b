//! Cancelling a task (docs/processing.md §2.16): a waiting task never
//! runs; a running one's handler sees its token fire and is stopped after
//! the cancel grace (an external command's processes too); the record is
//! `terminated` with `last_err` naming who cancelled; a finished task is
//! left as it is; its work items go; a cancel racing the finish, another
//! cancel, a missed
//! notice or a killed worker leaves exactly one outcome.

use asyncjobs::{
    Cancelled, Client, Error, ExternalCommand, Queue, Router, Task, TaskContext, TaskState,
};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The tries each handler started, by task id, and how many were stopped
/// (their future dropped before it returned) or saw their token fire.
#[derive(Clone, Default)]
struct Seen {
    started: Arc<Mutex<Vec<String>>>,
    stopped: Arc<AtomicUsize>,
    saw_cancel: Arc<AtomicUsize>,
}

/// Counts a stop when dropped.
struct Stopped(Arc<AtomicUsize>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Seen {
    fn start(&self, id: &str) -> Stopped {
        self.started.lock().unwrap().push(id.to_string());
        Stopped(self.stopped.clone())
    }

    fn started(&self, id: &str) -> bool {
        self.started.lock().unwrap().iter().any(|s| s == id)
    }
}

/// `job:wait` returns once its token fires (a cooperative handler),
/// `job:deaf` ignores it and sleeps an hour, `job:quick` returns at once,
/// `job:short` after a few milliseconds.
fn router(seen: &Seen) -> Router {
    let (a, b, c, d) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
    Router::new()
        .handle("job:wait", move |ctx: TaskContext, t: Task| {
            let seen = a.clone();
            async move {
                let _stopped = seen.start(&t.id);
                ctx.cancelled().await;
                seen.saw_cancel.fetch_add(1, Ordering::SeqCst);
                asyncjobs::handler::to_output(&"finished after the cancel")
            }
        })
        .unwrap()
        .handle("job:deaf", move |_ctx: TaskContext, t: Task| {
            let seen = b.clone();
            async move {
                let _stopped = seen.start(&t.id);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                asyncjobs::handler::to_output(&"never")
            }
        })
        .unwrap()
        .handle("job:quick", move |_ctx: TaskContext, t: Task| {
            let seen = c.clone();
            async move {
                let _stopped = seen.start(&t.id);
                asyncjobs::handler::to_output(&"quick")
            }
        })
        .unwrap()
        .handle("job:short", move |_ctx: TaskContext, t: Task| {
            let seen = d.clone();
            async move {
                let _stopped = seen.start(&t.id);
                let ms = t.payload_as::<u64>().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                asyncjobs::handler::to_output(&"short")
            }
        })
        .unwrap()
}

async fn enqueue(client: &Client, task_type: &str) -> Task {
    enqueue_with(client, task_type, 0).await
}

async fn enqueue_with(client: &Client, task_type: &str, payload: u64) -> Task {
    let mut task = Task::builder(task_type)
        .payload(&payload)
        .max_tries(3)
        .build()
        .unwrap();
    client.enqueue(&mut task).await.unwrap();
    task
}

/// Waits until the handler of `id` has started.
async fn started(seen: &Seen, id: &str) {
    wait_for(T, "the handler to start", || async {
        seen.started(id).then_some(())
    })
    .await;
}

/// Waits until the queue holds no unacknowledged or waiting item.
async fn queue_settles(client: &Client, queue: &str) {
    wait_for(T, "the queue's items to be acknowledged", || async {
        let info = client.queue_info(queue).await.ok()?;
        (info.stream.messages == 0 && info.ack_pending == 0).then_some(())
    })
    .await;
}

/// The first case: a waiting task is cancelled from another
/// client; it never runs (a worker started after it processes the queue
/// and acknowledges its item); cancelling it again says it had finished
/// and changes nothing.
#[tokio::test]
async fn a_waiting_task_never_runs() {
    let server = NatsServer::start();
    let producer = client(&server, Queue::new("CANCELW")).await;
    let operator = client(&server, Queue::new("CANCELW")).await;
    let task = enqueue(&producer, "job:quick").await;

    let done = operator.cancel_task(&task.id, "the test").await.unwrap();
    assert!(matches!(done, Cancelled::Waiting(_)), "{done:?}");
    assert!(done.changed());
    let t = producer.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Terminated);
    assert_eq!(t.last_err, "cancelled by the test");
    assert!(t.result.is_none());
    // its work item is gone: no worker, a Go one included (which would
    // run a terminated task it is given), gets it
    let info = producer.queue_info("CANCELW").await.unwrap();
    assert_eq!(info.stream.messages, 0, "{info:?}");

    let seen = Seen::default();
    let worker = spawn_worker(producer.worker(router(&seen)).retry_policy(fast_retry()));
    let after = enqueue(&producer, "job:quick").await;
    wait_for_state(&producer, &after.id, TaskState::Complete, T).await;
    queue_settles(&producer, "CANCELW").await;
    assert!(!seen.started(&task.id), "a cancelled task never runs");
    let again = operator
        .cancel_task(&task.id, "someone else")
        .await
        .unwrap();
    let Cancelled::AlreadyFinished(kept) = again else {
        panic!("a second cancel finds it finished: {again:?}");
    };
    assert_eq!(kept.last_err, "cancelled by the test", "nothing changed");
    assert_eq!(
        kept.sequence(),
        t.sequence(),
        "the record was not written again"
    );
    worker.stop().await;
}

/// A delayed task's held item goes with the cancel: it does not run when due.
#[tokio::test]
async fn a_delayed_task_does_not_run_when_due() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("CANCELD")).await;
    let seen = Seen::default();
    let worker = spawn_worker(client.worker(router(&seen)).retry_policy(fast_retry()));
    let mut task = Task::builder("job:quick")
        .payload(&0)
        .run_in(Duration::from_secs(2))
        .build()
        .unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = client.cancel_task(&task.id, "the test").await.unwrap();
    assert!(matches!(done, Cancelled::Waiting(_)), "{done:?}");
    // a task enqueued due after it completes after it was due
    let mut later = Task::builder("job:quick")
        .payload(&0)
        .run_in(Duration::from_secs(3))
        .build()
        .unwrap();
    client.enqueue(&mut later).await.unwrap();
    wait_for_state(&client, &later.id, TaskState::Complete, T).await;
    assert!(!seen.started(&task.id));
    assert_eq!(
        client.load_task(&task.id).await.unwrap().state,
        TaskState::Terminated
    );
    worker.stop().await;
}

/// A running task whose handler watches its token: the token fires, the
/// handler returns, its result is not kept, the record is the cancel's
/// and the item is acknowledged.
#[tokio::test]
async fn a_running_handler_sees_its_token_fire() {
    let server = NatsServer::start();
    let operator = client(&server, Queue::new("CANCELR")).await;
    let client = client(&server, Queue::new("CANCELR")).await;
    let seen = Seen::default();
    let worker = spawn_worker(client.worker(router(&seen)).retry_policy(fast_retry()));
    let task = enqueue(&client, "job:wait").await;
    started(&seen, &task.id).await;
    wait_for_state(&client, &task.id, TaskState::Active, T).await;

    let done = operator.cancel_task(&task.id, "the test").await.unwrap();
    assert!(matches!(done, Cancelled::Running(_)), "{done:?}");
    wait_for(T, "the handler to see its token fire", || async {
        (seen.saw_cancel.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    queue_settles(&client, "CANCELR").await;
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Terminated);
    assert_eq!(t.last_err, "cancelled by the test");
    assert!(t.result.is_none(), "the try's result is not kept");
    assert_eq!(
        t.sequence(),
        done.task().sequence(),
        "the cancel's record stands"
    );
    worker.stop().await;
}

/// A handler that ignores its token is stopped after the cancel grace.
#[tokio::test]
async fn a_handler_that_ignores_the_token_is_stopped_after_the_grace() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("CANCELG")).await;
    let seen = Seen::default();
    let worker = spawn_worker(
        client
            .worker(router(&seen))
            .retry_policy(fast_retry())
            .cancel_grace(Duration::from_millis(300)),
    );
    let task = enqueue(&client, "job:deaf").await;
    started(&seen, &task.id).await;
    wait_for_state(&client, &task.id, TaskState::Active, T).await;
    let done = client.cancel_task(&task.id, "the test").await.unwrap();
    assert!(matches!(done, Cancelled::Running(_)), "{done:?}");
    wait_for(T, "the handler to be stopped", || async {
        (seen.stopped.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    queue_settles(&client, "CANCELG").await;
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Terminated);
    assert_eq!(t.last_err, "cancelled by the test");
    worker.stop().await;
}

/// An external command is ended when its task is cancelled: its process
/// group goes, the task stays the cancel's.
#[tokio::test]
async fn an_external_command_is_stopped() {
    use std::os::unix::fs::PermissionsExt;
    let server = NatsServer::start();
    let client = client(&server, Queue::new("CANCELX")).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = dir.path().join("hang.sh");
    std::fs::write(
        &cmd,
        "#!/bin/sh\nsleep 600 &\necho $! > \"$(dirname \"$0\")/pid\"\nwait\n",
    )
    .unwrap();
    std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let router = Router::new()
        .handle("cmd:hang", ExternalCommand::new(&cmd).unwrap())
        .unwrap();
    let worker = spawn_worker(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .cancel_grace(Duration::from_secs(1)),
    );
    let task = enqueue(&client, "cmd:hang").await;
    let pid_file = dir.path().join("pid");
    let pid = wait_for(T, "the command to start its child", || async {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|p| !p.trim().is_empty())
    })
    .await;
    let done = client.cancel_task(&task.id, "the test").await.unwrap();
    assert!(matches!(done, Cancelled::Running(_)), "{done:?}");
    wait_for(T, "the command's child to be killed", || async {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        let gone = match stat {
            Err(_) => true,
            Ok(s) => s
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        };
        gone.then_some(())
    })
    .await;
    queue_settles(&client, "CANCELX").await;
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Terminated);
    assert_eq!(t.last_err, "cancelled by the test");
    worker.stop().await;
}

/// Cancels racing their tasks' finish: each task ends either complete
/// (the cancel said it had finished) or terminated by the cancel (the
/// cancel said it changed it), never both, never a lost outcome.
#[tokio::test]
async fn a_cancel_racing_the_finish_leaves_one_outcome() {
    let server = NatsServer::start();
    let operator = client(&server, Queue::new("CANCELRACE")).await;
    let client = client(&server, Queue::new("CANCELRACE")).await;
    let seen = Seen::default();
    let worker = spawn_worker(
        client
            .worker(router(&seen))
            .concurrency(20)
            .retry_policy(fast_retry()),
    );
    let mut tasks = Vec::new();
    for i in 0..40_u64 {
        tasks.push(enqueue_with(&client, "job:short", i % 20).await);
    }
    let mut said = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis((i % 7) as u64)).await;
        said.push(operator.cancel_task(&t.id, "the race").await.unwrap());
    }
    queue_settles(&client, "CANCELRACE").await;
    let (mut completed, mut cancelled) = (0, 0);
    for (t, said) in tasks.iter().zip(&said) {
        let now = client.load_task(&t.id).await.unwrap();
        match said {
            Cancelled::AlreadyFinished(then) => {
                assert_eq!(then.state, TaskState::Complete, "{}", then.last_err);
                assert_eq!(now.state, TaskState::Complete);
                assert!(now.result.is_some());
                completed += 1;
            }
            _ => {
                assert_eq!(
                    now.state,
                    TaskState::Terminated,
                    "{}: {}",
                    t.id,
                    now.last_err
                );
                assert_eq!(now.last_err, "cancelled by the race");
                assert!(now.result.is_none());
                cancelled += 1;
            }
        }
    }
    assert_eq!(completed + cancelled, tasks.len());
    worker.stop().await;
}

/// Two operators cancel the same task at once: one cancel changes it, the
/// other finds it finished.
#[tokio::test]
async fn of_two_cancels_one_changes_the_task() {
    let server = NatsServer::start();
    let a = client(&server, Queue::new("CANCEL2")).await;
    let b = client(&server, Queue::new("CANCEL2")).await;
    for _ in 0..10 {
        let task = enqueue(&a, "job:quick").await;
        let (x, y) = tokio::join!(a.cancel_task(&task.id, "a"), b.cancel_task(&task.id, "b"));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(
            x.changed() != y.changed(),
            "exactly one cancel changes it: {x:?} {y:?}"
        );
        let winner = if x.changed() { "a" } else { "b" };
        let t = a.load_task(&task.id).await.unwrap();
        assert_eq!(t.last_err, format!("cancelled by {winner}"));
    }
}

/// A worker that never gets the notice still leaves the task cancelled:
/// the try's outcome meets the cancelled record and is dropped; the item
/// is acknowledged.
#[tokio::test]
async fn a_missed_notice_still_leaves_the_task_cancelled() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("CANCELM")).await;
    let seen = Seen::default();
    let worker = spawn_worker(client.worker(router(&seen)).retry_policy(fast_retry()));
    let task = enqueue_with(&client, "job:short", 1500).await;
    started(&seen, &task.id).await;
    asyncjobs_tests::cancel_silently(&server, &client, &task.id, T).await;
    queue_settles(&client, "CANCELM").await;
    let now = client.load_task(&task.id).await.unwrap();
    assert_eq!(now.state, TaskState::Terminated);
    assert_eq!(now.last_err, "cancelled by a silent operator");
    assert!(now.result.is_none());
    worker.stop().await;
}

/// A handler that never returns nor heartbeats, whose cancel notice was
/// missed, is still stopped: the worker reads the records of its long
/// tries (every 10 s) and finds the cancel.
#[tokio::test]
async fn a_missed_notice_still_stops_a_handler_that_never_returns() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("CANCELM2").max_run_time(Duration::from_secs(3600)),
    )
    .await;
    let seen = Seen::default();
    let worker = spawn_worker(
        client
            .worker(router(&seen))
            .retry_policy(fast_retry())
            .cancel_grace(Duration::from_millis(200)),
    );
    let task = enqueue(&client, "job:deaf").await;
    started(&seen, &task.id).await;
    asyncjobs_tests::cancel_silently(&server, &client, &task.id, T).await;
    wait_for(T, "the handler to be stopped", || async {
        (seen.stopped.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    queue_settles(&client, "CANCELM2").await;
    let now = client.load_task(&task.id).await.unwrap();
    assert_eq!(now.last_err, "cancelled by a silent operator");
    worker.stop().await;
}

/// A worker process killed (SIGKILL) while its task runs, then the task
/// cancelled: the task stays cancelled (the record is written before the
/// notice, which reaches nobody) and a worker of the queue that gets the
/// item again acknowledges it without running it.
#[tokio::test]
async fn a_task_cancelled_while_its_worker_is_dead_stays_cancelled() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("CANCELK").max_run_time(Duration::from_secs(2)),
    )
    .await;
    let mut started_sub = client.nats().subscribe("test.started.>").await.unwrap();
    client.nats().flush().await.unwrap();
    let mut dying = asyncjobs_tests::hanging_worker(
        env!("CARGO_BIN_EXE_test-worker"),
        &server.url(),
        "CANCELK",
        &[("TEST_WORKER_BIND", "1")],
    );
    let mut task = Task::new("work", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    tokio::time::timeout(T, started_sub.next())
        .await
        .expect("the worker process starts the task")
        .unwrap();
    wait_for_state(&client, &task.id, TaskState::Active, T).await;
    dying.kill().unwrap();
    dying.wait().unwrap();
    let done = client.cancel_task(&task.id, "the test").await.unwrap();
    assert!(matches!(done, Cancelled::Running(_)), "{done:?}");

    let ran = Arc::new(AtomicUsize::new(0));
    let counted = ran.clone();
    let router = Router::new()
        .handle("work", move |_ctx: TaskContext, _t: Task| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { asyncjobs::handler::to_output(&"ran") }
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    queue_settles(&client, "CANCELK").await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "the cancelled task does not run again"
    );
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Terminated);
    assert_eq!(t.last_err, "cancelled by the test");
    worker.stop().await;
}

/// Refusals name what they refused and change nothing.
#[tokio::test]
async fn bad_cancels_are_refused() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("CANCELE")).await;
    assert!(matches!(
        client.cancel_task("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c", "x").await,
        Err(Error::TaskNotFound(_))
    ));
    assert!(matches!(
        client.cancel_task("no such id!", "x").await,
        Err(Error::TaskIdInvalid(_))
    ));
    let task = enqueue(&client, "job:quick").await;
    for by in ["", "   ", &"x".repeat(300), "a\nb"] {
        let e = client.cancel_task(&task.id, by).await.unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{by:?}: {e}");
        assert!(e.to_string().contains("who cancels"), "{e}");
    }
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::New, "nothing changed");
    assert_eq!(t.sequence(), task.sequence(), "the record was not written");
}
