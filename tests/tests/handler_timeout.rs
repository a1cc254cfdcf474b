//! A handler's own time-out (docs/processing.md §2.7): `#[task_handler(...,
//! timeout = "1s")]` or `HandlerOptions::timeout` stops a try at the
//! earlier of the time-out and the queue's run time. Past it the try fails
//! naming the handler's time-out (retried, or `expired` when no tries are
//! left); a time-out longer than the queue's run time leaves the queue's
//! run time to end the try, named as the queue's; heartbeats extend the
//! lease, never the time-out. A handler that blocks its thread past its
//! time-out still ends in a defined state.

use asyncjobs::router::HandlerOptions;
use asyncjobs::{Client, LinearPolicy, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// The message a try past the 1 s time-out of `image:resize` leaves.
const TIMED_OUT: &str = "handler \"image:resize\" exceeded its time-out of 1s";

mod jobs {
    use super::Seen;
    use asyncjobs::{HandlerError, State, TaskContext};
    use std::time::Duration;

    /// Sleeps far past its 1 s time-out, telling the test what it saw and
    /// when it was stopped.
    #[asyncjobs::task_handler("image:resize", timeout = "1s")]
    pub(crate) async fn resize(
        ctx: TaskContext,
        State(seen): State<Seen>,
        _size: u32,
    ) -> Result<String, HandlerError> {
        let _stopped = seen.started(&ctx);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok("resized".into())
    }
}

/// What the handlers of one test saw: how far off their deadline was at
/// the start, how many started and how many were stopped (their future
/// dropped before it returned).
#[derive(Clone, Default)]
struct Seen {
    deadline_left: Arc<Mutex<Vec<Duration>>>,
    started: Arc<AtomicUsize>,
    stopped: Arc<AtomicUsize>,
}

/// Counts a stop when dropped.
struct Stopped(Arc<AtomicUsize>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Seen {
    /// Records the try's deadline; the guard counts the handler stopped
    /// when its future is dropped.
    fn started(&self, ctx: &TaskContext) -> Stopped {
        let deadline = ctx.handler_deadline().expect("a worker sets a deadline");
        let left = deadline - time::OffsetDateTime::now_utc();
        self.deadline_left
            .lock()
            .unwrap()
            .push(left.try_into().unwrap_or(Duration::ZERO));
        self.started.fetch_add(1, Ordering::SeqCst);
        Stopped(self.stopped.clone())
    }

    fn stopped(&self) -> usize {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The longest deadline a handler saw at its start.
    fn longest_deadline(&self) -> Duration {
        self.deadline_left
            .lock()
            .unwrap()
            .iter()
            .copied()
            .max()
            .expect("a handler started")
    }
}

/// A retry policy slow enough that a task is seen in `retry` between tries.
fn slow_retry() -> LinearPolicy {
    LinearPolicy::new(1, Duration::from_secs(60), Duration::from_secs(60), 0.0)
}

async fn enqueue(client: &Client, task_type: &str, max_tries: i64) -> Task {
    let mut task = Task::builder(task_type)
        .payload(&7_u32)
        .max_tries(max_tries)
        .build()
        .unwrap();
    client.enqueue(&mut task).await.unwrap();
    task
}

/// Past its time-out a try fails naming the handler's time-out: retried
/// while tries are left (the try counted), `expired` on the last one. The
/// handler is stopped, and its deadline was the time-out's, not the
/// queue's minute.
#[tokio::test]
async fn a_try_past_the_handlers_time_out_is_retried_then_expired() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("TIMEOUT").max_run_time(Duration::from_secs(60)),
    )
    .await;
    let seen = Seen::default();
    let router = Router::new()
        .with_state(seen.clone())
        .register(jobs::resize::HANDLER)
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(slow_retry()));

    let retried = enqueue(&client, "image:resize", 5).await;
    let t = wait_for_state(&client, &retried.id, TaskState::Retry, T).await;
    assert_eq!(t.last_err, TIMED_OUT);
    assert_eq!(t.tries, 1, "the timed-out try is counted");

    let last = enqueue(&client, "image:resize", 1).await;
    let t = wait_for_state(&client, &last.id, TaskState::Expired, T).await;
    assert_eq!(t.last_err, TIMED_OUT);
    assert_eq!(t.tries, 1);

    wait_for(T, "both handlers to be stopped", || async {
        (seen.stopped() == 2).then_some(())
    })
    .await;
    assert!(
        seen.longest_deadline() <= Duration::from_secs(1),
        "handler_deadline reports the time-out, the earlier of the two: {:?} left",
        seen.longest_deadline()
    );
    worker.stop().await;
}

/// A handler that returns within its time-out completes as any other.
#[tokio::test]
async fn a_handler_within_its_time_out_completes() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("INTIME")).await;
    let router = Router::new()
        .handle_with_options(
            "image:resize",
            |_ctx: TaskContext, _t: Task| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                asyncjobs::handler::to_output(&"resized")
            },
            HandlerOptions::new().timeout(Duration::from_secs(30)),
        )
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let task = enqueue(&client, "image:resize", 1).await;
    let t = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(t.tries, 1);
    assert_eq!(t.last_err, "");
    worker.stop().await;
}

/// A time-out longer than the queue's run time: the queue's run time ends
/// the try, and the message names the queue's.
#[tokio::test]
async fn the_queues_run_time_bounds_a_longer_time_out() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("SHORTRUN").max_run_time(Duration::from_secs(1)),
    )
    .await;
    let seen = Seen::default();
    let handler_seen = seen.clone();
    let router = Router::new()
        .handle_with_options(
            "image:resize",
            move |ctx: TaskContext, _t: Task| {
                let stopped = handler_seen.started(&ctx);
                async move {
                    let _stopped = stopped;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    asyncjobs::handler::to_output(&"resized")
                }
            },
            HandlerOptions::new().timeout(Duration::from_secs(3600)),
        )
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let task = enqueue(&client, "image:resize", 1).await;
    let t = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert!(
        t.last_err.contains("queue's max run time"),
        "the queue's run time is named: {}",
        t.last_err
    );
    assert!(!t.last_err.contains("time-out"), "{}", t.last_err);
    wait_for(T, "the handler to be stopped", || async {
        (seen.stopped() == 1).then_some(())
    })
    .await;
    assert!(
        seen.longest_deadline() <= Duration::from_secs(1),
        "handler_deadline reports the queue's run time, the earlier of the two: {:?} left",
        seen.longest_deadline()
    );
    worker.stop().await;
}

/// Heartbeats extend the queue's lease, never the handler's time-out: a
/// handler that keeps its 1 s lease alive is still stopped at its 2 s
/// time-out, named as its own.
#[tokio::test]
async fn heartbeats_do_not_extend_the_handlers_time_out() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("BEATING").max_run_time(Duration::from_secs(1)),
    )
    .await;
    let beats = Arc::new(AtomicUsize::new(0));
    let counted = beats.clone();
    let router = Router::new()
        .handle_with_options(
            "image:resize",
            move |ctx: TaskContext, _t: Task| {
                let counted = counted.clone();
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        ctx.mark_in_progress().await?;
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            },
            HandlerOptions::new().timeout(Duration::from_secs(2)),
        )
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let task = enqueue(&client, "image:resize", 1).await;
    let t = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(
        t.last_err,
        "handler \"image:resize\" exceeded its time-out of 2s"
    );
    assert!(
        beats.load(Ordering::SeqCst) > 0,
        "the handler extended its lease"
    );
    worker.stop().await;
}

/// A handler that blocks its thread (`std::thread::sleep`) until the test
/// lets it go.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    blocking: AtomicUsize,
}

impl Gate {
    fn block(&self) {
        self.blocking.fetch_add(1, Ordering::SeqCst);
        let since = Instant::now();
        while !self.open.load(Ordering::SeqCst) && since.elapsed() < T {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.blocking.fetch_sub(1, Ordering::SeqCst);
    }

    fn blocking(&self) -> usize {
        self.blocking.load(Ordering::SeqCst)
    }
}

fn blocking_router(gate: Arc<Gate>) -> Router {
    Router::new()
        .handle_with_options(
            "image:resize",
            move |_ctx: TaskContext, _t: Task| {
                let gate = gate.clone();
                async move {
                    gate.block();
                    asyncjobs::handler::to_output(&"resized")
                }
            },
            HandlerOptions::new().timeout(Duration::from_secs(1)),
        )
        .unwrap()
}

/// With a handler pool (as `asyncjobs::main!` runs workers), a handler
/// that blocks its thread past its time-out: the worker ends the try at
/// the time-out while the handler still blocks (its result would not be
/// kept), naming the handler's time-out.
#[tokio::test]
async fn a_blocking_handler_on_the_pool_is_ended_at_its_time_out() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("BLOCKTIMEOUT").max_run_time(Duration::from_secs(60)),
    )
    .await;
    let pool = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gate = Arc::new(Gate::default());
    let worker = spawn_worker(
        client
            .worker(blocking_router(gate.clone()))
            .retry_policy(fast_retry())
            .handler_pool(pool.handle().clone()),
    );
    let task = enqueue(&client, "image:resize", 1).await;
    wait_for(T, "the handler to block", || async {
        (gate.blocking() == 1).then_some(())
    })
    .await;
    let t = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(t.last_err, TIMED_OUT);
    assert_eq!(
        gate.blocking(),
        1,
        "the try ended while the handler still blocked"
    );
    gate.open.store(true, Ordering::SeqCst);
    wait_for(T, "the handler to return", || async {
        (gate.blocking() == 0).then_some(())
    })
    .await;
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Expired, "the late result was not kept");
    worker.stop().await;
    pool.shutdown_background();
}

/// Without a pool a blocking handler holds the worker's thread past its
/// time-out: when it returns, the try is a time-out all the same, its
/// result not kept.
#[tokio::test]
async fn without_a_pool_a_try_returning_past_its_time_out_is_a_time_out() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("BLOCKHERETIMEOUT").max_run_time(Duration::from_secs(60)),
    )
    .await;
    // twice its time-out, holding the worker's (and this test's) thread
    let router = Router::new()
        .handle_with_options(
            "image:resize",
            |_ctx: TaskContext, _t: Task| async {
                std::thread::sleep(Duration::from_secs(2));
                asyncjobs::handler::to_output(&"resized")
            },
            HandlerOptions::new().timeout(Duration::from_secs(1)),
        )
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let task = enqueue(&client, "image:resize", 1).await;
    let t = wait_for(T, "the blocking try to end", || async {
        let t = client.load_task(&task.id).await.ok()?;
        (t.state != TaskState::Active && t.tries > 0).then_some(t)
    })
    .await;
    assert_eq!(
        t.state,
        TaskState::Expired,
        "a try past its time-out was kept"
    );
    assert_eq!(t.last_err, TIMED_OUT);
    worker.stop().await;
}
