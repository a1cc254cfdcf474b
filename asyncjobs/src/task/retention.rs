//! How long finished task records are kept, per final state
//! (docs/processing.md §2.19).
//!
//! A [`Retention`] gives each final state (`complete`, `expired`,
//! `terminated`, `unreachable`, `queue_error`) a time to keep the record
//! after the save that made it final, or "forever". The record's final save
//! carries it as a per-message TTL, so the server removes the record by
//! itself: no pruning process runs (docs/storage.md §3.8).
//!
//! The defaults follow River's: completed tasks are kept a day, failed ones
//! a week.
//!
//! ```
//! use asyncjobs::{Retention, TaskState};
//! use std::time::Duration;
//!
//! let r = Retention::default();
//! assert_eq!(r.keep(TaskState::Complete), Some(Duration::from_secs(24 * 3600)));
//! assert_eq!(r.keep(TaskState::Terminated), Some(Duration::from_secs(7 * 24 * 3600)));
//!
//! let r: Retention = "complete=1h,failed=720h,unreachable=forever".parse().unwrap();
//! assert_eq!(r.keep(TaskState::Complete), Some(Duration::from_secs(3600)));
//! assert_eq!(r.keep(TaskState::Expired), Some(Duration::from_secs(720 * 3600)));
//! assert_eq!(r.keep(TaskState::Unreachable), None);
//! assert_eq!(r.to_string(), "complete=1h0m0s,expired=720h0m0s,terminated=720h0m0s,unreachable=forever,queue_error=720h0m0s");
//! ```

use super::TaskState;
use crate::error::{Error, Result};
use crate::wire::{format_duration, parse_duration};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long a completed task's record is kept by default: 24 hours.
pub const DEFAULT_KEEP_COMPLETE: Duration = Duration::from_secs(24 * 3600);
/// How long a failed task's record (`expired`, `terminated`,
/// `unreachable`, `queue_error`) is kept by default: 7 days.
pub const DEFAULT_KEEP_FAILED: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest retention: 1 second (the server's shortest per-message TTL).
pub const MIN_KEEP: Duration = Duration::from_secs(1);

/// The final states, in the order of [`Retention`]'s text form.
const FINAL: [TaskState; 5] = [
    TaskState::Complete,
    TaskState::Expired,
    TaskState::Terminated,
    TaskState::Unreachable,
    TaskState::QueueError,
];

/// How long finished task records are kept, per final state; see the
/// [module docs](self).
///
/// Set for every process of a client with
/// [`ClientBuilder::retention`](crate::ClientBuilder::retention), or for
/// one queue (stored with the queue, so every process follows it) with
/// [`Queue::retention`](crate::Queue::retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Per entry of [`FINAL`]: `None` keeps the record forever.
    keep: [Option<Duration>; 5],
}

impl Default for Retention {
    /// [`DEFAULT_KEEP_COMPLETE`] for `complete`, [`DEFAULT_KEEP_FAILED`]
    /// for the other final states.
    fn default() -> Self {
        let mut keep = [Some(DEFAULT_KEEP_FAILED); 5];
        keep[0] = Some(DEFAULT_KEEP_COMPLETE);
        Retention { keep }
    }
}

fn index(state: TaskState) -> Option<usize> {
    FINAL.iter().position(|s| *s == state)
}

fn check(state: TaskState, keep: Duration) -> Result<()> {
    if keep < MIN_KEEP {
        return Err(Error::Config(format!(
            "retention of {state} tasks must be at least 1s (got {}); use forever to keep them",
            format_duration(keep)
        )));
    }
    Ok(())
}

impl Retention {
    /// Every finished record kept forever (no expiry).
    pub fn forever() -> Self {
        Retention { keep: [None; 5] }
    }

    /// How long a record saved in `state` is kept: `None` for forever, and
    /// for states that are not final (those records are never expired).
    pub fn keep(&self, state: TaskState) -> Option<Duration> {
        index(state).and_then(|i| self.keep[i])
    }

    /// Keeps records that end in `state` for `keep` (`None`: forever).
    ///
    /// # Errors
    /// [`Error::Config`] when `state` is not final or `keep` is shorter
    /// than [`MIN_KEEP`] (zero included).
    pub fn state(mut self, state: TaskState, keep: Option<Duration>) -> Result<Self> {
        let i = index(state).ok_or_else(|| {
            Error::Config(format!(
                "retention applies to final states (complete, expired, terminated, unreachable, queue_error), not {state}"
            ))
        })?;
        if let Some(k) = keep {
            check(state, k)?;
        }
        self.keep[i] = keep;
        Ok(self)
    }

    /// Keeps completed records for `keep`.
    ///
    /// # Errors
    /// As [`Retention::state`].
    pub fn complete(self, keep: Option<Duration>) -> Result<Self> {
        self.state(TaskState::Complete, keep)
    }

    /// Keeps the records of every failed final state (`expired`,
    /// `terminated`, `unreachable`, `queue_error`) for `keep`.
    ///
    /// # Errors
    /// As [`Retention::state`].
    pub fn failed(mut self, keep: Option<Duration>) -> Result<Self> {
        for s in &FINAL[1..] {
            self = self.state(*s, keep)?;
        }
        Ok(self)
    }
}

impl FromStr for Retention {
    type Err = Error;

    /// Parses `STATE=KEEP[,STATE=KEEP…]` over [`Retention::default`]:
    /// `STATE` is a final state, `failed` (all but `complete`) or `all`;
    /// `KEEP` a Go duration of at least 1s (`36h`, `90m`), `forever` or
    /// `unlimited`. The words `forever` and `default` alone mean
    /// [`Retention::forever`] and [`Retention::default`].
    ///
    /// # Errors
    /// [`Error::Config`] naming the part that is wrong.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        match s {
            "forever" | "unlimited" => return Ok(Retention::forever()),
            "default" => return Ok(Retention::default()),
            _ => {}
        }
        let mut r = Retention::default();
        for part in s.split(',').map(str::trim) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                Error::Config(format!(
                    "retention {part:?}: expected STATE=DURATION, for example complete=24h,failed=168h"
                ))
            })?;
            let keep = match value.trim() {
                "forever" | "unlimited" => None,
                v => Some(
                    parse_duration(v)
                        .map_err(|e| Error::Config(format!("retention {part:?}: {e}")))?,
                ),
            };
            r = match name.trim() {
                "failed" => r.failed(keep)?,
                "all" => r.complete(keep)?.failed(keep)?,
                n => {
                    let state = TaskState::from_name(n).ok_or_else(|| {
                        Error::Config(format!(
                            "retention {part:?}: unknown state {n:?} (complete, expired, terminated, unreachable, queue_error, failed or all)"
                        ))
                    })?;
                    r.state(state, keep)?
                }
            };
        }
        Ok(r)
    }
}

impl fmt::Display for Retention {
    /// Every final state with its retention, in the form [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (state, keep)) in FINAL.iter().zip(self.keep).enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match keep {
                Some(d) => write!(f, "{state}={}", format_duration(d))?,
                None => write!(f, "{state}=forever")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_retention() {
        for bad in [
            "complete=0s",
            "complete=500ms",
            "complete=-1s",
            "complete",
            "active=1h",
            "done=1h",
            "complete=1d",
            "",
        ] {
            assert!(bad.parse::<Retention>().is_err(), "{bad}");
        }
        assert!(Retention::default()
            .state(TaskState::Active, Some(Duration::from_secs(5)))
            .is_err());
        assert!(Retention::default().complete(Some(Duration::ZERO)).is_err());
    }

    #[test]
    fn reads_what_it_writes() {
        for r in [
            Retention::default(),
            Retention::forever(),
            "complete=90s,terminated=forever".parse().unwrap(),
            "all=1h".parse().unwrap(),
        ] {
            assert_eq!(r.to_string().parse::<Retention>().unwrap(), r);
        }
        assert_eq!(
            "forever".parse::<Retention>().unwrap(),
            Retention::forever()
        );
        assert_eq!(Retention::default().keep(TaskState::Active), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = s.parse::<Retention>();
        }
    }
}
