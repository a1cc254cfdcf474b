//! Delayed tasks (`run_at`/`run_in`, held by JetStream message schedules)
//! and dead-letter replay, against real nats-servers: not handed over
//! before due and handed over soon after, across a server restart; a
//! Go-format worker (a raw pull on `WORKERS`) sees only due items; delete
//! and retry before due; a server too old for schedules and a queue that
//! cannot take them give clear errors with nothing written; bulk replay by
//! filter and its dry run.

use asyncjobs::{Client, Queue, Router, Task, TaskContext, TaskFilter, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

const T: Duration = Duration::from_secs(20);

/// A worker whose handler records when each task started.
fn recording_router(started: Arc<Mutex<Vec<(String, OffsetDateTime)>>>) -> Router {
    Router::new()
        .handle("later", move |_: TaskContext, t: Task| {
            let started = started.clone();
            async move {
                started
                    .lock()
                    .unwrap()
                    .push((t.id.clone(), OffsetDateTime::now_utc()));
                asyncjobs::handler::to_output(&())
            }
        })
        .unwrap()
}

/// The whole second a schedule for `due` fires at (rounded up).
fn fires_at(due: OffsetDateTime) -> OffsetDateTime {
    let whole = due.replace_nanosecond(0).unwrap();
    if whole < due {
        whole + time::Duration::SECOND
    } else {
        whole
    }
}

/// Whether task `id` has an item held for `queue` in `CHORIA_AJ_HELD`,
/// waiting for its time or released and not yet moved into the queue.
async fn held_item(nc: &async_nats::Client, queue: &str, id: &str) -> bool {
    let js = async_nats::jetstream::new(nc.clone());
    let Ok(stream) = js.get_stream("CHORIA_AJ_HELD").await else {
        return false;
    };
    for prefix in ["CHORIA_AJ.W", "CHORIA_AJ.R"] {
        if stream
            .get_last_raw_message_by_subject(&format!("{prefix}.{queue}.{id}"))
            .await
            .is_ok()
        {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_delayed_task_runs_when_due_not_before() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("LATER")).await;
    let started = Arc::new(Mutex::new(Vec::new()));
    let worker = spawn_worker(c.worker(recording_router(started.clone())));
    let mut task = Task::builder("later")
        .run_in(Duration::from_secs(3))
        .build()
        .unwrap();
    let due = task.run_at.unwrap();
    c.enqueue(&mut task).await.unwrap();
    // the record is there at once, with its due time
    let stored = c.load_task(&task.id).await.unwrap();
    assert_eq!(stored.state, TaskState::New);
    assert_eq!(
        stored.run_at.map(|t| t.unix_timestamp_nanos() / 1000),
        Some(due.unix_timestamp_nanos() / 1000)
    );
    assert!(held_item(c.nats(), "LATER", &task.id).await);
    let done = wait_for_state(&c, &task.id, TaskState::Complete, T).await;
    let ran = started.lock().unwrap()[0].1;
    assert!(ran >= due, "ran at {ran}, due {due}");
    let fire = fires_at(due);
    assert!(
        ran < fire + time::Duration::seconds(1),
        "ran at {ran}, more than 1 s after its schedule fired ({fire})"
    );
    assert_eq!(done.tries, 1);
    worker.stop().await;
}

#[tokio::test]
async fn a_pending_delayed_task_survives_a_server_restart() {
    let mut server = NatsServer::start();
    let mut task = Task::builder("later")
        .run_in(Duration::from_secs(4))
        .build()
        .unwrap();
    let due = task.run_at.unwrap();
    {
        let c = client(&server, Queue::new("LATER")).await;
        c.enqueue(&mut task).await.unwrap();
    }
    server.restart();
    let c = client(&server, Queue::new("LATER")).await;
    assert!(held_item(c.nats(), "LATER", &task.id).await);
    let started = Arc::new(Mutex::new(Vec::new()));
    let worker = spawn_worker(c.worker(recording_router(started.clone())));
    wait_for_state(&c, &task.id, TaskState::Complete, T).await;
    assert!(started.lock().unwrap()[0].1 >= due);
    worker.stop().await;
}

/// A Go worker pulls from `WORKERS` as it always does: it gets nothing
/// while the task is held, and an ordinary work item once it is due, moved
/// into its queue by a Rust worker (here one of another queue: any will).
#[tokio::test]
async fn a_go_format_worker_sees_only_due_items() {
    let server = NatsServer::start();
    let other = client(&server, Queue::new("RUST")).await;
    let relay = spawn_worker(other.worker(recording_router(Default::default())));
    let c = client(&server, Queue::new("GOQ")).await;
    let mut task = Task::builder("later")
        .run_in(Duration::from_secs(2))
        .build()
        .unwrap();
    c.enqueue(&mut task).await.unwrap();
    let js = async_nats::jetstream::new(c.nats().clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("WORKERS", "CHORIA_AJ_Q_GOQ")
        .await
        .unwrap();
    use futures::StreamExt;
    let mut early = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_millis(800))
        .messages()
        .await
        .unwrap();
    let mut got_early = 0;
    while let Some(m) = early.next().await {
        m.unwrap();
        got_early += 1;
    }
    assert_eq!(got_early, 0, "an item was handed over before it was due");
    let item = wait_for(T, "the due item", || {
        let consumer = consumer.clone();
        async move {
            let mut batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .ok()?;
            batch.next().await.and_then(|m| m.ok())
        }
    })
    .await;
    assert!(
        item.subject.starts_with("CHORIA_AJ.Q.GOQ."),
        "{}",
        item.subject
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&item.payload).unwrap(),
        serde_json::json!({"kind": 0, "job": task.id})
    );
    assert!(item
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Schedule"))
        .is_none());
    item.ack().await.unwrap();
    relay.stop().await;
}

/// Deleted before due: the held item goes with the record, so it never
/// runs (a later task, due after it, runs and the deleted one did not).
#[tokio::test]
async fn deleting_before_due_cancels_and_retrying_runs_now() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("CANCEL")).await;
    let started = Arc::new(Mutex::new(Vec::new()));
    let worker = spawn_worker(c.worker(recording_router(started.clone())));
    let mut gone = Task::builder("later")
        .run_in(Duration::from_secs(2))
        .build()
        .unwrap();
    c.enqueue(&mut gone).await.unwrap();
    c.delete_task(&gone.id).await.unwrap();
    assert!(!held_item(c.nats(), "CANCEL", &gone.id).await);
    let mut sentinel = Task::builder("later")
        .run_in(Duration::from_secs(3))
        .build()
        .unwrap();
    c.enqueue(&mut sentinel).await.unwrap();
    wait_for_state(&c, &sentinel.id, TaskState::Complete, T).await;
    assert!(started.lock().unwrap().iter().all(|(id, _)| *id != gone.id));

    // retried before it is due: runs now, and the held item is gone
    let mut early = Task::builder("later")
        .run_in(Duration::from_secs(3600))
        .build()
        .unwrap();
    c.enqueue(&mut early).await.unwrap();
    assert!(held_item(c.nats(), "CANCEL", &early.id).await);
    let retried = c.retry_task(&early.id).await.unwrap();
    assert_eq!(retried.run_at, None);
    assert!(!held_item(c.nats(), "CANCEL", &early.id).await);
    wait_for_state(&c, &early.id, TaskState::Complete, T).await;
    worker.stop().await;
}

#[tokio::test]
async fn refusals_write_nothing() {
    // a server before message schedules
    let old = NatsServer::start_old();
    let c = client(&old, Queue::new("OLD")).await;
    let mut task = Task::builder("later")
        .run_in(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = c.enqueue(&mut task).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("2.12") && msg.contains("2.11"), "{msg}");
    assert!(matches!(
        c.load_task(&task.id).await,
        Err(asyncjobs::Error::TaskNotFound(_))
    ));
    // an ordinary task still works there
    let mut now = Task::builder("later").build().unwrap();
    c.enqueue(&mut now).await.unwrap();

    // a queue that refuses new items when full takes delayed tasks too:
    // they are held outside it, and its limits and discard policy stay
    let server = NatsServer::start();
    let c = client(
        &server,
        Queue::new("FULL").max_entries(10).discard_old(false),
    )
    .await;
    let mut task = Task::builder("later")
        .run_in(Duration::from_secs(1))
        .build()
        .unwrap();
    c.enqueue(&mut task).await.unwrap();
    let started = Arc::new(Mutex::new(Vec::new()));
    let worker = spawn_worker(c.worker(recording_router(started.clone())));
    wait_for_state(&c, &task.id, TaskState::Complete, T).await;
    worker.stop().await;
    let info = c.queue_info("FULL").await.unwrap();
    assert!(!info.queue.discard_old);
    assert_eq!(info.queue.max_entries, 10);

    // a delayed task for a queue that does not exist is refused, as an
    // ordinary one is, and leaves no record
    let mut lost = Task::builder("later")
        .run_in(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = c.enqueue_to("NOWHERE", &mut lost).await.unwrap_err();
    assert!(
        matches!(err, asyncjobs::Error::QueueNotFound(ref q) if q == "NOWHERE"),
        "{err}"
    );
    assert!(matches!(
        c.load_task(&lost.id).await,
        Err(asyncjobs::Error::TaskNotFound(_))
    ));
}

/// Dead letters replayed by filter: exactly the matching tasks, each into
/// its own queue; the dry run changes nothing.
#[tokio::test]
async fn replay_by_filter() {
    let server = NatsServer::start();
    let a = client(&server, Queue::new("DLA")).await;
    let b = client(&server, Queue::new("DLB")).await;
    let runs = Arc::new(Mutex::new(std::collections::HashMap::<String, u32>::new()));
    let router = |runs: Arc<Mutex<std::collections::HashMap<String, u32>>>| {
        Router::new()
            .handle("job", move |_: TaskContext, t: Task| {
                let runs = runs.clone();
                async move {
                    *runs.lock().unwrap().entry(t.id.clone()).or_default() += 1;
                    let p: String = t.payload_as()?;
                    Err(asyncjobs::HandlerError::terminate(p))
                }
            })
            .unwrap()
    };
    let wa = spawn_worker(a.worker(router(runs.clone())));
    let wb = spawn_worker(b.worker(router(runs.clone())));
    let mut ids = vec![];
    for (client, why) in [(&a, "smtp down"), (&a, "bad address"), (&b, "smtp down")] {
        let mut t = Task::new("job", why).unwrap();
        client.enqueue(&mut t).await.unwrap();
        ids.push(t.id.clone());
    }
    for id in &ids {
        wait_for_state(&a, id, TaskState::Terminated, T).await;
    }
    let filter = TaskFilter::new()
        .state(TaskState::Terminated)
        .last_error_contains("smtp");
    let dry = a
        .replay_tasks(filter.clone(), true, |_, _| {})
        .await
        .unwrap();
    let mut matched = dry.matched.clone();
    matched.sort();
    let mut want = vec![ids[0].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(matched, want);
    assert!(dry.replayed.is_empty());
    for id in &ids {
        assert_eq!(
            a.load_task(id).await.unwrap().tries,
            1,
            "the dry run changed {id}"
        );
    }
    let mut seen = vec![];
    let done = a
        .replay_tasks(filter, false, |n, total| seen.push((n, total)))
        .await
        .unwrap();
    assert_eq!(done.replayed.len(), 2);
    assert_eq!(seen.last(), Some(&(2, 2)));
    let all_ran_twice = |runs: Arc<Mutex<std::collections::HashMap<String, u32>>>,
                         want: Vec<String>| async move {
        let r = runs.lock().unwrap();
        want.iter().all(|id| r.get(id) == Some(&2)).then_some(())
    };
    wait_for(T, "the replayed tasks to run again", || {
        all_ran_twice(runs.clone(), want.clone())
    })
    .await;
    assert_eq!(runs.lock().unwrap().get(&ids[1]), Some(&1));
    // each went back to its own queue
    assert_eq!(a.load_task(&ids[2]).await.unwrap().queue, "DLB");
    wa.stop().await;
    wb.stop().await;
    let _: Option<Client> = None;
}

mod reports {
    #[asyncjobs::task_handler("report:later", queue = "REPORTS")]
    pub async fn later(n: u32) -> Result<u32, asyncjobs::HandlerError> {
        Ok(n)
    }
}

/// The macro's typed helper takes the same builder options.
#[tokio::test]
async fn typed_enqueue_with_a_delay() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("Q")).await;
    let handle = reports::later::enqueue_with(&c, 7, |b| b.run_in(Duration::from_secs(600)))
        .await
        .unwrap();
    let task = c.load_task(handle.id()).await.unwrap();
    assert!(task.run_at.is_some_and(|t| t > OffsetDateTime::now_utc()));
    assert!(held_item(c.nats(), "REPORTS", handle.id()).await);
}

/// A task waiting out a retry backoff holds an item too: retrying it by
/// hand removes that item (so it does not run twice) and runs it now; a
/// delayed task due after the queue's max age is held all the same.
#[tokio::test]
async fn retry_replaces_a_held_backoff_and_due_times_respect_max_age() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("HELD")).await;
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let r = runs.clone();
    let router = Router::new()
        .handle("later", move |_: TaskContext, _: Task| {
            let n = r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(asyncjobs::HandlerError::retry_after(
                        "not yet",
                        Duration::from_secs(3600),
                    ))
                } else {
                    asyncjobs::handler::to_output(&n)
                }
            }
        })
        .unwrap();
    let worker = spawn_worker(c.worker(router));
    let mut task = Task::builder("later").build().unwrap();
    c.enqueue(&mut task).await.unwrap();
    wait_for_state(&c, &task.id, TaskState::Retry, T).await;
    wait_for(T, "the backoff's held item", || {
        let nc = c.nats().clone();
        let id = task.id.clone();
        async move { held_item(&nc, "HELD", &id).await.then_some(()) }
    })
    .await;
    c.retry_task(&task.id).await.unwrap();
    assert!(
        !held_item(c.nats(), "HELD", &task.id).await,
        "the held backoff item stayed"
    );
    let done = wait_for_state(&c, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 2);
    worker.stop().await;

    // the item is held outside the queue and enters it when due, so a
    // queue's max age no longer limits how far ahead a task may be due
    let short = client(
        &server,
        Queue::new("SHORT").max_age(Duration::from_secs(120)),
    )
    .await;
    let mut far = Task::builder("later")
        .run_in(Duration::from_secs(3600))
        .build()
        .unwrap();
    short.enqueue(&mut far).await.unwrap();
    assert!(held_item(short.nats(), "SHORT", &far.id).await);
}

/// After the first delayed enqueue a client trusts what it learnt: later
/// delayed enqueues and the removal of a held item on retry read no stream
/// or consumer configuration (watched on the JetStream API subjects).
#[tokio::test]
async fn delayed_enqueues_reuse_what_they_learnt() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let c = client(&server, Queue::new("QUICK")).await;
    let later = || {
        Task::builder("later")
            .run_in(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    c.enqueue(&mut later()).await.unwrap();
    let watcher = async_nats::connect(server.url()).await.unwrap();
    let mut infos = watcher.subscribe("$JS.API.*.INFO.>").await.unwrap();
    let mut purges = watcher.subscribe("$JS.API.STREAM.PURGE.>").await.unwrap();
    watcher.flush().await.unwrap();
    let mut second = later();
    c.enqueue(&mut second).await.unwrap();
    c.enqueue(&mut later()).await.unwrap();
    let retried = c.retry_task(&second.id).await.unwrap();
    assert_eq!(retried.run_at, None);
    assert!(!held_item(c.nats(), "QUICK", &second.id).await);
    // the held item's removal went through, so every earlier request was sent
    let purge = tokio::time::timeout(T, purges.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        purge.subject.as_str(),
        "$JS.API.STREAM.PURGE.CHORIA_AJ_HELD"
    );
    watcher.flush().await.unwrap();
    let mut seen = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), infos.next()).await {
        seen.push(m.subject.to_string());
    }
    // held_item's own lookups are the only ones (get_stream reads STREAM.INFO)
    assert!(
        seen.iter()
            .all(|s| s == "$JS.API.STREAM.INFO.CHORIA_AJ_HELD"),
        "{seen:?}"
    );
    assert!(seen.len() <= 1, "configuration read again: {seen:?}");
}
