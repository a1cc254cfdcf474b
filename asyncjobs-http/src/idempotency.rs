//! Idempotency keys shared by every server instance (docs/interfaces.md §2.7; Go keeps
//! them per process; we keep them in a JetStream KV bucket with a TTL, so
//! a repeated request that reaches another replica finds the same task).
//!
//! A key is reserved (KV `create`, which only one writer can win) before
//! the task is enqueued, then set to the task id; a failed enqueue frees
//! it. A repeat that finds the key reserved but not yet set waits for the
//! first request to finish.

use crate::error::{ApiError, ErrorCode};
use crate::ApiOptions;
use async_nats::jetstream::{self, kv};
use axum::http::StatusCode;
use base64::Engine;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The bucket holding `key → task id`.
pub const BUCKET: &str = "CHORIA_AJ_HTTP_IDEMPOTENCY";
/// Longest key accepted, in bytes.
const MAX_KEY: usize = 1024;
/// How long a repeat waits for the first request to record its task.
const PENDING_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Keys {
    js: jetstream::Context,
    ttl: Duration,
    replicas: usize,
    store: OnceCell<kv::Store>,
    /// Why the server cannot keep keys (too old), if so.
    too_old: Option<String>,
}

/// The outcome of [`Keys::reserve`].
pub(crate) enum Reserved {
    /// A request with this key created this task (the key's revision).
    Existing(String, u64),
    /// The key is ours: record the task or release it.
    New(Reservation),
}

pub(crate) struct Reservation {
    key: String,
    revision: u64,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        format!("idempotency keys: {what}: {e}"),
    )
    .reason("storage_not_ready")
}

impl Keys {
    /// Keys kept in `js` (the client's JetStream, so a context's domain
    /// holds here too).
    /// `too_old` says why the server cannot keep them, when it cannot: a
    /// request with a key is then refused saying so.
    pub(crate) fn new(
        js: jetstream::Context,
        options: &ApiOptions,
        too_old: Option<String>,
    ) -> Keys {
        Keys {
            js,
            ttl: options.idempotency_ttl,
            replicas: options.replicas.max(1),
            store: OnceCell::new(),
            too_old,
        }
    }

    async fn store(&self) -> Result<&kv::Store, ApiError> {
        if let Some(why) = &self.too_old {
            return Err(unavailable("not kept", why));
        }
        self.store
            .get_or_try_init(|| async {
                match self.js.get_key_value(BUCKET).await {
                    Ok(s) => Ok(s),
                    Err(_) => self
                        .js
                        .create_key_value(kv::Config {
                            bucket: BUCKET.into(),
                            description: "asyncjobs HTTP API: Idempotency-Key to task id".into(),
                            history: 1,
                            max_age: self.ttl,
                            num_replicas: self.replicas,
                            storage: jetstream::stream::StorageType::File,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| unavailable("creating the bucket", e)),
                }
            })
            .await
    }

    /// Reserves `key`, or returns the task a request with it created.
    pub(crate) async fn reserve(&self, key: &str) -> Result<Reserved, ApiError> {
        if key.len() > MAX_KEY {
            return Err(ApiError::invalid(format!(
                "Invalid format for parameter Idempotency-Key: longer than {MAX_KEY} bytes"
            )));
        }
        let store = self.store().await?;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        let started = tokio::time::Instant::now();
        loop {
            match store.create(&encoded, Vec::new().into()).await {
                Ok(revision) => {
                    return Ok(Reserved::New(Reservation {
                        key: encoded,
                        revision,
                    }))
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable("reserving a key", e)),
            }
            match store.entry(&encoded).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put && !e.value.is_empty() => {
                    return Ok(Reserved::Existing(
                        String::from_utf8_lossy(&e.value).into_owned(),
                        e.revision,
                    ))
                }
                // released or expired meanwhile: try to reserve again, with
                // a pause (a replica that lags can say "exists" to the create
                // and "nothing" to the read for a while) and within the wait
                Ok(e) if e.as_ref().is_none_or(|e| e.operation != kv::Operation::Put) => {
                    if started.elapsed() >= PENDING_WAIT {
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ErrorCode::Unavailable,
                            "the Idempotency-Key store gives conflicting answers (the key exists and does not); try again",
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(Some(_)) if started.elapsed() < PENDING_WAIT => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(_) => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        ErrorCode::Conflict,
                        "a request with this Idempotency-Key is still being processed",
                    )
                    .reason("idempotency_key_in_use"))
                }
                Err(e) => return Err(unavailable("reading a key", e)),
            }
        }
    }

    /// Records the task a reserved key created.
    pub(crate) async fn record(&self, r: Reservation, task_id: &str) {
        let Ok(store) = self.store().await else {
            return;
        };
        if let Err(e) = store
            .update(&r.key, task_id.as_bytes().to_vec().into(), r.revision)
            .await
        {
            // the task exists; until the key expires, a repeat waits and is
            // then told the key is in use
            tracing::warn!(error = %e, task = task_id, "idempotency key not recorded");
        }
    }

    /// Forgets `key` (its task no longer exists), unless it changed since
    /// it was read at `revision` (another request reserved it afresh).
    pub(crate) async fn forget(&self, key: &str, revision: u64) {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        if let Ok(store) = self.store().await {
            if let Err(e) = store.delete_expect_revision(&encoded, Some(revision)).await {
                tracing::warn!(error = %e, "idempotency key not forgotten");
            }
        }
    }

    /// Frees a reserved key after a failed request.
    pub(crate) async fn release(&self, r: Reservation) {
        if let Ok(store) = self.store().await {
            if let Err(e) = store.delete_expect_revision(&r.key, Some(r.revision)).await {
                tracing::warn!(error = %e, "idempotency key not released; it expires with its TTL");
            }
        }
    }
}
