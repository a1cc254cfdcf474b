//! The one loop of the worker's durable background consumers: released
//! held items (`release.rs`) and max-deliveries advisories
//! (`exhausted.rs`). It reads messages until stopped; when the consumer
//! cannot be loaded, subscribed to or read (its stream deleted, the server
//! restarting, an unexpected answer), it names the failure at WARN, counts
//! it in `background_error_total{loop}`, recreates what it can and tries
//! again after 1 s, doubling to 30 s (docs/processing.md §8).

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::Message;
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest pause between two tries of a failing consumer.
const MOST_BACKOFF: Duration = Duration::from_secs(30);

/// Which consumer a [`consume`] loop reads, for its logs and metric.
pub(crate) struct Consumer<'a> {
    /// The worker's queue.
    pub queue: &'a str,
    /// The `loop` label of `background_error_total`.
    pub loop_name: &'static str,
    /// What it reads, as in "reading {what} failed".
    pub what: &'static str,
    /// What waits meanwhile, as in "…failed; {waits}".
    pub waits: &'static str,
}

/// What a [`consume`] loop reads and does with each message.
pub(crate) trait Source: Send {
    /// Loads (or creates) the durable consumer.
    fn load(&self) -> impl Future<Output = crate::Result<PullConsumer>> + Send;
    /// Recreates the consumer's stream and consumer after `load` failed.
    fn recreate(&self) -> impl Future<Output = crate::Result<()>> + Send;
    /// Handles one message (acknowledging it is up to it).
    fn handle(&mut self, msg: Message) -> impl Future<Output = ()> + Send;
}

/// Reads `source`'s consumer, handing each message to it, until `stop` is
/// cancelled; after a failure to load it, it is recreated before the next
/// try.
pub(crate) async fn consume(c: Consumer<'_>, stop: &CancellationToken, mut source: impl Source) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match source.load().await {
            Ok(consumer) => match consumer.messages().await {
                Ok(mut messages) => loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        next = messages.next() => next,
                    };
                    match next {
                        Some(Ok(msg)) => {
                            backoff = Duration::from_secs(1);
                            source.handle(msg).await;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(queue = %c.queue, error = %e, "reading {} failed; {}", c.what, c.waits);
                            crate::metrics::background_error(c.loop_name);
                            break;
                        }
                        None => {
                            tracing::warn!(queue = %c.queue, "the subscription to {} ended; {}", c.what, c.waits);
                            crate::metrics::background_error(c.loop_name);
                            break;
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(queue = %c.queue, error = %e, "subscribing to {} failed; {}", c.what, c.waits);
                    crate::metrics::background_error(c.loop_name);
                }
            },
            Err(e) => {
                tracing::warn!(queue = %c.queue, error = %e, retry_in = ?backoff,
                    "loading the consumer of {} failed; {}", c.what, c.waits);
                crate::metrics::background_error(c.loop_name);
                // recreated, for example after its stream was deleted
                if let Err(e) = source.recreate().await {
                    tracing::debug!(queue = %c.queue, error = %e, "recreating it failed");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MOST_BACKOFF);
    }
}
