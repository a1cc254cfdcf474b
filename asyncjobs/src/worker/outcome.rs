//! Recording what happened: saving the task's new state and acknowledging
//! its work item (reference §5.3), with the fixes of the crate docs.

use super::{Delivered, Shared};
use crate::error::Error;
use crate::retry::{LinearPolicy, RetryPolicy};
use crate::task::Task;
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
    if let Err(e) = save_with_retries(shared, task).await {
        tracing::error!(task = %task.id, error = %e, "saving task state retry failed");
    }
    nak(shared, acker, item, delay).await;
}

/// Saves a final or retry state (discarding it when configured) and sends `ack`.
/// When the save fails the item is left unacknowledged so the task is redelivered.
pub(crate) async fn finish(shared: &Shared, acker: &Acker, task: &mut Task, ack: AckKind) {
    match save_with_retries(shared, task).await {
        Ok(()) | Err(Error::ConcurrentUpdate(_)) => send_ack(acker, ack, &task.id).await,
        Err(e) => {
            tracing::error!(task = %task.id, state = %task.state, error = %e,
                "saving task state failed; leaving the work item for redelivery");
        }
    }
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
    let max_deliver = shared.queue.max_tries;
    if max_deliver > 0 && item.delivered as i64 >= max_deliver - 1 {
        let sent = shared
            .storage
            .publish_item(
                &shared.queue.name,
                &item.id,
                item.traceparent.clone(),
                false,
            )
            .await;
        let acked = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(_) => {
                tracing::debug!(task = %item.id, delivered = item.delivered, "re-armed work item near max deliveries");
                send_ack(acker, AckKind::Ack, &item.id).await;
                return;
            }
            Err(e) => tracing::warn!(task = %item.id, error = %e, "re-arming work item failed"),
        }
    }
    send_ack(acker, AckKind::Nak(Some(delay)), &item.id).await;
}

/// The NAK delay after a transient failure to load or save, by delivery count.
pub(crate) fn transient_delay(delivered: u64) -> Duration {
    LinearPolicy::ten_seconds().duration(delivered)
}
