//! A confirmed bulk action (by filter, [`super::bulk`], or on a selection,
//! [`super::selected`]) run in the background, and its progress page
//! `/ui/bulk/{job}`: the action, tasks done of the total, then the summary.
//!
//! The progress is kept in the KV bucket [`BUCKET`] (docs/storage.md §5.6)
//! so any replica behind a load balancer shows it: written when the action
//! starts, every [`WRITE_EVERY`] and every [`WRITE_TASKS`] tasks (at most
//! every [`WRITE_GAP`]) while it runs and when it ends; a record
//! still running but not written for [`STALE`] shows as interrupted (its
//! replica stopped). Records go [`KEEP`] after their last write. Without
//! the bucket (a server too old for the client's key-value API) the action
//! runs inside the request as it did before and the list shows the summary.

use super::page::{done, error_page, render};
use crate::Api;
use askama::Template;
use async_nats::jetstream::kv;
use asyncjobs::{BulkAction, BulkSummary, TaskFilter};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The bucket holding one record per bulk action (key: the job id).
pub(crate) const BUCKET: &str = "CHORIA_AJ_HTTP_BULK";
/// How long a record is kept after its last write (the bucket's max age).
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How often a running action's record is written (also while it lists).
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// A running record is also written after this many more tasks handled,
/// though not sooner than [`WRITE_GAP`] after the last write.
const WRITE_TASKS: usize = 100;
/// The least time between two writes of a running record.
const WRITE_GAP: Duration = Duration::from_millis(250);
/// A running record not written for this long shows as interrupted.
const STALE: Duration = Duration::from_secs(30);

/// The tasks an action takes.
pub(super) enum Tasks {
    /// Every task a filter matches (`Client::bulk_tasks`).
    Filter(TaskFilter),
    /// The ids of a selection (`Client::bulk_tasks_by_id_with_progress`).
    Ids(Vec<String>),
}

/// What the pages say of an action.
pub(super) struct Words {
    /// The page's title ("Cancel matching tasks").
    pub title: &'static str,
    /// What was done to each task ("cancelled").
    pub did: &'static str,
    /// What a task the action skipped is ("gone meanwhile").
    pub gone: &'static str,
    /// Where the pages lead back to (the task list).
    pub back: String,
}

/// One bulk action's record in [`BUCKET`] (JSON).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Record {
    pub title: String,
    pub did: String,
    pub gone: String,
    pub back: String,
    /// `running`, `finished` or `failed` (interrupted is read: a running
    /// record older than [`STALE`]).
    pub state: String,
    /// Tasks handled so far (done, skipped or failed).
    pub handled: usize,
    /// Tasks the action takes; `None` while they are being listed.
    pub total: Option<usize>,
    /// When finished: tasks done, skipped, failed and the first failure.
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub first_failure: Option<(String, String)>,
    /// Why the action failed as a whole (listing the store failed).
    pub error: Option<String>,
    /// The replica running it (its host name).
    pub replica: String,
    /// Unix milliseconds of the start and of the last write.
    pub started: i64,
    pub updated: i64,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The summary line the pages show ("4 tasks cancelled, 1 gone meanwhile").
fn notice(
    w: (&str, &str),
    done: usize,
    skipped: usize,
    failed: usize,
    first: Option<&(String, String)>,
) -> String {
    let (did, gone) = w;
    let mut notice = format!("{done} tasks {did}");
    if skipped > 0 {
        notice.push_str(&format!(", {skipped} {gone}"));
    }
    if let Some((id, why)) = first.filter(|_| failed > 0) {
        notice.push_str(&format!(", {failed} failed ({id}: {why})"));
    }
    notice
}

/// The bucket, created when missing.
async fn open(api: &Api) -> Result<kv::Store, String> {
    if !api.client.capabilities().presence {
        return Err("the server is too old for key-value buckets".into());
    }
    let js = api.client.jetstream();
    match js.get_key_value(BUCKET).await {
        Ok(s) => Ok(s),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: BUCKET.into(),
                description: "asyncjobs dashboard: progress of bulk actions".into(),
                history: 1,
                max_age: KEEP,
                num_replicas: api.options.replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string()),
    }
}

async fn put(store: &kv::Store, job: &str, r: &Record) -> bool {
    let body = serde_json::to_vec(r).unwrap_or_default();
    store.put(job, body.into()).await.is_ok()
}

/// Runs `action` on `tasks` in the background and answers with a redirect
/// (303) to its progress page; inside the request when the bucket cannot
/// be used.
pub(super) async fn start(api: &Api, tasks: Tasks, action: BulkAction, w: Words) -> Response {
    let store = match open(api).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("bulk action progress cannot be kept in {BUCKET} ({e}); running it inside the request");
            return inline(api, tasks, action, w).await;
        }
    };
    let job: String = rand::random::<[u8; 8]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = now_ms();
    let mut rec = Record {
        title: w.title.into(),
        did: w.did.into(),
        gone: w.gone.into(),
        back: w.back,
        state: "running".into(),
        handled: 0,
        total: None,
        done: 0,
        skipped: 0,
        failed: 0,
        first_failure: None,
        error: None,
        replica: crate::replica().into(),
        started: now,
        updated: now,
    };
    if !put(&store, &job, &rec).await {
        return error_page(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot record the bulk action in {BUCKET}"),
        );
    }
    let client = api.client.clone();
    let key = job.clone();
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::watch::channel((0usize, None::<usize>));
        let report = move |n: usize, of: usize| {
            tx.send_replace((n, Some(of)));
        };
        let work = async {
            match tasks {
                Tasks::Filter(f) => client.bulk_tasks(f, &action, false, report).await,
                Tasks::Ids(ids) => {
                    client
                        .bulk_tasks_by_id_with_progress(&ids, &action, false, report)
                        .await
                }
            }
        };
        tokio::pin!(work);
        let mut tick = tokio::time::interval(WRITE_EVERY);
        tick.tick().await;
        let mut written = std::time::Instant::now();
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tick.tick() => {}
                Ok(()) = rx.changed() => {
                    let n = rx.borrow_and_update().0;
                    if n < rec.handled + WRITE_TASKS || written.elapsed() < WRITE_GAP {
                        continue;
                    }
                }
            }
            (rec.handled, rec.total) = *rx.borrow();
            rec.updated = now_ms();
            put(&store, &key, &rec).await;
            written = std::time::Instant::now();
        };
        finish(&mut rec, result);
        // the last write matters most: a few tries before the record is
        // left to show as interrupted
        for _ in 0..5 {
            rec.updated = now_ms();
            if put(&store, &key, &rec).await {
                return;
            }
            tokio::time::sleep(WRITE_EVERY).await;
        }
        tracing::warn!("cannot record the end of bulk action {key} in {BUCKET}");
    });
    Redirect::to(&format!("/ui/bulk/{job}")).into_response()
}

/// Files the outcome in `rec`.
fn finish(rec: &mut Record, result: asyncjobs::Result<BulkSummary>) {
    match result {
        Ok(s) => {
            rec.state = "finished".into();
            rec.total = Some(s.matched.len());
            rec.handled = s.matched.len();
            rec.done = s.done.len();
            rec.skipped = s.skipped.len();
            rec.failed = s.failed.len();
            rec.first_failure = s.failed.into_iter().next();
        }
        Err(e) => {
            rec.state = "failed".into();
            rec.error = Some(e.to_string());
        }
    }
}

/// The action inside the request (carried to the end even when the
/// browser goes away), then back to the list with the summary.
async fn inline(api: &Api, tasks: Tasks, action: BulkAction, w: Words) -> Response {
    let client = api.client.clone();
    let acted = tokio::spawn(async move {
        match tasks {
            Tasks::Filter(f) => client.bulk_tasks(f, &action, false, |_, _| {}).await,
            Tasks::Ids(ids) => client.bulk_tasks_by_id(&ids, &action, false).await,
        }
    })
    .await
    .unwrap_or_else(|e| Err(asyncjobs::Error::Config(format!("the action failed: {e}"))));
    match acted {
        Ok(s) => done(
            &w.back,
            &notice(
                (w.did, w.gone),
                s.done.len(),
                s.skipped.len(),
                s.failed.len(),
                s.failed.first(),
            ),
        ),
        Err(e) => error_page(api, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The progress page.
#[derive(Template)]
#[template(path = "bulk.html")]
struct Progress {
    read_only: bool,
    title: String,
    /// `running`, `finished`, `failed` or `interrupted`.
    state: String,
    handled: usize,
    total: Option<usize>,
    notice: String,
    problem: String,
    replica: String,
    back: String,
}

/// Whether `s` has the shape of the ids [`start`] makes.
fn is_job_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `GET /ui/bulk/{job}`: the action's progress (a viewer may read it).
pub(super) async fn page(State(api): State<Api>, Path(job): Path<String>) -> Response {
    let missing = || {
        error_page(
            &api,
            StatusCode::NOT_FOUND,
            format!("no bulk action {job:?} (records are kept for a day)"),
        )
    };
    // a job id is 16 lowercase hex digits (`start`); anything else is no
    // job, and is never handed to the bucket as a key
    if !is_job_id(&job) {
        return missing();
    }
    let read = match api.client.jetstream().get_key_value(BUCKET).await {
        Ok(store) => store.get(&job).await.map_err(|e| e.to_string()),
        Err(_) => return missing(),
    };
    let rec: Record = match read {
        Ok(Some(v)) => match serde_json::from_slice(&v) {
            Ok(r) => r,
            Err(_) => return missing(),
        },
        Ok(None) => return missing(),
        Err(e) => return error_page(&api, StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let stale = now_ms() - rec.updated > STALE.as_millis() as i64;
    let state = match rec.state.as_str() {
        "running" if stale => "interrupted",
        s => s,
    };
    let problem = match state {
        "failed" => format!(
            "The action failed: {}",
            rec.error.clone().unwrap_or_default()
        ),
        "interrupted" => format!(
            "Interrupted: {} stopped recording progress more than {} s ago ({} of {} tasks were handled); tasks not reached are as they were: run the action again to take them.",
            rec.replica,
            STALE.as_secs(),
            rec.handled,
            rec.total.map_or("?".into(), |t| t.to_string()),
        ),
        _ => String::new(),
    };
    let notice = match state {
        "finished" => notice(
            (&rec.did, &rec.gone),
            rec.done,
            rec.skipped,
            rec.failed,
            rec.first_failure.as_ref(),
        ),
        _ => String::new(),
    };
    let mut r = render(
        StatusCode::OK,
        &Progress {
            read_only: api.read_only(),
            title: rec.title,
            state: state.into(),
            handled: rec.handled,
            total: rec.total,
            notice,
            problem,
            replica: rec.replica,
            back: rec.back,
        },
    );
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}
