//! Signing in and out of the dashboard, and the audit trail's page
//! (docs/interfaces.md §2.8). Signing in checks the token against the
//! API's credentials and keeps it in an `HttpOnly`, `SameSite=Strict`
//! cookie ([`crate::access::COOKIE`]); the form posts nowhere else, and a
//! browser on another site cannot post it (refused for the whole router).

use super::page::{error_page, query, render};
use crate::access::{self, audit::AuditEntry};
use crate::Api;
use askama::Template;
use axum::extract::{Form, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// Entries the audit page shows unless asked for more (`?limit=`).
const AUDIT_SHOWN: usize = 200;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    read_only: bool,
    problem: Option<String>,
    configured: bool,
}

/// `GET /ui/login`: the sign-in form.
pub(super) async fn login_form(State(api): State<Api>) -> Response {
    render(
        StatusCode::OK,
        &LoginPage {
            read_only: false,
            problem: None,
            configured: !api.options.credentials.is_empty(),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: a known token signs the browser in; another is
/// refused with 401 and the form again.
pub(super) async fn login(State(api): State<Api>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    let Some(credential) = access::find(&api.options.credentials, token) else {
        return render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                read_only: false,
                problem: Some("That token is not one this server knows.".into()),
                configured: !api.options.credentials.is_empty(),
            },
        );
    };
    let mut r = Redirect::to("/ui/").into_response();
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict",
        access::COOKIE
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.extensions_mut().insert(access::Who {
        name: credential.name().to_string(),
        role: credential.role(),
    });
    r
}

/// `POST /ui/logout`: forgets the browser's token.
pub(super) async fn logout() -> Response {
    let mut r = Redirect::to("/ui/login").into_response();
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        access::COOKIE
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    read_only: bool,
    entries: Vec<AuditEntry>,
    limit: usize,
}

/// `GET /ui/audit`: the newest entries of the audit trail.
pub(super) async fn audit(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let limit = query(raw.as_deref())
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(AUDIT_SHOWN)
        .clamp(1, access::audit::MAX_READ);
    match api.audit.recent(limit).await {
        Ok(entries) => render(
            StatusCode::OK,
            &AuditPage {
                read_only: api.read_only(),
                entries,
                limit,
            },
        ),
        Err(e) => error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
