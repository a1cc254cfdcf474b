//! Starting the worker program: the checks made before connecting, one
//! client and worker per queue, the optional scheduler and metrics
//! listener, and [`RunningWorkers`], which waits for them and stops them on
//! a signal.

use super::schedules;
use super::signals::Signals;
use super::{ProgramError, WorkerArgs};
use crate::client::Client;
use crate::connect;
use crate::queue::Queue;
use crate::registry::{Handlers, QueueSettings};
use crate::router::{Middleware, Router};
use crate::state::States;
use crate::wire::format_duration;
use std::net::SocketAddr;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// [`App::start`](super::App::start) with these handlers, no state and no
/// middleware.
pub async fn start(args: &WorkerArgs, handlers: &Handlers) -> Result<RunningWorkers, ProgramError> {
    start_with(
        args,
        handlers,
        &States::new(),
        &[],
        &Declared::default(),
        None,
    )
    .await
}

/// The schedules the program declares beside its handlers' (see
/// [`App::schedule`](super::App::schedule)), and the package that
/// declares them.
#[derive(Debug, Default)]
pub(super) struct Declared<'a> {
    pub(super) schedules: &'a [Result<crate::ScheduledTask, String>],
    pub(super) package: Option<&'a str>,
}

/// What a queue's worker is started with: the queue's name, the settings
/// its handlers declare (with the `--queue-*` flags over them), the
/// settings a missing queue is created with, and its router.
type QueuePlan<'a> = (&'a str, QueueSettings, Queue, Router);

/// [`App::start`](super::App::start): checks, connects, prepares the
/// queues, stores the schedules declared in code and starts the metrics
/// listener, the scheduler and the workers, in that order.
pub(super) async fn start_with(
    args: &WorkerArgs,
    handlers: &Handlers,
    states: &States,
    middleware: &[Middleware],
    declared: &Declared<'_>,
    handler_pool: Option<tokio::runtime::Handle>,
) -> Result<RunningWorkers, ProgramError> {
    let handlers = select_queues(args, handlers)?;
    let plans = plan_queues(args, &handlers, states, middleware)?;
    let schedules = schedules::plan(&handlers, declared.schedules, declared.package)?;
    let (nc, api) = connect(args).await?;
    let clients = prepare_queues(nc, api, args.retention, plans).await?;
    if let Some((_, client, _)) = clients.first() {
        schedules::register(client, &schedules).await?;
    }

    let shutdown = CancellationToken::new();
    let metrics = match args.metrics_port {
        Some(port) => {
            Some(serve_metrics(SocketAddr::new(args.metrics_bind, port), &shutdown).await?)
        }
        None => None,
    };
    let mut workers = JoinSet::new();
    if let Some((_, client, _)) = clients.first() {
        match schedules::scheduler_name(args) {
            Some((name, explicit)) => {
                schedules::spawn_scheduler(&mut workers, client, &name, explicit, &shutdown)
            }
            None => schedules::spawn_unfired_warning(&mut workers, client, &shutdown),
        }
    }
    let mut names = Vec::new();
    for (queue, client, router) in clients {
        names.push(queue.clone());
        spawn_worker(
            &mut workers,
            args,
            queue,
            client,
            router,
            handler_pool.clone(),
            &shutdown,
        )?;
    }
    Ok(RunningWorkers::new(shutdown, workers, names, metrics))
}

/// The checks made before connecting: handlers do not conflict, every
/// state they take is registered, the retry policy exists and each queue's
/// handlers agree on its settings; then one plan per queue.
fn plan_queues<'a>(
    args: &WorkerArgs,
    handlers: &'a Handlers,
    states: &States,
    middleware: &[Middleware],
) -> Result<Vec<QueuePlan<'a>>, ProgramError> {
    handlers.check()?;
    handlers.check_states(states)?;
    crate::retry::policy_by_name(&args.retry_policy).map_err(ProgramError::Config)?;
    handlers
        .queues()
        .into_iter()
        .map(|q| {
            let declared = args.queue_overrides(handlers.declared_settings(q)?);
            let settings = declared.apply(Queue::defaults_for(q));
            let router = layered(handlers.router_with(q, states)?, middleware);
            Ok((q, declared, settings, router))
        })
        .collect::<crate::Result<Vec<QueuePlan<'a>>>>()
        .map_err(ProgramError::Config)
}

async fn connect(
    args: &WorkerArgs,
) -> Result<(async_nats::Client, crate::connect::JetStreamApi), ProgramError> {
    args.connection()
        .open()
        .await
        .map_err(|failure| ProgramError::Connect {
            server: args.server(),
            source: match failure {
                connect::Failure::Config(e) => e,
                connect::Failure::Unreachable { source, .. } => {
                    crate::error::nats("", source).into()
                }
            },
        })
}

/// One client per planned queue, creating the queues that do not exist;
/// a queue that exists with other settings than its handlers declare is
/// kept as it is, with a warning.
async fn prepare_queues(
    nc: async_nats::Client,
    api: crate::connect::JetStreamApi,
    retention: crate::task::Retention,
    plans: Vec<QueuePlan<'_>>,
) -> Result<Vec<(String, Client, Router)>, ProgramError> {
    let mut clients = Vec::with_capacity(plans.len());
    for (queue, declared, settings, router) in plans {
        let client = Client::builder()
            .nats_client(nc.clone())
            .jetstream_api(api.clone())
            .retention(retention)
            .queue(settings)
            .build()
            .await
            .map_err(|source| ProgramError::Queue {
                queue: queue.to_string(),
                source,
            })?;
        let differences = declared.differences(client.queue());
        if !differences.is_empty() {
            // the first creator of a queue decides its settings
            tracing::warn!(queue, differences = %differences.join("; "),
                "the queue exists with other settings than its handlers declare; they are not changed (use `ajc queue configure {queue}` or Client::configure_queue)");
        }
        clients.push((queue.to_string(), client, router));
    }
    Ok(clients)
}

/// Starts `queue`'s worker with the flags' concurrency, retry policy and
/// shutdown grace, its handlers on `handler_pool` when there is one.
fn spawn_worker(
    workers: &mut JoinSet<(String, crate::Result<()>)>,
    args: &WorkerArgs,
    queue: String,
    client: Client,
    router: Router,
    handler_pool: Option<tokio::runtime::Handle>,
    shutdown: &CancellationToken,
) -> Result<(), ProgramError> {
    tracing::info!(
        queue = %queue,
        handlers = ?router.task_types().collect::<Vec<_>>(),
        concurrency = args.concurrency,
        queue_concurrency = client.queue().effective_max_concurrent(),
        run_time = %format_duration(client.queue().effective_max_run_time()),
        "starting worker (concurrency: this worker's handlers at once; queue_concurrency: all workers' together)"
    );
    let mut worker = client
        .worker(router)
        .concurrency(args.concurrency)
        .retry_policy_name(&args.retry_policy)
        .map_err(ProgramError::Config)?
        .shutdown_grace(args.shutdown_grace);
    if let Some(pool) = handler_pool {
        worker = worker.handler_pool(pool);
    }
    let stop = shutdown.clone();
    workers.spawn(async move { (queue, worker.run(stop).await) });
    Ok(())
}

/// Starts the Prometheus listener on `addr` until `shutdown`; returns the
/// bound address (port 0 picks one) and the listener's task.
///
/// # Errors
/// [`ProgramError::Metrics`] when `addr` cannot be bound.
pub(super) async fn serve_metrics(
    addr: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), ProgramError> {
    let (bound, server) = crate::metrics::serve(addr, shutdown.clone())
        .await
        .map_err(|source| ProgramError::Metrics { addr, source })?;
    tracing::info!(address = %bound, "serving metrics at /metrics");
    Ok((bound, server))
}

/// The handlers of the queues `--queue` names (every queue without it).
fn select_queues(args: &WorkerArgs, handlers: &Handlers) -> Result<Handlers, ProgramError> {
    if handlers.is_empty() {
        return Err(ProgramError::NoHandlers {
            package: None,
            linked: Vec::new(),
        });
    }
    if args.queues.is_empty() {
        return Ok(handlers.clone());
    }
    let known = handlers.queues();
    for q in &args.queues {
        if !known.contains(&q.as_str()) {
            return Err(ProgramError::UnknownQueue {
                queue: q.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(handlers.clone().only_queues(&args.queues))
}

/// `router` wrapped in `middleware`, the first given outermost (see
/// [`App::middleware`](super::App::middleware)).
pub(super) fn layered(router: Router, middleware: &[Middleware]) -> Router {
    middleware.iter().fold(router, |router, m| {
        let m = m.clone();
        router.layer(move |next| m(next))
    })
}

/// The workers started by [`start`], one per queue.
pub struct RunningWorkers {
    shutdown: CancellationToken,
    workers: JoinSet<(String, crate::Result<()>)>,
    queues: Vec<String>,
    metrics_addr: Option<SocketAddr>,
    metrics: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWorkers")
            .field("queues", &self.queues)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

impl RunningWorkers {
    /// Workers spawned in `workers`, stopped by `shutdown`, with the
    /// metrics listener's address and task, if any.
    pub(super) fn new(
        shutdown: CancellationToken,
        workers: JoinSet<(String, crate::Result<()>)>,
        queues: Vec<String>,
        metrics: Option<(SocketAddr, JoinHandle<()>)>,
    ) -> RunningWorkers {
        let (metrics_addr, metrics) = metrics.unzip();
        RunningWorkers {
            shutdown,
            workers,
            queues,
            metrics_addr,
            metrics,
        }
    }

    /// The queues being processed.
    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// Where metrics are served, when `--metrics-port` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A token that stops every worker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Asks every worker to stop (see [`WorkerArgs::shutdown_grace`]).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every worker has stopped. When one fails, the others are
    /// stopped too and the first failure is returned.
    pub async fn wait(mut self) -> Result<(), ProgramError> {
        let mut first_error = None;
        while let Some(joined) = self.workers.join_next().await {
            let error = match joined {
                Ok((_, Ok(()))) => continue,
                Ok((queue, Err(source))) => ProgramError::Worker { queue, source },
                Err(e) => ProgramError::WorkerPanicked {
                    queue: if e.is_panic() {
                        "(unknown)".into()
                    } else {
                        "(cancelled)".into()
                    },
                },
            };
            tracing::error!(error = %error, "stopping every worker");
            self.shutdown.cancel();
            first_error.get_or_insert(error);
        }
        self.shutdown.cancel();
        if let Some(m) = self.metrics.take() {
            let _ = m.await;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits until the workers stop, stopping them gracefully on SIGINT or
    /// SIGTERM; a second signal exits the process at once (status 130).
    pub async fn run_until_signal(self) -> Result<(), ProgramError> {
        let token = self.shutdown_token();
        let signals = tokio::spawn(async move {
            let mut signals = Signals::new();
            let name = signals.next().await;
            tracing::info!(
                signal = name,
                "shutting down: finishing running tasks (signal again to exit at once)"
            );
            token.cancel();
            let name = signals.next().await;
            eprintln!(
                "received {name} again: exiting without waiting for running tasks; \
                 they run again once their queue's run time (the WORKERS ack wait) has passed"
            );
            std::process::exit(130);
        });
        let result = self.wait().await;
        signals.abort();
        if result.is_ok() {
            tracing::info!("worker stopped");
        }
        result
    }

    /// [`shutdown`](Self::shutdown) then [`wait`](Self::wait).
    pub async fn stop(self) -> Result<(), ProgramError> {
        self.shutdown();
        self.wait().await
    }
}
