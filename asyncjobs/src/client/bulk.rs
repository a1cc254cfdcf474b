//! Acting on every stored task a filter matches ([`BulkAction`]): retry
//! (a dead-letter replay), cancel or delete, with a dry run that only
//! counts and lists, and a summary of what was done ([`BulkSummary`]).

use super::{Client, TaskFilter};
use crate::error::{Error, Result};
use crate::task::{Task, TaskState};
use futures::StreamExt;

/// What [`Client::bulk_tasks`] does to each task it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkAction {
    /// Enqueue again into its own queue ([`Client::retry_task`]); takes
    /// only tasks that ended for good (`expired`, `terminated`,
    /// `unreachable`, `queue_error`, and `complete` when the filter names
    /// that state): a task still waiting or running would run twice.
    Retry,
    /// Cancel ([`Client::cancel_task`]) with `by` naming who did; takes
    /// only tasks not yet final (waiting, running, blocked, retrying).
    Cancel {
        /// Who cancels (kept in each task's `last_err`).
        by: String,
    },
    /// Delete the record ([`Client::delete_task`]); takes every match.
    Delete,
}

impl BulkAction {
    /// Whether this action takes `task` (see each variant);
    /// `named_complete`: the filter names the `complete` state.
    fn takes(&self, task: &Task, named_complete: bool) -> bool {
        match self {
            BulkAction::Retry => {
                task.state.is_dead_letter() || (task.state == TaskState::Complete && named_complete)
            }
            BulkAction::Cancel { .. } => !task.state.is_final(),
            BulkAction::Delete => true,
        }
    }
}

/// What [`Client::bulk_tasks`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BulkSummary {
    /// Ids of the tasks the filter matched that the action takes, in store
    /// order.
    pub matched: Vec<String>,
    /// Ids acted on.
    pub done: Vec<String>,
    /// Ids gone (deleted, discarded) or already final (a cancel) between
    /// the listing and the action.
    pub skipped: Vec<String>,
    /// Ids whose action failed, with the reason.
    pub failed: Vec<(String, String)>,
}

impl Client {
    /// Applies `action` to every stored task `filter` matches and the
    /// action takes (see [`BulkAction`]). The matching tasks are read first
    /// (a listing snapshot), then acted on one by one; `progress` is
    /// called after each with (done, total). With `dry_run` nothing is
    /// changed: the summary lists what would be acted on, so an operator
    /// can be told how many tasks a confirmation will touch.
    ///
    /// # Errors
    /// Listing the store failed; failures of single tasks are in the
    /// summary instead.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::{BulkAction, TaskFilter};
    /// let stuck = TaskFilter::new().queue("EMAIL").task_type("email:bounce");
    /// let cancel = BulkAction::Cancel { by: "ops: bounce storm".into() };
    /// let would = client.bulk_tasks(stuck.clone(), &cancel, true, |_, _| {}).await?;
    /// println!("{} tasks would be cancelled", would.matched.len());
    /// let did = client.bulk_tasks(stuck, &cancel, false, |n, of| eprintln!("{n}/{of}")).await?;
    /// println!("{} cancelled, {} failed", did.done.len(), did.failed.len());
    /// # Ok(()) }
    /// ```
    pub async fn bulk_tasks(
        &self,
        filter: TaskFilter,
        action: &BulkAction,
        dry_run: bool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<BulkSummary> {
        let named_complete = filter.states.contains(&TaskState::Complete);
        let mut matched = Vec::new();
        let mut listing = self.list_tasks_filtered(filter).await?;
        while let Some(t) = listing.next().await {
            match t {
                Ok(t) if action.takes(&t, named_complete) => matched.push((t.id, t.queue)),
                Ok(_) => {}
                Err(Error::InvalidTaskRecord { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut summary = BulkSummary {
            matched: matched.iter().map(|(id, _)| id.clone()).collect(),
            ..BulkSummary::default()
        };
        if dry_run {
            return Ok(summary);
        }
        let total = matched.len();
        for (i, (id, queue)) in matched.into_iter().enumerate() {
            let acted = self.act_on(&id, queue, action).await;
            summary.record(id, acted);
            progress(i + 1, total);
        }
        Ok(summary)
    }

    /// Applies `action` to the tasks `ids` names, as
    /// [`bulk_tasks`](Client::bulk_tasks) does to a filter's: a task that
    /// does not exist, or that the action does not take (a cancel of a
    /// finished task, a retry of one still waiting or running), is
    /// `skipped`; a retry takes a `complete` task too, since it was named.
    /// Each id counts once. `matched` lists the ids the action takes;
    /// `dry_run` stops there.
    ///
    /// Errors: none of its own; each task's failure is in `failed`.
    ///
    /// ```no_run
    /// # async fn demo(client: asyncjobs::Client) -> asyncjobs::Result<()> {
    /// let ids = vec!["3NA7qQKb3iTswDRAKIWBQxPPZco".to_string()];
    /// let did = client.bulk_tasks_by_id(&ids, &asyncjobs::BulkAction::Delete, false).await?;
    /// println!("{} deleted, {} not there", did.done.len(), did.skipped.len());
    /// # Ok(()) }
    /// ```
    pub async fn bulk_tasks_by_id(
        &self,
        ids: &[String],
        action: &BulkAction,
        dry_run: bool,
    ) -> Result<BulkSummary> {
        self.bulk_tasks_by_id_with_progress(ids, action, dry_run, |_, _| {})
            .await
    }

    /// [`bulk_tasks_by_id`](Client::bulk_tasks_by_id), calling `progress`
    /// after each task acted on with (tasks acted on so far, tasks the
    /// action takes), as [`bulk_tasks`](Client::bulk_tasks) does: both
    /// counts are of tasks, the second is `matched.len()` of the summary
    /// returned. Not called in a dry run, nor for ids skipped or failed
    /// while they were read (before any action).
    ///
    /// Errors: none of its own; each task's failure is in `failed`.
    ///
    /// ```no_run
    /// # async fn demo(client: asyncjobs::Client, ids: Vec<String>) -> asyncjobs::Result<()> {
    /// let delete = asyncjobs::BulkAction::Delete;
    /// let did = client
    ///     .bulk_tasks_by_id_with_progress(&ids, &delete, false, |n, of| eprintln!("{n}/{of}"))
    ///     .await?;
    /// println!("{} deleted", did.done.len());
    /// # Ok(()) }
    /// ```
    pub async fn bulk_tasks_by_id_with_progress(
        &self,
        ids: &[String],
        action: &BulkAction,
        dry_run: bool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<BulkSummary> {
        let mut summary = BulkSummary::default();
        let mut seen = std::collections::HashSet::new();
        let mut taken = vec![];
        for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
            match self.load_task(id).await {
                Ok(t) if action.takes(&t, true) => taken.push((t.id, t.queue)),
                Ok(_) | Err(Error::TaskNotFound(_) | Error::TaskDiscarded { .. }) => {
                    summary.skipped.push(id.clone())
                }
                Err(e) => summary.failed.push((id.clone(), e.to_string())),
            }
        }
        summary.matched = taken.iter().map(|(id, _)| id.clone()).collect();
        if dry_run {
            return Ok(summary);
        }
        let total = taken.len();
        for (i, (id, queue)) in taken.into_iter().enumerate() {
            let acted = self.act_on(&id, queue, action).await;
            summary.record(id, acted);
            progress(i + 1, total);
        }
        Ok(summary)
    }

    /// `action` on task `id` of `queue`: whether it was done (`false`: a
    /// cancel found it finished).
    async fn act_on(&self, id: &str, queue: String, action: &BulkAction) -> Result<bool> {
        match action {
            BulkAction::Retry => {
                let queue = if queue.is_empty() {
                    crate::queue::DEFAULT_QUEUE_NAME.to_string()
                } else {
                    queue
                };
                self.inner
                    .storage
                    .retry_task(&queue, id)
                    .await
                    .map(|_| true)
            }
            BulkAction::Cancel { by } => self
                .cancel_task(id, by)
                .await
                .map(|c| !matches!(c, crate::Cancelled::AlreadyFinished(_))),
            BulkAction::Delete => self.delete_task(id).await.map(|_| true),
        }
    }
}

impl BulkSummary {
    /// Files `id` by how its action went.
    fn record(&mut self, id: String, acted: Result<bool>) {
        match acted {
            Ok(true) => self.done.push(id),
            Ok(false) => self.skipped.push(id),
            // deleted or discarded since it was listed
            Err(Error::TaskNotFound(_) | Error::TaskDiscarded { .. }) => self.skipped.push(id),
            Err(e) => self.failed.push((id, e.to_string())),
        }
    }
}
