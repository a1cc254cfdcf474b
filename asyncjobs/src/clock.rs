//! The nats-server's clock as this process reads it (docs/processing.md
//! §2.13).
//!
//! Times in records (`created`, `tried`, `run_at`, `deadline`) are
//! compared with "now" by the delivery gates, leases, reconcile and the
//! scheduler. A process whose clock disagrees with the server's would
//! judge them wrongly: hold a delayed task the server released, take over
//! a try whose lease has not ended. Every such comparison uses
//! [`ServerClock::now`]: the local clock corrected by the skew last
//! measured against the server (a KV write's server timestamp, read back
//! by the worker's presence loop every 10 s).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

/// Skew above which a process warns (once) that its clock is off.
pub(crate) const SKEW_WARNING: Duration = Duration::from_secs(3);

/// A measurement is used only when its round trip took at most this long
/// (its error is at most half the round trip).
const MAX_ROUND_TRIP: Duration = Duration::from_secs(1);

/// The server's clock seen from this process: the local clock plus the
/// last measured skew.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    /// Server time minus local time, in milliseconds.
    skew_ms: AtomicI64,
    /// A test's pretend local clock error, in milliseconds (added to the
    /// local clock before anything else).
    local_offset_ms: AtomicI64,
    warned: AtomicBool,
}

impl ServerClock {
    /// This process's clock (with a test's offset).
    pub(crate) fn local(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + time::Duration::milliseconds(self.local_offset_ms.load(Ordering::Relaxed))
    }

    /// The server's time now, as well as it is known.
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.local() + time::Duration::milliseconds(self.skew_ms.load(Ordering::Relaxed))
    }

    /// The last measured skew (server minus local).
    #[cfg(test)]
    pub(crate) fn skew(&self) -> time::Duration {
        time::Duration::milliseconds(self.skew_ms.load(Ordering::Relaxed))
    }

    /// Pretends the local clock is off by `offset` (tests of skew).
    pub(crate) fn set_local_offset(&self, offset: time::Duration) {
        let ms = i64::try_from(offset.whole_milliseconds()).unwrap_or(0);
        self.local_offset_ms.store(ms, Ordering::Relaxed);
    }

    /// Takes a measurement: `server` was stamped by the server between the
    /// local times `sent` and `received`. Warns once when the skew is over
    /// [`SKEW_WARNING`].
    pub(crate) fn observe(
        &self,
        server: OffsetDateTime,
        sent: OffsetDateTime,
        received: OffsetDateTime,
    ) {
        let round_trip = received - sent;
        if round_trip.is_negative() || round_trip > MAX_ROUND_TRIP {
            return;
        }
        let midpoint = sent + round_trip / 2;
        let skew: time::Duration = server - midpoint;
        let ms = i64::try_from(skew.whole_milliseconds()).unwrap_or(0);
        self.skew_ms.store(ms, Ordering::Relaxed);
        if skew.unsigned_abs() > SKEW_WARNING {
            if !self.warned.swap(true, Ordering::Relaxed) {
                let (by, way) = if skew.is_negative() {
                    (-skew, "ahead of")
                } else {
                    (skew, "behind")
                };
                tracing::warn!(skew_seconds = skew.as_seconds_f64(),
                    "this process's clock is {by} {way} the nats-server's; task times are judged by the server's clock");
            }
        } else if self.warned.swap(false, Ordering::Relaxed) {
            tracing::info!(
                skew_seconds = skew.as_seconds_f64(),
                "this process's clock agrees with the nats-server's again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn skew_is_measured_from_the_midpoint() {
        let c = ServerClock::default();
        let sent = datetime!(2026-12-06 12:00:00 UTC);
        let received = sent + time::Duration::milliseconds(200);
        c.observe(sent + time::Duration::minutes(2), sent, received);
        assert_eq!(
            c.skew(),
            time::Duration::minutes(2) - time::Duration::milliseconds(100)
        );
        let now = c.now();
        let expected = OffsetDateTime::now_utc() + c.skew();
        assert!((now - expected).abs() < time::Duration::seconds(1));
    }

    #[test]
    fn slow_round_trips_are_not_used() {
        let c = ServerClock::default();
        let sent = datetime!(2026-12-06 12:00:00 UTC);
        c.observe(
            sent + time::Duration::minutes(2),
            sent,
            sent + time::Duration::seconds(5),
        );
        assert_eq!(c.skew(), time::Duration::ZERO);
    }

    #[test]
    fn a_local_offset_is_corrected_by_the_measurement() {
        let c = ServerClock::default();
        c.set_local_offset(time::Duration::minutes(-2));
        let sent = c.local();
        let server = OffsetDateTime::now_utc();
        c.observe(server, sent, c.local());
        assert!((c.now() - OffsetDateTime::now_utc()).abs() < time::Duration::seconds(1));
    }
}
