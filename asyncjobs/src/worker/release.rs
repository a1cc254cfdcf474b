//! Moving held items into their queue once they are due. A wait (a retry's
//! backoff, a dependency poll, a delayed task) is a JetStream message
//! schedule in [`HELD_STREAM`](crate::HELD_STREAM); when it fires, the
//! server releases the item to `CHORIA_AJ.R.<queue>.<id>` in that stream,
//! and any running worker, of any queue, moves it into the queue here
//! (docs/storage.md §10.10), so a queue only Go workers serve gets its
//! items too. Schedules cannot publish into another stream, and the
//! queue's own stream is never changed to hold them, so its creator's
//! limits and discard policy stay as they were.
//!
//! A released item is acknowledged only once its queue took it: a queue
//! that is full (or missing for a while) leaves it held, and it is offered
//! again with a backoff, so no limit ever drops a waiting task's item.

use super::Shared;
use crate::metrics;
use crate::queue::lane::{Lane, KEY_HEADER};
use crate::queue::RELEASED_ITEM_PREFIX;
use crate::storage::Due;
use crate::storage::WorkItem;
use async_nats::jetstream::{self, AckKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The longest a released item waits before it is offered to a queue
/// that did not take it again.
const MOST_BACKOFF: Duration = Duration::from_secs(30);

/// How often a queue that keeps refusing released items is logged at WARN.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Moves released items into their queues until `stop` is cancelled
/// (`consume.rs` recreates a failing subscription).
/// Does nothing on servers older than 2.12 (no held items).
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    if !shared.storage.supports_schedules() {
        return;
    }
    if let Err(e) = shared.storage.prepare_held().await {
        tracing::warn!(error = %e, "preparing the held-items stream failed; trying again");
    }
    let consumer = super::consume::Consumer {
        queue: &shared.name,
        loop_name: "release",
        what: "released work items",
        waits: "held items wait until it is back",
    };
    let source = Releaser {
        shared: shared.clone(),
        refusals: Throttle::default(),
    };
    super::consume::consume(consumer, &stop, source).await;
}

/// The released items' consumer, for `consume.rs`.
struct Releaser {
    shared: Arc<Shared>,
    refusals: Throttle,
}

impl super::consume::Source for Releaser {
    async fn load(&self) -> crate::Result<jetstream::consumer::PullConsumer> {
        self.shared.storage.held_consumer().await
    }

    async fn recreate(&self) -> crate::Result<()> {
        self.shared.storage.prepare_held().await.map(|_| ())
    }

    async fn handle(&mut self, msg: jetstream::Message) {
        move_into_queue(&self.shared, msg, &mut self.refusals).await;
    }
}

/// Publishes a released item's work item to its queue (through the one
/// publish path, keeping its `traceparent`) and acknowledges the released
/// one; when the queue does not take it, hands it back for later.
async fn move_into_queue(shared: &Shared, msg: jetstream::Message, refusals: &mut Throttle) {
    let target = released_target(&msg.subject);
    let item = WorkItem::decode(&msg.payload);
    let (queue, id) = match (target, item) {
        (Some((queue, _)), Ok(item)) => (queue, item.job),
        (_, item) => {
            metrics::item_corrupt(&shared.name);
            let why = item
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no queue in its subject".into());
            tracing::error!(subject = %msg.subject, "released message: {why}; terminating it");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let traceparent = WorkItem::traceparent(msg.headers.as_ref());
    let lane = Lane::of_subject(&msg.subject);
    let mut key = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(KEY_HEADER))
        .map(|k| k.to_string());
    if matches!(lane, Lane::Shard(_)) && key.is_none() {
        // a schedule may not copy the header: the record has the key
        key = shared.storage.load_task(&id).await.ok().and_then(|t| t.key);
    }
    let sent = shared
        .storage
        .publish_item_at(
            queue,
            &id,
            lane,
            key.as_deref(),
            traceparent,
            false,
            Due::Now,
        )
        .await;
    let taken = match sent {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    match taken {
        Ok(_) => {
            refusals.clear(queue);
            if lane != Lane::Plain {
                shared.storage.notify_lane(queue, lane).await;
            }
            if let Err(e) = msg.double_ack().await {
                // offered again after the ack wait; the second item is
                // acknowledged at delivery as a duplicate of a running or
                // finished task
                tracing::warn!(queue, task = %id, error = %e, "acknowledging a released work item failed");
            }
        }
        Err(e) => {
            metrics::enqueue_error(queue);
            let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).max(1) as u32;
            let delay = release_backoff(delivered);
            refusals.refused(queue, &id, &e, delay);
            if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                tracing::debug!(queue, task = %id, error = %e, "handing back a released work item failed; it is offered again after its ack wait");
            }
        }
    }
}

/// The queue and task id of a released item's subject,
/// `CHORIA_AJ.R.<queue>.<id>`.
fn released_target(subject: &str) -> Option<(&str, &str)> {
    subject
        .strip_prefix(RELEASED_ITEM_PREFIX)?
        .split_once('.')
        .filter(|(q, id)| !q.is_empty() && !id.is_empty())
}

/// The wait before a released item is offered again after the queue
/// refused it `delivered` times: 1 s doubling to [`MOST_BACKOFF`].
fn release_backoff(delivered: u32) -> Duration {
    Duration::from_secs(1u64 << delivered.saturating_sub(1).min(5)).min(MOST_BACKOFF)
}

/// Logs a queue refusing released items at WARN once per [`WARN_EVERY`]
/// (debug in between), and when it takes them again; per queue.
#[derive(Debug, Default)]
struct Throttle(std::collections::HashMap<String, Refusals>);

/// One queue's current run of refusals.
#[derive(Debug)]
struct Refusals {
    /// When it was last logged at WARN.
    warned: Instant,
    /// Refusals since then.
    since: u64,
}

impl Throttle {
    fn refused(&mut self, queue: &str, id: &str, e: &dyn std::fmt::Display, delay: Duration) {
        if let Some(r) = self.0.get_mut(queue) {
            r.since += 1;
            if r.warned.elapsed() < WARN_EVERY {
                tracing::debug!(queue, task = id, error = %e, ?delay, "the queue did not take a released work item; it stays held");
                return;
            }
        }
        let since = self.0.get(queue).map_or(1, |r| r.since);
        tracing::warn!(queue, task = id, error = %e, retry_in = ?delay, refused = since,
            "the queue did not take released work items (full, or missing); they stay held and are offered again");
        self.0.insert(
            queue.to_string(),
            Refusals {
                warned: Instant::now(),
                since: 0,
            },
        );
    }

    fn clear(&mut self, queue: &str) {
        if self.0.remove(queue).is_some() {
            tracing::info!(queue, "the queue takes released work items again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_subjects_name_queue_and_task() {
        assert_eq!(
            released_target("CHORIA_AJ.R.EMAIL.2Jk7X1vJ8nR0a4mZq3bW6yTgE5c"),
            Some(("EMAIL", "2Jk7X1vJ8nR0a4mZq3bW6yTgE5c"))
        );
        assert_eq!(released_target("CHORIA_AJ.R.EMAIL"), None);
        assert_eq!(released_target("CHORIA_AJ.Q.EMAIL.x"), None);
        assert_eq!(released_target("CHORIA_AJ.R..x"), None);
    }

    #[test]
    fn refused_items_back_off_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|n| release_backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
