//! The client: one connection to the task store and a work queue, and
//! every operation a producer or an operator makes on tasks, queues and
//! schedules. The storage layer (`crate::storage`) behind it makes the
//! server calls.
//!
//! | file | the `Client` methods it holds |
//! | --- | --- |
//! | `mod.rs` | the handle: `connect`, `builder`, `queue`, `nats`, `worker` |
//! | `builder.rs` | [`ClientBuilder`]: connection and storage settings, storage preparation |
//! | `tasks.rs` | enqueue, load, retry, replay, delete, list, page, reconcile, the task store's settings |
//! | `batches.rs` | enqueue a batch, its status, cancel and retry it as a whole |
//! | `bulk.rs` | retry, cancel or delete every task a filter matches ([`BulkAction`], [`BulkSummary`]) |
//! | `queues.rs` | create or load, inspect, configure, purge and delete queues |
//! | `retention.rs` | how long finished records are kept; turning on their expiry |
//! | `schedules.rs` | create, load, list, update and delete scheduled tasks |
//! | `cluster.rs` | the scheduler's leader, running workers, lifecycle events, buckets |
//! | `serving.rs` | the server's capabilities; whether a worker serves a queue and a task type ([`Serving`]) |
//! | `filter.rs` | [`TaskFilter`] and [`ReplaySummary`] |
//! | `handle.rs` | [`TaskHandle`]: a typed handle on an enqueued task |

mod batches;
mod builder;
mod bulk;
mod cluster;
mod filter;
mod handle;
mod queues;
mod retention;
mod schedules;
mod serving;
mod tasks;

pub use builder::ClientBuilder;
pub use bulk::{BulkAction, BulkSummary};
pub use filter::{ReplaySummary, TaskFilter};
pub use handle::{TaskHandle, WaitError};
pub use serving::Serving;

use crate::error::Result;
use crate::queue::Queue;
use crate::router::Router;
use crate::storage::Storage;
use crate::worker::Worker;
use std::sync::Arc;

/// Most enqueues [`Client::enqueue_many`] has in flight at once.
pub const ENQUEUE_IN_FLIGHT: usize = 256;

pub(super) struct Inner {
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
    ///
    /// # Errors
    /// The connection's errors, [`Error::Config`](crate::Error::Config) when the
    /// server runs no JetStream, and storage preparation's (see
    /// [`ClientBuilder::build`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// println!("queue {}", client.queue().name);
    /// # Ok(()) }
    /// ```
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

    /// The JetStream API the client uses (`$JS.API`, or the domain or
    /// prefix its NATS context or builder selected).
    pub fn jetstream_api(&self) -> &crate::connect::JetStreamApi {
        self.inner.storage.api()
    }

    /// A JetStream context on the client's connection using
    /// [`jetstream_api`](Client::jetstream_api), for code that keeps its
    /// own streams or buckets beside the client's.
    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        self.inner.storage.jetstream().clone()
    }

    /// A worker that processes this client's queue with `router`; see
    /// [`Worker`] for its settings (concurrency, retry policy, grace).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::{typed, HandlerError, Router};
    /// let router = Router::new().handle("greet", typed(|_ctx, name: String| async move {
    ///     Ok::<_, HandlerError>(format!("hello {name}"))
    /// }))?;
    /// let shutdown = asyncjobs::CancellationToken::new();
    /// client.worker(router).concurrency(20).run(shutdown).await?;
    /// # Ok(()) }
    /// ```
    pub fn worker(&self, router: Router) -> Worker {
        Worker::new(self.inner.storage.clone(), self.inner.queue.clone(), router)
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.inner.storage
    }
}
