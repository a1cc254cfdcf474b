//! Where a handler runs: on the worker's own thread, or on the handler
//! pool ([`Worker::handler_runtime`](crate::Worker::handler_runtime)).
//!
//! Handlers start on the worker's thread: most only wait on I/O, and a
//! hand-off to another thread and back costs more than they do. A handler
//! that holds the thread for [`HEAVY_POLL`] or longer in one poll (CPU
//! work) is moved to the pool at its next poll, and every later task of
//! its type starts there, so CPU-bound handlers use every core while the
//! worker's JetStream round trips are not held up behind them.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// A poll at least this long marks a handler's type as CPU-heavy.
pub(crate) const HEAVY_POLL: Duration = Duration::from_micros(250);

/// The task types found CPU-heavy, shared by one worker's handlers.
#[derive(Default)]
pub(crate) struct HeavyTypes(RwLock<HashSet<String>>);

impl HeavyTypes {
    pub(crate) fn contains(&self, task_type: &str) -> bool {
        self.0.read().expect("heavy types").contains(task_type)
    }

    fn insert(&self, task_type: &str) {
        let newly = self
            .0
            .write()
            .expect("heavy types")
            .insert(task_type.to_string());
        if newly {
            tracing::info!(r#type = %task_type, threshold = ?HEAVY_POLL,
                "handler held the worker's thread in one poll; its tasks run on the handler pool from now on");
        }
    }
}

/// Spawns a handler future where it should run: on `pool` when its type
/// is known to be heavy, else on the current (worker) runtime, watched.
pub(crate) fn spawn<F>(
    fut: F,
    task_type: &str,
    pool: Option<&Handle>,
    heavy: &Arc<HeavyTypes>,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match pool {
        None => tokio::spawn(fut),
        Some(pool) if heavy.contains(task_type) => pool.spawn(fut),
        Some(pool) => tokio::spawn(Watched {
            state: State::Here(Box::pin(fut)),
            pool: pool.clone(),
            heavy: heavy.clone(),
            task_type: task_type.to_string(),
        }),
    }
}

enum State<F: Future> {
    /// Polled on the worker's thread.
    Here(Pin<Box<F>>),
    /// Moved to the pool; its result comes through the handle.
    Moved(JoinHandle<F::Output>),
    Done,
}

/// A handler polled on the worker's thread until one poll is too long.
struct Watched<F: Future> {
    state: State<F>,
    pool: Handle,
    heavy: Arc<HeavyTypes>,
    task_type: String,
}

impl<F> Future for Watched<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Here(fut) => {
                    let started = Instant::now();
                    let polled = fut.as_mut().poll(cx);
                    let long = started.elapsed() >= HEAVY_POLL;
                    if long {
                        // also when it finished in that poll: the type's
                        // next tasks start on the pool
                        this.heavy.insert(&this.task_type);
                    }
                    if polled.is_ready() {
                        this.state = State::Done;
                        return polled;
                    }
                    if long {
                        let State::Here(fut) = std::mem::replace(&mut this.state, State::Done)
                        else {
                            unreachable!("matched above");
                        };
                        this.state = State::Moved(this.pool.spawn(fut));
                        continue;
                    }
                    return Poll::Pending;
                }
                State::Moved(join) => {
                    let done = std::task::ready!(Pin::new(join).poll(cx));
                    this.state = State::Done;
                    return match done {
                        Ok(out) => Poll::Ready(out),
                        // the handler panicked on the pool: panic here
                        // too, so the worker reports it as for any handler
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        // aborted only through Drop below, or by the pool
                        // shutting down with the program
                        Err(e) => panic!("handler cancelled on the handler pool: {e}"),
                    };
                }
                State::Done => panic!("handler polled after it finished"),
            }
        }
    }
}

impl<F: Future> Drop for Watched<F> {
    fn drop(&mut self) {
        // the worker stopped the handler (time-out, shutdown): stop its
        // pool half as well
        if let State::Moved(join) = &self.state {
            join.abort();
        }
    }
}
