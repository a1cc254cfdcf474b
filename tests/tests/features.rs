//! Task lifecycle features: signing, discard, heartbeats and admin operations.

use asyncjobs::signing::Keys;
use asyncjobs::{
    Client, Error, Queue, QueueUpdate, Router, Task, TaskContext, TaskFilter, TaskState,
};
use asyncjobs_tests::{fast_retry, golden, spawn_worker, wait_for, wait_for_state, NatsServer};
use futures::StreamExt;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

fn golden_text(name: &str) -> String {
    std::fs::read_to_string(golden(name)).unwrap()
}

async fn signed_client(server: &NatsServer, queue: &str, keys: Keys) -> Client {
    Client::builder()
        .url(server.url())
        .queue(Queue::new(queue))
        .signing_keys(keys)
        .build()
        .await
        .unwrap()
}

fn ok_router() -> Router {
    Router::new()
        .handle("", |_ctx: TaskContext, t: Task| async move {
            asyncjobs::handler::to_output(&t.queue)
        })
        .unwrap()
}

#[test]
fn golden_signatures_reproduce_and_verify() {
    let keys = Keys::from_seed_hex(&golden_text("signing_seed.hex")).unwrap();
    assert_eq!(
        keys.public_hex().unwrap(),
        golden_text("signing_public.hex").trim()
    );
    let verify = Keys::from_public_file(golden("signing_public.hex")).unwrap();
    for name in ["task_signed.json", "task_signed_fixed.json"] {
        let task = Task::from_json(golden_text(name).as_bytes()).unwrap();
        verify
            .verify(&task)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut again = task.clone();
        again.signature.clear();
        keys.sign(&mut again).unwrap();
        assert_eq!(again.signature, task.signature, "{name}: same signature");
    }
    let signing: serde_json::Value = serde_json::from_str(&golden_text("signing.json")).unwrap();
    for t in signing["tasks"].as_array().unwrap() {
        let file = if t["task_id"] == "2ABCDEFGHIJKLMNOPQRSTUVWXYZ" {
            "task_signed_fixed.json"
        } else {
            "task_signed.json"
        };
        let task = Task::from_json(golden_text(file).as_bytes()).unwrap();
        assert_eq!(
            asyncjobs::signing::signature_message(&task).unwrap(),
            t["signature_message"].as_str().unwrap()
        );
    }
    // the wrong key does not verify
    let other = Keys::from_seed([9; 32]);
    let task = Task::from_json(golden_text("task_signed_fixed.json").as_bytes()).unwrap();
    assert!(other
        .verify(&task)
        .unwrap_err()
        .to_string()
        .starts_with("invalid task signature"));
}

#[test]
fn key_files_with_trailing_newline_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(
        &seed,
        format!("{}\n", golden_text("signing_seed.hex").trim()),
    )
    .unwrap();
    let public = dir.path().join("pub");
    std::fs::write(
        &public,
        format!("{}\n", golden_text("signing_public.hex").trim()),
    )
    .unwrap();
    assert!(Keys::from_seed_file(&seed).unwrap().signs());
    assert!(Keys::from_public_file(&public).unwrap().verifies());
    let err = Keys::from_seed_file(dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    assert!(Keys::from_public_hex("zz").is_err());
}

#[tokio::test]
async fn go_signed_task_is_verified_and_processed() {
    let server = NatsServer::start();
    let client = signed_client(
        &server,
        "SIGNED",
        Keys::from_public_file(golden("signing_public.hex")).unwrap(),
    )
    .await;
    let raw = golden_text("task_signed_fixed.json");
    let task = Task::from_json(raw.as_bytes()).unwrap();
    let js = async_nats::jetstream::new(client.nats().clone());
    js.publish(format!("CHORIA_AJ.T.{}", task.id), raw.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish(
        format!("CHORIA_AJ.Q.SIGNED.{}", task.id),
        format!(r#"{{"kind":0,"job":"{}"}}"#, task.id).into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let worker = spawn_worker(client.worker(ok_router()).retry_policy(fast_retry()));
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.signature, task.signature);
    worker.stop().await;
}

#[tokio::test]
async fn wrong_signatures_and_unsigned_tasks_are_terminated() {
    let server = NatsServer::start();
    let producer = signed_client(&server, "Q", Keys::from_seed([1; 32])).await;
    let plain = signed_client(&server, "Q", Keys::none()).await;
    // the worker only trusts seed 2 (a seed alone verifies too, docs/go-differences.md §13)
    let worker_client = signed_client(&server, "Q", Keys::from_seed([2; 32])).await;
    let mut forged = Task::new("t", &1).unwrap();
    producer.enqueue(&mut forged).await.unwrap();
    assert_eq!(forged.signature.len(), 128);
    let mut unsigned = Task::new("t", &2).unwrap();
    plain.enqueue(&mut unsigned).await.unwrap();
    let mut good = Task::new("t", &3).unwrap();
    worker_client.enqueue(&mut good).await.unwrap();

    let worker = spawn_worker(worker_client.worker(ok_router()).retry_policy(fast_retry()));
    wait_for_state(&worker_client, &good.id, TaskState::Complete, T).await;
    let t = wait_for(T, "the forged task to be terminated", || async {
        let t = worker_client.load_task_unverified(&forged.id).await.ok()?;
        (t.state == TaskState::Terminated).then_some(t)
    })
    .await;
    assert!(
        t.last_err.starts_with("invalid task signature"),
        "{}",
        t.last_err
    );
    assert_eq!(t.tries, 0);
    let u = wait_for(T, "the unsigned task to be terminated", || async {
        let t = worker_client
            .load_task_unverified(&unsigned.id)
            .await
            .ok()?;
        (t.state == TaskState::Terminated).then_some(t)
    })
    .await;
    assert!(u.last_err.contains("is not signed"), "{}", u.last_err);
    assert!(matches!(
        worker_client.load_task(&forged.id).await,
        Err(Error::Signature(_))
    ));
    wait_for(T, "the queue to drain", || async {
        (worker_client.queue_info("Q").await.unwrap().stream.messages == 0).then_some(())
    })
    .await;
    worker.stop().await;

    // optional signatures accept the unsigned task (once retried)
    let verify_only =
        Keys::from_public_hex(&Keys::from_seed([2; 32]).public_hex().unwrap()).unwrap();
    let optional = signed_client(&server, "Q", verify_only.optional(true)).await;
    optional.retry_task(&unsigned.id).await.unwrap();
    let worker = spawn_worker(optional.worker(ok_router()).retry_policy(fast_retry()));
    let done = wait_for_state(&optional, &unsigned.id, TaskState::Complete, T).await;
    assert!(done.signature.is_empty(), "accepted unsigned");
    worker.stop().await;
}

#[tokio::test]
async fn retry_into_another_queue_re_signs() {
    let server = NatsServer::start();
    let a = signed_client(&server, "A", Keys::from_seed([5; 32])).await;
    let b = signed_client(&server, "B", Keys::from_seed([5; 32])).await;
    let mut task = Task::new("t", &1).unwrap();
    a.enqueue(&mut task).await.unwrap();
    let retried = b.retry_task(&task.id).await.unwrap();
    assert_eq!(retried.queue, "B");
    assert_ne!(retried.signature, task.signature);
    let worker = spawn_worker(b.worker(ok_router()).retry_policy(fast_retry()));
    let done = wait_for_state(&b, &task.id, TaskState::Complete, T).await;
    assert_eq!(done.result_as::<String>().unwrap().as_deref(), Some("B"));
    worker.stop().await;
}

#[tokio::test]
async fn discarded_states_are_deleted_after_their_event() {
    let server = NatsServer::start();
    let client = Client::builder()
        .url(server.url())
        .queue(Queue::new("Q"))
        .discard_states_by_name(["completed", "terminated"])
        .unwrap()
        .build()
        .await
        .unwrap();
    assert!(Client::builder()
        .discard_states([TaskState::Retry])
        .is_err());
    assert!(matches!(
        Client::builder().discard_states_by_name(["bogus"]),
        Err(Error::UnknownDiscardPolicy(_))
    ));
    let mut events = client
        .nats()
        .subscribe("CHORIA_AJ.E.task_state.*")
        .await
        .unwrap();
    client.nats().flush().await.unwrap();
    let worker = spawn_worker(client.worker(ok_router()).retry_policy(fast_retry()));
    let mut task = Task::new("t", &1).unwrap();
    client.enqueue(&mut task).await.unwrap();
    loop {
        let m = tokio::time::timeout(T, events.next())
            .await
            .unwrap()
            .unwrap();
        if let Ok(asyncjobs::events::Event::TaskState(e)) =
            asyncjobs::events::parse_event(&m.payload)
        {
            if e.task_id == task.id && e.state == TaskState::Complete {
                break;
            }
        }
    }
    wait_for(T, "the completed record to be deleted", || async {
        matches!(
            client.load_task(&task.id).await,
            Err(Error::TaskNotFound(_))
        )
        .then_some(())
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn automatic_heartbeat_keeps_long_handlers_alive_up_to_the_cap() {
    let server = NatsServer::start();
    let client = asyncjobs_tests::client(
        &server,
        Queue::new("Q").max_run_time(Duration::from_secs(1)),
    )
    .await;
    let router = Router::new()
        .handle("long", |_ctx: TaskContext, _t: Task| async move {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
        .handle("endless", |_ctx: TaskContext, _t: Task| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            asyncjobs::handler::to_output(&"never")
        })
        .unwrap();
    let worker = spawn_worker(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .auto_heartbeat(Duration::from_secs(4)),
    );
    let mut long = Task::new("long", &()).unwrap();
    client.enqueue(&mut long).await.unwrap();
    let mut endless = Task::builder("endless").max_tries(1).build().unwrap();
    client.enqueue(&mut endless).await.unwrap();
    let done = wait_for_state(&client, &long.id, TaskState::Complete, T).await;
    assert_eq!(
        done.tries, 1,
        "kept alive past the 1 s run time without a second try"
    );
    let capped = wait_for_state(&client, &endless.id, TaskState::Expired, T).await;
    assert!(
        capped.last_err.contains("max run time"),
        "{}",
        capped.last_err
    );
    worker.stop().await;
}

#[tokio::test]
async fn list_filters_and_configuration() {
    let server = NatsServer::start();
    let client = asyncjobs_tests::client(&server, Queue::new("Q")).await;
    let other = asyncjobs_tests::client(&server, Queue::new("OTHER")).await;
    for i in 0..6 {
        let mut t = Task::new(if i % 2 == 0 { "even" } else { "odd" }, &i).unwrap();
        if i < 4 {
            client.enqueue(&mut t).await.unwrap();
        } else {
            other.enqueue(&mut t).await.unwrap();
        }
    }
    let collect = |f: TaskFilter| {
        let client = client.clone();
        async move {
            client
                .list_tasks_filtered(f)
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect::<Vec<_>>()
                .await
        }
    };
    assert_eq!(collect(TaskFilter::new()).await.len(), 6);
    assert_eq!(collect(TaskFilter::new().task_type("even")).await.len(), 3);
    assert_eq!(collect(TaskFilter::new().queue("OTHER")).await.len(), 2);
    assert_eq!(
        collect(TaskFilter::new().queue("Q").task_type("odd"))
            .await
            .len(),
        2
    );
    assert_eq!(
        collect(TaskFilter::new().state(TaskState::New).limit(4))
            .await
            .len(),
        4
    );
    assert_eq!(
        collect(TaskFilter::new().state(TaskState::Complete))
            .await
            .len(),
        0
    );

    // queue configuration with Go's limits
    let too_short = QueueUpdate {
        max_age: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    assert_eq!(
        client
            .configure_queue("Q", too_short)
            .await
            .unwrap_err()
            .to_string(),
        "invalid configuration: shortest max age is 2 minutes"
    );
    let bad_rt = QueueUpdate {
        max_run_time: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    assert!(client.configure_queue("Q", bad_rt).await.is_err());
    let too_many = QueueUpdate {
        max_concurrent: Some(10_001),
        ..Default::default()
    };
    assert!(client.configure_queue("Q", too_many).await.is_err());
    let info = client
        .configure_queue(
            "Q",
            QueueUpdate {
                max_age: Some(Duration::from_secs(3600)),
                max_entries: Some(1000),
                max_tries: Some(7),
                max_run_time: Some(Duration::from_secs(90)),
                max_concurrent: Some(42),
                replicas: None,
                retention: Some("complete=1h,terminated=forever".parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.queue.max_age, Duration::from_secs(3600));
    assert_eq!(
        info.queue.retention.map(|r| r.to_string()).as_deref(),
        Some("complete=1h0m0s,expired=168h0m0s,terminated=forever,unreachable=168h0m0s,queue_error=168h0m0s")
    );
    assert_eq!(info.queue.max_entries, 1000);
    assert_eq!(info.queue.max_tries, 7);
    assert_eq!(info.queue.max_run_time, Duration::from_secs(90));
    assert_eq!(info.queue.max_concurrent, 42);
    assert_eq!(info.stream.messages, 4, "items kept");
    assert!(matches!(
        client.configure_queue("NOPE", QueueUpdate::default()).await,
        Err(Error::QueueNotFound(_))
    ));

    client
        .configure_tasks(Some(Duration::from_secs(86400)), None)
        .await
        .unwrap();
    let info = asyncjobs_tests::js_api(client.nats(), "STREAM.INFO.CHORIA_AJ_TASKS", "").await;
    assert_eq!(info["config"]["max_age"].as_u64(), Some(86_400_000_000_000));
    assert!(client.configure_tasks(None, Some(9)).await.is_err());
}
