//! [`ProgramError`]: why the worker program could not start or stopped
//! with an error, with messages that say how to fix it.

use crate::error::Error;
use crate::registry::DuplicateHandlers;
use crate::state::MissingStates;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Why the worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// No handler is registered. The message says how to fix it: annotate
    /// `async fn`s with `#[asyncjobs::task_handler(...)]`, and name the
    /// library holding them in `asyncjobs::main!(<crate>)` (a library the
    /// binary does not use is not linked, so its handlers are not
    /// registered).
    #[error("{}", no_handlers_message(package.as_deref(), linked))]
    NoHandlers {
        /// The package of the program (`CARGO_PKG_NAME`) when known: its
        /// library is the likely home of the handlers.
        package: Option<String>,
        /// The crates named in `asyncjobs::main!(...)`.
        linked: Vec<String>,
    },
    /// Handlers take [`State<T>`](crate::State)s that were not registered.
    #[error("{0}")]
    MissingStates(#[from] MissingStates),
    /// `--queue` names a queue no handler uses.
    #[error("no handlers run on queue {queue}; the handlers use: {known}")]
    UnknownQueue {
        /// The requested queue.
        queue: String,
        /// The queues that have handlers.
        known: String,
    },
    /// Two handlers take the same task type on the same queue.
    #[error("{0}")]
    Duplicates(#[from] DuplicateHandlers),
    /// A setting is invalid.
    #[error("{0}")]
    Config(Error),
    /// A schedule declared in code is invalid, or storing it failed
    /// (docs/processing.md §2.20).
    #[error("cannot declare schedule {name}: {reason}")]
    Schedule {
        /// The schedule's name (or its place in `asyncjobs::main!`).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS ({server}): {source} (set --url, NATS_URL or --context)")]
    Connect {
        /// The URL or context tried.
        server: String,
        /// What went wrong.
        source: Error,
    },
    /// Creating or loading a queue or the task store failed.
    #[error("cannot prepare queue {queue}: {source}")]
    Queue {
        /// The queue.
        queue: String,
        /// What went wrong.
        source: Error,
    },
    /// The metrics listener could not bind.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A queue's worker stopped with an error.
    #[error("worker for queue {queue} failed: {source}")]
    Worker {
        /// The queue.
        queue: String,
        /// What went wrong.
        source: Error,
    },
    /// A queue's worker panicked.
    #[error("worker for queue {queue} panicked")]
    WorkerPanicked {
        /// The queue.
        queue: String,
    },
}

/// The message of [`ProgramError::NoHandlers`].
fn no_handlers_message(package: Option<&str>, linked: &[String]) -> String {
    let mut m = String::from(
        "no task handlers registered: annotate async fns with \
         #[asyncjobs::task_handler(\"<task type>\")]",
    );
    if !linked.is_empty() {
        let _ = write!(
            m,
            "; the crates named in asyncjobs::main!({}) declare none",
            linked.join(", ")
        );
        return m;
    }
    let lib = package.map(|p| p.replace('-', "_"));
    let lib = lib.as_deref().unwrap_or("your_lib_crate");
    let _ = write!(
        m,
        ". If they are in a library, such as this package's src/lib.rs, the binary must \
         link it or they are not registered: write `asyncjobs::main!({lib});` (the \
         library's crate name) instead of `asyncjobs::main!();`"
    );
    m
}
