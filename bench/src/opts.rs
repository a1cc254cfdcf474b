//! The benchmark's command line.

use clap::Parser;

// no doc comment: clap would take it as the long help
#[derive(Parser, Debug, Clone)]
#[command(about = "Throughput, latency and memory of asyncjobs beside raw JetStream")]
pub struct Opts {
    /// Use this NATS server instead of starting one (tests purge what they create).
    #[arg(long)]
    pub server: Option<String>,
    /// Memory storage instead of file storage.
    #[arg(long)]
    pub memory: bool,
    /// Tasks per throughput measurement.
    #[arg(long, default_value_t = 5000)]
    pub tasks: usize,
    /// Repetitions of every measurement (min/median/max are reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Tasks per second for the latency measurement.
    #[arg(long, default_value_t = 200)]
    pub latency_rate: u64,
    /// Tasks for the latency measurement.
    #[arg(long, default_value_t = 400)]
    pub latency_tasks: usize,
    /// Tasks held in flight for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    pub inflight: usize,
    /// Handler threads of the framework's worker runtime (default: the
    /// CPU cores, as `asyncjobs::main!`; 0: handlers on the worker's thread).
    #[arg(long)]
    pub handler_threads: Option<usize>,
    /// Framework workers without scheduled waits (their `WORKERS` consumer
    /// stays unfiltered; see the backlog measurement).
    #[arg(long)]
    pub no_scheduled_waits: bool,
    /// Milliseconds of CPU work per task of the CPU-bound handler measurement.
    #[arg(long, default_value_t = 2)]
    pub cpu_work_ms: u64,
    /// Tasks of the CPU-bound handler measurement (0 skips it).
    #[arg(long, default_value_t = 2000)]
    pub cpu_tasks: usize,
    /// Tasks queued for the backlog measurement (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    pub backlog: usize,
    /// Tasks stored for the listing measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    pub list_tasks: usize,
    /// Stored-task counts of the dashboard measurement, ascending, comma
    /// separated (for example `100000,1000000`; none skips it).
    #[arg(long, value_delimiter = ',')]
    pub dashboard_tasks: Vec<usize>,
    /// Links of the dependency-chain measurement: each task depends on
    /// the one before, all enqueued up front (0 skips it).
    #[arg(long, default_value_t = 1000)]
    pub chain: usize,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
    /// Only one processing measurement, repeated `--reps` times, for a
    /// profiler: `fw-enqueue-batch`, `fw-c10`, `fw-c100`, `fw-e2e`, or the
    /// same with `best-` (prints tasks/s, and client and server CPU µs per
    /// task for the processing ones); `dashboard` runs only
    /// `--dashboard-tasks`, `sizes` only `--sizes`, `cluster` only the
    /// cluster measurement (see `--cluster`); `flow`, `workers`
    /// (`--worker-procs`, 1,2,4 when none given) and `features`
    /// (`--features`) run only that.
    #[arg(long)]
    pub only: Option<String>,
    /// Also measure flow control (priorities, fairness, rate limits);
    /// `--only flow` measures only that.
    #[arg(long)]
    pub flow: bool,
    /// Priority-0 tasks queued ahead of the priority task (`--flow`).
    #[arg(long, default_value_t = 50_000)]
    pub flow_backlog: usize,
    /// Tenant A's tasks queued ahead of tenant B's 10 (`--flow`).
    #[arg(long, default_value_t = 100_000)]
    pub flow_tenant: usize,
    /// Starts per second of the rate-limit measurement (`--flow`).
    #[arg(long, default_value_t = 200)]
    pub flow_rate: u32,
    /// Seconds the rate-limit measurement counts starts (`--flow`).
    #[arg(long, default_value_t = 60)]
    pub flow_rate_secs: u64,
    /// Task counts of the size measurement, comma separated (for example
    /// `5000,20000,100000`; none skips it): the framework beside the best
    /// raw client at each count, `--size-reps` times.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Repetitions of each `--sizes` count.
    #[arg(long, default_value_t = 3)]
    pub size_reps: usize,
    /// Also measure the framework beside the best raw client on a 3-node
    /// nats-server cluster it starts on loopback, every stream with 3
    /// replicas (`--tasks`, `--reps`); `--only cluster` measures only that.
    #[arg(long)]
    pub cluster: bool,
    /// The Go implementation's benchmark program (`BIN --url URL --queue
    /// NAME --tasks N --mode enqueue-seq|process|e2e [--concurrency C]
    /// [--replicas R]`, printing one JSON line): a Go column beside the
    /// framework's enqueue, process and enqueue+process rows, run in the
    /// same repetitions.
    #[arg(long)]
    pub go: Option<std::path::PathBuf>,
    /// Worker process counts, comma separated (for example `1,2,4`; none
    /// skips it): `--tasks` queued tasks processed at a total concurrency
    /// of 100 split over N worker processes, beside the best raw client
    /// split the same way, with the processes' CPU per task.
    #[arg(long, value_delimiter = ',')]
    pub worker_procs: Vec<usize>,
    /// Also measure the cost of each feature (priorities, a rate limit,
    /// keys, unique keys, progress, batches) when used: processing at
    /// concurrency 100 beside the plain queue, and the enqueue where the
    /// cost is.
    #[arg(long)]
    pub features: bool,
    /// Internal: run a worker process for the memory measurement.
    #[arg(long, hide = true)]
    pub child_worker: Option<String>,
}
