//! Enqueueing: the task record first, then its work item, riding out
//! leaderless streams, and marking the task `queue_error` when the queue
//! does not take the item (docs/storage.md).

use super::Due;
use super::TASKS_STREAM;
use super::{api, Storage, HELD_STREAM};
use crate::error::{nats, Error, Result};
use crate::queue::lane::Lane;
use crate::queue::{validate_queue_name, QUEUE_STREAM_PREFIX};
use crate::task::{Task, TaskState};
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;

impl Storage {
    /// Saves the task into `queue` and publishes its work item (docs/storage.md §10.2).
    ///
    /// A publish answered "no responders" while its stream exists (a
    /// cluster electing a new stream leader after a node died, which takes
    /// seconds) is sent again, pausing 100 ms doubling to 1 s, for up to
    /// [`LEADERLESS_PATIENCE`]; "no responders" is never stored, so
    /// sending again cannot duplicate. A stream the server says does not
    /// exist fails at once.
    pub(crate) async fn enqueue(&self, queue: &str, task: &mut Task) -> Result<()> {
        if let Some(unique) = task.unique.clone() {
            return Box::pin(self.enqueue_unique(queue, task, unique)).await;
        }
        self.enqueue_plain(queue, task).await
    }

    /// [`Storage::enqueue`] without a unique key.
    pub(super) async fn enqueue_plain(&self, queue: &str, task: &mut Task) -> Result<()> {
        // a retried task's earlier item may still be in the dedupe window
        let dedupe = task.state != TaskState::Retry;
        self.enqueue_traced(queue, task, dedupe).await
    }

    /// [`Storage::enqueue`] of a task whose item is sent without a message
    /// id, whatever its state (a batch's re-armed callback: its first item
    /// may still be in the dedupe window, docs/storage.md §9).
    pub(crate) async fn enqueue_again(&self, queue: &str, task: &mut Task) -> Result<()> {
        self.enqueue_traced(queue, task, false).await
    }

    /// [`Storage::enqueue_in_span`] inside its `publish` span.
    async fn enqueue_traced(&self, queue: &str, task: &mut Task, dedupe: bool) -> Result<()> {
        // the trace context the caller is in, read before the publish span
        // is entered (a producer outside any span sends none)
        let outer = task.traceparent.clone().or_else(current_traceparent);
        let span = crate::spans::publish(queue, task);
        tracing::Instrument::instrument(self.enqueue_in_span(queue, task, outer, dedupe), span)
            .await
    }

    /// [`Storage::enqueue`] inside its `publish` span; `outer` is the
    /// caller's trace context; `dedupe` sends the item with its message id.
    async fn enqueue_in_span(
        &self,
        queue: &str,
        task: &mut Task,
        outer: Option<String>,
        dedupe: bool,
    ) -> Result<()> {
        // a task never stored before: this enqueue creates its record
        let created = task.seq == 0;
        // a delayed task: checked before anything is written
        let due = task.run_at.filter(|t| *t > OffsetDateTime::now_utc());
        if let (Some(due), Some(deadline)) = (due, task.deadline) {
            if deadline < due {
                return Err(Error::DeadlineBeforeDue { deadline, due });
            }
        }
        // cold paths are boxed: this future is held per task in flight
        // (`enqueue_many` holds hundreds)
        if let Some(due) = due {
            Box::pin(self.prepare_delayed(queue, due)).await?;
        }
        let mut wait = Leaderless::new();
        // an unacknowledged save may still have been stored
        let mut unanswered = false;
        loop {
            let acked = self.start_enqueue(queue, task).await?.await;
            match acked {
                Err(e)
                    if created
                        && e.kind() == PublishErrorKind::TimedOut
                        && Box::pin(wait.again(self, TASKS_STREAM)).await =>
                {
                    if Box::pin(self.stored_already(task)).await {
                        break;
                    }
                    unanswered = true;
                    tracing::debug!(task = %task.id, "task store did not acknowledge the record in time (electing a leader?); saving again");
                    continue;
                }
                Err(e)
                    if unanswered
                        && e.kind() == PublishErrorKind::WrongLastSequence
                        && Box::pin(self.stored_already(task)).await =>
                {
                    break;
                }
                _ => {}
            }
            match self.saved(task, acked).await {
                Err(Error::StorageNotReady(why))
                    if Box::pin(wait.again(self, TASKS_STREAM)).await =>
                {
                    tracing::debug!(task = %task.id, %why, "task store without a leader; saving again");
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        // the consumer's span is a child of this enqueue's (with `otel`)
        let traceparent = crate::spans::traceparent(&tracing::Span::current(), outer);
        // a held item goes to the held-items stream, others to the queue's
        let stream = match due {
            Some(_) => HELD_STREAM.to_string(),
            None => format!("{QUEUE_STREAM_PREFIX}{queue}"),
        };
        // only an item with a message id may be sent again after an
        // unacknowledged publish: the server drops the second copy
        let with_id = dedupe && due.is_none();
        let mut unanswered = false;
        loop {
            let sent = self
                .publish_item_at(
                    queue,
                    &task.id,
                    Lane::of(task),
                    task.key.as_deref(),
                    traceparent.clone(),
                    with_id,
                    due.map_or(Due::Now, Due::At),
                )
                .await;
            let outcome = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match &outcome {
                // a duplicate of the copy this enqueue sent before is that copy
                Ok(ack) if !ack.duplicate || unanswered => {
                    crate::metrics::enqueue(queue);
                    let lane = Lane::of(task);
                    if lane != Lane::Plain && due.is_none() {
                        self.notify_lane(queue, lane).await;
                    }
                    return Ok(());
                }
                Err(e)
                    if with_id
                        && e.kind() == PublishErrorKind::TimedOut
                        && Box::pin(wait.again(self, &stream)).await =>
                {
                    unanswered = true;
                    tracing::debug!(task = %task.id, queue, "queue did not acknowledge the item in time (electing a leader?); publishing it again");
                }
                Err(e)
                    if e.kind() == PublishErrorKind::StreamNotFound
                        && Box::pin(wait.again(self, &stream)).await =>
                {
                    tracing::debug!(task = %task.id, queue, "queue without a leader; publishing the item again");
                }
                _ => {
                    let not_taken = self.item_not_taken(queue, task, outcome, &mut wait, created);
                    return Box::pin(not_taken).await;
                }
            }
        }
    }

    /// After a save of a new record that was not acknowledged: whether the
    /// task store holds exactly that record (then `task` takes its
    /// sequence, and its event is published).
    async fn stored_already(&self, task: &mut Task) -> bool {
        let (Ok((seq, stored)), Ok(sent)) = (self.load_task_raw(&task.id).await, task.to_json())
        else {
            return false;
        };
        if stored[..] != sent[..] {
            return false;
        }
        task.seq = seq;
        crate::metrics::task_update(task.state);
        self.publish_event(task).await;
        true
    }

    /// Whether `stream` may exist although a request to it got no
    /// responders: true unless the server says it does not exist or
    /// JetStream is off (a busy or electing cluster may not answer at all).
    pub(super) async fn may_exist(&self, stream: &str) -> bool {
        match api::request::<Value>(
            &self.js,
            &format!("STREAM.INFO.{stream}"),
            &json!({}),
            || format!("loading stream {stream}"),
        )
        .await
        {
            Err(e) => ![
                ErrorCode::STREAM_NOT_FOUND,
                ErrorCode::JETSTREAM_NOT_ENABLED,
                ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT,
            ]
            .into_iter()
            .any(|code| api::is(&e, code)),
            Ok(_) => true,
        }
    }

    /// Validates the task and sends its record; see [`Storage::enqueue`].
    pub(crate) async fn start_enqueue(
        &self,
        queue: &str,
        task: &mut Task,
    ) -> Result<PublishAckFuture> {
        self.ready_record(queue, task)?;
        // a worker must always be able to end the task: its final record
        // (state, times, tries, a short error) never outgrows this room
        self.send_record(task, ENQUEUE_RECORD, END_HEADROOM).await
    }

    /// The checks and settings of an enqueue before its record is sent:
    /// a state that can be enqueued, the queue name, the priority; the
    /// queue set and the task signed (when the client signs and it is not
    /// yet). The record's size is checked when it is sent.
    pub(crate) fn ready_record(&self, queue: &str, task: &mut Task) -> Result<()> {
        match task.state {
            TaskState::New | TaskState::Retry | TaskState::Blocked => {}
            other => return Err(Error::CannotEnqueue(other)),
        }
        validate_queue_name(queue)?;
        if task.priority > crate::task::MAX_PRIORITY {
            return Err(Error::PriorityInvalid(task.priority.into()));
        }
        if let Some(k) = &task.key {
            crate::task::check_key(k)?;
        }
        task.queue = queue.to_string();
        if self.settings.keys.signs() && task.signature.is_empty() {
            self.settings.keys.sign(task)?;
        }
        Ok(())
    }

    /// A work item the queue did not take (a duplicate, or a failed
    /// publish): marks the task `queue_error` (that save waits out a
    /// leaderless task store too, so no record is left `new` without an
    /// item when it can be helped) and returns the error for the caller.
    pub(super) async fn item_not_taken(
        &self,
        queue: &str,
        task: &mut Task,
        outcome: std::result::Result<jetstream::publish::PublishAck, PublishError>,
        wait: &mut Leaderless,
        created: bool,
    ) -> Result<()> {
        let (last_err, err) = match outcome {
            // taken, but as a duplicate of an item still in the window
            Ok(_) => (
                "duplicate work queue item".to_string(),
                Error::DuplicateItem,
            ),
            // the record says what the caller is told (Go: `queue not
            // found: nats: no responders available for request`)
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                let err = Error::QueueNotFound(queue.to_string());
                (err.to_string(), err)
            }
            Err(e) => {
                let reason = publish_error_text(&e);
                (
                    reason.clone(),
                    Error::EnqueueRejected {
                        queue: queue.to_string(),
                        reason,
                        source: nats(format!("publishing the work item of {}", task.id), e),
                    },
                )
            }
        };
        crate::metrics::enqueue_error(queue);
        task.state = TaskState::QueueError;
        task.last_err = last_err;
        let saved = loop {
            match self.save_task(task).await {
                Err(Error::StorageNotReady(_)) if wait.again(self, TASKS_STREAM).await => {}
                other => break other,
            }
        };
        if let Err(save) = saved {
            // the record would claim to wait for an item that was never
            // written: a task this enqueue created goes again (the caller
            // is told the enqueue failed); an older one is left to the
            // reconcile pass (docs/storage.md §10.9)
            if created {
                match self.delete_record(&task.id, task.seq).await {
                    Ok(()) => tracing::warn!(task = %task.id, queue, error = %save,
                        "the task's work item was refused and its queue_error record could not be saved; removed the record"),
                    Err(e) => {
                        tracing::error!(task = %task.id, queue, error = %e, save_error = %save,
                        "the task's work item was refused and its record could be neither saved queue_error nor removed; the reconcile pass ends it")
                    }
                }
            } else {
                tracing::error!(task = %task.id, queue, error = %save,
                    "the task's work item was refused and its queue_error record could not be saved; the reconcile pass ends it");
            }
        }
        Err(err)
    }
}

/// A `traceparent` for a producer running inside a tracing span: a new
/// trace id with the span's id as parent.
pub(super) fn current_traceparent() -> Option<String> {
    let span = tracing::Span::current().id()?;
    let trace: u128 = rand::random::<u128>() | 1;
    Some(format!("00-{trace:032x}-{:016x}-01", span.into_u64()))
}

pub(super) fn publish_error_text(e: &PublishError) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(src) => format!("{}: {src}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// What an enqueued record is called when it is too large.
pub(crate) const ENQUEUE_RECORD: &str = "task record (with the room to end it)";

/// Room a record keeps, when it is enqueued, for what a worker adds to it
/// when it ends the task (state, times, tries, an error of at most 256
/// bytes: `worker/outcome.rs`), so the final record can always be saved
/// (docs/storage.md §10.2).
pub(crate) const END_HEADROOM: usize = 1024;

/// How long an enqueue waits for a stream without a leader (see
/// [`Storage::enqueue`]): a cluster elects a new stream leader within a few
/// seconds of losing one.
pub(super) const LEADERLESS_PATIENCE: Duration = Duration::from_secs(15);

/// The pauses of one enqueue waiting out leaderless streams.
pub(super) struct Leaderless {
    until: std::time::Instant,
    pause: Duration,
}

impl Leaderless {
    pub(super) fn new() -> Leaderless {
        Leaderless {
            until: std::time::Instant::now() + LEADERLESS_PATIENCE,
            pause: Duration::from_millis(100),
        }
    }

    /// After "no responders" from `stream`: pauses and returns true when
    /// it is worth sending again (time is left and the stream may exist).
    pub(super) async fn again(&mut self, storage: &Storage, stream: &str) -> bool {
        if std::time::Instant::now() >= self.until || !storage.may_exist(stream).await {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        true
    }
}
