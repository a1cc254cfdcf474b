//! A worker whose clock disagrees with the server's judges task times by
//! the server's (docs/processing.md §2.13). The worker here pretends its
//! clock is two minutes slow (`ClientBuilder::pretend_clock_offset`).

use asyncjobs::{Client, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{spawn_worker, wait_for, wait_for_state, NatsServer};
use std::time::Duration;
use time::OffsetDateTime;

const T: Duration = Duration::from_secs(40);

async fn client_with_clock(server: &NatsServer, offset: time::Duration) -> Client {
    asyncjobs_tests::test_log();
    Client::builder()
        .url(server.url())
        .queue(Queue::new("CLOCK"))
        .pretend_clock_offset(offset)
        .build()
        .await
        .unwrap()
}

fn router() -> Router {
    Router::new()
        .handle("tick", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
}

/// The reported case: a `--in 5s` task on a worker whose clock is two
/// minutes slow ran after 124 s. The server's release is authoritative:
/// it runs when the server releases it, long before the worker's own
/// clock reaches its due time.
#[tokio::test]
async fn a_slow_worker_runs_a_delayed_task_when_the_server_releases_it() {
    let server = NatsServer::start();
    let producer = client_with_clock(&server, time::Duration::ZERO).await;
    let slow = client_with_clock(&server, time::Duration::minutes(-2)).await;
    let worker = spawn_worker(slow.worker(router()));
    let mut t = Task::builder("tick")
        .run_in(Duration::from_secs(5))
        .build()
        .unwrap();
    producer.enqueue(&mut t).await.unwrap();
    let done = wait_for_state(&producer, &t.id, TaskState::Complete, T).await;
    // its times are the server's, not the slow clock's
    let tried = done.tried.expect("tried");
    assert!(
        (tried - OffsetDateTime::now_utc()).abs() < time::Duration::seconds(30),
        "tried {tried} is not near the server's time"
    );
    worker.stop().await;
}

/// The worker measures its skew against the server and writes its
/// records in the server's time: its presence record's `seen` agrees with
/// the server's clock once measured.
#[tokio::test]
async fn a_slow_worker_writes_server_times() {
    let server = NatsServer::start();
    let slow = client_with_clock(&server, time::Duration::minutes(-2)).await;
    let worker = spawn_worker(slow.worker(router()));
    wait_for(T, "a presence record in the server's time", || async {
        let workers = slow.workers().await.ok()?;
        workers
            .iter()
            .any(|w| (w.seen - OffsetDateTime::now_utc()).abs() < time::Duration::seconds(5))
            .then_some(())
    })
    .await;
    worker.stop().await;
}
