//! Cancel notices: the running try of a cancelled task stops
//! (docs/processing.md §2.16).
//!
//! [`Client::cancel_task`](crate::Client::cancel_task) saves the task
//! `terminated` first, then publishes a notice on
//! `CHORIA_AJ.CANCEL.<queue>.<id>`. Each worker of the queue listens; the
//! one running the task fires that try's cancel ([`Cancels`]), and the
//! supervisor (`execute.rs`) fires the handler's token, waits the cancel
//! grace and stops it. A notice that is missed (the worker was cut off)
//! delays only the stop: every [`CANCEL_CHECK_EVERY`] the records of tries
//! running that long are read, a lease renewal that meets the cancel stops
//! the try too, and the try's outcome meets the cancelled record and is
//! dropped.

use super::Shared;
use crate::task::cancel::CANCEL_SUBJECT_PREFIX;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often a worker reads the records of its tries running this long
/// or longer, to stop one whose cancel notice it missed.
pub(crate) const CANCEL_CHECK_EVERY: Duration = Duration::from_secs(10);

/// The default of [`Worker::cancel_grace`](crate::Worker::cancel_grace).
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(10);

/// The tries of this worker a cancel can stop, by task id.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    running: Mutex<HashMap<String, Entry>>,
    next: AtomicU64,
}

/// One watched try: its number (told apart from a later try of the same
/// task), its cancel and when it started.
#[derive(Debug)]
struct Entry {
    n: u64,
    token: CancellationToken,
    started: Instant,
}

impl Cancels {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches for a cancel of `id` until the returned guard drops: taken
    /// before the try's `active` save, so a notice sent after the cancel
    /// read that record is never missed.
    pub(crate) fn watch(&self, id: &str) -> Watched<'_> {
        let token = CancellationToken::new();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.running().insert(
            id.to_string(),
            Entry {
                n,
                token: token.clone(),
                started: Instant::now(),
            },
        );
        Watched {
            cancels: self,
            id: id.to_string(),
            n,
            token,
        }
    }

    /// The tries running at least `for_at_least`, not yet cancelled.
    fn long_running(&self, for_at_least: Duration) -> Vec<String> {
        self.running()
            .iter()
            .filter(|(_, e)| e.started.elapsed() >= for_at_least && !e.token.is_cancelled())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Fires the cancel of the try of `id`; whether this worker runs one.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        match self.running().get(id) {
            Some(entry) => {
                entry.token.cancel();
                true
            }
            None => false,
        }
    }
}

/// A try watched for a cancel; unwatched when dropped.
pub(crate) struct Watched<'a> {
    cancels: &'a Cancels,
    id: String,
    n: u64,
    /// Fires when the task is cancelled.
    pub token: CancellationToken,
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        let mut running = self.cancels.running();
        // a later try of the same id may have replaced this one's entry
        if running.get(&self.id).is_some_and(|e| e.n == self.n) {
            running.remove(&self.id);
        }
    }
}

/// Subscribes to the queue's cancel notices; the returned task forwards
/// them to [`Cancels`] until `stop`. `None` (logged) when the subscription
/// cannot be made: cancels then stop nothing on this worker, and a
/// cancelled try's outcome is still dropped.
pub(crate) async fn listen(
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let prefix = format!("{CANCEL_SUBJECT_PREFIX}{}.", shared.name);
    let mut notices = match shared.storage.nats().subscribe(format!("{prefix}*")).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(queue = %shared.name, error = %e,
                "cannot listen for cancel notices: a cancelled task's running handler is not stopped on this worker (its outcome is still dropped)");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let mut check = tokio::time::interval(CANCEL_CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let notice = tokio::select! {
                _ = stop.cancelled() => break,
                _ = check.tick() => {
                    missed(&shared).await;
                    continue;
                }
                n = notices.next() => match n {
                    Some(n) => n,
                    None => break,
                },
            };
            let Some(id) = notice.subject.as_str().strip_prefix(&prefix) else {
                continue;
            };
            if shared.cancels.cancel(id) {
                let by = String::from_utf8_lossy(&notice.payload);
                tracing::info!(task = %id, by = %by, grace = ?shared.settings.cancel_grace,
                    "the running task was cancelled; stopping its handler");
            }
        }
        let _ = notices.unsubscribe().await;
    }))
}

/// Stops the tries, running for [`CANCEL_CHECK_EVERY`] or longer, whose
/// record is final although no notice came (a cancel sent while this
/// worker was cut off): their outcome could never stand. One record read
/// per such try per check.
async fn missed(shared: &Shared) {
    for id in shared.cancels.long_running(CANCEL_CHECK_EVERY) {
        let Ok(t) = shared.storage.load_task(&id).await else {
            continue;
        };
        if t.state.is_final() && shared.cancels.cancel(&id) {
            tracing::info!(task = %id, last_err = %t.last_err,
                "the running task's record is final (a cancel whose notice did not reach this worker); stopping its handler");
        }
    }
}
