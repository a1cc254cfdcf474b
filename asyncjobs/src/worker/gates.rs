//! The delivery gates (docs/processing.md §2.4): whether a delivered task runs now,
//! waits, or ends. Pure functions of the task, its queue's settings and the
//! time, so every rule is unit-tested without a server.

use crate::queue::Queue;
use crate::task::{Task, TaskResult, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// How long past its max run time an `active` task's worker is given to
/// record the outcome before the task is presumed abandoned.
pub(crate) const STALE_MARGIN: Duration = Duration::from_secs(2);

/// What to do with a delivered task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Mark it active and run the handler. `stale` when it was `active`
    /// past its lease (its worker is presumed dead).
    Run {
        /// The task was found `active` past its lease.
        stale: bool,
    },
    /// Another worker's lease on the running task lasts this much longer.
    LeaseHeld(Duration),
    /// Already `complete`, `expired` or `unreachable`: acknowledge.
    AlreadyDone,
    /// `terminated` or `queue_error`: acknowledge without running (docs/go-differences.md §5).
    Final,
    /// Save it `expired` and terminate the item.
    Expire(Expiry),
    /// `blocked` on dependencies: look them up, then [`judge_dependencies`].
    CheckDependencies,
    /// A delayed task delivered before it is due (a clock ahead of ours,
    /// or an item published without its schedule): wait this long.
    NotDue(Duration),
}

/// How early a delayed task's item may arrive and still run: schedules fire
/// on whole seconds, and clocks differ a little.
pub(crate) const DUE_TOLERANCE: Duration = Duration::from_secs(1);

/// Why a task expires at delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Its deadline has passed.
    PastDeadline,
    /// It has had all the tries the task and queue allow (docs/go-differences.md §4).
    MaxTries,
    /// As [`Expiry::MaxTries`], and its last try was abandoned: the task
    /// was still `active` past its lease (its worker died mid-try).
    MaxTriesAbandoned,
}

impl Expiry {
    /// The task's `last_err`, as Go writes it.
    pub(crate) fn last_err(self) -> &'static str {
        match self {
            Expiry::PastDeadline => "past deadline",
            Expiry::MaxTries => "exceeded maximum tries",
            Expiry::MaxTriesAbandoned => {
                "exceeded maximum tries: the last try's worker stopped without recording an outcome"
            }
        }
    }
}

/// The lease a running handler holds on its task: the queue's run time
/// plus [`STALE_MARGIN`].
pub(crate) fn lease(queue: &Queue) -> Duration {
    queue.effective_max_run_time() + STALE_MARGIN
}

/// Applies the gates in Go's order: state, deadline, tries, dependencies.
pub(crate) fn gate(task: &Task, queue: &Queue, now: OffsetDateTime) -> Gate {
    let mut stale = false;
    match task.state {
        TaskState::Active => {
            let lease = lease(queue);
            let elapsed = task
                .tried
                .and_then(|t| Duration::try_from(now - t).ok().or(Some(Duration::ZERO)));
            match elapsed {
                Some(elapsed) if elapsed < lease => return Gate::LeaseHeld(lease - elapsed),
                _ => stale = true,
            }
        }
        TaskState::Complete | TaskState::Expired | TaskState::Unreachable => {
            return Gate::AlreadyDone
        }
        TaskState::Terminated | TaskState::QueueError => return Gate::Final,
        _ => {}
    }
    if task.deadline.is_some_and(|d| now > d) {
        return Gate::Expire(Expiry::PastDeadline);
    }
    if let Some(due) = task.run_at.filter(|_| task.tries == 0 && !stale) {
        if let Ok(early) = Duration::try_from(due - now) {
            if early > DUE_TOLERANCE {
                return Gate::NotDue(early);
            }
        }
    }
    if queue
        .effective_max_tries(task.max_tries)
        .is_some_and(|limit| task.tries >= limit)
    {
        return Gate::Expire(if stale {
            Expiry::MaxTriesAbandoned
        } else {
            Expiry::MaxTries
        });
    }
    if task.state == TaskState::Blocked && !task.dependencies.is_empty() {
        return Gate::CheckDependencies;
    }
    Gate::Run { stale }
}

/// How one dependency looked when it was loaded.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// The record, verified.
    Task(Box<Task>),
    /// No record.
    NotFound,
    /// No record, but a marker saying it was deleted by a discard policy
    /// in this final state (its result is gone).
    Discarded(TaskState),
    /// A record that can never be used (bad signature, undecodable), with why.
    Unusable(String),
    /// A transient failure (logged by the caller): look again later.
    Unavailable,
}

impl Loaded {
    /// Whether the dependency has not ended yet (or could not be read):
    /// a task waiting for every dependency to end, whatever its outcome,
    /// need not look further (docs/processing.md §2.5).
    pub(crate) fn unfinished(&self) -> bool {
        match self {
            Loaded::Task(d) => !d.state.is_final() && d.state != TaskState::Unknown,
            Loaded::Unavailable => true,
            Loaded::NotFound | Loaded::Discarded(_) | Loaded::Unusable(_) => false,
        }
    }
}

/// The verdict on a blocked task's dependencies.
#[derive(Debug)]
pub(crate) enum Deps {
    /// All complete: their results (when the task asked for them).
    Ready(BTreeMap<String, Option<TaskResult>>),
    /// Some are not finished yet: the first of them.
    Waiting(String),
    /// One can never complete; the detail names it (docs/go-differences.md §6).
    Failed(String),
}

/// Judges dependencies in order: the first that failed decides; otherwise
/// any unfinished one means waiting. A task that runs whatever their
/// outcome ([`Task::dependencies_any_outcome`]) is judged by
/// [`judge_any_outcome`].
pub(crate) fn judge_dependencies(task: &Task, loaded: Vec<(String, Loaded)>) -> Deps {
    if task.dependencies_any_outcome {
        return judge_any_outcome(task, loaded);
    }
    let mut waiting: Option<String> = None;
    let mut results = BTreeMap::new();
    for (dep, l) in loaded {
        match l {
            Loaded::Task(d) => match d.state {
                TaskState::Complete => {
                    if task.load_dependencies {
                        results.insert(dep, d.result);
                    }
                }
                TaskState::Expired
                | TaskState::Terminated
                | TaskState::QueueError
                | TaskState::Unreachable
                | TaskState::Unknown => {
                    let state = if d.state == TaskState::Unknown {
                        "an unknown state".to_string()
                    } else {
                        format!("state {}", d.state)
                    };
                    return Deps::Failed(format!("dependency {dep} is in {state}"));
                }
                _ => waiting = waiting.or(Some(dep)),
            },
            Loaded::Discarded(TaskState::Complete) => {
                // the result was deleted with the record
                if task.load_dependencies {
                    results.insert(dep, None);
                }
            }
            Loaded::Discarded(state) => {
                return Deps::Failed(format!(
                    "dependency {dep} is in state {state} (its record was discarded)"
                ))
            }
            // Go's words; a record ended by its retention reads the same
            // (docs/processing.md §2.19)
            Loaded::NotFound => return Deps::Failed(format!("task not found: {dep}")),
            Loaded::Unusable(why) => return Deps::Failed(format!("dependency {dep}: {why}")),
            Loaded::Unavailable => waiting = waiting.or(Some(dep)),
        }
    }
    match waiting {
        Some(dep) => Deps::Waiting(dep),
        None => Deps::Ready(results),
    }
}

/// Dependencies judged for a task that runs once each has ended, whatever
/// its outcome (a batch's callback, docs/processing.md §2.5, §2.23): ready
/// when none is unfinished, with a completed one's result and `None` for
/// one that failed, was discarded, is missing or unusable (none of them
/// will ever run again by itself); otherwise waiting for the first
/// unfinished one. Nothing makes it fail.
fn judge_any_outcome(task: &Task, loaded: Vec<(String, Loaded)>) -> Deps {
    let mut results = BTreeMap::new();
    for (dep, l) in loaded {
        if l.unfinished() {
            return Deps::Waiting(dep);
        }
        if task.load_dependencies {
            let result = match l {
                Loaded::Task(d) if d.state == TaskState::Complete => d.result,
                _ => None,
            };
            results.insert(dep, result);
        }
    }
    Deps::Ready(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00:00 UTC);

    #[test]
    fn delayed_tasks_wait_until_due() {
        let q = Queue::new("Q");
        let now = OffsetDateTime::now_utc();
        let mut t = task(TaskState::New);
        t.run_at = Some(now + Duration::from_secs(30));
        assert!(matches!(gate(&t, &q, now), Gate::NotDue(d) if d > Duration::from_secs(29)));
        // within the tolerance, or past due: runs
        t.run_at = Some(now + Duration::from_millis(500));
        assert_eq!(gate(&t, &q, now), Gate::Run { stale: false });
        t.run_at = Some(now - Duration::from_secs(5));
        assert_eq!(gate(&t, &q, now), Gate::Run { stale: false });
        // a task already tried is not held again
        t.run_at = Some(now + Duration::from_secs(30));
        t.tries = 1;
        assert_eq!(gate(&t, &q, now), Gate::Run { stale: false });
    }

    fn task(state: TaskState) -> Task {
        let mut t = Task::new("t", &()).unwrap();
        t.state = state;
        t
    }

    fn queue() -> Queue {
        Queue::new("Q").max_run_time(Duration::from_secs(60))
    }

    #[test]
    fn new_and_retry_run() {
        for s in [TaskState::New, TaskState::Retry, TaskState::Blocked] {
            assert_eq!(gate(&task(s), &queue(), NOW), Gate::Run { stale: false });
        }
    }

    #[test]
    fn finished_states_are_not_run() {
        for s in [
            TaskState::Complete,
            TaskState::Expired,
            TaskState::Unreachable,
        ] {
            assert_eq!(gate(&task(s), &queue(), NOW), Gate::AlreadyDone);
        }
        for s in [TaskState::Terminated, TaskState::QueueError] {
            assert_eq!(gate(&task(s), &queue(), NOW), Gate::Final);
        }
    }

    #[test]
    fn active_within_lease_waits_for_the_rest_of_it() {
        let mut t = task(TaskState::Active);
        t.tried = Some(NOW - Duration::from_secs(20));
        assert_eq!(
            gate(&t, &queue(), NOW),
            Gate::LeaseHeld(Duration::from_secs(42))
        );
        // a clock behind the task's: the whole lease remains
        t.tried = Some(NOW + Duration::from_secs(5));
        assert_eq!(gate(&t, &queue(), NOW), Gate::LeaseHeld(lease(&queue())));
    }

    #[test]
    fn active_past_lease_runs_again() {
        let mut t = task(TaskState::Active);
        t.tried = Some(NOW - Duration::from_secs(62));
        assert_eq!(gate(&t, &queue(), NOW), Gate::Run { stale: true });
        t.tried = None;
        assert_eq!(gate(&t, &queue(), NOW), Gate::Run { stale: true });
    }

    #[test]
    fn zero_run_time_means_one_hour() {
        let mut t = task(TaskState::Active);
        t.tried = Some(NOW - Duration::from_secs(3000));
        assert!(matches!(
            gate(&t, &Queue::new("Q"), NOW),
            Gate::LeaseHeld(_)
        ));
    }

    #[test]
    fn deadline_then_tries() {
        let mut t = task(TaskState::New);
        t.deadline = Some(NOW - Duration::from_secs(1));
        t.tries = 99;
        t.max_tries = 1;
        assert_eq!(gate(&t, &queue(), NOW), Gate::Expire(Expiry::PastDeadline));
        t.deadline = Some(NOW + Duration::from_secs(1));
        assert_eq!(gate(&t, &queue(), NOW), Gate::Expire(Expiry::MaxTries));
        // a stale active task is also judged by deadline and tries
        t.state = TaskState::Active;
        assert_eq!(
            gate(&t, &queue(), NOW),
            Gate::Expire(Expiry::MaxTriesAbandoned)
        );
    }

    #[test]
    fn queue_max_tries_caps_the_task() {
        let mut t = task(TaskState::Retry);
        t.max_tries = 10;
        t.tries = 3;
        assert_eq!(
            gate(&t, &queue().max_tries(3), NOW),
            Gate::Expire(Expiry::MaxTries)
        );
        assert_eq!(gate(&t, &queue(), NOW), Gate::Run { stale: false });
        t.max_tries = 0;
        t.tries = 1000;
        assert_eq!(gate(&t, &queue(), NOW), Gate::Run { stale: false });
    }

    #[test]
    fn blocked_with_dependencies_checks_them() {
        let mut t = task(TaskState::Blocked);
        t.dependencies = vec!["a".into()];
        assert_eq!(gate(&t, &queue(), NOW), Gate::CheckDependencies);
    }

    fn failed(d: Deps) -> String {
        match d {
            Deps::Failed(why) => why,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn dependency_verdicts() {
        let mut t = task(TaskState::Blocked);
        t.load_dependencies = true;
        let done = |id: &str| {
            (
                id.to_string(),
                Loaded::Task(Box::new(task(TaskState::Complete))),
            )
        };
        assert!(matches!(
            judge_dependencies(&t, vec![done("a"), done("b")]),
            Deps::Ready(r) if r.len() == 2
        ));
        assert!(matches!(
            judge_dependencies(
                &t,
                vec![
                    done("a"),
                    ("b".into(), Loaded::Task(Box::new(task(TaskState::Active))))
                ]
            ),
            Deps::Waiting(d) if d == "b"
        ));
        assert!(matches!(
            judge_dependencies(&t, vec![("b".into(), Loaded::Unavailable), done("a")]),
            Deps::Waiting(d) if d == "b"
        ));
        assert_eq!(
            failed(judge_dependencies(
                &t,
                vec![
                    ("b".into(), Loaded::Unavailable),
                    ("c".into(), Loaded::Task(Box::new(task(TaskState::Expired))))
                ]
            )),
            "dependency c is in state expired"
        );
        assert_eq!(
            failed(judge_dependencies(
                &t,
                vec![("u".into(), Loaded::Task(Box::new(task(TaskState::Unknown))))]
            )),
            "dependency u is in an unknown state"
        );
        assert_eq!(
            failed(judge_dependencies(&t, vec![("x".into(), Loaded::NotFound)])),
            "task not found: x"
        );
        assert_eq!(
            failed(judge_dependencies(
                &t,
                vec![("s".into(), Loaded::Unusable("bad signature".into()))]
            )),
            "dependency s: bad signature"
        );
        // a discarded dependency counts by its marker; its result is gone
        match judge_dependencies(
            &t,
            vec![
                done("a"),
                ("d".into(), Loaded::Discarded(TaskState::Complete)),
            ],
        ) {
            Deps::Ready(r) => {
                assert_eq!(r.len(), 2);
                assert!(r["d"].is_none());
            }
            other => panic!("expected ready, got {other:?}"),
        }
        assert_eq!(
            failed(judge_dependencies(
                &t,
                vec![("d".into(), Loaded::Discarded(TaskState::Expired))]
            )),
            "dependency d is in state expired (its record was discarded)"
        );
        t.load_dependencies = false;
        assert!(matches!(judge_dependencies(&t, vec![done("a")]), Deps::Ready(r) if r.is_empty()));
    }

    /// A completed dependency with a result saying `who`.
    fn completed(who: &str) -> Loaded {
        let mut d = task(TaskState::Complete);
        d.result = Some(TaskResult {
            payload: serde_json::value::to_raw_value(who).unwrap(),
            completed: NOW,
        });
        Loaded::Task(Box::new(d))
    }

    #[test]
    fn any_outcome_runs_once_every_dependency_ended() {
        let mut t = task(TaskState::Blocked);
        t.load_dependencies = true;
        t.dependencies_any_outcome = true;
        let state = |s| Loaded::Task(Box::new(task(s)));
        // every final state, a discarded or missing record and an
        // unusable one have ended: ready, the failed ones as None
        let ended = vec![
            ("a".to_string(), completed("a")),
            ("e".into(), state(TaskState::Expired)),
            ("t".into(), state(TaskState::Terminated)),
            ("u".into(), state(TaskState::Unreachable)),
            ("q".into(), state(TaskState::QueueError)),
            ("x".into(), state(TaskState::Unknown)),
            ("dc".into(), Loaded::Discarded(TaskState::Complete)),
            ("de".into(), Loaded::Discarded(TaskState::Expired)),
            ("n".into(), Loaded::NotFound),
            ("s".into(), Loaded::Unusable("bad signature".into())),
        ];
        match judge_dependencies(&t, ended) {
            Deps::Ready(r) => {
                assert_eq!(r.len(), 10);
                assert_eq!(r["a"].as_ref().unwrap().payload.get(), r#""a""#);
                for failed in ["e", "t", "u", "q", "x", "dc", "de", "n", "s"] {
                    assert!(r[failed].is_none(), "{failed}");
                }
            }
            other => panic!("expected ready, got {other:?}"),
        }
        // a failure before an unfinished one does not end it: it waits
        for unfinished in [
            TaskState::New,
            TaskState::Blocked,
            TaskState::Active,
            TaskState::Retry,
        ] {
            assert!(matches!(
                judge_dependencies(
                    &t,
                    vec![
                        ("e".into(), state(TaskState::Expired)),
                        ("w".into(), state(unfinished)),
                        ("n".into(), Loaded::NotFound),
                    ]
                ),
                Deps::Waiting(d) if d == "w"
            ));
        }
        assert!(matches!(
            judge_dependencies(&t, vec![("a".into(), completed("a")), ("w".into(), Loaded::Unavailable)]),
            Deps::Waiting(d) if d == "w"
        ));
        // without load_dependencies nothing is collected
        t.load_dependencies = false;
        assert!(matches!(
            judge_dependencies(&t, vec![("e".into(), state(TaskState::Expired))]),
            Deps::Ready(r) if r.is_empty()
        ));
        // Go's rule is unchanged without the flag
        t.dependencies_any_outcome = false;
        assert_eq!(
            failed(judge_dependencies(
                &t,
                vec![("e".into(), state(TaskState::Expired))]
            )),
            "dependency e is in state expired"
        );
    }

    #[test]
    fn unfinished_dependencies() {
        let state = |s| Loaded::Task(Box::new(task(s)));
        for s in [
            TaskState::New,
            TaskState::Blocked,
            TaskState::Active,
            TaskState::Retry,
        ] {
            assert!(state(s).unfinished(), "{s}");
        }
        for s in [
            TaskState::Complete,
            TaskState::Expired,
            TaskState::Terminated,
            TaskState::Unreachable,
            TaskState::QueueError,
            TaskState::Unknown,
        ] {
            assert!(!state(s).unfinished(), "{s}");
        }
        assert!(Loaded::Unavailable.unfinished());
        assert!(!Loaded::NotFound.unfinished());
        assert!(!Loaded::Discarded(TaskState::Complete).unfinished());
        assert!(!Loaded::Unusable("x".into()).unfinished());
    }
}
