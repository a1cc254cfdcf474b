//! What every dashboard page shares: a template rendered into a response,
//! the error page, the redirect back with a notice, the query string, and
//! how times and limits are shown.

use crate::Api;
use askama::Template;
use asyncjobs::wire::format_time;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The task states, in the order the pages list them.
pub(super) const STATES: [&str; 9] = [
    "new",
    "active",
    "retry",
    "blocked",
    "complete",
    "expired",
    "terminated",
    "unreachable",
    "queue_error",
];

/// A rendered page (or a plain error page when rendering fails).
pub(super) fn render<T: Template>(status: StatusCode, t: &T) -> Response {
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

/// A time to the second (the full time goes in a title attribute).
pub(super) fn short_time(t: &OffsetDateTime) -> String {
    let s = format_time(t);
    // seconds are enough on a page; the full time is in the title attribute
    match (s.find('.'), s.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &s[..dot]),
        _ => s,
    }
}

/// A limit, `unlimited` when 0 or below.
pub(super) fn limit(n: i64) -> String {
    if n <= 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// The query string's non-empty fields.
pub(super) fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// A page saying why a request failed, with a way back to the overview.
pub(super) fn error_page(api: &Api, status: StatusCode, message: impl Into<String>) -> Response {
    render(
        status,
        &MessagePage {
            read_only: api.read_only(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            message: message.into(),
            back: "/ui/".into(),
        },
    )
}

/// Back to `to` with a notice shown at the top of the page.
pub(super) fn done(to: &str, notice: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    let notice: String = form_urlencoded::byte_serialize(notice.as_bytes()).collect();
    Redirect::to(&format!("{to}{sep}notice={notice}")).into_response()
}

/// A message with a way back (the error page).
#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    read_only: bool,
    title: String,
    message: String,
    back: String,
}
