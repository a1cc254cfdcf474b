//! The worker runtime `asyncjobs::main!` uses: the worker on a
//! current-thread runtime; handlers start there and move to the handler
//! pool once one poll holds the thread, and their type starts there once a
//! poll is seen to use that much CPU time.

use asyncjobs::program::WorkerThreads;
use asyncjobs::{Client, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{fast_retry, wait_for_state, NatsServer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(15);
/// The pool's thread name ([`WorkerThreads`]).
const POOL_THREAD: &str = "asyncjobs-handler";

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}

/// CPU work holding the thread for `d` (longer than the 250 µs that marks
/// a handler CPU-heavy).
fn cpu_for(d: Duration) {
    let started = Instant::now();
    while started.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Runs `body` on a [`WorkerThreads`] with a pool of 2 threads, a client
/// of `queue` and a worker of `router` (concurrency 4) running meanwhile.
fn with_worker<F, Fut>(queue: Queue, router: Router, body: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let server = NatsServer::start();
    let rt = WorkerThreads::new(Some(2)).unwrap();
    assert_eq!(rt.handler_threads(), 2);
    let pool = rt.handlers().expect("a handler pool");
    rt.block_on(async move {
        let client = Client::builder()
            .url(server.url())
            .queue(queue)
            .build()
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let worker = tokio::spawn(
            client
                .worker(router)
                .concurrency(4)
                .retry_policy(fast_retry())
                .handler_pool(pool)
                .run(stop.clone()),
        );
        body(client).await;
        stop.cancel();
        worker.await.unwrap().unwrap();
    });
}

/// Runs one `cpu` task to completion; the threads it started and was
/// held on.
async fn run_cpu_task(client: &Client) -> (String, String) {
    let mut task = Task::new("cpu", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(client, &task.id, TaskState::Complete, T).await;
    let (started_on, held_on, _) = done.result_as::<(String, String, bool)>().unwrap().unwrap();
    (started_on, held_on)
}

#[test]
fn io_handlers_stay_on_the_worker_thread_and_cpu_handlers_move_to_the_pool() {
    let worker_thread = thread_name();
    let released = Arc::new(AtomicBool::new(false));
    let r = released.clone();
    let router = Router::new()
        .handle("io", |_ctx: TaskContext, _t: Task| async move {
            tokio::task::yield_now().await;
            asyncjobs::handler::to_output(&thread_name())
        })
        .unwrap()
        .handle("cpu", move |_ctx: TaskContext, _t: Task| {
            let r = r.clone();
            async move {
                let started_on = thread_name();
                cpu_for(Duration::from_millis(2));
                tokio::task::yield_now().await;
                // moved to the pool: holding this thread no longer holds
                // the worker's (at most 10 s)
                let held_on = thread_name();
                let started = Instant::now();
                while !r.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                asyncjobs::handler::to_output(&(started_on, held_on, r.load(Ordering::SeqCst)))
            }
        })
        .unwrap();
    with_worker(Queue::new("PLACEMENT"), router, |client| async move {
        let mut first = Task::new("cpu", &()).unwrap();
        client.enqueue(&mut first).await.unwrap();
        wait_for_state(&client, &first.id, TaskState::Active, T).await;
        // the CPU handler holds a pool thread; the worker's thread still
        // pulls, saves and acknowledges, and runs the I/O handler itself
        let mut io = Task::new("io", &()).unwrap();
        client.enqueue(&mut io).await.unwrap();
        let io = wait_for_state(&client, &io.id, TaskState::Complete, T).await;
        assert_eq!(
            io.result_as::<String>().unwrap(),
            Some(worker_thread.clone())
        );
        released.store(true, Ordering::SeqCst);
        let first = wait_for_state(&client, &first.id, TaskState::Complete, T).await;
        let (started_on, held_on, was_released) = first
            .result_as::<(String, String, bool)>()
            .unwrap()
            .unwrap();
        assert_eq!(
            started_on, worker_thread,
            "a handler starts on the worker thread"
        );
        assert_eq!(
            held_on, POOL_THREAD,
            "after a long poll it moves to the pool"
        );
        assert!(
            was_released,
            "it was still running when the I/O task completed"
        );
        // one long poll only makes the type suspect (the OS may have
        // preempted the thread): the next task starts on the worker's
        // thread with its polls CPU-timed, and its CPU work confirms it
        assert_eq!(
            run_cpu_task(&client).await,
            (worker_thread.clone(), POOL_THREAD.to_string())
        );
        // the type is known to be CPU-heavy: its next task starts on the pool
        assert_eq!(
            run_cpu_task(&client).await,
            (POOL_THREAD.to_string(), POOL_THREAD.to_string())
        );
    });
}

#[test]
fn a_panic_on_the_pool_fails_the_try_like_any_panic() {
    let router = Router::new()
        .handle("cpu:panics", |_ctx: TaskContext, _t: Task| async move {
            cpu_for(Duration::from_millis(2));
            tokio::task::yield_now().await;
            assert_eq!(thread_name(), POOL_THREAD);
            panic!("boom on the pool")
        })
        .unwrap();
    with_worker(Queue::new("PANICS"), router, |client| async move {
        let mut t = Task::new("cpu:panics", &()).unwrap();
        t.max_tries = 1;
        client.enqueue(&mut t).await.unwrap();
        let ended = wait_for_state(&client, &t.id, TaskState::Expired, T).await;
        assert!(
            ended
                .last_err
                .contains("handler panicked: boom on the pool"),
            "{}",
            ended.last_err
        );
    });
}

#[test]
fn a_timed_out_handler_on_the_pool_is_stopped() {
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let router = Router::new()
        .handle("cpu:hangs", move |_ctx: TaskContext, _t: Task| {
            let guard = Dropped(d.clone());
            async move {
                cpu_for(Duration::from_millis(2));
                tokio::task::yield_now().await;
                let _guard = guard;
                std::future::pending::<()>().await;
                asyncjobs::handler::to_output(&())
            }
        })
        .unwrap();
    let queue = Queue::new("HANGS").max_run_time(Duration::from_secs(1));
    with_worker(queue, router, |client| async move {
        let mut t = Task::new("cpu:hangs", &()).unwrap();
        t.max_tries = 1;
        client.enqueue(&mut t).await.unwrap();
        let ended = wait_for_state(&client, &t.id, TaskState::Expired, T).await;
        assert!(
            ended.last_err.contains("max run time"),
            "{}",
            ended.last_err
        );
        // the future on the pool was dropped, not left running
        let started = Instant::now();
        while !dropped.load(Ordering::SeqCst) {
            assert!(started.elapsed() < T, "the handler on the pool still runs");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[test]
fn without_a_pool_handlers_run_on_the_worker_thread() {
    let server = NatsServer::start();
    let rt = WorkerThreads::new(Some(0)).unwrap();
    assert!(rt.handlers().is_none());
    let router = Router::new()
        .handle("where", |_ctx: TaskContext, _t: Task| async move {
            cpu_for(Duration::from_millis(2));
            tokio::task::yield_now().await;
            asyncjobs::handler::to_output(&thread_name())
        })
        .unwrap();
    let worker_thread = thread_name();
    rt.block_on(async move {
        let client = Client::connect(&server.url()).await.unwrap();
        let stop = CancellationToken::new();
        let worker = tokio::spawn(client.worker(router).run(stop.clone()));
        let mut t = Task::new("where", &()).unwrap();
        client.enqueue(&mut t).await.unwrap();
        let done = wait_for_state(&client, &t.id, TaskState::Complete, T).await;
        assert_eq!(done.result_as::<String>().unwrap(), Some(worker_thread));
        stop.cancel();
        worker.await.unwrap().unwrap();
    });
}
