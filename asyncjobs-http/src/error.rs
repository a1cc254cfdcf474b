//! The error envelope of docs/interfaces.md §2.3 and the mapping from library
//! errors to HTTP statuses, codes and reasons.

use crate::go_json;
use asyncjobs::scheduler::ScheduleError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// The `code` of an error envelope (docs/interfaces.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the request is malformed or names something invalid.
    InvalidArgument,
    /// 404: the task, queue or schedule does not exist.
    NotFound,
    /// 409: the request conflicts with the task's state.
    Conflict,
    /// 409: the thing to create exists already.
    Duplicate,
    /// 429: too many concurrent requests of a kind.
    RateLimited,
    /// 413: the request body is larger than `max_body`.
    PayloadTooLarge,
    /// 400: a task signature did not verify.
    SignatureInvalid,
    /// 400: a signature was required and missing.
    SignatureRequired,
    /// 500: anything unexpected.
    Internal,
    /// 503: the JetStream storage cannot be reached or is not prepared.
    Unavailable,
    /// 501: the NATS server is too old for what was asked.
    Unsupported,
    /// 401: the server needs a token and the request had none it knows
    /// (ours: Go's API has no tokens).
    Unauthenticated,
    /// 403: the caller's role may not do this (ours).
    PermissionDenied,
}

impl ErrorCode {
    /// The wire name (`invalid_argument`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::SignatureInvalid => "signature_invalid",
            ErrorCode::SignatureRequired => "signature_required",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
        }
    }
}

/// An error response: `{"error":{"code":…,"details":{"field":…,"reason":…},"message":…}}`
/// with `Content-Type: application/json; charset=utf-8` (docs/interfaces.md §2.3;
/// `details` and its keys are left out when empty).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Envelope code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// The request field at fault, if one is.
    pub field: Option<&'static str>,
    /// Machine-readable reason (`task_not_found`, `invalid_json`, ...).
    pub reason: Option<&'static str>,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            reason: None,
        }
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: &'static str) -> ApiError {
        self.reason = Some(reason);
        self
    }

    /// Sets the field.
    pub fn field(mut self, field: &'static str) -> ApiError {
        self.field = Some(field);
        self
    }

    /// 400 `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }

    /// 400 `invalid_argument` reason `invalid_json`: a body that does not
    /// decode (Go's decoder message where we can give it).
    pub fn invalid_json(message: impl Into<String>) -> ApiError {
        ApiError::invalid(message).reason("invalid_json")
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }

    /// The envelope as JSON.
    pub fn body(&self) -> Value {
        let mut details = Map::new();
        if let Some(f) = self.field {
            details.insert("field".into(), f.into());
        }
        if let Some(r) = self.reason {
            details.insert("reason".into(), r.into());
        }
        let mut error = Map::new();
        error.insert("code".into(), self.code.as_str().into());
        if !details.is_empty() {
            error.insert("details".into(), Value::Object(details));
        }
        error.insert("message".into(), self.message.clone().into());
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status,
            self.code.as_str(),
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}

/// `value` as Go writes a JSON response: sorted keys, Go's escaping,
/// `Content-Type: application/json; charset=utf-8`, no trailing newline.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut r = (status, go_json::encode(value)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Library errors as docs/interfaces.md §2.4 maps them (first match wins). The
/// message is Go's text for the mapped kinds, so clients matching on it
/// work against either server; anything unmapped is a 500 with our text.
impl From<asyncjobs::Error> for ApiError {
    fn from(e: asyncjobs::Error) -> ApiError {
        use asyncjobs::Error as E;
        let bad = StatusCode::BAD_REQUEST;
        let conflict = StatusCode::CONFLICT;
        match &e {
            E::TaskNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "task not found")
                    .reason("task_not_found")
            }
            E::TaskDiscarded { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, e.to_string())
                    .reason("task_not_found")
            }
            E::TaskTypeInvalid(_) => ApiError::new(
                bad,
                ErrorCode::InvalidArgument,
                "task type is invalid: must match ^[a-zA-Z0-9_:-]+$",
            )
            .reason("task_type_invalid"),
            E::TaskIdInvalid(_) => ApiError::new(
                bad,
                ErrorCode::InvalidArgument,
                "task ID is invalid: must match ^[a-zA-Z0-9_:-]+$",
            )
            .reason("task_id_invalid"),
            E::CannotEnqueue(_) => ApiError::new(conflict, ErrorCode::Conflict, e.to_string())
                .reason("task_cannot_enqueue"),
            E::ConcurrentUpdate(_) => ApiError::new(conflict, ErrorCode::Conflict, e.to_string())
                .reason("task_update_conflict"),
            E::TaskExists { .. } => ApiError::new(conflict, ErrorCode::Duplicate, e.to_string())
                .reason("unique_task_exists"),
            E::StorageNotReady(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                e.to_string(),
            )
            .reason("storage_not_ready"),
            E::QueueNotFound(_) | E::QueueConsumerNotFound(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "queue not found",
            )
            .reason("queue_not_found"),
            E::QueueNameInvalid(name) if name.is_empty() => {
                ApiError::new(bad, ErrorCode::InvalidArgument, "queue name is required")
                    .reason("queue_name_required")
            }
            E::QueueNameInvalid(_) => ApiError::new(bad, ErrorCode::InvalidArgument, e.to_string())
                .reason("queue_name_invalid"),
            E::DuplicateItem => {
                ApiError::new(conflict, ErrorCode::Duplicate, "duplicate work queue item")
                    .reason("duplicate_item")
            }
            E::PayloadTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                e.to_string(),
            )
            .reason("record_too_large"),
            E::SchedulesUnsupported { .. } => {
                ApiError::new(bad, ErrorCode::InvalidArgument, e.to_string())
                    .field("run_at")
                    .reason("schedules_unsupported")
            }
            E::ServerTooOld { .. } => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                ErrorCode::Unsupported,
                e.to_string(),
            )
            .reason("server_too_old"),
            E::DeadlineBeforeDue { .. } => {
                ApiError::new(bad, ErrorCode::InvalidArgument, e.to_string())
                    .field("deadline")
                    .reason("deadline_before_due")
            }
            E::PriorityInvalid(_) => ApiError::new(bad, ErrorCode::InvalidArgument, e.to_string())
                .field("priority")
                .reason("priority_invalid"),
            E::KeyInvalid(_) => ApiError::new(bad, ErrorCode::InvalidArgument, e.to_string())
                .field("key")
                .reason("key_invalid"),
            // a setting that does not allow what was asked (for example a
            // delayed task into a queue that cannot hold it)
            E::Config(_) => ApiError::new(bad, ErrorCode::InvalidArgument, e.to_string())
                .reason("invalid_configuration"),
            E::UnknownRetryPolicy(_) => {
                ApiError::new(bad, ErrorCode::InvalidArgument, e.to_string())
                    .reason("unknown_retry_policy")
            }
            E::Signature(msg) if msg.contains("not signed") => {
                ApiError::new(bad, ErrorCode::SignatureRequired, msg.clone())
                    .reason("task_not_signed")
            }
            E::Signature(msg) => ApiError::new(bad, ErrorCode::SignatureInvalid, msg.clone())
                .reason("task_signature_invalid"),
            E::Nats(n) if n.is_transient() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                e.to_string(),
            )
            .reason("storage_not_ready"),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> ApiError {
        let bad = StatusCode::BAD_REQUEST;
        match e {
            ScheduleError::NotFound(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "scheduled task not found",
            )
            .reason("schedule_not_found"),
            ScheduleError::AlreadyExists(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Duplicate,
                "scheduled task already exist",
            )
            .reason("schedule_already_exists"),
            ScheduleError::InvalidSchedule { source, .. } => ApiError::new(
                bad,
                ErrorCode::InvalidArgument,
                format!("invalid cron schedule: {source}"),
            )
            .reason("schedule_invalid"),
            ScheduleError::NameRequired
            | ScheduleError::NameInvalid(_)
            | ScheduleError::NameNotAKey(_)
            | ScheduleError::ScheduleRequired
            | ScheduleError::QueueRequired
            | ScheduleError::TaskTypeInvalid(_)
            | ScheduleError::DeadlineTooShort(_) => {
                ApiError::new(bad, ErrorCode::InvalidArgument, e.to_string())
                    .reason("schedule_invalid")
            }
            ScheduleError::Client(inner) => inner.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}
