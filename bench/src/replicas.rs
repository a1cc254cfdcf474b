//! The replicas every stream the benchmark's clients create asks for: 1,
//! but 3 while the cluster measurement ([`crate::cluster`]) runs, and
//! the check at each cleanup that every stream on the server has them.
//! A leaf: the measurements read it, the cluster measurement sets it.

use asyncjobs::Client;
use futures::TryStreamExt;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Replicas of every stream the benchmark's clients create.
static REPLICAS: AtomicUsize = AtomicUsize::new(1);

/// The streams [`check`] has found with the right replicas.
static CHECKED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The replicas every client of the benchmark asks for (1 but in the
/// cluster measurement).
pub fn get() -> usize {
    REPLICAS.load(Ordering::Relaxed)
}

/// In the cluster measurement: panics unless every stream on the server
/// (the task store, `queue`'s stream and the others) has [`get`].
pub async fn check(client: &Client, queue: &str) {
    let want = get();
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

/// Sets the replicas the clients ask for from now on.
pub fn set(n: usize) {
    REPLICAS.store(n, Ordering::Relaxed);
}

/// The streams [`check`] found with the right replicas, forgotten here.
pub fn take_checked() -> Vec<String> {
    std::mem::take(&mut *CHECKED.lock().unwrap())
        .into_iter()
        .collect()
}
