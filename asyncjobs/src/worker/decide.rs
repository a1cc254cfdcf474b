//! The decision table of one delivery: what the work item, the task record,
//! the [gates](super::gates) and the try showed, turned into one
//! [`Action`] that [`apply`](super::apply) carries out (docs/processing.md
//! describes each situation and its acknowledgement).
//!
//! Every function here is pure: no server, no clock but the `now` it is
//! given, so the whole table is unit-tested below. A new rule (a paused
//! queue, a cancelled task) is a new arm here and, when it needs a new kind
//! of effect, a new [`Action`] applied in one place.

use super::execute::Outcome;
use super::gates::{self, Deps, Expiry, Gate};
use super::outcome::{bounded_error, transient_delay, Failed};
use crate::error::Error;
use crate::queue::Queue;
use crate::storage::{ItemError, WorkItem};
use crate::task::{Task, TaskResult, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// The `last_err` of a try stopped by a cancel notice when the record was
/// not (yet) cancelled: the notice is honoured, and the record says so.
pub(crate) const CANCELLED_BY_NOTICE: &str =
    "cancelled by a cancel notice (the record was not cancelled when the try stopped)";

/// NAK delay after losing a race to mark a task active.
pub(crate) const CONFLICT_DELAY: Duration = Duration::from_secs(1);

/// What is done with a delivered work item (and its task).
#[derive(Debug)]
pub(crate) enum Action {
    /// Mark the task active and run its handler. `stale`: it was `active`
    /// past its lease (its worker is presumed dead). `replace_first`: this
    /// delivery is the last the queue allows, so a fresh item replaces it
    /// before the try (a try whose worker dies is then always followed by a
    /// delivery that reruns or expires the task).
    Run {
        /// The task was `active` past its lease.
        stale: bool,
        /// Replace the item by a fresh one before running.
        replace_first: bool,
    },
    /// Look up the task's dependencies, then decide with
    /// [`after_dependencies`].
    CheckDependencies,
    /// Acknowledge, hand back or drop the item; the record stays as it is.
    Item(ItemAction),
    /// End the task: save it in a final state, then terminate the item.
    End(Ending),
    /// The try succeeded: save `complete` with this result, ack.
    Complete(TaskResult),
    /// The try failed: save `retry` and wait out the backoff, or, when
    /// `expired`, save `expired` and terminate the item.
    Failed {
        /// The task's `last_err` (already bounded).
        last_err: String,
        /// No tries are left.
        expired: bool,
        /// How the try asks to be retried.
        failed: Failed,
    },
    /// The worker interrupted the try (shutdown): it does not count; save
    /// `retry` and hand the item back at once.
    HandBack,
    /// The record can never be saved as it is (the `active` save was
    /// refused for good): save it `terminated` without results.
    Unsaveable(Error),
    /// No handler of this worker takes the task's type: no try; save
    /// `note` as its `last_err` (when it differs), then wait `delay` for a
    /// worker that has one ([`unhandled()`]).
    Unhandled {
        /// How long until it is delivered again.
        delay: Duration,
        /// Its `last_err` while it waits.
        note: String,
    },
}

/// What is done with the item alone.
#[derive(Debug)]
pub(crate) enum ItemAction {
    /// Acknowledge it: the task needs nothing more from it.
    Ack(Settled),
    /// Terminate it: there is no usable record to change.
    Drop(Unusable),
    /// Hand it back (NAK) for this long.
    Nak(Duration, Busy),
    /// Look again after this long: a held item where the queue holds them,
    /// a NAK otherwise.
    Wait(Duration, Waiting),
}

/// Why an item is acknowledged without a change to its task (in this state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// `complete`, `expired` or `unreachable` already.
    AlreadyDone(TaskState),
    /// `terminated` or `queue_error`: final until retried.
    Final(TaskState),
}

/// Why an item is terminated without a record to change.
#[derive(Debug)]
pub(crate) enum Unusable {
    /// The message is not a work item.
    Corrupt {
        /// Why it does not decode.
        error: ItemError,
        /// Its subject.
        subject: String,
        /// Its body, as text.
        body: String,
    },
    /// The task it names cannot be loaded, ever (no record, undecodable,
    /// an invalid id).
    NoTask(Error),
}

/// Why an item is handed back.
#[derive(Debug)]
pub(crate) enum Busy {
    /// Loading the task failed for a transient reason.
    LoadFailed(Error),
    /// Another worker's try holds the task's lease this much longer.
    LeaseHeld(Duration),
    /// Saving `active` failed (lost a race, or a transient failure).
    ActiveNotSaved(Error),
}

/// Why a task waits without a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// A delayed task delivered before it is due.
    NotDue,
    /// Some dependencies have not finished: the first of them.
    Dependencies(String),
}

/// How a task ends without (or after) a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    /// The final state it is saved in.
    pub state: TaskState,
    /// Its `last_err`.
    pub last_err: String,
    /// Its new `tried` time, when it changes.
    pub tried: Option<OffsetDateTime>,
    /// Why, for the log and the metrics.
    pub why: EndReason,
}

/// Why a task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// Its signature does not verify.
    BadSignature,
    /// A gate expired it (deadline, tries).
    Expired(Expiry),
    /// A dependency failed.
    Unreachable,
    /// Its handler terminated it.
    Terminated,
    /// Its payload does not decode as the handler's payload type: the
    /// framework terminated it before the handler ran.
    UndecodablePayload,
    /// No worker of the queue took its type within the wait ([`unhandled()`]).
    Unhandled,
    /// It was cancelled while it ran (docs/processing.md §2.16).
    Cancelled,
}

/// The id of the task a delivered message names, or why it is not a work
/// item.
pub(crate) fn on_item(subject: &str, payload: &[u8]) -> Result<String, ItemAction> {
    WorkItem::decode(payload).map(|i| i.job).map_err(|error| {
        ItemAction::Drop(Unusable::Corrupt {
            error,
            subject: subject.to_string(),
            body: String::from_utf8_lossy(payload).into_owned(),
        })
    })
}

/// The task as loaded, or what to do with its item instead. `delivered`
/// counts the item's deliveries (the backoff of a transient failure).
pub(crate) fn on_load(loaded: Result<Task, Error>, delivered: u64) -> Result<Task, ItemAction> {
    match loaded {
        Ok(task) => Ok(task),
        Err(
            e
            @ (Error::TaskNotFound(_) | Error::InvalidTaskRecord { .. } | Error::TaskIdInvalid(_)),
        ) => Err(ItemAction::Drop(Unusable::NoTask(e))),
        Err(e) => Err(ItemAction::Nak(
            transient_delay(delivered),
            Busy::LoadFailed(e),
        )),
    }
}

/// The verdict on a loaded task before any try: its signature (`verified`),
/// then the gates (docs/processing.md), with the queue's delivery limit.
pub(crate) fn before_run(
    task: &Task,
    verified: Result<(), Error>,
    queue: &Queue,
    now: OffsetDateTime,
    delivered: u64,
) -> Action {
    if let Err(e) = verified {
        // Go leaves such items unacknowledged forever (docs/go-differences.md §12)
        return Action::End(Ending {
            state: TaskState::Terminated,
            last_err: e.to_string(),
            tried: None,
            why: EndReason::BadSignature,
        });
    }
    match gates::gate(task, queue, now) {
        Gate::Run { stale } => {
            let max_deliver = queue.max_tries;
            Action::Run {
                stale,
                replace_first: delivered > 1 && max_deliver > 0 && delivered as i64 >= max_deliver,
            }
        }
        Gate::NotDue(early) => Action::Item(ItemAction::Wait(early, Waiting::NotDue)),
        Gate::LeaseHeld(remaining) => Action::Item(ItemAction::Nak(
            remaining + Duration::from_millis(50),
            Busy::LeaseHeld(remaining),
        )),
        Gate::AlreadyDone => Action::Item(ItemAction::Ack(Settled::AlreadyDone(task.state))),
        Gate::Final => Action::Item(ItemAction::Ack(Settled::Final(task.state))),
        Gate::Expire(why) => Action::End(Ending {
            state: TaskState::Expired,
            last_err: why.last_err().into(),
            tried: None,
            why: EndReason::Expired(why),
        }),
        Gate::CheckDependencies => Action::CheckDependencies,
    }
}

/// The verdict on a blocked task's dependencies: run (with their results,
/// when the task asked for them), wait `poll`, or end `unreachable`.
pub(crate) fn after_dependencies(
    deps: Deps,
    poll: Duration,
    now: OffsetDateTime,
) -> Result<BTreeMap<String, Option<TaskResult>>, Action> {
    match deps {
        Deps::Ready(results) => Ok(results),
        Deps::Waiting(dep) => Err(Action::Item(ItemAction::Wait(
            poll,
            Waiting::Dependencies(dep),
        ))),
        Deps::Failed(detail) => Err(Action::End(Ending {
            state: TaskState::Unreachable,
            last_err: format!("task dependencies failed: {detail}"),
            tried: Some(now),
            why: EndReason::Unreachable,
        })),
    }
}

/// What to do when saving `active` failed with `e` (the try was counted in
/// the record being saved): lost a race, a record that can never be saved,
/// or a transient failure.
pub(crate) fn on_active_not_saved(e: Error, delivered: u64) -> Action {
    match e {
        Error::ConcurrentUpdate(_) => {
            Action::Item(ItemAction::Nak(CONFLICT_DELAY, Busy::ActiveNotSaved(e)))
        }
        // for example dependency results too large for one record
        e if e.is_permanent() => Action::Unsaveable(e),
        e => Action::Item(ItemAction::Nak(
            transient_delay(delivered),
            Busy::ActiveNotSaved(e),
        )),
    }
}

/// What a finished try leads to, `now` being when it ended. `task` holds
/// the try's count; `queue` its limits.
pub(crate) fn after_run(
    outcome: Outcome,
    task: &Task,
    queue: &Queue,
    now: OffsetDateTime,
) -> Action {
    let (err, failed) = match outcome {
        Outcome::Done(Ok(output)) => {
            return Action::Complete(TaskResult {
                payload: output,
                completed: now,
            })
        }
        Outcome::Done(Err(e)) if e.is_terminate() => {
            return Action::End(Ending {
                state: TaskState::Terminated,
                last_err: bounded_error(e.message().to_string()),
                // the try's end is recorded for every outcome
                tried: None,
                why: if e.is_undecodable_payload() {
                    EndReason::UndecodablePayload
                } else {
                    EndReason::Terminated
                },
            });
        }
        Outcome::Shutdown => return Action::HandBack,
        // the cancel saved the record first: this save meets it and is
        // dropped (superseded); it stands only when a notice came without
        // a cancelled record (docs/processing.md §2.16)
        Outcome::Cancelled => {
            return Action::End(Ending {
                state: TaskState::Terminated,
                last_err: CANCELLED_BY_NOTICE.to_string(),
                tried: None,
                why: EndReason::Cancelled,
            })
        }
        Outcome::Done(Err(e)) => (
            e.message().to_string(),
            Failed {
                delay: e.retry_delay(),
                no_handler: e.is_no_handler(),
            },
        ),
        Outcome::Panicked(msg) => (format!("handler panicked: {msg}"), Failed::default()),
        Outcome::TimedOut => (
            format!(
                "handler exceeded the queue's max run time of {:?}",
                queue.effective_max_run_time()
            ),
            Failed::default(),
        ),
        // the handler's own time-out (docs/processing.md §2.7), told apart
        // from the queue's run time
        Outcome::HandlerTimedOut(timeout) => (
            handler_timed_out(&task.task_type, timeout),
            Failed::default(),
        ),
    };
    let limit = queue.effective_max_tries(task.max_tries);
    Action::Failed {
        last_err: bounded_error(err),
        expired: limit.is_some_and(|l| task.tries >= l),
        failed,
    }
}

/// The `last_err` of a try stopped at its handler's time-out:
/// `handler "<type>" exceeded its time-out of <d>`, `<d>` in Go's notation
/// (docs/processing.md §2.7).
pub(crate) fn handler_timed_out(task_type: &str, timeout: Duration) -> String {
    format!(
        "handler \"{task_type}\" exceeded its time-out of {}",
        crate::wire::format_duration(timeout)
    )
}

mod unhandled;
pub(crate) use unhandled::*;

#[cfg(test)]
mod tests;
