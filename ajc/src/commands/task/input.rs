//! A task described on the command line, as `task add` and `task cron add`
//! both take it: the payload argument and the `--queue`, `--deadline` and
//! `--tries` settings.

use crate::error::{CliError, Result};
use crate::format::{parse_duration, GoDuration};
use asyncjobs::TaskBuilder;
use clap::Args;
use serde_json::value::RawValue;

/// `--queue`, `--deadline` and `--tries` of `task add` and `task cron add`.
#[derive(Args, Debug)]
pub struct TaskSettings {
    /// The name of the queue to add the task to
    #[arg(short = 'q', long, default_value = "DEFAULT")]
    pub queue: String,
    /// A duration to determine when the latest time that a task handler will be called
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<GoDuration>,
    /// Sets the maximum amount of times this task may be tried
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub tries: i64,
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
}
