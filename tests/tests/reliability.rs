//! Issue 14's faults: every accepted task ends in a defined state or stays
//! runnable. Each test fails on the behaviour the issue describes.

use asyncjobs::{Client, Error, HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

async fn drained(client: &Client) {
    let queue = client.queue().name.clone();
    wait_for(T, "the queue to hold no items", || async {
        let i = client.queue_info(&queue).await.unwrap();
        (i.stream.messages == 0 && i.ack_pending == 0).then_some(())
    })
    .await;
}

/// Kind A: a result the server cannot store ends the task after one run,
/// naming the size and the limit, instead of re-running the handler until
/// its tries are used up.
#[tokio::test]
async fn result_too_large_to_save_terminates_after_one_run() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new()
        .handle("big", move |_ctx: TaskContext, _t: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { asyncjobs::handler::to_output(&"x".repeat(2_000_000)) }
        })
        .unwrap();
    let mut task = Task::new("big", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let t = wait_for_state(&client, &task.id, TaskState::Terminated, T).await;
    assert_eq!(t.tries, 1);
    assert!(t.result.is_none());
    assert!(
        t.last_err.contains("2000") && t.last_err.contains("max_payload"),
        "last_err names the size and the limit: {}",
        t.last_err
    );
    drained(&client).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran once");
    worker.stop().await;
}

/// Kind A, `last_err` itself: a handler error of megabytes is cut so the
/// failed try can still be saved.
#[tokio::test]
async fn huge_error_messages_are_cut_to_fit() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let router = Router::new()
        .handle("fails", |_ctx: TaskContext, _t: Task| async move {
            Err(HandlerError::retry("e".repeat(3_000_000)))
        })
        .unwrap();
    let mut task = Task::builder("fails").max_tries(2).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let t = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(t.tries, 2);
    assert!(t.last_err.len() < 4200, "{}", t.last_err.len());
    assert!(
        t.last_err.ends_with("more bytes cut)"),
        "{}",
        &t.last_err[4000..]
    );
    drained(&client).await;
    worker.stop().await;
}

/// Kind D: a try the worker itself interrupted (shutdown past its grace)
/// does not use up the task's tries; it runs again after the restart.
#[tokio::test]
async fn shutdown_interruption_does_not_use_a_try() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let router = {
        let (calls, started) = (calls.clone(), started.clone());
        move || {
            let (calls, started) = (calls.clone(), started.clone());
            Router::new()
                .handle("slow", move |_ctx: TaskContext, _t: Task| {
                    let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                    let started = started.clone();
                    async move {
                        if first {
                            started.notify_one();
                            std::future::pending::<()>().await;
                        }
                        asyncjobs::handler::to_output(&"done")
                    }
                })
                .unwrap()
        }
    };
    let mut task = Task::builder("slow").max_tries(1).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let worker = spawn_worker(
        client
            .worker(router())
            .shutdown_grace(Duration::from_millis(100)),
    );
    tokio::time::timeout(T, started.notified())
        .await
        .expect("the handler starts");
    worker.stop().await;
    let t = client.load_task(&task.id).await.unwrap();
    assert_eq!(t.state, TaskState::Retry);
    assert_eq!(t.tries, 0, "the interrupted try is not counted");
    let worker = spawn_worker(client.worker(router()));
    let t = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(t.tries, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.stop().await;
}

/// Bad input gets a clear error at once: a queue name JetStream cannot
/// take is refused before any request is sent (it used to wait 10 s and
/// then report a time-out, which is what a request would give here too).
#[tokio::test]
async fn invalid_queue_names_are_refused_before_any_request() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let invalid = |r: asyncjobs::Result<()>| matches!(r, Err(Error::QueueNameInvalid(_)));
    for name in ["A.B", "A B", "A*", "A>", ""] {
        assert!(
            invalid(client.queue_info(name).await.map(|_| ())),
            "queue_info({name:?})"
        );
        let update = asyncjobs::QueueUpdate {
            max_tries: Some(3),
            ..Default::default()
        };
        assert!(
            invalid(client.configure_queue(name, update).await.map(|_| ())),
            "configure_queue({name:?})"
        );
        assert!(
            invalid(client.purge_queue(name).await),
            "purge_queue({name:?})"
        );
        assert!(
            invalid(client.delete_queue(name).await),
            "delete_queue({name:?})"
        );
        let mut t = Task::new("t", &()).unwrap();
        assert!(
            invalid(client.enqueue_to(name, &mut t).await),
            "enqueue_to({name:?})"
        );
        assert!(
            invalid(client.prepare_queue(&Queue::new(name)).await.map(|_| ())),
            "prepare_queue({name:?})"
        );
    }
}

/// A counter of the process's metrics for `queue`.
fn counter(name: &str, queue: &str) -> f64 {
    let prefix = format!("choria_asyncjobs_{name}{{queue=\"{queue}\"}} ");
    asyncjobs::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
        .unwrap_or(0.0)
}

/// Kind F: the queue a worker pulls from is deleted under it. The worker
/// counts and backs off instead of sending pull requests in a busy loop,
/// and works again once the queue is recreated.
#[tokio::test]
async fn deleted_queue_is_reported_and_backed_off_then_recovered() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("GONE")).await;
    let router = Router::new()
        .handle("t", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&"ok")
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let mut task = Task::new("t", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for_state(&client, &task.id, TaskState::Complete, T).await;

    client.delete_queue("GONE").await.unwrap();
    let polls_before = counter("queue_poll_total", "GONE");
    wait_for(T, "three refused pulls to be counted", || async {
        (counter("queue_poll_error_total", "GONE") >= 3.0).then_some(())
    })
    .await;
    let polls = counter("queue_poll_total", "GONE") - polls_before;
    let refused = counter("queue_poll_error_total", "GONE");
    // a busy loop sends thousands of pull requests per refusal counted
    assert!(
        polls <= refused * 4.0 + 8.0,
        "{polls} pull requests for {refused} refusals"
    );

    client.prepare_queue(&Queue::new("GONE")).await.unwrap();
    let mut task = Task::new("t", &2).unwrap();
    client.enqueue(&mut task).await.unwrap();
    wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    worker.stop().await;
}

/// Kind C: a running worker follows its queue's settings. The run time is
/// raised after the worker started; a try longer than the old run time is
/// not killed at the old one.
#[tokio::test]
async fn raised_run_time_reaches_a_running_worker() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("SLOW").max_run_time(Duration::from_secs(1)),
    )
    .await;
    let router = Router::new()
        .handle("slow", |_ctx: TaskContext, _t: Task| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            asyncjobs::handler::to_output(&"finished")
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let update = asyncjobs::QueueUpdate {
        max_run_time: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let info = client.configure_queue("SLOW", update).await.unwrap();
    assert_eq!(info.queue.max_run_time, Duration::from_secs(30));
    let mut task = Task::builder("slow").max_tries(1).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let t = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(t.tries, 1);
    worker.stop().await;
}

/// Purging a queue removes the items tasks wait for: on request the tasks
/// are marked so none claims to wait forever (a plain purge keeps Go's
/// behaviour and leaves them `new`).
#[tokio::test]
async fn purge_can_terminate_the_tasks_it_strands() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PURGED")).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut t = Task::new("t", &n).unwrap();
        client.enqueue(&mut t).await.unwrap();
        ids.push(t.id);
    }
    assert_eq!(client.purge_queue_terminating("PURGED").await.unwrap(), 3);
    for id in &ids {
        let t = client.load_task(id).await.unwrap();
        assert_eq!(t.state, TaskState::Terminated);
        assert_eq!(t.last_err, "work item removed: queue PURGED was purged");
    }
    drained(&client).await;

    let mut kept = Task::new("t", &10).unwrap();
    client.enqueue(&mut kept).await.unwrap();
    client.purge_queue("PURGED").await.unwrap();
    assert_eq!(
        client.load_task(&kept.id).await.unwrap().state,
        TaskState::New
    );
}
