//! `ajc queue …`: create, list, view, configure, pause, resume, purge and
//! remove work queues; the arguments of each subcommand and what it does.

use super::{emit, emit_json, emitln, Ctx};
use crate::blocks::QueueBlock;
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::flags::{ForceFlag, JsonFlag};
use crate::format::{iec_bytes, parse_duration, ucomma, GoDuration};
use crate::table::{Align, Cell, Table};
use crate::ui::Style;
use asyncjobs::{Client, PauseUntil, Queue, QueueUpdate, Retention};
use clap::{Args, Subcommand};
use std::time::Duration;

/// `ajc queue …`.
#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Creates a new Queue
    #[command(visible_aliases = ["add", "n", "a"])]
    New(QueueNewArgs),
    /// List Queues
    #[command(visible_alias = "ls")]
    List(JsonFlag),
    /// Removes the entire work queue
    #[command(visible_alias = "rm")]
    Delete(QueueNameForce),
    /// Removes all items from a work queue
    Purge(QueuePurgeArgs),
    /// Shows information about a queue
    #[command(visible_aliases = ["view", "i"])]
    Info(QueueInfoArgs),
    /// Configures a Queue storage
    #[command(visible_aliases = ["config", "cfg"])]
    Configure(QueueConfigureArgs),
    /// Pauses a queue for every worker, Go's included: no task starts until
    /// it ends or is resumed (needs nats-server 2.11)
    Pause(QueuePauseArgs),
    /// Resumes a paused queue
    Resume(QueueInfoArgs),
}

/// `ajc queue pause`.
#[derive(Args, Debug)]
pub struct QueuePauseArgs {
    /// Queue to pause
    pub queue: String,
    /// Resume by itself after this long, for example 30m (default: until resumed)
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true, conflicts_with = "until")]
    pub for_: Option<GoDuration>,
    /// Resume by itself at this time, RFC 3339, for example 2026-12-24T18:00:00Z (default: until resumed)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc queue new`.
#[derive(Args, Debug)]
pub struct QueueNewArgs {
    /// Queue to create
    pub queue: String,
    /// Sets the maximum age for entries to keep, 0s for unlimited (default: unlimited)
    #[arg(long, value_name = "DURATION", default_value = "0s", hide_default_value = true, value_parser = parse_duration, allow_hyphen_values = true)]
    pub age: GoDuration,
    /// Sets the maximum amount of entries to keep, 0 for unlimited (default: unlimited)
    #[arg(
        long,
        default_value_t = 0,
        hide_default_value = true,
        allow_negative_numbers = true
    )]
    pub entries: i64,
    /// Maximum delivery attempts to allow per message, -1 for unlimited (default: unlimited)
    #[arg(long, default_value_t = -1, hide_default_value = true, allow_negative_numbers = true)]
    pub tries: i64,
    /// Maximum run-time to allow per task
    #[arg(long = "run-time", value_name = "DURATION", default_value = "1h0m0s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub run_time: GoDuration,
    /// Maximum concurrent jobs that can be ran
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    pub concurrent: i64,
    /// Store the Queue in memory
    #[arg(long)]
    pub memory: bool,
    /// Number of storage replicas to configure
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// When full, discard old entries
    #[arg(long = "discard-old")]
    pub discard_old: bool,
    /// How long the queue's finished tasks are kept, whichever process
    /// finishes them: STATE=DURATION pairs (complete, expired, terminated,
    /// unreachable, queue_error; failed; all), a duration of at least 1s or
    /// forever, for example complete=1h,failed=720h (default: each process's
    /// own, complete=24h,failed=168h unless set)
    #[arg(long, value_name = "SPEC", value_parser = parse_retention)]
    pub retention: Option<Retention>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// A queue name and `-f`.
#[derive(Args, Debug)]
pub struct QueueNameForce {
    /// The queue
    pub queue: String,
    #[command(flatten)]
    pub force: ForceFlag,
}

/// `ajc queue purge`.
#[derive(Args, Debug)]
pub struct QueuePurgeArgs {
    #[command(flatten)]
    pub target: QueueNameForce,
    /// Also mark the tasks whose items are removed (and that still wait:
    /// new, retry, blocked) terminated, so none is left waiting forever
    /// (Go leaves them new)
    #[arg(long)]
    pub terminate_tasks: bool,
}

/// `ajc queue info`.
#[derive(Args, Debug)]
pub struct QueueInfoArgs {
    /// Queue to view
    pub queue: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc queue configure`: a setting not given is left unchanged (so are
/// Go's sentinels when given: `--age -1s`, `--tries -2`, …).
#[derive(Args, Debug)]
pub struct QueueConfigureArgs {
    /// Queue to configure
    pub queue: String,
    /// Sets the maximum age for entries to keep, 0s for unlimited (default: unchanged)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub age: Option<GoDuration>,
    /// Sets the maximum amount of entries to keep, 0 for unlimited (default: unchanged)
    #[arg(long, allow_negative_numbers = true)]
    pub entries: Option<i64>,
    /// Maximum delivery attempts to allow per message, -1 for unlimited (default: unchanged)
    #[arg(long, allow_negative_numbers = true)]
    pub tries: Option<i64>,
    /// Maximum run-time to allow per task (default: unchanged)
    #[arg(long = "run-time", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub run_time: Option<GoDuration>,
    /// Maximum concurrent jobs that can be ran, -1 for unlimited (default: unchanged)
    #[arg(long, allow_negative_numbers = true)]
    pub concurrent: Option<i64>,
    /// Number of storage replicas to configure (default: unchanged)
    #[arg(long, allow_negative_numbers = true)]
    pub replicas: Option<i64>,
    /// How long the queue's finished tasks are kept, whichever process
    /// finishes them: STATE=DURATION pairs (complete, expired, terminated,
    /// unreachable, queue_error; failed; all), a duration of at least 1s or
    /// forever, for example complete=1h,failed=720h (default: unchanged)
    #[arg(long, value_name = "SPEC", value_parser = parse_retention)]
    pub retention: Option<Retention>,
    #[command(flatten)]
    pub out: JsonFlag,
}

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
        QueueCmd::Pause(a) => pause(ctx, a).await,
        QueueCmd::Resume(a) => {
            let c = read_client(ctx).await?;
            c.resume_queue(&a.queue).await?;
            show(&c, &a.queue, a.out.json).await
        }
    }
}

/// The end `queue pause` asks for: `--for`, `--until` or neither.
pub fn pause_until(a: &QueuePauseArgs) -> Result<PauseUntil> {
    if let Some(d) = a.for_ {
        let d = d.non_negative("--for").map_err(CliError::msg)?;
        if d.is_zero() {
            return Err(CliError::msg(
                "--for must be longer than 0s (to lift a pause use `ajc queue resume`)",
            ));
        }
        let d = time::Duration::try_from(d).map_err(|_| CliError::msg("--for is too long"))?;
        return Ok(PauseUntil::Time(time::OffsetDateTime::now_utc() + d));
    }
    match &a.until {
        Some(t) => asyncjobs::wire::parse_time(t)
            .map(PauseUntil::Time)
            .map_err(|e| {
                CliError::msg(format!(
                    "--until {t:?} is not an RFC 3339 time such as 2026-12-24T18:00:00Z: {e}"
                ))
            }),
        None => Ok(PauseUntil::Resumed),
    }
}

/// `queue pause`: the end checked before connecting, then the block.
async fn pause(ctx: &Ctx, a: &QueuePauseArgs) -> Result<()> {
    let until = pause_until(a)?;
    let client = read_client(ctx).await?;
    client.pause_queue(&a.queue, until).await?;
    show(&client, &a.queue, a.out.json).await
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
    let queue = match a.retention {
        Some(r) => queue.retention(r),
        None => queue,
    };
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
        let max_items = crate::format::limit(i.queue.max_entries);
        let (name, tries, concurrent) = if i.has_consumer {
            (
                match &i.paused {
                    Some(p) => Cell::styled(
                        format!("{} (paused {})", i.queue.name, p.until),
                        Some(Style::Yellow),
                    ),
                    None => Cell::from(i.queue.name.clone()),
                },
                crate::format::limit(i.queue.max_tries),
                crate::format::limit(i.queue.max_concurrent),
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

/// The changes a `queue configure` asks for: a flag not given, or given
/// Go's negative sentinel, means "leave unchanged" (docs/interfaces.md §1.7).
pub fn queue_update(a: &QueueConfigureArgs) -> QueueUpdate {
    let nanos = |d: Option<GoDuration>| {
        d.filter(|d| d.0 >= 0)
            .map(|d| Duration::from_nanos(d.0 as u64))
    };
    QueueUpdate {
        max_age: nanos(a.age),
        max_entries: a.entries.filter(|n| *n > -1),
        max_tries: a.tries.filter(|n| *n > -2),
        max_run_time: nanos(a.run_time),
        max_concurrent: a.concurrent.filter(|n| *n > -2),
        replicas: a.replicas.filter(|n| *n > 0).map(|n| n as usize),
        retention: a.retention,
        // no ajc flags for the rate limit and priority aging yet: unchanged
        ..QueueUpdate::default()
    }
}

/// A `--retention` value.
fn parse_retention(s: &str) -> std::result::Result<Retention, String> {
    s.parse().map_err(|e: asyncjobs::Error| e.to_string())
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
