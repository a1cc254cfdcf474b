//! [`WorkerThreads`]: the two tokio runtimes a worker program runs on, the
//! worker's own thread and the pool its handlers run on.

use std::future::Future;

/// The threads of a worker program, as two tokio runtimes: a
/// current-thread runtime for the worker's own work and the handlers that
/// have shown they do not hold their thread (JetStream round trips run
/// fastest with no thread hand-offs), and a multi-thread pool for every
/// other handler ([`Worker::handler_pool`](crate::Worker::handler_pool)),
/// so that a handler that blocks its thread holds up neither the worker
/// nor, while another pool thread is free, other handlers.
/// `asyncjobs::main!` runs on one.
///
/// ```
/// let threads = asyncjobs::program::WorkerThreads::new(Some(2)).unwrap();
/// assert_eq!(threads.handler_threads(), 2);
/// let pool = threads.handlers().expect("a pool of 2 threads");
/// let answer = threads.block_on(async move { pool.spawn(async { 6 * 7 }).await.unwrap() });
/// assert_eq!(answer, 42);
/// ```
#[derive(Debug)]
pub struct WorkerThreads {
    worker: tokio::runtime::Runtime,
    handlers: Option<tokio::runtime::Runtime>,
    handler_threads: usize,
}

impl WorkerThreads {
    /// The worker's thread and a pool of `handler_threads` handler threads
    /// (`None`: one per CPU core as [`std::thread::available_parallelism`]
    /// counts them, and at least 2, so that one blocked thread leaves
    /// another; `Some(0)`: no pool, handlers run on the worker's thread,
    /// where a handler that blocks holds up the whole worker).
    ///
    /// # Errors
    /// The operating system refused a thread or the I/O driver.
    pub fn new(handler_threads: Option<usize>) -> std::io::Result<WorkerThreads> {
        let handler_threads = handler_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .max(2)
        });
        let worker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handlers = match handler_threads {
            0 => None,
            n => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("asyncjobs-handler")
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(WorkerThreads {
            worker,
            handlers,
            handler_threads,
        })
    }

    /// Handler threads (0: handlers run on the worker's thread).
    pub fn handler_threads(&self) -> usize {
        self.handler_threads
    }

    /// The handler pool, for [`Worker::handler_pool`](crate::Worker::handler_pool)
    /// (`None` without one).
    pub fn handlers(&self) -> Option<tokio::runtime::Handle> {
        self.handlers.as_ref().map(|rt| rt.handle().clone())
    }

    /// Runs `future` on the worker's thread (the calling thread) to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.worker.block_on(future)
    }
}

impl Drop for WorkerThreads {
    /// Stops the pool without waiting for a handler that blocks its thread
    /// (a blocking call cannot be interrupted; the worker has already given
    /// running handlers their shutdown grace): at most 1 s, then
    /// the process may exit with such a thread still in its call.
    fn drop(&mut self) {
        if let Some(pool) = self.handlers.take() {
            pool.shutdown_timeout(POOL_STOP);
        }
    }
}

/// How long dropping [`WorkerThreads`] waits for the handler pool's threads.
const POOL_STOP: std::time::Duration = std::time::Duration::from_secs(1);
