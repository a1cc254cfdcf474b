//! The routes of docs/interfaces.md §2.5 (and ours beyond Go), their OpenAPI
//! description, and what wraps them: panic recovery, access log and
//! metrics, body limit, Go's plain-text 404 and 405.

mod audit;
mod batches;
mod bulk;
mod cancel;
mod live;
mod meta;
mod queues;
mod schedules;
mod stats;
mod tasks;

use crate::error::ApiError;
use crate::{go_json, observe, Api};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::time::Duration;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Go's document header: title, version, licence, server and tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "asyncjobs HTTP API",
        version = "1.0.0",
        description = "Enqueue, inspect, retry and delete asyncjobs tasks; manage queues and schedules (compatible with the Go `ajc server run`).",
        license(name = "Apache-2.0")
    ),
    servers((url = "/")),
    tags(
        (name = "Tasks"),
        (name = "Queues"),
        (name = "Schedules"),
        (name = "Meta"),
        (name = "Bulk"),
        (name = "Batches", description = "Beyond Go: groups of tasks followed as one, with a callback"),
        (name = "Events", description = "Beyond Go: lifecycle events and waiting for a task")
    )
)]
struct ApiDoc;

/// Every route with its OpenAPI operation: a route cannot be served
/// without being described, nor described without being served.
fn described() -> OpenApiRouter<Api> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::openapi_json))
        .routes(routes!(meta::info))
        .routes(routes!(meta::retry_policies))
        .routes(routes!(meta::metrics))
        .routes(routes!(audit::list))
        .routes(routes!(stats::stats))
        .routes(routes!(tasks::list, tasks::create))
        .routes(routes!(bulk::retry_many))
        .routes(routes!(tasks::get, tasks::delete))
        .routes(routes!(tasks::retry_one))
        .routes(routes!(cancel::cancel))
        .routes(routes!(bulk::cancel_many))
        .routes(routes!(bulk::delete_many))
        .routes(routes!(batches::create))
        .routes(routes!(batches::get))
        .routes(routes!(batches::cancel))
        .routes(routes!(batches::retry))
        .routes(routes!(live::wait))
        .routes(routes!(live::events))
        .routes(routes!(queues::list, queues::create))
        .routes(routes!(queues::get, queues::delete))
        .routes(routes!(queues::purge))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(schedules::list, schedules::create))
        .routes(routes!(schedules::get, schedules::delete))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::run))
}

/// The OpenAPI 3 document of every route the router serves (the one `GET
/// /v1/openapi.json` returns, before its keys are sorted).
pub fn openapi() -> utoipa::openapi::OpenApi {
    described().split_for_parts().1
}

pub(crate) fn build(api: Api) -> axum::Router {
    let (mut routes, _) = described().split_for_parts();
    if api.options.ui {
        routes = routes.merge(crate::ui::routes());
    }
    let max_body = api.options.max_body;
    let routes = routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(api.clone(), observe::access))
        .with_state(api);
    // axum sets `Allow` after a route's own layers run, so Go's 405 is
    // made around the whole router
    axum::Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(method_not_allowed))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Go's `404 page not found` (plain text, not the envelope).
async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// Go's `Method Not Allowed` (plain text) with `Allow: GET, HEAD, POST`.
async fn method_not_allowed(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let mut methods: Vec<&str> = v.split(',').map(str::trim).collect();
            methods.sort_unstable();
            methods.join(", ")
        });
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    if let Some(v) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// A panic in a handler: 500 `internal` reason `panic` (Go's recovery).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::internal("internal server error")
        .reason("panic")
        .into_response()
}

/// A request body decoded strictly: Go's decoder messages for malformed
/// JSON, unknown fields refused, 413 over the body limit, and the read
/// bounded by the read timeout. All as 400 `invalid_json` except the limit.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Api> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, api: &Api) -> Result<Self, ApiError> {
        let limit = api.options.read_timeout;
        let bytes = match tokio::time::timeout(limit, Bytes::from_request(req, api)).await {
            Err(_) => {
                return Err(ApiError::invalid_json(format!(
                    "reading the request body took longer than {}",
                    asyncjobs::format_duration(limit)
                )))
            }
            Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    crate::ErrorCode::PayloadTooLarge,
                    format!(
                        "request body is larger than the server's limit of {} bytes",
                        api.options.max_body
                    ),
                )
                .reason("body_too_large"))
            }
            Ok(Err(rejection)) => return Err(ApiError::invalid_json(rejection.body_text())),
            Ok(Ok(bytes)) => bytes,
        };
        decode_strict(&bytes).map(JsonBody)
    }
}

/// `bytes` as `T`, with Go's messages for syntax errors and unknown fields.
pub(crate) fn decode_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(message) = go_json::syntax_error(bytes) {
        return Err(ApiError::invalid_json(message));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        // serde's position suffix means nothing to an HTTP client
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        ApiError::invalid_json(go_json::unknown_field(&message).unwrap_or(message))
    })
}

/// The JSON response of a serializable body, Go's way.
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_value(body) {
        Ok(v) => crate::error::json_response(status, &v),
        Err(e) => ApiError::internal(format!("encoding the response: {e}")).into_response(),
    }
}

/// `Invalid format for parameter <p>: <why>` (Go's binding error, no details).
pub(crate) fn bad_parameter(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Invalid format for parameter {name}: {why}"))
}

/// A Go duration in field `field` of a request, `None` when absent or
/// empty: 400 `invalid_duration` when it does not parse or is negative.
pub(crate) fn go_duration(
    field: &'static str,
    text: Option<&str>,
) -> Result<Option<Duration>, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let invalid = |why: String| {
        ApiError::invalid(format!("{field}: {why}"))
            .field(field)
            .reason("invalid_duration")
    };
    let nanos = asyncjobs::wire::parse_go_duration(text).map_err(invalid)?;
    u64::try_from(nanos)
        .map(|n| Some(Duration::from_nanos(n)))
        .map_err(|_| invalid(format!("must not be negative (got {text:?})")))
}

/// A request's payload from `payload` (any JSON, stored as Go re-encodes
/// it) or `payload_base64` (bytes): 400 `payload_both_set` when both are
/// given, `invalid_json` for bad base64; `None` when neither (or `null`).
pub(crate) fn payload_bytes(
    payload: Option<serde_json::Value>,
    base64_text: Option<String>,
) -> Result<Option<Vec<u8>>, ApiError> {
    use base64::Engine;
    if payload.is_some() && base64_text.is_some() {
        return Err(
            ApiError::invalid("payload and payload_base64 are mutually exclusive")
                .field("payload")
                .reason("payload_both_set"),
        );
    }
    match (payload, base64_text) {
        (Some(v), _) if !v.is_null() => Ok(Some(go_json::encode_as_go_any(&v))),
        (_, Some(text)) => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Some)
            .map_err(|e| ApiError::invalid_json(base64_message(&e))),
        _ => Ok(None),
    }
}

/// Go's message for bad base64 in a `[]byte` field.
fn base64_message(e: &base64::DecodeError) -> String {
    use base64::DecodeError as D;
    let at = match e {
        D::InvalidByte(at, _) | D::InvalidLastSymbol(at, _) => *at,
        D::InvalidLength(at) => *at,
        D::InvalidPadding => 0,
    };
    format!("illegal base64 data at input byte {at}")
}
