//! `ajc batch …` (not in the Go ajc): enqueue a group of tasks as one
//! batch with a callback, show where it stands, cancel or retry it as a
//! whole (docs/processing.md §2.23).

use super::task::cancel::who;
use super::task::input::{payload_bytes, with_settings, TaskSettings};
use super::task::show::state_style;
use crate::commands::{emit, emit_json, Ctx};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::flags::JsonFlag;
use crate::format::go_time;
use crate::table::{Cell, Table};
use asyncjobs::batch::{BatchStatus, CallbackRetry};
use asyncjobs::{Task, TaskBuilder};
use asyncjobs_http::schema::{BatchCancelResponse, BatchRetryResponse, BatchStatusView, BatchView};
use clap::{ArgAction, Args, Subcommand};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// `ajc batch …`.
#[derive(Subcommand, Debug)]
pub enum BatchCmd {
    /// Enqueues tasks as one batch, with a callback that runs once every
    /// member has ended
    #[command(visible_aliases = ["new", "a", "enqueue"])]
    Add(BatchAddArgs),
    /// Shows where a batch stands: its members' states and its callback's
    #[command(visible_aliases = ["view", "show", "v", "i"])]
    Info(BatchIdArgs),
    /// Cancels a batch: its callback, then every member not yet ended
    Cancel(BatchIdArgs),
    /// Retries a batch: its failed members, then its callback
    Retry(BatchIdArgs),
}

/// `ajc batch add`.
#[derive(Args, Debug)]
pub struct BatchAddArgs {
    /// A member as TYPE=PAYLOAD (or TYPE alone, without payload); repeat
    /// for each member. The payload follows `task add`'s rules (JSON as
    /// given, other text as a JSON string)
    #[arg(long = "task", value_name = "TYPE=PAYLOAD", action = ArgAction::Append)]
    pub tasks: Vec<String>,
    /// Members from a JSON-lines file ("-" for standard input), one object
    /// a line: {"type": "…", "payload": <any JSON>, "max_tries": N,
    /// "deadline": "<RFC 3339>"}; only "type" is required
    #[arg(long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The callback as TYPE=PAYLOAD or TYPE: it runs once every member has
    /// ended, whatever their outcome, with the complete members' results
    #[arg(long, value_name = "TYPE[=PAYLOAD]")]
    pub callback: Option<String>,
    #[command(flatten)]
    pub task: TaskSettings,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc batch info|cancel|retry ID`.
#[derive(Args, Debug)]
pub struct BatchIdArgs {
    /// The batch id
    pub id: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// Runs a batch command.
pub async fn run(ctx: &Ctx, cmd: &BatchCmd) -> Result<()> {
    match cmd {
        BatchCmd::Add(a) => add(ctx, a).await,
        BatchCmd::Info(a) => info(ctx, a).await,
        BatchCmd::Cancel(a) => cancel(ctx, a).await,
        BatchCmd::Retry(a) => retry(ctx, a).await,
    }
}

/// A task from `TYPE=PAYLOAD` or `TYPE`: task types may hold `:`, never
/// `=`, so the first `=` ends the type.
pub fn parse_task_arg(flag: &str, arg: &str) -> Result<TaskBuilder> {
    let (task_type, payload) = match arg.split_once('=') {
        Some((t, p)) => (t, Some(payload_bytes(p, false)?)),
        None => (arg, None),
    };
    if !asyncjobs::task::is_valid_name(task_type) {
        return Err(CliError::msg(format!(
            "{flag} {arg:?}: the task type {task_type:?} is invalid (letters, digits, _ : - ; the payload follows an =)"
        )));
    }
    let b = Task::builder(task_type);
    Ok(match payload {
        Some(p) => b.raw_payload(p),
        None => b,
    })
}

/// One line of a members file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "type")]
    task_type: String,
    #[serde(default)]
    payload: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    max_tries: Option<i64>,
    #[serde(default)]
    deadline: Option<String>,
}

/// The members of a JSON-lines file (blank lines skipped).
fn read_members(file: &std::path::Path, settings: &TaskSettings) -> Result<Vec<Task>> {
    use std::io::Read;
    let mut text = String::new();
    let stdin = file.as_os_str() == "-";
    let read = if stdin {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text))
    };
    let name = if stdin {
        "standard input".to_string()
    } else {
        file.display().to_string()
    };
    read.map_err(|e| CliError::msg(format!("reading members from {name} failed: {e}")))?;
    let mut members = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{name} line {}", n + 1);
        let l: Line = serde_json::from_str(line)
            .map_err(|e| CliError::msg(format!("{}: not a member: {e}", at())))?;
        let mut b = with_settings(Task::builder(l.task_type), settings)?;
        if let Some(p) = l.payload {
            b = b.raw_payload(p.get().as_bytes().to_vec());
        }
        if let Some(n) = l.max_tries {
            b = b.max_tries(n);
        }
        if let Some(d) = l.deadline {
            let at_time = asyncjobs::wire::parse_time(&d).map_err(|e| {
                CliError::msg(format!(
                    "{}: deadline {d:?} is not an RFC 3339 time: {e}",
                    at()
                ))
            })?;
            b = b.deadline(at_time);
        }
        members.push(
            b.build()
                .map_err(|e| CliError::msg(format!("{}: {e}", at())))?,
        );
    }
    Ok(members)
}

/// `batch add`: the members are built before connecting.
async fn add(ctx: &Ctx, a: &BatchAddArgs) -> Result<()> {
    let mut members = match &a.file {
        Some(f) => read_members(f, &a.task)?,
        None => Vec::new(),
    };
    for t in &a.tasks {
        members.push(with_settings(parse_task_arg("--task", t)?, &a.task)?.build()?);
    }
    if members.is_empty() {
        return Err(CliError::msg(
            "a batch needs members: give them with --task TYPE=PAYLOAD (repeated) or --file FILE (JSON lines)",
        ));
    }
    let callback = a
        .callback
        .as_deref()
        .map(|c| {
            with_settings(parse_task_arg("--callback", c)?, &a.task)?
                .build()
                .map_err(CliError::from)
        })
        .transpose()?;
    let client = client(&ctx.global, Prepare::Queue(a.task.queue.clone()), Ok).await?;
    let batch = client.enqueue_batch(&mut members, callback).await?;
    if a.out.json {
        emit_json(&BatchView::from(&batch));
        return Ok(());
    }
    let mut text = format!(
        "Enqueued batch {} of {} tasks into queue {}",
        batch.id,
        batch.members.len(),
        batch.queue
    );
    if let Some(cb) = &batch.callback {
        let _ = write!(text, "; callback {cb}");
    }
    emit(format!("{text}\n"));
    Ok(())
}

/// `batch info`.
async fn info(ctx: &Ctx, a: &BatchIdArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let s = client.batch(&a.id).await?;
    if a.out.json {
        emit_json(&BatchStatusView::from(&s));
    } else {
        emit(status_text(ctx, &s));
    }
    Ok(())
}

/// The `batch info` text: the counts, the callback, a table of members.
fn status_text(ctx: &Ctx, s: &BatchStatus) -> String {
    let mut out = format!("Batch {} created at {}\n\n", s.id, go_time(s.created));
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:>10}: {value}");
    };
    line("Queue", s.queue.clone());
    line("Members", s.total.to_string());
    line("Done", s.done.to_string());
    line("Failed", s.failed.to_string());
    line("Pending", s.pending.to_string());
    if s.missing > 0 {
        line("Missing", format!("{} (no record)", s.missing));
    }
    let state = |st: Option<asyncjobs::TaskState>, none: &str| match st {
        Some(st) => match state_style(st) {
            Some(style) => ctx.ui.paint(style, st.as_str()),
            None => st.to_string(),
        },
        None => none.to_string(),
    };
    line(
        "Callback",
        match &s.callback {
            Some(c) => format!(
                "{} {} {}",
                c.id,
                c.task_type,
                state(c.state, "not enqueued")
            ),
            None => "none".into(),
        },
    );
    line(
        "Finished",
        if s.finished() { "yes" } else { "no" }.to_string(),
    );
    let mut table = Table::new("Members", &["ID", "Type", "State", "Last Error"]);
    for m in &s.members {
        table.row(vec![
            Cell::from(m.id.clone()),
            Cell::from(m.task_type.clone()),
            Cell::styled(
                m.state.map(|st| st.as_str()).unwrap_or("missing"),
                m.state.and_then(state_style),
            ),
            Cell::from(m.last_err.clone()),
        ]);
    }
    format!("{out}\n{}", table.render(&ctx.ui))
}

/// `batch cancel`: fails when a task could not be cancelled.
async fn cancel(ctx: &Ctx, a: &BatchIdArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let done = client.cancel_batch(&a.id, &who()).await?;
    if a.out.json {
        emit_json(&BatchCancelResponse::from(&done));
    } else {
        emit(format!(
            "Cancelled batch {}: {} tasks cancelled, {} had already ended{}\n",
            a.id,
            done.cancelled.len(),
            done.finished,
            if done.missing > 0 {
                format!(", {} without a record", done.missing)
            } else {
                String::new()
            }
        ));
    }
    match done.failed.first() {
        Some((id, e)) => Err(CliError::msg(format!(
            "{} tasks of batch {} could not be cancelled (first: {id}: {e}); run the command again",
            done.failed.len(),
            a.id
        ))),
        None => Ok(()),
    }
}

/// `batch retry`: fails when a member or the callback could not be retried.
async fn retry(ctx: &Ctx, a: &BatchIdArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    let done = client.retry_batch(&a.id).await?;
    if a.out.json {
        emit_json(&BatchRetryResponse::from(&done));
    } else {
        let callback = match &done.callback {
            CallbackRetry::NoCallback => "no callback".to_string(),
            CallbackRetry::Enqueued => "callback enqueued (it had never been)".into(),
            CallbackRetry::Rearmed => {
                "callback re-armed: it runs again once every member has ended".into()
            }
            CallbackRetry::Waiting => "callback waiting for the members".into(),
            CallbackRetry::Running => {
                "callback running with the earlier outcomes: left alone (retry again once it has ended)".into()
            }
            CallbackRetry::Failed(e) => format!("callback not re-armed: {e}"),
            other => format!("callback: {other:?}"),
        };
        let mut text = format!(
            "Retried batch {}: {} members retried; {callback}\n",
            a.id,
            done.retried.len()
        );
        if !done.missing.is_empty() {
            let _ = writeln!(
                text,
                "{} members have no record and cannot be made again: {}",
                done.missing.len(),
                done.missing.join(", ")
            );
        }
        emit(text);
    }
    if let Some((id, e)) = done.failed.first() {
        return Err(CliError::msg(format!(
            "{} members of batch {} could not be retried (first: {id}: {e})",
            done.failed.len(),
            a.id
        )));
    }
    if let CallbackRetry::Failed(e) = &done.callback {
        return Err(CliError::msg(format!(
            "the callback of batch {} could not be re-armed: {e}",
            a.id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_arguments_split_at_the_first_equals_sign() {
        let t = parse_task_arg("--task", r#"email:new={"to":"a=b"}"#)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(t.task_type, "email:new");
        assert_eq!(t.payload.as_deref(), Some(br#"{"to":"a=b"}"#.as_slice()));
        let t = parse_task_arg("--task", "report:done")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            (t.task_type.as_str(), t.payload.as_deref()),
            ("report:done", None)
        );
        let t = parse_task_arg("--task", "m=hello")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(t.payload.as_deref(), Some(br#""hello""#.as_slice()));
        assert!(parse_task_arg("--task", "bad type=1").is_err());
        assert!(parse_task_arg("--task", "m={bad").is_err());
    }
}
