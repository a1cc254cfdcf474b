//! Where a handler runs (docs/processing.md §2.7): as a tokio task of its
//! own, on the handler pool when the worker has one
//! ([`Worker::handler_pool`](crate::Worker::handler_pool)), else on the
//! runtime the worker runs on.
//!
//! The worker's own work (pulls, loads, saves, acks, heartbeats, leases and
//! run-time deadlines) never shares a thread with a handler that has a pool
//! to run on. A handler that blocks the thread it runs on (blocking code in
//! an `async fn`: `std::thread::sleep`, a synchronous client, driver or file
//! call) holds up that one pool thread: the pool's other threads take the
//! tasks queued behind it (tokio's work stealing), and the worker still
//! stops the try at its run time, saves its record and settles its item.
//! The watchdog (`watchdog.rs`) names such a handler while it blocks.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A poll this long blocked its thread (no preemption explains it): the
/// type's later tasks each get a thread of their own. The watchdog says so
/// while such a poll still blocks.
pub(crate) const BLOCKING_POLL: Duration = super::watchdog::MARK_AFTER;

/// Task types whose handler was seen to block its thread in one poll
/// ([`BLOCKING_POLL`]), shared by one worker's handlers.
#[derive(Default)]
pub(crate) struct BlockingTypes(RwLock<HashSet<String>>);

impl BlockingTypes {
    fn contains(&self, task_type: &str) -> bool {
        self.0.read().expect("blocking types").contains(task_type)
    }

    /// A poll of `task_type` held its thread for `held`: logged once per type.
    fn blocked(&self, task_type: &str, held: Duration) {
        if self.contains(task_type) {
            return;
        }
        if self
            .0
            .write()
            .expect("blocking types")
            .insert(task_type.to_string())
        {
            tracing::warn!(r#type = %task_type, ?held,
                "handler blocked its thread in one poll (blocking code in an async fn); its later tasks each run on a thread of their own. Wrap blocking calls in tokio::task::spawn_blocking");
        }
    }
}

/// Starts a handler future as a task of its own: on `pool`, or on the
/// current runtime without one; a task of a type in `blocking` gets a
/// thread of its own (tokio's blocking threads, driving the future with
/// the runtime's handle). Dropping the returned [`Running`] stops the
/// handler at its next `.await` (code that blocks its thread runs on until
/// it returns).
pub(crate) fn start<F>(
    fut: F,
    task_type: &str,
    id: &str,
    pool: Option<&Handle>,
    blocking: &Arc<BlockingTypes>,
) -> Running<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let watched = Watched {
        fut,
        tag: Arc::new(Tag {
            what: format!("{task_type} (task {id})"),
            type_len: task_type.len(),
            blocking: blocking.clone(),
        }),
    };
    let handle = match pool {
        Some(pool) => pool.clone(),
        None => Handle::current(),
    };
    if !blocking.contains(task_type) {
        return Running::Task(handle.spawn(watched));
    }
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let on = handle.clone();
    let thread = handle.spawn_blocking(move || {
        on.block_on(async move {
            tokio::select! {
                out = watched => Some(out),
                _ = stopped.cancelled() => None,
            }
        })
    });
    Running::Thread { thread, stop }
}

/// Why a handler ended without returning.
pub(crate) enum Stopped {
    /// It panicked, with the panic's payload.
    Panicked(Box<dyn std::any::Any + Send>),
    /// Its runtime stopped it (the pool shut down).
    Cancelled,
}

/// A started handler ([`start`]): resolves to its output, or to why it
/// stopped.
pub(crate) enum Running<T> {
    /// A task on the pool (or the worker's runtime).
    Task(JoinHandle<T>),
    /// On a thread of its own; `stop` ends it at its next `.await`.
    Thread {
        thread: JoinHandle<Option<T>>,
        stop: CancellationToken,
    },
}

impl<T> Future for Running<T> {
    type Output = Result<T, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let joined = match &mut *self {
            Running::Task(join) => std::task::ready!(Pin::new(join).poll(cx)).map(Some),
            Running::Thread { thread, .. } => std::task::ready!(Pin::new(thread).poll(cx)),
        };
        Poll::Ready(match joined {
            Ok(Some(out)) => Ok(out),
            Err(e) if e.is_panic() => Err(Stopped::Panicked(e.into_panic())),
            // stopped only through Drop below, or by the pool shutting
            // down with the program
            Ok(None) | Err(_) => Err(Stopped::Cancelled),
        })
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        // the worker stopped the handler (time-out, shutdown, fence)
        match self {
            Running::Task(join) => join.abort(),
            Running::Thread { stop, .. } => stop.cancel(),
        }
    }
}

/// Who a handler is, for the watchdog.
struct Tag {
    /// `<type> (task <id>)`
    what: String,
    /// the type is `what[..type_len]`
    type_len: usize,
    blocking: Arc<BlockingTypes>,
}

impl super::watchdog::Watched for Tag {
    fn name(&self) -> &str {
        &self.what
    }

    fn blocks(&self, held: Duration) {
        self.blocking.blocked(&self.what[..self.type_len], held);
    }
}

pin_project_lite::pin_project! {
    /// A handler whose polls the watchdog watches; a long poll marks its
    /// type blocking (here when it returns, by the watchdog while it
    /// blocks).
    struct Watched<F> {
        #[pin]
        fut: F,
        tag: Arc<dyn super::watchdog::Watched>,
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let started = Instant::now();
        let polled = {
            let _watched = super::watchdog::polling(this.tag);
            this.fut.poll(cx)
        };
        let held = started.elapsed();
        if held >= BLOCKING_POLL {
            this.tag.blocks(held);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_handler_blocking_a_pool_thread_holds_up_no_other_handler() {
        let pool = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        rt.block_on(async {
            // blocks its pool thread until the test lets it go
            let blocker = start(
                async move {
                    let _ = rx.recv_timeout(Duration::from_secs(30));
                },
                "block",
                "b",
                Some(pool.handle()),
                &Arc::default(),
            );
            // quick handlers started after it all finish meanwhile, and
            // the worker's own timers keep firing
            for i in 0..50 {
                let quick = start(
                    async move {
                        tokio::task::yield_now().await;
                        i
                    },
                    "quick",
                    "q",
                    Some(pool.handle()),
                    &Arc::default(),
                );
                let out = tokio::time::timeout(Duration::from_secs(10), quick)
                    .await
                    .expect("a quick handler waited for the blocked one");
                assert_eq!(out.ok(), Some(i));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tx.send(()).unwrap();
            assert!(blocker.await.is_ok());
        });
        pool.shutdown_background();
    }

    #[test]
    fn a_panic_and_an_abort_are_told_apart() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let panicked = start(async { panic!("boom") }, "p", "p", None, &Arc::default()).await;
            match panicked {
                Err(Stopped::Panicked(p)) => {
                    assert_eq!(p.downcast_ref::<&str>(), Some(&"boom"));
                }
                _ => panic!("a panic is reported as one"),
            }
        });
    }
}
