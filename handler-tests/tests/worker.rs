//! Handlers written with `#[task_handler]` run by the generated worker
//! against a real nats-server: in process through `asyncjobs::program` (the
//! code `asyncjobs::main!()` calls) and as the `handlers-worker` binary.

#[path = "../src/handlers.rs"]
mod handlers;

use asyncjobs::program::{self, ProgramError, WorkerArgs};
use asyncjobs::{Client, Handlers, Task, TaskContext, TaskHandle, TaskState, WaitError};
use asyncjobs_tests::{wait_for, wait_for_state, NatsServer};
use handlers::{factor, send_email, sum, Factor, NewEmail, Receipt};
use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn args(server: &NatsServer) -> WorkerArgs {
    WorkerArgs {
        url: Some(server.url()),
        retry_policy: "1m".into(),
        shutdown_grace: Duration::from_secs(5),
        ..WorkerArgs::default()
    }
}

async fn producer(server: &NatsServer) -> Client {
    Client::builder()
        .url(server.url())
        .bind_queue("EMAIL")
        .build()
        .await
        .expect("producer connects")
}

fn email(to: &str) -> NewEmail {
    NewEmail {
        to: to.into(),
        subject: "hello".into(),
    }
}

#[tokio::test]
async fn handlers_are_plain_functions() {
    let task = Task::new(send_email::TASK_TYPE, &email("a@example.net")).unwrap();
    let ctx = TaskContext::detached(task.clone());
    let receipt = handlers::send_email(ctx.clone(), email("a@example.net"))
        .await
        .unwrap();
    assert_eq!(receipt.message_id, format!("<{}@test>", task.id));
    let err = handlers::send_email(ctx, email("")).await.unwrap_err();
    assert!(err.is_terminate());
    assert_eq!(handlers::sum(vec![1, 2, 3]).await.unwrap(), 6);
}

#[test]
fn generated_module_describes_the_handler() {
    assert_eq!(send_email::TASK_TYPE, "email:new");
    assert_eq!(send_email::QUEUE, "EMAIL");
    assert_eq!(send_email::MAX_TRIES, Some(5));
    assert_eq!(send_email::DEADLINE, Some(Duration::from_secs(3600)));
    assert_eq!(factor::QUEUE, "DEFAULT");
    assert_eq!(factor::MAX_TRIES, None);
    assert_eq!((factor::PRIORITY, sum::PRIORITY), (0, 4));
    let _: fn(send_email::Payload) -> NewEmail = |p| p;
    let _: fn(send_email::Output) -> Receipt = |o| o;
    let _: fn(sum::Output) -> i64 = |o| o;

    let def = send_email::HANDLER;
    assert_eq!(def.task_type(), "email:new");
    assert_eq!(def.queue(), "EMAIL");
    assert_eq!(def.payload_type(), "NewEmail");
    assert_eq!(def.output_type(), "Receipt");
    assert!(
        def.name().ends_with("handlers::send_email"),
        "{}",
        def.name()
    );
    // file!() as rustc saw the path: through the #[path] here, directly in the binary
    assert!(
        def.location().starts_with("handler-tests/") && def.location().contains("src/handlers.rs:"),
        "{}",
        def.location()
    );

    let task = send_email::task(&email("b@example.net")).build().unwrap();
    assert_eq!(task.task_type, "email:new");
    assert_eq!(task.max_tries, 5);
    assert_eq!(task.priority, 0);
    assert!(task.deadline.is_some());

    let registered = Handlers::registered();
    let types: Vec<(&str, &str)> = registered
        .iter()
        .map(|h| (h.queue(), h.task_type()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("DEFAULT", "math:factor"),
            ("DEFAULT", "math:sum"),
            ("EMAIL", ""),
            ("EMAIL", "email:new"),
        ]
    );
    registered.check().unwrap();
    assert_eq!(registered.queues(), vec!["DEFAULT", "EMAIL"]);
    let table = program::handler_table(&registered);
    assert!(table.contains("email:new"), "{table}");
    assert!(table.contains("max_tries=5 deadline=1h"), "{table}");
}

#[tokio::test]
async fn generated_worker_runs_typed_tasks() {
    let server = NatsServer::start();
    let mut args = args(&server);
    args.metrics_port = Some(0);
    let workers = program::start(&args, &Handlers::registered())
        .await
        .expect("worker starts");
    assert_eq!(workers.queues(), ["DEFAULT", "EMAIL"]);
    let client = producer(&server).await;

    // typed enqueue and result
    let handle = send_email::enqueue(&client, email("a@example.net"))
        .await
        .unwrap();
    let receipt: Receipt = handle.wait(&client, T).await.unwrap();
    assert_eq!(receipt.to, "a@example.net");
    assert_eq!(receipt.tries, 1);
    assert_eq!(receipt.message_id, format!("<{}@test>", handle.id()));
    let task = handle.load(&client).await.unwrap();
    assert_eq!(task.queue, "EMAIL");
    assert_eq!(task.max_tries, 5);
    assert!(task.deadline.is_some());
    assert_eq!(handle.result(&client).await.unwrap(), Some(receipt));

    // a retried failure (retryable HandlerError), on the EMAIL queue
    let handle = send_email::enqueue(&client, email("flaky@example.net"))
        .await
        .unwrap();
    let receipt = handle.wait(&client, T).await.unwrap();
    assert_eq!(receipt.tries, 2);

    // a retried failure (std::io::Error), on the DEFAULT queue
    let handle = factor::enqueue(
        &client,
        Factor {
            n: 360,
            fail_until_try: 2,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        handle.wait(&client, T).await.unwrap(),
        vec![2, 2, 2, 3, 3, 5]
    );
    assert_eq!(handle.load(&client).await.unwrap().tries, 2);

    // a payload that does not decode is terminated without retries
    let mut bad = Task::builder(send_email::TASK_TYPE)
        .raw_payload(br#"{"to": 42}"#.to_vec())
        .build()
        .unwrap();
    client
        .enqueue_to(send_email::QUEUE, &mut bad)
        .await
        .unwrap();
    let bad = wait_for_state(&client, &bad.id, TaskState::Terminated, T).await;
    assert_eq!(bad.tries, 1);
    assert!(bad.last_err.contains("NewEmail"), "{}", bad.last_err);
    assert!(bad.last_err.contains("invalid type"), "{}", bad.last_err);

    // a handler asking for termination
    let handle = send_email::enqueue(&client, email("")).await.unwrap();
    match handle.wait(&client, T).await {
        Err(WaitError::Failed(task)) => {
            assert_eq!(task.state, TaskState::Terminated);
            assert_eq!(task.last_err, "an email needs a recipient");
            assert_eq!(task.tries, 1);
        }
        other => panic!("expected a terminated task, got {other:?}"),
    }

    // boxed errors count as failures; max_tries = 1 ends the task
    let handle = sum::enqueue(&client, vec![i64::MAX, 1]).await.unwrap();
    let err = handle.wait(&client, T).await.unwrap_err();
    let task = err.task().expect("task loaded");
    assert_eq!(task.state, TaskState::Expired, "{task:?}");
    assert_eq!(task.last_err, "sum overflows i64");

    // the catch-all of the EMAIL queue
    let mut other = Task::new("email:digest", &"weekly").unwrap();
    client.enqueue(&mut other).await.unwrap();
    let other: String = TaskHandle::new(other.id).wait(&client, T).await.unwrap();
    assert_eq!(other, "no specific handler for email:digest");

    // metrics over HTTP
    let addr = workers.metrics_addr().expect("metrics served");
    let body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("choria_asyncjobs_handler_runtime_count"),
        "{body}"
    );
    let missing = tokio::task::spawn_blocking(move || http_get(addr, "/"))
        .await
        .unwrap();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    workers.stop().await.expect("clean shutdown");
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[tokio::test]
async fn startup_errors_are_clear() {
    let free_port = asyncjobs_tests::free_port();
    let args = WorkerArgs {
        url: Some(format!("nats://127.0.0.1:{free_port}")),
        ..WorkerArgs::default()
    };
    let err = program::start(&args, &Handlers::registered())
        .await
        .unwrap_err();
    assert!(matches!(err, ProgramError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("cannot connect to NATS"), "{err}");

    let err = program::start(&args, &Handlers::new()).await.unwrap_err();
    assert!(matches!(err, ProgramError::NoHandlers { .. }), "{err}");

    let args = WorkerArgs {
        queues: vec!["NOPE".into()],
        ..args
    };
    let err = program::start(&args, &Handlers::registered())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no handlers run on queue NOPE; the handlers use: DEFAULT, EMAIL"
    );
}

// ---- the handlers-worker binary -------------------------------------------

fn worker_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_handlers-worker"));
    for var in ["NATS_URL", "NATS_CONTEXT"] {
        cmd.env_remove(var);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("ASYNCJOBS_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(args: &[&str]) -> Output {
    worker_command().args(args).output().expect("worker runs")
}

#[test]
fn binary_help_documents_every_option() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--url",
        "NATS_URL",
        "nats://127.0.0.1:4222",
        "--context",
        "--concurrency",
        "--retry-policy",
        "--metrics-port",
        "--metrics-bind",
        "--log-level",
        "--queue",
        "--shutdown-grace",
        "--scheduler",
        "--list-handlers",
        "--queue-run-time",
        "--queue-max-tries",
        "--queue-concurrency",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn binary_lists_handlers() {
    let out = run(&["--list-handlers"]);
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 5, "{list}");
    assert!(lines[0].starts_with("TASK TYPE"), "{list}");
    assert!(lines[4].starts_with("email:new"), "{list}");
    assert!(lines[4].contains("EMAIL"), "{list}");
    assert!(lines[4].contains("NewEmail -> Receipt"), "{list}");
    assert!(
        lines[4].contains("handler-tests/src/handlers.rs:"),
        "{list}"
    );
}

#[test]
fn binary_exits_non_zero_without_nats() {
    let free_port = asyncjobs_tests::free_port();
    let out = worker_command()
        .env("NATS_URL", format!("nats://127.0.0.1:{free_port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "error: cannot connect to NATS (nats://127.0.0.1:{free_port})"
        )),
        "{stderr}"
    );
    let out = run(&["--concurrency", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_processes_tasks_and_stops_on_sigterm() {
    let server = NatsServer::start();
    let mut worker = Running(
        worker_command()
            .args(["--url", &server.url(), "--retry-policy", "1m"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker starts"),
    );
    // the worker creates its queues on start
    let client = wait_for(T, "the worker to create queue EMAIL", || async {
        Client::builder()
            .url(server.url())
            .bind_queue("EMAIL")
            .build()
            .await
            .ok()
    })
    .await;
    let handle = send_email::enqueue(&client, email("bin@example.net"))
        .await
        .unwrap();
    assert_eq!(handle.wait(&client, T).await.unwrap().to, "bin@example.net");
    let handle = sum::enqueue(&client, vec![40, 2]).await.unwrap();
    assert_eq!(handle.wait(&client, T).await.unwrap(), 42);
    // the attribute's priority, through the lane the worker claimed it from
    assert_eq!(client.load_task(handle.id()).await.unwrap().priority, 4);

    let status = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_for(T, "the worker to exit after SIGTERM", || {
        let exited = worker.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(exit.success(), "worker exited with {exit}");
}

/// `--scheduler NAME` runs the scheduler beside the workers: a schedule for
/// a registered handler fires once this instance is elected, and its task runs.
#[tokio::test]
async fn scheduler_flag_runs_schedules() {
    let server = NatsServer::start();
    let mut args = args(&server);
    args.scheduler = Some("worker-1".into());
    let workers = program::start(&args, &Handlers::registered())
        .await
        .expect("worker starts");
    let client = Client::connect(&server.url()).await.unwrap();
    let template = Task::new("math:sum", &vec![1, 2, 3]).unwrap();
    client
        .new_scheduled_task("every_second", "@every 1s", "DEFAULT", &template)
        .await
        .unwrap();
    // election (splay up to 5 s, announced one 7.5 s interval later), then a fire
    let done = wait_for(
        Duration::from_secs(40),
        "a scheduled task to complete",
        || async {
            let mut tasks = client.list_tasks(1000).await.ok()?;
            while let Some(Ok(t)) = futures::StreamExt::next(&mut tasks).await {
                if t.task_type == "math:sum" && t.state == TaskState::Complete {
                    return Some(t);
                }
            }
            None
        },
    )
    .await;
    assert_eq!(done.queue, "DEFAULT");
    workers.stop().await.unwrap();
}
