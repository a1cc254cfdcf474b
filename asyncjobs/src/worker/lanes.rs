//! Priority lanes, the worker's side (docs/processing.md §2.21): which
//! lanes may hold items, claiming the oldest item of the highest lane for
//! a free slot, and acknowledging a claimed item.
//!
//! A claimed item is walked forward like any delivery
//! ([`process`](super::delivery::process)): it is handed over as a message
//! whose reply subject is this worker's claim inbox, so its
//! acknowledgements arrive here instead of at a consumer. `+ACK` and
//! `+TERM` delete the claim's backup item (`storage/lanes.rs`); `-NAK`
//! without a delay (a shutdown handing it back) puts the item back in its
//! lane; `-NAK` with a delay leaves the backup to be delivered in arrival
//! order (waits of a second or more are held and return to the lane,
//! `outcome::wait`).

use super::Shared;
use crate::storage::{LaneItem, WorkItem};
use crate::task::MAX_PRIORITY;
use crate::throttle::{warn_throttled, Throttle};
use async_nats::jetstream;
use futures::StreamExt;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// How often every lane is looked at again, for items whose notice this
/// worker missed (enqueued before it started, or a notice lost): the
/// longest a priority item can wait behind arrival order while this worker
/// has free slots and heard nothing.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Which lanes may hold items, and where claimed items' acks go.
pub(crate) struct Lanes {
    /// Bit `p` set: lane `p` may hold an item.
    maybe: AtomicU16,
    /// The claim inbox prefix.
    prefix: String,
}

impl Lanes {
    /// Lanes acknowledged through the claim inbox `prefix`, each looked at
    /// before the first pull.
    pub(super) fn new(prefix: String) -> Lanes {
        Lanes {
            maybe: AtomicU16::new(ALL),
            prefix,
        }
    }

    /// Whether any lane may hold an item (one atomic read: the cost to a
    /// queue without priorities).
    pub(super) fn may_hold(&self) -> bool {
        self.maybe.load(Ordering::Relaxed) != 0
    }

    fn mark(&self, priority: u8) {
        if (1..=MAX_PRIORITY).contains(&priority) {
            self.maybe.fetch_or(1 << priority, Ordering::Relaxed);
        }
    }

    /// Claims the oldest item of the highest lane holding one, as a
    /// message for [`process`](super::delivery::process); `None` when no
    /// lane holds one (or reading them failed: the slot then pulls).
    pub(super) async fn claim(&self, shared: &Shared) -> Option<jetstream::Message> {
        if shared.is_paused() {
            return None;
        }
        if let Some(every) = shared.queue().priority_aging {
            return match self.claim_aged(shared, every).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    static AGED: Throttle = Throttle::new(Duration::from_secs(10));
                    warn_throttled!(AGED, queue = %shared.name, error = %e,
                        "claiming a priority item failed; pulling in arrival order meanwhile");
                    None
                }
            };
        }
        for priority in (1..=MAX_PRIORITY).rev() {
            let bit = 1u16 << priority;
            // cleared before looking: a notice meanwhile marks it again
            if self.maybe.fetch_and(!bit, Ordering::Relaxed) & bit == 0 {
                continue;
            }
            match self.claim_from(shared, priority).await {
                Ok(Some(msg)) => {
                    self.maybe.fetch_or(bit, Ordering::Relaxed);
                    return Some(msg);
                }
                Ok(None) => {}
                Err(e) => {
                    self.maybe.fetch_or(bit, Ordering::Relaxed);
                    static CLAIM: Throttle = Throttle::new(Duration::from_secs(10));
                    warn_throttled!(CLAIM, queue = %shared.name, priority, error = %e,
                        "claiming a priority item failed; pulling in arrival order meanwhile");
                    return None;
                }
            }
        }
        None
    }

    /// Claims under aging (docs/processing.md §2.21): the head of every
    /// lane that may hold items and the oldest plain item are compared by
    /// priority plus one per `every` waited; the plain item winning (or
    /// no lane holding any) leaves the slot to a pull. A head another
    /// worker wins meanwhile is looked at again, a few times at most.
    async fn claim_aged(
        &self,
        shared: &Shared,
        every: Duration,
    ) -> crate::Result<Option<jetstream::Message>> {
        for _ in 0..3 {
            let now = shared.storage.clock().now();
            let mut best: Option<(i64, u8, LaneItem)> = None;
            for priority in (1..=MAX_PRIORITY).rev() {
                let bit = 1u16 << priority;
                if self.maybe.fetch_and(!bit, Ordering::Relaxed) & bit == 0 {
                    continue;
                }
                let Some(head) = shared
                    .storage
                    .next_lane_item(&shared.name, priority)
                    .await?
                else {
                    continue;
                };
                self.maybe.fetch_or(bit, Ordering::Relaxed);
                let score = aged_score(priority, head.stored, now, every);
                if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                    best = Some((score, priority, head));
                }
            }
            let Some((score, priority, head)) = best else {
                return Ok(None);
            };
            if let Some(plain) = shared.storage.oldest_plain_item(&shared.name).await? {
                if aged_score(0, plain.stored, now, every) > score {
                    return Ok(None);
                }
            }
            if let Some(msg) = self.claim_item(shared, head, priority).await? {
                return Ok(Some(msg));
            }
        }
        Ok(None)
    }

    /// Claims lane `item` of `priority`; `None` when another worker won it
    /// (or it was not a work item: then removed).
    async fn claim_item(
        &self,
        shared: &Shared,
        item: LaneItem,
        priority: u8,
    ) -> crate::Result<Option<jetstream::Message>> {
        let id = match WorkItem::decode(&item.payload) {
            Ok(w) => w.job,
            Err(e) => {
                // a consumer would terminate it; here it would stop the lane
                crate::metrics::item_corrupt(&shared.name);
                tracing::error!(queue = %shared.name, subject = %item.subject, error = %e,
                    "a priority lane holds a message that is not a work item; removing it");
                shared
                    .storage
                    .delete_item_at(&shared.name, item.seq)
                    .await?;
                return Ok(None);
            }
        };
        let Some(backup) = shared
            .storage
            .claim_lane_item(&shared.name, &id, &item)
            .await?
        else {
            return Ok(None);
        };
        crate::metrics::priority_claimed(&shared.name, priority);
        Ok(Some(self.delivery(shared, item, backup, priority, &id)))
    }

    /// Claims the oldest item of lane `priority`, trying the next one when
    /// another worker won it; `None` once the lane is empty.
    async fn claim_from(
        &self,
        shared: &Shared,
        priority: u8,
    ) -> crate::Result<Option<jetstream::Message>> {
        loop {
            let Some(item) = shared
                .storage
                .next_lane_item(&shared.name, priority)
                .await?
            else {
                return Ok(None);
            };
            if let Some(msg) = self.claim_item(shared, item, priority).await? {
                return Ok(Some(msg));
            }
        }
    }

    /// The claimed `item` as a message whose acks reach [`follow`].
    fn delivery(
        &self,
        shared: &Shared,
        item: LaneItem,
        backup: u64,
        priority: u8,
        id: &str,
    ) -> jetstream::Message {
        let headers = item.traceparent.map(|tp| {
            let mut h = async_nats::HeaderMap::new();
            h.insert(crate::storage::TRACEPARENT_HEADER, tp.as_str());
            h
        });
        jetstream::Message {
            message: async_nats::Message {
                subject: item.subject.into(),
                reply: Some(format!("{}.{backup}.{priority}.{id}", self.prefix).into()),
                payload: item.payload.into(),
                headers,
                status: None,
                description: None,
                length: 0,
            },
            context: shared.storage.jetstream().clone(),
        }
    }
}

/// Subscribes to the lane notices and the claim inbox and follows them
/// until `stop`; `None` (logged) when a subscription fails: priority
/// items then run in arrival order, as a Go worker runs them.
pub(super) async fn start(
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Option<(Arc<Lanes>, tokio::task::JoinHandle<()>)> {
    let subscribed = async {
        let notices = shared.storage.lane_notices(&shared.name).await?;
        let (prefix, acks) = shared.storage.claim_inbox().await?;
        Ok::<_, crate::Error>((notices, prefix, acks))
    }
    .await;
    match subscribed {
        Ok((notices, prefix, acks)) => {
            let lanes = Arc::new(Lanes::new(prefix));
            let follower = tokio::spawn(follow(shared, lanes.clone(), notices, acks, stop));
            Some((lanes, follower))
        }
        Err(e) => {
            tracing::warn!(queue = %shared.name, error = %e,
                "this worker does not serve priority lanes; their items run in arrival order");
            None
        }
    }
}

/// A waiting item's rank under aging: its priority, plus one per `every`
/// it has waited (server time).
fn aged_score(priority: u8, stored: OffsetDateTime, now: OffsetDateTime, every: Duration) -> i64 {
    let waited = (now - stored).whole_milliseconds().max(0);
    let every = every.as_millis().max(1) as i128;
    i64::from(priority) + (waited / every).min(i128::from(i32::MAX)) as i64
}

const ALL: u16 = ((1u16 << (MAX_PRIORITY + 1)) - 1) & !1;

/// Follows the lane notices (marking their lanes), marks every lane again
/// every [`LOOK_EVERY`], and carries out claimed items' acknowledgements,
/// until `stop`.
async fn follow(
    shared: Arc<Shared>,
    lanes: Arc<Lanes>,
    mut notices: async_nats::Subscriber,
    mut acks: async_nats::Subscriber,
    stop: CancellationToken,
) {
    let mut look = tokio::time::interval(LOOK_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = look.tick() => { lanes.maybe.fetch_or(ALL, Ordering::Relaxed); }
            n = notices.next() => match n {
                Some(n) => lanes.mark(n.payload.first().copied().unwrap_or(0)),
                None => break,
            },
            a = acks.next() => match a {
                Some(a) => {
                    let shared = shared.clone();
                    let prefix = lanes.prefix.clone();
                    tokio::spawn(async move { acknowledge(&shared, &prefix, a).await });
                }
                None => break,
            },
        }
    }
}

/// Carries out one acknowledgement of a claimed item (see the module docs).
async fn acknowledge(shared: &Shared, prefix: &str, ack: async_nats::Message) {
    let Some((backup, priority, id)) = ack
        .subject
        .strip_prefix(prefix)
        .and_then(|rest| parse_claim(rest.trim_start_matches('.')))
    else {
        return;
    };
    let body = ack.payload.as_ref();
    let result = if body.starts_with(b"+ACK") || body.starts_with(b"+TERM") {
        shared.storage.delete_item_at(&shared.name, backup).await
    } else if body == b"-NAK" {
        back_to_lane(shared, backup, priority, id).await
    } else {
        Ok(())
    };
    if let Err(e) = result {
        static ACK: Throttle = Throttle::new(Duration::from_secs(10));
        warn_throttled!(ACK, task = %id, error = %e,
            "acknowledging a claimed priority item failed; its backup item is delivered later");
    }
    if let Some(reply) = ack.reply {
        shared.storage.answer(reply).await;
    }
}

/// Puts a handed-back claimed item back in its lane, then removes its backup.
async fn back_to_lane(shared: &Shared, backup: u64, priority: u8, id: &str) -> crate::Result<()> {
    let sent = shared
        .storage
        .publish_item_at(&shared.name, id, priority, None, false, None)
        .await;
    let what = || format!("handing back the priority item of task {id}");
    match sent {
        Ok(ack) => {
            ack.await.map_err(|e| crate::error::nats(what(), e))?;
        }
        Err(e) => return Err(crate::error::nats(what(), e).into()),
    }
    shared.storage.delete_item_at(&shared.name, backup).await
}

/// The backup's sequence, the priority and the task id of a claimed item's
/// ack subject (after the prefix): `<seq>.<priority>.<id>`.
fn parse_claim(rest: &str) -> Option<(u64, u8, &str)> {
    let mut parts = rest.splitn(3, '.');
    let seq = parts.next()?.parse().ok()?;
    let priority = parts.next()?.parse().ok()?;
    let id = parts
        .next()
        .filter(|id| !id.is_empty() && !id.contains('.'))?;
    Some((seq, priority, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lane_is_marked_and_none_is_lane_zero() {
        assert_eq!(ALL.count_ones(), u32::from(MAX_PRIORITY));
        assert_eq!(ALL & 1, 0);
        let lanes = Lanes::new("_INBOX.x".into());
        assert!(lanes.may_hold());
        lanes.maybe.store(0, Ordering::Relaxed);
        lanes.mark(0);
        lanes.mark(10);
        assert!(!lanes.may_hold());
        lanes.mark(9);
        assert!(lanes.may_hold());
    }

    #[test]
    fn waiting_raises_the_rank_one_level_per_period() {
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1);
        let every = Duration::from_secs(30);
        assert_eq!(aged_score(5, t0, t0, every), 5);
        assert_eq!(
            aged_score(0, t0, t0 + time::Duration::seconds(29), every),
            0
        );
        assert_eq!(
            aged_score(0, t0, t0 + time::Duration::seconds(95), every),
            3
        );
        // a clock behind the store's never lowers it
        assert_eq!(
            aged_score(2, t0, t0 - time::Duration::seconds(60), every),
            2
        );
    }

    #[test]
    fn claim_subjects_parse() {
        assert_eq!(parse_claim("12.9.abc"), Some((12, 9, "abc")));
        assert_eq!(parse_claim("x.9.abc"), None);
        assert_eq!(parse_claim("12.9."), None);
        assert_eq!(parse_claim("12.9.a.b"), None);
        assert_eq!(parse_claim("12"), None);
    }
}
