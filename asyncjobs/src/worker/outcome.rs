//! Recording what happened: saving the task's new state and acknowledging
//! its work item (reference §5.3), with the fixes of the crate docs.

use super::{Delivered, Shared};
use crate::error::Error;
use crate::retry::{LinearPolicy, RetryPolicy};
use crate::task::{Task, TaskState};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use std::time::Duration;

/// Sends an ack and logs failures (the item is then redelivered, and the
/// state gates make the redelivery harmless).
pub(crate) async fn send_ack(acker: &Acker, kind: AckKind, task: &str) {
    let kind_name = match kind {
        AckKind::Ack => "+ACK",
        AckKind::Nak(_) => "-NAK",
        AckKind::Term => "+TERM",
        AckKind::Progress => "+WPI",
        _ => "ack",
    };
    let res = match kind {
        AckKind::Ack | AckKind::Term => {
            tokio::time::timeout(Duration::from_secs(5), acker.double_ack_with(kind))
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        }
        _ => acker.ack_with(kind).await,
    };
    if let Err(e) = res {
        tracing::warn!(task, ack = kind_name, error = %e, "acknowledging work item failed; it will be redelivered");
    }
}

/// Saves a failed try as `retry` and NAKs with the policy's backoff, or,
/// when `expired`, saves `expired` and terminates the item.
pub(crate) async fn retry_or_expire(
    shared: &Shared,
    acker: &Acker,
    task: &mut Task,
    item: &Delivered,
    expired: bool,
) {
    if expired {
        finish(shared, acker, task, AckKind::Term).await;
        return;
    }
    let delay = shared.settings.retry.duration(item.delivered);
    match save_with_retries(shared, task).await {
        Err(e) if e.is_permanent() && !matches!(e, Error::ConcurrentUpdate(_)) => {
            return Box::pin(unsaveable(shared, acker, task, e)).await;
        }
        Err(e) => tracing::error!(task = %task.id, error = %e, "saving task state retry failed"),
        Ok(()) => {}
    }
    nak(shared, acker, item, delay).await;
}

/// Saves a final or retry state (discarding it when configured) and sends `ack`.
/// When the save fails for a transient reason the item is left
/// unacknowledged so the task is redelivered; a save that can never
/// succeed ends the task through [`unsaveable`].
pub(crate) async fn finish(shared: &Shared, acker: &Acker, task: &mut Task, ack: AckKind) {
    match save_with_retries(shared, task).await {
        Ok(()) => send_ack(acker, ack, &task.id).await,
        Err(Error::ConcurrentUpdate(_)) => ack_unless_overtaken(shared, acker, task, ack).await,
        Err(e) if e.is_permanent() => Box::pin(unsaveable(shared, acker, task, e)).await,
        Err(e) => {
            tracing::error!(task = %task.id, state = %task.state, error = %e,
                "saving task state failed; leaving the work item for redelivery");
        }
    }
}

/// The task's record can never be saved as it is (for example a result
/// larger than the server takes, or one that cannot be encoded): it is
/// saved `terminated` without its result and dependency results, with the
/// cause in `last_err`, and its item is terminated, so the handler does
/// not run again for a failure no retry can fix.
pub(crate) async fn unsaveable(shared: &Shared, acker: &Acker, task: &mut Task, cause: Error) {
    let wanted = task.state;
    tracing::error!(task = %task.id, state = %wanted, error = %cause,
        "the task record cannot be saved; terminating the task");
    task.state = TaskState::Terminated;
    task.result = None;
    task.dependency_results.clear();
    task.last_err = bounded_error(format!(
        "task record could not be saved in state {wanted}: {cause}"
    ));
    match save_with_retries(shared, task).await {
        Ok(()) => {}
        Err(Error::ConcurrentUpdate(_)) => {
            return ack_unless_overtaken(shared, acker, task, AckKind::Term).await;
        }
        Err(e) => {
            tracing::error!(task = %task.id, error = %e, "saving the terminated task failed too");
        }
    }
    send_ack(acker, AckKind::Term, &task.id).await;
}

/// A final save found the record changed since this try loaded it: the
/// try may have been overtaken. Its worker was presumed dead (for example
/// its saves stalled past the lease while the server was away) and a newer
/// try now runs on this same work item; an ack from this older delivery
/// would remove that item, and the task would be left `active` (or
/// `retry`) with nothing to deliver it again once the newer try's worker
/// died or handed it back. So the item is acknowledged only when the
/// stored record is final (a save of this try that timed out but landed,
/// or another try's outcome) or gone; otherwise it is left to the newer
/// try, or to a redelivery the gates judge.
async fn ack_unless_overtaken(shared: &Shared, acker: &Acker, task: &Task, ack: AckKind) {
    match shared.storage.load_task(&task.id).await {
        Ok(stored) if !stored.state.is_final() => {
            tracing::info!(task = %task.id, state = %stored.state, tries = stored.tries,
                this_try = task.tries,
                "the task changed while this try recorded its outcome (a newer try?); leaving the work item");
        }
        Ok(_) | Err(Error::TaskNotFound(_)) => send_ack(acker, ack, &task.id).await,
        Err(e) => {
            tracing::warn!(task = %task.id, error = %e,
                "loading the task after a conflicting save failed; leaving the work item for redelivery");
        }
    }
}

/// Longest `last_err` stored, in bytes: a handler's error message is cut
/// there so it cannot make the record too large to save.
pub(crate) const MAX_LAST_ERR: usize = 4096;

/// `message`, cut to [`MAX_LAST_ERR`] bytes (on a character boundary) with
/// a note of how much was cut.
pub(crate) fn bounded_error(message: String) -> String {
    if message.len() <= MAX_LAST_ERR {
        return message;
    }
    let mut cut = MAX_LAST_ERR;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… ({} more bytes cut)",
        &message[..cut],
        message.len() - cut
    )
}

/// Saves with a few retries for transient failures (for example a server restart).
pub(crate) async fn save_with_retries(shared: &Shared, task: &mut Task) -> crate::Result<()> {
    let storage = &shared.storage;
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = if task.state.is_final() {
            storage.save_or_discard(task).await
        } else {
            storage.save_task(task).await
        };
        match res {
            Err(e) if !e.is_permanent() && attempt < 8 => {
                tracing::warn!(task = %task.id, error = %e, attempt, "saving task failed, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            other => return other,
        }
    }
}

/// NAKs with `delay`, unless this delivery is the last the consumer's
/// `max_deliver` allows: then a fresh work item (published by the storage
/// path, so it keeps the task's `traceparent`) replaces this one and this
/// one is acknowledged, so waiting never exhausts deliveries (§16.7).
pub(crate) async fn nak(shared: &Shared, acker: &Acker, item: &Delivered, delay: Duration) {
    let max_deliver = shared.queue().max_tries;
    if max_deliver > 0
        && item.delivered as i64 >= max_deliver - 1
        && Box::pin(replace_item(shared, acker, item)).await
    {
        return;
    }
    send_ack(acker, AckKind::Nak(Some(delay)), &item.id).await;
}

/// Publishes a fresh work item for the task (through the one publish path,
/// so it keeps its `traceparent`) and acknowledges this one, which is near
/// or at the consumer's `max_deliver`; false when the publish failed (the
/// caller then goes on with this item).
pub(crate) async fn replace_item(shared: &Shared, acker: &Acker, item: &Delivered) -> bool {
    let sent = shared
        .storage
        .publish_item(&shared.name, &item.id, item.traceparent.clone(), false)
        .await;
    let acked = match sent {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    match acked {
        Ok(_) => {
            tracing::debug!(task = %item.id, delivered = item.delivered, "replaced the work item near max deliveries");
            send_ack(acker, AckKind::Ack, &item.id).await;
            true
        }
        Err(e) => {
            tracing::warn!(task = %item.id, error = %e, "replacing the work item near max deliveries failed");
            false
        }
    }
}

/// The NAK delay after a transient failure to load or save, by delivery count.
pub(crate) fn transient_delay(delivered: u64) -> Duration {
    LinearPolicy::ten_seconds().duration(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        assert_eq!(bounded_error("short".into()), "short");
        let long = "é".repeat(MAX_LAST_ERR);
        let cut = bounded_error(long.clone());
        assert!(cut.len() < MAX_LAST_ERR + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("({} more bytes cut)", long.len() - MAX_LAST_ERR)));
    }
}
