//! The worker program `asyncjobs::main!()` generates: flags and environment,
//! logging, metrics, one worker per queue for every registered handler, and
//! graceful shutdown on SIGINT/SIGTERM.
//!
//! ```no_run
//! mod email {
//!     #[derive(serde::Serialize, serde::Deserialize)]
//!     pub struct NewEmail { to: String }
//!
//!     #[asyncjobs::task_handler("email:new", queue = "EMAIL")]
//!     pub async fn send_email(email: NewEmail) -> Result<String, asyncjobs::HandlerError> {
//!         Ok(format!("sent to {}", email.to))
//!     }
//! }
//!
//! asyncjobs::main!();
//! ```
//!
//! [`App`] is what `main!` runs, for programs that need their own `main`
//! but want the same flags: add shared state and middleware, then
//! [`App::main`]. Lower down, [`WorkerArgs`], [`Handlers`](crate::Handlers),
//! [`start`] and [`RunningWorkers::stop`] are public too.

// one concern a file: the builder and `main` (app), the flags (args),
// the error (error), --list-handlers (listing), log and trace output
// (logging), starting and waiting for the workers (running), schedules
// declared in code and the scheduler (schedules), the packaged
// service (service), SIGINT/SIGTERM (signals), the worker's thread and the
// handler pool (threads)
mod app;
mod args;
mod error;
mod listing;
mod logging;
mod running;
mod schedules;
#[cfg(feature = "remote")]
mod service;
mod signals;
#[cfg(test)]
mod tests;
mod threads;

pub use app::{main, main_with, App};
pub use args::WorkerArgs;
pub use error::ProgramError;
pub use listing::handler_table;
pub use running::{start, RunningWorkers};
pub use schedules::{schedule, IntoSchedule};
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
#[cfg(feature = "remote")]
pub use service::{
    Route, Service, Settings as ServiceSettings, DEFAULT_METRICS_PORT, DOCKER_COMMANDS_DIR,
};
pub use threads::WorkerThreads;

use crate::connect;

/// The server used when neither `--url`, `NATS_URL` nor a context is given
/// (the same as [`connect::DEFAULT_URL`]).
pub const DEFAULT_NATS_URL: &str = connect::DEFAULT_URL;
/// Default `--concurrency` ([`worker::DEFAULT_CONCURRENCY`](crate::worker::DEFAULT_CONCURRENCY)).
pub use crate::worker::DEFAULT_CONCURRENCY;
/// The connection name the worker shows the server.
pub const CONNECTION_NAME: &str = "asyncjobs worker";
/// Default `--shutdown-grace`.
pub use crate::worker::DEFAULT_SHUTDOWN_GRACE;

/// Generates `fn main()` running every `#[task_handler]` of the program as a
/// worker; see [`program`](crate::program) and `--help` of the built binary.
///
/// ```no_run
/// mod handlers {
///     #[asyncjobs::task_handler("greet")]
///     pub async fn greet(name: String) -> Result<String, asyncjobs::HandlerError> {
///         Ok(format!("hello {name}"))
///     }
/// }
///
/// asyncjobs::main!();
/// ```
///
/// # Handlers in a library
///
/// Handlers declared in a library crate, including the package's own
/// `src/lib.rs`, are registered only when the library is linked into the
/// program, and a binary that uses nothing of a library does not link it.
/// Name such libraries first: `asyncjobs::main!(shop)` in `src/bin/worker.rs`
/// of package `shop` (`asyncjobs::main!(shop, more_handlers)` for several)
/// links each (as `extern crate shop as _;`). Without it the worker finds no
/// handler and exits with an error saying so (as does `--list-handlers`).
///
/// # Options
///
/// After the crates, `key = value` options, each may be repeated:
///
/// * `state = <expr>`: a value for handlers' [`State<T>`](crate::State)
///   arguments, looked up by its type. The expression is evaluated on the
///   worker's tokio runtime after the flags are parsed (not for `--help` or
///   `--list-handlers`), inside an `async` block, so it may `.await`:
///   `state = Db::connect(&std::env::var("DATABASE_URL").unwrap()).await`.
///   A handler needing a state no option provides makes the worker refuse to
///   start, naming the type and the handler.
/// * `middleware = <expr>`: a middleware wrapping every handler, made with
///   [`router::from_fn`](crate::router::from_fn) or any
///   `Fn(BoxHandler) -> BoxHandler` (see
///   [`Middleware`](crate::router::Middleware)); the first given is the
///   outermost. Evaluated like `state`.
/// * `service = <expr>` (feature `remote`): run as a packaged handler
///   service instead, a [`Service`](crate::program::Service) listing the
///   task types it serves (what `ajc package` generates): one queue, the
///   Go generator's `AJ_*` environment variables instead of the flags.
/// * `schedule = <expr>`: a schedule with a payload, stored when the worker
///   starts like a handler's `cron = "…"` (docs/processing.md §2.20): a
///   [`ScheduledTask`](crate::ScheduledTask) or a `Result` of one, such as
///   [`program::schedule`](crate::program::schedule)`("weekly_pdf", "0 3 * * MON",
///   reports::weekly::QUEUE, reports::weekly::task(&payload))`. Evaluated
///   like `state`; an invalid one stops the worker at start with an error
///   naming it.
///
/// Every worker also runs the task scheduler (its leader election decides
/// which one fires the schedules) unless started with `--no-scheduler`.
///
/// ```no_run
/// mod jobs {
///     #[derive(Clone)]
///     pub struct Mailer { pub relay: String }
///
///     #[asyncjobs::task_handler("email:new")]
///     pub async fn send(
///         asyncjobs::State(mailer): asyncjobs::State<Mailer>,
///         to: String,
///     ) -> Result<String, asyncjobs::HandlerError> {
///         Ok(format!("{to} via {}", mailer.relay))
///     }
/// }
///
/// async fn log(
///     ctx: asyncjobs::TaskContext,
///     task: asyncjobs::Task,
///     next: asyncjobs::router::Next,
/// ) -> asyncjobs::HandlerResult {
///     let started = std::time::Instant::now();
///     let result = next.run(ctx, task).await;
///     eprintln!("took {:?}", started.elapsed());
///     result
/// }
///
/// asyncjobs::main!(
///     state = jobs::Mailer { relay: "smtp.example.net".into() },
///     middleware = asyncjobs::router::from_fn(log),
/// );
/// ```
///
/// The same with your own `main`: [`App`](crate::program::App).
#[cfg_attr(docsrs, doc(cfg(feature = "program")))]
#[macro_export]
macro_rules! main {
    ($($input:tt)*) => {
        $crate::__main_parse!([] [] [] [] [] $($input)*);
    };
}

/// Parses `asyncjobs::main!`'s input. Not part of the public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __main_parse {
    // done
    ([$($krate:ident)*] [$($state:expr,)*] [$($mw:expr,)*] [$($svc:expr,)*] [$($sch:expr,)*] $(,)?) => {
        $(
            extern crate $krate as _;
        )*

        fn main() -> ::std::process::ExitCode {
            $crate::program::App::new()
                .__program(
                    ::core::option_env!("CARGO_PKG_NAME"),
                    &[$(::core::stringify!($krate)),*],
                )
                $(.service($svc))*
                .setup(|__app| async move {
                    __app
                        $(.state($state))*
                        $(.middleware($mw))*
                        $(.schedule($sch))*
                })
                .main()
        }
    };
    // `state = expr`
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] [$($c:expr,)*] $(,)? state = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)*] [$($s,)* $value,] [$($m,)*] [$($v,)*] [$($c,)*] $($($rest)*)?);
    };
    // `middleware = expr`
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] [$($c:expr,)*] $(,)? middleware = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)*] [$($s,)*] [$($m,)* $value,] [$($v,)*] [$($c,)*] $($($rest)*)?);
    };
    // `service = expr`
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] [$($c:expr,)*] $(,)? service = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)*] [$($s,)*] [$($m,)*] [$($v,)* $value,] [$($c,)*] $($($rest)*)?);
    };
    // `schedule = expr`
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] [$($c:expr,)*] $(,)? schedule = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)*] [$($s,)*] [$($m,)*] [$($v,)*] [$($c,)* $value,] $($($rest)*)?);
    };
    // another option
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] [$($c:expr,)*] $(,)? $key:ident = $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "unknown asyncjobs::main! option `",
            ::core::stringify!($key),
            "`: the options are `state = <expr>`, `middleware = <expr>`, `service = <expr>` and \
             `schedule = <expr>`, after the names of library crates holding handlers"
        ));
    };
    // a library crate
    ([$($k:ident)*] [$($s:expr,)*] [$($m:expr,)*] [$($v:expr,)*] [$($c:expr,)*] $(,)? $krate:ident $(, $($rest:tt)*)?) => {
        $crate::__main_parse!([$($k)* $krate] [$($s,)*] [$($m,)*] [$($v,)*] [$($c,)*] $($($rest)*)?);
    };
}
