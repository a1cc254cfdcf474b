//! Work items the server stopped delivering. When a `WORKERS` delivery
//! count reaches the consumer's `max_deliver` and the last delivery is
//! not acknowledged (its worker died mid-try, or a Go worker kept NAKing),
//! JetStream never delivers the item again, so no delivery can rerun or
//! expire its task. The server announces it with a max-deliveries
//! advisory, which [`EXHAUSTED_STREAM`](crate::storage::EXHAUSTED_STREAM)
//! keeps until a worker of the queue reads it here, even one started
//! later: a task still claiming to wait or run is saved `expired`, and the
//! dead item is removed from the queue.

use super::gates::{self, Gate};
use super::outcome::save_with_retries;
use super::Shared;
use crate::error::Error;
use crate::metrics;
use crate::task::TaskState;
use async_nats::jetstream::AckKind;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long to wait before looking at an advisory again after a
/// transient failure.
const LATER: Duration = Duration::from_secs(5);

/// The fields of `io.nats.jetstream.advisory.v1.max_deliver` used here.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    /// The item's sequence in the queue's stream.
    stream_seq: u64,
    /// How many times it was delivered.
    #[serde(default)]
    deliveries: u64,
}

/// What became of one advisory.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Handled: acknowledge the advisory.
    Done,
    /// Look again after this long (a running try's lease, a transient failure).
    Later(Duration),
}

/// Reads the queue's advisories until `stop` is cancelled (`consume.rs`
/// recreates a failing subscription).
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let consumer = super::consume::Consumer {
        queue: &shared.name,
        loop_name: "exhausted",
        what: "max-deliveries advisories",
        waits: "items the server stopped delivering wait until it is back",
    };
    super::consume::consume(consumer, &stop, Reaper(shared.clone())).await;
}

/// The max-deliveries advisories' consumer, for `consume.rs`.
struct Reaper(Arc<Shared>);

impl super::consume::Source for Reaper {
    async fn load(&self) -> crate::Result<async_nats::jetstream::consumer::PullConsumer> {
        self.0.storage.exhausted_consumer(&self.0.name).await
    }

    async fn recreate(&self) -> crate::Result<()> {
        self.0.storage.prepare_exhausted(&self.0.name).await
    }

    async fn handle(&mut self, msg: async_nats::jetstream::Message) {
        let ack = match handle(&self.0, &msg.payload).await {
            Verdict::Done => msg.double_ack().await,
            Verdict::Later(d) => msg.ack_with(AckKind::Nak(Some(d))).await,
        };
        if let Err(e) = ack {
            tracing::warn!(queue = %self.0.name, error = %e, "acknowledging a max-deliveries advisory failed");
        }
    }
}

/// Ends the task of one exhausted item.
async fn handle(shared: &Shared, payload: &[u8]) -> Verdict {
    let advisory: MaxDeliveries = match serde_json::from_slice(payload) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(queue = %shared.name, error = %e, "ignoring an undecodable max-deliveries advisory");
            return Verdict::Done;
        }
    };
    let storage = &shared.storage;
    tracing::debug!(queue = %shared.name, ?advisory, "max-deliveries advisory");
    let seq = advisory.stream_seq;
    let id = match storage.item_at(&shared.name, seq).await {
        Ok(Some(id)) => id,
        // acknowledged after all, replaced or purged: nothing is stranded
        Ok(None) => return Verdict::Done,
        Err(e) => {
            tracing::warn!(queue = %shared.name, seq, error = %e, "loading an exhausted work item failed");
            return Verdict::Later(LATER);
        }
    };
    let mut task = match storage.load_task(&id).await {
        Ok(t) => t,
        Err(Error::TaskNotFound(_) | Error::InvalidTaskRecord { .. }) => {
            return remove(shared, seq, &id).await;
        }
        Err(e) => {
            tracing::warn!(queue = %shared.name, task = %id, error = %e, "loading the task of an exhausted work item failed");
            return Verdict::Later(LATER);
        }
    };
    if !task.state.is_final() {
        let queue = shared.judging_queue();
        let abandoned = match gates::gate(&task, &queue, shared.storage.clock().now()) {
            // a try may still finish within its lease: look again after it
            Gate::LeaseHeld(remaining) => return Verdict::Later(remaining),
            Gate::Run { stale } => stale,
            _ => task.state == TaskState::Active,
        };
        // a task passed on for want of a handler says so (`unhandled.rs`)
        let waited = super::decide::waited_for(&task.last_err)
            .map(|w| format!(", while {w}"))
            .unwrap_or_default();
        task.state = TaskState::Expired;
        task.last_err = format!(
            "exceeded maximum tries: the work item was delivered {} times, the queue's limit, without an outcome{}{waited}",
            advisory.deliveries,
            if abandoned {
                " (the last try's worker stopped before recording one)"
            } else {
                ""
            }
        );
        match save_with_retries(shared, &mut task).await {
            Ok(()) => {
                metrics::past_max_tries(&shared.name);
                tracing::error!(queue = %shared.name, task = %id, deliveries = advisory.deliveries,
                    "the work item's deliveries ran out without an outcome; the task is expired");
            }
            // changed meanwhile: judge it again
            Err(Error::ConcurrentUpdate(_)) => return Verdict::Later(Duration::from_millis(100)),
            Err(e) => {
                tracing::warn!(queue = %shared.name, task = %id, error = %e, "saving the task of an exhausted work item failed");
                return Verdict::Later(LATER);
            }
        }
    }
    remove(shared, seq, &id).await
}

/// Removes the dead item from the queue.
async fn remove(shared: &Shared, seq: u64, id: &str) -> Verdict {
    match shared.storage.delete_item_at(&shared.name, seq).await {
        Ok(()) => Verdict::Done,
        Err(e) => {
            tracing::warn!(queue = %shared.name, task = %id, seq, error = %e, "removing an exhausted work item failed");
            Verdict::Later(LATER)
        }
    }
}
