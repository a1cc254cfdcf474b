//! The work item: the message on a queue's stream that references a task
//! (docs/storage.md §8.3). One type for both directions, one publish path for
//! enqueue, retry and re-arm.

use async_nats::header::HeaderMap;
use serde::{Deserialize, Serialize};

/// Header carrying the W3C trace context on work items (Go workers ignore it).
pub(crate) const TRACEPARENT_HEADER: &str = "traceparent";
/// JetStream message schedule header (ADR-51): when to publish.
pub(crate) const SCHEDULE_HEADER: &str = "Nats-Schedule";
/// JetStream message schedule header (ADR-51): the subject published to.
pub(crate) const SCHEDULE_TARGET_HEADER: &str = "Nats-Schedule-Target";

/// `@at <RFC 3339 UTC>` for a `Nats-Schedule` header, rounded up to the
/// next whole second (never earlier than `due`).
pub(crate) fn schedule_at(due: time::OffsetDateTime) -> String {
    let due = due.to_offset(time::UtcOffset::UTC);
    let whole = due
        .replace_nanosecond(0)
        .expect("zero is a valid nanosecond");
    let due = if whole < due {
        whole + time::Duration::SECOND
    } else {
        whole
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    format!("@at {}", due.format(&format).expect("UTC time formats"))
}

/// `{"kind":0,"job":"<task id>"}`, exactly as Go writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkItem {
    /// Go's item kind; 0 (task) is the only one written.
    #[serde(default)]
    pub kind: u8,
    /// The task id.
    #[serde(default)]
    pub job: String,
}

/// Why a delivered message is not a usable work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemError {
    /// The body is empty.
    Empty,
    /// The body is not a work item, or names no task.
    Corrupt,
}

impl WorkItem {
    /// The item for `task_id`.
    pub(crate) fn new(task_id: &str) -> WorkItem {
        WorkItem {
            kind: 0,
            job: task_id.to_string(),
        }
    }

    /// The body as Go writes it.
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("work item encodes")
    }

    /// Reads a delivered body; the task id must be non-empty.
    pub(crate) fn decode(body: &[u8]) -> Result<WorkItem, ItemError> {
        if body.is_empty() {
            return Err(ItemError::Empty);
        }
        match serde_json::from_slice::<WorkItem>(body) {
            Ok(item) if !item.job.is_empty() => Ok(item),
            _ => Err(ItemError::Corrupt),
        }
    }

    /// The `traceparent` a delivered item carries.
    pub(crate) fn traceparent(headers: Option<&HeaderMap>) -> Option<String> {
        headers
            .and_then(|h| h.get(TRACEPARENT_HEADER))
            .map(|v| v.as_str().to_string())
    }
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ItemError::Empty => "invalid queue item received (empty)",
            ItemError::Corrupt => "corrupt queue item received",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_go_bytes() {
        let item = WorkItem::new("24ZtSq4fUn0PTBvDpPIGoAqp7Uu");
        assert_eq!(
            item.encode(),
            br#"{"kind":0,"job":"24ZtSq4fUn0PTBvDpPIGoAqp7Uu"}"#.to_vec()
        );
        assert_eq!(WorkItem::decode(&item.encode()), Ok(item));
    }

    #[test]
    fn bad_bodies() {
        assert_eq!(WorkItem::decode(b""), Err(ItemError::Empty));
        assert_eq!(WorkItem::decode(b"nope"), Err(ItemError::Corrupt));
        assert_eq!(WorkItem::decode(br#"{"kind":0}"#), Err(ItemError::Corrupt));
        assert_eq!(WorkItem::decode(br#"{"job":""}"#), Err(ItemError::Corrupt));
        assert_eq!(
            WorkItem::decode(br#"{"job":"x","extra":1}"#).map(|i| i.job),
            Ok("x".into())
        );
    }

    #[test]
    fn schedule_times_round_up_to_whole_utc_seconds() {
        use time::macros::datetime;
        assert_eq!(
            schedule_at(datetime!(2026-11-30 01:02:03 UTC)),
            "@at 2026-11-30T01:02:03Z"
        );
        assert_eq!(
            schedule_at(datetime!(2026-11-30 01:02:03.000001 UTC)),
            "@at 2026-11-30T01:02:04Z"
        );
        assert_eq!(
            schedule_at(datetime!(2026-12-31 23:59:59.5 UTC)),
            "@at 2027-01-01T00:00:00Z"
        );
        assert_eq!(
            schedule_at(datetime!(2026-11-30 03:02:03 +02:00)),
            "@at 2026-11-30T01:02:03Z"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_body_decodes_or_fails_cleanly(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            if let Ok(item) = WorkItem::decode(&body) {
                proptest::prop_assert!(!item.job.is_empty());
                proptest::prop_assert_eq!(WorkItem::decode(&item.encode()), Ok(item));
            }
        }

        #[test]
        fn every_id_round_trips(job in ".{1,40}") {
            let item = WorkItem::new(&job);
            proptest::prop_assert_eq!(WorkItem::decode(&item.encode()), Ok(item));
        }
    }
}
