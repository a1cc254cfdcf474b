//! Blocked tasks start when their last dependency ends, not at the next
//! dependency poll (docs/processing.md §2.5). Every worker here polls
//! dependencies once an hour, so a test passes only when the release does
//! not wait for a poll.

use asyncjobs::{Client, HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for_state, NatsServer, RunningWorker};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn router(gate: Arc<tokio::sync::Semaphore>) -> Router {
    Router::new()
        .handle("step", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
        .handle("gated", {
            let gate = gate.clone();
            move |_ctx: TaskContext, _t: Task| {
                let gate = gate.clone();
                async move {
                    let _pass = gate.acquire().await;
                    asyncjobs::handler::to_output(&"done")
                }
            }
        })
        .unwrap()
        .handle("gated_fails", {
            let gate = gate.clone();
            move |_ctx: TaskContext, _t: Task| {
                let gate = gate.clone();
                async move {
                    let _pass = gate.acquire().await;
                    Err(HandlerError::terminate("no"))
                }
            }
        })
        .unwrap()
}

fn worker(client: &Client, gate: Arc<tokio::sync::Semaphore>) -> RunningWorker {
    spawn_worker(client.worker(router(gate)).dependency_poll_interval(HOUR))
}

async fn enqueue(client: &Client, task_type: &str, deps: &[&str]) -> String {
    let mut t = Task::builder(task_type)
        .depends_on(deps.iter().copied())
        .build()
        .unwrap();
    client.enqueue(&mut t).await.unwrap();
    t.id
}

/// The reported case, shortened: a 30-task chain with instant handlers,
/// every link enqueued up front, two workers on the queue. With an hourly
/// poll it finishes only if each link is released by its dependency's end.
#[tokio::test]
async fn a_chain_runs_without_waiting_for_the_dependency_poll() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("CHAIN")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(100));
    let workers = [worker(&client, gate.clone()), worker(&client, gate)];
    let mut last = enqueue(&client, "step", &[]).await;
    let first = last.clone();
    for _ in 1..30 {
        last = enqueue(&client, "step", &[&last]).await;
    }
    let done = wait_for_state(&client, &last, TaskState::Complete, T).await;
    assert_eq!(done.tries, 1);
    let head = client.load_task(&first).await.unwrap();
    assert_eq!(head.state, TaskState::Complete);
    for w in workers {
        w.stop().await;
    }
}

/// Fan-in: a task waiting for two dependencies that end at different
/// times starts after the later one, without a poll.
#[tokio::test]
async fn a_task_waiting_for_two_starts_after_the_later_one() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("FANIN")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let w = worker(&client, gate.clone());
    let quick = enqueue(&client, "step", &[]).await;
    let slow = enqueue(&client, "gated", &[]).await;
    let both = enqueue(&client, "step", &[&quick, &slow]).await;
    wait_for_state(&client, &quick, TaskState::Complete, T).await;
    wait_for_state(&client, &slow, TaskState::Active, T).await;
    assert_eq!(
        client.load_task(&both).await.unwrap().state,
        TaskState::Blocked
    );
    gate.add_permits(1);
    wait_for_state(&client, &both, TaskState::Complete, T).await;
    w.stop().await;
}

/// A dependency that fails ends its dependant `unreachable` at once.
#[tokio::test]
async fn a_failed_dependency_ends_its_dependant_without_a_poll() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("FAILS")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let w = worker(&client, gate.clone());
    let dep = enqueue(&client, "gated_fails", &[]).await;
    let dependant = enqueue(&client, "step", &[&dep]).await;
    wait_for_state(&client, &dep, TaskState::Active, T).await;
    // the dependant is judged (and held) while its dependency runs
    asyncjobs_tests::wait_for(T, "the dependant to be judged", || async {
        let t = client.load_task(&dependant).await.unwrap();
        (t.state == TaskState::Blocked).then_some(())
    })
    .await;
    gate.add_permits(1);
    wait_for_state(&client, &dep, TaskState::Terminated, T).await;
    let t = wait_for_state(&client, &dependant, TaskState::Unreachable, T).await;
    assert!(t.last_err.contains(&dep), "{}", t.last_err);
    w.stop().await;
}

/// `background_error_total{loop="dependants"}` of this process.
fn dependants_errors() -> f64 {
    asyncjobs::metrics::render()
        .lines()
        .find(|l| l.starts_with("choria_asyncjobs_background_error_total{loop=\"dependants\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A message that is not an event on a watched dependency's subject is
/// counted in `background_error_total{loop="dependants"}` (and logged);
/// the watch goes on, so the dependant still starts at the dependency's
/// end without a poll.
#[tokio::test]
async fn a_message_that_is_not_an_event_is_counted_and_the_watch_goes_on() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("NOTEVENT")).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let w = worker(&client, gate.clone());
    let dep = enqueue(&client, "gated", &[]).await;
    let dependant = enqueue(&client, "step", &[&dep]).await;
    wait_for_state(&client, &dep, TaskState::Active, T).await;
    wait_for_state(&client, &dependant, TaskState::Blocked, T).await;
    // the watch subscribes after the dependant is judged: publish until
    // it has seen one
    let before = dependants_errors();
    let nc = client.nats();
    asyncjobs_tests::wait_for(T, "the message counted", || async {
        nc.publish(format!("CHORIA_AJ.E.task_state.{dep}"), "nope".into())
            .await
            .unwrap();
        nc.flush().await.unwrap();
        (dependants_errors() > before).then_some(())
    })
    .await;
    gate.add_permits(1);
    wait_for_state(&client, &dependant, TaskState::Complete, T).await;
    w.stop().await;
}
