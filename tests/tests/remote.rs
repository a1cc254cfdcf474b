//! Handlers outside the process against a real nats-server: request-reply
//! (worker side, Rust service side, the Python example) and external
//! commands (docs/processing.md §6.2, §6.4).

use asyncjobs::remote::{self, ExternalCommand, RequestReply, RequestReplyServer};
use asyncjobs::{
    typed, Client, Handler, HandlerError, Queue, Router, Task, TaskContext, TaskState,
};
use asyncjobs_tests::{
    client, fast_retry, spawn_worker, wait_for, wait_for_state, NatsServer, RunningWorker,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(20);

fn start(client: &Client, router: Router) -> RunningWorker {
    spawn_worker(client.worker(router).retry_policy(fast_retry()))
}

/// A queue whose handlers get `secs` seconds.
fn queue(name: &str, secs: u64) -> Queue {
    Queue::new(name).max_run_time(Duration::from_secs(secs))
}

/// What a scripted test responder answers: `None` = stay silent.
type Answer = Option<(Option<(&'static str, String)>, Vec<u8>)>;

/// A plain NATS subscriber standing in for a remote service; records every
/// request it receives.
struct Responder {
    requests: Arc<Mutex<Vec<async_nats::Message>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    async fn start(
        nc: &async_nats::Client,
        subject: &str,
        answer: impl Fn(usize) -> Answer + Send + 'static,
    ) -> Responder {
        let mut sub = nc.subscribe(subject.to_string()).await.unwrap();
        nc.flush().await.unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, nc) = (requests.clone(), nc.clone());
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(msg.clone());
                    log.len()
                };
                let (Some(reply), Some((header, body))) = (msg.reply.clone(), answer(n)) else {
                    continue;
                };
                match header {
                    Some((name, value)) => {
                        let mut h = async_nats::HeaderMap::new();
                        h.insert(name, value.as_str());
                        nc.publish_with_headers(reply, h, body.into())
                            .await
                            .unwrap();
                    }
                    None => nc.publish(reply, body.into()).await.unwrap(),
                }
            }
        });
        Responder { requests, task }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn request(&self, i: usize) -> async_nats::Message {
        self.requests.lock().unwrap()[i].clone()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn header(msg: &async_nats::Message, name: &str) -> Option<String> {
    msg.headers
        .as_ref()?
        .get(name)
        .map(|v| v.as_str().to_string())
}

async fn enqueue(client: &Client, task: Task) -> Task {
    let mut task = task;
    client.enqueue(&mut task).await.unwrap();
    task
}

// ----- request-reply, worker side -------------------------------------------------------

#[tokio::test]
async fn reply_body_is_stored_as_go_does_with_protocol_headers() {
    let server = NatsServer::start();
    let client = client(&server, queue("RR", 10)).await;
    // a catch-all route calls the catchall subject
    let responder = Responder::start(client.nats(), "CHORIA_AJ.H.T.catchall", |_| {
        Some((None, b"hello \x00world".to_vec()))
    })
    .await;
    let router = Router::new()
        .handle("", RequestReply::new(client.nats().clone(), ""))
        .unwrap();
    let worker = start(&client, router);

    let before = OffsetDateTime::now_utc();
    let task = enqueue(&client, Task::new("email:new", &"x").unwrap()).await;
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    let after = OffsetDateTime::now_utc();

    let result = done.result.as_ref().unwrap();
    // Go stores the reply bytes as a base64 JSON string
    assert_eq!(result.payload.get(), "\"aGVsbG8gAHdvcmxk\"");
    assert_eq!(remote::reply_payload(result).unwrap(), b"hello \x00world");
    assert_eq!(done.tries, 1);

    assert_eq!(responder.count(), 1);
    let req = responder.request(0);
    assert_eq!(
        header(&req, "AJ-Content-Type").as_deref(),
        Some("application/x-asyncjobs-task+json")
    );
    let sent = Task::from_json(&req.payload).unwrap();
    assert_eq!(sent.id, task.id);
    assert_eq!(sent.state, TaskState::Active);
    assert_eq!(sent.tries, 1);
    // deadline header: RFC 3339 UTC, whole seconds, handler deadline − 2 s
    let d = header(&req, "AJ-Handler-Deadline").unwrap();
    assert_eq!(d.len(), 20, "{d}");
    assert!(d.ends_with('Z') && !d.contains('.'), "{d}");
    let d = asyncjobs::wire::parse_time(&d).unwrap();
    let run = time::Duration::seconds(10);
    assert!(
        d >= before + run - time::Duration::seconds(3),
        "{d} vs {before}"
    );
    assert!(
        d <= after + run - time::Duration::seconds(2),
        "{d} vs {after}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn error_header_retries_with_its_text() {
    let server = NatsServer::start();
    let client = client(&server, queue("RR", 10)).await;
    let responder = Responder::start(client.nats(), "CHORIA_AJ.H.T.db:write", |n| {
        Some((
            Some(("AJ-Error", format!("database down ({n})"))),
            Vec::new(),
        ))
    })
    .await;
    let router = Router::new()
        .handle(
            "db:write",
            RequestReply::new(client.nats().clone(), "db:write"),
        )
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(
        &client,
        Task::builder("db:write")
            .payload(&1)
            .max_tries(2)
            .build()
            .unwrap(),
    )
    .await;
    // retried once, then out of tries
    let done = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(done.tries, 2);
    assert_eq!(done.last_err, "database down (2)");
    assert_eq!(responder.count(), 2);
    worker.stop().await;
}

#[tokio::test]
async fn terminate_header_terminates() {
    let server = NatsServer::start();
    let client = client(&server, queue("RR", 10)).await;
    let _responder = Responder::start(client.nats(), "CHORIA_AJ.H.T.img:resize", |_| {
        Some((
            Some(("AJ-Terminate", "not an image".into())),
            b"ignored".to_vec(),
        ))
    })
    .await;
    let router = Router::new()
        .handle(
            "img:resize",
            RequestReply::new(client.nats().clone(), "img:resize"),
        )
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(&client, Task::new("img:resize", &"x").unwrap()).await;
    let done = wait_for_state(&client, &task.id, TaskState::Terminated, T).await;
    assert_eq!(done.last_err, "not an image: terminate task");
    assert_eq!(done.tries, 1);
    assert!(done.result.is_none());
    worker.stop().await;
}

#[tokio::test]
async fn no_responders_retries_with_a_clear_error() {
    let server = NatsServer::start();
    let client = client(&server, queue("RR", 10)).await;
    let router = Router::new()
        .handle("nobody", RequestReply::new(client.nats().clone(), "nobody"))
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(
        &client,
        Task::builder("nobody")
            .payload(&1)
            .max_tries(2)
            .build()
            .unwrap(),
    )
    .await;
    let done = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(done.tries, 2);
    assert!(
        done.last_err
            .starts_with("request-reply callout failed: nats: no responders available"),
        "{}",
        done.last_err
    );
    assert!(
        done.last_err.contains("CHORIA_AJ.H.T.nobody"),
        "{}",
        done.last_err
    );
    worker.stop().await;
}

#[tokio::test]
async fn silent_service_times_out_before_the_deadline() {
    let server = NatsServer::start();
    let client = client(&server, queue("RR", 4)).await;
    let responder = Responder::start(client.nats(), "CHORIA_AJ.H.T.slow", |_| None).await;
    let router = Router::new()
        .handle("slow", RequestReply::new(client.nats().clone(), "slow"))
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(
        &client,
        Task::builder("slow")
            .payload(&1)
            .max_tries(1)
            .build()
            .unwrap(),
    )
    .await;
    let done = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert!(
        done.last_err.starts_with(
            "request-reply callout failed: timed out: no reply from CHORIA_AJ.H.T.slow"
        ),
        "{}",
        done.last_err
    );
    assert_eq!(responder.count(), 1);
    worker.stop().await;
}

#[tokio::test]
async fn too_short_deadline_is_not_sent() {
    let server = NatsServer::start();
    // 2 s max run time leaves less than the 3 s a request needs
    let client = client(&server, queue("RR", 2)).await;
    let responder = Responder::start(client.nats(), "CHORIA_AJ.H.T.quick", |_| {
        Some((None, b"ok".to_vec()))
    })
    .await;
    let router = Router::new()
        .handle("quick", RequestReply::new(client.nats().clone(), "quick"))
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(
        &client,
        Task::builder("quick")
            .payload(&1)
            .max_tries(2)
            .build()
            .unwrap(),
    )
    .await;
    let done = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(done.tries, 2);
    assert!(
        done.last_err.starts_with("deadline too short: "),
        "{}",
        done.last_err
    );
    assert!(done.last_err.contains("max run time"), "{}", done.last_err);
    assert_eq!(responder.count(), 0);
    worker.stop().await;
}

// ----- request-reply, Rust service side -------------------------------------------------

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Resize {
    width: u32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Resized {
    id: String,
    width: u32,
    deadline_known: bool,
}

/// The same typed handler a worker could register, served remotely.
fn resize_handler() -> impl Handler {
    typed(|ctx: TaskContext, r: Resize| async move {
        match r.width {
            0 => Err(HandlerError::terminate("width must be positive")),
            1 => panic!("width 1 crashes this handler"),
            2 if ctx.tries() < 2 => Err(HandlerError::retry("scaler busy\nretry later")),
            width => Ok(Resized {
                id: ctx.id().to_string(),
                width,
                deadline_known: ctx.handler_deadline().is_some(),
            }),
        }
    })
}

#[tokio::test]
async fn rust_service_serves_a_worker() {
    let server = NatsServer::start();
    let client = client(&server, queue("RR", 10)).await;
    // two members of the queue group share the requests
    let nc2 = async_nats::connect(server.url()).await.unwrap();
    let service_a = RequestReplyServer::new(client.nats().clone(), "img:resize", resize_handler())
        .concurrency(4)
        .start()
        .await
        .unwrap();
    let service_b = RequestReplyServer::new(nc2, "img:resize", resize_handler())
        .start()
        .await
        .unwrap();
    assert_eq!(service_a.subject(), "CHORIA_AJ.H.T.img:resize");

    let router = Router::new()
        .handle(
            "img:resize",
            RequestReply::new(client.nats().clone(), "img:resize"),
        )
        .unwrap();
    let worker = start(&client, router);

    let crash = enqueue(
        &client,
        Task::builder("img:resize")
            .payload(&Resize { width: 1 })
            .max_tries(1)
            .build()
            .unwrap(),
    )
    .await;
    let zero = enqueue(
        &client,
        Task::new("img:resize", &Resize { width: 0 }).unwrap(),
    )
    .await;
    let busy = enqueue(
        &client,
        Task::builder("img:resize")
            .payload(&Resize { width: 2 })
            .max_tries(2)
            .build()
            .unwrap(),
    )
    .await;
    let mut ok = Vec::new();
    for width in 3..9 {
        ok.push(enqueue(&client, Task::new("img:resize", &Resize { width }).unwrap()).await);
    }
    let bad = enqueue(&client, Task::new("img:resize", &"not an object").unwrap()).await;

    // a panic is answered with AJ-Error and the services keep serving
    let crashed = wait_for_state(&client, &crash.id, TaskState::Expired, T).await;
    assert_eq!(
        crashed.last_err,
        "handler panicked: width 1 crashes this handler"
    );
    let zero = wait_for_state(&client, &zero.id, TaskState::Terminated, T).await;
    assert_eq!(zero.last_err, "width must be positive: terminate task");
    let bad = wait_for_state(&client, &bad.id, TaskState::Terminated, T).await;
    assert!(
        bad.last_err
            .starts_with("invalid payload for task type \"img:resize\""),
        "{}",
        bad.last_err
    );
    assert!(
        bad.last_err.ends_with(": terminate task"),
        "{}",
        bad.last_err
    );
    // the retryable error went back as one header line and the next try succeeded
    let busy = wait_for_state(&client, &busy.id, TaskState::Complete, T).await;
    assert_eq!(busy.tries, 2);
    for (task, width) in ok.iter().zip(3..) {
        let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
        assert_eq!(done.tries, 1);
        // the body is the handler's JSON; the worker stores it base64-encoded
        let body = remote::reply_payload(done.result.as_ref().unwrap()).unwrap();
        let resized: Resized = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            resized,
            Resized {
                id: task.id.clone(),
                width,
                deadline_known: true
            }
        );
    }

    worker.stop().await;
    service_a.stop().await.unwrap();
    service_b.stop().await.unwrap();
}

#[tokio::test]
async fn stopped_service_leaves_no_responders() {
    let server = NatsServer::start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let service = RequestReplyServer::new(
        nc.clone(),
        "echo",
        |_ctx: TaskContext, t: Task| async move { asyncjobs::handler::to_output(&t.id) },
    )
    .start()
    .await
    .unwrap();
    let task = Task::new("echo", &1).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("AJ-Content-Type", "application/x-asyncjobs-task+json");
    let reply = nc
        .request_with_headers(
            "CHORIA_AJ.H.T.echo",
            headers.clone(),
            task.to_json().unwrap().into(),
        )
        .await
        .unwrap();
    assert_eq!(reply.payload, format!("\"{}\"", task.id));
    assert!(reply.headers.is_none_or(|h| h.get("AJ-Error").is_none()));

    // a wrong content type is refused with AJ-Error
    let mut wrong = async_nats::HeaderMap::new();
    wrong.insert("AJ-Content-Type", "text/plain");
    let reply = nc
        .request_with_headers("CHORIA_AJ.H.T.echo", wrong, "hi".into())
        .await
        .unwrap();
    let err = header(&reply, "AJ-Error").unwrap();
    assert!(err.starts_with("unsupported content type"), "{err}");

    service.stop().await.unwrap();
    let err = nc
        .request_with_headers(
            "CHORIA_AJ.H.T.echo",
            headers.clone(),
            task.to_json().unwrap().into(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);

    // run() serves until its shutdown token is cancelled
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(
        RequestReplyServer::new(
            nc.clone(),
            "echo",
            |_ctx: TaskContext, _t: Task| async move { asyncjobs::handler::to_output(&"again") },
        )
        .run(shutdown.clone()),
    );
    let body = wait_for(T, "run() to serve", || {
        let (nc, headers, body) = (nc.clone(), headers.clone(), task.to_json().unwrap());
        async move {
            nc.request_with_headers("CHORIA_AJ.H.T.echo", headers, body.into())
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(body.payload, "\"again\"");
    shutdown.cancel();
    serving.await.unwrap().unwrap();

    let invalid =
        RequestReplyServer::new(nc, "not valid", |_ctx: TaskContext, t: Task| async move {
            asyncjobs::handler::to_output(&t.id)
        })
        .start()
        .await;
    assert!(matches!(invalid, Err(asyncjobs::Error::TaskTypeInvalid(_))));
}

// ----- external commands ----------------------------------------------------------------

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn command_stdout_is_the_result_and_the_task_file_is_removed() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMD", 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "ok.sh",
        r#"echo "file=$CHORIA_AJ_TASK"
echo "pkg=${CARGO_PKG_NAME:-unset} home=${HOME:-unset} extra=$EXTRA"
cat "$CHORIA_AJ_TASK"
echo "this goes to stderr" >&2"#,
    );
    let router = Router::new()
        .handle(
            "cmd:ok",
            ExternalCommand::new(&cmd).unwrap().env("EXTRA", "yes"),
        )
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(
        &client,
        Task::new("cmd:ok", &serde_json::json!({"a": 1})).unwrap(),
    )
    .await;
    let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
    // Go stores the output as a JSON string
    let out: String = done.result_as().unwrap().unwrap();
    let mut lines = out.lines();
    let file = lines
        .next()
        .unwrap()
        .strip_prefix("file=")
        .unwrap()
        .to_string();
    assert!(
        Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("asyncjobs-task"),
        "{file}"
    );
    assert_eq!(lines.next(), Some("pkg=unset home=unset extra=yes"));
    let sent = Task::from_json(lines.next().unwrap().as_bytes()).unwrap();
    assert_eq!(sent.id, task.id);
    assert_eq!(sent.state, TaskState::Active);
    assert_eq!(sent.tries, 1);
    assert!(!out.contains("stderr"));
    assert!(!Path::new(&file).exists(), "task file {file} left behind");
    worker.stop().await;
}

#[tokio::test]
async fn failing_command_is_retried_with_stderr() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMD", 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "fail.sh",
        "echo partial output\necho \"disk full on $CHORIA_AJ_TASK\" > \"$(dirname \"$0\")/file\"\necho 'boom: disk full' >&2\nexit 3",
    );
    let router = Router::new()
        .handle("cmd:fail", ExternalCommand::new(&cmd).unwrap())
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(
        &client,
        Task::builder("cmd:fail")
            .payload(&1)
            .max_tries(2)
            .build()
            .unwrap(),
    )
    .await;
    let done = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert_eq!(done.tries, 2);
    assert_eq!(
        done.last_err,
        "execution failed: exit status 3: boom: disk full"
    );
    let file = std::fs::read_to_string(dir.path().join("file")).unwrap();
    let file = file.trim().strip_prefix("disk full on ").unwrap();
    assert!(!Path::new(file).exists(), "task file {file} left behind");
    worker.stop().await;
}

fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // a zombie waiting for a reaper is dead too
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test]
async fn hanging_command_is_killed_at_the_deadline() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMD", 2)).await;
    let dir = tempfile::tempdir().unwrap();
    // the script starts a child of its own: the whole group must go
    let cmd = script(
        dir.path(),
        "hang.sh",
        r#"out="$(dirname "$0")"
echo "$CHORIA_AJ_TASK" > "$out/file"
echo "about to hang" >&2
sleep 60 &
echo $! > "$out/pid"
wait"#,
    );
    let router = Router::new()
        .handle("cmd:hang", ExternalCommand::new(&cmd).unwrap())
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(
        &client,
        Task::builder("cmd:hang")
            .payload(&1)
            .max_tries(1)
            .build()
            .unwrap(),
    )
    .await;
    let done = wait_for_state(&client, &task.id, TaskState::Expired, T).await;
    assert!(
        done.last_err
            .starts_with("execution failed: signal: killed: still running at the handler deadline"),
        "{}",
        done.last_err
    );
    assert!(
        done.last_err.ends_with(": about to hang"),
        "{}",
        done.last_err
    );
    let file = std::fs::read_to_string(dir.path().join("file")).unwrap();
    assert!(
        !Path::new(file.trim()).exists(),
        "task file {file} left behind"
    );
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    wait_for(T, "the command's child to be killed", || async {
        process_gone(pid.trim()).then_some(())
    })
    .await;
    worker.stop().await;
}

// Issue 29: the try ends when the command exits, not when the pipes a
// background process holds close (docs/processing.md §6.4,
// docs/go-differences.md §61).

/// Enqueues one try of `task_type` and waits until it reaches `state`.
async fn one_try(client: &Client, task_type: &str, state: TaskState, wait: Duration) -> Task {
    let task = enqueue(
        client,
        Task::builder(task_type)
            .payload(&1)
            .max_tries(1)
            .build()
            .unwrap(),
    )
    .await;
    wait_for_state(client, &task.id, state, wait).await
}

/// Waits until the process whose pid the script wrote to `file` is gone.
async fn wait_gone(file: &Path, what: &str) {
    let pid = std::fs::read_to_string(file).unwrap();
    wait_for(T, what, || async { process_gone(pid.trim()).then_some(()) }).await;
}

/// The issue's example: a background `sleep` holds stdout and stderr open
/// long past the queue's run time; the task completes with the command's
/// output, in one try, before its deadline.
#[tokio::test]
async fn command_with_a_background_process_completes_when_it_exits() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMD", 20)).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(dir.path(), "cmd.sh", "sleep 40 & echo started; exit 0");
    let router = Router::new()
        .handle("cmd:bg", ExternalCommand::new(&cmd).unwrap())
        .unwrap();
    let worker = start(&client, router);
    let done = one_try(&client, "cmd:bg", TaskState::Complete, T).await;
    assert_eq!(done.tries, 1);
    assert_eq!(done.last_err, "", "a time-out or a failure was recorded");
    let out: String = done.result_as().unwrap().unwrap();
    assert_eq!(out, "started\n");
    let completed = done.result.as_ref().unwrap().completed;
    let deadline = done.tried.unwrap() + time::Duration::seconds(20);
    assert!(
        completed < deadline,
        "completed {completed} after the deadline {deadline}"
    );
    worker.stop().await;
}

/// What the command left running in its process group does not outlive
/// the try.
#[tokio::test]
async fn command_background_process_is_ended_after_the_try() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMD", 20)).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "cmd.sh",
        r#"sleep 40 &
echo $! > "$(dirname "$0")/pid"
echo started; exit 0"#,
    );
    let router = Router::new()
        .handle("cmd:bg", ExternalCommand::new(&cmd).unwrap())
        .unwrap();
    let worker = start(&client, router);
    let done = one_try(&client, "cmd:bg", TaskState::Complete, T).await;
    let out: String = done.result_as().unwrap().unwrap();
    assert_eq!(out, "started\n");
    wait_gone(&dir.path().join("pid"), "the background sleep to be ended").await;
    worker.stop().await;
}

/// A failing command with a background child: a failed try with the
/// command's stderr, not a time-out; the child is ended too.
#[tokio::test]
async fn failing_command_with_a_background_process_fails_at_once() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMD", 20)).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "cmd.sh",
        r#"sleep 40 &
echo $! > "$(dirname "$0")/pid"
echo some output
echo 'could not reach the service' >&2
exit 4"#,
    );
    let router = Router::new()
        .handle("cmd:bgfail", ExternalCommand::new(&cmd).unwrap())
        .unwrap();
    let worker = start(&client, router);
    let done = one_try(&client, "cmd:bgfail", TaskState::Expired, T).await;
    assert_eq!(done.tries, 1);
    assert_eq!(
        done.last_err,
        "execution failed: exit status 4: could not reach the service"
    );
    wait_gone(&dir.path().join("pid"), "the background sleep to be ended").await;
    worker.stop().await;
}

/// A child that keeps writing after the command exited: its output is read
/// for the grace only, then the task ends and the child is ended.
#[tokio::test]
async fn command_output_after_exit_is_cut_at_the_grace() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMD", 20)).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "cmd.sh",
        r#"( sleep 0.2; while :; do echo tick; sleep 0.05; done ) &
echo $! > "$(dirname "$0")/pid"
echo started; exit 0"#,
    );
    let router = Router::new()
        .handle(
            "cmd:chatty",
            ExternalCommand::new(&cmd)
                .unwrap()
                .output_grace(Duration::from_secs(2)),
        )
        .unwrap();
    let worker = start(&client, router);
    let done = one_try(&client, "cmd:chatty", TaskState::Complete, T).await;
    assert_eq!(done.last_err, "");
    let out: String = done.result_as().unwrap().unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("started"), "{out}");
    let ticks: Vec<&str> = lines.collect();
    // written after the exit, read during the grace
    assert!(!ticks.is_empty(), "nothing read after the exit: {out:?}");
    assert!(ticks.iter().all(|l| *l == "tick"), "{out:?}");
    wait_gone(&dir.path().join("pid"), "the writing child to be ended").await;
    worker.stop().await;
}

async fn set_run_time(client: &Client, queue: &str, run_time: Duration) {
    let update = asyncjobs::QueueUpdate {
        max_run_time: Some(run_time),
        ..asyncjobs::QueueUpdate::default()
    };
    let info = client.configure_queue(queue, update).await.unwrap();
    assert_eq!(info.queue.max_run_time, run_time);
}

/// Waits until the script wrote `file` (it has started).
async fn wait_started(file: &Path) {
    wait_for(T, "the command to start", || async {
        file.exists().then_some(())
    })
    .await;
}

/// Runs `cmd` (a script that touches `started` beside itself) as one
/// `cmd:long` task with a single try; returns once it has started.
async fn start_long_command(client: &Client, cmd: &Path, dir: &Path) -> (RunningWorker, Task) {
    let router = Router::new()
        .handle("cmd:long", ExternalCommand::new(cmd).unwrap())
        .unwrap();
    let worker = start(client, router);
    let task = enqueue(
        client,
        Task::builder("cmd:long")
            .payload(&1)
            .max_tries(1)
            .build()
            .unwrap(),
    )
    .await;
    wait_started(&dir.join("started")).await;
    (worker, task)
}

/// The queue's run time raised while the command runs (the worker sees it
/// within its 10 s refresh): the command is not killed at the old run
/// time and completes.
#[tokio::test]
async fn raised_run_time_lets_a_running_command_finish() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMDRT", 16)).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "cmd.sh",
        r#"touch "$(dirname "$0")/started"
sleep 20
echo finished"#,
    );
    let (worker, task) = start_long_command(&client, &cmd, dir.path()).await;
    set_run_time(&client, "CMDRT", Duration::from_secs(60)).await;
    let done = wait_for_state(
        &client,
        &task.id,
        TaskState::Complete,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done.tries, 1);
    let out: String = done.result_as().unwrap().unwrap();
    assert_eq!(out, "finished\n");
    worker.stop().await;
}

/// The queue's run time lowered while the command runs: the command is
/// ended at the new deadline's kill point, so the failure names it (rather
/// than the worker's generic time-out).
#[tokio::test]
async fn lowered_run_time_stops_a_running_command() {
    let server = NatsServer::start();
    let client = client(&server, queue("CMDLOW", 60)).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "cmd.sh",
        r#"touch "$(dirname "$0")/started"
echo "still busy" >&2
sleep 120"#,
    );
    let (worker, task) = start_long_command(&client, &cmd, dir.path()).await;
    // still ahead when the worker's refresh sees it
    set_run_time(&client, "CMDLOW", Duration::from_secs(20)).await;
    let done = wait_for_state(
        &client,
        &task.id,
        TaskState::Expired,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done.tries, 1);
    assert!(
        done.last_err
            .starts_with("execution failed: signal: killed: still running at the handler deadline"),
        "{}",
        done.last_err
    );
    assert!(done.last_err.ends_with(": still busy"), "{}", done.last_err);
    worker.stop().await;
}

#[tokio::test]
async fn missing_command_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = ExternalCommand::new(dir.path().join("nope")).unwrap_err();
    assert!(err.to_string().contains("command not found"), "{err}");
    let err = ExternalCommand::new(dir.path()).unwrap_err();
    assert!(err.to_string().contains("command not found"), "{err}");

    // removed after registration: each call checks again
    let cmd = script(dir.path(), "gone.sh", "echo hi");
    let handler = ExternalCommand::new(&cmd).unwrap();
    let task = Task::new("t", &1).unwrap();
    let out = handler
        .call(TaskContext::detached(task.clone()), task.clone())
        .await
        .unwrap();
    assert_eq!(out.get(), "\"hi\\n\"");
    std::fs::remove_file(&cmd).unwrap();
    let err = handler
        .call(TaskContext::detached(task.clone()), task)
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        format!("command not found: {}", cmd.display())
    );
    assert!(!err.is_terminate());
}

// ----- the Python example ---------------------------------------------------------------

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ASYNCJOBS_PYTHON").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-nats/bin/python")
}

#[derive(Debug, Deserialize, PartialEq)]
struct Sum {
    sum: f64,
    count: usize,
    handled_by: String,
    #[serde(rename = "try")]
    try_: i64,
}

#[tokio::test]
async fn python_handler_completes_tasks_from_rust() {
    let server = NatsServer::start();
    let client = client(&server, queue("PY", 10)).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/remote-python/handler.py");
    let py = python();
    let mut child = tokio::process::Command::new(&py)
        .arg(&script)
        .args(["--url", &server.url(), "--type", "py:sum"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): source scripts/nats-server-env.sh to install nats-py \
                 and set ASYNCJOBS_PYTHON",
                py.display()
            )
        });
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(T, stdout.next_line())
        .await
        .expect("python handler to start")
        .unwrap()
        .expect("python handler to print its ready line (is nats-py installed?)");
    assert_eq!(
        ready,
        "serving CHORIA_AJ.H.T.py:sum in queue group asyncjobs"
    );

    let router = Router::new()
        .handle("py:sum", RequestReply::new(client.nats().clone(), "py:sum"))
        .unwrap();
    let worker = start(&client, router);
    let mut sums = Vec::new();
    for n in 1..=5 {
        let numbers: Vec<i64> = (1..=n).collect();
        let task = Task::new("py:sum", &serde_json::json!({ "numbers": numbers })).unwrap();
        sums.push((enqueue(&client, task).await, n));
    }
    let flaky = enqueue(
        &client,
        Task::new(
            "py:sum",
            &serde_json::json!({"numbers": [2.5, 2.5], "fail_tries": 1}),
        )
        .unwrap(),
    )
    .await;
    let bad = enqueue(
        &client,
        Task::new("py:sum", &serde_json::json!({"numbers": [1, "x"]})).unwrap(),
    )
    .await;
    // the worker hands the trace context on to the remote handler
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = enqueue(
        &client,
        Task::builder("py:sum")
            .payload(&serde_json::json!({"numbers": [1]}))
            .traceparent(traceparent)
            .build()
            .unwrap(),
    )
    .await;

    let done = wait_for_state(&client, &traced.id, TaskState::Complete, T).await;
    let body = remote::reply_payload(done.result.as_ref().unwrap()).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["traceparent"], traceparent, "{reply}");

    for (task, n) in &sums {
        let done = wait_for_state(&client, &task.id, TaskState::Complete, T).await;
        let body = remote::reply_payload(done.result.as_ref().unwrap()).unwrap();
        let sum: Sum = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            sum,
            Sum {
                sum: (n * (n + 1) / 2) as f64,
                count: *n as usize,
                handled_by: "python".into(),
                try_: 1
            }
        );
    }
    let flaky = wait_for_state(&client, &flaky.id, TaskState::Complete, T).await;
    assert_eq!(flaky.tries, 2);
    let body = remote::reply_payload(flaky.result.as_ref().unwrap()).unwrap();
    assert_eq!(serde_json::from_slice::<Sum>(&body).unwrap().sum, 5.0);
    let bad = wait_for_state(&client, &bad.id, TaskState::Terminated, T).await;
    assert_eq!(
        bad.last_err,
        "invalid payload: numbers must all be numbers: terminate task"
    );
    worker.stop().await;

    // SIGTERM stops it gracefully
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(T, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "python handler exited with {exit}");
    assert_eq!(
        stdout.next_line().await.unwrap().as_deref(),
        Some("stopped")
    );
}

/// `background_error_total{loop="request_reply"}` of this process.
fn request_reply_errors() -> f64 {
    asyncjobs::metrics::render()
        .lines()
        .find(|l| l.starts_with("choria_asyncjobs_background_error_total{loop=\"request_reply\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A service across a server restart: the lost connection is counted in
/// `background_error_total{loop="request_reply"}` (and logged), and
/// requests are answered again once the connection is back.
#[tokio::test]
async fn a_service_names_a_server_restart_and_serves_after_it() {
    let mut server = NatsServer::start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let service = RequestReplyServer::new(
        nc.clone(),
        "echo",
        |_ctx: TaskContext, t: Task| async move { asyncjobs::handler::to_output(&t.id) },
    )
    .start()
    .await
    .unwrap();
    let task = Task::new("echo", &1).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("AJ-Content-Type", "application/x-asyncjobs-task+json");
    // answered once before the restart: the service is serving
    let reply = nc
        .request_with_headers(
            "CHORIA_AJ.H.T.echo",
            headers.clone(),
            task.to_json().unwrap().into(),
        )
        .await
        .unwrap();
    assert_eq!(reply.payload, format!("\"{}\"", task.id));
    let before = request_reply_errors();

    server.restart();
    asyncjobs_tests::wait_for(Duration::from_secs(30), "the restart counted", || async {
        (request_reply_errors() > before).then_some(())
    })
    .await;
    let requester = async_nats::connect(server.url()).await.unwrap();
    let reply = asyncjobs_tests::wait_for(Duration::from_secs(30), "an answer", || async {
        requester
            .request_with_headers(
                "CHORIA_AJ.H.T.echo",
                headers.clone(),
                task.to_json().unwrap().into(),
            )
            .await
            .ok()
    })
    .await;
    assert_eq!(reply.payload, format!("\"{}\"", task.id));
    service.stop().await.unwrap();
}

/// Issue 31: a cancel of a task whose handler is a request-reply service
/// reaches the service too: the request names the task's cancel subject
/// (`AJ-Cancel-Subject`), the Rust service listens on it, and its handler's
/// `cancelled()` fires; the task ends `terminated`, cancelled.
#[tokio::test]
async fn a_cancel_reaches_the_request_reply_service() {
    let server = NatsServer::start();
    let client = client(&server, queue("RRCANCEL", 60)).await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (stopped_tx, mut stopped) = tokio::sync::mpsc::unbounded_channel::<String>();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let service = RequestReplyServer::new(nc, "render", move |ctx: TaskContext, t: Task| {
        let (started_tx, stopped_tx) = (started_tx.clone(), stopped_tx.clone());
        async move {
            let _ = started_tx.send(());
            ctx.cancelled().await;
            let _ = stopped_tx.send(t.id.clone());
            Err(HandlerError::retry("stopped by its cancel"))
        }
    })
    .start()
    .await
    .unwrap();
    let router = Router::new()
        .handle("render", RequestReply::new(client.nats().clone(), "render"))
        .unwrap();
    let worker = start(&client, router);
    let task = enqueue(&client, Task::new("render", &"frame").unwrap()).await;
    tokio::time::timeout(T, started.recv())
        .await
        .expect("the service runs the task")
        .unwrap();
    assert!(matches!(
        client.cancel_task(&task.id, "the test").await.unwrap(),
        asyncjobs::Cancelled::Running(_)
    ));
    let stopped_id = tokio::time::timeout(T, stopped.recv())
        .await
        .expect("the service's handler is cancelled")
        .unwrap();
    assert_eq!(stopped_id, task.id);
    let ended = wait_for_state(&client, &task.id, TaskState::Terminated, T).await;
    assert!(
        ended.last_err.starts_with("cancelled by the test"),
        "{}",
        ended.last_err
    );
    worker.stop().await;
    service.stop().await.unwrap();
}
