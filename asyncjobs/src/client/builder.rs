//! Configuring and connecting a [`Client`]: connection, storage settings,
//! and the preparation of the task store, buckets and queue.

use super::{Client, Inner};
use crate::connect::{Connect, JetStreamApi};
use crate::error::{Error, Result};
use crate::queue::{validate_replicas, Queue};
use crate::storage::{Storage, StorageSettings};
use crate::task::{Retention, TaskState};
use std::sync::Arc;
use std::time::Duration;

enum Connection {
    Open(Connect),
    Nats(async_nats::Client),
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
    jetstream_api: Option<JetStreamApi>,
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
            jetstream_api: None,
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

    /// Connect with the NATS CLI context called `name`: its servers,
    /// credentials, TLS settings and JetStream domain or API prefix
    /// (docs/interfaces.md §4).
    pub fn nats_context(mut self, name: impl Into<String>) -> Self {
        self.connection = Connection::Open(Connect::context(name));
        self
    }

    /// Use this JetStream API (default: the one the context selects, else
    /// `$JS.API`), for example the hub's domain when connected to a leaf
    /// node: `JetStreamApi::domain("hub")`. Needed with
    /// [`nats_client`](ClientBuilder::nats_client) when the connection came
    /// from [`Connect::connect_with_jetstream`].
    pub fn jetstream_api(mut self, api: JetStreamApi) -> Self {
        self.jetstream_api = Some(api);
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

    /// How long finished task records are kept, per final state, for
    /// queues without their own ([`Queue::retention`]); default
    /// [`Retention::default`] (complete 24 hours, failed 7 days). Records
    /// expire by a per-message TTL (nats-server 2.11, a task store that
    /// allows it: docs/processing.md §2.19); [`Retention::forever`] keeps them.
    ///
    /// ```
    /// use asyncjobs::{Client, Retention};
    /// let r: Retention = "complete=1h,failed=720h".parse().unwrap();
    /// let builder = Client::builder().url("nats://127.0.0.1:4222").retention(r);
    /// ```
    pub fn retention(mut self, retention: Retention) -> Self {
        self.settings.retention = retention;
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
    #[cfg_attr(docsrs, doc(cfg(feature = "signing")))]
    #[cfg(feature = "signing")]
    pub fn signing_keys(mut self, keys: crate::signing::Keys) -> Self {
        self.settings.keys = keys;
        self
    }

    /// For tests of clock skew only: pretends this process's clock is off
    /// by `offset` (negative: slow). The worker measures the skew against
    /// the server and corrects for it (docs/processing.md §2.13).
    #[doc(hidden)]
    pub fn pretend_clock_offset(mut self, offset: time::Duration) -> Self {
        self.settings.local_clock_offset = offset;
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
    /// is not enabled on the NATS server …: start nats-server with -js …`),
    /// a setting is invalid or [`jetstream_api`](ClientBuilder::jetstream_api)
    /// differs from the one the context selects; the storage preparation's
    /// errors.
    pub async fn build(mut self) -> Result<Client> {
        validate_replicas(self.settings.replicas)?;
        let (nc, api) = match self.connection {
            Connection::Nats(nc) => (nc, self.jetstream_api.unwrap_or_default()),
            Connection::Open(c) => {
                let (nc, from_context) = c
                    .name(self.connection_name)
                    .connect_with_jetstream()
                    .await?;
                match self.jetstream_api {
                    Some(api) if !from_context.is_default() && api != from_context => {
                        return Err(Error::Config(format!(
                            "the JetStream API {api} given to the client builder differs from the NATS context's {from_context}"
                        )))
                    }
                    Some(api) => (nc, api),
                    None => (nc, from_context),
                }
            }
        };
        self.settings.api = api;
        let info = nc.server_info();
        if !info.jetstream {
            return Err(Error::Config(format!(
                "JetStream is not enabled on the NATS server {} ({} at {}:{}): start nats-server with -js (or --jetstream), or use a server with JetStream",
                info.server_name, info.version, info.host, info.port
            )));
        }
        let storage = Storage::new(nc, self.settings);
        storage.learn_capabilities().await;
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
