//! The HTTP API on a client reaching another JetStream domain
//! (docs/interfaces.md §4): connected to a leaf node with the hub's
//! domain, as `ajc server run` is with a context's `jetstream_domain`,
//! its tasks and its own buckets are in the hub.

mod support;

use asyncjobs::connect::JetStreamApi;
use asyncjobs::{Client, Queue};
use asyncjobs_http::{router, ApiOptions};
use asyncjobs_tests::HubAndLeaf;
use serde_json::json;
use std::time::Duration;

async fn has_stream(nc: &async_nats::Client, stream: &str) -> bool {
    async_nats::jetstream::new(nc.clone())
        .get_stream(stream)
        .await
        .is_ok()
}

#[tokio::test]
async fn the_api_keeps_its_buckets_in_the_clients_jetstream_domain() {
    let servers = HubAndLeaf::start().await;
    let leaf = async_nats::connect(servers.leaf.url()).await.unwrap();
    let client = Client::builder()
        .nats_client(leaf.clone())
        .jetstream_api(JetStreamApi::domain("hub").unwrap())
        .queue(Queue::new("WEB"))
        .build()
        .await
        .unwrap();
    let app = router(client, ApiOptions::default());
    let base = support::listen(app).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = http
        .post(format!("{base}/v1/tasks"))
        .header("Idempotency-Key", "order-1")
        .json(&json!({"type": "email:new"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    let hub = async_nats::connect(servers.hub.url()).await.unwrap();
    for stream in [
        "CHORIA_AJ_TASKS",
        "CHORIA_AJ_Q_WEB",
        "KV_CHORIA_AJ_HTTP_IDEMPOTENCY",
    ] {
        assert!(has_stream(&hub, stream).await, "{stream} in the hub");
        assert!(!has_stream(&leaf, stream).await, "{stream} not in the leaf");
    }
}
