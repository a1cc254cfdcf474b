//! The client: connection, storage preparation, and the task and queue operations.

use crate::error::{Error, Result};
use crate::natscontext::NatsContext;
use crate::processor::Worker;
use crate::queue::{Queue, QueueInfo};
use crate::retry::{LinearPolicy, RetryPolicy};
use crate::router::Router;
use crate::storage::{Storage, StorageSettings};
use crate::task::{Task, TaskState};
use futures::{Stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;

/// Default number of tasks one process handles at once.
pub const DEFAULT_CLIENT_CONCURRENCY: usize = 10;

enum Connect {
    Url(String),
    Nats(async_nats::Client),
    Context(String),
}

/// Configures and connects a [`Client`].
///
/// ```no_run
/// # async fn demo() -> asyncjobs::Result<()> {
/// use asyncjobs::{Client, Queue};
/// use std::time::Duration;
/// let client = Client::builder()
///     .url("nats://127.0.0.1:4222")
///     .queue(Queue::new("EMAIL").max_run_time(Duration::from_secs(30)).max_tries(5))
///     .concurrency(20)
///     .retry_policy_name("1m")?
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
pub struct ClientBuilder {
    connect: Connect,
    queue: Option<Queue>,
    settings: StorageSettings,
    concurrency: usize,
    retry: Arc<dyn RetryPolicy>,
    no_storage_init: bool,
    connection_name: String,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            connect: Connect::Url("nats://127.0.0.1:4222".into()),
            queue: None,
            settings: StorageSettings {
                memory: false,
                replicas: 1,
                task_retention: Duration::ZERO,
                discard: Vec::new(),
            },
            concurrency: DEFAULT_CLIENT_CONCURRENCY,
            retry: Arc::new(LinearPolicy::ten_minutes()),
            no_storage_init: false,
            connection_name: "Choria Asynchronous Jobs Client".into(),
        }
    }
}

impl ClientBuilder {
    /// Connect to this server URL (comma separated for several).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.connect = Connect::Url(url.into());
        self
    }

    /// Use an existing connection.
    pub fn nats_client(mut self, nc: async_nats::Client) -> Self {
        self.connect = Connect::Nats(nc);
        self
    }

    /// Connect with the NATS CLI context called `name`.
    pub fn nats_context(mut self, name: impl Into<String>) -> Self {
        self.connect = Connect::Context(name.into());
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

    /// How many tasks this process handles at once (default 10).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The retry backoff policy.
    pub fn retry_policy(mut self, policy: impl RetryPolicy) -> Self {
        self.retry = Arc::new(policy);
        self
    }

    /// A named retry policy: `default`, `10m`, `1h` or `1m`.
    pub fn retry_policy_name(mut self, name: &str) -> Result<Self> {
        self.retry = crate::retry::policy_by_name(name)?;
        Ok(self)
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

    /// Do not create or load any stream, bucket or queue.
    pub fn no_storage_init(mut self) -> Self {
        self.no_storage_init = true;
        self
    }

    /// Connects and prepares storage: the task stream, both KV buckets and the queue.
    pub async fn build(self) -> Result<Client> {
        if !(1..=5).contains(&self.settings.replicas) {
            return Err(Error::Config("replicas must be between 1 and 5".into()));
        }
        let nc = match self.connect {
            Connect::Nats(nc) => nc,
            Connect::Url(url) => {
                connect(
                    &url,
                    async_nats::ConnectOptions::new(),
                    &self.connection_name,
                )
                .await?
            }
            Connect::Context(name) => {
                let ctx = NatsContext::load(&name)?;
                let opts = ctx.connect_options().await?;
                connect(&ctx.server_url(), opts, &self.connection_name).await?
            }
        };
        let storage = Storage::new(nc, self.settings);
        let mut queue = self.queue.unwrap_or_else(Queue::default_queue);
        queue.validate()?;
        if !self.no_storage_init {
            storage.prepare_tasks().await?;
            storage.prepare_buckets().await?;
            queue = storage.prepare_queue(&queue).await?;
        }
        Ok(Client {
            inner: Arc::new(Inner {
                storage,
                queue,
                concurrency: self.concurrency,
                retry: self.retry,
            }),
        })
    }
}

async fn connect(
    url: &str,
    opts: async_nats::ConnectOptions,
    name: &str,
) -> Result<async_nats::Client> {
    let addrs: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("invalid NATS URL {url:?}: {e}")))?;
    opts.name(name)
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(|e| Error::Nats(format!("cannot connect to NATS at {url}: {e}")))
}

struct Inner {
    storage: Storage,
    queue: Queue,
    concurrency: usize,
    retry: Arc<dyn RetryPolicy>,
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

    pub(crate) fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The client's queue, as the server reported it at startup.
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// The underlying NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.inner.storage.nc
    }

    /// The configured per-process concurrency.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    pub(crate) fn retry_policy(&self) -> Arc<dyn RetryPolicy> {
        self.inner.retry.clone()
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

    /// Enqueues into another queue by name (it is not created).
    pub async fn enqueue_to(&self, queue: &str, task: &mut Task) -> Result<()> {
        self.inner.storage.enqueue(queue, task).await
    }

    /// Enqueues many tasks with their publishes pipelined; one result per task, in order.
    pub async fn enqueue_many(&self, tasks: &mut [Task]) -> Vec<Result<()>> {
        let storage = &self.inner.storage;
        let queue = self.inner.queue.name.as_str();
        let mut results: Vec<Result<()>> = Vec::with_capacity(tasks.len());
        for chunk in tasks.chunks_mut(256) {
            let mut acks = Vec::with_capacity(chunk.len());
            for task in chunk.iter_mut() {
                acks.push(storage.start_enqueue(queue, task).await);
            }
            let mut saved = Vec::with_capacity(chunk.len());
            for (task, ack) in chunk.iter_mut().zip(acks) {
                saved.push(match ack {
                    Ok(ack) => storage.finish_save(task, ack).await,
                    Err(e) => Err(e),
                });
            }
            let mut items = Vec::with_capacity(chunk.len());
            for (task, ok) in chunk.iter().zip(&saved) {
                items.push(match ok {
                    Ok(()) => Some(storage.start_item(queue, task).await),
                    Err(_) => None,
                });
            }
            for ((task, item), save) in chunk.iter_mut().zip(items).zip(saved) {
                results.push(match (save, item) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Some(item)) => storage.finish_item(queue, task, item).await,
                    (Ok(()), None) => unreachable!("item sent for every saved task"),
                });
            }
        }
        results
    }

    /// Loads a task by id.
    pub async fn load_task(&self, id: &str) -> Result<Task> {
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

    /// Deletes a task record (pending work items are left; they end when delivered).
    pub async fn delete_task(&self, id: &str) -> Result<()> {
        self.inner.storage.delete_task(id).await
    }

    /// Removes every task record.
    pub async fn purge_tasks(&self) -> Result<()> {
        self.inner.storage.purge_tasks().await
    }

    /// Streams stored tasks, oldest update first, up to `limit`. Records that
    /// do not decode are yielded as [`Error::InvalidTaskRecord`].
    pub async fn list_tasks(
        &self,
        limit: usize,
    ) -> Result<impl Stream<Item = Result<Task>> + Send + 'static> {
        Ok(self.inner.storage.list_tasks().await?.take(limit))
    }

    /// Number of task records and their total size in bytes.
    pub async fn tasks_info(&self) -> Result<(u64, u64)> {
        self.inner.storage.tasks_info().await
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

    /// Removes every item from a queue.
    pub async fn purge_queue(&self, name: &str) -> Result<()> {
        self.inner.storage.purge_queue(name).await
    }

    /// Deletes a queue.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        self.inner.storage.delete_queue(name).await
    }

    /// A worker that processes this client's queue with `router`.
    pub fn worker(&self, router: Router) -> Worker {
        Worker::new(self.clone(), router)
    }
}
