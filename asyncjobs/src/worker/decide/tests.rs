//! The decision table, one situation a test: what each delivery leads to,
//! without a server.

use super::*;
use crate::handler::HandlerError;
use crate::worker::outcome::MAX_LAST_ERR;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-06 12:00:00 UTC);

fn task(state: TaskState) -> Task {
    let mut t = Task::new("t", &()).unwrap();
    t.state = state;
    t
}

fn queue() -> Queue {
    Queue::new("Q").max_run_time(Duration::from_secs(60))
}

fn gate(t: &Task, q: &Queue, delivered: u64) -> Action {
    before_run(t, Ok(()), q, NOW, delivered)
}

fn ending(action: Action) -> Ending {
    match action {
        Action::End(e) => e,
        other => panic!("expected the task to end, got {other:?}"),
    }
}

fn item(action: Action) -> ItemAction {
    match action {
        Action::Item(a) => a,
        other => panic!("expected an item action, got {other:?}"),
    }
}

#[test]
fn a_message_that_is_not_a_work_item_is_dropped_with_its_body() {
    assert_eq!(
        on_item("CHORIA_AJ.Q.Q.x", br#"{"kind":0,"job":"abc"}"#).unwrap(),
        "abc"
    );
    match on_item("CHORIA_AJ.Q.Q.x", b"garbage") {
        Err(ItemAction::Drop(Unusable::Corrupt { subject, body, .. })) => {
            assert_eq!(subject, "CHORIA_AJ.Q.Q.x");
            assert_eq!(body, "garbage");
        }
        other => panic!("expected a corrupt item, got {other:?}"),
    }
    assert!(matches!(
        on_item("s", b""),
        Err(ItemAction::Drop(Unusable::Corrupt {
            error: ItemError::Empty,
            ..
        }))
    ));
}

#[test]
fn a_task_that_can_never_load_drops_its_item_and_a_transient_failure_naks() {
    for e in [
        Error::TaskNotFound("x".into()),
        Error::TaskIdInvalid("a b".into()),
        Error::InvalidTaskRecord {
            id: "x".into(),
            reason: "bad".into(),
        },
    ] {
        assert!(matches!(
            on_load(Err(e), 1),
            Err(ItemAction::Drop(Unusable::NoTask(_)))
        ));
    }
    let transient = on_load(Err(Error::StorageNotReady("electing".into())), 3);
    match transient {
        // the transient backoff, jittered
        Err(ItemAction::Nak(delay, Busy::LoadFailed(_))) => assert!(
            (Duration::from_millis(1)..Duration::from_secs(11)).contains(&delay),
            "{delay:?}"
        ),
        other => panic!("expected a NAK, got {other:?}"),
    }
    assert!(on_load(Ok(task(TaskState::New)), 1).is_ok());
}

#[test]
fn a_bad_signature_terminates_before_any_gate() {
    let t = task(TaskState::Complete);
    let e = ending(before_run(
        &t,
        Err(Error::Config("signature mismatch".into())),
        &queue(),
        NOW,
        1,
    ));
    assert_eq!(e.state, TaskState::Terminated);
    assert_eq!(e.why, EndReason::BadSignature);
    assert!(e.last_err.contains("signature mismatch"), "{}", e.last_err);
}

#[test]
fn waiting_and_finished_tasks_run_or_settle() {
    for s in [TaskState::New, TaskState::Retry, TaskState::Blocked] {
        assert!(matches!(
            gate(&task(s), &queue(), 1),
            Action::Run {
                stale: false,
                replace_first: false
            }
        ));
    }
    for s in [
        TaskState::Complete,
        TaskState::Expired,
        TaskState::Unreachable,
    ] {
        assert!(matches!(
            item(gate(&task(s), &queue(), 1)),
            ItemAction::Ack(Settled::AlreadyDone(state)) if state == s
        ));
    }
    for s in [TaskState::Terminated, TaskState::QueueError] {
        assert!(matches!(
            item(gate(&task(s), &queue(), 1)),
            ItemAction::Ack(Settled::Final(state)) if state == s
        ));
    }
}

#[test]
fn the_last_delivery_is_replaced_before_a_try() {
    let q = queue().max_tries(5);
    let t = task(TaskState::Retry);
    for (delivered, replace) in [(1, false), (4, false), (5, true), (9, true)] {
        assert!(
            matches!(gate(&t, &q, delivered), Action::Run { replace_first, .. } if replace_first == replace),
            "delivery {delivered}"
        );
    }
    // no limit, or the first delivery: nothing to replace
    assert!(matches!(
        gate(&t, &queue().max_tries(1), 1),
        Action::Run {
            replace_first: false,
            ..
        }
    ));
    assert!(matches!(
        gate(&t, &queue(), 1000),
        Action::Run {
            replace_first: false,
            ..
        }
    ));
}

#[test]
fn a_held_lease_naks_for_its_rest_and_a_stale_one_runs_again() {
    let mut t = task(TaskState::Active);
    t.tried = Some(NOW - Duration::from_secs(20));
    match item(gate(&t, &queue(), 1)) {
        ItemAction::Nak(delay, Busy::LeaseHeld(rest)) => {
            assert_eq!(rest, Duration::from_secs(42));
            assert_eq!(delay, Duration::from_millis(42_050));
        }
        other => panic!("expected a NAK, got {other:?}"),
    }
    t.tried = Some(NOW - Duration::from_secs(62));
    assert!(matches!(
        gate(&t, &queue(), 1),
        Action::Run { stale: true, .. }
    ));
}

#[test]
fn a_delayed_task_waits_until_due() {
    let mut t = task(TaskState::New);
    t.run_at = Some(NOW + Duration::from_secs(30));
    assert!(matches!(
        item(gate(&t, &queue(), 1)),
        ItemAction::Wait(d, Waiting::NotDue) if d == Duration::from_secs(30)
    ));
}

#[test]
fn deadlines_and_tries_expire_at_delivery() {
    let mut t = task(TaskState::New);
    t.deadline = Some(NOW - Duration::from_secs(1));
    let e = ending(gate(&t, &queue(), 1));
    assert_eq!(
        (e.state, e.why, e.last_err.as_str()),
        (
            TaskState::Expired,
            EndReason::Expired(Expiry::PastDeadline),
            "past deadline"
        )
    );
    t.deadline = None;
    t.max_tries = 2;
    t.tries = 2;
    let e = ending(gate(&t, &queue(), 1));
    assert_eq!(e.why, EndReason::Expired(Expiry::MaxTries));
    assert_eq!(e.tried, None);
}

#[test]
fn dependencies_run_wait_or_make_the_task_unreachable() {
    let mut t = task(TaskState::Blocked);
    t.dependencies = vec!["a".into()];
    assert!(matches!(gate(&t, &queue(), 1), Action::CheckDependencies));
    let poll = Duration::from_secs(5);
    assert!(after_dependencies(Deps::Ready(BTreeMap::new()), poll, NOW).is_ok());
    assert!(matches!(
        after_dependencies(Deps::Waiting("d".into()), poll, NOW),
        Err(Action::Item(ItemAction::Wait(d, Waiting::Dependencies(dep)))) if d == poll && dep == "d"
    ));
    let e = ending(
        after_dependencies(
            Deps::Failed("dependency a is in state expired".into()),
            poll,
            NOW,
        )
        .unwrap_err(),
    );
    assert_eq!(e.state, TaskState::Unreachable);
    assert_eq!(
        e.last_err,
        "task dependencies failed: dependency a is in state expired"
    );
    assert_eq!(e.tried, Some(NOW));
    assert_eq!(e.why, EndReason::Unreachable);
}

#[test]
fn a_failed_active_save_naks_or_ends_the_task() {
    assert!(matches!(
        on_active_not_saved(Error::ConcurrentUpdate("x".into()), 7),
        Action::Item(ItemAction::Nak(d, Busy::ActiveNotSaved(_))) if d == CONFLICT_DELAY
    ));
    assert!(matches!(
        on_active_not_saved(Error::StorageNotReady("no leader".into()), 2),
        Action::Item(ItemAction::Nak(d, Busy::ActiveNotSaved(_)))
            if (Duration::from_millis(1)..Duration::from_secs(11)).contains(&d)
    ));
    let too_large = Error::PayloadTooLarge {
        what: "task record",
        size: 2_000_000,
        max: 1_048_576,
    };
    assert!(too_large.is_permanent());
    assert!(matches!(
        on_active_not_saved(too_large, 1),
        Action::Unsaveable(_)
    ));
}

#[test]
fn outcomes_complete_terminate_hand_back_or_fail() {
    let mut t = task(TaskState::Active);
    t.tries = 1;
    let q = queue().max_tries(3);
    let output = serde_json::value::RawValue::from_string("42".into()).unwrap();
    match after_run(Outcome::Done(Ok(output)), &t, &q, NOW) {
        Action::Complete(r) => {
            assert_eq!(r.payload.get(), "42");
            assert_eq!(r.completed, NOW);
        }
        other => panic!("expected completion, got {other:?}"),
    }
    let e = ending(after_run(
        Outcome::Done(Err(HandlerError::terminate("bad input"))),
        &t,
        &q,
        NOW,
    ));
    assert_eq!(
        (e.state, e.why, e.last_err.as_str()),
        (TaskState::Terminated, EndReason::Terminated, "bad input")
    );
    // a payload that does not decode was terminated by the framework
    let undecodable = crate::handler::decode_payload::<u32>(&t).unwrap_err();
    let e = ending(after_run(Outcome::Done(Err(undecodable)), &t, &q, NOW));
    assert_eq!(
        (e.state, e.why),
        (TaskState::Terminated, EndReason::UndecodablePayload)
    );
    assert!(e.last_err.starts_with("invalid payload for task type"));
    assert!(matches!(
        after_run(Outcome::Shutdown, &t, &q, NOW),
        Action::HandBack
    ));
    // a try stopped by a cancel ends terminated, whatever it returned; the
    // cancel's own record normally stands (processing.md §2.16)
    let e = ending(after_run(Outcome::Cancelled, &t, &q, NOW));
    assert_eq!(
        (e.state, e.why, e.last_err.as_str()),
        (
            TaskState::Terminated,
            EndReason::Cancelled,
            CANCELLED_BY_NOTICE
        )
    );
}

#[test]
fn a_failed_try_retries_until_the_smaller_limit_then_expires() {
    let q = queue().max_tries(3);
    let mut t = task(TaskState::Active);
    t.max_tries = 10;
    t.tries = 2;
    let failed = |t: &Task, outcome| match after_run(outcome, t, &q, NOW) {
        Action::Failed {
            last_err,
            expired,
            failed,
        } => (last_err, expired, failed),
        other => panic!("expected a failed try, got {other:?}"),
    };
    let (err, expired, how) = failed(
        &t,
        Outcome::Done(Err(HandlerError::retry_after(
            "busy",
            Duration::from_secs(9),
        ))),
    );
    assert_eq!((err.as_str(), expired), ("busy", false));
    assert_eq!(how.delay, Some(Duration::from_secs(9)));
    t.tries = 3;
    let (err, expired, _) = failed(&t, Outcome::Panicked("boom".into()));
    assert_eq!((err.as_str(), expired), ("handler panicked: boom", true));
    let (err, _, _) = failed(&t, Outcome::TimedOut);
    assert_eq!(err, "handler exceeded the queue's max run time of 60s");
    // a handler's long error is cut so the record can be saved
    let long = "x".repeat(MAX_LAST_ERR * 2);
    let (err, _, _) = failed(&t, Outcome::Done(Err(HandlerError::retry(long))));
    assert!(err.len() < MAX_LAST_ERR + 40);
}

#[test]
fn a_handler_time_out_is_a_failed_try_that_names_the_handler_and_its_time_out() {
    let q = queue().max_tries(3);
    let mut t = Task::new("image:resize", &()).unwrap();
    t.state = TaskState::Active;
    t.max_tries = 10;
    t.tries = 1;
    let timeout = Duration::from_secs(30);
    match after_run(Outcome::HandlerTimedOut(timeout), &t, &q, NOW) {
        Action::Failed {
            last_err,
            expired,
            failed,
        } => {
            assert_eq!(
                last_err,
                "handler \"image:resize\" exceeded its time-out of 30s"
            );
            assert!(!expired, "tries are left: retried");
            // the retry policy's backoff, as for any other failure
            assert_eq!(failed.delay, None);
            assert!(!failed.no_handler);
        }
        other => panic!("expected a failed try, got {other:?}"),
    }
    // distinct from the queue's run time, which names the queue's value
    match after_run(Outcome::TimedOut, &t, &q, NOW) {
        Action::Failed { last_err, .. } => {
            assert_eq!(last_err, "handler exceeded the queue's max run time of 60s")
        }
        other => panic!("expected a failed try, got {other:?}"),
    }
    // on the last try allowed it expires; durations in Go's notation
    t.tries = 3;
    match after_run(
        Outcome::HandlerTimedOut(Duration::from_millis(1500)),
        &t,
        &q,
        NOW,
    ) {
        Action::Failed {
            last_err, expired, ..
        } => {
            assert_eq!(
                last_err,
                "handler \"image:resize\" exceeded its time-out of 1.5s"
            );
            assert!(expired, "no tries left: expired");
        }
        other => panic!("expected a failed try, got {other:?}"),
    }
}

fn unrouted(wait: Duration) -> Unrouted<'static> {
    Unrouted {
        queue: "Q",
        handles: "\"email:new\", \"order:confirm\"",
        suggestion: Some("email:new"),
        wait,
    }
}

fn passed_on(action: Action) -> (Duration, String) {
    match action {
        Action::Unhandled { delay, note } => (delay, note),
        other => panic!("expected the task to be passed on, got {other:?}"),
    }
}

#[test]
fn a_task_no_route_takes_is_passed_on_with_a_growing_wait_then_expires() {
    let hour = Duration::from_secs(3600);
    let known = unrouted(hour);
    let mut t = Task::new("emial:new", &()).unwrap();
    t.created = NOW - time::Duration::hours(5);

    // first seen: the wait starts now, whatever the task's age
    let (delay, note) = passed_on(unhandled(&t, &known, NOW, false));
    assert_eq!(delay, UNHANDLED_MIN_WAIT);
    assert_eq!(
        note,
        "waiting for a worker of queue Q that handles task type \"emial:new\" (a worker handling \"email:new\", \"order:confirm\" passed it on: did you mean \"email:new\"?); it expires unless one takes it by 2026-12-06T13:00:00Z"
    );

    // the note holds the bound: later deliveries wait longer, up to a minute
    t.last_err = note.clone();
    let at = |secs: i64| NOW + time::Duration::seconds(secs);
    assert_eq!(
        passed_on(unhandled(&t, &known, at(10), false)),
        (Duration::from_secs(5), note.clone())
    );
    assert_eq!(
        passed_on(unhandled(&t, &known, at(600), false)).0,
        UNHANDLED_MAX_WAIT
    );
    // the last wait ends just past the bound
    assert_eq!(
        passed_on(unhandled(&t, &known, at(3600 - 20), false)).0,
        Duration::from_millis(20_100)
    );

    // past the bound: expired, unless a live worker announces the type
    let end = ending(unhandled(&t, &known, at(3600), false));
    assert_eq!(end.state, TaskState::Expired);
    assert_eq!(end.why, EndReason::Unhandled);
    assert_eq!(end.tried, None);
    assert_eq!(
        end.last_err,
        "no worker of queue Q handles task type \"emial:new\" (waited 1h0m0s; this worker handles: \"email:new\", \"order:confirm\"); did you mean \"email:new\"?"
    );
    assert_eq!(
        passed_on(unhandled(&t, &known, at(3600), true)),
        (UNHANDLED_MAX_WAIT, note)
    );

    // active past its lease (no note is saved on it): from its last try
    let mut stale = task(TaskState::Active);
    stale.created = NOW - time::Duration::hours(3);
    stale.tried = Some(NOW - time::Duration::hours(2));
    assert_eq!(
        unhandled_until(&stale, hour, NOW),
        Some(NOW - time::Duration::hours(1))
    );
    assert_eq!(
        ending(unhandled(&stale, &known, NOW, false)).why,
        EndReason::Unhandled
    );
}

#[test]
fn a_task_with_a_deadline_waits_for_a_handler_until_it() {
    let known = Unrouted {
        suggestion: None,
        ..unrouted(Duration::from_secs(60))
    };
    let mut t = Task::new("image:resize", &()).unwrap();
    t.created = NOW - time::Duration::seconds(30);
    t.deadline = Some(NOW + time::Duration::hours(2));
    assert_eq!(unhandled_until(&t, known.wait, NOW), None);
    // past the worker's wait: still waiting, the deadline decides
    let (delay, note) = passed_on(unhandled(
        &t,
        &known,
        NOW + time::Duration::minutes(5),
        false,
    ));
    assert_eq!(delay, UNHANDLED_MAX_WAIT);
    assert!(
        note.ends_with(
            "passed it on); it expires unless one takes it by its deadline 2026-12-06T14:00:00Z"
        ),
        "{note}"
    );
    // the last wait ends just past the deadline
    let (delay, _) = passed_on(unhandled(
        &t,
        &known,
        NOW + time::Duration::seconds(7199),
        false,
    ));
    assert_eq!(delay, Duration::from_millis(1100));

    // at the deadline the gate ends it, naming what it waited for
    t.last_err = note;
    let mut action = gate(&t, &queue(), 1);
    assert!(matches!(action, Action::Run { .. }));
    let mut late = t.clone();
    late.deadline = Some(NOW - time::Duration::seconds(1));
    action = gate(&late, &queue(), 1);
    past_deadline_while_unhandled(&mut action, &late);
    assert_eq!(
        ending(action).last_err,
        "past deadline while waiting for a worker of queue Q that handles task type \"image:resize\" (a worker handling \"email:new\", \"order:confirm\" passed it on)"
    );
    // any other task's deadline reads as before
    let mut other = late.clone();
    other.last_err = "boom".into();
    let mut action = gate(&other, &queue(), 1);
    past_deadline_while_unhandled(&mut action, &other);
    assert_eq!(ending(action).last_err, "past deadline");
    assert_eq!(waited_for("boom"), None);
}
