//! A queue's flow settings: its rate limit and how priorities age
//! (docs/processing.md §2.21, §2.22), stored in its stream's metadata
//! (docs/storage.md §3.3).

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Stream metadata key of a queue's [`RateLimit`].
pub(crate) const RATE_LIMIT_METADATA: &str = "asyncjobs.rate_limit";
/// Stream metadata key of a queue's priority aging (a Go duration).
pub(crate) const PRIORITY_AGING_METADATA: &str = "asyncjobs.priority_aging";

/// Stream metadata key of a queue's per-key concurrency (a number).
pub(crate) const KEY_CONCURRENCY_METADATA: &str = "asyncjobs.key_concurrency";
/// Stream metadata key of a queue's per-key [`RateLimit`].
pub(crate) const KEY_RATE_LIMIT_METADATA: &str = "asyncjobs.key_rate_limit";
/// The most tasks of one key a per-key concurrency may allow.
pub const MAX_KEY_CONCURRENCY: u32 = 10_000;

/// Checks a per-key concurrency: 1 to [`MAX_KEY_CONCURRENCY`].
///
/// Errors: [`Error::Config`] naming the value.
pub fn check_key_concurrency(n: u32) -> Result<()> {
    if n == 0 || n > MAX_KEY_CONCURRENCY {
        return Err(Error::Config(format!(
            "per-key concurrency must be 1 to {MAX_KEY_CONCURRENCY} (got {n})"
        )));
    }
    Ok(())
}

/// The longest period of a rate limit: one day.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// The shortest period of a rate limit: one millisecond.
const MIN_PERIOD: Duration = Duration::from_millis(1);
/// The most starts per period, and the largest burst.
const MAX_STARTS: u32 = 1_000_000;

/// At most `starts` task starts per `period` across every worker of the
/// cluster, with up to `burst` at once after a quiet time
/// (docs/processing.md §2.22). Written `10/s`, `600/1m`, `5/500ms,burst=20`
/// (a bare `s`, `m` or `h` is one of it; otherwise a Go duration). The
/// default burst is the starts of [`DEFAULT_BURST_WINDOW`] (50 ms), at
/// least 1: `10/s` starts one every 100 ms, `10000/s` up to 500 at once.
///
/// ```
/// use asyncjobs::RateLimit;
/// let limit: RateLimit = "600/1m,burst=20".parse().unwrap();
/// assert_eq!((limit.starts, limit.period.as_secs(), limit.burst), (600, 60, 20));
/// assert_eq!(limit.to_string(), "600/1m,burst=20");
/// assert_eq!("10/s".parse::<RateLimit>().unwrap().burst, 1);
/// assert!("0/s".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts allowed per `period` (1 to 1,000,000).
    pub starts: u32,
    /// The period (1 ms to 24 h).
    pub period: Duration,
    /// Starts allowed at once after a quiet time (1 to 1,000,000; 1: evenly
    /// spaced, one every `period / starts`).
    pub burst: u32,
}

/// The time whose starts make a rate limit's default burst: a limit is
/// not enforced more finely than workers can ask a shared record.
pub const DEFAULT_BURST_WINDOW: Duration = Duration::from_millis(50);

/// The default burst of `starts` per `period`: the starts of
/// [`DEFAULT_BURST_WINDOW`], at least 1.
fn default_burst(starts: u32, period: Duration) -> u32 {
    if period.is_zero() {
        return 1;
    }
    let n = u128::from(starts) * DEFAULT_BURST_WINDOW.as_nanos() / period.as_nanos();
    n.clamp(1, u128::from(MAX_STARTS)) as u32
}

impl RateLimit {
    /// `starts` per `period`, with the default burst.
    ///
    /// Errors: [`Error::Config`] when a value is out of range.
    pub fn new(starts: u32, period: Duration) -> Result<RateLimit> {
        let limit = RateLimit {
            starts,
            period,
            burst: default_burst(starts, period),
        };
        limit.validate()?;
        Ok(limit)
    }

    /// The same limit allowing `burst` starts at once.
    ///
    /// Errors: [`Error::Config`] when `burst` is 0 or above 1,000,000.
    pub fn with_burst(mut self, burst: u32) -> Result<RateLimit> {
        self.burst = burst;
        self.validate()?;
        Ok(self)
    }

    /// Checks every value is in range.
    ///
    /// Errors: [`Error::Config`] naming the value.
    pub fn validate(&self) -> Result<()> {
        if self.starts == 0 || self.starts > MAX_STARTS {
            return Err(bad(format!(
                "starts per period must be 1 to {MAX_STARTS} (got {})",
                self.starts
            )));
        }
        if self.period < MIN_PERIOD || self.period > MAX_PERIOD {
            return Err(bad(format!(
                "the period must be 1ms to 24h (got {})",
                crate::wire::format_duration(self.period)
            )));
        }
        if self.burst == 0 || self.burst > MAX_STARTS {
            return Err(bad(format!(
                "burst must be 1 to {MAX_STARTS} (got {})",
                self.burst
            )));
        }
        Ok(())
    }

    /// The time between two starts at the limit (at least 1 ns).
    pub(crate) fn interval(&self) -> Duration {
        (self.period / self.starts).max(Duration::from_nanos(1))
    }
}

fn bad(why: String) -> Error {
    Error::Config(format!("invalid rate limit: {why}"))
}

impl FromStr for RateLimit {
    type Err = Error;

    fn from_str(s: &str) -> Result<RateLimit> {
        let s = s.trim();
        let (rate, burst) = match s.split_once(',') {
            Some((rate, rest)) => {
                let b = rest
                    .trim()
                    .strip_prefix("burst=")
                    .ok_or_else(|| bad(format!("expected burst=N after the comma in {s:?}")))?;
                let b = b
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| bad(format!("burst {b:?} is not a whole number")))?;
                (rate, Some(b))
            }
            None => (s, None),
        };
        let (n, period) = rate
            .split_once('/')
            .ok_or_else(|| bad(format!("expected STARTS/PERIOD such as 10/s (got {s:?})")))?;
        let starts = n
            .trim()
            .parse::<u32>()
            .map_err(|_| bad(format!("starts {:?} is not a whole number", n.trim())))?;
        let period = match period.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            p => asyncjobs_grammar::duration::parse_duration(p)
                .map_err(|e| bad(format!("period {p:?}: {e}")))?,
        };
        let limit = RateLimit {
            starts,
            period,
            burst: burst.unwrap_or_else(|| default_burst(starts, period)),
        };
        limit.validate()?;
        Ok(limit)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, whole) = (self.period.as_secs(), self.period.subsec_nanos() == 0);
        let period = match secs {
            1 if whole => "s".to_string(),
            s if whole && s % 3600 == 0 => format!("{}h", s / 3600),
            s if whole && s % 60 == 0 => format!("{}m", s / 60),
            s if whole => format!("{s}s"),
            _ => crate::wire::format_duration(self.period),
        };
        write!(f, "{}/{period}", self.starts)?;
        if self.burst != default_burst(self.starts, self.period) {
            write!(f, ",burst={}", self.burst)?;
        }
        Ok(())
    }
}

/// Parses a priority aging setting: `strict` (or `0`) for none, otherwise a
/// Go duration of at least 1 second (docs/processing.md §2.21).
///
/// Errors: [`Error::Config`] naming the value.
pub fn parse_priority_aging(s: &str) -> Result<Option<Duration>> {
    match s.trim() {
        "strict" | "0" | "" => Ok(None),
        d => {
            let d = asyncjobs_grammar::duration::parse_duration(d).map_err(|e| {
                Error::Config(format!(
                    "invalid priority aging {d:?} (strict, or a duration such as 30s): {e}"
                ))
            })?;
            if d < Duration::from_secs(1) {
                return Err(Error::Config(
                    "priority aging must be at least 1s (or strict)".into(),
                ));
            }
            Ok(Some(d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse_and_print_back() {
        for (text, starts, period, burst) in [
            ("10/s", 10, Duration::from_secs(1), 1),
            ("600/1m", 600, Duration::from_secs(60), 1),
            ("5/500ms,burst=20", 5, Duration::from_millis(500), 20),
            (" 3 / h , burst=2", 3, Duration::from_secs(3600), 2),
            ("10000/s", 10_000, Duration::from_secs(1), 500),
            ("7/2h", 7, Duration::from_secs(7200), 1),
            ("7/90s", 7, Duration::from_secs(90), 1),
            ("7/1.5s", 7, Duration::from_millis(1500), 1),
            ("200/s,burst=1", 200, Duration::from_secs(1), 1),
        ] {
            let l: RateLimit = text.parse().unwrap();
            assert_eq!(
                (l.starts, l.period, l.burst),
                (starts, period, burst),
                "{text}"
            );
            assert_eq!(l.to_string().parse::<RateLimit>().unwrap(), l, "{text}");
        }
    }

    #[test]
    fn bad_rate_limits_say_why() {
        for (text, why) in [
            ("0/s", "starts per period must be 1"),
            ("-1/s", "not a whole number"),
            ("10", "expected STARTS/PERIOD"),
            ("10/0s", "period must be 1ms to 24h"),
            ("10/48h", "period must be 1ms to 24h"),
            ("10/s,burst=0", "burst must be 1"),
            ("10/s,bust=3", "expected burst=N"),
            ("10/fortnight", "period"),
            ("1000001/s", "starts per period must be 1"),
        ] {
            let e = text.parse::<RateLimit>().unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn intervals_spread_the_starts() {
        let l: RateLimit = "4/s".parse().unwrap();
        assert_eq!(l.interval(), Duration::from_millis(250));
        let l: RateLimit = "1000000/1ms".parse().unwrap();
        assert_eq!(l.interval(), Duration::from_nanos(1));
        assert_eq!("600/1m".parse::<RateLimit>().unwrap().to_string(), "600/1m");
        assert_eq!("3/2h".parse::<RateLimit>().unwrap().to_string(), "3/2h");
    }

    #[test]
    fn aging_is_strict_or_a_second_or_more() {
        assert_eq!(parse_priority_aging("strict").unwrap(), None);
        assert_eq!(
            parse_priority_aging("30s").unwrap(),
            Some(Duration::from_secs(30))
        );
        assert!(parse_priority_aging("10ms").is_err());
        assert!(parse_priority_aging("soon").is_err());
    }
}
