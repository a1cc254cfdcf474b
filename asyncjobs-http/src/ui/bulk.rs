//! The task list's bulk actions (`/ui/tasks/retry`, `/cancel`, `/delete`):
//! every task the list's filter matches that the action takes
//! (`Client::bulk_tasks`). First a confirmation page that says how many
//! tasks it will touch and lists the first 100, then the action in the
//! background, carried to the end even when the browser goes away, and its
//! progress page ([`super::progress`]) summing up at the end what was done,
//! gone meanwhile and failed.

use super::actions::{confirm, may_act, Ask};
use super::page::error_page;
use super::progress::{start, Tasks, Words};
use super::tasks::Filter;
use crate::Api;
use asyncjobs::BulkAction;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

/// Ids a confirmation page lists (the count is always given).
const SHOWN: usize = 100;

/// A bulk form: its filter, and whether it was confirmed.
#[derive(Deserialize)]
pub(super) struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirmed: String,
    #[serde(flatten)]
    filter: Filter,
}

/// `/ui/tasks/retry`: enqueues every matching task that ended for good again.
pub(super) async fn retry(State(api): State<Api>, Form(f): Form<BulkForm>) -> Response {
    bulk(api, f, BulkAction::Retry).await
}

/// `/ui/tasks/cancel`: cancels every matching task not yet finished.
pub(super) async fn cancel(State(api): State<Api>, Form(f): Form<BulkForm>) -> Response {
    let by = BulkAction::Cancel {
        by: crate::access::by("an operator (dashboard)"),
    };
    bulk(api, f, by).await
}

/// `/ui/tasks/delete`: deletes every matching task.
pub(super) async fn delete(State(api): State<Api>, Form(f): Form<BulkForm>) -> Response {
    bulk(api, f, BulkAction::Delete).await
}

/// What each action's pages say: (path, title, question, button verb,
/// what was done).
fn words(
    action: &BulkAction,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
) {
    match action {
        BulkAction::Retry => (
            "retry",
            "Retry matching tasks",
            "Enqueue every one of them again into its queue?",
            "Retry",
            "enqueued again",
        ),
        BulkAction::Cancel { .. } => (
            "cancel",
            "Cancel matching tasks",
            "Cancel every one of them (none of them runs again; running ones are stopped)?",
            "Cancel",
            "cancelled",
        ),
        _ => (
            "delete",
            "Delete matching tasks",
            "Delete every one of them? Their records are gone for good.",
            "Delete",
            "deleted",
        ),
    }
}

async fn bulk(api: Api, f: BulkForm, action: BulkAction) -> Response {
    if let Err(refused) = may_act(&api, &f.csrf).await {
        return refused;
    }
    let filter = f.filter;
    let back = format!("/ui/tasks?{}", filter.query());
    let lib_filter = match filter.to_filter() {
        Ok(lf) => lf,
        Err(e) => return error_page(&api, StatusCode::BAD_REQUEST, e),
    };
    let (path, title, question, verb, did) = words(&action);
    let action_kind = path;
    if f.confirmed != "1" {
        let counted = api
            .client
            .bulk_tasks(lib_filter, &action, true, |_, _| {})
            .await;
        let summary = match counted {
            Ok(s) => s,
            Err(e) => return error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        let n = summary.matched.len();
        let shown: Vec<String> = summary.matched.into_iter().take(SHOWN).collect();
        let more = n - shown.len();
        let fields = filter
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        return confirm(
            &api,
            Ask {
                title,
                message: format!("{n} tasks match. {question}"),
                action: format!("/ui/tasks/{path}"),
                button: format!("{verb} {n} tasks"),
                back,
            },
            fields,
            shown,
            more,
        )
        .await;
    }
    let gone = match action_kind {
        "cancel" => "gone or finished meanwhile",
        _ => "gone meanwhile",
    };
    let words = Words {
        title,
        did,
        gone,
        back,
    };
    start(&api, Tasks::Filter(lib_filter), action, words).await
}
