//! Operations on stored tasks and queues as a whole: retry, cancel,
//! delete, purge, reconcile lost work items, delete queues
//! (docs/storage.md).

use super::queues::queue_error;
use super::work_item::WorkItem;
use super::TASKS_STREAM;
use super::{api, Storage};
use crate::error::{nats, Error, Result};
use crate::queue::{validate_queue_name, QUEUE_STREAM_PREFIX};
use crate::task::cancel::{cancel_subject, cancelled_last_err, check_cancelled_by, Cancelled};
use crate::task::{Task, TaskState};
use async_nats::jetstream::ErrorCode;
use futures::StreamExt;
use std::time::Duration;

/// Reads of a record changing under a cancel before it gives up
/// ([`Error::ConcurrentUpdate`]).
const CANCEL_ATTEMPTS: usize = 5;

impl Storage {
    /// See [`Client::reconcile_tasks`](crate::Client::reconcile_tasks).
    pub(crate) async fn reconcile_tasks(
        &self,
        queue: Option<&str>,
        grace: Duration,
    ) -> Result<Vec<String>> {
        let mut tasks = Box::pin(self.list_tasks().await?);
        let cutoff = self.clock().now() - grace;
        let mut ended = Vec::new();
        while let Some(task) = tasks.next().await {
            let mut task = task?;
            let waiting = matches!(
                task.state,
                TaskState::New | TaskState::Retry | TaskState::Blocked | TaskState::Active
            );
            let last_change = task.tried.unwrap_or(task.created).max(task.created);
            if !waiting
                || last_change > cutoff
                || task.queue.is_empty()
                || queue.is_some_and(|q| q != task.queue)
                || self.holds_item(&task.queue, &task.id).await?
            {
                continue;
            }
            let was = task.state;
            task.state = TaskState::Expired;
            task.last_err = format!(
                "work item lost: queue {} no longer holds one for this {was} task (dropped by the queue's max age or max entries, purged, or the queue was deleted); retry the task to run it again",
                task.queue
            );
            match self.save_task(&mut task).await {
                Ok(()) => {
                    tracing::warn!(task = %task.id, queue = %task.queue, state = %was, "work item lost; task expired");
                    // an item released for a deleted queue would wait forever
                    if let Err(e) = self.cancel_held(&task.queue, &task.id).await {
                        tracing::debug!(task = %task.id, error = %e, "removing a held item of the expired task failed");
                    }
                    ended.push(task.id);
                }
                // changed meanwhile: something is handling it
                Err(Error::ConcurrentUpdate(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ended)
    }

    /// Deletes a task record (work items are untouched).
    pub(crate) async fn delete_task(&self, id: &str) -> Result<()> {
        let (seq, data) = self.load_task_raw(id).await?;
        self.delete_msg(TASKS_STREAM, seq, || format!("deleting task {id}"))
            .await
            .map_err(|e| self.task_error(id, e))?;
        // a held item (delayed task, wait for a retry or dependencies)
        // goes with it: it would only end as "task not found" when due
        if let Ok(task) = serde_json::from_slice::<Task>(&data) {
            if let Err(e) = self.cancel_held(&task.queue, id).await {
                tracing::warn!(task = %id, error = %e, "the deleted task's held item stays until due");
            }
        }
        Ok(())
    }

    /// Removes every task record.
    pub(crate) async fn purge_tasks(&self) -> Result<()> {
        let tasks = self.stream(TASKS_STREAM).await?;
        match tasks.purge().await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.task_error("", nats("purging the task store", e))),
        }
    }

    /// Loads task `id`; one deleted by a discard policy is
    /// [`Error::TaskDiscarded`] with the state it ended in.
    async fn load_or_discarded(&self, id: &str) -> Result<Task> {
        match self.load_task(id).await {
            Err(Error::TaskNotFound(_)) => match self.discarded_state(id).await {
                Ok(Some(state)) => Err(Error::TaskDiscarded {
                    id: id.to_string(),
                    state,
                }),
                _ => Err(Error::TaskNotFound(id.to_string())),
            },
            other => other,
        }
    }

    /// Re-enqueues a task by id: state `retry`, result cleared (docs/storage.md §10.5).
    pub(crate) async fn retry_task(&self, queue: &str, id: &str) -> Result<Task> {
        let mut task = self.load_or_discarded(id).await?;
        // runs now: an item held for it (delayed, or waiting for a retry
        // or dependencies) goes, so it does not run twice
        task.run_at = None;
        // an item held for it in the queue it is retried into, looked up
        // before it goes (docs/storage.md §10.5)
        let waiting = task.queue == queue && self.has_held_item(queue, id).await?;
        self.cancel_held(&task.queue, id).await?;
        task.state = TaskState::Retry;
        task.result = None;
        if task.queue != queue {
            // the signature covers the queue: re-sign when we can (Go keeps
            // the now invalid signature, docs/go-differences.md §14)
            task.queue = queue.to_string();
            self.settings.keys.resign(&mut task)?;
        }
        let last_err = task.last_err.clone();
        match self.enqueue(queue, &mut task).await {
            Err(Error::EnqueueRejected { .. }) if waiting => {
                // Go's waiting item is in the queue and the retry's replaces
                // it even when the queue is full; ours was held outside it,
                // so it is held again, released now: it moves into the
                // queue once there is room (docs/storage.md §10.5, §10.10).
                // Saved first: a record still `queue_error` would make the
                // moved item be acknowledged without running.
                task.state = TaskState::Retry;
                task.last_err = last_err;
                self.save_task(&mut task).await?;
                let dedupe = format!("{id}.retry.{}", task.seq);
                self.release_held_now(queue, id, &dedupe).await?;
                Ok(task)
            }
            other => other.map(|()| task),
        }
    }

    /// Makes a finished task wait for its dependencies again (a batch's
    /// callback, docs/processing.md §2.23): any held item goes, state
    /// `blocked`, result and dependency results cleared, enqueued into
    /// `queue` with an item sent without message id (its first one may
    /// still be in the dedupe window).
    pub(crate) async fn rearm_task(&self, queue: &str, id: &str) -> Result<Task> {
        let mut task = self.load_or_discarded(id).await?;
        task.run_at = None;
        self.cancel_held(&task.queue, id).await?;
        task.state = TaskState::Blocked;
        task.result = None;
        task.dependency_results.clear();
        task.progress = None;
        if task.queue != queue {
            task.queue = queue.to_string();
            self.settings.keys.resign(&mut task)?;
        }
        self.enqueue_again(queue, &mut task).await.map(|()| task)
    }

    /// Cancels task `id` on behalf of `by` (docs/processing.md §2.16): a
    /// task not yet final is saved `terminated` with `last_err` `cancelled
    /// by <by>` (optimistic concurrency: a save that races the task's
    /// finish or a worker's `active` is retried on the newer record, so
    /// exactly one of the two outcomes stands), its work items go (waiting,
    /// in flight or held), and a notice on `CHORIA_AJ.CANCEL.<queue>.<id>` stops a running try. The
    /// record is written first: a worker that misses the notice, or dies,
    /// still finds the task final.
    pub(crate) async fn cancel_task(&self, id: &str, by: &str) -> Result<Cancelled> {
        let by = check_cancelled_by(by)?;
        for _ in 0..CANCEL_ATTEMPTS {
            let mut task = self.load_or_discarded(id).await?;
            if task.state.is_final() {
                return Ok(Cancelled::AlreadyFinished(task));
            }
            let was = task.state;
            task.state = TaskState::Terminated;
            task.last_err = cancelled_last_err(by);
            task.result = None;
            match self.save_task(&mut task).await {
                Ok(()) => {}
                // it changed since it was read: judged again as it is now
                Err(Error::ConcurrentUpdate(_)) => continue,
                Err(e) => return Err(e),
            }
            let queue = task.queue_or_default();
            if let Err(e) = self.remove_items(queue, id).await {
                // a Rust worker acknowledges it without running it; a Go
                // worker given it would run the task (processing.md §2.16)
                tracing::warn!(task = %id, error = %e, "the cancelled task's work item stays: a Go worker given it would run the task");
            }
            // flushed: a short-lived process (`ajc task cancel`) would
            // otherwise exit with the notice still in its buffer
            let notice = cancel_subject(queue, id);
            let sent = match self.nc.publish(notice, by.to_string().into()).await {
                Ok(()) => tokio::time::timeout(Duration::from_secs(5), self.nc.flush())
                    .await
                    .map_err(|_| "flushing timed out".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::warn!(task = %id, error = %e, "publishing the cancel notice failed; a running try ends when its outcome meets the cancelled record");
            }
            tracing::info!(task = %id, was = %was, by = %by, "task cancelled");
            return Ok(if was == TaskState::Active {
                Cancelled::Running(task)
            } else {
                Cancelled::Waiting(task)
            });
        }
        Err(Error::ConcurrentUpdate(id.to_string()))
    }

    /// Removes every item from a queue (task records untouched).
    pub(crate) async fn purge_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let s = self.stream(&format!("{QUEUE_STREAM_PREFIX}{name}")).await?;
        match s.purge().await {
            Ok(_) => Ok(()),
            Err(e) => Err(queue_error(name, nats(format!("purging queue {name}"), e))),
        }
    }

    /// Removes every item from a queue and saves the tasks they referenced
    /// that were still waiting (`new`, `retry`, `blocked`) as `terminated`
    /// with `last_err` naming the purge; returns how many were marked.
    /// Items published after the purge started are kept.
    pub(crate) async fn purge_queue_terminating(&self, name: &str) -> Result<u64> {
        validate_queue_name(name)?;
        let stream_name = format!("{QUEUE_STREAM_PREFIX}{name}");
        let mut stream = self
            .js
            .get_stream(&stream_name)
            .await
            .map_err(|e| queue_error(name, nats(format!("loading queue {name}"), e)))?;
        let state = stream
            .info()
            .await
            .map_err(|e| nats(format!("loading queue {name}"), e))?
            .state
            .clone();
        let (first, last) = (state.first_sequence, state.last_sequence);
        let mut ids = Vec::new();
        if last >= first && last > 0 {
            for seq in first..=last {
                match stream.get_raw_message(seq).await {
                    Ok(m) => {
                        if let Ok(item) = WorkItem::decode(&m.payload) {
                            ids.push(item.job);
                        }
                    }
                    Err(e) => {
                        let e = nats(format!("reading queue {name}"), e);
                        if !api::is(&e, ErrorCode::NO_MESSAGE_FOUND) {
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        stream
            .purge()
            .sequence(last + 1)
            .await
            .map_err(|e| queue_error(name, nats(format!("purging queue {name}"), e)))?;
        let mut marked = 0;
        for id in ids {
            let Ok(mut task) = self.load_task(&id).await else {
                continue;
            };
            if !matches!(
                task.state,
                TaskState::New | TaskState::Retry | TaskState::Blocked
            ) || task.queue != name
            {
                continue;
            }
            task.state = TaskState::Terminated;
            task.last_err = format!("work item removed: queue {name} was purged");
            match self.save_task(&mut task).await {
                Ok(()) => marked += 1,
                Err(Error::ConcurrentUpdate(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(marked)
    }

    /// Deletes a queue's stream.
    pub(crate) async fn delete_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        match self
            .js
            .delete_stream(format!("{QUEUE_STREAM_PREFIX}{name}"))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(queue_error(name, nats(format!("deleting queue {name}"), e))),
        }
    }
}
