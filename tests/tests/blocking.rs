//! A handler that blocks its thread (docs/processing.md §2.7): with a
//! handler pool, as `asyncjobs::main!` runs workers, it holds up neither
//! the worker's own work (pulls, saves, acks, leases, the run time) nor
//! the other handlers, the first time and for later tasks of its type.
//! The worker runs on the test's current-thread runtime, as
//! `asyncjobs::main!` runs it on a current-thread runtime beside the pool.

use asyncjobs::{Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// What the blocking handlers of one test share: whether they may
/// return, and how many block right now.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    blocking: AtomicUsize,
}

impl Gate {
    /// Blocks the calling thread (a synchronous call in an async fn) until
    /// the gate opens (at most a minute).
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

fn router(gate: Arc<Gate>) -> Router {
    Router::new()
        .handle("block", move |_ctx: TaskContext, _t: Task| {
            let gate = gate.clone();
            async move {
                gate.block();
                asyncjobs::handler::to_output(&"done")
            }
        })
        .unwrap()
        .handle("quick", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
}

/// A pool of two threads, as `asyncjobs::main!` gives a two-core machine.
fn pool() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn quick_tasks_complete(client: &asyncjobs::Client, n: usize) {
    let mut ids = Vec::new();
    for _ in 0..n {
        let mut t = Task::new("quick", &()).unwrap();
        client.enqueue(&mut t).await.unwrap();
        ids.push(t.id);
    }
    for id in &ids {
        wait_for_state(client, id, TaskState::Complete, T).await;
    }
}

/// The reported case (a handler calling `std::thread::sleep` past a 10 s
/// run time, quick tasks beside it), with the sleep held by the test: the
/// quick tasks complete while it blocks; the run time ends its try while
/// it still blocks; a second task of its type blocks beside it, and quick
/// tasks still complete.
#[tokio::test]
async fn a_blocking_handler_holds_up_neither_the_worker_nor_other_handlers() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("BLOCK").max_run_time(Duration::from_secs(3)),
    )
    .await;
    let pool = pool();
    let gate = Arc::new(Gate::default());
    let worker = spawn_worker(
        client
            .worker(router(gate.clone()))
            .concurrency(8)
            .handler_pool(pool.handle().clone()),
    );
    let mut first = Task::new("block", &()).unwrap();
    client.enqueue(&mut first).await.unwrap();
    wait_for(T, "the first blocking handler to block", || async {
        (gate.blocking() == 1).then_some(())
    })
    .await;

    // the first time its type runs: nothing waits for it
    quick_tasks_complete(&client, 5).await;
    assert_eq!(
        gate.blocking(),
        1,
        "the quick tasks waited for the blocked handler"
    );

    // the run time ends the try while the handler still blocks
    let ended = wait_for(T, "the blocked try to time out", || async {
        let t = client.load_task(&first.id).await.ok()?;
        (t.state != TaskState::Active).then_some(t)
    })
    .await;
    assert_eq!(
        gate.blocking(),
        1,
        "the try ended only when the handler returned"
    );
    assert_eq!(
        ended.state,
        TaskState::Retry,
        "a try past its run time was kept"
    );
    assert!(
        ended.last_err.contains("max run time"),
        "{}",
        ended.last_err
    );

    // the next task of its type blocks beside the first: still nothing waits
    let mut second = Task::new("block", &()).unwrap();
    client.enqueue(&mut second).await.unwrap();
    wait_for(T, "the second blocking handler to block", || async {
        (gate.blocking() == 2).then_some(())
    })
    .await;
    quick_tasks_complete(&client, 5).await;
    assert_eq!(
        gate.blocking(),
        2,
        "the quick tasks waited for a blocked handler"
    );

    gate.open.store(true, Ordering::SeqCst);
    worker.stop().await;
    pool.shutdown_background();
}

/// Crash rescue's lease (docs/processing.md §2.14) is renewed while a
/// handler blocks far longer than `crash_rescue`: no other worker takes
/// the task over, it stays one try held by its worker.
#[tokio::test]
async fn a_blocking_handler_does_not_make_its_worker_look_dead() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("BLOCKLEASE").max_run_time(Duration::from_secs(60)),
    )
    .await;
    let pool = pool();
    let gate = Arc::new(Gate::default());
    let rescue_after = Duration::from_secs(3);
    let workers = [
        spawn_worker(
            client
                .worker(router(gate.clone()))
                .crash_rescue(Some(rescue_after))
                .handler_pool(pool.handle().clone()),
        ),
        spawn_worker(
            client
                .worker(router(gate.clone()))
                .crash_rescue(Some(rescue_after))
                .handler_pool(pool.handle().clone()),
        ),
    ];
    let mut task = Task::new("block", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for(T, "the handler to block", || async {
        (gate.blocking() == 1).then_some(())
    })
    .await;
    let holder = wait_for(T, "the try to be in its worker's lease", || async {
        client.task_holder(&task.id).await.ok().flatten()
    })
    .await;

    // the lease is renewed every third of rescue_after: watch it renewed
    // for twice rescue_after while the handler blocks
    let leases = client
        .jetstream()
        .get_key_value(asyncjobs::worker::LEASES_BUCKET)
        .await
        .unwrap();
    let revision = || async {
        leases
            .entry(holder.worker.as_str())
            .await
            .ok()
            .flatten()
            .map(|e| e.revision)
    };
    let from = revision().await.expect("the worker's lease");
    wait_for(T, "six lease renewals while the handler blocks", || async {
        revision().await.filter(|r| *r >= from + 6)
    })
    .await;

    assert_eq!(gate.blocking(), 1);
    let now = client.load_task(&task.id).await.unwrap();
    assert_eq!(now.state, TaskState::Active, "{}", now.last_err);
    assert_eq!(
        now.tries, 1,
        "the task was taken over while its handler blocked"
    );
    let still = client.task_holder(&task.id).await.unwrap().expect("held");
    assert_eq!(still.worker, holder.worker);

    gate.open.store(true, Ordering::SeqCst);
    wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    for w in workers {
        w.stop().await;
    }
    pool.shutdown_background();
}

/// Without a pool a blocking handler holds the worker's thread: a try that
/// returns past its run time is still a time-out, its result not kept.
#[tokio::test]
async fn without_a_pool_a_try_returning_past_its_run_time_is_a_time_out() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("BLOCKHERE").max_run_time(Duration::from_secs(2)),
    )
    .await;
    let router = Router::new()
        .handle("block", |_ctx: TaskContext, _t: Task| async {
            std::thread::sleep(Duration::from_secs(4));
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router));
    let mut task = Task::new("block", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let t = wait_for(T, "the blocking try to end", || async {
        let t = client.load_task(&task.id).await.ok()?;
        (t.state != TaskState::Active && t.tries > 0).then_some(t)
    })
    .await;
    assert_eq!(
        t.state,
        TaskState::Retry,
        "a try past its run time was kept"
    );
    assert!(t.last_err.contains("max run time"), "{}", t.last_err);
    worker.stop().await;
}
