//! A queue's rate limit, the worker's side (docs/processing.md §2.22):
//! free slots are spent only on the starts the cluster-wide limit grants
//! (`storage/limits.rs`), before any item is pulled or claimed, so a task
//! over the limit waits in the queue, holding no slot and counting no try.

use super::Shared;
use crate::queue::RateLimit;
use crate::storage::Tokens;
use crate::throttle::{warn_throttled, Throttle};
use std::time::Duration;

/// How long a pull request backed by granted starts waits for items: a
/// start granted but not used within it is given up (never saved for a
/// burst later), so the limit holds over any window to within this.
pub(crate) const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// The longest sleep before asking the limit again (a changed limit is
/// followed within it, and shutdown is never held up).
const MOST_WAIT: Duration = Duration::from_secs(1);

/// How many of `free` slots may start a task now: `Ok(n)` with
/// `1 <= n <= free`, or `Err(wait)` to ask again after `wait`. An error
/// reaching the limit's state starts nothing (logged), and asks again
/// after a second.
pub(super) async fn starts(
    shared: &Shared,
    limit: &RateLimit,
    free: usize,
) -> Result<usize, Duration> {
    let want = u32::try_from(free).unwrap_or(u32::MAX);
    let now = shared.storage.clock().now();
    match shared
        .storage
        .take_tokens(&shared.name, limit, want, now)
        .await
    {
        Ok(Tokens::Granted(n)) => {
            crate::metrics::rate_limited(&shared.name, false);
            Ok((n as usize).min(free).max(1))
        }
        Ok(Tokens::WaitFor(wait)) => {
            crate::metrics::rate_limited(&shared.name, true);
            Err(wait.min(MOST_WAIT))
        }
        Err(e) => {
            static TAKE: Throttle = Throttle::new(Duration::from_secs(10));
            warn_throttled!(TAKE, queue = %shared.name, error = %e,
                "reading the queue's rate limit failed; starting nothing until it can be read");
            Err(MOST_WAIT)
        }
    }
}
