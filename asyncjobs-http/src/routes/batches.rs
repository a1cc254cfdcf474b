//! Batches (beyond Go; docs/processing.md §2.23): create, status, cancel,
//! retry as a whole.

use super::tasks::build_task;
use super::{json, JsonBody};
use crate::error::{ApiError, ErrorCode};
use crate::schema::{
    BatchCancelResponse, BatchCreateRequest, BatchRetryResponse, BatchStatusView, BatchView,
};
use crate::Api;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// Who cancels, as `last_err` names it.
const BY: &str = "the HTTP API";

/// A library error of a batch route: the batch's own refusals with their
/// reasons, the others as every route maps them (docs/interfaces.md §2.4).
fn batch_error(e: asyncjobs::Error) -> ApiError {
    use asyncjobs::Error as E;
    let bad = |e: &E, reason| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            e.to_string(),
        )
        .reason(reason)
    };
    match &e {
        E::BatchEmpty => bad(&e, "batch_empty").field("members"),
        E::BatchTooLarge { .. } => bad(&e, "batch_too_large").field("members"),
        E::BatchTaskInvalid { .. } => bad(&e, "batch_task_invalid"),
        E::BatchCallbackUnhandled { .. } => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
                .field("callback")
                .reason("callback_unhandled")
        }
        E::BatchNotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, e.to_string())
                .reason("batch_not_found")
        }
        E::BatchIncomplete {
            id,
            not_enqueued,
            first_error,
        } => ApiError::internal(format!(
            "batch {id} is stored but {not_enqueued} of its tasks were not enqueued (first: {first_error}): GET /v1/batches/{id} shows which; POST /v1/batches/{id}/retry finishes the batch, POST /v1/batches/{id}/cancel ends it"
        ))
        .reason("batch_incomplete"),
        _ => e.into(),
    }
}

/// Enqueues a batch into the server's queue: the members, then the
/// callback, which runs once every member has ended, whatever its outcome
/// (a failed member's entry in its `dependency_results` is `null`).
/// Refused with nothing written: no members or more than 1,000, an
/// invalid task, a callback whose type the queue's running workers do not
/// handle (409 `callback_unhandled`). A batch stored whose tasks were not
/// all enqueued is 500 `batch_incomplete`, naming it.
#[utoipa::path(post, path = "/v1/batches", operation_id = "createBatch", tag = "Batches",
    request_body = BatchCreateRequest,
    responses(
        (status = 201, description = "Enqueued", body = BatchView,
            headers(("Location" = String, description = "/v1/batches/{id}"))),
        (status = 400, description = "Invalid request (batch_empty, batch_too_large, batch_task_invalid, …)", body = crate::schema::ErrorEnvelope),
        (status = 409, description = "No running worker of the queue handles the callback's type", body = crate::schema::ErrorEnvelope),
        (status = 413, description = "Body or a task record too large", body = crate::schema::ErrorEnvelope),
        (status = 500, description = "Stored, but not every task was enqueued (batch_incomplete)", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn create(
    State(api): State<Api>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<BatchCreateRequest>,
) -> Result<Response, ApiError> {
    let mut members = Vec::with_capacity(req.members.len());
    for (i, m) in req.members.into_iter().enumerate() {
        members.push(build_task(&api, m, &headers).map_err(|mut e| {
            e.message = format!("members[{i}]: {}", e.message);
            e
        })?);
    }
    let callback = req
        .callback
        .map(|c| build_task(&api, c, &headers))
        .transpose()
        .map_err(|mut e| {
            e.message = format!("callback: {}", e.message);
            e
        })?;
    // run to the end even when the client goes away: a batch is not left
    // half enqueued by a dropped request
    let work = {
        let api = api.clone();
        async move { api.client.enqueue_batch(&mut members, callback).await }
    };
    let batch = tokio::spawn(work)
        .await
        .map_err(|e| ApiError::internal(format!("enqueueing the batch failed: {e}")))?
        .map_err(batch_error)?;
    let mut r = json(StatusCode::CREATED, &BatchView::from(&batch));
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/batches/{}", batch.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Where a batch stands: every member's state, counted, and the callback's.
#[utoipa::path(get, path = "/v1/batches/{id}", operation_id = "getBatch", tag = "Batches",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The batch", body = BatchStatusView),
        (status = 404, description = "No such batch", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn get(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let status = api.client.batch(&id).await.map_err(batch_error)?;
    Ok(json(StatusCode::OK, &BatchStatusView::from(&status)))
}

/// Cancels a batch: its callback first, then every member not yet ended
/// (`last_err` `cancelled by the HTTP API`); ended ones stay as they are.
#[utoipa::path(post, path = "/v1/batches/{id}/cancel", operation_id = "cancelBatch", tag = "Batches",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "What the cancel did", body = BatchCancelResponse),
        (status = 404, description = "No such batch", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let done = api
        .client
        .cancel_batch(&id, &crate::access::by(BY))
        .await
        .map_err(batch_error)?;
    Ok(json(StatusCode::OK, &BatchCancelResponse::from(&done)))
}

/// Retries a batch: its failed members, then its callback (re-armed when
/// it had run or failed, enqueued when it never was).
#[utoipa::path(post, path = "/v1/batches/{id}/retry", operation_id = "retryBatch", tag = "Batches",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "What the retry did", body = BatchRetryResponse),
        (status = 404, description = "No such batch", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn retry(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let done = api.client.retry_batch(&id).await.map_err(batch_error)?;
    Ok(json(StatusCode::OK, &BatchRetryResponse::from(&done)))
}
