//! Blocked tasks released as soon as the dependency they wait for ends
//! (docs/processing.md §2.5).
//!
//! A blocked task whose dependencies are not all finished waits in a held
//! item due after the dependency poll. The worker that judged it also
//! subscribes to the task state events (docs/storage.md §8.5) of the
//! first unfinished dependency; when that one reaches a final state, it
//! releases the held item at once (`Storage::release_held_now`), so the
//! dependant is judged again about as fast as an ordinary enqueue. The
//! held item's schedule stays the fallback when the event is missed (this
//! worker stopped, a publisher that sends no events, a lost core NATS
//! message).
//!
//! Unexpected server answers (a subscribe refused, a subscription that
//! ends, a message that is not an event, a release refused) are logged at
//! WARN (at most one line per [`LOG_EVERY`] per kind) and counted in
//! `background_error_total{loop="dependants"}` (docs/processing.md §8).
//! A watch that failed is forgotten, so the dependant's next judgement
//! (every dependency poll) makes it again.

use super::outcome::LOG_EVERY;
use crate::events::{TaskStateChangeEvent, TASK_STATE_SUBJECT_PREFIX};
use crate::storage::Storage;
use crate::throttle::{warn_throttled, Throttle};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a registration lasts without being renewed: a dependant that
/// is judged again (every dependency poll) renews it; one that ran, was
/// deleted or moved to another worker's watch is forgotten after this.
const FORGET_AFTER_POLLS: u32 = 3;

/// The `loop` label of `background_error_total` for these watches.
const LOOP: &str = "dependants";

/// The dependencies this worker watches, each with the dependants (task
/// ids of this worker's queue) to release when it ends.
#[derive(Debug)]
pub(crate) struct Watches {
    storage: Storage,
    /// The worker's queue (its dependants' queue).
    queue: String,
    /// The dependency poll (`Worker::dependency_poll_interval`).
    poll: Duration,
    deps: Mutex<HashMap<String, Watch>>,
}

#[derive(Debug)]
struct Watch {
    /// Dependant id → when it was last registered.
    dependants: HashMap<String, Instant>,
    stop: CancellationToken,
}

impl Watches {
    pub(crate) fn new(storage: Storage, queue: String, poll: Duration) -> Self {
        Self {
            storage,
            queue,
            poll,
            deps: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watch>> {
        self.deps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops every watch (the worker stops).
    pub(crate) fn stop_all(&self) {
        for (_, w) in self.lock().drain() {
            w.stop.cancel();
        }
    }

    /// Takes the dependants waiting for `dep` and ends its watch.
    fn take(&self, dep: &str) -> Vec<String> {
        match self.lock().remove(dep) {
            Some(w) => {
                w.stop.cancel();
                w.dependants.into_keys().collect()
            }
            None => Vec::new(),
        }
    }

    /// Forgets registrations not renewed within `ttl`; ends the watch of
    /// `dep` when none is left. Whether it still has dependants.
    fn prune(&self, dep: &str, ttl: Duration) -> bool {
        let mut deps = self.lock();
        let Some(w) = deps.get_mut(dep) else {
            return false;
        };
        w.dependants.retain(|_, at| at.elapsed() < ttl);
        if w.dependants.is_empty() {
            if let Some(w) = deps.remove(dep) {
                w.stop.cancel();
            }
            return false;
        }
        true
    }
}

/// Releases `dependant` (of this worker's queue) when `dep` ends. Called
/// after its held item was published. Subscribes first and then reads
/// `dep` once, so an end between the judgement and the subscription is
/// not missed.
pub(crate) async fn watch(watches: &Arc<Watches>, dep: &str, dependant: &str) {
    let fresh = {
        let mut deps = watches.lock();
        match deps.get_mut(dep) {
            Some(w) => {
                w.dependants.insert(dependant.to_string(), Instant::now());
                None
            }
            None => {
                let stop = CancellationToken::new();
                deps.insert(
                    dep.to_string(),
                    Watch {
                        dependants: HashMap::from([(dependant.to_string(), Instant::now())]),
                        stop: stop.clone(),
                    },
                );
                Some(stop)
            }
        }
    };
    let Some(stop) = fresh else {
        return;
    };
    let subject = format!("{TASK_STATE_SUBJECT_PREFIX}{dep}");
    let sub = match watches.storage.nats().subscribe(subject).await {
        Ok(sub) => sub,
        Err(e) => {
            static REFUSED: Throttle = Throttle::new(LOG_EVERY);
            warn_throttled!(REFUSED, %dep, error = %e, "cannot watch a dependency; its dependants wait for the poll");
            crate::metrics::background_error(LOOP);
            watches.take(dep);
            return;
        }
    };
    tokio::spawn(follow(watches.clone(), dep.to_string(), sub, stop));
    if ended(&watches.storage, dep).await {
        release(watches, dep).await;
    }
}

/// Whether `dep` is final or gone (then its dependants are judged again).
async fn ended(storage: &Storage, dep: &str) -> bool {
    match storage.load_task(dep).await {
        Ok(task) => task.state.is_final(),
        Err(crate::error::Error::TaskNotFound(_)) => true,
        Err(_) => false,
    }
}

/// Follows `dep`'s events until it ends or no dependant waits any more.
async fn follow(
    watches: Arc<Watches>,
    dep: String,
    mut sub: async_nats::Subscriber,
    stop: CancellationToken,
) {
    let ttl = watches.poll * FORGET_AFTER_POLLS;
    let mut tick = tokio::time::interval(watches.poll.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if !watches.prune(&dep, ttl) {
                    return;
                }
            }
            msg = sub.next() => {
                let Some(msg) = msg else {
                    static ENDED: Throttle = Throttle::new(LOG_EVERY);
                    warn_throttled!(ENDED, %dep, "a dependency's event subscription ended; its dependants wait for the poll");
                    crate::metrics::background_error(LOOP);
                    // forgotten, so the next judgement watches it again
                    watches.take(dep.as_str());
                    return;
                };
                let final_state = match serde_json::from_slice::<TaskStateChangeEvent>(&msg.payload) {
                    Ok(e) => e.state.is_final(),
                    Err(e) => {
                        static UNREADABLE: Throttle = Throttle::new(LOG_EVERY);
                        warn_throttled!(UNREADABLE, %dep, subject = %msg.subject, error = %e,
                            "a message on a dependency's event subject is not an event");
                        crate::metrics::background_error(LOOP);
                        false
                    }
                };
                if final_state {
                    release(&watches, &dep).await;
                    return;
                }
            }
        }
    }
}

/// Releases every dependant waiting for `dep`.
async fn release(watches: &Watches, dep: &str) {
    let dependants: HashSet<String> = watches.take(dep).into_iter().collect();
    for id in dependants {
        let dedupe = format!("{id}.after.{dep}");
        match watches
            .storage
            .release_held_now(&watches.queue, &id, &dedupe)
            .await
        {
            Ok(()) => tracing::debug!(task = %id, %dep, "dependency ended; released the dependant"),
            Err(e) => {
                static RELEASE: Throttle = Throttle::new(LOG_EVERY);
                warn_throttled!(RELEASE, task = %id, %dep, error = %e,
                    "releasing a dependant failed; it waits for the dependency poll");
                crate::metrics::background_error(LOOP);
            }
        }
    }
}
