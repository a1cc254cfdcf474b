//! ajc's loops that talk to NATS when the server answers unexpectedly
//! (docs/storage.md §8.5, "Watching events"): `ajc task watch` and
//! `GET /v1/events` of `ajc server run` name a NATS restart and go on
//! printing events after it; `GET /v1/events` counts it and a message that
//! is not an event in `background_error_total{loop="events"}`. Also
//! `ajc task retry` of an `active` task (docs/processing.md §2.14).

mod support;

use asyncjobs::{Client, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{spawn_worker, wait_for, NatsServer};
use futures::StreamExt;
use std::process::Stdio;
use std::time::Duration;
use support::{ApiServer, BIN, T};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedReceiver;

/// A task state event for `id` as the runtime publishes it.
fn event(id: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","type":"io.choria.asyncjobs.v1.task_state","timestamp":"2022-02-07T10:16:42Z","task_id":"{id}","state":"new","tries":0,"queue":"DEFAULT","task_type":"loops:test"}}"#
    )
}

/// Lines of `pipe`, as they come.
fn lines_of(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Publishes events for `id` on a fresh connection until `seen` reports a
/// line naming it (the watcher may not be subscribed yet, or not again).
async fn publish_until_seen<F>(url: &str, id: &str, mut seen: F)
where
    F: AsyncFnMut() -> Option<String>,
{
    let nc = wait_for(T, "a connection to NATS", || async {
        async_nats::connect(url).await.ok()
    })
    .await;
    tokio::time::timeout(T, async {
        loop {
            nc.publish(format!("CHORIA_AJ.E.task_state.{id}"), event(id).into())
                .await
                .unwrap();
            nc.flush().await.unwrap();
            let waited = tokio::time::timeout(Duration::from_millis(300), async {
                while let Some(line) = seen().await {
                    if line.contains(id) {
                        return true;
                    }
                }
                false
            })
            .await;
            if waited == Ok(true) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line naming {id}"));
}

/// Waits for a line of `log` containing `text`, returning it.
async fn line_with(
    log: &mut UnboundedReceiver<String>,
    text: &str,
    seen: &mut Vec<String>,
) -> String {
    tokio::time::timeout(T, async {
        loop {
            let line = log.recv().await.expect("the log ended");
            seen.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line with {text:?} in {seen:#?}"))
}

/// `ajc task watch` across a NATS restart: stderr says events were missed
/// and events published after the restart are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_watch_names_a_restart_and_goes_on() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let mut child = Command::new(BIN)
        .args(["--server", &url, "task", "watch"])
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = lines_of(child.stdout.take().unwrap());
    let mut err = lines_of(child.stderr.take().unwrap());
    publish_until_seen(&url, "BEFORE", async || out.recv().await).await;

    nats.restart();
    let mut seen = Vec::new();
    let line = line_with(&mut err, "missed", &mut seen).await;
    assert!(line.contains("WARN"), "{line}");
    publish_until_seen(&url, "AFTER", async || out.recv().await).await;
    assert!(child.try_wait().unwrap().is_none(), "ajc task watch ended");
    child.kill().await.unwrap();
}

/// `GET /v1/events` across a NATS restart: the server logs that events
/// were missed and counts it, the stream stays open and carries events
/// published after the restart; a message that is not an event is logged
/// and counted, and the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_names_a_restart_and_goes_on() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let mut server = ApiServer::start(&url, &["--allow-create-default"]).await;
    // no overall timeout: the stream outlives one request's
    let http = reqwest::Client::new();
    let resp = http.get(server.url("/v1/events")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (tx, mut sse) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            let _ = tx.send(String::from_utf8_lossy(&chunk).to_string());
        }
    });
    publish_until_seen(&url, "BEFORE", async || sse.recv().await).await;

    nats.restart();
    let mut seen = Vec::new();
    let line = line_with(&mut server.log, "missed", &mut seen).await;
    assert!(line.contains("WARN"), "{line}");
    publish_until_seen(&url, "AFTER", async || sse.recv().await).await;

    let nc = async_nats::connect(&url).await.unwrap();
    nc.publish("CHORIA_AJ.E.task_state.GARBAGE", "nope".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let line = line_with(&mut server.log, "is not an event", &mut seen).await;
    assert!(line.contains("WARN") && line.contains("GARBAGE"), "{line}");
    publish_until_seen(&url, "LATER", async || sse.recv().await).await;

    let metrics = support::http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: f64 = metrics
        .lines()
        .find(|l| l.starts_with("choria_asyncjobs_background_error_total{loop=\"events\"}"))
        .unwrap_or_else(|| panic!("no events loop count in {metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(counted >= 2.0, "{counted}");
}

/// `ajc task retry ID` of a task a worker runs refuses without `-f`, exits
/// 1 and names the worker its lease names; with `-f` it retries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_an_active_task_names_its_worker_and_needs_force() {
    let nats = NatsServer::start();
    let url = nats.url();
    let client = Client::builder()
        .url(&url)
        .queue(Queue::new("HELD").max_run_time(Duration::from_secs(3600)))
        .build()
        .await
        .unwrap();
    // every run of the task holds on until the end of the test
    let release = tokio_util::sync::CancellationToken::new();
    let held = release.clone();
    let router = Router::new()
        .handle("hold", move |_ctx: TaskContext, _t: Task| {
            let held = held.clone();
            async move {
                held.cancelled().await;
                asyncjobs::handler::to_output(&"released")
            }
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router));
    let mut task = Task::new("hold", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    let lease = wait_for(T, "the worker's lease on the task", || async {
        client.task_holder(&task.id).await.unwrap()
    })
    .await;
    assert_eq!(
        client.load_task(&task.id).await.unwrap().state,
        TaskState::Active
    );

    let ajc = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["--server", &url, "task", "retry"])
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    };
    let refused = ajc(&[&task.id]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("task {} is active", task.id))
            && stderr.contains(&format!("worker {}", lease.worker))
            && stderr.contains("-f"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        client.load_task(&task.id).await.unwrap().state,
        TaskState::Active,
        "a refused retry changes nothing"
    );

    let forced = ajc(&[&task.id, "-f", "--json"]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&forced.stdout);
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    // the worker may have taken the new try already
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        shown["state"] == "retry" || shown["state"] == "active",
        "{stdout}"
    );
    wait_for(T, "the forced retry's try to start", || async {
        (client.load_task(&task.id).await.unwrap().tries >= 2).then_some(())
    })
    .await;

    release.cancel();
    worker.stop().await;
}
