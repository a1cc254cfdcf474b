//! Tasks: create (with idempotency keys), list (JSON or NDJSON), get,
//! delete, retry one, retry many.

use super::{bad_parameter, json, JsonBody};
use crate::error::ApiError;
use crate::schema::{TaskCreateRequest, TaskListResponse, TaskView};
use crate::{go_json, Api};
use asyncjobs::{Task, TaskState};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use time::OffsetDateTime;

/// Most tasks one listing returns, and its default (docs/interfaces.md §2.5).
const LIST_MAX: usize = 1000;
const LIST_DEFAULT: usize = 200;

pub(super) fn task_response(status: StatusCode, task: &Task) -> Response {
    let mut r = json(status, &TaskView::from(task));
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/tasks/{}", task.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Creates a task in the server's queue. With an `Idempotency-Key`, a
/// repeated request (to any replica, within the key's lifetime) answers 200
/// with the task the first one created instead of creating another. A
/// `traceparent` header is carried onto the task.
#[utoipa::path(post, path = "/v1/tasks", operation_id = "createTask", tag = "Tasks",
    params(("Idempotency-Key" = Option<String>, Header, max_length = 1024,
        description = "Repeats of a request with this key return the task the first one created")),
    request_body = TaskCreateRequest,
    responses(
        (status = 200, description = "An earlier request with this Idempotency-Key created it", body = TaskView),
        (status = 201, description = "Created", body = TaskView,
            headers(("Location" = String, description = "/v1/tasks/{id}"),
                ("Warning" = Option<String>, description = "199 asyncjobs \"…\" when no running worker is seen serving the task's queue or handling its type (the task is created)"))),
        (status = 400, description = "Invalid request", body = crate::schema::ErrorEnvelope),
        (status = 409, description = "Conflict", body = crate::schema::ErrorEnvelope),
        (status = 413, description = "Body or task record too large", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn create(
    State(api): State<Api>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let keys: Vec<&HeaderValue> = headers.get_all("idempotency-key").iter().collect();
    if keys.len() > 1 {
        return Err(ApiError::invalid(format!(
            "Expected one value for Idempotency-Key, got {}",
            keys.len()
        )));
    }
    let key = match keys.first() {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| bad_parameter("Idempotency-Key", "not visible ASCII"))?
                .to_string(),
        )
        // an empty key is no key
        .filter(|k| !k.is_empty()),
        None => None,
    };
    let mut reservation = None;
    if let Some(key) = &key {
        // a key whose task is gone (deleted, discarded) is used afresh
        for _ in 0..2 {
            match api.idempotency.reserve(key).await? {
                crate::idempotency::Reserved::Existing(id, revision) => {
                    match api.client.load_task_unverified(&id).await {
                        Ok(task) => return Ok(task_response(StatusCode::OK, &task)),
                        Err(asyncjobs::Error::TaskNotFound(_)) => {
                            api.idempotency.forget(key, revision).await
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                crate::idempotency::Reserved::New(r) => {
                    reservation = Some(r);
                    break;
                }
            }
        }
        if reservation.is_none() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                crate::ErrorCode::Conflict,
                "the Idempotency-Key is being reused concurrently",
            )
            .reason("idempotency_key_in_use"));
        }
    }
    // run to the end even when the client goes away or the write timeout
    // drops this request: a reserved key is always recorded or released
    let work = {
        let api = api.clone();
        async move {
            let created = async {
                let JsonBody(req) = <JsonBody<TaskCreateRequest> as axum::extract::FromRequest<
                    Api,
                >>::from_request(request, &api)
                .await?;
                let mut task = build_task(&api, req, &headers)?;
                api.client.enqueue(&mut task).await?;
                Ok::<_, ApiError>(task)
            }
            .await;
            match (created, reservation) {
                (Ok(task), Some(r)) => {
                    api.idempotency.record(r, &task.id).await;
                    Ok(warned(&api, &task, task_response(StatusCode::CREATED, &task)).await)
                }
                (Ok(task), None) => {
                    Ok(warned(&api, &task, task_response(StatusCode::CREATED, &task)).await)
                }
                (Err(e), Some(r)) => {
                    api.idempotency.release(r).await;
                    Err(e)
                }
                (Err(e), None) => Err(e),
            }
        }
    };
    tokio::spawn(work)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("creating the task failed: {e}"))))
}

/// The header warning that nothing serves a created task
/// (docs/go-differences.md: Go's client ignores it).
pub(crate) const WARNING_HEADER: &str = "warning";

/// Adds a `Warning: 199 asyncjobs "…"` header when the cluster can tell
/// that no running worker serves the task's queue or handles its type
/// ([`asyncjobs::Client::serving`]; a queue and type found served are
/// not read again for [`SERVED_TTL`](crate::SERVED_TTL)); the task is
/// created either way. A failed or slow check adds nothing.
async fn warned(api: &Api, task: &Task, mut r: Response) -> Response {
    let key = (task.queue.clone(), task.task_type.clone());
    let cached = api.served.lock().ok().and_then(|c| {
        c.get(&key)
            .filter(|(at, _)| at.elapsed() < crate::SERVED_TTL)
            .map(|(_, w)| w.clone())
    });
    let warning = match cached {
        Some(w) => w,
        None => {
            let check = api.client.serving(&task.queue, Some(&task.task_type));
            let Ok(Ok(s)) = tokio::time::timeout(std::time::Duration::from_secs(2), check).await
            else {
                return r;
            };
            let w = s.warning();
            // only "served" is kept: a warning is read afresh each time,
            // so it goes as soon as a worker comes
            if w.is_none() {
                if let Ok(mut c) = api.served.lock() {
                    c.retain(|_, (at, _)| at.elapsed() < crate::SERVED_TTL);
                    c.insert(key, (std::time::Instant::now(), None));
                }
            }
            w
        }
    };
    let Some(w) = warning else {
        return r;
    };
    // a quoted string of visible ASCII: quotes and backslashes escaped,
    // anything else outside it replaced
    let text: String = w
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    if let Ok(v) = HeaderValue::from_str(&format!("199 asyncjobs \"{text}\"")) {
        r.headers_mut().insert(WARNING_HEADER, v);
    }
    r
}

pub(super) fn build_task(
    api: &Api,
    req: TaskCreateRequest,
    headers: &HeaderMap,
) -> Result<Task, ApiError> {
    let payload = super::payload_bytes(req.payload, req.payload_base64)?;
    let server_queue = &api.client.queue().name;
    if let Some(q) = req
        .queue
        .as_deref()
        .filter(|q| !q.is_empty() && q != server_queue)
    {
        return Err(ApiError::invalid(format!(
            "this server enqueues into queue {server_queue:?}, not {q:?}: send tasks for {q:?} to a server bound to it"
        ))
        .field("queue")
        .reason("queue_mismatch"));
    }
    if req.signature.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid(
            "a signature cannot be supplied: it covers the task id and creation time, which the server makes; give the server a signing key to sign the tasks it creates",
        )
        .field("signature")
        .reason("signature_unsupported"));
    }
    let mut builder = Task::builder(req.task_type);
    if let Some(bytes) = payload {
        builder = builder.raw_payload(bytes);
    }
    if let Some(d) = req.deadline {
        let at = asyncjobs::wire::parse_time(&d)
            .map_err(|e| ApiError::invalid_json(format!("parsing time {d:?} as RFC 3339: {e}")))?;
        builder = builder.deadline(at);
    }
    if let Some(d) = req.run_at {
        let at = asyncjobs::wire::parse_time(&d)
            .map_err(|e| ApiError::invalid_json(format!("parsing time {d:?} as RFC 3339: {e}")))?;
        builder = builder.run_at(at);
    }
    if let Some(n) = req.max_tries {
        builder = builder.max_tries(n);
    }
    if let Some(deps) = req.dependencies.filter(|d| !d.is_empty()) {
        builder = builder.depends_on(deps);
        if req.load_dependencies == Some(true) {
            builder = builder.load_dependency_results();
        }
    }
    if let Some(p) = req.priority {
        builder = builder.priority(priority(&p)?);
    }
    match req.key {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(k)) => builder = builder.key(k),
        // the build refuses a bad string with the library's message
        Some(other) => {
            return Err(ApiError::invalid(format!(
            "task key must be a string of 1 to 128 bytes without control characters (got {other})"
        ))
            .field("key")
            .reason("key_invalid"))
        }
    }
    if let Some(u) = req.unique {
        builder = match u.key {
            Some(k) => builder.unique(k),
            None => builder.unique_by_payload(),
        };
        if let Some(p) = u.period {
            let d = asyncjobs::wire::parse_duration(&p).map_err(|e| {
                ApiError::invalid(format!("unique.for {p:?}: {e}"))
                    .field("unique")
                    .reason("invalid_duration")
            })?;
            builder = builder.unique_for(d);
        }
    }
    if let Some(tp) = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|tp| valid_traceparent(tp))
    {
        builder = builder.traceparent(tp);
    }
    Ok(builder.build()?)
}

/// The `priority` of a create request: a whole number from 0 to
/// [`asyncjobs::task::MAX_PRIORITY`], else 400 `priority_invalid` (field
/// `priority`), with the library's message when it is out of range.
fn priority(v: &serde_json::Value) -> Result<u8, ApiError> {
    let invalid = |message: String| {
        ApiError::invalid(message)
            .field("priority")
            .reason("priority_invalid")
    };
    let n = match (v.as_i64(), v.as_u64()) {
        (Some(n), _) => n,
        // above i64::MAX: out of range all the same
        (None, Some(_)) => i64::MAX,
        (None, None) => {
            return Err(invalid(format!(
                "task priority must be a whole number from 0 (the default) to {} (runs first) (got {v})",
                asyncjobs::task::MAX_PRIORITY
            )))
        }
    };
    u8::try_from(n)
        .ok()
        .filter(|p| *p <= asyncjobs::task::MAX_PRIORITY)
        .ok_or_else(|| invalid(asyncjobs::Error::PriorityInvalid(n).to_string()))
}

/// A W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
fn valid_traceparent(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1] != "00000000000000000000000000000000"
        && parts[2] != "0000000000000000"
}

/// What a listing keeps.
struct ListQuery {
    states: Vec<TaskState>,
    queue: Option<String>,
    task_type: Option<String>,
    created_since: Option<OffsetDateTime>,
    limit: usize,
    ndjson: bool,
}

impl ListQuery {
    fn parse(raw: Option<&str>) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery {
            states: vec![],
            queue: None,
            task_type: None,
            created_since: None,
            limit: LIST_DEFAULT,
            ndjson: false,
        };
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match &*k {
                "state" => {
                    for s in v.split(',').filter(|s| !s.is_empty()) {
                        let state = TaskState::from_name(s)
                            .filter(|s| *s != TaskState::Unknown)
                            .ok_or_else(|| {
                                bad_parameter("state", format!("unknown task state {s:?}"))
                            })?;
                        q.states.push(state);
                    }
                }
                "queue" => q.queue = Some(v.into_owned()).filter(|s| !s.is_empty()),
                "type" => q.task_type = Some(v.into_owned()).filter(|s| !s.is_empty()),
                "created_since" => q.created_since = Some(parse_since(&v)?),
                "limit" => {
                    let n: i64 = v.parse().map_err(|e| bad_parameter("limit", e))?;
                    if n < 1 {
                        return Err(ApiError::invalid("limit must be positive")
                            .field("limit")
                            .reason("limit_invalid"));
                    }
                    q.limit = (n as u64).min(LIST_MAX as u64) as usize;
                }
                "stream" => q.ndjson = v == "ndjson",
                _ => {}
            }
        }
        Ok(q)
    }

    fn matches(&self, t: &Task) -> bool {
        (self.states.is_empty() || self.states.contains(&t.state))
            && self.queue.as_ref().is_none_or(|q| *q == t.queue)
            && self.task_type.as_ref().is_none_or(|ty| *ty == t.task_type)
            && self.created_since.is_none_or(|s| t.created >= s)
    }
}

/// RFC 3339 or a `2006-01-02` date (UTC midnight), as Go's binder reads it.
pub(super) fn parse_since(v: &str) -> Result<OffsetDateTime, ApiError> {
    asyncjobs::wire::parse_time_bound(v).ok_or_else(|| {
        bad_parameter(
            "created_since",
            format!(
                "error parsing '{v}' as RFC3339 or 2006-01-02 time: parsing time {v:?} as \"2006-01-02\": cannot parse {v:?} as \"2006\""
            ),
        )
    })
}

/// Lists tasks matching the filters, in store order, up to `limit` (after
/// filtering; Go filters after the limit). `stream=ndjson` writes one task
/// per line as it is read. One listing runs at a time; another gets 429.
#[utoipa::path(get, path = "/v1/tasks", operation_id = "listTasks", tag = "Tasks",
    params(
        ("state" = Option<Vec<crate::schema::TaskStateSchema>>, Query, explode, style = Form, description = "Only tasks in these states"),
        ("queue" = Option<String>, Query, description = "Only tasks of this queue"),
        ("type" = Option<String>, Query, description = "Only tasks of this type"),
        ("created_since" = Option<String>, Query, format = DateTime, description = "Only tasks created at or after this time (RFC 3339 or YYYY-MM-DD)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Most tasks returned (default 200)"),
        ("stream" = Option<String>, Query, description = "`ndjson`: one task per line, streamed"),
    ),
    responses(
        (status = 200, description = "The tasks", content(
            (TaskListResponse = "application/json"),
            (TaskView = "application/x-ndjson"))),
        (status = 400, description = "Invalid parameter", body = crate::schema::ErrorEnvelope),
        (status = 429, description = "A listing is in progress", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn list(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(raw.as_deref())?;
    let permit = api.listing.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            crate::ErrorCode::RateLimited,
            "a task listing is in progress; try again when it is done",
        )
        .reason("list_in_progress")
    })?;
    let stream = api.client.list_tasks(usize::MAX).await?;
    let (limit, ndjson) = (q.limit, q.ndjson);
    let matching = stream
        .filter_map(move |r| {
            let keep = match r {
                Ok(t) if q.matches(&t) => Some(Ok(t)),
                Ok(_) => None,
                Err(asyncjobs::Error::InvalidTaskRecord { id, reason }) => {
                    // listed as what it is elsewhere (`ajc task ls`); here
                    // the schema has no place for it
                    tracing::warn!(task = %id, %reason, "listing: a task record does not decode");
                    None
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(keep)
        })
        .take(limit);
    if ndjson {
        // a streamed listing gets the write timeout for all of it (Go's
        // WriteTimeout bounds the whole response): past it the permit is
        // given back even when the client stopped reading, and the stream
        // ends with an error
        let permit = std::sync::Arc::new(std::sync::Mutex::new(Some(permit)));
        let limit = api.options.write_timeout;
        let expired = tokio_util::sync::CancellationToken::new();
        {
            // the stream owns the permit; the watchdog only reaches it
            // while the stream lives
            let (permit, expired) = (std::sync::Arc::downgrade(&permit), expired.clone());
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                expired.cancel();
                if let Some(p) = permit.upgrade() {
                    p.lock().expect("permit lock").take();
                }
            });
        }
        let lines = matching
            .take_until(expired.clone().cancelled_owned())
            .map(move |r| {
                let _held = &permit;
                r.map(|t| {
                    let mut line = go_json::encode(
                        &serde_json::to_value(TaskView::from(&t)).unwrap_or_default(),
                    );
                    line.push(b'\n');
                    line
                })
                .map_err(|e| {
                    tracing::warn!(error = %e, "listing tasks ended early");
                    std::io::Error::other(e.to_string())
                })
            })
            .chain(futures::stream::once(async move {
                if expired.is_cancelled() {
                    Err(std::io::Error::other(
                        "the listing took longer than the write timeout",
                    ))
                } else {
                    Ok(Vec::new())
                }
            }));
        let mut r = Body::from_stream(lines).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return Ok(r);
    }
    let tasks: Vec<TaskView> = matching
        .map(|r| r.map(|t| TaskView::from(&t)))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    drop(permit);
    Ok(json(
        StatusCode::OK,
        &TaskListResponse {
            count: tasks.len(),
            tasks,
        },
    ))
}

/// One task.
#[utoipa::path(get, path = "/v1/tasks/{id}", operation_id = "getTask", tag = "Tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 404, description = "No such task", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn get(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = api.client.load_task_unverified(&id).await?;
    Ok(json(StatusCode::OK, &TaskView::from(&task)))
}

/// Deletes a task's record, and an item held for it (delayed, or waiting
/// for a retry); a work item already in the queue ends as not found.
#[utoipa::path(delete, path = "/v1/tasks/{id}", operation_id = "deleteTask", tag = "Tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such task", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn delete(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.client.delete_task(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Enqueues a task again into the server's queue, whatever its state.
#[utoipa::path(post, path = "/v1/tasks/{id}/retry", operation_id = "retryTask", tag = "Tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task after it was enqueued again", body = TaskView),
        (status = 404, description = "No such task", body = crate::schema::ErrorEnvelope),
        (status = 409, description = "It cannot be retried now", body = crate::schema::ErrorEnvelope)))]
pub(super) async fn retry_one(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = api.client.retry_task(&id).await?;
    Ok(json(StatusCode::OK, &TaskView::from(&task)))
}
