//! Lifecycle events published on core NATS (docs/storage.md §8.5).

use crate::error::{Error, Result};
use crate::task::{Task, TaskState};
use crate::wire::{self, duration_go, null_default, time_go};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

mod follow;

/// Type string of [`TaskStateChangeEvent`].
pub const TASK_STATE_EVENT_TYPE: &str = "io.choria.asyncjobs.v1.task_state";
/// Type string of [`LeaderElectedEvent`].
pub const LEADER_ELECTED_EVENT_TYPE: &str = "io.choria.asyncjobs.v1.leader_elected";
/// Subject prefix of task state events; the task id follows.
pub const TASK_STATE_SUBJECT_PREFIX: &str = "CHORIA_AJ.E.task_state.";
/// Wildcard subject for every lifecycle event.
pub const ALL_EVENTS_SUBJECT: &str = "CHORIA_AJ.E.>";

/// Published after every task save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStateChangeEvent {
    /// Unique event id (KSUID).
    #[serde(default, deserialize_with = "null_default")]
    pub event_id: String,
    /// Always [`TASK_STATE_EVENT_TYPE`].
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub event_type: String,
    /// The time of the event id (whole seconds).
    #[serde(with = "time_go", default = "wire::zero_time")]
    pub timestamp: OffsetDateTime,
    /// The task.
    #[serde(default, deserialize_with = "null_default")]
    pub task_id: String,
    /// State after the change.
    #[serde(default, deserialize_with = "null_default")]
    pub state: TaskState,
    /// Tries so far.
    #[serde(default, deserialize_with = "null_default")]
    pub tries: i64,
    /// The task's queue.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub queue: String,
    /// The task's type.
    #[serde(default, deserialize_with = "null_default")]
    pub task_type: String,
    /// The task's last error.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub last_error: String,
    /// Time since the task was created.
    #[serde(
        with = "duration_go",
        default,
        skip_serializing_if = "Duration::is_zero"
    )]
    pub task_age: Duration,
    /// The task's progress, as its handler last reported it (ours; Go's
    /// events have none; docs/processing.md §2.17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::task::TaskProgress>,
    /// The worker that made the change while processing the task's item,
    /// as `<host>:<pid>` (ours; Go's events have none, and an event about
    /// a change made elsewhere, an enqueue or a cancel, has none either;
    /// docs/processing.md §2.17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

tokio::task_local! {
    /// The worker processing an item, and the item's task, for the events
    /// its saves publish ([`in_try`]).
    static PROCESSING: (std::sync::Arc<str>, String);
}

/// Runs `f`, the processing of task `task`'s item by `worker`
/// (`<host>:<pid>`): the state events of that task published meanwhile
/// name the worker ([`TaskStateChangeEvent::worker`]); those of other
/// tasks (a handler's enqueue or cancel) do not.
///
/// Not an `async fn`: that would hold `f` beside the scope wrapping it,
/// doubling the size of every delivery's future (docs/architecture.md
/// §3, "The size of a delivery's future").
pub(crate) fn in_try<F: std::future::Future>(
    worker: std::sync::Arc<str>,
    task: String,
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    PROCESSING.scope((worker, task), f)
}

/// The worker processing `task`'s item here, if any ([`in_try`]).
fn processed_by(task: &str) -> Option<String> {
    PROCESSING
        .try_with(|(worker, id)| (id == task).then(|| worker.to_string()))
        .ok()
        .flatten()
}

/// Published by a scheduler when it wins an election.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderElectedEvent {
    /// Unique event id (KSUID).
    #[serde(default, deserialize_with = "null_default")]
    pub event_id: String,
    /// Always [`LEADER_ELECTED_EVENT_TYPE`].
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub event_type: String,
    /// The time of the event id (whole seconds).
    #[serde(with = "time_go", default = "wire::zero_time")]
    pub timestamp: OffsetDateTime,
    /// The winner's name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// The component (`task_scheduler`).
    #[serde(default, deserialize_with = "null_default")]
    pub component: String,
}

/// Any lifecycle event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A task changed state.
    TaskState(TaskStateChangeEvent),
    /// A leader was elected.
    LeaderElected(LeaderElectedEvent),
}

/// Parses an event, rejecting unknown types with `unknown event type: <type>`.
pub fn parse_event(data: &[u8]) -> Result<Event> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "type", default)]
        event_type: Option<String>,
    }
    let probe: Probe =
        serde_json::from_slice(data).map_err(|e| Error::json("decoding event", e))?;
    match probe.event_type.as_deref().unwrap_or("") {
        TASK_STATE_EVENT_TYPE => Ok(Event::TaskState(
            serde_json::from_slice(data)
                .map_err(|e| Error::json("decoding task state event", e))?,
        )),
        LEADER_ELECTED_EVENT_TYPE => Ok(Event::LeaderElected(
            serde_json::from_slice(data).map_err(|e| Error::json("decoding leader event", e))?,
        )),
        other => Err(Error::Config(format!("unknown event type: {other}"))),
    }
}

impl TaskStateChangeEvent {
    /// The event for the task's current state.
    pub fn for_task(task: &Task) -> TaskStateChangeEvent {
        let (event_id, timestamp) = crate::ksuid::new();
        TaskStateChangeEvent {
            event_id,
            event_type: TASK_STATE_EVENT_TYPE.to_string(),
            timestamp,
            task_id: task.id.clone(),
            state: task.state,
            tries: task.tries,
            queue: task.queue.clone(),
            task_type: task.task_type.clone(),
            last_error: task.last_err.clone(),
            task_age: task.age().unwrap_or_default(),
            progress: task.progress.clone(),
            worker: processed_by(&task.id),
        }
    }

    /// The subject the event is published on.
    pub fn subject(&self) -> String {
        format!("{TASK_STATE_SUBJECT_PREFIX}{}", self.task_id)
    }
}

/// Subject prefix of leader election events; the component follows.
pub const LEADER_ELECTION_SUBJECT_PREFIX: &str = "CHORIA_AJ.E.leader_election.";

impl LeaderElectedEvent {
    /// The event announcing that `name` won the election for `component`
    /// (a fresh KSUID event id; the timestamp is the id's time).
    pub fn new(name: impl Into<String>, component: impl Into<String>) -> LeaderElectedEvent {
        let (event_id, timestamp) = crate::ksuid::new();
        LeaderElectedEvent {
            event_id,
            event_type: LEADER_ELECTED_EVENT_TYPE.to_string(),
            timestamp,
            name: name.into(),
            component: component.into(),
        }
    }

    /// The subject the event is published on.
    pub fn subject(&self) -> String {
        format!("{LEADER_ELECTION_SUBJECT_PREFIX}{}", self.component)
    }
}

/// Subscribes to lifecycle events: every event, or only those of one task.
///
/// Events are core NATS messages (best effort, not stored): the stream sees
/// what is published after it subscribed. Messages that do not parse are
/// yielded as errors naming the cause (and logged at WARN, throttled, and
/// counted in `background_error_total{loop="events"}`). The stream does not
/// end: what the server does to the subscription is handled as [`follow`]
/// says.
pub async fn watch(
    nc: &async_nats::Client,
    task_id: Option<&str>,
) -> Result<impl futures::Stream<Item = Result<Event>> + Send + 'static> {
    use futures::StreamExt;
    Ok(follow(nc, task_id).await?.map(|m| {
        let parsed = parse_event(&m.payload);
        if let Err(e) = &parsed {
            static UNREADABLE: crate::throttle::Throttle =
                crate::throttle::Throttle::new(Duration::from_secs(10));
            crate::throttle::warn_throttled!(UNREADABLE, subject = %m.subject, error = %e,
                "a message on an event subject is not an event");
            crate::metrics::background_error(follow::LOOP);
        }
        parsed
    }))
}

/// Subscribes to lifecycle events and yields the messages as published
/// (for tools that print them, like `ajc task watch`): every event, or only
/// those of one task.
///
/// Fails when the first subscription cannot be made. After that the stream
/// does not end: a lost connection is logged at WARN (events published
/// until it is back are missed) and its return at INFO; a subscription the
/// server ends is made again, at most once a second, backing off to 30 s
/// while the server refuses it. Each is counted in
/// `background_error_total{loop="events"}` (docs/processing.md §8).
pub async fn follow(
    nc: &async_nats::Client,
    task_id: Option<&str>,
) -> Result<impl futures::Stream<Item = async_nats::Message> + Send + 'static> {
    let subject = match task_id {
        Some(id) => format!("{TASK_STATE_SUBJECT_PREFIX}{id}"),
        None => ALL_EVENTS_SUBJECT.to_string(),
    };
    let context = || format!("subscribing to {subject}");
    let sub = nc
        .subscribe(subject.clone())
        .await
        .map_err(|e| crate::error::nats(context(), e))?;
    nc.flush()
        .await
        .map_err(|e| crate::error::nats(context(), e))?;
    let follower = follow::Follower::new(nc.clone(), subject, sub);
    // boxed, so the stream is Unpin as a subscription is
    Ok(Box::pin(futures::stream::unfold(
        follower,
        |mut f| async move {
            let m = f.next().await;
            Some((m, f))
        },
    )))
}
