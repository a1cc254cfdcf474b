//! The command tree (docs/interfaces.md §1.7): the commands, aliases, flags and
//! environment variables of the Go `ajc`, plus the additions documented in
//! [`LONG_ABOUT`].

use crate::format::{parse_duration, GoDuration};
use clap::builder::FalseyValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};
use std::path::PathBuf;

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
    `task cron add --payload` works the same way.
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
  * Additions: `task add --at/--in` (delayed tasks), `task retry` with
    --state/--type/--from-queue/--since/--error/--dry-run (dead-letter
    replay), `server run` also serves a web dashboard under /ui/ and
    extensions of Go's API (see the README), --otlp-endpoint on `task
    process` and `server run` exports OpenTelemetry traces.
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

/// Flags accepted anywhere on the command line.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// NATS Context to use for connecting to JetStream
    #[arg(
        long,
        value_name = "NAME",
        env = "CONTEXT",
        default_value = "AJC",
        global = true
    )]
    pub context: String,

    /// Enable debug level logging
    #[arg(
        long,
        env = "AJC_DEBUG",
        global = true,
        action = ArgAction::SetTrue,
        value_parser = FalseyValueParser::new()
    )]
    pub debug: bool,

    /// NATS server URL(s), comma separated; used when the context file does
    /// not exist, and overrides the context's URL when it does
    #[arg(long, value_name = "URL", env = "NATS_URL", global = true)]
    pub server: Option<String>,
}

/// `--json`/`-j`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct JsonFlag {
    /// Show JSON data
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `-f/--force`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct ForceFlag {
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
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

/// `ajc package …` (docs/interfaces.md §1.8).
#[derive(Args, Debug)]
pub struct PackageArgs {
    /// Use a specific configuration file rather than asyncjobs.yaml
    #[arg(
        long,
        global = true,
        default_value = "asyncjobs.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
    /// The package command.
    #[command(subcommand)]
    pub cmd: PackageCmd,
}

/// `ajc package docker|cargo`.
#[derive(Subcommand, Debug)]
pub enum PackageCmd {
    /// Creates a Cargo project and a Dockerfile for a container hosting the handlers
    Docker(PackageOutput),
    /// Creates a Cargo project building a worker binary hosting the handlers
    Cargo(PackageOutput),
}

/// Where `ajc package` writes.
#[derive(Args, Debug)]
pub struct PackageOutput {
    /// Directory to write the project to (created when missing)
    #[arg(long, short = 'o', default_value = ".", value_name = "DIR")]
    pub output: PathBuf,
    /// Overwrite files the project writes that already exist
    #[arg(long, short = 'f')]
    pub force: bool,
}

/// `ajc server …`.
#[derive(Subcommand, Debug)]
pub enum ServerCmd {
    /// Serves the HTTP API (Go's routes and JSON, docs/interfaces.md §2)
    Run(ServerRunArgs),
}

/// `ajc server run` (Go's flags and defaults, docs/interfaces.md §2.1).
#[derive(Args, Debug)]
pub struct ServerRunArgs {
    /// Address to listen on (an IP address or localhost, with a port; 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub bind: String,
    /// PEM certificate chain to serve TLS with (needs --tls-key)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: every client must present a certificate chaining to it (mutual TLS)
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Queue tasks are enqueued into (it must exist)
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Without --queue, use (and create) the DEFAULT queue; lets POST /v1/queues create DEFAULT
    #[arg(long)]
    pub allow_create_default: bool,
    /// Longest time to read a request body
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub read_timeout: GoDuration,
    /// Longest time to answer a request (streams and waits excepted); also the shutdown grace
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub write_timeout: GoDuration,
    /// Largest request body in bytes
    #[arg(long, default_value_t = 524288, value_name = "BYTES")]
    pub max_body: usize,
    /// Listen on an address other hosts can reach without client certificates
    #[arg(long)]
    pub unsafe_bind: bool,
    /// Do not serve the web dashboard under /ui/
    #[arg(long)]
    pub no_ui: bool,
    /// Refuse the dashboard's actions (retry, delete, purge, configure, schedules)
    #[arg(long)]
    pub read_only: bool,
    /// Export traces over OTLP/HTTP to this collector, for example
    /// http://127.0.0.1:4318 (OTEL_SERVICE_NAME and the SDK's sampling
    /// variables apply)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// `ajc info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Create missing storage with this many replicas
    #[arg(short = 'R', long = "replica", value_name = "N")]
    pub replica: Option<usize>,
    /// Create missing storage in memory
    #[arg(long)]
    pub memory: bool,
    /// Create a missing task store keeping tasks this long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retention: Option<GoDuration>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc queue …`.
#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Creates a new Queue
    #[command(visible_aliases = ["add", "n", "a"])]
    New(QueueNewArgs),
    /// List Queues
    #[command(visible_alias = "ls")]
    List(JsonFlag),
    /// Removes the entire work queue
    #[command(visible_alias = "rm")]
    Delete(QueueNameForce),
    /// Removes all items from a work queue
    Purge(QueuePurgeArgs),
    /// Shows information about a queue
    #[command(visible_aliases = ["view", "i"])]
    Info(QueueInfoArgs),
    /// Configures a Queue storage
    #[command(visible_aliases = ["config", "cfg"])]
    Configure(QueueConfigureArgs),
}

/// `ajc queue new`.
#[derive(Args, Debug)]
pub struct QueueNewArgs {
    /// Queue to create
    pub queue: String,
    /// Sets the maximum age for entries to keep, 0s for unlimited
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub age: GoDuration,
    /// Sets the maximum amount of entries to keep, 0 for unlimited
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub entries: i64,
    /// Maximum delivery attempts to allow per message, -1 for unlimited
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tries: i64,
    /// Maximum run-time to allow per task
    #[arg(long = "run-time", value_name = "DURATION", default_value = "1h0m0s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub run_time: GoDuration,
    /// Maximum concurrent jobs that can be ran
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    pub concurrent: i64,
    /// Store the Queue in memory
    #[arg(long)]
    pub memory: bool,
    /// Number of storage replicas to configure
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// When full, discard old entries
    #[arg(long = "discard-old")]
    pub discard_old: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// A queue name and `-f`.
#[derive(Args, Debug)]
pub struct QueueNameForce {
    /// The queue
    pub queue: String,
    #[command(flatten)]
    pub force: ForceFlag,
}

/// `ajc queue purge`.
#[derive(Args, Debug)]
pub struct QueuePurgeArgs {
    #[command(flatten)]
    pub target: QueueNameForce,
    /// Also mark the tasks whose items are removed (and that still wait:
    /// new, retry, blocked) terminated, so none is left waiting forever
    /// (Go leaves them new)
    #[arg(long)]
    pub terminate_tasks: bool,
}

/// `ajc queue info`.
#[derive(Args, Debug)]
pub struct QueueInfoArgs {
    /// Queue to view
    pub queue: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc queue configure`: negative sentinels leave a setting unchanged.
#[derive(Args, Debug)]
pub struct QueueConfigureArgs {
    /// Queue to configure
    pub queue: String,
    /// Sets the maximum age for entries to keep, 0s for unlimited
    #[arg(long, value_name = "DURATION", default_value = "-1s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub age: GoDuration,
    /// Sets the maximum amount of entries to keep, 0 for unlimited
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub entries: i64,
    /// Maximum delivery attempts to allow per message, -1 for unlimited
    #[arg(long, default_value_t = -2, allow_negative_numbers = true)]
    pub tries: i64,
    /// Maximum run-time to allow per task
    #[arg(long = "run-time", value_name = "DURATION", default_value = "-1s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub run_time: GoDuration,
    /// Maximum concurrent jobs that can be ran
    #[arg(long, default_value_t = -2, allow_negative_numbers = true)]
    pub concurrent: i64,
    /// Number of storage replicas to configure
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replicas: i64,
    #[command(flatten)]
    pub out: JsonFlag,
}

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

/// `ajc task reconcile`.
#[derive(Args, Debug)]
pub struct TaskReconcileArgs {
    /// Only tasks of this queue
    #[arg(short = 'q', long)]
    pub queue: Option<String>,
    /// Leave tasks changed more recently than this alone
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub grace: GoDuration,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `--queue`, `--deadline` and `--tries` of `task add` and `task cron add`.
#[derive(Args, Debug)]
pub struct TaskSettings {
    /// The name of the queue to add the task to
    #[arg(short = 'q', long, default_value = "DEFAULT")]
    pub queue: String,
    /// A duration to determine when the latest time that a task handler will be called
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<GoDuration>,
    /// Sets the maximum amount of times this task may be tried
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub tries: i64,
}

/// `ajc task add`.
#[derive(Args, Debug)]
pub struct TaskAddArgs {
    /// The task type
    #[arg(value_name = "TYPE")]
    pub task_type: String,
    /// The task Payload: JSON is stored as given, anything else as a JSON
    /// string (or use --payload-file)
    #[arg(conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// Read the payload from this file, "-" for standard input (for
    /// payloads too large for an argument, up to the server's message size)
    #[arg(long = "payload-file", value_name = "FILE")]
    pub payload_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub task: TaskSettings,
    /// Sets IDs to depend on, comma sep or pass multiple times
    #[arg(long, value_name = "IDS", action = ArgAction::Append)]
    pub depends: Vec<String>,
    /// Loads results from dependencies before executing task
    #[arg(long)]
    pub load: bool,
    /// Store the payload argument as a JSON string, as the Go ajc does
    #[arg(long = "raw-string")]
    pub raw_string: bool,
    /// Run the task at this time (RFC 3339); its work item reaches the queue then
    #[arg(long, value_name = "TIME", conflicts_with = "run_in")]
    pub at: Option<String>,
    /// Run the task after this long (Go duration, for example 90s or 2h)
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_duration)]
    pub run_in: Option<GoDuration>,
}

/// `ajc task retry`.
#[derive(Args, Debug)]
pub struct TaskRetryArgs {
    /// The Task ID to retry; without it, every task matching the filters
    /// below is retried into its own queue (a dead-letter replay)
    #[arg(required_unless_present_any = ["state", "task_type", "from_queue", "since", "error"])]
    pub id: Option<String>,
    /// The queue to add the task to [default: the task's own queue; the Go
    /// ajc uses DEFAULT]
    #[arg(short = 'q', long, requires = "id")]
    pub queue: Option<String>,
    /// Replay tasks in this state (expired, terminated, unreachable, queue_error, ...)
    #[arg(long, conflicts_with = "id")]
    pub state: Option<String>,
    /// Replay tasks of this type
    #[arg(long = "type", conflicts_with = "id")]
    pub task_type: Option<String>,
    /// Replay tasks last enqueued into this queue
    #[arg(long = "from-queue", value_name = "QUEUE", conflicts_with = "id")]
    pub from_queue: Option<String>,
    /// Replay tasks created at or after this time (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_name = "TIME", conflicts_with = "id")]
    pub since: Option<String>,
    /// Replay tasks whose last error contains this text
    #[arg(long, value_name = "TEXT", conflicts_with = "id")]
    pub error: Option<String>,
    /// List what would be replayed, change nothing
    #[arg(long, conflicts_with = "id")]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task view`.
#[derive(Args, Debug)]
pub struct TaskViewArgs {
    /// The Task ID to view
    pub id: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task delete`.
#[derive(Args, Debug)]
pub struct TaskDeleteArgs {
    /// The Task ID to remove
    pub id: String,
    #[command(flatten)]
    pub force: ForceFlag,
}

/// `ajc task list`.
#[derive(Args, Debug)]
pub struct TaskListArgs {
    /// Limits the number of tasks shown
    #[arg(default_value_t = 200)]
    pub limit: usize,
    /// Only tasks in this state (repeatable or comma separated)
    #[arg(long, value_name = "STATE", action = ArgAction::Append, value_delimiter = ',')]
    pub state: Vec<String>,
    /// Only tasks of this type (repeatable or comma separated)
    #[arg(long = "type", value_name = "TYPE", action = ArgAction::Append, value_delimiter = ',')]
    pub task_type: Vec<String>,
    /// Only tasks last enqueued into this queue
    #[arg(short = 'q', long)]
    pub queue: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task initialize`.
#[derive(Args, Debug)]
pub struct TaskInitArgs {
    /// Use memory as a storage backend
    #[arg(long)]
    pub memory: bool,
    /// Sets how long Tasks are kept in the Task Store
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub retention: GoDuration,
    /// How many replicas to keep in a JetStream cluster
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task configure`.
#[derive(Args, Debug)]
pub struct TaskConfigureArgs {
    /// Sets how long Tasks are kept in the Task Store (0s for forever)
    #[arg(value_parser = parse_duration)]
    pub retention: GoDuration,
    /// How many replicas to keep in a JetStream cluster
    pub replicas: usize,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task watch`.
#[derive(Args, Debug)]
pub struct TaskWatchArgs {
    /// Watch for updates related to a specific task ID
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,
    /// Print each event as a line of JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `ajc task process`.
#[derive(Args, Debug)]
pub struct TaskProcessArgs {
    /// Export traces over OTLP/HTTP to this collector, for example
    /// http://127.0.0.1:4318 (OTEL_SERVICE_NAME and the SDK's sampling
    /// variables apply)
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

/// `ajc task cron …`.
#[derive(Subcommand, Debug)]
pub enum CronCmd {
    /// Adds a Scheduled Task entry
    #[command(visible_aliases = ["new", "a"])]
    Add(CronAddArgs),
    /// Views a Scheduled Task
    #[command(visible_aliases = ["show", "v"])]
    View(CronViewArgs),
    /// Removes a Scheduled Task entry
    #[command(visible_aliases = ["del", "rm"])]
    Delete(CronDeleteArgs),
    /// List Scheduled Tasks
    #[command(visible_alias = "ls")]
    List(CronListArgs),
    /// Runs the Scheduled Task Scheduler
    Scheduler(CronSchedulerArgs),
}

/// `ajc task cron add`.
#[derive(Args, Debug)]
pub struct CronAddArgs {
    /// Unique name for this Scheduled Task
    pub name: String,
    /// Schedule definition
    pub schedule: String,
    /// The task type
    #[arg(value_name = "TYPE")]
    pub task_type: String,
    /// The task Payload: JSON is stored as given, anything else as a JSON string
    #[arg(long)]
    pub payload: Option<String>,
    /// Store the payload as a JSON string, as the Go ajc does
    #[arg(long = "raw-string")]
    pub raw_string: bool,
    /// Write the schedule exactly as the Go ajc does, so Go and Rust
    /// scheduler leaders give its tasks the same payload (Go's encoding:
    /// the JSON string of the payload's base64). Use it when Go schedulers
    /// may lead; without it tasks get the payload unchanged, which only
    /// Rust schedulers honour
    #[arg(long = "go-encoding")]
    pub go_encoding: bool,
    #[command(flatten)]
    pub task: TaskSettings,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task cron view`.
#[derive(Args, Debug)]
pub struct CronViewArgs {
    /// The name of the Schedule to view
    pub name: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `ajc task cron delete`.
#[derive(Args, Debug)]
pub struct CronDeleteArgs {
    /// The name of the Schedule to remove
    pub name: String,
    #[command(flatten)]
    pub force: ForceFlag,
}

/// `ajc task cron list`.
#[derive(Args, Debug)]
pub struct CronListArgs {
    /// Show only task names
    #[arg(long)]
    pub names: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `--monitor PORT` and where it listens.
#[derive(Args, Debug, Clone, Copy)]
pub struct MonitorArgs {
    /// Runs monitoring on the given port
    #[arg(long = "monitor", value_name = "PORT")]
    pub port: Option<u16>,
    /// Address the --monitor listener binds (all interfaces, as Go, by default)
    #[arg(
        long = "monitor-bind",
        value_name = "ADDR",
        env = "AJC_MONITOR_BIND",
        default_value = "0.0.0.0"
    )]
    pub bind: std::net::IpAddr,
}

/// `ajc task cron scheduler`.
#[derive(Args, Debug)]
pub struct CronSchedulerArgs {
    /// A unique name for this scheduler, used for leader election
    #[arg(env = "AJC_SCHEDULER_NAME")]
    pub name: String,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(c.age, GoDuration(-1_000_000_000));
        assert!(Cli::try_parse_from(["ajc", "task", "add", "x", "y", "--deadline", "5x"]).is_err());
        let cli = Cli::try_parse_from(["ajc", "task", "ls", "--sign", "aa"]).unwrap();
        let Command::Tasks(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.sign.as_deref(), Some("aa"));
    }
}
