//! A handler that blocks its thread (docs/processing.md §2.7): the run time
//! still decides its outcome, and later tasks of its type run on the
//! handler pool, so they no longer hold up the worker's thread. The worker
//! runs on the test's current-thread runtime, as `asyncjobs::main!` runs
//! it on a current-thread runtime beside a handler pool.

use asyncjobs::{Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn router() -> Router {
    Router::new()
        .handle("block", |_ctx: TaskContext, _t: Task| async {
            // a synchronous call in an async fn
            std::thread::sleep(Duration::from_secs(6));
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
        .handle("quick", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
}

/// The reported case, shortened: a handler sleeping past its queue's run
/// time is not saved `complete`; once it returned, a second task of its
/// type runs on the pool while a quick task beside it completes.
#[tokio::test]
async fn a_blocking_handler_keeps_to_the_run_time_and_moves_to_the_pool() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("BLOCK").max_run_time(Duration::from_secs(3)),
    )
    .await;
    let pool = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let worker = spawn_worker(
        client
            .worker(router())
            .concurrency(4)
            .handler_pool(pool.handle().clone()),
    );
    let mut first = Task::new("block", &()).unwrap();
    client.enqueue(&mut first).await.unwrap();
    let t = wait_for(T, "the first blocking try to end", || async {
        let t = client.load_task(&first.id).await.ok()?;
        (t.state != TaskState::Active && t.tries > 0).then_some(t)
    })
    .await;
    assert_eq!(
        t.state,
        TaskState::Retry,
        "a try past its run time was kept"
    );
    assert!(t.last_err.contains("max run time"), "{}", t.last_err);

    let mut second = Task::new("block", &()).unwrap();
    client.enqueue(&mut second).await.unwrap();
    wait_for_state(&client, &second.id, TaskState::Active, T).await;
    let mut quick = Task::new("quick", &()).unwrap();
    client.enqueue(&mut quick).await.unwrap();
    wait_for_state(&client, &quick.id, TaskState::Complete, T).await;
    assert_eq!(
        client.load_task(&second.id).await.unwrap().state,
        TaskState::Active,
        "the quick task waited for the blocking one"
    );
    worker.stop().await;
    pool.shutdown_background();
}
