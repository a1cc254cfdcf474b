//! Key-value buckets: opening them, and every read and write of their
//! records (docs/storage.md lists the buckets and their records).
//!
//! The owners of the records decide what they mean — the scheduler its
//! schedules in `CHORIA_AJ_CONFIGURATION`, the election its key in
//! `CHORIA_AJ_ELECTIONS`, the worker its presence in `CHORIA_AJ_WORKERS` —
//! and reach the server only through a [`Bucket`] opened here. Discard
//! markers are written by the storage layer itself (`discarded.rs`).

use super::{Storage, CONFIG_BUCKET};
use crate::error::{nats, Error, NatsError, NatsErrorKind, Result};
use crate::throttle::{warn_throttled, Throttle};
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use std::time::Duration;

/// What a bucket operation returns: its failures carry the context the
/// caller gave.
type KvResult<T> = std::result::Result<T, NatsError>;

/// One KV bucket, opened by [`Storage::open_bucket`]. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Bucket {
    store: kv::Store,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.store.name)
            .finish()
    }
}

/// A value as written, with its revision and when it was written (by the
/// server's clock).
#[derive(Debug, Clone)]
pub(crate) struct Written {
    /// The value.
    pub value: bytes::Bytes,
    /// Its revision.
    pub revision: u64,
    /// When it was written.
    pub at: time::OffsetDateTime,
}

/// The bucket of worker presence records.
pub const WORKERS_BUCKET: &str = "CHORIA_AJ_WORKERS";

impl Storage {
    /// Opens the bucket `name`; `None` when it does not exist. Other
    /// failures are described by `context`.
    pub(crate) async fn open_bucket(
        &self,
        name: &str,
        context: impl FnOnce() -> String,
    ) -> KvResult<Option<Bucket>> {
        match self.jetstream().get_key_value(name).await {
            Ok(store) => Ok(Some(Bucket { store })),
            Err(e)
                if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket
                    && e.to_string().contains("not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(nats(context(), e)),
        }
    }

    /// Opens the bucket `name`, creating it when missing with history 1,
    /// this client's storage and replicas (as every bucket it creates),
    /// `max_age` (how long a value is kept after its last write; zero:
    /// forever) and `limit_markers` (the server's markers for expired
    /// keys, needed by per-message TTLs). A bucket another process created
    /// meanwhile is opened as it is; an existing bucket's settings are
    /// never changed (one with fewer replicas than this client's is
    /// reported, at most every 10 minutes).
    ///
    /// # Errors
    /// [`Error::Nats`] when it cannot be created or opened;
    /// [`Error::StorageNotReady`] when it vanished right after its creation.
    pub(crate) async fn open_or_create_bucket(
        &self,
        name: &str,
        description: &str,
        max_age: Duration,
        limit_markers: Option<Duration>,
    ) -> Result<Bucket> {
        let open = || format!("binding bucket {name}");
        if let Some(b) = self.open_bucket(name, open).await? {
            let has = b.store.stream.cached_info().config.num_replicas;
            let wanted = self.settings.replicas.max(1);
            if has < wanted {
                // another process (or an earlier version) chose it: kept
                static FEWER: Throttle = Throttle::new(Duration::from_secs(600));
                warn_throttled!(FEWER, bucket = name, replicas = has, client_replicas = wanted,
                    "the bucket has fewer replicas than this client asks for; it is used as it is (an operator may raise them)");
            }
            return Ok(b);
        }
        let created = self
            .jetstream()
            .create_key_value(kv::Config {
                bucket: name.into(),
                description: description.into(),
                history: 1,
                storage: if self.settings.memory {
                    jetstream::stream::StorageType::Memory
                } else {
                    jetstream::stream::StorageType::File
                },
                num_replicas: self.settings.replicas.max(1),
                max_age,
                limit_markers,
                ..Default::default()
            })
            .await;
        match created {
            Ok(_) => {}
            // another process created it meanwhile
            Err(e) if e.to_string().contains("already") => {}
            Err(e) => {
                return Err(Error::Nats(
                    NatsError::new(NatsErrorKind::JetStream, format!("creating bucket {name}"))
                        .with_source(e.to_string()),
                ))
            }
        }
        self.open_bucket(name, open)
            .await?
            .ok_or_else(|| Error::StorageNotReady(format!("bucket {name} vanished")))
    }

    /// Opens the configuration bucket ([`CONFIG_BUCKET`]), where schedules
    /// are kept.
    ///
    /// # Errors
    /// [`Error::StorageNotReady`] when it does not exist; [`Error::Nats`]
    /// when it cannot be opened.
    pub(crate) async fn config_bucket(&self) -> Result<Bucket> {
        self.open_bucket(CONFIG_BUCKET, || format!("binding bucket {CONFIG_BUCKET}"))
            .await?
            .ok_or_else(|| Error::StorageNotReady("configuration bucket not configured".into()))
    }

    /// Opens the worker presence bucket ([`WORKERS_BUCKET`]), creating it
    /// when `create` is set (records kept `ttl` after their last write;
    /// this client's storage and replicas, so a cluster's node dying loses
    /// no worker's record). `None` when it is missing (and not created) or
    /// cannot be opened; a failed creation is logged.
    /// Does nothing on a server too old for worker presence
    /// (`capabilities.rs`: reported once, at start).
    pub(crate) async fn presence_bucket(&self, create: bool, ttl: Duration) -> Option<Bucket> {
        if !self.capabilities().presence {
            return None;
        }
        if !create {
            return self.open_bucket(WORKERS_BUCKET, String::new).await.ok()?;
        }
        self.open_or_create_bucket(WORKERS_BUCKET, "asyncjobs worker presence", ttl, None)
            .await
            .map_err(|e| tracing::warn!(error = %e, "cannot create the worker presence bucket"))
            .ok()
    }
}

impl Bucket {
    /// How long the bucket keeps a value after its last write (its
    /// stream's max age, as read when it was opened; zero: forever).
    pub(crate) fn max_age(&self) -> Duration {
        self.store.stream.cached_info().config.max_age
    }

    /// Writes `key` only when it is absent, expired or deleted: the new
    /// revision, or `None` when the key exists.
    pub(crate) async fn create(
        &self,
        key: &str,
        value: bytes::Bytes,
        context: impl FnOnce() -> String,
    ) -> KvResult<Option<u64>> {
        match self.store.create(key, value).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(nats(context(), e)),
        }
    }

    /// [`Bucket::create`] with the value expiring `ttl` after it is
    /// written (a per-message TTL: the bucket needs `limit_markers`).
    pub(crate) async fn create_with_ttl(
        &self,
        key: &str,
        value: bytes::Bytes,
        ttl: Duration,
        context: impl FnOnce() -> String,
    ) -> KvResult<Option<u64>> {
        match self.store.create_with_ttl(key, value, ttl).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(nats(context(), e)),
        }
    }

    /// Writes `key` only when its last revision is `revision` (compare and
    /// set); the new revision.
    pub(crate) async fn update(
        &self,
        key: &str,
        value: bytes::Bytes,
        revision: u64,
        context: impl FnOnce() -> String,
    ) -> KvResult<u64> {
        self.store
            .update(key, value, revision)
            .await
            .map_err(|e| nats(context(), e))
    }

    /// [`Bucket::update`], `None` when `key` is no longer at `revision`.
    pub(crate) async fn update_if(
        &self,
        key: &str,
        value: bytes::Bytes,
        revision: u64,
        context: impl FnOnce() -> String,
    ) -> KvResult<Option<u64>> {
        match self.store.update(key, value, revision).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(nats(context(), e)),
        }
    }

    /// Writes `key` whatever it holds.
    pub(crate) async fn put(
        &self,
        key: &str,
        value: bytes::Bytes,
        context: impl FnOnce() -> String,
    ) -> KvResult<u64> {
        self.store
            .put(key, value)
            .await
            .map_err(|e| nats(context(), e))
    }

    /// The value of `key`, `None` when it has none (never written,
    /// deleted, purged or expired).
    pub(crate) async fn get(
        &self,
        key: &str,
        context: impl FnOnce() -> String,
    ) -> KvResult<Option<bytes::Bytes>> {
        self.store.get(key).await.map_err(|e| nats(context(), e))
    }

    /// The value of `key` when its last operation is a put (a delete or
    /// purge marker reads as `None`).
    pub(crate) async fn entry(
        &self,
        key: &str,
        context: impl FnOnce() -> String,
    ) -> KvResult<Option<bytes::Bytes>> {
        Ok(self.written(key, context).await?.map(|w| w.value))
    }

    /// The value of `key` with its revision and the time it was written,
    /// when its last operation is a put.
    pub(crate) async fn written(
        &self,
        key: &str,
        context: impl FnOnce() -> String,
    ) -> KvResult<Option<Written>> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|e| nats(context(), e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| Written {
                value: e.value,
                revision: e.revision,
                at: e.created,
            }))
    }

    /// Deletes `key` (a delete marker, as Go's KV delete).
    pub(crate) async fn delete(&self, key: &str, context: impl FnOnce() -> String) -> KvResult<()> {
        self.store.delete(key).await.map_err(|e| nats(context(), e))
    }

    /// Deletes `key` only when its last revision is `revision`.
    pub(crate) async fn delete_at_revision(
        &self,
        key: &str,
        revision: u64,
        context: impl FnOnce() -> String,
    ) -> KvResult<()> {
        self.store
            .delete_expect_revision(key, Some(revision))
            .await
            .map_err(|e| nats(context(), e))
    }

    /// Removes `key` and its history.
    pub(crate) async fn purge(&self, key: &str, context: impl FnOnce() -> String) -> KvResult<()> {
        self.store.purge(key).await.map_err(|e| nats(context(), e))
    }

    /// Every key holding a value now, sorted.
    pub(crate) async fn keys(&self, context: impl Fn() -> String) -> KvResult<Vec<String>> {
        let mut keys = self.store.keys().await.map_err(|e| nats(context(), e))?;
        let mut all = Vec::new();
        while let Some(key) = keys.next().await {
            all.push(key.map_err(|e| nats(context(), e))?);
        }
        all.sort();
        Ok(all)
    }

    /// Every current value of the keys matching `pattern`, then every
    /// change to them as it happens.
    pub(crate) async fn watch_with_history(
        &self,
        pattern: &str,
        context: impl FnOnce() -> String,
    ) -> KvResult<kv::Watch> {
        self.store
            .watch_with_history(pattern)
            .await
            .map_err(|e| nats(context(), e))
    }
}
