//! `ajc server run` against a real nats-server, driven by a real HTTP
//! client: Go's fifty recorded exchanges replayed in order and compared,
//! Go's OpenAPI document against ours, a task created over HTTP processed
//! by a worker and read back, idempotency across two server processes,
//! lifecycle events over SSE, TLS and mutual TLS, bind refusal and flags.

use asyncjobs::{Router, Task, TaskContext};
use asyncjobs_tests::{golden, NatsServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use tokio::process::Command;

mod support;
use support::{http, ApiServer, BIN, T};

/// Runs `ajc` to completion: (exit code, stderr).
async fn ajc(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_ksuid(s: &str) -> bool {
    s.len() == 27 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_time(s: &str) -> bool {
    asyncjobs::wire::parse_time(s).is_ok()
}

/// Compares `ours` with Go's `theirs`: same keys and values, except values
/// that vary by run (task ids mapped through `ids`, timestamps, counts and
/// version of `/v1/info`), compared by form.
fn compare(at: &str, theirs: &Value, ours: &Value, ids: &mut HashMap<String, String>) {
    match (theirs, ours) {
        (Value::Object(t), Value::Object(o)) => {
            let tk: Vec<&String> = t.keys().collect();
            let ok: Vec<&String> = o.keys().collect();
            assert_eq!(tk, ok, "{at}: keys differ\n go:   {theirs}\n ours: {ours}");
            for (k, tv) in t {
                compare(&format!("{at}.{k}"), tv, &o[k], ids);
            }
        }
        (Value::Array(t), Value::Array(o)) => {
            assert_eq!(
                t.len(),
                o.len(),
                "{at}: lengths differ\n go:   {theirs}\n ours: {ours}"
            );
            for (i, (tv, ov)) in t.iter().zip(o).enumerate() {
                compare(&format!("{at}[{i}]"), tv, ov, ids);
            }
        }
        (Value::String(t), Value::String(o)) if is_ksuid(t) && is_ksuid(o) && t != o => {
            match ids.get(t) {
                Some(mapped) => assert_eq!(mapped, o, "{at}: id maps to another task"),
                None => {
                    ids.insert(t.clone(), o.clone());
                }
            }
        }
        (Value::String(t), Value::String(o)) if is_time(t) => {
            assert!(is_time(o), "{at}: {o:?} is not a time like Go's {t:?}")
        }
        (Value::Number(_), Value::Number(_))
            if at.ends_with(".queue_count") || at.ends_with(".task_count") => {}
        (Value::String(_), Value::String(o)) if at.ends_with(".version") => {
            assert!(!o.is_empty(), "{at}: empty version")
        }
        _ => assert_eq!(theirs, ours, "{at}: values differ"),
    }
}

/// `text` with Go's task ids replaced by ours.
fn map_ids(text: &str, ids: &HashMap<String, String>) -> String {
    let mut out = text.to_string();
    for (go, ours) in ids {
        out = out.replace(go, ours);
    }
    out
}

/// Replays Go's recorded exchanges (reference/golden/http, in order, state
/// carrying over) against `ajc server run --allow-create-default` and
/// compares status codes, headers and bodies.
#[tokio::test]
async fn golden_exchanges_match_go() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = http();
    let dir = golden("http");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 50, "golden exchanges in {}", dir.display());
    let mut ids = HashMap::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let exchange: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        if name.starts_with("49_") {
            check_openapi(&client, &server, &exchange["response"]["body"]).await;
            continue;
        }
        let req = &exchange["request"];
        let want = &exchange["response"];
        let path = map_ids(req["path"].as_str().unwrap(), &ids);
        let method: reqwest::Method = req["method"].as_str().unwrap().parse().unwrap();
        let mut builder = client.request(method, server.url(&path));
        for (k, v) in req["headers"].as_object().unwrap() {
            builder = builder.header(k, v.as_str().unwrap());
        }
        builder = match &req["body"] {
            Value::Null => builder,
            Value::String(raw) => builder.body(raw.clone()),
            body => builder.body(map_ids(&body.to_string(), &ids)),
        };
        let resp = builder.send().await.unwrap();
        let at = format!("{name} {path}");
        assert_eq!(
            resp.status().as_u16() as u64,
            want["status"].as_u64().unwrap(),
            "{at}: status"
        );
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap();
        let got_text = String::from_utf8_lossy(&body).into_owned();
        // bodies holding ids, times (Go drops trailing zeros of the
        // fraction, so their length varies), counts or the version
        let varies = |v: &str| {
            v.contains("3MnY")
                || v.contains("\"time\"")
                || v.contains("_at\"")
                || v.contains("\"version\"")
                || want["body_kind"] == "ndjson"
        };
        for (k, v) in want["headers"].as_object().unwrap() {
            let v = v.as_str().unwrap();
            let got = headers
                .get(k.as_str())
                .map(|h| h.to_str().unwrap().to_string());
            match k.as_str() {
                "Location" => {
                    let got = got.unwrap_or_else(|| panic!("{at}: no Location"));
                    let id = got
                        .strip_prefix("/v1/tasks/")
                        .expect("Location /v1/tasks/<id>");
                    assert!(is_ksuid(id), "{at}: Location {got}");
                }
                // lengths of bodies holding ids and times: checked below
                "Content-Length" if varies(&serde_json::to_string(&want["body"]).unwrap()) => {}
                "Content-Length" if want["status"] == 204 => {}
                _ => assert_eq!(got.as_deref(), Some(v), "{at}: header {k}"),
            }
        }
        if let Some(len) = headers.get("content-length") {
            assert_eq!(
                len.to_str().unwrap(),
                body.len().to_string(),
                "{at}: Content-Length"
            );
        }
        match want["body_kind"].as_str() {
            _ if want["body"].is_null() => {
                assert!(body.is_empty(), "{at}: expected no body, got {got_text}")
            }
            Some("json") => {
                let ours: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("{at}: not JSON ({e}): {got_text}"));
                compare(&at, &want["body"], &ours, &mut ids);
                // Go's bytes: compact, keys sorted, Go's escaping, no newline
                assert_eq!(
                    asyncjobs_http::go_json::encode(&ours),
                    body.to_vec(),
                    "{at}: {got_text}"
                );
            }
            Some("ndjson") => {
                let ours: Vec<Value> = got_text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                assert!(
                    got_text.ends_with('\n'),
                    "{at}: NDJSON lines end with a newline"
                );
                compare(&at, &want["body"], &Value::Array(ours), &mut ids);
            }
            Some("text") => assert_eq!(Some(got_text.as_str()), want["body"].as_str(), "{at}"),
            _ => assert!(body.is_empty(), "{at}: expected no body, got {got_text}"),
        }
    }
}

/// Go's OpenAPI document against ours: every path, method, operation id,
/// status code and parameter of Go's is served and described; every schema
/// has the same properties, request schemas the same required ones.
async fn check_openapi(client: &reqwest::Client, server: &ApiServer, go: &Value) {
    let resp = client
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ours: Value = resp.json().await.unwrap();
    assert_eq!(ours["openapi"].as_str().unwrap().chars().next(), Some('3'));
    for (path, item) in go["paths"].as_object().unwrap() {
        let our_item = &ours["paths"][path];
        assert!(our_item.is_object(), "openapi: {path} missing");
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let our_op = &our_item[method];
            assert!(our_op.is_object(), "openapi: {method} {path} missing");
            assert_eq!(op["operationId"], our_op["operationId"], "{method} {path}");
            for status in op["responses"].as_object().unwrap().keys() {
                assert!(
                    our_op["responses"].get(status).is_some(),
                    "openapi: {method} {path} lacks status {status}"
                );
            }
            let params = |item: &Value, op: &Value| -> Vec<(String, String)> {
                let mut all: Vec<(String, String)> = [&item["parameters"], &op["parameters"]]
                    .into_iter()
                    .filter_map(|p| p.as_array())
                    .flatten()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().to_string(),
                            p["in"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                all.sort();
                all
            };
            let ours_p = params(our_item, our_op);
            for p in params(item, op) {
                assert!(
                    ours_p.contains(&p),
                    "openapi: {method} {path} lacks parameter {p:?}"
                );
            }
            assert_eq!(
                op.get("requestBody").is_some(),
                our_op.get("requestBody").is_some(),
                "{method} {path}: request body"
            );
        }
    }
    for (name, schema) in go["components"]["schemas"].as_object().unwrap() {
        let our = &ours["components"]["schemas"][name];
        assert!(our.is_object(), "openapi: schema {name} missing");
        let keys = |s: &Value| -> Vec<String> {
            let mut k: Vec<String> = s["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        // ours adds only these, each beyond Go and documented
        let extensions: &[&str] = match name.as_str() {
            "BulkRetryRequest" => &["filter"],
            // progress: only once a handler reported it (docs/go-differences.md §73);
            // priority: only when not 0, the default (docs/processing.md §2.21);
            // key: only when the task has one (docs/processing.md §2.24);
            // batch: only for a batch's task (docs/processing.md §2.23)
            "Task" => &["run_at", "progress", "priority", "key", "batch"],
            "TaskCreateRequest" => &["run_at", "unique", "priority", "key"],
            // only while the queue is paused (docs/go-differences.md §69);
            // only when the queue has its own retention (§75); the flow
            // settings only when set (docs/processing.md §2.21 to §2.23)
            "QueueInfo" => &[
                "paused",
                "retention",
                "rate_limit",
                "priority_aging",
                "key_concurrency",
                "key_rate_limit",
            ],
            "QueueCreateRequest" => &[
                "retention",
                "rate_limit",
                "priority_aging",
                "key_concurrency",
                "key_rate_limit",
            ],
            // only for a schedule declared in code (§76), or paused (§81)
            "Schedule" => &["declared_in", "paused"],
            _ => &[],
        };
        let mut mine = keys(our);
        mine.retain(|k| !extensions.contains(&k.as_str()));
        assert_eq!(keys(schema), mine, "schema {name}: properties");
        let required = |s: &Value| -> Vec<String> {
            let mut r: Vec<String> = s["required"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            r.sort();
            r
        };
        let (theirs, mine) = (required(schema), required(our));
        if name.ends_with("Request") {
            assert_eq!(theirs, mine, "schema {name}: required");
        } else {
            for r in &theirs {
                assert!(mine.contains(r), "schema {name}: {r} not required");
            }
        }
        assert_eq!(schema.get("enum"), our.get("enum"), "schema {name}: enum");
    }
}

/// The document describes exactly the routes the router serves: every
/// described operation answers something other than 404/405, and an
/// undescribed path is a 404.
#[tokio::test]
async fn openapi_lists_every_route() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = http();
    let doc = asyncjobs_http::openapi();
    let mut n = 0;
    for (path, item) in &doc.paths.paths {
        let concrete = path
            .replace("{id}", "2ZZZZZZZZZZZZZZZZZZZZZZZZZZ")
            .replace("{name}", "NOPE");
        let ops = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, described) in ops {
            if !described {
                continue;
            }
            n += 1;
            let mut req = client.request(method.parse().unwrap(), server.url(&concrete));
            if concrete.ends_with("/wait") {
                req = req.query(&[("timeout", "1ms")]);
            }
            if concrete == "/v1/events" {
                let resp = req.send().await.unwrap();
                assert_eq!(resp.status(), 200, "{method} {path}");
                continue;
            }
            let status = req.send().await.unwrap().status().as_u16();
            assert!(
                status != 405
                    && !(status == 404 && !concrete.contains("NOPE") && !concrete.contains("2ZZZ")),
                "{method} {path}: {status}"
            );
        }
    }
    assert!(n >= 20, "only {n} operations described");
    let r = client
        .get(server.url("/v1/undescribed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A task created over HTTP is processed by a worker and its result read
/// back over HTTP (long-poll wait, then get); its `traceparent` reached the
/// handler; the access log names method, route and status.
#[tokio::test]
async fn task_created_over_http_is_processed() {
    let nats = NatsServer::start();
    let mut server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = http();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let created: Value = {
        let r = client
            .post(server.url("/v1/tasks"))
            .header("traceparent", traceparent)
            .json(&json!({"type": "sum", "payload": {"a": 2, "b": 3}, "max_tries": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        // no worker runs yet: the task is created, with a warning saying so
        // (docs/go-differences.md: an added header Go's client ignores)
        let warning = r
            .headers()
            .get("warning")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            warning.as_deref().is_some_and(|w| w
                .starts_with("199 asyncjobs \"no running worker serves queue DEFAULT")
                && w.contains("start one with a handler")),
            "{warning:?}"
        );
        r.json().await.unwrap()
    };
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "new");

    // nothing runs it yet: the wait times out with 202 and the task as it is
    let r = client
        .get(server.url(&format!("/v1/tasks/{id}/wait?timeout=200ms")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let seen_tp = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = seen_tp.clone();
    let router = Router::new()
        .handle("sum", move |ctx: TaskContext, t: Task| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap() = ctx.traceparent().map(str::to_string);
                let p: Value = t.payload_as()?;
                asyncjobs::handler::to_output(
                    &json!({"sum": p["a"].as_i64().unwrap() + p["b"].as_i64().unwrap()}),
                )
            }
        })
        .unwrap();
    let worker_client = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::default_queue())
        .build()
        .await
        .unwrap();
    let worker = asyncjobs_tests::spawn_worker(worker_client.worker(router));

    let r = client
        .get(server.url(&format!("/v1/tasks/{id}/wait?timeout=15s")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["state"], "complete", "{done}");
    assert_eq!(done["result"]["payload"], json!({"sum": 5}));
    assert!(is_time(done["result"]["completed"].as_str().unwrap()));
    assert_eq!(done["tries"], 1);
    let again: Value = client
        .get(server.url(&format!("/v1/tasks/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, done);
    assert_eq!(seen_tp.lock().unwrap().as_deref(), Some(traceparent));
    // with the worker running (pulling, announcing itself) no warning
    let r = client
        .post(server.url("/v1/tasks"))
        .json(&json!({"type": "sum", "payload": {"a": 1, "b": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers().get("warning"), None);
    worker.stop().await;

    let mut access = vec![];
    while let Ok(line) = server.log.try_recv() {
        access.push(line);
    }
    assert!(
        access.iter().any(|l| l.contains("POST /v1/tasks 201")),
        "access log: {access:#?}"
    );
    assert!(access
        .iter()
        .any(|l| l.contains("GET /v1/tasks/{id}/wait 200")));

    // the API's metrics count it
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"asyncjobs_http_requests_total{method="POST",route="/v1/tasks",status="201"} 2"#
        ),
        "{metrics}"
    );
    server.child.kill().await.unwrap();
}

/// An Idempotency-Key is honoured by another server process (a KV bucket,
/// not a per-process map): the repeat answers 200 with the first task and
/// no second task exists. A key whose task was deleted creates afresh.
#[tokio::test]
async fn idempotency_keys_are_shared_by_replicas() {
    let nats = NatsServer::start();
    let a = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let b = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = http();
    let body = json!({"type": "email:new", "payload": {"to": "a@example.net"}});
    let first = client
        .post(a.url("/v1/tasks"))
        .header("Idempotency-Key", "order-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();
    let repeat = client
        .post(b.url("/v1/tasks"))
        .header("Idempotency-Key", "order-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(repeat.status(), 200);
    assert_eq!(repeat.headers()["location"], location);
    let repeat: Value = repeat.json().await.unwrap();
    assert_eq!(repeat["id"], first["id"]);
    let list: Value = client
        .get(b.url("/v1/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 1, "{list}");

    // two values of the header are refused (Go's binding error)
    let r = client
        .post(a.url("/v1/tasks"))
        .header("Idempotency-Key", "x")
        .header("Idempotency-Key", "y")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["error"]["message"],
        "Expected one value for Idempotency-Key, got 2"
    );

    // a failed create does not keep the key
    let r = client
        .post(a.url("/v1/tasks"))
        .header("Idempotency-Key", "order-43")
        .json(&json!({"type": "bad type"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .post(b.url("/v1/tasks"))
        .header("Idempotency-Key", "order-43")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // the key's task deleted: the key creates a new task
    let id = first["id"].as_str().unwrap();
    let r = client
        .delete(a.url(&format!("/v1/tasks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = client
        .post(b.url("/v1/tasks"))
        .header("Idempotency-Key", "order-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let fresh: Value = r.json().await.unwrap();
    assert_ne!(fresh["id"], first["id"]);
}

/// Lifecycle events arrive as Server-Sent Events, filtered by queue/type/task.
#[tokio::test]
async fn events_stream_as_sse() {
    use futures::StreamExt;
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = http();
    let resp = client
        .get(server.url("/v1/events?type=wanted"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    for t in ["unwanted", "wanted"] {
        let r = client
            .post(server.url("/v1/tasks"))
            .json(&json!({"type": t}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mut text = String::new();
    tokio::time::timeout(T, async {
        while !text.contains("\n\n") {
            let chunk = body.next().await.expect("stream ended").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("no event");
    assert!(
        text.contains("event: io.choria.asyncjobs.v1.task_state"),
        "{text}"
    );
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line: {text}"));
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["task_type"], "wanted", "{event}");
    assert_eq!(event["state"], "new");
    assert!(!text.contains("\"unwanted\""), "{text}");
}

/// Go's errors for bad flag combinations; a reachable bind is refused
/// without --unsafe-bind, client certificates or tokens over TLS; SIGTERM
/// stops it cleanly.
#[tokio::test]
async fn flags_bind_rules_and_shutdown() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (code, err) = ajc(&["--server", &url, "server", "run", "--bind", "127.0.0.1:0"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("--queue is required unless --allow-create-default is set"),
        "{err}"
    );
    let (code, err) = ajc(&[
        "--server",
        &url,
        "server",
        "run",
        "--allow-create-default",
        "--tls-cert",
        "x.pem",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("both --tls-cert and --tls-key must be supplied together"),
        "{err}"
    );
    for bind in ["0.0.0.0:0", ":0", "[::]:0"] {
        let (code, err) = ajc(&[
            "--server",
            &url,
            "server",
            "run",
            "--allow-create-default",
            "--bind",
            bind,
        ])
        .await;
        assert_eq!(code, 1, "{bind}");
        assert!(err.contains("--unsafe-bind"), "{bind}: {err}");
    }
    let (code, err) = ajc(&["--server", &url, "server", "run", "--queue", "MISSING"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("MISSING"), "{err}");
    // a tokens file that cannot be used stops it, naming why and never a token
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        (
            "operator alice short-token\n",
            "line 1: the token of alice is shorter than 16 bytes",
        ),
        ("# nobody\n", "the file names no credential"),
        (
            "admin alice 0123456789abcdef0123\n",
            "line 1: unknown role \"admin\"",
        ),
    ] {
        let file = dir.path().join("tokens");
        std::fs::write(&file, text).unwrap();
        let (code, err) = ajc(&[
            "--server",
            &url,
            "server",
            "run",
            "--allow-create-default",
            "--tokens",
            file.to_str().unwrap(),
        ])
        .await;
        assert_eq!(code, 1, "{text}");
        assert!(err.contains(says), "{text}: {err}");
        assert!(
            !err.contains("0123456789abcdef") && !err.contains("short-token"),
            "{err}"
        );
    }
    // tokens over plain HTTP on a reachable address: refused, saying why
    // (over TLS they are allowed: the bind rule's unit test)
    let file = dir.path().join("tokens");
    std::fs::write(&file, "operator alice 0123456789abcdef0123\n").unwrap();
    let (code, err) = ajc(&[
        "--server",
        &url,
        "server",
        "run",
        "--allow-create-default",
        "--bind",
        "0.0.0.0:0",
        "--tokens",
        file.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("over plain HTTP"), "{err}");
    let (code, err) = ajc(&[
        "--server",
        &url,
        "server",
        "run",
        "--allow-create-default",
        "--tokens",
        "/nonexistent/tokens",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read --tokens /nonexistent/tokens"),
        "{err}"
    );
    let (code, err) = ajc(&[
        "--server",
        &url,
        "server",
        "run",
        "--allow-create-default",
        "--keep-history",
        "0s",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("--keep-history must be longer than 0s"),
        "{err}"
    );

    let mut server = ApiServer::start(&url, &["--allow-create-default"]).await;
    // a browser on another site may not change anything, and a loopback
    // server answers only for loopback host names (no DNS rebinding)
    let client = http();
    let r = client
        .post(server.url("/v1/queues"))
        .header("Sec-Fetch-Site", "cross-site")
        .header("Origin", "http://evil.example")
        .body(r#"{"name":"EVIL"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["details"]["reason"], "cross_site_request");
    let r = client
        .post(server.url("/v1/queues"))
        .header("Origin", "http://evil.example")
        .body(r#"{"name":"EVIL"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "an Origin that is not the Host");
    let r = client
        .get(server.url("/v1/tasks"))
        .header("Host", "evil.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["details"]["reason"], "host_not_allowed");
    let r = client
        .get(server.url("/v1/queues/EVIL"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the refused requests created nothing");
    let pid = server.child.id().unwrap() as i32;
    assert_eq!(unsafe { libc_kill(pid, 15) }, 0);
    let status = tokio::time::timeout(T, server.child.wait())
        .await
        .expect("ajc server run did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Certificates for the TLS tests: a CA, a server certificate for
/// localhost/127.0.0.1 and a client certificate, written to `dir`.
fn certificates(dir: &Path) -> (reqwest::Certificate, reqwest::Identity) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client".into()])
        .unwrap()
        .signed_by(&client_key, &ca_cert, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    let identity = format!("{}{}", client.pem(), client_key.serialize_pem());
    (
        reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap(),
        reqwest::Identity::from_pem(identity.as_bytes()).unwrap(),
    )
}

/// TLS with generated certificates; with --tls-client-ca a client without
/// a certificate is refused, one with a certificate from the CA served, and
/// `/v1/info` reports `mtls`.
#[tokio::test]
async fn tls_and_mutual_tls() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, identity) = certificates(dir.path());
    let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let (cert, key, ca_file) = (path("server.pem"), path("server.key"), path("ca.pem"));

    let tls = ApiServer::start(
        &nats.url(),
        &[
            "--allow-create-default",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    )
    .await;
    assert!(tls.base.starts_with("https://"), "{}", tls.base);
    let trusting = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .timeout(T)
        .build()
        .unwrap();
    let info: Value = trusting
        .get(tls.url("/v1/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["auth"], "none");
    // plain HTTP to a TLS port gets no API answer
    let plain = http()
        .get(tls.url("/healthz").replace("https://", "http://"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    let mtls = ApiServer::start(
        &nats.url(),
        &[
            "--allow-create-default",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca_file,
        ],
    )
    .await;
    let refused = trusting.get(mtls.url("/healthz")).send().await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served: {refused:?}"
    );
    let with_cert = reqwest::Client::builder()
        .add_root_certificate(ca)
        .identity(identity)
        .timeout(T)
        .build()
        .unwrap();
    let info: Value = with_cert
        .get(mtls.url("/v1/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["auth"], "mtls");
}
