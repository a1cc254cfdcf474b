//! The test kit classifies tries as a worker would.

use super::*;
use crate::handler::{HandlerError, TaskContext};
use crate::task::TaskState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;

#[crate::task_handler("t:panics", crate = "crate")]
async fn panics(n: u8) -> Result<u8, HandlerError> {
    if n == 0 {
        panic!("zero");
    }
    Ok(n)
}

#[crate::task_handler("t:fails", queue = "T_FAILS", queue_max_tries = 3, crate = "crate")]
async fn fails(_: ()) -> Result<u8, HandlerError> {
    Err(HandlerError::retry("always"))
}

#[crate::task_handler("t:forever", queue = "T_FOREVER", max_tries = 0, crate = "crate")]
async fn forever(_: ()) -> Result<u8, HandlerError> {
    Err(HandlerError::retry("again"))
}

#[test]
fn a_new_task_is_on_its_first_try() {
    let ctx = TestTask::new("x").context();
    assert_eq!(ctx.tries(), 1);
    assert_eq!(ctx.task().state, TaskState::Active);
    assert!(TestTask::new("x").cancelled().context().is_cancelled());
}

#[tokio::test]
async fn panics_and_limits_are_classified_as_a_worker_would() {
    let worker = TestWorker::new()
        .handler(panics::HANDLER)
        .unwrap()
        .handler(fails::HANDLER)
        .unwrap()
        .handler(forever::HANDLER)
        .unwrap();
    let outcome = worker
        .run(TestTask::for_handler(panics::HANDLER).payload(&0))
        .await;
    assert_eq!(outcome.state(), TaskState::Retry);
    assert_eq!(outcome.last_err(), "handler panicked: zero");
    assert!(outcome.error().is_none());

    // the queue's declared limit: 3 tries
    let outcome = worker
        .run_to_end(TestTask::for_handler(fails::HANDLER).max_tries(0))
        .await;
    assert_eq!((outcome.state(), outcome.tries()), (TaskState::Expired, 3));
    assert_eq!(outcome.last_err(), "always");
    let failed = worker.call(fails::TYPED, ()).await.unwrap_err();
    assert_eq!(
        failed.to_string(),
        "task ended expired after 3 tries: always"
    );

    // neither task nor queue limits tries: capped
    let outcome = worker
        .run_to_end(TestTask::for_handler(forever::HANDLER))
        .await;
    assert_eq!(
        (outcome.state(), outcome.tries()),
        (TaskState::Retry, UNLIMITED_TRIES_CAP)
    );

    // past its deadline or out of tries: expired without running
    let past = OffsetDateTime::now_utc() - std::time::Duration::from_secs(1);
    let outcome = worker
        .run(
            TestTask::for_handler(panics::HANDLER)
                .payload(&0)
                .deadline(past),
        )
        .await;
    assert_eq!(outcome.state(), TaskState::Expired);
    assert_eq!(outcome.last_err(), "past deadline");
    let outcome = worker
        .run(
            TestTask::for_handler(panics::HANDLER)
                .payload(&0)
                .max_tries(2)
                .tries(3),
        )
        .await;
    assert_eq!(outcome.last_err(), "exceeded maximum tries");

    // an unknown type is retried, as on a worker
    let outcome = worker.run(TestTask::new("t:unknown")).await;
    assert_eq!(outcome.state(), TaskState::Retry);
}

#[tokio::test]
async fn middleware_and_plain_handlers_run_too() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let worker = TestWorker::new()
        .middleware(crate::router::from_fn(move |ctx, task, next| {
            counted.fetch_add(1, Ordering::SeqCst);
            next.run(ctx, task)
        }))
        .handle(
            "plain",
            crate::typed(|ctx: TaskContext, n: u32| async move {
                Ok::<_, HandlerError>(n + ctx.tries() as u32)
            }),
        )
        .unwrap();
    let outcome = worker
        .run(TestTask::new("plain").payload(&40).tries(2))
        .await;
    assert_eq!(outcome.result::<u32>().unwrap(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let err = outcome.result::<String>().unwrap_err();
    assert!(
        err.last_err
            .contains("does not decode as alloc::string::String"),
        "{err}"
    );
}

#[crate::task_handler("t:slow", timeout = "50ms", crate = "crate")]
async fn slow(wait_ms: u64) -> Result<u64, HandlerError> {
    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
    Ok(wait_ms)
}

#[tokio::test]
async fn a_handler_past_its_time_out_fails_as_on_a_worker() {
    let worker = TestWorker::new().handler(slow::HANDLER).unwrap();
    let outcome = worker
        .run(TestTask::for_handler(slow::HANDLER).payload(&3_600_000_u64))
        .await;
    assert_eq!(outcome.state(), TaskState::Retry);
    assert_eq!(
        outcome.last_err(),
        "handler \"t:slow\" exceeded its time-out of 50ms"
    );
    let last = worker
        .run(
            TestTask::for_handler(slow::HANDLER)
                .payload(&3_600_000_u64)
                .max_tries(1),
        )
        .await;
    assert_eq!(last.state(), TaskState::Expired);
    // within its time-out it completes
    assert_eq!(worker.call(slow::TYPED, 0).await.unwrap(), 0);
}
