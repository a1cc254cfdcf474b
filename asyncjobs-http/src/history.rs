//! Task histories kept by the server (docs/architecture.md §4a): with
//! [`ApiOptions::keep_history`](crate::ApiOptions), the stream
//! `CHORIA_AJ_HISTORY` stores every task state event as it is published
//! (`CHORIA_AJ.E.task_state.<id>`, from Go workers and ours alike: the
//! server keeps what publishers already send, no publisher changes), and
//! the task page shows a task's as its timeline.

use async_nats::jetstream;
use std::time::Duration;

/// The stream holding the events.
pub const STREAM: &str = "CHORIA_AJ_HISTORY";
/// Most events kept per task (the oldest go first).
pub const PER_TASK: i64 = 100;

/// One state change of a task, as stored.
pub(crate) struct Change {
    /// When the server stored it.
    pub at: time::OffsetDateTime,
    pub state: String,
    pub tries: i64,
    pub last_error: String,
    /// The worker that made it, when an asyncjobs worker processing the
    /// task did (Go's events and enqueues name none).
    pub worker: Option<String>,
}

/// Creates the stream when missing (an existing one is used as it is,
/// whatever its settings); logs why not when it cannot.
pub(crate) async fn prepare(js: &jetstream::Context, keep: Duration, replicas: usize) {
    if js.get_stream(STREAM).await.is_ok() {
        return;
    }
    let created = js
        .get_or_create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            description: Some("asyncjobs: every task state event, for task histories".into()),
            subjects: vec![format!("{}>", asyncjobs::events::TASK_STATE_SUBJECT_PREFIX)],
            max_age: keep,
            max_messages_per_subject: PER_TASK,
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            discard: jetstream::stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await;
    if let Err(e) = created {
        tracing::error!(error = %e, "cannot create the stream {STREAM}: task pages show no history");
    }
}

/// Task `id`'s stored changes, oldest first; `None` when no history is
/// kept (the stream does not exist).
///
/// Errors: the stream cannot be read.
pub(crate) async fn of_task(
    js: &jetstream::Context,
    id: &str,
) -> Result<Option<Vec<Change>>, String> {
    let Some(stream) = crate::streams::existing(js, STREAM).await? else {
        return Ok(None);
    };
    let config = jetstream::consumer::pull::OrderedConfig {
        filter_subject: format!("{}{id}", asyncjobs::events::TASK_STATE_SUBJECT_PREFIX),
        ..Default::default()
    };
    let mut out = vec![];
    for m in crate::streams::read_all(&stream, config).await? {
        let Ok(info) = m.info() else { continue };
        if let Ok(asyncjobs::events::Event::TaskState(e)) =
            asyncjobs::events::parse_event(&m.payload)
        {
            out.push(Change {
                at: info.published,
                state: e.state.as_str().to_string(),
                tries: e.tries,
                last_error: e.last_error,
                worker: e.worker,
            });
        }
    }
    Ok(Some(out))
}
