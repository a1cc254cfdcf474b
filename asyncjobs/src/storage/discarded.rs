//! Discard markers: the final state of a task whose record was deleted by a
//! discard policy, kept in the `CHORIA_AJ_DISCARDED` bucket so its
//! dependants can still be judged (docs/go-differences.md).

use super::DISCARDED_BUCKET;
use super::{api, Storage};
use crate::error::{nats, Result};
use crate::task::{Task, TaskState};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::ErrorCode;
use serde::Deserialize;
use serde_json::json;

impl Storage {
    /// Creates [`DISCARDED_BUCKET`] unless it exists: a KV bucket with one
    /// value per key, keeping markers as long as the task store keeps
    /// records (its `max_age`).
    pub(super) async fn prepare_discarded(&self) -> Result<()> {
        let name = format!("KV_{DISCARDED_BUCKET}");
        if self.stream_details(&name).await?.is_some() {
            return Ok(());
        }
        let max_age = self
            .tasks_info()
            .await
            .map(|d| d.max_age)
            .unwrap_or_default();
        let config = self.kv_config(
            DISCARDED_BUCKET,
            "Choria Async Jobs Discarded Tasks",
            max_age,
        );
        self.create_stream(&name, config).await
    }

    /// Writes the final state of a task about to be discarded to
    /// [`DISCARDED_BUCKET`], creating the bucket on first use.
    pub(super) async fn mark_discarded(&self, task: &Task) -> Result<()> {
        let subject = format!("$KV.{DISCARDED_BUCKET}.{}", task.id);
        let body = json!({ "state": task.state }).to_string().into_bytes();
        let mut created = false;
        loop {
            let sent = match self.js.publish(subject.clone(), body.clone().into()).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == PublishErrorKind::StreamNotFound && !created => {
                    self.prepare_discarded().await?;
                    created = true;
                }
                Err(e) => {
                    return Err(nats(format!("recording discarded task {}", task.id), e).into())
                }
            }
        }
    }

    /// Removes the discard marker of `id` (a KV delete marker), for a task
    /// whose record was replaced before it could be discarded.
    pub(super) async fn unmark_discarded(&self, id: &str) -> Result<()> {
        let subject = format!("$KV.{DISCARDED_BUCKET}.{id}");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        self.js
            .publish_with_headers(subject, headers, bytes::Bytes::new())
            .await
            .map_err(|e| nats(format!("removing the discard marker of {id}"), e))?
            .await
            .map_err(|e| nats(format!("removing the discard marker of {id}"), e))?;
        Ok(())
    }

    /// The final state a discarded task was deleted in, `None` when there is
    /// no marker for it (never discarded, or the marker has aged out).
    pub(crate) async fn discarded_state(&self, id: &str) -> Result<Option<TaskState>> {
        if !crate::task::is_valid_name(id) {
            return Ok(None);
        }
        let bucket = self.stream(&format!("KV_{DISCARDED_BUCKET}")).await?;
        match bucket
            .get_last_raw_message_by_subject(&format!("$KV.{DISCARDED_BUCKET}.{id}"))
            .await
        {
            Ok(m) => {
                let deleted = m
                    .headers
                    .get("KV-Operation")
                    .is_some_and(|op| op.as_str() != "PUT");
                if deleted {
                    return Ok(None);
                }
                #[derive(Deserialize)]
                struct Marker {
                    state: TaskState,
                }
                Ok(serde_json::from_slice::<Marker>(&m.payload)
                    .map(|m| m.state)
                    .ok())
            }
            Err(e) => {
                let e = nats(format!("loading the discard marker of {id}"), e);
                if api::is(&e, ErrorCode::NO_MESSAGE_FOUND)
                    || api::is(&e, ErrorCode::STREAM_NOT_FOUND)
                {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }
}
