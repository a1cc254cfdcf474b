//! Scheduled tasks, the task scheduler and leader election against a real
//! nats-server: storage and validation, cadence, live add/update/delete,
//! Go-written schedules, fail-over without double fires, and the election
//! on the real `CHORIA_AJ_ELECTIONS` bucket.

use async_nats::jetstream::{self, kv};
use asyncjobs::election::{Election, ElectionError, ElectionOptions};
use asyncjobs::events::{parse_event, Event};
use asyncjobs::{
    PayloadEncoding, Queue, Router, ScheduleError, ScheduledTask, Scheduler, Task, TaskContext,
    TaskState,
};
use asyncjobs_tests::{client, fast_retry, golden, js_api, wait_for, NatsServer};
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(15);

struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), ScheduleError>>,
}

impl Running {
    async fn stop(self) -> Result<(), ScheduleError> {
        self.stop.cancel();
        self.handle.await.expect("scheduler task")
    }
}

fn start(scheduler: &Scheduler) -> Running {
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let (s, stop) = (scheduler.clone(), stop.clone());
        async move { s.run(stop).await }
    });
    Running { stop, handle }
}

/// Task ids (with the time they were seen) of every `new` state event of one task type.
#[derive(Clone, Default)]
struct Created(Arc<Mutex<Vec<(String, OffsetDateTime)>>>);

impl Created {
    async fn watch(nc: &async_nats::Client, task_type: &str) -> Created {
        let created = Created::default();
        let mut sub = nc
            .subscribe("CHORIA_AJ.E.task_state.*")
            .await
            .expect("subscribe");
        nc.flush().await.expect("flush");
        let (seen, task_type) = (created.0.clone(), task_type.to_string());
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Ok(Event::TaskState(e)) = parse_event(&msg.payload) {
                    if e.task_type == task_type && e.state == TaskState::New {
                        seen.lock()
                            .unwrap()
                            .push((e.task_id, OffsetDateTime::now_utc()));
                    }
                }
            }
        });
        created
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn ids(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn all(&self) -> Vec<(String, OffsetDateTime)> {
        self.0.lock().unwrap().clone()
    }

    async fn at_least(&self, n: usize, what: &str) -> Vec<String> {
        wait_for(T, what, || async { (self.len() >= n).then(|| self.ids()) }).await
    }
}

/// Names in every leader elected event.
#[derive(Clone, Default)]
struct Leaders(Arc<Mutex<Vec<String>>>);

impl Leaders {
    async fn watch(nc: &async_nats::Client) -> Leaders {
        let leaders = Leaders::default();
        let mut sub = nc
            .subscribe("CHORIA_AJ.E.leader_election.>")
            .await
            .expect("subscribe");
        nc.flush().await.expect("flush");
        let seen = leaders.0.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                assert_eq!(
                    msg.subject.as_str(),
                    "CHORIA_AJ.E.leader_election.task_scheduler"
                );
                match parse_event(&msg.payload) {
                    Ok(Event::LeaderElected(e)) => {
                        assert_eq!(e.component, "task_scheduler");
                        assert_eq!(e.event_id.len(), 27);
                        seen.lock().unwrap().push(e.name);
                    }
                    other => panic!("unexpected leader event {other:?}"),
                }
            }
        });
        leaders
    }

    fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// The time encoded in a KSUID (seconds since the Unix epoch).
fn ksuid_seconds(id: &str) -> i64 {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n: u128 = 0;
    let mut hi: u128 = 0; // the top 32 bits of the 160-bit value
    for c in id.bytes() {
        let d = ALPHABET.iter().position(|&a| a == c).expect("base62") as u128;
        // (hi:n) = (hi:n) * 62 + d, with n the low 128 bits
        let low = (n & u64::MAX as u128) * 62 + d;
        let mid = (n >> 64) * 62 + (low >> 64);
        hi = hi * 62 + (mid >> 64);
        n = ((mid & u64::MAX as u128) << 64) | (low & u64::MAX as u128);
    }
    hi as i64 + 1_400_000_000
}

fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for family in asyncjobs::metrics::registry().gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if matches {
                // one of the two is the metric's, the other reads 0
                return Some(m.get_counter().get_value() + m.get_gauge().get_value());
            }
        }
    }
    None
}

fn read_golden(name: &str) -> String {
    std::fs::read_to_string(golden(name))
        .unwrap_or_else(|e| panic!("reading golden {name}: {e}"))
        .trim_end()
        .to_string()
}

#[test]
fn golden_scheduled_task_decodes_and_re_encodes() {
    let raw = read_golden("scheduled_task.json");
    let st = ScheduledTask::from_json(raw.as_bytes()).unwrap();
    assert_eq!(st.name, "golden_schedule");
    assert_eq!(st.schedule, "*/5 * * * *");
    assert_eq!(st.queue, "DEFAULT");
    assert_eq!(st.task_type, "golden:sched");
    assert_eq!(st.payload.as_deref(), Some(&br#"{"scheduled":true}"#[..]));
    assert_eq!(st.deadline, Duration::from_secs(300));
    assert_eq!(st.max_tries, 3);
    assert_eq!(
        asyncjobs::wire::format_time(&st.created_at),
        "2026-11-28T12:23:23.030720962Z"
    );
    // written by Go: its tasks get what the Go scheduler gives them
    assert_eq!(st.payload_encoding, PayloadEncoding::Go);
    assert_eq!(
        st.task_payload().unwrap(),
        br#""eyJzY2hlZHVsZWQiOnRydWV9""#.to_vec()
    );
    st.validate().unwrap();
    assert_eq!(String::from_utf8(st.to_json()).unwrap(), raw);

    // the KV message carries the same document
    let msg: Value = serde_json::from_str(&read_golden("scheduled_task.msg.json")).unwrap();
    assert_eq!(
        msg["subject"],
        format!("$KV.CHORIA_AJ_CONFIGURATION.{}", st.key())
    );
    assert_eq!(
        ScheduledTask::from_json(msg["data"].to_string().as_bytes()).unwrap(),
        st
    );

    // older records with capitalised keys
    let legacy = ScheduledTask::from_json(
        br#"{"name":"old","schedule":"@hourly","queue":"Q","task_type":"t","payload":null,"Deadline":60000000000,"MaxTries":4,"created_at":"2022-02-09T17:28:41Z","unknown":true}"#,
    )
    .unwrap();
    assert_eq!(legacy.deadline, Duration::from_secs(60));
    assert_eq!(legacy.max_tries, 4);
    assert_eq!(legacy.task_payload().unwrap(), b"null".to_vec());

    // records made here say so, and keep Go's key order before the extra key
    let template = Task::builder("t")
        .payload(&json!({"a": 1}))
        .build()
        .unwrap();
    let ours = ScheduledTask::new("ours", "@daily", "Q", &template).unwrap();
    let v: Value = serde_json::from_slice(&ours.to_json()).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "name",
            "schedule",
            "queue",
            "task_type",
            "payload",
            "max_tries",
            "created_at",
            "payload_encoding"
        ]
    );
    assert_eq!(v["payload_encoding"], "raw");
    assert_eq!(ours.task_payload().unwrap(), br#"{"a":1}"#.to_vec());
    assert_eq!(ScheduledTask::from_json(&ours.to_json()).unwrap(), ours);
}

#[test]
fn invalid_schedules_are_rejected_with_clear_errors() {
    let t = Task::builder("t").build().unwrap();
    let cases = [
        ("", "@daily", "Q", "name is required"),
        (
            "bad name",
            "@daily",
            "Q",
            "name is invalid: must match ^[a-zA-Z0-9_:-]+$",
        ),
        (
            "a:b",
            "@daily",
            "Q",
            "name is invalid: \"a:b\" contains ':'",
        ),
        ("n", "", "Q", "schedule is required"),
        ("n", "@daily", "", "queue name is required"),
        // validation order: the name is checked first
        ("bad name", "", "", "name is invalid"),
        (
            "n",
            "* * * * 7",
            "Q",
            "invalid cron schedule: end of range (7) above maximum (6): 7",
        ),
        (
            "n",
            "0 * * * * *",
            "Q",
            "invalid cron schedule: expected exactly 5 fields, found 6",
        ),
        (
            "n",
            "* * *",
            "Q",
            "invalid cron schedule: expected exactly 5 fields, found 3",
        ),
        (
            "n",
            "* * L * *",
            "Q",
            "invalid cron schedule: failed to parse int from L",
        ),
        (
            "n",
            "*/0 * * * *",
            "Q",
            "invalid cron schedule: step of range should be a positive number: */0",
        ),
        (
            "n",
            "@every 1x",
            "Q",
            "invalid cron schedule: failed to parse duration @every 1x: time: unknown unit \"x\"",
        ),
        (
            "n",
            "@sometimes",
            "Q",
            "invalid cron schedule: unrecognized descriptor: @sometimes",
        ),
        (
            "n",
            "TZ=Mars/Olympus_Mons 0 * * * *",
            "Q",
            "invalid cron schedule: provided bad location Mars/Olympus_Mons",
        ),
    ];
    for (name, spec, queue, want) in cases {
        let err = ScheduledTask::new(name, spec, queue, &t).unwrap_err();
        assert!(
            err.to_string().starts_with(want),
            "{name:?} {spec:?} {queue:?}: got {err:?} ({err})"
        );
    }

    let short = Task::builder("t")
        .deadline_in(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = ScheduledTask::new("n", "@daily", "Q", &short).unwrap_err();
    assert!(matches!(err, ScheduleError::DeadlineTooShort(10)), "{err}");
    assert!(err.to_string().starts_with("deadline too short"));
    let ok = Task::builder("t")
        .deadline_in(Duration::from_secs(45))
        .build()
        .unwrap();
    assert_eq!(
        ScheduledTask::new("n", "@daily", "Q", &ok)
            .unwrap()
            .deadline,
        Duration::from_secs(45)
    );

    for spec in [
        "*/5 * * * *",
        "0 9-17 * JAN-jun mon-FRI",
        "? ? ? ? ?",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@every 1h30m",
        "TZ=Europe/Berlin 0 9 * * *",
        "CRON_TZ=America/New_York 0 9 * * *",
    ] {
        ScheduledTask::new("n", spec, "Q", &t).unwrap_or_else(|e| panic!("{spec}: {e}"));
    }
}

#[tokio::test]
async fn scheduled_task_storage() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("SCHED")).await;

    // an empty bucket lists at once (Go waits for a 5 s timeout there)
    let started = Instant::now();
    assert!(client.scheduled_tasks().await.unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(3));

    let template = Task::builder("report:daily")
        .payload(&json!({"format": "pdf"}))
        .deadline_in(Duration::from_secs(120))
        .max_tries(4)
        .build()
        .unwrap();
    let daily = client
        .new_scheduled_task("daily", "0 6 * * *", "SCHED", &template)
        .await
        .unwrap();
    assert_eq!(daily.deadline, Duration::from_secs(120));
    assert_eq!(daily.max_tries, 4);
    assert_eq!(daily.payload.as_deref(), Some(&br#"{"format":"pdf"}"#[..]));
    assert_eq!(daily.payload_encoding, PayloadEncoding::Raw);

    let err = client
        .new_scheduled_task("daily", "@hourly", "SCHED", &template)
        .await
        .unwrap_err();
    assert!(matches!(err, ScheduleError::AlreadyExists(ref n) if n == "daily"));
    assert!(err.to_string().starts_with("scheduled task already exist"));

    assert_eq!(client.load_scheduled_task("daily").await.unwrap(), daily);

    // stored like Go stores it: KV create on the key, Go's JSON
    let nc = client.nats();
    let msg = js_api(
        nc,
        "STREAM.MSG.GET.KV_CHORIA_AJ_CONFIGURATION",
        r#"{"last_by_subj":"$KV.CHORIA_AJ_CONFIGURATION.scheduled_tasks.daily"}"#,
    )
    .await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let hdrs = String::from_utf8(
        b64.decode(msg["message"]["hdrs"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        hdrs.contains("Nats-Expected-Last-Subject-Sequence: 0"),
        "{hdrs}"
    );
    let data = b64
        .decode(msg["message"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(ScheduledTask::from_json(&data).unwrap(), daily);

    let hourly = client
        .new_scheduled_task(
            "hourly",
            "@hourly",
            "OTHER",
            &Task::builder("t").build().unwrap(),
        )
        .await
        .unwrap();
    let names: Vec<String> = client
        .scheduled_tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["daily", "hourly"]);

    // update (put)
    let mut changed = daily.clone();
    changed.schedule = "30 6 * * MON-FRI".into();
    client.update_scheduled_task(&changed).await.unwrap();
    assert_eq!(client.load_scheduled_task("daily").await.unwrap(), changed);
    let mut bad = changed.clone();
    bad.schedule = "30 6 * * 8".into();
    let err = client.update_scheduled_task(&bad).await.unwrap_err();
    assert!(
        matches!(err, ScheduleError::InvalidSchedule { .. }),
        "{err}"
    );
    assert_eq!(client.load_scheduled_task("daily").await.unwrap(), changed);
    // a bad spec never reaches the bucket through create either
    let mut bad_new = hourly.clone();
    bad_new.name = "bad".into();
    bad_new.schedule = "61 * * * *".into();
    assert!(client.create_scheduled_task(&bad_new).await.is_err());
    assert!(matches!(
        client.load_scheduled_task("bad").await,
        Err(ScheduleError::NotFound(_))
    ));
    // issue 14 kind H: a valid spec that can never fire is refused too
    for never in ["0 0 30 2 *", "0 0 31 4 *"] {
        bad_new.schedule = never.into();
        let err = client.create_scheduled_task(&bad_new).await.unwrap_err();
        assert!(err.to_string().contains("never fires"), "{never}: {err}");
    }
    assert!(matches!(
        client.load_scheduled_task("bad").await,
        Err(ScheduleError::NotFound(_))
    ));

    // delete
    client.delete_scheduled_task("daily").await.unwrap();
    assert!(matches!(
        client.load_scheduled_task("daily").await,
        Err(ScheduleError::NotFound(_))
    ));
    assert!(matches!(
        client.delete_scheduled_task("daily").await,
        Err(ScheduleError::NotFound(_))
    ));
    let names: Vec<String> = client
        .scheduled_tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["hourly"]);
    // the name can be used again after a delete
    client.create_scheduled_task(&daily).await.unwrap();
    assert_eq!(client.scheduled_tasks().await.unwrap().len(), 2);
}

#[tokio::test]
async fn every_second_creates_tasks_at_that_cadence() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("CADENCE")).await;
    let created = Created::watch(client.nats(), "cadence:tick").await;
    let scheduler = Scheduler::builder(client.clone(), "cadence")
        .without_election()
        .build();
    let run = start(&scheduler);

    let template = Task::builder("cadence:tick")
        .payload(&json!({"n": 1}))
        .deadline_in(Duration::from_secs(60))
        .max_tries(2)
        .build()
        .unwrap();
    client
        .new_scheduled_task("ticker", "@every 1s", "CADENCE", &template)
        .await
        .unwrap();
    let ids = created.at_least(5, "five scheduled tasks").await;
    let seen = created.all();
    run.stop().await.unwrap();

    let ids = &ids[..5];
    let slots: Vec<i64> = ids.iter().map(|id| ksuid_seconds(id)).collect();
    for w in slots.windows(2) {
        // one task per slot, slots one second apart (a busy machine may skip one)
        assert!(
            (1..=2).contains(&(w[1] - w[0])),
            "slots {slots:?} are not a 1 s cadence"
        );
    }
    assert!(slots[4] - slots[0] <= 5, "slots {slots:?}");
    for (i, id) in ids.iter().enumerate() {
        let task = client.load_task(id).await.unwrap();
        assert_eq!(task.queue, "CADENCE");
        assert_eq!(task.task_type, "cadence:tick");
        // once-encoded payload (the Go scheduler would send a JSON string of base64)
        assert_eq!(task.payload.as_deref(), Some(&br#"{"n":1}"#[..]));
        assert_eq!(task.max_tries, 2);
        let to_deadline = (task.deadline.unwrap() - task.created).as_seconds_f64();
        assert!((59.0..=61.0).contains(&to_deadline), "{to_deadline}");
        // created at its slot, not early and not much later
        let late =
            (task.created.unix_timestamp_nanos() - slots[i] as i128 * 1_000_000_000) as f64 / 1e9;
        assert!(
            (0.0..1.5).contains(&late),
            "task {id} created {late}s after its slot"
        );
        // and seen (event) soon after
        let seen_at = seen.iter().find(|(s, _)| s == id).unwrap().1;
        assert!((seen_at - task.created).as_seconds_f64() < 1.5);
    }
    let counted = gauge(
        "choria_asyncjobs_task_scheduler_scheduled_count",
        &[("type", "cadence:tick"), ("queue", "CADENCE")],
    )
    .unwrap();
    assert!(counted >= 5.0, "scheduled_count {counted}");
}

#[tokio::test]
async fn running_scheduler_follows_adds_updates_and_deletes() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("WATCH")).await;
    let nc = client.nats();
    let (a, b, c) = (
        Created::watch(nc, "watch:a").await,
        Created::watch(nc, "watch:b").await,
        Created::watch(nc, "watch:c").await,
    );
    let scheduler = Scheduler::builder(client.clone(), "watcher")
        .without_election()
        .build();
    let run = start(&scheduler);
    wait_for(T, "scheduler running", || async {
        scheduler.is_leader().then_some(())
    })
    .await;
    assert!(scheduler.schedules().is_empty());

    // add
    let st = client
        .new_scheduled_task(
            "w",
            "@every 1s",
            "WATCH",
            &Task::builder("watch:a").build().unwrap(),
        )
        .await
        .unwrap();
    a.at_least(1, "a task of the added schedule").await;
    assert_eq!(scheduler.schedules(), ["w"]);

    // update: the old entry is replaced, not joined by a second one (docs/go-differences.md §37)
    let mut updated = st.clone();
    updated.task_type = "watch:b".into();
    client.update_scheduled_task(&updated).await.unwrap();
    b.at_least(3, "tasks of the updated schedule").await;
    let first_b = b.all()[0].1;
    let late_a: Vec<_> = a
        .all()
        .into_iter()
        .filter(|(_, at)| *at > first_b + Duration::from_millis(500))
        .collect();
    assert!(late_a.is_empty(), "old schedule still fires: {late_a:?}");
    assert_eq!(scheduler.schedules(), ["w"]);

    // delete
    client.delete_scheduled_task("w").await.unwrap();
    wait_for(T, "schedule removed", || async {
        scheduler.schedules().is_empty().then_some(())
    })
    .await;
    let deleted = OffsetDateTime::now_utc();
    // another schedule ticking twice shows time has passed
    client
        .new_scheduled_task(
            "x",
            "@every 1s",
            "WATCH",
            &Task::builder("watch:c").build().unwrap(),
        )
        .await
        .unwrap();
    c.at_least(2, "tasks of a later schedule").await;
    let late_b: Vec<_> = b
        .all()
        .into_iter()
        .filter(|(_, at)| *at > deleted + Duration::from_millis(500))
        .collect();
    assert!(
        late_b.is_empty(),
        "deleted schedule still fires: {late_b:?}"
    );
    assert_eq!(scheduler.schedules(), ["x"]);
    run.stop().await.unwrap();
    assert!(scheduler.schedules().is_empty());
    assert!(!scheduler.is_leader());
}

/// A paused schedule makes no task while paused (another schedule ticking
/// three times shows time has passed) and makes them again once resumed;
/// the pause is an extra key of the record, and a declaration from code
/// with changed settings keeps it.
#[tokio::test]
async fn a_paused_schedule_fires_nothing_until_resumed() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("PAUSES")).await;
    let nc = client.nats();
    let (p, q) = (
        Created::watch(nc, "pause:p").await,
        Created::watch(nc, "pause:q").await,
    );
    let scheduler = Scheduler::builder(client.clone(), "pauser")
        .without_election()
        .build();
    let run = start(&scheduler);
    let st = client
        .new_scheduled_task(
            "p",
            "@every 1s",
            "PAUSES",
            &Task::builder("pause:p").build().unwrap(),
        )
        .await
        .unwrap();
    p.at_least(1, "a task of the schedule").await;

    let paused = client.pause_scheduled_task("p", true).await.unwrap();
    assert!(paused.paused);
    let at = OffsetDateTime::now_utc();
    let stored = client.load_scheduled_task("p").await.unwrap();
    assert!(stored.paused);
    assert!(String::from_utf8(stored.to_json())
        .unwrap()
        .contains(r#""paused":true"#));
    client
        .new_scheduled_task(
            "q",
            "@every 1s",
            "PAUSES",
            &Task::builder("pause:q").build().unwrap(),
        )
        .await
        .unwrap();
    q.at_least(3, "tasks of another schedule").await;
    let late: Vec<_> = p
        .all()
        .into_iter()
        .filter(|(_, seen)| *seen > at + Duration::from_millis(500))
        .collect();
    assert!(late.is_empty(), "the paused schedule fired: {late:?}");
    assert_eq!(scheduler.schedules(), ["p", "q"]);

    // a declaration from code that changes it keeps the operator's pause
    let mut declared = st.clone();
    declared.declared_in = Some("code".into());
    client.update_scheduled_task(&declared).await.unwrap();
    let mut changed = declared.clone();
    changed.max_tries = 3;
    client.declare_scheduled_task(&changed).await.unwrap();
    let kept = client.load_scheduled_task("p").await.unwrap();
    assert_eq!((kept.max_tries, kept.paused), (3, false));

    client.pause_scheduled_task("p", true).await.unwrap();
    changed.max_tries = 4;
    client.declare_scheduled_task(&changed).await.unwrap();
    let kept = client.load_scheduled_task("p").await.unwrap();
    assert_eq!((kept.max_tries, kept.paused), (4, true));

    let before = p.all().len();
    let resumed = client.pause_scheduled_task("p", false).await.unwrap();
    assert!(!resumed.paused);
    p.at_least(before + 2, "tasks after the resume").await;
    assert!(matches!(
        client.pause_scheduled_task("nope", true).await,
        Err(ScheduleError::NotFound(_))
    ));
    run.stop().await.unwrap();
}

#[tokio::test]
async fn schedules_written_by_go_produce_the_tasks_go_would() {
    let server = NatsServer::start();
    let client = client(&server, Queue::default_queue()).await;
    let created = Created::watch(client.nats(), "golden:sched").await;
    let nulls = Created::watch(client.nats(), "golden:null").await;

    // Go's record, with a faster schedule and a fresh creation time
    let mut record: Value = serde_json::from_str(&read_golden("scheduled_task.json")).unwrap();
    record["schedule"] = json!("@every 1s");
    record["created_at"] = json!(asyncjobs::wire::format_time(&OffsetDateTime::now_utc()));
    let mut null_record = record.clone();
    null_record["name"] = json!("golden_null");
    null_record["task_type"] = json!("golden:null");
    null_record["payload"] = Value::Null;
    null_record.as_object_mut().unwrap().remove("deadline");
    null_record["max_tries"] = json!(0);
    let kv = jetstream::new(client.nats().clone())
        .get_key_value("CHORIA_AJ_CONFIGURATION")
        .await
        .unwrap();
    kv.create(
        "scheduled_tasks.golden_schedule",
        serde_json::to_vec(&record).unwrap().into(),
    )
    .await
    .unwrap();
    kv.create(
        "scheduled_tasks.golden_null",
        serde_json::to_vec(&null_record).unwrap().into(),
    )
    .await
    .unwrap();

    let scheduler = Scheduler::builder(client.clone(), "go-compat")
        .without_election()
        .build();
    let run = start(&scheduler);
    let id = created.at_least(1, "a task from the Go schedule").await[0].clone();
    let null_id = nulls
        .at_least(1, "a task from the Go schedule without payload")
        .await[0]
        .clone();
    run.stop().await.unwrap();

    let task = client.load_task(&id).await.unwrap();
    assert_eq!(task.queue, "DEFAULT");
    assert_eq!(
        task.payload.as_deref(),
        Some(&br#""eyJzY2hlZHVsZWQiOnRydWV9""#[..]),
        "Go double-encodes the payload of its schedules"
    );
    assert_eq!(task.max_tries, 3);
    let to_deadline = (task.deadline.unwrap() - task.created).as_seconds_f64();
    assert!((299.0..=301.0).contains(&to_deadline), "{to_deadline}");

    let task = client.load_task(&null_id).await.unwrap();
    assert_eq!(task.payload.as_deref(), Some(&b"null"[..]));
    assert_eq!(task.max_tries, 10, "max_tries 0 gives the task default");
    assert_eq!(task.deadline, None);
}

#[tokio::test]
async fn leader_failover_without_double_fires() {
    let server = NatsServer::start();
    let admin = client(&server, Queue::new("HA")).await;
    // short timings: a bucket with a 2 s TTL, campaigns every 400 ms
    let ttl = Duration::from_secs(2);
    let interval = Duration::from_millis(400);
    jetstream::new(admin.nats().clone())
        .create_key_value(kv::Config {
            bucket: "HA_ELECTIONS".into(),
            max_age: ttl,
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let options = ElectionOptions::default()
        .bucket("HA_ELECTIONS")
        .campaign_interval(interval)
        .max_splay(Duration::from_millis(200));

    let leaders = Leaders::watch(admin.nats()).await;
    let created = Created::watch(admin.nats(), "ha:tick").await;
    let runs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let router = Router::new()
        .handle("ha:tick", {
            let runs = runs.clone();
            move |_ctx: TaskContext, t: Task| {
                let runs = runs.clone();
                async move {
                    *runs.lock().unwrap().entry(t.id.clone()).or_default() += 1;
                    asyncjobs::handler::to_output(&t.id)
                }
            }
        })
        .unwrap();
    let worker_stop = CancellationToken::new();
    let worker = tokio::spawn(
        admin
            .worker(router)
            .retry_policy(fast_retry())
            .run(worker_stop.clone()),
    );

    // two schedulers on their own connections, as two processes would be
    let c1 = client(&server, Queue::new("HA")).await;
    let c2 = client(&server, Queue::new("HA")).await;
    let s1 = Scheduler::builder(c1.clone(), "sched-1")
        .election(options.clone())
        .build();
    let s2 = Scheduler::builder(c2.clone(), "sched-2")
        .election(options.clone())
        .build();
    let r1 = start(&s1);
    let r2 = start(&s2);
    admin
        .new_scheduled_task(
            "ha",
            "@every 1s",
            "HA",
            &Task::builder("ha:tick").build().unwrap(),
        )
        .await
        .unwrap();

    let first = wait_for(T, "a leader", || async { leaders.names().first().cloned() }).await;
    created.at_least(3, "tasks from the first leader").await;
    assert_eq!(
        [s1.is_leader(), s2.is_leader()]
            .iter()
            .filter(|l| **l)
            .count(),
        1
    );
    let (leader_client, leader_run, standby, standby_run) = if first == "sched-1" {
        (c1.clone(), r1, s2.clone(), r2)
    } else {
        (c2.clone(), r2, s1.clone(), r1)
    };
    let leader = if first == "sched-1" { &s1 } else { &s2 };
    assert!(leader.is_leader() && !standby.is_leader());

    // the leader's connection dies: it cannot refresh or release the key
    leader_client.nats().drain().await.unwrap();
    let crashed = Instant::now();
    let before = created.len();
    wait_for(T, "the standby to take over", || async {
        standby.is_leader().then_some(())
    })
    .await;
    let took = crashed.elapsed();
    // key expiry (TTL) + a campaign + the announcement one interval later
    let window = ttl + interval * 3 + Duration::from_secs(2);
    assert!(took <= window, "take-over took {took:?}, window {window:?}");
    assert!(!leader.is_leader());
    wait_for(T, "the standby's leader event", || async {
        leaders
            .names()
            .contains(&standby.name().to_string())
            .then_some(())
    })
    .await;
    created
        .at_least(before + 3, "tasks from the new leader")
        .await;
    let _ = leader_run.stop().await;
    standby_run.stop().await.unwrap();

    // one task per slot, each run once
    let ids = created.ids();
    let mut slots: Vec<i64> = ids.iter().map(|id| ksuid_seconds(id)).collect();
    slots.sort();
    let unique = {
        let mut s = slots.clone();
        s.dedup();
        s.len()
    };
    assert_eq!(unique, ids.len(), "a slot fired twice: {slots:?}");
    // and none was lost at the take-over: the new leader fired the slots
    // that passed while the election moved (issue 14, kind H)
    assert!(
        slots.windows(2).all(|w| w[1] - w[0] == 1),
        "a slot was never fired: {slots:?}"
    );
    wait_for(T, "every scheduled task to run", || async {
        let runs = runs.lock().unwrap();
        ids.iter().all(|id| runs.contains_key(id)).then_some(())
    })
    .await;
    worker_stop.cancel();
    worker.await.unwrap().unwrap();
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), ids.len(), "runs {runs:?}");
    assert!(runs.values().all(|n| *n == 1), "a task ran twice: {runs:?}");
}

#[tokio::test]
async fn election_waits_for_a_held_key_and_checks_the_bucket() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("E")).await;
    let nc = c.nats().clone();
    let js = jetstream::new(nc.clone());
    let kv = js
        .create_key_value(kv::Config {
            bucket: "SHORT_ELECTIONS".into(),
            max_age: Duration::from_secs(1),
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();

    // Go's limits apply unless an interval is given
    let err = Election::builder(nc.clone(), "x")
        .options(ElectionOptions::default().bucket("SHORT_ELECTIONS"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, ElectionError::TtlTooShort), "{err}");
    assert_eq!(err.to_string(), "bucket TTL should be 10 seconds or more");
    let err = Election::builder(nc.clone(), "x")
        .options(
            ElectionOptions::default()
                .bucket("SHORT_ELECTIONS")
                .campaign_interval(Duration::from_secs(1)),
        )
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ElectionError::IntervalNotBelowTtl { .. }),
        "{err}"
    );
    let err = Election::builder(nc.clone(), "x")
        .options(ElectionOptions::default().bucket("MISSING"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, ElectionError::BucketNotFound(_)), "{err}");

    // another candidate (a Go scheduler, say) holds the key and keeps refreshing it
    let mut rev = kv
        .create("task_scheduler", "go-scheduler".into())
        .await
        .unwrap();
    let won = Arc::new(Mutex::new(0));
    let election = Election::builder(nc.clone(), "rust-scheduler")
        .options(
            ElectionOptions::default()
                .bucket("SHORT_ELECTIONS")
                .campaign_interval(Duration::from_millis(200))
                .max_splay(Duration::ZERO),
        )
        .on_won({
            let won = won.clone();
            move || *won.lock().unwrap() += 1
        })
        .build()
        .await
        .unwrap();
    assert_eq!(election.interval(), Duration::from_millis(200));
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let (e, stop) = (election.clone(), stop.clone());
        async move { e.run(stop).await }
    });
    // refresh the foreign hold for a while: the Rust candidate must not win
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rev = kv
            .update("task_scheduler", "go-scheduler".into(), rev)
            .await
            .expect("the holder keeps its key");
        assert!(!election.is_leader());
    }
    // the holder stops refreshing: the key expires and the candidate wins
    wait_for(T, "the candidate to win", || async {
        election.is_leader().then_some(())
    })
    .await;
    assert_eq!(*won.lock().unwrap(), 1);
    assert_eq!(
        kv.get("task_scheduler").await.unwrap().unwrap(),
        "rust-scheduler"
    );
    assert!(matches!(
        election.run(CancellationToken::new()).await,
        Err(ElectionError::AlreadyRunning)
    ));
    // graceful shutdown releases the key at once
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert!(!election.is_leader());
    assert_eq!(kv.get("task_scheduler").await.unwrap(), None);
}

/// The election with Go's timings on the real bucket (10 s TTL, 7.5 s
/// interval, up to 5 s splay): one of two candidates leads within about
/// 12.5 s and the other stays a candidate.
#[tokio::test]
async fn election_on_the_real_bucket_with_go_defaults() {
    let server = NatsServer::start();
    let c1 = client(&server, Queue::new("E")).await;
    let c2 = client(&server, Queue::new("E")).await;
    let leaders = Leaders::watch(c1.nats()).await;
    let s1 = Scheduler::new(c1.clone(), "default-1");
    let s2 = Scheduler::new(c2.clone(), "default-2");
    let r1 = start(&s1);
    let r2 = start(&s2);
    let started = Instant::now();
    let name = wait_for(
        Duration::from_secs(25),
        "a leader with default timings",
        || async {
            if s1.is_leader() {
                Some("default-1")
            } else if s2.is_leader() {
                Some("default-2")
            } else {
                None
            }
        },
    )
    .await;
    let took = started.elapsed();
    // splay (< 5 s) + one interval (7.5 s) before the announcement
    assert!(
        took >= Duration::from_millis(7000) && took < Duration::from_secs(15),
        "took {took:?}"
    );
    assert!(!(s1.is_leader() && s2.is_leader()));
    let kv = jetstream::new(c1.nats().clone())
        .get_key_value("CHORIA_AJ_ELECTIONS")
        .await
        .unwrap();
    assert_eq!(kv.get("task_scheduler").await.unwrap().unwrap(), name);
    wait_for(T, "the leader event", || async {
        (leaders.names() == [name]).then_some(())
    })
    .await;
    let labels = [("election", "task_scheduler"), ("identity", name)];
    assert_eq!(
        gauge("choria_asyncjobs_election_leader", &labels),
        Some(1.0)
    );
    assert_eq!(
        gauge("choria_asyncjobs_election_interval_seconds", &labels),
        Some(7.5)
    );
    assert!(
        gauge(
            "choria_asyncjobs_election_campaigns",
            &[
                ("election", "task_scheduler"),
                ("identity", name),
                ("state", "leader")
            ]
        )
        .unwrap()
            >= 1.0
    );
    r1.stop().await.unwrap();
    r2.stop().await.unwrap();
    assert_eq!(
        gauge("choria_asyncjobs_election_leader", &labels),
        Some(0.0)
    );
}

/// Two schedulers that both believe they lead (as during a hand-over) fire
/// the same slots; the server refuses the second creation of each slot.
#[tokio::test]
async fn concurrent_leaders_create_each_slot_once() {
    let server = NatsServer::start();
    let admin = client(&server, Queue::new("SPLIT")).await;
    let created = Created::watch(admin.nats(), "split:tick").await;
    let c1 = client(&server, Queue::new("SPLIT")).await;
    let c2 = client(&server, Queue::new("SPLIT")).await;
    let s1 = Scheduler::builder(c1, "split-1").without_election().build();
    let s2 = Scheduler::builder(c2, "split-2").without_election().build();
    let (r1, r2) = (start(&s1), start(&s2));
    admin
        .new_scheduled_task(
            "split",
            "@every 1s",
            "SPLIT",
            &Task::builder("split:tick").build().unwrap(),
        )
        .await
        .unwrap();
    created.at_least(4, "tasks from two schedulers").await;
    r1.stop().await.unwrap();
    r2.stop().await.unwrap();
    let ids = created.ids();
    let mut slots: Vec<i64> = ids.iter().map(|id| ksuid_seconds(id)).collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), ids.len(), "a slot was created twice: {ids:?}");
    let info = admin.queue_info("SPLIT").await.unwrap();
    assert_eq!(
        info.stream.messages as usize,
        ids.len(),
        "one work item per slot"
    );
    assert_eq!(
        gauge(
            "choria_asyncjobs_task_scheduler_schedule_error_count",
            &[("type", "split:tick"), ("queue", "SPLIT")]
        )
        .unwrap_or(0.0),
        0.0,
        "a refused duplicate is not an error"
    );
}

/// A schedule for a queue that does not exist behaves like Go's (the task
/// is saved `queue_error`) and is counted in `schedule_error_count`, which
/// Go never increments (docs/go-differences.md §38).
#[tokio::test]
async fn failed_creations_are_counted() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("REAL")).await;
    let created = Created::watch(client.nats(), "lost:tick").await;
    let scheduler = Scheduler::builder(client.clone(), "errors")
        .without_election()
        .build();
    let run = start(&scheduler);
    client
        .new_scheduled_task(
            "lost",
            "@every 1s",
            "NO_SUCH_QUEUE",
            &Task::builder("lost:tick").build().unwrap(),
        )
        .await
        .unwrap();
    let id = created.at_least(1, "a task for the missing queue").await[0].clone();
    let labels = [("type", "lost:tick"), ("queue", "NO_SUCH_QUEUE")];
    wait_for(T, "the error to be counted", || async {
        (gauge(
            "choria_asyncjobs_task_scheduler_schedule_error_count",
            &labels,
        )? >= 1.0)
            .then_some(())
    })
    .await;
    run.stop().await.unwrap();
    let task = client.load_task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::QueueError);
    assert!(
        task.last_err.starts_with("queue not found"),
        "{}",
        task.last_err
    );
    assert_eq!(
        gauge("choria_asyncjobs_task_scheduler_scheduled_count", &labels).unwrap_or(0.0),
        0.0
    );
}

/// Kind F: both buckets a scheduler depends on are deleted under it. It
/// keeps running (no error, no busy loop), stops firing while it cannot
/// lead, and once the buckets are re-created it is elected again, drops
/// the schedule that is no longer stored and fires the one added since.
#[tokio::test]
async fn scheduler_recovers_when_its_buckets_are_deleted_and_recreated() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("F")).await;
    let before = Created::watch(client.nats(), "f:before").await;
    let after = Created::watch(client.nats(), "f:after").await;
    let scheduler = Scheduler::builder(client.clone(), "survivor")
        .election(ElectionOptions {
            interval: Some(Duration::from_secs(1)),
            max_splay: Duration::from_millis(100),
            ..Default::default()
        })
        .build();
    let run = start(&scheduler);
    let template = Task::builder("f:before").build().unwrap();
    client
        .new_scheduled_task("before", "@every 1s", "F", &template)
        .await
        .unwrap();
    before.at_least(2, "tasks before the buckets go").await;

    for bucket in ["KV_CHORIA_AJ_CONFIGURATION", "KV_CHORIA_AJ_ELECTIONS"] {
        let r = js_api(client.nats(), &format!("STREAM.DELETE.{bucket}"), "").await;
        assert_eq!(r["success"], true, "{r}");
    }
    // building a client re-creates missing buckets, as Go's tools do
    let again = asyncjobs_tests::client(&server, Queue::new("F")).await;
    let template = Task::builder("f:after").build().unwrap();
    again
        .new_scheduled_task("after", "@every 1s", "F", &template)
        .await
        .unwrap();
    after
        .at_least(2, "tasks from the schedule added after re-creation")
        .await;
    let stopped_at = before.len();
    after.at_least(4, "more tasks of the new schedule").await;
    assert_eq!(
        before.len(),
        stopped_at,
        "the schedule deleted with its bucket still fires"
    );
    assert!(!run.handle.is_finished(), "the scheduler stopped");
    run.stop().await.unwrap();
}

/// Kind H, the issue's recipe: `* * * * *` with two schedulers; the leader
/// is cut off (its connection frozen, as a dying or partitioned process)
/// 3 s before a minute boundary, so the other one wins only after that
/// minute's slot has passed. The new leader fires the missed slot, once.
#[tokio::test]
async fn a_minute_slot_missed_during_failover_is_fired_once() {
    let server = NatsServer::start();
    let admin = client(&server, Queue::new("CRON")).await;
    jetstream::new(admin.nats().clone())
        .create_key_value(kv::Config {
            bucket: "MIN_ELECTIONS".into(),
            max_age: Duration::from_secs(6),
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let options = ElectionOptions::default()
        .bucket("MIN_ELECTIONS")
        .campaign_interval(Duration::from_millis(500))
        .max_splay(Duration::from_millis(100));
    let leaders = Leaders::watch(admin.nats()).await;
    let created = Created::watch(admin.nats(), "min:tick").await;

    let proxy = asyncjobs_tests::Proxy::start(&server).await;
    let c1 = asyncjobs::Client::builder()
        .url(proxy.url())
        .queue(Queue::new("CRON"))
        .build()
        .await
        .unwrap();
    let s1 = Scheduler::builder(c1, "sched-1")
        .election(options.clone())
        .build();
    let r1 = start(&s1);
    wait_for(T, "sched-1 to lead", || async {
        (leaders.names().first().map(String::as_str) == Some("sched-1")).then_some(())
    })
    .await;
    let c2 = client(&server, Queue::new("CRON")).await;
    let s2 = Scheduler::builder(c2, "sched-2").election(options).build();
    let r2 = start(&s2);
    admin
        .new_scheduled_task(
            "min",
            "* * * * *",
            "CRON",
            &Task::builder("min:tick").build().unwrap(),
        )
        .await
        .unwrap();

    // 3 s before a minute boundary at least 10 s away (pacing the fault)
    let now = OffsetDateTime::now_utc();
    let mut boundary = now
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap()
        + Duration::from_secs(60);
    if boundary - now < time::Duration::seconds(10) {
        boundary += Duration::from_secs(60);
    }
    let freeze_at: Duration = (boundary - now - time::Duration::seconds(3))
        .try_into()
        .unwrap();
    tokio::time::sleep(freeze_at).await;
    proxy.freeze();

    let slot_id = asyncjobs::scheduler::slot_task_id("min", boundary);
    wait_for(
        Duration::from_secs(30),
        "the missed slot's task",
        || async { created.ids().contains(&slot_id).then_some(()) },
    )
    .await;
    assert_eq!(
        leaders.names().last().map(String::as_str),
        Some("sched-2"),
        "sched-2 took over"
    );
    let task = admin.load_task(&slot_id).await.unwrap();
    assert!(
        task.created > boundary,
        "fired by the new leader after the boundary"
    );
    assert_eq!(
        created.ids().iter().filter(|id| **id == slot_id).count(),
        1,
        "the slot fired once"
    );
    proxy.thaw();
    r2.stop().await.unwrap();
    let _ = r1.stop().await;
}

/// Issue 29: a Go scheduler leads (its slot tasks have random ids, so the
/// deterministic-id guard cannot see them) and is killed (its key is left
/// to expire). The Rust follower that takes over never fires a slot the Go
/// leader fired: it catches up only on slots after the Go leader's last
/// refresh plus its refresh interval, as the follower saw them. Slots after
/// that, missed while no one led, are still fired.
#[tokio::test]
async fn catch_up_never_fires_a_slot_a_go_leader_fired() {
    let server = NatsServer::start();
    let admin = client(&server, Queue::new("GOCRON")).await;
    // a 4 s TTL: Go refreshes every 3 s (0.75 of it)
    let ttl = Duration::from_secs(4);
    let store = jetstream::new(admin.nats().clone())
        .create_key_value(kv::Config {
            bucket: "GO_ELECTIONS".into(),
            max_age: ttl,
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let schedule = admin
        .new_scheduled_task(
            "go",
            "@every 2s",
            "GOCRON",
            &Task::builder("go:tick").build().unwrap(),
        )
        .await
        .unwrap();
    let created_at = schedule.created_at;
    let slot = move |k: i64| created_at + time::Duration::seconds(2 * k);

    // the Go leader: holds the key, refreshing it every 3 s, and fires each
    // slot with a random task id, until it is killed
    let rev = store.create("task_scheduler", "go-1".into()).await.unwrap();
    let killed = CancellationToken::new();
    let go_fired: Arc<Mutex<Vec<OffsetDateTime>>> = Arc::default();
    let go = tokio::spawn({
        let (admin, store, killed, go_fired) = (
            admin.clone(),
            store.clone(),
            killed.clone(),
            go_fired.clone(),
        );
        async move {
            let mut rev = rev;
            let mut next_refresh = Instant::now() + Duration::from_secs(3);
            let mut k = 1;
            loop {
                let due = slot(k);
                let wait: Duration = (due - OffsetDateTime::now_utc())
                    .try_into()
                    .unwrap_or_default();
                tokio::select! {
                    _ = killed.cancelled() => return,
                    _ = tokio::time::sleep_until(next_refresh.into()) => {
                        rev = store.update("task_scheduler", "go-1".into(), rev).await.unwrap();
                        next_refresh += Duration::from_secs(3);
                    }
                    _ = tokio::time::sleep(wait) => {
                        let mut t = Task::builder("go:tick").build().unwrap();
                        admin.enqueue_to("GOCRON", &mut t).await.unwrap();
                        go_fired.lock().unwrap().push(due);
                        k += 1;
                    }
                }
            }
        }
    });

    // the Rust follower, campaigning every 500 ms
    let c = client(&server, Queue::new("GOCRON")).await;
    let options = ElectionOptions::default()
        .bucket("GO_ELECTIONS")
        .campaign_interval(Duration::from_millis(500))
        .max_splay(Duration::from_millis(100));
    let rust = Scheduler::builder(c, "rust-1").election(options).build();
    let leaders = Leaders::watch(admin.nats()).await;
    let run = start(&rust);
    // Go fires three slots, then is killed
    wait_for(T, "the Go leader's third slot", || async {
        (go_fired.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    killed.cancel();
    go.await.unwrap();
    let go_slots = go_fired.lock().unwrap().clone();
    wait_for(
        Duration::from_secs(30),
        "the Rust scheduler to lead",
        || async {
            leaders
                .names()
                .contains(&"rust-1".to_string())
                .then_some(())
        },
    )
    .await;
    // the Rust leader fires the slots from here on
    let after = OffsetDateTime::now_utc() + Duration::from_secs(3);
    wait_for(T, "a slot fired by the Rust leader", || async {
        let k = (0..60).find(|k| slot(*k) > after)?;
        admin
            .load_task(&asyncjobs::scheduler::slot_task_id("go", slot(k)))
            .await
            .ok()
    })
    .await;
    // no slot Go fired was fired again
    for s in &go_slots {
        let id = asyncjobs::scheduler::slot_task_id("go", *s);
        assert!(
            admin.load_task(&id).await.is_err(),
            "the Rust leader fired the slot {s} the Go leader had fired"
        );
    }
    run.stop().await.unwrap();
}
