//! The worker runtime `asyncjobs::main!` uses: the worker on a
//! current-thread runtime; a task type's handlers run on the handler pool
//! until their polls have shown they do not hold their thread, then on the
//! worker's thread (docs/processing.md §2.7).

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

/// CPU work holding the thread for `d` (a poll of 1 ms or more does not
/// count towards the worker's thread).
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

/// Runs one task of `task_type` to completion; its result.
async fn run_task<T: serde::de::DeserializeOwned>(client: &Client, task_type: &str) -> T {
    let mut task = Task::new(task_type, &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(client, &task.id, TaskState::Complete, T).await;
    done.result_as::<T>().unwrap().unwrap()
}

#[test]
fn io_handlers_earn_the_worker_thread_and_cpu_handlers_stay_on_the_pool() {
    let worker_thread = thread_name();
    let router = Router::new()
        .handle("io", |_ctx: TaskContext, _t: Task| async move {
            let started_on = thread_name();
            tokio::task::yield_now().await;
            asyncjobs::handler::to_output(&(started_on, thread_name()))
        })
        .unwrap()
        .handle("cpu", |_ctx: TaskContext, _t: Task| async move {
            let started_on = thread_name();
            cpu_for(Duration::from_millis(2));
            tokio::task::yield_now().await;
            cpu_for(Duration::from_millis(2));
            asyncjobs::handler::to_output(&(started_on, thread_name()))
        })
        .unwrap();
    with_worker(Queue::new("PLACEMENT"), router, |client| async move {
        let pool = (POOL_THREAD.to_string(), POOL_THREAD.to_string());
        let here = (worker_thread.clone(), worker_thread.clone());
        // a new type runs on the pool
        assert_eq!(run_task::<(String, String)>(&client, "io").await, pool);
        // two short polls a task: after 32 tasks in a row it runs in place
        // (a poll the OS preempted past 1 ms starts the count again, so
        // allow for a few)
        let mut ran = 0;
        while run_task::<(String, String)>(&client, "io").await != here {
            ran += 1;
            assert!(ran < 400, "an I/O handler never earned the worker's thread");
        }
        // the first task above and these: 32 before it runs in place
        assert!(ran + 1 >= 32, "in place after only {} tasks", ran + 1);
        // polls of 2 ms of CPU never earn the worker's thread
        for _ in 0..40 {
            assert_eq!(run_task::<(String, String)>(&client, "cpu").await, pool);
        }
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
