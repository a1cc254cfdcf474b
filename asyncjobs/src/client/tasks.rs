//! Task operations of the [`Client`]: enqueue, load, retry and replay,
//! cancel, delete, list and page, reconcile, and the task store's settings.

use super::{Client, ReplaySummary, TaskFilter, ENQUEUE_IN_FLIGHT};
use crate::error::Result;
use crate::queue::{validate_replicas, StreamDetails};
use crate::storage::PageStart;
use crate::task::Task;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::time::Duration;

impl Client {
    /// Saves the task and publishes its work item on the client's queue:
    /// the one it was built with ([`ClientBuilder::queue`](crate::ClientBuilder::queue)),
    /// `DEFAULT` unless set — whatever the task's type; the type does not
    /// choose a queue (a `#[task_handler]`'s typed enqueue goes to its
    /// handler's queue). No check is made that a worker serves that queue
    /// or handles the type: a task nobody serves waits `new`.
    /// [`Client::serving`] tells what the cluster knows of that (`ajc task
    /// add`, the HTTP API and the dashboard warn with it).
    ///
    /// On a rejected, full or duplicate work item the task is saved as
    /// `queue_error` with the reason in `last_err`, and the error is returned.
    ///
    /// # Errors
    /// [`Error::QueueNotFound`](crate::Error::QueueNotFound),
    /// [`Error::DuplicateItem`](crate::Error::DuplicateItem) or
    /// [`Error::EnqueueRejected`](crate::Error::EnqueueRejected) when the queue
    /// did not take the work item (the task is then saved `queue_error`);
    /// [`Error::CannotEnqueue`](crate::Error::CannotEnqueue) for a task in a state
    /// that cannot be enqueued; [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge)
    /// for a record the server would refuse.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::Task;
    /// let mut task = Task::new("email:new", &serde_json::json!({"to": "a@example.net"}))?;
    /// client.enqueue(&mut task).await?;
    /// println!("{} is {}", task.id, task.state); // new
    /// # Ok(()) }
    /// ```
    pub async fn enqueue(&self, task: &mut Task) -> Result<()> {
        self.inner
            .storage
            .enqueue(&self.inner.queue.name, task)
            .await
    }

    /// Enqueues into another queue by name (it is not created). As with
    /// [`Client::enqueue`], no check is made that a worker serves it.
    ///
    /// # Errors
    /// As [`Client::enqueue`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let mut task = asyncjobs::Task::new("report:daily", &())?;
    /// client.enqueue_to("REPORTS", &mut task).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_to(&self, queue: &str, task: &mut Task) -> Result<()> {
        self.inner.storage.enqueue(queue, task).await
    }

    /// Enqueues many tasks with up to [`ENQUEUE_IN_FLIGHT`] in flight at
    /// once (each task's record is stored before its work item is
    /// published); one result per task, in order.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::Task;
    /// let mut tasks = (0..1000)
    ///     .map(|n| Task::new("thumbnail:make", &n))
    ///     .collect::<asyncjobs::Result<Vec<_>>>()?;
    /// let failed = client.enqueue_many(&mut tasks).await.into_iter().filter(|r| r.is_err()).count();
    /// println!("{failed} of {} not enqueued", tasks.len());
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_many(&self, tasks: &mut [Task]) -> Vec<Result<()>> {
        let storage = &self.inner.storage;
        let queue = self.inner.queue.name.as_str();
        // Enqueues are started as slots free up (not made up front: each
        // future is a few KiB), unordered, so a slow one does not hold back
        // those behind it; the results are put back in the tasks' order. No
        // closure is held across an await: it would make this future `Send`
        // for one lifetime only, so it could not be spawned
        // (rust-lang/rust#64552).
        let mut results: Vec<Option<Result<()>>> = Vec::with_capacity(tasks.len());
        results.resize_with(tasks.len(), || None);
        let mut waiting = tasks.iter_mut().enumerate();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        loop {
            while in_flight.len() < ENQUEUE_IN_FLIGHT {
                let Some((i, task)) = waiting.next() else {
                    break;
                };
                in_flight.push(async move { (i, storage.enqueue(queue, task).await) });
            }
            match in_flight.next().await {
                Some((i, res)) => results[i] = Some(res),
                None => break,
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every enqueue yields its result"))
            .collect()
    }

    /// Loads a task by id, verifying its signature when keys are configured.
    ///
    /// # Errors
    /// [`Error::TaskNotFound`](crate::Error::TaskNotFound),
    /// [`Error::InvalidTaskRecord`](crate::Error::InvalidTaskRecord) for a record that
    /// does not decode, a signature error when keys are configured and it does not
    /// verify.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let task = client.load_task("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c").await?;
    /// println!("{} tries, last error {:?}", task.tries, task.last_err);
    /// # Ok(()) }
    /// ```
    pub async fn load_task(&self, id: &str) -> Result<Task> {
        self.inner.storage.load_verified(id).await
    }

    /// Loads a task by id without checking its signature.
    pub async fn load_task_unverified(&self, id: &str) -> Result<Task> {
        self.inner.storage.load_task(id).await
    }

    /// Re-enqueues a task into the client's queue: state `retry`, result
    /// cleared; replaces any pending work item for it.
    ///
    /// # Errors
    /// [`Error::TaskNotFound`](crate::Error::TaskNotFound),
    /// [`Error::TaskDiscarded`](crate::Error::TaskDiscarded) for a task deleted by a
    /// discard policy, and the enqueue's errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let task = client.retry_task("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c").await?;
    /// assert_eq!(task.state, asyncjobs::TaskState::Retry);
    /// # Ok(()) }
    /// ```
    pub async fn retry_task(&self, id: &str) -> Result<Task> {
        self.inner
            .storage
            .retry_task(&self.inner.queue.name, id)
            .await
    }

    /// Re-enqueues a task into the queue it was last enqueued into (not the
    /// client's, as [`Client::retry_task`] does): state `retry`, result
    /// cleared, any pending item (a delayed task's too) replaced.
    pub async fn replay_task(&self, id: &str) -> Result<Task> {
        let task = self.inner.storage.load_task(id).await?;
        self.inner
            .storage
            .retry_task(task.queue_or_default(), id)
            .await
    }

    /// Cancels a task from any process of the cluster, on behalf of `by`
    /// (who or what cancels, kept in `last_err` as `cancelled by <by>`;
    /// `ajc` and the HTTP API name themselves there).
    ///
    /// A waiting task is saved `terminated` and never runs. A running one
    /// is saved `terminated` and the worker running it is told: its
    /// handler's [cancellation token](crate::TaskContext::cancelled) fires
    /// and, after the worker's [cancel grace](crate::Worker::cancel_grace),
    /// the handler is stopped (an external command is ended and killed);
    /// what that try returns is not kept. A finished task is left as it
    /// is ([`Cancelled::AlreadyFinished`](crate::Cancelled::AlreadyFinished)).
    /// A cancel that races the task's finish leaves exactly one of the two
    /// (the record is written with optimistic concurrency; see
    /// docs/processing.md §2.16).
    ///
    /// # Errors
    /// [`Error::TaskNotFound`](crate::Error::TaskNotFound), [`Error::TaskIdInvalid`](crate::Error::TaskIdInvalid),
    /// [`Error::TaskDiscarded`](crate::Error::TaskDiscarded) for a finished task deleted by a discard
    /// policy, [`Error::Config`](crate::Error::Config) for an empty `by` or one over
    /// [`MAX_CANCELLED_BY`](crate::task::cancel::MAX_CANCELLED_BY) bytes,
    /// [`Error::ConcurrentUpdate`](crate::Error::ConcurrentUpdate) when the record kept changing under
    /// five attempts, and the store's errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::Cancelled;
    /// match client.cancel_task("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c", "the billing service").await? {
    ///     Cancelled::AlreadyFinished(t) => println!("already {}", t.state),
    ///     done => println!("{}", done.task().last_err), // cancelled by the billing service
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cancel_task(&self, id: &str, by: &str) -> Result<crate::Cancelled> {
        self.inner.storage.cancel_task(id, by).await
    }

    /// Deletes a task record; a delayed task's pending item goes with it
    /// (other pending items are left; they end as not found when delivered).
    ///
    /// # Errors
    /// [`Error::TaskNotFound`](crate::Error::TaskNotFound) when there is no
    /// such task.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// client.delete_task("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_task(&self, id: &str) -> Result<()> {
        self.inner.storage.delete_task(id).await
    }

    /// Removes every task record.
    pub async fn purge_tasks(&self) -> Result<()> {
        self.inner.storage.purge_tasks().await
    }

    /// Streams stored tasks, oldest update first, up to `limit`. Records that
    /// do not decode are yielded as [`Error::InvalidTaskRecord`](crate::Error::InvalidTaskRecord).
    ///
    /// The listing is a snapshot taken when it starts: each task is yielded
    /// at most once, and no task created after the start is yielded, even
    /// while workers update records (a task saved during the listing is
    /// found again past the snapshot point, a bounded number of times; one
    /// saved over and over while the listing runs can still be left out).
    /// The listing remembers the ids it yielded, and "created after the
    /// start" is judged by the task's `created` time against this
    /// process's clock.
    pub async fn list_tasks(&self, limit: usize) -> Result<BoxStream<'static, Result<Task>>> {
        Ok(self.inner.storage.list_tasks().await?.take(limit).boxed())
    }

    /// Streams stored tasks matching `filter` (state, type, queue), up to its
    /// limit. Records that do not decode are yielded as errors, not skipped.
    /// A snapshot like [`Client::list_tasks`].
    ///
    /// # Errors
    /// [`Error::StorageNotReady`](crate::Error::StorageNotReady) when the task
    /// store does not exist; reading failures are yielded by the stream.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::{TaskFilter, TaskState};
    /// use futures::StreamExt;
    /// let mut failed = client
    ///     .list_tasks_filtered(TaskFilter::new().state(TaskState::Expired).queue("EMAIL").limit(50))
    ///     .await?;
    /// while let Some(task) = failed.next().await {
    ///     let task = task?;
    ///     println!("{} {}", task.id, task.last_err);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_tasks_filtered(
        &self,
        filter: TaskFilter,
    ) -> Result<BoxStream<'static, Result<Task>>> {
        let limit = filter.limit;
        let stream = self.inner.storage.list_tasks().await?;
        Ok(stream
            .filter(move |r| {
                let keep = match r {
                    Ok(t) => filter.matches(t),
                    Err(_) => true,
                };
                futures::future::ready(keep)
            })
            .take(limit)
            .boxed())
    }

    /// Retries every stored task `filter` matches that ended for good (a
    /// dead-letter replay: `expired`, `terminated`, `unreachable` or
    /// `queue_error`, and `complete` only when the filter names that state;
    /// tasks still waiting or running are never taken, they would run
    /// twice), each into its own queue. The matching tasks are read
    /// first (a listing snapshot), then retried one by one; `progress` is
    /// called after each with (done, total). With `dry_run` nothing is
    /// changed: the summary lists what would be replayed.
    ///
    /// # Errors
    /// Listing the store failed; failures of single tasks are in the
    /// summary instead.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::{TaskFilter, TaskState};
    /// let dead = TaskFilter::new().state(TaskState::Expired).task_type("email:new");
    /// let summary = client.replay_tasks(dead, false, |done, total| eprintln!("{done}/{total}")).await?;
    /// println!("{} replayed, {} failed", summary.replayed.len(), summary.failed.len());
    /// # Ok(()) }
    /// ```
    pub async fn replay_tasks(
        &self,
        filter: TaskFilter,
        dry_run: bool,
        progress: impl FnMut(usize, usize),
    ) -> Result<ReplaySummary> {
        let s = self
            .bulk_tasks(filter, &super::BulkAction::Retry, dry_run, progress)
            .await?;
        Ok(ReplaySummary {
            matched: s.matched,
            replayed: s.done,
            skipped: s.skipped,
            failed: s.failed,
        })
    }

    /// One page of stored tasks matching `filter`, in store order, from
    /// stream sequence `from` (1 for the first page): up to the filter's
    /// limit, reading at most `scan` records so a page over a large store
    /// with a rare match stays bounded. Returns the tasks and where the
    /// next page starts (`None` at the end): pages walk the store without
    /// loading it whole, for dashboards and APIs. Each task's
    /// [`Task::sequence`] is its position.
    ///
    /// # Errors
    /// [`Error::Nats`](crate::Error::Nats) when the store cannot be read.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::TaskFilter;
    /// let filter = TaskFilter::new().queue("EMAIL").limit(20);
    /// let mut from = 1;
    /// loop {
    ///     let (tasks, next) = client.page_tasks(from, &filter, 10_000).await?;
    ///     for t in tasks {
    ///         println!("{} {}", t.id, t.state);
    ///     }
    ///     match next {
    ///         Some(n) => from = n,
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn page_tasks(
        &self,
        from: u64,
        filter: &TaskFilter,
        scan: usize,
    ) -> Result<(Vec<Task>, Option<u64>)> {
        self.inner
            .storage
            .page_tasks(PageStart::Sequence(from), filter.limit, scan.max(1), |t| {
                filter.matches(t)
            })
            .await
    }

    /// [`page_tasks`](Self::page_tasks) from the first record the server
    /// stored at or after `since` (by the server's clock) instead of a
    /// sequence: records are where their task was last saved, so a task
    /// created at `t` has its record there or later. For finding a task's
    /// dependants (created after it) without reading older records; the
    /// next page is by sequence again.
    ///
    /// # Errors
    /// [`Error::Nats`](crate::Error::Nats) when the store cannot be read.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(task: asyncjobs::Task) -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::TaskFilter;
    /// let dependants = TaskFilter::new().depends_on(task.id.clone()).limit(50);
    /// let (tasks, more) = client.page_tasks_since(task.created, &dependants, 20_000).await?;
    /// println!("{} dependants, more after sequence {more:?}", tasks.len());
    /// # Ok(()) }
    /// ```
    pub async fn page_tasks_since(
        &self,
        since: time::OffsetDateTime,
        filter: &TaskFilter,
        scan: usize,
    ) -> Result<(Vec<Task>, Option<u64>)> {
        self.inner
            .storage
            .page_tasks(PageStart::Time(since), filter.limit, scan.max(1), |t| {
                filter.matches(t)
            })
            .await
    }

    /// Ends the tasks whose work item is gone: a task still `new`,
    /// `retry`, `blocked` or `active` whose queue holds no item for it
    /// (neither waiting, in flight nor held until due) will never run, since
    /// nothing will deliver it. That happens when the queue drops items by
    /// its `max_age` or `max_entries` (discard old), is purged or deleted,
    /// or when an item is removed by hand. Each such task is saved
    /// `expired` with `last_err` saying its work item was lost (retry it to
    /// run it again). Tasks whose last change is younger than `grace` are
    /// left alone (an enqueue saves the record just before its item).
    /// `queue` limits the pass to one queue. Returns the ids it ended.
    ///
    /// Reads every task record once (a listing snapshot) and makes up to
    /// two lookups per waiting task; [`Worker`](crate::Worker)s run a pass
    /// over their queue when they start, and `ajc task reconcile` runs one
    /// on demand. Go has no equivalent: such tasks stay as they are.
    ///
    /// # Errors
    /// Listing or lookup failures ([`Error::Nats`](crate::Error::Nats), [`Error::StorageNotReady`](crate::Error::StorageNotReady)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use std::time::Duration;
    /// let ended = client.reconcile_tasks(Some("EMAIL"), Duration::from_secs(60)).await?;
    /// println!("{} tasks had lost their work item", ended.len());
    /// # Ok(()) }
    /// ```
    pub async fn reconcile_tasks(
        &self,
        queue: Option<&str>,
        grace: std::time::Duration,
    ) -> Result<Vec<String>> {
        self.inner.storage.reconcile_tasks(queue, grace).await
    }

    /// Creates the task store with this client's storage settings
    /// ([`memory_storage`](super::ClientBuilder::memory_storage), [`replicas`](super::ClientBuilder::replicas),
    /// [`task_retention`](super::ClientBuilder::task_retention)) unless it exists; an existing
    /// store is left unchanged. For clients built with
    /// [`no_storage_init`](super::ClientBuilder::no_storage_init) that need only the task store.
    pub async fn prepare_tasks(&self) -> Result<()> {
        self.inner.storage.prepare_tasks().await
    }

    /// The task store's details: record count, bytes, first and last
    /// update times, retention, storage and replicas.
    ///
    /// # Errors
    /// [`Error::StorageNotReady`](crate::Error::StorageNotReady) when the task store does not exist.
    pub async fn tasks_info(&self) -> Result<StreamDetails> {
        self.inner.storage.tasks_info().await
    }

    /// Changes the task store's retention and/or replicas.
    pub async fn configure_tasks(
        &self,
        retention: Option<Duration>,
        replicas: Option<usize>,
    ) -> Result<()> {
        if let Some(r) = replicas {
            validate_replicas(r)?;
        }
        self.inner
            .storage
            .configure_tasks(retention, replicas)
            .await
    }
}
