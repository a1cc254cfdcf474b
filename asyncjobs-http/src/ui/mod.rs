//! The web dashboard under `/ui/`: queues, tasks and schedules to see and
//! operate in a browser. Server-rendered HTML (askama templates checked at
//! compile time) with one small script for live updates over the API's
//! Server-Sent Events; every page works without script, actions through
//! a confirmation page instead of a dialog. Assets are embedded: the
//! dashboard works offline.
//!
//! Actions are POST forms carrying a token all replicas share and refused when
//! the request comes from another site (`Sec-Fetch-Site`, `Origin`), and
//! refused altogether in read-only mode.

mod pages;

use crate::Api;
use axum::http::{header, HeaderValue, StatusCode};
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

/// The dashboard's answer to a request the server gave up on (the write
/// timeout): 503 with the reason on a page, where the API answers the JSON
/// envelope.
pub(crate) fn unanswered(api: &Api, message: String) -> Response {
    pages::error_page(api, StatusCode::SERVICE_UNAVAILABLE, message)
}

/// True when a POST may act: not read-only and the form's token matches
/// (requests a browser marks cross-site are refused before this, for the
/// whole router, by [`crate::observe::access`]).
pub(crate) async fn may_act(api: &Api, token: &str) -> Result<(), (StatusCode, &'static str)> {
    if api.options.read_only {
        return Err((
            StatusCode::FORBIDDEN,
            "this dashboard is read-only (ajc server run --read-only)",
        ));
    }
    if token != api.csrf().await {
        return Err((
            StatusCode::FORBIDDEN,
            "refused: the form is stale or forged; reload the page",
        ));
    }
    Ok(())
}

/// The form token every replica shares: kept in the KV bucket
/// `CHORIA_AJ_HTTP` (key `csrf`, created by the first server), so a form
/// rendered by one replica is accepted by another behind a load balancer.
pub(crate) async fn shared_token(nc: async_nats::Client) -> String {
    use async_nats::jetstream::{self, kv};
    let fresh: String = rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let js = jetstream::new(nc);
    let store = match js.get_key_value("CHORIA_AJ_HTTP").await {
        Ok(s) => Ok(s),
        Err(_) => {
            js.create_key_value(kv::Config {
                bucket: "CHORIA_AJ_HTTP".into(),
                description: "asyncjobs HTTP API: settings replicas share".into(),
                history: 1,
                ..Default::default()
            })
            .await
        }
    };
    let Ok(store) = store else {
        tracing::warn!("cannot keep the dashboard's form token in CHORIA_AJ_HTTP; forms only work on this replica");
        return fresh;
    };
    if store.create("csrf", fresh.clone().into()).await.is_ok() {
        return fresh;
    }
    match store.get("csrf").await {
        Ok(Some(v)) if !v.is_empty() => String::from_utf8_lossy(&v).into_owned(),
        _ => fresh,
    }
}
