//! How a task is shown: the colour of its state and the Go `task view`
//! text, shared by `task view`, `task retry`, `task list` and `task watch`.

use crate::commands::{emit, emit_json, Ctx};
use crate::error::Result;
use crate::format::{go_time, humanize_nanos, iec_bytes};
use crate::ui::{Style, Ui};
use asyncjobs::{Client, Task, TaskState};

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

/// Loads (and verifies) a task and prints it as text or JSON.
pub async fn show_task(ctx: &Ctx, client: &Client, id: &str, json: bool) -> Result<()> {
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
    if !t.batch.is_empty() {
        // ours: the batch it belongs to (docs/processing.md §2.23)
        line(
            "Batch",
            if t.dependencies_any_outcome {
                format!("{} (its callback)", t.batch)
            } else {
                t.batch.clone()
            },
        );
    }
    if let Some(p) = &t.progress {
        // ours: Go has no progress (docs/processing.md §2.17)
        line("Progress", format!("{p} (at {})", go_time(p.at)));
    }
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
    if t.priority > 0 {
        // ours: Go has no priority, and a default task shows none
        // (docs/processing.md §2.21)
        line("Priority", t.priority.to_string());
    }
    if let Some(k) = &t.key {
        // ours, as the priority (docs/processing.md §2.23)
        line("Key", k.clone());
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
