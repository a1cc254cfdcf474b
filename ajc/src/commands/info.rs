//! `ajc info`: every storage block and every queue.

use super::{emit, emit_json, Ctx};
use crate::blocks::{ConfigBlock, ElectionsBlock, QueueBlock, TasksBlock};
use crate::connect::{client, Prepare};
use crate::error::Result;
use crate::flags::JsonFlag;
use crate::format::{parse_duration, GoDuration};
use clap::Args;
use serde_json::json;

/// `ajc info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Create missing storage with this many replicas
    #[arg(short = 'R', long = "replica", value_name = "N")]
    pub replica: Option<usize>,
    /// Create missing storage in memory
    #[arg(long)]
    pub memory: bool,
    /// Create a missing task store keeping tasks this long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retention: Option<GoDuration>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// Runs `ajc info`. Read-only unless one of the initialization flags is
/// given, in which case missing storage is created with them (as Go does).
pub async fn run(ctx: &Ctx, args: &InfoArgs) -> Result<()> {
    let init = args.replica.is_some() || args.memory || args.retention.is_some();
    let prepare = if init {
        Prepare::Queue(asyncjobs::queue::DEFAULT_QUEUE_NAME.into())
    } else {
        Prepare::Nothing
    };
    let retention = args
        .retention
        .map(|r| r.non_negative("--retention"))
        .transpose()
        .map_err(crate::error::CliError::msg)?;
    let client = client(&ctx.global, prepare, |mut b| {
        if let Some(r) = args.replica {
            b = b.replicas(r);
        }
        if args.memory {
            b = b.memory_storage();
        }
        if let Some(r) = retention {
            b = b.task_retention(r);
        }
        Ok(b)
    })
    .await?;
    let tasks = TasksBlock::load(&client).await?;
    let config = ConfigBlock::load(&client).await?;
    let elections = ElectionsBlock::load(&client).await?;
    let queues = QueueBlock::load_all(&client).await?;

    if args.out.json {
        emit_json(&json!({
            "tasks": tasks.json(),
            "configuration": config.json(),
            "elections": elections.as_ref().map(|e| e.json()),
            "queues": queues.iter().map(|q| q.json()).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let mut blocks = vec![tasks.human(), config.human()];
    if let Some(e) = &elections {
        blocks.push(e.human());
    }
    blocks.extend(queues.iter().map(|q| q.human()));
    emit(blocks.join("\n"));
    Ok(())
}
