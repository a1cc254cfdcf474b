//! The task store as a whole: `ajc task initialize`, `task configure`,
//! `task retention`, `task purge` and `task reconcile`.

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

/// `ajc task retention`.
#[derive(Args, Debug)]
pub struct TaskRetentionArgs {
    /// Let finished records expire in a task store made without
    /// per-message TTL (by Go, an operator, or before nats-server 2.11):
    /// sets allow_msg_ttl on CHORIA_AJ_TASKS, which cannot be undone
    #[arg(long)]
    pub enable: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `task retention`: whether finished records expire, and how long each
/// queue keeps them.
pub async fn retention(ctx: &Ctx, a: &TaskRetentionArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let enabled = if a.enable {
        Some(client.allow_task_expiry().await?)
    } else {
        None
    };
    let status = client.retention_status().await?;
    let mut queues = vec![];
    for name in client.queue_names().await? {
        if let Ok(info) = client.queue_info(&name).await {
            queues.push((name, info.queue.retention));
        }
    }
    if a.out.json {
        emit_json(&serde_json::json!({
            "expiry_allowed": status.expiry_allowed,
            "enabled_now": enabled,
            "max_age": status.max_age.as_nanos() as u64,
            "queues": queues.iter().map(|(q, r)| (q.clone(), r.map(|r| r.to_string()).into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        }));
        return Ok(());
    }
    match enabled {
        Some(true) => emitln("Finished task records now expire by their retention (records saved before keep theirs)"),
        Some(false) => emitln("Finished task records already expire by their retention"),
        None => {}
    }
    if status.expiry_allowed {
        emitln("Finished tasks expire: the task store allows per-message TTL");
    } else {
        emitln("Finished tasks are kept forever: the task store does not allow per-message TTL (`ajc task retention --enable`, nats-server 2.11)");
    }
    if !status.max_age.is_zero() {
        emitln(format!(
            "Every record is also removed {} after its last save (the store's archive period)",
            asyncjobs::format_duration(status.max_age)
        ));
    }
    for (q, r) in &queues {
        match r {
            Some(r) => emitln(format!("Queue {q}: {r}")),
            None => emitln(format!(
                "Queue {q}: each process's own (default {})",
                asyncjobs::Retention::default()
            )),
        }
    }
    Ok(())
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
