//! Statistics kept by the cluster (`asyncjobs_http::stats`), through a
//! real HTTP client against a real nats-server and a real worker: two
//! replicas count the same tasks and answer the same records, a replica
//! started afterwards (a restart) reads them all, and a Go worker's
//! events count too.

mod support;

use asyncjobs::{Client, HandlerError, Queue, Router, Task, TaskContext};
use asyncjobs_http::{router, ApiOptions};
use asyncjobs_tests::{spawn_worker, wait_for, NatsServer};
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

fn options() -> ApiOptions {
    ApiOptions {
        stats_interval: Duration::from_secs(2),
        ..ApiOptions::default()
    }
}

async fn serve(client: Client) -> String {
    let app = router(client, options());
    support::listen(app).await
}

async fn client_for(server: &NatsServer) -> Client {
    Client::builder()
        .url(server.url())
        .queue(Queue::new("STATS"))
        .build()
        .await
        .unwrap()
}

async fn records(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let r = http
        .get(format!("{base}/v1/stats?queue=STATS"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["records"].as_array().unwrap().clone()
}

/// Completed and failed tasks of `task_type` over `records`.
fn sums(records: &[Value], task_type: &str) -> (u64, u64) {
    records.iter().fold((0, 0), |(c, f), r| {
        let t = &r["types"][task_type];
        (
            c + t["completed"].as_u64().unwrap_or(0),
            f + t["failed"].as_u64().unwrap_or(0),
        )
    })
}

/// A task state event as a Go worker publishes it.
async fn go_event(client: &Client, id: &str, state: &str) {
    let event = json!({
        "event_id": "2JkGoEvent000000000000000000",
        "type": "io.choria.asyncjobs.v1.task_state",
        "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "task_id": id,
        "state": state,
        "tries": 1,
        "queue": "STATS",
        "task_type": "go:work",
    });
    client
        .nats()
        .publish(
            format!("CHORIA_AJ.E.task_state.{id}"),
            serde_json::to_vec(&event).unwrap().into(),
        )
        .await
        .unwrap();
    client.nats().flush().await.unwrap();
}

#[tokio::test]
async fn replicas_count_the_same_tasks_and_a_restart_keeps_them() {
    let nats = NatsServer::start();
    let client = client_for(&nats).await;
    let a = serve(client_for(&nats).await).await;
    let b = serve(client_for(&nats).await).await;
    let http = reqwest::Client::builder().timeout(T).build().unwrap();
    // both replicas count from the interval after they started: wait for
    // the first record (an empty interval) before any task
    wait_for(T, "a first statistics record", || async {
        (!records(&http, &a).await.is_empty()).then_some(())
    })
    .await;

    let router = Router::new()
        .handle("ok", |_ctx: TaskContext, _t: Task| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            asyncjobs::handler::to_output(&"done")
        })
        .unwrap()
        .handle("bad", |_ctx: TaskContext, _t: Task| async {
            Err::<Box<serde_json::value::RawValue>, _>(HandlerError::terminate("no"))
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router));
    for i in 0..5 {
        client
            .enqueue(&mut Task::new("ok", &i).unwrap())
            .await
            .unwrap();
    }
    for i in 0..2 {
        client
            .enqueue(&mut Task::new("bad", &i).unwrap())
            .await
            .unwrap();
    }
    go_event(&client, "go-task-1", "active").await;
    go_event(&client, "go-task-1", "complete").await;

    let seen = wait_for(T, "every task in the statistics", || async {
        let r = records(&http, &a).await;
        (sums(&r, "ok") == (5, 0) && sums(&r, "bad") == (0, 2) && sums(&r, "go:work") == (1, 0))
            .then_some(r)
    })
    .await;
    // run times: the successful tries took at least their 30 ms
    let p50: u64 = seen
        .iter()
        .filter_map(|r| r["types"]["ok"]["p50_ms"].as_u64())
        .max()
        .unwrap();
    assert!(p50 >= 30, "{seen:?}");
    assert!(seen.iter().all(|r| r["depth"].is_u64()), "{seen:?}");
    // the other replica answers the same records, and so does one
    // started now
    assert_eq!(records(&http, &b).await[..seen.len()], seen[..]);
    let c = serve(client_for(&nats).await).await;
    assert_eq!(records(&http, &c).await[..seen.len()], seen[..]);
    worker.stop().await;
}

#[tokio::test]
async fn bad_questions_are_refused() {
    let nats = NatsServer::start();
    let base = serve(client_for(&nats).await).await;
    let http = reqwest::Client::new();
    for (q, field) in [
        ("", "queue"),
        ("queue=STATS&hours=0", "hours"),
        ("queue=STATS&hours=49", "hours"),
    ] {
        let r = http
            .get(format!("{base}/v1/stats?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["details"]["field"], field, "{q}");
    }
    // nothing written yet: no records, not an error
    assert!(records(&http, &base).await.is_empty());
}

/// The overview's counts by state (`stats::counts`): a store of more than
/// 10,000 tasks is counted in the background and shown with the count's
/// age, the same on every replica; a small one is counted live.
#[tokio::test]
async fn a_large_store_is_counted_in_the_background_once_for_every_replica() {
    let nats = NatsServer::start();
    let client = client_for(&nats).await;
    let a = serve(client_for(&nats).await).await;
    let b = serve(client_for(&nats).await).await;
    let http = reqwest::Client::builder().timeout(T).build().unwrap();
    let note = |html: &str| -> String {
        let at = html.find("data-counts").expect("the counts' note");
        let rest = &html[at..];
        rest[rest.find('>').unwrap() + 1..rest.find("</p>").unwrap()].to_string()
    };
    let overview = |base: &str| {
        let (http, base) = (http.clone(), base.to_string());
        async move {
            let r = http.get(format!("{base}/ui/")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let mut few: Vec<Task> = (0..3).map(|i| Task::new("few", &i).unwrap()).collect();
    assert!(client
        .enqueue_many(&mut few)
        .await
        .iter()
        .all(Result::is_ok));
    assert_eq!(note(&overview(&a).await), "All 3 stored tasks.");

    let mut many: Vec<Task> = (0..10_050)
        .map(|i| Task::new("many", &i).unwrap())
        .collect();
    assert!(client
        .enqueue_many(&mut many)
        .await
        .iter()
        .all(Result::is_ok));
    let first = note(&overview(&a).await);
    assert!(
        first.contains("being counted in the background")
            || first.starts_with("10053 stored tasks, counted"),
        "{first}"
    );
    let counted = wait_for(T, "the background count", || async {
        let html = overview(&a).await;
        html.contains("data-counted-ago").then(|| note(&html))
    })
    .await;
    assert!(
        counted.starts_with("10053 stored tasks, counted "),
        "{counted}"
    );
    assert!(overview(&a).await.contains(r#"<strong>10053</strong>"#));
    // the other replica shows the cluster's count
    let other = note(&overview(&b).await);
    assert!(other.starts_with("10053 stored tasks, counted "), "{other}");
}

/// A cluster that keeps no task history: the task page says how to keep
/// one; with `keep_history` the stream is made and the page lists the
/// task's changes.
#[tokio::test]
async fn a_task_page_shows_the_history_the_cluster_keeps() {
    let nats = NatsServer::start();
    let client = client_for(&nats).await;
    let plain = serve(client_for(&nats).await).await;
    let http = reqwest::Client::builder().timeout(T).build().unwrap();
    let mut t = Task::new("kept", &()).unwrap();
    client.enqueue(&mut t).await.unwrap();
    let page = |base: String, id: String| {
        let http = http.clone();
        async move {
            http.get(format!("{base}/ui/tasks/{id}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let html = page(plain.clone(), t.id.clone()).await;
    assert!(html.contains("This server keeps no task history"), "{html}");

    let app = router(
        client_for(&nats).await,
        ApiOptions {
            keep_history: Some(Duration::from_secs(3600)),
            ..options()
        },
    );
    let kept = support::listen(app).await;
    wait_for(T, "the history stream", || async {
        client
            .jetstream()
            .get_stream("CHORIA_AJ_HISTORY")
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let mut later = Task::new("kept", &()).unwrap();
    client.enqueue(&mut later).await.unwrap();
    let html = wait_for(T, "the new task's change", || async {
        let html = page(kept.clone(), later.id.clone()).await;
        html.contains(r#"data-change="new""#).then_some(html)
    })
    .await;
    assert!(!html.contains("keeps no task history"));
    // the task enqueued before the stream has no stored change
    assert!(page(kept.clone(), t.id.clone())
        .await
        .contains("No stored state change"));
}
