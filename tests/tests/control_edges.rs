//! Edges of issue 31's controls found by review: a handler reporting
//! progress is still rescued when its worker is killed right after a
//! progress save; a cancel a worker missed is not erased by a discard
//! policy; a store whose max_age is under a second still takes final
//! saves; a unique period too long to hold is refused when built.

use asyncjobs::{Client, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, NatsServer};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A worker process killed right after a progress save (its lease had not
/// caught up with the record's sequence): the try is still rescued, in
/// about 30 s, not left `active` for the hour of its run time.
#[tokio::test]
async fn a_try_killed_right_after_a_progress_save_is_rescued() {
    progress_then_kill(Duration::ZERO).await;
}

/// The same, killed 700 ms after the save (the lease caught up).
#[tokio::test]
async fn a_try_killed_after_its_lease_caught_up_is_rescued() {
    progress_then_kill(Duration::from_millis(700)).await;
}

async fn progress_then_kill(after: Duration) {
    use futures::StreamExt;
    let server = NatsServer::start();
    asyncjobs_tests::test_log();
    let c = Client::builder()
        .url(server.url())
        .queue(Queue::new("R_RESCUE").max_run_time(Duration::from_secs(3600)))
        .build()
        .await
        .unwrap();
    let mut started = c.nats().subscribe("test.started.>").await.unwrap();
    c.nats().flush().await.unwrap();
    let mut crashing = asyncjobs_tests::hanging_worker(
        env!("CARGO_BIN_EXE_test-worker"),
        &server.url(),
        "R_RESCUE",
        &[
            ("TEST_WORKER_PROGRESS", "1"),
            ("TEST_WORKER_RUN_TIME", "3600"),
        ],
    );
    let mut task = Task::new("work", &()).unwrap();
    c.enqueue(&mut task).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), started.next())
        .await
        .expect("the first worker starts the task")
        .unwrap();
    wait_for(Duration::from_secs(10), "the try in a lease", || async {
        c.task_holder(&task.id).await.unwrap()
    })
    .await;
    // kill right after a progress save
    let seq = c.load_task(&task.id).await.unwrap().sequence();
    wait_for(Duration::from_secs(5), "a progress save", || async {
        (c.load_task(&task.id).await.unwrap().sequence() != seq).then_some(())
    })
    .await;
    tokio::time::sleep(after).await;
    crashing.kill().unwrap();
    crashing.wait().unwrap();
    assert!(c.load_task(&task.id).await.unwrap().progress.is_some());

    let worker = spawn_worker(
        c.worker(
            Router::new()
                .handle("work", |_ctx: TaskContext, _t: Task| async {
                    asyncjobs::handler::to_output(&"second run")
                })
                .unwrap(),
        ),
    );
    let done = wait_for(
        Duration::from_secs(90),
        "the rescue (about 30 s)",
        || async {
            let t = c.load_task(&task.id).await.ok()?;
            (t.state == TaskState::Complete).then_some(t)
        },
    )
    .await;
    assert_eq!(done.tries, 2);
    worker.stop().await;
}

fn slow_ok_router() -> Router {
    Router::new()
        .handle("r:slow", |_ctx: TaskContext, t: Task| async move {
            let ms = t.payload_as::<u64>().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
}

async fn discarding_client(server: &NatsServer, queue: &str) -> Client {
    asyncjobs_tests::test_log();
    Client::builder()
        .url(server.url())
        .queue(Queue::new(queue))
        .discard_states([TaskState::Complete])
        .unwrap()
        .build()
        .await
        .unwrap()
}

/// A worker that missed a cancel's notice finishes the try with
/// `--discard-complete`: its outcome meets the cancelled record and is
/// dropped; the record stays `terminated` (it was deleted, and a marker
/// said `complete`).
#[tokio::test]
async fn a_missed_cancel_is_not_erased_by_a_discard_policy() {
    let server = NatsServer::start();
    let c = discarding_client(&server, "EDGE_DISC").await;
    let worker = spawn_worker(c.worker(slow_ok_router()).retry_policy(fast_retry()));
    let mut t = Task::new("r:slow", &1500_u64).unwrap();
    c.enqueue(&mut t).await.unwrap();
    asyncjobs_tests::cancel_silently(&server, &c, &t.id, T).await;
    // the try ends: its item is acknowledged
    wait_for(T, "the try to end", || async {
        let i = c.queue_info("EDGE_DISC").await.unwrap();
        (i.ack_pending == 0 && i.pending == 0).then_some(())
    })
    .await;
    let now = c.load_task(&t.id).await;
    worker.stop().await;
    match now {
        Ok(t) => assert_eq!(t.state, TaskState::Terminated, "{}", t.last_err),
        other => panic!("the cancelled record is gone: {other:?}"),
    }
}

/// A task store whose own max_age is under a second (shorter than any
/// per-message TTL): final saves carry no TTL and are taken.
#[tokio::test]
async fn a_store_with_max_age_under_a_second_takes_final_saves() {
    let server = NatsServer::start();
    asyncjobs_tests::test_log();
    let c = Client::builder()
        .url(server.url())
        .queue(Queue::new("EDGE_SUBSEC"))
        .task_retention(Duration::from_millis(900))
        .retention("all=1h".parse().unwrap())
        .build()
        .await
        .unwrap();
    let mut t = Task::new("r:ok", &1).unwrap();
    c.enqueue(&mut t).await.unwrap();
    let r = c.cancel_task(&t.id, "the test").await;
    assert!(r.is_ok(), "{r:?}");
}

/// A unique period too long to hold as a key's TTL is refused when the
/// task is built, naming the limit (it overflowed before).
#[tokio::test]
async fn a_unique_period_too_long_is_refused_when_built() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("EDGE_UNIQMAX")).await;
    for period in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(11 * 365 * 24 * 3600),
    ] {
        let e = Task::builder("r:ok")
            .unique("max")
            .unique_for(period)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("at most 87600h"), "{e}");
    }
    let mut t = Task::builder("r:ok")
        .unique("ten-years")
        .unique_for(Duration::from_secs(10 * 365 * 24 * 3600))
        .build()
        .unwrap();
    c.enqueue(&mut t).await.unwrap();
}

/// A unique key whose holder completed and was deleted by a discard
/// policy is free at once (its discard marker says it ended), not refused
/// for the 30 s a holder's enqueue may take.
#[tokio::test]
async fn a_unique_key_of_a_discarded_task_is_free_at_once() {
    let server = NatsServer::start();
    let c = discarding_client(&server, "EDGE_UNIQDISC").await;
    let worker = spawn_worker(c.worker(slow_ok_router()).retry_policy(fast_retry()));
    let mut a = Task::builder("r:slow")
        .payload(&0_u64)
        .unique("disc-key")
        .build()
        .unwrap();
    c.enqueue(&mut a).await.unwrap();
    wait_for(T, "the completed task to be discarded", || async {
        matches!(
            c.load_task(&a.id).await,
            Err(asyncjobs::Error::TaskNotFound(_)) | Err(asyncjobs::Error::TaskDiscarded { .. })
        )
        .then_some(())
    })
    .await;
    let mut b = Task::builder("r:slow")
        .payload(&0_u64)
        .unique("disc-key")
        .build()
        .unwrap();
    let r = c.enqueue(&mut b).await;
    worker.stop().await;
    assert!(r.is_ok(), "{r:?}");
}

/// Extending a pause keeps when it began.
#[tokio::test]
async fn extending_a_pause_keeps_when_it_began() {
    use asyncjobs::PauseUntil;
    let server = NatsServer::start();
    let c = client(&server, Queue::new("EDGE_SINCE")).await;
    let end = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let first = c
        .pause_queue("EDGE_SINCE", PauseUntil::Time(end))
        .await
        .unwrap()
        .paused
        .unwrap();
    let began = first.since.expect("since recorded");
    // a later second, so a rewritten `since` would differ
    wait_for(T, "the next second", || async {
        (time::OffsetDateTime::now_utc().unix_timestamp() > began.unix_timestamp() + 1)
            .then_some(())
    })
    .await;
    let second = c
        .pause_queue(
            "EDGE_SINCE",
            PauseUntil::Time(end + time::Duration::hours(1)),
        )
        .await
        .unwrap()
        .paused
        .unwrap();
    assert_eq!(second.since, first.since, "the pause began once");
    assert_ne!(second.until, first.until, "its end moved");
}
