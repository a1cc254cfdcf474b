//! Queues: list, create, get, delete, purge, pause, resume.

use super::{go_duration, json, JsonBody};
use crate::error::ApiError;
use crate::schema::{QueueCreateRequest, QueueListResponse, QueuePauseRequest, QueueView};
use crate::Api;
use asyncjobs::queue::DEFAULT_QUEUE_NAME;
use asyncjobs::{Queue, RateLimit};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Every queue, by name.
#[utoipa::path(get, path = "/v1/queues", operation_id = "listQueues", tag = "Queues",
    responses((status = 200, description = "The queues", body = QueueListResponse)))]
pub(super) async fn list(State(api): State<Api>) -> Result<Response, ApiError> {
    let mut names = api.client.queue_names().await?;
    names.sort();
    let mut queues = Vec::with_capacity(names.len());
    for name in names {
        match api.client.queue_info(&name).await {
            Ok(info) => queues.push(QueueView::from(&info)),
            // removed meanwhile
            Err(asyncjobs::Error::QueueNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json(StatusCode::OK, &QueueListResponse { queues }))
}

/// Creates a queue; absent or zero settings get the library defaults
/// (unlimited tries, age and entries, 1 hour run time, 100 concurrent).
#[utoipa::path(post, path = "/v1/queues", operation_id = "createQueue", tag = "Queues",
    request_body = QueueCreateRequest,
    responses(
        (status = 201, description = "Created", body = QueueView),
        (status = 400, description = "Invalid request", body = crate::schema::ErrorEnvelope),
        (status = 409, description = "It exists", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn create(
    State(api): State<Api>,
    JsonBody(req): JsonBody<QueueCreateRequest>,
) -> Result<Response, ApiError> {
    if req.name.is_empty() {
        return Err(ApiError::invalid("name is required")
            .field("name")
            .reason("queue_name_required"));
    }
    if req.name == DEFAULT_QUEUE_NAME && !api.options.allow_create_default {
        return Err(ApiError::invalid(
            "the DEFAULT queue may only be created when the server allows it (--allow-create-default)",
        )
        .field("name")
        .reason("default_queue_disallowed"));
    }
    let max_age = go_duration("max_age", req.max_age.as_deref())?.unwrap_or_default();
    let max_runtime = go_duration("max_runtime", req.max_runtime.as_deref())?.unwrap_or_default();
    let retention = match req.retention.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(r.parse::<asyncjobs::Retention>().map_err(|e| {
            ApiError::invalid(format!("retention: {e}"))
                .field("retention")
                .reason("invalid_retention")
        })?),
    };
    let flow = Flow::from_request(&req)?;
    let exists = match api.client.queue_info(&req.name).await {
        Ok(_) => true,
        Err(asyncjobs::Error::QueueNotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if exists {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            crate::ErrorCode::Duplicate,
            format!("queue {:?} already exists", req.name),
        )
        .reason("queue_already_exists"));
    }
    let queue = Queue::new(req.name.clone())
        .max_age(max_age)
        .max_entries(req.max_entries.unwrap_or(0))
        .discard_old(req.discard_old.unwrap_or(false))
        .max_tries(req.max_tries.unwrap_or(0))
        .max_run_time(max_runtime)
        .max_concurrent(req.max_concurrent.unwrap_or(0));
    let queue = match retention {
        Some(r) => queue.retention(r),
        None => queue,
    };
    let queue = flow.apply(queue);
    api.client.prepare_queue(&queue).await?;
    let info = api.client.queue_info(&req.name).await?;
    Ok(json(StatusCode::CREATED, &QueueView::from(&info)))
}

/// The flow settings of a create request (docs/processing.md §2.21 to
/// §2.23), each checked with the library's rule: absent, `null` or `""`
/// is no setting (for `priority_aging` so is `strict`).
#[derive(Default)]
struct Flow {
    rate_limit: Option<RateLimit>,
    priority_aging: Option<std::time::Duration>,
    key_concurrency: Option<u32>,
    key_rate_limit: Option<RateLimit>,
}

impl Flow {
    /// 400 `invalid_rate_limit`, `invalid_priority_aging` or
    /// `invalid_key_concurrency` naming the field when one is wrong.
    fn from_request(req: &QueueCreateRequest) -> Result<Flow, ApiError> {
        let rate = |field: &'static str, v: Option<&str>| -> Result<Option<RateLimit>, ApiError> {
            match v.map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v.parse::<RateLimit>().map(Some).map_err(|e| {
                    ApiError::invalid(format!("{field}: {}", config_text(&e)))
                        .field(field)
                        .reason("invalid_rate_limit")
                }),
            }
        };
        let priority_aging = match req.priority_aging.as_deref() {
            None => None,
            Some(a) => asyncjobs::queue::flow::parse_priority_aging(a).map_err(|e| {
                ApiError::invalid(format!("priority_aging: {}", config_text(&e)))
                    .field("priority_aging")
                    .reason("invalid_priority_aging")
            })?,
        };
        let key_concurrency = match &req.key_concurrency {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(key_concurrency(v)?),
        };
        Ok(Flow {
            rate_limit: rate("rate_limit", req.rate_limit.as_deref())?,
            priority_aging,
            key_concurrency,
            key_rate_limit: rate("key_rate_limit", req.key_rate_limit.as_deref())?,
        })
    }

    /// `queue` with these settings.
    fn apply(self, mut queue: Queue) -> Queue {
        if let Some(l) = self.rate_limit {
            queue = queue.rate_limit(l);
        }
        if let Some(a) = self.priority_aging {
            queue = queue.priority_aging(a);
        }
        if let Some(n) = self.key_concurrency {
            queue = queue.key_concurrency(n);
        }
        if let Some(l) = self.key_rate_limit {
            queue = queue.key_rate_limit(l);
        }
        queue
    }
}

/// A `key_concurrency`: a whole number from 1 to
/// [`MAX_KEY_CONCURRENCY`](asyncjobs::queue::flow::MAX_KEY_CONCURRENCY).
fn key_concurrency(v: &serde_json::Value) -> Result<u32, ApiError> {
    use asyncjobs::queue::flow::{check_key_concurrency, MAX_KEY_CONCURRENCY};
    let invalid = |message: String| {
        ApiError::invalid(format!("key_concurrency: {message}"))
            .field("key_concurrency")
            .reason("invalid_key_concurrency")
    };
    let range = |got: &dyn std::fmt::Display| {
        invalid(format!(
            "per-key concurrency must be 1 to {MAX_KEY_CONCURRENCY} (got {got})"
        ))
    };
    let n = match (v.as_i64(), v.as_u64()) {
        (Some(n), _) => n,
        (None, Some(n)) => return Err(range(&n)),
        (None, None) => {
            return Err(invalid(format!(
            "per-key concurrency must be a whole number from 1 to {MAX_KEY_CONCURRENCY} (got {v})"
        )))
        }
    };
    let n = u32::try_from(n).map_err(|_| range(&n))?;
    check_key_concurrency(n).map_err(|e| invalid(config_text(&e)))?;
    Ok(n)
}

/// A configuration error's reason, without the `invalid configuration: `
/// every [`asyncjobs::Error::Config`] starts with.
fn config_text(e: &asyncjobs::Error) -> String {
    match e {
        asyncjobs::Error::Config(why) => why.clone(),
        other => other.to_string(),
    }
}

/// One queue's settings.
#[utoipa::path(get, path = "/v1/queues/{name}", operation_id = "getQueue", tag = "Queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue", body = QueueView),
        (status = 404, description = "No such queue", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn get(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let info = api.client.queue_info(&name).await?;
    Ok(json(StatusCode::OK, &QueueView::from(&info)))
}

/// Deletes a queue and its waiting items (their tasks keep their records).
#[utoipa::path(delete, path = "/v1/queues/{name}", operation_id = "deleteQueue", tag = "Queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such queue", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn delete(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    api.client.delete_queue(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes every waiting item of a queue.
#[utoipa::path(post, path = "/v1/queues/{name}/purge", operation_id = "purgeQueue", tag = "Queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 202, description = "Purged"),
        (status = 404, description = "No such queue", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn purge(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    api.client.purge_queue(&name).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Pauses a queue for every worker (Go's included): no task starts until
/// the pause ends or the queue is resumed; enqueueing goes on. Needs
/// nats-server 2.11 (501 `server_too_old` before).
#[utoipa::path(post, path = "/v1/queues/{name}/pause", operation_id = "pauseQueue", tag = "Queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body(content = Option<QueuePauseRequest>, description = "The end; none: until resumed"),
    responses(
        (status = 200, description = "Paused", body = QueueView),
        (status = 400, description = "Invalid end", body = crate::schema::ErrorEnvelope),
        (status = 404, description = "No such queue", body = crate::schema::ErrorEnvelope),
        (status = 501, description = "The server cannot pause", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn pause(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: QueuePauseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        QueuePauseRequest::default()
    } else {
        super::decode_strict(&body)?
    };
    let until = pause_until(&req)?;
    let info = api.client.pause_queue(&name, until).await?;
    Ok(json(StatusCode::OK, &QueueView::from(&info)))
}

/// The end a pause request asks for.
fn pause_until(req: &QueuePauseRequest) -> Result<asyncjobs::PauseUntil, ApiError> {
    let invalid = |field: &'static str, message: String| {
        ApiError::invalid(message)
            .field(field)
            .reason("invalid_pause")
    };
    match (req.for_.as_deref(), req.until.as_deref()) {
        (Some(_), Some(_)) => Err(invalid(
            "for",
            "give at most one of for and until".to_string(),
        )),
        (Some(d), None) => {
            let d = go_duration("for", Some(d))?
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid("for", "for must be longer than 0s".to_string()))?;
            let d = time::Duration::try_from(d)
                .map_err(|_| invalid("for", "for is too long".to_string()))?;
            Ok(asyncjobs::PauseUntil::Time(
                time::OffsetDateTime::now_utc() + d,
            ))
        }
        (None, Some(t)) => asyncjobs::wire::parse_time(t)
            .map(asyncjobs::PauseUntil::Time)
            .map_err(|e| invalid("until", format!("until {t:?} is not an RFC 3339 time: {e}"))),
        (None, None) => Ok(asyncjobs::PauseUntil::Resumed),
    }
}

/// Resumes a paused queue (a queue that is not paused is left as it is).
#[utoipa::path(post, path = "/v1/queues/{name}/resume", operation_id = "resumeQueue", tag = "Queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "Resumed", body = QueueView),
        (status = 404, description = "No such queue", body = crate::schema::ErrorEnvelope),
        (status = 501, description = "The server cannot pause", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn resume(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let info = api.client.resume_queue(&name).await?;
    Ok(json(StatusCode::OK, &QueueView::from(&info)))
}
