//! What the [`Client`] reads about the cluster around the queues: the
//! scheduler's leader, running workers, lifecycle events, the buckets.

use super::Client;
use crate::election::TASK_SCHEDULER_ELECTION;
use crate::error::Result;
use crate::queue::StreamDetails;
use crate::storage::ELECTIONS_BUCKET;
use crate::worker::presence::WorkerPresence;
use futures::Stream;

impl Client {
    /// The name of the scheduler leading the task scheduler election (Go's
    /// or ours: both campaign on the same key), or `None` when none leads.
    ///
    /// # Errors
    /// Reading the elections bucket failed ([`Error::Nats`](crate::Error::Nats)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// match client.scheduler_leader().await? {
    ///     Some(name) => println!("scheduler {name} leads"),
    ///     None => println!("no scheduler leads"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn scheduler_leader(&self) -> Result<Option<String>> {
        let storage = &self.inner.storage;
        let Ok(Some(bucket)) = storage.open_bucket(ELECTIONS_BUCKET, String::new).await else {
            return Ok(None);
        };
        let leader = bucket
            .get(TASK_SCHEDULER_ELECTION, || {
                "reading the scheduler leader".into()
            })
            .await?;
        Ok(leader
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .filter(|v| !v.is_empty()))
    }

    /// The workers running now, by queue and start time: each running
    /// worker of this crate keeps a record in the `CHORIA_AJ_WORKERS` KV
    /// bucket, refreshed every 10 s and dropped 30 s after its last refresh
    /// ([`crate::worker::presence`]). Go workers keep none. Empty when no
    /// worker ever ran (the bucket is not created here).
    ///
    /// # Errors
    /// Reading the bucket failed ([`Error::Nats`](crate::Error::Nats)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// for w in client.workers().await? {
    ///     println!("{} on {} (pid {}): queue {}, {} slots", w.id, w.host, w.pid, w.queue, w.concurrency);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn workers(&self) -> Result<Vec<WorkerPresence>> {
        crate::worker::presence::list(&self.inner.storage).await
    }

    /// The lease of the Rust worker running a try of task `id`, if one
    /// does (docs/processing.md §2.14): who holds an `active` task, and
    /// when it last renewed its lease (`renewed`, the server's time).
    /// `None` when no worker's lease names it (not running, or run by a
    /// worker that keeps no leases, such as a Go worker).
    ///
    /// # Errors
    /// Reading the leases failed ([`Error::Nats`](crate::Error::Nats)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// if let Some(lease) = client.task_holder("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c").await? {
    ///     println!("run by worker {} (pid {} on {})", lease.worker, lease.pid, lease.host);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn task_holder(&self, id: &str) -> Result<Option<crate::worker::WorkerLease>> {
        self.inner.storage.task_holder(id).await
    }

    /// The leases of the running Rust workers (docs/processing.md §2.14):
    /// each names the tries its worker runs (task id → the sequence of the
    /// task's record it last saved) and when it last renewed them
    /// (`renewed`, the server's time). A worker with no running try keeps
    /// none, and Go workers keep none. Empty when no worker ever kept one.
    ///
    /// # Errors
    /// Reading the leases failed ([`Error::Nats`](crate::Error::Nats)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// for lease in client.worker_leases().await? {
    ///     println!("{} runs {} tries", lease.worker, lease.running.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn worker_leases(&self) -> Result<Vec<crate::worker::WorkerLease>> {
        self.inner.storage.leases().await
    }

    /// Lifecycle events of every task (and leader elections) from now on.
    pub async fn watch_events(
        &self,
    ) -> Result<impl Stream<Item = Result<crate::events::Event>> + Send + 'static> {
        crate::events::watch(self.nats(), None).await
    }

    /// Lifecycle events of one task from now on.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::events::Event;
    /// use futures::StreamExt;
    /// let mut events = client.watch_task("2Jk7X1vJ8nR0a4mZq3bW6yTgE5c").await?;
    /// while let Some(event) = events.next().await {
    ///     if let Event::TaskState(e) = event? {
    ///         println!("{} is now {}", e.task_id, e.state);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch_task(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<crate::events::Event>> + Send + 'static> {
        crate::events::watch(self.nats(), Some(id)).await
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
}
