//! Batches (docs/processing.md §2.23): progress counts move as members
//! end; the callback runs once after every member ended, with the
//! complete members' results and the failed ones as `None` (a failed
//! member does not make it unreachable); cancel and retry as a whole; bad
//! batches refused with nothing written; a callback no running worker
//! handles refused; an incomplete enqueue finished by a retry; a missing
//! member reported; the batch record kept through a server restart.

use asyncjobs::{
    batch::CallbackRetry, Client, Error, Queue, QueueUpdate, Router, Task, TaskContext, TaskState,
    Worker,
};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// One callback run's outcomes: member id → its result, `None` for a
/// failed one.
type Outcomes = BTreeMap<String, Option<Value>>;

/// What the handlers saw: each callback run's outcomes (member id → its
/// result, `None` for a failed one), and the members that failed once.
#[derive(Clone)]
struct Seen {
    /// `m:held` members wait for a permit each.
    gate: Arc<tokio::sync::Semaphore>,
    callbacks: Arc<Mutex<Vec<Outcomes>>>,
    flaked: Arc<Mutex<HashSet<String>>>,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            callbacks: Arc::default(),
            flaked: Arc::default(),
        }
    }
}

impl Seen {
    fn runs(&self) -> Vec<Outcomes> {
        self.callbacks.lock().unwrap().clone()
    }
}

/// `m:ok` returns its payload times ten, `m:held` too once given a
/// permit, `m:fail` terminates, `m:flaky` terminates on its first run
/// and succeeds after, `m:wait` returns once cancelled; `cb:collect`
/// keeps the outcomes it was given.
fn router(seen: &Seen) -> Router {
    let (held, cb, flaky) = (seen.clone(), seen.clone(), seen.clone());
    let tenfold = |t: &Task| asyncjobs::handler::to_output(&(t.payload_as::<i64>()? * 10));
    Router::new()
        .handle(
            "m:ok",
            move |_: TaskContext, t: Task| async move { tenfold(&t) },
        )
        .unwrap()
        .handle("m:held", move |_: TaskContext, t: Task| {
            let gate = held.gate.clone();
            async move {
                gate.acquire().await.expect("gate").forget();
                tenfold(&t)
            }
        })
        .unwrap()
        .handle("m:fail", |_: TaskContext, _: Task| async move {
            Err(asyncjobs::HandlerError::terminate("boom"))
        })
        .unwrap()
        .handle("m:flaky", move |_: TaskContext, t: Task| {
            let flaked = flaky.flaked.clone();
            async move {
                if flaked.lock().unwrap().insert(t.id.clone()) {
                    return Err(asyncjobs::HandlerError::terminate("first run fails"));
                }
                tenfold(&t)
            }
        })
        .unwrap()
        .handle("m:wait", |ctx: TaskContext, _: Task| async move {
            ctx.cancelled().await;
            asyncjobs::handler::to_output(&"cancelled")
        })
        .unwrap()
        .handle("cb:collect", move |_: TaskContext, t: Task| {
            let runs = cb.callbacks.clone();
            async move {
                let outcomes: Outcomes = t
                    .dependency_results
                    .iter()
                    .map(|(id, r)| (id.clone(), r.as_ref().map(|r| r.decode().unwrap())))
                    .collect();
                let n = outcomes.len();
                runs.lock().unwrap().push(outcomes);
                asyncjobs::handler::to_output(&n)
            }
        })
        .unwrap()
}

fn worker(client: &Client, seen: &Seen) -> Worker {
    client
        .worker(router(seen))
        .retry_policy(fast_retry())
        .dependency_poll_interval(Duration::from_millis(200))
}

fn task(task_type: &str, n: i64) -> Task {
    Task::builder(task_type)
        .payload(&n)
        .max_tries(3)
        .build()
        .unwrap()
}

/// Waits until the batch's counts are (done, failed, pending, missing).
async fn counts(client: &Client, id: &str, want: (usize, usize, usize, usize)) {
    wait_for(T, &format!("batch counts {want:?}"), || async {
        let s = client.batch(id).await.ok()?;
        ((s.done, s.failed, s.pending, s.missing) == want).then_some(())
    })
    .await;
}

/// Waits until the queue holds no waiting or unacknowledged item.
async fn queue_settles(client: &Client) {
    let queue = client.queue().name.clone();
    wait_for(T, "the queue's items to be acknowledged", || async {
        let info = client.queue_info(&queue).await.ok()?;
        (info.stream.messages == 0 && info.ack_pending == 0).then_some(())
    })
    .await;
}

/// The main case: the counts move as members end (a failed one
/// counted as failed); the callback waits for every member, runs once,
/// with the complete members' results and the failed one as `None`; the
/// failure does not make it unreachable.
#[tokio::test]
async fn progress_moves_and_the_callback_runs_once_with_the_outcomes() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("BATCH1")).await;
    let seen = Seen::default();
    let mut members = vec![task("m:held", 1), task("m:held", 2), task("m:fail", 3)];
    let callback = Task::new("cb:collect", &"done").unwrap();
    let batch = client
        .enqueue_batch(&mut members, Some(callback))
        .await
        .unwrap();
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    assert_eq!(batch.members, ids);
    for m in &members {
        assert_eq!(m.batch, batch.id);
        assert_eq!(m.state, TaskState::New);
        assert_eq!(m.queue, "BATCH1");
    }
    let cb_id = batch.callback.clone().unwrap();
    let cb = client.load_task(&cb_id).await.unwrap();
    assert_eq!(cb.state, TaskState::Blocked);
    assert_eq!(cb.dependencies, ids);
    assert!(cb.dependencies_any_outcome && cb.load_dependencies);
    assert_eq!(cb.batch, batch.id);

    let s = client.batch(&batch.id).await.unwrap();
    assert_eq!(
        (s.total, s.done, s.failed, s.pending, s.missing),
        (3, 0, 0, 3, 0)
    );
    assert_eq!(s.callback.as_ref().unwrap().state, Some(TaskState::Blocked));
    assert_eq!(s.callback.as_ref().unwrap().task_type, "cb:collect");
    assert!(!s.finished());

    let w = spawn_worker(worker(&client, &seen));
    counts(&client, &batch.id, (0, 1, 2, 0)).await;
    seen.gate.add_permits(1);
    counts(&client, &batch.id, (1, 1, 1, 0)).await;
    let s = client.batch(&batch.id).await.unwrap();
    assert_eq!(s.callback.unwrap().state, Some(TaskState::Blocked));
    assert!(
        seen.runs().is_empty(),
        "the callback ran before every member ended"
    );
    seen.gate.add_permits(1);

    let cb = wait_for_state(&client, &cb_id, TaskState::Complete, T).await;
    assert_eq!(cb.result_as::<usize>().unwrap(), Some(3));
    queue_settles(&client).await;
    let runs = seen.runs();
    assert_eq!(runs.len(), 1, "the callback ran {} times", runs.len());
    let outcomes = &runs[0];
    let values: Vec<Option<Value>> = ids.iter().map(|id| outcomes[id].clone()).collect();
    assert_eq!(
        values,
        vec![Some(Value::from(10)), Some(Value::from(20)), None],
        "complete members' results, the failed one None"
    );
    let s = client.batch(&batch.id).await.unwrap();
    assert_eq!((s.done, s.failed, s.pending), (2, 1, 0));
    assert_eq!(
        s.by_state(),
        vec![(TaskState::Complete, 2), (TaskState::Terminated, 1)]
    );
    assert!(s.finished());
    w.stop().await;
}

/// Cancelling a batch ends its unfinished members (running ones are
/// stopped) and its callback, which never runs; an ended member stays.
#[tokio::test]
async fn cancel_batch_ends_unfinished_members_and_the_callback() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("BATCHC")).await;
    let seen = Seen::default();
    let mut members = vec![task("m:ok", 1), task("m:wait", 2), task("m:wait", 3)];
    let batch = client
        .enqueue_batch(&mut members, Some(Task::new("cb:collect", &()).unwrap()))
        .await
        .unwrap();
    let w = spawn_worker(worker(&client, &seen));
    wait_for(T, "one member complete and two running", || async {
        let s = client.batch(&batch.id).await.ok()?;
        (s.done == 1 && s.by_state().contains(&(TaskState::Active, 2))).then_some(())
    })
    .await;

    let done = client.cancel_batch(&batch.id, "the test").await.unwrap();
    let cb_id = batch.callback.clone().unwrap();
    assert_eq!(done.cancelled.len(), 3, "{done:?}");
    assert_eq!(done.cancelled[0], cb_id, "the callback goes first");
    assert_eq!((done.finished, done.missing), (1, 0));
    assert!(done.failed.is_empty(), "{:?}", done.failed);

    let s = client.batch(&batch.id).await.unwrap();
    assert_eq!((s.done, s.failed, s.pending), (1, 2, 0));
    for m in &members[1..] {
        let t = client.load_task(&m.id).await.unwrap();
        assert_eq!(t.state, TaskState::Terminated);
        assert_eq!(t.last_err, "cancelled by the test");
    }
    let cb = client.load_task(&cb_id).await.unwrap();
    assert_eq!(cb.state, TaskState::Terminated);
    assert!(s.finished());
    queue_settles(&client).await;
    assert!(seen.runs().is_empty(), "the cancelled callback ran");
    w.stop().await;
}

/// Retrying a batch reruns its failed members and re-arms the callback,
/// which runs again once they ended, now with every result.
#[tokio::test]
async fn retry_batch_reruns_failed_members_and_the_callback() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("BATCHR")).await;
    let seen = Seen::default();
    let mut members = vec![task("m:ok", 1), task("m:flaky", 2)];
    let batch = client
        .enqueue_batch(&mut members, Some(Task::new("cb:collect", &()).unwrap()))
        .await
        .unwrap();
    let cb_id = batch.callback.clone().unwrap();
    let w = spawn_worker(worker(&client, &seen));
    wait_for_state(&client, &cb_id, TaskState::Complete, T).await;
    assert_eq!(seen.runs().len(), 1);
    assert_eq!(seen.runs()[0][&members[1].id], None);
    counts(&client, &batch.id, (1, 1, 0, 0)).await;

    let retried = client.retry_batch(&batch.id).await.unwrap();
    assert_eq!(retried.retried, vec![members[1].id.clone()]);
    assert!(retried.missing.is_empty() && retried.failed.is_empty());
    assert_eq!(retried.callback, CallbackRetry::Rearmed);

    wait_for(T, "the callback to run again", || async {
        (seen.runs().len() == 2).then_some(())
    })
    .await;
    let second = &seen.runs()[1];
    assert_eq!(second[&members[0].id], Some(Value::from(10)));
    assert_eq!(second[&members[1].id], Some(Value::from(20)));
    wait_for_state(&client, &cb_id, TaskState::Complete, T).await;
    counts(&client, &batch.id, (2, 0, 0, 0)).await;
    queue_settles(&client).await;
    assert_eq!(seen.runs().len(), 2);
    w.stop().await;
}

/// Whether anything was written: no task record, no batch bucket.
async fn nothing_written(client: &Client) {
    assert_eq!(client.tasks_info().await.unwrap().messages, 0);
    assert!(
        client
            .jetstream()
            .get_key_value(asyncjobs::BATCHES_BUCKET)
            .await
            .is_err(),
        "the batch bucket was created"
    );
}

/// No members, 1,001 members, a member enqueued before: clear errors at
/// once, nothing written, and the caller's tasks unchanged.
#[tokio::test]
async fn bad_batches_are_refused_with_nothing_written() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("BATCHBAD")).await;
    let e = client.enqueue_batch(&mut [], None).await.unwrap_err();
    assert!(matches!(e, Error::BatchEmpty), "{e:?}");
    assert!(e.to_string().contains("got 0"), "{e}");

    let mut many: Vec<Task> = (0..1001).map(|n| task("m:ok", n)).collect();
    let e = client
        .enqueue_batch(&mut many, Some(Task::new("cb:collect", &()).unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BatchTooLarge {
                count: 1001,
                max: 1000
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("at most 1000 members (got 1001)"),
        "{e}"
    );
    assert!(many
        .iter()
        .all(|t| t.queue.is_empty() && t.batch.is_empty()));

    let mut bad_type = vec![task("m:ok", 1), task("m:ok", 2)];
    bad_type[1].task_type = "not a type".into();
    let e = client.enqueue_batch(&mut bad_type, None).await.unwrap_err();
    assert!(matches!(e, Error::BatchTaskInvalid { .. }), "{e:?}");
    assert!(e.to_string().starts_with("batch member 2 (task"), "{e}");
    nothing_written(&client).await;

    // a member that is not new
    let mut old = task("m:ok", 1);
    client.enqueue(&mut old).await.unwrap();
    let e = client
        .enqueue_batch(&mut [old, task("m:ok", 2)], None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("enqueued before"), "{e}");
    assert_eq!(client.tasks_info().await.unwrap().messages, 1);

    // a thousand are fine
    let mut thousand: Vec<Task> = (0..1000).map(|n| task("m:ok", n)).collect();
    let batch = client.enqueue_batch(&mut thousand, None).await.unwrap();
    let s = client.batch(&batch.id).await.unwrap();
    assert_eq!((s.total, s.pending), (1000, 1000));
}

/// Workers of the queue run and none handles the callback's type: the
/// batch is refused at once, naming the type and what the workers handle;
/// with no worker running it is accepted (one may come).
#[tokio::test]
async fn a_callback_no_running_worker_handles_is_refused() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("BATCHCB")).await;
    let seen = Seen::default();
    let w = spawn_worker(worker(&client, &seen));
    wait_for(T, "the worker to announce itself", || async {
        let workers = client.workers().await.ok()?;
        workers.iter().any(|w| w.queue == "BATCHCB").then_some(())
    })
    .await;
    let e = client
        .enqueue_batch(
            &mut [task("m:ok", 1)],
            Some(Task::new("cb:nobody", &()).unwrap()),
        )
        .await
        .unwrap_err();
    match &e {
        Error::BatchCallbackUnhandled {
            queue,
            task_type,
            handled,
        } => {
            assert_eq!(
                (queue.as_str(), task_type.as_str()),
                ("BATCHCB", "cb:nobody")
            );
            assert!(handled.contains(&"cb:collect".to_string()), "{handled:?}");
        }
        other => panic!("expected the callback refused, got {other:?}"),
    }
    assert!(
        e.to_string().starts_with(
            "no running worker of queue BATCHCB handles the callback's task type cb:nobody"
        ),
        "{e}"
    );
    nothing_written(&client).await;

    // a type they handle is accepted and runs
    let batch = client
        .enqueue_batch(
            &mut [task("m:ok", 1)],
            Some(Task::new("cb:collect", &()).unwrap()),
        )
        .await
        .unwrap();
    wait_for_state(
        &client,
        batch.callback.as_deref().unwrap(),
        TaskState::Complete,
        T,
    )
    .await;
    w.stop().await;

    // no worker on this queue: accepted, it waits for one
    let idle = asyncjobs_tests::client(&server, Queue::new("BATCHIDLE")).await;
    let batch = idle
        .enqueue_batch(
            &mut [task("m:ok", 1)],
            Some(Task::new("cb:nobody", &()).unwrap()),
        )
        .await
        .unwrap();
    let s = idle.batch(&batch.id).await.unwrap();
    assert_eq!(s.callback.unwrap().state, Some(TaskState::Blocked));
}

/// An enqueue interrupted after its batch record (here: the queue holds
/// one item and refuses the second member's) holds the callback back and
/// says so; the status shows it; once the queue has room, `retry_batch`
/// retries the refused member and enqueues the callback from the batch
/// record, which then runs once.
#[tokio::test]
async fn an_incomplete_enqueue_is_finished_by_retry_batch() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("BATCHFULL").max_entries(1)).await;
    let seen = Seen::default();
    let mut members = vec![task("m:ok", 1), task("m:ok", 2)];
    let e = client
        .enqueue_batch(&mut members, Some(Task::new("cb:collect", &()).unwrap()))
        .await
        .unwrap_err();
    let Error::BatchIncomplete {
        id, not_enqueued, ..
    } = &e
    else {
        panic!("expected an incomplete batch, got {e:?}");
    };
    assert_eq!(*not_enqueued, 2, "a member and the held-back callback: {e}");
    let s = client.batch(id).await.unwrap();
    assert_eq!((s.total, s.done, s.failed, s.pending), (2, 0, 1, 1));
    let callback = s.callback.clone().unwrap();
    assert_eq!(callback.state, None, "the callback was held back");
    assert!(!s.finished());

    // the operator makes room in the queue, then finishes the batch
    client
        .configure_queue(
            "BATCHFULL",
            QueueUpdate {
                max_entries: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let w = spawn_worker(worker(&client, &seen));
    counts(&client, id, (1, 1, 0, 0)).await;
    let retried = client.retry_batch(id).await.unwrap();
    assert_eq!(retried.retried.len(), 1);
    assert_eq!(retried.callback, CallbackRetry::Enqueued);
    wait_for_state(&client, &callback.id, TaskState::Complete, T).await;
    queue_settles(&client).await;
    let runs = seen.runs();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].values().all(|v| v.is_some()), "{runs:?}");
    w.stop().await;
}

/// A member whose record is gone is reported missing; the callback counts
/// it as ended (`None`) and runs; a retry cannot make it again.
#[tokio::test]
async fn a_missing_member_is_reported_and_counts_as_ended() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("BATCHMISS")).await;
    let seen = Seen::default();
    let mut members = vec![task("m:ok", 1), task("m:ok", 2)];
    let batch = client
        .enqueue_batch(&mut members, Some(Task::new("cb:collect", &()).unwrap()))
        .await
        .unwrap();
    client.delete_task(&members[1].id).await.unwrap();
    let s = client.batch(&batch.id).await.unwrap();
    assert_eq!((s.pending, s.missing), (1, 1));
    assert_eq!(s.members[1].state, None);

    let w = spawn_worker(worker(&client, &seen));
    wait_for_state(
        &client,
        batch.callback.as_deref().unwrap(),
        TaskState::Complete,
        T,
    )
    .await;
    let runs = seen.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0][&members[0].id], Some(Value::from(10)));
    assert_eq!(runs[0][&members[1].id], None);
    let retried = client.retry_batch(&batch.id).await.unwrap();
    assert_eq!(retried.missing, vec![members[1].id.clone()]);
    assert_eq!(retried.callback, CallbackRetry::Rearmed);
    w.stop().await;
}

/// The batch record (membership and callback) is kept through a server
/// restart, and the batch then runs to its end.
#[tokio::test]
async fn the_batch_record_survives_a_server_restart() {
    let mut server = NatsServer::start();
    let (batch, ids) = {
        let client = client(&server, Queue::new("BATCHRS")).await;
        let mut members = vec![task("m:ok", 1), task("m:ok", 2), task("m:fail", 3)];
        let batch = client
            .enqueue_batch(&mut members, Some(Task::new("cb:collect", &()).unwrap()))
            .await
            .unwrap();
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        (batch, ids)
    };
    server.restart();
    let client = client(&server, Queue::new("BATCHRS")).await;
    let s = wait_for(T, "the batch to be read after the restart", || async {
        client.batch(&batch.id).await.ok()
    })
    .await;
    let members: Vec<String> = s.members.iter().map(|m| m.id.clone()).collect();
    assert_eq!(members, ids);
    assert_eq!((s.total, s.pending, s.missing), (3, 3, 0));
    assert_eq!(s.callback.unwrap().state, Some(TaskState::Blocked));

    let seen = Seen::default();
    let w = spawn_worker(worker(&client, &seen));
    wait_for_state(
        &client,
        batch.callback.as_deref().unwrap(),
        TaskState::Complete,
        T,
    )
    .await;
    counts(&client, &batch.id, (2, 1, 0, 0)).await;
    assert_eq!(seen.runs().len(), 1);
    w.stop().await;
}
