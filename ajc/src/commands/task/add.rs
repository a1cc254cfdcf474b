//! `ajc task add`: builds a task from its arguments, then enqueues it.

use super::input::{with_settings, PayloadArgs, TaskSettings};
use super::keys::with_keys;
use crate::commands::{emitln, Ctx};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::format::{parse_duration, GoDuration};
use asyncjobs::signing::Keys;
use asyncjobs::Task;
use clap::{ArgAction, Args};
use std::time::Duration;

/// `ajc task add`.
#[derive(Args, Debug)]
pub struct TaskAddArgs {
    /// The task type
    #[arg(value_name = "TYPE")]
    pub task_type: String,
    #[command(flatten)]
    pub payload: PayloadArgs,
    #[command(flatten)]
    pub task: TaskSettings,
    /// Sets IDs to depend on, comma sep or pass multiple times
    #[arg(long, value_name = "IDS", action = ArgAction::Append)]
    pub depends: Vec<String>,
    /// Loads results from dependencies before executing task
    #[arg(long)]
    pub load: bool,
    /// Run the task at this time (RFC 3339); its work item reaches the queue then
    #[arg(long, value_name = "TIME", conflicts_with = "run_in")]
    pub at: Option<String>,
    /// Run the task after this long (Go duration, for example 90s or 2h)
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_duration)]
    pub run_in: Option<GoDuration>,
    /// At most one unfinished task with this key (letters, digits, - _ = / .):
    /// when one exists its id is printed and nothing is enqueued (needs
    /// nats-server 2.11; not in the Go ajc)
    #[arg(long, value_name = "KEY")]
    pub unique: Option<String>,
    /// At most one task with the key (--unique, or the type and payload)
    /// within this long of the first, finished or not (Go duration)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub unique_for: Option<GoDuration>,
    /// The task's priority, 0 (the default) to 9: higher runs first (a
    /// worker with a free slot starts the highest waiting priority, oldest
    /// first within one; Go workers ignore it; not in the Go ajc)
    #[arg(
        long,
        value_name = "0-9",
        default_value_t = 0,
        hide_default_value = true,
        allow_negative_numbers = true,
        value_parser = parse_priority
    )]
    pub priority: u8,
    /// The task's flow-control key, for example a customer or a tenant: the
    /// queue's per-key limits (queue add --key-concurrency,
    /// --key-rate-limit) apply to the tasks of one key, and keys take turns
    /// (1 to 128 bytes, no control characters; Go workers ignore it; not in
    /// the Go ajc)
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    pub key: Option<String>,
}

/// clap value parser for `--key`: refused with the library's message
/// before anything connects (the task builder holds the rule).
fn parse_key(s: &str) -> std::result::Result<String, String> {
    Task::builder("key")
        .key(s)
        .build()
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// clap value parser for `--priority`: an integer from 0 to
/// [`asyncjobs::task::MAX_PRIORITY`], refused with the library's message
/// before anything connects.
fn parse_priority(s: &str) -> std::result::Result<u8, String> {
    let n: i64 = s.trim().parse().map_err(|_| {
        format!(
            "expected a whole number from 0 (the default) to {} (runs first)",
            asyncjobs::task::MAX_PRIORITY
        )
    })?;
    u8::try_from(n)
        .ok()
        .filter(|p| *p <= asyncjobs::task::MAX_PRIORITY)
        .ok_or_else(|| asyncjobs::Error::PriorityInvalid(n).to_string())
}

/// `task add`: builds the task before connecting, then enqueues it.
pub async fn run(ctx: &Ctx, keys: Option<Keys>, a: &TaskAddArgs) -> Result<()> {
    let Some(payload) = a.payload.bytes()? else {
        return Err(CliError::msg(
            "a payload is required: give it as an argument, with --payload or with --payload-file FILE (- for standard input)",
        ));
    };
    let mut b = with_settings(
        Task::builder(a.task_type.clone()).raw_payload(payload),
        &a.task,
    )?;
    let deps: Vec<String> = a
        .depends
        .iter()
        .flat_map(|d| d.split(','))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    if !deps.is_empty() {
        b = b.depends_on(deps);
        if a.load {
            b = b.load_dependency_results();
        }
    }
    match (&a.at, &a.run_in) {
        (Some(at), _) => {
            let at = asyncjobs::wire::parse_time(at).map_err(|e| {
                CliError::msg(format!(
                    "--at {at:?}: expected an RFC 3339 time such as 2026-12-03T18:00:00Z: {e}"
                ))
            })?;
            b = b.run_at(at);
        }
        (None, Some(d)) => b = b.run_in(d.non_negative("--in").map_err(CliError::msg)?),
        (None, None) => {}
    }
    if let Some(key) = &a.unique {
        b = b.unique(key.clone());
    }
    if let Some(d) = &a.unique_for {
        b = b.unique_for(d.non_negative("--unique-for").map_err(CliError::msg)?);
    }
    if a.priority > 0 {
        b = b.priority(a.priority);
    }
    if let Some(k) = &a.key {
        b = b.key(k.clone());
    }
    let mut task = b.build()?;
    let client = client(&ctx.global, Prepare::Queue(a.task.queue.clone()), |b| {
        Ok(with_keys(b, keys))
    })
    .await?;
    let enqueued = tokio::time::timeout(Duration::from_secs(5), client.enqueue(&mut task))
        .await
        .map_err(|_| CliError::msg("enqueueing the task timed out"))?;
    if let Err(asyncjobs::Error::TaskExists { key, id }) = &enqueued {
        // not an error: the task the caller wanted exists
        emitln(format!(
            "Existing task {id} (unique key {key}): not enqueued again"
        ));
        return Ok(());
    }
    enqueued?;
    match task.run_at {
        Some(due) if due > time::OffsetDateTime::now_utc() => emitln(format!(
            "Enqueued task {} (due {})",
            task.id,
            asyncjobs::wire::format_time(&due)
        )),
        _ => emitln(format!("Enqueued task {}", task.id)),
    }
    warn_unserved(&client, &task).await;
    Ok(())
}

/// Warns on standard error when the cluster can tell that no running
/// worker serves the task's queue or handles its type
/// ([`asyncjobs::Client::serving`]); the task stays enqueued and the
/// command succeeds. A failed or slow check says nothing.
async fn warn_unserved(client: &asyncjobs::Client, task: &Task) {
    let check = client.serving(&task.queue, Some(&task.task_type));
    if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), check).await {
        if let Some(w) = s.warning() {
            eprintln!("ajc: warning: {w}");
        }
    }
}
