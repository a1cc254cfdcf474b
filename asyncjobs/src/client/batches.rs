//! Batch operations of the [`Client`]: enqueue a batch, follow it, cancel
//! or retry it as a whole (docs/processing.md §2.23). The types and their
//! rules are in [`crate::batch`]; the server calls in `storage/`.

use super::{Client, Serving};
use crate::batch::{
    check_batch, Batch, BatchCancel, BatchRecord, BatchRetry, BatchStatus, BatchTask, CallbackRetry,
};
use crate::error::{Error, Result};
use crate::task::cancel::check_cancelled_by;
use crate::task::{Task, TaskState};
use crate::Cancelled;
use futures::stream::FuturesOrdered;
use futures::StreamExt;

/// Reads or changes of a batch's tasks in flight at once.
const IN_FLIGHT: usize = 64;

/// Looks at the callback this often when it keeps changing under a retry.
const CALLBACK_ATTEMPTS: usize = 5;

impl Client {
    /// Enqueues `members` as one batch into the client's queue, and
    /// `callback` (when given) to run once every member has ended,
    /// whatever its outcome (docs/processing.md §2.23).
    ///
    /// In this order: the checks ([`check_batch`]:
    /// 1 to [`MAX_BATCH_MEMBERS`](crate::batch::MAX_BATCH_MEMBERS)
    /// members, each never enqueued before; each record's size; a delayed
    /// member's server and queue; a callback whose type the queue's
    /// running workers do not handle), so a refused batch writes nothing;
    /// then the batch record in `CHORIA_AJ_BATCHES` (its membership, and
    /// the callback's record); then the members, as
    /// [`Client::enqueue_many`] does, each with its `batch` set; then the
    /// callback, `blocked` on every member with
    /// [`dependencies_any_outcome`](crate::TaskBuilder::dependencies_any_outcome)
    /// and [`load_dependency_results`](crate::TaskBuilder::load_dependency_results):
    /// its handler gets each complete member's result in
    /// `dependency_results`, and `None` for a member that failed.
    ///
    /// On success the members hold what their enqueue stored (state,
    /// queue, `batch`, signature, sequence). The callback's type is
    /// checked against the workers that announce themselves: when workers
    /// of the queue run and none handles it, the batch is refused; when
    /// none runs (or the server keeps no presence) it is accepted and
    /// waits for one.
    ///
    /// # Errors
    /// Before anything is written: [`Error::BatchEmpty`],
    /// [`Error::BatchTooLarge`], [`Error::BatchTaskInvalid`],
    /// [`Error::BatchCallbackUnhandled`], [`Error::PayloadTooLarge`] (a
    /// record, or the batch record, too large), the delayed enqueue's
    /// errors ([`Error::SchedulesUnsupported`], [`Error::QueueNotFound`]),
    /// and the batch record's store errors. After the batch record:
    /// [`Error::BatchIncomplete`] when a member or the callback was not
    /// enqueued (the callback is held back while a member is not);
    /// [`Client::batch`] shows which, [`Client::retry_batch`] finishes it.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::Task;
    /// let mut members = (1..=3)
    ///     .map(|page| Task::new("pdf:render", &page))
    ///     .collect::<asyncjobs::Result<Vec<_>>>()?;
    /// let callback = Task::new("pdf:bind", &"report.pdf")?;
    /// let batch = client.enqueue_batch(&mut members, Some(callback)).await?;
    /// println!("batch {} of {} pages", batch.id, batch.members.len());
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_batch(
        &self,
        members: &mut [Task],
        callback: Option<Task>,
    ) -> Result<Batch> {
        check_batch(members, callback.as_ref())?;
        let storage = &self.inner.storage;
        let queue = self.inner.queue.name.clone();
        if let Some(cb) = &callback {
            self.check_callback_served(&queue, &cb.task_type).await?;
        }
        let id = crate::task::new_id();
        // readied copies: a refused batch leaves the caller's tasks as they were
        let mut ready: Vec<Task> = members.to_vec();
        for t in ready.iter_mut() {
            t.batch = id.clone();
            storage.ready_batch_task(&queue, t).await?;
        }
        let mut callback = callback;
        if let Some(cb) = &mut callback {
            cb.dependencies = ready.iter().map(|t| t.id.clone()).collect();
            cb.state = TaskState::Blocked;
            cb.load_dependencies = true;
            cb.dependencies_any_outcome = true;
            cb.batch = id.clone();
            storage.ready_batch_task(&queue, cb).await?;
        }
        let record = BatchRecord {
            id: id.clone(),
            queue: queue.clone(),
            members: ready.iter().map(|t| t.id.clone()).collect(),
            callback: callback.clone(),
            created: time::OffsetDateTime::now_utc(),
        };
        // first, so no interruption loses the membership
        storage.store_batch(&record).await?;
        let results = self.enqueue_many(&mut ready).await;
        members.clone_from_slice(&ready);
        let mut failed: Vec<String> = results
            .into_iter()
            .zip(&ready)
            .filter_map(|(r, t)| r.err().map(|e| format!("member {}: {e}", t.id)))
            .collect();
        if let Some(mut cb) = callback {
            if !failed.is_empty() {
                // it would run without the members that are not enqueued
                failed.push(format!(
                    "callback {}: held back while a member is not enqueued",
                    cb.id
                ));
            } else if let Err(e) = storage.enqueue(&queue, &mut cb).await {
                failed.push(format!("callback {}: {e}", cb.id));
            }
        }
        if let Some(first) = failed.first() {
            tracing::warn!(batch = %id, queue = %queue, not_enqueued = failed.len(), first = %first,
                "a batch is stored but not all its tasks were enqueued; retry the batch to finish it");
            return Err(Error::BatchIncomplete {
                id,
                not_enqueued: failed.len(),
                first_error: first.clone(),
            });
        }
        Ok(record.batch())
    }

    /// Refuses a callback of `task_type` when workers of `queue` announce
    /// themselves and none handles it (docs/processing.md §2.15); a queue
    /// that does not exist is refused too. Anything else, or a check that
    /// fails, accepts it.
    async fn check_callback_served(&self, queue: &str, task_type: &str) -> Result<()> {
        match self.serving(queue, Some(task_type)).await {
            Ok(Serving::NoHandler {
                queue,
                task_type,
                handled,
            }) => Err(Error::BatchCallbackUnhandled {
                queue,
                task_type,
                handled,
            }),
            Ok(_) => Ok(()),
            Err(e @ Error::QueueNotFound(_)) => Err(e),
            Err(e) => {
                tracing::debug!(queue, task_type, error = %e, "cannot tell whether a worker handles the batch's callback; accepted");
                Ok(())
            }
        }
    }

    /// Where batch `id` stands: each member's state (as the store has it,
    /// unverified), counted (`done`, `failed`, `pending`, `missing`), and
    /// its callback's. Reads the batch record and every member's record
    /// (up to 64 at once).
    ///
    /// # Errors
    /// [`Error::BatchNotFound`], and the store's errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let b = client.batch("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c").await?;
    /// println!("{}/{} done, {} failed, {} pending", b.done, b.total, b.failed, b.pending);
    /// if let Some(cb) = &b.callback {
    ///     println!("callback {} is {:?}", cb.id, cb.state);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn batch(&self, id: &str) -> Result<BatchStatus> {
        let storage = &self.inner.storage;
        let record = storage.load_batch(id).await?;
        let members = self.batch_tasks(&record.members).await?;
        let callback = match &record.callback {
            Some(cb) => {
                let mut t = storage.batch_task(&cb.id).await?;
                if t.task_type.is_empty() {
                    t.task_type = cb.task_type.clone();
                }
                Some(t)
            }
            None => None,
        };
        Ok(BatchStatus::count(&record, members, callback))
    }

    /// The tasks `ids` as the store has them, in order.
    async fn batch_tasks(&self, ids: &[String]) -> Result<Vec<BatchTask>> {
        let storage = &self.inner.storage;
        // no closure is held across an await (see `enqueue_many`)
        let mut out = Vec::with_capacity(ids.len());
        let mut waiting = ids.iter();
        let mut in_flight = FuturesOrdered::new();
        loop {
            while in_flight.len() < IN_FLIGHT {
                let Some(id) = waiting.next() else { break };
                in_flight.push_back(storage.batch_task(id));
            }
            match in_flight.next().await {
                Some(t) => out.push(t?),
                None => return Ok(out),
            }
        }
    }

    /// Cancels batch `id` on behalf of `by` (as [`Client::cancel_task`]
    /// names it): its callback first (so it does not run on the members'
    /// cancels), then every member not yet ended, each as
    /// [`Client::cancel_task`] cancels a task. Ended tasks are left as
    /// they are. A later [`Client::retry_batch`] runs the batch again.
    ///
    /// # Errors
    /// [`Error::BatchNotFound`], [`Error::Config`] for an empty or too
    /// long `by`, and the store's errors reading the batch; a task that
    /// could not be cancelled is in [`BatchCancel::failed`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let done = client.cancel_batch("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c", "the billing service").await?;
    /// println!("{} cancelled, {} had ended", done.cancelled.len(), done.finished);
    /// # Ok(()) }
    /// ```
    pub async fn cancel_batch(&self, id: &str, by: &str) -> Result<BatchCancel> {
        let by = check_cancelled_by(by)?;
        let record = self.inner.storage.load_batch(id).await?;
        let mut summary = BatchCancel::default();
        if let Some(cb) = &record.callback {
            tally(&mut summary, &cb.id, self.cancel_task(&cb.id, by).await);
        }
        let mut waiting = record.members.iter();
        let mut in_flight = FuturesOrdered::new();
        loop {
            while in_flight.len() < IN_FLIGHT {
                let Some(m) = waiting.next() else { break };
                in_flight.push_back(async move { (m, self.cancel_task(m, by).await) });
            }
            match in_flight.next().await {
                Some((m, r)) => tally(&mut summary, m, r),
                None => break,
            }
        }
        tracing::info!(batch = %id, by, cancelled = summary.cancelled.len(), finished = summary.finished,
            missing = summary.missing, failed = summary.failed.len(), "batch cancelled");
        Ok(summary)
    }

    /// Retries batch `id` as a whole: every member that failed
    /// (`expired`, `terminated`, `unreachable`, `queue_error`) is retried
    /// into the batch's queue as [`Client::retry_task`] does; then the
    /// callback, when it had run or failed, is re-armed (`blocked` again
    /// with a new work item, so it runs once every member has ended
    /// again); one waiting is made to judge the members again; one never
    /// enqueued (an interrupted [`Client::enqueue_batch`]) is enqueued
    /// from the batch record; one running now is left alone
    /// ([`CallbackRetry::Running`]). Members without a record cannot be
    /// made again (the batch record keeps their ids): they are listed in
    /// [`BatchRetry::missing`] and the callback sees them as `None`.
    ///
    /// # Errors
    /// [`Error::BatchNotFound`] and the store's errors reading the batch;
    /// a member that could not be retried is in [`BatchRetry::failed`],
    /// the callback's failure in [`CallbackRetry::Failed`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let done = client.retry_batch("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c").await?;
    /// println!("{} retried, callback {:?}", done.retried.len(), done.callback);
    /// # Ok(()) }
    /// ```
    pub async fn retry_batch(&self, id: &str) -> Result<BatchRetry> {
        let storage = &self.inner.storage;
        let record = storage.load_batch(id).await?;
        let queue = record.queue.as_str();
        let members = self.batch_tasks(&record.members).await?;
        let mut summary = BatchRetry::default();
        let mut failed = Vec::new();
        for m in members {
            match m.state {
                None => summary.missing.push(m.id),
                Some(TaskState::Complete) => {}
                Some(s) if s.is_final() || s == TaskState::Unknown => failed.push(m.id),
                Some(_) => {}
            }
        }
        // members first: a callback re-armed before them could be judged
        // on their old outcomes
        let mut waiting = failed.into_iter();
        let mut in_flight = FuturesOrdered::new();
        loop {
            while in_flight.len() < IN_FLIGHT {
                let Some(m) = waiting.next() else { break };
                in_flight.push_back(async move {
                    let r = storage.retry_task(queue, &m).await;
                    (m, r)
                });
            }
            match in_flight.next().await {
                Some((m, Ok(_))) => summary.retried.push(m),
                Some((m, Err(e))) => summary.failed.push((m, e.to_string())),
                None => break,
            }
        }
        summary.callback = match &record.callback {
            None => CallbackRetry::NoCallback,
            Some(cb) => self.rearm_callback(&record, cb).await,
        };
        tracing::info!(batch = %id, retried = summary.retried.len(), missing = summary.missing.len(),
            failed = summary.failed.len(), callback = ?summary.callback, "batch retried");
        Ok(summary)
    }

    /// The callback's part of [`Client::retry_batch`].
    async fn rearm_callback(&self, record: &BatchRecord, cb: &Task) -> CallbackRetry {
        let storage = &self.inner.storage;
        let queue = record.queue.as_str();
        for _ in 0..CALLBACK_ATTEMPTS {
            let outcome = match storage.load_task(&cb.id).await {
                // never enqueued (or its record is gone): from the batch record
                Err(Error::TaskNotFound(_)) => {
                    let mut t = cb.clone();
                    storage
                        .enqueue_again(queue, &mut t)
                        .await
                        .map(|()| CallbackRetry::Enqueued)
                }
                Err(e) => Err(e),
                Ok(t) if t.state.is_final() || t.state == TaskState::Unknown => storage
                    .rearm_task(queue, &cb.id)
                    .await
                    .map(|_| CallbackRetry::Rearmed),
                Ok(t) if t.state == TaskState::Active => return CallbackRetry::Running,
                // waiting: saved again, so a judgement made before the
                // members were retried loses its `active` save and is made
                // again (docs/processing.md §2.23)
                Ok(mut t) => {
                    t.state = TaskState::Blocked;
                    t.dependency_results.clear();
                    storage
                        .save_task(&mut t)
                        .await
                        .map(|()| CallbackRetry::Waiting)
                }
            };
            match outcome {
                Ok(done) => return done,
                // it changed meanwhile: looked at again
                Err(Error::ConcurrentUpdate(_) | Error::TaskNotFound(_)) => {}
                Err(e) => return CallbackRetry::Failed(e.to_string()),
            }
        }
        CallbackRetry::Failed(format!(
            "the callback {} kept changing under {CALLBACK_ATTEMPTS} attempts",
            cb.id
        ))
    }
}

/// Adds one task's cancel to the summary.
fn tally(summary: &mut BatchCancel, id: &str, r: Result<Cancelled>) {
    match r {
        Ok(Cancelled::AlreadyFinished(_)) | Err(Error::TaskDiscarded { .. }) => {
            summary.finished += 1
        }
        Ok(_) => summary.cancelled.push(id.to_string()),
        Err(Error::TaskNotFound(_)) => summary.missing += 1,
        Err(e) => summary.failed.push((id.to_string(), e.to_string())),
    }
}
