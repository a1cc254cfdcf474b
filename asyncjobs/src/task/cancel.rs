//! Cancelling a task: what a cancel did, the `last_err` it leaves and the
//! notice that stops a running try (docs/processing.md §2.16).

use super::Task;

/// Core NATS subject prefix of cancel notices: `CHORIA_AJ.CANCEL.<queue>.<id>`.
/// Not captured by any stream; workers of the queue subscribe to it.
pub const CANCEL_SUBJECT_PREFIX: &str = "CHORIA_AJ.CANCEL.";

/// Longest "who cancelled" text kept in `last_err`, in bytes.
pub const MAX_CANCELLED_BY: usize = 256;

/// What [`Client::cancel_task`](crate::Client::cancel_task) did.
///
/// A cancelled task is saved `terminated` with `last_err` `cancelled by
/// <who>`: a final state, so it is never run again unless retried, and
/// its dependants end `unreachable` as after any failure. A Go reader sees
/// an ordinary terminated task.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Cancelled {
    /// It was waiting (`new`, `retry`, `blocked`, delayed): saved
    /// `terminated`; its handler never runs.
    Waiting(Task),
    /// It was `active`: saved `terminated`, and the worker running it was
    /// told to stop: its handler's cancellation token fires, and after the
    /// worker's cancel grace it is stopped. Whatever that try returns is
    /// not kept.
    Running(Task),
    /// It had already finished (`complete`, `expired`, `terminated`,
    /// `unreachable`, `queue_error`): nothing was changed.
    AlreadyFinished(Task),
}

impl Cancelled {
    /// The task as it is now stored.
    pub fn task(&self) -> &Task {
        match self {
            Cancelled::Waiting(t) | Cancelled::Running(t) | Cancelled::AlreadyFinished(t) => t,
        }
    }

    /// Whether this cancel changed the task (false: it had finished).
    pub fn changed(&self) -> bool {
        !matches!(self, Cancelled::AlreadyFinished(_))
    }
}

/// `by` trimmed, when it names who cancels: 1 to [`MAX_CANCELLED_BY`]
/// bytes without control characters.
pub(crate) fn check_cancelled_by(by: &str) -> crate::Result<&str> {
    let by = by.trim();
    if by.is_empty() || by.len() > MAX_CANCELLED_BY || by.chars().any(char::is_control) {
        return Err(crate::Error::Config(format!(
            "who cancels a task must be named in 1 to {MAX_CANCELLED_BY} bytes without control characters (got {by:?})"
        )));
    }
    Ok(by)
}

/// The `last_err` of a task cancelled by `by`.
pub(crate) fn cancelled_last_err(by: &str) -> String {
    format!("cancelled by {by}")
}

/// Whether `last_err` is that of a cancel.
pub(crate) fn is_cancelled_last_err(last_err: &str) -> bool {
    last_err.starts_with("cancelled by ")
}

/// The subject of the notice that stops a running try of task `id` in `queue`.
pub(crate) fn cancel_subject(queue: &str, id: &str) -> String {
    format!("{CANCEL_SUBJECT_PREFIX}{queue}.{id}")
}
