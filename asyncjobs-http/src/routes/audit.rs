//! Ours: the audit trail (docs/interfaces.md §2.8).

use super::json;
use crate::access::audit::{AuditEntry, MAX_READ};
use crate::error::ApiError;
use crate::Api;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

/// The newest entries of the audit trail.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AuditResponse {
    /// Newest first.
    entries: Vec<AuditEntry>,
}

/// The newest `limit` (1 to 1000, default 100) requests that may have
/// changed something, allowed or refused, with who made them, newest
/// first; every replica answers the same.
#[utoipa::path(get, path = "/v1/audit", operation_id = "listAudit", tag = "Meta",
    params(("limit" = Option<usize>, Query, description = "How many entries (1 to 1000, default 100)")),
    responses(
        (status = 200, description = "The newest entries", body = AuditResponse),
        (status = 400, description = "Invalid limit", body = crate::schema::ErrorEnvelope),
        (status = 503, description = "The trail cannot be read", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn list(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut limit = 100;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if k == "limit" {
            limit = v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_READ).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "limit must be a whole number from 1 to {MAX_READ}, not {v:?}"
                    ))
                    .field("limit")
                })?;
        }
    }
    let entries = api.audit.recent(limit).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::ErrorCode::Unavailable,
            e,
        )
        .reason("storage_not_ready")
    })?;
    Ok(json(StatusCode::OK, &AuditResponse { entries }))
}
