//! The task list's actions on a selection (`/ui/tasks/selected/retry`,
//! `/cancel`, `/delete`): the tasks whose boxes are ticked, at most
//! [`MAX`] (`Client::bulk_tasks_by_id`). First a confirmation page that
//! says how many of them the action takes and lists them, then the action
//! in the background and its progress page ([`super::progress`]).

use super::actions::{confirm, may_act, Ask};
use super::page::error_page;
use super::progress::{start, Tasks, Words};
use crate::Api;
use asyncjobs::BulkAction;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

/// Most tasks one selection may hold (a page of the list holds fewer).
pub(super) const MAX: usize = 500;

/// `POST /ui/tasks/selected/{action}` with `id` once per ticked task.
pub(super) async fn act(
    State(api): State<Api>,
    Path(action): Path<String>,
    body: Bytes,
) -> Response {
    let mut csrf = String::new();
    let mut confirmed = false;
    let mut ids: Vec<String> = vec![];
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "csrf" => csrf = v.into_owned(),
            "confirmed" => confirmed = v == "1",
            "id" if !v.is_empty() => ids.push(v.into_owned()),
            _ => {}
        }
    }
    if let Err(refused) = may_act(&api, &csrf).await {
        return refused;
    }
    let (action, title, verb, did) = match action.as_str() {
        "retry" => (
            BulkAction::Retry,
            "Retry selected tasks",
            "Retry",
            "enqueued again",
        ),
        "cancel" => (
            BulkAction::Cancel {
                by: crate::access::by("an operator (dashboard)"),
            },
            "Cancel selected tasks",
            "Cancel",
            "cancelled",
        ),
        "delete" => (
            BulkAction::Delete,
            "Delete selected tasks",
            "Delete",
            "deleted",
        ),
        other => {
            return error_page(
                &api,
                StatusCode::NOT_FOUND,
                format!("no such action {other:?}"),
            )
        }
    };
    if ids.is_empty() {
        return error_page(
            &api,
            StatusCode::BAD_REQUEST,
            "no task is selected: tick the boxes of the tasks first",
        );
    }
    if ids.len() > MAX {
        return error_page(
            &api,
            StatusCode::BAD_REQUEST,
            format!(
                "{} tasks are selected; at most {MAX} can be at once (use the filter's action)",
                ids.len()
            ),
        );
    }
    let path = match action {
        BulkAction::Retry => "retry",
        BulkAction::Cancel { .. } => "cancel",
        _ => "delete",
    };
    if !confirmed {
        let summary = match api.client.bulk_tasks_by_id(&ids, &action, true).await {
            Ok(s) => s,
            Err(e) => return error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        let n = summary.matched.len();
        let left_out = ids.len() - n;
        let mut message = format!("{} selected; the action takes {n} of them.", ids.len());
        if left_out > 0 {
            message.push_str(&format!(
                " {left_out} it does not take (gone, or in a state it leaves alone) stay as they are."
            ));
        }
        let fields = summary
            .matched
            .iter()
            .map(|id| ("id".to_string(), id.clone()))
            .collect();
        return confirm(
            &api,
            Ask {
                title,
                message,
                action: format!("/ui/tasks/selected/{path}"),
                button: format!("{verb} {n} tasks"),
                back: "/ui/tasks".into(),
            },
            fields,
            summary.matched,
            0,
        )
        .await;
    }
    let words = Words {
        title,
        did,
        gone: "gone or finished meanwhile",
        back: "/ui/tasks".into(),
    };
    start(&api, Tasks::Ids(ids), action, words).await
}
