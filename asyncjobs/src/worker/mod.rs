//! The worker: pulls work items from one queue, applies the delivery
//! gates, runs handlers and records their outcome (docs/processing.md §2 and §3,
//! with the fixes listed in the crate documentation).
//!
//! The data path walks forward through one module per phase:
//! `dispatch` (pull requests sized to free slots, one task per item),
//! `delivery` (one item: load → decide → run → record), `decide` (the
//! decision table: what the item, the record, the gates and the try lead
//! to, as one `Action`; pure), `gates` (the rules it uses: state,
//! deadline, tries, lease, dependencies; pure), `execute` (the handler
//! under its lease), `apply` (the one place an `Action` becomes saves,
//! acks, logs and metrics) and `outcome` (the save and ack primitives).
//! Beside the path: `exhausted` (items the server stopped delivering),
//! `release` (held items moved into the queue when due), `consume` (the
//! loop both read their consumers with),
//! `presence` (the worker's record), `placement` (where a handler runs)
//! and `pull` (pull requests).

mod apply;
mod cancel;
mod consume;
pub(crate) mod decide;
mod delivery;
mod dependants;
pub(crate) mod dispatch;
pub(crate) mod execute;
mod exhausted;
pub(crate) mod gates;
mod keys;
pub(crate) mod lanes;
mod outcome;
mod placement;
pub mod presence;
mod pull;
mod rate;
mod release;
mod rescue;
mod unhandled;
mod watchdog;

use crate::error::{Error, Result};
use crate::queue::{Queue, WORKERS_CONSUMER};
use crate::retry::{LinearPolicy, RetryPolicy};
use crate::router::Router;
use crate::storage::Storage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Default number of tasks one worker runs at once.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// Default time running handlers get to finish after shutdown is requested.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default wait before a task blocked on dependencies is looked at again (Go: 5 s).
pub const DEFAULT_DEPENDENCY_POLL: Duration = Duration::from_secs(5);
pub use crate::storage::{WorkerLease, LEASES_BUCKET};
pub use cancel::DEFAULT_CANCEL_GRACE;
pub use rescue::DEFAULT_RESCUE_AFTER;
pub use unhandled::DEFAULT_UNHANDLED_WAIT;

/// Processes one queue with a [`Router`]; made by
/// [`Client::worker`](crate::Client::worker).
///
/// ```no_run
/// # async fn demo() -> asyncjobs::Result<()> {
/// use asyncjobs::{Client, Router, typed};
/// let client = Client::connect("nats://127.0.0.1:4222").await?;
/// let router = Router::new().handle("greet", typed(|_ctx, name: String| async move {
///     Ok::<_, asyncjobs::HandlerError>(format!("hello {name}"))
/// }))?;
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// client.worker(router).concurrency(20).retry_policy_name("1m")?.run(shutdown).await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    storage: Storage,
    queue: Queue,
    router: Router,
    settings: Settings,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a worker is configured with.
pub(crate) struct Settings {
    pub concurrency: usize,
    pub retry: Arc<dyn RetryPolicy>,
    pub grace: Duration,
    pub blocked_delay: Duration,
    pub heartbeat_cap: Option<Duration>,
    pub scheduled_waits: bool,
    pub reconcile_grace: Option<Duration>,
    /// After how long without a lease renewal a worker's tries are run
    /// again (`rescue.rs`); `None`: no leases.
    pub rescue_after: Option<Duration>,
    /// Where handlers run: `None` on the runtime that runs the worker.
    pub handler_pool: Option<tokio::runtime::Handle>,
    /// How long a task whose type this worker has no handler for waits
    /// for a worker that has one (`unhandled.rs`).
    pub unhandled_wait: Duration,
    /// How long a cancelled task's handler has to return after its token
    /// fires before it is stopped (`cancel.rs`).
    pub cancel_grace: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("concurrency", &self.concurrency)
            .field("grace", &self.grace)
            .field("blocked_delay", &self.blocked_delay)
            .field("heartbeat_cap", &self.heartbeat_cap)
            .field("scheduled_waits", &self.scheduled_waits)
            .field("reconcile_grace", &self.reconcile_grace)
            .field("rescue_after", &self.rescue_after)
            .field("handler_pool", &self.handler_pool.is_some())
            .field("unhandled_wait", &self.unhandled_wait)
            .field("cancel_grace", &self.cancel_grace)
            .finish_non_exhaustive()
    }
}

/// What every task of one worker shares.
pub(crate) struct Shared {
    pub storage: Storage,
    pub router: Router,
    /// The queue's name.
    pub name: String,
    /// This worker as the task state events it causes name it
    /// (`<host>:<pid>`).
    pub label: Arc<str>,
    /// The queue's settings as last read from the server (see
    /// [`Shared::queue`]).
    queue: std::sync::RwLock<Arc<Queue>>,
    pub settings: Settings,
    /// Cancelled when in-flight handlers must stop (grace period over).
    pub hard_stop: CancellationToken,
    /// Where each task type's handlers run (see [`placement`]).
    pub known_types: Arc<placement::KnownTypes>,
    /// Whether the queue holds scheduled items, so waits are scheduled
    /// rather than NAKed (see [`outcome::wait`]).
    scheduled_items: AtomicBool,
    /// The queue's effective run time as last read: running tries follow
    /// it (`execute.rs`).
    pub run_time: tokio::sync::watch::Sender<Duration>,
    /// After the queue's run time was lowered: the higher one, and until
    /// when leases are still judged by it (see [`Shared::judging_queue`]).
    lowered: std::sync::Mutex<Option<(Duration, std::time::Instant)>>,
    /// The queue's pause as last read (docs/storage.md §4.4), so a change
    /// is logged once.
    paused: std::sync::Mutex<Option<crate::queue::QueuePause>>,
    /// Dependencies whose end releases this worker's blocked tasks.
    pub watches: Arc<dependants::Watches>,
    /// The tries this worker holds (its lease, `rescue.rs`).
    pub leases: rescue::Leases,
    /// The task types without a handler seen so far (`unhandled.rs`).
    pub unhandled: unhandled::Unhandled,
    /// The tries a cancel notice can stop (`cancel.rs`).
    pub cancels: cancel::Cancels,
}

impl Shared {
    /// The queue's settings as last read from the server: at start, every
    /// [`QUEUE_REFRESH`] after, and when a handler reaches its run time.
    /// Shared, not copied: every slot reads it on its way to a task.
    pub(crate) fn queue(&self) -> Arc<Queue> {
        self.queue.read().expect("queue lock").clone()
    }

    /// The queue as the delivery gates judge another try's lease by: its
    /// settings, but for [`LOWERED_RUN_TIME_GRACE`] after its run time was
    /// lowered, the higher run time, so a try that started under it (and
    /// stops at the new one within a [`QUEUE_REFRESH`] of the change) is
    /// never taken for abandoned while it may still run.
    /// The queue itself (no copy: this is read for every delivery) unless
    /// such a lowering applies.
    pub(crate) fn judging_queue(&self) -> Arc<Queue> {
        let queue = self.queue();
        let lowered = *self.lowered.lock().expect("lowered lock");
        match lowered {
            Some((higher, until))
                if std::time::Instant::now() < until && higher > queue.effective_max_run_time() =>
            {
                let mut judged = Queue::clone(&queue);
                judged.max_run_time = higher;
                Arc::new(judged)
            }
            _ => queue,
        }
    }

    /// Whether waits are scheduled items (see [`outcome::wait`]).
    pub(crate) fn scheduled_items(&self) -> bool {
        self.scheduled_items.load(Ordering::Relaxed)
    }

    /// Makes the held-items stream ready for this queue's waits when this
    /// worker schedules them; logs what happened. The queue's own stream
    /// and consumer are not changed.
    pub(crate) async fn prepare_held(&self) {
        if !self.settings.scheduled_waits {
            return;
        }
        let enabled = match self.storage.prepare_held().await {
            Ok(true) => true,
            Ok(false) => {
                tracing::info!(queue = %self.name,
                    "nats-server is older than 2.12 (no message schedules): a task waiting for its retry or its dependencies keeps holding one of the queue's concurrency slots");
                false
            }
            Err(e) => {
                tracing::warn!(queue = %self.name, error = %e,
                    "work items cannot be held until due: a task waiting for its retry or its dependencies keeps holding one of the queue's concurrency slots");
                false
            }
        };
        self.scheduled_items.store(enabled, Ordering::Relaxed);
    }

    /// An item an earlier version held in the queue's own stream reached
    /// the worker before it was due: the `WORKERS` consumer lost the filter
    /// that hid such items (for example re-created by a tool that does not
    /// know it). The task runs now; the consumer is left as it is.
    pub(crate) fn legacy_item_delivered(&self, subject: &str) {
        tracing::warn!(queue = %self.name, subject,
            "a work item held by an earlier version was delivered before it was due (the WORKERS consumer lost its filter); running the task now");
    }

    /// Reads the queue's settings from the server; returns the new
    /// settings when they changed. Failures are logged and change nothing.
    pub(crate) async fn refresh_queue(&self) -> Option<Queue> {
        let info = match self.storage.queue_info(&self.name).await {
            Ok(info) if info.has_consumer => info,
            Ok(_) | Err(_) => return None,
        };
        self.note_pause(info.paused);
        let mut current = self.queue.write().expect("queue lock");
        // every setting a worker follows; the flow-control ones too (a rate
        // limit, aging or per-key limit changed alone was not followed)
        let (q, c) = (&info.queue, &**current);
        let changed = q.max_run_time != c.max_run_time
            || q.max_tries != c.max_tries
            || q.max_concurrent != c.max_concurrent
            || q.rate_limit != c.rate_limit
            || q.priority_aging != c.priority_aging
            || q.key_concurrency != c.key_concurrency
            || q.key_rate_limit != c.key_rate_limit;
        if !changed {
            return None;
        }
        tracing::info!(queue = %self.name,
            run_time = ?q.effective_max_run_time(), max_tries = q.max_tries,
            max_concurrent = q.max_concurrent,
            rate_limit = ?q.rate_limit.as_ref().map(ToString::to_string),
            priority_aging = ?q.priority_aging, key_concurrency = ?q.key_concurrency,
            key_rate_limit = ?q.key_rate_limit.as_ref().map(ToString::to_string),
            "queue settings changed; following them");
        let (was, now) = (
            current.effective_max_run_time(),
            info.queue.effective_max_run_time(),
        );
        if now < was {
            *self.lowered.lock().expect("lowered lock") =
                Some((was, std::time::Instant::now() + LOWERED_RUN_TIME_GRACE));
        }
        *current = Arc::new(info.queue.clone());
        drop(current);
        self.run_time.send_replace(now);
        Some(info.queue)
    }
}

impl Shared {
    /// Logs a pause of the queue, or its end, when it differs from the
    /// last one read (at start, and every [`QUEUE_REFRESH`]).
    pub(crate) fn note_pause(&self, now: Option<crate::queue::QueuePause>) {
        let mut was = self.paused.lock().expect("paused lock");
        if *was == now {
            return;
        }
        match &now {
            Some(p) => tracing::warn!(queue = %self.name,
                "the queue is paused {}: this worker starts no task until the pause ends or `ajc queue resume {}` lifts it (tasks running now finish)", p.until, self.name),
            None => {
                tracing::info!(queue = %self.name, "the queue's pause ended; taking tasks again")
            }
        }
        *was = now;
    }

    /// Whether the queue is paused as last read: claims of priority items
    /// stop too (docs/processing.md §2.21), within a [`QUEUE_REFRESH`] of
    /// the pause.
    pub(crate) fn is_paused(&self) -> bool {
        use crate::queue::PauseUntil;
        match &*self.paused.lock().expect("paused lock") {
            None => false,
            Some(p) => match p.until {
                PauseUntil::Resumed => true,
                PauseUntil::Time(t) => t > self.storage.clock().now(),
            },
        }
    }
}

/// The least time since a task's last change before a worker's start-up
/// pass ([`Client::reconcile_tasks`](crate::Client::reconcile_tasks))
/// may judge its work item lost.
pub const RECONCILE_GRACE: Duration = Duration::from_secs(60);

/// The longest a worker waits after starting before its pass over lost
/// work items (it waits its grace when shorter).
pub const RECONCILE_DELAY_MAX: Duration = Duration::from_secs(30);

/// How often a running worker re-reads its queue's settings (run time,
/// tries, concurrency), so a `configure_queue` reaches it within this time.
pub const QUEUE_REFRESH: Duration = Duration::from_secs(10);

/// How long after its queue's run time was lowered a worker still judges
/// other tries' leases by the higher one: two refreshes, so every worker's
/// running tries have stopped at the new run time by then.
pub const LOWERED_RUN_TIME_GRACE: Duration = Duration::from_secs(20);

/// The work item being processed, as delivered.
pub(crate) struct Delivered {
    /// The task id it names.
    pub id: String,
    /// Its `traceparent` header.
    pub traceparent: Option<String>,
    /// How many times the server has delivered it (1 for the first).
    pub delivered: u64,
    /// When the server stored it (its clock; the epoch when unknown).
    pub published: time::OffsetDateTime,
    /// The lane it came from (its subject), kept by the items that replace
    /// it (docs/processing.md §2.21, §2.24).
    pub lane: crate::queue::lane::Lane,
    /// Its task's flow-control key (header `AJ-Key`), kept by the items
    /// that replace it.
    pub key: Option<String>,
}

impl Worker {
    pub(crate) fn new(storage: Storage, queue: Queue, router: Router) -> Worker {
        Worker {
            storage,
            queue,
            router,
            settings: Settings {
                concurrency: DEFAULT_CONCURRENCY,
                retry: Arc::new(LinearPolicy::ten_minutes()),
                grace: DEFAULT_SHUTDOWN_GRACE,
                blocked_delay: DEFAULT_DEPENDENCY_POLL,
                heartbeat_cap: None,
                scheduled_waits: true,
                reconcile_grace: Some(RECONCILE_GRACE),
                rescue_after: Some(DEFAULT_RESCUE_AFTER),
                handler_pool: None,
                unhandled_wait: DEFAULT_UNHANDLED_WAIT,
                cancel_grace: DEFAULT_CANCEL_GRACE,
            },
        }
    }

    /// How many tasks this worker runs at once (default
    /// [`DEFAULT_CONCURRENCY`]; at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// The backoff between tries of a failed task (default: Go's `default`
    /// policy, 1 to 10 minutes with jitter; see [`retry`](crate::retry)).
    pub fn retry_policy(mut self, policy: impl RetryPolicy) -> Self {
        self.settings.retry = Arc::new(policy);
        self
    }

    /// A named retry policy: `default`, `10m`, `1h` or `1m`.
    ///
    /// # Errors
    /// [`Error::UnknownRetryPolicy`] for any other name.
    pub fn retry_policy_name(mut self, name: &str) -> Result<Self> {
        self.settings.retry = crate::retry::policy_by_name(name)?;
        Ok(self)
    }

    /// How long running handlers may take to finish after shutdown is
    /// requested (default 30 s). Handlers still running then are cancelled
    /// and their tasks are handed back to the queue at once.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.settings.grace = d;
        self
    }

    /// How long a task waiting for its dependencies waits before it is
    /// checked again (default 5 s, as Go).
    pub fn dependency_poll_interval(mut self, d: Duration) -> Self {
        self.settings.blocked_delay = d;
        self
    }

    /// Whether a task waiting for its retry time or its dependencies
    /// waits as a JetStream-scheduled work item (default `true`).
    ///
    /// Scheduled, the wait holds none of the queue's `max_concurrent`
    /// slots (the consumer's `max_ack_pending`), so new work starts at
    /// once however many tasks wait. This needs nats-server 2.12 or later
    /// and changes the queue when the worker starts: its stream gains the
    /// subject `CHORIA_AJ.S.<queue>.>` and `allow_msg_schedules`, and its
    /// `WORKERS` consumer is filtered to `CHORIA_AJ.Q.<queue>.>`. Go
    /// workers on the queue keep working unchanged (they see ordinary work
    /// items when they are due); servers older than 2.12 can no longer
    /// load the stream. With `false`, or against an older server, waits are
    /// NAKs with delay (Go's behaviour: each waiting task holds a slot).
    pub fn scheduled_waits(mut self, on: bool) -> Self {
        self.settings.scheduled_waits = on;
        self
    }

    /// How soon the tries of a worker that died (killed, its host gone, cut
    /// off from the server) run again: each worker renews a lease naming
    /// its tries every third of `after`; one not renewed for `after` (by
    /// the server's clock) is presumed dead and its tries still `active`
    /// are saved `retry` and queued again by any other Rust worker. A
    /// worker that cannot renew its lease for two thirds of `after` stops
    /// its own tries first, so two runs of a task never overlap. Default
    /// `Some(`[`DEFAULT_RESCUE_AFTER`]`)` (30 s), whatever the queue's run
    /// time; `None` writes no lease (tries of a crashed worker then wait
    /// for the queue's run time, as Go's do). See docs/processing.md §2.14.
    pub fn crash_rescue(mut self, after: Option<Duration>) -> Self {
        self.settings.rescue_after = after.map(|a| a.max(Duration::from_secs(3)));
        self
    }

    /// The start-up pass over the queue's tasks whose work item was lost
    /// ([`Client::reconcile_tasks`](crate::Client::reconcile_tasks)):
    /// tasks unchanged for at least `grace` (and twice the queue's lease)
    /// are judged, once, that long after the start (at most
    /// [`RECONCILE_DELAY_MAX`]). Default `Some(`[`RECONCILE_GRACE`]`)`; `None` turns the
    /// pass off (it reads every task record once, in the background).
    pub fn reconcile_at_start(mut self, grace: Option<Duration>) -> Self {
        self.settings.reconcile_grace = grace;
        self
    }

    /// Gives handlers a pool to run on: `pool`, a multi-thread runtime. A
    /// task type's handlers run on the pool, each a task of its own, until
    /// its polls have shown that it does not hold its thread (64 polls in
    /// a row under 1 ms each); then on the worker's own thread, with no
    /// hand-offs. A type whose poll blocks its thread for 100 ms (blocking
    /// code in an `async fn`) gets a thread of its own per task from then
    /// on. So a handler that blocks holds up neither the worker's pulls,
    /// saves, acks, leases and run-time deadlines nor, while another pool
    /// thread is free, other handlers (docs/processing.md §2.7). Without a
    /// pool, handlers run on the worker's thread (blocking types on threads
    /// of their own). [`WorkerThreads`](crate::program::WorkerThreads)
    /// pairs a current-thread runtime for the worker with such a pool, as
    /// `asyncjobs::main!` does.
    pub fn handler_pool(mut self, pool: tokio::runtime::Handle) -> Self {
        self.settings.handler_pool = Some(pool);
        self
    }

    /// How long a task whose type this worker has no handler for waits for
    /// a worker of the queue that has one (default
    /// [`DEFAULT_UNHANDLED_WAIT`], 1 hour), counted from when it was last
    /// ready to run (its creation, due time or last try).
    ///
    /// Such a task is not tried here: it is not set `active`, its tries are
    /// not spent, and its item is handed back (waits from 1 s growing to
    /// 1 minute), so another worker of the queue that has the handler, or
    /// one deployed later, runs it. Its `last_err` says what it waits for.
    /// The first task of each such type is logged at WARN, with the types
    /// this worker handles and the closest of them (`did you mean`); later
    /// ones at DEBUG. A task with a deadline waits until its deadline
    /// instead. When the wait passes and no live Rust worker of the queue
    /// announces the type (its presence record), the task ends `expired`:
    /// `no worker of queue Q handles task type "x" (waited 1h0m0s; this
    /// worker handles: …)`. See docs/processing.md §2.6.
    pub fn unhandled_wait(mut self, wait: Duration) -> Self {
        self.settings.unhandled_wait = wait;
        self
    }

    /// How long the handler of a task cancelled while it runs
    /// ([`Client::cancel_task`](crate::Client::cancel_task)) has to return
    /// after its [cancellation token](crate::TaskContext::cancelled) fires
    /// (default [`DEFAULT_CANCEL_GRACE`], 10 s); then it is stopped (its
    /// future dropped; an external command's process group killed). Zero
    /// stops it at once. What the try returns is not kept either way: the
    /// task is already saved `terminated` (docs/processing.md §2.16).
    ///
    /// ```no_run
    /// # async fn demo(client: asyncjobs::Client, router: asyncjobs::Router) -> asyncjobs::Result<()> {
    /// use std::time::Duration;
    /// let worker = client.worker(router).cancel_grace(Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.settings.cancel_grace = grace;
        self
    }

    /// Keeps long handlers alive automatically: while a handler runs, the
    /// worker sends `+WPI` every half max run time and extends the handler's
    /// time-out, up to `hard_cap` in total. Off by default (handlers can
    /// call [`TaskContext::mark_in_progress`](crate::TaskContext::mark_in_progress) themselves).
    pub fn auto_heartbeat(mut self, hard_cap: Duration) -> Self {
        self.settings.heartbeat_cap = Some(hard_cap);
        self
    }

    /// Runs until `shutdown` is cancelled, then stops pulling, lets running
    /// handlers finish within the grace period and returns.
    ///
    /// # Errors
    /// [`Error::Config`] when the router has no handlers,
    /// [`Error::QueueNotFound`] / [`Error::QueueConsumerNotFound`] when the
    /// queue or its `WORKERS` consumer is missing, [`Error::Nats`] when the
    /// pull subscription cannot be made.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let Worker {
            storage,
            queue,
            router,
            settings,
        } = self;
        if router.is_empty() {
            return Err(Error::Config("the router has no handlers".into()));
        }
        let info = storage.queue_info(&queue.name).await?;
        if !info.has_consumer {
            return Err(Error::QueueConsumerNotFound(queue.name.clone()));
        }
        // the settings as the server has them now, not as the client saw them
        let (queue, paused) = (info.queue, info.paused);
        storage.warn_if_kept_forever(queue.retention).await;
        let run_time = queue.effective_max_run_time();
        let (puller, inbox) = pull::Puller::new(
            storage.nats().clone(),
            storage.api(),
            &queue.stream_name(),
            WORKERS_CONSUMER,
        )
        .await
        .map_err(|e| crate::error::nats("subscribing to the pull inbox", e))?;
        let grace = settings.grace;
        tracing::info!(queue = %queue.name, concurrency = settings.concurrency, "worker started");
        let watches = Arc::new(dependants::Watches::new(
            storage.clone(),
            queue.name.clone(),
            settings.blocked_delay,
        ));
        let worker_id = crate::task::new_id();
        let leases = rescue::Leases::new(worker_id.clone(), settings.rescue_after);
        let shared = Arc::new(Shared {
            leases,
            watches,
            storage,
            router,
            name: queue.name.clone(),
            label: format!("{}:{}", presence::hostname(), std::process::id()).into(),
            queue: std::sync::RwLock::new(Arc::new(queue)),
            settings,
            hard_stop: CancellationToken::new(),
            known_types: Arc::default(),
            scheduled_items: AtomicBool::new(false),
            run_time: tokio::sync::watch::channel(run_time).0,
            lowered: std::sync::Mutex::new(None),
            paused: std::sync::Mutex::new(None),
            unhandled: unhandled::Unhandled::default(),
            cancels: cancel::Cancels::default(),
        });
        shared.note_pause(paused);
        shared.prepare_held().await;
        if let Err(e) = shared.storage.prepare_exhausted(&shared.name).await {
            tracing::warn!(queue = %shared.name, error = %e,
                "cannot keep max-deliveries advisories: a task whose work item runs out of deliveries while no try records an outcome stays as it is");
        }
        let reaper_stop = CancellationToken::new();
        let reaper = tokio::spawn(exhausted::run(shared.clone(), reaper_stop.clone()));
        let releaser = tokio::spawn(release::run(shared.clone(), reaper_stop.clone()));
        // the lease outlives the pull loop: it covers tries finishing in
        // the grace period
        let rescuer_stop = CancellationToken::new();
        let rescuer = tokio::spawn(rescue::run(shared.clone(), rescuer_stop.clone()));
        // listening before the first pull: a try started is a try a cancel stops
        let canceller = cancel::listen(shared.clone(), rescuer_stop.clone()).await;
        let presence = tokio::spawn(presence::run(
            worker_id,
            shared.storage.clone(),
            shared.name.clone(),
            shared.settings.concurrency,
            shared.router.task_types().map(str::to_string).collect(),
            reaper_stop.clone(),
        ));
        // one pass over the queue's tasks whose item was lost while no
        // worker watched (queue limits, purges, deletions)
        let reconcile = tokio::spawn({
            let shared = shared.clone();
            let stop = reaper_stop.clone();
            async move {
                let Some(grace) = shared.settings.reconcile_grace else {
                    return;
                };
                let grace = grace.max(gates::lease(&shared.queue()) * 2);
                // tasks lost before the start are old by then; a worker's
                // start is not slowed by reading every record
                let delay = grace.min(RECONCILE_DELAY_MAX);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                tokio::select! {
                    _ = stop.cancelled() => {}
                    res = shared.storage.reconcile_tasks(Some(&shared.name), grace) => match res {
                        Ok(ended) if !ended.is_empty() => {
                            tracing::warn!(queue = %shared.name, tasks = ended.len(), "expired tasks whose work item was lost");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(queue = %shared.name, error = %e, "looking for tasks whose work item was lost failed"),
                    }
                }
            }
        });
        // outlives the pull loop: claimed items finishing in the grace
        // period are acknowledged through it
        let lanes = lanes::start(shared.clone(), rescuer_stop.clone()).await;
        let tracker = TaskTracker::new();
        dispatch::run(
            shared.clone(),
            puller,
            inbox,
            tracker.clone(),
            shutdown,
            lanes.as_ref().map(|(l, _)| l.clone()),
        )
        .await;
        reaper_stop.cancel();
        shared.watches.stop_all();
        let _ = reaper.await;
        let _ = releaser.await;
        let _ = reconcile.await;
        let _ = presence.await;

        let queue = &shared.name;
        tracing::info!(queue = %queue, ?grace, "worker stopping");
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(queue = %queue, "grace period over, cancelling running handlers");
            shared.hard_stop.cancel();
            tracker.wait().await;
        }
        rescuer_stop.cancel();
        let _ = rescuer.await;
        if let Some((_, follower)) = lanes {
            let _ = follower.await;
        }
        if let Some(canceller) = canceller {
            let _ = canceller.await;
        }
        tracing::info!(queue = %queue, "worker stopped");
        Ok(())
    }
}
