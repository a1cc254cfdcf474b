//! Task lifecycle against a real nats-server: enqueue, process, retry,
//! terminate, expire, dependencies, limits and enqueue failures.

use asyncjobs::{typed, Client, Error, HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{
    client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer, RunningWorker,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

fn start(client: &Client, router: Router) -> RunningWorker {
    spawn_worker(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .dependency_poll_interval(Duration::from_millis(100)),
    )
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Email {
    to: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Receipt {
    id: String,
    to: String,
}

async fn queue_len(client: &Client) -> u64 {
    client
        .queue_info(&client.queue().name)
        .await
        .unwrap()
        .stream
        .messages
}

#[tokio::test]
async fn enqueue_to_complete_with_typed_result() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("EMAIL")).await;
    let router = Router::new()
        .handle(
            "email:new",
            typed(|ctx: TaskContext, e: Email| async move {
                Ok::<_, HandlerError>(Receipt {
                    id: ctx.id().to_string(),
                    to: e.to,
                })
            }),
        )
        .unwrap();
    let worker = start(&client, router);
    let mut task = Task::new(
        "email:new",
        &Email {
            to: "a@example.net".into(),
        },
    )
    .unwrap();
    client.enqueue(&mut task).await.unwrap();
    assert_eq!(task.queue, "EMAIL");
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(
        done.result_as::<Receipt>().unwrap().unwrap(),
        Receipt {
            id: task.id.clone(),
            to: "a@example.net".into()
        }
    );
    assert_eq!(done.tries, 1);
    assert!(done.tried.is_some());
    assert!(done.last_err.is_empty());
    wait_for(T, "queue to drain", || async {
        (queue_len(&client).await == 0).then_some(())
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn handler_error_retries_with_backoff_then_completes() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new()
        .handle("flaky", move |_ctx: TaskContext, _t: Task| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(HandlerError::retry(format!("failure {n}")))
                } else {
                    asyncjobs::handler::to_output(&"ok")
                }
            }
        })
        .unwrap();
    // watch the retry state being recorded
    let mut events = client
        .nats()
        .subscribe("CHORIA_AJ.E.task_state.>")
        .await
        .unwrap();
    let worker = start(&client, router);
    let mut task = Task::new("flaky", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let mut states = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(
        Duration::from_millis(500),
        futures::StreamExt::next(&mut events),
    )
    .await
    {
        if let Ok(asyncjobs::events::Event::TaskState(e)) =
            asyncjobs::events::parse_event(&m.payload)
        {
            states.push((e.state, e.last_error));
        }
    }
    assert_eq!(
        states,
        vec![
            (TaskState::New, String::new()),
            (TaskState::Active, String::new()),
            (TaskState::Retry, "failure 0".into()),
            (TaskState::Active, String::new()),
            (TaskState::Retry, "failure 1".into()),
            (TaskState::Active, String::new()),
            (TaskState::Complete, String::new()),
        ]
    );
    worker.stop().await;
}

#[tokio::test]
async fn terminate_stops_retries() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new()
        .handle("t", move |_ctx: TaskContext, _t: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Err(asyncjobs::terminate("permanently broken")) }
        })
        .unwrap();
    let worker = start(&client, router);
    let mut task = Task::new("t", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(&client, &task.id, TaskState::Terminated, T).await;
    assert_eq!(done.last_err, "permanently broken");
    assert_eq!(done.tries, 1);
    wait_for(T, "queue to drain", || async {
        (queue_len(&client).await == 0).then_some(())
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    worker.stop().await;
}

#[tokio::test]
async fn past_deadline_expires_and_the_item_is_acked_at_once() {
    let server = NatsServer::start();
    // a long run time: the Go behaviour would leave the item for 1 h
    let client = client(
        &server,
        Queue::new("Q").max_run_time(Duration::from_secs(3600)),
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new()
        .handle("t", move |_ctx: TaskContext, _t: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { asyncjobs::handler::to_output(&1) }
        })
        .unwrap();
    let mut task = Task::builder("t")
        .deadline(time::OffsetDateTime::now_utc() - Duration::from_secs(1))
        .build()
        .unwrap();
    client.enqueue(&mut task).await.unwrap();
    let worker = start(&client, router);
    let done = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(done.last_err, "past deadline");
    assert_eq!(done.tries, 0);
    wait_for(T, "the expired item to be removed", || async {
        let info = client.queue_info("Q").await.unwrap();
        (info.stream.messages == 0 && info.ack_pending == 0).then_some(())
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    worker.stop().await;
}

#[tokio::test]
async fn max_tries_expires_the_task() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new()
        .handle("t", move |_ctx: TaskContext, _t: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Err(HandlerError::retry("always fails")) }
        })
        .unwrap();
    let worker = start(&client, router);
    let mut task = Task::builder("t").max_tries(3).build().unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(done.tries, 3);
    assert_eq!(done.last_err, "always fails");
    wait_for(T, "queue to drain", || async {
        (queue_len(&client).await == 0).then_some(())
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // a task delivered with its tries used up expires without running
    let mut used = Task::builder("t").max_tries(2).build().unwrap();
    used.tries = 2;
    client.enqueue(&mut used).await.unwrap();
    let done = wait_for_state(&client, &used.id, TaskState::Expired, T).await;
    assert_eq!(done.last_err, "exceeded maximum tries");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    worker.stop().await;
}

#[tokio::test]
async fn dependencies_complete_then_dependant_runs_with_their_results() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    // the parents wait in a queue nobody serves yet, so the child has to wait
    let parents = asyncjobs_tests::client(&server, Queue::new("PARENTS")).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, Option<i64>)>::new()));
    let s = seen.clone();
    let child_router = Router::new()
        .handle("child", move |ctx: TaskContext, t: Task| {
            let s = s.clone();
            async move {
                for dep in &t.dependencies {
                    let r = ctx.dependency_result::<i64>(dep).unwrap();
                    s.lock().unwrap().push((dep.clone(), r));
                }
                asyncjobs::handler::to_output(&"child done")
            }
        })
        .unwrap();
    let parent_router = Router::new()
        .handle(
            "parent",
            typed(|_ctx, n: i64| async move { Ok::<_, HandlerError>(n * 10) }),
        )
        .unwrap();
    let mut a = Task::new("parent", &1).unwrap();
    let mut b = Task::new("parent", &2).unwrap();
    parents.enqueue(&mut a).await.unwrap();
    parents.enqueue(&mut b).await.unwrap();
    let mut child = Task::builder("child")
        .depends_on([a.id.clone(), b.id.clone()])
        .load_dependency_results()
        .build()
        .unwrap();
    assert_eq!(child.state, TaskState::Blocked);
    client.enqueue(&mut child).await.unwrap();
    let worker = start(&client, child_router);
    let nc = client.nats().clone();
    wait_for(
        T,
        "the child to be checked and put back a few times",
        || {
            let nc = nc.clone();
            async move {
                let info =
                    asyncjobs_tests::js_api(&nc, "CONSUMER.INFO.CHORIA_AJ_Q_Q.WORKERS", "").await;
                (info["delivered"]["consumer_seq"].as_u64().unwrap_or(0) >= 3).then_some(())
            }
        },
    )
    .await;
    let blocked = client.load_task(&child.id).await.unwrap();
    assert_eq!(blocked.state, TaskState::Blocked);
    assert_eq!(blocked.tries, 0);
    let parents_worker = start(&parents, parent_router);
    let done = wait_for_state(&client, &child.id, TaskState::Complete, T).await;
    assert_eq!(done.dependency_results.len(), 2);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut want = vec![(a.id.clone(), Some(10)), (b.id.clone(), Some(20))];
    want.sort();
    assert_eq!(seen, want);
    worker.stop().await;
    parents_worker.stop().await;
}

#[tokio::test]
async fn failed_or_missing_dependency_makes_task_unreachable() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let child_calls = Arc::new(AtomicUsize::new(0));
    let c = child_calls.clone();
    let router = Router::new()
        .handle("parent", |_ctx: TaskContext, _t: Task| async move {
            Err(asyncjobs::terminate("nope"))
        })
        .unwrap()
        .handle("child", move |_ctx: TaskContext, _t: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { asyncjobs::handler::to_output(&1) }
        })
        .unwrap();
    let worker = start(&client, router);
    let mut parent = Task::new("parent", &1).unwrap();
    client.enqueue(&mut parent).await.unwrap();
    wait_for_state(&client, &parent.id, TaskState::Terminated, T).await;
    let mut child = Task::builder("child")
        .depends_on([parent.id.clone()])
        .build()
        .unwrap();
    client.enqueue(&mut child).await.unwrap();
    let done = wait_for_state(&client, &child.id, TaskState::Unreachable, T).await;
    assert_eq!(
        done.last_err,
        format!(
            "task dependencies failed: dependency {} is in state terminated",
            parent.id
        )
    );
    assert_eq!(done.tries, 0);

    let mut orphan = Task::builder("child")
        .depends_on(["2ABCDEFGHIJKLMNOPQRSTUVWXYZ"])
        .build()
        .unwrap();
    client.enqueue(&mut orphan).await.unwrap();
    let done = wait_for_state(&client, &orphan.id, TaskState::Unreachable, T).await;
    assert_eq!(
        done.last_err,
        "task dependencies failed: task not found: 2ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    );
    assert_eq!(child_calls.load(Ordering::SeqCst), 0);
    wait_for(T, "queue to drain", || async {
        (queue_len(&client).await == 0).then_some(())
    })
    .await;
    worker.stop().await;
}

/// A handler that records how many instances run at once.
fn counting_router(current: Arc<AtomicI64>, max: Arc<AtomicI64>) -> Router {
    Router::new()
        .handle("slow", move |_ctx: TaskContext, _t: Task| {
            let (current, max) = (current.clone(), max.clone());
            async move {
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(40)).await;
                current.fetch_sub(1, Ordering::SeqCst);
                asyncjobs::handler::to_output(&())
            }
        })
        .unwrap()
}

async fn enqueue_n(client: &Client, n: usize) -> Vec<String> {
    let mut tasks: Vec<Task> = (0..n).map(|_| Task::new("slow", &()).unwrap()).collect();
    for r in client.enqueue_many(&mut tasks).await {
        r.unwrap();
    }
    tasks.into_iter().map(|t| t.id).collect()
}

async fn wait_all_complete(client: &Client, ids: &[String]) {
    for id in ids {
        wait_for_state(client, id, TaskState::Complete, Duration::from_secs(30)).await;
    }
}

#[tokio::test]
async fn process_concurrency_is_never_exceeded() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let (current, max) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let ids = enqueue_n(&client, 40).await;
    let worker = spawn_worker(
        client
            .worker(counting_router(current, max.clone()))
            .retry_policy(fast_retry())
            .concurrency(4),
    );
    wait_all_complete(&client, &ids).await;
    assert_eq!(
        max.load(Ordering::SeqCst),
        4,
        "concurrency used fully but never exceeded"
    );
    worker.stop().await;
}

#[tokio::test]
async fn queue_concurrency_caps_all_workers_together() {
    let server = NatsServer::start();
    let queue = Queue::new("CAPPED").max_concurrent(3);
    let c1 = client(&server, queue.clone()).await;
    let c2 = client(&server, queue).await;
    assert_eq!(c1.queue().max_concurrent, 3);
    let (current, max) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let ids = enqueue_n(&c1, 40).await;
    let w1 = spawn_worker(
        c1.worker(counting_router(current.clone(), max.clone()))
            .retry_policy(fast_retry())
            .concurrency(10),
    );
    let w2 = spawn_worker(
        c2.worker(counting_router(current, max.clone()))
            .retry_policy(fast_retry())
            .concurrency(10),
    );
    wait_all_complete(&c1, &ids).await;
    let seen = max.load(Ordering::SeqCst);
    assert!((1..=3).contains(&seen), "max in flight {seen}");
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn duplicate_id_is_a_queue_error() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let mut task = Task::new("t", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let err = client.enqueue(&mut task).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateItem), "{err:?}");
    let stored = client.load_task(&task.id).await.unwrap();
    assert_eq!(stored.state, TaskState::QueueError);
    assert_eq!(stored.last_err, "duplicate work queue item");

    // a different task object reusing the id cannot overwrite the record
    let mut clash = Task::builder("t").id(task.id.clone()).build().unwrap();
    let err = client.enqueue(&mut clash).await.unwrap_err();
    assert!(matches!(err, Error::ConcurrentUpdate(_)), "{err:?}");
}

#[tokio::test]
async fn full_queue_with_discard_new_is_a_queue_error() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("SMALL").max_entries(1)).await;
    let mut first = Task::new("t", &1).unwrap();
    client.enqueue(&mut first).await.unwrap();
    let mut second = Task::new("t", &2).unwrap();
    let err = client.enqueue(&mut second).await.unwrap_err();
    match &err {
        Error::EnqueueRejected { queue, reason, .. } => {
            assert_eq!(queue, "SMALL");
            assert!(reason.contains("maximum messages"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let stored = client.load_task(&second.id).await.unwrap();
    assert_eq!(stored.state, TaskState::QueueError);
    assert!(
        stored.last_err.contains("maximum messages"),
        "{}",
        stored.last_err
    );
}

#[tokio::test]
async fn enqueue_to_a_missing_queue_is_a_queue_error() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let mut task = Task::new("t", &1).unwrap();
    let err = client.enqueue_to("NOPE", &mut task).await.unwrap_err();
    assert!(
        matches!(err, Error::QueueNotFound(ref q) if q == "NOPE"),
        "{err:?}"
    );
    let stored = client.load_task(&task.id).await.unwrap();
    assert_eq!(stored.state, TaskState::QueueError);
    // the record and the returned error agree, and say how to fix it
    assert_eq!(stored.last_err, err.to_string());
    assert!(
        stored.last_err.contains("ajc queue add NOPE"),
        "{}",
        stored.last_err
    );

    let mut other = Task::new("t", &1).unwrap();
    assert!(matches!(
        client.enqueue_to("a.b", &mut other).await,
        Err(Error::QueueNameInvalid(_))
    ));
    let mut done = Task::new("t", &1).unwrap();
    done.state = TaskState::Complete;
    assert!(matches!(
        client.enqueue(&mut done).await,
        Err(Error::CannotEnqueue(TaskState::Complete))
    ));
}

#[tokio::test]
async fn bind_queue_distinguishes_missing_stream_and_consumer() {
    let server = NatsServer::start();
    let err = Client::builder()
        .url(server.url())
        .bind_queue("MISSING")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QueueNotFound(_)), "{err:?}");
    let client = client(&server, Queue::new("X")).await;
    let nc = client.nats().clone();
    asyncjobs_tests::js_api(&nc, "CONSUMER.DELETE.CHORIA_AJ_Q_X.WORKERS", "").await;
    let err = Client::builder()
        .url(server.url())
        .bind_queue("X")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QueueConsumerNotFound(_)), "{err:?}");
    let info = client.queue_info("X").await.unwrap();
    assert!(!info.has_consumer);
}

#[tokio::test]
async fn oversized_payload_is_refused_before_anything_is_written() {
    let server = NatsServer::start_with_config("max_payload: 65536\n");
    let client = client(&server, Queue::new("Q")).await;
    let mut task = Task::builder("t")
        .raw_payload(vec![b'x'; 100_000])
        .build()
        .unwrap();
    let err = client.enqueue(&mut task).await.unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("max_payload"), "{err}");
    assert!(matches!(
        client.load_task(&task.id).await,
        Err(Error::TaskNotFound(_))
    ));
}

#[tokio::test]
async fn panics_are_failed_tries_and_unknown_types_are_not_tried() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new()
        .handle("boom", move |_ctx: TaskContext, _t: Task| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("boom at first try");
                }
                asyncjobs::handler::to_output(&"survived")
            }
        })
        .unwrap();
    let mut events = client
        .nats()
        .subscribe("CHORIA_AJ.E.task_state.>")
        .await
        .unwrap();
    let worker = start(&client, router);
    let mut task = Task::new("boom", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 2);
    let retry = loop {
        let m = tokio::time::timeout(T, futures::StreamExt::next(&mut events))
            .await
            .unwrap()
            .unwrap();
        if let Ok(asyncjobs::events::Event::TaskState(e)) =
            asyncjobs::events::parse_event(&m.payload)
        {
            if e.state == TaskState::Retry {
                break e;
            }
        }
    };
    assert_eq!(retry.last_error, "handler panicked: boom at first try");

    // an unknown type is not a try: passed on for a worker with its
    // handler (tests/tests/unhandled.rs)
    let mut unknown = Task::new("nobody:handles", &()).unwrap();
    client.enqueue(&mut unknown).await.unwrap();
    let t = wait_for(T, "the unknown type's note", || async {
        client
            .load_task(&unknown.id)
            .await
            .ok()
            .filter(|t| !t.last_err.is_empty())
    })
    .await;
    assert!(
        t.last_err.starts_with(
            "waiting for a worker of queue Q that handles task type \"nobody:handles\" (a worker handling "
        ),
        "{}",
        t.last_err
    );
    assert_eq!((t.state, t.tries), (TaskState::New, 0));
    worker.stop().await;
}

#[tokio::test]
async fn bad_payload_terminates_with_the_expected_type_named() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let router = Router::new()
        .handle(
            "email:new",
            typed(|_ctx, e: Email| async move { Ok::<_, HandlerError>(e.to) }),
        )
        .unwrap();
    let worker = start(&client, router);
    let mut task = Task::new("email:new", &serde_json::json!({"wrong": 1})).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let done = wait_for_state(&client, &task.id, TaskState::Terminated, T).await;
    assert!(
        done.last_err.contains("lifecycle::Email"),
        "{}",
        done.last_err
    );
    assert!(
        done.last_err.contains("missing field `to`"),
        "{}",
        done.last_err
    );
    worker.stop().await;
}

#[tokio::test]
async fn corrupt_items_and_records_are_terminated_and_the_worker_goes_on() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let router = Router::new()
        .handle("t", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&"fine")
        })
        .unwrap();
    let js = async_nats::jetstream::new(client.nats().clone());
    let publish = |subject: String, body: &'static [u8]| {
        let js = js.clone();
        async move {
            js.publish(subject, body.into())
                .await
                .unwrap()
                .await
                .unwrap()
        }
    };
    publish("CHORIA_AJ.Q.Q.empty".into(), b"").await;
    publish("CHORIA_AJ.Q.Q.notjson".into(), b"this is not json").await;
    publish("CHORIA_AJ.Q.Q.nojob".into(), br#"{"kind":0,"job":""}"#).await;
    publish(
        "CHORIA_AJ.Q.Q.unknown".into(),
        br#"{"kind":0,"job":"2ABCDEFGHIJKLMNOPQRSTUVWXYZ"}"#,
    )
    .await;
    publish("CHORIA_AJ.T.corrupt1".into(), b"{not a task").await;
    publish(
        "CHORIA_AJ.Q.Q.corrupt1".into(),
        br#"{"kind":0,"job":"corrupt1"}"#,
    )
    .await;
    let worker = start(&client, router);
    let mut good = Task::new("t", &()).unwrap();
    client.enqueue(&mut good).await.unwrap();
    wait_for_state(&client, &good.id, TaskState::Complete, T).await;
    wait_for(T, "every bad item to be terminated", || async {
        let info = client.queue_info("Q").await.unwrap();
        (info.stream.messages == 0 && info.ack_pending == 0).then_some(())
    })
    .await;
    let err = client.load_task("corrupt1").await.unwrap_err();
    assert!(matches!(err, Error::InvalidTaskRecord { .. }), "{err:?}");
    assert!(err.to_string().contains("corrupt1"));
    worker.stop().await;
}

#[tokio::test]
async fn handlers_time_out_and_can_extend_their_lease() {
    let server = NatsServer::start();
    let client = client(
        &server,
        Queue::new("Q").max_run_time(Duration::from_secs(1)),
    )
    .await;
    let router = Router::new()
        .handle("long", |ctx: TaskContext, _t: Task| async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                ctx.mark_in_progress().await?;
            }
            asyncjobs::handler::to_output(&"made it")
        })
        .unwrap()
        .handle("stuck", |_ctx: TaskContext, _t: Task| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            asyncjobs::handler::to_output(&())
        })
        .unwrap();
    let worker = start(&client, router);
    let mut long = Task::new("long", &()).unwrap();
    client.enqueue(&mut long).await.unwrap();
    let mut stuck = Task::builder("stuck").max_tries(1).build().unwrap();
    client.enqueue(&mut stuck).await.unwrap();
    let done = wait_for_state(&client, &long.id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 1, "the lease was extended, not timed out");
    let expired = wait_for_state(&client, &stuck.id, TaskState::Expired, T).await;
    assert!(
        expired.last_err.contains("max run time"),
        "{}",
        expired.last_err
    );
    worker.stop().await;
}

#[tokio::test]
async fn admin_operations() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("ADMIN")).await;
    let router = Router::new()
        .handle("t", |_ctx: TaskContext, t: Task| async move {
            asyncjobs::handler::to_output(&t.tries)
        })
        .unwrap();
    let mut tasks: Vec<Task> = (0..5).map(|i| Task::new("t", &i).unwrap()).collect();
    for r in client.enqueue_many(&mut tasks).await {
        r.unwrap();
    }
    assert_eq!(queue_len(&client).await, 5);
    assert_eq!(client.tasks_info().await.unwrap().messages, 5);
    let listed: Vec<Task> =
        futures::StreamExt::collect::<Vec<_>>(client.list_tasks(3).await.unwrap())
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
    assert_eq!(listed.len(), 3);
    let all = futures::StreamExt::collect::<Vec<_>>(client.list_tasks(100).await.unwrap()).await;
    assert_eq!(all.len(), 5);

    let worker = start(&client, router);
    let done = wait_for_state(&client, &tasks[0].id, TaskState::Complete, T).await;
    assert_eq!(done.result_as::<i64>().unwrap(), Some(1));
    let retried = client.retry_task(&tasks[0].id).await.unwrap();
    assert_eq!(retried.state, TaskState::Retry);
    assert!(retried.result.is_none());
    let again = wait_for_state(&client, &tasks[0].id, TaskState::Complete, T).await;
    assert_eq!(again.result_as::<i64>().unwrap(), Some(2));
    worker.stop().await;

    client.delete_task(&tasks[1].id).await.unwrap();
    assert!(matches!(
        client.load_task(&tasks[1].id).await,
        Err(Error::TaskNotFound(_))
    ));
    assert!(matches!(
        client.delete_task(&tasks[1].id).await,
        Err(Error::TaskNotFound(_))
    ));
    assert!(matches!(
        client.retry_task(&tasks[1].id).await,
        Err(Error::TaskNotFound(_))
    ));

    client.prepare_queue(&Queue::new("OTHER")).await.unwrap();
    assert_eq!(
        client.queue_names().await.unwrap(),
        vec!["ADMIN", "DEFAULT", "OTHER"]
            .into_iter()
            .filter(|n| *n != "DEFAULT")
            .collect::<Vec<_>>()
    );
    let mut t = Task::new("t", &1).unwrap();
    client.enqueue_to("OTHER", &mut t).await.unwrap();
    assert_eq!(client.queue_info("OTHER").await.unwrap().stream.messages, 1);
    client.purge_queue("OTHER").await.unwrap();
    assert_eq!(client.queue_info("OTHER").await.unwrap().stream.messages, 0);
    client.delete_queue("OTHER").await.unwrap();
    assert!(matches!(
        client.queue_info("OTHER").await,
        Err(Error::QueueNotFound(_))
    ));
    assert!(matches!(
        client.delete_queue("OTHER").await,
        Err(Error::QueueNotFound(_))
    ));
    client.purge_tasks().await.unwrap();
    assert_eq!(client.tasks_info().await.unwrap().messages, 0);
}

#[tokio::test]
async fn default_client_uses_go_defaults() {
    let server = NatsServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue();
    assert_eq!(q.name, "DEFAULT");
    assert_eq!(q.max_run_time, Duration::from_secs(60));
    assert_eq!(q.max_tries, 100);
    assert_eq!(q.max_concurrent, 100);
    assert_eq!(q.max_entries, -1);
    // an existing queue is loaded unchanged, whatever the new settings say
    let again = Client::builder()
        .url(server.url())
        .queue(Queue::new("DEFAULT").max_tries(5))
        .build()
        .await
        .unwrap();
    assert_eq!(again.queue().max_tries, 100);
    assert!(Client::builder()
        .url(server.url())
        .replicas(6)
        .build()
        .await
        .is_err());
    let err = Client::connect("nats://127.0.0.1:1").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{err}"
    );
}

/// `enqueue_many` can run in a spawned task (its future is `Send` for
/// any lifetime: the fault suite once had to work around it).
#[tokio::test]
async fn enqueue_many_can_be_spawned() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("Q")).await;
    let spawned = tokio::spawn({
        let client = client.clone();
        async move {
            let mut tasks: Vec<Task> = (0..5).map(|i| Task::new("t", &i).unwrap()).collect();
            let results = client.enqueue_many(&mut tasks).await;
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            tasks.len()
        }
    });
    assert_eq!(spawned.await.unwrap(), 5);
}

/// `enqueue_many` over more tasks than it has in flight at once: each
/// result is its own task's, in order, when some fail and the rest
/// complete out of order.
#[tokio::test]
async fn enqueue_many_gives_each_task_its_own_result() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("MANY")).await;
    let n = asyncjobs::client::ENQUEUE_IN_FLIGHT * 2 + 7;
    let mut tasks: Vec<Task> = (0..n).map(|i| Task::new("t", &i).unwrap()).collect();
    // every 97th cannot be enqueued: it is already complete
    for t in tasks.iter_mut().step_by(97) {
        t.state = TaskState::Complete;
    }
    let results = client.enqueue_many(&mut tasks).await;
    assert_eq!(results.len(), n);
    for (i, (task, res)) in tasks.iter().zip(&results).enumerate() {
        if i % 97 == 0 {
            assert!(
                matches!(res, Err(Error::CannotEnqueue(TaskState::Complete))),
                "task {i}: {res:?}"
            );
        } else {
            assert!(res.is_ok(), "task {i}: {res:?}");
            let stored = client.load_task(&task.id).await.unwrap();
            assert_eq!(stored.payload_as::<usize>().unwrap(), i);
        }
    }
    let info = client.queue_info("MANY").await.unwrap();
    assert_eq!(info.stream.messages as usize, n - n.div_ceil(97));
}
