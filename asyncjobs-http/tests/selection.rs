//! Bulk actions on a selection through the HTTP API: `POST
//! /v1/tasks/cancel` and `/delete` with `ids` instead of a filter, against
//! a real nats-server with a real HTTP client.

mod support;

use asyncjobs::{Client, Queue, Task, TaskState};
use asyncjobs_http::{router, ApiOptions};
use asyncjobs_tests::NatsServer;
use serde_json::{json, Value};

async fn serve(client: Client) -> String {
    let app = router(client, ApiOptions::default());
    support::listen(app).await
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = http.post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// `(id, status)` of each result.
fn statuses(answer: &Value) -> Vec<(String, String)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn selected_tasks_are_cancelled_and_deleted_by_id() {
    let nats = NatsServer::start();
    let client = Client::builder()
        .url(nats.url())
        .queue(Queue::new("PICK"))
        .build()
        .await
        .unwrap();
    let base = serve(client.clone()).await;
    let http = reqwest::Client::new();
    let mut tasks: Vec<Task> = (0..3).map(|i| Task::new("pick", &i).unwrap()).collect();
    assert!(client
        .enqueue_many(&mut tasks)
        .await
        .iter()
        .all(Result::is_ok));
    let [a, b, c] = [&tasks[0].id, &tasks[1].id, &tasks[2].id];

    // a and b (twice: once counts), and one that does not exist
    let (status, answer) = post(
        &http,
        format!("{base}/v1/tasks/cancel"),
        json!({"ids": [a, b, a, "3NAnotThere00000000000000000"]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matched"], 2);
    assert_eq!(
        statuses(&answer),
        [
            (a.clone(), "ok".to_string()),
            (b.clone(), "ok".into()),
            ("3NAnotThere00000000000000000".into(), "not_found".into()),
        ]
    );
    for id in [a, b] {
        let t = client.load_task(id).await.unwrap();
        assert_eq!(t.state, TaskState::Terminated);
        assert!(t.last_err.ends_with("by the HTTP API"), "{}", t.last_err);
    }
    assert_eq!(client.load_task(c).await.unwrap().state, TaskState::New);
    // a cancel of a finished task leaves it
    let (_, again) = post(
        &http,
        format!("{base}/v1/tasks/cancel"),
        json!({"ids": [a]}),
    )
    .await;
    assert_eq!(statuses(&again), [(a.clone(), "not_found".to_string())]);

    let (status, answer) = post(
        &http,
        format!("{base}/v1/tasks/delete"),
        json!({"ids": [a, c]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        [(a.clone(), "ok".to_string()), (c.clone(), "ok".into())]
    );
    assert!(matches!(
        client.load_task(c).await,
        Err(asyncjobs::Error::TaskNotFound(_))
    ));
    assert_eq!(
        client.load_task(b).await.unwrap().state,
        TaskState::Terminated
    );

    // ids or a filter, one of them, and at most 100 ids
    let many: Vec<String> = (0..101).map(|i| format!("id{i}")).collect();
    for (body, reason) in [
        (json!({}), "filter_required"),
        (
            json!({"ids": [a], "filter": {"state": "new"}}),
            "ids_and_filter",
        ),
        (json!({"ids": many}), "ids_too_many"),
    ] {
        let (status, answer) = post(&http, format!("{base}/v1/tasks/delete"), body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["details"]["reason"], reason, "{body}");
    }
}
