//! A three-node JetStream cluster: storage replicated on every node,
//! tasks that all complete when the node leading the work queue is killed
//! while a worker is processing it, and a key's limit and a batch's
//! membership kept when the nodes leading their buckets are killed.

use asyncjobs::{Client, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{
    fast_retry, js_api, js_api_answer, spawn_worker, wait_for, wait_for_state, NatsCluster,
};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The name of the node leading `stream`, once it has one.
async fn leader(nc: &async_nats::Client, stream: &str) -> String {
    wait_for(T, &format!("a leader for {stream}"), || async {
        let v = js_api_answer(nc, &format!("STREAM.INFO.{stream}")).await?;
        v["cluster"]["leader"].as_str().map(String::from)
    })
    .await
}

async fn client(cluster: &NatsCluster, builder: asyncjobs::ClientBuilder) -> Client {
    asyncjobs_tests::test_log();
    builder
        .url(cluster.urls())
        .build()
        .await
        .expect("client on the cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_queue_loses_no_task_when_its_leader_dies() {
    let mut cluster = NatsCluster::start(3).await;
    let producer = client(
        &cluster,
        Client::builder()
            .replicas(3)
            .queue(Queue::new("HA").max_run_time(Duration::from_secs(5))),
    )
    .await;
    let nc = producer.nats().clone();
    for stream in [
        asyncjobs::TASKS_STREAM.to_string(),
        "CHORIA_AJ_Q_HA".to_string(),
        format!("KV_{}", asyncjobs::CONFIG_BUCKET),
        format!("KV_{}", asyncjobs::ELECTIONS_BUCKET),
    ] {
        let v = js_api(&nc, &format!("STREAM.INFO.{stream}"), "").await;
        assert_eq!(v["config"]["num_replicas"], 3, "{stream}: {v}");
        assert_eq!(
            v["cluster"]["replicas"].as_array().map(Vec::len),
            Some(2),
            "{stream} has two followers: {v}"
        );
    }
    assert_eq!(producer.queue_info("HA").await.unwrap().stream.replicas, 3);

    // a worker on its own connection that binds the existing queue
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let s = seen.clone();
    let router = Router::new()
        .handle("ha", move |_ctx: TaskContext, t: Task| {
            let s = s.clone();
            async move {
                s.lock().unwrap().insert(t.id.clone());
                asyncjobs::handler::to_output(&"done")
            }
        })
        .unwrap();
    let worker_client = client(&cluster, Client::builder().bind_queue("HA")).await;
    let worker = spawn_worker(worker_client.worker(router).retry_policy(fast_retry()));

    let mut ids = Vec::new();
    for i in 0..30 {
        let mut task = Task::new("ha", &i).unwrap();
        producer.enqueue(&mut task).await.unwrap();
        ids.push(task.id);
    }
    for id in &ids {
        wait_for_state(&producer, id, TaskState::Complete, T).await;
    }

    // kill the node leading the work queue; a new leader takes over
    let dead = leader(&nc, "CHORIA_AJ_Q_HA").await;
    let index = cluster.index_of(&dead).expect("leader is a cluster node");
    cluster.node_mut(index).stop();
    wait_for(T, "a new work queue leader", || async {
        let now = js_api_answer(&nc, "STREAM.INFO.CHORIA_AJ_Q_HA").await?;
        let name = now["cluster"]["leader"].as_str()?;
        (name != dead).then_some(())
    })
    .await;
    leader(&nc, "CHORIA_AJ_TASKS").await;

    // enqueueing goes on (a request caught in the election may fail with a
    // clear error, never silently): every accepted task completes
    let mut later = Vec::new();
    for i in 0..30 {
        let mut task = Task::new("ha", &(100 + i)).unwrap();
        let enqueued = wait_for(T, "an enqueue to be accepted", || {
            let producer = producer.clone();
            let mut t = task.clone();
            async move { producer.enqueue(&mut t).await.ok().map(|_| t) }
        })
        .await;
        task = enqueued;
        later.push(task.id);
    }
    for id in &later {
        let done = wait_for_state(&producer, id, TaskState::Complete, T).await;
        assert_eq!(done.result.unwrap().payload.get(), r#""done""#);
    }
    let seen = seen.lock().unwrap().clone();
    for id in ids.iter().chain(&later) {
        assert!(seen.contains(id), "task {id} never reached the handler");
    }
    assert_eq!(producer.queue_info("HA").await.unwrap().stream.messages, 0);
    worker.stop().await;

    // the dead node rejoins and catches up
    cluster.node_mut(index).restart();
    wait_for(T, "the restarted node to be a current replica", || async {
        let v = js_api_answer(&nc, "STREAM.INFO.CHORIA_AJ_TASKS").await?;
        let mut members: Vec<&Value> = v["cluster"]["replicas"].as_array()?.iter().collect();
        members.retain(|r| r["name"] == dead.as_str());
        match members.first() {
            Some(r) if r["current"] == true => Some(()),
            None if v["cluster"]["leader"] == dead.as_str() => Some(()),
            _ => None,
        }
    })
    .await;
}

/// Issue 14 (found by the fault suite): enqueues while the task store and
/// the queue elect new leaders are not refused and leave no `queue_error`
/// records: a publish answered "no responders" while its stream exists is
/// sent again for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueues_ride_out_a_leader_election() {
    let mut cluster = NatsCluster::start(3).await;
    let producer = client(
        &cluster,
        Client::builder().replicas(3).queue(Queue::new("ELECT")),
    )
    .await;
    let nc = producer.nats().clone();
    for stream in [asyncjobs::TASKS_STREAM, "CHORIA_AJ_Q_ELECT"] {
        let name = leader(&nc, stream).await;
        let i = cluster.index_of(&name).expect("leader is a cluster node");
        cluster.node_mut(i).stop();
        // enqueue at once, while the stream has no leader
        let mut ids = Vec::new();
        for _ in 0..20 {
            let mut t = Task::new("elect", &()).unwrap();
            producer
                .enqueue(&mut t)
                .await
                .unwrap_or_else(|e| panic!("enqueue refused while {stream} elected a leader: {e}"));
            ids.push(t.id);
        }
        for id in &ids {
            assert_eq!(producer.load_task(id).await.unwrap().state, TaskState::New);
        }
        cluster.node_mut(i).restart();
        leader(&nc, stream).await;
    }
    let info = wait_for(T, "the queue to report its items", || async {
        producer.queue_info("ELECT").await.ok()
    })
    .await;
    assert_eq!(info.stream.messages, 40);
}

/// A delayed task's held item lives in the replicated queue stream: the
/// node leading the queue is killed while the task waits, and the task
/// still runs once due, on the new leader's schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_task_survives_a_queue_leader_change() {
    let mut cluster = NatsCluster::start(3).await;
    let producer = client(
        &cluster,
        Client::builder().replicas(3).queue(Queue::new("LATER")),
    )
    .await;
    let nc = producer.nats().clone();
    let mut task = Task::builder("later")
        .run_in(Duration::from_secs(6))
        .build()
        .unwrap();
    let due = task.run_at.unwrap();
    producer.enqueue(&mut task).await.unwrap();
    let dead = leader(&nc, "CHORIA_AJ_Q_LATER").await;
    let index = cluster.index_of(&dead).expect("leader is a cluster node");
    cluster.node_mut(index).stop();
    wait_for(T, "a new queue leader", || async {
        let now = js_api_answer(&nc, "STREAM.INFO.CHORIA_AJ_Q_LATER").await?;
        let name = now["cluster"]["leader"].as_str()?;
        (name != dead).then_some(())
    })
    .await;
    leader(&nc, "CHORIA_AJ_TASKS").await;
    let ran = Arc::new(Mutex::new(None));
    let r = ran.clone();
    let router = Router::new()
        .handle("later", move |_ctx: TaskContext, _t: Task| {
            *r.lock().unwrap() = Some(time::OffsetDateTime::now_utc());
            async { asyncjobs::handler::to_output(&"done") }
        })
        .unwrap();
    let worker_client = client(&cluster, Client::builder().bind_queue("LATER")).await;
    let worker = spawn_worker(worker_client.worker(router));
    wait_for_state(&producer, &task.id, TaskState::Complete, T).await;
    let ran = ran.lock().unwrap().expect("the handler ran");
    assert!(ran >= due, "ran at {ran}, before it was due at {due}");
    worker.stop().await;
}

/// A client started while the cluster has lost its quorum keeps trying to
/// prepare storage (JetStream answers with time-outs) and comes up once the
/// nodes are back; with no patience left it fails with the transient error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_setup_rides_out_a_cluster_without_quorum() {
    let mut cluster = NatsCluster::start(3).await;
    client(
        &cluster,
        Client::builder().replicas(3).queue(Queue::new("WAIT")),
    )
    .await;
    cluster.node_mut(1).stop();
    cluster.node_mut(2).stop();
    let url = cluster.node(0).url();
    // The surviving node keeps answering for the groups it leads until it
    // notices the lost quorum (seconds later), so setup may still succeed
    // for a while: try until it fails.
    let impatient = tokio::time::timeout(T, async {
        loop {
            let tried = Client::builder()
                .url(url.clone())
                .bind_queue("WAIT")
                .setup_patience(Duration::from_secs(1))
                .build()
                .await;
            match tried {
                Err(e) => return e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    })
    .await
    .expect("without quorum, storage preparation fails once the leaders step down");
    let nats = impatient.nats_error().expect("a NATS failure");
    assert!(nats.is_transient(), "{impatient}");

    let patient = tokio::spawn(
        Client::builder()
            .url(url)
            .bind_queue("WAIT")
            .setup_patience(T)
            .build(),
    );
    cluster.node_mut(1).restart();
    cluster.node_mut(2).restart();
    let client = patient.await.unwrap().expect("the client comes up");
    assert_eq!(client.queue().name, "WAIT");
}

/// Issue 32: a keyed batch runs on a replicated cluster while the node
/// leading the limits bucket (the key's slots) is killed, then, once it is
/// back, the node leading the batches bucket: the key's limit of one task
/// at a time holds throughout, every member and the callback complete,
/// and the batch still reports all its members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_limits_and_batches_ride_out_leader_changes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut cluster = NatsCluster::start(3).await;
    let queue = Queue::new("KHA")
        .key_concurrency(1)
        .max_run_time(Duration::from_secs(5));
    let producer = client(&cluster, Client::builder().replicas(3).queue(queue)).await;
    let nc = producer.nats().clone();
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, m) = (running.clone(), most.clone());
    let router = Router::new()
        .handle("kb", move |_ctx: TaskContext, _t: Task| {
            let (r, m) = (r.clone(), m.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                asyncjobs::handler::to_output(&"kb")
            }
        })
        .unwrap()
        .handle("kb:done", |_ctx: TaskContext, _t: Task| async {
            asyncjobs::handler::to_output(&"called back")
        })
        .unwrap();
    // the worker's client creates the limits bucket: replicated too
    let worker_client = client(&cluster, Client::builder().replicas(3).bind_queue("KHA")).await;
    let worker = spawn_worker(
        worker_client
            .worker(router)
            .concurrency(8)
            .retry_policy(fast_retry()),
    );
    let mut members: Vec<Task> = (0..10)
        .map(|i| Task::builder("kb").payload(&i).key("k").build().unwrap())
        .collect();
    let callback = Task::new("kb:done", &()).unwrap();
    let batch = wait_for(T, "the batch to be accepted", || {
        let (producer, mut members, callback) =
            (producer.clone(), members.clone(), callback.clone());
        async move {
            producer
                .enqueue_batch(&mut members, Some(callback))
                .await
                .ok()
        }
    })
    .await;
    members.clear();
    wait_for(T, "the key's first task to start", || async {
        (most.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;

    let limits = format!("KV_{}", asyncjobs::LIMITS_BUCKET);
    let v = js_api(&nc, &format!("STREAM.INFO.{limits}"), "").await;
    assert_eq!(v["config"]["num_replicas"], 3, "{limits}: {v}");
    let dead = leader(&nc, &limits).await;
    let index = cluster.index_of(&dead).expect("leader is a cluster node");
    cluster.node_mut(index).stop();

    let done = wait_for(T, "every member and the callback to complete", || async {
        let s = producer.batch(&batch.id).await.ok()?;
        let cb = s.callback.as_ref()?;
        (s.done == 10 && cb.state == Some(TaskState::Complete)).then_some(s)
    })
    .await;
    assert_eq!((done.total, done.failed, done.missing), (10, 0, 0));
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "the key ran more than one task at once"
    );

    // the killed node comes back; then the node leading the batches dies
    cluster.node_mut(index).restart();
    let batches = format!("KV_{}", asyncjobs::BATCHES_BUCKET);
    wait_for(T, "every replica of the batches bucket current", || async {
        let v = js_api_answer(&nc, &format!("STREAM.INFO.{batches}")).await?;
        let replicas = v["cluster"]["replicas"].as_array()?;
        (replicas.len() == 2 && replicas.iter().all(|r| r["current"] == true)).then_some(())
    })
    .await;
    let dead = leader(&nc, &batches).await;
    let index = cluster.index_of(&dead).expect("leader is a cluster node");
    cluster.node_mut(index).stop();
    let again = wait_for(
        T,
        "the batch read after its bucket's leader died",
        || async { producer.batch(&batch.id).await.ok() },
    )
    .await;
    assert_eq!((again.total, again.done), (10, 10));
    worker.stop().await;
}

/// The node holding the worker leases bucket dies while a worker runs a
/// try: the bucket has the client's replicas, so the worker renews its
/// lease from another node and its try runs to the end, once. (With one
/// replica every worker's lease renewal failed until the node came back,
/// and every worker stopped its running tries after two thirds of its
/// rescue time.) The presence bucket is replicated the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_its_lease_when_a_node_dies() {
    let mut cluster = NatsCluster::start(3).await;
    let queue = Queue::new("LHA").max_run_time(Duration::from_secs(120));
    let producer = client(&cluster, Client::builder().replicas(3).queue(queue)).await;
    let nc = producer.nats().clone();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let was_stopped = stopped.clone();
    let router = Router::new()
        .handle("long", move |ctx: TaskContext, _t: Task| {
            let (started, stopped) = (started_tx.clone(), was_stopped.clone());
            async move {
                let _ = started.send(());
                tokio::select! {
                    _ = ctx.cancelled() => {
                        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
                        Err(asyncjobs::HandlerError::retry("stopped"))
                    }
                    _ = tokio::time::sleep(Duration::from_secs(15)) => asyncjobs::handler::to_output(&"long"),
                }
            }
        })
        .unwrap();
    let worker_client = client(&cluster, Client::builder().replicas(3).bind_queue("LHA")).await;
    let worker = spawn_worker(
        worker_client
            .worker(router)
            .crash_rescue(Some(Duration::from_secs(6))),
    );
    let mut task = Task::new("long", &()).unwrap();
    producer.enqueue(&mut task).await.unwrap();
    tokio::time::timeout(T, started.recv())
        .await
        .expect("the try starts")
        .unwrap();
    for bucket in ["CHORIA_AJ_LEASES", "CHORIA_AJ_WORKERS"] {
        let v = wait_for(T, &format!("bucket {bucket}"), || async {
            js_api_answer(&nc, &format!("STREAM.INFO.KV_{bucket}"))
                .await
                .filter(|v| v["config"].is_object())
        })
        .await;
        assert_eq!(v["config"]["num_replicas"], 3, "{bucket}: {v}");
    }
    let dead = leader(&nc, "KV_CHORIA_AJ_LEASES").await;
    let index = cluster.index_of(&dead).expect("leader is a cluster node");
    cluster.node_mut(index).stop();

    let done = wait_for_state(&producer, &task.id, TaskState::Complete, T).await;
    assert!(
        !stopped.load(std::sync::atomic::Ordering::SeqCst),
        "the worker stopped its running try"
    );
    assert_eq!(done.tries, 1);
    worker.stop().await;
}
