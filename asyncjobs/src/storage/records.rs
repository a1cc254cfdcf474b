//! Task records: saving with optimistic concurrency (and the state event
//! that follows), saving or discarding final states, and loading by direct
//! get or `STREAM.MSG.GET` (docs/storage.md).

use super::{api, Storage};
use super::{TASKS_STREAM, TASK_SUBJECT_PREFIX};
use crate::error::{nats, Error, NatsError, Result};
use crate::events::TaskStateChangeEvent;
use crate::queue::StreamDetails;
use crate::task::Task;
use async_nats::header::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::ErrorCode;
use async_nats::StatusCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;

impl Storage {
    /// Saves the task with optimistic concurrency and publishes its state event.
    pub(crate) async fn save_task(&self, task: &mut Task) -> Result<()> {
        self.save_record(task).await?;
        self.publish_event(task).await;
        Ok(())
    }

    /// Saves the task with optimistic concurrency, without its state event.
    async fn save_record(&self, task: &mut Task) -> Result<()> {
        let ack = self.start_save(task).await?;
        match self.record_saved(task, ack.await) {
            // a final save refused because the store was replaced by one
            // without per-message TTL: sent again without (docs/storage.md §3.8)
            Err(Error::TaskUpdateFailed(_))
                if task.state.is_final() && self.expiry_lost().await =>
            {
                let ack = self.start_save(task).await?;
                self.record_saved(task, ack.await)
            }
            other => other,
        }
    }

    /// Sends the task record; the returned future resolves to its publish ack.
    pub(crate) async fn start_save(&self, task: &Task) -> Result<PublishAckFuture> {
        self.send_record(task, "task record", 0).await
    }

    /// Sends the task record, refused ([`Error::PayloadTooLarge`] naming
    /// `what`) unless it fits the server's `max_payload` with `headroom`
    /// bytes to spare.
    pub(crate) async fn send_record(
        &self,
        task: &Task,
        what: &'static str,
        headroom: usize,
    ) -> Result<PublishAckFuture> {
        let body = task.to_json()?;
        self.check_size(what, body.len() + headroom)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            task.seq.to_string().as_str(),
        );
        // a final record expires by itself when its retention ends
        // (docs/storage.md §3.8); a later save without it replaces it
        if let Some(ttl) = self.record_ttl(task).await {
            headers.insert("Nats-TTL", format!("{}s", ttl.as_secs()).as_str());
        }
        self.js
            .publish_with_headers(
                format!("{TASK_SUBJECT_PREFIX}{}", task.id),
                headers,
                body.into(),
            )
            .await
            .map_err(|e| Error::TaskUpdateFailed(nats(format!("saving task {}", task.id), e)))
    }

    /// Removes the record of task `id` at sequence `seq` (only that one:
    /// a newer record of the task stays); gone already is fine.
    pub(crate) async fn delete_record(&self, id: &str, seq: u64) -> Result<()> {
        match self
            .delete_msg(TASKS_STREAM, seq, || {
                format!("removing the record of task {id}")
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if api::is(&e, ErrorCode::NO_MESSAGE_FOUND) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// What a record's publish ack (or its error) means; the state event
    /// follows a saved record.
    pub(crate) async fn saved(
        &self,
        task: &mut Task,
        acked: std::result::Result<
            async_nats::jetstream::publish::PublishAck,
            async_nats::jetstream::context::PublishError,
        >,
    ) -> Result<()> {
        self.record_saved(task, acked)?;
        self.publish_event(task).await;
        Ok(())
    }

    /// What a record's publish ack (or its error) means, without the event.
    fn record_saved(
        &self,
        task: &mut Task,
        acked: std::result::Result<
            async_nats::jetstream::publish::PublishAck,
            async_nats::jetstream::context::PublishError,
        >,
    ) -> Result<()> {
        match acked {
            Ok(ack) => {
                task.seq = ack.sequence;
                crate::metrics::task_update(task.state);
                Ok(())
            }
            Err(e) => {
                crate::metrics::task_update_error();
                Err(match e.kind() {
                    PublishErrorKind::WrongLastSequence => Error::ConcurrentUpdate(task.id.clone()),
                    PublishErrorKind::StreamNotFound => Error::StorageNotReady(format!(
                        "task store {TASKS_STREAM} did not answer (no responders for {TASK_SUBJECT_PREFIX}{}): it does not exist, or has no leader",
                        task.id
                    )),
                    _ => Error::TaskUpdateFailed(nats(format!("saving task {}", task.id), e)),
                })
            }
        }
    }

    /// Publishes the task's state change event (best effort, like Go).
    pub(crate) async fn publish_event(&self, task: &Task) {
        let event = TaskStateChangeEvent::for_task(task);
        // an event is about 300 bytes, more with a long error
        let mut body = Vec::with_capacity(384 + event.last_error.len());
        match serde_json::to_writer(&mut body, &event) {
            Ok(()) => {
                if let Err(e) = self.nc.publish(event.subject(), body.into()).await {
                    tracing::warn!(task = %task.id, error = %e, "publishing task state event failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "encoding task state event failed"),
        }
    }

    /// Saves the task, or deletes it when its state is in the discard list.
    ///
    /// Before the record is deleted its final state is written to
    /// [`DISCARDED_BUCKET`], so a dependant still sees the dependency as
    /// `complete` (or failed). When that marker cannot be written the
    /// record is saved instead of deleted: keeping it is better than
    /// stranding its dependants.
    pub(crate) async fn save_or_discard(&self, task: &mut Task) -> Result<()> {
        if self.settings.discard.contains(&task.state) {
            // boxed: the marker's KV calls would otherwise grow every
            // in-flight task's future, discarding or not
            return Box::pin(self.discard(task)).await;
        }
        self.save_task(task).await
    }

    /// Records the final state of a task in a discard state, then deletes
    /// its record, then publishes the event (so a dependant it releases,
    /// or one polling meanwhile, finds the record or the marker, never
    /// neither). The record deleted is the one at the sequence this
    /// process last saw: when a newer one replaced it (a cancel, an
    /// operator's retry) nothing is deleted, the marker is removed and the
    /// outcome is dropped ([`Error::ConcurrentUpdate`]), like a save's.
    /// Should the marker not be written, the final record is saved anew
    /// instead: keeping it is better than stranding dependants.
    pub(super) async fn discard(&self, task: &mut Task) -> Result<()> {
        if let Err(e) = self.mark_discarded(task).await {
            tracing::warn!(task = %task.id, state = %task.state, error = %e,
                "cannot record the final state of a discarded task; keeping its record instead");
            return self.save_task(task).await;
        }
        let deleted = self
            .delete_msg(TASKS_STREAM, task.seq, || {
                format!("removing the record of task {}", task.id)
            })
            .await;
        if let Err(e) = deleted {
            if api::is_gone(&e) {
                // a newer record: it, not the marker, says how the task is
                if let Err(e) = self.unmark_discarded(&task.id).await {
                    tracing::warn!(task = %task.id, error = %e,
                        "removing the discard marker of a task changed meanwhile failed; its record is read first");
                }
                return Err(Error::ConcurrentUpdate(task.id.clone()));
            }
            return Err(e.into());
        }
        self.publish_event(task).await;
        Ok(())
    }

    /// Loads a task and verifies its signature when keys are configured.
    pub(crate) async fn load_verified(&self, id: &str) -> Result<Task> {
        let task = self.load_task(id).await?;
        self.settings.keys.verify(&task)?;
        Ok(task)
    }

    /// Loads the latest version of a task.
    pub(crate) async fn load_task(&self, id: &str) -> Result<Task> {
        let (seq, data) = self.load_task_raw(id).await?;
        let mut task =
            serde_json::from_slice::<Task>(&data).map_err(|e| Error::InvalidTaskRecord {
                id: id.to_string(),
                reason: e.to_string(),
            })?;
        task.seq = seq;
        Ok(task)
    }

    pub(super) async fn load_task_raw(&self, id: &str) -> Result<(u64, bytes::Bytes)> {
        if !crate::task::is_valid_name(id) {
            return Err(Error::TaskIdInvalid(id.to_string()));
        }
        if self.direct_loads.load(Ordering::Relaxed) {
            match self.direct_load(id).await {
                Ok(Some(found)) => return Ok(found),
                // direct gets no longer answered (the stream's
                // allow_direct was turned off): load the Go way from now on
                Ok(None) => self.direct_loads.store(false, Ordering::Relaxed),
                // A replica answers direct gets too, and one that lags the
                // leader does not have a record just written (no
                // read-your-writes on a replicated store): "not found" is
                // the leader's to say, or a worker would drop the item of
                // a task that exists (docs/storage.md §10.3)
                Err(Error::TaskNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.message_get_load(id).await
    }

    /// Loads a task's latest record by direct get (`<api>.DIRECT.GET.
    /// CHORIA_AJ_TASKS.CHORIA_AJ.T.<id>`): the stored bytes come back as
    /// the reply's payload and the sequence in its `Nats-Sequence` header.
    /// `None` when nothing answers direct gets.
    pub(super) async fn direct_load(&self, id: &str) -> Result<Option<(u64, bytes::Bytes)>> {
        let subject = self.api().subject(&format!(
            "DIRECT.GET.{TASKS_STREAM}.{TASK_SUBJECT_PREFIX}{id}"
        ));
        let reply = match self.nc.request(subject, bytes::Bytes::new()).await {
            Ok(reply) => reply,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => return Ok(None),
            Err(e) => return Err(nats(format!("loading task {id}"), e).into()),
        };
        match reply.status {
            Some(StatusCode::NOT_FOUND) => return Err(Error::TaskNotFound(id.to_string())),
            Some(StatusCode::NO_RESPONDERS) => return Ok(None),
            Some(status) if status != StatusCode::OK => {
                return Err(Error::StorageNotReady(format!(
                    "loading task {id}: direct get answered {status} {}",
                    reply.description.as_deref().unwrap_or("")
                )))
            }
            _ => {}
        }
        let seq = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .ok_or_else(|| Error::InvalidTaskRecord {
                id: id.to_string(),
                reason: "direct get reply without a Nats-Sequence header".into(),
            })?;
        Ok(Some((seq, reply.payload)))
    }

    /// Loads a task's latest record by `STREAM.MSG.GET`, as Go does.
    pub(super) async fn message_get_load(&self, id: &str) -> Result<(u64, bytes::Bytes)> {
        // STREAM.MSG.GET decoded into just what a load needs (sequence and
        // data): async-nats's get_last_raw_message_by_subject also decodes
        // headers and the time, which costs the worker's hot path ~15%.
        #[derive(Deserialize)]
        struct Reply {
            message: Stored,
        }
        #[derive(Deserialize)]
        struct Stored {
            seq: u64,
            #[serde(default)]
            data: String,
        }
        let body = json!({ "last_by_subj": format!("{TASK_SUBJECT_PREFIX}{id}") });
        let reply: Reply = api::request(
            &self.js,
            &format!("STREAM.MSG.GET.{TASKS_STREAM}"),
            &body,
            || format!("loading task {id}"),
        )
        .await
        .map_err(|e| self.task_error(id, e))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(reply.message.data)
            .map_err(|e| Error::InvalidTaskRecord {
                id: id.to_string(),
                reason: format!("invalid message data: {e}"),
            })?;
        Ok((reply.message.seq, data.into()))
    }

    /// Maps "no such message" and "no such stream" to their meaning for task `id`.
    pub(super) fn task_error(&self, id: &str, e: NatsError) -> Error {
        if api::is(&e, ErrorCode::NO_MESSAGE_FOUND) {
            Error::TaskNotFound(id.to_string())
        } else if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
            Error::StorageNotReady("task store not initialized".into())
        } else {
            e.into()
        }
    }

    /// The task store's details.
    pub(crate) async fn tasks_info(&self) -> Result<StreamDetails> {
        self.stream_details(TASKS_STREAM)
            .await?
            .ok_or_else(|| Error::StorageNotReady("task store not initialized".into()))
    }
}
