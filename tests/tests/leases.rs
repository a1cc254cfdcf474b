//! Issue 29, kind C: a running try's deadline follows the queue's current
//! run time in both directions. Raised, the try goes on (and so does the
//! deadline its handler sees); lowered, the try stops at the new run time
//! before any other worker may take the task over, so two runs of one task
//! never overlap.

use asyncjobs::{Client, Queue, QueueUpdate, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

const T: Duration = Duration::from_secs(60);

async fn set_run_time(client: &Client, queue: &str, run_time: Duration) {
    let update = QueueUpdate {
        max_run_time: Some(run_time),
        ..QueueUpdate::default()
    };
    let info = client.configure_queue(queue, update).await.unwrap();
    assert_eq!(info.queue.max_run_time, run_time);
}

/// The recipe: a worker on a queue with a short run time, the run
/// time raised, a task longer than the old run time added at once. The try
/// is not stopped at the old run time, and the deadline its handler sees
/// (what a program or a request to another service is bounded by) moves
/// with the run time.
#[tokio::test]
async fn a_raised_run_time_reaches_the_handlers_deadline() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("RT").max_run_time(Duration::from_secs(3)),
    )
    .await;
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let router = Router::new()
        .handle("slow", move |ctx: TaskContext, _t: Task| {
            let s = s.clone();
            async move {
                let started = OffsetDateTime::now_utc();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(6)) => {}
                    _ = ctx.cancelled() => {}
                }
                *s.lock().unwrap() = Some((started, ctx.handler_deadline()));
                asyncjobs::handler::to_output(&"finished")
            }
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    wait_for(T, "the worker to start", || async {
        let i = client.queue_info("RT").await.unwrap();
        (i.waiting > 0).then_some(())
    })
    .await;
    set_run_time(&client, "RT", Duration::from_secs(60)).await;
    let mut task = Task::builder("slow").max_tries(1).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 1);
    let (started, deadline) = seen.lock().unwrap().take().expect("the handler ran");
    let deadline = deadline.expect("a worker gives a deadline");
    assert!(
        deadline - started > time::Duration::seconds(30),
        "the handler's deadline stayed at the old run time: {}",
        deadline - started
    );
    worker.stop().await;
}

/// Counts a handler run as running until it returns or is dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The run time lowered while a try runs: the try stops at the new run
/// time (its worker notices within a refresh), and no other worker runs the
/// task while it may still run: across two workers, the task never runs
/// twice at once.
#[tokio::test]
async fn a_lowered_run_time_stops_the_running_try_before_another_may_start() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("LOW").max_run_time(Duration::from_secs(30)),
    )
    .await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let router = || {
        let (running, most, runs) = (running.clone(), most.clone(), runs.clone());
        Router::new()
            .handle("long", move |ctx: TaskContext, _t: Task| {
                let (running, most, runs) = (running.clone(), most.clone(), runs.clone());
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // the run ends when the worker drops it, too
                    let _running = Running(running);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(40)) => {}
                        _ = ctx.cancelled() => {}
                    }
                    asyncjobs::handler::to_output(&"done")
                }
            })
            .unwrap()
    };
    let w1 = spawn_worker(client.worker(router()).retry_policy(fast_retry()));
    let other = asyncjobs_tests::client(&server, Queue::new("LOW")).await;
    let w2 = spawn_worker(other.worker(router()).retry_policy(fast_retry()));
    let mut task = Task::builder("long").max_tries(2).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for(T, "the first try to run", || async {
        (running.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    set_run_time(&client, "LOW", Duration::from_secs(3)).await;
    // both tries time out at the new run time, one after the other
    let t = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(t.tries, 2, "{}", t.last_err);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two runs of the task overlapped"
    );
    w1.stop().await;
    w2.stop().await;
}
