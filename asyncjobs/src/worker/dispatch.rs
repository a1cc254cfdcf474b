//! Fetching work: pull requests sized to free concurrency slots, and the
//! dispatcher that spawns one [`process`](super::delivery::process) per item.

use super::delivery::process;
use super::pull::{Delivery, Puller};
use super::Shared;
use crate::metrics;
use crate::queue::WORKERS_CONSUMER;
use crate::retry::{LinearPolicy, RetryPolicy};
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long freed slots are gathered into one pull request under load.
const GATHER: Duration = Duration::from_millis(1);
/// Most items asked for in one pull request.
const MAX_BATCH: usize = 256;
/// Most pull requests outstanding at once (the server allows 512 per consumer).
const MAX_PULLS: usize = 32;

/// Pulls and dispatches until `shutdown`; returns once no new item will
/// be started (running ones are tracked by `tracker`).
pub(crate) async fn run(
    shared: Arc<Shared>,
    puller: Puller,
    mut inbox: async_nats::Subscriber,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let concurrency = shared.settings.concurrency;
    let puller = Arc::new(puller);
    let slots = Arc::new(Semaphore::new(concurrency));
    let pulls = Arc::new(Semaphore::new(MAX_PULLS));
    let backoff = LinearPolicy::ten_seconds();
    let mut failures = 0u64;

    // Items of every pull request arrive on one inbox; each runs under a
    // permit its request reserved.
    let dispatcher = {
        let (shared, puller, tracker, stop) = (
            shared.clone(),
            puller.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
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
                        // boxed: the task then holds a pointer, not the
                        // few KiB of the delivery's state, which spawning
                        // and completing would otherwise copy
                        tracker.spawn(Box::pin(async move {
                            process(&shared, msg, permit).await;
                        }));
                    }
                    Delivery::Stray => hand_back(&shared, msg).await,
                }
            }
            // Shutting down: items already received are handed back at
            // once rather than waiting out their ack wait.
            puller.clear();
            while let Some(Some(msg)) = inbox.next().now_or_never() {
                if matches!(puller.take(&msg), Delivery::Stray) {
                    hand_back(&shared, msg).await;
                }
            }
        })
    };

    let batch_target = (concurrency / 2).clamp(1, MAX_BATCH);
    let mut unavailable = 0u64;
    loop {
        // The server refused the last pull because the queue's stream or
        // its WORKERS consumer is gone: say what is missing, count it and
        // back off instead of asking again at once (Go busy-loops here).
        if let Some(why) = puller.take_unavailable() {
            unavailable += 1;
            metrics::poll_error(&shared.name);
            let delay = unavailable_backoff(unavailable);
            let missing = missing_resource(&shared).await;
            tracing::error!(queue = %shared.name, reason = %why, retry_in = ?delay,
                "cannot pull work items: {missing}; waiting for it to be recreated");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            continue;
        }
        if unavailable > 0 {
            tracing::info!(queue = %shared.name, "pulling work items again");
            unavailable = 0;
        }
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("semaphore open"),
        };
        // Under load, gather the slots freed within a moment so one pull
        // request asks for several items (idle workers already have their
        // free slots waiting in pull requests, so this adds no latency).
        let mut permits = vec![first];
        let gather_until = tokio::time::Instant::now() + GATHER;
        while permits.len() < batch_target {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => {
                    match tokio::time::timeout_at(gather_until, slots.clone().acquire_owned()).await
                    {
                        Ok(p) => permits.push(p.expect("semaphore open")),
                        Err(_) => break,
                    }
                }
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
        match puller.request(permits, pull).await {
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
    let _ = dispatcher.await;
}

/// The wait before pulling again after the `n`th refusal in a row: 1 s,
/// doubling to at most 10 s.
fn unavailable_backoff(n: u64) -> Duration {
    Duration::from_secs(1 << n.saturating_sub(1).min(4)).min(Duration::from_secs(10))
}

/// What is missing, in words, for the log.
async fn missing_resource(shared: &Shared) -> String {
    let name = &shared.name;
    match shared.storage.queue_info(name).await {
        Err(crate::Error::QueueNotFound(_)) => {
            format!(
                "queue {name} was deleted (its stream {} does not exist)",
                shared.queue().stream_name()
            )
        }
        Ok(info) if !info.has_consumer => {
            format!("queue {name} has no {WORKERS_CONSUMER} consumer")
        }
        Ok(_) => format!("the {WORKERS_CONSUMER} consumer of queue {name} refused the request"),
        Err(e) => format!("queue {name} cannot be looked up ({e})"),
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
