//! Queue operations of the [`Client`]: create or load, inspect, configure,
//! pause and resume, purge and delete.

use super::Client;
use crate::error::{Error, Result};
use crate::queue::{PauseUntil, Queue, QueueInfo, QueueUpdate};

impl Client {
    /// Makes sure a queue exists, creating it as `make()` describes when
    /// it does not (an existing queue keeps its settings). Checked with the
    /// server once per client and queue; the typed `enqueue` helpers of
    /// `#[task_handler]` call it with the handler's declared settings.
    ///
    /// # Errors
    /// As [`Client::prepare_queue`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::Queue;
    /// use std::time::Duration;
    /// client.ensure_queue(|| Queue::new("EMAIL").max_run_time(Duration::from_secs(30))).await?;
    /// # Ok(()) }
    /// ```
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

    /// Forgets that `queue` was seen to exist, so the next
    /// [`Client::ensure_queue`] asks the server again (after it was found
    /// deleted).
    pub(crate) fn forget_queue(&self, queue: &str) {
        self.inner
            .known_queues
            .lock()
            .expect("known queues")
            .remove(queue);
    }

    /// Names of all queues, sorted.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        self.inner.storage.queue_names().await
    }

    /// Settings and state of a queue.
    ///
    /// # Errors
    /// [`Error::QueueNotFound`],
    /// [`Error::QueueNameInvalid`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let info = client.queue_info("EMAIL").await?;
    /// println!(
    ///     "{} waiting, {} running, run time {:?}",
    ///     info.pending,
    ///     info.ack_pending,
    ///     info.queue.effective_max_run_time()
    /// );
    /// # Ok(()) }
    /// ```
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        self.inner.storage.queue_info(name).await
    }

    /// Creates or loads another queue, returning it as the server has it.
    pub async fn prepare_queue(&self, queue: &Queue) -> Result<Queue> {
        self.inner.storage.prepare_queue(queue).await
    }

    /// Changes a queue's settings; see [`QueueUpdate::validate`] for the limits.
    ///
    /// # Errors
    /// [`Error::Config`] naming a setting out of range;
    /// [`Error::QueueNotFound`],
    /// [`Error::QueueConsumerNotFound`]; the
    /// server's refusal of the change.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::QueueUpdate;
    /// use std::time::Duration;
    /// let update = QueueUpdate {
    ///     max_run_time: Some(Duration::from_secs(600)),
    ///     max_concurrent: Some(20),
    ///     ..QueueUpdate::default()
    /// };
    /// let info = client.configure_queue("EMAIL", update).await?;
    /// assert_eq!(info.queue.max_concurrent, 20);
    /// # Ok(()) }
    /// ```
    pub async fn configure_queue(&self, name: &str, update: QueueUpdate) -> Result<QueueInfo> {
        update.validate()?;
        self.inner.storage.configure_queue(name, &update).await
    }

    /// Pauses a queue for every worker of it at once, Go's included: no
    /// worker gets an item until `until` (then the queue resumes by
    /// itself) or until [`Client::resume_queue`]. Tasks already running
    /// finish; enqueueing goes on; the pause survives worker and server
    /// restarts. Pausing a paused queue replaces its end. Needs nats-server
    /// 2.11 or later (JetStream consumer pause; docs/storage.md §4.4).
    ///
    /// # Errors
    /// [`Error::ServerTooOld`] on an older server, [`Error::Config`] for
    /// an end that has passed, [`Error::QueueNotFound`],
    /// [`Error::QueueConsumerNotFound`]; nothing is changed by any of
    /// them.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::PauseUntil;
    /// let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    /// let info = client.pause_queue("EMAIL", PauseUntil::Time(in_an_hour)).await?;
    /// assert!(info.paused.is_some());
    /// client.resume_queue("EMAIL").await?;
    /// # Ok(()) }
    /// ```
    pub async fn pause_queue(&self, name: &str, until: PauseUntil) -> Result<QueueInfo> {
        self.inner.storage.pause_queue(name, until).await
    }

    /// Lifts a queue's pause ([`Client::pause_queue`]); workers get items
    /// again at once. A queue that is not paused is left as it is.
    ///
    /// # Errors
    /// [`Error::ServerTooOld`], [`Error::QueueNotFound`],
    /// [`Error::QueueConsumerNotFound`], or the update's failure.
    pub async fn resume_queue(&self, name: &str) -> Result<QueueInfo> {
        self.inner.storage.resume_queue(name).await
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
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let marked = client.purge_queue_terminating("EMAIL").await?;
    /// println!("{marked} waiting tasks terminated");
    /// # Ok(()) }
    /// ```
    pub async fn purge_queue_terminating(&self, name: &str) -> Result<u64> {
        self.inner.storage.purge_queue_terminating(name).await
    }

    /// Deletes a queue.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        self.inner.storage.delete_queue(name).await
    }
}
