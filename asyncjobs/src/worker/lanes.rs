//! Lanes, the worker's side (docs/processing.md §2.21, §2.24): which
//! lanes may hold items, claiming an item out of arrival order for a free
//! slot (the highest priority first, then the key shards in turn with the
//! plain queue), and acknowledging a claimed item.
//!
//! A claimed item is walked forward like any delivery
//! ([`process`](super::delivery::process)): it is handed over as a message
//! whose reply subject is this worker's claim inbox, so its
//! acknowledgements arrive here instead of at a consumer. `+ACK` and
//! `+TERM` delete the claim's backup item (`storage/lanes.rs`); `-NAK`
//! puts the item back in its lane and keeps this worker off that lane for
//! the NAK's delay (waits of a second or more are held instead and return
//! to the lane when due, `outcome::wait`).

use super::keys;
use super::Shared;
use crate::queue::lane::{Lane, KEY_SHARDS};
use crate::storage::{LaneItem, WorkItem};
use crate::task::MAX_PRIORITY;
use crate::throttle::{warn_throttled, Throttle};
use async_nats::jetstream;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often every lane is looked at again, for items whose notice this
/// worker missed (enqueued before it started, or a notice lost): the
/// longest an item can wait in its lane while this worker has free slots
/// and heard nothing.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(2);

/// How long a key shard whose oldest item's key is at its limit is passed
/// over by this worker (a finished task of the key does not shorten it),
/// and how long a worker whose lanes hold only such items waits before
/// looking again.
pub(crate) const KEY_BUSY_SKIP: Duration = Duration::from_millis(200);

/// What a free slot does next.
pub(crate) enum Claim {
    /// Runs this claimed item.
    Item(jetstream::Message),
    /// Pulls from the `WORKERS` consumer (arrival order).
    Pull,
    /// Waits [`KEY_BUSY_SKIP`]: the lanes hold items, but every key
    /// among them is at its limit (a pull would only be handed them).
    Wait,
}

/// Which lanes may hold items, whose turn it is, and where claimed items'
/// acks go.
pub(crate) struct Lanes {
    /// Bit [`bit`] of a lane set: it may hold an item.
    maybe: AtomicU32,
    /// The next turn among the key shards and the plain queue (index
    /// [`KEY_SHARDS`] is the plain queue's: a pull).
    turn: AtomicUsize,
    /// Lanes this worker passes over until the instant given.
    skip: Mutex<HashMap<Lane, Instant>>,
    /// The keys of the claimed items in flight, by backup sequence.
    keys: Mutex<HashMap<u64, Option<String>>>,
    /// The claim inbox prefix.
    prefix: String,
}

/// The bit of `lane` in [`Lanes::maybe`]: 1–9 priorities, 16–31 shards.
fn bit(lane: Lane) -> u32 {
    match lane {
        Lane::Plain => 0,
        Lane::Priority(p) => 1 << p,
        Lane::Shard(s) => 1 << (16 + u32::from(s)),
    }
}

const PRIORITIES: u32 = ((1u32 << (MAX_PRIORITY + 1)) - 1) & !1;
const SHARDS: u32 = ((1u32 << KEY_SHARDS) - 1) << 16;
const ALL: u32 = PRIORITIES | SHARDS;

impl Lanes {
    /// Lanes acknowledged through the claim inbox `prefix`, each looked at
    /// before the first pull.
    pub(super) fn new(prefix: String) -> Lanes {
        Lanes {
            maybe: AtomicU32::new(ALL),
            turn: AtomicUsize::new(0),
            skip: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            prefix,
        }
    }

    /// Whether any lane may hold an item (one atomic read: the cost to a
    /// queue without priorities or keys).
    pub(super) fn may_hold(&self) -> bool {
        self.maybe.load(Ordering::Relaxed) != 0
    }

    fn mark(&self, lane: Lane) {
        self.maybe.fetch_or(bit(lane), Ordering::Relaxed);
    }

    /// Clears `lane`'s bit, saying whether it was set (cleared before
    /// looking: a notice meanwhile marks it again).
    fn take_mark(&self, lane: Lane) -> bool {
        let b = bit(lane);
        self.maybe.fetch_and(!b, Ordering::Relaxed) & b != 0
    }

    fn skipped(&self, lane: Lane) -> bool {
        let mut skip = self.skip.lock().expect("skip lock");
        match skip.get(&lane) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                skip.remove(&lane);
                false
            }
            None => false,
        }
    }

    fn skip_for(&self, lane: Lane, wait: Duration) {
        self.skip
            .lock()
            .expect("skip lock")
            .insert(lane, Instant::now() + wait);
    }

    /// Claims an item for a free slot, as a message for
    /// [`process`](super::delivery::process): the oldest of the highest
    /// priority lane holding one (strictly, or by age under the queue's
    /// aging), else the oldest of the next key shard in turn whose key may
    /// start. `None` when it is the plain queue's turn, no lane holds a
    /// startable item, the queue is paused, or reading the lanes failed:
    /// the slot then pulls.
    pub(super) async fn claim(&self, shared: &Shared) -> Claim {
        if shared.is_paused() {
            return Claim::Pull;
        }
        let claimed = match shared.queue().priority_aging {
            Some(every) => self.claim_aged(shared, every).await,
            None => self.claim_strict(shared).await,
        };
        let claimed = match claimed {
            Ok(Some(msg)) => return Claim::Item(msg),
            Ok(None) => self.claim_keyed(shared).await,
            Err(e) => Err(e),
        };
        match claimed {
            Ok(claim) => claim,
            Err(e) => {
                static CLAIM: Throttle = Throttle::new(Duration::from_secs(10));
                warn_throttled!(CLAIM, queue = %shared.name, error = %e,
                    "claiming an item out of arrival order failed; pulling in arrival order meanwhile");
                Claim::Pull
            }
        }
    }

    /// The oldest item of the highest priority lane holding one.
    async fn claim_strict(&self, shared: &Shared) -> crate::Result<Option<jetstream::Message>> {
        for p in (1..=MAX_PRIORITY).rev() {
            let lane = Lane::Priority(p);
            if self.skipped(lane) || !self.take_mark(lane) {
                continue;
            }
            let claimed = self.claim_from(shared, lane).await;
            if !matches!(claimed, Ok(None)) {
                self.mark(lane);
                return claimed;
            }
        }
        Ok(None)
    }

    /// Claims under aging (docs/processing.md §2.21): the head of every
    /// priority lane that may hold items and the oldest plain item are
    /// compared by priority plus one per `every` waited; the plain item
    /// winning (or no lane holding any) leaves the slot to the key shards
    /// and a pull. A head another worker wins meanwhile is looked at
    /// again, a few times at most.
    async fn claim_aged(
        &self,
        shared: &Shared,
        every: Duration,
    ) -> crate::Result<Option<jetstream::Message>> {
        for _ in 0..3 {
            let now = shared.storage.clock().now();
            let mut best: Option<(i64, Lane, LaneItem)> = None;
            for p in (1..=MAX_PRIORITY).rev() {
                let lane = Lane::Priority(p);
                if self.skipped(lane) || !self.take_mark(lane) {
                    continue;
                }
                let Some(head) = shared.storage.next_lane_item(&shared.name, lane).await? else {
                    continue;
                };
                self.mark(lane);
                let score = aged_score(p, head.stored, now, every);
                if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                    best = Some((score, lane, head));
                }
            }
            let Some((score, lane, head)) = best else {
                return Ok(None);
            };
            if let Some(plain) = shared.storage.oldest_plain_item(&shared.name).await? {
                if aged_score(0, plain.stored, now, every) > score {
                    return Ok(None);
                }
            }
            if let Some(msg) = self.claim_item(shared, head, lane).await? {
                return Ok(Some(msg));
            }
        }
        Ok(None)
    }

    /// Takes turns between the key shards and the plain queue
    /// (docs/processing.md §2.24): the oldest item of the next shard in
    /// turn whose key may start, or on the plain queue's turn its oldest
    /// item (claimed too: a pull would be handed keyed items in arrival
    /// order). A pull once no shard holds items; a wait when they hold
    /// only items whose keys are at their limits.
    async fn claim_keyed(&self, shared: &Shared) -> crate::Result<Claim> {
        if self.maybe.load(Ordering::Relaxed) & SHARDS == 0 {
            return Ok(Claim::Pull);
        }
        let turns = usize::from(KEY_SHARDS) + 1;
        let mut busy = false;
        for _ in 0..turns {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed) % turns;
            if turn == usize::from(KEY_SHARDS) {
                if let Some(plain) = shared.storage.oldest_plain_item(&shared.name).await? {
                    if let Some(msg) = self.claim_item(shared, plain, Lane::Plain).await? {
                        return Ok(Claim::Item(msg));
                    }
                }
                continue;
            }
            let lane = Lane::Shard(turn as u8);
            if self.skipped(lane) {
                busy = true;
                continue;
            }
            if !self.take_mark(lane) {
                continue;
            }
            let Some(head) = shared.storage.next_lane_item(&shared.name, lane).await? else {
                continue;
            };
            self.mark(lane);
            if let Some(key) = &head.key {
                if !keys::may_start(shared, key).await {
                    self.skip_for(lane, KEY_BUSY_SKIP);
                    busy = true;
                    continue;
                }
            }
            if let Some(msg) = self.claim_item(shared, head, lane).await? {
                return Ok(Claim::Item(msg));
            }
        }
        Ok(if busy { Claim::Wait } else { Claim::Pull })
    }

    /// Claims lane `item`; `None` when another worker won it (or it was not
    /// a work item: then removed).
    async fn claim_item(
        &self,
        shared: &Shared,
        item: LaneItem,
        lane: Lane,
    ) -> crate::Result<Option<jetstream::Message>> {
        let id = match WorkItem::decode(&item.payload) {
            Ok(w) => w.job,
            Err(e) => {
                // a consumer would terminate it; here it would stop the lane
                crate::metrics::item_corrupt(&shared.name);
                tracing::error!(queue = %shared.name, subject = %item.subject, error = %e,
                    "a lane holds a message that is not a work item; removing it");
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
        crate::metrics::lane_claimed(&shared.name, lane);
        Ok(Some(self.delivery(shared, item, backup, lane, &id)))
    }

    /// Claims the oldest item of `lane`, trying the next one when another
    /// worker won it; `None` once the lane is empty.
    async fn claim_from(
        &self,
        shared: &Shared,
        lane: Lane,
    ) -> crate::Result<Option<jetstream::Message>> {
        loop {
            let Some(item) = shared.storage.next_lane_item(&shared.name, lane).await? else {
                return Ok(None);
            };
            if let Some(msg) = self.claim_item(shared, item, lane).await? {
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
        lane: Lane,
        id: &str,
    ) -> jetstream::Message {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(tp) = &item.traceparent {
            headers.insert(crate::storage::TRACEPARENT_HEADER, tp.as_str());
        }
        if let Some(key) = &item.key {
            headers.insert(crate::queue::lane::KEY_HEADER, key.as_str());
        }
        self.keys
            .lock()
            .expect("keys lock")
            .insert(backup, item.key.clone());
        jetstream::Message {
            message: async_nats::Message {
                subject: item.subject.into(),
                reply: Some(format!("{}.{backup}.{}.{id}", self.prefix, lane.notice()).into()),
                payload: item.payload.into(),
                headers: Some(headers),
                status: None,
                description: None,
                length: 0,
            },
            context: shared.storage.jetstream().clone(),
        }
    }
}

/// Subscribes to the lane notices and the claim inbox and follows them
/// until `stop`; `None` (logged) when a subscription fails: lane items
/// then run in arrival order, as a Go worker runs them.
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
                "this worker does not serve lanes; their items run in arrival order");
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
                Some(n) => lanes.mark(Lane::from_notice(n.payload.first().copied().unwrap_or(0))),
                None => break,
            },
            a = acks.next() => match a {
                Some(a) => {
                    let shared = shared.clone();
                    let lanes = lanes.clone();
                    tokio::spawn(async move { acknowledge(&shared, &lanes, a).await });
                }
                None => break,
            },
        }
    }
}

/// Carries out one acknowledgement of a claimed item (see the module docs).
async fn acknowledge(shared: &Shared, lanes: &Lanes, ack: async_nats::Message) {
    let Some((backup, lane, id)) = ack
        .subject
        .strip_prefix(lanes.prefix.as_str())
        .and_then(|rest| parse_claim(rest.trim_start_matches('.')))
    else {
        return;
    };
    let body = ack.payload.as_ref();
    let result = if body.starts_with(b"+ACK") || body.starts_with(b"+TERM") {
        lanes.keys.lock().expect("keys lock").remove(&backup);
        shared.storage.delete_item_at(&shared.name, backup).await
    } else if body.starts_with(b"-NAK") {
        let key = lanes
            .keys
            .lock()
            .expect("keys lock")
            .remove(&backup)
            .flatten();
        if let Some(delay) = nak_delay(body) {
            lanes.skip_for(lane, delay);
        }
        back_to_lane(shared, backup, lane, key.as_deref(), id).await
    } else {
        Ok(())
    };
    if let Err(e) = result {
        static ACK: Throttle = Throttle::new(Duration::from_secs(10));
        warn_throttled!(ACK, task = %id, error = %e,
            "acknowledging a claimed item failed; its backup item is delivered later");
    }
    if let Some(reply) = ack.reply {
        shared.storage.answer(reply).await;
    }
}

/// The delay of a `-NAK {"delay": <ns>}` body, `None` without one.
fn nak_delay(body: &[u8]) -> Option<Duration> {
    let json = body.strip_prefix(b"-NAK")?;
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    v["delay"].as_u64().map(Duration::from_nanos)
}

/// Puts a handed-back claimed item back in its lane, then removes its backup.
async fn back_to_lane(
    shared: &Shared,
    backup: u64,
    lane: Lane,
    key: Option<&str>,
    id: &str,
) -> crate::Result<()> {
    let sent = shared
        .storage
        .publish_item_at(&shared.name, id, lane, key, None, false, None)
        .await;
    let what = || format!("handing back the claimed item of task {id}");
    match sent {
        Ok(ack) => {
            ack.await.map_err(|e| crate::error::nats(what(), e))?;
        }
        Err(e) => return Err(crate::error::nats(what(), e).into()),
    }
    shared.storage.delete_item_at(&shared.name, backup).await
}

/// The backup's sequence, the lane and the task id of a claimed item's
/// ack subject (after the prefix): `<seq>.<lane notice>.<id>`.
fn parse_claim(rest: &str) -> Option<(u64, Lane, &str)> {
    let mut parts = rest.splitn(3, '.');
    let seq = parts.next()?.parse().ok()?;
    let lane = Lane::from_notice(parts.next()?.parse().ok()?);
    let id = parts
        .next()
        .filter(|id| !id.is_empty() && !id.contains('.'))?;
    Some((seq, lane, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lane_has_its_own_bit_and_plain_none() {
        assert_eq!(PRIORITIES.count_ones(), u32::from(MAX_PRIORITY));
        assert_eq!(SHARDS.count_ones(), u32::from(KEY_SHARDS));
        assert_eq!(PRIORITIES & SHARDS, 0);
        assert_eq!(bit(Lane::Plain), 0);
        let lanes = Lanes::new("_INBOX.x".into());
        assert!(lanes.may_hold());
        lanes.maybe.store(0, Ordering::Relaxed);
        lanes.mark(Lane::Plain);
        assert!(!lanes.may_hold());
        lanes.mark(Lane::Shard(15));
        assert!(lanes.may_hold());
        assert!(lanes.take_mark(Lane::Shard(15)));
        assert!(!lanes.take_mark(Lane::Shard(15)));
    }

    #[tokio::test]
    async fn a_skipped_lane_is_passed_over_until_its_time() {
        tokio::time::pause();
        let lanes = Lanes::new("_INBOX.x".into());
        lanes.skip_for(Lane::Shard(2), Duration::from_millis(200));
        assert!(lanes.skipped(Lane::Shard(2)));
        assert!(!lanes.skipped(Lane::Shard(3)));
        tokio::time::advance(Duration::from_millis(201)).await;
        assert!(!lanes.skipped(Lane::Shard(2)));
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
    fn claim_subjects_and_nak_delays_parse() {
        assert_eq!(
            parse_claim("12.9.abc"),
            Some((12, Lane::Priority(9), "abc"))
        );
        assert_eq!(parse_claim("12.18.abc"), Some((12, Lane::Shard(2), "abc")));
        assert_eq!(parse_claim("x.9.abc"), None);
        assert_eq!(parse_claim("12.9."), None);
        assert_eq!(parse_claim("12.9.a.b"), None);
        assert_eq!(parse_claim("12"), None);
        assert_eq!(
            nak_delay(br#"-NAK {"delay": 1500000000}"#),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(nak_delay(b"-NAK"), None);
    }
}
