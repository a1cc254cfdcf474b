//! The worker: pulls work items, applies the delivery gates, runs handlers
//! and records their outcome (reference §5 and §6, with the fixes listed in
//! the crate documentation).

use crate::client::Client;
use crate::error::Error;
use crate::handler::{HandlerResult, Lease, TaskContext};
use crate::metrics;
use crate::pull::{Delivery, Puller};
use crate::queue::{item_subject, WORKERS_CONSUMER};
use crate::retry::{LinearPolicy, RetryPolicy};
use crate::router::Router;
use crate::task::{Task, TaskState};
use async_nats::jetstream;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use futures::{FutureExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long freed slots are gathered into one pull request under load.
const GATHER: Duration = Duration::from_millis(1);
/// Most items asked for in one pull request.
const MAX_BATCH: usize = 256;
/// Most pull requests outstanding at once (the server allows 512 per consumer).
const MAX_PULLS: usize = 32;
/// How long past its max run time an `active` task's worker is given to
/// record the outcome before the task is presumed abandoned.
const STALE_MARGIN: Duration = Duration::from_secs(2);
/// NAK delay while dependencies are not complete (Go: 5 s).
const BLOCKED_DELAY: Duration = Duration::from_secs(5);

/// How many tasks one worker process handles at once unless told
/// otherwise: the default of
/// [`ClientBuilder::concurrency`](crate::ClientBuilder::concurrency) (and so
/// of [`Worker::concurrency`]) and of the `--concurrency` flag of
/// [`main!`](crate::main).
pub const DEFAULT_CONCURRENCY: usize = 10;

/// Processes one queue with a [`Router`]; see [`Client::worker`].
///
/// ```no_run
/// # async fn demo() -> asyncjobs::Result<()> {
/// use asyncjobs::{Client, Router, typed};
/// let client = Client::connect("nats://127.0.0.1:4222").await?;
/// let router = Router::new().handle("greet", typed(|_ctx, name: String| async move {
///     Ok::<_, asyncjobs::HandlerError>(format!("hello {name}"))
/// }))?;
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// client.worker(router).run(shutdown).await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    client: Client,
    router: Arc<Router>,
    concurrency: usize,
    grace: Duration,
    blocked_delay: Duration,
    heartbeat_cap: Option<Duration>,
}

struct Shared {
    client: Client,
    router: Arc<Router>,
    retry: Arc<dyn RetryPolicy>,
    queue: String,
    max_run_time: Duration,
    max_deliver: i64,
    blocked_delay: Duration,
    heartbeat_cap: Option<Duration>,
    /// cancelled when in-flight handlers must stop (grace period over)
    hard_stop: CancellationToken,
}

#[derive(Deserialize)]
struct ProcessItem {
    #[serde(default)]
    job: Option<String>,
}

enum Outcome {
    Done(HandlerResult),
    Panicked(String),
    TimedOut,
    Shutdown,
}

impl Worker {
    pub(crate) fn new(client: Client, router: Router) -> Worker {
        let concurrency = client.concurrency();
        Worker {
            client,
            router: Arc::new(router),
            concurrency,
            grace: Duration::from_secs(30),
            blocked_delay: BLOCKED_DELAY,
            heartbeat_cap: None,
        }
    }

    /// Overrides the client's per-process concurrency.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How long running handlers may take to finish after shutdown is
    /// requested (default 30 s). Handlers still running then are cancelled
    /// and their tasks are handed back to the queue at once.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// How long a task waiting for its dependencies waits before it is
    /// checked again (default 5 s, as Go).
    pub fn dependency_poll_interval(mut self, d: Duration) -> Self {
        self.blocked_delay = d;
        self
    }

    /// Keeps long handlers alive automatically: while a handler runs, the
    /// worker sends `+WPI` every half max run time and extends the handler's
    /// time-out, up to `hard_cap` in total. Off by default (handlers can
    /// call [`TaskContext::mark_in_progress`] themselves).
    pub fn auto_heartbeat(mut self, hard_cap: Duration) -> Self {
        self.heartbeat_cap = Some(hard_cap);
        self
    }

    /// Runs until `shutdown` is cancelled, then stops pulling, lets running
    /// handlers finish within the grace period and returns.
    pub async fn run(self, shutdown: CancellationToken) -> crate::Result<()> {
        let queue = self.client.queue().clone();
        if self.router.is_empty() {
            return Err(Error::Config("the router has no handlers".into()));
        }
        let info = self.client.storage().queue_info(&queue.name).await?;
        if !info.has_consumer {
            return Err(Error::QueueConsumerNotFound(queue.name.clone()));
        }
        let nc = self.client.nats().clone();
        let (puller, mut inbox) = Puller::new(nc, &queue.stream_name(), WORKERS_CONSUMER)
            .await
            .map_err(Error::nats)?;
        let puller = Arc::new(puller);
        let max_run_time = if queue.max_run_time.is_zero() {
            crate::queue::DEFAULT_MAX_RUN_TIME
        } else {
            queue.max_run_time
        };
        let shared = Arc::new(Shared {
            retry: self.client.retry_policy(),
            client: self.client.clone(),
            router: self.router.clone(),
            queue: queue.name.clone(),
            max_run_time,
            max_deliver: queue.max_tries,
            blocked_delay: self.blocked_delay,
            heartbeat_cap: self.heartbeat_cap,
            hard_stop: CancellationToken::new(),
        });
        tracing::info!(queue = %queue.name, concurrency = self.concurrency, "worker started");

        let slots = Arc::new(Semaphore::new(self.concurrency));
        let pulls = Arc::new(Semaphore::new(MAX_PULLS));
        let tracker = TaskTracker::new();
        let backoff = LinearPolicy::ten_seconds();
        let mut failures = 0u64;

        // Items of every pull request arrive on one inbox; each runs under a
        // permit its request reserved.
        let dispatcher = {
            let (shared, puller, tracker, stop) = (
                shared.clone(),
                puller.clone(),
                tracker.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    let msg = tokio::select! {
                        biased;
                        _ = stop.cancelled() => break,
                        m = inbox.next() => match m { Some(m) => m, None => break },
                        _ = tick.tick() => { puller.expire(); continue; }
                    };
                    match puller.take(&msg) {
                        Delivery::Control => {}
                        Delivery::Item(permit) => {
                            let shared = shared.clone();
                            let msg = jetstream::Message {
                                message: msg,
                                context: shared.client.storage().js.clone(),
                            };
                            tracker.spawn(async move {
                                process(&shared, msg).await;
                                drop(permit);
                            });
                        }
                        Delivery::Stray => hand_back(&shared, msg).await,
                    }
                }
                // Shutting down: items already received are handed back at
                // once rather than waiting out their ack wait.
                puller.clear();
                while let Some(Some(msg)) = inbox.next().now_or_never() {
                    if matches!(puller.take(&msg), Delivery::Stray) {
                        hand_back(&shared, msg).await;
                    }
                }
            })
        };

        let batch_target = (self.concurrency / 2).clamp(1, MAX_BATCH);
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => p.expect("semaphore open"),
            };
            // Under load, gather the slots freed within a moment so one pull
            // request asks for several items (idle workers already have their
            // free slots waiting in pull requests, so this adds no latency).
            let mut permits = vec![first];
            let gather_until = tokio::time::Instant::now() + GATHER;
            while permits.len() < batch_target {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => {
                        match tokio::time::timeout_at(gather_until, slots.clone().acquire_owned())
                            .await
                        {
                            Ok(p) => permits.push(p.expect("semaphore open")),
                            Err(_) => break,
                        }
                    }
                }
            }
            let pull = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = pulls.clone().acquire_owned() => p.expect("semaphore open"),
            };
            metrics::poll(&shared.queue, 1);
            match puller.request(permits, pull).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    metrics::poll_error(&shared.queue);
                    failures += 1;
                    let delay = backoff.duration(failures);
                    tracing::warn!(queue = %shared.queue, error = %e, ?delay, "pulling work items failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        let _ = dispatcher.await;

        tracing::info!(queue = %queue.name, grace = ?self.grace, "worker stopping");
        tracker.close();
        if tokio::time::timeout(self.grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(queue = %queue.name, "grace period over, cancelling running handlers");
            shared.hard_stop.cancel();
            tracker.wait().await;
        }
        tracing::info!(queue = %queue.name, "worker stopped");
        Ok(())
    }
}

/// Returns an item nobody will process to the queue at once.
async fn hand_back(shared: &Shared, msg: async_nats::Message) {
    let msg = jetstream::Message {
        message: msg,
        context: shared.client.storage().js.clone(),
    };
    if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(error = %e, "handing back a work item failed; it is redelivered after its ack wait");
    }
}

/// Sends an ack and logs failures (the item is then redelivered, and the
/// state gates make the redelivery harmless).
async fn send_ack(acker: &Acker, kind: AckKind, task: &str) {
    let kind_name = match kind {
        AckKind::Ack => "+ACK",
        AckKind::Nak(_) => "-NAK",
        AckKind::Term => "+TERM",
        AckKind::Progress => "+WPI",
        _ => "ack",
    };
    let res = match kind {
        AckKind::Ack | AckKind::Term => {
            tokio::time::timeout(Duration::from_secs(5), acker.double_ack_with(kind))
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        }
        _ => acker.ack_with(kind).await,
    };
    if let Err(e) = res {
        tracing::warn!(task, ack = kind_name, error = %e, "acknowledging work item failed; it will be redelivered");
    }
}

async fn process(shared: &Shared, msg: async_nats::jetstream::Message) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).max(1) as u64;
    let traceparent = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(crate::storage::TRACEPARENT_HEADER))
        .map(|v| v.as_str().to_string());
    let (msg, acker) = msg.split();
    let item: Option<String> = if msg.payload.is_empty() {
        None
    } else {
        serde_json::from_slice::<ProcessItem>(&msg.payload)
            .ok()
            .and_then(|i| i.job)
            .filter(|j| !j.is_empty())
    };
    let Some(id) = item else {
        metrics::item_corrupt(&shared.queue);
        tracing::error!(
            queue = %shared.queue,
            subject = %msg.subject,
            body = %String::from_utf8_lossy(&msg.payload),
            "{}; terminating it",
            if msg.payload.is_empty() { "invalid queue item received (empty)" } else { "corrupt queue item received" }
        );
        send_ack(&acker, AckKind::Term, "").await;
        return;
    };

    let mut task = match shared.client.storage().load_task(&id).await {
        Ok(t) => match shared.client.storage().settings.keys.verify(&t) {
            Ok(()) => t,
            Err(e) => {
                // Go leaves such items unacknowledged forever (§16.6)
                metrics::task_not_found(&shared.queue);
                tracing::error!(queue = %shared.queue, task = %id, error = %e, "task failed signature verification; terminating it");
                let mut t = t;
                t.state = TaskState::Terminated;
                t.last_err = e.to_string();
                finish(shared, &acker, &mut t, AckKind::Term).await;
                return;
            }
        },
        Err(
            e
            @ (Error::TaskNotFound(_) | Error::InvalidTaskRecord { .. } | Error::TaskIdInvalid(_)),
        ) => {
            metrics::task_not_found(&shared.queue);
            tracing::error!(queue = %shared.queue, task = %id, error = %e, "cannot load the task of a work item; terminating the item");
            send_ack(&acker, AckKind::Term, &id).await;
            return;
        }
        Err(e) => {
            metrics::task_not_found(&shared.queue);
            let delay = LinearPolicy::ten_seconds().duration(delivered);
            tracing::warn!(queue = %shared.queue, task = %id, error = %e, ?delay, "loading task failed: will retry");
            nak(shared, &acker, &id, delivered, delay).await;
            return;
        }
    };

    // ----- state gates -------------------------------------------------------------------
    let now = OffsetDateTime::now_utc();
    match task.state {
        TaskState::Active => {
            // The owner's handler times out after max run time and then saves
            // its outcome; only past that (plus a margin) is the owner presumed dead.
            let lease = shared.max_run_time + STALE_MARGIN;
            let since = task.tried.map(|t| now - t);
            let fresh = since.is_some_and(|s| s < lease);
            if fresh {
                let elapsed = since
                    .and_then(|s| Duration::try_from(s).ok())
                    .unwrap_or_default();
                let remaining = lease.saturating_sub(elapsed);
                tracing::debug!(task = %id, ?remaining, "task already active");
                nak(
                    shared,
                    &acker,
                    &id,
                    delivered,
                    remaining + Duration::from_millis(50),
                )
                .await;
                return;
            }
            tracing::info!(task = %id, "task was active past its run time; its worker is presumed dead, running it again");
        }
        TaskState::Complete | TaskState::Expired | TaskState::Unreachable => {
            tracing::debug!(task = %id, state = %task.state, "failed updating task state, already in desired state");
            send_ack(&acker, AckKind::Ack, &id).await;
            return;
        }
        TaskState::Terminated | TaskState::QueueError => {
            tracing::info!(task = %id, state = %task.state, "work item for a task in a final state; not running it again (use retry)");
            send_ack(&acker, AckKind::Ack, &id).await;
            return;
        }
        _ => {}
    }

    if let Some(deadline) = task.deadline {
        if now > deadline {
            metrics::past_deadline(&shared.queue);
            task.state = TaskState::Expired;
            task.last_err = "past deadline".into();
            finish(shared, &acker, &mut task, AckKind::Term).await;
            return;
        }
    }

    let queue = shared.client.queue();
    if let Some(limit) = queue.effective_max_tries(task.max_tries) {
        if task.tries >= limit {
            metrics::past_max_tries(&shared.queue);
            task.state = TaskState::Expired;
            task.last_err = "exceeded maximum tries".into();
            finish(shared, &acker, &mut task, AckKind::Term).await;
            return;
        }
    }

    if task.state == TaskState::Blocked && !task.dependencies.is_empty() {
        match check_dependencies(shared, &mut task).await {
            Deps::Ready => {}
            Deps::Waiting => {
                nak(shared, &acker, &id, delivered, shared.blocked_delay).await;
                return;
            }
            Deps::Failed(detail) => {
                metrics::dependencies_failed();
                task.state = TaskState::Unreachable;
                task.last_err = format!("task dependencies failed: {detail}");
                task.tried = Some(OffsetDateTime::now_utc());
                finish(shared, &acker, &mut task, AckKind::Term).await;
                return;
            }
        }
    }

    // ----- mark active -------------------------------------------------------------------
    // The try is counted when it starts (Go counts it when it ends), so a
    // task whose handler kills its worker still runs out of tries.
    task.state = TaskState::Active;
    task.tried = Some(OffsetDateTime::now_utc());
    task.last_err.clear();
    task.tries += 1;
    if let Err(e) = shared.client.storage().save_task(&mut task).await {
        let delay = match e {
            Error::ConcurrentUpdate(_) => Duration::from_secs(1),
            _ => LinearPolicy::ten_seconds().duration(delivered),
        };
        tracing::warn!(task = %id, error = %e, "failed updating task state active");
        nak(shared, &acker, &id, delivered, delay).await;
        return;
    }

    // ----- run the handler ---------------------------------------------------------------
    let acker = Arc::new(acker);
    let outcome = run_handler(shared, &task, acker.clone(), traceparent).await;
    let now = OffsetDateTime::now_utc();
    task.tried = Some(now);
    let limit = queue.effective_max_tries(task.max_tries);
    let failure = |task: &mut Task, err: String| {
        task.last_err = err;
        if limit.is_some_and(|l| task.tries >= l) {
            task.state = TaskState::Expired;
            true
        } else {
            task.state = TaskState::Retry;
            false
        }
    };
    match outcome {
        Outcome::Done(Ok(output)) => {
            task.state = TaskState::Complete;
            task.last_err.clear();
            task.result = Some(crate::task::TaskResult {
                payload: output,
                completed: now,
            });
            finish(shared, &acker, &mut task, AckKind::Ack).await;
        }
        Outcome::Done(Err(e)) if e.is_terminate() => {
            task.state = TaskState::Terminated;
            task.last_err = e.message().to_string();
            finish(shared, &acker, &mut task, AckKind::Term).await;
        }
        Outcome::Done(Err(e)) => {
            let expired = failure(&mut task, e.message().to_string());
            retry_or_expire(shared, &acker, &mut task, delivered, expired).await;
        }
        Outcome::Panicked(msg) => {
            let expired = failure(&mut task, format!("handler panicked: {msg}"));
            retry_or_expire(shared, &acker, &mut task, delivered, expired).await;
        }
        Outcome::TimedOut => {
            let expired = failure(
                &mut task,
                format!(
                    "handler exceeded the queue's max run time of {:?}",
                    shared.max_run_time
                ),
            );
            retry_or_expire(shared, &acker, &mut task, delivered, expired).await;
        }
        Outcome::Shutdown => {
            task.state = TaskState::Retry;
            task.last_err = "worker shut down before the handler finished".into();
            if let Err(e) = save_with_retries(shared, &mut task).await {
                tracing::error!(task = %task.id, error = %e, "saving task state failed");
            }
            send_ack(&acker, AckKind::Nak(None), &task.id).await;
        }
    }
}

async fn retry_or_expire(
    shared: &Shared,
    acker: &Acker,
    task: &mut Task,
    delivered: u64,
    expired: bool,
) {
    if expired {
        finish(shared, acker, task, AckKind::Term).await;
        return;
    }
    let delay = shared.retry.duration(delivered);
    if let Err(e) = save_with_retries(shared, task).await {
        tracing::error!(task = %task.id, error = %e, "saving task state retry failed");
    }
    nak(shared, acker, &task.id, delivered, delay).await;
}

/// Saves a final or retry state (discarding it when configured) and sends `ack`.
/// When the save fails the item is left unacknowledged so the task is redelivered.
async fn finish(shared: &Shared, acker: &Acker, task: &mut Task, ack: AckKind) {
    match save_with_retries(shared, task).await {
        Ok(()) | Err(Error::ConcurrentUpdate(_)) => send_ack(acker, ack, &task.id).await,
        Err(e) => {
            tracing::error!(task = %task.id, state = %task.state, error = %e,
                "saving task state failed; leaving the work item for redelivery");
        }
    }
}

/// Saves with a few retries for transient failures (for example a server restart).
async fn save_with_retries(shared: &Shared, task: &mut Task) -> crate::Result<()> {
    let storage = shared.client.storage();
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = if task.state.is_final() {
            storage.save_or_discard(task).await
        } else {
            storage.save_task(task).await
        };
        match res {
            Err(e) if !e.is_permanent() && attempt < 8 => {
                tracing::warn!(task = %task.id, error = %e, attempt, "saving task failed, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            other => return other,
        }
    }
}

/// NAKs with `delay`, unless this delivery is the last the consumer's
/// `max_deliver` allows: then a fresh work item replaces this one so waiting
/// never exhausts deliveries (Go bug §16.7).
async fn nak(shared: &Shared, acker: &Acker, id: &str, delivered: u64, delay: Duration) {
    if shared.max_deliver > 0 && delivered as i64 >= shared.max_deliver - 1 {
        let body = crate::storage::work_item(id);
        let js = &shared.client.storage().js;
        match js
            .publish(item_subject(&shared.queue, id), body.into())
            .await
        {
            Ok(ack) => match ack.await {
                Ok(_) => {
                    tracing::debug!(
                        task = id,
                        delivered,
                        "re-armed work item near max deliveries"
                    );
                    send_ack(acker, AckKind::Ack, id).await;
                    return;
                }
                Err(e) => tracing::warn!(task = id, error = %e, "re-arming work item failed"),
            },
            Err(e) => tracing::warn!(task = id, error = %e, "re-arming work item failed"),
        }
    }
    send_ack(acker, AckKind::Nak(Some(delay)), id).await;
}

enum Deps {
    Ready,
    Waiting,
    Failed(String),
}

async fn check_dependencies(shared: &Shared, task: &mut Task) -> Deps {
    let mut waiting = false;
    let mut results = std::collections::BTreeMap::new();
    for dep in &task.dependencies {
        match shared.client.storage().load_verified(dep).await {
            Ok(d) => match d.state {
                TaskState::Complete => {
                    if task.load_dependencies {
                        results.insert(dep.clone(), d.result.clone());
                    }
                }
                TaskState::Expired
                | TaskState::Terminated
                | TaskState::QueueError
                | TaskState::Unreachable
                | TaskState::Unknown => {
                    let state = if d.state == TaskState::Unknown {
                        "an unknown state".to_string()
                    } else {
                        format!("state {}", d.state)
                    };
                    return Deps::Failed(format!("dependency {dep} is in {state}"));
                }
                _ => waiting = true,
            },
            Err(Error::TaskNotFound(_)) => return Deps::Failed(format!("task not found: {dep}")),
            Err(e @ (Error::Signature(_) | Error::InvalidTaskRecord { .. })) => {
                return Deps::Failed(format!("dependency {dep}: {e}"))
            }
            Err(e) => {
                tracing::warn!(task = %task.id, dependency = %dep, error = %e, "loading dependency failed");
                waiting = true;
            }
        }
    }
    if waiting {
        return Deps::Waiting;
    }
    if task.load_dependencies {
        task.dependency_results = results;
    }
    Deps::Ready
}

async fn run_handler(
    shared: &Shared,
    task: &Task,
    acker: Arc<Acker>,
    traceparent: Option<String>,
) -> Outcome {
    let lease = Arc::new(Lease {
        deadline: std::sync::Mutex::new(tokio::time::Instant::now() + shared.max_run_time),
        max_run_time: shared.max_run_time,
        acker: Some(acker),
        changed: tokio::sync::Notify::new(),
    });
    let cancel = shared.hard_stop.child_token();
    let ctx = TaskContext {
        task: Arc::new(task.clone()),
        cancel: cancel.clone(),
        lease: Some(lease.clone()),
        deadline: Some(OffsetDateTime::now_utc() + shared.max_run_time),
        traceparent: traceparent.clone(),
    };
    metrics::handler_started();
    let started = std::time::Instant::now();
    let trace_id = traceparent
        .as_deref()
        .and_then(|tp| tp.split('-').nth(1))
        .unwrap_or("");
    let span = tracing::info_span!(
        "task",
        id = %task.id,
        r#type = %task.task_type,
        queue = %task.queue,
        try_ = task.tries,
        trace_id = %trace_id,
        traceparent = traceparent.as_deref().unwrap_or(""),
    );
    let fut = tracing::Instrument::instrument(shared.router.dispatch(ctx, task.clone()), span);
    let mut join = tokio::spawn(fut);
    let beat_every = shared.max_run_time / 2;
    let hard_cap = shared
        .heartbeat_cap
        .map(|cap| tokio::time::Instant::now() + cap.max(shared.max_run_time));
    let mut next_beat = tokio::time::Instant::now() + beat_every;
    let outcome = loop {
        let deadline = *lease.deadline.lock().expect("lease lock");
        tokio::select! {
            _ = tokio::time::sleep_until(next_beat), if hard_cap.is_some_and(|cap| next_beat < cap) => {
                // automatic heartbeat: keep the item and the lease alive up to the cap
                next_beat += beat_every;
                if let Some(acker) = &lease.acker {
                    if let Err(e) = acker.ack_with(AckKind::Progress).await {
                        tracing::warn!(task = %task.id, error = %e, "in-progress heartbeat failed");
                        continue;
                    }
                }
                let cap = hard_cap.expect("checked");
                let extended = (tokio::time::Instant::now() + shared.max_run_time).min(cap);
                let mut d = lease.deadline.lock().expect("lease lock");
                if extended > *d {
                    *d = extended;
                }
            }
            res = &mut join => break match res {
                Ok(r) => Outcome::Done(r),
                Err(e) if e.is_panic() => Outcome::Panicked(panic_message(e.into_panic())),
                Err(_) => Outcome::Shutdown,
            },
            _ = lease.changed.notified() => continue,
            _ = tokio::time::sleep_until(deadline) => {
                if *lease.deadline.lock().expect("lease lock") > deadline {
                    continue;
                }
                cancel.cancel();
                join.abort();
                break Outcome::TimedOut;
            }
            _ = shared.hard_stop.cancelled() => {
                join.abort();
                break Outcome::Shutdown;
            }
        }
    };
    let failed = !matches!(outcome, Outcome::Done(Ok(_)));
    metrics::handler_finished(
        &shared.queue,
        &task.task_type,
        started.elapsed().as_secs_f64(),
        failed,
    );
    outcome
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}
