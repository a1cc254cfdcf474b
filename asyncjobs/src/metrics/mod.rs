//! Prometheus metrics with the names, types and labels of the Go
//! implementation (docs/processing.md §8).
//!
//! With the `metrics` feature (on by default) every metric lives in one
//! `prometheus::Registry` returned by `registry`; register it with your own
//! exporter or gather it directly (`register_in`, `render`), or let
//! `serve` answer Prometheus scrapes over HTTP. Without the feature the
//! runtime records nothing and the prometheus crate is not compiled.
//!
//! **Task types are bounded.** Metrics labelled with a task `type`
//! (`handler_runtime`, `handler_error_total`, the scheduler's
//! `scheduled_count` and `schedule_error_count`) keep the name of the first
//! [`MAX_TASK_TYPES`] distinct types each family sees in this process; any
//! later type is counted under `type="other"` ([`OTHER_TASK_TYPE`]), so a
//! catch-all handler seeing thousands of types cannot create thousands of
//! series. Nothing is lost from the totals. Go labels every type.
//!
//! To feed these metrics into an OpenTelemetry pipeline, scrape the
//! endpoint with the OpenTelemetry Collector's `prometheus` receiver.

#[cfg(feature = "metrics")]
mod endpoint;
#[cfg(feature = "metrics")]
mod prom;

#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
#[cfg(feature = "metrics")]
pub use endpoint::serve;
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
#[cfg(feature = "metrics")]
pub use prom::{register_in, registry, render};

/// How many distinct task types each metric family labels by name; later
/// types are counted under [`OTHER_TASK_TYPE`].
pub const MAX_TASK_TYPES: usize = 100;

/// The `type` label under which task types beyond [`MAX_TASK_TYPES`] are
/// counted.
pub const OTHER_TASK_TYPE: &str = "other";

/// Declares each recorder once: it forwards to the Prometheus side when
/// the `metrics` feature is on and does nothing otherwise.
macro_rules! recorders {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*); )*) => {$(
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(feature = "metrics")]
            prom::$name($($arg),*);
            #[cfg(not(feature = "metrics"))]
            let _ = ($($arg,)*);
        }
    )*};
}

recorders! {
    /// A work item was published.
    fn enqueue(queue: &str);
    /// Publishing a work item failed.
    fn enqueue_error(queue: &str);
    /// A delivered work item could not be read.
    fn item_corrupt(queue: &str);
    /// The task of a delivered work item could not be loaded.
    fn task_not_found(queue: &str);
    /// A delivered task was past its deadline.
    fn past_deadline(queue: &str);
    /// A delivered task had used all its tries.
    fn past_max_tries(queue: &str);
    /// Pull requests sent.
    fn poll(queue: &str, n: u64);
    /// A pull request failed.
    fn poll_error(queue: &str);
    /// A background loop (`exhausted`, `release`, `presence`,
    /// `scheduler_watch`, `election`, `lease`, `dependants`), an event
    /// watcher (`events`) or a request-reply service (`request_reply`) met
    /// an unexpected server answer, the server sent an error on a
    /// connection (`connection`), or a handler blocked its thread
    /// (`handler_blocking`).
    fn background_error(task: &str);
    /// A try of a dead worker was handed back (`worker/rescue.rs`).
    fn task_rescued(queue: &str);
    /// A worker asked the queue's rate limit for starts and was told to
    /// wait (`true`) or granted some.
    fn rate_limited(queue: &str, waited: bool);
    /// A worker claimed an item of a lane out of arrival order.
    fn lane_claimed(queue: &str, lane: crate::queue::lane::Lane);
    /// A task record was saved in `state`.
    fn task_update(state: crate::task::TaskState);
    /// Saving a task record failed.
    fn task_update_error();
    /// A task became unreachable because a dependency failed.
    fn dependencies_failed();
    /// A handler started.
    fn handler_started();
    /// A handler finished after `seconds`.
    fn handler_finished(queue: &str, task_type: &str, seconds: f64, failed: bool);
    /// An election started campaigning every `interval`.
    fn election_started(election: &str, identity: &str, interval: std::time::Duration);
    /// A campaign was made in `role` (`leader` or `candidate`).
    fn election_campaign(election: &str, identity: &str, role: &str);
    /// Leadership was won (`true`) or lost.
    fn election_leader(election: &str, identity: &str, leader: bool);
    /// The scheduler paused (not the leader) or resumed.
    fn scheduler_paused(paused: bool);
    /// Schedules were added (positive) or removed (negative).
    fn scheduler_schedules_changed(by: i64);
    /// The scheduler created a task.
    fn scheduler_scheduled(task_type: &str, queue: &str);
    /// The scheduler could not create a task.
    fn scheduler_error(task_type: &str, queue: &str);
}
