//! Progress a handler reports while it runs ([`TaskContext::progress`](crate::TaskContext::progress)):
//! kept on the task record and in its state events (docs/processing.md §2.17).

use crate::error::{Error, Result};
use crate::wire::time_go;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// A running task's records are saved for progress at most this often;
/// reports in between are merged (the latest is saved).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Longest progress message kept, in bytes (longer ones are cut).
pub const MAX_PROGRESS_MESSAGE: usize = 256;

/// How far a running task is, as its handler last reported.
///
/// ```
/// let p = asyncjobs::task::TaskProgress::new(40, "resizing 4 of 10").unwrap();
/// assert_eq!(p.percent, 40);
/// assert!(asyncjobs::task::TaskProgress::new(101, "").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// 0 to 100.
    pub percent: u8,
    /// What the handler said it is doing (up to [`MAX_PROGRESS_MESSAGE`]
    /// bytes; empty when it said nothing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it was reported (UTC).
    #[serde(with = "time_go")]
    pub at: OffsetDateTime,
}

impl TaskProgress {
    /// Progress of `percent` (0 to 100) with `message`, reported now;
    /// a message longer than [`MAX_PROGRESS_MESSAGE`] bytes is cut.
    ///
    /// # Errors
    /// [`Error::Config`] for a percent above 100.
    pub fn new(percent: u8, message: impl Into<String>) -> Result<TaskProgress> {
        if percent > 100 {
            return Err(Error::Config(format!(
                "progress is a percent from 0 to 100 (got {percent})"
            )));
        }
        let mut message = message.into();
        if message.len() > MAX_PROGRESS_MESSAGE {
            let mut cut = MAX_PROGRESS_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Ok(TaskProgress {
            percent,
            message,
            at: OffsetDateTime::now_utc(),
        })
    }
}

impl std::fmt::Display for TaskProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}%", self.percent)
        } else {
            write!(f, "{}% {}", self.percent, self.message)
        }
    }
}
