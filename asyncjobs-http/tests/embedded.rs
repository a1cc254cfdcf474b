//! The router mounted inside a user's own axum application, against a real
//! nats-server, driven by a real HTTP client: routes beside the user's,
//! the bound queue, filters and limits, the body limit, one listing at a
//! time, readiness when storage disappears, bulk retry bounds, requests
//! the store leaves unanswered, the buckets it creates replicated as asked,
//! schedules paused, resumed and run now.

mod support;

use asyncjobs::{Client, Queue, Task};
use asyncjobs_http::{router, ApiOptions};
use asyncjobs_tests::{wait_for, NatsServer, Proxy};
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The API merged into an application with a route of its own, served on
/// a free loopback port; returns the base URL.
async fn serve(client: Client, options: ApiOptions) -> String {
    let app = axum::Router::new()
        .route("/own", axum::routing::get(|| async { "mine" }))
        .merge(router(client, options));
    support::listen(app).await
}

async fn client_for(server: &NatsServer, queue: Queue) -> Client {
    Client::builder()
        .url(server.url())
        .queue(queue)
        .build()
        .await
        .unwrap()
}

/// Whether every result of a bulk answer has `status`.
fn every_result_is(answer: &Value, status: &str) -> bool {
    answer["results"]
        .as_array()
        .is_some_and(|r| r.iter().all(|r| r["status"] == status))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(T).build().unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn mounted_beside_own_routes_with_the_bound_queue() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("MAIL")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    assert_eq!(
        http.get(format!("{base}/own"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "mine"
    );

    // tasks go to the server's queue; naming another one is refused
    let r = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"type": "email:new", "queue": "MAIL"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let task: Value = r.json().await.unwrap();
    assert_eq!(task["queue"], "MAIL");
    let r = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"type": "email:new", "queue": "OTHER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["error"]["details"],
        json!({"field": "queue", "reason": "queue_mismatch"})
    );
    let r = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"type": "email:new", "signature": "abcd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["details"]["reason"], "signature_unsupported");

    // DEFAULT may not be created without the option
    let r = http
        .post(format!("{base}/v1/queues"))
        .json(&json!({"name": "DEFAULT"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["details"]["reason"], "default_queue_disallowed");

    // a queue's own retention of finished tasks (docs/processing.md §2.19)
    let r = http
        .post(format!("{base}/v1/queues"))
        .json(&json!({"name": "KEPT", "retention": "complete=1h,failed=720h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let q: Value = r.json().await.unwrap();
    assert_eq!(
        q["retention"],
        "complete=1h0m0s,expired=720h0m0s,terminated=720h0m0s,unreachable=720h0m0s,queue_error=720h0m0s"
    );
    for bad in ["complete=0s", "active=1h", "complete=1d"] {
        let r = http
            .post(format!("{base}/v1/queues"))
            .json(&json!({"name": "NOTKEPT", "retention": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            e["error"]["details"]["reason"], "invalid_retention",
            "{bad}"
        );
    }
    assert!(matches!(
        client.queue_info("NOTKEPT").await,
        Err(asyncjobs::Error::QueueNotFound(_))
    ));
    let plain: Value = http
        .get(format!("{base}/v1/queues/MAIL"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(plain.get("retention").is_none(), "{plain}");

    // a payload is stored as Go re-encodes it: sorted keys, float64 numbers
    let r = http
        .post(format!("{base}/v1/tasks"))
        .body(r#"{"type":"x","payload":{"b":1.0,"a":[1e21,0.0000001,12345678901234567891]}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let stored = client
        .load_task(created["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(stored.payload.unwrap()).unwrap(),
        r#"{"a":[1e+21,1e-07,12345678901234567000],"b":1}"#
    );
}

#[tokio::test]
async fn filters_limits_and_one_listing_at_a_time() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("LIST")).await;
    let base = serve(
        client.clone(),
        ApiOptions {
            max_body: 1024,
            ..ApiOptions::default()
        },
    )
    .await;
    let http = http();
    // 3,000 tasks: two types; the first 10 of type b are retried
    let mut tasks: Vec<Task> = (0..3000)
        .map(|i| Task::new(if i % 3 == 0 { "b" } else { "a" }, &i).unwrap())
        .collect();
    for r in client.enqueue_many(&mut tasks).await {
        r.unwrap();
    }
    let bs: Vec<String> = tasks
        .iter()
        .filter(|t| t.task_type == "b")
        .map(|t| t.id.clone())
        .collect();
    let r = http
        .post(format!("{base}/v1/tasks/retry"))
        .json(&json!({"ids": &bs[..10]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let results: Value = r.json().await.unwrap();
    assert!(every_result_is(&results, "ok"));

    // the limit is applied after the filters (Go: before)
    let (status, list) = get_json(
        &http,
        &format!("{base}/v1/tasks?type=b&state=retry&limit=5"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 5);
    assert!(list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["type"] == "b" && t["state"] == "retry"));
    let (_, list) = get_json(
        &http,
        &format!("{base}/v1/tasks?state=retry&state=new&type=b&limit=1000"),
    )
    .await;
    assert_eq!(list["count"], 1000);
    // above 1000 is clamped; the default is 200
    let (_, list) = get_json(&http, &format!("{base}/v1/tasks?limit=5000")).await;
    assert_eq!(list["count"], 1000);
    let (_, list) = get_json(&http, &format!("{base}/v1/tasks")).await;
    assert_eq!(list["count"], 200);
    let (_, list) = get_json(&http, &format!("{base}/v1/tasks?created_since=2999-01-01")).await;
    assert_eq!(list["count"], 0);
    let (status, e) = get_json(&http, &format!("{base}/v1/tasks?state=bogus")).await;
    assert_eq!(status, 400);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown task state"));

    // a streamed listing that is not read holds the one listing slot
    let held = http
        .get(format!("{base}/v1/tasks?stream=ndjson&limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    assert_eq!(held.headers()["content-type"], "application/x-ndjson");
    let busy = http.get(format!("{base}/v1/tasks")).send().await.unwrap();
    if busy.status() == 429 {
        let e: Value = busy.json().await.unwrap();
        assert_eq!(e["error"]["details"]["reason"], "list_in_progress");
    } else {
        // the first listing fitted into socket buffers and ended already
        assert_eq!(busy.status(), 200);
    }
    let lines = held.text().await.unwrap();
    assert_eq!(lines.lines().count(), 1000);
    // once it is done, listing works again
    let (status, _) = get_json(&http, &format!("{base}/v1/tasks?limit=1")).await;
    assert_eq!(status, 200);

    // bulk retry bounds
    let r = http
        .post(format!("{base}/v1/tasks/retry"))
        .json(&json!({"ids": vec!["x"; 101]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["error"]["details"],
        json!({"field": "ids", "reason": "ids_too_many"})
    );

    // a body over max_body is 413 (Go: 400)
    let r = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"type": "x", "payload": "y".repeat(2000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn readiness_follows_storage() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("READY")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let (status, body) = get_json(&http, &format!("{base}/readyz")).await;
    assert_eq!((status, body["ready"].clone()), (200, json!(true)));
    // the task store removed by hand
    let js = async_nats::jetstream::new(client.nats().clone());
    js.delete_stream("CHORIA_AJ_TASKS").await.unwrap();
    let (status, body) = get_json(&http, &format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({"checks": {"config": {"ok": true}, "tasks": {"error": "tasks storage unreachable", "ok": false}}, "ready": false})
    );
    // and a task cannot be read: the envelope says storage
    let (status, body) = get_json(
        &http,
        &format!("{base}/v1/tasks/2ZZZZZZZZZZZZZZZZZZZZZZZZZZ"),
    )
    .await;
    assert!(status == 503 || status == 404, "{status} {body}");
}

/// Beyond Go: `run_at` delays a task created over HTTP; a bulk retry by
/// filter replays dead letters (dry run first).
#[tokio::test]
async fn delayed_create_and_replay_by_filter() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("LATE")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let due = time::OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let due_text = asyncjobs::wire::format_time(&due);
    let r = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"type": "later", "run_at": due_text}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["run_at"], due_text.as_str());
    let r = http
        .post(format!("{base}/v1/tasks"))
        .json(&json!({"type": "later", "run_at": due_text, "deadline": asyncjobs::wire::format_time(&(due - Duration::from_secs(60)))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["details"]["reason"], "deadline_before_due");

    // dead letters: `later` tasks ended by hand
    let mut ids = vec![];
    for _ in 0..2 {
        let mut t = Task::new("dead", &()).unwrap();
        client.enqueue(&mut t).await.unwrap();
        t.state = asyncjobs::TaskState::Terminated;
        let js = async_nats::jetstream::new(client.nats().clone());
        js.publish(format!("CHORIA_AJ.T.{}", t.id), t.to_json().unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
        ids.push(t.id);
    }
    // a task of the type that has not ended is never replayed
    let mut waiting = Task::new("dead", &()).unwrap();
    client.enqueue(&mut waiting).await.unwrap();
    let r = http
        .post(format!("{base}/v1/tasks/retry"))
        .json(&json!({"filter": {"type": "dead", "dry_run": true}}))
        .send()
        .await
        .unwrap();
    let dry: Value = r.json().await.unwrap();
    assert_eq!(dry["matched"], 2, "only the dead letters: {dry}");
    let r = http
        .post(format!("{base}/v1/tasks/retry"))
        .json(&json!({"filter": {"state": "terminated", "type": "dead", "dry_run": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dry: Value = r.json().await.unwrap();
    assert_eq!(dry["matched"], 2, "{dry}");
    assert!(every_result_is(&dry, "matched"));
    assert_eq!(
        client.load_task(&ids[0]).await.unwrap().state,
        asyncjobs::TaskState::Terminated
    );
    let r = http
        .post(format!("{base}/v1/tasks/retry"))
        .json(&json!({"filter": {"state": "terminated", "type": "dead"}}))
        .send()
        .await
        .unwrap();
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["results"].as_array().unwrap().len(), 2, "{done}");
    for id in &ids {
        assert_eq!(
            client.load_task(id).await.unwrap().state,
            asyncjobs::TaskState::Retry
        );
    }
}

/// A request the store leaves unanswered past the write timeout gets 503:
/// the API's envelope (reason `timeout`) for API routes, a page for the
/// dashboard's; both answer again once the store does.
#[tokio::test]
async fn unanswered_requests_time_out_as_the_envelope_or_a_page() {
    let nats = NatsServer::start();
    let proxy = Proxy::start(&nats).await;
    let client = Client::builder()
        .url(proxy.url())
        .queue(Queue::new("SLOW"))
        .build()
        .await
        .unwrap();
    let options = ApiOptions {
        write_timeout: Duration::from_secs(1),
        ..ApiOptions::default()
    };
    let base = serve(client, options).await;
    let http = http();
    assert_eq!(get_json(&http, &format!("{base}/v1/queues")).await.0, 200);

    proxy.freeze();
    let (status, e) = get_json(&http, &format!("{base}/v1/queues")).await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["error"]["details"]["reason"], "timeout", "{e}");
    let r = http.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/html"), "{kind}");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("the request was not answered within 1s"),
        "{page}"
    );

    proxy.thaw();
    wait_for(T, "the API answers again", || async {
        (get_json(&http, &format!("{base}/v1/queues")).await.0 == 200).then_some(())
    })
    .await;
    let r = http.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_queue_is_paused_and_resumed_over_http() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("MAIL")).await;
    client.prepare_queue(&Queue::new("MAIL")).await.unwrap();
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let post = |path: &str, body: Option<Value>| {
        let r = http.post(format!("{base}{path}"));
        let r = match body {
            Some(b) => r.json(&b),
            None => r,
        };
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    // not paused: Go's fields only
    let (status, q) = get_json(&http, &format!("{base}/v1/queues/MAIL")).await;
    assert_eq!(status, 200);
    assert!(q.get("paused").is_none(), "{q}");

    // an empty body pauses until resumed
    let (status, q) = post("/v1/queues/MAIL/pause", None).await;
    assert_eq!(status, 200, "{q}");
    assert!(q["paused"]["since"].is_string(), "{q}");
    assert!(q["paused"].get("until").is_none(), "{q}");
    assert!(client.queue_info("MAIL").await.unwrap().paused.is_some());

    let (status, q) = post("/v1/queues/MAIL/pause", Some(json!({"for": "30m"}))).await;
    assert_eq!(status, 200, "{q}");
    let until = asyncjobs::wire::parse_time(q["paused"]["until"].as_str().unwrap()).unwrap();
    let left = until - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(25), "{q}");
    let (status, q) = post(
        "/v1/queues/MAIL/pause",
        Some(json!({"until": "2030-01-02T03:04:05Z"})),
    )
    .await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["paused"]["until"], "2030-01-02T03:04:05Z");

    // refusals: one envelope each, nothing changed
    for (body, field, reason) in [
        (
            json!({"for": "1h", "until": "2030-01-02T03:04:05Z"}),
            "for",
            "invalid_pause",
        ),
        (json!({"for": "0s"}), "for", "invalid_pause"),
        (json!({"for": "soon"}), "for", "invalid_duration"),
        (json!({"until": "tomorrow"}), "until", "invalid_pause"),
    ] {
        let (status, e) = post("/v1/queues/MAIL/pause", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{body}: {e}");
        assert_eq!(e["error"]["details"]["reason"], reason, "{body}: {e}");
    }
    let (status, e) = post(
        "/v1/queues/MAIL/pause",
        Some(json!({"until": "2001-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has passed"),
        "{e}"
    );
    let (status, e) = post("/v1/queues/MAIL/pause", Some(json!({"forever": true}))).await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = post("/v1/queues/NOPE/pause", None).await;
    assert_eq!(
        (status, e["error"]["details"]["reason"].clone()),
        (404, json!("queue_not_found")),
        "{e}"
    );
    let (status, q) = get_json(&http, &format!("{base}/v1/queues/MAIL")).await;
    assert_eq!(status, 200);
    assert_eq!(q["paused"]["until"], "2030-01-02T03:04:05Z", "{q}");

    let (status, q) = post("/v1/queues/MAIL/resume", None).await;
    assert_eq!(status, 200, "{q}");
    assert!(q.get("paused").is_none(), "{q}");
    assert!(client.queue_info("MAIL").await.unwrap().paused.is_none());
    let (status, _) = post("/v1/queues/NOPE/resume", None).await;
    assert_eq!(status, 404);
}

/// `POST /v1/tasks/{id}/cancel` (issue 31): a waiting task is saved
/// `terminated` naming the HTTP API; a running one's handler sees its
/// token fire; a finished one is refused 409 `already_finished` and left
/// as it is; an unknown id 404, an invalid one 400.
#[tokio::test]
async fn a_task_is_cancelled_over_http() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("CANCEL")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let cancel = |id: &str| {
        let r = http.post(format!("{base}/v1/tasks/{id}/cancel"));
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let mut waiting = Task::new("mail:send", &1).unwrap();
    client.enqueue(&mut waiting).await.unwrap();
    let (status, t) = cancel(&waiting.id).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["state"], "terminated", "{t}");
    assert_eq!(t["last_err"], "cancelled by the HTTP API", "{t}");
    let (status, e) = cancel(&waiting.id).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["details"]["reason"], "already_finished", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("had already finished (terminated): nothing was changed"),
        "{e}"
    );
    let (status, e) = cancel("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c").await;
    assert_eq!(
        (status, e["error"]["details"]["reason"].clone()),
        (404, json!("task_not_found")),
        "{e}"
    );
    let (status, e) = cancel("bad%20id").await;
    assert_eq!(
        (status, e["error"]["details"]["reason"].clone()),
        (400, json!("task_id_invalid")),
        "{e}"
    );

    // a running task: its handler's token fires
    let saw = Arc::new(AtomicBool::new(false));
    let seen = saw.clone();
    let router = asyncjobs::Router::new()
        .handle("mail:send", move |ctx: asyncjobs::TaskContext, _t: Task| {
            let seen = seen.clone();
            async move {
                ctx.progress(30, "halfway").unwrap();
                ctx.cancelled().await;
                seen.store(true, Ordering::SeqCst);
                asyncjobs::handler::to_output(&"stopped")
            }
        })
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(client.worker(router).run(stop.clone()));
    let mut running = Task::new("mail:send", &2).unwrap();
    client.enqueue(&mut running).await.unwrap();
    wait_for(T, "the task to run", || async {
        let t = client.load_task(&running.id).await.ok()?;
        (t.state == asyncjobs::TaskState::Active).then_some(())
    })
    .await;
    // its progress is shown (issue 31)
    let url = format!("{base}/v1/tasks/{}", running.id);
    let shown = wait_for(T, "the task's progress", || async {
        let (_, t) = get_json(&http, &url).await;
        t.get("progress").is_some().then_some(t)
    })
    .await;
    assert_eq!(shown["progress"]["percent"], 30, "{shown}");
    assert_eq!(shown["progress"]["message"], "halfway", "{shown}");
    assert!(shown["progress"]["at"].is_string(), "{shown}");
    let (status, t) = cancel(&running.id).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["state"], "terminated", "{t}");
    wait_for(T, "the handler to see its token fire", || async {
        saw.load(Ordering::SeqCst).then_some(())
    })
    .await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    let t = client.load_task(&running.id).await.unwrap();
    assert_eq!(t.last_err, "cancelled by the HTTP API");
    assert!(t.result.is_none());
}

/// `POST /v1/tasks` with `unique` (issue 31): a duplicate is refused 409
/// `unique_task_exists` naming the existing task; a bad key or period 400.
#[tokio::test]
async fn a_unique_task_is_created_once_over_http() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("UNIQ")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let create = |body: Value| {
        let r = http.post(format!("{base}/v1/tasks")).json(&body);
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let body =
        json!({"type": "invoice:send", "payload": {"n": 42}, "unique": {"key": "invoice-42"}});
    let (status, first) = create(body.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, e) = create(body).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["details"]["reason"], "unique_task_exists", "{e}");
    let id = first["id"].as_str().unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains(id), "{e}");
    // by type and payload, for a period
    let body = json!({"type": "report:daily", "payload": 1, "unique": {"for": "1h"}});
    assert_eq!(create(body.clone()).await.0, 201);
    assert_eq!(create(body).await.0, 409);
    for (bad, reason) in [
        (json!({"key": "a b"}), "invalid_configuration"),
        (json!({"for": "soon"}), "invalid_duration"),
        (json!({"nope": 1}), "invalid_json"),
    ] {
        let (status, e) = create(json!({"type": "x", "payload": 1, "unique": bad})).await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["error"]["details"]["reason"], reason, "{bad}: {e}");
    }
}

/// `POST /v1/tasks` with `priority` (0–9): the record and the Task carry
/// it (left out at 0, the default), the dashboard shows it; anything else
/// is 400 `priority_invalid` (field `priority`) and creates nothing.
#[tokio::test]
async fn a_task_has_a_priority_over_http() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("PRIO")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let create = |body: Value| {
        let r = http.post(format!("{base}/v1/tasks")).json(&body);
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, urgent) = create(json!({"type": "urgent", "payload": 1, "priority": 9})).await;
    assert_eq!(status, 201, "{urgent}");
    assert_eq!(urgent["priority"], 9, "{urgent}");
    let id = urgent["id"].as_str().unwrap();
    assert_eq!(client.load_task(id).await.unwrap().priority, 9);
    let (status, got) = get_json(&http, &format!("{base}/v1/tasks/{id}")).await;
    assert_eq!((status, &got["priority"]), (200, &json!(9)), "{got}");
    // the default: 0 given or none, and no key in the Task
    for body in [
        json!({"type": "plain", "payload": 1}),
        json!({"type": "plain", "payload": 1, "priority": 0}),
        json!({"type": "plain", "payload": 1, "priority": null}),
    ] {
        let (status, t) = create(body.clone()).await;
        assert_eq!(status, 201, "{body}: {t}");
        assert!(t.get("priority").is_none(), "{body}: {t}");
        let stored = client.load_task(t["id"].as_str().unwrap()).await.unwrap();
        assert_eq!(stored.priority, 0, "{body}");
    }
    let plain = create(json!({"type": "plain", "payload": 2})).await.1;
    let plain = plain["id"].as_str().unwrap();
    // out of range or not a whole number
    for (bad, says) in [
        (
            json!(10),
            "task priority must be 0 (the default) to 9 (runs first) (got 10)",
        ),
        (json!(-1), "(got -1)"),
        (json!(u64::MAX), "to 9 (runs first)"),
        (
            json!("x"),
            "whole number from 0 (the default) to 9 (runs first) (got \"x\")",
        ),
        (json!("9"), "whole number"),
        (json!(2.5), "whole number"),
        (json!(true), "whole number"),
    ] {
        let (status, e) = create(json!({"type": "urgent", "payload": 1, "priority": bad})).await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["error"]["code"], "invalid_argument", "{bad}: {e}");
        assert_eq!(e["error"]["details"]["field"], "priority", "{bad}: {e}");
        assert_eq!(
            e["error"]["details"]["reason"], "priority_invalid",
            "{bad}: {e}"
        );
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{bad}: {e}");
    }
    let (_, listed) = get_json(&http, &format!("{base}/v1/tasks")).await;
    assert_eq!(listed["count"], 5, "{listed}");
    // the dashboard: the task page's row, the list's column
    let page = |path: String| {
        let r = http.get(format!("{base}{path}"));
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.text().await.unwrap()
        }
    };
    let html = page(format!("/ui/tasks/{id}")).await;
    assert!(html.contains("<dd data-priority>9</dd>"), "{html}");
    let html = page(format!("/ui/tasks/{plain}")).await;
    assert!(
        html.contains("<dd data-priority>0 (the default)</dd>"),
        "{html}"
    );
    let html = page("/ui/tasks".into()).await;
    assert!(html.contains(">Priority</th>"), "{html}");
    let row = |id: &str| {
        let at = html.find(&format!("<tr data-id=\"{id}\">")).unwrap();
        html[at..at + html[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(
        row(id).contains("<td class=\"n\" data-priority>9</td>"),
        "{}",
        row(id)
    );
    assert!(
        row(plain).contains("<td class=\"n\" data-priority></td>"),
        "{}",
        row(plain)
    );
}

/// The `csrf` token of the dashboard's forms, read from the overview.
async fn form_token(http: &reqwest::Client, base: &str) -> String {
    let html = http
        .get(format!("{base}/ui/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// The text of the overview's Flow cell in the row of queue `name`.
fn flow_cell(html: &str, name: &str) -> String {
    let row = html
        .find(&format!("<a href=\"/ui/tasks?queue={name}\">{name}</a>"))
        .unwrap_or_else(|| panic!("no row for {name}: {html}"));
    let html = &html[row..];
    let at = html.find("<td data-flow>").unwrap() + "<td data-flow>".len();
    html[at..at + html[at..].find("</td>").unwrap()].to_string()
}

/// `POST /v1/queues` with the flow settings (docs/processing.md §2.21 to
/// §2.23): the queue is created with them and QueueInfo shows each (left
/// out when unset); a bad one is 400 naming its field and creates
/// nothing. The dashboard shows them in the queue's Flow column, and its
/// Configure form changes (blank: unchanged) and removes (`none`, aging
/// `strict`) them.
#[tokio::test]
async fn a_queue_has_flow_settings_over_http() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("MAIL")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let create = |body: Value| {
        let r = http.post(format!("{base}/v1/queues")).json(&body);
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, q) = create(json!({
        "name": "FLOW",
        "rate_limit": "10/s",
        "priority_aging": "30s",
        "key_concurrency": 5,
        "key_rate_limit": "2/s,burst=4",
    }))
    .await;
    assert_eq!(status, 201, "{q}");
    assert_eq!(q["rate_limit"], "10/s", "{q}");
    assert_eq!(q["priority_aging"], 30_000_000_000i64, "{q}");
    assert_eq!(q["key_concurrency"], 5, "{q}");
    assert_eq!(q["key_rate_limit"], "2/s,burst=4", "{q}");
    let stored = client.queue_info("FLOW").await.unwrap().queue;
    assert_eq!(stored.rate_limit, Some("10/s".parse().unwrap()));
    assert_eq!(stored.priority_aging, Some(Duration::from_secs(30)));
    assert_eq!(stored.key_concurrency, Some(5));
    assert_eq!(stored.key_rate_limit, Some("2/s,burst=4".parse().unwrap()));
    let (status, got) = get_json(&http, &format!("{base}/v1/queues/FLOW")).await;
    assert_eq!(status, 200, "{got}");
    for k in [
        "rate_limit",
        "priority_aging",
        "key_concurrency",
        "key_rate_limit",
    ] {
        assert_eq!(got[k], q[k], "{k}: {got}");
    }
    // unset, strict, empty or null: no setting, no key
    let (status, plain) = create(json!({
        "name": "PLAIN",
        "rate_limit": "",
        "priority_aging": "strict",
        "key_concurrency": null,
    }))
    .await;
    assert_eq!(status, 201, "{plain}");
    for k in [
        "rate_limit",
        "priority_aging",
        "key_concurrency",
        "key_rate_limit",
    ] {
        assert!(plain.get(k).is_none(), "{k}: {plain}");
    }
    // refused, naming the field, before anything is created
    for (field, bad, reason, says) in [
        (
            "rate_limit",
            json!("0/s"),
            "invalid_rate_limit",
            "rate_limit: invalid rate limit: starts per period must be 1 to 1000000 (got 0)",
        ),
        (
            "rate_limit",
            json!("fast"),
            "invalid_rate_limit",
            "expected STARTS/PERIOD",
        ),
        (
            "key_rate_limit",
            json!("1/48h"),
            "invalid_rate_limit",
            "key_rate_limit: invalid rate limit: the period must be 1ms to 24h",
        ),
        (
            "priority_aging",
            json!("10ms"),
            "invalid_priority_aging",
            "priority_aging: priority aging must be at least 1s (or strict)",
        ),
        (
            "priority_aging",
            json!("soon"),
            "invalid_priority_aging",
            "invalid priority aging",
        ),
        (
            "key_concurrency",
            json!(0),
            "invalid_key_concurrency",
            "key_concurrency: per-key concurrency must be 1 to 10000 (got 0)",
        ),
        (
            "key_concurrency",
            json!(10001),
            "invalid_key_concurrency",
            "(got 10001)",
        ),
        (
            "key_concurrency",
            json!(-1),
            "invalid_key_concurrency",
            "(got -1)",
        ),
        (
            "key_concurrency",
            json!(u64::MAX),
            "invalid_key_concurrency",
            "must be 1 to 10000",
        ),
        (
            "key_concurrency",
            json!("5"),
            "invalid_key_concurrency",
            "whole number from 1 to 10000 (got \"5\")",
        ),
        (
            "key_concurrency",
            json!(2.5),
            "invalid_key_concurrency",
            "whole number",
        ),
    ] {
        let mut body = json!({"name": "BAD"});
        body[field] = bad.clone();
        let (status, e) = create(body).await;
        assert_eq!(status, 400, "{field} {bad}: {e}");
        assert_eq!(e["error"]["code"], "invalid_argument", "{field} {bad}: {e}");
        assert_eq!(
            e["error"]["details"],
            json!({"field": field, "reason": reason}),
            "{field} {bad}: {e}"
        );
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{field} {bad}: {e}");
    }
    // a string setting given as another type: the decoder's 400
    let (status, e) = create(json!({"name": "BAD", "rate_limit": 10})).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["details"]["reason"], "invalid_json", "{e}");
    assert!(matches!(
        client.queue_info("BAD").await,
        Err(asyncjobs::Error::QueueNotFound(_))
    ));

    // the dashboard: the Flow column, empty for a queue without
    let overview = || async {
        let r = http.get(format!("{base}/ui/")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.unwrap()
    };
    let html = overview().await;
    assert!(html.contains(">Flow</th>"), "{html}");
    assert_eq!(
        flow_cell(&html, "FLOW"),
        "10/s · key 5 · key 2/s,burst=4 · aging 30s"
    );
    assert_eq!(flow_cell(&html, "PLAIN"), "");
    for field in [
        "rate_limit",
        "priority_aging",
        "key_concurrency",
        "key_rate_limit",
    ] {
        assert!(html.contains(&format!("name=\"{field}\"")), "{field}");
    }
    // its Configure form: blank leaves a setting, none (aging strict)
    // removes one
    let csrf = form_token(&http, &base).await;
    let configure = |fields: &[(&str, &str)]| {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &csrf)
            .extend_pairs(fields)
            .finish();
        let r = http
            .post(format!("{base}/ui/queues/FLOW/configure"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, page) = configure(&[
        ("rate_limit", "5/s"),
        ("priority_aging", "strict"),
        ("key_concurrency", "none"),
        ("key_rate_limit", ""),
        ("max_age", ""),
    ])
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Queue FLOW configured"), "{page}");
    let stored = client.queue_info("FLOW").await.unwrap().queue;
    assert_eq!(stored.rate_limit, Some("5/s".parse().unwrap()));
    assert_eq!(stored.priority_aging, None);
    assert_eq!(stored.key_concurrency, None);
    assert_eq!(stored.key_rate_limit, Some("2/s,burst=4".parse().unwrap()));
    assert_eq!(
        flow_cell(&overview().await, "FLOW"),
        "5/s · key 2/s,burst=4"
    );
    let (status, _) = configure(&[
        ("priority_aging", "1m"),
        ("key_concurrency", "3"),
        ("rate_limit", "none"),
        ("key_rate_limit", "NONE"),
    ])
    .await;
    assert_eq!(status, 200);
    assert_eq!(flow_cell(&overview().await, "FLOW"), "key 3 · aging 1m0s");
    // a bad value: 400 saying which, nothing changed
    for (field, bad, says) in [
        (
            "rate_limit",
            "0/s",
            "rate limit: invalid configuration: invalid rate limit",
        ),
        ("priority_aging", "10ms", "priority aging: "),
        ("key_concurrency", "0", "key concurrency: "),
        ("key_concurrency", "lots", "whole number from 1 to 10000"),
        ("key_rate_limit", "2/fortnight", "key rate limit: "),
    ] {
        let (status, page) = configure(&[(field, bad)]).await;
        assert_eq!(status, 400, "{field} {bad}: {page}");
        assert!(page.contains(says), "{field} {bad}: {page}");
    }
    let stored = client.queue_info("FLOW").await.unwrap().queue;
    assert_eq!(
        (
            stored.rate_limit,
            stored.priority_aging,
            stored.key_concurrency,
            stored.key_rate_limit
        ),
        (None, Some(Duration::from_secs(60)), Some(3), None)
    );
}

/// `POST /v1/tasks` with a flow-control `key`: the record and the Task
/// carry it (left out when none), the dashboard's task page and list show
/// it; an empty one, one over 128 bytes, one with a control character or
/// not a string is 400 `key_invalid` (field `key`) and creates nothing.
#[tokio::test]
async fn a_task_has_a_key_over_http() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("KEYED")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let create = |body: Value| {
        let r = http.post(format!("{base}/v1/tasks")).json(&body);
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, keyed) =
        create(json!({"type": "invoice", "payload": 1, "key": "customer-42"})).await;
    assert_eq!(status, 201, "{keyed}");
    assert_eq!(keyed["key"], "customer-42", "{keyed}");
    let id = keyed["id"].as_str().unwrap();
    assert_eq!(
        client.load_task(id).await.unwrap().key.as_deref(),
        Some("customer-42")
    );
    let (status, got) = get_json(&http, &format!("{base}/v1/tasks/{id}")).await;
    assert_eq!((status, &got["key"]), (200, &json!("customer-42")), "{got}");
    // none: absent or null, and no key in the Task
    let mut plain = String::new();
    for body in [
        json!({"type": "plain", "payload": 1}),
        json!({"type": "plain", "payload": 1, "key": null}),
    ] {
        let (status, t) = create(body.clone()).await;
        assert_eq!(status, 201, "{body}: {t}");
        assert!(t.get("key").is_none(), "{body}: {t}");
        plain = t["id"].as_str().unwrap().to_string();
        assert_eq!(client.load_task(&plain).await.unwrap().key, None);
    }
    let long = "k".repeat(129);
    for (bad, says) in [
        (
            json!(""),
            "invalid task key \"\": 1 to 128 bytes without control characters",
        ),
        (json!(long), "1 to 128 bytes without control characters"),
        (json!("a\tb"), "1 to 128 bytes without control characters"),
        (
            json!(5),
            "task key must be a string of 1 to 128 bytes without control characters (got 5)",
        ),
        (json!(true), "(got true)"),
        (json!({"id": 1}), "must be a string"),
    ] {
        let (status, e) = create(json!({"type": "invoice", "payload": 1, "key": bad})).await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["error"]["code"], "invalid_argument", "{bad}: {e}");
        assert_eq!(
            e["error"]["details"],
            json!({"field": "key", "reason": "key_invalid"}),
            "{bad}: {e}"
        );
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{bad}: {e}");
    }
    let (_, listed) = get_json(&http, &format!("{base}/v1/tasks")).await;
    assert_eq!(listed["count"], 3, "{listed}");
    // the dashboard: the task page's row, the list's column
    let page = |path: String| {
        let r = http.get(format!("{base}{path}"));
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.text().await.unwrap()
        }
    };
    let html = page(format!("/ui/tasks/{id}")).await;
    assert!(html.contains("<dd data-key>customer-42</dd>"), "{html}");
    let html = page(format!("/ui/tasks/{plain}")).await;
    assert!(!html.contains("data-key"), "{html}");
    let html = page("/ui/tasks".into()).await;
    assert!(html.contains(">Key</th>"), "{html}");
    let row = |id: &str| {
        let at = html.find(&format!("<tr data-id=\"{id}\">")).unwrap();
        html[at..at + html[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(
        row(id).contains("<td data-key>customer-42</td>"),
        "{}",
        row(id)
    );
    assert!(
        row(&plain).contains("<td data-key></td>"),
        "{}",
        row(&plain)
    );
}

/// Batches over HTTP (beyond Go; docs/processing.md §2.23): created with
/// a callback, followed, cancelled and retried as a whole; refusals with
/// their reasons.
#[tokio::test]
async fn batches_are_created_followed_cancelled_and_retried() {
    let nats = NatsServer::start();
    let client = client_for(&nats, Queue::new("BATCHES")).await;
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{base}{path}")).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string());
            (status, location, r.json::<Value>().await.unwrap())
        }
    };

    let (status, location, batch) = post(
        "/v1/batches",
        json!({
            "members": [{"type": "page:render", "payload": 1}, {"type": "page:render", "payload": 2}],
            "callback": {"type": "pdf:bind", "payload": "report.pdf"}
        }),
    )
    .await;
    assert_eq!(status, 201, "{batch}");
    let id = batch["id"].as_str().unwrap().to_string();
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/batches/{id}").as_str())
    );
    assert_eq!(batch["queue"], "BATCHES");
    assert_eq!(batch["members"].as_array().unwrap().len(), 2);
    let member = batch["members"][0].as_str().unwrap().to_string();
    let (_, task) = get_json(&http, &format!("{base}/v1/tasks/{member}")).await;
    assert_eq!(task["batch"], id.as_str());

    let (status, s) = get_json(&http, &format!("{base}/v1/batches/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&s["total"], &s["pending"], &s["done"], &s["finished"]),
        (&json!(2), &json!(2), &json!(0), &json!(false))
    );
    assert_eq!(s["callback"]["state"], "blocked");
    assert_eq!(s["callback"]["type"], "pdf:bind");
    assert_eq!(s["members"][0]["state"], "new");

    // the dashboard: a member's page links its batch, whose page counts it
    let page = http
        .get(format!("{base}/ui/tasks/{member}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(r#"<a href="/ui/batches/{id}">"#)) && page.contains("(a member)"),
        "{page}"
    );
    let page = http
        .get(format!("{base}/ui/batches/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("2: 0 done, 0 failed, 2 pending"), "{page}");
    assert!(
        page.contains(&format!(r#"<a href="/ui/tasks/{member}">"#)),
        "{page}"
    );

    let (status, _, done) = post(&format!("/v1/batches/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["cancelled"].as_array().unwrap().len(), 3);
    assert_eq!(done["cancelled"][0], batch["callback"]);
    let (_, s) = get_json(&http, &format!("{base}/v1/batches/{id}")).await;
    assert_eq!((&s["failed"], &s["finished"]), (&json!(2), &json!(true)));
    assert_eq!(s["members"][1]["last_err"], "cancelled by the HTTP API");

    let (status, _, retried) = post(&format!("/v1/batches/{id}/retry"), json!({})).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["retried"].as_array().unwrap().len(), 2);
    assert_eq!(retried["callback"], "rearmed");
    let (_, s) = get_json(&http, &format!("{base}/v1/batches/{id}")).await;
    assert_eq!((&s["pending"], &s["failed"]), (&json!(2), &json!(0)));
    assert_eq!(s["callback"]["state"], "blocked");

    // refusals, nothing written
    let (status, _, e) = post("/v1/batches", json!({"members": []})).await;
    assert_eq!(status, 400);
    assert_eq!(
        e["error"]["details"],
        json!({"field": "members", "reason": "batch_empty"})
    );
    let many: Vec<Value> = (0..1001)
        .map(|n| json!({"type": "t", "payload": n}))
        .collect();
    let (status, _, e) = post("/v1/batches", json!({"members": many})).await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["details"]["reason"], "batch_too_large");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(got 1001)"),
        "{e}"
    );
    let (status, _, e) = post(
        "/v1/batches",
        json!({"members": [{"type": "t"}, {"type": "bad type"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("members[1]: "),
        "{e}"
    );
    let (status, e) = get_json(&http, &format!("{base}/v1/batches/nosuchbatch")).await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["details"]["reason"], "batch_not_found");
}

/// On a three-node cluster, the buckets the API creates take its
/// `replicas` option: the dashboard's shared form token (`CHORIA_AJ_HTTP`,
/// created when a page with a form is first rendered; it was left at one
/// replica) and the idempotency keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apis_buckets_take_its_replicas() {
    let cluster = asyncjobs_tests::NatsCluster::start(3).await;
    let client = Client::builder()
        .url(cluster.urls())
        .replicas(3)
        .queue(Queue::new("HTTPR"))
        .build()
        .await
        .unwrap();
    let options = ApiOptions {
        replicas: 3,
        ..ApiOptions::default()
    };
    let base = serve(client.clone(), options).await;
    let http = http();
    let r = http.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/v1/tasks"))
        .header("Idempotency-Key", "replicas-1")
        .json(&json!({"type": "x", "queue": "HTTPR"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    for bucket in ["CHORIA_AJ_HTTP", "CHORIA_AJ_HTTP_IDEMPOTENCY"] {
        let v = wait_for(T, &format!("bucket {bucket}"), || async {
            asyncjobs_tests::js_api_answer(client.nats(), &format!("STREAM.INFO.KV_{bucket}"))
                .await
                .filter(|v| v["config"].is_object())
        })
        .await;
        assert_eq!(v["config"]["num_replicas"], 3, "{bucket}: {v}");
    }
}

/// A schedule paused, resumed and run now over HTTP (ours): the pause is
/// in the schedule's JSON only while set, a run creates a task of the
/// schedule's type in its queue (201, `Location`), and an unknown schedule
/// is a 404.
#[tokio::test]
async fn schedules_pause_resume_and_run_over_http() {
    let server = NatsServer::start();
    let client = client_for(&server, Queue::new("SCHED")).await;
    let template = Task::new("report:x", &json!({"n": 1})).unwrap();
    client
        .new_scheduled_task("hourly", "@hourly", "SCHED", &template)
        .await
        .unwrap();
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let post = |path: &str| http.post(format!("{base}{path}")).send();
    let r = post("/v1/schedules/hourly/pause").await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["paused"], true);
    assert!(client.load_scheduled_task("hourly").await.unwrap().paused);
    let r = post("/v1/schedules/hourly/resume").await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v.get("paused").is_none(), "{v}");
    let r = post("/v1/schedules/hourly/run").await.unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    assert_eq!(location, format!("/v1/tasks/{}", v["id"].as_str().unwrap()));
    assert_eq!(
        (v["type"].as_str(), v["queue"].as_str()),
        (Some("report:x"), Some("SCHED"))
    );
    for path in ["pause", "resume", "run"] {
        let r = post(&format!("/v1/schedules/nope/{path}")).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

/// Tasks cancelled and deleted by filter over HTTP (ours): a dry run
/// counts and lists what each would touch and changes nothing; the cancel
/// takes only the tasks not yet finished; a bad filter is a 400.
#[tokio::test]
async fn tasks_are_cancelled_and_deleted_by_filter() {
    let server = NatsServer::start();
    let client = client_for(&server, Queue::new("BULKAPI")).await;
    let mut ids = vec![];
    for i in 0..3 {
        let mut t = Task::new("bulk:x", &i).unwrap();
        client.enqueue(&mut t).await.unwrap();
        ids.push(t.id);
    }
    let mut other = Task::new("bulk:y", &()).unwrap();
    client.enqueue(&mut other).await.unwrap();
    let base = serve(client.clone(), ApiOptions::default()).await;
    let http = http();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();

    let r = post(
        "/v1/tasks/cancel",
        json!({"filter": {"type": "bulk:x", "dry_run": true}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["dry_run"].as_bool(), v["matched"].as_u64()),
        (Some(true), Some(3))
    );
    assert!(every_result_is(&v, "matched"));
    assert_eq!(
        client.load_task(&ids[0]).await.unwrap().state,
        asyncjobs::TaskState::New
    );

    let r = post(
        "/v1/tasks/cancel",
        json!({"filter": {"type": "bulk:x"}, "by": "the test"}),
    )
    .await
    .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["matched"], 3, "{v}");
    assert!(every_result_is(&v, "ok"), "{v}");
    let t = client.load_task(&ids[1]).await.unwrap();
    assert_eq!(t.state, asyncjobs::TaskState::Terminated);
    assert!(t.last_err.contains("the test"), "{}", t.last_err);
    // cancelled tasks are final: a second cancel takes none
    let v: Value = post("/v1/tasks/cancel", json!({"filter": {"type": "bulk:x"}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["matched"], 0, "{v}");

    let v: Value = post("/v1/tasks/delete", json!({"filter": {"type": "bulk:x"}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["matched"], 3, "{v}");
    for id in &ids {
        assert!(matches!(
            client.load_task(id).await,
            Err(asyncjobs::Error::TaskNotFound(_))
        ));
    }
    assert_eq!(
        client.load_task(&other.id).await.unwrap().state,
        asyncjobs::TaskState::New
    );

    let r = post("/v1/tasks/delete", json!({"filter": {"state": "nonsense"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // ids instead of a filter are a selection (tests/selection.rs)
    let r = post("/v1/tasks/delete", json!({"ids": ["x"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert!(every_result_is(&answer, "not_found"), "{answer}");
}
