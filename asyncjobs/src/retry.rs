//! Retry backoff policies (docs/processing.md §4).
//!
//! The named policies compute exactly what the Go implementation does: a
//! linear series of intervals, each multiplied by a random factor in
//! `[jitter, 1 + jitter)` and rounded to the millisecond.

use crate::error::{Error, Result};
use rand::Rng;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Decides how long to wait before retrying a failed task.
pub trait RetryPolicy: Send + Sync + fmt::Debug + 'static {
    /// The delay before the next try, given the delivery count of the failed
    /// try (the first delivery is 1).
    fn duration(&self, attempt: u64) -> Duration;
}

/// A linear backoff with jitter, as Go's `RetryPolicy`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearPolicy {
    intervals: Vec<Duration>,
    jitter: f64,
}

impl LinearPolicy {
    /// `steps` intervals from `min` in equal steps towards `max` (exclusive),
    /// each delay jittered by `jitter` (for example 0.9 gives `[0.9d, 1.9d)`).
    pub fn new(steps: u32, min: Duration, max: Duration, jitter: f64) -> LinearPolicy {
        let (min, max) = if max < min { (max, min) } else { (min, max) };
        let steps = steps.max(1);
        let step = (max - min).as_nanos() / steps as u128;
        let intervals = (0..steps as u128)
            .map(|i| Duration::from_nanos((min.as_nanos() + i * step) as u64))
            .collect();
        LinearPolicy { intervals, jitter }
    }

    /// The un-jittered intervals.
    pub fn intervals(&self) -> &[Duration] {
        &self.intervals
    }

    /// The jitter factor.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Go's `RetryLinearTenMinutes` (also `default`): 50 steps, 1 to 10 minutes, jitter 0.9.
    pub fn ten_minutes() -> LinearPolicy {
        LinearPolicy::new(50, Duration::from_secs(60), Duration::from_secs(600), 0.9)
    }

    /// Go's `RetryLinearOneHour`: 20 steps, 10 to 60 minutes, jitter 0.9.
    pub fn one_hour() -> LinearPolicy {
        LinearPolicy::new(20, Duration::from_secs(600), Duration::from_secs(3600), 0.9)
    }

    /// Go's `RetryLinearOneMinute`: 20 steps, 1 to 60 seconds, jitter 0.5.
    pub fn one_minute() -> LinearPolicy {
        LinearPolicy::new(20, Duration::from_secs(1), Duration::from_secs(60), 0.5)
    }

    /// Backoff for poll errors: 20 steps, 0.5 to 10 seconds, jitter 0.1.
    pub(crate) fn ten_seconds() -> LinearPolicy {
        LinearPolicy::new(20, Duration::from_millis(500), Duration::from_secs(10), 0.1)
    }
}

impl RetryPolicy for LinearPolicy {
    fn duration(&self, attempt: u64) -> Duration {
        let idx = (attempt as usize).min(self.intervals.len() - 1);
        let first = self.intervals[0];
        let d = self.intervals[idx];
        if d.is_zero() {
            return first;
        }
        let base = d.as_nanos() as f64 * self.jitter;
        let extra = rand::thread_rng().gen_range(0..d.as_nanos().max(1) as u64) as f64;
        let ns = base + extra;
        let ms = (ns / 1_000_000.0).round();
        if ms <= 0.0 {
            return first;
        }
        Duration::from_millis(ms as u64)
    }
}

/// The names [`policy_by_name`] knows, sorted: `10m`, `1h`, `1m`, `default`.
pub fn policy_names() -> Vec<&'static str> {
    vec!["10m", "1h", "1m", "default"]
}

/// A named policy; unknown names give `unknown retry policy: <name>`.
pub fn policy_by_name(name: &str) -> Result<Arc<dyn RetryPolicy>> {
    Ok(Arc::new(match name {
        "10m" | "default" => LinearPolicy::ten_minutes(),
        "1h" => LinearPolicy::one_hour(),
        "1m" => LinearPolicy::one_minute(),
        other => return Err(Error::UnknownRetryPolicy(other.to_string())),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_match_go() {
        let p = LinearPolicy::ten_minutes();
        assert_eq!(p.intervals().len(), 50);
        assert_eq!(p.intervals()[0], Duration::from_secs(60));
        assert_eq!(p.intervals()[1], Duration::from_millis(70_800));
        assert_eq!(p.intervals()[49], Duration::from_millis(589_200));
        let p = LinearPolicy::one_minute();
        assert_eq!(p.intervals()[1], Duration::from_millis(3_950));
        assert_eq!(p.intervals()[19], Duration::from_millis(57_050));
        let p = LinearPolicy::one_hour();
        assert_eq!(p.intervals().len(), 20);
        assert_eq!(p.intervals()[19], Duration::from_secs(3450));
    }

    #[test]
    fn jittered_range() {
        let p = LinearPolicy::ten_minutes();
        for attempt in [1u64, 5, 100] {
            let d = p.intervals()[(attempt as usize).min(49)];
            for _ in 0..200 {
                let got = p.duration(attempt);
                assert!(
                    got >= d.mul_f64(0.9) && got < d.mul_f64(1.9),
                    "{got:?} for {d:?}"
                );
                assert_eq!(got.subsec_nanos() % 1_000_000, 0);
            }
        }
    }

    #[test]
    fn names() {
        assert!(policy_by_name("default").is_ok());
        assert_eq!(
            policy_by_name("2m").unwrap_err().to_string(),
            "unknown retry policy: 2m"
        );
    }
}
