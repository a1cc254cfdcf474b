//! Procedural macros for [asyncjobs](https://docs.rs/asyncjobs). Use them
//! through the runtime crate (`asyncjobs::task_handler`): the generated code
//! reaches the runtime through `::asyncjobs::__private`, and this crate is
//! pinned to the runtime's exact version.
//!
//! `lib.rs` holds the attribute shims and their documentation. The work is
//! in `expand.rs` (the steps of one expansion), `attr.rs` (the attribute's
//! options), `check.rs` (the rules of the function's signature, one check
//! per rule) and `generate.rs` with `generate/` (one function per
//! generated item).

mod attr;
mod check;
mod errors;
mod expand;
mod generate;

use proc_macro::TokenStream;

/// Turns an `async fn` into a task handler.
///
/// ```ignore
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct NewEmail { to: String, subject: String }
///
/// #[asyncjobs::task_handler("email:new", queue = "EMAIL", max_tries = 5, deadline = "1h")]
/// async fn send_email(ctx: asyncjobs::TaskContext, email: NewEmail) -> Result<String, std::io::Error> {
///     Ok(format!("sent {} on try {}", email.subject, ctx.tries()))
/// }
///
/// asyncjobs::main!();
/// ```
///
/// The function is kept exactly as written (call it from unit tests). Next
/// to it, in the type namespace, the macro adds a module of the same name:
///
/// | item | what |
/// | --- | --- |
/// | `TASK_TYPE`, `QUEUE`, `MAX_TRIES`, `DEADLINE`, `TIMEOUT` | the attribute's values |
/// | `Payload`, `Output` | the payload and result types |
/// | `HANDLER` | the `asyncjobs::HandlerDef` registration (also submitted to the inventory that `asyncjobs::main!()` reads) |
/// | `task(&payload)` | a `TaskBuilder` with the type and defaults applied |
/// | `enqueue(&client, payload)` | enqueues into `QUEUE`; returns a `TaskHandle<Output>` |
/// | `enqueue_with(&client, payload, \|b\| b.depends_on(..))` | the same, adjusting the task first |
/// | `TYPED` | `HANDLER` with its payload and result types, for `asyncjobs::testing::TestWorker::call` |
///
/// `task`, `enqueue`, `enqueue_with` and `TYPED` are not generated for the
/// catch-all task type `""`.
///
/// # Visibility
///
/// Nothing generated is more visible than the function. The module has the
/// function's visibility and its items are usable exactly where the
/// function is (a private function gets items visible in its own module,
/// `pub(crate)` gives `pub(crate)` items, `pub` gives `pub` items, and so
/// on for `pub(super)` and `pub(in path)`); the helpers generated beside
/// the function are private. A private handler may therefore take and
/// return private types. The payload and result types must be at least as
/// visible as the function, since `enqueue` can be called wherever the
/// function can be named: a `pub` handler with a private payload is
/// refused (E0446, reported at the payload type). See docs/processing.md
/// §6.5.
///
/// # The function
///
/// * an `async fn` declared at module level (not inside a function body),
///   not generic, no `self`;
/// * one payload argument of any owned type implementing
///   `serde::de::DeserializeOwned` (a payload that does not decode
///   terminates the task without retries, `last_err` naming the type and the
///   decoder's message);
/// * optionally an `asyncjobs::TaskContext` (by value or by reference), in
///   any position;
/// * any number of shared states, `asyncjobs::State<T>` by value in any
///   position (`State(db): State<Db>`), where `T: Clone + Send + Sync +
///   'static`: the worker looks each up by type once at start-up, in the
///   values registered with `asyncjobs::main!(state = ...)`,
///   `program::App::state` or `Router::with_state`, and refuses to start
///   naming the type and the handler when one is missing; every task gets a
///   clone;
/// * returns `Result<T, E>` (or an alias such as `anyhow::Result<T>`) where
///   `T: Serialize` becomes the task result and `E: Into<HandlerError>`:
///   any `std::error::Error + Send + Sync`, `anyhow::Error`,
///   `Box<dyn Error + Send + Sync>`, or a `HandlerError` made with
///   `asyncjobs::terminate(..)` to stop retries.
///
/// # Options
///
/// The task type comes first: it must match `^[a-zA-Z0-9_:-]+$`, or be `""`
/// for the catch-all handler of its queue. Then, each at most once:
///
/// * `queue = "EMAIL"`: the queue whose worker runs the handler and that
///   `enqueue` uses (default `DEFAULT`);
/// * `max_tries = 5`: tries `enqueue` allows the task (default: the task
///   default of 10; `0` leaves only the queue's limit);
/// * `priority = 7`: the priority `task` and `enqueue` give a task, 0 (the
///   default) to 9; a worker starts the highest first (docs/processing.md
///   §2.21 of the asyncjobs repository);
/// * `deadline = "1h"`: `enqueue` sets the deadline this long after
///   enqueueing, in Go's duration syntax like every duration of asyncjobs
///   (`"300ms"`, `"1.5h"`, `"2h45m"`; units `ns`, `us`, `ms`, `s`, `m`,
///   `h`, no days);
/// * `timeout = "30s"`: each try of the handler is stopped this long after
///   it started (any positive Go duration), as at the queue's run time,
///   and fails with `last_err` `handler "<type>" exceeded its time-out of
///   30s` (retried by the retry policy, `expired` when no tries are left).
///   A try ends at the earlier of this and the queue's run time, which
///   still bounds the lease; heartbeats do not extend the time-out, and
///   `TaskContext::handler_deadline` reports the earlier of the two. It is
///   the worker's setting, not stored in the task: a Go worker on the same
///   queue ignores it;
/// * `unique = "payload"` or `unique = "1h"`: `task` and `enqueue` make
///   tasks unique by type and payload, while the earlier one is
///   unfinished (`"payload"`) or for that long from the first (a Go
///   duration of at least `1s`); a duplicate enqueue fails with
///   `Error::TaskExists` naming the existing task. `enqueue_with(.., |b|
///   b.unique("key"))` gives an explicit key. Needs nats-server 2.11;
/// * `cron = "0 3 * * *"`: a schedule of tasks of this type without
///   payload (JSON `null`: the payload type must decode from it, such as
///   `()` or `Option<T>`) into the handler's queue, with its `max_tries`
///   and `deadline`, named after the task type with `:` replaced by `_`
///   (`report_daily`). A worker started with `asyncjobs::main!()` stores
///   it when it starts and, unless run with `--no-scheduler`, takes part
///   in the scheduler election that fires it (docs/processing.md §2.20).
///   The spec is checked with the scheduler's grammar here (a `TZ=` zone
///   name at start); `main!(schedule = …)` declares schedules with a
///   payload;
/// * `queue_run_time = "10m"`, `queue_max_tries = 50`,
///   `queue_concurrency = 20`: the queue's settings when
///   `asyncjobs::main!()` creates it: how long a handler may run before its
///   task is redelivered (at least `1s`), deliveries per task (`0`:
///   unlimited) and handlers running at once across all workers (1 to
///   10000). Unset, a new queue gets the defaults: `DEFAULT` 1 minute /
///   100 tries / 100, other queues 1 hour / unlimited / 100. A queue that
///   already exists keeps its settings (the first creator wins; change them
///   with `ajc queue configure`), and the worker refuses to start when two
///   handlers of one queue declare different values;
/// * `crate = "path::to::asyncjobs"`: where the runtime crate is, for crates
///   that re-export it.
///
/// # Errors
///
/// Misuse is reported at the offending tokens, all problems at once, with
/// the function emitted unchanged beside the errors. A payload that is not
/// `Deserialize` (with serde's hint to derive it), a result that is not
/// `Serialize`, an error type that does not convert into `HandlerError`
/// and a state that is not `Clone + Send + Sync + 'static` are reported on
/// that type.
///
/// A handler declared inside a function body is one error at its name,
/// `declare #[task_handler] functions at module level, not inside a
/// function body`: the generated module would be reachable only inside
/// that body. Move the function to module level, or into an inline `mod`
/// (in a doctest, which is itself a function body: `mod jobs { ... }`).
/// Handlers cannot be associated functions of an `impl` block either.
#[proc_macro_attribute]
pub fn task_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::task_handler(attr.into(), item.into()).into()
}
