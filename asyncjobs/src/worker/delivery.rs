//! One delivery walked forward: read the work item, load the task,
//! [decide](super::decide) what to do, mark it active, [run](super::execute)
//! the handler, decide again on the outcome, and [apply](super::apply) the
//! decision. Deciding is pure; every effect but the `active` save and the
//! run is in the applier.

use super::apply::{apply, apply_to_item};
use super::decide::{self, Action};
use super::execute::run_handler;
use super::gates::{self, Deps, Loaded};
use super::keys;
use super::outcome::{self, replace_item};
use super::unhandled;
use super::{Delivered, Shared};
use crate::error::Error;
use crate::queue::lane::{Lane, KEY_HEADER};
use crate::queue::LEGACY_HELD_PREFIX;
use crate::storage::Due;
use crate::storage::WorkItem;
use crate::task::{Task, TaskState};
use async_nats::jetstream::message::Acker;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;

/// Walks one delivery forward: load → decide → run → record. Every path
/// but the common one (load, mark active, run, record the outcome) is
/// boxed: this future is spawned per delivery, and its size is what every
/// spawn allocates and moves. `slot` is the concurrency slot it runs
/// under: freed as soon as the handler has returned, so the item that
/// takes the slot is pulled while this one's outcome is saved and
/// acknowledged (handlers at once stay within the concurrency).
pub(crate) async fn process(
    shared: &Shared,
    msg: async_nats::jetstream::Message,
    slot: OwnedSemaphorePermit,
) {
    let Some((item, acker)) = read(shared, msg).await else {
        return;
    };
    let id = item.id.clone();
    crate::events::in_try(
        shared.label.clone(),
        id,
        process_item(shared, item, acker, slot),
    )
    .await
}

/// [`process`] once the item is read: the task's events name this worker.
async fn process_item(shared: &Shared, item: Delivered, acker: Acker, slot: OwnedSemaphorePermit) {
    let loaded = shared.storage.load_task(&item.id).await;
    let mut task = match decide::on_load(loaded, item.delivered) {
        Ok(task) => task,
        Err(action) => return Box::pin(apply_to_item(shared, &acker, &item, action)).await,
    };
    let verified = shared.storage.verify(&task);
    // the server's time: no later than the item's publication, so a task
    // the server released when due is never held for this clock
    let now = shared.storage.clock().now().max(item.published);
    let judged = shared.judging_queue();
    let mut action = decide::before_run(&task, verified, &judged, now, item.delivered);
    decide::past_deadline_while_unhandled(&mut action, &task);
    if let Action::CheckDependencies = action {
        action = Box::pin(dependencies(shared, &mut task)).await;
    }
    if matches!(action, Action::Run { .. }) && shared.router.route_for(&task.task_type).is_none() {
        // no try here: left for a worker that has the handler
        action = Box::pin(unhandled::judge(shared, &task, now)).await;
    }
    match action {
        Action::Run {
            stale,
            replace_first,
        } => {
            if stale {
                tracing::info!(task = %item.id, "task was active past its run time; its worker is presumed dead, running it again");
            }
            // The server will not deliver this item again: a fresh one
            // replaces it first (delivered at once, run then).
            if replace_first && Box::pin(replace_item(shared, &acker, &item, Due::Now)).await {
                return;
            }
        }
        other => return Box::pin(apply(shared, &acker, &item, &mut task, other)).await,
    }
    // a keyed task's limits (docs/processing.md §2.24): waiting for them
    // is no try. Boxed, as the releases below: their futures are most of
    // this one's size otherwise (8 KiB of 10), moved with every delivery
    // keyed or not
    let acquired = match task.key {
        Some(_) => Box::pin(keys::acquire(shared, &task)).await,
        None => Ok(None),
    };
    let key_hold = match acquired {
        Ok(hold) => hold,
        Err(wait) => {
            drop(slot);
            Box::pin(outcome::wait(shared, &acker, &item, wait)).await;
            return;
        }
    };
    // watched before the `active` save: a cancel that reads that record
    // sends its notice after this (worker/cancel.rs)
    let watched = shared.cancels.watch(&task.id);
    if let Err(e) = mark_active(shared, &mut task).await {
        let action = decide::on_active_not_saved(e, item.delivered);
        Box::pin(apply(shared, &acker, &item, &mut task, action)).await;
        if let Some(hold) = key_hold {
            Box::pin(keys::release(shared, hold)).await;
        }
        return;
    }

    shared.leases.holds(&task.id, task.seq);

    let acker = Arc::new(acker);
    let outcome = run_handler(
        shared,
        &mut task,
        acker.clone(),
        item.traceparent.clone(),
        &watched.token,
    )
    .await;
    drop(watched);
    drop(slot);

    let now = shared.storage.clock().now();
    task.tried = Some(now);
    let action = decide::after_run(outcome, &task, &shared.queue(), now);
    apply(shared, &acker, &item, &mut task, action).await;
    shared.leases.released(&task.id);
    if let Some(hold) = key_hold {
        Box::pin(keys::release(shared, hold)).await;
    }
}

/// The delivered work item and its acknowledger; `None` once a message
/// that is not a work item has been terminated.
async fn read(shared: &Shared, msg: async_nats::jetstream::Message) -> Option<(Delivered, Acker)> {
    let (delivered, published) = match msg.info() {
        Ok(i) => (i.delivered.max(1) as u64, i.published),
        Err(_) => (1, OffsetDateTime::UNIX_EPOCH),
    };
    let traceparent = WorkItem::traceparent(msg.headers.as_ref());
    let (msg, acker) = msg.split();
    if msg.subject.starts_with(LEGACY_HELD_PREFIX) {
        // meant for later, by an earlier version: it runs now
        shared.legacy_item_delivered(&msg.subject);
    }
    let lane = Lane::of_subject(&msg.subject);
    let key = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(KEY_HEADER))
        .map(|k| k.to_string());
    match decide::on_item(&msg.subject, &msg.payload) {
        Ok(id) => Some((
            Delivered {
                id,
                traceparent,
                delivered,
                published,
                lane,
                key,
            },
            acker,
        )),
        Err(action) => {
            let item = Delivered {
                id: String::new(),
                traceparent,
                delivered,
                published,
                lane,
                key,
            };
            Box::pin(apply_to_item(shared, &acker, &item, action)).await;
            None
        }
    }
}

/// Looks up a blocked task's dependencies and decides: run (their results
/// loaded into the task when it asked for them), wait, or end.
async fn dependencies(shared: &Shared, task: &mut Task) -> Action {
    let deps = check_dependencies(shared, task).await;
    let now = shared.storage.clock().now();
    match decide::after_dependencies(deps, shared.settings.blocked_delay, now) {
        Ok(results) => {
            if task.load_dependencies {
                task.dependency_results = results;
            }
            Action::Run {
                stale: false,
                replace_first: false,
            }
        }
        Err(action) => action,
    }
}

/// Saves the task `active`. The try is counted when it starts (Go counts
/// it when it ends), so a task whose handler kills its worker still runs
/// out of tries.
async fn mark_active(shared: &Shared, task: &mut Task) -> crate::Result<()> {
    task.state = TaskState::Active;
    task.tried = Some(shared.storage.clock().now());
    task.last_err.clear();
    // a try's progress is its own (docs/processing.md §2.17)
    task.progress = None;
    task.tries += 1;
    shared.storage.save_task(task).await
}

/// Loads every dependency (verified) and judges them: Go's rule stops at
/// the first that failed, a task that runs whatever their outcome at the
/// first unfinished one (docs/processing.md §2.5).
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
        let last = if task.dependencies_any_outcome {
            // the verdict is "waiting" whatever the rest say
            l.unfinished()
        } else {
            match &l {
                Loaded::NotFound | Loaded::Unusable(_) => true,
                Loaded::Discarded(state) => *state != TaskState::Complete,
                _ => false,
            }
        };
        loaded.push((dep.clone(), l));
        if last {
            break;
        }
    }
    gates::judge_dependencies(task, loaded)
}
