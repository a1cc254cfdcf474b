//! Unit tests of the scheduler module.

use super::fire::catch_up;
use super::schedule::round_to_seconds;
use super::*;
use crate::task::is_valid_name;
use std::time::Duration;
use time::macros::datetime;
use time::OffsetDateTime;

#[test]
fn catch_up_fires_missed_slots_inside_the_window_oldest_first() {
    let now = time::macros::datetime!(2026-11-29 12:00:00 UTC);
    let mut missed: std::collections::VecDeque<OffsetDateTime> = [300, 90, 30, 0]
        .into_iter()
        .map(|s| now - Duration::from_secs(s))
        .collect();
    let due = catch_up(&mut missed, now, Duration::from_secs(120), None);
    assert_eq!(
        due,
        [90, 30, 0].map(|s| now - Duration::from_secs(s)).to_vec()
    );
    assert!(missed.is_empty());
    assert!(catch_up(&mut missed, now, Duration::from_secs(120), None).is_empty());
    // nothing the previous leader may have fired
    let mut missed: std::collections::VecDeque<OffsetDateTime> = [90, 30, 0]
        .into_iter()
        .map(|s| now - Duration::from_secs(s))
        .collect();
    let until = Some(now - Duration::from_secs(30));
    assert_eq!(
        catch_up(&mut missed, now, Duration::from_secs(120), until),
        vec![now]
    );
}

#[test]
fn slot_ids_are_deterministic_ksuids() {
    use svix_ksuid::KsuidLike;
    let slot = datetime!(2024-06-01 12:05 UTC);
    let a = slot_task_id("backup", slot);
    assert_eq!(a, slot_task_id("backup", slot));
    assert_ne!(a, slot_task_id("backup2", slot));
    assert_ne!(a, slot_task_id("backup", slot + time::Duration::minutes(5)));
    assert_eq!(a.len(), 27);
    assert!(is_valid_name(&a));
    let k: svix_ksuid::Ksuid = a.parse().unwrap();
    assert_eq!(k.timestamp::<OffsetDateTime>(), slot);
}

#[test]
fn go_payload_encoding() {
    let mut st: ScheduledTask = ScheduledTask::from_json(
        br#"{"name":"n","schedule":"@daily","queue":"Q","task_type":"t","payload":"eyJhIjoxfQ==","max_tries":0,"created_at":"2024-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(st.payload_encoding, PayloadEncoding::Go);
    assert_eq!(st.task_payload().unwrap(), br#""eyJhIjoxfQ==""#);
    st.payload = None;
    assert_eq!(st.task_payload().unwrap(), b"null");
    st.payload_encoding = PayloadEncoding::Raw;
    assert_eq!(st.task_payload(), None);
    st.payload = Some(br#"{"a":1}"#.to_vec());
    assert_eq!(st.task_payload().unwrap(), br#"{"a":1}"#);
    let json = String::from_utf8(st.to_json()).unwrap();
    assert!(json.ends_with(r#","payload_encoding":"raw"}"#), "{json}");
    let t = st.to_task().unwrap();
    assert_eq!(t.max_tries, 10);
    assert_eq!(t.deadline, None);
}

#[test]
fn rounding() {
    assert_eq!(round_to_seconds(29_500_000_000), 30);
    assert_eq!(round_to_seconds(29_499_999_999), 29);
    assert_eq!(round_to_seconds(-1_500_000_000), -2);
}
