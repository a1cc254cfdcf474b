//! Reading the task store in order: snapshot listings and bounded pages.

use super::{api, Storage};
use super::{TASKS_STREAM, TASK_SUBJECT_PREFIX};
use crate::error::{nats, Error, NatsError, NatsErrorKind, Result};
use crate::task::Task;
use async_nats::jetstream::{self, ErrorCode};
use futures::StreamExt;
use std::time::Duration;
use time::OffsetDateTime;

impl Storage {
    /// Streams the tasks stored when the listing starts, each at most once,
    /// through an ordered consumer.
    ///
    /// The stream's last sequence `S` is read first. Since the stream keeps
    /// one record per task (`max_msgs_per_subject` 1) and sequences are
    /// never reused, each task has at most one record at a sequence ≤ `S`,
    /// ever, and a task created after the start has none: the first pass
    /// yields every record up to `S`. A task saved while the listing runs,
    /// before the listing reached it, has lost that record and moved past
    /// `S`; further passes (at most 4) read on to the end the stream had
    /// when the previous pass finished and yield such tasks, skipping ids
    /// already yielded (the listing remembers yielded ids) and tasks
    /// created after the listing started (by their `created` time). The
    /// listing ends once as many tasks were yielded as were stored at the
    /// start, at the stream's end, or after the last pass.
    pub(crate) async fn list_tasks(
        &self,
    ) -> Result<impl futures::Stream<Item = Result<Task>> + Send + 'static> {
        let started = OffsetDateTime::now_utc();
        let info = match self.js.get_stream(TASKS_STREAM).await {
            Ok(mut s) => s
                .info()
                .await
                .map_err(|e| nats("listing tasks", e))?
                .state
                .clone(),
            Err(e) => {
                let e = nats("listing tasks", e);
                return Err(if api::is(&e, ErrorCode::STREAM_NOT_FOUND) {
                    Error::StorageNotReady("task store not initialized".into())
                } else {
                    e.into()
                });
            }
        };
        let messages = if info.messages == 0 {
            None
        } else {
            let consumer = self
                .stream(TASKS_STREAM)
                .await?
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| nats("listing tasks", e))?;
            // every record was removed between the two requests
            if consumer.cached_info().num_pending == 0 {
                None
            } else {
                Some(
                    consumer
                        .messages()
                        .await
                        .map_err(|e| nats("listing tasks", e))?,
                )
            }
        };
        let state = Listing {
            messages,
            snapshot: info.last_sequence,
            end: None,
            yielded: std::collections::HashSet::new(),
            started,
            total: info.messages,
            passes: 4,
        };
        Ok(futures::stream::unfold(state, |mut st| async move {
            st.next().await.map(|item| (item, st))
        }))
    }

    /// One page of stored tasks in store order, starting at stream sequence
    /// `from` (1 for the first page): up to `limit` tasks `keep` accepts,
    /// reading at most `scan` records. Returns them with the sequence the
    /// next page starts at, or `None` at the store's end. Records that do
    /// not decode are skipped with a warning (a page is for people).
    pub(crate) async fn page_tasks(
        &self,
        from: PageStart,
        limit: usize,
        scan: usize,
        keep: impl Fn(&Task) -> bool,
    ) -> Result<(Vec<Task>, Option<u64>)> {
        let deliver_policy = match from {
            PageStart::Sequence(seq) => jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: seq.max(1),
            },
            PageStart::Time(start_time) => {
                jetstream::consumer::DeliverPolicy::ByStartTime { start_time }
            }
        };
        let consumer = self
            .stream(TASKS_STREAM)
            .await?
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| nats("paging tasks", e))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok((vec![], None));
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| nats("paging tasks", e))?;
        let (mut tasks, mut scanned) = (Vec::new(), 0usize);
        loop {
            let msg = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
                Err(_) => {
                    return Err(NatsError::new(
                        NatsErrorKind::TimedOut,
                        "paging tasks: no message within 10s",
                    )
                    .into())
                }
                Ok(None) => return Ok((tasks, None)),
                Ok(Some(Err(e))) => return Err(nats("paging tasks", e).into()),
                Ok(Some(Ok(msg))) => msg,
            };
            let (seq, pending) =
                msg.info()
                    .map(|i| (i.stream_sequence, i.pending))
                    .map_err(|e| {
                        NatsError::new(NatsErrorKind::InvalidReply, format!("paging tasks: {e}"))
                    })?;
            scanned += 1;
            match serde_json::from_slice::<Task>(&msg.payload) {
                Ok(mut t) => {
                    t.seq = seq;
                    if keep(&t) {
                        tasks.push(t);
                    }
                }
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "paging tasks: a record does not decode")
                }
            }
            if pending == 0 {
                return Ok((tasks, None));
            }
            if tasks.len() >= limit || scanned >= scan {
                return Ok((tasks, Some(seq + 1)));
            }
        }
    }
}

/// Where a page of [`Storage::page_tasks`] starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PageStart {
    /// At this stream sequence.
    Sequence(u64),
    /// At the first record the server stored at or after this time.
    Time(OffsetDateTime),
}

/// The state of a [`Storage::list_tasks`] listing.
pub(super) struct Listing {
    messages: Option<jetstream::consumer::pull::Ordered>,
    /// The stream's last sequence when the listing started.
    snapshot: u64,
    /// Where the second pass ends, once it has begun.
    end: Option<u64>,
    /// Ids yielded so far.
    yielded: std::collections::HashSet<String>,
    /// When the listing started: later tasks are not listed.
    started: OffsetDateTime,
    /// Tasks stored when the listing started.
    total: u64,
    /// Further passes allowed after the first.
    passes: u32,
}

impl Listing {
    /// The next task of the listing, `None` at its end (see
    /// [`Storage::list_tasks`]).
    async fn next(&mut self) -> Option<Result<Task>> {
        loop {
            let messages = self.messages.as_mut()?;
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
            let msg = match next {
                Err(_) => {
                    self.messages = None;
                    let e = NatsError::new(
                        NatsErrorKind::TimedOut,
                        "listing tasks: no message within 10s",
                    );
                    return Some(Err(e.into()));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    self.messages = None;
                    return Some(Err(nats("listing tasks", e).into()));
                }
                Ok(Some(Ok(msg))) => msg,
            };
            let (seq, pending) = msg
                .info()
                .map(|i| (i.stream_sequence, i.pending))
                .unwrap_or((self.snapshot, 0));
            let second_pass = seq > self.snapshot;
            let end = self.end.unwrap_or(self.snapshot);
            if seq > end {
                // a pass is over: read on to the stream's end as it is
                // now, a bounded number of times
                if self.passes == 0 {
                    return None;
                }
                self.passes -= 1;
                self.end = Some(seq + pending);
            }
            if pending == 0 {
                self.messages = None;
            }
            let id = msg
                .subject
                .strip_prefix(TASK_SUBJECT_PREFIX)
                .unwrap_or(&msg.subject)
                .to_string();
            if self.yielded.contains(&id) {
                continue;
            }
            let item = serde_json::from_slice::<Task>(&msg.payload)
                .map(|mut t| {
                    t.seq = seq;
                    t
                })
                .map_err(|e| Error::InvalidTaskRecord {
                    id: id.clone(),
                    reason: e.to_string(),
                });
            if second_pass && !matches!(&item, Ok(t) if t.created <= self.started) {
                continue;
            }
            self.yielded.insert(id);
            if self.yielded.len() as u64 >= self.total {
                // every task present at the start has been listed
                self.messages = None;
            }
            return Some(item);
        }
    }
}
