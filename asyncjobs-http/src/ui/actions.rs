//! The dashboard's actions: every POST form is refused in read-only mode
//! or with a stale or forged token, and a one-step action (retry, delete,
//! purge, delete a schedule) first shows a confirmation page that posts
//! the same form again with `confirmed=1`.

use super::page::{done, error_page, render};
use crate::Api;
use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

/// `Ok` when a POST may act: not read-only and the form's token matches
/// (requests a browser marks cross-site are refused before this, for the
/// whole router, by [`crate::observe::access`]); else the page saying why.
pub(super) async fn may_act(api: &Api, token: &str) -> Result<(), Response> {
    if api.read_only() {
        return Err(error_page(
            api,
            StatusCode::FORBIDDEN,
            "refused: this dashboard is read-only for you (ajc server run --read-only, or a viewer's token)",
        ));
    }
    if token != api.csrf().await {
        return Err(error_page(
            api,
            StatusCode::FORBIDDEN,
            "refused: the form is stale or forged; reload the page",
        ));
    }
    Ok(())
}

/// A confirmation page: the same form again with `confirmed=1`.
#[derive(Template)]
#[template(path = "confirm.html")]
struct Confirm {
    read_only: bool,
    csrf: String,
    title: String,
    message: String,
    action: String,
    fields: Vec<(String, String)>,
    items: Vec<String>,
    more: usize,
    button: String,
    back: String,
}

/// Fields every action form sends.
#[derive(Deserialize)]
pub(super) struct Action {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    confirmed: String,
}

/// What a confirmation page asks.
pub(super) struct Ask {
    pub(super) title: &'static str,
    pub(super) message: String,
    /// Where the confirmed form posts.
    pub(super) action: String,
    pub(super) button: String,
    pub(super) back: String,
}

/// The confirmation page of `ask`: the form's `fields` again, and the
/// `items` it acts on (with how many `more` are not listed).
pub(super) async fn confirm(
    api: &Api,
    ask: Ask,
    fields: Vec<(String, String)>,
    items: Vec<String>,
    more: usize,
) -> Response {
    render(
        StatusCode::OK,
        &Confirm {
            read_only: api.read_only(),
            csrf: api.csrf().await,
            title: ask.title.into(),
            message: ask.message,
            action: ask.action,
            fields,
            items,
            more,
            button: ask.button,
            back: ask.back,
        },
    )
}

/// A one-step action: refused unless [`may_act`] allows it; without
/// `confirmed`, the confirmation page; then `op`, whose `Ok` is where to go
/// back to with which notice, and whose `Err` is shown as a conflict.
pub(super) async fn act<F, Fut>(api: &Api, a: &Action, ask: Ask, op: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(String, String), String>>,
{
    if let Err(refused) = may_act(api, &a.csrf).await {
        return refused;
    }
    if a.confirmed != "1" {
        return confirm(api, ask, vec![], vec![], 0).await;
    }
    match op().await {
        Ok((to, notice)) => done(&to, &notice),
        Err(e) => error_page(api, StatusCode::CONFLICT, e),
    }
}
