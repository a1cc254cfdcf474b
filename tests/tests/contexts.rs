//! NATS contexts that select another JetStream (docs/interfaces.md §4):
//! a context pointing at a leaf node with `jetstream_domain` set to the
//! hub's puts queues and tasks in the hub, and a worker
//! connected through the leaf with it processes them.
//!
//! One test a process: the contexts are found through `XDG_CONFIG_HOME`,
//! which is process-wide.

use asyncjobs::connect::{Connect, JetStreamApi};
use asyncjobs::{Client, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{spawn_worker, wait_for, wait_for_state, HubAndLeaf};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Whether `stream` exists in the JetStream `nc` reaches by default.
async fn has_stream(nc: &async_nats::Client, stream: &str) -> bool {
    async_nats::jetstream::new(nc.clone())
        .get_stream(stream)
        .await
        .is_ok()
}

async fn messages(nc: &async_nats::Client, stream: &str) -> u64 {
    async_nats::jetstream::new(nc.clone())
        .get_stream(stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

#[tokio::test]
async fn a_jetstream_domain_in_the_context_puts_queues_and_tasks_in_that_domain() {
    asyncjobs_tests::test_log();
    let servers = HubAndLeaf::start().await;
    let config = tempfile::tempdir().unwrap();
    let dir = config.path().join("nats").join("context");
    std::fs::create_dir_all(&dir).unwrap();
    // as `nats context save` writes it: every key, the unused ones empty
    let context = serde_json::json!({
        "description": "the hub through the leaf",
        "url": servers.leaf.url(),
        "socks_proxy": "", "token": "", "user": "", "password": "", "creds": "",
        "nkey": "", "cert": "", "key": "", "ca": "", "nsc": "",
        "jetstream_domain": "hub",
        "jetstream_api_prefix": "", "jetstream_event_prefix": "", "inbox_prefix": "",
        "user_jwt": "", "color_scheme": "", "tls_first": false,
        "windows_cert_store": "", "windows_cert_match_by": "", "windows_cert_match": "",
        "windows_ca_certs_match": []
    });
    std::fs::write(dir.join("viahub.json"), context.to_string()).unwrap();
    let prefixed = serde_json::json!({
        "url": servers.leaf.url(),
        "jetstream_api_prefix": "$JS.hub.API",
    });
    std::fs::write(dir.join("prefixed.json"), prefixed.to_string()).unwrap();
    std::env::set_var("XDG_CONFIG_HOME", config.path());

    // the library: queue and task through the leaf land in the hub
    let client = Client::builder()
        .nats_context("viahub")
        .queue(Queue::new("HUBQ"))
        .build()
        .await
        .expect("client through the leaf");
    assert_eq!(client.jetstream_api().api_prefix(), "$JS.hub.API");
    let mut task = Task::new("hub:job", &serde_json::json!({"n": 1})).unwrap();
    let id = task.id.clone();
    client
        .enqueue(&mut task)
        .await
        .expect("enqueue through the leaf");

    let hub = async_nats::connect(servers.hub.url()).await.unwrap();
    let leaf = async_nats::connect(servers.leaf.url()).await.unwrap();
    assert!(
        has_stream(&hub, "CHORIA_AJ_Q_HUBQ").await,
        "queue in the hub"
    );
    assert_eq!(
        messages(&hub, "CHORIA_AJ_TASKS").await,
        1,
        "task in the hub"
    );
    assert!(
        !has_stream(&leaf, "CHORIA_AJ_TASKS").await,
        "nothing in the leaf's own JetStream"
    );
    assert!(!has_stream(&leaf, "CHORIA_AJ_Q_HUBQ").await);

    // a bare connection cannot carry the domain: refused, not dropped
    let e = Connect::context("viahub").connect().await.unwrap_err();
    assert!(e.to_string().contains("$JS.hub.API"), "{e}");
    let (_, api) = Connect::context("viahub")
        .connect_with_jetstream()
        .await
        .unwrap();
    assert_eq!(api, JetStreamApi::domain("hub").unwrap());

    // a worker connected through the leaf with the context processes it
    let worker_client = Client::builder()
        .nats_context("viahub")
        .bind_queue("HUBQ")
        .build()
        .await
        .expect("worker client through the leaf");
    let router = Router::new()
        .handle("hub:job", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&"done in the hub")
        })
        .unwrap();
    let worker = spawn_worker(worker_client.worker(router));
    let hub_client = Client::builder()
        .url(servers.hub.url())
        .no_storage_init()
        .build()
        .await
        .unwrap();
    let done = wait_for_state(&hub_client, &id, TaskState::Complete, T).await;
    assert_eq!(done.tries, 1);
    worker.stop().await;
    wait_for(T, "the queue emptied in the hub", || {
        let hub = hub.clone();
        async move { (messages(&hub, "CHORIA_AJ_Q_HUBQ").await == 0).then_some(()) }
    })
    .await;

    // jetstream_api_prefix: the same hub through an explicit prefix
    let prefixed = Client::builder()
        .nats_context("prefixed")
        .bind_queue("HUBQ")
        .build()
        .await
        .expect("client with an API prefix");
    assert_eq!(prefixed.jetstream_api().api_prefix(), "$JS.hub.API");
    let mut t2 = Task::new("hub:job", &serde_json::json!({"n": 2})).unwrap();
    prefixed.enqueue(&mut t2).await.unwrap();
    assert_eq!(messages(&hub, "CHORIA_AJ_TASKS").await, 2);
    assert!(!has_stream(&leaf, "CHORIA_AJ_TASKS").await);
}
