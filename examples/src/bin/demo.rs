//! The demo: enqueues email tasks into the `DEMO` queue and runs a worker
//! that processes them, one of them failing once to show a retry.
//!
//! `NATS_URL` picks the server (default `nats://127.0.0.1:4222`); the first
//! argument is the number of tasks (default 20).

use asyncjobs::{
    typed, Client, HandlerError, LinearPolicy, Queue, Router, Task, TaskContext, TaskState,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Serialize, Deserialize)]
struct NewEmail {
    to: String,
    subject: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    message_id: String,
    attempt: i64,
}

async fn send_email(ctx: TaskContext, email: NewEmail) -> Result<Receipt, HandlerError> {
    if email.to.starts_with("flaky") && ctx.tries() == 1 {
        return Err(HandlerError::retry("mail server busy, try again"));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(Receipt {
        message_id: format!("<{}@demo>", ctx.id()),
        attempt: ctx.tries(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20);

    let client = Client::builder()
        .url(&url)
        .queue(
            Queue::new("DEMO")
                .max_run_time(Duration::from_secs(30))
                .max_tries(5),
        )
        .build()
        .await?;
    let caps = client.capabilities();
    println!(
        "connected to {url} (nats-server {}); queue DEMO ready",
        caps.version
    );
    if let Some(off) = caps.summary() {
        eprintln!("warning: {off}");
    }

    let started = Instant::now();
    let mut tasks: Vec<Task> = (0..count)
        .map(|i| {
            let to = if i == 0 {
                "flaky@example.net".to_string()
            } else {
                format!("user{i}@example.net")
            };
            Task::new(
                "email:new",
                &NewEmail {
                    to,
                    subject: format!("hello #{i}"),
                },
            )
        })
        .collect::<Result<_, _>>()?;
    for r in client.enqueue_many(&mut tasks).await {
        r?;
    }
    println!("enqueued {count} tasks in {:?}", started.elapsed());

    let router = Router::new().handle("email:new", typed(send_email))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = client
        .worker(router)
        .concurrency(10)
        .retry_policy(LinearPolicy::new(
            5,
            Duration::from_millis(200),
            Duration::from_secs(2),
            0.5,
        ));
    let worker = tokio::spawn(worker.run(shutdown.clone()));

    for task in &tasks {
        loop {
            let t = client.load_task(&task.id).await?;
            match t.state {
                TaskState::Complete => {
                    let r: Receipt = t.result_as()?.expect("complete tasks have a result");
                    println!(
                        "{} complete after {} tr{}: {}",
                        t.id,
                        r.attempt,
                        if r.attempt == 1 { "y" } else { "ies" },
                        r.message_id
                    );
                    break;
                }
                s if s.is_final() => {
                    return Err(format!("task {} ended {s}: {}", t.id, t.last_err).into())
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    println!("all {count} tasks complete in {:?}", started.elapsed());
    shutdown.cancel();
    worker.await??;
    Ok(())
}
