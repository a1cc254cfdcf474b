//! Lanes, the worker's side (docs/processing.md §2.21, §2.24): which
//! lanes may hold items, claiming an item out of arrival order for a free
//! slot (the highest priority first, then the key shards in turn with the
//! plain queue); `inbox.rs` follows the lane notices and carries out the
//! claimed items' acknowledgements; `backup.rs` keeps a claim's backup
//! until something else protects its task.
//!
//! A claimed item is walked forward like any delivery
//! ([`process`](super::delivery::process)): it is handed over as a message
//! whose reply subject is this worker's claim inbox, so its
//! acknowledgements arrive at `inbox.rs` instead of at a consumer.

mod backup;
mod inbox;
pub(super) use inbox::start;

use super::keys;
use super::Shared;
use crate::queue::lane::{Lane, KEY_SHARDS};
use crate::storage::{LaneClaim, LaneItem, WorkItem};
use crate::task::MAX_PRIORITY;
use crate::throttle::{warn_throttled, Throttle};
use async_nats::jetstream;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

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

/// How long the slots of a worker pull after a claim found nothing to
/// claim (a notice ends it early).
pub(crate) const PULL_SPELL: Duration = Duration::from_millis(50);

/// Items a worker remembers passing over ([`Lanes::defer`]).
const DEFERRED_MAX: usize = 10_000;

/// The longest a worker whose lanes hold only items of busy keys goes
/// without a pull: the `WORKERS` consumer alone hands out what is in no
/// lane (a claim's backup whose worker died before its try started, items
/// Go published), so waiting on busy keys must not keep them waiting too.
pub(crate) const PULL_AT_LEAST_EVERY: Duration = Duration::from_secs(2);

/// What a free slot does next.
pub(crate) enum Claim {
    /// Runs this claimed item.
    Item(Box<jetstream::Message>),
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
    /// Items (by task id) this worker passes over until the instant given:
    /// claimed, then handed back with a delay (their task was running
    /// elsewhere, or had to wait). Only the item waits, not its lane.
    deferred: Mutex<HashMap<String, Instant>>,
    /// The keys of the claimed items in flight, by backup sequence.
    keys: Mutex<HashMap<u64, Option<String>>>,
    /// Per lane, the stream sequence this worker's next look starts at,
    /// held while one claim looks: its concurrent claims take a lane's
    /// items one after another instead of racing for its oldest.
    cursors: Mutex<HashMap<Lane, Arc<tokio::sync::Mutex<u64>>>>,
    /// Until when free slots pull (`false`) or wait (`true`) instead of
    /// claiming, after a claim found nothing to claim.
    hold_off: Mutex<Option<(Instant, bool)>>,
    /// When this worker's slots were last left to a pull.
    last_pull: Mutex<Instant>,
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

const SHARDS: u32 = ((1u32 << KEY_SHARDS) - 1) << 16;

impl Lanes {
    /// Lanes acknowledged through the claim inbox `prefix`, none marked
    /// until [`follow`] has looked at them.
    pub(super) fn new(prefix: String) -> Lanes {
        Lanes {
            maybe: AtomicU32::new(0),
            turn: AtomicUsize::new(0),
            skip: Mutex::new(HashMap::new()),
            deferred: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            cursors: Mutex::new(HashMap::new()),
            hold_off: Mutex::new(None),
            last_pull: Mutex::new(Instant::now()),
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

    /// A notice: marks its lane and ends a hold-off, so the next free slot
    /// claims.
    fn noticed(&self, lane: Lane) {
        self.mark(lane);
        *self.hold_off.lock().expect("hold-off lock") = None;
    }

    fn is_marked(&self, lane: Lane) -> bool {
        self.maybe.load(Ordering::Relaxed) & bit(lane) != 0
    }

    fn unmark(&self, lane: Lane) {
        self.maybe.fetch_and(!bit(lane), Ordering::Relaxed);
    }

    /// Whether free slots should pull (`Some(false)`) or wait
    /// (`Some(true)`) instead of claiming, for a while after a claim found
    /// nothing to claim.
    pub(super) fn held_off(&self) -> Option<bool> {
        let mut h = self.hold_off.lock().expect("hold-off lock");
        match *h {
            Some((until, wait)) if until > Instant::now() => Some(wait),
            Some(_) => {
                *h = None;
                None
            }
            None => None,
        }
    }

    /// Free slots pull (`wait` false) or wait for `d` instead of claiming.
    pub(super) fn hold_off_for(&self, d: Duration, wait: bool) {
        if !wait {
            *self.last_pull.lock().expect("last-pull lock") = Instant::now();
        }
        *self.hold_off.lock().expect("hold-off lock") = Some((Instant::now() + d, wait));
    }

    /// Whether this worker's slots were left to a pull within `d`.
    fn pulled_within(&self, d: Duration) -> bool {
        self.last_pull.lock().expect("last-pull lock").elapsed() < d
    }

    /// The oldest item of `lane` past this worker's cursor, moving the
    /// cursor past it. An empty lane is looked at once more from its
    /// start after its mark is cleared, so an item whose notice came
    /// meanwhile is not missed; `None` then, and the lane stays unmarked.
    async fn next_item(&self, shared: &Shared, lane: Lane) -> crate::Result<Option<LaneItem>> {
        let cursor = self
            .cursors
            .lock()
            .expect("cursors lock")
            .entry(lane)
            .or_default()
            .clone();
        let mut from = cursor.lock().await;
        let mut found = shared
            .storage
            .next_lane_item(&shared.name, lane, *from)
            .await?;
        if found.is_none() {
            self.unmark(lane);
            found = shared.storage.next_lane_item(&shared.name, lane, 0).await?;
            if found.is_some() {
                self.mark(lane);
            }
        }
        *from = found.as_ref().map_or(0, |item| item.seq + 1);
        Ok(found)
    }

    /// Makes the next look at `lane` start from its oldest item again (its
    /// oldest was passed over: it stays first).
    fn rewind(&self, lane: Lane) {
        if let Some(c) = self.cursors.lock().expect("cursors lock").get(&lane) {
            if let Ok(mut from) = c.try_lock() {
                *from = 0;
            }
        }
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

    /// Passes the item of task `id` over for `wait` (a `-NAK` with a
    /// delay). The entries are few (one per handed-back claim) and go once
    /// due; past [`DEFERRED_MAX`] the due ones are dropped, then the
    /// soonest (an item passed over too early is claimed and handed back
    /// again, nothing worse).
    fn defer(&self, id: &str, wait: Duration) {
        let mut deferred = self.deferred.lock().expect("deferred lock");
        if deferred.len() >= DEFERRED_MAX {
            let now = Instant::now();
            deferred.retain(|_, until| *until > now);
            if deferred.len() >= DEFERRED_MAX {
                if let Some(soonest) = deferred
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(k, _)| k.clone())
                {
                    deferred.remove(&soonest);
                }
            }
        }
        deferred.insert(id.to_string(), Instant::now() + wait);
    }

    /// Whether `item` is passed over for now ([`Lanes::defer`]).
    fn is_deferred(&self, item: &LaneItem) -> bool {
        let Some(id) = item.subject.rsplit('.').next() else {
            return false;
        };
        let mut deferred = self.deferred.lock().expect("deferred lock");
        match deferred.get(id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                deferred.remove(id);
                false
            }
            None => false,
        }
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
            Ok(Some(msg)) => return Claim::Item(Box::new(msg)),
            Ok(None) => self.claim_keyed(shared).await,
            Err(e) => Err(e),
        };
        match claimed {
            Ok(Claim::Wait) if !self.pulled_within(PULL_AT_LEAST_EVERY) => {
                tracing::debug!(queue = %shared.name,
                    "the lanes hold only busy keys' items; pulling once meanwhile");
                Claim::Pull
            }
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
            if self.skipped(lane) || !self.is_marked(lane) {
                continue;
            }
            if let Some(msg) = self.claim_from(shared, lane).await? {
                return Ok(Some(msg));
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
                if self.skipped(lane) || !self.is_marked(lane) {
                    continue;
                }
                let Some(head) = self.next_item(shared, lane).await? else {
                    continue;
                };
                if self.is_deferred(&head) {
                    continue;
                }
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
            tracing::trace!(queue = %shared.name, "no key shard holds items");
            return Ok(Claim::Pull);
        }
        // the turns: the marked shards, then the plain queue; each claim
        // starts one turn further and looks at every lane once from there
        // (claims in flight at once would otherwise take each other's turns)
        let mut busy = false;
        let mut lanes: Vec<Lane> = Vec::with_capacity(usize::from(KEY_SHARDS) + 1);
        for s in 0..KEY_SHARDS {
            let lane = Lane::Shard(s);
            if !self.is_marked(lane) {
                continue;
            }
            if self.skipped(lane) {
                busy = true;
                continue;
            }
            lanes.push(lane);
        }
        lanes.push(Lane::Plain);
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        for step in 0..lanes.len() {
            let lane = lanes[(first + step) % lanes.len()];
            // a head another worker wins, or one passed over, is followed
            // by the next item; the first one passed over, met again, ends
            // the lane's turn
            let mut passed: Option<u64> = None;
            while let Some(head) = self.next_item(shared, lane).await? {
                if self.is_deferred(&head) {
                    if passed == Some(head.seq) {
                        break;
                    }
                    passed.get_or_insert(head.seq);
                    continue;
                }
                if let Some(key) = &head.key {
                    if !keys::may_start(shared, key).await {
                        // its key's item stays first in the shard
                        self.rewind(lane);
                        self.skip_for(lane, KEY_BUSY_SKIP);
                        busy = true;
                        break;
                    }
                }
                if let Some(msg) = self.claim_item(shared, head, lane).await? {
                    return Ok(Claim::Item(Box::new(msg)));
                }
            }
        }
        tracing::debug!(queue = %shared.name, busy, marked = self.maybe.load(Ordering::Relaxed),
            "no lane item to claim; pulling or waiting a moment");
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
        let backup = match shared
            .storage
            .claim_lane_item(&shared.name, &id, &item)
            .await?
        {
            LaneClaim::Won(backup) => backup,
            LaneClaim::Lost(backup) => {
                backup::after_lost_claim(shared, lane, item.key.as_deref(), &id, backup).await;
                return Ok(None);
            }
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
        let mut first_passed: Option<u64> = None;
        loop {
            let Some(item) = self.next_item(shared, lane).await? else {
                return Ok(None);
            };
            if self.is_deferred(&item) {
                // every item left is passed over once it comes round again
                if first_passed == Some(item.seq) {
                    return Ok(None);
                }
                first_passed.get_or_insert(item.seq);
                continue;
            }
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

/// A waiting item's rank under aging: its priority, plus one per `every`
/// it has waited (server time).
fn aged_score(priority: u8, stored: OffsetDateTime, now: OffsetDateTime, every: Duration) -> i64 {
    let waited = (now - stored).whole_milliseconds().max(0);
    let every = every.as_millis().max(1) as i128;
    i64::from(priority) + (waited / every).min(i128::from(i32::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIORITIES: u32 = ((1u32 << (MAX_PRIORITY + 1)) - 1) & !1;

    #[test]
    fn every_lane_has_its_own_bit_and_plain_none() {
        assert_eq!(PRIORITIES.count_ones(), u32::from(MAX_PRIORITY));
        assert_eq!(SHARDS.count_ones(), u32::from(KEY_SHARDS));
        assert_eq!(PRIORITIES & SHARDS, 0);
        assert_eq!(bit(Lane::Plain), 0);
        let lanes = Lanes::new("_INBOX.x".into());
        assert!(!lanes.may_hold());
        lanes.mark(Lane::Plain);
        assert!(!lanes.may_hold());
        lanes.mark(Lane::Shard(15));
        assert!(lanes.may_hold());
        assert!(lanes.is_marked(Lane::Shard(15)));
        lanes.unmark(Lane::Shard(15));
        assert!(!lanes.is_marked(Lane::Shard(15)));
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

    #[tokio::test]
    async fn waiting_on_busy_keys_still_pulls_every_so_often() {
        tokio::time::pause();
        let lanes = Lanes::new("_INBOX.x".into());
        assert!(lanes.pulled_within(PULL_AT_LEAST_EVERY));
        tokio::time::advance(PULL_AT_LEAST_EVERY).await;
        assert!(!lanes.pulled_within(PULL_AT_LEAST_EVERY));
        // a wait is not a pull
        lanes.hold_off_for(KEY_BUSY_SKIP, true);
        assert!(!lanes.pulled_within(PULL_AT_LEAST_EVERY));
        lanes.hold_off_for(PULL_SPELL, false);
        assert!(lanes.pulled_within(PULL_AT_LEAST_EVERY));
    }

    fn item(subject: &str) -> LaneItem {
        LaneItem {
            subject: subject.into(),
            seq: 1,
            payload: Vec::new(),
            traceparent: None,
            key: None,
            stored: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn a_deferred_item_is_passed_over_until_its_time_and_only_it() {
        tokio::time::pause();
        let lanes = Lanes::new("_INBOX.x".into());
        lanes.defer("A1", Duration::from_secs(3600));
        lanes.defer("B2", Duration::from_millis(200));
        assert!(lanes.is_deferred(&item("CHORIA_AJ.Q.q.K3.A1")));
        assert!(lanes.is_deferred(&item("CHORIA_AJ.Q.q.K3.B2")));
        // the lane and its other items are not
        assert!(!lanes.skipped(Lane::Shard(3)));
        assert!(!lanes.is_deferred(&item("CHORIA_AJ.Q.q.K3.C3")));
        tokio::time::advance(Duration::from_millis(201)).await;
        assert!(!lanes.is_deferred(&item("CHORIA_AJ.Q.q.K3.B2")));
        assert!(lanes.is_deferred(&item("CHORIA_AJ.Q.q.K3.A1")));
    }

    #[test]
    fn the_deferred_items_are_bounded() {
        let lanes = Lanes::new("_INBOX.x".into());
        for i in 0..DEFERRED_MAX + 5 {
            lanes.defer(&format!("T{i}"), Duration::from_secs(60 + i as u64));
        }
        assert_eq!(lanes.deferred.lock().unwrap().len(), DEFERRED_MAX);
        // the latest is kept
        assert!(lanes.is_deferred(&item(&format!("CHORIA_AJ.Q.q.P1.T{}", DEFERRED_MAX + 4))));
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
}
