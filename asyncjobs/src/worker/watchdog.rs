//! Names a handler that blocks the thread it is polled on
//! (docs/processing.md §2.7).
//!
//! An `async fn` handler that calls blocking code (`std::thread::sleep`, a
//! synchronous client, driver or file call) holds its thread for the whole
//! call: on the worker's thread, every other handler, pull, save and ack
//! of that worker waits. CPU accounting cannot see it (a blocked thread
//! uses none), so each thread that polls handlers in place has a slot
//! saying since when it polls which handler, and one watchdog thread looks
//! at the slots every [`LOOK_EVERY`]: a poll older than [`BLOCKED_AFTER`]
//! is logged at WARN with the handler's type and task, while it still
//! blocks, and one older than [`MARK_AFTER`] is told to the handler
//! ([`Watched::blocks`]: `placement.rs` then gives its type's later tasks
//! a thread each), also while it still blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A poll held this long is reported while it still blocks.
pub(crate) const BLOCKED_AFTER: Duration = Duration::from_secs(1);
/// A poll held this long is told to its handler while it still blocks.
pub(crate) const MARK_AFTER: Duration = Duration::from_millis(100);
/// How often the watchdog looks.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// A handler the watchdog watches.
pub(crate) trait Watched: Send + Sync {
    /// `<type> (task <id>)`.
    fn name(&self) -> &str;
    /// One of its polls has held its thread for `held` and still does
    /// (called once per such poll, from the watchdog's thread).
    fn blocks(&self, held: Duration);
}

/// One thread's poll in progress.
#[derive(Default)]
pub(crate) struct Slot {
    /// When the poll started, in ms since [`epoch`] + 1; 0: not polling.
    started: AtomicU64,
    /// The start already reported (so each blocked poll is reported once).
    reported: AtomicU64,
    /// The start already told to the handler.
    told: AtomicU64,
    /// The handler polled.
    what: Mutex<Option<Arc<dyn Watched>>>,
    thread: String,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn slots() -> &'static Mutex<Vec<Arc<Slot>>> {
    static SLOTS: OnceLock<Mutex<Vec<Arc<Slot>>>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("asyncjobs-watchdog".into())
            .spawn(watch);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the handler watchdog; blocking handlers are named only after they return");
        }
        Mutex::default()
    })
}

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot {
            thread: std::thread::current().name().unwrap_or("unnamed").to_string(),
            ..Slot::default()
        });
        slots().lock().unwrap_or_else(|p| p.into_inner()).push(slot.clone());
        slot
    };
}

/// Marks the start of a poll of the handler `what` on this thread; the
/// returned guard marks its end.
pub(crate) fn polling<W: Watched + 'static>(what: &Arc<W>) -> PollGuard {
    SLOT.with(|slot| {
        let what: Arc<dyn Watched> = what.clone();
        *slot.what.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
        let now = epoch().elapsed().as_millis() as u64 + 1;
        slot.started.store(now, Ordering::Release);
        PollGuard(slot.clone())
    })
}

/// Ends a poll's watch when dropped.
pub(crate) struct PollGuard(Arc<Slot>);

impl Drop for PollGuard {
    fn drop(&mut self) {
        self.0.started.store(0, Ordering::Release);
    }
}

fn watch() {
    loop {
        std::thread::sleep(LOOK_EVERY);
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let slots = slots().lock().unwrap_or_else(|p| p.into_inner()).clone();
        for slot in slots {
            let started = slot.started.load(Ordering::Acquire);
            let held = Duration::from_millis(now.saturating_sub(started));
            if started == 0 || held < MARK_AFTER {
                continue;
            }
            let Some(what) = slot.what.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
                continue;
            };
            if slot.told.swap(started, Ordering::AcqRel) != started {
                what.blocks(held);
            }
            if held < BLOCKED_AFTER || slot.reported.swap(started, Ordering::AcqRel) == started {
                continue;
            }
            crate::metrics::background_error("handler_blocking");
            tracing::warn!(handler = %what.name(), thread = %slot.thread, ?held,
                "a handler has held its thread in one poll and still does: it calls blocking code (std::thread::sleep, a synchronous client, driver or file call) in an async fn, and everything else polled on this thread waits for it; wrap such calls in tokio::task::spawn_blocking");
        }
    }
}
