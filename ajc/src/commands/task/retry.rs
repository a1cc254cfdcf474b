//! `ajc task retry`: one task again into a queue, or every task a filter
//! matches into its own queue (a dead-letter replay).

use super::keys::with_keys;
use super::show::show_task;
use crate::commands::{emitln, Ctx};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::flags::JsonFlag;
use asyncjobs::signing::Keys;
use asyncjobs::TaskState;
use clap::Args;

/// `ajc task retry`.
#[derive(Args, Debug)]
pub struct TaskRetryArgs {
    /// The Task ID to retry; without it, every task matching the filters
    /// below is retried into its own queue (a dead-letter replay)
    #[arg(required_unless_present_any = ["state", "task_type", "from_queue", "since", "error"])]
    pub id: Option<String>,
    /// The queue to add the task to [default: the task's own queue; the Go
    /// ajc uses DEFAULT]
    #[arg(short = 'q', long, requires = "id")]
    pub queue: Option<String>,
    /// Replay tasks in this state (expired, terminated, unreachable, queue_error, ...)
    #[arg(long, conflicts_with = "id")]
    pub state: Option<String>,
    /// Replay tasks of this type
    #[arg(long = "type", conflicts_with = "id")]
    pub task_type: Option<String>,
    /// Replay tasks last enqueued into this queue
    #[arg(long = "from-queue", value_name = "QUEUE", conflicts_with = "id")]
    pub from_queue: Option<String>,
    /// Replay tasks created at or after this time (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_name = "TIME", conflicts_with = "id")]
    pub since: Option<String>,
    /// Replay tasks whose last error contains this text
    #[arg(long, value_name = "TEXT", conflicts_with = "id")]
    pub error: Option<String>,
    /// List what would be replayed, change nothing
    #[arg(long, conflicts_with = "id")]
    pub dry_run: bool,
    /// Retry an `active` task although a worker may still run it (a second
    /// run can start beside the first)
    #[arg(short = 'f', long, requires = "id")]
    pub force: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `task retry`: re-enqueues into `--queue` (default: the task's own
/// queue; Go's default is `DEFAULT`, where the task's workers may never
/// see it) and shows the task.
pub async fn run(ctx: &Ctx, keys: Option<Keys>, a: &TaskRetryArgs) -> Result<()> {
    let Some(id) = &a.id else {
        return replay(ctx, keys, a).await;
    };
    let reader = client(&ctx.global, Prepare::Nothing, |b| {
        Ok(with_keys(b, keys.clone()))
    })
    .await?;
    let task = reader.load_task_unverified(id).await?;
    if task.state == TaskState::Active && !a.force {
        return Err(CliError::msg(still_running(&reader, &task).await));
    }
    let queue = match &a.queue {
        Some(q) => q.clone(),
        None if task.queue.is_empty() => asyncjobs::Queue::default_queue().name,
        None => task.queue.clone(),
    };
    let client = client(&ctx.global, Prepare::Queue(queue), |b| {
        Ok(with_keys(b, keys))
    })
    .await?;
    client.retry_task(id).await?;
    show_task(ctx, &client, id, a.out.json).await
}

/// Why an `active` task is not retried without `--force`: the worker
/// holding it, as its lease names it, or when it started.
async fn still_running(client: &asyncjobs::Client, task: &asyncjobs::Task) -> String {
    let holder = match client.task_holder(&task.id).await {
        Ok(Some(lease)) => format!(
            "worker {} (pid {} on {}, queue {}) runs it; its lease was renewed at {}",
            lease.worker,
            lease.pid,
            lease.host,
            lease.queue,
            crate::format::rfc3339(lease.renewed)
        ),
        Ok(None) => match task.tried {
            Some(t) => format!(
                "no Rust worker's lease names it (a Go worker may run it); its try started at {}",
                crate::format::rfc3339(t)
            ),
            None => "no Rust worker's lease names it (a Go worker may run it)".to_string(),
        },
        Err(e) => format!("who runs it could not be read: {e}"),
    };
    format!(
        "task {} is active: {holder}. Retrying it now may start a second run beside the first; use -f to retry it anyway",
        task.id
    )
}

/// `task retry` without an id: every task the filters match, each into its
/// own queue, with progress on a terminal and a summary.
async fn replay(ctx: &Ctx, keys: Option<Keys>, a: &TaskRetryArgs) -> Result<()> {
    let mut filter = asyncjobs::TaskFilter::new();
    if let Some(s) = &a.state {
        let state = TaskState::from_name(s)
            .filter(|s| *s != TaskState::Unknown)
            .ok_or_else(|| CliError::msg(format!("unknown task state {s:?}")))?;
        filter = filter.state(state);
    }
    if let Some(t) = &a.task_type {
        filter = filter.task_type(t.clone());
    }
    if let Some(q) = &a.from_queue {
        filter = filter.queue(q.clone());
    }
    if let Some(since) = &a.since {
        let t = asyncjobs::wire::parse_time_bound(since).ok_or_else(|| {
            CliError::msg(format!(
                "--since {since:?}: expected RFC 3339, YYYY-MM-DDTHH:MM (UTC) or YYYY-MM-DD"
            ))
        })?;
        filter = filter.created_since(t);
    }
    if let Some(e) = &a.error {
        filter = filter.last_error_contains(e.clone());
    }
    let client = client(&ctx.global, Prepare::Nothing, |b| Ok(with_keys(b, keys))).await?;
    let mut progress: Option<crate::ui::Progress> = None;
    let summary = client
        .replay_tasks(filter, a.dry_run, |done, total| {
            let p = progress
                .get_or_insert_with(|| ctx.ui.progress("Replaying tasks", Some(total as u64)));
            p.set(done as u64);
        })
        .await?;
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    if a.out.json {
        let failed: Vec<_> = summary
            .failed
            .iter()
            .map(|(id, why)| serde_json::json!({"id": id, "error": why}))
            .collect();
        let out = if a.dry_run {
            serde_json::json!({"dry_run": true, "matched": summary.matched})
        } else {
            serde_json::json!({
                "matched": summary.matched.len(),
                "replayed": summary.replayed,
                "skipped": summary.skipped,
                "failed": failed,
            })
        };
        emitln(serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    if a.dry_run {
        for id in &summary.matched {
            emitln(id);
        }
        emitln(format!(
            "{} tasks would be replayed (dry run: nothing changed)",
            summary.matched.len()
        ));
        return Ok(());
    }
    for (id, why) in &summary.failed {
        emitln(format!("{id}: {why}"));
    }
    emitln(format!(
        "Replayed {} of {} matching tasks: {} skipped (gone since listed), {} failed",
        summary.replayed.len(),
        summary.matched.len(),
        summary.skipped.len(),
        summary.failed.len()
    ));
    if summary.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::msg(format!(
            "{} tasks could not be replayed",
            summary.failed.len()
        )))
    }
}
