//! Per-key limits, the worker's side (docs/processing.md §2.24): a keyed
//! task's try starts only with one of its key's slots (the queue's
//! per-key concurrency) and one start of its key's rate; waiting for
//! either counts no try and holds no concurrency slot.

use super::Shared;
use crate::storage::Tokens;
use crate::task::Task;
use crate::throttle::{warn_throttled, Throttle};
use std::time::Duration;

/// How long a task whose key has no free slot waits before it is offered
/// again (held in its lane: docs/processing.md §2.24).
pub(crate) const KEY_BUSY_WAIT: Duration = Duration::from_secs(1);

/// A slot of a key held for a try, given back by [`release`].
#[derive(Debug)]
pub(crate) struct KeyHold {
    key: String,
    id: String,
    token: String,
}

/// Whether a task of `key` may start now, by a read of its limits (for a
/// claim: the take in [`acquire`] decides, and judges a holder that may be
/// stale). False when a limit cannot be read.
pub(super) async fn may_start(shared: &Shared, key: &str) -> bool {
    let queue = shared.queue();
    let now = shared.storage.clock().now();
    if let Some(n) = queue.key_concurrency {
        match shared
            .storage
            .key_slot_may_free(&shared.name, key, n, now)
            .await
        {
            Ok(true) => {}
            _ => return false,
        }
    }
    if let Some(limit) = &queue.key_rate_limit {
        match shared
            .storage
            .key_rate_ready(&shared.name, key, limit, now)
            .await
        {
            Ok(true) => {}
            _ => return false,
        }
    }
    true
}

/// Before a keyed task's try: `Ok(Some(hold))` with a slot of its key
/// taken, `Ok(None)` when no per-key limit applies (or only the rate,
/// whose start is taken), `Err(wait)` when the task must wait (a slot, a
/// start, or a limit that cannot be read: nothing is taken then).
pub(super) async fn acquire(shared: &Shared, task: &Task) -> Result<Option<KeyHold>, Duration> {
    let Some(key) = &task.key else {
        return Ok(None);
    };
    let queue = shared.queue();
    if queue.key_concurrency.is_none() && queue.key_rate_limit.is_none() {
        return Ok(None);
    }
    let now = shared.storage.clock().now();
    let mut hold = None;
    if let Some(n) = queue.key_concurrency {
        let token = crate::task::new_id();
        match shared
            .storage
            .take_key_slot(&shared.name, key, &task.id, &token, n, now)
            .await
        {
            Ok(true) => {
                hold = Some(KeyHold {
                    key: key.clone(),
                    id: task.id.clone(),
                    token,
                })
            }
            Ok(false) => return Err(KEY_BUSY_WAIT),
            Err(e) => {
                static SLOT: Throttle = Throttle::new(Duration::from_secs(10));
                warn_throttled!(SLOT, queue = %shared.name, task = %task.id, error = %e,
                    "taking a slot of the task's key failed; the task waits");
                return Err(KEY_BUSY_WAIT);
            }
        }
    }
    if let Some(limit) = &queue.key_rate_limit {
        let wait = match shared
            .storage
            .take_key_token(&shared.name, key, limit, now)
            .await
        {
            Ok(Tokens::Granted(_)) => None,
            Ok(Tokens::WaitFor(wait)) => Some(wait),
            Err(e) => {
                static RATE: Throttle = Throttle::new(Duration::from_secs(10));
                warn_throttled!(RATE, queue = %shared.name, task = %task.id, error = %e,
                    "taking a start of the task's key rate failed; the task waits");
                Some(KEY_BUSY_WAIT)
            }
        };
        if let Some(wait) = wait {
            if let Some(h) = hold {
                release(shared, h).await;
            }
            return Err(wait);
        }
    }
    Ok(hold)
}

/// Gives a try's key slot back (a failure is logged: the slot is then
/// freed once judged stale, docs/processing.md §2.24).
pub(super) async fn release(shared: &Shared, hold: KeyHold) {
    if let Err(e) = shared
        .storage
        .release_key_slot(&shared.name, &hold.key, &hold.token)
        .await
    {
        static RELEASE: Throttle = Throttle::new(Duration::from_secs(10));
        warn_throttled!(RELEASE, queue = %shared.name, task = %hold.id, error = %e,
            "giving a key slot back failed; it is freed once its holder is judged stale");
    }
}
