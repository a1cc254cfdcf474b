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

    /// What a `fmt` subscriber writes, one event per `write` call, and how
    /// many of those were WARN lines.
    #[derive(Clone, Default)]
    struct Captured {
        lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        warns: std::sync::Arc<AtomicU64>,
    }

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let line = String::from_utf8_lossy(buf).trim_end().to_string();
            if line.contains(" WARN ") {
                self.warns.fetch_add(1, Ordering::SeqCst);
            }
            self.lines.lock().unwrap().push(line);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn dispatch(&self) -> tracing::Dispatch {
            tracing::Dispatch::new(
                tracing_subscriber::fmt()
                    .with_writer(self.clone())
                    .with_max_level(tracing::Level::DEBUG)
                    .with_ansi(false)
                    .without_time()
                    .finish(),
            )
        }
        fn lines(&self, level: &str) -> Vec<String> {
            let level = format!(" {level} ");
            let lines = self.lines.lock().unwrap();
            lines
                .iter()
                .filter(|l| format!(" {l}").contains(&level))
                .cloned()
                .collect()
        }
    }

    /// A flood of one call site's line from several threads within its
    /// period: one WARN, every other line at DEBUG.
    #[test]
    fn a_flood_within_the_period_is_one_warn_line() {
        static FLOOD: Throttle = Throttle::new(Duration::from_secs(3600));
        let captured = Captured::default();
        let dispatch = captured.dispatch();
        std::thread::scope(|s| {
            for thread in 0..4 {
                let dispatch = dispatch.clone();
                s.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for attempt in 0..250 {
                            warn_throttled!(FLOOD, thread, attempt, "saving task failed");
                        }
                    })
                });
            }
        });
        let warns = captured.lines("WARN");
        assert_eq!(warns.len(), 1, "{warns:#?}");
        assert!(
            warns[0].contains("held_back=0") && warns[0].contains("saving task failed"),
            "{warns:?}"
        );
        let debugs = captured.lines("DEBUG");
        assert_eq!(debugs.len(), 999);
        assert!(debugs.iter().all(|l| l.contains("saving task failed")));
    }

    /// Flooding until the period has passed: the next WARN line says how
    /// many lines were held back since the one before (all at DEBUG).
    #[test]
    fn the_next_warn_line_counts_the_lines_held_back() {
        static SHORT: Throttle = Throttle::new(Duration::from_millis(20));
        let captured = Captured::default();
        let mut calls = 0u64;
        tracing::dispatcher::with_default(&captured.dispatch(), || {
            while captured.warns.load(Ordering::SeqCst) < 2 {
                warn_throttled!(SHORT, call = calls, "acknowledging failed");
                calls += 1;
            }
        });
        let warns = captured.lines("WARN");
        assert_eq!(warns.len(), 2, "{warns:#?}");
        let held = calls - 2;
        assert!(warns[0].contains("held_back=0 call=0"), "{}", warns[0]);
        assert!(
            warns[1].contains(&format!("held_back={held} call={}", calls - 1)),
            "{} after {calls} calls",
            warns[1]
        );
        assert_eq!(captured.lines("DEBUG").len() as u64, held);
    }
}
