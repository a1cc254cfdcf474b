//! Beyond Go: waiting for a task to end, and a stream of lifecycle events.

use super::{bad_parameter, json};
use crate::error::ApiError;
use crate::schema::TaskView;
use crate::Api;
use asyncjobs::events::Event;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::time::Duration;

/// Default and longest wait of `GET /v1/tasks/{id}/wait`.
const WAIT_DEFAULT: Duration = Duration::from_secs(30);
const WAIT_MAX: Duration = Duration::from_secs(600);
/// How often a wait re-reads the record besides listening for events
/// (events are core NATS messages and can be missed).
const WAIT_RECHECK: Duration = Duration::from_secs(2);

fn query_value(raw: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Waits until the task reaches a final state (`complete`, `expired`,
/// `terminated`, `unreachable`, `queue_error`) or `timeout` passes (Go
/// duration, default 30s, at most 10m). 200 with the final task; 202 with
/// the task as it is when the time runs out; 404 when there is no such task.
#[utoipa::path(get, path = "/v1/tasks/{id}/wait", operation_id = "waitTask", tag = "Events",
    params(
        ("id" = String, Path, description = "Task id"),
        ("timeout" = Option<String>, Query, description = "How long to wait (Go duration, default 30s, at most 10m)")),
    responses(
        (status = 200, description = "The task ended", body = TaskView),
        (status = 202, description = "The task has not ended yet", body = TaskView),
        (status = 404, description = "No such task", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn wait(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let timeout = match query_value(raw.as_deref(), "timeout") {
        Some(t) => asyncjobs::parse_duration(&t)
            .map_err(|e| bad_parameter("timeout", e))?
            .min(WAIT_MAX),
        None => WAIT_DEFAULT,
    };
    // listen before reading, so an end between the two is not missed; the
    // events stream does not end (asyncjobs::events::follow)
    let mut events = api.client.watch_task(&id).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut recheck = tokio::time::interval(WAIT_RECHECK);
    loop {
        let task = api.client.load_task_unverified(&id).await?;
        if task.state.is_final() {
            return Ok(json(StatusCode::OK, &TaskView::from(&task)));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                let task = api.client.load_task_unverified(&id).await?;
                let status = if task.state.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
                return Ok(json(status, &TaskView::from(&task)));
            }
            _ = recheck.tick() => {}
            _ = events.next() => {}
        }
    }
}

/// Lifecycle events as Server-Sent Events, from now on: `event:` is the
/// event type (`io.choria.asyncjobs.v1.task_state`, `…leader_elected`),
/// `id:` the event id, `data:` the event's JSON as Go publishes it.
/// `queue`, `type` and `task` keep only task events that match (and drop
/// leader elections). A comment line is sent every 15 s to keep the
/// connection open.
#[utoipa::path(get, path = "/v1/events", operation_id = "streamEvents", tag = "Events",
    params(
        ("queue" = Option<String>, Query, description = "Only events of tasks in this queue"),
        ("type" = Option<String>, Query, description = "Only events of tasks of this type"),
        ("task" = Option<String>, Query, description = "Only events of this task")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream")))]
pub(super) async fn events(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let queue = query_value(raw.as_deref(), "queue").filter(|s| !s.is_empty());
    let task_type = query_value(raw.as_deref(), "type").filter(|s| !s.is_empty());
    let task = query_value(raw.as_deref(), "task").filter(|s| !s.is_empty());
    let filtered = queue.is_some() || task_type.is_some() || task.is_some();
    let source = match &task {
        Some(id) => api.client.watch_task(id).await?.boxed(),
        None => api.client.watch_events().await?.boxed(),
    };
    let stream = source.filter_map(move |event| {
        let out = match event {
            Ok(Event::TaskState(e)) => {
                let keep = queue.as_ref().is_none_or(|q| *q == e.queue)
                    && task_type.as_ref().is_none_or(|t| *t == e.task_type)
                    && task.as_ref().is_none_or(|t| *t == e.task_id);
                keep.then(|| sse_event(&e.event_type, &e.event_id, &e))
            }
            Ok(Event::LeaderElected(e)) if !filtered => {
                Some(sse_event(&e.event_type, &e.event_id, &e))
            }
            Ok(Event::LeaderElected(_)) => None,
            // logged and counted by asyncjobs::events::watch
            Err(_) => None,
        };
        futures::future::ready(out.map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn sse_event<T: serde::Serialize>(kind: &str, id: &str, body: &T) -> sse::Event {
    let data = serde_json::to_string(body).unwrap_or_default();
    sse::Event::default().event(kind).id(id).data(data)
}
