//! The queue forms of the overview: purge, pause or resume a queue, change
//! its settings.

use super::actions::{act, may_act, Action, Ask};
use super::page::{done, error_page};
use crate::Api;
use asyncjobs::QueueUpdate;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::time::Duration;

/// Removes every waiting item of a queue, after confirmation.
pub(super) async fn purge(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    let ask = Ask {
        title: "Purge queue",
        message: format!("Remove every waiting item of queue {name}? Their tasks stay stored but will not run until retried."),
        action: format!("/ui/queues/{name}/purge"),
        button: "Purge".into(),
        back: "/ui/".into(),
    };
    act(&api, &a, ask, || async {
        match api.client.purge_queue(&name).await {
            Ok(()) => Ok(("/ui/".into(), format!("Queue {name} purged"))),
            Err(e) => Err(format!("purging {name}: {e}")),
        }
    })
    .await
}

/// Queue settings to change; empty fields stay as they are.
#[derive(Deserialize)]
pub(super) struct Configure {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    max_age: String,
    #[serde(default)]
    max_tries: String,
    #[serde(default)]
    max_run_time: String,
    #[serde(default)]
    max_concurrent: String,
    #[serde(default)]
    retention: String,
    /// The flow settings: `none` (aging also `strict`) removes one.
    #[serde(default)]
    rate_limit: String,
    #[serde(default)]
    priority_aging: String,
    #[serde(default)]
    key_concurrency: String,
    #[serde(default)]
    key_rate_limit: String,
}

/// A flow setting of the form: `None` when left empty (unchanged),
/// `Some(None)` for `none` (removed), else what `parse` makes of it.
fn flow_field<T>(
    field: &str,
    v: &str,
    parse: impl FnOnce(&str) -> asyncjobs::Result<T>,
) -> Result<Option<Option<T>>, String> {
    match v.trim() {
        "" => Ok(None),
        v if v.eq_ignore_ascii_case("none") => Ok(Some(None)),
        v => parse(v)
            .map(|t| Some(Some(t)))
            .map_err(|e| format!("{field}: {e}")),
    }
}

/// Changes the queue settings the form fills in (400 when one does not
/// parse or the change is refused).
pub(super) async fn configure(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(c): Form<Configure>,
) -> Response {
    if let Err(refused) = may_act(&api, &c.csrf).await {
        return refused;
    }
    let duration = |field: &str, v: &str| -> Result<Option<Duration>, String> {
        if v.trim().is_empty() {
            return Ok(None);
        }
        asyncjobs::parse_duration(v.trim())
            .map(Some)
            .map_err(|e| format!("{field}: {e}"))
    };
    let number = |field: &str, v: &str| -> Result<Option<i64>, String> {
        if v.trim().is_empty() {
            return Ok(None);
        }
        v.trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("{field}: {e}"))
    };
    let update = (|| -> Result<QueueUpdate, String> {
        Ok(QueueUpdate {
            max_age: duration("max age", &c.max_age)?,
            max_run_time: duration("max run time", &c.max_run_time)?,
            max_tries: number("max tries", &c.max_tries)?,
            max_concurrent: number("max concurrent", &c.max_concurrent)?,
            retention: match c.retention.trim() {
                "" => None,
                r => Some(r.parse().map_err(|e| format!("keep finished: {e}"))?),
            },
            rate_limit: flow_field("rate limit", &c.rate_limit, str::parse)?,
            // strict (or 0) is no aging: the setting removed
            priority_aging: flow_field(
                "priority aging",
                &c.priority_aging,
                asyncjobs::queue::flow::parse_priority_aging,
            )?
            .map(Option::flatten),
            key_concurrency: flow_field("key concurrency", &c.key_concurrency, |n| {
                let n = n.parse::<u32>().map_err(|_| {
                    asyncjobs::Error::Config(format!(
                        "expected a whole number from 1 to {} (got {n:?})",
                        asyncjobs::queue::flow::MAX_KEY_CONCURRENCY
                    ))
                })?;
                asyncjobs::queue::flow::check_key_concurrency(n).map(|()| n)
            })?,
            key_rate_limit: flow_field("key rate limit", &c.key_rate_limit, str::parse)?,
            ..QueueUpdate::default()
        })
    })();
    let update = match update {
        Ok(u) => u,
        Err(e) => return error_page(&api, StatusCode::BAD_REQUEST, e),
    };
    match api.client.configure_queue(&name, update).await {
        Ok(_) => done("/ui/", &format!("Queue {name} configured")),
        Err(e) => error_page(
            &api,
            StatusCode::BAD_REQUEST,
            format!("configuring {name}: {e}"),
        ),
    }
}

/// The pause form: how long, empty for until resumed.
#[derive(Deserialize)]
pub(super) struct Pause {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "for")]
    for_: String,
}

/// Pauses a queue for every worker (docs/storage.md §4.4), for the
/// duration given or until resumed (400 when it does not parse, the
/// server's refusal shown as it is).
pub(super) async fn pause(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(p): Form<Pause>,
) -> Response {
    if let Err(refused) = may_act(&api, &p.csrf).await {
        return refused;
    }
    let until = match p.for_.trim() {
        "" => Ok(asyncjobs::PauseUntil::Resumed),
        d => asyncjobs::parse_duration(d)
            .map_err(|e| format!("for: {e}"))
            .and_then(|d| {
                time::Duration::try_from(d)
                    .ok()
                    .filter(|d| d.is_positive())
                    .ok_or_else(|| "for: must be longer than 0s".to_string())
            })
            .map(|d| asyncjobs::PauseUntil::Time(time::OffsetDateTime::now_utc() + d)),
    };
    let until = match until {
        Ok(u) => u,
        Err(e) => return error_page(&api, StatusCode::BAD_REQUEST, e),
    };
    match api.client.pause_queue(&name, until).await {
        Ok(_) => done("/ui/", &format!("Queue {name} paused {until}")),
        Err(e) => error_page(
            &api,
            StatusCode::BAD_REQUEST,
            format!("pausing {name}: {e}"),
        ),
    }
}

/// Resumes a paused queue.
pub(super) async fn resume(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    if let Err(refused) = may_act(&api, &a.csrf).await {
        return refused;
    }
    match api.client.resume_queue(&name).await {
        Ok(_) => done("/ui/", &format!("Queue {name} resumed")),
        Err(e) => error_page(
            &api,
            StatusCode::BAD_REQUEST,
            format!("resuming {name}: {e}"),
        ),
    }
}
