//! The report: one row a measurement (the framework beside the best raw
//! client and the raw client with the framework's structure, and with
//! `--go` the Go implementation) printed as it is measured, and the
//! `--json` summary of the medians.

use crate::opts::Opts;

/// One measurement's samples: the framework, the best raw client, the
/// raw client with the framework's structure and the Go implementation
/// (empty where not measured; NaN for a repetition whose run failed).
struct Row {
    name: String,
    ours: Vec<f64>,
    best: Vec<f64>,
    structure: Vec<f64>,
    go: Vec<f64>,
}

/// The rows printed so far, for the JSON summary.
#[derive(Default)]
pub struct Results {
    rows: Vec<Row>,
    /// Rows printed without the "raw as framework" column (`--sizes`,
    /// `--cluster` do not measure that side).
    hide_structure: bool,
}

/// The medians' keys in the `--json` summary and the rows they are of.
const JSON_KEYS: [(&str, &str); 13] = [
    ("enqueue_per_sec", "enqueue (sequential)"),
    ("enqueue_batch_per_sec", "enqueue (batch/pipelined)"),
    ("process_c10_per_sec", "process c10"),
    ("process_c100_per_sec", "process c100"),
    ("e2e_per_sec", "enqueue+process"),
    ("latency_p50_ms", "latency p50"),
    ("latency_p99_ms", "latency p99"),
    ("process_c10_client_cpu_us", "process c10 client CPU"),
    ("process_c100_client_cpu_us", "process c100 client CPU"),
    ("e2e_client_cpu_us", "enqueue+process client CPU"),
    ("process_c10_server_cpu_us", "process c10 server CPU"),
    ("process_c100_server_cpu_us", "process c100 server CPU"),
    ("e2e_server_cpu_us", "enqueue+process server CPU"),
];

/// Minimum, median and maximum (`None` without samples; NaN samples, of
/// failed runs, are left out).
pub fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return None;
    }
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
        .filter(|(a, b)| **b > 0.0 && !a.is_nan())
        .map(|(a, b)| a / b)
        .collect();
    stats(&ratios).map(|s| s.1)
}

impl Results {
    /// Results whose rows leave out the "raw as framework" column.
    pub fn without_structure() -> Results {
        Results {
            hide_structure: true,
            ..Results::default()
        }
    }

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
        self.add_with_go(name, ours, best, structure, vec![], unit);
    }

    /// [`add`](Self::add) with the Go implementation's samples (a column
    /// of their own, with the framework's ratio and paired ratio to Go,
    /// printed when there are any).
    pub fn add_with_go(
        &mut self,
        name: &str,
        ours: Vec<f64>,
        best: Vec<f64>,
        structure: Vec<f64>,
        go: Vec<f64>,
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
        let paired = |v: &[f64]| match paired_ratio(&ours, v) {
            Some(r) if unit == "tasks/s" => format!(" (paired {:>3.0}%)", r * 100.0),
            Some(r) => format!(" (paired {r:>4.2}x)"),
            None => String::new(),
        };
        let mut line = format!(
            "{name:<28} {} | best raw {} {}{}",
            cell(&ours),
            cell(&best),
            ratio(&best),
            paired(&best),
        );
        if !self.hide_structure {
            line += &format!(
                " | raw as framework {} {}",
                cell(&structure),
                ratio(&structure)
            );
        }
        if !go.is_empty() {
            line += &format!(" | go {} {}{}", cell(&go), ratio(&go), paired(&go));
        }
        eprintln!("{line} {unit}");
        self.rows.push(Row {
            name: name.to_string(),
            ours,
            best,
            structure,
            go,
        });
    }

    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// The rows' figures in the `--json` summary's shape: the medians of
    /// each measured row of [`JSON_KEYS`] and `extra_keys` under its key
    /// (`best_`, `raw_` and `go_` for the other sides), and the paired
    /// ratios of the framework to the best raw client
    /// (`paired_ratio_KEY`) and to Go (`paired_ratio_go_KEY`).
    pub fn json_rows(
        &self,
        extra_keys: &[(&str, &str)],
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for &(key, name) in JSON_KEYS.iter().chain(extra_keys) {
            let Some(r) = self.row(name) else { continue };
            let medians = [&r.ours, &r.best, &r.structure, &r.go].map(|v| stats(v).map(|s| s.1));
            for (prefix, median) in ["", "best_", "raw_", "go_"].into_iter().zip(medians) {
                if let Some(m) = median {
                    out.insert(
                        format!("{prefix}{key}"),
                        serde_json::json!((m * 100.0).round() / 100.0),
                    );
                }
            }
            for (prefix, other) in [("", &r.best), ("go_", &r.go)] {
                if let Some(p) = paired_ratio(&r.ours, other) {
                    out.insert(
                        format!("paired_ratio_{prefix}{key}"),
                        serde_json::json!((p * 1000.0).round() / 1000.0),
                    );
                }
            }
        }
        out
    }
}

/// The 50th and 99th percentiles.
pub fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (p(0.50), p(0.99))
}

/// The `--json` summary: the medians of every row under its key (`best_`,
/// `raw_` and `go_` for the other sides), the paired ratios
/// ([`Results::json_rows`]), the `extra` figures and the run's settings.
pub fn json_summary(
    res: &Results,
    extra: serde_json::Map<String, serde_json::Value>,
    opts: &Opts,
    reps: usize,
    inflight_name: &str,
) -> serde_json::Value {
    let mut out = res.json_rows(&[
        ("rss_idle_mib", "worker RSS idle"),
        ("rss_inflight_mib", inflight_name),
    ]);
    out.extend(extra);
    out.insert("tasks".into(), opts.tasks.into());
    out.insert("reps".into(), reps.into());
    out.insert(
        "storage".into(),
        if opts.memory { "memory" } else { "file" }.into(),
    );
    serde_json::Value::Object(out)
}
