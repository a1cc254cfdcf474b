//! The root of the command tree (docs/interfaces.md §1.7): `ajc` itself, its
//! global flags and the top-level commands, with the aliases of the Go
//! `ajc` and the additions documented in [`LONG_ABOUT`]. Each command
//! group's subcommands, arguments and work live together under
//! [`crate::commands`].

use crate::commands::batch::BatchCmd;
use crate::commands::info::InfoArgs;
use crate::commands::package::PackageArgs;
use crate::commands::queue::QueueCmd;
use crate::commands::server::ServerCmd;
use crate::commands::task::{TaskCmd, TasksArgs};
use crate::commands::{self, Ctx};
use crate::error::Result;
use crate::flags::Global;
use clap::{Parser, Subcommand};

/// `ajc --help`: what the tool is and where it deliberately differs from Go.
pub const LONG_ABOUT: &str = "\
Choria Asynchronous Jobs

Manages queues, tasks and schedules of asyncjobs (wire-compatible with the Go
Choria Async Jobs) and runs workers and schedulers. Scripts written for the Go
`ajc` work unchanged, except for these deliberate differences:

  * `task add TYPE PAYLOAD` stores a JSON payload as the JSON value given (an
    object stays an object; the Go tool stores the JSON *string* of the
    argument). Arguments that are not JSON are stored as a JSON string like Go
    does; --raw-string always stores the argument as a string (Go's behaviour).
    `task cron add` takes its payload the same ways (an argument after
    the type, --payload or --payload-file).
  * Read-only and removal commands (info, queue ls/info/rm/purge, task
    view/ls/rm/purge/watch/configure, task cron view/ls/rm) never create
    streams or buckets. Commands that write tasks (task add/retry/process,
    task cron add/scheduler) create the task store, the KV buckets and the
    DEFAULT queue when missing, as Go does; `info` does so only when one of
    --replica, --memory or --retention is given.
  * `queue ls` and `info` list queues whose WORKERS consumer is missing,
    marked as such, instead of failing.
  * --json on every command that shows data; tables and colours only on a
    terminal (plain aligned columns otherwise; NO_COLOR disables colours); a
    progress indicator on stderr for long operations when it is a terminal.
  * `task ls` filters with --state, --type and --queue.
  * Destructive commands ask for confirmation on a terminal and refuse without
    one unless -f/--force is given.
  * Without a NATS context file, --server URL (or NATS_URL) connects directly;
    with one, --server overrides the context's URL.
  * Errors are printed without the usage text.
  * Additions: `batch add|info|cancel|retry` (batches of tasks with a
    callback), `task add --at/--in` (delayed tasks), `task retry` with
    --state/--type/--from-queue/--since/--error/--dry-run (dead-letter
    replay), `server run` also serves a web dashboard under /ui/ and
    extensions of Go's API (see the README), --otlp-endpoint on `task
    process` and `server run` exports OpenTelemetry traces (an ajc built
    with the feature otel: cargo install --path ajc --features otel).
  * `package docker` writes a Cargo project (Rust worker) and a Dockerfile
    instead of main.go; `package cargo` writes the project alone. Go
    package handlers are refused (list a Rust `crate:` instead); unknown
    YAML keys are refused; --output DIR and --force are additions.";

/// `ajc`.
#[derive(Parser, Debug)]
#[command(
    name = "ajc",
    version,
    about = "Choria Asynchronous Jobs",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    /// Connection and logging flags.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The OTLP endpoint of the long-running commands that export traces.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        match &self.command {
            Command::Server {
                cmd: ServerCmd::Run(a),
            } => a.otlp_endpoint.as_deref(),
            Command::Tasks(t) => match &t.cmd {
                TaskCmd::Process(a) => a.otlp_endpoint.as_deref(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Shows general Task and Queue information
    Info(InfoArgs),
    /// Manage Work Queues
    #[command(visible_aliases = ["q", "queue"])]
    Queues {
        /// The queue command.
        #[command(subcommand)]
        cmd: QueueCmd,
    },
    /// Manage Tasks
    #[command(visible_aliases = ["t", "task"])]
    Tasks(TasksArgs),
    /// Enqueue, follow, cancel and retry batches of tasks with a callback
    /// (not in the Go ajc)
    #[command(visible_aliases = ["b", "batches"])]
    Batch {
        /// The batch command.
        #[command(subcommand)]
        cmd: BatchCmd,
    },
    /// HTTP API server
    Server {
        /// The server command.
        #[command(subcommand)]
        cmd: ServerCmd,
    },
    /// Creates packages hosting handlers
    #[command(visible_alias = "pkg")]
    Package(PackageArgs),
}

impl Command {
    /// Runs the command: each group dispatches its own subcommands.
    pub async fn run(&self, ctx: &Ctx) -> Result<()> {
        match self {
            Command::Info(a) => commands::info::run(ctx, a).await,
            Command::Queues { cmd } => commands::queue::run(ctx, cmd).await,
            Command::Tasks(a) => commands::task::run(ctx, a).await,
            Command::Batch { cmd } => commands::batch::run(ctx, cmd).await,
            Command::Server { cmd } => commands::server::run(ctx, cmd).await,
            Command::Package(a) => commands::package::run(ctx, a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::GoDuration;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn aliases_and_flags() {
        let cli = Cli::try_parse_from(["ajc", "q", "ls"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Queues {
                cmd: QueueCmd::List(_)
            }
        ));
        let cli = Cli::try_parse_from(["ajc", "t", "add", "x", "{}", "--deadline", "1h"]).unwrap();
        let Command::Tasks(t) = cli.command else {
            panic!()
        };
        let TaskCmd::Add(a) = t.cmd else { panic!() };
        assert_eq!(a.task.deadline, Some(GoDuration(3_600_000_000_000)));
        let cli =
            Cli::try_parse_from(["ajc", "task", "process", "", "DEFAULT", "4", "./h.sh"]).unwrap();
        let Command::Tasks(t) = cli.command else {
            panic!()
        };
        let TaskCmd::Process(p) = t.cmd else { panic!() };
        assert_eq!(p.task_type, "");
        let cli =
            Cli::try_parse_from(["ajc", "queue", "cfg", "X", "--age", "-1s", "--tries", "-2"])
                .unwrap();
        let Command::Queues {
            cmd: QueueCmd::Configure(c),
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(c.age, Some(GoDuration(-1_000_000_000)));
        assert!(crate::commands::queue::queue_update(&c).max_tries.is_none());
        assert!(Cli::try_parse_from(["ajc", "task", "add", "x", "y", "--deadline", "5x"]).is_err());
        let cli = Cli::try_parse_from(["ajc", "task", "ls", "--sign", "aa"]).unwrap();
        let Command::Tasks(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.sign.as_deref(), Some("aa"));
    }
}
