//! Procedural macros for [asyncjobs](https://docs.rs/asyncjobs). Use them
//! through the runtime crate (`asyncjobs::task_handler`): the generated code
//! reaches the runtime through `::asyncjobs::__private`, and this crate is
//! pinned to the runtime's exact version.
//!
//! `lib.rs` holds the attribute shims and their documentation; the checks
//! and code generation live in `expand.rs`, option parsing in `attr.rs`.

mod attr;
mod duration;
mod errors;
mod expand;

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
/// | `TASK_TYPE`, `QUEUE`, `MAX_TRIES`, `DEADLINE` | the attribute's values |
/// | `Payload`, `Output` | the payload and result types |
/// | `HANDLER` | the `asyncjobs::HandlerDef` registration (also submitted to the inventory that `asyncjobs::main!()` reads) |
/// | `task(&payload)` | a `TaskBuilder` with the type and defaults applied |
/// | `enqueue(&client, payload)` | enqueues into `QUEUE`; returns a `TaskHandle<Output>` |
/// | `enqueue_with(&client, payload, \|b\| b.depends_on(..))` | the same, adjusting the task first |
///
/// `task`, `enqueue` and `enqueue_with` are not generated for the catch-all
/// task type `""`.
///
/// # The function
///
/// * an `async fn`, not generic, no `self`;
/// * one payload argument of any owned type implementing
///   `serde::de::DeserializeOwned` (a payload that does not decode
///   terminates the task without retries, `last_err` naming the type and the
///   decoder's message);
/// * optionally an `asyncjobs::TaskContext` (by value or by reference), in
///   either position;
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
/// * `deadline = "1h"`: `enqueue` sets the deadline this long after
///   enqueueing, in Go's duration syntax like every duration of asyncjobs
///   (`"300ms"`, `"1.5h"`, `"2h45m"`; units `ns`, `us`, `ms`, `s`, `m`,
///   `h`, no days);
/// * `crate = "path::to::asyncjobs"`: where the runtime crate is, for crates
///   that re-export it.
///
/// # Errors
///
/// Misuse is reported at the offending tokens, all problems at once, with
/// the function emitted unchanged beside the errors. A payload that is not
/// `DeserializeOwned`, a result that is not `Serialize` and an error type
/// that does not convert into `HandlerError` are reported on that type.
///
/// # Limitations
///
/// Declare handlers at module level, not directly inside a function body or
/// an `impl` block: the generated module refers to the payload and result
/// types through its parent module. (In a function body, such as a doctest,
/// put them in an inline `mod`.)
#[proc_macro_attribute]
pub fn task_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::task_handler(attr.into(), item.into()).into()
}
