//! Per request: an access log line through `tracing` (method, route,
//! status, duration; target `asyncjobs_http::access`), Prometheus metrics
//! (`asyncjobs_http_requests_total{method,route,status}`,
//! `asyncjobs_http_request_duration_seconds{method,route}`), and the write
//! timeout for answers that are not streams.

use crate::error::{ApiError, ErrorCode};
use crate::Api;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use std::sync::OnceLock;
use std::time::Instant;

struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let requests = IntCounterVec::new(
            Opts::new(
                "asyncjobs_http_requests_total",
                "HTTP API requests answered, by method, route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "asyncjobs_http_request_duration_seconds",
                "Time to answer HTTP API requests (to the first byte of streams), by method and route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let registry = asyncjobs::metrics::registry();
        // registered once per process, whatever number of routers is built
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(duration.clone()));
        Metrics { requests, duration }
    })
}

/// Makes sure the API's metrics are in the library's registry.
pub(crate) fn register() {
    metrics();
}

/// Routes whose answers are streams or long waits: no write timeout.
fn is_long(route: &str, query: Option<&str>) -> bool {
    route == "/v1/events"
        || route == "/v1/tasks/{id}/wait"
        || (route == "/v1/tasks" && query.is_some_and(|q| q.contains("stream=ndjson")))
}

pub(crate) async fn access(State(api): State<Api>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // the route pattern, not the path: ids would make every line a series
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let long = is_long(&route, req.uri().query());
    // the request's span: what the handler and the library log inside it
    // carries the method and route
    let span = tracing::info_span!("http_request", method = %method, route = %route);
    let run = tracing::Instrument::instrument(next.run(req), span);
    let response = if long {
        run.await
    } else {
        let limit = api.options.write_timeout;
        match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!(
                    "the request was not answered within {}",
                    asyncjobs::format_duration(limit)
                ),
            )
            .reason("timeout")
            .into_response(),
        }
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let m = metrics();
    m.requests
        .with_label_values(&[method.as_str(), &route, &status.to_string()])
        .inc();
    m.duration
        .with_label_values(&[method.as_str(), &route])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "asyncjobs_http::access",
        method = %method,
        route = %route,
        status,
        "{method} {route} {status} {elapsed:?}"
    );
    response
}
