//! Long-running commands: `task process` (a worker whose handler is an
//! external command or a request-reply service) and `task cron scheduler`,
//! each optionally serving Prometheus metrics on `--monitor PORT`.

use super::task::with_keys;
use super::Ctx;
use crate::cli::{CronSchedulerArgs, MonitorArgs, TaskProcessArgs};
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use asyncjobs::signing::Keys;
use asyncjobs::{ExternalCommand, RequestReply, Router, Scheduler, TaskState};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGINT or SIGTERM. The handlers are installed
/// before this returns, so a signal arriving right after is not fatal.
pub(crate) fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = (term, int);
            let term = async {
                match term.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term => {}
                _ = int => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

/// Serves `GET /metrics` (the Prometheus text format of the asyncjobs
/// registry) as `--monitor`/`--monitor-bind` say, until `stop`.
async fn serve_metrics(m: MonitorArgs, stop: CancellationToken) -> Result<()> {
    let Some(port) = m.port else {
        return Ok(());
    };
    let (bound, _server) = asyncjobs::metrics::serve(SocketAddr::new(m.bind, port), stop)
        .await
        .map_err(|e| {
            CliError::msg(format!(
                "cannot listen on {}:{port} for --monitor: {e}",
                m.bind
            ))
        })?;
    tracing::info!(address = %bound, "serving Prometheus metrics on /metrics");
    Ok(())
}

/// `ajc task process TYPE QUEUE CONCURRENCY [COMMAND]`.
pub async fn process(ctx: &Ctx, keys: Option<Keys>, a: &TaskProcessArgs) -> Result<()> {
    if a.command.is_none() && !a.remote {
        return Err(CliError::msg("either a command or --remote is required"));
    }
    if a.concurrency == 0 {
        return Err(CliError::msg("concurrency must be at least 1"));
    }
    // check the command before connecting
    let command = match (&a.command, a.remote) {
        (Some(path), false) => Some(ExternalCommand::new(path)?),
        _ => None,
    };
    let mut discard = Vec::new();
    if a.discard_complete {
        discard.push(TaskState::Complete);
    }
    if a.discard_expired {
        discard.push(TaskState::Expired);
    }
    let client = client(&ctx.global, Prepare::Queue(a.queue.clone()), |b| {
        let mut b = with_keys(b, keys);
        if !discard.is_empty() {
            b = b.discard_states(discard)?;
        }
        Ok(b)
    })
    .await?;
    let router = match command {
        Some(cmd) => {
            tracing::info!(
                task_type = %a.task_type,
                queue = %a.queue,
                concurrency = a.concurrency,
                command = %cmd.path().display(),
                "processing tasks with an external command"
            );
            Router::new().handle(a.task_type.clone(), cmd)?
        }
        None => {
            let rr = RequestReply::new(client.nats().clone(), &a.task_type);
            tracing::info!(
                task_type = %a.task_type,
                queue = %a.queue,
                concurrency = a.concurrency,
                subject = %rr.subject(),
                "processing tasks with a request-reply service"
            );
            Router::new().handle(a.task_type.clone(), rr)?
        }
    };
    let stop = shutdown_on_signals();
    serve_metrics(a.monitor, stop.clone()).await?;
    client
        .worker(router)
        .concurrency(a.concurrency)
        .retry_policy_name(&a.backoff)?
        .run(stop)
        .await?;
    Ok(())
}

/// `ajc task cron scheduler NAME`.
pub async fn scheduler(ctx: &Ctx, a: &CronSchedulerArgs) -> Result<()> {
    if a.name.is_empty() {
        return Err(CliError::msg("a scheduler name is required"));
    }
    let client = client(
        &ctx.global,
        Prepare::Queue(asyncjobs::queue::DEFAULT_QUEUE_NAME.into()),
        Ok,
    )
    .await?;
    let stop = shutdown_on_signals();
    serve_metrics(a.monitor, stop.clone()).await?;
    tracing::info!(scheduler = %a.name, "starting the task scheduler");
    Scheduler::new(client, a.name.clone()).run(stop).await?;
    Ok(())
}
