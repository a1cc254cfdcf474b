//! The task page (`/ui/tasks/{id}`): one task's record, payload, result
//! and signature, with its cancel, retry and delete forms.

use super::actions::{act, Action, Ask};
use super::page::{error_page, limit, query, render};
use crate::Api;
use askama::Template;
use asyncjobs::wire::format_time;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    read_only: bool,
    csrf: String,
    notice: Option<String>,
    id: String,
    task_type: String,
    queue: String,
    state: &'static str,
    /// Final: no cancel form.
    finished: bool,
    /// 0 (the default) to 9, higher first.
    priority: u8,
    /// Its flow-control key, when it has one.
    key: Option<String>,
    /// The handler's last progress report: percent, message, when.
    progress: Option<(u8, String, String)>,
    tries: i64,
    max_tries: String,
    created: String,
    tried: Option<String>,
    deadline: Option<String>,
    due: Option<String>,
    last_err: String,
    payload_kind: &'static str,
    payload: String,
    result: Option<String>,
    completed: Option<String>,
    dependencies: Vec<(String, String)>,
    load_dependencies: bool,
    /// The batch it belongs to (empty: none), and whether it is the
    /// batch's callback (it waits for every member, whatever their outcome).
    batch: String,
    callback: bool,
    signature: &'static str,
    /// Why the task may wait for good: no running worker serves its queue
    /// or handles its type ([`asyncjobs::Serving`]); only for a waiting task.
    unserved: Option<String>,
    /// Its stored state changes (time, state, tries, worker, error), `None` when
    /// the server keeps no history.
    history: Option<Vec<HistoryRow>>,
    dependants: Dependants,
}

/// One stored state change, as shown.
struct HistoryRow {
    at: String,
    state: String,
    tries: i64,
    /// `host:pid`, empty when no asyncjobs worker made the change.
    worker: String,
    error: String,
}

/// Tasks stored after it that depend on it, each with its state.
struct Dependants {
    found: Vec<(String, &'static str)>,
    /// Where the search stopped short (more records to read, or more
    /// found than shown): the task list of its dependants.
    more: Option<String>,
    problem: Option<String>,
}

/// Dependants shown on a task's page.
const DEPENDANTS_SHOWN: usize = 50;
/// Records read to find them.
const DEPENDANTS_SCAN: usize = 20_000;
/// How long before the task's creation (by its creator's clock) the search
/// starts, for clocks that disagree with the server's.
const DEPENDANTS_MARGIN: time::Duration = time::Duration::minutes(5);

/// The tasks depending on `t`: every dependant is created after it, so its
/// record was stored since (docs/storage.md §3.2: a record is rewritten,
/// never moved back), and the search starts there rather than at the
/// store's beginning.
async fn dependants(api: &Api, t: &asyncjobs::Task) -> Dependants {
    let filter = asyncjobs::TaskFilter::new()
        .depends_on(t.id.clone())
        .limit(DEPENDANTS_SHOWN + 1);
    let since = t.created - DEPENDANTS_MARGIN;
    let all = format!(
        "/ui/tasks?depends_on={}",
        form_urlencoded::byte_serialize(t.id.as_bytes()).collect::<String>()
    );
    match api
        .client
        .page_tasks_since(since, &filter, DEPENDANTS_SCAN)
        .await
    {
        Ok((mut tasks, next)) => {
            let cut = tasks.len() > DEPENDANTS_SHOWN;
            tasks.truncate(DEPENDANTS_SHOWN);
            Dependants {
                found: tasks
                    .iter()
                    .map(|d| (d.id.clone(), d.state.as_str()))
                    .collect(),
                more: (cut || next.is_some()).then_some(all),
                problem: None,
            }
        }
        Err(e) => Dependants {
            found: vec![],
            more: Some(all),
            problem: Some(format!("finding its dependants: {e}")),
        },
    }
}

/// Pretty JSON, or the bytes as text when they are UTF-8, or hex.
fn show_bytes(bytes: Option<&[u8]>) -> (&'static str, String) {
    let Some(b) = bytes else {
        return ("none", String::new());
    };
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
        return ("JSON", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    match std::str::from_utf8(b) {
        Ok(s) => ("text", s.to_string()),
        Err(_) => (
            "bytes",
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .chunks(32)
                .map(|c| c.join(" "))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

/// `/ui/tasks/{id}`: the record as stored (unverified), with whether
/// its signature verifies.
pub(super) async fn task(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query(raw.as_deref());
    let t = match api.client.load_task_unverified(&id).await {
        Ok(t) => t,
        Err(asyncjobs::Error::TaskNotFound(_)) => {
            return error_page(&api, StatusCode::NOT_FOUND, format!("no task {id}"))
        }
        Err(e) => return error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let (payload_kind, payload) = show_bytes(t.payload.as_deref());
    let signature = if t.signature.is_empty() {
        "unsigned"
    } else {
        match api.client.load_task(&id).await {
            Ok(_) => "signed, verified",
            Err(asyncjobs::Error::Signature(_)) => "signed, does NOT verify",
            Err(_) => "signed (not verified: this server has no verification key)",
        }
    };
    let dependencies = t
        .dependencies
        .iter()
        .map(|d| {
            let state = match t.dependency_results.get(d) {
                Some(Some(_)) => "complete",
                _ => "",
            };
            (d.clone(), state.to_string())
        })
        .collect();
    let unserved = if matches!(
        t.state,
        asyncjobs::TaskState::New | asyncjobs::TaskState::Retry
    ) {
        let check = api.client.serving(&t.queue, Some(&t.task_type));
        match tokio::time::timeout(std::time::Duration::from_secs(2), check).await {
            Ok(Ok(s)) => s.warning(),
            _ => None,
        }
    } else {
        None
    };
    let dependants = dependants(&api, &t).await;
    let history = match crate::history::of_task(&api.client.jetstream(), &t.id).await {
        Ok(h) => h.map(|changes| {
            changes
                .into_iter()
                .map(|c| HistoryRow {
                    at: format_time(&c.at),
                    state: c.state,
                    tries: c.tries,
                    worker: c.worker.unwrap_or_default(),
                    error: c.last_error,
                })
                .collect()
        }),
        Err(e) => {
            tracing::warn!(task = %t.id, error = %e, "reading the task's history failed");
            None
        }
    };
    render(
        StatusCode::OK,
        &TaskPage {
            read_only: api.read_only(),
            csrf: api.csrf().await,
            notice: q.get("notice").cloned(),
            id: t.id.clone(),
            task_type: t.task_type.clone(),
            queue: t.queue.clone(),
            state: t.state.as_str(),
            finished: t.state.is_final(),
            priority: t.priority,
            key: t.key.clone(),
            progress: t
                .progress
                .as_ref()
                .map(|p| (p.percent, p.message.clone(), format_time(&p.at))),
            tries: t.tries,
            max_tries: limit(t.max_tries),
            created: format_time(&t.created),
            tried: t.tried.as_ref().map(format_time),
            deadline: t.deadline.as_ref().map(format_time),
            due: t.run_at.as_ref().map(format_time),
            last_err: t.last_err.clone(),
            payload_kind,
            payload,
            result: t.result.as_ref().map(|r| {
                serde_json::from_str::<serde_json::Value>(r.payload.get())
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| r.payload.get().to_string())
            }),
            completed: t.result.as_ref().map(|r| format_time(&r.completed)),
            dependencies,
            load_dependencies: t.load_dependencies,
            batch: t.batch.clone(),
            callback: t.dependencies_any_outcome,
            signature,
            unserved,
            history,
            dependants,
        },
    )
}

/// Enqueues the task again into its queue, after confirmation.
pub(super) async fn retry(
    State(api): State<Api>,
    Path(id): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    let back = format!("/ui/tasks/{id}");
    let ask = Ask {
        title: "Retry task",
        message: format!("Enqueue task {id} again into its queue?"),
        action: format!("/ui/tasks/{id}/retry"),
        button: "Retry".into(),
        back: back.clone(),
    };
    act(&api, &a, ask, || async {
        match api.client.replay_task(&id).await {
            Ok(_) => Ok((back, "Task enqueued again".into())),
            Err(e) => Err(format!("retrying {id}: {e}")),
        }
    })
    .await
}

/// Cancels the task (a waiting one never runs, a running one is stopped),
/// after confirmation; `last_err` names the dashboard.
pub(super) async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    let back = format!("/ui/tasks/{id}");
    let ask = Ask {
        title: "Cancel task",
        message: format!(
            "Cancel task {id}? A waiting task will not run; a running one is stopped. It ends terminated."
        ),
        action: format!("/ui/tasks/{id}/cancel"),
        button: "Cancel task".into(),
        back: back.clone(),
    };
    act(&api, &a, ask, || async {
        match api
            .client
            .cancel_task(&id, &crate::access::by("the dashboard"))
            .await
        {
            Ok(asyncjobs::Cancelled::AlreadyFinished(t)) => Err(format!(
                "task {id} had already finished ({}): nothing was changed",
                t.state
            )),
            Ok(asyncjobs::Cancelled::Running(_)) => Ok((
                back,
                "Task cancelled: its worker stops the running handler".into(),
            )),
            Ok(_) => Ok((back, "Task cancelled: it will not run".into())),
            Err(e) => Err(format!("cancelling {id}: {e}")),
        }
    })
    .await
}

/// Deletes the task's record, after confirmation.
pub(super) async fn delete(
    State(api): State<Api>,
    Path(id): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    let ask = Ask {
        title: "Delete task",
        message: format!("Delete task {id}? Its record is removed for good."),
        action: format!("/ui/tasks/{id}/delete"),
        button: "Delete".into(),
        back: format!("/ui/tasks/{id}"),
    };
    act(&api, &a, ask, || async {
        match api.client.delete_task(&id).await {
            Ok(()) => Ok(("/ui/tasks".into(), format!("Task {id} deleted"))),
            Err(e) => Err(format!("deleting {id}: {e}")),
        }
    })
    .await
}
