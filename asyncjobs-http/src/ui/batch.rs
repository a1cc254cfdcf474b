//! The batch page (`/ui/batches/{id}`): a batch's counts, its callback and
//! every member with its state, with the batch's cancel and retry forms
//! (docs/processing.md §2.23).

use super::actions::{act, Action, Ask};
use super::page::{error_page, query, render};
use crate::Api;
use askama::Template;
use asyncjobs::batch::{BatchTask, CallbackRetry};
use asyncjobs::wire::format_time;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

/// One task of the batch as a row: id, type, state (empty: no record),
/// last error.
struct Row {
    id: String,
    task_type: String,
    state: &'static str,
    last_err: String,
}

impl From<&BatchTask> for Row {
    fn from(t: &BatchTask) -> Self {
        Row {
            id: t.id.clone(),
            task_type: t.task_type.clone(),
            state: t.state.map(|s| s.as_str()).unwrap_or(""),
            last_err: t.last_err.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "batch.html")]
struct BatchPage {
    read_only: bool,
    csrf: String,
    notice: Option<String>,
    id: String,
    queue: String,
    created: String,
    total: usize,
    done: usize,
    failed: usize,
    pending: usize,
    missing: usize,
    finished: bool,
    callback: Option<Row>,
    members: Vec<Row>,
}

/// `/ui/batches/{id}`.
pub(super) async fn batch(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query(raw.as_deref());
    let s = match api.client.batch(&id).await {
        Ok(s) => s,
        Err(asyncjobs::Error::BatchNotFound(_)) => {
            return error_page(&api, StatusCode::NOT_FOUND, format!("no batch {id}"))
        }
        Err(e) => return error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    render(
        StatusCode::OK,
        &BatchPage {
            read_only: api.read_only(),
            csrf: api.csrf().await,
            notice: q.get("notice").cloned(),
            id: s.id.clone(),
            queue: s.queue.clone(),
            created: format_time(&s.created),
            total: s.total,
            done: s.done,
            failed: s.failed,
            pending: s.pending,
            missing: s.missing,
            finished: s.finished(),
            callback: s.callback.as_ref().map(Into::into),
            members: s.members.iter().map(Into::into).collect(),
        },
    )
}

/// Cancels the batch (its callback, then its unfinished members), after
/// confirmation; `last_err` names the dashboard.
pub(super) async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    let back = format!("/ui/batches/{id}");
    let ask = Ask {
        title: "Cancel batch",
        message: format!(
            "Cancel batch {id}? Its callback and every member not yet ended end terminated; running ones are stopped."
        ),
        action: format!("/ui/batches/{id}/cancel"),
        button: "Cancel batch".into(),
        back: back.clone(),
    };
    act(&api, &a, ask, || async {
        match api
            .client
            .cancel_batch(&id, &crate::access::by("the dashboard"))
            .await
        {
            Ok(c) if c.failed.is_empty() => Ok((
                back,
                format!(
                    "Batch cancelled: {} tasks cancelled, {} had ended",
                    c.cancelled.len(),
                    c.finished
                ),
            )),
            Ok(c) => Err(format!(
                "cancelling batch {id}: {} tasks could not be cancelled (first: {})",
                c.failed.len(),
                c.failed[0].1
            )),
            Err(e) => Err(format!("cancelling batch {id}: {e}")),
        }
    })
    .await
}

/// Retries the batch (its failed members, then its callback), after
/// confirmation.
pub(super) async fn retry(
    State(api): State<Api>,
    Path(id): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    let back = format!("/ui/batches/{id}");
    let ask = Ask {
        title: "Retry batch",
        message: format!(
            "Retry batch {id}? Its failed members run again, and its callback once they have ended."
        ),
        action: format!("/ui/batches/{id}/retry"),
        button: "Retry batch".into(),
        back: back.clone(),
    };
    act(&api, &a, ask, || async {
        match api.client.retry_batch(&id).await {
            Ok(r) if r.failed.is_empty() => {
                let callback = match r.callback {
                    CallbackRetry::Running => {
                        "; the callback is running and was left alone (retry again once it has ended)"
                    }
                    CallbackRetry::Failed(_) => "; the callback could not be re-armed",
                    _ => "",
                };
                Ok((
                    back,
                    format!("Batch retried: {} members{callback}", r.retried.len()),
                ))
            }
            Ok(r) => Err(format!(
                "retrying batch {id}: {} members could not be retried (first: {})",
                r.failed.len(),
                r.failed[0].1
            )),
            Err(e) => Err(format!("retrying batch {id}: {e}")),
        }
    })
    .await
}
