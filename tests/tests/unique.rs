//! Unique tasks (docs/processing.md §2.18): at most one task per key
//! across every producer; a duplicate is refused naming the existing
//! task and writes nothing; while-unfinished keys are taken over once the
//! task finishes (or is lost), period keys expire by themselves; bad keys
//! are refused when the task is built; a server before 2.11 refuses.

use asyncjobs::{Client, Error, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn invoice(n: u32) -> Task {
    Task::builder("invoice:send")
        .payload(&n)
        .unique(format!("invoice-{n}"))
        .build()
        .unwrap()
}

async fn stored(client: &Client) -> u64 {
    client.tasks_info().await.unwrap().messages
}

/// The case: a second enqueue with the key of an unfinished task,
/// from another producer, gets the first task's id back and writes
/// nothing; once the first completes, the key is free again.
#[tokio::test]
async fn a_duplicate_gets_the_existing_task_until_it_finishes() {
    let server = NatsServer::start();
    let a = client(&server, Queue::new("UNIQ")).await;
    let b = client(&server, Queue::new("UNIQ")).await;
    let mut first = invoice(42);
    a.enqueue(&mut first).await.unwrap();
    let before = stored(&a).await;

    let mut dup = invoice(42);
    match b.enqueue(&mut dup).await {
        Err(Error::TaskExists { key, id }) => {
            assert_eq!(
                (key.as_str(), id.as_str()),
                ("invoice-42", first.id.as_str())
            );
        }
        other => panic!("a duplicate is refused naming the first: {other:?}"),
    }
    assert_eq!(stored(&a).await, before, "nothing was written");
    assert!(matches!(
        b.load_task(&dup.id).await,
        Err(Error::TaskNotFound(_))
    ));
    // another key is its own
    let mut other = invoice(43);
    b.enqueue(&mut other).await.unwrap();

    let router = Router::new()
        .handle("invoice:send", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"sent")
        })
        .unwrap();
    let worker = spawn_worker(a.worker(router).retry_policy(fast_retry()));
    wait_for_state(&a, &first.id, TaskState::Complete, T).await;
    let mut again = invoice(42);
    b.enqueue(&mut again).await.unwrap();
    wait_for_state(&a, &again.id, TaskState::Complete, T).await;
    worker.stop().await;
}

/// Producers racing with one key: exactly one enqueue succeeds, every
/// other is told its id.
#[tokio::test]
async fn racing_producers_make_one_task() {
    let server = NatsServer::start();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(client(&server, Queue::new("UNIQRACE")).await);
    }
    let before = stored(&clients[0]).await;
    let mut tasks: Vec<Task> = (0..12).map(|_| invoice(7)).collect();
    let results = futures::future::join_all(
        tasks
            .iter_mut()
            .enumerate()
            .map(|(i, t)| clients[i % 4].enqueue(t)),
    )
    .await;
    let winners: Vec<&Task> = tasks
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(t, _)| t)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            match e {
                Error::TaskExists { id, .. } => assert_eq!(id, &winners[0].id),
                other => panic!("{other}"),
            }
        }
    }
    assert_eq!(stored(&clients[0]).await, before + 1);
}

/// A period key refuses duplicates within the period even after the task
/// finished, and expires by itself.
#[tokio::test]
async fn a_period_key_expires_by_itself() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("UNIQFOR")).await;
    let build = || {
        Task::builder("report:daily")
            .payload(&"eu")
            .unique_for(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let mut first = build();
    client.enqueue(&mut first).await.unwrap();
    // finished or not, within the period it stands
    client.cancel_task(&first.id, "the test").await.unwrap();
    let mut dup = build();
    assert!(matches!(
        client.enqueue(&mut dup).await,
        Err(Error::TaskExists { ref id, .. }) if id == &first.id
    ));
    let next = wait_for(T, "the key to expire", || async {
        let mut t = build();
        client.enqueue(&mut t).await.ok().map(|()| t)
    })
    .await;
    assert_ne!(next.id, first.id);
}

/// A key whose task is not found (its producer died between the key and
/// the record) still stands while young, since its enqueue may be saving
/// the task (older than 30 s it is taken over); a key whose task finished
/// is taken over at once.
#[tokio::test]
async fn a_key_without_its_task_is_taken_over() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("UNIQLOST")).await;
    // the key bucket exists after one unique enqueue
    let mut seed = invoice(1);
    client.enqueue(&mut seed).await.unwrap();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(nc);
    let kv = js.get_key_value("CHORIA_AJ_UNIQUE").await.unwrap();
    kv.put("invoice-2", "2Jk7X1vJ8nR0a4mZq3bW6yTgE5c".into())
        .await
        .unwrap();
    // young: its enqueue may still be saving the task
    let mut t = invoice(2);
    assert!(matches!(
        client.enqueue(&mut t).await,
        Err(Error::TaskExists { .. })
    ));
    client.cancel_task(&seed.id, "the test").await.unwrap();
    let mut again = invoice(1);
    client.enqueue(&mut again).await.unwrap();
    assert_eq!(
        client.load_task(&again.id).await.unwrap().state,
        TaskState::New
    );
}

/// Bad keys and periods are refused when the task is built.
#[test]
fn bad_keys_are_refused_at_once() {
    for key in ["", "a b", "tenant:7", "é", ".x"] {
        let e = Task::builder("x").unique(key).build().unwrap_err();
        assert!(e.to_string().contains("unique key"), "{key:?}: {e}");
    }
    let e = Task::builder("x")
        .unique("k".repeat(201))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("201 bytes long"), "{e}");
    let e = Task::builder("x")
        .unique_for(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("at least 1s"), "{e}");
}

/// A server before 2.11 cannot expire keys: a unique enqueue is refused
/// naming the version, and nothing is written.
#[tokio::test]
async fn a_server_before_2_11_refuses_unique_tasks() {
    let server = NatsServer::start_2_10();
    let client = client(&server, Queue::new("UNIQOLD")).await;
    let before = stored(&client).await;
    let mut t = invoice(1);
    match client.enqueue(&mut t).await {
        Err(e @ Error::ServerTooOld { .. }) => {
            assert!(e.to_string().contains("2.11"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stored(&client).await, before);
}

mod jobs {
    use asyncjobs::HandlerError;

    /// Unique by payload while unfinished, declared on the handler.
    #[asyncjobs::task_handler("thumbnail:make", queue = "THUMBS", unique = "payload")]
    pub(crate) async fn make(image: u32) -> Result<u32, HandlerError> {
        Ok(image)
    }
}

/// `#[task_handler(.., unique = "payload")]`: typed enqueues of the same
/// payload make one task; another payload, or an explicit key through
/// `enqueue_with`, is its own.
#[tokio::test]
async fn a_handlers_declared_uniqueness_applies_to_typed_enqueues() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("THUMBS")).await;
    let first = jobs::make::enqueue(&client, 7).await.unwrap();
    match jobs::make::enqueue(&client, 7).await {
        Err(Error::TaskExists { id, .. }) => assert_eq!(id, first.id()),
        other => panic!("{other:?}"),
    }
    jobs::make::enqueue(&client, 8).await.unwrap();
    jobs::make::enqueue_with(&client, 7, |b| b.unique("image-7-again"))
        .await
        .unwrap();
}
