//! The report: one row a measurement (the framework beside the best raw
//! client and the raw client with the framework's structure) printed as it
//! is measured, and the `--json` summary of the medians.

use crate::opts::Opts;

/// One measurement's samples: the framework, the best raw client and the
/// raw client with the framework's structure (empty where not measured).
struct Row {
    name: String,
    ours: Vec<f64>,
    best: Vec<f64>,
    structure: Vec<f64>,
}

/// The rows printed so far, for the JSON summary.
#[derive(Default)]
pub struct Results {
    rows: Vec<Row>,
}

/// Minimum, median and maximum (`None` without samples).
pub fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some((s[0], s[s.len() / 2], s[s.len() - 1]))
}

/// The median of the per-repetition ratios `ours[i] / best[i]`: each
/// repetition measures both sides minutes apart at most, so this ratio is
/// steadier than the ratio of the medians when the machine's speed drifts
/// between repetitions (`None` without paired samples).
fn paired_ratio(ours: &[f64], best: &[f64]) -> Option<f64> {
    if ours.is_empty() || ours.len() != best.len() {
        return None;
    }
    let ratios: Vec<f64> = ours
        .iter()
        .zip(best)
        .filter(|(_, b)| **b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    stats(&ratios).map(|s| s.1)
}

impl Results {
    /// Prints a row (median [min..max] of each side, the framework's
    /// ratio to each, and the paired ratio) and keeps its samples.
    pub fn add(
        &mut self,
        name: &str,
        ours: Vec<f64>,
        best: Vec<f64>,
        structure: Vec<f64>,
        unit: &'static str,
    ) {
        let cell = |v: &[f64]| match stats(v) {
            Some((lo, mid, hi)) => format!("{mid:>9.1} [{lo:>8.1}..{hi:>8.1}]"),
            None => format!("{:>29}", "-"),
        };
        let ratio = |v: &[f64]| match (stats(&ours), stats(v)) {
            (Some(a), Some(b)) if b.1 > 0.0 => {
                if unit == "tasks/s" {
                    format!("{:>4.0}%", a.1 / b.1 * 100.0)
                } else {
                    format!("{:>4.2}x", a.1 / b.1)
                }
            }
            _ => "     ".to_string(),
        };
        let paired = match paired_ratio(&ours, &best) {
            Some(r) if unit == "tasks/s" => format!(" (paired {:>3.0}%)", r * 100.0),
            Some(r) => format!(" (paired {r:>4.2}x)"),
            None => String::new(),
        };
        eprintln!(
            "{name:<28} {} | best raw {} {}{paired} | raw as framework {} {} {unit}",
            cell(&ours),
            cell(&best),
            ratio(&best),
            cell(&structure),
            ratio(&structure),
        );
        self.rows.push(Row {
            name: name.to_string(),
            ours,
            best,
            structure,
        });
    }

    /// Medians of the framework, best raw and structural raw samples.
    pub fn medians(&self, name: &str) -> [Option<f64>; 3] {
        let r = self.rows.iter().find(|r| r.name == name).expect("measured");
        [&r.ours, &r.best, &r.structure].map(|v| stats(v).map(|s| s.1))
    }

    /// [`paired_ratio`] of the framework and the best raw client.
    pub fn paired(&self, name: &str) -> Option<f64> {
        let r = self.rows.iter().find(|r| r.name == name).expect("measured");
        paired_ratio(&r.ours, &r.best)
    }
}

/// The 50th and 99th percentiles.
pub fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (p(0.50), p(0.99))
}

/// The `--json` summary: the medians of every row under its key (`best_`
/// and `raw_` for the other sides), the paired ratios, the `extra`
/// figures and the run's settings.
pub fn json_summary(
    res: &Results,
    extra: serde_json::Map<String, serde_json::Value>,
    opts: &Opts,
    reps: usize,
    inflight_name: &str,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (key, name) in [
        ("enqueue_per_sec", "enqueue (sequential)"),
        ("enqueue_batch_per_sec", "enqueue (batch/pipelined)"),
        ("process_c10_per_sec", "process c10"),
        ("process_c100_per_sec", "process c100"),
        ("e2e_per_sec", "enqueue+process"),
        ("latency_p50_ms", "latency p50"),
        ("latency_p99_ms", "latency p99"),
        ("rss_idle_mib", "worker RSS idle"),
        ("rss_inflight_mib", inflight_name),
        ("process_c10_client_cpu_us", "process c10 client CPU"),
        ("process_c100_client_cpu_us", "process c100 client CPU"),
        ("e2e_client_cpu_us", "enqueue+process client CPU"),
        ("process_c10_server_cpu_us", "process c10 server CPU"),
        ("process_c100_server_cpu_us", "process c100 server CPU"),
        ("e2e_server_cpu_us", "enqueue+process server CPU"),
    ] {
        for (prefix, median) in ["", "best_", "raw_"].into_iter().zip(res.medians(name)) {
            if let Some(m) = median {
                out.insert(
                    format!("{prefix}{key}"),
                    serde_json::json!((m * 100.0).round() / 100.0),
                );
            }
        }
        if let Some(r) = res.paired(name) {
            out.insert(
                format!("paired_ratio_{key}"),
                serde_json::json!((r * 1000.0).round() / 1000.0),
            );
        }
    }
    out.extend(extra);
    out.insert("tasks".into(), opts.tasks.into());
    out.insert("reps".into(), reps.into());
    out.insert(
        "storage".into(),
        if opts.memory { "memory" } else { "file" }.into(),
    );
    serde_json::Value::Object(out)
}
