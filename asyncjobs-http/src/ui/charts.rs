//! The overview's charts of the last 24 hours (the statistics the cluster
//! keeps, `crate::stats`): per queue, tasks completed and failed in
//! 15-minute bars and the queue's depth as a line, drawn as inline SVG
//! (no script, no chart library).

use crate::stats::StatsRecord;
use crate::Api;

/// Bars in a chart (24 hours of 15 minutes).
const BARS: usize = 96;
/// One bar's span, seconds.
const BAR_SECONDS: i64 = 900;
/// The chart's drawing size, in SVG units.
pub(super) const WIDTH: usize = BARS * 3;
pub(super) const HEIGHT: usize = 40;

/// One queue's chart.
pub(super) struct Chart {
    pub queue: String,
    /// Per bar: x, and the heights of its completed and failed parts.
    pub bars: Vec<(usize, usize, usize)>,
    /// The depth line's points (`x,y x,y …`), empty without depths.
    pub depth: String,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    /// The highest 95th percentile run time of the last hour, ms.
    pub p95_last_hour: Option<u64>,
    pub intervals: usize,
}

/// The chart of each of `queues` from the records of the last 24 hours;
/// a queue whose records cannot be read is named in `problems`.
pub(super) async fn charts(api: &Api, queues: &[String], problems: &mut Vec<String>) -> Vec<Chart> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let since = now - BARS as i64 * BAR_SECONDS;
    let js = api.client.jetstream();
    let mut out = vec![];
    for queue in queues {
        match crate::stats::read(&js, queue, since).await {
            Ok(records) => out.push(chart(queue, &records, since, now)),
            Err(e) => problems.push(format!("statistics of {queue}: {e}")),
        }
    }
    out
}

/// Draws `records` (oldest first) from `since` to `now`.
fn chart(queue: &str, records: &[StatsRecord], since: i64, now: i64) -> Chart {
    let mut per_bar = vec![(0u64, 0u64); BARS];
    let mut depth: Vec<(usize, u64)> = vec![];
    let (mut completed, mut failed, mut retried) = (0, 0, 0);
    let mut p95_last_hour: Option<u64> = None;
    for r in records {
        let bar = usize::try_from((r.start - since) / BAR_SECONDS)
            .unwrap_or(0)
            .min(BARS - 1);
        let (c, f, rt) = r.totals();
        per_bar[bar].0 += c;
        per_bar[bar].1 += f;
        completed += c;
        failed += f;
        retried += rt;
        if let Some(d) = r.depth {
            depth.push((bar, d));
        }
        if r.start >= now - 3600 {
            for t in r.types.values().filter(|t| t.runs > 0) {
                p95_last_hour = Some(p95_last_hour.unwrap_or(0).max(t.p95_ms));
            }
        }
    }
    let top = per_bar.iter().map(|(c, f)| c + f).max().unwrap_or(0).max(1);
    let scale = |n: u64| ((n * HEIGHT as u64).div_ceil(top)) as usize;
    let bars = per_bar
        .iter()
        .enumerate()
        .filter(|(_, (c, f))| c + f > 0)
        .map(|(i, (c, f))| (i * 3, scale(*c), scale(*f)))
        .collect();
    let deepest = depth.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let depth = depth
        .iter()
        .map(|(bar, d)| {
            let y = HEIGHT as u64 - (d * HEIGHT as u64) / deepest;
            format!("{},{y}", bar * 3 + 1)
        })
        .collect::<Vec<_>>()
        .join(" ");
    Chart {
        queue: queue.to_string(),
        bars,
        depth,
        completed,
        failed,
        retried,
        p95_last_hour,
        intervals: records.len(),
    }
}
