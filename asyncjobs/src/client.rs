//! The client: connection, storage preparation, and the task and queue operations.

use crate::connect::Connect;
use crate::error::{Error, Result};
use crate::queue::{Queue, QueueInfo, QueueUpdate};
use crate::router::Router;
use crate::storage::{validate_replicas, Storage, StorageSettings, StreamDetails};
use crate::task::{Task, TaskState};
use crate::worker::Worker;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;

enum Connection {
    Open(Connect),
    Nats(async_nats::Client),
}

/// Most enqueues [`Client::enqueue_many`] has in flight at once.
pub const ENQUEUE_IN_FLIGHT: usize = 256;

/// Configures and connects a [`Client`].
///
/// ```no_run
/// # async fn demo() -> asyncjobs::Result<()> {
/// use asyncjobs::{Client, Queue};
/// use std::time::Duration;
/// let client = Client::builder()
///     .url("nats://127.0.0.1:4222")
///     .queue(Queue::new("EMAIL").max_run_time(Duration::from_secs(30)).max_tries(5))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
pub struct ClientBuilder {
    connection: Connection,
    queue: Option<Queue>,
    settings: StorageSettings,
    no_storage_init: bool,
    connection_name: String,
    setup_patience: Duration,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("queue", &self.queue)
            .field("settings", &self.settings)
            .field("no_storage_init", &self.no_storage_init)
            .field("connection_name", &self.connection_name)
            .field("setup_patience", &self.setup_patience)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            connection: Connection::Open(Connect::url(crate::connect::DEFAULT_URL)),
            queue: None,
            settings: StorageSettings::default(),
            no_storage_init: false,
            connection_name: crate::connect::DEFAULT_NAME.into(),
            setup_patience: DEFAULT_SETUP_PATIENCE,
        }
    }
}

impl ClientBuilder {
    /// Connect to this server URL (comma separated for several).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.connection = Connection::Open(Connect::url(url));
        self
    }

    /// Use an existing connection.
    pub fn nats_client(mut self, nc: async_nats::Client) -> Self {
        self.connection = Connection::Nats(nc);
        self
    }

    /// Connect with the NATS CLI context called `name`.
    pub fn nats_context(mut self, name: impl Into<String>) -> Self {
        self.connection = Connection::Open(Connect::context(name));
        self
    }

    /// The connection name shown by the server.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Create-or-load this queue instead of `DEFAULT`.
    pub fn queue(mut self, queue: Queue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Bind to an existing queue; it is never created.
    pub fn bind_queue(mut self, name: impl Into<String>) -> Self {
        let mut q = Queue::new(name);
        q.no_create = true;
        self.queue = Some(q);
        self
    }

    /// Create new streams and buckets in memory instead of on disk.
    pub fn memory_storage(mut self) -> Self {
        self.settings.memory = true;
        self
    }

    /// Replicas for new streams and buckets (1 to 5).
    pub fn replicas(mut self, n: usize) -> Self {
        self.settings.replicas = n;
        self
    }

    /// How long task records are kept (0 = forever); applies when the task store is created.
    pub fn task_retention(mut self, d: Duration) -> Self {
        self.settings.task_retention = d;
        self
    }

    /// Delete task records when they reach these states (only `complete`,
    /// `expired` and `terminated` are allowed).
    pub fn discard_states(mut self, states: impl IntoIterator<Item = TaskState>) -> Result<Self> {
        for s in states {
            if !matches!(
                s,
                TaskState::Complete | TaskState::Expired | TaskState::Terminated
            ) {
                return Err(Error::Config(
                    "only states completed, expired or terminated can be discarded".into(),
                ));
            }
            if !self.settings.discard.contains(&s) {
                self.settings.discard.push(s);
            }
        }
        Ok(self)
    }

    /// Like [`ClientBuilder::discard_states`] with state names (`completed` is accepted).
    pub fn discard_states_by_name<S: AsRef<str>>(
        self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let mut states = Vec::new();
        for n in names {
            let n = n.as_ref();
            states.push(
                TaskState::from_name(n)
                    .ok_or_else(|| Error::UnknownDiscardPolicy(n.to_string()))?,
            );
        }
        self.discard_states(states)
    }

    /// Sign enqueued tasks and/or verify loaded ones with these keys
    /// (see [`Keys`](crate::signing::Keys)).
    #[cfg(feature = "signing")]
    pub fn signing_keys(mut self, keys: crate::signing::Keys) -> Self {
        self.settings.keys = keys;
        self
    }

    /// Do not create or load any stream, bucket or queue.
    pub fn no_storage_init(mut self) -> Self {
        self.no_storage_init = true;
        self
    }

    /// How long [`build`](ClientBuilder::build) keeps trying to prepare
    /// storage while JetStream answers with transient failures (time-outs,
    /// no responders: typically a stream or consumer leader election in a
    /// cluster); 30 s by default, zero to fail on the first one.
    pub fn setup_patience(mut self, d: Duration) -> Self {
        self.setup_patience = d;
        self
    }

    /// Connects and prepares storage: the task stream, both KV buckets and the queue.
    ///
    /// Transient JetStream failures while preparing (a leader election in a
    /// cluster answers with time-outs for a few seconds) are retried with
    /// backoff for up to [`setup_patience`](ClientBuilder::setup_patience),
    /// each logged at `warn`; the last one is returned once it runs out.
    ///
    /// # Errors
    /// The connection's errors ([`Connect::connect`](crate::connect::Connect::connect));
    /// [`Error::Config`] when the server does not run JetStream (`JetStream
    /// is not enabled on the NATS server …: start nats-server with -js …`)
    /// or a setting is invalid; the storage preparation's errors.
    pub async fn build(self) -> Result<Client> {
        validate_replicas(self.settings.replicas)?;
        let nc = match self.connection {
            Connection::Nats(nc) => nc,
            Connection::Open(c) => c.name(self.connection_name).connect().await?,
        };
        let info = nc.server_info();
        if !info.jetstream {
            return Err(Error::Config(format!(
                "JetStream is not enabled on the NATS server {} ({} at {}:{}): start nats-server with -js (or --jetstream), or use a server with JetStream",
                info.server_name, info.version, info.host, info.port
            )));
        }
        let storage = Storage::new(nc, self.settings);
        let mut queue = self.queue.unwrap_or_else(Queue::default_queue);
        queue.validate()?;
        if !self.no_storage_init {
            queue = prepare_storage(&storage, &queue, self.setup_patience).await?;
        }
        let known = std::collections::HashSet::from([queue.name.clone()]);
        Ok(Client {
            inner: Arc::new(Inner {
                storage,
                queue,
                known_queues: std::sync::Mutex::new(known),
            }),
        })
    }
}

/// The default of [`ClientBuilder::setup_patience`].
const DEFAULT_SETUP_PATIENCE: Duration = Duration::from_secs(30);

/// Prepares the task stream, the buckets and `queue`, trying again with
/// backoff (250 ms doubling to 2 s) while the failure is a transient NATS
/// one and `patience` lasts. Every step is idempotent, so a step that timed
/// out after the server carried it out is found done on the next try.
async fn prepare_storage(storage: &Storage, queue: &Queue, patience: Duration) -> Result<Queue> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let tried = async {
            storage.prepare_tasks().await?;
            storage.prepare_buckets().await?;
            storage.prepare_queue(queue).await
        }
        .await;
        match tried {
            Err(Error::Nats(e)) if e.is_transient() && started.elapsed() + delay < patience => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "preparing storage failed for a transient reason (a JetStream leader election?), trying again"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

struct Inner {
    storage: Storage,
    queue: Queue,
    /// Queues known to exist (see [`Client::ensure_queue`]).
    known_queues: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// A connection to the task store and one work queue. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("queue", &self.inner.queue.name)
            .finish()
    }
}

impl Client {
    /// A builder; see [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `url` with every other setting at its default (queue `DEFAULT`).
    pub async fn connect(url: &str) -> Result<Client> {
        Client::builder().url(url).build().await
    }

    /// The client's queue, as the server reported it at startup.
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// The underlying NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        self.inner.storage.nats()
    }

    /// Saves the task and publishes its work item on the client's queue.
    ///
    /// On a rejected, full or duplicate work item the task is saved as
    /// `queue_error` with the reason in `last_err`, and the error is returned.
    pub async fn enqueue(&self, task: &mut Task) -> Result<()> {
        self.inner
            .storage
            .enqueue(&self.inner.queue.name, task)
            .await
    }

    /// Makes sure a queue exists, creating it as `make()` describes when
    /// it does not (an existing queue keeps its settings). Checked with the
    /// server once per client and queue; the typed `enqueue` helpers of
    /// `#[task_handler]` call it with the handler's declared settings.
    ///
    /// # Errors
    /// As [`Client::prepare_queue`].
    pub async fn ensure_queue(&self, make: impl FnOnce() -> Queue) -> Result<()> {
        let queue = make();
        let known = |q: &str| {
            self.inner
                .known_queues
                .lock()
                .expect("known queues")
                .contains(q)
        };
        if known(&queue.name) {
            return Ok(());
        }
        match self.inner.storage.queue_info(&queue.name).await {
            Ok(_) => {}
            Err(Error::QueueNotFound(_)) => {
                self.inner.storage.prepare_queue(&queue).await?;
                tracing::info!(queue = %queue.name, "created the queue with its handler's declared settings");
            }
            Err(e) => return Err(e),
        }
        self.inner
            .known_queues
            .lock()
            .expect("known queues")
            .insert(queue.name);
        Ok(())
    }

    /// Enqueues into another queue by name (it is not created).
    pub async fn enqueue_to(&self, queue: &str, task: &mut Task) -> Result<()> {
        self.inner.storage.enqueue(queue, task).await
    }

    /// Enqueues many tasks with up to [`ENQUEUE_IN_FLIGHT`] in flight at
    /// once (each task's record is stored before its work item is
    /// published); one result per task, in order.
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
    pub async fn load_task(&self, id: &str) -> Result<Task> {
        self.inner.storage.load_verified(id).await
    }

    /// Loads a task by id without checking its signature.
    pub async fn load_task_unverified(&self, id: &str) -> Result<Task> {
        self.inner.storage.load_task(id).await
    }

    /// Re-enqueues a task into the client's queue: state `retry`, result
    /// cleared; replaces any pending work item for it.
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
        let queue = if task.queue.is_empty() {
            crate::queue::DEFAULT_QUEUE_NAME.to_string()
        } else {
            task.queue
        };
        self.inner.storage.retry_task(&queue, id).await
    }

    /// Deletes a task record; a delayed task's pending item goes with it
    /// (other pending items are left; they end as not found when delivered).
    pub async fn delete_task(&self, id: &str) -> Result<()> {
        self.inner.storage.delete_task(id).await
    }

    /// Removes every task record.
    pub async fn purge_tasks(&self) -> Result<()> {
        self.inner.storage.purge_tasks().await
    }

    /// Streams stored tasks, oldest update first, up to `limit`. Records that
    /// do not decode are yielded as [`Error::InvalidTaskRecord`].
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
    pub async fn replay_tasks(
        &self,
        filter: TaskFilter,
        dry_run: bool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<ReplaySummary> {
        let mut matched = Vec::new();
        let named_complete = filter.states.contains(&TaskState::Complete);
        let mut listing = self.list_tasks_filtered(filter).await?;
        while let Some(t) = listing.next().await {
            match t {
                // only tasks that ended for good: a task still waiting or
                // running would run twice
                Ok(t)
                    if t.state.is_dead_letter()
                        || (t.state == TaskState::Complete && named_complete) =>
                {
                    matched.push((t.id, t.queue))
                }
                Ok(_) => {}
                Err(Error::InvalidTaskRecord { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut summary = ReplaySummary {
            matched: matched.iter().map(|(id, _)| id.clone()).collect(),
            ..ReplaySummary::default()
        };
        if dry_run {
            return Ok(summary);
        }
        let total = matched.len();
        for (i, (id, queue)) in matched.into_iter().enumerate() {
            let queue = if queue.is_empty() {
                crate::queue::DEFAULT_QUEUE_NAME.to_string()
            } else {
                queue
            };
            match self.inner.storage.retry_task(&queue, &id).await {
                Ok(_) => summary.replayed.push(id),
                // deleted or discarded since it was listed
                Err(Error::TaskNotFound(_) | Error::TaskDiscarded { .. }) => {
                    summary.skipped.push(id)
                }
                Err(e) => summary.failed.push((id, e.to_string())),
            }
            progress(i + 1, total);
        }
        Ok(summary)
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
    /// [`Error::Nats`] when the store cannot be read.
    pub async fn page_tasks(
        &self,
        from: u64,
        filter: &TaskFilter,
        scan: usize,
    ) -> Result<(Vec<Task>, Option<u64>)> {
        self.inner
            .storage
            .page_tasks(from, filter.limit, scan.max(1), |t| filter.matches(t))
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
    /// two lookups per waiting task; [`Worker`]s run a pass
    /// over their queue when they start, and `ajc task reconcile` runs one
    /// on demand. Go has no equivalent: such tasks stay as they are.
    ///
    /// # Errors
    /// Listing or lookup failures ([`Error::Nats`], [`Error::StorageNotReady`]).
    pub async fn reconcile_tasks(
        &self,
        queue: Option<&str>,
        grace: std::time::Duration,
    ) -> Result<Vec<String>> {
        self.inner.storage.reconcile_tasks(queue, grace).await
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
            .update_stream(crate::storage::TASKS_STREAM, |c| {
                if let Some(d) = retention {
                    c["max_age"] = (d.as_nanos() as u64).into();
                }
                if let Some(r) = replicas {
                    c["num_replicas"] = r.into();
                }
            })
            .await
    }

    /// Changes a queue's settings; see [`QueueUpdate::validate`] for the limits.
    pub async fn configure_queue(&self, name: &str, update: QueueUpdate) -> Result<QueueInfo> {
        update.validate()?;
        let storage = &self.inner.storage;
        storage.queue_info(name).await?;
        if update.changes_stream() {
            storage
                .update_stream(&Queue::new(name).stream_name(), |c| {
                    if let Some(d) = update.max_age {
                        c["max_age"] = (d.as_nanos() as u64).into();
                    }
                    if let Some(n) = update.max_entries {
                        c["max_msgs"] = (if n > 0 { n } else { -1 }).into();
                    }
                    if let Some(r) = update.replicas {
                        c["num_replicas"] = r.into();
                    }
                })
                .await?;
        }
        if update.changes_consumer() {
            storage
                .update_workers(name, |c| {
                    if let Some(t) = update.max_tries {
                        c["max_deliver"] = (if t > 0 { t } else { -1 }).into();
                    }
                    if let Some(d) = update.max_run_time {
                        c["ack_wait"] = (d.as_nanos() as u64).into();
                    }
                    if let Some(n) = update.max_concurrent {
                        c["max_ack_pending"] = Queue::new(name)
                            .max_concurrent(n)
                            .effective_max_concurrent()
                            .into();
                    }
                })
                .await?;
        }
        storage.queue_info(name).await
    }

    /// The name of the scheduler leading the task scheduler election (Go's
    /// or ours: both campaign on the same key), or `None` when none leads.
    ///
    /// # Errors
    /// Reading the elections bucket failed ([`Error::Nats`]).
    pub async fn scheduler_leader(&self) -> Result<Option<String>> {
        let js = self.inner.storage.jetstream();
        let Ok(store) = js.get_key_value(crate::storage::ELECTIONS_BUCKET).await else {
            return Ok(None);
        };
        match store.get(crate::election::TASK_SCHEDULER_ELECTION).await {
            Ok(v) => Ok(v
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .filter(|v| !v.is_empty())),
            Err(e) => Err(crate::error::nats("reading the scheduler leader", e).into()),
        }
    }

    /// The workers running now, by queue and start time: each running
    /// worker of this crate keeps a record in the `CHORIA_AJ_WORKERS` KV
    /// bucket, refreshed every 10 s and dropped 30 s after its last refresh
    /// ([`crate::worker::presence`]). Go workers keep none. Empty when no
    /// worker ever ran (the bucket is not created here).
    ///
    /// # Errors
    /// Reading the bucket failed ([`Error::Nats`]).
    pub async fn workers(&self) -> Result<Vec<crate::worker::presence::WorkerPresence>> {
        use futures::TryStreamExt;
        let js = self.inner.storage.jetstream();
        let Some(store) = crate::worker::presence::bucket(js, false).await else {
            return Ok(vec![]);
        };
        let keys: Vec<String> = match store.keys().await {
            Ok(k) => k
                .try_collect()
                .await
                .map_err(|e| crate::error::nats("listing workers", e))?,
            Err(e) => return Err(crate::error::nats("listing workers", e).into()),
        };
        let mut all = Vec::with_capacity(keys.len());
        for key in keys {
            if let Ok(Some(v)) = store.get(&key).await {
                if let Ok(w) = serde_json::from_slice(&v) {
                    all.push(w);
                }
            }
        }
        all.sort_by(|a: &crate::worker::presence::WorkerPresence, b| {
            (&a.queue, a.started).cmp(&(&b.queue, b.started))
        });
        Ok(all)
    }

    /// Lifecycle events of every task (and leader elections) from now on.
    pub async fn watch_events(
        &self,
    ) -> Result<impl Stream<Item = Result<crate::events::Event>> + Send + 'static> {
        crate::events::watch(self.nats(), None).await
    }

    /// Lifecycle events of one task from now on.
    pub async fn watch_task(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<crate::events::Event>> + Send + 'static> {
        crate::events::watch(self.nats(), Some(id)).await
    }

    /// Creates the task store with this client's storage settings
    /// ([`ClientBuilder::memory_storage`], [`ClientBuilder::replicas`],
    /// [`ClientBuilder::task_retention`]) unless it exists; an existing
    /// store is left unchanged. For clients built with
    /// [`ClientBuilder::no_storage_init`] that need only the task store.
    pub async fn prepare_tasks(&self) -> Result<()> {
        self.inner.storage.prepare_tasks().await
    }

    /// The task store's details: record count, bytes, first and last
    /// update times, retention, storage and replicas.
    ///
    /// # Errors
    /// [`Error::StorageNotReady`] when the task store does not exist.
    pub async fn tasks_info(&self) -> Result<StreamDetails> {
        self.inner.storage.tasks_info().await
    }

    /// The configuration bucket's stream (`KV_CHORIA_AJ_CONFIGURATION`),
    /// `None` when it does not exist.
    pub async fn config_bucket_info(&self) -> Result<Option<StreamDetails>> {
        let name = format!("KV_{}", crate::storage::CONFIG_BUCKET);
        self.inner.storage.stream_details(&name).await
    }

    /// The leader elections bucket's stream (`KV_CHORIA_AJ_ELECTIONS`),
    /// `None` when it does not exist.
    pub async fn elections_bucket_info(&self) -> Result<Option<StreamDetails>> {
        let name = format!("KV_{}", crate::storage::ELECTIONS_BUCKET);
        self.inner.storage.stream_details(&name).await
    }

    /// Names of all queues, sorted.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        self.inner.storage.queue_names().await
    }

    /// Settings and state of a queue.
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        self.inner.storage.queue_info(name).await
    }

    /// Creates or loads another queue, returning it as the server has it.
    pub async fn prepare_queue(&self, queue: &Queue) -> Result<Queue> {
        self.inner.storage.prepare_queue(queue).await
    }

    /// Removes every item from a queue. Task records are not changed, as
    /// in Go: a task whose item was removed stays `new` (or `retry`) and no
    /// worker will run it; see [`Client::purge_queue_terminating`].
    pub async fn purge_queue(&self, name: &str) -> Result<()> {
        self.inner.storage.purge_queue(name).await
    }

    /// Removes every item from a queue and saves the tasks whose items were
    /// removed and that were still waiting (`new`, `retry`, `blocked`) as
    /// `terminated`, `last_err` reading `work item removed: queue <name> was
    /// purged`, so no record claims to wait for an item that is gone.
    /// Returns how many tasks were marked. Items published after the call
    /// started are kept. Use [`Client::retry_task`] to run a marked task.
    pub async fn purge_queue_terminating(&self, name: &str) -> Result<u64> {
        self.inner.storage.purge_queue_terminating(name).await
    }

    /// Deletes a queue.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        self.inner.storage.delete_queue(name).await
    }

    /// A worker that processes this client's queue with `router`; see
    /// [`Worker`] for its settings (concurrency, retry policy, grace).
    pub fn worker(&self, router: Router) -> Worker {
        Worker::new(self.inner.storage.clone(), self.inner.queue.clone(), router)
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.inner.storage
    }
}

/// What [`Client::replay_tasks`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// Ids of the tasks the filter matched, in store order.
    pub matched: Vec<String>,
    /// Ids retried.
    pub replayed: Vec<String>,
    /// Ids gone between the listing and their retry.
    pub skipped: Vec<String>,
    /// Ids whose retry failed, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Which stored tasks a listing, page or replay takes
/// ([`Client::list_tasks_filtered`], [`Client::page_tasks`],
/// [`Client::replay_tasks`]): every condition given must hold.
#[derive(Debug, Clone)]
pub struct TaskFilter {
    states: Vec<TaskState>,
    types: Vec<String>,
    queue: Option<String>,
    created_since: Option<time::OffsetDateTime>,
    created_before: Option<time::OffsetDateTime>,
    last_error: Option<String>,
    limit: usize,
}

impl Default for TaskFilter {
    fn default() -> Self {
        TaskFilter {
            states: Vec::new(),
            types: Vec::new(),
            queue: None,
            created_since: None,
            created_before: None,
            last_error: None,
            limit: usize::MAX,
        }
    }
}

impl TaskFilter {
    /// Every task.
    pub fn new() -> TaskFilter {
        TaskFilter::default()
    }
    /// Only tasks in this state (may be given several times).
    pub fn state(mut self, s: TaskState) -> Self {
        self.states.push(s);
        self
    }
    /// Only tasks of this type (may be given several times).
    pub fn task_type(mut self, t: impl Into<String>) -> Self {
        self.types.push(t.into());
        self
    }
    /// Only tasks last enqueued into this queue.
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = Some(q.into());
        self
    }
    /// Only tasks created at or after `t`.
    pub fn created_since(mut self, t: time::OffsetDateTime) -> Self {
        self.created_since = Some(t);
        self
    }
    /// Only tasks created before `t`.
    pub fn created_before(mut self, t: time::OffsetDateTime) -> Self {
        self.created_before = Some(t);
        self
    }
    /// Only tasks whose last error contains `text`.
    pub fn last_error_contains(mut self, text: impl Into<String>) -> Self {
        self.last_error = Some(text.into());
        self
    }
    /// At most this many tasks.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }
    /// True when `task` passes the filter (the limit aside).
    pub fn matches(&self, task: &Task) -> bool {
        (self.states.is_empty() || self.states.contains(&task.state))
            && (self.types.is_empty() || self.types.contains(&task.task_type))
            && self.queue.as_ref().is_none_or(|q| *q == task.queue)
            && self.created_since.is_none_or(|t| task.created >= t)
            && self.created_before.is_none_or(|t| task.created < t)
            && self
                .last_error
                .as_ref()
                .is_none_or(|e| task.last_err.contains(e.as_str()))
    }
}
