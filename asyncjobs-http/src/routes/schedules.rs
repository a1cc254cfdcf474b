//! Schedules: list, create, get, delete; ours: pause, resume, run now.

use super::{go_duration, json, JsonBody};
use crate::error::ApiError;
use crate::schema::{ScheduleCreateRequest, ScheduleListResponse, ScheduleView};
use crate::Api;
use asyncjobs::{ScheduledTask, Task};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// How long listing schedules may take (Go's ceiling).
const LIST_CEILING: Duration = Duration::from_secs(10);

/// Every schedule, by name.
#[utoipa::path(get, path = "/v1/schedules", operation_id = "listSchedules", tag = "Schedules",
    responses((status = 200, description = "The schedules", body = ScheduleListResponse)))]
pub(super) async fn list(State(api): State<Api>) -> Result<Response, ApiError> {
    let mut all = tokio::time::timeout(LIST_CEILING, api.client.scheduled_tasks())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::ErrorCode::Unavailable,
                "listing schedules took longer than 10s",
            )
            .reason("storage_not_ready")
        })??;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let schedules = all.iter().map(ScheduleView::from).collect();
    Ok(json(StatusCode::OK, &ScheduleListResponse { schedules }))
}

/// Creates a schedule: a task of `task_type` is enqueued into `queue` at
/// every time the cron expression names (by whichever scheduler leads).
#[utoipa::path(post, path = "/v1/schedules", operation_id = "createSchedule", tag = "Schedules",
    request_body = ScheduleCreateRequest,
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 400, description = "Invalid request", body = crate::schema::ErrorEnvelope),
        (status = 409, description = "It exists", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn create(
    State(api): State<Api>,
    JsonBody(req): JsonBody<ScheduleCreateRequest>,
) -> Result<Response, ApiError> {
    let payload = super::payload_bytes(req.payload, req.payload_base64)?;
    let mut template = Task::builder(req.task_type.clone());
    if let Some(p) = payload {
        template = template.raw_payload(p);
    }
    if let Some(d) = go_duration("deadline_offset", req.deadline_offset.as_deref())? {
        template = template.deadline_in(d);
    }
    if let Some(n) = req.max_tries {
        template = template.max_tries(n);
    }
    // the type is checked with the schedule (Go's order and error)
    let template = match template.build() {
        Ok(t) => t,
        Err(asyncjobs::Error::TaskTypeInvalid(t)) => {
            return Err(asyncjobs::ScheduleError::TaskTypeInvalid(t).into())
        }
        Err(e) => return Err(e.into()),
    };
    let schedule = ScheduledTask::new(req.name, req.schedule, req.queue, &template)?;
    api.client.create_scheduled_task(&schedule).await?;
    Ok(json(StatusCode::CREATED, &ScheduleView::from(&schedule)))
}

/// One schedule.
#[utoipa::path(get, path = "/v1/schedules/{name}", operation_id = "getSchedule", tag = "Schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 404, description = "No such schedule", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn get(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let schedule = api.client.load_scheduled_task(&name).await?;
    Ok(json(StatusCode::OK, &ScheduleView::from(&schedule)))
}

/// Deletes a schedule (404 when there is none, as the document says; Go
/// answers 204 either way).
#[utoipa::path(delete, path = "/v1/schedules/{name}", operation_id = "deleteSchedule", tag = "Schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn delete(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    api.client.delete_scheduled_task(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Pauses a schedule (ours): Rust schedulers fire none of its slots until
/// it is resumed; a Go scheduler ignores the pause (docs/go-differences.md
/// §81).
#[utoipa::path(post, path = "/v1/schedules/{name}/pause", operation_id = "pauseSchedule", tag = "Schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses(
        (status = 200, description = "Paused", body = ScheduleView),
        (status = 404, description = "No such schedule", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn pause(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let schedule = api.client.pause_scheduled_task(&name, true).await?;
    Ok(json(StatusCode::OK, &ScheduleView::from(&schedule)))
}

/// Resumes a paused schedule (ours); slots that passed while it was paused
/// are not made up.
#[utoipa::path(post, path = "/v1/schedules/{name}/resume", operation_id = "resumeSchedule", tag = "Schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses(
        (status = 200, description = "Resumed", body = ScheduleView),
        (status = 404, description = "No such schedule", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn resume(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let schedule = api.client.pause_scheduled_task(&name, false).await?;
    Ok(json(StatusCode::OK, &ScheduleView::from(&schedule)))
}

/// Creates a task from the schedule now (ours), outside its timetable.
#[utoipa::path(post, path = "/v1/schedules/{name}/run", operation_id = "runSchedule", tag = "Schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses(
        (status = 201, description = "The task created", body = crate::schema::TaskView),
        (status = 404, description = "No such schedule", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn run(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let task = api.client.run_scheduled_task_now(&name).await?;
    Ok(super::tasks::task_response(StatusCode::CREATED, &task))
}
