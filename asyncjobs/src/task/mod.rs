//! Tasks: the unit of work, stored by id in the `CHORIA_AJ_TASKS` stream.

mod builder;
pub mod cancel;
pub mod progress;
pub mod retention;
pub(crate) mod state;
pub mod unique;

pub use builder::TaskBuilder;
pub use cancel::Cancelled;
pub use progress::TaskProgress;
pub use retention::Retention;
pub use state::TaskState;
pub use unique::Unique;

use crate::error::{Error, Result};
use crate::wire::{self, bytes_go, null_default, opt_time_go, time_go};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Default per-task maximum number of tries (Go `DefaultMaxTries`).
pub const DEFAULT_MAX_TRIES: i64 = 10;

/// The stored outcome of a successful task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// The handler's return value as JSON (`null` when it returned nothing).
    #[serde(alias = "Payload", default = "json_null")]
    pub payload: Box<RawValue>,
    /// When the task completed.
    #[serde(
        with = "time_go",
        alias = "Completed",
        alias = "CompletedAt",
        default = "wire::zero_time"
    )]
    pub completed: OffsetDateTime,
}

fn json_null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

impl TaskResult {
    /// Decodes the result as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(self.payload.get()).map_err(|e| {
            Error::json(
                format!("decoding task result as {}", std::any::type_name::<T>()),
                e,
            )
        })
    }
}

/// A task: its type, payload, options and current state.
///
/// Serialized exactly like the Go `asyncjobs.Task` (docs/storage.md §8.1): same keys,
/// same order, same `omitempty` rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Task {
    /// Unique id (a KSUID unless set explicitly).
    #[serde(default, deserialize_with = "null_default", alias = "ID", alias = "Id")]
    pub id: String,
    /// The routing key handlers are chosen by.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "null_default",
        alias = "Type"
    )]
    pub task_type: String,
    /// The queue the task was last enqueued into.
    #[serde(default, deserialize_with = "null_default", alias = "Queue")]
    pub queue: String,
    /// Ids of tasks that must complete before this one runs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty",
        alias = "Dependencies"
    )]
    pub dependencies: Vec<String>,
    /// Results of the dependencies, when [`TaskBuilder::load_dependency_results`] was set.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty",
        alias = "DependencyResults"
    )]
    pub dependency_results: BTreeMap<String, Option<TaskResult>>,
    /// Whether dependency results are loaded into the task before it runs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "std::ops::Not::not",
        alias = "LoadDependencies"
    )]
    pub load_dependencies: bool,
    /// Payload bytes (by default the JSON encoding of the value given).
    #[serde(with = "bytes_go", default, alias = "Payload")]
    pub payload: Option<Vec<u8>>,
    /// Latest time a handler may be started.
    #[serde(
        with = "opt_time_go",
        default,
        skip_serializing_if = "Option::is_none",
        alias = "Deadline"
    )]
    pub deadline: Option<OffsetDateTime>,
    /// When a delayed task is due: its work item reaches the queue then
    /// (a JetStream message schedule). Not part of Go's record; Go's
    /// decoder ignores it.
    #[serde(with = "opt_time_go", default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<OffsetDateTime>,
    /// Maximum handler invocations; 0 means no per-task limit.
    #[serde(default, deserialize_with = "null_default", alias = "MaxTries")]
    pub max_tries: i64,
    /// The outcome of a successful run.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "Result")]
    pub result: Option<TaskResult>,
    /// Current state.
    #[serde(default, deserialize_with = "null_default", alias = "State")]
    pub state: TaskState,
    /// Creation time.
    #[serde(
        with = "time_go",
        default = "wire::zero_time",
        alias = "Created",
        alias = "CreatedAt"
    )]
    pub created: OffsetDateTime,
    /// Last time a handler was started for it.
    #[serde(
        with = "opt_time_go",
        default,
        skip_serializing_if = "Option::is_none",
        alias = "Tried",
        alias = "LastTriedAt"
    )]
    pub tried: Option<OffsetDateTime>,
    /// Number of handler invocations so far.
    #[serde(default, deserialize_with = "null_default", alias = "Tries")]
    pub tries: i64,
    /// The most recent error.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty",
        alias = "LastErr"
    )]
    pub last_err: String,
    /// Hex ed25519 signature (docs/processing.md §5).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty",
        alias = "Signature"
    )]
    pub signature: String,
    /// How far its handler said it is, while a try runs and after (ours;
    /// Go leaves it out and drops it when it saves the record;
    /// docs/processing.md §2.17). Cleared when a try starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TaskProgress>,
    /// Its priority: 0 (the default) to [`MAX_PRIORITY`], higher first
    /// (ours; docs/processing.md §2.21). Its work item waits in the
    /// priority's lane; Go leaves it out and drops it when it saves the
    /// record.
    #[serde(default, skip_serializing_if = "is_default_priority")]
    pub priority: u8,
    /// Its flow-control key (a customer, a tenant, a remote API): the
    /// queue's per-key limits apply to it, and keys take turns
    /// (ours; docs/processing.md §2.24). Go leaves it out and drops it
    /// when it saves the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The id of the batch it belongs to, as a member or as its callback
    /// (ours; docs/processing.md §2.23). The batch's own record keeps the
    /// membership; Go leaves this out and drops it when it saves the record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub batch: String,
    /// Runs once every dependency has ended, whatever its outcome, instead
    /// of Go's rule (every dependency `complete`, else `unreachable`); a
    /// failed dependency's result is `null` in `dependency_results` (ours,
    /// a batch's callback; docs/processing.md §2.5, §2.23). Go workers
    /// apply their own rule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dependencies_any_outcome: bool,
    /// How the enqueue keeps it unique (not stored: docs/processing.md §2.18).
    #[serde(skip)]
    pub(crate) unique: Option<Unique>,
    /// Stream sequence of the version this copy was loaded from or saved as.
    #[serde(skip)]
    pub(crate) seq: u64,
    /// W3C `traceparent` carried on the work item (not part of the record).
    #[serde(skip)]
    pub(crate) traceparent: Option<String>,
}

/// The highest task priority; 0 is the default and the lowest
/// (docs/processing.md §2.21).
pub const MAX_PRIORITY: u8 = 9;

fn is_default_priority(p: &u8) -> bool {
    *p == 0
}

/// The longest flow-control key, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// Checks a flow-control key: 1 to [`MAX_KEY_LEN`] bytes, no control
/// characters.
///
/// Errors: [`Error::KeyInvalid`](crate::Error::KeyInvalid).
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(crate::Error::KeyInvalid(key.to_string()));
    }
    Ok(())
}

/// True when `name` matches `^[a-zA-Z0-9_:-]+$`, the rule for task types
/// and task ids (the rule `#[task_handler]` also checks at compile time).
///
/// ```
/// assert!(asyncjobs::task::is_valid_name("email:new"));
/// assert!(!asyncjobs::task::is_valid_name("email.new"));
/// ```
pub fn is_valid_name(name: &str) -> bool {
    asyncjobs_grammar::is_valid_name(name)
}

/// A new KSUID as used for task and event ids.
pub fn new_id() -> String {
    crate::ksuid::new().0
}

impl Task {
    /// A task of `task_type` whose payload is the JSON encoding of `payload`.
    ///
    /// The type does not choose a queue: [`Client::enqueue`](crate::Client::enqueue)
    /// puts the task in the client's queue (`DEFAULT` unless the client
    /// was built with another), [`Client::enqueue_to`](crate::Client::enqueue_to)
    /// in the one named. Nothing checks that a worker there handles
    /// `task_type`; [`Client::serving`](crate::Client::serving) tells what
    /// the cluster knows of it.
    ///
    /// ```
    /// let task = asyncjobs::Task::new("email:new", &serde_json::json!({"to": "a@example.net"})).unwrap();
    /// assert_eq!(task.state, asyncjobs::TaskState::New);
    /// assert_eq!(task.max_tries, 10);
    /// ```
    pub fn new<P: Serialize + ?Sized>(task_type: impl Into<String>, payload: &P) -> Result<Task> {
        Task::builder(task_type).payload(payload).build()
    }

    /// A builder for a task with options.
    pub fn builder(task_type: impl Into<String>) -> TaskBuilder {
        TaskBuilder::new(task_type.into())
    }

    /// Decodes the payload as `T`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T> {
        let bytes = self.payload.as_deref().unwrap_or(b"null");
        serde_json::from_slice(bytes).map_err(|e| {
            Error::json(
                format!(
                    "decoding payload of task {} as {}",
                    self.id,
                    std::any::type_name::<T>()
                ),
                e,
            )
        })
    }

    /// Decodes the result of a completed task as `T`.
    pub fn result_as<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.result.as_ref().map(|r| r.decode()).transpose()
    }

    /// Decodes a task record as stored in JetStream.
    pub fn from_json(data: &[u8]) -> Result<Task> {
        serde_json::from_slice(data).map_err(|e| Error::json("decoding task", e))
    }

    /// Encodes the task as Go does.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        // room for the record up front (it is written twice per try): the
        // fixed fields take about 500 bytes, the payload 4/3 in base64
        let payload = self.payload.as_ref().map_or(0, Vec::len);
        let result = self.result.as_ref().map_or(0, |r| r.payload.get().len());
        let deps = self.dependencies.iter().map(|d| d.len() + 3).sum::<usize>();
        let mut out =
            Vec::with_capacity(640 + payload * 4 / 3 + result + self.last_err.len() + deps);
        serde_json::to_writer(&mut out, self).map_err(|e| Error::json("encoding task", e))?;
        Ok(out)
    }

    /// The W3C `traceparent` sent with the next work item, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The queue it was last enqueued into, `DEFAULT` when none is recorded.
    pub(crate) fn queue_or_default(&self) -> &str {
        if self.queue.is_empty() {
            // the queue module's constant, from below both (no import circle)
            asyncjobs_grammar::DEFAULT_QUEUE_NAME
        } else {
            &self.queue
        }
    }

    /// How the enqueue keeps this task unique, when it was built so
    /// ([`TaskBuilder::unique`](crate::TaskBuilder::unique)).
    pub fn unique(&self) -> Option<&Unique> {
        self.unique.as_ref()
    }

    /// Stream sequence of the stored version this copy corresponds to (0 if never stored).
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    pub(crate) fn age(&self) -> Option<Duration> {
        if self.created == wire::zero_time() {
            return None;
        }
        let age = OffsetDateTime::now_utc() - self.created;
        Some(age.try_into().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("email:new"));
        assert!(is_valid_name("a_b-c:D9"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a.b"));
        assert!(!is_valid_name("é"));
    }

    #[test]
    fn ids_are_ksuids() {
        let id = new_id();
        assert_eq!(id.len(), 27);
        assert!(is_valid_name(&id));
    }

    #[test]
    fn builder_validates() {
        assert!(matches!(
            Task::new("bad type", &1),
            Err(Error::TaskTypeInvalid(_))
        ));
        assert!(matches!(
            Task::builder("t").id("bad id").build(),
            Err(Error::TaskIdInvalid(_))
        ));
        let t = Task::builder("t")
            .depends_on(["a", "b", "a"])
            .build()
            .unwrap();
        assert_eq!(t.dependencies, vec!["a", "b"]);
        assert_eq!(t.state, TaskState::Blocked);
        assert_eq!(t.payload, None);
    }

    #[test]
    fn null_fields_and_legacy_keys() {
        let t = Task::from_json(
            br#"{"id":"x","type":null,"queue":null,"payload":null,"Deadline":"2030-01-01T00:00:00+02:00","MaxTries":3,"state":"new","created":"2022-02-09T17:28:41Z","tries":null,"unknown":1}"#,
        )
        .unwrap();
        assert_eq!(t.task_type, "");
        assert_eq!(t.max_tries, 3);
        assert_eq!(t.deadline.unwrap().offset().whole_hours(), 2);
    }
}
