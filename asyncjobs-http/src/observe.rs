//! Per request: who makes it and whether they may (`access`), the audit
//! entry of one that may change something, an access log line through `tracing` (method, route,
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

/// Whether the browser says the request comes from another site
/// (`Sec-Fetch-Site`, or an `Origin` whose host is not the `Host`).
/// Clients other than browsers send neither header.
pub(crate) fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header;
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    if !matches!(site, "same-origin" | "none") {
        return true;
    }
    match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://").map(|(_, h)| h.to_string()));
            origin_host.as_deref() != host.to_str().ok()
        }
        _ => false,
    }
}

/// Whether the request's host (`Host`, or the URI's authority as HTTP/2
/// sends it) names this machine's loopback (any port).
fn loopback_host(req: &Request) -> bool {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()));
    let Some(host) = host else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !n.ends_with(':') => n,
        _ => host.as_str(),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A request's method as a metric label: the standard methods by name,
/// any other as `OTHER`, so that a client inventing methods cannot add
/// series without end.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "OTHER",
    }
}

pub(crate) async fn access(State(api): State<Api>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    if api.options.loopback_hosts_only && !loopback_host(&req) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::InvalidArgument,
            "this server answers only requests for a loopback host (localhost, 127.0.0.1, [::1])",
        )
        .reason("host_not_allowed")
        .into_response();
    }
    // a page on another site may not make a browser change anything here
    let safe = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !safe && cross_site(req.headers()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::InvalidArgument,
            "refused: a browser sent this request from another site",
        )
        .reason("cross_site_request")
        .into_response();
    }
    let method = method_label(req.method());
    let acting = crate::access::acts(req.method());
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let who = match crate::access::identify(&api, &req) {
        Ok(who) => who,
        Err(refused) => {
            let response = match refused.answer {
                crate::access::Answer::Response(r) => r,
                crate::access::Answer::Page(message) => crate::ui::refused(&api, message),
            };
            if acting {
                let status = response.status().as_u16();
                api.audit
                    .record_refused(
                        refused.who.as_ref(),
                        refused.stranger.as_deref(),
                        method,
                        &path,
                        status,
                    )
                    .await;
            }
            return response;
        }
    };
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
    let run = crate::access::as_caller(
        who.clone(),
        tracing::Instrument::instrument(next.run(req), span),
    );
    let response = if long {
        run.await
    } else {
        let limit = api.options.write_timeout;
        match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => {
                let message = format!(
                    "the request was not answered within {}",
                    asyncjobs::format_duration(limit)
                );
                // a browser on the dashboard gets a page, API clients the envelope
                if route == "/ui" || route.starts_with("/ui/") {
                    crate::ui::unanswered(&api, message)
                } else {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::Unavailable,
                        message,
                    )
                    .reason("timeout")
                    .into_response()
                }
            }
        }
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if acting {
        // a sign-in names who signed in
        let who = response
            .extensions()
            .get::<crate::access::Who>()
            .unwrap_or(&who);
        // with credentials, `anonymous` presented no known token: no role
        let known = api.options.credentials.is_empty() || who.name != "anonymous";
        api.audit
            .record(known.then_some(who), method, &path, status)
            .await;
    }
    let m = metrics();
    m.requests
        .with_label_values(&[method, &route, &status.to_string()])
        .inc();
    m.duration
        .with_label_values(&[method, &route])
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
