//! One delivery walked forward: read the work item, load the task, apply
//! the [gates](super::gates), mark it active, [run](super::execute) the
//! handler and [record](super::outcome) what happened.

use super::execute::{run_handler, Outcome};
use super::gates::{self, Deps, Gate, Loaded};
use super::outcome::{
    bounded_error, finish, nak, replace_item, retry_or_expire, save_with_retries, send_ack,
    superseded, transient_delay, unsaveable, wait, Failed,
};
use super::{Delivered, Shared};
use crate::error::Error;
use crate::metrics;
use crate::queue::SCHEDULED_ITEM_PREFIX;
use crate::storage::WorkItem;
use crate::task::{Task, TaskResult, TaskState};
use async_nats::jetstream::AckKind;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;

/// NAK delay after losing a race to mark a task active.
const CONFLICT_DELAY: Duration = Duration::from_secs(1);

/// Walks one delivery forward. Every path but the common one (load,
/// mark active, run, record the outcome) is boxed: this future is spawned
/// per delivery, and its size is what every spawn allocates and moves.
/// `slot` is the concurrency slot it runs under: freed as soon as the handler has returned, so the item that
/// takes the slot is pulled while this one's outcome is saved and
/// acknowledged (handlers at once stay within the concurrency).
pub(crate) async fn process(
    shared: &Shared,
    msg: async_nats::jetstream::Message,
    slot: OwnedSemaphorePermit,
) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).max(1) as u64;
    let traceparent = WorkItem::traceparent(msg.headers.as_ref());
    let (msg, acker) = msg.split();
    if msg.subject.starts_with(SCHEDULED_ITEM_PREFIX) {
        // the consumer lost its filter (re-created by a tool that does not
        // know it): this item was meant for later; it runs now, and the
        // filter is put back
        Box::pin(shared.scheduled_item_delivered(&msg.subject)).await;
    }

    // ----- the work item -----------------------------------------------------------------
    let id = match WorkItem::decode(&msg.payload) {
        Ok(item) => item.job,
        Err(e) => {
            metrics::item_corrupt(&shared.name);
            tracing::error!(
                queue = %shared.name,
                subject = %msg.subject,
                body = %String::from_utf8_lossy(&msg.payload),
                "{e}; terminating it"
            );
            Box::pin(send_ack(&acker, AckKind::Term, "")).await;
            return;
        }
    };
    let item = Delivered {
        id,
        traceparent,
        delivered,
    };
    let id = item.id.as_str();

    // ----- the task ----------------------------------------------------------------------
    let mut task = match shared.storage.load_task(id).await {
        Ok(t) => match shared.storage.verify(&t) {
            Ok(()) => t,
            Err(e) => {
                // Go leaves such items unacknowledged forever (docs/go-differences.md §12)
                metrics::task_not_found(&shared.name);
                tracing::error!(queue = %shared.name, task = %id, error = %e, "task failed signature verification; terminating it");
                let mut t = t;
                t.state = TaskState::Terminated;
                t.last_err = e.to_string();
                Box::pin(finish(shared, &acker, &mut t, AckKind::Term)).await;
                return;
            }
        },
        Err(
            e
            @ (Error::TaskNotFound(_) | Error::InvalidTaskRecord { .. } | Error::TaskIdInvalid(_)),
        ) => {
            metrics::task_not_found(&shared.name);
            tracing::error!(queue = %shared.name, task = %id, error = %e, "cannot load the task of a work item; terminating the item");
            Box::pin(send_ack(&acker, AckKind::Term, id)).await;
            return;
        }
        Err(e) => {
            metrics::task_not_found(&shared.name);
            let delay = transient_delay(delivered);
            tracing::warn!(queue = %shared.name, task = %id, error = %e, ?delay, "loading task failed: will retry");
            Box::pin(nak(shared, &acker, &item, delay)).await;
            return;
        }
    };

    // ----- the gates ---------------------------------------------------------------------
    match gates::gate(&task, &shared.queue(), OffsetDateTime::now_utc()) {
        Gate::Run { stale } => {
            if stale {
                tracing::info!(task = %id, "task was active past its run time; its worker is presumed dead, running it again");
            }
            // The server will not deliver this item again: if this try's
            // worker died, nothing would ever expire or rerun the task. A
            // fresh item replaces it first (delivered at once, run then),
            // so every try runs on an item that still has deliveries left.
            let max_deliver = shared.queue().max_tries;
            if delivered > 1
                && max_deliver > 0
                && delivered as i64 >= max_deliver
                && Box::pin(replace_item(shared, &acker, &item, None)).await
            {
                return;
            }
        }
        Gate::NotDue(early) => {
            tracing::debug!(task = %id, ?early, "delayed task delivered before it is due");
            Box::pin(wait(shared, &acker, &item, early)).await;
            return;
        }
        Gate::LeaseHeld(remaining) => {
            tracing::debug!(task = %id, ?remaining, "task already active");
            Box::pin(nak(
                shared,
                &acker,
                &item,
                remaining + Duration::from_millis(50),
            ))
            .await;
            return;
        }
        Gate::AlreadyDone => {
            tracing::debug!(task = %id, state = %task.state, "failed updating task state, already in desired state");
            Box::pin(send_ack(&acker, AckKind::Ack, id)).await;
            return;
        }
        Gate::Final => {
            tracing::info!(task = %id, state = %task.state, "work item for a task in a final state; not running it again (use retry)");
            Box::pin(send_ack(&acker, AckKind::Ack, id)).await;
            return;
        }
        Gate::Expire(why) => {
            match why {
                gates::Expiry::PastDeadline => metrics::past_deadline(&shared.name),
                gates::Expiry::MaxTries | gates::Expiry::MaxTriesAbandoned => {
                    metrics::past_max_tries(&shared.name)
                }
            }
            task.state = TaskState::Expired;
            task.last_err = why.last_err().into();
            tracing::error!(task = %id, r#type = %task.task_type, queue = %shared.name, tries = task.tries,
                reason = %task.last_err, "task expired");
            Box::pin(finish(shared, &acker, &mut task, AckKind::Term)).await;
            return;
        }
        Gate::CheckDependencies => match Box::pin(check_dependencies(shared, &task)).await {
            Deps::Ready(results) => {
                if task.load_dependencies {
                    task.dependency_results = results;
                }
            }
            Deps::Waiting => {
                Box::pin(wait(shared, &acker, &item, shared.settings.blocked_delay)).await;
                return;
            }
            Deps::Failed(detail) => {
                metrics::dependencies_failed();
                task.state = TaskState::Unreachable;
                task.last_err = format!("task dependencies failed: {detail}");
                task.tried = Some(OffsetDateTime::now_utc());
                Box::pin(finish(shared, &acker, &mut task, AckKind::Term)).await;
                return;
            }
        },
    }

    // ----- mark active -------------------------------------------------------------------
    // The try is counted when it starts (Go counts it when it ends), so a
    // task whose handler kills its worker still runs out of tries.
    task.state = TaskState::Active;
    task.tried = Some(OffsetDateTime::now_utc());
    task.last_err.clear();
    task.tries += 1;
    if let Err(e) = shared.storage.save_task(&mut task).await {
        let delay = match e {
            Error::ConcurrentUpdate(_) => CONFLICT_DELAY,
            // for example dependency results too large for one record
            e if e.is_permanent() => {
                task.tries -= 1;
                return Box::pin(unsaveable(shared, &acker, &mut task, e)).await;
            }
            _ => transient_delay(delivered),
        };
        tracing::warn!(task = %id, error = %e, "failed updating task state active");
        Box::pin(nak(shared, &acker, &item, delay)).await;
        return;
    }

    // ----- run the handler ---------------------------------------------------------------
    let acker = Arc::new(acker);
    let outcome = run_handler(shared, &mut task, acker.clone(), item.traceparent.clone()).await;
    drop(slot);

    // ----- record the outcome ------------------------------------------------------------
    let now = OffsetDateTime::now_utc();
    task.tried = Some(now);
    let (err, failed) = match outcome {
        Outcome::Done(Ok(output)) => {
            task.state = TaskState::Complete;
            task.last_err.clear();
            task.result = Some(TaskResult {
                payload: output,
                completed: now,
            });
            tracing::debug!(task = %task.id, r#type = %task.task_type, tries = task.tries, "task complete");
            finish(shared, &acker, &mut task, AckKind::Ack).await;
            return;
        }
        Outcome::Done(Err(e)) if e.is_terminate() => {
            task.state = TaskState::Terminated;
            task.last_err = bounded_error(e.message().to_string());
            tracing::error!(task = %task.id, r#type = %task.task_type, queue = %shared.name, tries = task.tries,
                error = %task.last_err, "the handler terminated the task: no more tries");
            Box::pin(finish(shared, &acker, &mut task, AckKind::Term)).await;
            return;
        }
        Outcome::Shutdown => {
            // the worker interrupted this try, so it does not count: a task
            // with one try left runs again after a restart (a crash still
            // counts, since the try was saved when it started)
            task.state = TaskState::Retry;
            task.tries = (task.tries - 1).max(0);
            task.last_err = "worker shut down before the handler finished".into();
            match Box::pin(save_with_retries(shared, &mut task)).await {
                Err(Error::ConcurrentUpdate(_)) => {
                    return Box::pin(superseded(shared, &acker, &task, AckKind::Ack)).await;
                }
                Err(e) => tracing::error!(task = %task.id, error = %e, "saving task state failed"),
                Ok(()) => {}
            }
            Box::pin(send_ack(&acker, AckKind::Nak(None), &task.id)).await;
            return;
        }
        // the failed tries: retried, or expired when no tries are left
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
                shared.queue().effective_max_run_time()
            ),
            Failed::default(),
        ),
    };
    task.last_err = bounded_error(err);
    let limit = shared.queue().effective_max_tries(task.max_tries);
    let expired = limit.is_some_and(|l| task.tries >= l);
    task.state = if expired {
        TaskState::Expired
    } else {
        TaskState::Retry
    };
    Box::pin(retry_or_expire(
        shared, &acker, &mut task, &item, expired, failed,
    ))
    .await;
}

/// Loads every dependency (verified) and judges them.
async fn check_dependencies(shared: &Shared, task: &Task) -> Deps {
    let mut loaded = Vec::with_capacity(task.dependencies.len());
    for dep in &task.dependencies {
        let l = match shared.storage.load_verified(dep).await {
            Ok(d) => Loaded::Task(Box::new(d)),
            // deleted by a discard policy: its marker tells how it ended
            Err(Error::TaskNotFound(_)) => match shared.storage.discarded_state(dep).await {
                Ok(Some(state)) => Loaded::Discarded(state),
                Ok(None) => Loaded::NotFound,
                Err(e) => {
                    tracing::warn!(task = %task.id, dependency = %dep, error = %e, "loading dependency's discard marker failed");
                    Loaded::Unavailable
                }
            },
            Err(e @ (Error::Signature(_) | Error::InvalidTaskRecord { .. })) => {
                Loaded::Unusable(e.to_string())
            }
            Err(e) => {
                tracing::warn!(task = %task.id, dependency = %dep, error = %e, "loading dependency failed");
                Loaded::Unavailable
            }
        };
        let failed = match &l {
            Loaded::NotFound | Loaded::Unusable(_) => true,
            Loaded::Discarded(state) => *state != TaskState::Complete,
            _ => false,
        };
        loaded.push((dep.clone(), l));
        if failed {
            break;
        }
    }
    gates::judge_dependencies(task, loaded)
}
