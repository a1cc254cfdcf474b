//! The programs `asyncjobs::main!` generates, run as processes: one with no
//! handler (`empty-worker`) and one with shared state and middleware
//! (`state-worker`).

use asyncjobs::{Client, TaskHandle};
use asyncjobs_tests::{wait_for, NatsServer};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
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

fn run(program: &str, args: &[&str]) -> Output {
    command(program).args(args).output().expect("program runs")
}

const EMPTY: &str = env!("CARGO_BIN_EXE_empty-worker");
const STATE: &str = env!("CARGO_BIN_EXE_state-worker");

/// What a worker with no handler prints: the fix, with the package's
/// library crate name.
fn assert_names_the_fix(out: &Output) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: no task handlers registered: annotate async fns with"),
        "{stderr}"
    );
    assert!(
        stderr.contains("write `asyncjobs::main!(asyncjobs_handler_tests);`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn listing_no_handlers_fails_with_the_fix() {
    let out = run(EMPTY, &["--list-handlers"]);
    assert_names_the_fix(&out);
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn starting_with_no_handlers_fails_before_connecting() {
    let free_port = asyncjobs_tests::free_port();
    let started = Instant::now();
    let out = run(EMPTY, &["--url", &format!("nats://127.0.0.1:{free_port}")]);
    assert_names_the_fix(&out);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn main_options_show_in_the_listing() {
    let out = run(STATE, &["--list-handlers"]);
    assert!(out.status.success(), "{out:?}");
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.contains("greet"), "{list}");
    assert!(
        list.contains("queue_run_time=2m0s queue_max_tries=7 State<Greeting> State<Times>"),
        "{list}"
    );
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn states_and_middleware_from_main_reach_the_handler() {
    let server = NatsServer::start();
    let _worker = Running(
        command(STATE)
            .args(["--url", &server.url()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker starts"),
    );
    let client = wait_for(T, "the worker to create queue GREETINGS", || async {
        Client::builder()
            .url(server.url())
            .bind_queue("GREETINGS")
            .build()
            .await
            .ok()
    })
    .await;
    // created with the settings its handler declares
    let queue = client.queue();
    assert_eq!(queue.max_run_time, Duration::from_secs(120));
    assert_eq!(queue.max_tries, 7);

    let mut task = asyncjobs::Task::new("greet", &"bob").unwrap();
    client.enqueue(&mut task).await.unwrap();
    let greeting: String = TaskHandle::new(task.id).wait(&client, T).await.unwrap();
    // the first middleware is the outermost: it wraps what the second made
    assert_eq!(greeting, r#"outer("inner(\"hello bob, hello bob\")")"#);
}
