//! The audit trail (docs/interfaces.md §2.8, docs/storage.md §2): every
//! request that may change something, with who made it and how it was
//! answered, in the stream `CHORIA_AJ_AUDIT` (subject `CHORIA_AJ.AUDIT`),
//! so every replica writes and reads the same trail and a restart loses
//! none of it. The stream is created at the first entry with the API's
//! replicas and [`ApiOptions::audit_max_age`](crate::ApiOptions); one that
//! exists is used as it is. Each entry is also logged (target
//! `asyncjobs_http::audit`), and at ERROR, with the entry, when the stream
//! cannot take it.

use super::{Role, Who};
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The stream holding the trail.
pub const STREAM: &str = "CHORIA_AJ_AUDIT";
/// The subject of its entries.
pub const SUBJECT: &str = "CHORIA_AJ.AUDIT";
/// Most entries one read returns.
pub const MAX_READ: usize = 1000;
/// How long a write may take before it is given up (and logged).
const WRITE_WAIT: Duration = Duration::from_secs(5);

/// One request that may have changed something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// When it was answered (RFC 3339, UTC, this replica's clock).
    pub time: String,
    /// The caller's credential name (`anonymous` without credentials or
    /// without a known token or listed certificate; `cert:<common name>`
    /// for a client certificate that no credential lists).
    pub who: String,
    /// The caller's role; absent when no known token was presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    /// The HTTP method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The answer's status: 2xx and 3xx done, 401 and 403 refused.
    pub status: u16,
    /// The replica that answered (its host name).
    pub replica: String,
}

/// The trail of one router.
pub(crate) struct Trail {
    js: jetstream::Context,
    max_age: Duration,
    replicas: usize,
    ready: tokio::sync::Mutex<bool>,
}

impl Trail {
    pub(crate) fn new(js: jetstream::Context, max_age: Duration, replicas: usize) -> Trail {
        Trail {
            js,
            max_age,
            replicas,
            ready: tokio::sync::Mutex::new(false),
        }
    }

    /// Makes sure the stream exists: created when missing, never changed.
    async fn prepare(&self) -> Result<(), String> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        match self.js.get_stream(STREAM).await {
            Ok(_) => {}
            Err(_) => {
                self.js
                    .get_or_create_stream(jetstream::stream::Config {
                        name: STREAM.into(),
                        description: Some(
                            "asyncjobs HTTP API: who did what (the audit trail)".into(),
                        ),
                        subjects: vec![SUBJECT.into()],
                        max_age: self.max_age,
                        num_replicas: self.replicas.max(1),
                        storage: jetstream::stream::StorageType::File,
                        discard: jetstream::stream::DiscardPolicy::Old,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("creating the stream {STREAM}: {e}"))?;
            }
        }
        *ready = true;
        Ok(())
    }

    /// Writes the entry for a request `who` made (`None`: no known token).
    pub(crate) async fn record(&self, who: Option<&Who>, method: &str, path: &str, status: u16) {
        self.record_refused(who, None, method, path, status).await
    }

    /// [`Trail::record`], naming a caller without a credential `stranger`
    /// when given (`cert:<common name>` for an unlisted client
    /// certificate) instead of `anonymous`.
    pub(crate) async fn record_refused(
        &self,
        who: Option<&Who>,
        stranger: Option<&str>,
        method: &str,
        path: &str,
        status: u16,
    ) {
        let entry = AuditEntry {
            time: now_rfc3339(),
            who: who
                .map(|w| w.name.as_str())
                .or(stranger)
                .unwrap_or("anonymous")
                .to_string(),
            role: who.map(|w| w.role),
            method: method.to_string(),
            path: path.to_string(),
            status,
            replica: crate::replica().to_string(),
        };
        tracing::info!(target: "asyncjobs_http::audit", who = %entry.who, method = %entry.method,
            path = %entry.path, status, "audit");
        let written = tokio::time::timeout(WRITE_WAIT, self.write(&entry)).await;
        let error = match written {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => format!(
                "no answer within {}",
                asyncjobs::format_duration(WRITE_WAIT)
            ),
        };
        tracing::error!(target: "asyncjobs_http::audit", who = %entry.who, method = %entry.method,
            path = %entry.path, status, error = %error,
            "the audit trail could not take this entry; it is only in this log");
    }

    async fn write(&self, entry: &AuditEntry) -> Result<(), String> {
        self.prepare().await?;
        let body = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
        self.js
            .publish(SUBJECT, body.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The newest `limit` entries (at most [`MAX_READ`]), newest first.
    /// None when no entry was ever written.
    ///
    /// Errors: the stream cannot be read.
    pub(crate) async fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, String> {
        let Some(mut stream) = crate::streams::existing(&self.js, STREAM).await? else {
            return Ok(Vec::new());
        };
        let (first, last) = {
            let info = stream
                .info()
                .await
                .map_err(|e| format!("reading the stream {STREAM}: {e}"))?;
            (info.state.first_sequence, info.state.last_sequence)
        };
        let mut out = Vec::new();
        let mut seq = last;
        while out.len() < limit.min(MAX_READ) && seq >= first && seq > 0 {
            match stream.get_raw_message(seq).await {
                Ok(m) => {
                    if let Ok(entry) = serde_json::from_slice::<AuditEntry>(&m.payload) {
                        out.push(entry);
                    }
                }
                // aged out or deleted meanwhile
                Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(format!("reading the stream {STREAM}: {e}")),
            }
            seq -= 1;
        }
        Ok(out)
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
