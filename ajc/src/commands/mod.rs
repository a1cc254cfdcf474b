//! The commands, one module per command group: its subcommands, their
//! arguments and their work together ([`info`], [`queue`], [`task`] with
//! `task cron`, [`batch`], [`server`], [`package`]). Each command takes the global
//! flags, the terminal state and its arguments, prints its output and
//! returns an error to end with; this module holds what they all get
//! ([`Ctx`]) and how they write to stdout.

pub mod batch;
pub mod info;
pub mod package;
pub mod queue;
pub mod server;
pub mod task;

use crate::flags::Global;
use crate::ui::Ui;
use serde::Serialize;
use std::io::Write;

/// What every command gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Connection flags.
    pub global: Global,
    /// Terminal state.
    pub ui: Ui,
}

/// Writes to stdout; a closed pipe (`ajc task ls | head`) ends the
/// program quietly instead of panicking like `print!` would.
pub fn emit(text: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_all(text.as_ref().as_bytes())
        .and_then(|_| out.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("ajc: writing output failed: {e}");
        std::process::exit(1);
    }
}

/// Writes a line to stdout (see [`emit`]).
pub fn emitln(text: impl AsRef<str>) {
    emit(format!("{}\n", text.as_ref()));
}

/// Writes `value` as JSON indented with two spaces, as Go's `MarshalIndent`.
pub fn emit_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => emitln(s),
        Err(e) => {
            eprintln!("ajc: encoding JSON failed: {e}");
            std::process::exit(1);
        }
    }
}
