//! The bodies of the batch routes (beyond Go; docs/interfaces.md §2.5,
//! docs/processing.md §2.23).

use super::TaskCreateRequest;
use asyncjobs::batch::{Batch, BatchCancel, BatchRetry, BatchStatus, BatchTask, CallbackRetry};
use asyncjobs::wire::format_time;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/batches`: the members (1 to 1,000) and an optional callback,
/// each as `POST /v1/tasks` takes a task (without `unique`; a member may
/// have `dependencies`, the callback may not: its dependencies are the
/// members).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCreateRequest {
    /// The members, 1 to 1,000.
    #[serde(default)]
    #[schema(required = true, min_items = 1, max_items = 1000)]
    pub members: Vec<TaskCreateRequest>,
    /// The task to run once every member has ended, whatever its outcome,
    /// with the complete members' results in `dependency_results`.
    #[serde(default)]
    pub callback: Option<TaskCreateRequest>,
}

/// A batch as it was stored.
#[derive(Serialize, ToSchema)]
#[schema(as = Batch)]
pub struct BatchView {
    /// The callback's task id, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
    /// When it was stored (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub created: String,
    /// The batch id.
    pub id: String,
    /// The members' task ids, in order.
    pub members: Vec<String>,
    /// The queue of its tasks.
    pub queue: String,
}

impl From<&Batch> for BatchView {
    fn from(b: &Batch) -> Self {
        BatchView {
            callback: b.callback.clone(),
            created: format_time(&b.created),
            id: b.id.clone(),
            members: b.members.clone(),
            queue: b.queue.clone(),
        }
    }
}

/// One task of a batch as it is now.
#[derive(Serialize, ToSchema)]
#[schema(as = BatchTask)]
pub struct BatchTaskView {
    /// The record was deleted by a discard policy (`state` is its marker's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub discarded: bool,
    /// The task id.
    pub id: String,
    /// Its last error.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_err: String,
    /// Its state; absent when it has no record (never stored, deleted,
    /// expired by its retention).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::TaskStateSchema>)]
    pub state: Option<String>,
    /// Its type (absent without a record).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub task_type: String,
}

impl From<&BatchTask> for BatchTaskView {
    fn from(t: &BatchTask) -> Self {
        BatchTaskView {
            discarded: t.discarded,
            id: t.id.clone(),
            last_err: t.last_err.clone(),
            state: t.state.map(|s| s.as_str().to_string()),
            task_type: t.task_type.clone(),
        }
    }
}

/// `GET /v1/batches/{id}`: where a batch stands.
#[derive(Serialize, ToSchema)]
pub struct BatchStatusView {
    /// The callback, when the batch has one (no `state`: not enqueued).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<BatchTaskView>,
    /// When it was stored.
    #[schema(format = DateTime)]
    pub created: String,
    /// Members `complete`.
    pub done: usize,
    /// Members that failed for good (`expired`, `terminated`,
    /// `unreachable`, `queue_error`).
    pub failed: usize,
    /// No member is pending and the callback (if any) has ended.
    pub finished: bool,
    /// The batch id.
    pub id: String,
    /// Every member, in order.
    pub members: Vec<BatchTaskView>,
    /// Members without a record.
    pub missing: usize,
    /// Members not ended (`new`, `blocked`, `active`, `retry`).
    pub pending: usize,
    /// The queue of its tasks.
    pub queue: String,
    /// How many members it has.
    pub total: usize,
}

impl From<&BatchStatus> for BatchStatusView {
    fn from(s: &BatchStatus) -> Self {
        BatchStatusView {
            callback: s.callback.as_ref().map(Into::into),
            created: format_time(&s.created),
            done: s.done,
            failed: s.failed,
            finished: s.finished(),
            id: s.id.clone(),
            members: s.members.iter().map(Into::into).collect(),
            missing: s.missing,
            pending: s.pending,
            queue: s.queue.clone(),
            total: s.total,
        }
    }
}

/// A task a batch operation could not change, with why.
#[derive(Serialize, ToSchema)]
pub struct BatchTaskError {
    /// Why.
    pub error: String,
    /// The task id.
    pub id: String,
}

fn errors(failed: &[(String, String)]) -> Vec<BatchTaskError> {
    failed
        .iter()
        .map(|(id, error)| BatchTaskError {
            error: error.clone(),
            id: id.clone(),
        })
        .collect()
}

/// `POST /v1/batches/{id}/cancel`: what the cancel did.
#[derive(Serialize, ToSchema)]
pub struct BatchCancelResponse {
    /// Tasks cancelled (the callback first).
    pub cancelled: Vec<String>,
    /// Tasks it could not cancel.
    pub failed: Vec<BatchTaskError>,
    /// Tasks that had already ended.
    pub finished: usize,
    /// Tasks without a record.
    pub missing: usize,
}

impl From<&BatchCancel> for BatchCancelResponse {
    fn from(c: &BatchCancel) -> Self {
        BatchCancelResponse {
            cancelled: c.cancelled.clone(),
            failed: errors(&c.failed),
            finished: c.finished,
            missing: c.missing,
        }
    }
}

/// `POST /v1/batches/{id}/retry`: what the retry did.
#[derive(Serialize, ToSchema)]
pub struct BatchRetryResponse {
    /// What became of the callback: `no_callback`, `enqueued` (it had
    /// never been), `rearmed` (it had run or failed: it runs again once
    /// the members have ended), `waiting` (it had not run), `running`
    /// (left alone: retry again once it has ended) or `failed`.
    pub callback: &'static str,
    /// Why the callback could not be re-armed (only with `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_error: Option<String>,
    /// Members it could not retry.
    pub failed: Vec<BatchTaskError>,
    /// Members without a record: they cannot be made again.
    pub missing: Vec<String>,
    /// Members retried (those that had failed).
    pub retried: Vec<String>,
}

impl From<&BatchRetry> for BatchRetryResponse {
    fn from(r: &BatchRetry) -> Self {
        let (callback, callback_error) = match &r.callback {
            CallbackRetry::NoCallback => ("no_callback", None),
            CallbackRetry::Enqueued => ("enqueued", None),
            CallbackRetry::Rearmed => ("rearmed", None),
            CallbackRetry::Waiting => ("waiting", None),
            CallbackRetry::Running => ("running", None),
            CallbackRetry::Failed(e) => ("failed", Some(e.clone())),
            _ => ("unknown", None),
        };
        BatchRetryResponse {
            callback,
            callback_error,
            failed: errors(&r.failed),
            missing: r.missing.clone(),
            retried: r.retried.clone(),
        }
    }
}
