//! `ajc task list`: scans the task store, filters and prints a table or
//! JSON.

use super::show::state_style;
use crate::commands::{emit, emit_json, emitln, Ctx};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::flags::JsonFlag;
use crate::format::go_time;
use crate::table::{Align, Cell, Table};
use asyncjobs::{TaskFilter, TaskState};
use clap::{ArgAction, Args};
use futures::StreamExt;

/// `ajc task list`.
#[derive(Args, Debug)]
pub struct TaskListArgs {
    /// Limits the number of tasks shown
    #[arg(default_value_t = 200)]
    pub limit: usize,
    /// Only tasks in this state (repeatable or comma separated)
    #[arg(long, value_name = "STATE", action = ArgAction::Append, value_delimiter = ',')]
    pub state: Vec<String>,
    /// Only tasks of this type (repeatable or comma separated)
    #[arg(long = "type", value_name = "TYPE", action = ArgAction::Append, value_delimiter = ',')]
    pub task_type: Vec<String>,
    /// Only tasks last enqueued into this queue
    #[arg(short = 'q', long)]
    pub queue: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// The filter of `task ls`, `None` without filter flags.
fn task_filter(a: &TaskListArgs) -> Result<Option<TaskFilter>> {
    if a.state.is_empty() && a.task_type.is_empty() && a.queue.is_none() {
        return Ok(None);
    }
    let mut f = TaskFilter::new();
    for s in &a.state {
        let state = TaskState::from_name(s.trim()).ok_or_else(|| {
            CliError::msg(format!(
                "unknown task state {s:?}, expected one of new, active, retry, expired, terminated, complete, queue_error, blocked, unreachable"
            ))
        })?;
        f = f.state(state);
    }
    for t in &a.task_type {
        f = f.task_type(t.trim());
    }
    if let Some(q) = &a.queue {
        f = f.queue(q.clone());
    }
    Ok(Some(f))
}

/// `task list`: scans the store (with progress), filters, prints.
pub async fn run(ctx: &Ctx, a: &TaskListArgs) -> Result<()> {
    let filter = task_filter(a)?;
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let total = client.tasks_info().await?.messages;
    if total == 0 {
        return Err(CliError::msg("no tasks found"));
    }
    let mut progress = ctx.ui.progress("Listing tasks", Some(total));
    let mut stream = client.list_tasks(usize::MAX).await?;
    let mut tasks = Vec::new();
    let mut scanned = 0u64;
    let mut limited = false;
    while let Some(item) = stream.next().await {
        scanned += 1;
        progress.set(scanned);
        match item {
            Ok(t) => {
                if filter.as_ref().is_none_or(|f| f.matches(&t)) {
                    if tasks.len() >= a.limit {
                        limited = true;
                        break;
                    }
                    tasks.push(t);
                }
            }
            Err(asyncjobs::Error::InvalidTaskRecord { id, reason }) => {
                progress.finish();
                eprintln!("ajc: skipping task record {id} that does not decode: {reason}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    progress.finish();
    drop(stream);

    if a.out.json {
        emit_json(&tasks);
        return Ok(());
    }
    let title = match &filter {
        None if total > a.limit as u64 => format!("{} of {} Tasks", a.limit, total),
        None => format!("{total} Tasks"),
        Some(_) if tasks.is_empty() => {
            emitln("No matching tasks found");
            return Ok(());
        }
        Some(_) if limited => format!("{} matching Tasks (limit reached)", tasks.len()),
        Some(_) => format!("{} matching Tasks of {total}", tasks.len()),
    };
    let mut table = Table::new(title, &["ID", "Type", "Created", "State", "Queue", "Tries"])
        .align(5, Align::Right);
    for t in &tasks {
        table.row(vec![
            t.id.clone().into(),
            t.task_type.clone().into(),
            go_time(t.created).into(),
            Cell::styled(t.state.as_str(), state_style(t.state)),
            t.queue.clone().into(),
            t.tries.to_string().into(),
        ]);
    }
    emit(table.render(&ctx.ui));
    Ok(())
}
