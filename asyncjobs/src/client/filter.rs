//! Which stored tasks a listing, page or replay takes ([`TaskFilter`]), and
//! what a replay did ([`ReplaySummary`]).

use crate::task::{Task, TaskState};

/// What [`Client::replay_tasks`](crate::Client::replay_tasks) did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// Ids of the tasks the filter matched, in store order.
    pub matched: Vec<String>,
    /// Ids retried.
    pub replayed: Vec<String>,
    /// Ids gone between the listing and their retry.
    pub skipped: Vec<String>,
    /// Ids whose retry failed, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Which stored tasks a listing, page or replay takes
/// ([`Client::list_tasks_filtered`](crate::Client::list_tasks_filtered), [`Client::page_tasks`](crate::Client::page_tasks),
/// [`Client::replay_tasks`](crate::Client::replay_tasks)): every condition given must hold.
#[derive(Debug, Clone)]
pub struct TaskFilter {
    pub(super) states: Vec<TaskState>,
    pub(super) types: Vec<String>,
    pub(super) queue: Option<String>,
    pub(super) created_since: Option<time::OffsetDateTime>,
    pub(super) created_before: Option<time::OffsetDateTime>,
    pub(super) last_error: Option<String>,
    pub(super) depends_on: Option<String>,
    pub(super) limit: usize,
}

impl Default for TaskFilter {
    fn default() -> Self {
        TaskFilter {
            states: Vec::new(),
            types: Vec::new(),
            queue: None,
            created_since: None,
            created_before: None,
            last_error: None,
            depends_on: None,
            limit: usize::MAX,
        }
    }
}

impl TaskFilter {
    /// Every task.
    pub fn new() -> TaskFilter {
        TaskFilter::default()
    }
    /// Only tasks in this state (may be given several times).
    pub fn state(mut self, s: TaskState) -> Self {
        self.states.push(s);
        self
    }
    /// Only tasks of this type (may be given several times).
    pub fn task_type(mut self, t: impl Into<String>) -> Self {
        self.types.push(t.into());
        self
    }
    /// Only tasks last enqueued into this queue.
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = Some(q.into());
        self
    }
    /// Only tasks created at or after `t`.
    pub fn created_since(mut self, t: time::OffsetDateTime) -> Self {
        self.created_since = Some(t);
        self
    }
    /// Only tasks created before `t`.
    pub fn created_before(mut self, t: time::OffsetDateTime) -> Self {
        self.created_before = Some(t);
        self
    }
    /// Only tasks whose last error contains `text`.
    pub fn last_error_contains(mut self, text: impl Into<String>) -> Self {
        self.last_error = Some(text.into());
        self
    }
    /// Only tasks that depend on task `id` (its dependants: `id` is among
    /// their [`dependencies`](Task::dependencies)).
    pub fn depends_on(mut self, id: impl Into<String>) -> Self {
        self.depends_on = Some(id.into());
        self
    }
    /// At most this many tasks.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }
    /// True when `task` passes the filter (the limit aside).
    pub fn matches(&self, task: &Task) -> bool {
        (self.states.is_empty() || self.states.contains(&task.state))
            && (self.types.is_empty() || self.types.contains(&task.task_type))
            && self.queue.as_ref().is_none_or(|q| *q == task.queue)
            && self.created_since.is_none_or(|t| task.created >= t)
            && self.created_before.is_none_or(|t| task.created < t)
            && self
                .last_error
                .as_ref()
                .is_none_or(|e| task.last_err.contains(e.as_str()))
            && self
                .depends_on
                .as_ref()
                .is_none_or(|id| task.dependencies.contains(id))
    }
}
