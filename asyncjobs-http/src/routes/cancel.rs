//! Cancelling a task (beyond Go): `POST /v1/tasks/{id}/cancel`.

use super::json;
use crate::error::{ApiError, ErrorCode};
use crate::schema::TaskView;
use crate::Api;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

/// Who cancels, as `last_err` names it.
const BY: &str = "the HTTP API";

/// Cancels a task: a waiting one is saved `terminated` and never runs; a
/// running one is saved `terminated` and its worker stops the handler
/// (its cancellation token, then a grace). `last_err` becomes
/// `cancelled by the HTTP API`. A task that
/// had finished is left as it is: 409 `already_finished`.
#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", operation_id = "cancelTask", tag = "Tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task as the cancel saved it (state terminated)", body = TaskView),
        (status = 400, description = "The id is invalid", body = crate::schema::ErrorEnvelope),
        (status = 404, description = "No such task", body = crate::schema::ErrorEnvelope),
        (status = 409, description = "It had already finished; nothing was changed", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match api.client.cancel_task(&id, &crate::access::by(BY)).await? {
        asyncjobs::Cancelled::AlreadyFinished(t) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!(
                "task {} had already finished ({}): nothing was changed",
                t.id, t.state
            ),
        )
        .reason("already_finished")),
        done => Ok(json(StatusCode::OK, &TaskView::from(done.task()))),
    }
}
