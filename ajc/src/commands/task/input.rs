//! A task described on the command line, as `task add` and `task cron add`
//! both take it: the payload (one convention for both commands: the
//! argument after the type, `--payload` or `--payload-file`, with
//! `--raw-string`) and the `--queue`, `--deadline` and `--tries` settings.

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
    /// Sets the maximum amount of times this task may be tried (default:
    /// the queue's limit)
    #[arg(
        long,
        default_value_t = 0,
        hide_default_value = true,
        allow_negative_numbers = true
    )]
    pub tries: i64,
}

/// The payload of `task add` and `task cron add`: the argument after the
/// task type, `--payload` (the Go `task cron add` flag) or `--payload-file`.
#[derive(Args, Debug)]
pub struct PayloadArgs {
    /// The task payload: valid JSON is stored as given; text that does not
    /// start like JSON ({, [ or ") is stored as a JSON string; text that
    /// starts like JSON but is not valid is refused (use --raw-string to
    /// store any text as a string)
    #[arg(value_name = "PAYLOAD", conflicts_with_all = ["payload_flag", "payload_file"])]
    pub payload: Option<String>,
    /// The task payload, as a flag (same rules as PAYLOAD)
    #[arg(
        long = "payload",
        value_name = "PAYLOAD",
        conflicts_with = "payload_file"
    )]
    pub payload_flag: Option<String>,
    /// Read the payload from this file, "-" for standard input (for
    /// payloads too large for an argument, up to the server's message size)
    #[arg(long = "payload-file", value_name = "FILE")]
    pub payload_file: Option<std::path::PathBuf>,
    /// Store the payload as a JSON string whatever it holds, as the Go ajc does
    #[arg(long = "raw-string")]
    pub raw_string: bool,
}

impl PayloadArgs {
    /// The payload bytes, or `None` when no payload was given.
    pub fn bytes(&self) -> Result<Option<Vec<u8>>> {
        let text = match (&self.payload, &self.payload_flag, &self.payload_file) {
            (Some(p), _, _) | (None, Some(p), _) => p.clone(),
            (None, None, Some(file)) => read_payload_file(file)?,
            (None, None, None) => return Ok(None),
        };
        payload_bytes(&text, self.raw_string).map(Some)
    }
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
/// text that does not start like JSON (or everything with `raw_string`)
/// as a JSON string; text starting like JSON that does not parse is refused.
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
