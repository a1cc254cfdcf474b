//! Health, readiness, server information, retry policies, the OpenAPI
//! document and metrics.

use super::json;
use crate::schema::{
    CheckStatus, HealthResponse, Info, ReadinessChecks, ReadinessResponse, RetryPoliciesResponse,
    RetryPolicy,
};
use crate::{go_json, Api};
use asyncjobs::wire::format_time;
use asyncjobs::LinearPolicy;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "getHealthz", tag = "Meta",
    responses((status = 200, description = "Alive", body = HealthResponse)))]
pub(super) async fn healthz() -> Response {
    json(
        StatusCode::OK,
        &HealthResponse {
            status: "ok",
            time: format_time(&time::OffsetDateTime::now_utc()),
        },
    )
}

/// Readiness: the task store and the configuration bucket answer.
#[utoipa::path(get, path = "/readyz", operation_id = "getReadyz", tag = "Meta",
    responses(
        (status = 200, description = "Ready", body = ReadinessResponse),
        (status = 503, description = "Not ready", body = ReadinessResponse)))]
pub(super) async fn readyz(State(api): State<Api>) -> Response {
    let (tasks, config) = tokio::join!(api.client.tasks_info(), api.client.config_bucket_info());
    let tasks = match tasks {
        Ok(_) => CheckStatus {
            error: None,
            ok: true,
        },
        Err(e) => {
            tracing::warn!(error = %e, "readiness: task store");
            CheckStatus {
                error: Some("tasks storage unreachable"),
                ok: false,
            }
        }
    };
    let config = match config {
        Ok(Some(_)) => CheckStatus {
            error: None,
            ok: true,
        },
        other => {
            if let Err(e) = other {
                tracing::warn!(error = %e, "readiness: configuration bucket");
            }
            CheckStatus {
                error: Some("configuration storage unreachable"),
                ok: false,
            }
        }
    };
    let ready = tasks.ok && config.ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &ReadinessResponse {
            checks: ReadinessChecks { config, tasks },
            ready,
        },
    )
}

/// This document, keys sorted (as Go serves its own).
#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "getOpenAPI", tag = "Meta",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json")))]
pub(super) async fn openapi_json() -> Response {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    let body = DOC.get_or_init(|| {
        let value = serde_json::to_value(super::openapi()).unwrap_or_default();
        go_json::encode(&value)
    });
    let mut r = (StatusCode::OK, body.clone()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Authentication mode, version, and how many queues and tasks are stored.
#[utoipa::path(get, path = "/v1/info", operation_id = "getInfo", tag = "Meta",
    responses(
        (status = 200, description = "Server information", body = Info),
        (status = 500, description = "Internal error", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn info(State(api): State<Api>) -> Response {
    let (queues, tasks) = tokio::join!(api.client.queue_names(), api.client.tasks_info());
    json(
        StatusCode::OK,
        &Info {
            auth: api.options.auth.as_str(),
            features: None,
            queue_count: queues.ok().map(|q| q.len() as u64),
            task_count: tasks.ok().map(|t| t.messages),
            version: env!("CARGO_PKG_VERSION"),
        },
    )
}

/// The named retry policies (`10m`, `1h`, `1m`, `default`) and their delays.
#[utoipa::path(get, path = "/v1/retry-policies", operation_id = "listRetryPolicies", tag = "Meta",
    responses((status = 200, description = "Retry policies by name", body = RetryPoliciesResponse)))]
pub(super) async fn retry_policies() -> Response {
    let policy = |name: &'static str, p: LinearPolicy| RetryPolicy {
        intervals: p
            .intervals()
            .iter()
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .collect(),
        jitter: p.jitter(),
        name,
    };
    json(
        StatusCode::OK,
        &RetryPoliciesResponse {
            policies: vec![
                policy("10m", LinearPolicy::ten_minutes()),
                policy("1h", LinearPolicy::one_hour()),
                policy("1m", LinearPolicy::one_minute()),
                policy("default", LinearPolicy::ten_minutes()),
            ],
        },
    )
}

/// Prometheus metrics: the API's requests and latencies beside the
/// library's (Go's names, docs/processing.md §8). Beyond Go.
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "Meta",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub(super) async fn metrics() -> Response {
    crate::observe::register();
    let mut r = (StatusCode::OK, asyncjobs::metrics::render()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
