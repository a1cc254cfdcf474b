//! Fetching work: pull requests sized to free concurrency slots, and the
//! dispatcher that spawns one [`process`](super::delivery::process) per item.

use super::delivery::process;
use super::lanes::{Claim, Lanes, KEY_BUSY_SKIP, PULL_SPELL};
use super::pull::{Delivery, Puller};
use super::rate;
use super::Shared;
use crate::metrics;
use crate::queue::WORKERS_CONSUMER;
use crate::retry::{LinearPolicy, RetryPolicy};
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long freed slots are gathered into one pull request under load.
const GATHER: Duration = Duration::from_millis(1);
/// Most items asked for in one pull request.
const MAX_BATCH: usize = 256;
/// Most pull requests outstanding at once (the server allows 512 per consumer).
pub(crate) const MAX_PULLS: usize = 32;

/// Pulls and dispatches until `shutdown`; returns once no new item will
/// be started (running ones are tracked by `tracker`).
pub(crate) async fn run(
    shared: Arc<Shared>,
    puller: Puller,
    inbox: async_nats::Subscriber,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    lanes: Option<Arc<Lanes>>,
) {
    let puller = Arc::new(puller);
    let dispatcher = tokio::spawn(dispatch(
        shared.clone(),
        puller.clone(),
        inbox,
        tracker.clone(),
        shutdown.clone(),
    ));
    let claims = lanes.map(|lanes| Claims { lanes, tracker });
    request_work(&shared, &puller, &shutdown, claims.as_ref()).await;
    let _ = dispatcher.await;
}

/// Items of every pull request arrive on one inbox; each runs under the
/// permit its request reserved. Until `stop`, then hands back what is left.
async fn dispatch(
    shared: Arc<Shared>,
    puller: Arc<Puller>,
    mut inbox: async_nats::Subscriber,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut refresh = tokio::time::interval(super::QUEUE_REFRESH);
    refresh.tick().await;
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            m = inbox.next() => match m { Some(m) => m, None => break },
            _ = tick.tick() => { puller.expire(); continue; }
            _ = refresh.tick() => {
                // off the hot path: deliveries keep flowing meanwhile
                let shared = shared.clone();
                tokio::spawn(async move { shared.refresh_queue().await });
                continue;
            }
        };
        match puller.take(&msg) {
            Delivery::Control => {}
            Delivery::Item(permit) => {
                let shared = shared.clone();
                let msg = jetstream::Message {
                    message: msg,
                    context: shared.storage.jetstream().clone(),
                };
                // boxed: the task then holds a pointer, not the few KiB of
                // the delivery's state, which spawning and completing would
                // otherwise copy
                tracker.spawn(Box::pin(async move {
                    process(&shared, msg, permit).await;
                }));
            }
            Delivery::Stray => hand_back(&shared, msg).await,
        }
    }
    // Shutting down: items already received are handed back at once
    // rather than waiting out their ack wait.
    puller.clear();
    while let Some(Some(msg)) = inbox.next().now_or_never() {
        if matches!(puller.take(&msg), Delivery::Stray) {
            hand_back(&shared, msg).await;
        }
    }
}

/// Asks for work as concurrency slots free up, until `shutdown`: one pull
/// request for the slots gathered, backing off while the queue refuses
/// pulls or requests fail.
async fn request_work(
    shared: &Arc<Shared>,
    puller: &Puller,
    shutdown: &CancellationToken,
    claims: Option<&Claims>,
) {
    let concurrency = shared.settings.concurrency;
    let slots = Arc::new(Semaphore::new(concurrency));
    let pulls = Arc::new(Semaphore::new(MAX_PULLS));
    let backoff = LinearPolicy::ten_seconds();
    let batch_target = (concurrency / 2).clamp(1, MAX_BATCH);
    let (mut failures, mut unavailable, mut unexpected) = (0u64, 0u64, 0u64);
    loop {
        if let Some(why) = puller.take_unavailable() {
            unavailable += 1;
            if !wait_for_queue(shared, &why, unavailable, shutdown).await {
                break;
            }
            continue;
        }
        if puller.take_served() {
            if unavailable > 0 || unexpected > 0 {
                tracing::info!(queue = %shared.name, "pull requests are served again");
            }
            (unavailable, unexpected) = (0, 0);
        }
        if let Some(answer) = puller.take_unexpected() {
            // asking again at once would loop: back off, at most one
            // request a second, until a request is served again
            unexpected += 1;
            metrics::poll_error(&shared.name);
            let delay = unavailable_backoff(unexpected);
            tracing::warn!(queue = %shared.name, %answer, retry_in = ?delay,
                "the WORKERS consumer ended a pull request without serving it; asking again later (is WORKERS a pull consumer with its usual settings?)");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            continue;
        }
        let Some(mut permits) = gather_slots(&slots, batch_target, shutdown).await else {
            break;
        };
        let queue = shared.queue();
        if let Some(limit) = &queue.rate_limit {
            match rate::starts(shared, limit, permits.len()).await {
                Ok(n) => permits.truncate(n),
                Err(wait) => {
                    drop(permits);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            }
        }
        if let Some(claims) = claims {
            let wait;
            (permits, wait) = claims.serve(shared, permits).await;
            if wait {
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(KEY_BUSY_SKIP) => {}
                }
                continue;
            }
            if permits.is_empty() {
                continue;
            }
        }
        if puller.is_unavailable() {
            // refused while these slots were gathered: back off first
            continue;
        }
        let pull = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = pulls.clone().acquire_owned() => p.expect("semaphore open"),
        };
        metrics::poll(&shared.name, 1);
        let expires = match queue.rate_limit {
            Some(_) => rate::PULL_EXPIRES,
            None => super::pull::PULL_EXPIRES,
        };
        match puller.request(permits, pull, expires).await {
            Ok(()) => failures = 0,
            Err(e) => {
                metrics::poll_error(&shared.name);
                failures += 1;
                let delay = backoff.duration(failures);
                tracing::warn!(queue = %shared.name, error = %e, ?delay, "pulling work items failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The server refused the last pull (`why`) because the queue's stream or
/// its WORKERS consumer is gone, for the `unavailable`th time in a row:
/// says what is missing, counts it, creates the queue again with the
/// settings it had (a deleted queue would strand every producer of it),
/// and backs off instead of asking again at once (Go busy-loops here).
/// False once `shutdown` is cancelled.
async fn wait_for_queue(
    shared: &Shared,
    why: &str,
    unavailable: u64,
    shutdown: &CancellationToken,
) -> bool {
    metrics::poll_error(&shared.name);
    let delay = unavailable_backoff(unavailable);
    let (missing, recreate) = missing_resource(shared).await;
    if recreate {
        let queue = shared.queue();
        match shared.storage.prepare_queue(&queue).await {
            Ok(q) => {
                tracing::warn!(queue = %shared.name, reason = %why,
                    run_time = ?q.effective_max_run_time(), max_tries = q.max_tries,
                    max_concurrent = q.effective_max_concurrent(), max_entries = q.max_entries,
                    "{missing}; created it again with the settings it had");
                return true;
            }
            Err(e) => {
                tracing::error!(queue = %shared.name, reason = %why, error = %e, retry_in = ?delay,
                    "{missing}, and creating it again failed; trying again");
            }
        }
    } else {
        tracing::error!(queue = %shared.name, reason = %why, retry_in = ?delay,
            "cannot pull work items: {missing}; waiting for it to be fixed");
    }
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// A free slot, and under load the slots freed within a moment, so one
/// pull request asks for several items (idle workers already have their
/// free slots waiting in pull requests, so this adds no latency). `None`
/// once `shutdown` is cancelled.
async fn gather_slots(
    slots: &Arc<Semaphore>,
    target: usize,
    shutdown: &CancellationToken,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        _ = shutdown.cancelled() => return None,
        p = slots.clone().acquire_owned() => p.expect("semaphore open"),
    };
    let mut permits = vec![first];
    let gather_until = tokio::time::Instant::now() + GATHER;
    while permits.len() < target {
        match slots.clone().try_acquire_owned() {
            Ok(p) => permits.push(p),
            Err(_) => {
                match tokio::time::timeout_at(gather_until, slots.clone().acquire_owned()).await {
                    Ok(p) => permits.push(p.expect("semaphore open")),
                    Err(_) => break,
                }
            }
        }
    }
    Some(permits)
}

/// Free slots spent on claimed lane items before pulls (docs/processing.md
/// §2.21, §2.24).
struct Claims {
    lanes: Arc<Lanes>,
    tracker: TaskTracker,
}

impl Claims {
    /// Spends `permits` on claims, each in a task of its own (claims take
    /// a few round trips; in turn they would cap the worker's rate), while
    /// the lanes may hold items; returns the permits left for a pull
    /// request, and whether the worker should wait instead of pulling (the
    /// lanes hold only items whose keys are at their limits). A claim that
    /// finds nothing gives its permit back and holds further claims off a
    /// moment (`Lanes::hold_off_for`).
    async fn serve(
        &self,
        shared: &Arc<Shared>,
        permits: Vec<OwnedSemaphorePermit>,
    ) -> (Vec<OwnedSemaphorePermit>, bool) {
        match self.lanes.held_off() {
            Some(wait) => return (permits, wait),
            None if !self.lanes.may_hold() => return (permits, false),
            None => {}
        }
        for permit in permits {
            let (shared, lanes) = (shared.clone(), self.lanes.clone());
            self.tracker.spawn(Box::pin(async move {
                match lanes.claim(&shared).await {
                    Claim::Item(msg) => process(&shared, *msg, permit).await,
                    Claim::Pull => lanes.hold_off_for(PULL_SPELL, false),
                    Claim::Wait => lanes.hold_off_for(KEY_BUSY_SKIP, true),
                }
            }));
        }
        (Vec::new(), false)
    }
}

/// The wait before pulling again after the `n`th refusal in a row: 1 s,
/// doubling to at most 10 s.
fn unavailable_backoff(n: u64) -> Duration {
    Duration::from_secs(1 << n.saturating_sub(1).min(4)).min(Duration::from_secs(10))
}

/// What is missing, in words, for the log, and whether creating the queue
/// (its stream, its consumer) again fixes it.
async fn missing_resource(shared: &Shared) -> (String, bool) {
    let name = &shared.name;
    match shared.storage.queue_info(name).await {
        Err(crate::Error::QueueNotFound(_)) => (
            format!(
                "queue {name} was deleted (its stream {} does not exist)",
                shared.queue().stream_name()
            ),
            true,
        ),
        Ok(info) if !info.has_consumer => (
            format!("queue {name} has no {WORKERS_CONSUMER} consumer"),
            true,
        ),
        Ok(_) => (
            format!("the {WORKERS_CONSUMER} consumer of queue {name} refused the request"),
            false,
        ),
        Err(e) => (format!("queue {name} cannot be looked up ({e})"), false),
    }
}

/// Returns an item nobody will process to the queue at once.
async fn hand_back(shared: &Shared, msg: async_nats::Message) {
    let msg = jetstream::Message {
        message: msg,
        context: shared.storage.jetstream().clone(),
    };
    if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(error = %e, "handing back a work item failed; it is redelivered after its ack wait");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_back_off_to_ten_seconds() {
        let secs: Vec<u64> = (1..=7).map(|n| unavailable_backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10, 10]);
    }
}
