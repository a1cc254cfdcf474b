//! Charts of the last 24 hours (the statistics the cluster keeps,
//! `crate::stats`), on the overview and on the queue and task-type pages:
//! tasks completed and failed in 15-minute bars, the queue's depth and the
//! run time's 95th percentile as lines, drawn as inline SVG (no script, no
//! chart library); and the figures of each task type or queue beside.

use crate::stats::StatsRecord;
use crate::Api;

/// Bars in a chart (24 hours of 15 minutes).
const BARS: usize = 96;
/// One bar's span, seconds.
const BAR_SECONDS: i64 = 900;
/// The chart's drawing size, in SVG units.
pub(super) const WIDTH: usize = BARS * 3;
pub(super) const HEIGHT: usize = 40;

/// The start of the 24 hours charted up to `now`, unix seconds.
pub(super) fn since(now: i64) -> i64 {
    now - BARS as i64 * BAR_SECONDS
}

/// One queue's (or one task type's) chart.
pub(super) struct Chart {
    /// The queue, or the task type on its page.
    pub queue: String,
    /// Per bar: x, and the heights of its completed and failed parts.
    pub bars: Vec<(usize, usize, usize)>,
    /// The depth line's points (`x,y x,y …`), empty without depths (and
    /// on a task type's chart: depth is the queue's).
    pub depth: String,
    /// The line of each bar's highest 95th percentile run time, scaled to
    /// the slowest (points as `depth`), empty without completed runs.
    pub p95: String,
    /// The slowest bar's 95th percentile, ms (the p95 line's top).
    pub p95_top: u64,
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
    let since = since(now);
    let js = api.client.jetstream();
    let mut out = vec![];
    for queue in queues {
        match crate::stats::read(&js, queue, since).await {
            Ok(records) => out.push(chart(queue, &records, since, now, None)),
            Err(e) => problems.push(format!("statistics of {queue}: {e}")),
        }
    }
    out
}

/// Draws `records` (oldest first) from `since` to `now` as `label`'s
/// chart, counting only task type `only` when given.
pub(super) fn chart(
    label: &str,
    records: &[StatsRecord],
    since: i64,
    now: i64,
    only: Option<&str>,
) -> Chart {
    let mut per_bar = vec![(0u64, 0u64); BARS];
    let mut p95_bar = vec![None::<u64>; BARS];
    let mut depth: Vec<(usize, u64)> = vec![];
    let (mut completed, mut failed, mut retried) = (0, 0, 0);
    let mut p95_last_hour: Option<u64> = None;
    for r in records {
        let bar = usize::try_from((r.start - since) / BAR_SECONDS)
            .unwrap_or(0)
            .min(BARS - 1);
        let types = || {
            r.types
                .iter()
                .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
                .map(|(_, t)| t)
        };
        for t in types() {
            per_bar[bar].0 += t.completed;
            per_bar[bar].1 += t.failed;
            completed += t.completed;
            failed += t.failed;
            retried += t.retried;
        }
        if let (Some(d), None) = (r.depth, only) {
            depth.push((bar, d));
        }
        for t in types().filter(|t| t.runs > 0) {
            p95_bar[bar] = Some(p95_bar[bar].unwrap_or(0).max(t.p95_ms));
            if r.start >= now - 3600 {
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
    let p95: Vec<(usize, u64)> = p95_bar
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    let p95_top = p95.iter().map(|p| p.1).max().unwrap_or(0);
    Chart {
        queue: label.to_string(),
        bars,
        depth: line(&depth),
        p95: line(&p95),
        p95_top,
        completed,
        failed,
        retried,
        p95_last_hour,
        intervals: records.len(),
    }
}

/// SVG polyline points of `(bar, value)`, scaled so the highest value
/// touches the top.
fn line(points: &[(usize, u64)]) -> String {
    let highest = points.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    points
        .iter()
        .map(|(bar, d)| {
            let y = HEIGHT as u64 - (d * HEIGHT as u64) / highest;
            format!("{},{y}", bar * 3 + 1)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One task type's (on a queue's page) or one queue's (on a task type's
/// page) figures over the 24 hours.
pub(super) struct Breakdown {
    /// The task type or queue.
    pub name: String,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    /// Completed runs timed.
    pub runs: u64,
    /// The highest interval's 95th and 99th percentile, and the longest
    /// run, ms (percentiles of intervals do not add up to the day's).
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Breakdown {
    fn new(name: &str) -> Breakdown {
        Breakdown {
            name: name.to_string(),
            completed: 0,
            failed: 0,
            retried: 0,
            runs: 0,
            p95_ms: 0,
            p99_ms: 0,
            max_ms: 0,
        }
    }

    fn add(&mut self, t: &crate::stats::TypeFigures) {
        self.completed += t.completed;
        self.failed += t.failed;
        self.retried += t.retried;
        self.runs += t.runs;
        if t.runs > 0 {
            self.p95_ms = self.p95_ms.max(t.p95_ms);
            self.p99_ms = self.p99_ms.max(t.p99_ms);
            self.max_ms = self.max_ms.max(t.max_ms);
        }
    }
}

/// `records`' figures by task type, by name.
pub(super) fn by_type(records: &[StatsRecord]) -> Vec<Breakdown> {
    let mut out: std::collections::BTreeMap<&str, Breakdown> = Default::default();
    for r in records {
        for (name, t) in &r.types {
            out.entry(name)
                .or_insert_with(|| Breakdown::new(name))
                .add(t);
        }
    }
    out.into_values().collect()
}

/// `records`' (one queue's) figures for task type `only`, named `queue`.
pub(super) fn of_type(queue: &str, records: &[StatsRecord], only: &str) -> Breakdown {
    let mut b = Breakdown::new(queue);
    for t in records.iter().filter_map(|r| r.types.get(only)) {
        b.add(t);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::TypeFigures;

    fn record(start: i64, figures: &[(&str, u64, u64, u64)]) -> StatsRecord {
        StatsRecord {
            queue: "Q".into(),
            start,
            seconds: 60,
            depth: Some(3),
            types: figures
                .iter()
                .map(|(n, c, f, p95)| {
                    let t = TypeFigures {
                        completed: *c,
                        failed: *f,
                        runs: *c,
                        p95_ms: *p95,
                        ..Default::default()
                    };
                    (n.to_string(), t)
                })
                .collect(),
            replica: "r".into(),
        }
    }

    #[test]
    fn a_type_chart_counts_only_its_type_and_draws_no_depth() {
        let now = 1_000_000;
        let since = since(now);
        let records = [
            record(now - 120, &[("a", 2, 1, 40), ("b", 5, 0, 900)]),
            record(now - 60, &[("a", 1, 0, 10)]),
        ];
        let all = chart("Q", &records, since, now, None);
        assert_eq!((all.completed, all.failed), (8, 1));
        assert!(!all.depth.is_empty());
        assert_eq!(all.p95_top, 900);
        let a = chart("a", &records, since, now, Some("a"));
        assert_eq!((a.completed, a.failed), (3, 1));
        assert!(a.depth.is_empty());
        assert_eq!((a.p95_top, a.p95_last_hour), (40, Some(40)));
        let types = by_type(&records);
        let names: Vec<_> = types
            .iter()
            .map(|b| (b.name.as_str(), b.completed, b.p95_ms))
            .collect();
        assert_eq!(names, [("a", 3, 40), ("b", 5, 900)]);
        assert_eq!(of_type("Q", &records, "b").completed, 5);
    }
}
