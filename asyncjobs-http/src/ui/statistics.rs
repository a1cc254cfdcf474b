//! The pages of one queue (`/ui/queues/{name}`) and one task type
//! (`/ui/types/{name}`): their last 24 hours from the statistics the
//! cluster keeps (docs/architecture.md §4a), charted, with the figures of
//! each task type of the queue, or of each queue the type ran in.

use super::charts::{self, Breakdown, Chart};
use super::page::{error_page, render};
use crate::Api;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

#[derive(Template)]
#[template(path = "statistics.html")]
struct StatisticsPage {
    read_only: bool,
    /// `Queue` or `Task type`.
    kind: &'static str,
    name: String,
    /// The task list filtered to it.
    tasks_link: String,
    chart: Chart,
    chart_width: usize,
    chart_height: usize,
    /// `Task type` or `Queue`: what each row of `rows` is.
    row_kind: &'static str,
    /// Each row's name and the link it takes to.
    rows: Vec<(Breakdown, String)>,
    problems: Vec<String>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `/ui/queues/{name}`: 404 for a queue that does not exist.
pub(super) async fn queue(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.client.queue_info(&name).await {
        Ok(_) => {}
        Err(asyncjobs::Error::QueueNotFound(_)) => {
            return error_page(&api, StatusCode::NOT_FOUND, format!("No queue {name}."))
        }
        Err(e) => return error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
    let now = now();
    let since = charts::since(now);
    let mut problems = vec![];
    let records = crate::stats::read(&api.client.jetstream(), &name, since)
        .await
        .unwrap_or_else(|e| {
            problems.push(format!("statistics of {name}: {e}"));
            vec![]
        });
    let rows = charts::by_type(&records)
        .into_iter()
        .map(|b| {
            let link = format!("/ui/types/{}", encode(&b.name));
            (b, link)
        })
        .collect();
    render(
        StatusCode::OK,
        &StatisticsPage {
            read_only: api.read_only(),
            kind: "Queue",
            tasks_link: format!("/ui/tasks?queue={}", encode(&name)),
            chart: charts::chart(&name, &records, since, now, None),
            name,
            chart_width: charts::WIDTH,
            chart_height: charts::HEIGHT,
            row_kind: "Task type",
            rows,
            problems,
        },
    )
}

/// `/ui/types/{name}`: every queue's records, counting task type `name`
/// only; a type no record names shows empty (it may not have run in the
/// last 24 hours).
pub(super) async fn task_type(State(api): State<Api>, Path(name): Path<String>) -> Response {
    let now = now();
    let since = charts::since(now);
    let mut problems = vec![];
    let queues = api.client.queue_names().await.unwrap_or_else(|e| {
        problems.push(format!("listing queues: {e}"));
        vec![]
    });
    let mut all = vec![];
    let mut rows = vec![];
    for queue in queues {
        match crate::stats::read(&api.client.jetstream(), &queue, since).await {
            Ok(records) => {
                let b = charts::of_type(&queue, &records, &name);
                if b.completed + b.failed + b.retried + b.runs > 0 {
                    rows.push((b, format!("/ui/queues/{}", encode(&queue))));
                }
                all.extend(records);
            }
            Err(e) => problems.push(format!("statistics of {queue}: {e}")),
        }
    }
    all.sort_by_key(|r| r.start);
    render(
        StatusCode::OK,
        &StatisticsPage {
            read_only: api.read_only(),
            kind: "Task type",
            tasks_link: format!("/ui/tasks?type={}", encode(&name)),
            chart: charts::chart(&name, &all, since, now, Some(&name)),
            name,
            chart_width: charts::WIDTH,
            chart_height: charts::HEIGHT,
            row_kind: "Queue",
            rows,
            problems,
        },
    )
}
