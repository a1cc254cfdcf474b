//! Progress from a handler (docs/processing.md §2.17): kept on the task
//! record and in its state events while the try runs and after, saved at
//! most about once a second however often the handler reports, not
//! counted as a try, cleared when the next try starts; a percent above
//! 100 is refused at once.

use asyncjobs::{Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// A chatty handler: 400 reports over about two seconds, then it waits
/// for the test to let it finish. What `ctx.progress(150, …)` said is kept.
fn router(go_on: Arc<tokio::sync::Notify>, refused: Arc<Mutex<Option<String>>>) -> Router {
    Router::new()
        .handle("video:encode", move |ctx: TaskContext, _t: Task| {
            let (go_on, refused) = (go_on.clone(), refused.clone());
            async move {
                *refused.lock().unwrap() =
                    ctx.progress(150, "too far").err().map(|e| e.to_string());
                for n in 0..400u32 {
                    ctx.progress((n / 4) as u8, format!("frame {n}")).unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                ctx.progress(99, "muxing").unwrap();
                go_on.notified().await;
                ctx.progress(100, "done").unwrap();
                asyncjobs::handler::to_output(&"encoded")
            }
        })
        .unwrap()
}

#[tokio::test]
async fn a_chatty_handlers_progress_is_kept_without_flooding_the_server() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PROGRESS")).await;
    let go_on = Arc::new(tokio::sync::Notify::new());
    let refused = Arc::new(Mutex::new(None));
    let worker = spawn_worker(
        client
            .worker(router(go_on.clone(), refused.clone()))
            .retry_policy(fast_retry()),
    );
    let mut task = Task::new("video:encode", &1).unwrap();
    let mut events = client
        .nats()
        .subscribe(format!("CHORIA_AJ.E.task_state.{}", task.id))
        .await
        .unwrap();
    client.nats().flush().await.unwrap();
    client.enqueue(&mut task).await.unwrap();
    let started = Instant::now();

    // the latest report reaches the record while the try runs
    let running = wait_for(T, "the last report before the wait", || async {
        let t = client.load_task(&task.id).await.ok()?;
        t.progress
            .as_ref()
            .is_some_and(|p| p.percent == 99 && p.message == "muxing")
            .then_some(t)
    })
    .await;
    let reporting = started.elapsed();
    assert_eq!(running.state, TaskState::Active);
    assert_eq!(running.tries, 1, "progress is not a try");
    assert_eq!(
        refused.lock().unwrap().as_deref(),
        Some("invalid configuration: progress is a percent from 0 to 100 (got 150)")
    );

    go_on.notify_one();
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    let p = done
        .progress
        .expect("the final record keeps the last report");
    assert_eq!((p.percent, p.message.as_str()), (100, "done"));
    assert_eq!(done.tries, 1);

    // every save publishes a state event: count those with progress
    let mut with_progress = 0;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
        let e: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        if e.get("progress").is_some() {
            with_progress += 1;
        }
    }
    // 402 reports; one save a second at most while they came (the first
    // at once), the last report's, and the outcome's
    let bound = reporting.as_secs() as usize + 4;
    assert!(
        (1..=bound).contains(&with_progress),
        "{with_progress} events with progress for 402 reports over {reporting:?}"
    );
    worker.stop().await;
}

/// A new try starts without the last try's progress.
#[tokio::test]
async fn a_new_try_starts_without_the_last_ones_progress() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PROGRESS2")).await;
    let tries = Arc::new(Mutex::new(Vec::new()));
    let seen = tries.clone();
    let router = Router::new()
        .handle("video:encode", move |ctx: TaskContext, t: Task| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(t.progress.clone());
                if t.tries == 1 {
                    ctx.progress(50, "first try").unwrap();
                    return Err(asyncjobs::HandlerError::from("fails once"));
                }
                asyncjobs::handler::to_output(&"ok")
            }
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));
    let mut task = Task::new("video:encode", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 2);
    assert!(done.progress.is_none(), "{:?}", done.progress);
    let tries = tries.lock().unwrap().clone();
    assert_eq!(tries, vec![None, None], "each try starts without progress");
    worker.stop().await;
}
