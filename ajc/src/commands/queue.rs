//! `ajc queue …`: create, list, view, configure, purge and remove work queues.

use super::{emit, emit_json, emitln, Ctx};
use crate::blocks::QueueBlock;
use crate::cli::{QueueCmd, QueueConfigureArgs, QueueNameForce, QueueNewArgs, QueuePurgeArgs};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::format::{iec_bytes, ucomma};
use crate::table::{Align, Cell, Table};
use crate::ui::Style;
use asyncjobs::{Client, Queue, QueueUpdate};
use std::time::Duration;

/// Runs a queue command.
pub async fn run(ctx: &Ctx, cmd: &QueueCmd) -> Result<()> {
    match cmd {
        QueueCmd::New(a) => new(ctx, a).await,
        QueueCmd::List(out) => list(ctx, out.json).await,
        QueueCmd::Delete(a) => delete(ctx, a).await,
        QueueCmd::Purge(a) => purge(ctx, a).await,
        QueueCmd::Info(a) => {
            let c = read_client(ctx).await?;
            show(&c, &a.queue, a.out.json).await
        }
        QueueCmd::Configure(a) => configure(ctx, a).await,
    }
}

/// A client that creates nothing.
async fn read_client(ctx: &Ctx) -> Result<Client> {
    client(&ctx.global, Prepare::Nothing, Ok).await
}

/// Prints a queue block as text or JSON.
async fn show(client: &Client, name: &str, json: bool) -> Result<()> {
    let block = QueueBlock::load(client, name).await?;
    if json {
        emit_json(&block.json());
    } else {
        emit(block.human());
    }
    Ok(())
}

/// `queue new`: creates a queue that does not exist yet.
async fn new(ctx: &Ctx, a: &QueueNewArgs) -> Result<()> {
    let age = a.age.non_negative("--age").map_err(CliError::msg)?;
    let run_time = a
        .run_time
        .non_negative("--run-time")
        .map_err(CliError::msg)?;
    let client = client(&ctx.global, Prepare::Nothing, |mut b| {
        b = b.replicas(a.replicas);
        if a.memory {
            b = b.memory_storage();
        }
        Ok(b)
    })
    .await?;
    if client.queue_info(&a.queue).await.is_ok() {
        return Err(CliError::msg(format!("queue {} already exist", a.queue)));
    }
    let queue = Queue::new(a.queue.clone())
        .max_age(age)
        .max_entries(a.entries)
        .discard_old(a.discard_old)
        .max_tries(a.tries)
        .max_run_time(run_time)
        .max_concurrent(a.concurrent);
    client.prepare_queue(&queue).await?;
    show(&client, &a.queue, a.out.json).await
}

/// `queue list`: a table sorted by item count, or JSON.
async fn list(ctx: &Ctx, json: bool) -> Result<()> {
    let client = read_client(ctx).await?;
    let mut queues = QueueBlock::load_all(&client).await?;
    if json {
        emit_json(&queues.iter().map(|q| q.json()).collect::<Vec<_>>());
        return Ok(());
    }
    if queues.is_empty() {
        emitln("No queues defined");
        return Ok(());
    }
    queues.sort_by_key(|q| q.info.stream.messages);
    let mut table = Table::new(
        "Work Queues",
        &[
            "Name",
            "Items",
            "Size",
            "Replicas",
            "Max Tries",
            "Max Items",
            "Max Concurrent",
        ],
    );
    for i in 1..=6 {
        table = table.align(i, Align::Right);
    }
    let mut missing = false;
    for q in &queues {
        let i = &q.info;
        let max_items = if i.queue.max_entries > 0 {
            crate::format::comma(i.queue.max_entries)
        } else {
            "unlimited".into()
        };
        let (name, tries, concurrent) = if i.has_consumer {
            (
                Cell::from(i.queue.name.clone()),
                crate::format::comma(i.queue.max_tries),
                crate::format::comma(i.queue.max_concurrent),
            )
        } else {
            missing = true;
            (
                Cell::styled(format!("{} (no consumer)", i.queue.name), Some(Style::Red)),
                "-".to_string(),
                "-".to_string(),
            )
        };
        table.row(vec![
            name,
            ucomma(i.stream.messages).into(),
            iec_bytes(i.stream.bytes).into(),
            i.stream.replicas.to_string().into(),
            tries.into(),
            max_items.into(),
            concurrent.into(),
        ]);
    }
    emit(table.render(&ctx.ui));
    if missing {
        eprintln!(
            "Queues marked (no consumer) lack their WORKERS consumer: workers cannot process them"
        );
    }
    Ok(())
}

/// Asks before a destructive queue command, showing its entries and polls.
async fn confirm_with_counts(
    ctx: &Ctx,
    client: &Client,
    a: &QueueNameForce,
    action: &str,
) -> Result<bool> {
    if a.force.force {
        return Ok(true);
    }
    let info = client.queue_info(&a.queue).await?;
    ctx.ui.confirm(&format!(
        "Really {action} the {} Queue with {} entries and {} active polls",
        a.queue,
        ucomma(info.stream.messages),
        ucomma(info.waiting)
    ))
}

/// `queue delete`.
async fn delete(ctx: &Ctx, a: &QueueNameForce) -> Result<()> {
    let client = read_client(ctx).await?;
    if !confirm_with_counts(ctx, &client, a, "delete").await? {
        return Ok(());
    }
    client.delete_queue(&a.queue).await?;
    emitln(format!("Queue {} was removed", a.queue));
    Ok(())
}

/// `queue purge`: with `--terminate-tasks` the waiting tasks whose items
/// are removed are marked terminated; without it a note on standard error
/// says they keep waiting.
async fn purge(ctx: &Ctx, p: &QueuePurgeArgs) -> Result<()> {
    let a = &p.target;
    let client = read_client(ctx).await?;
    if !confirm_with_counts(ctx, &client, a, "purge all entries from").await? {
        return Ok(());
    }
    if p.terminate_tasks {
        let marked = client.purge_queue_terminating(&a.queue).await?;
        emitln(format!("Queue {} was purged", a.queue));
        emitln(format!("Marked {marked} waiting task(s) terminated"));
    } else {
        client.purge_queue(&a.queue).await?;
        emitln(format!("Queue {} was purged", a.queue));
        eprintln!(
            "note: the purged items' tasks keep their state and no worker will run them; \
             --terminate-tasks marks them terminated"
        );
    }
    Ok(())
}

/// The changes a `queue configure` asks for: negative sentinels mean "leave
/// unchanged" (docs/interfaces.md §1.7).
pub fn queue_update(a: &QueueConfigureArgs) -> QueueUpdate {
    QueueUpdate {
        max_age: (a.age.0 >= 0).then(|| Duration::from_nanos(a.age.0 as u64)),
        max_entries: (a.entries > -1).then_some(a.entries),
        max_tries: (a.tries > -2).then_some(a.tries),
        max_run_time: (a.run_time.0 >= 0).then(|| Duration::from_nanos(a.run_time.0 as u64)),
        max_concurrent: (a.concurrent > -2).then_some(a.concurrent),
        replicas: (a.replicas > 0).then_some(a.replicas as usize),
    }
}

/// `queue configure`: Go's limits, then the update, then the block.
async fn configure(ctx: &Ctx, a: &QueueConfigureArgs) -> Result<()> {
    // Go's checks and messages, before connecting
    let update = queue_update(a);
    update.validate()?;
    let client = read_client(ctx).await?;
    client.configure_queue(&a.queue, update).await?;
    show(&client, &a.queue, a.out.json).await
}
