//! What every side's measurements share: clients and queues, the tasks,
//! the count of finished tasks, the checks after a run, and a thread with
//! a current-thread runtime.

use crate::opts::Opts;
use asyncjobs::{Client, Queue, Router, Task, TaskContext};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client of `queue`, creating it (60 s run time, 1000 concurrent) in
/// the storage `--memory` selects (with the cluster measurement's
/// replicas, [`crate::replicas::get`]).
pub async fn connect(url: &str, queue: &str, opts: &Opts) -> Client {
    let mut b = Client::builder().url(url).queue(
        Queue::new(queue)
            .max_run_time(Duration::from_secs(60))
            .max_concurrent(1000),
    );
    b = b.replicas(crate::replicas::get());
    if opts.memory {
        b = b.memory_storage();
    }
    b.build().await.expect("client")
}

/// `n` tasks of type `bench` with a small JSON payload.
pub fn tasks(n: usize) -> Vec<Task> {
    (0..n)
        .map(|i| {
            Task::new(
                "bench",
                &serde_json::json!({"n": i, "to": "user@example.net"}),
            )
            .unwrap()
        })
        .collect()
}

/// Deletes `queue` and purges the task store (in the cluster
/// measurement, after checking every stream's replicas).
pub async fn cleanup(client: &Client, queue: &str) {
    crate::replicas::check(client, queue).await;
    let _ = client.delete_queue(queue).await;
    let _ = client.purge_tasks().await;
}

/// Tasks finished in a measurement, and a wake-up when the target count
/// is reached: the timed section waits for it without polling (a poll
/// loop costs CPU and, through `queue_info`, server requests, which
/// would be charged to the side being measured).
pub(crate) struct Done {
    count: AtomicU64,
    target: u64,
    reached: tokio::sync::Notify,
}

impl Done {
    pub(crate) fn new(target: usize) -> Arc<Done> {
        Arc::new(Done {
            count: AtomicU64::new(0),
            target: target as u64,
            reached: tokio::sync::Notify::new(),
        })
    }

    /// Counts one finished task.
    pub(crate) fn add(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            // stores a permit when nobody waits yet
            self.reached.notify_one();
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    /// Returns once the target count is reached.
    pub(crate) async fn reached(&self) {
        if self.count() as u64 >= self.target {
            return;
        }
        self.reached.notified().await;
    }
}

/// A router whose `bench` handler does nothing but count.
pub fn noop_router(done: Arc<Done>) -> Router {
    Router::new()
        .handle("bench", move |_ctx: TaskContext, _t: Task| {
            done.add();
            async move { asyncjobs::handler::to_output(&()) }
        })
        .unwrap()
}

/// Waits until `queue` holds no items (every task acknowledged).
pub async fn wait_drained(client: &Client, queue: &str, expect: usize) {
    let started = Instant::now();
    loop {
        let info = client.queue_info(queue).await.unwrap();
        if info.stream.messages == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "queue {queue} still has {} of {expect} items",
            info.stream.messages
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every task complete and the queue empty: checked after each run.
pub async fn verify_complete(client: &Client, queue: &str, ids: &[String]) {
    assert_eq!(
        client.queue_info(queue).await.unwrap().stream.messages,
        0,
        "queue {queue} not empty"
    );
    for id in ids {
        let t = client.load_task(id).await.unwrap();
        assert_eq!(
            t.state,
            asyncjobs::TaskState::Complete,
            "task {id} is {}",
            t.state
        );
    }
}

/// A producer's client of `queue` (bound, as the queue exists).
pub async fn producer(url: &str, queue: &str) -> Client {
    Client::builder()
        .url(url)
        .replicas(crate::replicas::get())
        .bind_queue(queue)
        .build()
        .await
        .expect("producer client")
}

/// Runs `make()`'s future on a new thread with a current-thread runtime
/// (the flavour the best raw client runs on), from async code.
pub(crate) async fn on_current_thread<F, Fut, T>(make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("current-thread runtime")
            .block_on(make())
    })
    .await
    .expect("benchmark thread")
}
