//! What becomes of a claim's backup item (docs/processing.md §2.21) when
//! the claim does not simply run to the end: handed back (`-NAK`, the item
//! goes back to its lane or is held until due) or lost to another claim
//! (the backup is kept, replaced by a held item, or deleted, by the task's
//! state). The rule in both: the backup goes only once something else
//! runs the task again should its worker die.

use crate::queue::lane::Lane;
use crate::storage::Due;
use crate::throttle::{warn_throttled, Throttle};
use crate::worker::gates::{self, Gate};
use crate::worker::outcome::MIN_SCHEDULED_WAIT;
use crate::worker::Shared;
use crate::Error;
use std::time::Duration;

/// Puts a handed-back claimed item back in its lane, then removes its
/// backup. A delay of a second or more (a task found running elsewhere, for
/// the rest of its run time) is held and enters the lane when due, where
/// the server allows (docs/processing.md §2.9): an item in the lane
/// meanwhile is handed to every worker that looks, and a Go worker pulling
/// it holds it for its ack wait, an hour by default. Held, it still runs
/// the task again should the worker running it die.
pub(super) async fn back_to_lane(
    shared: &Shared,
    backup: u64,
    lane: Lane,
    key: Option<&str>,
    id: &str,
    delay: Option<Duration>,
) -> crate::Result<()> {
    if let Some(delay) = delay {
        if hold(shared, lane, key, id, delay).await {
            return shared
                .storage
                .remove_backup(&shared.name, id, backup, None)
                .await;
        }
    }
    let what = || format!("handing back the claimed item of task {id}");
    let sent = shared
        .storage
        .publish_item_at(&shared.name, id, lane, key, None, false, Due::Now)
        .await;
    let at = match sent {
        Ok(ack) => {
            ack.await
                .map_err(|e| crate::error::nats(what(), e))?
                .sequence
        }
        Err(e) => return Err(crate::error::nats(what(), e).into()),
    };
    // a later claim of the item just put back has a backup of its own
    shared
        .storage
        .remove_backup(&shared.name, id, backup, Some(at))
        .await
}

/// The backup at `backup` of a claim of task `id` that lost its lane item
/// to another claim or a pull. It may be the only item the task has: one
/// item per subject, so published after the winner's it replaced that.
///
/// * The task still waits to start (`new`, `retry`, `blocked`), or is
///   `active` past its lease: kept, it runs the task (the winner's end
///   removes it).
/// * `active` within its lease: the try running it is covered by its
///   worker's lease only once that is next written (up to 250 ms after
///   the start; docs/processing.md §2.14) and, for a Go worker, not at
///   all. The backup is replaced by an item held until the lease ends
///   (the gates then run the task again if that try never ended), where
///   the server holds items; otherwise it is kept (a Go worker handed it
///   holds it for its ack wait).
/// * Ended, or gone: deleted.
///
/// A task that cannot be read keeps its backup.
pub(super) async fn after_lost_claim(
    shared: &Shared,
    lane: Lane,
    key: Option<&str>,
    id: &str,
    backup: u64,
) {
    match shared.storage.load_task(id).await {
        Ok(task) => {
            let now = shared.storage.clock().now();
            match gates::gate(&task, &shared.judging_queue(), now) {
                Gate::AlreadyDone | Gate::Final => {}
                Gate::LeaseHeld(left) => {
                    if !hold(shared, lane, key, id, left).await {
                        return;
                    }
                }
                _ => return,
            }
        }
        Err(Error::TaskNotFound(_)) => {}
        Err(_) => return,
    }
    shared.storage.delete_backup(&shared.name, id, backup).await;
}

/// Writes an item of task `id` for `lane`, held by the server until
/// `delay` from now (the server's clock, docs/processing.md §2.13) and
/// then released into the lane. Whether it was written: never for less
/// than [`MIN_SCHEDULED_WAIT`] or where the queue holds no items.
async fn hold(shared: &Shared, lane: Lane, key: Option<&str>, id: &str, delay: Duration) -> bool {
    if delay < MIN_SCHEDULED_WAIT || !shared.scheduled_items() {
        return false;
    }
    let what = || format!("holding the claimed item of task {id}");
    let held = async {
        let ack = shared
            .storage
            .publish_item_at(&shared.name, id, lane, key, None, false, Due::In(delay))
            .await
            .map_err(|e| crate::error::nats(what(), e))?;
        ack.await.map_err(|e| crate::error::nats(what(), e))
    }
    .await;
    match held {
        Ok(_) => true,
        Err(e) => {
            static HELD: Throttle = Throttle::new(Duration::from_secs(10));
            warn_throttled!(HELD, task = %id, error = %e,
                "holding a claimed item failed; its backup stays, or it goes back in its lane now");
            false
        }
    }
}
