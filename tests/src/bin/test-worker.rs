//! A worker process for crash tests: `test-worker <nats-url> <queue>`.
//!
//! Handles type `work`: announces itself on `test.started.<task id>` with its
//! pid, then hangs forever when `TEST_WORKER_HANG` is set, or completes with
//! its pid as the result.

use asyncjobs::{Client, Queue, Router, Task, TaskContext};
use std::time::Duration;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("nats url");
    let queue = args.next().expect("queue name");
    let hang = std::env::var_os("TEST_WORKER_HANG").is_some();
    let run_time = std::env::var("TEST_WORKER_RUN_TIME")
        .map(|s| s.parse().expect("run time in seconds"))
        .unwrap_or(2);
    let client = Client::builder()
        .url(url)
        .queue(Queue::new(queue).max_run_time(Duration::from_secs(run_time)))
        .build()
        .await
        .expect("connect");
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
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    asyncjobs::handler::to_output(&pid)
                }
            })
            .expect("router")
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    client.worker(router).run(stop).await.expect("worker");
}
