//! The decisions for a task whose type this worker has no handler for
//! (docs/processing.md §2.6, "No handler"): no try is started; the item
//! is handed back for a worker that has one, with a growing wait, until
//! the task's deadline or the worker's unhandled wait has passed with no
//! live worker of the queue announcing the type; then the task ends
//! `expired`, naming the type. Pure, as the rest of the table.

use super::{Action, EndReason, Ending};
use crate::format_duration;
use crate::task::{Task, TaskState};
use std::time::Duration;
use time::OffsetDateTime;

/// The shortest wait before an unhandled task is delivered again.
pub(crate) const UNHANDLED_MIN_WAIT: Duration = Duration::from_secs(1);

/// The longest wait before an unhandled task is delivered again: a worker
/// with the handler started later takes it within about this long.
pub(crate) const UNHANDLED_MAX_WAIT: Duration = Duration::from_secs(60);

/// How a waiting task's `last_err` begins (see [`note`]).
pub(crate) const NOTE_PREFIX: &str = "waiting for a worker of queue ";

/// What a worker without the route knows of the task's type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unrouted<'a> {
    /// The queue's name.
    pub queue: &'a str,
    /// The types this worker handles, quoted (`Router::handled_list`).
    pub handles: &'a str,
    /// The registered type closest to the task's (a likely typo).
    pub suggestion: Option<&'a str>,
    /// How long a task without a deadline waits for a worker with the
    /// handler (`Worker::unhandled_wait`).
    pub wait: Duration,
}

/// Since when the task has been ready to run: the latest of its creation,
/// its due time and its last try (how the waits of a task with a deadline
/// grow).
pub(crate) fn waiting_since(task: &Task) -> OffsetDateTime {
    [task.run_at, task.tried]
        .into_iter()
        .flatten()
        .fold(task.created, OffsetDateTime::max)
}

/// When the task stops waiting for a handler: `None` when it has a
/// deadline (the deadline gate ends it, docs/processing.md §2.4); else the
/// time its `last_err` names, when a worker passed it on before ([`note`]);
/// else `now` + the unhandled wait. So the wait counts from when the task,
/// ready to run, was first passed on: a task that waited for its
/// dependencies or ran before on a worker now gone gets all of it, and a
/// worker restarted meanwhile does not start it again. A task found
/// `active` past its lease keeps its record (no note is saved on it), so
/// its wait counts from its last try's start.
pub(crate) fn unhandled_until(
    task: &Task,
    wait: Duration,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    if task.deadline.is_some() {
        return None;
    }
    let noted = task
        .last_err
        .strip_prefix(NOTE_PREFIX)
        .and_then(|rest| rest.rsplit_once(UNTIL))
        .and_then(|(_, t)| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
    let first = match task.state {
        TaskState::Active => waiting_since(task),
        _ => now,
    };
    Some(noted.unwrap_or(first + wait))
}

/// What precedes the time a waiting task's note ends with.
const UNTIL: &str = "; it expires unless one takes it by ";

/// The verdict on a task no route of this worker takes, at `now`.
/// `handled_elsewhere`: a live worker of the queue announces a handler for
/// its type (asked only once [`unhandled_until`] has passed). Waits grow
/// with the time waited (half of it, from [`UNHANDLED_MIN_WAIT`] to
/// [`UNHANDLED_MAX_WAIT`]) and end just past the bound when it comes
/// first, so the task ends close to it.
pub(crate) fn unhandled(
    task: &Task,
    known: &Unrouted<'_>,
    now: OffsetDateTime,
    handled_elsewhere: bool,
) -> Action {
    let until = unhandled_until(task, known.wait, now);
    if until.is_some_and(|u| now >= u) && !handled_elsewhere {
        return Action::End(Ending {
            state: TaskState::Expired,
            last_err: expired_message(task, known),
            tried: None,
            why: EndReason::Unhandled,
        });
    }
    let waited = match until {
        Some(u) => known
            .wait
            .saturating_sub(Duration::try_from(u - now).unwrap_or_default()),
        None => Duration::try_from(now - waiting_since(task)).unwrap_or_default(),
    };
    let mut delay = (waited / 2).clamp(UNHANDLED_MIN_WAIT, UNHANDLED_MAX_WAIT);
    // before the bound: end the last wait just past it
    if let Some(left) = until
        .or(task.deadline)
        .and_then(|b| Duration::try_from(b - now).ok())
        .filter(|left| !left.is_zero())
    {
        delay = delay.min(left + Duration::from_millis(100));
    }
    Action::Unhandled {
        delay: delay.max(UNHANDLED_MIN_WAIT),
        note: note(task, known, until),
    }
}

/// The `last_err` of a task waiting for a handler: `waiting for a worker
/// of queue Q that handles task type "x" (a worker handling "a", "b"
/// passed it on: did you mean "a"?); it expires unless one takes it by
/// <time>`. The same for every delivery to the same worker, so it is saved
/// once.
fn note(task: &Task, known: &Unrouted<'_>, until: Option<OffsetDateTime>) -> String {
    let by = match (task.deadline, until) {
        (Some(d), _) => format!("its deadline {}", rfc3339(d)),
        (None, Some(u)) => rfc3339(u),
        (None, None) => "its deadline".into(),
    };
    format!(
        "{NOTE_PREFIX}{} that handles task type \"{}\" (a worker handling {} passed it on{}){UNTIL}{by}",
        known.queue,
        task.task_type,
        known.handles,
        did_you_mean(known)
    )
}

/// The `last_err` of a task that waited for a handler in vain: `no worker
/// of queue Q handles task type "x" (waited 1h0m0s; this worker handles:
/// "a"); did you mean "a"?`.
pub(crate) fn expired_message(task: &Task, known: &Unrouted<'_>) -> String {
    format!(
        "no worker of queue {} handles task type \"{}\" (waited {}; this worker handles: {}){}",
        known.queue,
        task.task_type,
        format_duration(known.wait),
        known.handles,
        known
            .suggestion
            .map(|t| format!("; did you mean \"{t}\"?"))
            .unwrap_or_default(),
    )
}

/// `: did you mean "t"?`, or nothing.
fn did_you_mean(known: &Unrouted<'_>) -> String {
    known
        .suggestion
        .map(|t| format!(": did you mean \"{t}\"?"))
        .unwrap_or_default()
}

/// The part of a waiting task's `last_err` that says what it waited for,
/// when it is such a note (`waiting for a worker of queue Q that handles
/// task type "x" (…)`), so an ending at delivery (its deadline, its
/// deliveries running out) can say it never found a handler.
pub(crate) fn waited_for(last_err: &str) -> Option<&str> {
    if !last_err.starts_with(NOTE_PREFIX) {
        return None;
    }
    Some(
        last_err
            .rfind(UNTIL)
            .map_or(last_err, |end| &last_err[..end]),
    )
}

/// A task ending past its deadline while it waited for a handler says so:
/// `past deadline while waiting for a worker of queue Q that handles task
/// type "x" (…)`. Other actions are left as they are.
pub(crate) fn past_deadline_while_unhandled(action: &mut Action, task: &Task) {
    if let Action::End(Ending {
        why: EndReason::Expired(super::gates::Expiry::PastDeadline),
        last_err,
        ..
    }) = action
    {
        if let Some(what) = waited_for(&task.last_err) {
            *last_err = format!("{last_err} while {what}");
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
