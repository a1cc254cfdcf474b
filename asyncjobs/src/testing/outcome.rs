//! [`Outcome`]: how one try ended, as the worker would record it, and
//! [`Failed`], a task that did not complete.

use crate::handler::{HandlerError, HandlerOutput};
use crate::task::TaskState;
use serde::de::DeserializeOwned;
use std::fmt;

/// How one try ended, as the worker would record it.
#[derive(Debug)]
pub struct Outcome {
    pub(super) state: TaskState,
    pub(super) tries: i64,
    pub(super) output: Option<HandlerOutput>,
    pub(super) error: Option<HandlerError>,
    pub(super) last_err: String,
}

impl Outcome {
    /// The task's state after this try: `complete`, `retry` (it will be
    /// tried again), `terminated` (the handler asked to stop, or the
    /// payload did not decode) or `expired` (the failing try was the last
    /// allowed, or the task was past its deadline or out of tries before
    /// it started).
    pub fn state(&self) -> TaskState {
        self.state
    }

    /// The try this outcome is of (1 for the first).
    pub fn tries(&self) -> i64 {
        self.tries
    }

    /// The result JSON the task record would hold, when complete.
    pub fn output(&self) -> Option<&HandlerOutput> {
        self.output.as_ref()
    }

    /// The handler's error, when it returned one (not for a panic or an
    /// expiry before the try).
    pub fn error(&self) -> Option<&HandlerError> {
        self.error.as_ref()
    }

    /// The `last_err` the task record would hold (empty when complete).
    pub fn last_err(&self) -> &str {
        &self.last_err
    }

    /// The decoded result.
    ///
    /// # Errors
    /// [`Failed`] when the task did not complete, or its result does not
    /// decode as `T`.
    pub fn result<T: DeserializeOwned>(&self) -> Result<T, Failed> {
        let output = self.output.as_ref().ok_or_else(|| self.failed())?;
        serde_json::from_str(output.get()).map_err(|e| Failed {
            state: self.state,
            tries: self.tries,
            last_err: format!(
                "the result {} does not decode as {}: {e}",
                output.get(),
                std::any::type_name::<T>()
            ),
        })
    }

    fn failed(&self) -> Failed {
        Failed {
            state: self.state,
            tries: self.tries,
            last_err: self.last_err.clone(),
        }
    }
}

/// A task that did not complete (or whose result did not decode), from
/// [`TestWorker::call`](super::TestWorker::call) and [`Outcome::result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The final state.
    pub state: TaskState,
    /// Tries made.
    pub tries: i64,
    /// What the task record's `last_err` would say.
    pub last_err: String,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task ended {} after {} tr{}: {}",
            self.state,
            self.tries,
            if self.tries == 1 { "y" } else { "ies" },
            self.last_err
        )
    }
}

impl std::error::Error for Failed {}
