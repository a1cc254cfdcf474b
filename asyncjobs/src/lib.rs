//! # asyncjobs
//!
//! An asynchronous job queue on NATS JetStream, wire-compatible with the Go
//! [Choria Async Jobs](https://github.com/choria-io/asyncjobs): the same
//! streams, subjects, consumers, KV buckets and JSON, so Go and Rust
//! producers and workers share queues.
//!
//! Each task is stored by id in the `CHORIA_AJ_TASKS` stream; a work item on
//! the queue's stream references it. JetStream does scheduling, redelivery,
//! acknowledgements and retention; the task record follows the lifecycle
//! `new → active → complete` (or `retry`, `expired`, `terminated`,
//! `blocked`, `unreachable`, `queue_error`).
//!
//! ## Handlers, worker, producer
//!
//! Handlers are `async fn`s marked [`#[task_handler]`](task_handler); a
//! binary made by [`main!`] runs them as a worker; producers enqueue typed
//! tasks with the helpers the macro generates next to each handler. Keep
//! the handlers in your package's library (`src/lib.rs` of package `shop`),
//! at module level:
//!
//! ```
//! pub mod email {
//!     use asyncjobs::{task_handler, HandlerError, TaskContext};
//!     use serde::{Deserialize, Serialize};
//!
//!     #[derive(Serialize, Deserialize)]
//!     pub struct NewEmail { pub to: String }
//!
//!     #[task_handler("email:new", queue = "EMAIL", max_tries = 5)]
//!     pub async fn send_email(ctx: TaskContext, email: NewEmail) -> Result<String, HandlerError> {
//!         if !email.to.contains('@') {
//!             return Err(asyncjobs::terminate("not an address")); // no more tries
//!         }
//!         Ok(format!("sent to {} on try {}", email.to, ctx.tries())) // other errors are retried
//!     }
//! }
//! ```
//!
//! The worker, `src/bin/worker.rs`, names the library so that it is linked
//! and its handlers are registered; it has `--help`, `--url`,
//! `--concurrency`, `--list-handlers` and the other flags of
//! [`program::WorkerArgs`]:
//!
//! ```ignore
//! asyncjobs::main!(shop);
//! ```
//!
//! A producer (a binary, a web service) enqueues a task whose payload type
//! is checked at compile time and awaits its typed result:
//!
//! ```no_run
//! # mod shop { pub mod email {
//! #     #[derive(serde::Serialize, serde::Deserialize)]
//! #     pub struct NewEmail { pub to: String }
//! #     #[asyncjobs::task_handler("email:new", queue = "EMAIL", max_tries = 5)]
//! #     pub async fn send_email(email: NewEmail) -> Result<String, asyncjobs::HandlerError> { Ok(email.to) }
//! # } }
//! use shop::email::{send_email, NewEmail};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
//! // creates the EMAIL queue with the handler's settings if no worker has yet
//! let handle = send_email::enqueue(&client, NewEmail { to: "a@example.net".into() }).await?;
//! let sent: String = handle.wait(&client, std::time::Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```
//!
//! Then, as needed:
//!
//! * **shared state**: [`State<T>`] handler arguments, registered once with
//!   `main!(shop, state = value)` ([`state`]);
//! * **middleware** around every handler: `main!(shop, middleware =
//!   router::from_fn(f))` ([`router::Middleware`], [`router::from_fn`]);
//! * **your own `main`** with the same flags: [`program::App`];
//! * **tests** without a server: [`testing`] (`TestTask`, `TestWorker`);
//! * **queue settings** (run time, tries, concurrency) declared on the
//!   handler: `queue_run_time = "10m"` and friends, see
//!   [`task_handler`] and [`registry::QueueSettings`].
//!
//! ## Without the macros
//!
//! Handlers can be closures or functions registered on a [`Router`], run
//! by a [`Worker`]:
//!
//! ```no_run
//! use asyncjobs::{typed, Client, HandlerError, Router, Task};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct NewEmail { to: String }
//!
//! # async fn demo() -> asyncjobs::Result<()> {
//! let client = Client::connect("nats://127.0.0.1:4222").await?;
//!
//! // producer
//! let mut task = Task::new("email:new", &NewEmail { to: "user@example.net".into() })?;
//! client.enqueue(&mut task).await?;
//!
//! // worker
//! let router = Router::new().handle("email:new", typed(|_ctx, email: NewEmail| async move {
//!     Ok::<_, HandlerError>(format!("sent to {}", email.to))
//! }))?;
//! let shutdown = asyncjobs::CancellationToken::new();
//! client.worker(router).run(shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! ## Where this differs from the Go implementation
//!
//! The wire format is the same, so Go and Rust processes share queues.
//! Where the Go worker, scheduler or tools lose tasks, run them twice or
//! leave them stuck, this crate deliberately behaves otherwise while
//! staying wire-compatible: expired and unloadable items are settled at
//! once, waiting does not burn deliveries (nor, on nats-server 2.12+, hold
//! concurrency slots), a try counts when it starts, lost and exhausted
//! work items end their tasks, schedulers fire each slot once.
//! [`go_differences`] lists every such difference with its reason and
//! test; the repository's `docs/` directory describes the storage layout,
//! the processing rules and the interfaces they build on.
//!
//! ## Cargo features
//!
//! All on by default; a program that only enqueues can turn them off
//! (`asyncjobs = { version = "…", default-features = false }`) and builds
//! without clap, tracing-subscriber, prometheus or tempfile:
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `program` | [`main!`] and the `program` module: the generated worker binary's flags (clap) and logging (tracing-subscriber); implies `metrics` |
//! | `metrics` | Prometheus metrics with Go's names and their HTTP endpoint ([`metrics`]); without it nothing is recorded |
//! | `remote` | handlers outside the process: request-reply and external commands (`remote`) |
//! | `signing` | ed25519 task signatures (`signing`, [`ClientBuilder::signing_keys`]); without it tasks are neither signed nor verified |
//!
//! ## Modules
//!
//! Tasks and queues: [`task`], [`queue`], [`batch`], [`client`] (the storage module
//! behind it is internal). Processing: [`worker`],
//! [`router`], [`handler`], [`retry`], `remote` (request-reply services
//! and external commands). Operations: [`events`], [`metrics`],
//! `signing`, [`scheduler`], [`election`], [`cron`]. The handler
//! framework: [`task_handler`], [`registry`], [`state`], `program` and
//! `main!`, and [`testing`] for its tests.
//! Plumbing: [`connect`], [`capabilities`], [`natscontext`], [`wire`], [`error`].
//! Differences from Go: [`go_differences`].

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
// docs.rs marks what each Cargo feature adds (package.metadata.docs.rs)
#![cfg_attr(docsrs, feature(doc_cfg))]
// every `unsafe` is in `sys`, each block with its safety argument
#![deny(unsafe_code)]

pub mod batch;
pub mod capabilities;
pub mod client;
mod clock;
pub mod connect;
mod connection_watch;
pub mod cron;
pub mod election;
pub mod error;
pub mod events;
// go-differences.md links to docs/go-differences.md, so the packaged crate
// carries the page too
#[doc = include_str!("../go-differences.md")]
pub mod go_differences {}
pub mod handler;
mod jetstream_api;
mod ksuid;
mod macro_support;
pub mod metrics;
pub mod natscontext;
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
#[cfg(feature = "otel")]
pub mod otel;
#[cfg_attr(docsrs, doc(cfg(feature = "program")))]
#[cfg(feature = "program")]
pub mod program;
pub mod queue;
pub mod registry;
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
#[cfg(feature = "remote")]
pub mod remote;
pub mod retry;
pub mod router;
pub mod scheduler;
#[cfg_attr(docsrs, doc(cfg(feature = "signing")))]
#[cfg(feature = "signing")]
pub mod signing;
mod spans;
pub mod state;
mod storage;
#[cfg(all(unix, feature = "remote"))]
#[allow(unsafe_code)]
mod sys;
pub mod task;
pub mod testing;
mod throttle;
pub mod wire;
pub mod worker;

pub use asyncjobs_macros::task_handler;
pub use client::{
    BulkAction, BulkSummary, Client, ClientBuilder, ReplaySummary, Serving, TaskFilter, TaskHandle,
    WaitError,
};
pub use error::{Error, NatsError, NatsErrorKind, Result};
pub use handler::{
    terminate, typed, Handler, HandlerError, HandlerOutput, HandlerResult, TaskContext,
};
pub use queue::{PauseUntil, Queue, QueueInfo, QueuePause, QueueUpdate, RateLimit, StreamDetails};
pub use registry::{HandlerDef, Handlers, QueueSettings};
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
#[cfg(feature = "remote")]
pub use remote::{ExternalCommand, RequestReply, RequestReplyServer};
pub use retry::{LinearPolicy, RetryPolicy};
pub use router::{HandlerOptions, Router};
pub use scheduler::{PayloadEncoding, ScheduleError, ScheduledTask, Scheduler};
pub use state::{MissingState, State, States};
pub use storage::RetentionStatus;
pub use storage::{
    BATCHES_BUCKET, CONFIG_BUCKET, DISCARDED_BUCKET, ELECTIONS_BUCKET, EXHAUSTED_STREAM,
    HELD_STREAM, LIMITS_BUCKET, TASKS_STREAM, TASK_SUBJECT_PREFIX, UNIQUE_BUCKET,
};
pub use task::{Cancelled, Retention, Task, TaskBuilder, TaskResult, TaskState};
/// Cancels running work: the worker's [`run`](Worker::run) stops on it,
/// [`TaskContext::cancelled`] resolves on it. (`tokio_util::sync::CancellationToken`.)
pub use tokio_util::sync::CancellationToken;
// documented at the root as before `wire` was public, and in `wire`
#[doc(inline)]
pub use wire::{format_duration, parse_duration, parse_signed_duration};
pub use worker::Worker;

/// Re-exports used by generated code. Not part of the public API.
///
/// `#[task_handler]` output names the runtime only through this module
/// (`::asyncjobs::__private::…`, or `<crate = …>::__private::…`), so the
/// public modules can be reorganised without breaking generated code. The
/// public types below are the same types as their public paths.
#[doc(hidden)]
pub mod __private {
    pub use crate::client::Client;
    pub use crate::client::TaskHandle;
    pub use crate::error::Result;
    pub use crate::handler::{BoxHandler, HandlerError, TaskContext};
    pub use crate::macro_support::{
        assert_module_level, assert_payload, decodes_from_null, enqueue, handler, handler_def,
        task_builder, HandlerFn, HandlerReturn, HandlerReturnWithError, HandlerSite, MakeHandler,
        ModuleLevel, NotAtModuleLevel, StateArg, StateCell, TakeState, TakeStateChecked,
        TakeStateUnchecked, Typed, Unchecked,
    };
    pub use crate::queue::DEFAULT_QUEUE_NAME;
    pub use crate::registry::{Declared, DeclaredCron, HandlerDef, QueueSettings, StateDecl};
    pub use crate::state::{MissingState, State, States};
    pub use crate::task::TaskBuilder;
    pub use crate::testing::TypedHandlerDef;
    pub use futures;
    pub use inventory;
    pub use serde;
    pub use serde_json;
    pub use tokio;
    pub use tokio_util;
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
