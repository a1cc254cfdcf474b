//! Features that must combine (issue 14, kinds E and G): discarded states
//! with dependencies, dependency results, retry by id and signatures; and
//! task listings that are snapshots while workers rewrite records.

use asyncjobs::signing::Keys;
use asyncjobs::{
    Client, Error, HandlerError, Queue, Router, Task, TaskContext, TaskResult, TaskState,
};
use asyncjobs_tests::{fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use futures::StreamExt;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

const T: Duration = Duration::from_secs(20);

/// What the `dependant` handler saw, by task id.
type Seen = Arc<Mutex<BTreeMap<String, BTreeMap<String, Option<TaskResult>>>>>;

/// `slow` sleeps 300 ms, `fail` always fails, `dependant` records the
/// dependency results it was given; everything else completes at once.
fn router(seen: Seen) -> Router {
    Router::new()
        .handle("", move |ctx: TaskContext, t: Task| {
            let seen = seen.clone();
            async move {
                match t.task_type.as_str() {
                    "slow" => tokio::time::sleep(Duration::from_millis(300)).await,
                    "fail" => return Err(HandlerError::retry("always fails")),
                    "dependant" => {
                        seen.lock()
                            .await
                            .insert(t.id.clone(), ctx.dependency_results().clone());
                    }
                    _ => {}
                }
                asyncjobs::handler::to_output(&t.id)
            }
        })
        .unwrap()
}

async fn discarding_client(server: &NatsServer, states: &[TaskState], keys: Keys) -> Client {
    Client::builder()
        .url(server.url())
        .queue(Queue::new("Q"))
        .discard_states(states.iter().copied())
        .unwrap()
        .signing_keys(keys)
        .build()
        .await
        .unwrap()
}

/// Waits for the state event of `id` reaching `state` (a discarded task
/// has no record to poll).
async fn wait_event(events: &mut async_nats::Subscriber, id: &str, state: TaskState) {
    tokio::time::timeout(T, async {
        loop {
            let m = events.next().await.expect("event subscription open");
            if let Ok(asyncjobs::events::Event::TaskState(e)) =
                asyncjobs::events::parse_event(&m.payload)
            {
                assert!(
                    !(e.task_id == id && e.state == TaskState::Unreachable),
                    "task {id} became unreachable"
                );
                if e.task_id == id && e.state == state {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {state} event for {id} within {T:?}"));
}

async fn events(client: &Client) -> async_nats::Subscriber {
    let sub = client
        .nats()
        .subscribe("CHORIA_AJ.E.task_state.*")
        .await
        .unwrap();
    client.nats().flush().await.unwrap();
    sub
}

async fn wait_discarded(client: &Client, id: &str) {
    wait_for(T, "the record to be discarded", || async {
        matches!(client.load_task(id).await, Err(Error::TaskNotFound(_))).then_some(())
    })
    .await;
}

fn dependant(on: &str) -> Task {
    Task::builder("dependant")
        .depends_on([on])
        .load_dependency_results()
        .build()
        .unwrap()
}

#[tokio::test]
async fn dependant_added_before_its_dependency_is_discarded_completes() {
    let server = NatsServer::start();
    let client = discarding_client(&server, &[TaskState::Complete], Keys::none()).await;
    let mut events = events(&client).await;
    let seen = Seen::default();
    let worker = spawn_worker(
        client
            .worker(router(seen.clone()))
            .retry_policy(fast_retry())
            .dependency_poll_interval(Duration::from_millis(100)),
    );
    let mut a = Task::new("slow", &1).unwrap();
    client.enqueue(&mut a).await.unwrap();
    let mut b = dependant(&a.id);
    client.enqueue(&mut b).await.unwrap();
    assert_eq!(b.state, TaskState::Blocked);

    wait_event(&mut events, &b.id, TaskState::Complete).await;
    wait_discarded(&client, &a.id).await;
    // the dependency's result was discarded with its record: None
    let got = seen.lock().await.get(&b.id).cloned().expect("b ran");
    assert_eq!(got.len(), 1);
    assert!(got[&a.id].is_none(), "{got:?}");
    worker.stop().await;
}

#[tokio::test]
async fn dependant_added_after_its_dependency_was_discarded_completes() {
    let server = NatsServer::start();
    let client = discarding_client(&server, &[TaskState::Complete], Keys::none()).await;
    let mut events = events(&client).await;
    let seen = Seen::default();
    let worker = spawn_worker(
        client
            .worker(router(seen.clone()))
            .retry_policy(fast_retry())
            .dependency_poll_interval(Duration::from_millis(100)),
    );
    let mut a = Task::new("t", &1).unwrap();
    client.enqueue(&mut a).await.unwrap();
    wait_event(&mut events, &a.id, TaskState::Complete).await;
    wait_discarded(&client, &a.id).await;

    let mut b = dependant(&a.id);
    client.enqueue(&mut b).await.unwrap();
    wait_event(&mut events, &b.id, TaskState::Complete).await;
    assert!(seen.lock().await[&b.id][&a.id].is_none());

    // a discarded task cannot be retried, and the error says why
    match client.retry_task(&a.id).await {
        Err(e @ Error::TaskDiscarded { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&a.id) && text.contains("discarded in state complete"),
                "{text}"
            );
        }
        other => panic!("expected TaskDiscarded, got {other:?}"),
    }
    // a task that never existed is still not found
    assert!(matches!(
        client.retry_task("nonexistent").await,
        Err(Error::TaskNotFound(_))
    ));
    worker.stop().await;
}

#[tokio::test]
async fn dependency_discarded_as_expired_makes_the_dependant_unreachable() {
    let server = NatsServer::start();
    let client = discarding_client(&server, &[TaskState::Expired], Keys::none()).await;
    let mut events = events(&client).await;
    let worker = spawn_worker(
        client
            .worker(router(Seen::default()))
            .retry_policy(fast_retry())
            .dependency_poll_interval(Duration::from_millis(100)),
    );
    let mut a = Task::builder("fail").max_tries(1).build().unwrap();
    client.enqueue(&mut a).await.unwrap();
    let mut b = dependant(&a.id);
    client.enqueue(&mut b).await.unwrap();
    let b = wait_for_state(&client, &b.id, TaskState::Unreachable, T).await;
    assert_eq!(
        b.last_err,
        format!(
            "task dependencies failed: dependency {} is in state expired (its record was discarded)",
            a.id
        )
    );
    wait_event(&mut events, &a.id, TaskState::Expired).await;
    wait_discarded(&client, &a.id).await;

    // a dependency with neither record nor marker is still "task not found"
    let mut c = dependant("2NEVERCREATEDxxxxxxxxxxxxxx");
    client.enqueue(&mut c).await.unwrap();
    let c = wait_for_state(&client, &c.id, TaskState::Unreachable, T).await;
    assert_eq!(
        c.last_err,
        "task dependencies failed: task not found: 2NEVERCREATEDxxxxxxxxxxxxxx"
    );
    worker.stop().await;
}

#[tokio::test]
async fn signed_dependant_of_a_discarded_dependency_completes() {
    let server = NatsServer::start();
    let seed = Keys::from_seed([7; 32]);
    // the worker can only verify, so it cannot sign anything it writes
    let verify_only = Keys::from_public_hex(&seed.public_hex().unwrap()).unwrap();
    let producer = discarding_client(&server, &[], seed).await;
    let client = discarding_client(&server, &[TaskState::Complete], verify_only).await;
    let mut events = events(&client).await;
    let seen = Seen::default();
    let worker = spawn_worker(
        client
            .worker(router(seen.clone()))
            .retry_policy(fast_retry())
            .dependency_poll_interval(Duration::from_millis(100)),
    );
    let mut a = Task::new("t", &1).unwrap();
    producer.enqueue(&mut a).await.unwrap();
    wait_event(&mut events, &a.id, TaskState::Complete).await;
    wait_discarded(&client, &a.id).await;
    let mut b = dependant(&a.id);
    producer.enqueue(&mut b).await.unwrap();
    assert!(!b.signature.is_empty());
    wait_event(&mut events, &b.id, TaskState::Complete).await;
    assert!(seen.lock().await.contains_key(&b.id));
    worker.stop().await;
}

#[tokio::test]
async fn listing_is_a_snapshot_while_a_worker_rewrites_records() {
    const N: usize = 1500;
    let server = NatsServer::start();
    let client = asyncjobs_tests::client(&server, Queue::new("Q")).await;
    let mut tasks: Vec<Task> = (0..N).map(|i| Task::new("t", &i).unwrap()).collect();
    for r in client.enqueue_many(&mut tasks).await {
        r.unwrap();
    }
    let before: HashSet<String> = tasks.iter().map(|t| t.id.clone()).collect();

    let worker = spawn_worker(
        client
            .worker(router(Seen::default()))
            .concurrency(50)
            .retry_policy(fast_retry()),
    );
    wait_for(T, "the worker to start", || async {
        let info = client.queue_info("Q").await.ok()?;
        (info.ack_pending > 0 || info.pending < N as u64).then_some(())
    })
    .await;

    let mut listing = client.list_tasks(usize::MAX).await.unwrap();
    // a producer keeps adding tasks while the listing runs
    let producer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut added = 0;
            loop {
                let mut t = Task::new("t", &"late").unwrap();
                if client.enqueue(&mut t).await.is_err() {
                    return added;
                }
                added += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut seen = HashSet::new();
    let mut dupes = Vec::new();
    let mut late = Vec::new();
    let mut rows = 0;
    while let Some(t) = tokio::time::timeout(T, listing.next()).await.unwrap() {
        let t = t.unwrap();
        rows += 1;
        if !before.contains(&t.id) {
            late.push(t.id.clone());
        }
        if !seen.insert(t.id.clone()) {
            dupes.push((t.id.clone(), t.state));
        }
        // a slow reader: the worker rewrites records meanwhile
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    producer.abort();
    eprintln!("{rows} rows of {N} tasks while the worker ran");
    assert!(
        dupes.is_empty(),
        "{rows} rows, {} duplicates, first: {:?}",
        dupes.len(),
        &dupes[..dupes.len().min(10)]
    );
    assert!(
        late.is_empty(),
        "tasks created after the listing began: {late:?}"
    );
    // tasks saved during the listing are still listed (once)
    assert!((N * 9 / 10..=N).contains(&rows), "{rows} rows");

    // with nothing changing, a listing shows every task exactly once
    worker.stop().await;
    let mut all = HashSet::new();
    let mut listing = client.list_tasks(usize::MAX).await.unwrap();
    while let Some(t) = listing.next().await {
        assert!(all.insert(t.unwrap().id));
    }
    assert!(before.is_subset(&all));
}
