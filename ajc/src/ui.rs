//! Terminal awareness: colours, progress indicators and confirmations are
//! used only when the relevant stream is a terminal.

use crate::error::{CliError, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

/// What the process is attached to.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// stdout is a terminal: tables get boxes and colours.
    pub stdout_tty: bool,
    /// stderr is a terminal: progress indicators are shown.
    pub stderr_tty: bool,
    /// stdin is a terminal: confirmations can be asked.
    pub stdin_tty: bool,
    /// Colours are allowed (stdout is a terminal and `NO_COLOR` is unset).
    pub color: bool,
}

/// A colour or emphasis for terminal output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Bold.
    Bold,
    /// Green: success.
    Green,
    /// Yellow: waiting or retrying.
    Yellow,
    /// Red: failure.
    Red,
    /// Cyan: in progress.
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Red => "31",
            Style::Cyan => "36",
        }
    }

    /// Wraps `text` in the ANSI sequence of this style.
    pub fn paint(self, text: &str) -> String {
        format!("\x1b[{}m{text}\x1b[0m", self.code())
    }
}

impl Ui {
    /// Detects terminals on the standard streams.
    pub fn detect() -> Ui {
        let stdout_tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Ui {
            stdout_tty,
            stderr_tty: std::io::stderr().is_terminal(),
            stdin_tty: std::io::stdin().is_terminal(),
            color: stdout_tty && !no_color,
        }
    }

    /// `text` in `style` when colours are on, else unchanged.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            style.paint(text)
        } else {
            text.to_string()
        }
    }

    /// Asks a yes/no question on the terminal (default no). Without a
    /// terminal on stdin this fails, as the Go `ajc` does.
    pub fn confirm(&self, prompt: &str) -> Result<bool> {
        if !self.stdin_tty {
            return Err(CliError::msg(
                "cannot ask for confirmation without a terminal: pass -f to go ahead without asking",
            ));
        }
        let mut err = std::io::stderr();
        let _ = write!(err, "? {prompt} (y/N) ");
        let _ = err.flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::msg(format!("reading the answer failed: {e}")))?;
        let yes = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
        if !yes {
            let _ = writeln!(
                err,
                "Not confirmed: nothing was changed (pass -f to skip this question)"
            );
        }
        Ok(yes)
    }

    /// A progress indicator on stderr, or `None` when stderr is not a terminal.
    pub fn progress(&self, label: &str, total: Option<u64>) -> Progress {
        Progress {
            enabled: self.stderr_tty,
            label: label.to_string(),
            total,
            current: 0,
            last_draw: None,
            drawn: false,
        }
    }
}

/// A single-line progress counter on stderr (`Listing tasks 1,200 / 5,000`),
/// redrawn at most ten times a second and erased when finished.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    label: String,
    total: Option<u64>,
    current: u64,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// Sets the counter.
    pub fn set(&mut self, n: u64) {
        self.current = n;
        if !self.enabled {
            return;
        }
        if self
            .last_draw
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.draw();
    }

    /// Draws the line now (used for operations without steps).
    pub fn draw(&mut self) {
        if !self.enabled {
            return;
        }
        self.last_draw = Some(Instant::now());
        let text = match self.total {
            Some(t) => format!(
                "{} {} / {}",
                self.label,
                crate::format::ucomma(self.current),
                crate::format::ucomma(t)
            ),
            None if self.current > 0 => {
                format!("{} {}", self.label, crate::format::ucomma(self.current))
            }
            None => format!("{}…", self.label),
        };
        let mut err = std::io::stderr();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the line.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
