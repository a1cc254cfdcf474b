//! One schedule's timer: waiting for each slot by the wall clock, catching
//! up on slots missed while not leading, and creating the slot's task.

use super::{slot_task_id, Inner, ScheduledTask};
use crate::cron::CronSchedule;
use crate::error::Error;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub(super) async fn run_schedule(
    inner: Arc<Inner>,
    name: String,
    st: ScheduledTask,
    cron: CronSchedule,
    stop: CancellationToken,
) {
    let mut after = OffsetDateTime::now_utc();
    // slots that passed while this scheduler was not the leader
    let mut missed = std::collections::VecDeque::new();
    loop {
        let Some(slot) = cron.next_after(after) else {
            tracing::warn!(schedule = %name, spec = %st.schedule, "schedule never fires again");
            return;
        };
        // wait for the slot by the wall clock, re-checking at least every
        // minute, and every second while missed slots wait for leadership
        loop {
            let now = OffsetDateTime::now_utc();
            if !missed.is_empty() && inner.is_leader() {
                let floor = inner.previous_leader_until();
                let waiting = missed.len();
                let due = catch_up(&mut missed, now, inner.misfire_window, floor);
                if due.len() < waiting {
                    tracing::info!(schedule = %name, skipped = waiting - due.len(), previous_leader_until = ?floor,
                        "not firing missed slots that are too old or that the previous leader may have fired");
                }
                for old in due {
                    tracing::info!(schedule = %name, slot = %old, "firing a slot missed while not the leader");
                    fire(&inner, &name, &st, old).await;
                }
            }
            if now >= slot {
                break;
            }
            let most = if missed.is_empty() { 60 } else { 1 };
            let wait: Duration = (slot - now)
                .try_into()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(1), Duration::from_secs(most));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if stop.is_cancelled() {
            return;
        }
        if inner.is_leader() {
            fire(&inner, &name, &st, slot).await;
        } else if !inner.misfire_window.is_zero() {
            missed.push_back(slot);
            if missed.len() > MAX_MISSED {
                missed.pop_front();
            }
        }
        after = slot.max(OffsetDateTime::now_utc());
    }
}

/// Most missed slots remembered per schedule (an `@every 1s` schedule
/// fills 120 in the default window).
const MAX_MISSED: usize = 10_000;

/// The missed slots still inside the misfire window and after the time the
/// previous leader may have acted until, oldest first; the list is
/// emptied.
pub(super) fn catch_up(
    missed: &mut std::collections::VecDeque<OffsetDateTime>,
    now: OffsetDateTime,
    window: Duration,
    previous_leader_until: Option<OffsetDateTime>,
) -> Vec<OffsetDateTime> {
    missed
        .drain(..)
        .filter(|slot| now - *slot <= window)
        // a slot the previous leader may have fired is never fired again:
        // Go's slot tasks have random ids, so nothing else would catch it
        .filter(|slot| previous_leader_until.is_none_or(|until| *slot > until))
        .collect()
}

async fn fire(inner: &Inner, name: &str, st: &ScheduledTask, slot: OffsetDateTime) {
    if !inner.is_leader() {
        tracing::debug!(schedule = %name, %slot, "not the leader; skipping");
        return;
    }
    if st.paused {
        tracing::debug!(schedule = %name, %slot, "paused; not firing");
        return;
    }
    let mut task = match st.build_task(Some(slot_task_id(name, slot))) {
        Ok(t) => t,
        Err(e) => {
            crate::metrics::scheduler_error(&st.task_type, &st.queue);
            tracing::warn!(schedule = %name, error = %e, "cannot build the scheduled task");
            return;
        }
    };
    // cheap check first; the conditional save below is the real guard
    if inner.client.load_task(&task.id).await.is_ok() {
        tracing::debug!(schedule = %name, task = %task.id, %slot, "slot already fired by another scheduler");
        return;
    }
    let span = crate::spans::schedule(name, &st.queue);
    let enqueued =
        tracing::Instrument::instrument(inner.client.enqueue_to(&st.queue, &mut task), span).await;
    match enqueued {
        Ok(()) => {
            crate::metrics::scheduler_scheduled(&st.task_type, &st.queue);
            tracing::info!(schedule = %name, task = %task.id, queue = %st.queue, %slot, "created scheduled task");
        }
        Err(Error::ConcurrentUpdate(_)) => {
            tracing::debug!(schedule = %name, task = %task.id, %slot, "slot already fired by another scheduler");
        }
        Err(Error::DuplicateItem) => {
            // the queue saw this slot's work item already; the record just
            // saved (now queue_error) is a phantom of a discarded task
            let _ = inner.client.delete_task(&task.id).await;
            tracing::debug!(schedule = %name, task = %task.id, %slot, "slot already fired (duplicate work item)");
        }
        Err(e) => {
            crate::metrics::scheduler_error(&st.task_type, &st.queue);
            tracing::warn!(schedule = %name, task = %task.id, queue = %st.queue, error = %e, "creating scheduled task failed");
        }
    }
}
