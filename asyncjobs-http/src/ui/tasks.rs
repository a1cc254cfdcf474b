//! The tasks page (`/ui/tasks`): tasks a filter matches, a page at a time,
//! the search by id; its bulk form posts to `bulk.rs`.

use super::page::{limit, query, render, short_time, STATES};
use crate::Api;
use askama::Template;
use asyncjobs::{Task, TaskFilter, TaskState};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Tasks a list page shows, and records one page reads at most.
const PAGE: usize = 50;
const PAGE_SCAN: usize = 20_000;

struct TaskRow {
    id: String,
    task_type: String,
    queue: String,
    state: &'static str,
    /// The priority when not 0, the default (shown empty then).
    priority: String,
    /// The flow-control key (empty when none).
    key: String,
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
            priority: match t.priority {
                0 => String::new(),
                p => p.to_string(),
            },
            key: t.key.clone().unwrap_or_default(),
            tries: t.tries,
            max_tries: limit(t.max_tries),
            created: short_time(&t.created),
            last_err: t.last_err.clone(),
        }
    }
}

/// The filter fields of the list page, as given (also the bulk forms'
/// fields: every field is carried through the confirmation page).
#[derive(Default, Clone, serde::Deserialize)]
#[serde(default)]
pub(super) struct Filter {
    pub(super) state: String,
    pub(super) queue: String,
    #[serde(rename = "type")]
    pub(super) task_type: String,
    pub(super) since: String,
    /// A task's id: only its dependants.
    pub(super) depends_on: String,
}

impl Filter {
    fn from_map(q: &BTreeMap<String, String>) -> Filter {
        Filter {
            state: q.get("state").cloned().unwrap_or_default(),
            queue: q.get("queue").cloned().unwrap_or_default(),
            task_type: q.get("type").cloned().unwrap_or_default(),
            since: q.get("since").cloned().unwrap_or_default(),
            depends_on: q.get("depends_on").cloned().unwrap_or_default(),
        }
    }

    /// The library filter, or why a field is wrong.
    pub(super) fn to_filter(&self) -> Result<TaskFilter, String> {
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
        if !self.depends_on.is_empty() {
            f = f.depends_on(self.depends_on.clone());
        }
        Ok(f)
    }

    /// Each field by its form name.
    pub(super) fn pairs(&self) -> [(&'static str, &String); 5] {
        [
            ("state", &self.state),
            ("queue", &self.queue),
            ("type", &self.task_type),
            ("since", &self.since),
            ("depends_on", &self.depends_on),
        ]
    }

    /// The fields given, as a query string.
    pub(super) fn query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
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

/// `/ui/tasks`: one page of the tasks the query's filter matches, from
/// the stream sequence `from`.
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
    render(
        if problem.is_some() && rows.is_empty() && filter.to_filter().is_err() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &TasksPage {
            read_only: api.read_only(),
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

/// The search box: to the task's page, or the list without an id.
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
