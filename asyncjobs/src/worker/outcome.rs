//! Recording what happened: saving the task's new state and acknowledging
//! its work item (docs/processing.md §2.8), with the fixes of the crate docs.

use super::{Delivered, Shared};
use crate::error::Error;
use crate::retry::{LinearPolicy, RetryPolicy};
use crate::storage::Due;
use crate::task::{Task, TaskState};
use crate::throttle::{warn_throttled, Throttle};
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
    // acknowledgements that end or hand back the delivery wait for the
    // answer: a claimed item's is carried out by this worker's claim inbox
    // (worker/lanes/inbox.rs), which must have done it before the try counts as
    // ended (a worker stopping dropped its last tries' hand-backs)
    let res = match kind {
        AckKind::Ack | AckKind::Term | AckKind::Nak(_) => {
            tokio::time::timeout(Duration::from_secs(5), acker.double_ack_with(kind))
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        }
        _ => acker.ack_with(kind).await,
    };
    if let Err(e) = res {
        static ACK: Throttle = Throttle::new(LOG_EVERY);
        warn_throttled!(ACK, task, ack = kind_name, error = %e, "acknowledging work item failed; it will be redelivered");
    }
}

/// How a failed try asks to be retried.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Failed {
    /// The handler asked for this delay ([`HandlerError::retry_after`](crate::HandlerError::retry_after)).
    pub delay: Option<Duration>,
    /// No handler runs the task's type (logged as an error).
    pub no_handler: bool,
}

/// Saves a failed try as `retry` and hands the item back for the policy's
/// backoff (or the delay the handler asked for), or, when `expired`,
/// saves `expired` and terminates the item. Logs the failure: WARN with
/// the try, the tries allowed and the next try's time; ERROR when the task
/// expired or no handler runs its type.
pub(crate) async fn retry_or_expire(
    shared: &Shared,
    acker: &Acker,
    task: &mut Task,
    item: &Delivered,
    expired: bool,
    failed: Failed,
) {
    let limit = shared.queue().effective_max_tries(task.max_tries);
    let tries = match limit {
        Some(l) => format!("{} of {l}", task.tries),
        None => format!("{} (no limit)", task.tries),
    };
    if expired {
        tracing::error!(task = %task.id, r#type = %task.task_type, queue = %shared.name, tries = %tries,
            error = %task.last_err, "task failed and has no tries left: expired");
        finish(shared, acker, task, AckKind::Term).await;
        return;
    }
    // by failed tries, not deliveries: a try that waited on a scheduled
    // item starts on a fresh item (delivery 1)
    let failures = item.delivered.max(u64::try_from(task.tries).unwrap_or(0));
    let delay = failed
        .delay
        .unwrap_or_else(|| shared.settings.retry.duration(failures));
    let next = (time::OffsetDateTime::now_utc() + delay)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    if failed.no_handler {
        tracing::error!(task = %task.id, r#type = %task.task_type, queue = %shared.name, r#try = %tries,
            next_try = %next, error = %task.last_err, "no handler for this task type; trying again later");
    } else {
        tracing::warn!(task = %task.id, r#type = %task.task_type, queue = %shared.name, r#try = %tries,
            next_try = %next, error = %task.last_err, "task failed; trying again later");
    }
    match save_with_retries(shared, task).await {
        Err(Error::ConcurrentUpdate(_)) => {
            return Box::pin(superseded(shared, acker, task, AckKind::Ack)).await;
        }
        Err(e) if e.is_permanent() => {
            return Box::pin(unsaveable(shared, acker, task, e)).await;
        }
        Err(e) => tracing::error!(task = %task.id, error = %e, "saving task state retry failed"),
        Ok(()) => {}
    }
    wait(shared, acker, item, delay).await;
}

/// How often a per-delivery failure (the same for many items while a
/// store is full or a server refuses) is logged at WARN; DEBUG between.
pub(crate) const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Shortest wait handed to a JetStream message schedule; shorter waits
/// are NAKs with delay (schedules fire on whole seconds).
pub(crate) const MIN_SCHEDULED_WAIT: Duration = Duration::from_secs(1);

/// Hands the item back for `delay` (a retry backoff, a dependency poll).
///
/// When the worker holds its waits (nats-server 2.12+, see
/// [`Storage::prepare_held`](crate::storage::Storage::prepare_held)),
/// a fresh item due after `delay` is held and this one acknowledged,
/// so the waiting task holds none of the queue's `max_ack_pending` slots
/// and new work starts at once. Otherwise, or when the schedule cannot be
/// written, a NAK with delay ([`nak`]) keeps the item pending. Whether
/// the item was held.
pub(crate) async fn wait(
    shared: &Shared,
    acker: &Acker,
    item: &Delivered,
    delay: Duration,
) -> bool {
    if delay >= MIN_SCHEDULED_WAIT
        && shared.scheduled_items()
        && Box::pin(replace_item(shared, acker, item, Due::In(delay))).await
    {
        return true;
    }
    nak(shared, acker, item, delay).await;
    false
}

/// Saves a final or retry state (discarding it when configured) and sends `ack`.
/// When the save fails for a transient reason the item is left
/// unacknowledged so the task is redelivered; a save that can never
/// succeed ends the task through [`unsaveable`].
pub(crate) async fn finish(shared: &Shared, acker: &Acker, task: &mut Task, ack: AckKind) {
    match save_with_retries(shared, task).await {
        Ok(()) => send_ack(acker, ack, &task.id).await,
        Err(Error::ConcurrentUpdate(_)) => Box::pin(superseded(shared, acker, task, ack)).await,
        Err(e) if e.is_permanent() => Box::pin(unsaveable(shared, acker, task, e)).await,
        Err(e) => {
            tracing::error!(task = %task.id, state = %task.state, error = %e,
                "saving task state failed; leaving the work item for redelivery");
        }
    }
}

/// The task's record changed since this worker loaded it: a newer try
/// on another worker (this one outlived its lease, for example paused or
/// cut off from the server), an operator's retry or delete. This try's
/// outcome is dropped (logged), since the newer record stands. The item
/// is acknowledged with `ack` only when the task is gone or final: it may
/// be the very message a newer try is running on, and acknowledging it
/// would remove that try's item, leaving nothing to rerun or expire the
/// task if that try's worker dies. Otherwise it is left alone: the newer
/// try acknowledges it, or it is redelivered and judged again.
pub(crate) async fn superseded(shared: &Shared, acker: &Acker, task: &Task, ack: AckKind) {
    let current = shared.storage.load_task(&task.id).await;
    let done = match &current {
        Err(Error::TaskNotFound(_)) => true,
        Ok(t) => t.state.is_final(),
        Err(_) => false,
    };
    let now = current
        .as_ref()
        .map(|t| t.state.to_string())
        .unwrap_or_else(|e| e.to_string());
    let cancelled = current.as_ref().is_ok_and(|t| {
        t.state.is_final() && crate::task::cancel::is_cancelled_last_err(&t.last_err)
    });
    if cancelled {
        tracing::info!(task = %task.id, dropped = %task.state, tries = task.tries,
            "the task was cancelled while this try ran; dropping this try's outcome");
    } else {
        tracing::warn!(task = %task.id, dropped = %task.state, tries = task.tries, current = %now,
            "the task changed while this try ran (a newer try, a retry, a cancel or a delete); dropping this try's outcome");
    }
    if done {
        send_ack(acker, ack, &task.id).await;
    }
}

/// The task's record can never be saved as it is (for example a result
/// larger than the server takes, or one that cannot be encoded): it is
/// saved `terminated` without its result and dependency results, with the
/// cause in `last_err`, and its item is terminated, so the handler does
/// not run again for a failure no retry can fix.
///
/// Should that record be refused too (a limit lowered since the task was
/// enqueued), it is made smaller until it can be saved: first the cause is
/// cut to [`SHORT_LAST_ERR`] bytes, then the payload is removed (named in
/// `last_err`). The enqueue kept room for the first (docs/storage.md
/// §10.2), so the task always ends in a final state.
pub(crate) async fn unsaveable(shared: &Shared, acker: &Acker, task: &mut Task, cause: Error) {
    let wanted = task.state;
    tracing::error!(task = %task.id, state = %wanted, error = %cause,
        "the task record cannot be saved; terminating the task");
    task.state = TaskState::Terminated;
    task.result = None;
    task.dependency_results.clear();
    let why = format!("task record could not be saved in state {wanted}: {cause}");
    task.last_err = bounded_error(why.clone());
    let mut smaller = [Shrink::ShortError, Shrink::NoPayload].into_iter();
    loop {
        match save_with_retries(shared, task).await {
            Ok(()) => break,
            Err(Error::ConcurrentUpdate(_)) => {
                return Box::pin(superseded(shared, acker, task, AckKind::Term)).await;
            }
            Err(e) if e.is_permanent() => match smaller.next() {
                Some(step) => {
                    tracing::warn!(task = %task.id, error = %e, ?step,
                        "the terminated task's record was refused too; saving a smaller one");
                    step.apply(task, &why);
                }
                None => {
                    tracing::error!(task = %task.id, error = %e, "saving the terminated task failed too");
                    break;
                }
            },
            Err(e) => {
                tracing::error!(task = %task.id, error = %e, "saving the terminated task failed too");
                break;
            }
        }
    }
    send_ack(acker, AckKind::Term, &task.id).await;
}

/// Longest `last_err` of a terminated task whose record was refused even
/// with its usual error.
pub(crate) const SHORT_LAST_ERR: usize = 256;

/// How a refused terminated record is made smaller.
#[derive(Debug, Clone, Copy)]
enum Shrink {
    /// The cause cut to [`SHORT_LAST_ERR`] bytes.
    ShortError,
    /// The payload removed too.
    NoPayload,
}

impl Shrink {
    fn apply(self, task: &mut Task, why: &str) {
        match self {
            Shrink::ShortError => task.last_err = cut(why, SHORT_LAST_ERR),
            Shrink::NoPayload => {
                let size = task.payload.as_ref().map_or(0, Vec::len);
                task.payload = None;
                task.last_err = cut(
                    &format!("payload of {size} bytes removed so the record could be saved; {why}"),
                    SHORT_LAST_ERR,
                );
            }
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
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
                static SAVE: Throttle = Throttle::new(LOG_EVERY);
                warn_throttled!(SAVE, task = %task.id, error = %e, attempt, "saving task failed, retrying");
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
/// one is acknowledged, so waiting never exhausts deliveries (docs/go-differences.md §3).
pub(crate) async fn nak(shared: &Shared, acker: &Acker, item: &Delivered, delay: Duration) {
    let max_deliver = shared.queue().max_tries;
    if max_deliver > 0
        && item.delivered as i64 >= max_deliver - 1
        && Box::pin(replace_item(shared, acker, item, Due::Now)).await
    {
        return;
    }
    send_ack(acker, AckKind::Nak(Some(delay)), &item.id).await;
}

/// Publishes a fresh work item for the task (through the one publish path,
/// so it keeps its `traceparent`), due at once or, with `due`, held until
/// then by a message schedule, and acknowledges this one; false when the
/// publish failed (the caller then goes on with this item).
pub(crate) async fn replace_item(
    shared: &Shared,
    acker: &Acker,
    item: &Delivered,
    due: Due,
) -> bool {
    let sent = shared
        .storage
        .publish_item_at(
            &shared.name,
            &item.id,
            item.lane,
            item.key.as_deref(),
            item.traceparent.clone(),
            false,
            due,
        )
        .await;
    let acked = match sent {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    match acked {
        Ok(_) => {
            tracing::debug!(task = %item.id, delivered = item.delivered, ?due, "replaced the work item");
            send_ack(acker, AckKind::Ack, &item.id).await;
            true
        }
        Err(e) => {
            static REPLACE: Throttle = Throttle::new(LOG_EVERY);
            warn_throttled!(REPLACE, task = %item.id, error = %e, ?due, "replacing the work item failed; going on with this one");
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
