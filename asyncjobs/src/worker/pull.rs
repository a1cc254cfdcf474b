//! Pull requests on the `WORKERS` consumer, sized to free concurrency slots.
//!
//! One subscription (`<inbox>.*`) receives the items of every pull request.
//! Each request adds the permits it was sized for to a reserve; every item
//! takes one. JetStream delivers items under their stream subject, so an
//! item cannot be matched to its request, but the status that ends a
//! request (408 at expiry, 409) is sent to the request's own reply subject
//! and says how many items it did not deliver (`Nats-Pending-Messages`):
//! exactly that many permits are returned. A request never answered by its
//! expiry plus a margin (lost in a server restart) returns its estimate.

use async_nats::StatusCode;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// How long the server holds one pull request.
pub(crate) const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// Extra time before an unanswered request's permits are reclaimed locally.
const LOCAL_MARGIN: Duration = Duration::from_secs(3);

struct Request {
    remaining: usize,
    deadline: Instant,
    _slot: OwnedSemaphorePermit,
}

/// The permit accounting of a [`Puller`], apart from its connection: the
/// reserve of permits for items still to arrive and the requests in flight.
#[derive(Default)]
struct Accounting {
    reserve: Vec<OwnedSemaphorePermit>,
    requests: HashMap<u64, Request>,
    order: VecDeque<u64>,
    next_id: u64,
    /// Why the last request was refused because the consumer or its
    /// stream is gone (503 no responders, 409 consumer deleted); cleared
    /// by the next sign of a working consumer.
    unavailable: Option<String>,
    /// An answer that ended a request without serving it for a reason
    /// other than its expiry (a push consumer named `WORKERS`, a limit
    /// another tool set on the consumer): asking again at once would loop.
    unexpected: Option<String>,
    /// A request was served (an item, or held until it expired) since the
    /// last refusal.
    served: bool,
}

impl Accounting {
    /// Records a request for as many items as `permits` holds, holding its
    /// pull `slot` until it ends; returns the request's id.
    fn reserve(
        &mut self,
        permits: Vec<OwnedSemaphorePermit>,
        slot: OwnedSemaphorePermit,
        deadline: Instant,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let batch = permits.len();
        self.reserve.extend(permits);
        self.requests.insert(
            id,
            Request {
                remaining: batch,
                deadline,
                _slot: slot,
            },
        );
        self.order.push_back(id);
        id
    }

    /// Ends request `id`, returning `undelivered` permits from the reserve
    /// (`None`: as many as it still expects).
    fn end(&mut self, id: u64, undelivered: Option<usize>) {
        if let Some(r) = self.requests.remove(&id) {
            let n = undelivered.unwrap_or(r.remaining).min(self.reserve.len());
            self.reserve.truncate(self.reserve.len() - n);
        }
    }

    /// Classifies a message received on the inbox.
    fn take(&mut self, msg: &async_nats::Message) -> Delivery {
        match msg.status {
            Some(StatusCode::IDLE_HEARTBEAT) => Delivery::Control,
            Some(s) if s != StatusCode::OK => {
                let id = msg
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok());
                let undelivered = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pending-Messages"))
                    .and_then(|v| v.as_str().parse::<usize>().ok());
                tracing::trace!(status = %s, description = ?msg.description, ?undelivered, "pull request ended");
                if let Some(id) = id {
                    self.end(id, undelivered);
                }
                match unavailable(s, msg.description.as_deref()) {
                    Some(why) => {
                        self.unavailable = Some(why);
                        self.served = false;
                    }
                    // a request the server held until it expired: the consumer works
                    None if s == StatusCode::TIMEOUT => {
                        self.unavailable = None;
                        self.served = true;
                    }
                    None if s.as_u16() == 100 || s == StatusCode::NOT_FOUND => {}
                    None => {
                        self.unexpected = Some(format!(
                            "{} {}",
                            s.as_u16(),
                            msg.description.as_deref().unwrap_or_default()
                        ))
                    }
                }
                Delivery::Control
            }
            _ => {
                self.unavailable = None;
                self.served = true;
                match self.take_item() {
                    Some(permit) => Delivery::Item(permit),
                    None => Delivery::Stray,
                }
            }
        }
    }

    /// A permit from the reserve for an item (`None`: none reserved).
    fn take_item(&mut self) -> Option<OwnedSemaphorePermit> {
        let permit = self.reserve.pop()?;
        // attribute the item to the oldest request still expecting items
        // (it ends, freeing its pull slot, when it expects no more)
        while let Some(&front) = self.order.front() {
            match self.requests.get_mut(&front) {
                Some(r) if r.remaining > 1 => {
                    r.remaining -= 1;
                    break;
                }
                Some(_) => {
                    self.requests.remove(&front);
                    self.order.pop_front();
                    break;
                }
                None => {
                    self.order.pop_front();
                }
            }
        }
        Some(permit)
    }

    /// Returns the permits of requests whose deadline is at or before `now`.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.end(id, None);
        }
        let live: VecDeque<u64> = self
            .order
            .iter()
            .copied()
            .filter(|id| self.requests.contains_key(id))
            .collect();
        self.order = live;
        // No request outstanding means nothing can arrive for the reserve:
        // return whatever a misattributed item left there.
        if self.requests.is_empty() {
            self.reserve.clear();
        }
    }

    /// Ends every request.
    fn clear(&mut self) {
        self.requests.clear();
        self.order.clear();
        self.reserve.clear();
    }
}

/// What a message on the pull inbox means.
/// Why a status says the consumer cannot serve pull requests at all, as
/// opposed to a request that merely ended.
fn unavailable(status: StatusCode, description: Option<&str>) -> Option<String> {
    let description = description.unwrap_or_default();
    if status == StatusCode::NO_RESPONDERS {
        return Some("no responders: the consumer or its stream does not exist".into());
    }
    let lower = description.to_ascii_lowercase();
    if status == StatusCode::NOT_FOUND && lower.contains("consumer")
        || status == StatusCode::REQUEST_TERMINATED && lower.contains("deleted")
    {
        return Some(format!("{} {description}", status.as_u16()));
    }
    None
}

pub(crate) enum Delivery {
    /// A work item, with the permit it runs under.
    Item(OwnedSemaphorePermit),
    /// A work item nobody reserved a slot for: hand it back.
    Stray,
    /// A status message.
    Control,
}

pub(crate) struct Puller {
    nc: async_nats::Client,
    next_subject: String,
    inbox: String,
    state: Mutex<Accounting>,
}

impl Puller {
    /// A puller for `stream`'s `consumer`, and the subscription its items arrive on.
    pub(super) async fn new(
        nc: async_nats::Client,
        api: &crate::connect::JetStreamApi,
        stream: &str,
        consumer: &str,
    ) -> Result<(Puller, async_nats::Subscriber), async_nats::SubscribeError> {
        let inbox = nc.new_inbox();
        let sub = nc.subscribe(format!("{inbox}.*")).await?;
        Ok((
            Puller {
                next_subject: api.subject(&format!("CONSUMER.MSG.NEXT.{stream}.{consumer}")),
                nc,
                inbox,
                state: Mutex::new(Accounting::default()),
            },
            sub,
        ))
    }

    /// Asks for as many items as `permits` holds, for at most `expires`
    /// ([`PULL_EXPIRES`] but under a rate limit, whose granted starts must
    /// not wait long: docs/processing.md §2.22).
    pub(super) async fn request(
        &self,
        permits: Vec<OwnedSemaphorePermit>,
        slot: OwnedSemaphorePermit,
        expires: Duration,
    ) -> Result<(), async_nats::PublishError> {
        let batch = permits.len();
        let id = self.state.lock().expect("pull lock").reserve(
            permits,
            slot,
            Instant::now() + expires + LOCAL_MARGIN,
        );
        let body = format!(r#"{{"batch":{batch},"expires":{}}}"#, expires.as_nanos());
        let res = self
            .nc
            .publish_with_reply(
                self.next_subject.clone(),
                format!("{}.{id}", self.inbox),
                body.into(),
            )
            .await;
        if res.is_err() {
            self.state.lock().expect("pull lock").end(id, None);
        }
        res
    }

    /// Classifies a message received on the inbox.
    pub(super) fn take(&self, msg: &async_nats::Message) -> Delivery {
        self.state.lock().expect("pull lock").take(msg)
    }

    /// True while the last status said the consumer cannot serve pull requests.
    pub(super) fn is_unavailable(&self) -> bool {
        self.state.lock().expect("pull lock").unavailable.is_some()
    }

    /// Why the server said the consumer cannot serve pull requests, once;
    /// `None` while it serves them.
    pub(super) fn take_unavailable(&self) -> Option<String> {
        self.state.lock().expect("pull lock").unavailable.take()
    }

    /// An unexpected answer to a pull request (see
    /// [`Accounting::unexpected`]), once.
    pub(super) fn take_unexpected(&self) -> Option<String> {
        self.state.lock().expect("pull lock").unexpected.take()
    }

    /// Whether a request was served since the last refusal, once.
    pub(super) fn take_served(&self) -> bool {
        std::mem::take(&mut self.state.lock().expect("pull lock").served)
    }

    /// Returns the permits of requests past their deadline.
    pub(super) fn expire(&self) {
        self.state.lock().expect("pull lock").expire(Instant::now());
    }

    /// Ends every request (shutdown).
    pub(super) fn clear(&self) {
        self.state.lock().expect("pull lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::{HeaderMap, Message};
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    const INBOX: &str = "_INBOX.test";

    /// `n` single permits of `sem`.
    fn permits(sem: &Arc<Semaphore>, n: usize) -> Vec<OwnedSemaphorePermit> {
        (0..n)
            .map(|_| sem.clone().try_acquire_owned().expect("a free permit"))
            .collect()
    }

    fn slot(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        slots.clone().try_acquire_owned().expect("a free pull slot")
    }

    fn message(subject: String, status: Option<StatusCode>, headers: Option<HeaderMap>) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            payload: Default::default(),
            headers,
            status,
            description: None,
            length: 0,
        }
    }

    /// A work item: delivered under its stream subject, no status.
    fn item() -> Message {
        message("CHORIA_AJ.Q.DEFAULT".into(), None, None)
    }

    /// The status ending request `id`, `pending` items undelivered.
    fn status(id: u64, code: StatusCode, pending: Option<usize>) -> Message {
        let headers = pending.map(|n| {
            let mut h = HeaderMap::new();
            h.insert("Nats-Pending-Messages", n.to_string().as_str());
            h
        });
        message(format!("{INBOX}.{id}"), Some(code), headers)
    }

    fn later(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    struct Fixture {
        work: Arc<Semaphore>,
        slots: Arc<Semaphore>,
        acc: Accounting,
    }

    fn fixture() -> Fixture {
        Fixture {
            work: Arc::new(Semaphore::new(10)),
            slots: Arc::new(Semaphore::new(2)),
            acc: Accounting::default(),
        }
    }

    impl Fixture {
        fn request(&mut self, n: usize, deadline: Instant) -> u64 {
            let p = permits(&self.work, n);
            let s = slot(&self.slots);
            self.acc.reserve(p, s, deadline)
        }
    }

    #[test]
    fn items_beyond_the_reserve_are_stray() {
        let mut f = fixture();
        assert!(matches!(f.acc.take(&item()), Delivery::Stray));
        f.request(2, later(60));
        let a = f.acc.take(&item());
        let b = f.acc.take(&item());
        assert!(matches!(a, Delivery::Item(_)));
        assert!(matches!(b, Delivery::Item(_)));
        assert!(matches!(f.acc.take(&item()), Delivery::Stray));
        // the two items still hold their permits; a stray took none
        assert_eq!(f.work.available_permits(), 8);
        drop((a, b));
        assert_eq!(f.work.available_permits(), 10);
    }

    #[test]
    fn a_timeout_returns_exactly_the_pending_permits() {
        let mut f = fixture();
        let id = f.request(5, later(60));
        assert_eq!(f.work.available_permits(), 5);
        let first = f.acc.take(&item());
        assert!(matches!(first, Delivery::Item(_)));
        let msg = status(id, StatusCode::TIMEOUT, Some(3));
        assert!(matches!(f.acc.take(&msg), Delivery::Control));
        // 3 returned; 1 held by the item, 1 left in the reserve
        assert_eq!(f.work.available_permits(), 8);
        assert_eq!(f.acc.reserve.len(), 1);
        assert!(f.acc.requests.is_empty());
        assert_eq!(f.slots.available_permits(), 2, "the pull slot is freed");
        drop(first);
        assert_eq!(f.work.available_permits(), 9);
    }

    #[test]
    fn a_conflict_ends_its_own_request_only() {
        let mut f = fixture();
        let a = f.request(2, later(60));
        let b = f.request(3, later(60));
        let msg = status(b, StatusCode::REQUEST_TERMINATED, Some(3));
        assert!(matches!(f.acc.take(&msg), Delivery::Control));
        assert_eq!(f.work.available_permits(), 8);
        assert!(f.acc.requests.contains_key(&a));
        assert!(!f.acc.requests.contains_key(&b));
        assert_eq!(f.slots.available_permits(), 1);
    }

    #[test]
    fn a_status_without_pending_returns_the_remaining_estimate() {
        let mut f = fixture();
        let id = f.request(3, later(60));
        let held = f.acc.take(&item());
        assert!(matches!(held, Delivery::Item(_)));
        f.acc.take(&status(id, StatusCode::TIMEOUT, None));
        // 2 still expected are returned
        assert_eq!(f.work.available_permits(), 9);
        assert!(f.acc.reserve.is_empty());
    }

    #[test]
    fn a_status_for_an_unknown_request_changes_nothing() {
        let mut f = fixture();
        let id = f.request(2, later(60));
        f.acc.take(&status(id + 7, StatusCode::TIMEOUT, Some(2)));
        assert_eq!(f.work.available_permits(), 8);
        assert_eq!(f.acc.requests.len(), 1);
    }

    #[test]
    fn an_item_ends_the_oldest_request_when_it_expects_no_more() {
        let mut f = fixture();
        let a = f.request(1, later(60));
        let b = f.request(2, later(60));
        assert_eq!(f.slots.available_permits(), 0);
        let first = f.acc.take(&item());
        assert!(matches!(first, Delivery::Item(_)));
        // attributed to `a`, which expected one item: it ends, its slot is free
        assert!(!f.acc.requests.contains_key(&a));
        assert_eq!(f.slots.available_permits(), 1);
        assert_eq!(f.acc.order, VecDeque::from([b]));
        // the next item counts against `b`
        let second = f.acc.take(&item());
        assert!(matches!(second, Delivery::Item(_)));
        assert_eq!(f.acc.requests[&b].remaining, 1);
        assert_eq!(f.slots.available_permits(), 1);
        let third = f.acc.take(&item());
        assert!(matches!(third, Delivery::Item(_)));
        assert!(f.acc.requests.is_empty());
        assert!(f.acc.order.is_empty());
        assert_eq!(f.slots.available_permits(), 2);
        assert_eq!(f.work.available_permits(), 7);
    }

    #[test]
    fn an_unanswered_request_returns_its_estimate_after_its_deadline() {
        let mut f = fixture();
        let start = Instant::now();
        let deadline = start + PULL_EXPIRES + LOCAL_MARGIN;
        let early = f.request(2, deadline);
        let late = f.request(3, deadline + Duration::from_secs(10));
        let held = f.acc.take(&item());
        assert!(matches!(held, Delivery::Item(_)));
        assert_eq!(f.work.available_permits(), 5);

        f.acc.expire(deadline - Duration::from_millis(1));
        assert_eq!(f.work.available_permits(), 5, "nothing is due yet");
        assert_eq!(f.acc.requests.len(), 2);

        // `early` had one item, so it returns the one it still expected
        f.acc.expire(deadline);
        assert!(!f.acc.requests.contains_key(&early));
        assert!(f.acc.requests.contains_key(&late));
        assert_eq!(f.acc.order, VecDeque::from([late]));
        assert_eq!(f.work.available_permits(), 6);
        assert_eq!(f.acc.reserve.len(), 3);
        assert_eq!(f.slots.available_permits(), 1);

        f.acc.expire(deadline + Duration::from_secs(10));
        assert!(f.acc.requests.is_empty());
        assert!(f.acc.reserve.is_empty());
        assert_eq!(f.work.available_permits(), 9);
        assert_eq!(f.slots.available_permits(), 2);
    }

    #[test]
    fn expire_with_no_request_outstanding_clears_a_misattributed_reserve() {
        let mut f = fixture();
        let a = f.request(1, later(60));
        let b = f.request(2, later(60));
        // `b`'s item arrives first and is attributed to `a`, ending it ...
        let held = f.acc.take(&item());
        assert!(matches!(held, Delivery::Item(_)));
        // ... then `b` ends having delivered one: a permit stays behind
        f.acc.take(&status(b, StatusCode::TIMEOUT, Some(1)));
        assert!(!f.acc.requests.contains_key(&a));
        assert!(f.acc.requests.is_empty());
        assert_eq!(f.acc.reserve.len(), 1);
        assert_eq!(f.work.available_permits(), 8);

        f.acc.expire(Instant::now());
        assert!(f.acc.reserve.is_empty());
        assert_eq!(f.work.available_permits(), 9);
    }

    #[test]
    fn expire_keeps_the_reserve_while_a_request_is_outstanding() {
        let mut f = fixture();
        f.request(2, later(60));
        f.acc.expire(Instant::now());
        assert_eq!(f.acc.reserve.len(), 2);
        assert_eq!(f.work.available_permits(), 8);
    }

    #[test]
    fn clear_returns_everything() {
        let mut f = fixture();
        f.request(3, later(60));
        f.request(4, later(60));
        let held = f.acc.take(&item());
        assert!(matches!(held, Delivery::Item(_)));
        f.acc.clear();
        assert!(f.acc.requests.is_empty());
        assert!(f.acc.order.is_empty());
        assert!(f.acc.reserve.is_empty());
        assert_eq!(f.slots.available_permits(), 2);
        // only the running item's permit is still held
        assert_eq!(f.work.available_permits(), 9);
        drop(held);
        assert_eq!(f.work.available_permits(), 10);
    }

    #[test]
    fn an_idle_heartbeat_is_control_and_changes_nothing() {
        let mut f = fixture();
        let id = f.request(2, later(60));
        // even one addressed to a request, with a pending count
        for msg in [
            message(INBOX.into(), Some(StatusCode::IDLE_HEARTBEAT), None),
            status(id, StatusCode::IDLE_HEARTBEAT, Some(2)),
        ] {
            assert!(matches!(f.acc.take(&msg), Delivery::Control));
        }
        assert_eq!(f.acc.reserve.len(), 2);
        assert_eq!(f.acc.requests[&id].remaining, 2);
        assert_eq!(f.acc.order, VecDeque::from([id]));
        assert_eq!(f.work.available_permits(), 8);
        assert_eq!(f.slots.available_permits(), 1);
    }

    #[test]
    fn request_ids_are_distinct() {
        let mut f = fixture();
        let a = f.request(1, later(60));
        let b = f.request(1, later(60));
        assert_ne!(a, b);
    }

    #[test]
    fn refusals_mark_the_consumer_unavailable_until_it_serves_again() {
        let mut f = fixture();
        let id = f.request(2, later(10));
        f.acc.take(&status(id, StatusCode::NO_RESPONDERS, None));
        assert!(f.acc.unavailable.take().is_some(), "503 means no consumer");
        assert_eq!(f.work.available_permits(), 10, "its permits are back");

        let id = f.request(2, later(10));
        let mut deleted = status(id, StatusCode::REQUEST_TERMINATED, None);
        deleted.description = Some("Consumer Deleted".into());
        f.acc.take(&deleted);
        assert!(f.acc.unavailable.is_some(), "409 consumer deleted");

        let id = f.request(1, later(10));
        f.acc.take(&status(id, StatusCode::TIMEOUT, Some(1)));
        assert!(
            f.acc.unavailable.is_none(),
            "an expired request means it serves"
        );

        f.acc.unavailable = Some("x".into());
        f.request(1, later(10));
        assert!(matches!(f.acc.take(&item()), Delivery::Item(_)));
        assert!(f.acc.unavailable.is_none(), "an item means it serves");

        let id = f.request(1, later(10));
        let mut batch = status(id, StatusCode::REQUEST_TERMINATED, Some(1));
        batch.description = Some("Exceeded MaxWaiting".into());
        f.acc.take(&batch);
        assert!(f.acc.unavailable.is_none(), "other 409s end a request only");
        assert!(
            f.acc
                .unexpected
                .take()
                .is_some_and(|a| a.contains("MaxWaiting")),
            "but are answers to back off from"
        );

        let id = f.request(1, later(10));
        let mut push = status(id, StatusCode::REQUEST_TERMINATED, Some(1));
        push.description = Some("Consumer is push based".into());
        f.acc.take(&push);
        assert!(f.acc.unexpected.is_some(), "a push consumer named WORKERS");
        let id = f.request(1, later(10));
        f.acc.take(&status(id, StatusCode::TIMEOUT, Some(1)));
        assert!(f.acc.served, "an expired request means it serves");
    }
}
