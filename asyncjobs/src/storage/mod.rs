//! The storage layer: every JetStream and key-value call of the runtime,
//! for the task store, the work queues and the KV buckets
//! (docs/storage.md describes what is stored where).
//!
//! One file per concern, each an `impl Storage` block:
//!
//! | file | owns |
//! | --- | --- |
//! | `mod.rs` | the [`Storage`] handle, its settings, stream lookups |
//! | `setup.rs` | creating the task store, queues, buckets and the exhausted-advisories stream |
//! | `records.rs` | task records: save (optimistic concurrency), state events, load |
//! | `discarded.rs` | discard markers of deleted final tasks |
//! | `enqueue.rs` | the enqueue path: record, then work item |
//! | `work_item.rs` | the work item's body and headers |
//! | `items.rs` | publishing, finding and removing work items; held (scheduled) items |
//! | `lifecycle.rs` | retry, delete, purge, reconcile |
//! | `queues.rs` | queue names, settings and state; configuration updates |
//! | `listing.rs` | snapshot listings and pages of the task store |
//! | `retention.rs` | how long finished records are kept (their per-message TTL) |
//! | `unique.rs` | unique tasks' keys (`CHORIA_AJ_UNIQUE`) and their enqueue |
//! | `batches.rs` | batch records (`CHORIA_AJ_BATCHES`), a batch's checks before it is written |
//! | `buckets.rs` | key-value buckets: the schedules', elections', presence records |
//! | `api.rs` | raw `$JS.API` requests whose bodies must equal Go's |
//!
//! Two JetStream paths are not here, on purpose: both act on one delivery
//! and live with the worker that owns it. Pull requests
//! (`$JS.API.CONSUMER.MSG.NEXT.<stream>.WORKERS`, sized to free slots) are
//! sent by `worker/pull.rs`; delivered items are acknowledged (`+ACK`,
//! `-NAK`, `+TERM`, `+WPI`) through their own acker by `worker/outcome.rs`,
//! `worker/execute.rs` and `handler.rs` (heartbeats), and the exhausted
//! advisories by `worker/exhausted.rs` (its consumer comes from
//! [`Storage::exhausted_consumer`]). Lifecycle events and remote handler
//! calls are core NATS, not JetStream (`events.rs`, `remote/`).
//!
//! Reads and administration use async-nats's typed calls and match the
//! server's [`ErrorCode`]s; the create and update bodies that must equal
//! Go's byte for byte (the golden configurations) go through [`api`].
//! Work items are written by one path ([`Storage::publish_item_at`]).

mod api;
mod batches;
mod buckets;
mod discarded;
mod enqueue;
mod items;
mod key_slots;
mod lanes;
mod leases;
mod lifecycle;
mod limits;
mod listing;
mod queues;
mod records;
mod retention;
mod setup;
mod unique;
mod work_item;

pub use batches::BATCHES_BUCKET;
pub(crate) use buckets::Bucket;
pub use buckets::WORKERS_BUCKET;
pub(crate) use items::Due;
pub(crate) use lanes::{LaneClaim, LaneItem};
pub use leases::{WorkerLease, LEASES_BUCKET};
pub(crate) use limits::Tokens;
pub use limits::LIMITS_BUCKET;
pub(crate) use listing::PageStart;
pub use retention::RetentionStatus;
pub(crate) use retention::RETENTION_METADATA;
pub use unique::UNIQUE_BUCKET;
pub(crate) use work_item::{ItemError, WorkItem, TRACEPARENT_HEADER};

use crate::error::{nats, Error, Result};
use crate::queue::{StreamDetails, QUEUE_STREAM_PREFIX, WORKERS_CONSUMER};
use crate::task::{Task, TaskState};
use async_nats::jetstream::{self, stream, ErrorCode};
use items::DelayCache;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The stream holding one record per task.
pub const TASKS_STREAM: &str = "CHORIA_AJ_TASKS";
/// Subject prefix of task records; the id follows.
pub const TASK_SUBJECT_PREFIX: &str = "CHORIA_AJ.T.";
/// KV bucket for scheduled tasks and other configuration.
pub const CONFIG_BUCKET: &str = "CHORIA_AJ_CONFIGURATION";
/// KV bucket for leader elections.
pub const ELECTIONS_BUCKET: &str = "CHORIA_AJ_ELECTIONS";
/// KV bucket remembering the final state of tasks whose record was deleted
/// because their state is discarded (key = task id, value
/// `{"state":"complete"}`), so their dependants can still be judged.
/// Created on demand by the first discard; Go neither writes nor reads it.
pub const DISCARDED_BUCKET: &str = "CHORIA_AJ_DISCARDED";

/// Stream holding work items until they are due (delayed tasks, and tasks
/// waiting for their next try or their dependencies): one JetStream message
/// schedule per task on `CHORIA_AJ.W.<queue>.<id>`, released when due to
/// `CHORIA_AJ.R.<queue>.<id>`, from where a worker (of any queue) moves it
/// into the queue. Work-queue retention, one durable consumer
/// (`RELEASE`) shared by every worker; needs nats-server 2.12.
/// Go neither writes nor reads it.
pub const HELD_STREAM: &str = "CHORIA_AJ_HELD";

/// The durable consumer of [`HELD_STREAM`] every worker reads released
/// items from.
pub(crate) const RELEASE_CONSUMER: &str = "RELEASE";

/// Stream capturing JetStream's max-deliveries advisories for the
/// `WORKERS` consumers of every queue, so a work item the server stopped
/// delivering is noticed even when no worker was running at the time.
/// Work-queue retention, one durable consumer per queue (named after it);
/// Go neither writes nor reads it.
pub const EXHAUSTED_STREAM: &str = "CHORIA_AJ_EXHAUSTED";

/// Subject of the max-deliveries advisory of a queue's `WORKERS` consumer.
pub(crate) fn exhausted_subject(queue: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{QUEUE_STREAM_PREFIX}{queue}.{WORKERS_CONSUMER}")
}

/// Settings used when storage is created, and how records are written.
#[derive(Debug, Clone)]
pub(crate) struct StorageSettings {
    pub memory: bool,
    pub replicas: usize,
    pub task_retention: Duration,
    pub discard: Vec<TaskState>,
    /// How long finished records are kept when their queue says nothing.
    pub retention: crate::task::Retention,
    pub keys: Keys,
    /// A test's pretend error of the local clock (`clock.rs`).
    pub local_clock_offset: time::Duration,
    /// The JetStream API every call goes through (docs/interfaces.md
    /// §4: a context's `jetstream_domain`).
    pub api: crate::connect::JetStreamApi,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            memory: false,
            replicas: 1,
            task_retention: Duration::ZERO,
            discard: Vec::new(),
            retention: crate::task::Retention::default(),
            keys: Keys::none(),
            local_clock_offset: time::Duration::ZERO,
            api: crate::connect::JetStreamApi::default(),
        }
    }
}

#[cfg(feature = "signing")]
pub(crate) use crate::signing::Keys;

/// Without the `signing` feature nothing is signed or verified.
#[cfg(not(feature = "signing"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys;

#[cfg(not(feature = "signing"))]
impl Keys {
    pub(crate) fn none() -> Keys {
        Keys
    }
    pub(crate) fn signs(&self) -> bool {
        false
    }
    pub(crate) fn sign(&self, _: &mut Task) -> Result<()> {
        Ok(())
    }
    pub(crate) fn resign(&self, _: &mut Task) -> Result<()> {
        Ok(())
    }
    pub(crate) fn verify(&self, _: &Task) -> Result<()> {
        Ok(())
    }
}

/// Task store and queue access over one NATS connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Storage {
    nc: async_nats::Client,
    js: jetstream::Context,
    settings: Arc<StorageSettings>,
    /// Whether task loads use direct gets (the task stream allows them):
    /// learnt when the task store is prepared, cleared when a direct get
    /// finds no responder.
    direct_loads: Arc<AtomicBool>,
    /// What delayed enqueues and held-item removals have learnt.
    delays: Arc<std::sync::Mutex<DelayCache>>,
    /// The server's clock as last measured (`clock.rs`).
    clock: Arc<crate::clock::ServerClock>,
    /// What the server supports, learnt when the client was built
    /// (`capabilities.rs`).
    capabilities: Arc<std::sync::OnceLock<crate::capabilities::Capabilities>>,
    /// Whether the task store allows per-message TTL (`retention.rs`).
    ttl_allowed: Arc<std::sync::Mutex<retention::ExpiryAllowed>>,
    /// Each queue's own retention as last read (`retention.rs`).
    retentions: Arc<std::sync::Mutex<retention::QueueRetentions>>,
    /// Held by the save that reads the task store's settings or a queue's
    /// retention for the first time (`retention.rs`): the others wait for
    /// it rather than read too.
    first_reads: Arc<tokio::sync::Mutex<()>>,
    /// The "kept forever" warning was logged.
    retention_warned: Arc<AtomicBool>,
    /// The flow-control bucket once opened (`limits.rs`), dropped after an
    /// error so a bucket made again is opened again.
    limits: Arc<std::sync::Mutex<Option<Bucket>>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

pub(super) fn ns(d: Duration) -> u64 {
    d.as_nanos().min(i64::MAX as u128) as u64
}

impl Storage {
    pub(crate) fn new(nc: async_nats::Client, settings: StorageSettings) -> Storage {
        let js = settings.api.context(nc.clone());
        let clock = Arc::new(crate::clock::ServerClock::default());
        clock.set_local_offset(settings.local_clock_offset);
        Storage {
            nc,
            js,
            settings: Arc::new(settings),
            direct_loads: Arc::new(AtomicBool::new(false)),
            delays: Arc::default(),
            clock,
            capabilities: Arc::default(),
            ttl_allowed: Arc::default(),
            retentions: Arc::default(),
            first_reads: Arc::default(),
            limits: Arc::default(),
            retention_warned: Arc::default(),
        }
    }

    /// What the server supports: as probed when the client was built
    /// ([`Storage::learn_capabilities`]), else as its version tells
    /// (presence assumed).
    pub(crate) fn capabilities(&self) -> crate::capabilities::Capabilities {
        if let Some(c) = self.capabilities.get() {
            return c.clone();
        }
        let info = self.nc.server_info();
        crate::capabilities::Capabilities::from_version(
            format!("{}:{}", info.host, info.port),
            info.version,
        )
    }

    /// Probes what the server supports (once per storage), logging what
    /// is off once per process and server.
    pub(crate) async fn learn_capabilities(&self) {
        if self.capabilities.get().is_none() {
            let caps = crate::capabilities::probe(&self.nc, &self.js).await;
            crate::capabilities::report_once(&caps);
            let _ = self.capabilities.set(caps);
        }
    }

    /// The server's clock as this process reads it: every comparison of a
    /// record's time with "now" uses it (docs/processing.md §2.13).
    pub(crate) fn clock(&self) -> &crate::clock::ServerClock {
        &self.clock
    }

    /// The NATS connection.
    pub(crate) fn nats(&self) -> &async_nats::Client {
        &self.nc
    }

    /// The JetStream context (for acknowledging delivered items).
    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The JetStream API every call goes through.
    pub(crate) fn api(&self) -> &crate::connect::JetStreamApi {
        &self.settings.api
    }

    /// Checks a loaded task's signature with the configured keys.
    pub(crate) fn verify(&self, task: &Task) -> Result<()> {
        self.settings.keys.verify(task)
    }

    pub(super) fn storage_type(&self) -> &'static str {
        if self.settings.memory {
            "memory"
        } else {
            "file"
        }
    }

    pub(crate) fn max_payload(&self) -> usize {
        // an atomic read (server_info() clones the whole INFO, with its
        // strings, on every save)
        self.nc.max_payload()
    }

    pub(crate) fn check_size(&self, what: &'static str, size: usize) -> Result<()> {
        let max = self.max_payload();
        // leave room for headers and protocol overhead
        if max > 0 && size + 256 > max {
            return Err(Error::PayloadTooLarge { what, size, max });
        }
        Ok(())
    }

    pub(super) async fn stream(&self, name: &str) -> Result<stream::Stream<()>> {
        self.js
            .get_stream_no_info(name)
            .await
            .map_err(|e| nats(format!("stream {name}"), e).into())
    }

    /// Deletes message `seq` of `stream`, without erasing its bytes on
    /// disk (as Go's storage deletes): the server's erase overwrites the
    /// message where it lies, which made a claim's backup deletion triple
    /// a keyed queue's cost. `context` describes a failure.
    pub(crate) async fn delete_msg(
        &self,
        stream: &str,
        seq: u64,
        context: impl FnOnce() -> String,
    ) -> std::result::Result<(), crate::error::NatsError> {
        api::request::<serde_json::Value>(
            &self.js,
            &format!("STREAM.MSG.DELETE.{stream}"),
            &serde_json::json!({ "seq": seq, "no_erase": true }),
            context,
        )
        .await
        .map(|_| ())
    }

    /// The stream's details, `None` when it does not exist.
    pub(crate) async fn stream_details(&self, name: &str) -> Result<Option<StreamDetails>> {
        // one STREAM.INFO: the stream handle carries the info it was
        // looked up with
        match self.js.get_stream(name).await {
            Ok(s) => Ok(Some(StreamDetails::from_info(s.cached_info()))),
            Err(e) => {
                let e = nats(format!("loading stream {name}"), e);
                if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }
}
