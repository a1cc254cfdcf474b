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
//! [`runtime::WorkerArgs`]:
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
//! * **your own `main`** with the same flags: [`runtime::App`];
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
//! The wire format is the same; these behaviours are deliberately fixed
//! (numbers refer to §16 of the compatibility reference):
//!
//! * **Expired on delivery is acknowledged at once** (§16.6). A task found past
//!   its deadline or its maximum tries is saved `expired` and its work item is
//!   terminated immediately instead of being redelivered after the ack wait.
//! * **Load failures never leave an item unacknowledged forever** (§16.6). A
//!   missing or undecodable task record terminates its item (logged with the
//!   cause and counted in `queue_task_not_found_error_count`); a transient load
//!   error NAKs the item with a short backoff.
//! * **Waiting does not burn deliveries** (§16.7). "Already active" deliveries
//!   are NAKed until the running handler's lease ends instead of being left
//!   for a full ack wait, and when a wait would exhaust the queue's
//!   `max_deliver` the item is replaced by a fresh one, so a task blocked on
//!   dependencies for an hour still runs.
//! * **Queue max tries is honoured** (§16.8). A task may run at most
//!   `min(task max_tries, queue max_tries)` times (where each is > 0); the
//!   failing try that reaches the limit saves the task `expired` and
//!   terminates its item, instead of leaving it in `retry` forever.
//! * **Final states are final** (§16.9). A delivery for a `terminated` or
//!   `queue_error` task is acknowledged without running it; use
//!   [`Client::retry_task`] to run it again.
//! * **Dependency failures name the dependency** (§16.10): `last_err` reads
//!   `task dependencies failed: dependency <id> is in state expired`, and a
//!   dependency that is itself `unreachable` also fails its dependants.
//! * **A completion that cannot be saved is not acknowledged.** Go sends
//!   `+ACK` even when saving `complete` failed, which can leave the record
//!   `active` forever; here saves are retried and, if they still fail, the
//!   item is redelivered (at-least-once).
//! * **A try counts when it starts.** `tries` is incremented in the `active`
//!   save rather than after the handler returns, so a task whose handler
//!   crashes or kills its worker still reaches its maximum tries instead of
//!   being run forever.
//! * **Tasks load by direct get** (reference §1.3). The task store this
//!   crate creates has `allow_direct: true` (Go's has `false`), so loads are
//!   `$JS.API.DIRECT.GET` requests answered with the stored bytes rather
//!   than a JSON/base64 `STREAM.MSG.GET` envelope. A store Go created is used
//!   unchanged and loaded with `STREAM.MSG.GET`, as is one whose direct gets
//!   are switched off later; Go's readers work with either store.
//! * **Handler panics and time-outs** are caught: the try counts as failed
//!   with `handler panicked: …` or `handler exceeded the queue's max run
//!   time …` in `last_err`.
//! * **Signatures** (§16.6, §16.11, §16.14): a task that fails verification
//!   at the worker is saved `terminated` with the reason in `last_err`
//!   instead of being left unacknowledged; a signing seed alone also
//!   verifies; key files may end in a newline; retrying a task into another
//!   queue re-signs it when a key is configured.
//! * **Dependencies that are `unreachable`** fail their dependants too (Go
//!   keeps such tasks blocked forever).
//! * **Graceful shutdown** stops pulling, lets running handlers finish within
//!   a grace period and hands unfinished items back to the queue at once. A try the worker
//!   interrupted this way does not count against the task's tries (a crash
//!   still counts: the try is saved when it starts, so a task that keeps
//!   killing its worker still runs out of tries).
//! * **The last delivery is never spent on a try.** When a try is about to
//!   run on the delivery that reaches the queue's `max_deliver`, the item
//!   is first replaced by a fresh one, so a try whose worker dies is always
//!   followed by a delivery that reruns or expires the task (`last_err`
//!   says the last try's worker stopped without recording an outcome). Go
//!   leaves such a task `active` forever. Where no delivery is left to
//!   spare (a queue with `max_tries` 1, or a Go worker that spent them),
//!   the server's max-deliveries advisory is kept in the stream
//!   [`EXHAUSTED_STREAM`] (`CHORIA_AJ_EXHAUSTED`, created by the first
//!   Rust worker of a queue; Go ignores it) until a worker of the queue reads
//!   it, even one started later: a task still `new`, `retry`, `blocked` or
//!   `active` past its lease is saved `expired` ("the work item was
//!   delivered N times, the queue's limit, without an outcome") and the
//!   dead item is removed.
//! * **A lost work item ends its task.** A task still waiting or
//!   `active` whose queue no longer holds its item (dropped by the queue's
//!   max age or max entries, purged, the queue deleted) is saved `expired`
//!   with `last_err` `work item lost: …` by [`Client::reconcile_tasks`]
//!   (`ajc task reconcile`); each worker runs one pass over its queue at
//!   start ([`Worker::reconcile_at_start`]). Go leaves such tasks as they
//!   are forever.
//! * **A late finish never takes a newer try's item.** A try that outlived
//!   its lease (its worker paused or cut off) and finds its task changed
//!   when saving the outcome drops that outcome and acknowledges its item
//!   only when the task is gone or final; otherwise the item may be the
//!   one a newer try runs on. Go acknowledges regardless. Heartbeats
//!   ([`TaskContext::mark_in_progress`], [`Worker::auto_heartbeat`]) also
//!   move the record's `tried` forward (at most every half run time), so
//!   other workers judge a heartbeating try as alive.
//! * **Running workers follow their queue's settings.** A worker re-reads
//!   its queue every 10 s, and when a try reaches its run time it reads it
//!   once more: a run time raised with `configure_queue` extends tries
//!   already running instead of killing them at the old one. Go reads the
//!   settings once at start.
//! * **A record that can never be saved ends the task.** When the server
//!   refuses a task record for good (a result larger than its
//!   `max_payload` or the stream's message size, dependency results too
//!   large to load into one record) the task is saved `terminated` without
//!   the result, `last_err` naming the size and the limit, and its item is
//!   terminated; Go leaves it `active` and runs the handler again until its
//!   tries are used up. Handler error messages are cut to 4 KiB in
//!   `last_err` so a failed try can always be saved.
//! * **Waiting holds no concurrency slot** (nats-server 2.12+). A task
//!   waiting for its retry time or for its dependencies is handed to a
//!   JetStream message schedule (ADR-51): its item is acknowledged and a
//!   fresh one, held on `CHORIA_AJ.S.<queue>.<id>`, is published to the
//!   queue when due, so it holds none of the queue's `max_ack_pending`
//!   slots and new tasks start at once. Go NAKs with a delay, so with
//!   `max_concurrent` tasks failing, a queue runs nothing new until their
//!   backoff ends. The first Rust worker on a queue changes it for this:
//!   the stream gains the subject `CHORIA_AJ.S.<queue>.>`,
//!   `allow_msg_schedules` and discard `old` (a no-op without size
//!   limits), and `WORKERS` is filtered to `CHORIA_AJ.Q.<queue>.>`. Go
//!   workers keep processing it unchanged (they see ordinary items when
//!   they are due, and NAK their own waits as before); servers older than
//!   2.12 can no longer load the stream. Queues with a size limit and
//!   discard `new`, older servers, and
//!   [`Worker::scheduled_waits(false)`](Worker::scheduled_waits) keep Go's
//!   NAK. Backoff follows the task's failed tries (Go: the item's
//!   deliveries, which a fresh item resets).
//! * **Enqueues ride out leader elections.** A record or work item publish
//!   answered "no responders" while its stream exists (a cluster electing
//!   a new stream leader) is sent again for up to 15 s; Go fails the
//!   enqueue, saving the task `queue_error` when it was the queue.
//! * **Errors say what to do.** A task enqueued to a missing queue is
//!   saved `queue_error` with the same message the caller gets, naming how
//!   to create the queue (Go: `queue not found: nats: no responders
//!   available for request`); a task of an unknown type keeps Go's `no
//!   handler for task type "<type>"` followed by the closest known type and
//!   the types the worker handles.
//! * **A deleted queue is reported, not hammered.** When pull requests are
//!   refused because the queue's stream or `WORKERS` consumer is gone, the
//!   worker logs an error naming what is missing, counts
//!   `queue_poll_error`, and asks again after 1 s, doubling to 10 s, until
//!   the queue is recreated; Go sends pull requests in a busy loop.
//! * **A new scheduler leader fires the slots it missed** within a
//!   misfire window (default 2 minutes,
//!   [`SchedulerBuilder::misfire_window`](scheduler::SchedulerBuilder::misfire_window)):
//!   slots that passed while the election moved are created once the new
//!   leader is elected; the deterministic slot ids keep a slot the old
//!   leader fired from firing twice. Go loses those slots.
//! * **A scheduler survives its buckets being deleted.** When the
//!   configuration or election bucket disappears under a running
//!   scheduler, it keeps running, logs what is missing (once per outage
//!   for elections), retries with a backoff (1 s doubling to 30 s) and,
//!   once the buckets are re-created, re-reads the schedules from scratch:
//!   schedules no longer stored stop, new ones start. `ajc task cron add
//!   --go-encoding` writes a schedule exactly as Go does, so Go and Rust
//!   leaders give its tasks the same payload (use it while Go schedulers
//!   may lead; see [`PayloadEncoding`]).
//! * **Schedules that can never fire are refused** (`0 0 30 2 *`,
//!   `0 0 31 4 *`): creating or updating one is an error saying it never
//!   fires, where Go stores it and never runs it.
//! * **Purging a queue can mark the tasks it strands**:
//!   [`Client::purge_queue_terminating`] (`ajc queue purge
//!   --terminate-tasks`) saves the waiting tasks whose items it removed as
//!   `terminated`; a plain purge leaves them `new`, as Go does, and `ajc`
//!   says so.
//! * **A discarded dependency still counts.** Before a worker deletes a
//!   task whose final state is in its discard list
//!   ([`ClientBuilder::discard_states`], `ajc … --discard-complete`), it
//!   writes the final state to the KV bucket [`DISCARDED_BUCKET`]
//!   (`CHORIA_AJ_DISCARDED`, created on the first discard, one small value
//!   per task, kept as long as the task store keeps records). A dependant
//!   whose dependency has no record but a marker saying `complete` runs
//!   (added before or after the dependency finished); with
//!   `load_dependencies` that dependency's entry in `dependency_results` is
//!   `null` (`None`), since its result was deleted with its record. A
//!   marker saying `expired` or `terminated` makes the dependant
//!   `unreachable` with `dependency <id> is in state expired (its record
//!   was discarded)`; a dependency with neither record nor marker is still
//!   `task not found: <id>`. Go deletes without a marker and ignores the
//!   bucket, so a Go worker still reports such dependants `task not
//!   found`. Markers are not signed: a signature never covered a task's
//!   state, so a marker trusts nothing a record's `state` field did not.
//!   When a marker cannot be written the record is kept instead of deleted.
//!   [`Client::retry_task`] of a discarded task fails with
//!   [`Error::TaskDiscarded`] naming its final state (Go: `task not
//!   found`). Markers are not removed by `delete_task` or `purge_tasks`.
//! * **Task listings are snapshots** ([`Client::list_tasks`],
//!   [`Client::list_tasks_filtered`], `ajc task ls`): the task stream's
//!   last sequence is read when the listing starts and only records up to
//!   it are listed, then (up to 4 further passes) tasks saved during the
//!   listing that had not been listed yet and were created before it
//!   started, so each task appears at most once and no task created later
//!   appears while workers keep saving (the listing keeps the ids it
//!   yielded in memory). Go lists until the stream's end as it moves, so
//!   a task saved during the listing can appear twice (`new`, then
//!   `active`) and new tasks appear.
//! * **External commands do not outlive their worker** (Linux). The
//!   command runs in its own process group under a small supervisor that
//!   kills the group when the worker process dies (even by `kill -9`), so
//!   a retry never overlaps an orphaned first try; Go leaves the command
//!   running. Processes that leave the group are not covered.
//! * **Metrics name at most 100 task types.** Each metric labelled by
//!   task `type` counts types beyond the first
//!   [`metrics::MAX_TASK_TYPES`] under `type="other"`; Go creates a series
//!   for every type.
//! * **Typed handlers read Go `ajc task add` payloads** (§16.3). Go's CLI
//!   stores a JSON argument as a JSON string (`"{\"to\":\"x\"}"`); a
//!   [`typed`] or [`task_handler`] handler whose payload type does not
//!   decode from that string decodes the string's content instead of
//!   terminating the task. Go handlers get the raw bytes and must unquote
//!   them themselves.
//! * **Invalid queue names fail at once** with
//!   [`Error::QueueNameInvalid`] in every call that takes one, instead of
//!   a JetStream request that times out.
//!
//! ## Cargo features
//!
//! All on by default; a program that only enqueues can turn them off
//! (`asyncjobs = { version = "…", default-features = false }`) and builds
//! without clap, tracing-subscriber, prometheus or tempfile:
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `runtime` | [`main!`] and the `runtime` module: the generated worker binary's flags (clap) and logging (tracing-subscriber); implies `metrics` |
//! | `metrics` | Prometheus metrics with Go's names and their HTTP endpoint ([`metrics`]); without it nothing is recorded |
//! | `remote` | handlers outside the process: request-reply and external commands (`remote`) |
//! | `signing` | ed25519 task signatures (`signing`, [`ClientBuilder::signing_keys`]); without it tasks are neither signed nor verified |
//!
//! ## Modules
//!
//! Tasks and queues: [`task`], [`queue`], [`client`] (the storage module
//! behind it is internal). Processing: [`worker`],
//! [`router`], [`handler`], [`retry`], `remote` (request-reply services
//! and external commands). Operations: [`events`], [`metrics`],
//! `signing`, [`scheduler`], [`election`], [`cron`]. The handler
//! framework: [`task_handler`], [`registry`], [`state`], `runtime` and
//! `main!`, and [`testing`] for its tests.
//! Plumbing: [`connect`], [`natscontext`], [`wire`], [`error`].

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod client;
pub mod connect;
pub mod cron;
pub mod election;
pub mod error;
pub mod events;
pub mod handler;
mod ksuid;
mod macro_support;
pub mod metrics;
pub mod natscontext;
#[cfg(feature = "otel")]
pub mod otel;
pub mod queue;
pub mod registry;
#[cfg(feature = "remote")]
pub mod remote;
pub mod retry;
pub mod router;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod scheduler;
#[cfg(feature = "signing")]
pub mod signing;
mod spans;
pub mod state;
mod storage;
pub mod task;
pub mod testing;
pub mod wire;
pub mod worker;

pub use asyncjobs_macros::task_handler;
pub use client::{Client, ClientBuilder, ReplaySummary, TaskFilter, TaskHandle, WaitError};
pub use error::{Error, NatsError, NatsErrorKind, Result};
pub use handler::{
    terminate, typed, Handler, HandlerError, HandlerOutput, HandlerResult, TaskContext,
};
pub use queue::{Queue, QueueInfo, QueueUpdate, StreamDetails};
pub use registry::{HandlerDef, Handlers, QueueSettings};
#[cfg(feature = "remote")]
pub use remote::{ExternalCommand, RequestReply, RequestReplyServer};
pub use retry::{LinearPolicy, RetryPolicy};
pub use router::Router;
pub use scheduler::{PayloadEncoding, ScheduleError, ScheduledTask, Scheduler};
pub use state::{MissingState, State, States};
pub use storage::{
    CONFIG_BUCKET, DISCARDED_BUCKET, ELECTIONS_BUCKET, EXHAUSTED_STREAM, TASKS_STREAM,
    TASK_SUBJECT_PREFIX,
};
pub use task::{Task, TaskBuilder, TaskResult, TaskState};
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
        assert_module_level, assert_payload, enqueue, handler, handler_def, task_builder,
        HandlerFn, HandlerReturn, HandlerReturnWithError, HandlerSite, MakeHandler, ModuleLevel,
        NotAtModuleLevel, StateArg, StateCell, TakeState, TakeStateChecked, TakeStateUnchecked,
        Typed, Unchecked,
    };
    pub use crate::queue::DEFAULT_QUEUE_NAME;
    pub use crate::registry::{Declared, HandlerDef, QueueSettings, StateDecl};
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
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
