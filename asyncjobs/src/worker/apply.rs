//! Carrying out a [decision](super::decide): the one place where an
//! [`Action`] becomes saves, acknowledgements, logs and metrics. The saves
//! and acknowledgements themselves are the [outcome](super::outcome)
//! primitives.
//!
//! Every arm but completion is boxed: the delivery's future is spawned per
//! item, and its size is what every spawn allocates and moves.

use super::decide::{Action, Busy, EndReason, Ending, ItemAction, Settled, Unusable, Waiting};
use super::gates::Expiry;
use super::outcome::{
    finish, nak, retry_or_expire, save_with_retries, send_ack, superseded, unsaveable, wait,
    LOG_EVERY,
};
use super::{dependants, unhandled, Delivered, Shared};
use crate::error::Error;
use crate::metrics;
use crate::task::{Task, TaskState};
use crate::throttle::{warn_throttled, Throttle};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;

/// Carries out `action` for `task`, delivered as `item`. `Run` and
/// `CheckDependencies` are steps of the delivery itself, not actions to
/// apply: they leave the item as it is.
pub(crate) async fn apply(
    shared: &Shared,
    acker: &Acker,
    item: &Delivered,
    task: &mut Task,
    action: Action,
) {
    match action {
        Action::Complete(result) => {
            task.state = TaskState::Complete;
            task.last_err.clear();
            task.result = Some(result);
            tracing::debug!(task = %task.id, r#type = %task.task_type, tries = task.tries, "task complete");
            finish(shared, acker, task, AckKind::Ack).await;
        }
        Action::Item(action) => Box::pin(apply_to_item(shared, acker, item, action)).await,
        Action::End(ending) => Box::pin(end(shared, acker, task, ending)).await,
        Action::Failed {
            last_err,
            expired,
            failed,
        } => {
            task.last_err = last_err;
            task.state = if expired {
                TaskState::Expired
            } else {
                TaskState::Retry
            };
            Box::pin(retry_or_expire(shared, acker, task, item, expired, failed)).await;
        }
        Action::HandBack => Box::pin(hand_back(shared, acker, task)).await,
        Action::Unsaveable(e) => {
            // the try counted in the record that could not be saved
            task.tries -= 1;
            Box::pin(unsaveable(shared, acker, task, e)).await;
        }
        Action::Unhandled { delay, note } => {
            Box::pin(unhandled::pass_on(shared, acker, item, task, delay, note)).await;
        }
        Action::Run { .. } | Action::CheckDependencies => {
            tracing::error!(task = %task.id, ?action, "a delivery step reached the applier; leaving the item for redelivery");
        }
    }
}

/// Carries out an action on the item alone (the record stays as it is).
pub(crate) async fn apply_to_item(
    shared: &Shared,
    acker: &Acker,
    item: &Delivered,
    action: ItemAction,
) {
    let id = item.id.as_str();
    match action {
        ItemAction::Ack(Settled::AlreadyDone(state)) => {
            tracing::debug!(task = %id, %state, "failed updating task state, already in desired state");
            send_ack(acker, AckKind::Ack, id).await;
        }
        ItemAction::Ack(Settled::Final(state)) => {
            tracing::info!(task = %id, %state, "work item for a task in a final state; not running it again (use retry)");
            send_ack(acker, AckKind::Ack, id).await;
        }
        ItemAction::Drop(Unusable::Corrupt {
            error,
            subject,
            body,
        }) => {
            metrics::item_corrupt(&shared.name);
            tracing::error!(queue = %shared.name, %subject, %body, "{error}; terminating it");
            send_ack(acker, AckKind::Term, "").await;
        }
        ItemAction::Drop(Unusable::NoTask(e)) => {
            metrics::task_not_found(&shared.name);
            tracing::error!(queue = %shared.name, task = %id, error = %e, "cannot load the task of a work item; terminating the item");
            send_ack(acker, AckKind::Term, id).await;
        }
        ItemAction::Nak(delay, why) => {
            match why {
                Busy::LoadFailed(e) => {
                    metrics::task_not_found(&shared.name);
                    static LOAD: Throttle = Throttle::new(LOG_EVERY);
                    warn_throttled!(LOAD, queue = %shared.name, task = %id, error = %e, ?delay, "loading task failed: will retry");
                }
                Busy::LeaseHeld(remaining) => {
                    tracing::debug!(task = %id, ?remaining, "task already active");
                }
                Busy::ActiveNotSaved(e) => {
                    static ACTIVE: Throttle = Throttle::new(LOG_EVERY);
                    warn_throttled!(ACTIVE, task = %id, error = %e, "failed updating task state active");
                }
            }
            nak(shared, acker, item, delay).await;
        }
        ItemAction::Wait(early, Waiting::NotDue) => {
            tracing::debug!(task = %id, ?early, "delayed task delivered before it is due");
            wait(shared, acker, item, early).await;
        }
        ItemAction::Wait(delay, Waiting::Dependencies(dep)) => {
            if wait(shared, acker, item, delay).await {
                dependants::watch(&shared.watches, &dep, id).await;
            }
        }
    }
}

/// Saves `task` as `ending` says (counting and logging why), then
/// terminates the item.
async fn end(shared: &Shared, acker: &Acker, task: &mut Task, ending: Ending) {
    let Ending {
        state,
        last_err,
        tried,
        why,
    } = ending;
    task.state = state;
    task.last_err = last_err;
    if tried.is_some() {
        task.tried = tried;
    }
    match why {
        EndReason::BadSignature => {
            metrics::task_not_found(&shared.name);
            tracing::error!(queue = %shared.name, task = %task.id, error = %task.last_err, "task failed signature verification; the worker terminated it without running its handler");
        }
        EndReason::Expired(expiry) => {
            match expiry {
                Expiry::PastDeadline => metrics::past_deadline(&shared.name),
                Expiry::MaxTries | Expiry::MaxTriesAbandoned => {
                    metrics::past_max_tries(&shared.name)
                }
            }
            tracing::error!(task = %task.id, r#type = %task.task_type, queue = %shared.name, tries = task.tries,
                reason = %task.last_err, "task expired");
        }
        EndReason::Unreachable => metrics::dependencies_failed(),
        EndReason::Terminated => {
            tracing::error!(task = %task.id, r#type = %task.task_type, queue = %shared.name, tries = task.tries,
                error = %task.last_err, "the handler terminated the task: no more tries");
        }
        EndReason::Unhandled => {
            metrics::past_deadline(&shared.name);
            tracing::error!(task = %task.id, r#type = %task.task_type, queue = %shared.name,
                reason = %task.last_err, "no worker of the queue took the task's type within the wait: expired");
        }
        EndReason::Cancelled => {
            tracing::info!(task = %task.id, r#type = %task.task_type, queue = %shared.name, tries = task.tries,
                "the cancelled task's handler stopped; the cancel's record stands");
        }
        EndReason::UndecodablePayload => {
            tracing::error!(task = %task.id, r#type = %task.task_type, queue = %shared.name, tries = task.tries,
                error = %task.last_err, "the payload does not decode as the handler's payload type; the worker terminated the task without running its handler: no more tries");
        }
    }
    finish(shared, acker, task, AckKind::Term).await;
}

/// The worker interrupted this try, so it does not count: a task with one
/// try left runs again after a restart (a crash still counts, since the
/// try was saved when it started). Saved `retry` and handed back at once.
async fn hand_back(shared: &Shared, acker: &Acker, task: &mut Task) {
    task.state = TaskState::Retry;
    task.tries = (task.tries - 1).max(0);
    task.last_err = "worker shut down before the handler finished".into();
    match save_with_retries(shared, task).await {
        Err(Error::ConcurrentUpdate(_)) => {
            return superseded(shared, acker, task, AckKind::Ack).await;
        }
        Err(e) => tracing::error!(task = %task.id, error = %e, "saving task state failed"),
        Ok(()) => {}
    }
    send_ack(acker, AckKind::Nak(None), &task.id).await;
}
