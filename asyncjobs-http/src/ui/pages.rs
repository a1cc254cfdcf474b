//! The dashboard's pages and actions.

use super::{may_act, page};
use crate::Api;
use askama::Template;
use asyncjobs::wire::format_time;
use asyncjobs::{QueueUpdate, ScheduledTask, Task, TaskFilter, TaskState};
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Tasks a list page shows, and records one page reads at most.
const PAGE: usize = 50;
const PAGE_SCAN: usize = 20_000;
/// Records the overview's state counts read at most.
const COUNT_SCAN: usize = 200_000;

const STATES: [&str; 9] = [
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

fn short_time(t: &OffsetDateTime) -> String {
    let s = format_time(t);
    // seconds are enough on a page; the full time is in the title attribute
    match (s.find('.'), s.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &s[..dot]),
        _ => s,
    }
}

fn human(d: Duration) -> String {
    if d.is_zero() {
        "unlimited".into()
    } else {
        asyncjobs::format_duration(d)
    }
}

fn limit(n: i64) -> String {
    if n <= 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

pub(super) fn error_page(api: &Api, status: StatusCode, message: impl Into<String>) -> Response {
    page(
        status,
        &MessagePage {
            read_only: api.options.read_only,
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            message: message.into(),
            back: "/ui/".into(),
        },
    )
}

fn refused(api: &Api, (status, why): (StatusCode, &'static str)) -> Response {
    error_page(api, status, why)
}

/// Back to `to` with a notice shown at the top of the page.
fn done(to: &str, notice: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    let notice: String = form_urlencoded::byte_serialize(notice.as_bytes()).collect();
    Redirect::to(&format!("{to}{sep}notice={notice}")).into_response()
}

// ---------------------------------------------------------------- overview

struct QueueRow {
    name: String,
    depth: u64,
    in_flight: u64,
    pending: u64,
    redelivered: u64,
    max_age: String,
    max_tries: String,
    max_run_time: String,
    max_concurrent: i64,
    max_entries: String,
    discard_old: bool,
    has_consumer: bool,
}

struct WorkerRow {
    id: String,
    queue: String,
    host: String,
    pid: u32,
    started: String,
    seen: String,
    concurrency: usize,
    task_types: String,
}

struct ScheduleRow {
    name: String,
    schedule: String,
    queue: String,
    task_type: String,
    created: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    read_only: bool,
    csrf: String,
    notice: Option<String>,
    queues: Vec<QueueRow>,
    states: Vec<(&'static str, u64)>,
    counted: u64,
    complete_count: bool,
    workers: Vec<WorkerRow>,
    leader: Option<String>,
    schedules: Vec<ScheduleRow>,
    problems: Vec<String>,
}

pub(super) async fn overview(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let mut problems = vec![];
    let mut queues = vec![];
    match api.client.queue_names().await {
        Ok(mut names) => {
            names.sort();
            for name in names {
                match api.client.queue_info(&name).await {
                    Ok(i) => queues.push(QueueRow {
                        name: i.queue.name.clone(),
                        depth: i.stream.messages,
                        in_flight: i.ack_pending,
                        pending: i.pending,
                        redelivered: i.redelivered,
                        max_age: human(i.queue.max_age),
                        max_tries: limit(i.queue.max_tries),
                        max_run_time: human(i.queue.max_run_time),
                        max_concurrent: i.queue.max_concurrent,
                        max_entries: limit(i.queue.max_entries),
                        discard_old: i.queue.discard_old,
                        has_consumer: i.has_consumer,
                    }),
                    Err(e) => problems.push(format!("queue {name}: {e}")),
                }
            }
        }
        Err(e) => problems.push(format!("listing queues: {e}")),
    }
    let mut counts: BTreeMap<&'static str, u64> = STATES.iter().map(|s| (*s, 0)).collect();
    let mut counted = 0u64;
    let mut complete_count = true;
    // counting reads the store: one listing at a time, as the API's
    let listing = api.listing.clone().try_acquire_owned();
    if listing.is_err() {
        problems.push("a task listing is in progress: the counts by state are left out".into());
        complete_count = false;
    }
    let counting = async {
        if listing.is_err() {
            return Err(asyncjobs::Error::NoTasks);
        }
        api.client.list_tasks(COUNT_SCAN).await
    };
    match counting.await {
        Err(asyncjobs::Error::NoTasks) => {}
        Ok(mut all) => {
            while let Some(t) = all.next().await {
                if let Ok(t) = t {
                    if let Some(c) = counts.get_mut(t.state.as_str()) {
                        *c += 1;
                    }
                }
                counted += 1;
            }
            if counted as usize >= COUNT_SCAN {
                complete_count = false;
            }
        }
        Err(e) => problems.push(format!("counting tasks: {e}")),
    }
    let states = STATES.iter().map(|s| (*s, counts[s])).collect();
    let workers = match api.client.workers().await {
        Ok(w) => w
            .into_iter()
            .map(|w| WorkerRow {
                id: w.id,
                queue: w.queue,
                host: w.host,
                pid: w.pid,
                started: short_time(&w.started),
                seen: short_time(&w.seen),
                concurrency: w.concurrency,
                task_types: w.task_types.join(", "),
            })
            .collect(),
        Err(e) => {
            problems.push(format!("listing workers: {e}"));
            vec![]
        }
    };
    let leader = api.client.scheduler_leader().await.unwrap_or_else(|e| {
        problems.push(format!("reading the scheduler leader: {e}"));
        None
    });
    let schedules = schedule_rows(&api, &mut problems).await;
    page(
        StatusCode::OK,
        &Overview {
            read_only: api.options.read_only,
            csrf: api.csrf().await,
            notice: q.get("notice").cloned(),
            queues,
            states,
            counted,
            complete_count,
            workers,
            leader,
            schedules,
            problems,
        },
    )
}

async fn schedule_rows(api: &Api, problems: &mut Vec<String>) -> Vec<ScheduleRow> {
    match api.client.scheduled_tasks().await {
        Ok(mut all) => {
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all.into_iter()
                .map(|s| ScheduleRow {
                    created: short_time(&s.created_at),
                    name: s.name,
                    schedule: s.schedule,
                    queue: s.queue,
                    task_type: s.task_type,
                })
                .collect()
        }
        Err(e) => {
            problems.push(format!("listing schedules: {e}"));
            vec![]
        }
    }
}

// ------------------------------------------------------------------- tasks

struct TaskRow {
    id: String,
    task_type: String,
    queue: String,
    state: &'static str,
    tries: i64,
    max_tries: String,
    created: String,
    last_err: String,
}

impl From<&Task> for TaskRow {
    fn from(t: &Task) -> Self {
        TaskRow {
            id: t.id.clone(),
            task_type: t.task_type.clone(),
            queue: t.queue.clone(),
            state: t.state.as_str(),
            tries: t.tries,
            max_tries: limit(t.max_tries),
            created: short_time(&t.created),
            last_err: t.last_err.clone(),
        }
    }
}

/// The filter fields of the list page, as given.
#[derive(Default, Clone)]
struct Filter {
    state: String,
    queue: String,
    task_type: String,
    since: String,
}

impl Filter {
    fn from_map(q: &BTreeMap<String, String>) -> Filter {
        Filter {
            state: q.get("state").cloned().unwrap_or_default(),
            queue: q.get("queue").cloned().unwrap_or_default(),
            task_type: q.get("type").cloned().unwrap_or_default(),
            since: q.get("since").cloned().unwrap_or_default(),
        }
    }

    /// The library filter, or why a field is wrong.
    fn to_filter(&self) -> Result<TaskFilter, String> {
        let mut f = TaskFilter::new();
        if !self.state.is_empty() {
            let s = TaskState::from_name(&self.state)
                .filter(|s| *s != TaskState::Unknown)
                .ok_or_else(|| format!("unknown state {:?}", self.state))?;
            f = f.state(s);
        }
        if !self.queue.is_empty() {
            f = f.queue(self.queue.clone());
        }
        if !self.task_type.is_empty() {
            f = f.task_type(self.task_type.clone());
        }
        if !self.since.is_empty() {
            f = f.created_since(parse_since(&self.since)?);
        }
        Ok(f)
    }

    fn query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("state", &self.state),
            ("queue", &self.queue),
            ("type", &self.task_type),
            ("since", &self.since),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

/// RFC 3339, `YYYY-MM-DDTHH:MM` (a browser's datetime-local, UTC) or a date.
fn parse_since(v: &str) -> Result<OffsetDateTime, String> {
    asyncjobs::wire::parse_time_bound(v)
        .ok_or_else(|| format!("created since {v:?}: expected a time like 2026-12-03T06:00 (UTC)"))
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    read_only: bool,
    csrf: String,
    notice: Option<String>,
    filter: Filter,
    states: [&'static str; 9],
    rows: Vec<TaskRow>,
    next: Option<String>,
    first_page: bool,
    problem: Option<String>,
}

pub(super) async fn tasks(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let filter = Filter::from_map(&q);
    let from: u64 = q.get("from").and_then(|f| f.parse().ok()).unwrap_or(1);
    let mut problem = None;
    let (mut rows, mut next) = (vec![], None);
    match filter.to_filter() {
        Ok(f) => match api.client.page_tasks(from, &f.limit(PAGE), PAGE_SCAN).await {
            Ok((tasks, after)) => {
                rows = tasks.iter().map(TaskRow::from).collect();
                next = after.map(|seq| {
                    let q = filter.query();
                    let sep = if q.is_empty() { "" } else { "&" };
                    format!("/ui/tasks?{q}{sep}from={seq}")
                });
            }
            Err(e) => problem = Some(format!("reading tasks: {e}")),
        },
        Err(e) => problem = Some(e),
    }
    page(
        if problem.is_some() && rows.is_empty() && filter.to_filter().is_err() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &TasksPage {
            read_only: api.options.read_only,
            csrf: api.csrf().await,
            notice: q.get("notice").cloned(),
            filter,
            states: STATES,
            rows,
            next,
            first_page: from <= 1,
            problem,
        },
    )
}

pub(super) async fn search(RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    match q.get("id").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(id) => {
            let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            Redirect::to(&format!("/ui/tasks/{id}")).into_response()
        }
        None => Redirect::to("/ui/tasks").into_response(),
    }
}

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
    signature: &'static str,
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
    page(
        StatusCode::OK,
        &TaskPage {
            read_only: api.options.read_only,
            csrf: api.csrf().await,
            notice: q.get("notice").cloned(),
            id: t.id.clone(),
            task_type: t.task_type.clone(),
            queue: t.queue.clone(),
            state: t.state.as_str(),
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
            signature,
        },
    )
}

// ----------------------------------------------------------------- actions

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

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    read_only: bool,
    title: String,
    message: String,
    back: String,
}

/// Fields every action form sends.
#[derive(Deserialize)]
pub(super) struct Action {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirmed: String,
}

/// What a confirmation page asks.
struct Ask {
    title: &'static str,
    message: String,
    /// Where the confirmed form posts.
    action: String,
    button: String,
    back: String,
}

async fn confirm(
    api: &Api,
    ask: Ask,
    fields: Vec<(String, String)>,
    items: Vec<String>,
    more: usize,
) -> Response {
    page(
        StatusCode::OK,
        &Confirm {
            read_only: api.options.read_only,
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
async fn act<F, Fut>(api: &Api, a: &Action, ask: Ask, op: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(String, String), String>>,
{
    if let Err(e) = may_act(api, &a.csrf).await {
        return refused(api, e);
    }
    if a.confirmed != "1" {
        return confirm(api, ask, vec![], vec![], 0).await;
    }
    match op().await {
        Ok((to, notice)) => done(&to, &notice),
        Err(e) => error_page(api, StatusCode::CONFLICT, e),
    }
}

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

/// The filter of a bulk retry form.
#[derive(Deserialize)]
pub(super) struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirmed: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    queue: String,
    #[serde(default, rename = "type")]
    task_type: String,
    #[serde(default)]
    since: String,
}

pub(super) async fn bulk_retry(State(api): State<Api>, Form(f): Form<BulkForm>) -> Response {
    if let Err(e) = may_act(&api, &f.csrf).await {
        return refused(&api, e);
    }
    let filter = Filter {
        state: f.state,
        queue: f.queue,
        task_type: f.task_type,
        since: f.since,
    };
    let back = format!("/ui/tasks?{}", filter.query());
    let lib_filter = match filter.to_filter() {
        Ok(lf) => lf,
        Err(e) => return error_page(&api, StatusCode::BAD_REQUEST, e),
    };
    if f.confirmed != "1" {
        let summary = match api.client.replay_tasks(lib_filter, true, |_, _| {}).await {
            Ok(s) => s,
            Err(e) => return error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        let n = summary.matched.len();
        let shown: Vec<String> = summary.matched.into_iter().take(100).collect();
        let more = n - shown.len();
        let fields = vec![
            ("state".to_string(), filter.state.clone()),
            ("queue".to_string(), filter.queue.clone()),
            ("type".to_string(), filter.task_type.clone()),
            ("since".to_string(), filter.since.clone()),
        ];
        return confirm(
            &api,
            Ask {
                title: "Retry matching tasks",
                message: format!(
                    "{n} tasks match. Enqueue every one of them again into its queue?"
                ),
                action: "/ui/tasks/retry".into(),
                button: format!("Retry {n} tasks"),
                back,
            },
            fields,
            shown,
            more,
        )
        .await;
    }
    // to the end even when the browser goes away or the write timeout
    // drops the request
    let client = api.client.clone();
    let replayed =
        tokio::spawn(async move { client.replay_tasks(lib_filter, false, |_, _| {}).await })
            .await
            .unwrap_or_else(|e| Err(asyncjobs::Error::Config(format!("the replay failed: {e}"))));
    match replayed {
        Ok(s) => {
            let mut notice = format!("{} tasks enqueued again", s.replayed.len());
            if !s.skipped.is_empty() {
                notice.push_str(&format!(", {} gone meanwhile", s.skipped.len()));
            }
            if !s.failed.is_empty() {
                notice.push_str(&format!(
                    ", {} failed ({}: {})",
                    s.failed.len(),
                    s.failed[0].0,
                    s.failed[0].1
                ));
            }
            done(&back, &notice)
        }
        Err(e) => error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

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
}

pub(super) async fn configure(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(c): Form<Configure>,
) -> Response {
    if let Err(e) = may_act(&api, &c.csrf).await {
        return refused(&api, e);
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

// --------------------------------------------------------------- schedules

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    read_only: bool,
    csrf: String,
    notice: Option<String>,
    leader: Option<String>,
    schedules: Vec<ScheduleRow>,
    problems: Vec<String>,
}

pub(super) async fn schedules(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let mut problems = vec![];
    let schedules = schedule_rows(&api, &mut problems).await;
    let leader = api.client.scheduler_leader().await.unwrap_or(None);
    page(
        StatusCode::OK,
        &SchedulesPage {
            read_only: api.options.read_only,
            csrf: api.csrf().await,
            notice: q.get("notice").cloned(),
            leader,
            schedules,
            problems,
        },
    )
}

/// A new schedule.
#[derive(Deserialize)]
pub(super) struct NewSchedule {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    task_type: String,
    #[serde(default)]
    payload: String,
}

pub(super) async fn add_schedule(State(api): State<Api>, Form(n): Form<NewSchedule>) -> Response {
    if let Err(e) = may_act(&api, &n.csrf).await {
        return refused(&api, e);
    }
    let mut template = Task::builder(n.task_type.trim());
    if !n.payload.trim().is_empty() {
        template = template.raw_payload(n.payload.trim().as_bytes().to_vec());
    }
    let made = match template.build() {
        Ok(t) => ScheduledTask::new(n.name.trim(), n.schedule.trim(), n.queue.trim(), &t)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let schedule = match made {
        Ok(s) => s,
        Err(e) => return error_page(&api, StatusCode::BAD_REQUEST, e),
    };
    match api.client.create_scheduled_task(&schedule).await {
        Ok(()) => done(
            "/ui/schedules",
            &format!("Schedule {} added", schedule.name),
        ),
        Err(e) => error_page(&api, StatusCode::CONFLICT, e.to_string()),
    }
}

pub(super) async fn delete_schedule(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    let ask = Ask {
        title: "Delete schedule",
        message: format!("Delete schedule {name}? No more tasks will be made from it."),
        action: format!("/ui/schedules/{name}/delete"),
        button: "Delete".into(),
        back: "/ui/schedules".into(),
    };
    act(&api, &a, ask, || async {
        match api.client.delete_scheduled_task(&name).await {
            Ok(()) => Ok(("/ui/schedules".into(), format!("Schedule {name} deleted"))),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}
