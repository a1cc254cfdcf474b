//! Where a handler runs (docs/processing.md §2.7).
//!
//! A handler polled on the worker's own thread costs nothing to start or
//! finish, but a poll that blocks that thread (blocking code in an `async
//! fn`: `std::thread::sleep`, a synchronous client, driver or file call)
//! holds up everything else the worker does. So a task type earns its place
//! on the worker's thread: its tasks run on the handler pool, each a tokio
//! task of its own, until [`TRUST_AFTER`] polls in a row each held their
//! thread less than [`TRUST_POLL`]; then they run in place. A poll in place
//! that holds the thread [`UNTRUST_POLL`] or more sends the type back to the
//! pool. A poll of [`BLOCKING_POLL`] or more, anywhere, marks the type
//! blocking: each of its later tasks gets a thread of its own (tokio's
//! blocking threads), so however many block at once they take no pool
//! thread. The watchdog (`watchdog.rs`) marks a type blocking while such a
//! poll still blocks, and names the handler.
//!
//! Without a pool, handlers run in place, and blocking types on threads of
//! their own.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Polls in a row under [`TRUST_POLL`] that move a type's tasks from the
/// pool to the worker's thread.
pub(crate) const TRUST_AFTER: u32 = 64;
/// A poll shorter than this counts towards [`TRUST_AFTER`].
pub(crate) const TRUST_POLL: Duration = Duration::from_millis(1);
/// A poll in place this long sends the type's tasks back to the pool.
pub(crate) const UNTRUST_POLL: Duration = Duration::from_millis(10);
/// A poll this long blocked its thread (no preemption explains it): the
/// type's later tasks each get a thread of their own.
pub(crate) const BLOCKING_POLL: Duration = super::watchdog::MARK_AFTER;

/// What is known of a task type's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// On the pool; this many polls in a row were short.
    Probation(u32),
    /// In place, on the worker's thread.
    Trusted,
    /// Each task on a thread of its own.
    Blocking,
}

/// What is known of each task type, shared by one worker's handlers.
#[derive(Default)]
pub(crate) struct KnownTypes(RwLock<HashMap<String, Known>>);

impl KnownTypes {
    pub(crate) fn known(&self, task_type: &str) -> Known {
        self.0
            .read()
            .expect("known types")
            .get(task_type)
            .copied()
            .unwrap_or(Known::Probation(0))
    }

    /// A poll of `task_type` held its thread for `held`.
    fn polled(&self, task_type: &str, held: Duration) {
        let now = self.known(task_type);
        let next = match now {
            _ if held >= BLOCKING_POLL => return self.blocked(task_type, held),
            Known::Blocking => return,
            Known::Trusted if held < UNTRUST_POLL => return,
            Known::Trusted => {
                tracing::info!(r#type = %task_type, ?held,
                    "handler held the worker's thread in one poll; its tasks run on the handler pool again");
                Known::Probation(0)
            }
            Known::Probation(n) if held < TRUST_POLL && n + 1 >= TRUST_AFTER => Known::Trusted,
            Known::Probation(n) if held < TRUST_POLL => Known::Probation(n + 1),
            Known::Probation(_) => Known::Probation(0),
        };
        let mut known = self.0.write().expect("known types");
        // another handler of the type may have marked it blocking meanwhile
        if known.get(task_type) != Some(&Known::Blocking) {
            known.insert(task_type.to_string(), next);
        }
    }

    /// A poll of `task_type` held (or holds) its thread for `held`: logged
    /// once per type.
    fn blocked(&self, task_type: &str, held: Duration) {
        if self.known(task_type) == Known::Blocking {
            return;
        }
        let before = self
            .0
            .write()
            .expect("known types")
            .insert(task_type.to_string(), Known::Blocking);
        if before != Some(Known::Blocking) {
            tracing::warn!(r#type = %task_type, ?held,
                "handler blocked its thread in one poll (blocking code in an async fn); its later tasks each run on a thread of their own. Wrap blocking calls in tokio::task::spawn_blocking");
        }
    }
}

/// Starts a handler future where its type's record says (see the module
/// docs): in place (the returned [`Running`] polls it), as a task on
/// `pool`, or on a thread of its own. Dropping the returned [`Running`]
/// stops the handler at its next `.await` (code that blocks its thread
/// runs on until it returns).
pub(crate) fn start<F>(
    fut: F,
    task_type: &str,
    id: &str,
    pool: Option<&Handle>,
    known: &Arc<KnownTypes>,
) -> Running<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let watched = Watched {
        fut,
        tag: Arc::new(Tag {
            what: format!("{task_type} (task {id})"),
            type_len: task_type.len(),
            known: known.clone(),
        }),
    };
    match (known.known(task_type), pool) {
        (Known::Blocking, pool) => {
            let on = pool.cloned().unwrap_or_else(Handle::current);
            let stop = CancellationToken::new();
            let stopped = stop.clone();
            let driver = on.clone();
            let thread = on.spawn_blocking(move || {
                driver.block_on(async move {
                    tokio::select! {
                        out = watched => Some(out),
                        _ = stopped.cancelled() => None,
                    }
                })
            });
            Running(State::Thread { thread, stop })
        }
        (Known::Probation(_), Some(pool)) => Running(State::Task(pool.spawn(watched))),
        _ => Running(State::Here(Box::pin(watched))),
    }
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
pub(crate) struct Running<F: Future>(State<F>);

enum State<F: Future> {
    /// Polled in place, by whoever polls the [`Running`].
    Here(Pin<Box<Watched<F>>>),
    /// A task on the pool.
    Task(JoinHandle<F::Output>),
    /// On a thread of its own; `stop` ends it at its next `.await`.
    Thread {
        thread: JoinHandle<Option<F::Output>>,
        stop: CancellationToken,
    },
    Done,
}

impl<F: Future> Future for Running<F> {
    type Output = Result<F::Output, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let joined = match &mut self.0 {
            State::Here(fut) => {
                let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    fut.as_mut().poll(cx)
                }));
                match polled {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(out)) => Ok(Some(out)),
                    // the handler's future is dropped below, as a task's is
                    Err(payload) => {
                        self.0 = State::Done;
                        return Poll::Ready(Err(Stopped::Panicked(payload)));
                    }
                }
            }
            State::Task(join) => std::task::ready!(Pin::new(join).poll(cx)).map(Some),
            State::Thread { thread, .. } => std::task::ready!(Pin::new(thread).poll(cx)),
            State::Done => panic!("handler polled after it finished"),
        };
        self.0 = State::Done;
        Poll::Ready(match joined {
            Ok(Some(out)) => Ok(out),
            Err(e) if e.is_panic() => Err(Stopped::Panicked(e.into_panic())),
            // stopped only through Drop below, or by the pool shutting
            // down with the program
            Ok(None) | Err(_) => Err(Stopped::Cancelled),
        })
    }
}

impl<F: Future> Drop for Running<F> {
    fn drop(&mut self) {
        // the worker stopped the handler (time-out, shutdown, fence)
        match &self.0 {
            State::Task(join) => join.abort(),
            State::Thread { stop, .. } => stop.cancel(),
            State::Here(_) | State::Done => {}
        }
    }
}

/// Who a handler is, for the watchdog and the type's record.
struct Tag {
    /// `<type> (task <id>)`
    what: String,
    /// the type is `what[..type_len]`
    type_len: usize,
    known: Arc<KnownTypes>,
}

impl super::watchdog::Watched for Tag {
    fn name(&self) -> &str {
        &self.what
    }

    fn blocks(&self, held: Duration) {
        self.known.blocked(&self.what[..self.type_len], held);
    }
}

pin_project_lite::pin_project! {
    /// A handler whose polls the watchdog watches and whose poll times
    /// go into its type's record.
    struct Watched<F> {
        #[pin]
        fut: F,
        tag: Arc<Tag>,
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
        let tag = &**this.tag;
        tag.known
            .polled(&tag.what[..tag.type_len], started.elapsed());
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
        let known = Arc::new(KnownTypes::default());
        rt.block_on(async {
            // blocks its pool thread until the test lets it go
            let blocker = start(
                async move {
                    let _ = rx.recv_timeout(Duration::from_secs(30));
                },
                "block",
                "b",
                Some(pool.handle()),
                &known,
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
                if i < TRUST_AFTER as usize / 2 {
                    assert!(matches!(known.known("quick"), Known::Probation(_)));
                }
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

    #[test]
    fn a_type_earns_the_workers_thread_and_loses_it() {
        let known = KnownTypes::default();
        let short = TRUST_POLL / 2;
        assert_eq!(known.known("t"), Known::Probation(0));
        for _ in 0..TRUST_AFTER - 1 {
            known.polled("t", short);
        }
        assert_eq!(known.known("t"), Known::Probation(TRUST_AFTER - 1));
        // one poll of a millisecond or more starts the count again
        known.polled("t", TRUST_POLL);
        assert_eq!(known.known("t"), Known::Probation(0));
        for _ in 0..TRUST_AFTER {
            known.polled("t", short);
        }
        assert_eq!(known.known("t"), Known::Trusted);
        // in place, polls under UNTRUST_POLL keep it there
        known.polled("t", UNTRUST_POLL / 2);
        assert_eq!(known.known("t"), Known::Trusted);
        known.polled("t", UNTRUST_POLL);
        assert_eq!(known.known("t"), Known::Probation(0));
        // a blocking poll, from any state, for good
        known.polled("t", BLOCKING_POLL);
        assert_eq!(known.known("t"), Known::Blocking);
        for _ in 0..TRUST_AFTER * 2 {
            known.polled("t", short);
        }
        assert_eq!(known.known("t"), Known::Blocking);
        // other types are unaffected
        assert_eq!(known.known("u"), Known::Probation(0));
    }
}
