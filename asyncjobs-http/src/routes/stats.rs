//! Ours: the statistics the cluster keeps (`crate::stats`).

use super::json;
use crate::error::ApiError;
use crate::stats::StatsRecord;
use crate::Api;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

/// A queue's statistics records.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct StatsResponse {
    /// The queue.
    queue: String,
    /// One per interval written, oldest first (an interval no replica was
    /// running for is missing).
    records: Vec<StatsRecord>,
}

/// A queue's statistics over the last `hours` (1 to 48, default 24): per
/// interval (a minute by default) and task type, tasks completed, failed
/// and retried, run-time percentiles, and the queue's depth. Every
/// replica answers the same.
#[utoipa::path(get, path = "/v1/stats", operation_id = "queueStats", tag = "Meta",
    params(
        ("queue" = String, Query, description = "The queue"),
        ("hours" = Option<u32>, Query, description = "How far back (1 to 48, default 24)")),
    responses(
        (status = 200, description = "The records", body = StatsResponse),
        (status = 400, description = "No queue, or an invalid hours", body = crate::schema::ErrorEnvelope),
        (status = 503, description = "The statistics cannot be read", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn stats(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut queue = None;
    let mut hours = 24i64;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match &*k {
            "queue" if !v.is_empty() => queue = Some(v.into_owned()),
            "hours" => {
                hours = v
                    .parse::<i64>()
                    .ok()
                    .filter(|h| (1..=48).contains(h))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "hours must be a whole number from 1 to 48, not {v:?}"
                        ))
                        .field("hours")
                    })?
            }
            _ => {}
        }
    }
    let queue = queue.ok_or_else(|| ApiError::invalid("queue is required").field("queue"))?;
    let since = time::OffsetDateTime::now_utc().unix_timestamp() - hours * 3600;
    let records = crate::stats::read(&api.client.jetstream(), &queue, since)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::ErrorCode::Unavailable,
                e,
            )
            .reason("storage_not_ready")
        })?;
    Ok(json(StatusCode::OK, &StatsResponse { queue, records }))
}
