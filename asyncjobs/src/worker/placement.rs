//! Where a handler runs: on the worker's own thread, or on the handler
//! pool ([`Worker::handler_pool`](crate::Worker::handler_pool)).
//!
//! Handlers start on the worker's thread: most only wait on I/O, and a
//! hand-off to another thread and back costs more than they do. A handler
//! that holds the thread for [`HEAVY_POLL`] or longer in one poll is moved
//! to the pool at its next poll. Its type becomes CPU-heavy, so that every
//! later task of the type starts on the pool, only once a poll is seen to
//! *use* that much CPU time: on a busy machine the OS preempts the
//! worker's thread in the middle of a short poll, and by the clock alone an
//! I/O handler would look heavy and send all its tasks across threads for
//! the rest of the worker's life. Reading the thread's CPU clock is a
//! system call (~0.7 µs), so only the polls of a type under suspicion (one
//! of its polls was long by the clock) are timed that way, until one
//! confirms the type heavy or [`CLEAR_AFTER`] in a row clear it.

use crate::sys::thread_cpu_time;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// A poll at least this long moves a handler to the pool; one using at
/// least this much CPU time marks its type CPU-heavy.
pub(crate) const HEAVY_POLL: Duration = Duration::from_micros(250);
/// A poll this long blocked its thread (no preemption explains it): the
/// type's later tasks start on the pool whatever CPU time it used, and
/// the worker names it (see also `watchdog.rs`).
pub(crate) const BLOCKING_POLL: Duration = Duration::from_millis(100);
/// CPU-timed polls in a row below [`HEAVY_POLL`] that clear a suspicion.
pub(crate) const CLEAR_AFTER: u32 = 16;

/// What is known of a task type's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// Nothing: its polls are timed by the clock.
    Light,
    /// One poll was long by the clock: its polls are CPU-timed, this many
    /// were short so far.
    Suspect(u32),
    /// A poll used [`HEAVY_POLL`] of CPU time: its tasks start on the pool.
    Heavy,
}

/// What is known of each task type, shared by one worker's handlers.
#[derive(Default)]
pub(crate) struct HeavyTypes(RwLock<HashMap<String, Known>>);

impl HeavyTypes {
    pub(crate) fn known(&self, task_type: &str) -> Known {
        self.0
            .read()
            .expect("heavy types")
            .get(task_type)
            .copied()
            .unwrap_or(Known::Light)
    }

    /// A poll of `task_type` was long by the clock.
    fn suspect(&self, task_type: &str) {
        let mut known = self.0.write().expect("heavy types");
        if !known.contains_key(task_type) {
            known.insert(task_type.to_string(), Known::Suspect(0));
        }
    }

    /// A poll of `task_type` held its thread for `wall` (at least
    /// [`BLOCKING_POLL`]): it blocks, so its tasks start on the pool (when
    /// there is one) from now on. Logged once per type.
    fn blocked(&self, task_type: &str, wall: Duration, pool: bool) {
        let mut known = self.0.write().expect("heavy types");
        if known.get(task_type) == Some(&Known::Heavy) {
            return;
        }
        known.insert(task_type.to_string(), Known::Heavy);
        drop(known);
        if pool {
            tracing::warn!(r#type = %task_type, held = ?wall,
                "handler blocked the worker's thread in one poll (blocking code in an async fn); the worker's pulls, saves and acks waited for it. Its tasks run on the handler pool from now on; wrap blocking calls in tokio::task::spawn_blocking");
        } else {
            tracing::warn!(r#type = %task_type, held = ?wall,
                "handler blocked the worker's thread in one poll (blocking code in an async fn); the worker's pulls, saves and acks waited for it, and there is no handler pool to move it to; wrap blocking calls in tokio::task::spawn_blocking");
        }
    }

    /// A CPU-timed poll of `task_type` used `cpu`.
    fn measured(&self, task_type: &str, cpu: Duration) {
        let mut known = self.0.write().expect("heavy types");
        let Some(k) = known.get_mut(task_type) else {
            return;
        };
        match *k {
            Known::Heavy => {}
            _ if cpu >= HEAVY_POLL => {
                *k = Known::Heavy;
                tracing::info!(r#type = %task_type, threshold = ?HEAVY_POLL, ?cpu,
                    "handler used the worker's thread for one long poll; its tasks run on the handler pool from now on");
            }
            Known::Suspect(n) if n + 1 >= CLEAR_AFTER => {
                known.remove(task_type);
            }
            Known::Suspect(n) => *k = Known::Suspect(n + 1),
            Known::Light => {}
        }
    }
}

/// Starts a handler future where it should run: on `pool` when its type
/// is known to be heavy, else polled in place (in the worker's task, on
/// the worker's thread), watched when there is a pool to move it to.
///
/// In place, the handler is no task of its own: the returned future runs
/// it, catching its panics, and dropping it stops it (a part moved to the
/// pool is aborted).
pub(crate) fn start<F>(
    fut: F,
    task_type: &str,
    id: &str,
    pool: Option<&Handle>,
    heavy: &Arc<HeavyTypes>,
) -> Running<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (state, cpu_timed) = match pool {
        None => (State::Here(Box::pin(fut)), false),
        Some(pool) => match heavy.known(task_type) {
            Known::Heavy => (State::Moved(pool.spawn(fut)), false),
            Known::Suspect(_) => (State::Here(Box::pin(fut)), true),
            Known::Light => (State::Here(Box::pin(fut)), false),
        },
    };
    Running(Watched {
        state,
        pool: pool.cloned(),
        heavy: heavy.clone(),
        task_type: task_type.to_string(),
        id: id.to_string(),
        cpu_timed,
    })
}

/// Why a handler ended without returning.
pub(crate) enum Stopped {
    /// It panicked, with the panic's payload.
    Panicked(Box<dyn std::any::Any + Send>),
    /// The pool it ran on stopped it (the pool shut down).
    Cancelled,
}

/// A started handler ([`start`]): resolves to its output, or to why it
/// stopped.
pub(crate) struct Running<F: Future>(Watched<F>);

impl<F> Future for Running<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let watched = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Pin::new(&mut *watched).poll(cx)
        })) {
            Ok(polled) => polled,
            Err(payload) => {
                // the handler's future is dropped here, as a task's is
                watched.state = State::Done;
                Poll::Ready(Err(Stopped::Panicked(payload)))
            }
        }
    }
}

enum State<F: Future> {
    /// Polled on the worker's thread.
    Here(Pin<Box<F>>),
    /// Moved to the pool; its result comes through the handle.
    Moved(JoinHandle<F::Output>),
    Done,
}

/// A handler polled on the worker's thread until one poll is too long
/// (with a pool to move it to).
struct Watched<F: Future> {
    state: State<F>,
    pool: Option<Handle>,
    heavy: Arc<HeavyTypes>,
    task_type: String,
    /// The task it runs (for the watchdog).
    id: String,
    /// Whether its polls are timed by the thread's CPU clock too.
    cpu_timed: bool,
}

impl<F> Future for Watched<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Here(fut) if this.pool.is_none() => {
                    let (polled, _) =
                        poll_here(fut, cx, &this.task_type, &this.id, &this.heavy, false);
                    let polled = std::task::ready!(polled);
                    this.state = State::Done;
                    return Poll::Ready(Ok(polled));
                }
                State::Here(fut) => {
                    let cpu_before = this.cpu_timed.then(thread_cpu_time).flatten();
                    let (polled, wall) =
                        poll_here(fut, cx, &this.task_type, &this.id, &this.heavy, true);
                    let long = wall >= HEAVY_POLL;
                    if this.cpu_timed {
                        // without a thread CPU clock, the clock decides
                        let cpu = cpu_before
                            .zip(thread_cpu_time())
                            .map_or(wall, |(before, after)| after.saturating_sub(before));
                        this.heavy.measured(&this.task_type, cpu);
                    } else if long {
                        // also when it finished in that poll: the type's
                        // next tasks are CPU-timed
                        this.heavy.suspect(&this.task_type);
                    }
                    if let Poll::Ready(out) = polled {
                        this.state = State::Done;
                        return Poll::Ready(Ok(out));
                    }
                    if long {
                        let State::Here(fut) = std::mem::replace(&mut this.state, State::Done)
                        else {
                            unreachable!("matched above");
                        };
                        let pool = this.pool.as_ref().expect("matched above");
                        this.state = State::Moved(pool.spawn(fut));
                        continue;
                    }
                    return Poll::Pending;
                }
                State::Moved(join) => {
                    let done = std::task::ready!(Pin::new(join).poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(match done {
                        Ok(out) => Ok(out),
                        Err(e) if e.is_panic() => Err(Stopped::Panicked(e.into_panic())),
                        // aborted only through Drop below, or by the pool
                        // shutting down with the program
                        Err(_) => Err(Stopped::Cancelled),
                    });
                }
                State::Done => panic!("handler polled after it finished"),
            }
        }
    }
}

/// Polls a handler on this thread under the watchdog's eye; how long the
/// poll held the thread. A poll of [`BLOCKING_POLL`] or more marks the type
/// blocking (`pool`: there is a pool to send it to).
fn poll_here<F: Future>(
    fut: &mut Pin<Box<F>>,
    cx: &mut Context<'_>,
    task_type: &str,
    id: &str,
    heavy: &HeavyTypes,
    pool: bool,
) -> (Poll<F::Output>, Duration) {
    let started = Instant::now();
    let polled = {
        let _watched = super::watchdog::polling(task_type, id);
        fut.as_mut().poll(cx)
    };
    let wall = started.elapsed();
    if wall >= BLOCKING_POLL {
        heavy.blocked(task_type, wall, pool);
    }
    (polled, wall)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let started = Instant::now();
        while started.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    /// Runs `n` handlers of `task_type` one after the other on a
    /// current-thread runtime with a pool; each runs `work` in its first
    /// poll, yields, and returns the name of the thread it started on.
    fn run(n: usize, task_type: &str, work: fn()) -> (Vec<String>, Arc<HeavyTypes>) {
        let pool = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pool")
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let heavy = Arc::new(HeavyTypes::default());
        let started_on = rt.block_on(async {
            let mut threads = Vec::new();
            for _ in 0..n {
                let handler = async move {
                    let on = std::thread::current().name().unwrap_or("").to_string();
                    work();
                    tokio::task::yield_now().await;
                    on
                };
                threads.push(
                    match start(handler, task_type, "t", Some(pool.handle()), &heavy).await {
                        Ok(on) => on,
                        Err(_) => panic!("the handler stopped"),
                    },
                );
            }
            threads
        });
        pool.shutdown_background();
        (started_on, heavy)
    }

    #[test]
    fn a_poll_using_cpu_time_makes_the_type_heavy() {
        let (threads, heavy) = run(3, "cpu", || spin(Duration::from_millis(2)));
        // the first long poll makes the type suspect, the second (CPU-timed)
        // confirms it: the third task starts on the pool
        assert_eq!(heavy.known("cpu"), Known::Heavy);
        assert_ne!(threads[0], "pool");
        assert_ne!(threads[1], "pool");
        assert_eq!(threads[2], "pool");
    }

    #[test]
    fn a_thread_held_without_cpu_work_does_not_make_the_type_heavy() {
        // what a preempted thread looks like to the clock: long polls that
        // use no CPU time
        let (threads, heavy) = run(CLEAR_AFTER as usize + 4, "io", || {
            std::thread::sleep(Duration::from_millis(1))
        });
        assert_ne!(heavy.known("io"), Known::Heavy);
        assert!(
            threads.iter().all(|t| t != "pool"),
            "every task starts on the worker's thread: {threads:?}"
        );
    }

    #[test]
    fn short_cpu_timed_polls_clear_a_suspicion() {
        let heavy = HeavyTypes::default();
        heavy.suspect("t");
        for _ in 0..CLEAR_AFTER - 1 {
            heavy.measured("t", Duration::from_micros(10));
        }
        assert_eq!(heavy.known("t"), Known::Suspect(CLEAR_AFTER - 1));
        heavy.measured("t", Duration::from_micros(10));
        assert_eq!(heavy.known("t"), Known::Light);
        // a type never suspected is not measured into anything
        heavy.measured("u", Duration::from_secs(1));
        assert_eq!(heavy.known("u"), Known::Light);
    }
}
