//! The cluster measurement (`--cluster`, `--only cluster`): the paired
//! framework and best raw client rows (enqueue sequential and batched,
//! process c10 and c100, enqueue+process, their client and server CPU)
//! at `--tasks`, `--reps` times, on a 3-node nats-server cluster started
//! on loopback ([`crate::server::Cluster`]), every stream with 3
//! replicas.
//!
//! Both sides' streams come from the framework's client
//! ([`crate::harness::connect`], as in the single-server comparison);
//! while the measurement runs, every client the benchmark builds asks for
//! [`replicas::get`] (the task store, the queues and every stream and bucket
//! the workers create), Go's program gets `--replicas 3`, and each
//! cleanup first checks ([`replicas::check`]) that every stream on the
//! cluster has 3 replicas. The server CPU is the sum of the three nodes'.

use crate::opts::Opts;
use crate::report::Results;
use crate::server::Cluster;
use crate::{compare, cpu, replicas};

/// Starts the cluster, measures the paired rows and adds the medians to
/// `extra` under `"cluster_r3"`; the cluster is stopped after.
pub async fn report(opts: &Opts, extra: &mut serde_json::Map<String, serde_json::Value>) {
    let cluster = Cluster::start().await;
    let url = cluster.url();
    let pids = cluster.pids();
    cpu::set_server_pids(&pids);
    replicas::set(3);
    let reps = opts.reps.max(1);
    eprintln!(
        "cluster of 3 nodes, every stream R3: {} tasks x {reps} reps \
         (server CPU: the 3 nodes summed)",
        opts.tasks
    );
    let mut res = Results::without_structure();
    compare::paired_rates(&url, opts, reps, &mut res).await;
    replicas::set(1);
    let checked = replicas::take_checked();
    let prefix = asyncjobs::Queue::new("").stream_name();
    let (queues, others): (Vec<&String>, Vec<&String>) =
        checked.iter().partition(|n| n.starts_with(&prefix));
    eprintln!(
        "every stream had 3 replicas at each cleanup: {} queue streams and {}",
        queues.len(),
        others
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut figures = res.json_rows(&[]);
    figures.insert("streams_checked".into(), checked.len().into());
    figures.insert("tasks".into(), opts.tasks.into());
    figures.insert("reps".into(), reps.into());
    figures.insert("replicas".into(), 3.into());
    figures.insert("nodes".into(), pids.len().into());
    extra.insert("cluster_r3".into(), figures.into());
    drop(cluster);
}
