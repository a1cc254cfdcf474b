//! `ajc task cron …`: scheduled tasks and the scheduler.

use super::task::{payload_bytes, with_settings};
use super::{emit, emit_json, emitln, Ctx};
use crate::cli::{CronAddArgs, CronCmd, CronDeleteArgs, CronListArgs, CronViewArgs};
use crate::connect::{client, Prepare};
use crate::error::Result;
use crate::format::{go_time, humanize, iec_bytes};
use crate::table::Table;
use asyncjobs::{ScheduleError, ScheduledTask, Task};

/// Runs a cron command.
pub async fn run(ctx: &Ctx, cmd: &CronCmd) -> Result<()> {
    match cmd {
        CronCmd::Add(a) => add(ctx, a).await,
        CronCmd::View(a) => view(ctx, a).await,
        CronCmd::Delete(a) => delete(ctx, a).await,
        CronCmd::List(a) => list(ctx, a).await,
        CronCmd::Scheduler(a) => super::process::scheduler(ctx, a).await,
    }
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
    if let Some(p) = &a.payload {
        b = b.raw_payload(payload_bytes(p, a.raw_string)?);
    }
    let b = with_settings(b, &a.task)?;
    let template = b.build()?;
    let mut schedule = ScheduledTask::new(
        a.name.clone(),
        normalize_schedule(&a.schedule),
        a.task.queue.clone(),
        &template,
    )?;
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

/// `task cron list`: names, a table or JSON.
async fn list(ctx: &Ctx, a: &CronListArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let tasks = match client.scheduled_tasks().await {
        Ok(t) => t,
        // no configuration bucket: nothing was ever scheduled
        Err(ScheduleError::Client(asyncjobs::Error::StorageNotReady(_))) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
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
        emitln("No Scheduled Tasks found");
        return Ok(());
    }
    let mut table = Table::new(
        format!("{} Scheduled Task(s)", tasks.len()),
        &["Name", "Schedule", "Queue", "Task Type", "Created"],
    );
    for t in &tasks {
        table.row(vec![
            t.name.clone().into(),
            t.schedule.clone().into(),
            t.queue.clone().into(),
            t.task_type.clone().into(),
            go_time(t.created_at).into(),
        ]);
    }
    emit(table.render(&ctx.ui));
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
}
