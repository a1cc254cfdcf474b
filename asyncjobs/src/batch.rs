//! Batches: a group of tasks enqueued together, followed as one, and a
//! callback task that runs once every member has ended
//! (docs/processing.md §2.23; the record is docs/storage.md §3.9).
//!
//! This module holds the types and their rules, without a server: the
//! limits and checks a batch passes before anything is written
//! ([`check_batch`]), the stored record and how a [`BatchStatus`] is
//! counted. The
//! [`Client`](crate::Client) methods `enqueue_batch`, `batch`,
//! `cancel_batch` and `retry_batch` carry them out.

use crate::error::{Error, Result};
use crate::task::{is_valid_name, Task, TaskState, MAX_PRIORITY};
use crate::wire::time_go;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use time::OffsetDateTime;

/// The most members a batch may have.
pub const MAX_BATCH_MEMBERS: usize = 1000;

/// A batch as [`Client::enqueue_batch`](crate::Client::enqueue_batch)
/// stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Batch {
    /// Its id (a KSUID, as task ids).
    pub id: String,
    /// The queue its members and callback were enqueued into.
    pub queue: String,
    /// The members' task ids, in the order given.
    pub members: Vec<String>,
    /// The callback's task id, when it has one.
    pub callback: Option<String>,
    /// When it was stored.
    pub created: OffsetDateTime,
}

/// The record of a batch in `CHORIA_AJ_BATCHES` under its id
/// (docs/storage.md §3.9): written before any member, so the membership
/// is never lost, and never changed afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BatchRecord {
    pub id: String,
    pub queue: String,
    pub members: Vec<String>,
    /// The callback's record as it is enqueued (after the members), so a
    /// callback an interrupted enqueue never reached can be enqueued by
    /// [`Client::retry_batch`](crate::Client::retry_batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Task>,
    #[serde(with = "time_go")]
    pub created: OffsetDateTime,
}

impl BatchRecord {
    /// What the caller is given back.
    pub(crate) fn batch(&self) -> Batch {
        Batch {
            id: self.id.clone(),
            queue: self.queue.clone(),
            members: self.members.clone(),
            callback: self.callback.as_ref().map(|c| c.id.clone()),
            created: self.created,
        }
    }
}

/// Whether `task` may join a batch: never enqueued, `new` (or `blocked`
/// on dependencies of its own, for a member), a valid type and id, no
/// unique key, a valid priority; why not.
fn joinable(task: &Task, callback: bool) -> std::result::Result<(), String> {
    if task.sequence() != 0 || !task.queue.is_empty() {
        return Err(format!(
            "it was enqueued before (into queue {:?}); only tasks never enqueued join a batch",
            task.queue
        ));
    }
    match task.state {
        TaskState::New => {}
        TaskState::Blocked if !callback && !task.dependencies.is_empty() => {}
        other => {
            return Err(format!(
                "it is in state {:?}; only new tasks join a batch",
                other.as_str()
            ))
        }
    }
    if callback && !task.dependencies.is_empty() {
        return Err(
            "it has dependencies of its own; a callback's dependencies are the batch's members"
                .into(),
        );
    }
    if !is_valid_name(&task.task_type) {
        return Err(format!(
            "its task type {:?} is invalid (must match ^[a-zA-Z0-9_:-]+$)",
            task.task_type
        ));
    }
    if !is_valid_name(&task.id) {
        return Err(format!(
            "its id {:?} is invalid (must match ^[a-zA-Z0-9_:-]+$)",
            task.id
        ));
    }
    if task.unique().is_some() {
        return Err("it has a unique key; a batch's tasks cannot be unique".into());
    }
    if task.priority > MAX_PRIORITY {
        return Err(format!(
            "its priority {} is above {MAX_PRIORITY}",
            task.priority
        ));
    }
    Ok(())
}

/// The checks a batch passes before anything is written
/// (docs/processing.md §2.23): 1 to [`MAX_BATCH_MEMBERS`] members, each
/// and the callback never enqueued before, `new` (a member may be
/// `blocked` on dependencies of its own; the callback may have none), a
/// valid type and id, no unique key, no id twice.
///
/// # Errors
/// [`Error::BatchEmpty`], [`Error::BatchTooLarge`] naming the count,
/// [`Error::BatchTaskInvalid`] naming the task and why.
///
/// ```
/// use asyncjobs::{batch::check_batch, Error, Task};
/// let members = vec![Task::new("image:resize", &1).unwrap()];
/// let callback = Task::new("image:done", &()).unwrap();
/// assert!(check_batch(&members, Some(&callback)).is_ok());
/// assert!(matches!(check_batch(&[], None), Err(Error::BatchEmpty)));
/// ```
pub fn check_batch(members: &[Task], callback: Option<&Task>) -> Result<()> {
    if members.is_empty() {
        return Err(Error::BatchEmpty);
    }
    if members.len() > MAX_BATCH_MEMBERS {
        return Err(Error::BatchTooLarge {
            count: members.len(),
            max: MAX_BATCH_MEMBERS,
        });
    }
    let mut ids = HashSet::with_capacity(members.len() + 1);
    for (i, m) in members.iter().enumerate() {
        let which = || format!("member {} (task {})", i + 1, m.id);
        joinable(m, false).map_err(|reason| Error::BatchTaskInvalid {
            which: which(),
            reason,
        })?;
        if !ids.insert(m.id.as_str()) {
            return Err(Error::BatchTaskInvalid {
                which: which(),
                reason: "another member has the same id".into(),
            });
        }
    }
    if let Some(c) = callback {
        let which = || format!("callback (task {})", c.id);
        joinable(c, true).map_err(|reason| Error::BatchTaskInvalid {
            which: which(),
            reason,
        })?;
        if ids.contains(c.id.as_str()) {
            return Err(Error::BatchTaskInvalid {
                which: which(),
                reason: "a member has the same id".into(),
            });
        }
    }
    Ok(())
}

/// One task of a batch as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchTask {
    /// Its id.
    pub id: String,
    /// Its type (empty when no record was found).
    pub task_type: String,
    /// Its state; `None` when it has no record: never stored (an
    /// interrupted enqueue), deleted, or removed by its retention.
    pub state: Option<TaskState>,
    /// The record was deleted by a discard policy; `state` is the one its
    /// marker remembers.
    pub discarded: bool,
    /// Its last error (empty when none).
    pub last_err: String,
}

impl BatchTask {
    /// A task with no record.
    pub(crate) fn missing(id: &str) -> BatchTask {
        BatchTask {
            id: id.to_string(),
            task_type: String::new(),
            state: None,
            discarded: false,
            last_err: String::new(),
        }
    }

    /// A task as its record says.
    pub(crate) fn of(task: &Task) -> BatchTask {
        BatchTask {
            id: task.id.clone(),
            task_type: task.task_type.clone(),
            state: Some(task.state),
            discarded: false,
            last_err: task.last_err.clone(),
        }
    }
}

/// Where a batch stands (see [`Client::batch`](crate::Client::batch)):
/// every member's state, counted, and its callback's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BatchStatus {
    /// The batch id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// When it was stored.
    pub created: OffsetDateTime,
    /// How many members it has.
    pub total: usize,
    /// Members `complete`.
    pub done: usize,
    /// Members that failed for good: `expired`, `terminated`,
    /// `unreachable` or `queue_error` (and a record in a state this
    /// version does not know, or that does not decode: the callback's
    /// gate counts them as ended too).
    pub failed: usize,
    /// Members not ended yet: `new`, `blocked`, `active` or `retry`.
    pub pending: usize,
    /// Members without a record (never stored by an interrupted enqueue,
    /// deleted, or removed by their retention).
    pub missing: usize,
    /// Every member, in the batch's order.
    pub members: Vec<BatchTask>,
    /// The callback, when the batch has one (`state` `None`: not
    /// enqueued, or its record is gone).
    pub callback: Option<BatchTask>,
}

impl BatchStatus {
    /// Counts the members' states of `record`'s batch.
    pub(crate) fn count(
        record: &BatchRecord,
        members: Vec<BatchTask>,
        callback: Option<BatchTask>,
    ) -> BatchStatus {
        let mut status = BatchStatus {
            id: record.id.clone(),
            queue: record.queue.clone(),
            created: record.created,
            total: members.len(),
            done: 0,
            failed: 0,
            pending: 0,
            missing: 0,
            members,
            callback,
        };
        for m in &status.members {
            match m.state {
                None => status.missing += 1,
                Some(TaskState::Complete) => status.done += 1,
                Some(
                    TaskState::New | TaskState::Blocked | TaskState::Active | TaskState::Retry,
                ) => status.pending += 1,
                // as the callback's gate judges them: ended, not complete
                Some(_) => status.failed += 1,
            }
        }
        status
    }

    /// How many members are in each state, in lifecycle order, leaving
    /// out states no member is in.
    pub fn by_state(&self) -> Vec<(TaskState, usize)> {
        const ORDER: [TaskState; 10] = [
            TaskState::New,
            TaskState::Blocked,
            TaskState::Active,
            TaskState::Retry,
            TaskState::Complete,
            TaskState::Expired,
            TaskState::Terminated,
            TaskState::Unreachable,
            TaskState::QueueError,
            TaskState::Unknown,
        ];
        ORDER
            .iter()
            .map(|s| {
                let n = self.members.iter().filter(|m| m.state == Some(*s)).count();
                (*s, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// True when no member is pending and the callback (if any) has
    /// ended: nothing of the batch will run again unless retried.
    pub fn finished(&self) -> bool {
        self.pending == 0
            && self
                .callback
                .as_ref()
                .is_none_or(|c| c.state.is_some_and(|s| s.is_final()))
    }
}

/// What [`Client::cancel_batch`](crate::Client::cancel_batch) did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BatchCancel {
    /// Tasks it cancelled (the callback first, then the members).
    pub cancelled: Vec<String>,
    /// Tasks that had already ended, left as they were.
    pub finished: usize,
    /// Tasks without a record (the callback when it was never enqueued).
    pub missing: usize,
    /// Tasks it could not cancel, with why.
    pub failed: Vec<(String, String)>,
}

/// What [`Client::retry_batch`](crate::Client::retry_batch) did with the
/// callback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CallbackRetry {
    /// The batch has no callback.
    #[default]
    NoCallback,
    /// It had never been enqueued (an interrupted enqueue): it is now,
    /// from the batch record.
    Enqueued,
    /// It had run or failed: it is `blocked` again, with a new work item,
    /// and runs once every member has ended again.
    Rearmed,
    /// It had not run yet: it waits for the members (any judgement of it
    /// made before the retry is made again).
    Waiting,
    /// It is running now, with the members' outcomes from before the
    /// retry: it was left alone (retry the batch again once it has ended
    /// to run it again).
    Running,
    /// It could not be re-armed or enqueued: why.
    Failed(String),
}

/// What [`Client::retry_batch`](crate::Client::retry_batch) did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BatchRetry {
    /// Members it retried (those that had failed).
    pub retried: Vec<String>,
    /// Members without a record: they cannot be made again (the batch
    /// record keeps their ids only); the callback sees them as `null`.
    pub missing: Vec<String>,
    /// Members it could not retry, with why.
    pub failed: Vec<(String, String)>,
    /// What it did with the callback.
    pub callback: CallbackRetry,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(n: usize) -> Vec<Task> {
        (0..n).map(|i| Task::new("m", &i).unwrap()).collect()
    }

    #[test]
    fn sizes() {
        assert!(matches!(check_batch(&[], None), Err(Error::BatchEmpty)));
        assert!(check_batch(&tasks(1), None).is_ok());
        assert!(check_batch(&tasks(MAX_BATCH_MEMBERS), None).is_ok());
        let e = check_batch(&tasks(MAX_BATCH_MEMBERS + 1), None).unwrap_err();
        assert!(matches!(
            e,
            Error::BatchTooLarge {
                count: 1001,
                max: 1000
            }
        ));
        assert!(e.to_string().contains("got 1001"), "{e}");
        assert_eq!(
            Error::BatchEmpty.to_string(),
            "a batch needs at least one member (got 0): nothing was enqueued"
        );
    }

    fn invalid(members: &[Task], callback: Option<&Task>) -> String {
        match check_batch(members, callback) {
            Err(e @ Error::BatchTaskInvalid { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn members_and_callbacks_must_be_new() {
        let mut m = tasks(3);
        m[1].state = TaskState::Complete;
        let e = invalid(&m, None);
        assert!(
            e.starts_with(&format!("batch member 2 (task {})", m[1].id)),
            "{e}"
        );
        assert!(e.contains("\"complete\""), "{e}");

        let mut m = tasks(2);
        m[0].queue = "Q".into();
        assert!(invalid(&m, None).contains("enqueued before"));

        let mut m = tasks(2);
        m[1].task_type = "bad type".into();
        assert!(invalid(&m, None).contains("task type \"bad type\" is invalid"));

        let mut m = tasks(2);
        m[1].id = m[0].id.clone();
        assert!(invalid(&m, None).contains("same id"));

        let m = vec![Task::builder("m").unique("k").build().unwrap()];
        assert!(invalid(&m, None).contains("unique"));

        // a member blocked on dependencies of its own may join
        let m = vec![Task::builder("m").depends_on(["x"]).build().unwrap()];
        assert!(check_batch(&m, None).is_ok());

        // a callback may not have dependencies, be blocked or reuse an id
        let m = tasks(2);
        let cb = Task::builder("cb").depends_on(["x"]).build().unwrap();
        let e = invalid(&m, Some(&cb));
        assert!(e.starts_with("batch callback (task"), "{e}");
        let mut cb = Task::new("cb", &()).unwrap();
        cb.id = m[0].id.clone();
        assert!(invalid(&m, Some(&cb)).contains("a member has the same id"));
        let mut cb = Task::new("cb", &()).unwrap();
        cb.state = TaskState::Retry;
        assert!(invalid(&m, Some(&cb)).contains("\"retry\""));
    }

    fn member(state: Option<TaskState>) -> BatchTask {
        let mut m = BatchTask::missing("x");
        m.state = state;
        m
    }

    #[test]
    fn counts() {
        let record = BatchRecord {
            id: "b".into(),
            queue: "Q".into(),
            members: vec![],
            callback: None,
            created: OffsetDateTime::UNIX_EPOCH,
        };
        use TaskState::*;
        let members = [
            Some(New),
            Some(Blocked),
            Some(Active),
            Some(Retry),
            Some(Unknown),
            Some(Complete),
            Some(Complete),
            Some(Expired),
            Some(Terminated),
            Some(Unreachable),
            Some(QueueError),
            None,
        ]
        .into_iter()
        .map(member)
        .collect();
        let s = BatchStatus::count(&record, members, Some(member(Some(Blocked))));
        assert_eq!(
            (s.total, s.done, s.failed, s.pending, s.missing),
            (12, 2, 5, 4, 1)
        );
        assert_eq!(s.by_state()[0], (New, 1));
        assert!(s.by_state().contains(&(Complete, 2)));
        assert!(!s.finished());

        let ended = vec![member(Some(Complete)), member(Some(Expired)), member(None)];
        let s = BatchStatus::count(&record, ended.clone(), Some(member(Some(Blocked))));
        assert!(!s.finished(), "the callback has not run");
        let s = BatchStatus::count(&record, ended.clone(), Some(member(Some(Complete))));
        assert!(s.finished());
        let s = BatchStatus::count(&record, ended, None);
        assert!(s.finished());
    }

    #[test]
    fn the_record_keeps_the_callback_whole() {
        let cb = Task::new("cb", &serde_json::json!({"a": 1})).unwrap();
        let record = BatchRecord {
            id: "b".into(),
            queue: "Q".into(),
            members: vec!["m1".into(), "m2".into()],
            callback: Some(cb.clone()),
            created: OffsetDateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(
            json.starts_with(r#"{"id":"b","queue":"Q","members":["m1","m2"],"callback":{"id":"#),
            "{json}"
        );
        let back: BatchRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.callback.as_ref().unwrap().payload, cb.payload);
        assert_eq!(back.batch().callback.as_deref(), Some(cb.id.as_str()));
    }
}
