//! Noticing, from a loop that depends on core NATS subscriptions, that the
//! connection was lost (messages published meanwhile are missed: core NATS
//! keeps nothing, docs/storage.md §8.5) and that it is back. The client
//! makes the subscriptions again by itself; the loop names what happened.

use async_nats::connection::State;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often the connection is looked at.
const CHECK: Duration = Duration::from_secs(1);

/// What a look at the connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Down now (named once until it is back).
    Lost,
    /// Back after [`Change::Lost`].
    Back,
    /// Lost and made again between two looks.
    LostAndBack,
}

/// One loop's view of its connection.
#[derive(Debug)]
pub(crate) struct ConnectionWatch {
    /// The connection's connect count when last looked at.
    connects: u64,
    /// Seen down and not yet back.
    lost: bool,
    check: tokio::time::Interval,
}

impl ConnectionWatch {
    pub(crate) fn new(nc: &async_nats::Client) -> ConnectionWatch {
        let mut check = tokio::time::interval(CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ConnectionWatch {
            connects: nc.statistics().connects.load(Ordering::Relaxed),
            lost: false,
            check,
        }
    }

    /// Resolves when it is time for the next look.
    pub(crate) async fn tick(&mut self) {
        self.check.tick().await;
    }

    /// Looks at the connection, returning what changed since the last look.
    pub(crate) fn look(&mut self, nc: &async_nats::Client) -> Option<Change> {
        let connects = nc.statistics().connects.load(Ordering::Relaxed);
        if nc.connection_state() != State::Connected {
            if self.lost {
                return None;
            }
            self.lost = true;
            return Some(Change::Lost);
        }
        let change = if self.lost {
            Some(Change::Back)
        } else if connects != self.connects {
            Some(Change::LostAndBack)
        } else {
            None
        };
        self.lost = false;
        self.connects = connects;
        change
    }
}
