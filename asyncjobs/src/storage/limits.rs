//! Rate limits shared by every worker of a cluster: a generic cell rate
//! algorithm (GCRA) whose one number, the theoretical arrival time, is kept
//! per limited queue (and per key of a queue with a per-key limit) in the
//! bucket `CHORIA_AJ_LIMITS` and advanced by compare-and-set
//! (docs/processing.md §2.22, §2.24; docs/storage.md §5.9).

use super::{Bucket, Storage};
use crate::error::{Error, Result};
use crate::queue::RateLimit;
use std::time::Duration;
use time::OffsetDateTime;

/// The bucket of flow-control state (ours): `rate.<queue>` and
/// `rate.<queue>.k.<key name>` → a rate limit's theoretical arrival time,
/// nanoseconds since the Unix epoch, in decimal; `conc.<queue>.<key name>`
/// → the tasks holding a key's slots (`storage/key_slots.rs`).
pub const LIMITS_BUCKET: &str = "CHORIA_AJ_LIMITS";

/// Compare-and-set attempts before a take gives up for now.
const ATTEMPTS: usize = 8;

/// What a take of start tokens got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tokens {
    /// This many starts (at least 1, at most asked for).
    Granted(u32),
    /// None now: the next is due after this wait.
    WaitFor(Duration),
}

impl Storage {
    /// The limits bucket, created when missing with this client's storage
    /// and replicas.
    pub(super) async fn limits_bucket(&self) -> Result<Bucket> {
        if let Some(b) = self.limits.lock().expect("limits lock").clone() {
            return Ok(b);
        }
        let b = self.open_limits_bucket().await?;
        *self.limits.lock().expect("limits lock") = Some(b.clone());
        Ok(b)
    }

    /// Forgets the opened bucket after an error, so a bucket deleted and
    /// made again is opened again.
    pub(super) fn limits_failed(&self) {
        *self.limits.lock().expect("limits lock") = None;
    }

    async fn open_limits_bucket(&self) -> Result<Bucket> {
        self.open_or_create_bucket(LIMITS_BUCKET, "asyncjobs rate limits", Duration::ZERO, None)
            .await
    }

    /// Takes up to `want` start tokens of `queue`'s `limit` at server time
    /// `now`.
    ///
    /// Errors: the bucket cannot be read or written, or every attempt met
    /// another writer ([`Error::StorageNotReady`]); the caller starts
    /// nothing then (a limit is never exceeded for an error).
    pub(crate) async fn take_tokens(
        &self,
        queue: &str,
        limit: &RateLimit,
        want: u32,
        now: OffsetDateTime,
    ) -> Result<Tokens> {
        let what = || format!("taking a start of queue {queue}'s rate limit");
        self.take_tokens_of(&rate_key(queue), what, limit, want, now)
            .await
    }

    /// Takes one start of the rate limit of `key`'s tasks in `queue`.
    ///
    /// Errors: as [`take_tokens`](Self::take_tokens).
    pub(crate) async fn take_key_token(
        &self,
        queue: &str,
        key: &str,
        limit: &RateLimit,
        now: OffsetDateTime,
    ) -> Result<Tokens> {
        let what = || format!("taking a start of key {key:?}'s rate limit in queue {queue}");
        self.take_tokens_of(&key_rate_key(queue, key), what, limit, 1, now)
            .await
    }

    /// Whether `key`'s rate limit in `queue` would grant a start now (a
    /// read, nothing taken).
    ///
    /// Errors: the bucket cannot be read.
    pub(crate) async fn key_rate_ready(
        &self,
        queue: &str,
        key: &str,
        limit: &RateLimit,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let bucket = self.limits_bucket().await?;
        let what = || format!("reading key {key:?}'s rate limit in queue {queue}");
        let written = bucket.written(&key_rate_key(queue, key), what).await?;
        let tat = written.as_ref().and_then(|w| parse_tat(&w.value));
        let (tokens, _) = gcra(tat, now.unix_timestamp_nanos(), limit, 1);
        Ok(matches!(tokens, Tokens::Granted(_)))
    }

    async fn take_tokens_of(
        &self,
        key: &str,
        what: impl Fn() -> String + Copy,
        limit: &RateLimit,
        want: u32,
        now: OffsetDateTime,
    ) -> Result<Tokens> {
        let taken = self.take_tokens_once(key, what, limit, want, now).await;
        if taken.is_err() {
            self.limits_failed();
        }
        taken
    }

    async fn take_tokens_once(
        &self,
        key: &str,
        what: impl Fn() -> String + Copy,
        limit: &RateLimit,
        want: u32,
        now: OffsetDateTime,
    ) -> Result<Tokens> {
        let bucket = self.limits_bucket().await?;
        let now_ns = now.unix_timestamp_nanos();
        for _ in 0..ATTEMPTS {
            let written = bucket.written(key, what).await?;
            let tat = written.as_ref().and_then(|w| parse_tat(&w.value));
            let (tokens, new_tat) = gcra(tat, now_ns, limit, want);
            let Tokens::Granted(_) = tokens else {
                return Ok(tokens);
            };
            let value = bytes::Bytes::from(new_tat.to_string());
            let stored = match &written {
                Some(w) => bucket.update_if(key, value, w.revision, what).await?,
                None => bucket.create(key, value, what).await?,
            };
            if stored.is_some() {
                return Ok(tokens);
            }
        }
        Err(Error::StorageNotReady(format!(
            "{} kept changing under {ATTEMPTS} attempts",
            what()
        )))
    }
}

fn parse_tat(value: &[u8]) -> Option<i128> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The key of the rate limit of `key`'s tasks in `queue`.
fn key_rate_key(queue: &str, key: &str) -> String {
    format!(
        "{}.k.{}",
        rate_key(queue),
        crate::queue::lane::key_name(key)
    )
}

/// `queue` as a part of a key: as it is, or `x<hex>` when it holds a
/// character a key cannot.
pub(super) fn queue_part(queue: &str) -> String {
    let plain = queue
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '='));
    if plain {
        queue.to_string()
    } else {
        format!("x{}", hex_of(queue))
    }
}

/// The key of `queue`'s rate limit: `rate.<queue>`, or `rate.x<hex>` when
/// the name holds a character a key cannot.
fn rate_key(queue: &str) -> String {
    format!("rate.{}", queue_part(queue))
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// One GCRA step: from the stored theoretical arrival time `tat` (ns;
/// `None`: never taken) at `now` (ns), the tokens `want` gets and the new
/// arrival time. A start is allowed while the arrival time after it is at
/// most `burst` intervals ahead of now.
fn gcra(tat: Option<i128>, now: i128, limit: &RateLimit, want: u32) -> (Tokens, i128) {
    let interval = limit.interval().as_nanos() as i128;
    let tat = tat.unwrap_or(now).max(now);
    let window = interval * i128::from(limit.burst);
    let room = (now + window - tat) / interval;
    if room <= 0 {
        let wait = (tat + interval - window - now).max(1);
        return (
            Tokens::WaitFor(Duration::from_nanos(wait.min(u64::MAX as i128) as u64)),
            tat,
        );
    }
    let granted = room.min(i128::from(want.max(1))) as u32;
    (
        Tokens::Granted(granted),
        tat + interval * i128::from(granted),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;

    fn limit(text: &str) -> RateLimit {
        text.parse().unwrap()
    }

    #[test]
    fn evenly_spaced_starts_wait_one_interval_each() {
        let l = limit("10/s");
        let (t, tat) = gcra(None, 0, &l, 5);
        assert_eq!(t, Tokens::Granted(1));
        assert_eq!(tat, 100 * MS);
        let (t, _) = gcra(Some(tat), 0, &l, 1);
        assert_eq!(t, Tokens::WaitFor(Duration::from_millis(100)));
        let (t, tat2) = gcra(Some(tat), 100 * MS, &l, 1);
        assert_eq!((t, tat2), (Tokens::Granted(1), 200 * MS));
    }

    #[test]
    fn a_burst_is_granted_at_once_then_the_rate_holds() {
        let l = limit("10/s,burst=5");
        let (t, tat) = gcra(None, 0, &l, 8);
        assert_eq!((t, tat), (Tokens::Granted(5), 500 * MS));
        let (t, _) = gcra(Some(tat), 0, &l, 1);
        assert_eq!(t, Tokens::WaitFor(Duration::from_millis(100)));
        // a quiet time refills the burst, never beyond it
        let (t, _) = gcra(Some(tat), 10_000 * MS, &l, 100);
        assert_eq!(t, Tokens::Granted(5));
    }

    #[test]
    fn over_any_window_starts_stay_within_rate_times_window_plus_burst() {
        let l = limit("50/s,burst=3");
        let (mut tat, mut started) = (None, 0u64);
        // asked every millisecond for 10 s
        for now in (0..10_000).map(|ms| ms * MS) {
            if let (Tokens::Granted(n), t) = gcra(tat, now, &l, 4) {
                started += u64::from(n);
                tat = Some(t);
            }
        }
        assert!((500..=503).contains(&started), "{started}");
    }

    #[test]
    fn keys_are_safe_for_any_queue_name() {
        assert_eq!(rate_key("EMAIL"), "rate.EMAIL");
        assert_eq!(rate_key("a:b"), "rate.x613a62");
    }
}
