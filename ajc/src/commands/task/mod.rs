//! `ajc task …`: the task group's arguments (the `--sign`/`--verify`
//! flags every task command accepts) and its dispatch. Each subcommand's
//! arguments and work live in a file of its own: [`add`], [`retry`], [`cancel`],
//! [`view`], [`delete`], [`list`], [`store`] (initialize, configure, purge,
//! reconcile), [`watch`], [`process`] and [`cron`] (`task cron …`). What
//! several of them share: [`keys`] (signing), [`input`] (a task from
//! command-line arguments) and [`show`] (how a task is printed).

pub mod add;
pub mod cancel;
pub mod cron;
pub mod delete;
pub mod input;
pub mod keys;
pub mod list;
pub mod process;
pub mod retry;
pub mod show;
pub mod store;
pub mod view;
pub mod watch;

use super::Ctx;
use crate::error::Result;
use crate::flags::ForceFlag;
use add::TaskAddArgs;
use cancel::TaskCancelArgs;
use clap::{Args, Subcommand};
use cron::CronCmd;
use delete::TaskDeleteArgs;
use keys::signing_keys;
use list::TaskListArgs;
use process::TaskProcessArgs;
use retry::TaskRetryArgs;
use store::{TaskConfigureArgs, TaskInitArgs, TaskReconcileArgs, TaskRetentionArgs};
use view::TaskViewArgs;
use watch::TaskWatchArgs;

/// `ajc task …` with the signing flags of the group.
#[derive(Args, Debug)]
pub struct TasksArgs {
    /// Signs tasks using an ed25519 seed: hex, or a file holding the hex
    #[arg(long, value_name = "HEXSEED|FILE", global = true)]
    pub sign: Option<String>,
    /// Verifies tasks using an ed25519 public key: hex, or a file holding the hex
    #[arg(long, value_name = "HEXPUB|FILE", global = true)]
    pub verify: Option<String>,
    /// The task command.
    #[command(subcommand)]
    pub cmd: TaskCmd,
}

/// `ajc task …`.
#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// Adds a new Task to a queue
    #[command(visible_aliases = ["new", "a", "enqueue"])]
    Add(TaskAddArgs),
    /// Retries delivery of a task currently in the Task Store
    Retry(TaskRetryArgs),
    /// Cancels a task: a waiting one never runs, a running one is stopped
    /// (not in the Go ajc)
    Cancel(TaskCancelArgs),
    /// Views the status of a Task
    #[command(visible_aliases = ["show", "v", "info", "i"])]
    View(TaskViewArgs),
    /// Removes a task from the tasks storage
    #[command(visible_aliases = ["del", "rm"])]
    Delete(TaskDeleteArgs),
    /// List Tasks
    #[command(visible_alias = "ls")]
    List(TaskListArgs),
    /// Purge all entries from the Tasks store
    Purge(ForceFlag),
    /// Expire tasks still waiting or active whose work item is gone (dropped
    /// by queue limits, purged, queue deleted); not in the Go ajc
    Reconcile(TaskReconcileArgs),
    /// Initialize the Task storage
    Initialize(TaskInitArgs),
    /// Configures the Task storage
    #[command(visible_aliases = ["config", "cfg"])]
    Configure(TaskConfigureArgs),
    /// Shows how long finished tasks are kept and whether they expire;
    /// --enable lets them expire in a store made without (not in the Go ajc)
    Retention(TaskRetentionArgs),
    /// Watch job updates in real time
    Watch(TaskWatchArgs),
    /// Process Tasks from a given queue
    Process(TaskProcessArgs),
    /// Tasks Scheduler Management and Scheduler
    #[command(visible_alias = "c")]
    Cron {
        /// The cron command.
        #[command(subcommand)]
        cmd: CronCmd,
    },
}

/// Runs a task command, with the keys of `--sign`/`--verify` for those
/// that read or write tasks.
pub async fn run(ctx: &Ctx, args: &TasksArgs) -> Result<()> {
    let keys = signing_keys(args.sign.as_deref(), args.verify.as_deref())?;
    match &args.cmd {
        TaskCmd::Add(a) => add::run(ctx, keys, a).await,
        TaskCmd::Retry(a) => retry::run(ctx, keys, a).await,
        TaskCmd::Cancel(a) => cancel::run(ctx, a).await,
        TaskCmd::View(a) => view::run(ctx, keys, a).await,
        TaskCmd::Delete(a) => delete::run(ctx, a).await,
        TaskCmd::List(a) => list::run(ctx, a).await,
        TaskCmd::Purge(f) => store::purge(ctx, f.force).await,
        TaskCmd::Reconcile(a) => store::reconcile(ctx, a).await,
        TaskCmd::Initialize(a) => store::initialize(ctx, a).await,
        TaskCmd::Configure(a) => store::configure(ctx, a).await,
        TaskCmd::Retention(a) => store::retention(ctx, a).await,
        TaskCmd::Watch(a) => watch::run(ctx, a).await,
        TaskCmd::Process(a) => process::run(ctx, keys, a).await,
        TaskCmd::Cron { cmd } => cron::run(ctx, cmd).await,
    }
}
