//! Property tests: whatever bytes arrive (a corrupt record, a hand-edited
//! schedule, a stranger's message on our subjects), the decoders return an
//! error instead of panicking, and what decodes re-encodes to the same
//! value. Inputs: arbitrary bytes, arbitrary JSON shaped like our records,
//! and the Go-written golden records with random edits.

use asyncjobs::cron::CronSchedule;
#[cfg(feature = "signing")]
use asyncjobs::signing::Keys;
use asyncjobs::{ScheduledTask, Task};
use proptest::prelude::*;
use serde_json::{json, Value};
use time::OffsetDateTime;

fn golden(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const TASKS: [&str; 6] = [
    "task_new.json",
    "task_completed.json",
    "task_retry_failed_try.json",
    "task_signed.json",
    "task_deadline_deps_maxtries_completed.json",
    "task_deadline_deps_maxtries_enqueued.json",
];

/// A golden record with random byte edits (replace, insert, delete).
fn edited(names: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    (
        0..names.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    )
        .prop_map(move |(i, edits)| {
            let mut b = golden(names[i]);
            for (at, byte, op) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let at = at.index(b.len());
                match op {
                    0 => b[at] = byte,
                    1 => b.insert(at, byte),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            b
        })
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
        Just(json!("2022-02-09T17:28:41.943198067Z")),
        Just(json!("AAAA")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const TASK_KEYS: [&str; 16] = [
    "id",
    "type",
    "queue",
    "payload",
    "deadline",
    "result",
    "state",
    "created",
    "tried",
    "tries",
    "max_tries",
    "last_err",
    "signature",
    "dependencies",
    "dependency_results",
    "load_dependencies",
];

/// An object with our records' keys and arbitrary values.
fn record_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0..TASK_KEYS.len(), any_json()), 0..10).prop_map(|fields| {
        let obj: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (TASK_KEYS[k].to_string(), v))
            .collect();
        serde_json::to_vec(&Value::Object(obj)).unwrap()
    })
}

fn task_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        edited(&TASKS),
        record_like(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn task_records_decode_or_fail_cleanly(bytes in task_bytes()) {
        if let Ok(task) = Task::from_json(&bytes) {
            // what decodes re-encodes, and reads back the same
            let again = Task::from_json(&task.to_json().unwrap()).unwrap();
            prop_assert_eq!(again.to_json().unwrap(), task.to_json().unwrap());
        }
    }

    #[test]
    fn scheduled_tasks_decode_or_fail_cleanly(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        edited(&["scheduled_task.json"]),
        record_like(),
    ]) {
        if let Ok(st) = ScheduledTask::from_json(&bytes) {
            let _ = st.validate();
        }
    }

    #[test]
    fn events_decode_or_fail_cleanly(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        edited(&["event_task_state_new.json", "event_task_state_complete.json"]),
        record_like(),
    ]) {
        let _ = asyncjobs::events::parse_event(&bytes);
    }

    #[test]
    fn cron_specs_parse_or_fail_cleanly(
        spec in prop_oneof![
            ".{0,40}",
            "(TZ=[A-Za-z/_]{0,20} )?[0-9*/,?LW#A-Z-]{1,6} [0-9*/,?-]{1,6} [0-9*/,?LW-]{1,6} [0-9A-Z*/,?-]{1,6} [0-9A-Z*/,?#L-]{1,6}",
            "@(every|hourly|daily|weekly|monthly|yearly|annually|midnight)( [0-9.]{1,5}(ns|us|ms|s|m|h){1,2})?",
        ],
        after in 0i64..4_102_444_800,
    ) {
        if let Ok(schedule) = CronSchedule::parse(&spec) {
            let after = OffsetDateTime::from_unix_timestamp(after).unwrap();
            if let Some(next) = schedule.next_after(after) {
                prop_assert!(next > after, "{spec}: {next} after {after}");
            }
        }
    }

    #[cfg(feature = "signing")]
    #[test]
    fn signatures_verify_or_fail_cleanly(
        bytes in task_bytes(),
        signature in prop_oneof![".{0,140}", "[0-9a-f]{128}"],
    ) {
        let keys = Keys::from_public_hex(
            std::str::from_utf8(&golden("signing_public.hex")).unwrap().trim(),
        )
        .unwrap();
        if let Ok(mut task) = Task::from_json(&bytes) {
            task.signature = signature;
            prop_assert!(keys.verify(&task).is_err());
        }
    }
}
