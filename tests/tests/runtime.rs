//! The worker runtime `asyncjobs::main!` uses: the worker on a
//! current-thread runtime, handlers on a pool of their own threads.

use asyncjobs::runtime::WorkerRuntime;
use asyncjobs::{Client, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{wait_for_state, NatsServer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(15);

#[test]
fn handlers_run_on_the_pool_and_a_busy_handler_does_not_stall_the_worker() {
    let server = NatsServer::start();
    let rt = WorkerRuntime::new(Some(2)).unwrap();
    assert_eq!(rt.handler_threads(), 2);
    let pool = rt.handlers().expect("a handler pool");
    let released = Arc::new(AtomicBool::new(false));
    let r = released.clone();
    let router = Router::new()
        .handle("where", |_ctx: TaskContext, _t: Task| async move {
            let name = std::thread::current().name().unwrap_or("").to_string();
            asyncjobs::handler::to_output(&name)
        })
        .unwrap()
        .handle("busy", move |_ctx: TaskContext, _t: Task| {
            let r = r.clone();
            async move {
                // holds its thread the way CPU-bound work does (at most 10 s)
                let started = Instant::now();
                while !r.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                asyncjobs::handler::to_output(&r.load(Ordering::SeqCst))
            }
        })
        .unwrap();
    rt.block_on(async move {
        let client = Client::connect(&server.url()).await.unwrap();
        let stop = CancellationToken::new();
        let worker = tokio::spawn(
            client
                .worker(router)
                .concurrency(4)
                .handler_runtime(pool)
                .run(stop.clone()),
        );
        let mut busy = Task::new("busy", &()).unwrap();
        client.enqueue(&mut busy).await.unwrap();
        wait_for_state(&client, &busy.id, TaskState::Active, T).await;
        // the busy handler holds a thread; the worker's own thread still
        // pulls, saves and acknowledges the next task
        let mut here = Task::new("where", &()).unwrap();
        client.enqueue(&mut here).await.unwrap();
        let done = wait_for_state(&client, &here.id, TaskState::Complete, T).await;
        assert_eq!(
            done.result_as::<String>().unwrap().as_deref(),
            Some("asyncjobs-handler"),
            "the handler ran off the pool"
        );
        released.store(true, Ordering::SeqCst);
        let busy = wait_for_state(&client, &busy.id, TaskState::Complete, T).await;
        assert_eq!(
            busy.result_as::<bool>().unwrap(),
            Some(true),
            "the busy handler was still running when the other task completed"
        );
        stop.cancel();
        worker.await.unwrap().unwrap();
    });
}

#[test]
fn without_a_pool_handlers_run_on_the_worker_thread() {
    let server = NatsServer::start();
    let rt = WorkerRuntime::new(Some(0)).unwrap();
    assert!(rt.handlers().is_none());
    let worker_thread = std::thread::current().id();
    let router = Router::new()
        .handle("where", move |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&(std::thread::current().id() == worker_thread))
        })
        .unwrap();
    rt.block_on(async move {
        let client = Client::connect(&server.url()).await.unwrap();
        let stop = CancellationToken::new();
        let worker = tokio::spawn(client.worker(router).run(stop.clone()));
        let mut t = Task::new("where", &()).unwrap();
        client.enqueue(&mut t).await.unwrap();
        let done = wait_for_state(&client, &t.id, TaskState::Complete, T).await;
        assert_eq!(done.result_as::<bool>().unwrap(), Some(true));
        stop.cancel();
        worker.await.unwrap().unwrap();
    });
}
