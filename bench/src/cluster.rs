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
//! [`replicas`] (the task store, the queues and every stream and bucket
//! the workers create), Go's program gets `--replicas 3`, and each
//! cleanup first checks ([`check_replicas`]) that every stream on the
//! cluster has 3 replicas. The server CPU is the sum of the three nodes'.

use crate::opts::Opts;
use crate::report::Results;
use crate::server::Cluster;
use crate::{compare, cpu};
use asyncjobs::Client;
use futures::TryStreamExt;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Replicas of every stream the benchmark's clients create.
static REPLICAS: AtomicUsize = AtomicUsize::new(1);

/// The streams [`check_replicas`] has found with the right replicas.
static CHECKED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The replicas every client of the benchmark asks for (1 but in the
/// cluster measurement).
pub fn replicas() -> usize {
    REPLICAS.load(Ordering::Relaxed)
}

/// In the cluster measurement: panics unless every stream on the server
/// (the task store, `queue`'s stream and the others) has [`replicas`].
pub async fn check_replicas(client: &Client, queue: &str) {
    let want = replicas();
    if want <= 1 {
        return;
    }
    let js = async_nats::jetstream::new(client.nats().clone());
    let infos: Vec<_> = js
        .streams()
        .try_collect()
        .await
        .expect("listing the cluster's streams");
    let queue_stream = asyncjobs::Queue::new(queue).stream_name();
    for name in ["CHORIA_AJ_TASKS", queue_stream.as_str()] {
        assert!(
            infos.iter().any(|i| i.config.name == name),
            "stream {name} missing on the cluster"
        );
    }
    for info in &infos {
        assert_eq!(
            info.config.num_replicas, want,
            "stream {} has {} replicas, not {want}",
            info.config.name, info.config.num_replicas
        );
    }
    let mut checked = CHECKED.lock().unwrap();
    checked.extend(infos.into_iter().map(|i| i.config.name));
}

/// Starts the cluster, measures the paired rows and adds the medians to
/// `extra` under `"cluster_r3"`; the cluster is stopped after.
pub async fn report(opts: &Opts, extra: &mut serde_json::Map<String, serde_json::Value>) {
    let cluster = Cluster::start().await;
    let url = cluster.url();
    let pids = cluster.pids();
    cpu::set_server_pids(&pids);
    REPLICAS.store(3, Ordering::Relaxed);
    let reps = opts.reps.max(1);
    eprintln!(
        "cluster of 3 nodes, every stream R3: {} tasks x {reps} reps \
         (server CPU: the 3 nodes summed)",
        opts.tasks
    );
    let mut res = Results::without_structure();
    compare::paired_rates(&url, opts, reps, &mut res).await;
    REPLICAS.store(1, Ordering::Relaxed);
    let checked: Vec<String> = std::mem::take(&mut *CHECKED.lock().unwrap())
        .into_iter()
        .collect();
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
