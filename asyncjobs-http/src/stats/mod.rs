//! Statistics kept by the cluster (docs/architecture.md §4a;
//! docs/storage.md §5.6): per queue and task type, tasks completed,
//! failed and retried, run-time percentiles and the queue's depth, one
//! record per queue and interval (a minute by default) in the stream
//! `CHORIA_AJ_STATS`, kept 48 hours.
//!
//! Every API replica follows the lifecycle events (Go workers publish
//! them too) and sums each interval (`stats/roller.rs`); when it has ended, the
//! first replica to write it wins (a write expects the subject to be
//! empty), so every replica reads the same figures and a restart loses
//! only the intervals no replica was running for. A replica writes no
//! interval it did not see from its start.

pub mod counts;
pub(crate) mod roller;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The stream holding the records.
pub const STREAM: &str = "CHORIA_AJ_STATS";
/// The prefix of its subjects: `CHORIA_AJ.STATS.<queue>.<interval start,
/// unix seconds>`.
pub const SUBJECT_PREFIX: &str = "CHORIA_AJ.STATS.";
/// How long records are kept.
pub const KEEP: Duration = Duration::from_secs(48 * 3600);

/// One task type's figures in one interval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TypeFigures {
    /// Tries that completed the task.
    pub completed: u64,
    /// Tasks that ended without completing (`terminated`, `expired`,
    /// `queue_error`, `unreachable`).
    pub failed: u64,
    /// Tries that failed and left the task to be tried again.
    pub retried: u64,
    /// Run time of the completed tries whose start this replica saw, in
    /// milliseconds: how many, and the 50th, 95th and 99th percentiles and
    /// the longest.
    pub runs: u64,
    /// 50th percentile, ms.
    pub p50_ms: u64,
    /// 95th percentile, ms.
    pub p95_ms: u64,
    /// 99th percentile, ms.
    pub p99_ms: u64,
    /// Longest, ms.
    pub max_ms: u64,
}

/// One queue's record for one interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsRecord {
    /// The queue.
    pub queue: String,
    /// The interval's start, unix seconds.
    pub start: i64,
    /// Its length, seconds.
    pub seconds: u64,
    /// Items waiting in the queue when the interval was written (the
    /// `WORKERS` consumer's pending count), if it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u64>,
    /// By task type.
    pub types: BTreeMap<String, TypeFigures>,
    /// The replica that wrote it (its host name).
    pub replica: String,
}

impl StatsRecord {
    /// The sum over its task types: completed, failed, retried.
    pub fn totals(&self) -> (u64, u64, u64) {
        self.types.values().fold((0, 0, 0), |(c, f, r), t| {
            (c + t.completed, f + t.failed, r + t.retried)
        })
    }
}

/// The records of `queue` whose interval started at or after `since`
/// (unix seconds), oldest first; none when the stream does not exist.
///
/// Errors: the stream cannot be read.
pub(crate) async fn read(
    js: &jetstream::Context,
    queue: &str,
    since: i64,
) -> Result<Vec<StatsRecord>, String> {
    let Some(stream) = crate::streams::existing(js, STREAM).await? else {
        return Ok(Vec::new());
    };
    let start = time::OffsetDateTime::from_unix_timestamp(since)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let config = jetstream::consumer::pull::OrderedConfig {
        filter_subject: format!("{SUBJECT_PREFIX}{queue}.>"),
        deliver_policy: jetstream::consumer::DeliverPolicy::ByStartTime { start_time: start },
        ..Default::default()
    };
    let mut out: Vec<StatsRecord> = crate::streams::read_all(&stream, config)
        .await?
        .iter()
        .filter_map(|m| serde_json::from_slice::<StatsRecord>(&m.payload).ok())
        .filter(|r| r.start >= since)
        .collect();
    out.sort_by_key(|r| r.start);
    Ok(out)
}

/// `samples`' 50th, 95th and 99th percentiles and maximum (nearest rank).
pub(crate) fn percentiles(samples: &mut [u64]) -> (u64, u64, u64, u64) {
    if samples.is_empty() {
        return (0, 0, 0, 0);
    }
    samples.sort_unstable();
    let at = |p: f64| {
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    (at(0.50), at(0.95), at(0.99), samples[samples.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut s), (50, 95, 99, 100));
        assert_eq!(percentiles(&mut [7]), (7, 7, 7, 7));
        assert_eq!(percentiles(&mut []), (0, 0, 0, 0));
    }
}
