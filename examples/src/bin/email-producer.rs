//! Enqueues typed email tasks for the email worker and waits for their
//! results.
//!
//! ```sh
//! cargo run -p asyncjobs-examples --bin email-producer -- 5          # enqueue 5 and wait
//! cargo run -p asyncjobs-examples --bin email-producer -- 5 --no-wait
//! ```
//!
//! `NATS_URL` picks the server (default `nats://127.0.0.1:4222`). The first
//! email goes to a flaky address that fails its first try: it completes once
//! the worker's retry policy tries it again (about a second with
//! `email-worker --retry-policy 1m`, a minute or more with the default).

use asyncjobs::{Client, Queue};
use asyncjobs_examples::email::{send_digest, send_email, Digest, NewEmail};
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wait = !args.iter().any(|a| a == "--no-wait");
    let count: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5);

    // creates the EMAIL queue if the worker has not yet
    let client = Client::builder()
        .url(&url)
        .queue(Queue::new(send_email::QUEUE))
        .build()
        .await?;

    let mut handles = Vec::new();
    for i in 0..count {
        let to = if i == 0 {
            "flaky@example.net".to_string()
        } else {
            format!("user{i}@example.net")
        };
        let email = NewEmail {
            to,
            subject: format!("hello #{i}"),
        };
        // checked at compile time: send_email takes a NewEmail, and the
        // handle's result type is its Receipt
        let handle = send_email::enqueue(&client, email).await?;
        println!("enqueued {} {}", send_email::TASK_TYPE, handle.id());
        handles.push(handle);
    }
    let digest = send_digest::enqueue(
        &client,
        Digest {
            to: "boss@example.net".into(),
            subjects: vec!["weekly numbers".into(), "holiday plan".into()],
        },
    )
    .await?;
    println!("enqueued {} {}", send_digest::TASK_TYPE, digest.id());

    if !wait {
        return Ok(());
    }
    let listed = digest.wait(&client, Duration::from_secs(60)).await?;
    println!("{} listed {listed} subjects", digest.id());
    // the flaky one (first) last: it waits for its retry
    handles.rotate_left(1);
    for handle in handles {
        let receipt = handle.wait(&client, Duration::from_secs(300)).await?;
        println!(
            "{} sent as {} on try {}",
            handle.id(),
            receipt.message_id,
            receipt.attempt
        );
    }
    Ok(())
}
