//! Request and response bodies of the API (docs/interfaces.md §2.6), with their
//! OpenAPI schemas. Responses are built as these types, turned into JSON
//! values and written with Go's key order ([`crate::go_json`]); requests are
//! decoded strictly (unknown fields refused).

mod batch;

pub use batch::{
    BatchCancelResponse, BatchCreateRequest, BatchRetryResponse, BatchStatusView, BatchTaskError,
    BatchTaskView, BatchView,
};

use asyncjobs::wire::format_time;
use asyncjobs::{QueueInfo, ScheduledTask, Task, TaskResult, TaskState};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The lifecycle state of a task.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TaskState)]
pub enum TaskStateSchema {
    /// Enqueued, not yet run.
    New,
    /// A handler is running it.
    Active,
    /// Failed; waiting to run again.
    Retry,
    /// Past its deadline or out of tries.
    Expired,
    /// Its handler ended it for good.
    Terminated,
    /// Done.
    Complete,
    /// Its work item could not be written.
    QueueError,
    /// Waiting for its dependencies.
    Blocked,
    /// A dependency failed, so it can never run.
    Unreachable,
}

/// A task as the API shows it (Go's `Task` schema: alphabetical keys,
/// optional ones left out when empty, `payload` base64 or `null`).
#[derive(Serialize, ToSchema)]
#[schema(as = Task)]
pub struct TaskView {
    /// When the task was created (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub created: String,
    /// Time after which it is no longer run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub deadline: Option<String>,
    /// Ids of tasks that must complete first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Results of the dependencies, by task id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dependency_results: BTreeMap<String, TaskResultView>,
    /// The task's KSUID.
    pub id: String,
    /// Its flow-control key (a customer, a tenant): the queue's per-key
    /// limits apply to it (beyond Go: left out when it has none;
    /// docs/processing.md §2.23).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The most recent error.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_err: String,
    /// Whether dependency results are handed to the handler (only when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub load_dependencies: bool,
    /// Most handler invocations (left out when 0, unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub max_tries: i64,
    /// The payload bytes, base64 (`null` when there are none).
    #[schema(format = Byte, value_type = String)]
    pub payload: Option<String>,
    /// How far its handler said it is (beyond Go; absent until reported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressView>,
    /// Its priority, 1 to 9, higher first (beyond Go: left out at 0, the
    /// default; docs/processing.md §2.21).
    #[serde(skip_serializing_if = "is_default_priority")]
    #[schema(minimum = 1, maximum = 9)]
    pub priority: u8,
    /// The queue it was enqueued into.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub queue: String,
    /// The handler's result once complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResultView>,
    /// Hex ed25519 signature.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub signature: String,
    /// Lifecycle state.
    #[schema(value_type = TaskStateSchema)]
    pub state: String,
    /// When a handler last started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub tried: Option<String>,
    /// Handler invocations so far.
    #[serde(skip_serializing_if = "is_zero")]
    pub tries: i64,
    /// When a delayed task is due (beyond Go; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub run_at: Option<String>,
    /// The batch it belongs to, as a member or its callback (beyond Go;
    /// absent otherwise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub batch: String,
    /// The task type.
    #[serde(rename = "type")]
    pub task_type: String,
}

/// A running task's progress, as its handler last reported it.
#[derive(Serialize, ToSchema)]
#[schema(as = TaskProgress)]
pub struct ProgressView {
    /// When it was reported (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub at: String,
    /// What the handler said it is doing (left out when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// 0 to 100.
    pub percent: u8,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_default_priority(p: &u8) -> bool {
    *p == 0
}

/// A handler's result.
#[derive(Serialize, ToSchema)]
#[schema(as = TaskResult)]
pub struct TaskResultView {
    /// When the task completed.
    #[schema(format = DateTime)]
    pub completed: String,
    /// What the handler returned, as JSON.
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl From<&TaskResult> for TaskResultView {
    fn from(r: &TaskResult) -> Self {
        TaskResultView {
            completed: format_time(&r.completed),
            payload: serde_json::from_str(r.payload.get()).unwrap_or(Value::Null),
        }
    }
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        TaskView {
            created: format_time(&t.created),
            deadline: t.deadline.as_ref().map(format_time),
            dependencies: t.dependencies.clone(),
            dependency_results: t
                .dependency_results
                .iter()
                .filter_map(|(id, r)| Some((id.clone(), r.as_ref()?.into())))
                .collect(),
            id: t.id.clone(),
            last_err: t.last_err.clone(),
            load_dependencies: t.load_dependencies,
            max_tries: t.max_tries,
            payload: t.payload.as_ref().map(|p| b64(p)),
            progress: t.progress.as_ref().map(|p| ProgressView {
                at: format_time(&p.at),
                message: p.message.clone(),
                percent: p.percent,
            }),
            priority: t.priority,
            key: t.key.clone(),
            queue: t.queue.clone(),
            result: t.result.as_ref().map(Into::into),
            signature: t.signature.clone(),
            state: t.state.as_str().to_string(),
            tried: t.tried.as_ref().map(format_time),
            tries: t.tries,
            run_at: t.run_at.as_ref().map(format_time),
            batch: t.batch.clone(),
            task_type: t.task_type.clone(),
        }
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `GET /v1/tasks`.
#[derive(Serialize, ToSchema)]
pub struct TaskListResponse {
    /// Number of tasks in `tasks`.
    pub count: usize,
    /// The tasks, in store order.
    pub tasks: Vec<TaskView>,
}

/// `POST /v1/tasks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCreateRequest {
    /// Task type (`^[a-zA-Z0-9_:-]+$`).
    #[serde(rename = "type", default)]
    #[schema(required = true)]
    pub task_type: String,
    /// Must be the server's queue when given (Go ignores it).
    #[serde(default)]
    pub queue: Option<String>,
    /// Any JSON value, stored as Go re-encodes it (sorted keys, numbers as float64).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Option<Value>,
    /// Payload bytes, base64.
    #[serde(default)]
    #[schema(format = Byte)]
    pub payload_base64: Option<String>,
    /// Absolute deadline, RFC 3339.
    #[serde(default)]
    #[schema(format = DateTime, value_type = Option<String>)]
    pub deadline: Option<String>,
    /// Run the task at this time, RFC 3339 (beyond Go: a delayed task; its
    /// work item reaches the queue then).
    #[serde(default)]
    #[schema(format = DateTime, value_type = Option<String>)]
    pub run_at: Option<String>,
    /// Most handler invocations (default 10).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_tries: Option<i64>,
    /// Ids of tasks that must complete first.
    #[serde(default)]
    pub dependencies: Option<Vec<String>>,
    /// Hand the dependencies' results to the handler.
    #[serde(default)]
    pub load_dependencies: Option<bool>,
    /// Beyond Go: the task's priority, 0 (the default) to 9; higher runs
    /// first, oldest first within a priority (docs/processing.md §2.21; Go
    /// workers ignore it). Anything else is refused 400 `priority_invalid`.
    #[serde(default)]
    #[schema(value_type = Option<u8>, minimum = 0, maximum = 9, default = 0)]
    pub priority: Option<Value>,
    /// Beyond Go: the task's flow-control key, for example a customer or a
    /// tenant, 1 to 128 bytes without control characters: the queue's
    /// per-key limits apply to the tasks of one key, and keys take turns
    /// (docs/processing.md §2.23; Go workers ignore it). Anything else is
    /// refused 400 `key_invalid`.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 128, example = "customer-42")]
    pub key: Option<Value>,
    /// Beyond Go: at most one task with this key (docs/processing.md §2.18);
    /// a duplicate is refused 409 `unique_task_exists` naming the existing
    /// task. `{}` keys by type and payload.
    #[serde(default)]
    pub unique: Option<UniqueRequest>,
    /// Refused when set: the server makes the id and creation time a
    /// signature covers, so no client can sign the task (docs/go-differences.md §47); give the
    /// server a signing key instead.
    #[serde(default)]
    pub signature: Option<String>,
}

/// How a created task is unique.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UniqueRequest {
    /// The key (letters, digits, `-_=/` and inner `.`, at most 200 bytes);
    /// default: the type and payload.
    #[serde(default)]
    pub key: Option<String>,
    /// Unique for this long from the first, finished or not (Go duration);
    /// default: while the earlier task is unfinished.
    #[serde(default, rename = "for")]
    pub period: Option<String>,
}

/// `POST /v1/tasks/retry`: ids (Go's form), or beyond Go a `filter` that
/// selects the tasks (a dead-letter replay, each into its own queue).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetryRequest {
    /// Task ids, 1 to 100.
    #[serde(default)]
    #[schema(required = true)]
    #[schema(min_items = 1, max_items = 100)]
    pub ids: Vec<String>,
    /// Instead of ids: every stored task this filter matches.
    #[serde(default)]
    pub filter: Option<ReplayFilter>,
}

/// Which tasks a bulk retry by filter replays.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    /// Tasks in this state (for example `expired`).
    #[serde(default)]
    pub state: Option<String>,
    /// Tasks of this type.
    #[serde(default, rename = "type")]
    pub task_type: Option<String>,
    /// Tasks last enqueued into this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Tasks created at or after this time (RFC 3339).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub created_since: Option<String>,
    /// Tasks whose last error contains this text.
    #[serde(default)]
    pub last_error: Option<String>,
    /// List what would be replayed, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/tasks/cancel` and `POST /v1/tasks/delete` (ours): the tasks
/// a filter matches.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkByFilterRequest {
    /// Which tasks (`dry_run` in it: count and list, change nothing).
    #[serde(default)]
    pub filter: Option<ReplayFilter>,
    /// Instead of a filter: these tasks, 1 to 100 (a selection).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub ids: Vec<String>,
    /// Who cancels, kept in each task's `last_err` (cancel only; default
    /// `the HTTP API`).
    #[serde(default)]
    pub by: Option<String>,
}

/// The answer of a bulk action by filter.
#[derive(Serialize, ToSchema)]
pub struct BulkByFilterResponse {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// How many tasks the filter matched that the action takes.
    pub matched: usize,
    /// In a dry run one `matched` per task; else one per task: `ok`,
    /// `not_found` (gone, or a cancel's task already finished) or `failed`.
    pub results: Vec<BulkRetryResult>,
}

/// One id's outcome of a bulk retry.
#[derive(Serialize, ToSchema)]
pub struct BulkRetryResult {
    /// Why it failed (left out when `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The task id.
    pub id: String,
    /// `ok`, `not_found` or `failed` (`matched` in a dry run by filter).
    pub status: &'static str,
}

/// `POST /v1/tasks/retry` answer: one result per id, in request order.
#[derive(Serialize, ToSchema)]
pub struct BulkRetryResponse {
    /// The outcomes.
    pub results: Vec<BulkRetryResult>,
}

/// `POST /v1/queues`. Durations in Go's syntax (`1m`, `24h`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueCreateRequest {
    /// Queue name.
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    /// How long items may wait (Go duration; absent: forever).
    #[serde(default)]
    #[schema(pattern = r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")]
    pub max_age: Option<String>,
    /// Most waiting items (absent: unlimited).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub max_entries: Option<i64>,
    /// Drop the oldest item when full instead of refusing new ones.
    #[serde(default)]
    pub discard_old: Option<bool>,
    /// Most deliveries of an item (absent: unlimited).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_tries: Option<i64>,
    /// How long a handler may run (Go duration; absent: 1h).
    #[serde(default)]
    #[schema(pattern = r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")]
    pub max_runtime: Option<String>,
    /// Most handlers at once across workers (absent: 100).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_concurrent: Option<i64>,
    /// How long the queue's finished tasks are kept, whichever process
    /// finishes them: `STATE=DURATION` pairs, comma separated (states
    /// `complete`, `expired`, `terminated`, `unreachable`, `queue_error`;
    /// `failed`; `all`), a Go duration of at least `1s` or `forever`, for
    /// example `complete=1h,failed=720h` (absent: each process's own; not in
    /// Go's API).
    #[serde(default)]
    #[schema(example = "complete=1h,failed=720h")]
    pub retention: Option<String>,
    /// At most this many task starts per period across every worker:
    /// `STARTS/PERIOD[,burst=N]`, for example `10/s`, `600/1m` or
    /// `5/500ms,burst=20` (absent: no limit; not in Go's API, Go workers
    /// ignore it; docs/processing.md §2.22).
    #[serde(default)]
    #[schema(example = "10/s")]
    pub rate_limit: Option<String>,
    /// How priorities age: a waiting task counts one priority higher per
    /// this long waited (a Go duration of at least `1s`), or `strict`: a
    /// higher priority always first (absent: strict; not in Go's API;
    /// docs/processing.md §2.21).
    #[serde(default)]
    #[schema(example = "30s")]
    pub priority_aging: Option<String>,
    /// At most this many tasks of one key run at once across every worker,
    /// 1 to 10000 (absent: no limit; not in Go's API; docs/processing.md
    /// §2.23).
    #[serde(default)]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    pub key_concurrency: Option<Value>,
    /// The rate limit of each key, written as `rate_limit` (absent: no
    /// limit; not in Go's API; docs/processing.md §2.23).
    #[serde(default)]
    #[schema(example = "2/s,burst=5")]
    pub key_rate_limit: Option<String>,
}

/// A queue's settings (durations in nanoseconds; −1 is unlimited).
#[derive(Serialize, ToSchema)]
#[schema(as = QueueInfo)]
pub struct QueueView {
    /// Whether the oldest item is dropped when full.
    pub discard_old: bool,
    /// How long items may wait, ns (0: forever).
    pub max_age: i64,
    /// Most handlers at once.
    pub max_concurrent: i64,
    /// Most waiting items (−1: unlimited).
    pub max_entries: i64,
    /// How long a handler may run, ns.
    pub max_runtime: i64,
    /// Most deliveries of an item (−1: unlimited).
    pub max_tries: i64,
    /// Queue name.
    pub name: String,
    /// When this was read.
    #[schema(format = DateTime)]
    pub time: String,
    /// Present while the queue is paused (not in Go's API, which never
    /// shows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<QueuePauseView>,
    /// The queue's own retention of finished tasks, every final state with
    /// its time (`forever`: kept); absent when the queue has none (each
    /// process's own applies). Not in Go's API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// The queue's rate limit (`10/s`, `600/1m0s,burst=20`); absent when it
    /// has none. Not in Go's API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// How its priorities age, ns: a waiting task counts one priority higher
    /// per this long waited; absent when strict. Not in Go's API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_aging: Option<i64>,
    /// Most tasks of one key running at once; absent when unlimited. Not in
    /// Go's API.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10000)]
    pub key_concurrency: Option<u32>,
    /// The rate limit of each key; absent when it has none. Not in Go's API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_rate_limit: Option<String>,
}

/// A queue's pause.
#[derive(Serialize, ToSchema)]
pub struct QueuePauseView {
    /// When it began; absent when another tool paused the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// When it ends by itself; absent when it lasts until resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

/// `POST /v1/queues/{name}/pause`: at most one of `for` and `until`; with
/// neither (or an empty body) the pause lasts until resumed.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct QueuePauseRequest {
    /// Resume by itself after this long (Go duration, for example `30m`).
    #[serde(default, rename = "for")]
    #[schema(pattern = r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")]
    pub for_: Option<String>,
    /// Resume by itself at this time (RFC 3339).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl From<&QueueInfo> for QueueView {
    fn from(q: &QueueInfo) -> Self {
        let unlimited = |n: i64| if n <= 0 { -1 } else { n };
        QueueView {
            discard_old: q.queue.discard_old,
            max_age: nanos(q.queue.max_age),
            max_concurrent: q.queue.max_concurrent,
            max_entries: unlimited(q.queue.max_entries),
            max_runtime: nanos(q.queue.max_run_time),
            max_tries: unlimited(q.queue.max_tries),
            name: q.queue.name.clone(),
            time: format_time(&time::OffsetDateTime::now_utc()),
            paused: q.paused.map(|p| QueuePauseView {
                since: p.since.as_ref().map(format_time),
                until: match p.until {
                    asyncjobs::PauseUntil::Resumed => None,
                    asyncjobs::PauseUntil::Time(t) => Some(format_time(&t)),
                },
            }),
            retention: q.queue.retention.map(|r| r.to_string()),
            rate_limit: q.queue.rate_limit.map(|l| l.to_string()),
            priority_aging: q.queue.priority_aging.map(nanos),
            key_concurrency: q.queue.key_concurrency,
            key_rate_limit: q.queue.key_rate_limit.map(|l| l.to_string()),
        }
    }
}

/// `GET /v1/queues`.
#[derive(Serialize, ToSchema)]
pub struct QueueListResponse {
    /// Every queue, by name.
    pub queues: Vec<QueueView>,
}

/// `POST /v1/schedules`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleCreateRequest {
    /// Schedule name (`^[a-zA-Z0-9_-]+$`).
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    /// Cron expression or `@every`/`@daily`-style descriptor.
    #[serde(default)]
    #[schema(required = true)]
    pub schedule: String,
    /// Queue the tasks go to.
    #[serde(default)]
    #[schema(required = true)]
    pub queue: String,
    /// Type of the tasks made.
    #[serde(default)]
    #[schema(required = true)]
    pub task_type: String,
    /// Any JSON value for the tasks' payload.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Option<Value>,
    /// Payload bytes, base64.
    #[serde(default)]
    #[schema(format = Byte)]
    pub payload_base64: Option<String>,
    /// Deadline of each task after it is made (Go duration, at least 30s).
    #[serde(default)]
    #[schema(pattern = r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")]
    pub deadline_offset: Option<String>,
    /// Most handler invocations of each task (default 10).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_tries: Option<i64>,
}

/// A schedule (deadline offset in nanoseconds, payload base64).
#[derive(Serialize, ToSchema)]
#[schema(as = Schedule)]
pub struct ScheduleView {
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Deadline offset of each task, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// Where the schedule is declared in code (ours; left out for
    /// schedules an operator created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_in: Option<String>,
    /// Most invocations of each task (left out when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub max_tries: i64,
    /// Schedule name.
    pub name: String,
    /// Payload bytes, base64 (left out when empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Byte)]
    pub payload: Option<String>,
    /// Target queue.
    pub queue: String,
    /// Cron expression.
    pub schedule: String,
    /// Type of the tasks made.
    pub task_type: String,
    /// Paused (ours; left out when not, so a schedule's JSON is Go's):
    /// Rust schedulers fire none of its slots.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

impl From<&ScheduledTask> for ScheduleView {
    fn from(s: &ScheduledTask) -> Self {
        ScheduleView {
            created_at: format_time(&s.created_at),
            deadline: (!s.deadline.is_zero()).then(|| nanos(s.deadline)),
            declared_in: s.declared_in.clone(),
            max_tries: s.max_tries,
            name: s.name.clone(),
            payload: s.payload.as_deref().filter(|p| !p.is_empty()).map(b64),
            queue: s.queue.clone(),
            schedule: s.schedule.clone(),
            task_type: s.task_type.clone(),
            paused: s.paused,
        }
    }
}

/// `GET /v1/schedules`.
#[derive(Serialize, ToSchema)]
pub struct ScheduleListResponse {
    /// Every schedule, by name.
    pub schedules: Vec<ScheduleView>,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    pub status: &'static str,
    /// The server's time.
    #[schema(format = DateTime)]
    pub time: String,
}

/// One readiness check.
#[derive(Serialize, ToSchema)]
pub struct CheckStatus {
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// Whether it passed.
    pub ok: bool,
}

/// The readiness checks.
#[derive(Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// The configuration bucket answers.
    pub config: CheckStatus,
    /// The task store answers.
    pub tasks: CheckStatus,
}

/// `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct ReadinessResponse {
    /// Every check.
    pub checks: ReadinessChecks,
    /// All checks passed.
    pub ready: bool,
}

/// `GET /v1/info`.
#[derive(Serialize, ToSchema)]
pub struct Info {
    /// `none` or `mtls`.
    pub auth: &'static str,
    /// Queues stored (left out when they cannot be counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_count: Option<u64>,
    /// Optional features by name (Go's schema has it; neither server sends it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<BTreeMap<String, bool>>,
    /// Tasks stored (left out when they cannot be counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_count: Option<u64>,
    /// The server's version.
    pub version: &'static str,
}

/// A retry policy's schedule.
#[derive(Serialize, ToSchema)]
pub struct RetryPolicy {
    /// Delay before each retry, ns.
    pub intervals: Vec<i64>,
    /// Random fraction each delay may be shortened by.
    pub jitter: f64,
    /// Policy name.
    pub name: &'static str,
}

/// `GET /v1/retry-policies`.
#[derive(Serialize, ToSchema)]
pub struct RetryPoliciesResponse {
    /// The policies, by name.
    pub policies: Vec<RetryPolicy>,
}

/// The error envelope.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The error inside the envelope.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_argument`, `not_found`, ...
    pub code: String,
    /// Field and reason, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
    /// Human-readable message.
    pub message: String,
}

/// Details of an error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetails {
    /// The request field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Machine-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A task's state, for filters.
pub fn parse_state(s: &str) -> Option<TaskState> {
    TaskState::from_name(s)
}
