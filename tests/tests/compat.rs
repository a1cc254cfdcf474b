//! Wire compatibility with the Go implementation, checked against the bytes
//! it wrote (`tests/golden/`, copied from the shared reference).

use asyncjobs::{Client, Queue, Task, TaskState};
use asyncjobs_tests::{golden, golden_config, instance_config, js_api, NatsServer};
use serde_json::Value;
use std::time::Duration;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(golden(name)).unwrap_or_else(|e| panic!("reading golden {name}: {e}"))
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

const TASK_FILES: &[&str] = &[
    "task_new.json",
    "task_completed.json",
    "task_retry_failed_try.json",
    "task_deadline_deps_maxtries_enqueued.json",
    "task_deadline_deps_maxtries_completed.json",
    "task_signed.json",
    "task_signed_fixed.json",
];

#[test]
fn golden_tasks_round_trip_byte_for_byte() {
    for name in TASK_FILES {
        let raw = read(name);
        let raw = std::str::from_utf8(&raw).unwrap().trim_end();
        let task = Task::from_json(raw.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = String::from_utf8(task.to_json().unwrap()).unwrap();
        assert_eq!(again, raw, "{name} re-encodes differently");
    }
}

#[test]
fn golden_task_fields_decode() {
    let t = Task::from_json(&read("task_completed.json")).unwrap();
    assert_eq!(t.state, TaskState::Complete);
    assert_eq!(t.tries, 1);
    let payload: Value = t.payload_as().unwrap();
    assert_eq!(payload, serde_json::json!({"hello": "world", "n": 1}));
    let result: Value = t.result_as().unwrap().unwrap();
    assert_eq!(result["golden"], "result");

    let t = Task::from_json(&read("task_deadline_deps_maxtries_completed.json")).unwrap();
    assert_eq!(t.dependencies.len(), 2);
    assert!(t.load_dependencies);
    assert_eq!(t.max_tries, 5);
    assert_eq!(t.dependency_results.len(), 2);
    assert!(t.deadline.is_some());
}

#[test]
fn golden_work_item_shape() {
    let item: Value = serde_json::from_slice(&read("process_item.json")).unwrap();
    assert_eq!(keys(&item), vec!["kind", "job"]);
}

#[tokio::test]
async fn created_resources_match_golden_configurations() {
    let server = NatsServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let signed = Client::builder()
        .url(server.url())
        .queue(Queue::new("SIGNED"))
        .build()
        .await
        .unwrap();
    let nc = client.nats();
    for (api, file) in [
        (
            "STREAM.INFO.CHORIA_AJ_TASKS",
            "stream_CHORIA_AJ_TASKS.info.json",
        ),
        (
            "STREAM.INFO.CHORIA_AJ_Q_DEFAULT",
            "stream_CHORIA_AJ_Q_DEFAULT.info.json",
        ),
        (
            "STREAM.INFO.CHORIA_AJ_Q_SIGNED",
            "stream_CHORIA_AJ_Q_SIGNED.info.json",
        ),
        (
            "STREAM.INFO.KV_CHORIA_AJ_CONFIGURATION",
            "stream_KV_CHORIA_AJ_CONFIGURATION.info.json",
        ),
        (
            "STREAM.INFO.KV_CHORIA_AJ_ELECTIONS",
            "stream_KV_CHORIA_AJ_ELECTIONS.info.json",
        ),
        (
            "CONSUMER.INFO.CHORIA_AJ_Q_DEFAULT.WORKERS",
            "consumer_CHORIA_AJ_Q_DEFAULT_WORKERS.info.json",
        ),
        (
            "CONSUMER.INFO.CHORIA_AJ_Q_SIGNED.WORKERS",
            "consumer_CHORIA_AJ_Q_SIGNED_WORKERS.info.json",
        ),
    ] {
        let ours = js_api(nc, api, "").await;
        assert_eq!(
            instance_config(&ours),
            golden_config(file),
            "{api} config differs from {file}"
        );
    }
    drop(signed);

    // memory storage matches the memory goldens
    let mem_server = NatsServer::start();
    let mem = Client::builder()
        .url(mem_server.url())
        .memory_storage()
        .build()
        .await
        .unwrap();
    for (api, file) in [
        (
            "STREAM.INFO.CHORIA_AJ_TASKS",
            "memory/stream_CHORIA_AJ_TASKS.info.json",
        ),
        (
            "STREAM.INFO.CHORIA_AJ_Q_DEFAULT",
            "memory/stream_CHORIA_AJ_Q_DEFAULT.info.json",
        ),
        (
            "STREAM.INFO.KV_CHORIA_AJ_CONFIGURATION",
            "memory/stream_KV_CHORIA_AJ_CONFIGURATION.info.json",
        ),
        (
            "STREAM.INFO.KV_CHORIA_AJ_ELECTIONS",
            "memory/stream_KV_CHORIA_AJ_ELECTIONS.info.json",
        ),
        (
            "CONSUMER.INFO.CHORIA_AJ_Q_DEFAULT.WORKERS",
            "memory/consumer_CHORIA_AJ_Q_DEFAULT_WORKERS.info.json",
        ),
    ] {
        let ours = js_api(mem.nats(), api, "").await;
        assert_eq!(
            instance_config(&ours),
            golden_config(file),
            "{api} config differs from {file}"
        );
    }
}

/// Reads the raw stored message (headers and data) of a subject.
async fn stored(nc: &async_nats::Client, stream: &str, subject: &str) -> (String, Value) {
    use base64::Engine;
    let r = js_api(
        nc,
        &format!("STREAM.MSG.GET.{stream}"),
        &serde_json::json!({ "last_by_subj": subject }).to_string(),
    )
    .await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let hdrs = r["message"]["hdrs"]
        .as_str()
        .map(|h| String::from_utf8(b64.decode(h).unwrap()).unwrap())
        .unwrap_or_default();
    let data = b64.decode(r["message"]["data"].as_str().unwrap()).unwrap();
    (hdrs, serde_json::from_slice(&data).unwrap())
}

#[tokio::test]
async fn written_tasks_and_items_match_golden_shape() {
    let server = NatsServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut task = Task::new("golden:ok", &serde_json::json!({"hello": "world", "n": 1})).unwrap();
    client.enqueue(&mut task).await.unwrap();

    let (hdrs, data) = stored(
        client.nats(),
        "CHORIA_AJ_TASKS",
        &format!("CHORIA_AJ.T.{}", task.id),
    )
    .await;
    let golden_new: Value = serde_json::from_slice(&read("task_new.json")).unwrap();
    assert_eq!(keys(&data), keys(&golden_new));
    assert_eq!(
        data["payload"], golden_new["payload"],
        "same payload bytes, same base64"
    );
    assert_eq!(
        hdrs,
        "NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 0\r\n\r\n"
    );

    let (hdrs, item) = stored(
        client.nats(),
        "CHORIA_AJ_Q_DEFAULT",
        &format!("CHORIA_AJ.Q.DEFAULT.{}", task.id),
    )
    .await;
    assert_eq!(
        item.to_string(),
        format!(r#"{{"kind":0,"job":"{}"}}"#, task.id)
    );
    assert_eq!(
        hdrs,
        format!("NATS/1.0\r\nNats-Msg-Id: {}\r\n\r\n", task.id)
    );

    // a completed task has the golden completed shape
    let router = asyncjobs::Router::new()
        .handle(
            "golden:ok",
            asyncjobs::typed(|_ctx, _p: Value| async move {
                Ok::<_, asyncjobs::HandlerError>(
                    serde_json::json!({"echo_type": "golden:ok", "golden": "result"}),
                )
            }),
        )
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(client.worker(router).run(stop.clone()));
    let done = asyncjobs_tests::wait_for_state(
        &client,
        &task.id,
        TaskState::Complete,
        Duration::from_secs(10),
    )
    .await;
    let golden_done: Value = serde_json::from_slice(&read("task_completed.json")).unwrap();
    let ours: Value = serde_json::from_slice(&done.to_json().unwrap()).unwrap();
    assert_eq!(keys(&ours), keys(&golden_done));
    assert_eq!(keys(&ours["result"]), keys(&golden_done["result"]));
    assert_eq!(ours["result"]["payload"], golden_done["result"]["payload"]);
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Runs a worker whose `task_type` handler returns its payload's `n` until
/// task `id` is complete; returns the stored result.
async fn result_of_n(client: &Client, task_type: &str, id: &str) -> Option<i64> {
    let router = asyncjobs::Router::new()
        .handle(
            task_type,
            asyncjobs::typed(|_ctx, p: Value| async move {
                Ok::<_, asyncjobs::HandlerError>(p["n"].clone())
            }),
        )
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(client.worker(router).run(stop.clone()));
    let done =
        asyncjobs_tests::wait_for_state(client, id, TaskState::Complete, Duration::from_secs(10))
            .await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    done.result_as::<i64>().unwrap()
}

#[tokio::test]
async fn golden_go_task_is_processed_by_rust_worker() {
    // A task record written by the Go producer, with its work item, runs here.
    let server = NatsServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let raw = read("task_new.json");
    let task = Task::from_json(&raw).unwrap();
    let js = async_nats::jetstream::new(client.nats().clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
    js.publish_with_headers(
        format!("CHORIA_AJ.T.{}", task.id),
        headers,
        raw.clone().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    js.publish(
        format!("CHORIA_AJ.Q.DEFAULT.{}", task.id),
        read("process_item.json").into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert_eq!(result_of_n(&client, "golden:ok", &task.id).await, Some(1));
}

#[test]
fn golden_events_parse() {
    for state in ["new", "active", "complete", "retry", "blocked"] {
        let raw = read(&format!("event_task_state_{state}.json"));
        match asyncjobs::events::parse_event(&raw).unwrap() {
            asyncjobs::events::Event::TaskState(e) => {
                assert_eq!(e.state.as_str(), state);
                let again = serde_json::to_string(&e).unwrap();
                assert_eq!(again, std::str::from_utf8(&raw).unwrap().trim_end());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let err = asyncjobs::events::parse_event(br#"{"type":"io.example.other"}"#).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown event type: io.example.other"),
        "{err}"
    );
}

/// Go's `CHORIA_AJ_TASKS` configuration, as its golden file holds it.
fn go_task_store_config() -> Value {
    instance_config(&serde_json::from_slice(&read("stream_CHORIA_AJ_TASKS.info.json")).unwrap())
}

/// Creates `CHORIA_AJ_TASKS` exactly as Go does (its golden config, so
/// `allow_direct: false`).
async fn create_go_task_store(nc: &async_nats::Client) {
    let config = go_task_store_config();
    let created = js_api(nc, "STREAM.CREATE.CHORIA_AJ_TASKS", &config.to_string()).await;
    assert_eq!(created["config"]["allow_direct"], false, "{created}");
}

#[tokio::test]
async fn go_created_task_store_is_used_unchanged_and_loads_work() {
    // A store Go created refuses direct gets: tasks still load, process
    // and list, and the stream is not changed.
    let server = NatsServer::start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    create_go_task_store(&nc).await;
    let client = Client::connect(&server.url()).await.unwrap();
    let mut task = Task::new("go:store", &serde_json::json!({"n": 1})).unwrap();
    client.enqueue(&mut task).await.unwrap();
    assert_eq!(
        client.load_task(&task.id).await.unwrap().state,
        TaskState::New
    );
    assert_eq!(result_of_n(&client, "go:store", &task.id).await, Some(1));
    let info = js_api(&nc, "STREAM.INFO.CHORIA_AJ_TASKS", "").await;
    assert_eq!(
        instance_config(&info),
        go_task_store_config(),
        "the Go-created store was changed"
    );
}

#[tokio::test]
async fn loads_fall_back_when_direct_gets_are_switched_off() {
    // Our store allows direct gets; an operator turns them off while a
    // client runs: its loads switch to STREAM.MSG.GET instead of failing.
    let server = NatsServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut task = Task::new("direct:off", &serde_json::json!({})).unwrap();
    client.enqueue(&mut task).await.unwrap();
    client.load_task(&task.id).await.unwrap();
    let nc = client.nats();
    let mut config = instance_config(&js_api(nc, "STREAM.INFO.CHORIA_AJ_TASKS", "").await);
    assert_eq!(config["allow_direct"], true);
    config["allow_direct"] = false.into();
    let updated = js_api(nc, "STREAM.UPDATE.CHORIA_AJ_TASKS", &config.to_string()).await;
    assert_eq!(updated["config"]["allow_direct"], false, "{updated}");
    let loaded = client.load_task(&task.id).await.unwrap();
    assert_eq!(loaded.id, task.id);
    assert!(matches!(
        client.load_task("missing-task").await,
        Err(asyncjobs::Error::TaskNotFound(_))
    ));
}
