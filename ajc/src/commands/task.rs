//! `ajc task …`: add, view, list, retry, remove and purge tasks, manage the
//! task store and watch lifecycle events.

use super::{emit, emit_json, emitln, Ctx};
use crate::blocks::TasksBlock;
use crate::cli::{
    TaskAddArgs, TaskCmd, TaskConfigureArgs, TaskDeleteArgs, TaskInitArgs, TaskListArgs,
    TaskReconcileArgs, TaskRetryArgs, TaskSettings, TaskViewArgs, TaskWatchArgs, TasksArgs,
};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::format::{go_time, humanize_nanos, iec_bytes, ucomma};
use crate::table::{Align, Cell, Table};
use crate::ui::{Style, Ui};
use asyncjobs::signing::Keys;
use asyncjobs::{Client, ClientBuilder, Task, TaskBuilder, TaskFilter, TaskState};
use futures::StreamExt;
use serde_json::value::RawValue;
use std::path::Path;
use std::time::Duration;

/// Runs a task command.
pub async fn run(ctx: &Ctx, args: &TasksArgs) -> Result<()> {
    let keys = signing_keys(args.sign.as_deref(), args.verify.as_deref())?;
    match &args.cmd {
        TaskCmd::Add(a) => add(ctx, keys, a).await,
        TaskCmd::Retry(a) => retry(ctx, keys, a).await,
        TaskCmd::View(a) => view(ctx, keys, a).await,
        TaskCmd::Delete(a) => delete(ctx, a).await,
        TaskCmd::List(a) => list(ctx, a).await,
        TaskCmd::Purge(f) => purge(ctx, f.force).await,
        TaskCmd::Reconcile(a) => reconcile(ctx, a).await,
        TaskCmd::Initialize(a) => initialize(ctx, a).await,
        TaskCmd::Configure(a) => configure(ctx, a).await,
        TaskCmd::Watch(a) => watch(ctx, a).await,
        TaskCmd::Process(a) => super::process::process(ctx, keys, a).await,
        TaskCmd::Cron { cmd } => super::cron::run(ctx, cmd).await,
    }
}

/// One key flag: an existing file holds the hex, anything else is the hex.
fn key_arg(
    flag: &str,
    arg: &str,
    what: &str,
    from_file: fn(&str) -> asyncjobs::Result<Keys>,
    from_hex: fn(&str) -> asyncjobs::Result<Keys>,
) -> Result<Keys> {
    let text = |e: asyncjobs::Error| CliError::from(e).to_string();
    if Path::new(arg).is_file() {
        from_file(arg).map_err(|e| CliError::msg(format!("{flag} {arg}: {}", text(e))))
    } else {
        from_hex(arg).map_err(|e| {
            CliError::msg(format!(
                "{flag}: {arg:?} is neither an existing file nor a hex encoded ed25519 {what}: {}",
                text(e)
            ))
        })
    }
}

/// Keys from `--sign` and `--verify` (docs/processing.md §5.2): an existing file
/// holds the hex, anything else is the hex itself (a 32-byte seed for
/// `--sign`, a 32-byte public key for `--verify`). With `--sign` alone,
/// unsigned tasks stay readable, as in Go.
pub fn signing_keys(sign: Option<&str>, verify: Option<&str>) -> Result<Option<Keys>> {
    let signer = sign
        .map(|s| {
            key_arg(
                "--sign",
                s,
                "seed",
                |p| Keys::from_seed_file(p),
                Keys::from_seed_hex,
            )
        })
        .transpose()?;
    let verifier = verify
        .map(|s| {
            key_arg(
                "--verify",
                s,
                "public key",
                |p| Keys::from_public_file(p),
                Keys::from_public_hex,
            )
        })
        .transpose()?;
    Ok(match (signer, verifier) {
        (Some(s), Some(v)) => Some(s.with_verifying_key(&v)),
        // a seed alone signs; like Go it does not make unsigned tasks
        // unreadable (signed ones are still checked against its key)
        (Some(s), None) => Some(s.optional(true)),
        (None, Some(v)) => Some(v),
        (None, None) => None,
    })
}

/// Applies `--deadline` (relative to now, 0 for none) and `--tries`
/// (when above 0) to a task builder.
pub fn with_settings(mut b: TaskBuilder, s: &TaskSettings) -> Result<TaskBuilder> {
    let deadline = s
        .deadline
        .map(|d| d.non_negative("--deadline"))
        .transpose()
        .map_err(CliError::msg)?;
    if let Some(d) = deadline.filter(|d| !d.is_zero()) {
        b = b.deadline_in(d);
    }
    if s.tries > 0 {
        b = b.max_tries(s.tries);
    }
    Ok(b)
}

/// Applies signing keys to a client builder.
pub fn with_keys(b: ClientBuilder, keys: Option<Keys>) -> ClientBuilder {
    match keys {
        Some(k) => b.signing_keys(k),
        None => b,
    }
}

/// The payload bytes of a command-line payload: JSON is stored as given,
/// anything else (or everything with `raw_string`) as a JSON string.
pub fn payload_bytes(arg: &str, raw_string: bool) -> Result<Vec<u8>> {
    let as_string = || serde_json::to_vec(arg).unwrap_or_default();
    if raw_string {
        return Ok(as_string());
    }
    let trimmed = arg.trim();
    match serde_json::from_str::<&RawValue>(trimmed) {
        Ok(v) => Ok(v.get().as_bytes().to_vec()),
        Err(e) if trimmed.starts_with(['{', '[', '"']) => Err(CliError::msg(format!(
            "the payload is not valid JSON: {e} (use --raw-string to store it as a string)"
        ))),
        Err(_) => Ok(as_string()),
    }
}

/// The style a state is shown in on a colour terminal.
pub fn state_style(s: TaskState) -> Option<Style> {
    match s {
        TaskState::Complete => Some(Style::Green),
        TaskState::Active => Some(Style::Cyan),
        TaskState::Retry | TaskState::Blocked | TaskState::New => Some(Style::Yellow),
        TaskState::Expired
        | TaskState::Terminated
        | TaskState::QueueError
        | TaskState::Unreachable => Some(Style::Red),
        TaskState::Unknown => None,
    }
}

/// `task add`: builds the task before connecting, then enqueues it.
async fn add(ctx: &Ctx, keys: Option<Keys>, a: &TaskAddArgs) -> Result<()> {
    let text = match (&a.payload, &a.payload_file) {
        (Some(p), _) => p.clone(),
        (None, Some(file)) => read_payload_file(file)?,
        (None, None) => {
            return Err(CliError::msg(
                "a payload is required: give it as an argument or with --payload-file FILE (- for standard input)",
            ))
        }
    };
    let payload = payload_bytes(&text, a.raw_string)?;
    let mut b = with_settings(
        Task::builder(a.task_type.clone()).raw_payload(payload),
        &a.task,
    )?;
    let deps: Vec<String> = a
        .depends
        .iter()
        .flat_map(|d| d.split(','))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    if !deps.is_empty() {
        b = b.depends_on(deps);
        if a.load {
            b = b.load_dependency_results();
        }
    }
    match (&a.at, &a.run_in) {
        (Some(at), _) => {
            let at = asyncjobs::wire::parse_time(at).map_err(|e| {
                CliError::msg(format!(
                    "--at {at:?}: expected an RFC 3339 time such as 2026-12-03T18:00:00Z: {e}"
                ))
            })?;
            b = b.run_at(at);
        }
        (None, Some(d)) => b = b.run_in(d.non_negative("--in").map_err(CliError::msg)?),
        (None, None) => {}
    }
    let mut task = b.build()?;
    let client = client(&ctx.global, Prepare::Queue(a.task.queue.clone()), |b| {
        Ok(with_keys(b, keys))
    })
    .await?;
    tokio::time::timeout(Duration::from_secs(5), client.enqueue(&mut task))
        .await
        .map_err(|_| CliError::msg("enqueueing the task timed out"))??;
    match task.run_at {
        Some(due) if due > time::OffsetDateTime::now_utc() => emitln(format!(
            "Enqueued task {} (due {})",
            task.id,
            asyncjobs::wire::format_time(&due)
        )),
        _ => emitln(format!("Enqueued task {}", task.id)),
    }
    Ok(())
}

/// Reads a payload from `file`, or from standard input for `-`.
fn read_payload_file(file: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| {
        CliError::msg(format!(
            "reading the payload from {} failed: {e}",
            if file.as_os_str() == "-" {
                "standard input".to_string()
            } else {
                file.display().to_string()
            }
        ))
    })?;
    Ok(text)
}

/// `task retry`: re-enqueues into `--queue` (default: the task's own
/// queue; Go's default is `DEFAULT`, where the task's workers may never
/// see it) and shows the task.
async fn retry(ctx: &Ctx, keys: Option<Keys>, a: &TaskRetryArgs) -> Result<()> {
    let Some(id) = &a.id else {
        return replay(ctx, keys, a).await;
    };
    let queue = match &a.queue {
        Some(q) => q.clone(),
        None => {
            let reader = client(&ctx.global, Prepare::Nothing, |b| {
                Ok(with_keys(b, keys.clone()))
            })
            .await?;
            let task = reader.load_task_unverified(id).await?;
            if task.queue.is_empty() {
                asyncjobs::Queue::default_queue().name
            } else {
                task.queue
            }
        }
    };
    let client = client(&ctx.global, Prepare::Queue(queue), |b| {
        Ok(with_keys(b, keys))
    })
    .await?;
    client.retry_task(id).await?;
    show_task(ctx, &client, id, a.out.json).await
}

/// `task retry` without an id: every task the filters match, each into its
/// own queue, with progress on a terminal and a summary.
async fn replay(ctx: &Ctx, keys: Option<Keys>, a: &TaskRetryArgs) -> Result<()> {
    let mut filter = asyncjobs::TaskFilter::new();
    if let Some(s) = &a.state {
        let state = TaskState::from_name(s)
            .filter(|s| *s != TaskState::Unknown)
            .ok_or_else(|| CliError::msg(format!("unknown task state {s:?}")))?;
        filter = filter.state(state);
    }
    if let Some(t) = &a.task_type {
        filter = filter.task_type(t.clone());
    }
    if let Some(q) = &a.from_queue {
        filter = filter.queue(q.clone());
    }
    if let Some(since) = &a.since {
        let t = asyncjobs::wire::parse_time_bound(since).ok_or_else(|| {
            CliError::msg(format!(
                "--since {since:?}: expected RFC 3339, YYYY-MM-DDTHH:MM (UTC) or YYYY-MM-DD"
            ))
        })?;
        filter = filter.created_since(t);
    }
    if let Some(e) = &a.error {
        filter = filter.last_error_contains(e.clone());
    }
    let client = client(&ctx.global, Prepare::Nothing, |b| Ok(with_keys(b, keys))).await?;
    let mut progress: Option<crate::ui::Progress> = None;
    let summary = client
        .replay_tasks(filter, a.dry_run, |done, total| {
            let p = progress
                .get_or_insert_with(|| ctx.ui.progress("Replaying tasks", Some(total as u64)));
            p.set(done as u64);
        })
        .await?;
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    if a.out.json {
        let failed: Vec<_> = summary
            .failed
            .iter()
            .map(|(id, why)| serde_json::json!({"id": id, "error": why}))
            .collect();
        let out = if a.dry_run {
            serde_json::json!({"dry_run": true, "matched": summary.matched})
        } else {
            serde_json::json!({
                "matched": summary.matched.len(),
                "replayed": summary.replayed,
                "skipped": summary.skipped,
                "failed": failed,
            })
        };
        emitln(serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    if a.dry_run {
        for id in &summary.matched {
            emitln(id);
        }
        emitln(format!(
            "{} tasks would be replayed (dry run: nothing changed)",
            summary.matched.len()
        ));
        return Ok(());
    }
    for (id, why) in &summary.failed {
        emitln(format!("{id}: {why}"));
    }
    emitln(format!(
        "Replayed {} of {} matching tasks: {} skipped (gone since listed), {} failed",
        summary.replayed.len(),
        summary.matched.len(),
        summary.skipped.len(),
        summary.failed.len()
    ));
    if summary.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::msg(format!(
            "{} tasks could not be replayed",
            summary.failed.len()
        )))
    }
}

/// `task view`.
async fn view(ctx: &Ctx, keys: Option<Keys>, a: &TaskViewArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, |b| Ok(with_keys(b, keys))).await?;
    show_task(ctx, &client, &a.id, a.out.json).await
}

/// Loads (and verifies) a task and prints it as text or JSON.
async fn show_task(ctx: &Ctx, client: &Client, id: &str, json: bool) -> Result<()> {
    let task = client.load_task(id).await?;
    if json {
        emit_json(&task);
    } else {
        emit(task_text(&ctx.ui, &task));
    }
    Ok(())
}

/// The Go `task view` text.
pub fn task_text(ui: &Ui, t: &Task) -> String {
    use std::fmt::Write as _;
    let mut out = format!("Task {} created at {}\n\n", t.id, go_time(t.created));
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:>21}: {value}");
    };
    line("Task Type", t.task_type.clone());
    line(
        "Payload",
        iec_bytes(t.payload.as_ref().map(|p| p.len()).unwrap_or(0) as u64),
    );
    line(
        "Status",
        match state_style(t.state) {
            Some(s) => ui.paint(s, t.state.as_str()),
            None => t.state.to_string(),
        },
    );
    if !t.dependencies.is_empty() {
        line("Dependencies", t.dependencies.join(", "));
        line("Load Dep Results", t.load_dependencies.to_string());
    }
    if let Some(r) = &t.result {
        let took = (r.completed - t.created).whole_nanoseconds();
        line(
            "Completed",
            format!(
                "{} ({})",
                go_time(r.completed),
                humanize_nanos(took.clamp(i64::MIN as i128, i64::MAX as i128 - 1) as i64)
            ),
        );
    } else {
        if let Some(tried) = t.tried {
            line("Last Processed", go_time(tried));
        }
        if !t.last_err.is_empty() {
            line("Last Error", t.last_err.clone());
        }
    }
    if !t.queue.is_empty() {
        line("Queue", t.queue.clone());
    }
    line("Tries", t.tries.to_string());
    if let Some(due) = t.run_at {
        line("Due", go_time(due));
    }
    if let Some(d) = t.deadline {
        line("Scheduling Deadline", go_time(d));
    }
    if t.max_tries > 0 {
        line("Maximum Tries", crate::format::comma(t.max_tries));
    }
    // beyond Go's block: what the task carries and returned
    if let Some(p) = &t.payload {
        let _ = write!(out, "\nPayload:\n{}\n", shown_data(p));
    }
    if let Some(r) = &t.result {
        let _ = write!(
            out,
            "\nResult:\n{}\n",
            shown_data(r.payload.get().as_bytes())
        );
    }
    out
}

/// Longest payload or result `task view` prints, in bytes (`--json` shows any).
const MAX_SHOWN: usize = 64 * 1024;

/// Stored bytes for `task view`: indented JSON, text, or a size for
/// binary data and anything longer than [`MAX_SHOWN`].
fn shown_data(bytes: &[u8]) -> String {
    if bytes.len() > MAX_SHOWN {
        return format!("({}, use --json to see it)", iec_bytes(bytes.len() as u64));
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(_) => format!("({} of binary data)", iec_bytes(bytes.len() as u64)),
        },
    }
}

/// `task reconcile`: expires the tasks whose work item is gone.
async fn reconcile(ctx: &Ctx, a: &TaskReconcileArgs) -> Result<()> {
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

/// `task delete`, after confirmation.
async fn delete(ctx: &Ctx, a: &TaskDeleteArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    if !a.force.force
        && !ctx.ui.confirm(&format!(
            "Really remove Task {}, work queue entries will not be removed",
            a.id
        ))?
    {
        return Ok(());
    }
    client.delete_task(&a.id).await?;
    emitln(format!("Removed Task {}", a.id));
    Ok(())
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
async fn list(ctx: &Ctx, a: &TaskListArgs) -> Result<()> {
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

/// `task purge`, after confirmation.
async fn purge(ctx: &Ctx, force: bool) -> Result<()> {
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
async fn initialize(ctx: &Ctx, a: &TaskInitArgs) -> Result<()> {
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
async fn configure(ctx: &Ctx, a: &TaskConfigureArgs) -> Result<()> {
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

/// One event as the Go `task watch` prints it.
pub fn event_line(ui: &Ui, data: &[u8]) -> String {
    use asyncjobs::events::{parse_event, Event};
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }
    let kind = match serde_json::from_slice::<Probe>(data) {
        Ok(p) => p.kind.unwrap_or_default(),
        Err(e) => return format!("Could not parse event: {e}"),
    };
    match parse_event(data) {
        Ok(Event::TaskState(e)) => {
            let state = match state_style(e.state) {
                Some(s) => ui.paint(s, e.state.as_str()),
                None => e.state.to_string(),
            };
            let mut line = format!(
                "[{}] {}: queue: {} type: {} tries: {} state: {}",
                crate::format::clock(e.timestamp),
                e.task_id,
                e.queue,
                e.task_type,
                e.tries,
                state
            );
            if !e.last_error.is_empty() {
                line.push_str(&format!(" error: {}", e.last_error));
            }
            line
        }
        Ok(Event::LeaderElected(e)) => format!(
            "[{}] {}: new {} leader",
            crate::format::clock(e.timestamp),
            e.name,
            e.component
        ),
        Err(_)
            if kind != asyncjobs::events::TASK_STATE_EVENT_TYPE
                && kind != asyncjobs::events::LEADER_ELECTED_EVENT_TYPE =>
        {
            format!(
                "[{}] Unknown event type {kind}",
                crate::format::clock(time::OffsetDateTime::now_utc())
            )
        }
        Err(e) => format!("Could not parse event: {e}"),
    }
}

/// `task watch`: prints events until an hour passes without one.
async fn watch(ctx: &Ctx, a: &TaskWatchArgs) -> Result<()> {
    let nc = crate::connect::nats(&ctx.global).await?;
    let subject = match &a.task {
        Some(id) => format!("{}{id}", asyncjobs::events::TASK_STATE_SUBJECT_PREFIX),
        None => asyncjobs::events::ALL_EVENTS_SUBJECT.to_string(),
    };
    let mut sub = nc
        .subscribe(subject)
        .await
        .map_err(|e| CliError::msg(format!("subscribing to events failed: {e}")))?;
    nc.flush()
        .await
        .map_err(|e| CliError::msg(format!("subscribing to events failed: {e}")))?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(3600), sub.next())
            .await
            .map_err(|_| CliError::msg("no events received for 1h0m0s"))?
            .ok_or_else(|| CliError::msg("the event subscription was closed"))?;
        if a.json {
            emitln(String::from_utf8_lossy(&msg.payload).trim());
        } else {
            emitln(event_line(&ctx.ui, &msg.payload));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(payload_bytes(r#"{"a":1}"#, false).unwrap(), br#"{"a":1}"#);
        assert_eq!(
            payload_bytes(r#"{"a":1}"#, true).unwrap(),
            br#""{\"a\":1}""#.to_vec()
        );
        assert_eq!(payload_bytes("hello", false).unwrap(), br#""hello""#);
        assert_eq!(payload_bytes(" [1, 2] ", false).unwrap(), b"[1, 2]");
        assert_eq!(payload_bytes("", false).unwrap(), br#""""#);
        assert!(payload_bytes("{bad", false).is_err());
    }

    #[test]
    fn keys() {
        assert!(signing_keys(None, None).unwrap().is_none());
        let seed = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
        let k = signing_keys(Some(seed), None).unwrap().unwrap();
        assert!(k.signs());
        assert!(signing_keys(Some("zz"), None).is_err());
        assert!(signing_keys(Some("0102"), None).is_err());
        assert!(signing_keys(None, Some("nothex")).is_err());
        let k = signing_keys(
            None,
            Some("79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"),
        )
        .unwrap()
        .unwrap();
        assert!(k.verifies() && !k.signs());
    }

    #[test]
    fn events() {
        let ui = Ui {
            stdout_tty: false,
            stderr_tty: false,
            stdin_tty: false,
            color: false,
        };
        let line = event_line(
            &ui,
            br#"{"event_id":"24mHmiRY9eQCVU4xuHwsztJ2MJH","type":"io.choria.asyncjobs.v1.task_state","timestamp":"2022-02-07T10:16:42Z","task_id":"T1","state":"retry","tries":1,"queue":"DEFAULT","task_type":"email:new","last_error":"boom"}"#,
        );
        assert_eq!(
            line,
            "[10:16:42] T1: queue: DEFAULT type: email:new tries: 1 state: retry error: boom"
        );
        let line = event_line(
            &ui,
            br#"{"type":"io.choria.asyncjobs.v1.leader_elected","timestamp":"2022-02-07T10:16:42Z","name":"s1","component":"task_scheduler"}"#,
        );
        assert_eq!(line, "[10:16:42] s1: new task_scheduler leader");
        assert!(event_line(&ui, br#"{"type":"x.y"}"#).ends_with("Unknown event type x.y"));
        assert!(event_line(&ui, b"nope").starts_with("Could not parse event:"));
    }
}
