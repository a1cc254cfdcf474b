//! `ajc task cron …`: scheduled tasks (add, view, delete, list; ours: pause,
//! resume, run now) and the
//! scheduler that enqueues their tasks.

use super::input::{with_settings, PayloadArgs, TaskSettings};
use crate::commands::{emit, emit_json, emitln, Ctx};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::flags::{ForceFlag, JsonFlag};
use crate::format::{go_time, humanize, iec_bytes};
use crate::long_running::{serve_metrics, shutdown_on_signals, MonitorArgs};
use crate::table::Table;
use asyncjobs::{ScheduleError, ScheduledTask, Scheduler, Task};
use clap::{Args, Subcommand};

/// `ajc task cron …`.
#[derive(Subcommand, Debug)]
pub enum CronCmd {
    /// Adds a Scheduled Task entry
    #[command(visible_aliases = ["new", "a"])]
    Add(CronAddArgs),
    /// Views a Scheduled Task
    #[command(visible_aliases = ["show", "v"])]
    View(CronViewArgs),
    /// Removes a Scheduled Task entry
    #[command(visible_aliases = ["del", "rm"])]
    Delete(CronDeleteArgs),
    /// List Scheduled Tasks
    #[command(visible_alias = "ls")]
    List(CronListArgs),
    /// Runs the Scheduled Task Scheduler
    Scheduler(CronSchedulerArgs),
    /// Pauses a Scheduled Task: Rust schedulers make no task from it until
    /// it is resumed (a Go scheduler ignores the pause)
    Pause(CronViewArgs),
    /// Resumes a paused Scheduled Task
    Resume(CronViewArgs),
    /// Creates a task from a Scheduled Task now, outside its timetable
    #[command(name = "run")]
    RunNow(CronViewArgs),
}

/// `ajc task cron add`.
#[derive(Args, Debug)]
pub struct CronAddArgs {
    /// Unique name for this Scheduled Task
    pub name: String,
    /// Schedule definition
    pub schedule: String,
    /// The task type
    #[arg(value_name = "TYPE")]
    pub task_type: String,
    #[command(flatten)]
    pub payload: PayloadArgs,
    /// Write the schedule exactly as the Go ajc does, so Go and Rust
    /// scheduler leaders give its tasks the same payload (Go's encoding:
    /// the JSON string of the payload's base64). Use it when Go schedulers
    /// may lead; without it tasks get the payload unchanged, which only
    /// Rust schedulers honour
    #[arg(long = "go-encoding")]
    pub go_encoding: bool,
    #[command(flatten)]
    pub task: TaskSettings,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task cron view`.
#[derive(Args, Debug)]
pub struct CronViewArgs {
    /// The name of the Schedule to view
    pub name: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task cron delete`.
#[derive(Args, Debug)]
pub struct CronDeleteArgs {
    /// The name of the Schedule to remove
    pub name: String,
    #[command(flatten)]
    pub force: ForceFlag,
}

/// `ajc task cron list`.
#[derive(Args, Debug)]
pub struct CronListArgs {
    /// Show only task names
    #[arg(long)]
    pub names: bool,
    /// Show only the schedules no process fires (every one when no
    /// scheduler leads the election, none otherwise)
    #[arg(long)]
    pub unfired: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task cron scheduler`.
#[derive(Args, Debug)]
pub struct CronSchedulerArgs {
    /// A unique name for this scheduler, used for leader election
    #[arg(env = "AJC_SCHEDULER_NAME")]
    pub name: String,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// Runs a cron command.
pub async fn run(ctx: &Ctx, cmd: &CronCmd) -> Result<()> {
    match cmd {
        CronCmd::Add(a) => add(ctx, a).await,
        CronCmd::View(a) => view(ctx, a).await,
        CronCmd::Delete(a) => delete(ctx, a).await,
        CronCmd::List(a) => list(ctx, a).await,
        CronCmd::Scheduler(a) => scheduler(ctx, a).await,
        CronCmd::Pause(a) => pause(ctx, a, true).await,
        CronCmd::Resume(a) => pause(ctx, a, false).await,
        CronCmd::RunNow(a) => run_now(ctx, a).await,
    }
}

/// `task cron pause` / `resume`: shows the schedule as stored.
async fn pause(ctx: &Ctx, a: &CronViewArgs, paused: bool) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let s = client.pause_scheduled_task(&a.name, paused).await?;
    show(&s, a.out.json);
    Ok(())
}

/// `task cron run`: enqueues the schedule's task now.
async fn run_now(ctx: &Ctx, a: &CronViewArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let task = client.run_scheduled_task_now(&a.name).await?;
    if a.out.json {
        emit_json(&task);
    } else {
        emitln(format!(
            "Created task {} in queue {} from Scheduled Task {}",
            task.id, task.queue, a.name
        ));
    }
    Ok(())
}

/// Go's `@` auto-prefix for descriptors given without it (docs/processing.md §7.1).
pub fn normalize_schedule(s: &str) -> String {
    const WORDS: [&str; 8] = [
        "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly", "every",
    ];
    if WORDS.iter().any(|w| s.starts_with(w)) {
        format!("@{s}")
    } else {
        s.to_string()
    }
}

/// An invalid schedule's error quoting the schedule as the user wrote it:
/// when ajc added Go's `@` prefix (`every tuesday` read as `@every
/// tuesday`), the parser's message names the rewritten spec, which the user
/// never typed (docs/processing.md §7.1).
fn quoting_the_user(e: ScheduleError, typed: &str) -> CliError {
    match e {
        ScheduleError::InvalidSchedule { schedule, source } if schedule != typed => {
            let reason = source.to_string().replace(&schedule, typed);
            CliError::msg(format!(
                "invalid cron schedule {typed:?}: {reason} (a schedule starting with {:?} is read as the descriptor {schedule:?})",
                typed.split_whitespace().next().unwrap_or(typed),
            ))
        }
        other => other.into(),
    }
}

/// The Go `task cron view` text.
pub fn schedule_text(s: &ScheduledTask) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "Scheduled Task {} created at {}\n\n",
        s.name,
        go_time(s.created_at)
    );
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:>21}: {value}");
    };
    line("Schedule", s.schedule.clone());
    line("Queue", s.queue.clone());
    line("Task Type", s.task_type.clone());
    line(
        "Payload",
        iec_bytes(s.payload.as_ref().map(|p| p.len()).unwrap_or(0) as u64),
    );
    if !s.deadline.is_zero() {
        line("Scheduling Deadline", humanize(s.deadline));
    }
    if s.max_tries > 0 {
        line("Maximum Tries", crate::format::comma(s.max_tries));
    }
    if let Some(place) = &s.declared_in {
        line("Declared In", place.clone());
    }
    if s.paused {
        line(
            "Paused",
            "yes (Rust schedulers make no task from it)".into(),
        );
    }
    out
}

/// Prints a schedule as text or JSON.
fn show(s: &ScheduledTask, json: bool) {
    if json {
        emit_json(s);
    } else {
        emit(schedule_text(s));
    }
}

/// `task cron add`: validates, stores and shows a schedule.
async fn add(ctx: &Ctx, a: &CronAddArgs) -> Result<()> {
    let mut b = Task::builder(a.task_type.clone());
    if let Some(p) = a.payload.bytes()? {
        b = b.raw_payload(p);
    }
    let b = with_settings(b, &a.task)?;
    let template = b.build()?;
    let mut schedule = ScheduledTask::new(
        a.name.clone(),
        normalize_schedule(&a.schedule),
        a.task.queue.clone(),
        &template,
    )
    .map_err(|e| quoting_the_user(e, &a.schedule))?;
    if a.go_encoding {
        schedule = schedule.with_payload_encoding(asyncjobs::PayloadEncoding::Go);
    }
    let client = client(
        &ctx.global,
        Prepare::Queue(asyncjobs::queue::DEFAULT_QUEUE_NAME.into()),
        Ok,
    )
    .await?;
    if let Err(asyncjobs::Error::QueueNotFound(_)) = client.queue_info(&a.task.queue).await {
        eprintln!(
            "ajc: warning: queue {} does not exist; its scheduled tasks fail with queue_error until it is created",
            a.task.queue
        );
    }
    client.create_scheduled_task(&schedule).await?;
    let stored = client.load_scheduled_task(&a.name).await?;
    show(&stored, a.out.json);
    Ok(())
}

/// `task cron view`.
async fn view(ctx: &Ctx, a: &CronViewArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let s = client.load_scheduled_task(&a.name).await?;
    show(&s, a.out.json);
    Ok(())
}

/// `task cron delete`, after confirmation.
async fn delete(ctx: &Ctx, a: &CronDeleteArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    if !a.force.force
        && !ctx
            .ui
            .confirm(&format!("Really remove Scheduled Task {}", a.name))?
    {
        return Ok(());
    }
    client.delete_scheduled_task(&a.name).await?;
    emitln(format!("Removed Scheduled Task {}", a.name));
    Ok(())
}

/// What `task cron ls` shows for a schedule no process fires.
pub const UNFIRED: &str = "unfired: no scheduler";

/// `task cron list`: names, a table or JSON. A schedule is unfired when no
/// scheduler leads the election (docs/processing.md §2.20): the table says
/// so in its `Fired By` column and a warning, `--unfired` keeps only those.
async fn list(ctx: &Ctx, a: &CronListArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let mut tasks = match client.scheduled_tasks().await {
        Ok(t) => t,
        // no configuration bucket: nothing was ever scheduled
        Err(ScheduleError::Client(asyncjobs::Error::StorageNotReady(_))) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let leader = client.scheduler_leader().await?;
    if a.unfired && leader.is_some() {
        tasks.clear();
    }
    if leader.is_none() && !tasks.is_empty() && !a.unfired {
        eprintln!(
            "ajc: warning: no scheduler leads the election, so no process fires these {} schedule(s): \
             start a worker built with asyncjobs::main! (without --no-scheduler) or `ajc task cron scheduler NAME`",
            tasks.len()
        );
    }
    if a.out.json {
        if a.names {
            emit_json(&tasks.iter().map(|t| &t.name).collect::<Vec<_>>());
        } else {
            emit_json(&tasks);
        }
        return Ok(());
    }
    if a.names {
        for t in &tasks {
            emitln(&t.name);
        }
        return Ok(());
    }
    if tasks.is_empty() {
        emitln(if a.unfired {
            "No unfired Scheduled Tasks found"
        } else {
            "No Scheduled Tasks found"
        });
        return Ok(());
    }
    let mut table = Table::new(
        format!("{} Scheduled Task(s)", tasks.len()),
        &[
            "Name",
            "Schedule",
            "Queue",
            "Task Type",
            "Created",
            "Declared In",
            "Fired By",
        ],
    );
    let fired_by = leader.unwrap_or_else(|| UNFIRED.to_string());
    for t in &tasks {
        table.row(vec![
            t.name.clone().into(),
            t.schedule.clone().into(),
            t.queue.clone().into(),
            t.task_type.clone().into(),
            go_time(t.created_at).into(),
            t.declared_in.clone().unwrap_or_default().into(),
            fired_by.clone().into(),
        ]);
    }
    emit(table.render(&ctx.ui));
    Ok(())
}

/// `ajc task cron scheduler NAME`.
async fn scheduler(ctx: &Ctx, a: &CronSchedulerArgs) -> Result<()> {
    if a.name.is_empty() {
        return Err(CliError::msg("a scheduler name is required"));
    }
    let client = client(
        &ctx.global,
        Prepare::Queue(asyncjobs::queue::DEFAULT_QUEUE_NAME.into()),
        Ok,
    )
    .await?;
    let stop = shutdown_on_signals();
    serve_metrics(a.monitor, stop.clone()).await?;
    tracing::info!(scheduler = %a.name, "starting the task scheduler");
    Scheduler::new(client, a.name.clone()).run(stop).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(normalize_schedule("daily"), "@daily");
        assert_eq!(normalize_schedule("every 5m"), "@every 5m");
        assert_eq!(normalize_schedule("@hourly"), "@hourly");
        assert_eq!(normalize_schedule("*/5 * * * *"), "*/5 * * * *");
    }

    #[test]
    fn invalid_schedules_quote_what_the_user_typed() {
        let template = Task::builder("x").build().unwrap();
        for typed in ["every tuesday", "weeklyish"] {
            let e = ScheduledTask::new("n", normalize_schedule(typed), "Q", &template).unwrap_err();
            let msg = quoting_the_user(e, typed).to_string();
            assert!(
                msg.starts_with(&format!("invalid cron schedule {typed:?}: ")),
                "{msg}"
            );
            assert!(!msg.contains(&format!("@{typed}:")), "{msg}");
        }
    }
}
