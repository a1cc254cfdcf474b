//! A worker process for crash tests: `test-worker <nats-url> <queue>`.
//!
//! Handles type `work`: announces itself on `test.started.<task id>` with its
//! pid, then hangs forever when `TEST_WORKER_HANG` is set, or completes with
//! its pid as the result.
//!
//! Handles type `fault` (the fault suite, `tests/tests/faults.rs`) when
//! `TEST_WORKER_RECORD` names a directory: each run appends `S <task id>` to
//! `<dir>/exec.<pid>` before anything else and `E <task id>` when it is
//! done, each line with one `write` to a file opened for appending, so the
//! lines of a SIGKILLed process survive it; in between it sleeps
//! `TEST_WORKER_SLEEP_MS` (default 20) milliseconds.
//!
//! Other settings: `TEST_WORKER_RUN_TIME` (seconds, default 2) is the run
//! time of the queue it creates; `TEST_WORKER_BIND` binds an existing queue
//! instead (its settings stay as they are); `TEST_WORKER_CONCURRENCY` sets
//! the worker's concurrency; `RUST_LOG` turns on logging to stderr. A
//! server that cannot be reached at start is tried again for 30 s.

use asyncjobs::{Client, Queue, Router, Task, TaskContext};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("nats url");
    let queue = args.next().expect("queue name");
    let hang = std::env::var_os("TEST_WORKER_HANG").is_some();
    let progress = std::env::var_os("TEST_WORKER_PROGRESS").is_some();
    let run_time = std::env::var("TEST_WORKER_RUN_TIME")
        .map(|s| s.parse().expect("run time in seconds"))
        .unwrap_or(2);
    let bind = std::env::var_os("TEST_WORKER_BIND").is_some();
    let builder = || {
        let builder = Client::builder().url(url.clone());
        if bind {
            builder.bind_queue(queue.clone())
        } else {
            builder.queue(Queue::new(queue.clone()).max_run_time(Duration::from_secs(run_time)))
        }
    };
    // a server that is away at start (a restart in the fault suite) is
    // waited for, as a supervisor restarting the worker would
    let connecting = std::time::Instant::now();
    let client = loop {
        match builder().build().await {
            Ok(client) => break client,
            Err(e) if connecting.elapsed() < Duration::from_secs(30) => {
                eprintln!("test-worker: connecting failed, trying again: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("connect: {e}"),
        }
    };
    let nc = client.nats().clone();
    let router = if let Some(program) = std::env::var_os("TEST_WORKER_COMMAND") {
        Router::new()
            .handle(
                "work",
                asyncjobs::remote::ExternalCommand::new(program).expect("command"),
            )
            .expect("router")
    } else {
        Router::new()
            .handle("work", move |ctx: TaskContext, _t: Task| {
                let nc = nc.clone();
                async move {
                    let pid = std::process::id();
                    nc.publish(format!("test.started.{}", ctx.id()), pid.to_string().into())
                        .await
                        .map_err(asyncjobs::HandlerError::retry)?;
                    nc.flush().await.map_err(asyncjobs::HandlerError::retry)?;
                    if hang && progress {
                        // a hung handler that reports progress every 1.1 s
                        let mut n = 0u8;
                        loop {
                            let _ = ctx.progress(n % 100, format!("step {n}"));
                            n = n.wrapping_add(1);
                            tokio::time::sleep(Duration::from_millis(1100)).await;
                        }
                    }
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    asyncjobs::handler::to_output(&pid)
                }
            })
            .expect("router")
    };
    let router = match std::env::var_os("TEST_WORKER_RECORD") {
        Some(dir) => {
            let path = std::path::Path::new(&dir).join(format!("exec.{}", std::process::id()));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
            let file = Arc::new(file);
            let sleep = Duration::from_millis(
                std::env::var("TEST_WORKER_SLEEP_MS")
                    .map(|s| s.parse().expect("sleep in milliseconds"))
                    .unwrap_or(20),
            );
            router
                .handle("fault", move |ctx: TaskContext, _t: Task| {
                    let file = file.clone();
                    async move {
                        record(&file, 'S', ctx.id());
                        tokio::time::sleep(sleep).await;
                        record(&file, 'E', ctx.id());
                        asyncjobs::handler::to_output(&"done")
                    }
                })
                .expect("router")
        }
        None => router,
    };
    let mut worker = client.worker(router);
    if let Ok(n) = std::env::var("TEST_WORKER_CONCURRENCY") {
        worker = worker.concurrency(n.parse().expect("concurrency"));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    worker.run(stop).await.expect("worker");
}

/// Appends `<mark> <id>\n` with a single `write` (whole or not at all).
fn record(mut file: &std::fs::File, mark: char, id: &str) {
    let line = format!("{mark} {id}\n");
    let written = file.write(line.as_bytes()).expect("recording an execution");
    assert_eq!(written, line.len(), "short write recording an execution");
}
