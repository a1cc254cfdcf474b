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
use std::sync::atomic::{AtomicU64, Ordering};
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

#[derive(Default)]
struct State {
    reserve: Vec<OwnedSemaphorePermit>,
    requests: HashMap<u64, Request>,
    order: VecDeque<u64>,
}

impl State {
    fn end(&mut self, id: u64, undelivered: Option<usize>) {
        if let Some(r) = self.requests.remove(&id) {
            let n = undelivered.unwrap_or(r.remaining).min(self.reserve.len());
            self.reserve.truncate(self.reserve.len() - n);
        }
    }
}

/// What a message on the pull inbox means.
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
    state: Mutex<State>,
    counter: AtomicU64,
}

impl Puller {
    /// A puller for `stream`'s `consumer`, and the subscription its items arrive on.
    pub async fn new(
        nc: async_nats::Client,
        stream: &str,
        consumer: &str,
    ) -> Result<(Puller, async_nats::Subscriber), async_nats::SubscribeError> {
        let inbox = nc.new_inbox();
        let sub = nc.subscribe(format!("{inbox}.*")).await?;
        Ok((
            Puller {
                next_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
                nc,
                inbox,
                state: Mutex::new(State::default()),
                counter: AtomicU64::new(0),
            },
            sub,
        ))
    }

    /// Asks for as many items as `permits` holds.
    pub async fn request(
        &self,
        permits: Vec<OwnedSemaphorePermit>,
        slot: OwnedSemaphorePermit,
    ) -> Result<(), async_nats::PublishError> {
        let id = self.counter.fetch_add(1, Ordering::Relaxed);
        let batch = permits.len();
        {
            let mut st = self.state.lock().expect("pull lock");
            st.reserve.extend(permits);
            st.requests.insert(
                id,
                Request {
                    remaining: batch,
                    deadline: Instant::now() + PULL_EXPIRES + LOCAL_MARGIN,
                    _slot: slot,
                },
            );
            st.order.push_back(id);
        }
        let body = format!(
            r#"{{"batch":{batch},"expires":{}}}"#,
            PULL_EXPIRES.as_nanos()
        );
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
    pub fn take(&self, msg: &async_nats::Message) -> Delivery {
        let mut st = self.state.lock().expect("pull lock");
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
                    st.end(id, undelivered);
                }
                Delivery::Control
            }
            _ => {
                let Some(permit) = st.reserve.pop() else {
                    return Delivery::Stray;
                };
                // attribute the item to the oldest request still expecting items
                // (it ends, freeing its pull slot, when it expects no more)
                while let Some(&front) = st.order.front() {
                    match st.requests.get_mut(&front) {
                        Some(r) if r.remaining > 1 => {
                            r.remaining -= 1;
                            break;
                        }
                        Some(_) => {
                            st.requests.remove(&front);
                            st.order.pop_front();
                            break;
                        }
                        None => {
                            st.order.pop_front();
                        }
                    }
                }
                Delivery::Item(permit)
            }
        }
    }

    /// Returns the permits of requests past their deadline.
    pub fn expire(&self) {
        let now = Instant::now();
        let mut st = self.state.lock().expect("pull lock");
        let expired: Vec<u64> = st
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            st.end(id, None);
        }
        let live: VecDeque<u64> = st
            .order
            .iter()
            .copied()
            .filter(|id| st.requests.contains_key(id))
            .collect();
        st.order = live;
        // No request outstanding means nothing can arrive for the reserve:
        // return whatever a misattributed item left there.
        if st.requests.is_empty() {
            st.reserve.clear();
        }
    }

    /// Ends every request (shutdown).
    pub fn clear(&self) {
        let mut st = self.state.lock().expect("pull lock");
        st.requests.clear();
        st.order.clear();
        st.reserve.clear();
    }
}
