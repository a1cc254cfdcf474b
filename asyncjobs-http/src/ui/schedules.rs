//! The schedules page (`/ui/schedules`) with its forms: add a schedule,
//! delete one. The overview lists the same rows. While no scheduler leads
//! the election, every row is marked unfired (docs/processing.md §2.20).

use super::actions::{act, may_act, Action, Ask};
use super::page::{done, error_page, query, render, short_time};
use crate::Api;
use askama::Template;
use asyncjobs::{ScheduledTask, Task};
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::time::Duration;
use time::OffsetDateTime;

/// One schedule as the pages list it.
pub(super) struct ScheduleRow {
    pub(super) name: String,
    pub(super) schedule: String,
    pub(super) queue: String,
    pub(super) task_type: String,
    pub(super) created: String,
    /// Where it is declared in code (empty: an operator created it).
    pub(super) declared_in: String,
    /// When it fires next (`never` when it does not), and in how long.
    pub(super) next: String,
    /// Paused by an operator.
    pub(super) paused: bool,
}

/// When `s` fires next after `now`, with the wait in words.
fn next_fire(s: &ScheduledTask, now: OffsetDateTime) -> String {
    match s.next_fire(now) {
        Some(at) => {
            let wait = Duration::try_from(at - now).unwrap_or_default();
            let wait = Duration::from_secs(wait.as_secs());
            format!(
                "{} (in {})",
                short_time(&at),
                asyncjobs::format_duration(wait)
            )
        }
        None => "never".into(),
    }
}

/// Every schedule by name; a failure is added to `problems`.
pub(super) async fn schedule_rows(api: &Api, problems: &mut Vec<String>) -> Vec<ScheduleRow> {
    match api.client.scheduled_tasks().await {
        Ok(mut all) => {
            all.sort_by(|a, b| a.name.cmp(&b.name));
            let now = OffsetDateTime::now_utc();
            all.into_iter()
                .map(|s| ScheduleRow {
                    next: next_fire(&s, now),
                    paused: s.paused,
                    created: short_time(&s.created_at),
                    declared_in: s.declared_in.unwrap_or_default(),
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

/// `/ui/schedules`.
pub(super) async fn schedules(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let mut problems = vec![];
    let schedules = schedule_rows(&api, &mut problems).await;
    let leader = api.client.scheduler_leader().await.unwrap_or(None);
    render(
        StatusCode::OK,
        &SchedulesPage {
            read_only: api.read_only(),
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

/// Adds the schedule of the form (400 when it is not valid, 409 when the
/// name is taken).
pub(super) async fn add_schedule(State(api): State<Api>, Form(n): Form<NewSchedule>) -> Response {
    if let Err(refused) = may_act(&api, &n.csrf).await {
        return refused;
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

/// Deletes a schedule, after confirmation.
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

/// Creates a task from a schedule now, after confirmation; the task's page
/// follows.
pub(super) async fn run_schedule(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    let ask = Ask {
        title: "Run schedule now",
        message: format!("Create a task from schedule {name} now? Its timetable is unchanged."),
        action: format!("/ui/schedules/{name}/run"),
        button: "Run now".into(),
        back: "/ui/schedules".into(),
    };
    act(&api, &a, ask, || async {
        match api.client.run_scheduled_task_now(&name).await {
            Ok(task) => Ok((
                format!("/ui/tasks/{}", task.id),
                format!("Task {} created from schedule {name}", task.id),
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Pauses a schedule, after confirmation.
pub(super) async fn pause_schedule(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    set_paused(api, name, a, true).await
}

/// Resumes a paused schedule, after confirmation.
pub(super) async fn resume_schedule(
    State(api): State<Api>,
    Path(name): Path<String>,
    Form(a): Form<Action>,
) -> Response {
    set_paused(api, name, a, false).await
}

async fn set_paused(api: Api, name: String, a: Action, paused: bool) -> Response {
    let (verb, title, message) = if paused {
        (
            "pause",
            "Pause schedule",
            format!("Pause schedule {name}? No task is made from it until it is resumed (a Go scheduler ignores the pause)."),
        )
    } else {
        (
            "resume",
            "Resume schedule",
            format!("Resume schedule {name}? Its next slot makes a task; slots missed while paused are not made up."),
        )
    };
    let ask = Ask {
        title,
        message,
        action: format!("/ui/schedules/{name}/{verb}"),
        button: if paused { "Pause" } else { "Resume" }.into(),
        back: "/ui/schedules".into(),
    };
    act(&api, &a, ask, || async {
        match api.client.pause_scheduled_task(&name, paused).await {
            Ok(_) => Ok((
                "/ui/schedules".into(),
                format!(
                    "Schedule {name} {}",
                    if paused { "paused" } else { "resumed" }
                ),
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}
