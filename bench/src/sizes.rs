//! The size measurement (`--sizes 5000,20000,100000`): the paired
//! framework and best raw client rows (enqueue sequential and batched,
//! process c10 and c100, enqueue+process, their client and server CPU)
//! at each task count, `--size-reps` times, on the run's server: how the
//! framework's rates and its ratio to the best raw client hold as a
//! queue and the task store grow. The "raw as framework" side is left
//! out (time); `--go` adds Go's column as in the main comparison.

use crate::compare;
use crate::opts::Opts;
use crate::report::Results;

/// A table per size on stderr, and the medians and paired ratios in
/// `extra` under `"sizes"` (`{"5000": {"process_c10_per_sec": ..,
/// "best_process_c10_per_sec": .., "paired_ratio_process_c10_per_sec":
/// .., ..}, ..}`).
pub async fn report(
    url: &str,
    opts: &Opts,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) {
    let reps = opts.size_reps.max(1);
    let mut sizes = serde_json::Map::new();
    for &n in &opts.sizes {
        eprintln!("size {n}: {n} tasks x {reps} reps, framework beside the best raw client");
        // the measurements take their task count from `tasks`
        let sized = Opts {
            tasks: n,
            ..opts.clone()
        };
        let mut res = Results::without_structure();
        compare::paired_rates(url, &sized, reps, &mut res).await;
        let mut figures = res.json_rows(&[]);
        figures.insert("reps".into(), reps.into());
        sizes.insert(n.to_string(), figures.into());
    }
    extra.insert("sizes".into(), sizes.into());
}
