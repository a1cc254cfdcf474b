//! Acting on many tasks: `POST /v1/tasks/retry` (up to 100 ids, or, ours,
//! every task a filter matches), and (ours) `POST /v1/tasks/cancel` and
//! `POST /v1/tasks/delete` by filter, each filter with a dry run that
//! counts and lists what it would touch (the library's
//! `Client::bulk_tasks`).

use super::{json, JsonBody};
use crate::error::ApiError;
use crate::schema::{
    BulkByFilterRequest, BulkByFilterResponse, BulkRetryRequest, BulkRetryResponse,
    BulkRetryResult, ReplayFilter,
};
use crate::Api;
use asyncjobs::{BulkAction, TaskFilter, TaskState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

/// Most ids of one bulk retry.
const BULK_MAX: usize = 100;

/// The library filter a request's filter names.
fn task_filter(f: &ReplayFilter) -> Result<TaskFilter, ApiError> {
    let mut filter = TaskFilter::new();
    if let Some(s) = f.state.as_deref().filter(|s| !s.is_empty()) {
        let state = TaskState::from_name(s)
            .filter(|s| *s != TaskState::Unknown)
            .ok_or_else(|| {
                ApiError::invalid(format!("unknown task state {s:?}"))
                    .field("filter")
                    .reason("state_invalid")
            })?;
        filter = filter.state(state);
    }
    if let Some(t) = f.task_type.as_deref().filter(|s| !s.is_empty()) {
        filter = filter.task_type(t);
    }
    if let Some(q) = f.queue.as_deref().filter(|s| !s.is_empty()) {
        filter = filter.queue(q);
    }
    if let Some(since) = f.created_since.as_deref().filter(|s| !s.is_empty()) {
        filter = filter.created_since(super::tasks::parse_since(since)?);
    }
    if let Some(e) = f.last_error.as_deref().filter(|s| !s.is_empty()) {
        filter = filter.last_error_contains(e);
    }
    Ok(filter)
}

/// Applies `action` to the tasks a request names: its filter, or its ids
/// (1 to [`BULK_MAX`]), never both.
async fn by_filter_or_ids(
    api: &Api,
    req: BulkByFilterRequest,
    action: BulkAction,
) -> Result<Response, ApiError> {
    match (req.filter, req.ids.is_empty()) {
        (Some(_), false) => Err(ApiError::invalid("give ids or a filter, not both")
            .field("filter")
            .reason("ids_and_filter")),
        (Some(f), true) => by_filter(api, f, action).await,
        (None, true) => Err(ApiError::invalid("a filter or ids is required")
            .field("filter")
            .reason("filter_required")),
        (None, false) if req.ids.len() > BULK_MAX => Err(ApiError::invalid(format!(
            "ids may hold at most {BULK_MAX} entries"
        ))
        .field("ids")
        .reason("ids_too_many")),
        (None, false) => {
            let summary = api
                .client
                .bulk_tasks_by_id(&req.ids, &action, false)
                .await?;
            Ok(summed_up(&summary, &action, false))
        }
    }
}

/// Applies `action` to every task `f` matches:
/// `{"dry_run":B,"matched":N,"results":[…]}`, the results being the
/// matches in a dry run, else one per task acted on (`ok`), gone
/// meanwhile (`not_found`) or failed (`failed`).
pub(super) async fn by_filter(
    api: &Api,
    f: ReplayFilter,
    action: BulkAction,
) -> Result<Response, ApiError> {
    let filter = task_filter(&f)?;
    let summary = api
        .client
        .bulk_tasks(filter, &action, f.dry_run, |_, _| {})
        .await?;
    Ok(summed_up(&summary, &action, f.dry_run))
}

/// The answer for `summary`: the matches in a dry run, else one result
/// per task acted on (`ok`), gone or not taken (`not_found`) or failed.
fn summed_up(summary: &asyncjobs::BulkSummary, action: &BulkAction, dry_run: bool) -> Response {
    let result = |id: &String, status: &'static str, error: Option<String>| BulkRetryResult {
        error,
        id: id.clone(),
        status,
    };
    let results: Vec<BulkRetryResult> = if dry_run {
        summary
            .matched
            .iter()
            .map(|id| result(id, "matched", None))
            .collect()
    } else {
        let gone = match action {
            BulkAction::Cancel { .. } => "task not found or already finished",
            _ => "task not found",
        };
        summary
            .done
            .iter()
            .map(|id| result(id, "ok", None))
            .chain(
                summary
                    .skipped
                    .iter()
                    .map(|id| result(id, "not_found", Some(gone.into()))),
            )
            .chain(
                summary
                    .failed
                    .iter()
                    .map(|(id, why)| result(id, "failed", Some(why.clone()))),
            )
            .collect()
    };
    json(
        StatusCode::OK,
        &BulkByFilterResponse {
            dry_run,
            matched: summary.matched.len(),
            results,
        },
    )
}

/// Cancels every task a filter matches, or the ids name, that has not
/// finished (ours).
#[utoipa::path(post, path = "/v1/tasks/cancel", operation_id = "cancelTasks", tag = "Tasks",
    request_body = BulkByFilterRequest,
    responses(
        (status = 200, description = "What was (or would be) cancelled", body = BulkByFilterResponse),
        (status = 400, description = "An invalid filter", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn cancel_many(
    State(api): State<Api>,
    JsonBody(req): JsonBody<BulkByFilterRequest>,
) -> Result<Response, ApiError> {
    let by = req
        .by
        .clone()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "the HTTP API".into());
    let by = crate::access::by(&by);
    by_filter_or_ids(&api, req, BulkAction::Cancel { by }).await
}

/// Deletes every task a filter matches, or the ids name (ours).
#[utoipa::path(post, path = "/v1/tasks/delete", operation_id = "deleteTasks", tag = "Tasks",
    request_body = BulkByFilterRequest,
    responses(
        (status = 200, description = "What was (or would be) deleted", body = BulkByFilterResponse),
        (status = 400, description = "An invalid filter", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn delete_many(
    State(api): State<Api>,
    JsonBody(req): JsonBody<BulkByFilterRequest>,
) -> Result<Response, ApiError> {
    by_filter_or_ids(&api, req, BulkAction::Delete).await
}

/// Retries up to 100 tasks by id; always 200, one result per id in order.
#[utoipa::path(post, path = "/v1/tasks/retry", operation_id = "retryTasks", tag = "Tasks",
    request_body = BulkRetryRequest,
    responses(
        (status = 200, description = "One result per id", body = BulkRetryResponse),
        (status = 400, description = "No ids or too many", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn retry_many(
    State(api): State<Api>,
    JsonBody(req): JsonBody<BulkRetryRequest>,
) -> Result<Response, ApiError> {
    if let Some(f) = req.filter {
        if !req.ids.is_empty() {
            return Err(ApiError::invalid("give ids or a filter, not both")
                .field("filter")
                .reason("ids_and_filter"));
        }
        return by_filter(&api, f, BulkAction::Retry).await;
    }
    if req.ids.is_empty() {
        return Err(ApiError::invalid("ids is required")
            .field("ids")
            .reason("ids_required"));
    }
    if req.ids.len() > BULK_MAX {
        return Err(
            ApiError::invalid(format!("ids may hold at most {BULK_MAX} entries"))
                .field("ids")
                .reason("ids_too_many"),
        );
    }
    let mut results = Vec::with_capacity(req.ids.len());
    for id in req.ids {
        let (status, error) = match api.client.retry_task(&id).await {
            Ok(_) => ("ok", None),
            Err(asyncjobs::Error::TaskNotFound(_)) => {
                ("not_found", Some("task not found".to_string()))
            }
            Err(e) => ("failed", Some(e.to_string())),
        };
        results.push(BulkRetryResult { error, id, status });
    }
    Ok(json(StatusCode::OK, &BulkRetryResponse { results }))
}
