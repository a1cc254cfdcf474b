//! The task store as a whole: `ajc task initialize`, `task configure`,
//! `task purge` and `task reconcile`.

use crate::blocks::TasksBlock;
use crate::commands::{emit, emit_json, emitln, Ctx};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::flags::JsonFlag;
use crate::format::{parse_duration, ucomma, GoDuration};
use asyncjobs::Client;
use clap::Args;

/// `ajc task reconcile`.
#[derive(Args, Debug)]
pub struct TaskReconcileArgs {
    /// Only tasks of this queue
    #[arg(short = 'q', long)]
    pub queue: Option<String>,
    /// Leave tasks changed more recently than this alone
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub grace: GoDuration,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task initialize`.
#[derive(Args, Debug)]
pub struct TaskInitArgs {
    /// Use memory as a storage backend
    #[arg(long)]
    pub memory: bool,
    /// Sets how long Tasks are kept in the Task Store, 0s to keep them (default: forever)
    #[arg(long, value_name = "DURATION", default_value = "0s", hide_default_value = true, value_parser = parse_duration)]
    pub retention: GoDuration,
    /// How many replicas to keep in a JetStream cluster
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task configure`.
#[derive(Args, Debug)]
pub struct TaskConfigureArgs {
    /// Sets how long Tasks are kept in the Task Store (0s for forever)
    #[arg(value_parser = parse_duration)]
    pub retention: GoDuration,
    /// How many replicas to keep in a JetStream cluster
    pub replicas: usize,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `task reconcile`: expires the tasks whose work item is gone.
pub async fn reconcile(ctx: &Ctx, a: &TaskReconcileArgs) -> Result<()> {
    let grace = a.grace.non_negative("--grace").map_err(CliError::msg)?;
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let ended = client.reconcile_tasks(a.queue.as_deref(), grace).await?;
    if a.out.json {
        emit_json(&ended);
    } else if ended.is_empty() {
        emitln("No task lost its work item");
    } else {
        for id in &ended {
            emitln(format!("Expired {id}: its work item was lost"));
        }
        emitln(format!("Expired {} task(s)", ended.len()));
    }
    Ok(())
}

/// `task purge`, after confirmation.
pub async fn purge(ctx: &Ctx, force: bool) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let entries = client.tasks_info().await?.messages;
    if !force
        && !ctx.ui.confirm(&format!(
            "Really purge the Task Store of {} entries, work queue entries will not be removed",
            ucomma(entries)
        ))?
    {
        return Ok(());
    }
    let mut progress = ctx
        .ui
        .progress(&format!("Purging {} tasks", ucomma(entries)), None);
    progress.draw();
    client.purge_tasks().await?;
    progress.finish();
    emitln("Purged all task entries");
    Ok(())
}

/// Prints the task store block as text or JSON.
async fn show_tasks_block(client: &Client, json: bool) -> Result<()> {
    let block = TasksBlock::load(client).await?;
    if json {
        emit_json(&block.json());
    } else {
        emit(block.human());
    }
    Ok(())
}

/// `task initialize`: creates only the task store.
pub async fn initialize(ctx: &Ctx, a: &TaskInitArgs) -> Result<()> {
    let retention = a
        .retention
        .non_negative("--retention")
        .map_err(CliError::msg)?;
    let client = client(&ctx.global, Prepare::Nothing, |b| {
        let b = b.replicas(a.replicas).task_retention(retention);
        Ok(if a.memory { b.memory_storage() } else { b })
    })
    .await?;
    client.prepare_tasks().await?;
    show_tasks_block(&client, a.out.json).await
}

/// `task configure`: retention and replicas of the task store.
pub async fn configure(ctx: &Ctx, a: &TaskConfigureArgs) -> Result<()> {
    let retention = a
        .retention
        .non_negative("retention")
        .map_err(CliError::msg)?;
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    client
        .configure_tasks(Some(retention), Some(a.replicas))
        .await?;
    show_tasks_block(&client, a.out.json).await
}
