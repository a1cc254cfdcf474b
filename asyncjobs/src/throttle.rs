//! Log lines that can repeat for every delivery (a full store refusing
//! every save, a server refusing every ack) are let through at WARN at
//! most once per interval per call site, with the number held back since;
//! the others go to DEBUG.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One call site's throttle: a `static` beside the log line.
#[derive(Debug)]
pub(crate) struct Throttle {
    every_ms: u64,
    /// When a line was last let through, in ms since [`epoch`] (+1, so
    /// zero means never).
    last: AtomicU64,
    /// Lines held back since.
    held: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Throttle {
    /// At most one line per `every`.
    pub(crate) const fn new(every: Duration) -> Throttle {
        Throttle {
            every_ms: every.as_millis() as u64,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when this line may be
    /// logged at WARN now, `None` when it is held back.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now < last + self.every_ms {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

/// Logs at WARN through `$throttle` (a [`Throttle`]), or at DEBUG when held
/// back; the WARN line carries `held_back`, the lines skipped since.
macro_rules! warn_throttled {
    ($throttle:expr, $($arg:tt)+) => {
        match $throttle.allow() {
            Some(held_back) => tracing::warn!(held_back, $($arg)+),
            None => tracing::debug!($($arg)+),
        }
    };
}
pub(crate) use warn_throttled;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        let t2 = Throttle::new(Duration::ZERO);
        assert_eq!(t2.allow(), Some(0));
        assert_eq!(t2.allow(), Some(0));
    }
}
