//! Running one handler: its lease (time-out, heartbeats), cancellation at
//! shutdown or by a cancel of its task, panics caught.

use super::outcome::LOG_EVERY;
use super::placement::Stopped;
use super::Shared;
use crate::error::Error;
use crate::handler::{HandlerResult, Lease, TaskContext};
use crate::metrics;
use crate::task::progress::PROGRESS_EVERY;
use crate::task::Task;
use crate::throttle::{warn_throttled, Throttle};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use std::future::Future;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// How a handler run ended.
pub(crate) enum Outcome {
    /// The handler returned.
    Done(HandlerResult),
    /// The handler panicked, with the panic message.
    Panicked(String),
    /// The lease ran out (the queue's run time).
    TimedOut,
    /// The handler's own time-out, of this long, ran out first
    /// (docs/processing.md §2.7).
    HandlerTimedOut(std::time::Duration),
    /// The worker stopped it (grace period over).
    Shutdown,
    /// Its task was cancelled (docs/processing.md §2.16): the token fired,
    /// and the handler returned or was stopped after the cancel grace.
    Cancelled,
}

/// Runs the router's handler for `task` under the queue's run time and
/// the handler's own time-out, when its route has one.
pub(crate) async fn run_handler(
    shared: &Shared,
    task: &mut Task,
    acker: Arc<Acker>,
    traceparent: Option<String>,
    cancelled: &CancellationToken,
) -> Outcome {
    let max_run_time = shared.queue().effective_max_run_time();
    let timeout = shared.router.timeout_for(&task.task_type);
    let lease = Arc::new(Lease::new(max_run_time, Some(acker)).with_timeout(timeout));
    let cancel = shared.hard_stop.child_token();
    let ctx = TaskContext {
        task: Arc::new(task.clone()),
        cancel: cancel.clone(),
        lease: Some(lease.clone()),
        deadline: Some(
            OffsetDateTime::now_utc() + timeout.map_or(max_run_time, |t| t.min(max_run_time)),
        ),
        traceparent: traceparent.clone(),
    };
    metrics::handler_started();
    let started = std::time::Instant::now();
    let span = crate::spans::process(task, traceparent.as_deref());
    let fut =
        tracing::Instrument::instrument(shared.router.dispatch(ctx, task.clone()), span.clone());
    let mut handler = super::placement::start(
        fut,
        &task.task_type,
        &task.id,
        shared.settings.handler_pool.as_ref(),
        &shared.known_types,
    );
    let outcome = supervise(shared, task, &mut handler, &lease, &cancel, cancelled).await;
    // the latest report goes with the outcome's save (docs/processing.md §2.17)
    if let Some(p) = lease.progress.borrow().clone() {
        task.progress = Some(p);
    }
    // a handler that did not return stops here (its task is aborted)
    drop(handler);
    finish_span(&span, &outcome);
    metrics::handler_finished(
        &shared.name,
        &task.task_type,
        started.elapsed().as_secs_f64(),
        !matches!(outcome, Outcome::Done(Ok(_))),
    );
    outcome
}

/// Waits for `handler` under its `lease`: automatic heartbeats (up to the
/// worker's cap), heartbeats the handler sends, the queue's run time raised
/// or lowered while it runs, the lease or the handler's time-out running
/// out (`cancel` then fires) and the worker's hard stop.
///
/// The handler's time-out is fixed at the try's start: heartbeats and a
/// raised run time extend the lease, never the time-out; when both end
/// at once the time-out is named.
async fn supervise(
    shared: &Shared,
    task: &mut Task,
    handler: &mut (impl Future<Output = Result<HandlerResult, Stopped>> + Unpin),
    lease: &Lease,
    cancel: &CancellationToken,
    cancelled: &CancellationToken,
) -> Outcome {
    let started_at = tokio::time::Instant::now();
    let mut max_run_time = lease.run_time();
    let beat_every = max_run_time / 2;
    let hard_cap = shared
        .settings
        .heartbeat_cap
        .map(|cap| tokio::time::Instant::now() + cap.max(max_run_time));
    let mut next_beat = tokio::time::Instant::now() + beat_every;
    // until when the record's `tried` + run time vouches for this try
    let mut recorded_until = started_at + max_run_time;
    let mut run_times = shared.run_time.subscribe();
    let mut fenced = shared.leases.fenced.subscribe();
    let limit = lease.limit;
    let past_limit = || limit.filter(|(at, _)| tokio::time::Instant::now() >= *at);
    let mut progress = lease.progress.subscribe();
    // a report waiting for its save, and the earliest the next may be saved
    let mut progress_due: Option<tokio::time::Instant> = None;
    let mut next_progress = started_at;
    loop {
        let deadline = lease.deadline();
        tokio::select! {
            Ok(()) = progress.changed() => {
                let now = tokio::time::Instant::now();
                if now >= next_progress {
                    save_progress(shared, task, lease, cancelled).await;
                    next_progress = now + PROGRESS_EVERY;
                    progress_due = None;
                } else {
                    progress_due = Some(next_progress);
                }
            }
            _ = tokio::time::sleep_until(progress_due.unwrap_or(deadline)), if progress_due.is_some() => {
                save_progress(shared, task, lease, cancelled).await;
                next_progress = tokio::time::Instant::now() + PROGRESS_EVERY;
                progress_due = None;
            }
            _ = tokio::time::sleep_until(next_beat), if hard_cap.is_some_and(|cap| next_beat < cap) => {
                // automatic heartbeat: keep the item and the lease alive up to the cap
                next_beat += beat_every;
                let cap = hard_cap.expect("checked");
                if heartbeat(task, lease, max_run_time, cap).await {
                    renew_record(shared, task, lease, &mut recorded_until, max_run_time, cancelled).await;
                }
            }
            res = &mut *handler => return match res {
                // it returned after its time-out without the worker seeing
                // it pass (it blocked the thread): its result is not kept
                Ok(_) if past_limit().is_some() => {
                    let (_, timeout) = past_limit().expect("checked");
                    tracing::warn!(task = %task.id, r#type = %task.task_type, ?timeout,
                        "handler returned after its time-out (it blocked its thread past the deadline); its result is not kept");
                    Outcome::HandlerTimedOut(timeout)
                }
                // it returned after its deadline without the worker seeing
                // the deadline pass (it blocked the thread): the run time
                // stands unless the queue's was raised meanwhile
                Ok(_) if tokio::time::Instant::now() > lease.deadline()
                    && Box::pin(raised_run_time(shared, task, lease, started_at, max_run_time)).await.is_none() =>
                {
                    tracing::warn!(task = %task.id, r#type = %task.task_type, run_time = ?max_run_time,
                        "handler returned after its run time (it blocked its thread past the deadline); its result is not kept");
                    Outcome::TimedOut
                }
                Ok(r) => Outcome::Done(r),
                Err(Stopped::Panicked(p)) => Outcome::Panicked(panic_message(&*p)),
                Err(Stopped::Cancelled) => Outcome::Shutdown,
            },
            _ = lease.changed.notified() => {
                renew_record(shared, task, lease, &mut recorded_until, max_run_time, cancelled).await;
            }
            _ = cancelled.cancelled() => {
                cancel.cancel();
                let grace = shared.settings.cancel_grace;
                if tokio::time::timeout(grace, &mut *handler).await.is_err() {
                    tracing::warn!(task = %task.id, r#type = %task.task_type, ?grace,
                        "the cancelled task's handler did not return within the cancel grace; stopping it");
                }
                return Outcome::Cancelled;
            }
            Ok(()) = run_times.changed() => {
                let current = *run_times.borrow_and_update();
                if !follow_run_time(task, lease, &mut recorded_until, max_run_time, current).await {
                    cancel.cancel();
                    return Outcome::TimedOut;
                }
                max_run_time = current;
            }
            _ = tokio::time::sleep_until(limit.map_or(deadline, |(at, _)| at)), if limit.is_some() => {
                cancel.cancel();
                return Outcome::HandlerTimedOut(limit.expect("checked").1);
            }
            _ = tokio::time::sleep_until(deadline) => {
                if lease.deadline() > deadline {
                    continue;
                }
                if let Some((_, timeout)) = past_limit() {
                    cancel.cancel();
                    return Outcome::HandlerTimedOut(timeout);
                }
                match Box::pin(raised_run_time(shared, task, lease, started_at, max_run_time)).await {
                    Some(current) => max_run_time = current,
                    None => {
                        cancel.cancel();
                        return Outcome::TimedOut;
                    }
                }
            }
            _ = shared.hard_stop.cancelled() => return Outcome::Shutdown,
            Ok(()) = fenced.changed() => {
                if *fenced.borrow_and_update() {
                    // the lease is not renewed: others will run this task
                    // again, so this try stops first (rescue.rs)
                    cancel.cancel();
                    return Outcome::Shutdown;
                }
            }
        }
    }
}

/// The queue's run time changed from `was` to `now` while this try runs:
/// the try's deadline follows it, counted from when the record last
/// vouched for the try (its `tried`). Raised, the lease extends and the
/// server is told at once (`+WPI`), so it does not hand the item to another
/// worker at the old ack wait. Lowered, the try stops at its record's
/// `tried` plus the new run time, before another worker may judge it
/// abandoned (`tried` + the run time + a margin; workers keep judging
/// with the higher run time for a while after a lowering, see
/// [`Shared::judging_queue`](super::Shared::judging_queue)). False when
/// that moment has passed: the try stops now.
async fn follow_run_time(
    task: &Task,
    lease: &Lease,
    recorded_until: &mut tokio::time::Instant,
    was: std::time::Duration,
    now: std::time::Duration,
) -> bool {
    if now == was {
        return true;
    }
    let tried_at = recorded_until.checked_sub(was).unwrap_or(*recorded_until);
    let until = tried_at + now;
    *lease.max_run_time.lock().expect("lease lock") = now;
    *recorded_until = until;
    if now > was {
        lease.extend_to(until);
        if let Some(acker) = &lease.acker {
            if let Err(e) = acker.ack_with(AckKind::Progress).await {
                tracing::warn!(task = %task.id, error = %e, "in-progress heartbeat failed");
            }
        }
        tracing::info!(task = %task.id, run_time = ?now, "queue run time raised; extending the running try");
        return true;
    }
    if until <= tokio::time::Instant::now() {
        tracing::info!(task = %task.id, run_time = ?now, "queue run time lowered below what this try has run; stopping it");
        return false;
    }
    if until < lease.deadline() {
        lease.set_deadline(until);
    }
    tracing::info!(task = %task.id, run_time = ?now, "queue run time lowered; the running try stops at the new run time");
    true
}

/// Sends an automatic heartbeat (`+WPI`) and extends the lease by the run
/// time, up to `cap`; false when the heartbeat failed (logged).
async fn heartbeat(
    task: &Task,
    lease: &Lease,
    run_time: std::time::Duration,
    cap: tokio::time::Instant,
) -> bool {
    if let Some(acker) = &lease.acker {
        if let Err(e) = acker.ack_with(AckKind::Progress).await {
            tracing::warn!(task = %task.id, error = %e, "in-progress heartbeat failed");
            return false;
        }
    }
    let extended = (tokio::time::Instant::now() + run_time).min(cap);
    lease.extend_to(extended);
    true
}

/// The lease ran out: the queue's run time may have been raised since this
/// try started. Reads it now and, when it was raised past the time already
/// run, extends the lease and returns the new run time; `None` when the try
/// has timed out.
async fn raised_run_time(
    shared: &Shared,
    task: &Task,
    lease: &Lease,
    started_at: tokio::time::Instant,
    max_run_time: std::time::Duration,
) -> Option<std::time::Duration> {
    let current = match shared.refresh_queue().await {
        Some(q) => q.effective_max_run_time(),
        None => shared.queue().effective_max_run_time(),
    };
    if current > max_run_time {
        let extended = started_at + current;
        if extended > tokio::time::Instant::now() {
            tracing::info!(task = %task.id, run_time = ?current, "queue run time raised; extending the running try");
            lease.extend_to(extended);
            *lease.max_run_time.lock().expect("lease lock") = current;
            return Some(current);
        }
    }
    None
}

/// Ends the `process` span with how the try ended.
fn finish_span(span: &tracing::Span, outcome: &Outcome) {
    match outcome {
        Outcome::Done(Ok(_)) => crate::spans::finish_process(span, "complete", None),
        Outcome::Done(Err(e)) => {
            let kind = if e.is_terminate() {
                "terminated"
            } else {
                "failed"
            };
            crate::spans::finish_process(span, kind, Some(&e.to_string()));
        }
        Outcome::Panicked(m) => crate::spans::finish_process(span, "panicked", Some(m)),
        Outcome::TimedOut => crate::spans::finish_process(
            span,
            "timed_out",
            Some("the handler ran past its run time"),
        ),
        Outcome::HandlerTimedOut(_) => crate::spans::finish_process(
            span,
            "timed_out",
            Some("the handler ran past its time-out"),
        ),
        Outcome::Shutdown => {
            crate::spans::finish_process(span, "interrupted", Some("worker shutting down"))
        }
        Outcome::Cancelled => {
            crate::spans::finish_process(span, "cancelled", Some("the task was cancelled"))
        }
    }
}

/// Keeps the record in step with a lease that heartbeats extended.
/// Others judge a running try by its record (`tried` + the queue's run
/// time): a redelivered or duplicate item, and the max-deliveries reaper,
/// treat a try past that as abandoned. Once less than half of the recorded
/// lease is left and the heartbeat extended past it, `tried` is moved to
/// now and saved (so at most one save per half run time). A failed save is
/// logged; a conflicting one shows up when the outcome is saved, and when
/// the record it met is a cancel's, `cancelled` fires (a cancel notice
/// this worker missed, worker/cancel.rs).
async fn renew_record(
    shared: &Shared,
    task: &mut Task,
    lease: &Lease,
    recorded_until: &mut tokio::time::Instant,
    max_run_time: std::time::Duration,
    cancelled: &CancellationToken,
) {
    let now = tokio::time::Instant::now();
    let deadline = lease.deadline();
    if deadline <= *recorded_until || now + max_run_time / 2 < *recorded_until {
        return;
    }
    task.tried = Some(shared.storage.clock().now());
    match shared.storage.save_task(task).await {
        Ok(()) => {
            *recorded_until = now + max_run_time;
            shared.leases.holds(&task.id, task.seq);
        }
        Err(Error::ConcurrentUpdate(_)) => {
            changed_under(shared, task, cancelled, "recording the extended lease").await;
        }
        Err(e) => {
            tracing::warn!(task = %task.id, error = %e, "recording the extended lease failed");
        }
    }
}

/// A save of the running try's record met a newer one: when that record
/// is final (a cancel's notice this worker missed, worker/cancel.rs, or
/// any other end) this try's outcome could never stand, so `cancelled`
/// fires; otherwise the change is logged and shows up when the outcome is
/// saved.
async fn changed_under(shared: &Shared, task: &Task, cancelled: &CancellationToken, what: &str) {
    let current = shared.storage.load_task(&task.id).await;
    if current.is_ok_and(|t| t.state.is_final()) {
        cancelled.cancel();
    } else {
        tracing::warn!(task = %task.id, "{what} failed: the task changed while this try runs");
    }
}

/// Saves the handler's latest progress report on the running try's record
/// (docs/processing.md §2.17); a failed save is logged (at most every
/// [`LOG_EVERY`]) and the next report tries again.
async fn save_progress(
    shared: &Shared,
    task: &mut Task,
    lease: &Lease,
    cancelled: &CancellationToken,
) {
    let latest = lease.progress.borrow().clone();
    if latest.is_none() || latest == task.progress {
        return;
    }
    let before = std::mem::replace(&mut task.progress, latest);
    match shared.storage.save_task(task).await {
        Ok(()) => shared.leases.holds(&task.id, task.seq),
        Err(e) => {
            task.progress = before;
            if let Error::ConcurrentUpdate(_) = e {
                changed_under(shared, task, cancelled, "saving the task's progress").await;
            } else {
                static PROGRESS: Throttle = Throttle::new(LOG_EVERY);
                warn_throttled!(PROGRESS, task = %task.id, error = %e, "saving the task's progress failed");
            }
        }
    }
}

/// The message of a caught panic (`&str` or `String` payloads).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}
