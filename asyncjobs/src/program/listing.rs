//! `--list-handlers`: the table of registered handlers ([`handler_table`])
//! and the exit code the listing gives.

use super::ProgramError;
use crate::registry::{HandlerDef, Handlers};
use crate::wire::format_duration;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Prints the table of `handlers` to stdout: exit code 1, with the error
/// on stderr, when there are none (`no_handlers` says why) or they
/// conflict.
pub(super) fn list_handlers(
    handlers: &Handlers,
    no_handlers: impl FnOnce() -> ProgramError,
) -> ExitCode {
    if handlers.is_empty() {
        eprintln!("error: {}", no_handlers());
        return ExitCode::FAILURE;
    }
    print!("{}", handler_table(handlers));
    if let Err(e) = handlers.check() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// and source location, one handler per line.
pub fn handler_table(handlers: &Handlers) -> String {
    if handlers.is_empty() {
        return "no task handlers registered\n".into();
    }
    let rows: Vec<[String; 6]> = handlers.iter().map(handler_row).collect();
    let header = [
        "TASK TYPE",
        "QUEUE",
        "HANDLER",
        "PAYLOAD -> RESULT",
        "SETTINGS",
        "LOCATION",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn handler_row(def: &HandlerDef) -> [String; 6] {
    let task_type = if def.task_type().is_empty() {
        "\"\" (catch-all)".to_string()
    } else {
        def.task_type().to_string()
    };
    let mut defaults = Vec::new();
    if let Some(n) = def.max_tries() {
        defaults.push(format!("max_tries={n}"));
    }
    if let Some(d) = def.deadline() {
        defaults.push(format!("deadline={}", format_duration(d)));
    }
    if let Some(d) = def.timeout() {
        defaults.push(format!("timeout={}", format_duration(d)));
    }
    let queue = def.queue_settings();
    if let Some(d) = queue.max_run_time {
        defaults.push(format!("queue_run_time={}", format_duration(d)));
    }
    if let Some(n) = queue.max_tries {
        defaults.push(format!("queue_max_tries={n}"));
    }
    if let Some(n) = queue.max_concurrent {
        defaults.push(format!("queue_concurrency={n}"));
    }
    for state in def.state_types() {
        defaults.push(format!("State<{state}>"));
    }
    [
        task_type,
        def.queue().to_string(),
        def.name().to_string(),
        format!("{} -> {}", def.payload_type(), def.output_type()),
        if defaults.is_empty() {
            "-".into()
        } else {
            defaults.join(" ")
        },
        def.location(),
    ]
}
