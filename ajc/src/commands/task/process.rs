//! `ajc task process`: a worker whose handler is an external command or a
//! request-reply service, optionally serving Prometheus metrics on
//! `--monitor PORT`, until SIGINT or SIGTERM.

use super::keys::with_keys;
use crate::commands::Ctx;
use crate::connect::{client, Prepare};
use crate::error::{CliError, Result};
use crate::long_running::{serve_metrics, shutdown_on_signals, MonitorArgs};
use asyncjobs::signing::Keys;
use asyncjobs::{ExternalCommand, RequestReply, Router, TaskState};
use clap::Args;
use std::path::PathBuf;

/// `ajc task process`.
#[derive(Args, Debug)]
pub struct TaskProcessArgs {
    /// Export traces over OTLP/HTTP to this collector, for example
    /// http://127.0.0.1:4318 (OTEL_SERVICE_NAME and the SDK's sampling
    /// variables apply; needs an ajc built with the feature otel:
    /// cargo install --path ajc --features otel)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Types of Tasks to process ("" for every type)
    #[arg(value_name = "TYPE", env = "AJC_TYPE")]
    pub task_type: String,
    /// The Queue to consume Tasks from
    #[arg(env = "AJC_QUEUE")]
    pub queue: String,
    /// How many concurrent Tasks to process
    #[arg(env = "AJC_CONCURRENCY")]
    pub concurrency: usize,
    /// The command to invoke for each Task
    #[arg(env = "AJC_COMMAND")]
    pub command: Option<PathBuf>,
    /// Process tasks using a remote request-reply callout
    #[arg(long)]
    pub remote: bool,
    #[command(flatten)]
    pub monitor: MonitorArgs,
    /// Discard messages in the 'complete' state
    #[arg(long = "discard-complete")]
    pub discard_complete: bool,
    /// Discard messages in the 'expired' state
    #[arg(long = "discard-expired")]
    pub discard_expired: bool,
    /// Selects a backoff policy to apply
    #[arg(long, default_value = "default", value_parser = ["10m", "1h", "1m", "default"])]
    pub backoff: String,
}

/// `ajc task process TYPE QUEUE CONCURRENCY [COMMAND]`.
pub async fn run(ctx: &Ctx, keys: Option<Keys>, a: &TaskProcessArgs) -> Result<()> {
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
