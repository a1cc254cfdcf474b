//! Following lifecycle events through what the server does (docs/storage.md
//! §8.5, "Watching events"): a lost connection, a subscription that ends, a
//! subscribe the server refuses. Each is logged at WARN (throttled across
//! all followers of this process), counted in
//! `background_error_total{loop="events"}` (docs/processing.md §8), tried
//! again at most once a second (doubling to [`BACKOFF_MAX`]), and the
//! follower goes on when the server is back.

use crate::connection_watch::{Change, ConnectionWatch};
use crate::throttle::{warn_throttled, Throttle};
use futures::StreamExt;
use std::time::Duration;

/// The `loop` label of `background_error_total` for event followers.
pub(super) const LOOP: &str = "events";
/// Longest wait between two tries to subscribe again.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// One line per period for every follower of this process together.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One subscription to `subject`, made again when it ends.
pub(super) struct Follower {
    nc: async_nats::Client,
    subject: String,
    sub: Option<async_nats::Subscriber>,
    connection: ConnectionWatch,
    backoff: Duration,
}

impl Follower {
    /// Follows `sub`, the subscription to `subject` just made on `nc`.
    pub(super) fn new(
        nc: async_nats::Client,
        subject: String,
        sub: async_nats::Subscriber,
    ) -> Follower {
        Follower {
            connection: ConnectionWatch::new(&nc),
            nc,
            subject,
            sub: Some(sub),
            backoff: Duration::from_secs(1),
        }
    }

    /// The next message; never ends.
    pub(super) async fn next(&mut self) -> async_nats::Message {
        loop {
            let Some(sub) = self.sub.as_mut() else {
                self.subscribe_again().await;
                continue;
            };
            tokio::select! {
                m = sub.next() => match m {
                    Some(m) => {
                        self.backoff = Duration::from_secs(1);
                        return m;
                    }
                    None => {
                        static ENDED: Throttle = Throttle::new(LOG_EVERY);
                        warn_throttled!(ENDED, subject = %self.subject, retry_in = ?self.backoff,
                            "the event subscription ended; subscribing again");
                        crate::metrics::background_error(LOOP);
                        self.sub = None;
                    }
                },
                _ = self.connection.tick() => self.check_connection(),
            }
        }
    }

    /// Subscribes again after the back-off.
    async fn subscribe_again(&mut self) {
        tokio::time::sleep(self.backoff).await;
        match self.nc.subscribe(self.subject.clone()).await {
            Ok(sub) => {
                tracing::info!(subject = %self.subject, "following events again");
                self.sub = Some(sub);
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                static REFUSED: Throttle = Throttle::new(LOG_EVERY);
                warn_throttled!(REFUSED, subject = %self.subject, error = %e, retry_in = ?self.backoff,
                    "cannot subscribe to events");
                crate::metrics::background_error(LOOP);
            }
        }
    }

    /// Names a lost connection (events published meanwhile are missed:
    /// they are core NATS messages, docs/storage.md §8.5) and its return.
    fn check_connection(&mut self) {
        match self.connection.look(&self.nc) {
            None => {}
            Some(Change::Lost) => {
                static LOST: Throttle = Throttle::new(LOG_EVERY);
                warn_throttled!(LOST, subject = %self.subject,
                    "lost the connection to NATS: events published until it is back are missed");
                crate::metrics::background_error(LOOP);
            }
            Some(Change::Back) => {
                tracing::info!(subject = %self.subject, "the connection to NATS is back: following events again")
            }
            Some(Change::LostAndBack) => {
                static MISSED: Throttle = Throttle::new(LOG_EVERY);
                warn_throttled!(MISSED, subject = %self.subject,
                    "the connection to NATS was lost and made again: events published meanwhile were missed");
                crate::metrics::background_error(LOOP);
            }
        }
    }
}
