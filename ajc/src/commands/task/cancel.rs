//! `ajc task cancel`: stops a task from running, or its running try.

use super::show::task_text;
use crate::commands::{emit, emit_json, Ctx};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::flags::JsonFlag;
use asyncjobs::Cancelled;
use clap::Args;

/// `ajc task cancel`.
#[derive(Args, Debug)]
pub struct TaskCancelArgs {
    /// The Task ID to cancel
    pub id: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `task cancel`: a waiting task is saved `terminated` and never runs; a
/// running one is saved `terminated` and its worker stops the handler.
/// The task's `last_err` names this command, its user and host. A task
/// that had finished is left as it is, and the command fails saying so.
pub async fn run(ctx: &Ctx, a: &TaskCancelArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let done = client.cancel_task(&a.id, &who()).await?;
    let task = done.task();
    if let Cancelled::AlreadyFinished(t) = &done {
        return Err(CliError::msg(format!(
            "task {} had already finished ({}): nothing was changed",
            t.id, t.state
        )));
    }
    if a.out.json {
        emit_json(task);
        return Ok(());
    }
    let what = match &done {
        Cancelled::Running(_) => {
            "it was running: its worker stops the handler (after the worker's cancel grace at most)"
        }
        _ => "it was waiting and will not run",
    };
    emit(format!(
        "Cancelled Task {}: {what}\n\n{}",
        task.id,
        task_text(&ctx.ui, task)
    ));
    Ok(())
}

/// Who cancels, as the task's `last_err` names it: `ajc (user@host)`.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown user".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        format!("ajc ({user})")
    } else {
        format!("ajc ({user}@{host})")
    }
}
