//! Priority lanes: finding the oldest item of a priority's lane and
//! claiming it out of arrival order (docs/processing.md §2.21,
//! docs/storage.md §2.1).
//!
//! A claim is two writes, each safe to be interrupted after:
//!
//! 1. the task's item is published to `CHORIA_AJ.Q.<queue>.B.<id>`, at
//!    the end of the queue: the claim's **backup**, which the
//!    `WORKERS` consumer delivers if the claiming worker dies (the
//!    record's state and lease then decide, as for any delivery);
//! 2. the lane item is deleted by its sequence: only one deleter wins.
//!
//! Interrupted after 1, the lane item is claimed again later (the task's
//! record is still `new`) and the second backup replaces the first (one
//! item per subject). A lost race (2 finds nothing) is answered
//! [`LaneClaim::Lost`] with the loser's backup, which the worker keeps or
//! deletes ([`Storage::delete_backup`]) by the task's state
//! (`worker/lanes/backup.rs`); the winner's end removes whichever backup
//! the task has ([`Storage::remove_backup`]).

use super::{api, Storage};
use crate::error::{nats, Result};
use crate::queue::lane::backup_subject;
use crate::queue::lane::{lane_notice_subject, Lane, KEY_HEADER};
use crate::queue::QUEUE_STREAM_PREFIX;
use async_nats::jetstream::ErrorCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How a claim of a lane item went; each names the sequence of the
/// backup it published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaneClaim {
    /// This claim deleted the lane item: the try is its own.
    Won(u64),
    /// Another claim (or a pull's acknowledgement) had the item first.
    Lost(u64),
}

/// The oldest item of a priority's lane.
#[derive(Debug, Clone)]
pub(crate) struct LaneItem {
    /// Its subject (`CHORIA_AJ.Q.<queue>.P<n>.<id>`).
    pub subject: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Its body (a work item, docs/storage.md §8.3).
    pub payload: Vec<u8>,
    /// Its `traceparent` header, if any.
    pub traceparent: Option<String>,
    /// Its task's flow-control key (header `AJ-Key`), if any.
    pub key: Option<String>,
    /// When the server stored it (the epoch when unreadable).
    pub stored: OffsetDateTime,
}

#[derive(Deserialize)]
struct Got {
    message: GotMessage,
}

#[derive(Deserialize)]
struct GotMessage {
    subject: String,
    seq: u64,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    time: Option<String>,
}

impl Storage {
    /// The oldest item in `queue`'s `lane` at or after stream sequence
    /// `from`, `None` when there is none (or no queue).
    ///
    /// Errors: the request failed.
    pub(crate) async fn next_lane_item(
        &self,
        queue: &str,
        lane: Lane,
        from: u64,
    ) -> Result<Option<LaneItem>> {
        self.first_item(queue, &lane.filter(queue), from, || {
            format!("reading lane {lane:?} of queue {queue}")
        })
        .await
    }

    /// The oldest item of `queue` outside every lane (priority 0), `None`
    /// when there is none.
    ///
    /// Errors: the request failed.
    pub(crate) async fn oldest_plain_item(&self, queue: &str) -> Result<Option<LaneItem>> {
        self.first_item(queue, &Lane::Plain.filter(queue), 0, || {
            format!("reading the oldest item of queue {queue}")
        })
        .await
    }

    /// The oldest message of `queue`'s stream matching `filter` at or after
    /// sequence `from`.
    async fn first_item(
        &self,
        queue: &str,
        filter: &str,
        from: u64,
        what: impl FnOnce() -> String,
    ) -> Result<Option<LaneItem>> {
        let got = api::request::<Got>(
            &self.js,
            &format!("STREAM.MSG.GET.{QUEUE_STREAM_PREFIX}{queue}"),
            &json!({ "seq": from, "next_by_subj": filter }),
            what,
        )
        .await;
        let m = match got {
            Ok(g) => g.message,
            Err(e)
                if api::is(&e, ErrorCode::NO_MESSAGE_FOUND)
                    || api::is(&e, ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = m.data.and_then(|d| b64.decode(d).ok()).unwrap_or_default();
        let headers = m.hdrs.and_then(|h| b64.decode(h).ok()).unwrap_or_default();
        let traceparent = header_value(&headers, super::work_item::TRACEPARENT_HEADER);
        let key = header_value(&headers, KEY_HEADER);
        let stored = m
            .time
            .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(Some(LaneItem {
            subject: m.subject,
            seq: m.seq,
            payload,
            traceparent,
            key,
            stored,
        }))
    }

    /// Claims lane `item` of task `id` (see the module's docs): its backup
    /// first, then the lane item deleted.
    ///
    /// Errors: a write failed (the lane item is then left for a later claim).
    pub(crate) async fn claim_lane_item(
        &self,
        queue: &str,
        id: &str,
        item: &LaneItem,
    ) -> Result<LaneClaim> {
        let what = || format!("claiming the priority item of task {id}");
        let mut backup = async_nats::jetstream::message::PublishMessage::build()
            .payload(item.payload.clone().into());
        if let Some(tp) = &item.traceparent {
            backup = backup.header(super::work_item::TRACEPARENT_HEADER, tp.as_str());
        }
        if let Some(key) = &item.key {
            backup = backup.header(KEY_HEADER, key.as_str());
        }
        let ack = self
            .js
            .send_publish(backup_subject(queue, id), backup)
            .await
            .map_err(|e| nats(what(), e))?
            .await
            .map_err(|e| nats(what(), e))?;
        let deleted = self
            .delete_msg(&format!("{QUEUE_STREAM_PREFIX}{queue}"), item.seq, what)
            .await;
        match deleted {
            Ok(_) => Ok(LaneClaim::Won(ack.sequence)),
            Err(e) if api::is_gone(&e) => Ok(LaneClaim::Lost(ack.sequence)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the backup of task `id` at `seq` (a lost claim's). Best
    /// effort: one left is acknowledged by whoever is handed it once the
    /// task has ended.
    pub(crate) async fn delete_backup(&self, queue: &str, id: &str, seq: u64) {
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        if let Err(e) = self
            .delete_msg(&stream, seq, || {
                format!("removing the backup of a lost claim of task {id}")
            })
            .await
        {
            if !api::is_gone(&e) {
                tracing::debug!(task = %id, error = %e, "removing the backup of a lost claim failed; it is acknowledged when delivered");
            }
        }
    }

    /// Removes the claim backup of task `id` published at `seq` when its
    /// try ends. When it is gone (a losing claim's backup, published after
    /// it, replaced it: one item per subject), the backup the subject holds
    /// instead is removed, if it is older than `below` (a later claim's
    /// is not). Gone already is fine.
    ///
    /// Errors: a request failed.
    pub(crate) async fn remove_backup(
        &self,
        queue: &str,
        id: &str,
        seq: u64,
        below: Option<u64>,
    ) -> Result<()> {
        let stream = format!("{QUEUE_STREAM_PREFIX}{queue}");
        let what = || format!("removing the claim backup of task {id}");
        match self.delete_msg(&stream, seq, what).await {
            Ok(()) => return Ok(()),
            Err(e) if api::is_gone(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let got = api::request::<Got>(
            &self.js,
            &format!("STREAM.MSG.GET.{stream}"),
            &json!({ "last_by_subj": backup_subject(queue, id) }),
            what,
        )
        .await;
        let other = match got {
            Ok(g) => g.message.seq,
            Err(e) if api::is_gone(&e) || api::is(&e, ErrorCode::STREAM_NOT_FOUND) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if other <= seq || below.is_some_and(|b| other >= b) {
            return Ok(());
        }
        match self.delete_msg(&stream, other, what).await {
            Ok(()) => Ok(()),
            Err(e) if api::is_gone(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Tells `queue`'s workers that its `lane` has an item (core NATS,
    /// best effort: workers also look every few seconds).
    pub(crate) async fn notify_lane(&self, queue: &str, lane: Lane) {
        let _ = self
            .nc
            .publish(lane_notice_subject(queue), vec![lane.notice()].into())
            .await;
    }

    /// Follows the lane notices of `queue` ([`notify_lane`](Self::notify_lane)).
    ///
    /// Errors: the subscription failed.
    pub(crate) async fn lane_notices(&self, queue: &str) -> Result<async_nats::Subscriber> {
        self.nc
            .subscribe(lane_notice_subject(queue))
            .await
            .map_err(|e| {
                nats(
                    format!("following the priority notices of queue {queue}"),
                    e,
                )
                .into()
            })
    }

    /// A subscription on a fresh inbox subject and every subject under it, for
    /// the acknowledgements of claimed items (`worker/lanes/inbox.rs`).
    ///
    /// Errors: the subscription failed.
    pub(crate) async fn claim_inbox(&self) -> Result<(String, async_nats::Subscriber)> {
        let prefix = self.nc.new_inbox();
        let sub = self
            .nc
            .subscribe(format!("{prefix}.>"))
            .await
            .map_err(|e| nats("following the acknowledgements of claimed items", e))?;
        Ok((prefix, sub))
    }

    /// Answers a request (an empty reply), best effort.
    pub(crate) async fn answer(&self, reply: async_nats::Subject) {
        let _ = self.nc.publish(reply, bytes::Bytes::new()).await;
    }
}

/// The value of header `name` (case-insensitive) in a raw NATS header
/// block (`NATS/1.0\r\nName: value\r\n…`).
fn header_value(raw: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_by_name_in_any_case() {
        let raw = b"NATS/1.0\r\nNats-Msg-Id: x\r\nTraceparent: 00-ab-cd-01\r\n\r\n";
        assert_eq!(
            header_value(raw, "traceparent").as_deref(),
            Some("00-ab-cd-01")
        );
        assert_eq!(header_value(raw, "missing"), None);
        assert_eq!(header_value(b"\xff", "x"), None);
    }
}
