//! The web dashboard under `/ui/`: queues, tasks and schedules to see and
//! operate in a browser. Server-rendered HTML (askama templates checked at
//! compile time) with one small script for live updates over the API's
//! Server-Sent Events; every page works without script, actions through
//! a confirmation page instead of a dialog. Assets are embedded: the
//! dashboard works offline.
//!
//! Actions are POST forms carrying a per-process token and refused when
//! the request comes from another site (`Sec-Fetch-Site`, `Origin`), and
//! refused altogether in read-only mode.

mod pages;

use crate::Api;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

/// The dashboard's routes (merged into the API router when
/// [`crate::ApiOptions::ui`] is set).
pub(crate) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/tasks", get(pages::tasks))
        .route("/ui/tasks/retry", post(pages::bulk_retry))
        .route("/ui/tasks/{id}", get(pages::task))
        .route("/ui/tasks/{id}/retry", post(pages::retry))
        .route("/ui/tasks/{id}/delete", post(pages::delete))
        .route("/ui/search", get(pages::search))
        .route("/ui/queues/{name}/purge", post(pages::purge))
        .route("/ui/queues/{name}/configure", post(pages::configure))
        .route(
            "/ui/schedules",
            get(pages::schedules).post(pages::add_schedule),
        )
        .route("/ui/schedules/{name}/delete", post(pages::delete_schedule))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// A rendered page (or a plain error page when rendering fails).
fn page<T: askama::Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            // the dashboard is never framed by another site
            r.headers_mut()
                .insert("x-frame-options", HeaderValue::from_static("DENY"));
            r
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the page failed: {e}"),
        )
            .into_response(),
    }
}

/// True when a POST may act: not read-only, the form's token matches, and
/// the browser does not say it comes from another site.
fn may_act(api: &Api, headers: &HeaderMap, token: &str) -> Result<(), (StatusCode, &'static str)> {
    if api.options.read_only {
        return Err((
            StatusCode::FORBIDDEN,
            "this dashboard is read-only (ajc server run --read-only)",
        ));
    }
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    let same_origin = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://").map(|(_, h)| h.to_string()))
            .zip(host.to_str().ok())
            .is_some_and(|(o, h)| o == h),
        _ => true,
    };
    if !matches!(site, "same-origin" | "none") || !same_origin {
        return Err((
            StatusCode::FORBIDDEN,
            "refused: the request came from another site",
        ));
    }
    if token != api.csrf {
        return Err((
            StatusCode::FORBIDDEN,
            "refused: the form is stale or forged; reload the page",
        ));
    }
    Ok(())
}
