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
//!
//! One file a page, each with the forms it posts: [`overview`] (`/ui/`),
//! [`tasks`] (the list and search), [`bulk`] (retry, cancel or delete every matching task), [`selected`] (the same for the ticked tasks), [`progress`] (their progress page), [`task`] (one task, cancel, retry,
//! delete), [`batch`] (one batch, cancel, retry), [`schedules`] (list, add, delete, run now,
//! pause, resume), [`workers`]
//! (running workers and what their queues' consumers see), [`queues`] (the
//! overview's purge and configure forms) and [`access`] (signing in and
//! out, the audit trail). [`actions`] refuses and confirms
//! actions; [`page`] renders pages and holds what they share.

mod access;
mod actions;
mod batch;
mod bulk;
mod charts;
mod overview;
mod page;
mod progress;
mod queues;
mod schedules;
mod selected;
mod statistics;
mod task;
mod tasks;
mod workers;

use crate::Api;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

/// The dashboard's routes (merged into the API router when
/// [`crate::ApiOptions::ui`] is set).
pub(crate) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(overview::overview))
        .route("/ui/tasks", get(tasks::tasks))
        .route("/ui/tasks/retry", post(bulk::retry))
        .route("/ui/tasks/cancel", post(bulk::cancel))
        .route("/ui/tasks/delete", post(bulk::delete))
        .route("/ui/tasks/selected/{action}", post(selected::act))
        .route("/ui/bulk/{job}", get(progress::page))
        .route("/ui/tasks/{id}", get(task::task))
        .route("/ui/tasks/{id}/retry", post(task::retry))
        .route("/ui/tasks/{id}/delete", post(task::delete))
        .route("/ui/tasks/{id}/cancel", post(task::cancel))
        .route("/ui/batches/{id}", get(batch::batch))
        .route("/ui/batches/{id}/cancel", post(batch::cancel))
        .route("/ui/batches/{id}/retry", post(batch::retry))
        .route("/ui/search", get(tasks::search))
        .route("/ui/workers", get(workers::workers))
        .route("/ui/queues/{name}", get(statistics::queue))
        .route("/ui/types/{name}", get(statistics::task_type))
        .route("/ui/queues/{name}/purge", post(queues::purge))
        .route("/ui/queues/{name}/configure", post(queues::configure))
        .route("/ui/queues/{name}/pause", post(queues::pause))
        .route("/ui/queues/{name}/resume", post(queues::resume))
        .route(
            "/ui/schedules",
            get(schedules::schedules).post(schedules::add_schedule),
        )
        .route(
            "/ui/schedules/{name}/delete",
            post(schedules::delete_schedule),
        )
        .route("/ui/schedules/{name}/run", post(schedules::run_schedule))
        .route(
            "/ui/schedules/{name}/pause",
            post(schedules::pause_schedule),
        )
        .route(
            "/ui/schedules/{name}/resume",
            post(schedules::resume_schedule),
        )
        .route("/ui/login", get(access::login_form).post(access::login))
        .route("/ui/logout", post(access::logout))
        .route("/ui/audit", get(access::audit))
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

/// The dashboard's page refusing an action the caller may not take (403).
pub(crate) fn refused(api: &Api, message: String) -> Response {
    page::error_page(api, StatusCode::FORBIDDEN, message)
}

/// The dashboard's answer to a request the server gave up on (the write
/// timeout): 503 with the reason on a page, where the API answers the JSON
/// envelope.
pub(crate) fn unanswered(api: &Api, message: String) -> Response {
    page::error_page(api, StatusCode::SERVICE_UNAVAILABLE, message)
}

/// The form token every replica shares: kept in the KV bucket
/// `CHORIA_AJ_HTTP` (key `csrf`, created by the first server), so a form
/// rendered by one replica is accepted by another behind a load balancer.
/// Without `kv` (a server too old for the client's key-value API, reported
/// at start by `asyncjobs::capabilities`) the token is this replica's own.
/// The bucket is created with `replicas` (the API's
/// [`ApiOptions::replicas`](crate::ApiOptions::replicas)), as the
/// idempotency bucket is.
pub(crate) async fn shared_token(
    js: async_nats::jetstream::Context,
    kv: bool,
    replicas: usize,
) -> String {
    use async_nats::jetstream::kv;
    let fresh: String = rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !kv {
        return fresh;
    }
    let store = match js.get_key_value("CHORIA_AJ_HTTP").await {
        Ok(s) => Ok(s),
        Err(_) => {
            js.create_key_value(kv::Config {
                bucket: "CHORIA_AJ_HTTP".into(),
                description: "asyncjobs HTTP API: settings replicas share".into(),
                history: 1,
                num_replicas: replicas.max(1),
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
