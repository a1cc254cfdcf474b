//! [`App`]: the worker program as a builder (handlers, shared state,
//! middleware, a packaged service), and `main`, which parses the flags,
//! installs logging, starts the [`WorkerThreads`] and runs until a signal.

use super::listing::list_handlers;
use super::logging::init_logging;
use super::running::{start_with, Declared};
use super::schedules::IntoSchedule;
#[cfg(feature = "remote")]
use super::service::{self, Service};
use super::{ProgramError, RunningWorkers, WorkerArgs, WorkerThreads};
use crate::handler::BoxHandler;
use crate::registry::Handlers;
use crate::router::Middleware;
use crate::state::States;
use clap::Parser;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

/// A future building the program's states and middleware (see [`App::setup`]).
pub(super) type Setup = Box<dyn FnOnce(App) -> Pin<Box<dyn Future<Output = App>>>>;

/// The worker program `asyncjobs::main!()` runs, as a builder: which
/// handlers, their shared state and middleware, then the same flags,
/// logging and shutdown as `main!`.
///
/// ```no_run
/// mod jobs {
///     #[derive(Clone)]
///     pub struct Db(pub std::sync::Arc<str>);
///
///     #[asyncjobs::task_handler("report:build")]
///     pub async fn build(
///         asyncjobs::State(db): asyncjobs::State<Db>,
///         name: String,
///     ) -> Result<String, asyncjobs::HandlerError> {
///         Ok(format!("{name} from {}", db.0))
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     asyncjobs::program::App::new()
///         .state(jobs::Db("postgres://localhost/shop".into()))
///         .middleware(asyncjobs::router::from_fn(|ctx, task, next| async move {
///             let result = next.run(ctx, task).await;
///             result
///         }))
///         .main()
/// }
/// ```
pub struct App {
    handlers: Option<Handlers>,
    pub(super) states: States,
    pub(super) middleware: Vec<Middleware>,
    setup: Option<Setup>,
    package: Option<&'static str>,
    linked: Vec<&'static str>,
    handler_pool: Option<tokio::runtime::Handle>,
    schedules: Vec<Result<crate::ScheduledTask, String>>,
    #[cfg(feature = "remote")]
    service: Option<Service>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("handlers", &self.handlers)
            .field("states", &self.states)
            .field("middleware", &self.middleware.len())
            .field("setup", &self.setup.is_some())
            .field("package", &self.package)
            .field("linked", &self.linked)
            .field("handler_pool", &self.handler_pool.is_some())
            .field("schedules", &self.schedules)
            .finish()
    }
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// Every handler of the program ([`Handlers::registered`]), no state,
    /// no middleware.
    pub fn new() -> App {
        App {
            handlers: None,
            states: States::new(),
            middleware: Vec::new(),
            setup: None,
            package: None,
            linked: Vec::new(),
            handler_pool: None,
            schedules: Vec::new(),
            #[cfg(feature = "remote")]
            service: None,
        }
    }

    /// Runs as the packaged handler `service` (see [`Service`]): its
    /// handlers on its one queue, configured by the `AJ_*` environment
    /// variables; [`main`](App::main) then reads no flags.
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    #[cfg(feature = "remote")]
    pub fn service(mut self, service: Service) -> App {
        self.service = Some(service);
        self
    }

    /// Runs these handlers instead of every registered one.
    pub fn handlers(mut self, handlers: Handlers) -> App {
        self.handlers = Some(handlers);
        self
    }

    /// Registers `value` for handlers' [`State<T>`](crate::State) arguments
    /// of its type (a value of the same type given before is replaced).
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> App {
        self.states.insert(value);
        self
    }

    /// Registers every value of `states`, as [`state`](App::state) does.
    pub fn states(mut self, states: &States) -> App {
        self.states.extend(states);
        self
    }

    /// Wraps every handler of every queue in `middleware`, such as one made
    /// with [`from_fn`](crate::router::from_fn); the first added is the
    /// outermost (see [`Middleware`]).
    pub fn middleware(
        mut self,
        middleware: impl Fn(BoxHandler) -> BoxHandler + Send + Sync + 'static,
    ) -> App {
        self.middleware.push(std::sync::Arc::new(middleware));
        self
    }

    /// Declares a schedule (docs/processing.md §2.20), stored when the
    /// worker starts as the `cron = "…"` of a `#[task_handler]` is:
    /// created when missing, replaced when an earlier declaration differs,
    /// kept with a warning when someone else created a different one under
    /// the name. `asyncjobs::main!(schedule = …)` uses it; make one with
    /// [`program::schedule`](super::schedule) or [`ScheduledTask::new`](crate::ScheduledTask::new).
    /// An invalid schedule (an `Err`) makes [`start`](App::start) fail
    /// with [`ProgramError::Schedule`] before connecting.
    pub fn schedule(mut self, schedule: impl IntoSchedule) -> App {
        self.schedules.push(schedule.into_schedule());
        self
    }

    /// Runs `setup` on the worker's tokio runtime once the flags are parsed
    /// and before the worker starts (never for `--help` or
    /// `--list-handlers`), to add states and middleware that need async
    /// set-up, such as a database pool. `asyncjobs::main!(state = ...)`
    /// uses it. A later call replaces an earlier one.
    ///
    /// ```no_run
    /// # #[derive(Clone)] struct Pool;
    /// # impl Pool { async fn connect(_: &str) -> Pool { Pool } }
    /// fn main() -> std::process::ExitCode {
    ///     asyncjobs::program::App::new()
    ///         .setup(|app| async move { app.state(Pool::connect("postgres://db/shop").await) })
    ///         .main()
    /// }
    /// ```
    pub fn setup<F, Fut>(mut self, setup: F) -> App
    where
        F: FnOnce(App) -> Fut + 'static,
        Fut: Future<Output = App> + 'static,
    {
        self.setup = Some(Box::new(move |app| Box::pin(setup(app))));
        self
    }

    /// What `main!` knows about the program: its package and the crates it
    /// names. Not part of the public API.
    #[doc(hidden)]
    pub fn __program(mut self, package: Option<&'static str>, linked: &[&'static str]) -> App {
        self.package = package;
        self.linked = linked.to_vec();
        self
    }

    fn registered(&self) -> Handlers {
        self.handlers.clone().unwrap_or_else(Handlers::registered)
    }

    pub(super) fn no_handlers(&self) -> ProgramError {
        ProgramError::NoHandlers {
            package: self.package.map(str::to_string),
            linked: self.linked.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// Parses flags and environment (exiting on `--help` or a bad flag),
    /// then runs [`main_with`](App::main_with).
    pub fn main(self) -> ExitCode {
        #[cfg(feature = "remote")]
        if self.service.is_some() {
            return self.main_service();
        }
        self.main_with(WorkerArgs::parse())
    }

    /// [`main`](App::main) of a packaged [`Service`].
    #[cfg(feature = "remote")]
    fn main_service(self) -> ExitCode {
        let registered = self.registered();
        match self.service {
            Some(s) => service::main(&s, registered, self.states, self.middleware, self.setup),
            None => ExitCode::FAILURE,
        }
    }

    /// Runs a worker until SIGINT/SIGTERM, or lists the handlers with
    /// `--list-handlers` (exit code 1 when there are none or they
    /// conflict). Errors are printed to stderr and give exit code 1.
    pub fn main_with(mut self, args: WorkerArgs) -> ExitCode {
        let handlers = self.registered();
        if args.list_handlers {
            return list_handlers(&handlers, || self.no_handlers());
        }
        if handlers.is_empty() {
            eprintln!("error: {}", self.no_handlers());
            return ExitCode::FAILURE;
        }
        self.handlers = Some(handlers);
        #[cfg(feature = "otel")]
        let otlp = args.otlp_endpoint.as_deref();
        #[cfg(not(feature = "otel"))]
        let otlp = None;
        // flushes the spans when the worker ends
        let _logging = match init_logging(&args.log_level, otlp) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let threads = match WorkerThreads::new(args.handler_threads) {
            Ok(threads) => threads,
            Err(e) => {
                eprintln!("error: cannot start the tokio runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(pool) = threads.handlers() {
            self.handler_pool = Some(pool);
        }
        match threads.block_on(self.run_until_signal(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn run_until_signal(mut self, args: &WorkerArgs) -> Result<(), ProgramError> {
        if let Some(setup) = self.setup.take() {
            self = setup(self).await;
        }
        self.start(args).await?.run_until_signal().await
    }

    /// Checks the handlers, states and queue settings, connects, prepares
    /// every queue the handlers name (creating missing ones with the
    /// settings [`Handlers::queue`] gives), starts the metrics listener if
    /// asked, and starts one worker per queue. The [`setup`](App::setup)
    /// function is not run here.
    ///
    /// # Errors
    /// Without connecting: [`ProgramError::NoHandlers`],
    /// [`ProgramError::UnknownQueue`], [`ProgramError::Duplicates`],
    /// [`ProgramError::MissingStates`] (every missing state of every
    /// handler) and [`ProgramError::Config`] (conflicting queue settings, a
    /// bad retry policy). Then [`ProgramError::Connect`],
    /// [`ProgramError::Queue`] and [`ProgramError::Metrics`];
    /// [`ProgramError::Schedule`] for a declared schedule that is invalid
    /// (before connecting) or cannot be stored.
    pub async fn start(&self, args: &WorkerArgs) -> Result<RunningWorkers, ProgramError> {
        let registered = self.registered();
        if registered.is_empty() {
            return Err(self.no_handlers());
        }
        start_with(
            args,
            &registered,
            &self.states,
            &self.middleware,
            &Declared {
                schedules: &self.schedules,
                package: self.package,
            },
            self.handler_pool.clone(),
        )
        .await
    }

    /// Runs handlers on `pool` rather than where [`App::start`] runs
    /// ([`Worker::handler_pool`](crate::Worker::handler_pool));
    /// [`App::main`] sets it to its [`WorkerThreads`]' pool.
    pub fn handler_pool(mut self, pool: tokio::runtime::Handle) -> App {
        self.handler_pool = Some(pool);
        self
    }
}

/// What `asyncjobs::main!()` called before [`App`]: [`App::new`]`.main()`.
pub fn main() -> ExitCode {
    App::new().main()
}

/// Runs a worker for `handlers` until SIGINT/SIGTERM, or lists them with
/// `--list-handlers`: [`App::main_with`] with these handlers, no state and
/// no middleware.
pub fn main_with(args: WorkerArgs, handlers: Handlers) -> ExitCode {
    App::new().handlers(handlers).main_with(args)
}
