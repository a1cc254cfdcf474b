//! A worker whose clock disagrees with the server's judges task times by
//! the server's (docs/processing.md §2.13). The worker here pretends its
//! clock is two minutes slow (`ClientBuilder::pretend_clock_offset`).

use asyncjobs::{Client, HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::{Arc, Mutex};
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
    let worker = measured_worker(&slow, router()).await;
    worker.stop().await;
}

/// A router whose `flaky` handler fails its first try, asking to be tried
/// again after `backoff`, and records when each try started.
fn flaky_router(backoff: Duration, tries: Arc<Mutex<Vec<OffsetDateTime>>>) -> Router {
    Router::new()
        .handle("flaky", move |_ctx: TaskContext, _t: Task| {
            let tries = tries.clone();
            async move {
                let first = {
                    let mut tries = tries.lock().unwrap();
                    tries.push(OffsetDateTime::now_utc());
                    tries.len() == 1
                };
                if first {
                    return Err(HandlerError::retry_after("once", backoff));
                }
                asyncjobs::handler::to_output(&"done")
            }
        })
        .unwrap()
}

/// Starts a worker on `client` and waits until it has measured its skew
/// against the server (its presence record is in the server's time).
async fn measured_worker(client: &Client, router: Router) -> asyncjobs_tests::RunningWorker {
    let worker = spawn_worker(client.worker(router));
    wait_for(T, "a presence record in the server's time", || async {
        let workers = client.workers().await.ok()?;
        workers
            .iter()
            .any(|w| (w.seen - OffsetDateTime::now_utc()).abs() < time::Duration::seconds(5))
            .then_some(())
    })
    .await;
    worker
}

/// The siblings of the delayed task above, in the worker's own waits: a
/// retry's backoff is an item the server holds until due, and the due
/// time was this worker's clock's; it is now the server's (a clock two
/// minutes fast held a 2 s backoff for 2 min 2 s). This test passes on
/// the old code too: the pretended offset reaches only the worker's
/// clock module, not the system clock the old code read. It holds the
/// path to its promise: the backoff ends by the server's clock.
#[tokio::test]
async fn a_fast_worker_retries_after_the_backoff_by_the_servers_clock() {
    let server = NatsServer::start();
    let fast = client_with_clock(&server, time::Duration::minutes(2)).await;
    let tries = Arc::new(Mutex::new(Vec::new()));
    let worker = measured_worker(&fast, flaky_router(Duration::from_secs(2), tries.clone())).await;
    let mut t = Task::builder("flaky").build().unwrap();
    fast.enqueue(&mut t).await.unwrap();
    let done = wait_for_state(&fast, &t.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 2);
    worker.stop().await;
}

/// Two minutes slow, the backoff's due time would be past and the server
/// would release the item at once. Measured by the test's clock, which is
/// the server's, the second try starts no sooner than the backoff after
/// the first. (As above, this passes on the old code too.)
#[tokio::test]
async fn a_slow_worker_keeps_a_retrys_backoff() {
    let server = NatsServer::start();
    let slow = client_with_clock(&server, time::Duration::minutes(-2)).await;
    let tries = Arc::new(Mutex::new(Vec::new()));
    let backoff = Duration::from_secs(3);
    let worker = measured_worker(&slow, flaky_router(backoff, tries.clone())).await;
    let mut t = Task::builder("flaky").build().unwrap();
    slow.enqueue(&mut t).await.unwrap();
    wait_for_state(&slow, &t.id, TaskState::Complete, T).await;
    let tries = tries.lock().unwrap().clone();
    assert_eq!(tries.len(), 2);
    let waited = tries[1] - tries[0];
    assert!(
        waited >= backoff - Duration::from_millis(500),
        "the second try started {waited} after the first, before the {backoff:?} backoff"
    );
    worker.stop().await;
}
