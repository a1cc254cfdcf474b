//! The tries of a crashed worker run again within about 30 s whatever the
//! queue's run time, and never beside the try they replace
//! (docs/processing.md §2.14). Queues here have Go's default run time of
//! an hour, so only the rescue can end a test in time.

use asyncjobs::{Client, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{spawn_worker, wait_for, wait_for_state, NatsServer, Proxy};
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
const HOUR: u64 = 3600;

async fn client_at(url: &str, queue: &str) -> Client {
    asyncjobs_tests::test_log();
    Client::builder()
        .url(url)
        .queue(Queue::new(queue).max_run_time(Duration::from_secs(HOUR)))
        .build()
        .await
        .unwrap()
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn completes() -> Router {
    Router::new()
        .handle("work", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"second run")
        })
        .unwrap()
}

/// The reported case: `kill -9` of a worker process mid-task on a queue
/// with a one-hour run time. Another worker runs the task again within
/// the rescue time, and the task completes with two tries.
#[tokio::test]
async fn a_killed_workers_try_runs_again_without_waiting_for_the_run_time() {
    let server = NatsServer::start();
    let client = client_at(&server.url(), "RESCUE").await;
    let mut started = client.nats().subscribe("test.started.>").await.unwrap();
    client.nats().flush().await.unwrap();
    let mut crashing = asyncjobs_tests::hanging_worker(
        env!("CARGO_BIN_EXE_test-worker"),
        &server.url(),
        "RESCUE",
        &[("TEST_WORKER_RUN_TIME", &HOUR.to_string())],
    );
    let mut task = Task::new("work", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), started.next())
        .await
        .expect("the first worker starts the task")
        .unwrap();
    // its lease names the try
    let holder = wait_for(Duration::from_secs(10), "the try in a lease", || async {
        client.task_holder(&task.id).await.unwrap()
    })
    .await;
    assert_eq!(holder.pid, crashing.id());
    assert_eq!(holder.queue, "RESCUE");
    crashing.kill().unwrap();
    crashing.wait().unwrap();

    let worker = spawn_worker(client.worker(completes()));
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 2);
    assert!(client.task_holder(&task.id).await.unwrap().is_none());
    worker.stop().await;
}

/// A worker cut off from the server (its traffic stalled) stops its own
/// try before another worker takes the task over: the second run starts
/// only after the first was cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_worker_stops_its_try_before_another_runs_it() {
    let server = NatsServer::start();
    let proxy = Proxy::start(&server).await;
    let client = client_at(&server.url(), "FENCE").await;
    let cut_off = client_at(&proxy.url(), "FENCE").await;

    let first_started = Arc::new(tokio::sync::Notify::new());
    let first_stopped = Arc::new(AtomicBool::new(false));
    let first = Router::new()
        .handle("work", {
            let started = first_started.clone();
            let stopped = first_stopped.clone();
            move |ctx: TaskContext, _t: Task| {
                let started = started.clone();
                let stopped = stopped.clone();
                async move {
                    // set when the try is stopped (its future dropped)
                    let _stopped = SetOnDrop(stopped);
                    started.notify_one();
                    ctx.cancelled().await;
                    Err(asyncjobs::HandlerError::from("stopped"))
                }
            }
        })
        .unwrap();
    let second_saw_first_stopped = Arc::new(std::sync::Mutex::new(None));
    let second = Router::new()
        .handle("work", {
            let stopped = first_stopped.clone();
            let saw = second_saw_first_stopped.clone();
            move |_ctx: TaskContext, _t: Task| {
                let stopped = stopped.clone();
                let saw = saw.clone();
                async move {
                    saw.lock()
                        .unwrap()
                        .get_or_insert(stopped.load(Ordering::SeqCst));
                    asyncjobs::handler::to_output(&"second run")
                }
            }
        })
        .unwrap();

    let a = spawn_worker(
        cut_off
            .worker(first)
            .crash_rescue(Some(Duration::from_secs(9))),
    );
    let mut task = Task::new("work", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), first_started.notified())
        .await
        .expect("the first worker starts the task");
    wait_for(Duration::from_secs(10), "the try in a lease", || async {
        client.task_holder(&task.id).await.unwrap()
    })
    .await;
    proxy.freeze();
    let b = spawn_worker(
        client
            .worker(second)
            .crash_rescue(Some(Duration::from_secs(9))),
    );
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 2);
    assert_eq!(
        *second_saw_first_stopped.lock().unwrap(),
        Some(true),
        "the second run started while the first still ran"
    );
    b.stop().await;
    proxy.thaw();
    a.stop().await;
}
