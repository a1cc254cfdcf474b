//! Tasks by state over stores of millions (docs/architecture.md §4a): a
//! store of up to [`LIVE_MAX`] tasks is counted on every overview; a
//! larger one is counted in the background by whichever replica finds
//! the last count older than [`RECOUNT_AFTER`], and the overview shows
//! that count with its age. The count goes to `CHORIA_AJ.STATS.COUNTS`
//! in the statistics stream, so every replica shows the same one.

use super::{roller, STREAM};
use crate::Api;
use async_nats::jetstream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The subject of the counts (never a queue's: those have a fifth token).
pub const SUBJECT: &str = "CHORIA_AJ.STATS.COUNTS";
/// The most tasks counted while the overview waits.
pub const LIVE_MAX: usize = 10_000;
/// How old a stored count may be before a replica counts again.
pub const RECOUNT_AFTER: Duration = Duration::from_secs(30);

/// Tasks by state, counted at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// When the count ended, unix milliseconds.
    pub at_ms: i64,
    /// How long it took, milliseconds.
    pub took_ms: u64,
    /// Tasks counted.
    pub total: u64,
    /// By state.
    pub states: BTreeMap<String, u64>,
    /// The replica that counted.
    pub replica: String,
}

/// What the overview shows.
pub(crate) enum Shown {
    /// Counted now: the store holds at most [`LIVE_MAX`] tasks.
    Live(StateCounts),
    /// The last stored count of a larger store (a recount may be running).
    Stored(StateCounts),
    /// No count of this larger store yet: the first is running.
    Counting,
}

/// The counts the overview shows, starting a background count when the
/// stored one is missing or old.
pub(crate) async fn for_overview(api: &Api) -> Result<Shown, String> {
    let stored = latest(&api.client.jetstream()).await?;
    let now_ms = now_ms();
    let small = stored.as_ref().is_none_or(|c| c.total as usize <= LIVE_MAX);
    if small {
        if let Some(live) = count(api, LIVE_MAX + 1).await? {
            if live.total as usize <= LIVE_MAX {
                return Ok(Shown::Live(live));
            }
        }
    }
    let fresh = stored
        .as_ref()
        .is_some_and(|c| now_ms - c.at_ms < RECOUNT_AFTER.as_millis() as i64);
    if !fresh {
        recount(api);
    }
    Ok(match stored {
        Some(c) if c.total as usize > LIVE_MAX => Shown::Stored(c),
        _ => Shown::Counting,
    })
}

/// The last stored count, if any.
///
/// Errors: the stream cannot be read.
pub(crate) async fn latest(js: &jetstream::Context) -> Result<Option<StateCounts>, String> {
    let Some(stream) = crate::streams::existing(js, STREAM).await? else {
        return Ok(None);
    };
    match stream.get_last_raw_message_by_subject(SUBJECT).await {
        Ok(m) => Ok(serde_json::from_slice(&m.payload).ok()),
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
            Ok(None)
        }
        Err(e) => Err(format!("reading the stream {STREAM}: {e}")),
    }
}

/// Counts the store in the background, once at a time in this replica,
/// and stores the count; a failure is logged.
fn recount(api: &Api) {
    if api.counting.swap(true, Ordering::AcqRel) {
        return;
    }
    let api = api.clone();
    tokio::spawn(async move {
        // another replica may have counted meanwhile
        let fresh = latest(&api.client.jetstream())
            .await
            .ok()
            .flatten()
            .is_some_and(|c| now_ms() - c.at_ms < RECOUNT_AFTER.as_millis() as i64);
        if !fresh {
            match count(&api, usize::MAX).await {
                Ok(Some(c)) => {
                    let js = api.client.jetstream();
                    if let Err(e) = store(&js, &c, api.options.replicas).await {
                        tracing::warn!(error = %e, "storing the count of tasks by state failed");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "counting the tasks by state failed"),
            }
        }
        api.counting.store(false, Ordering::Release);
    });
}

/// Tasks by state over at most `limit` records (`None` without a task
/// stream).
async fn count(api: &Api, limit: usize) -> Result<Option<StateCounts>, String> {
    let started = std::time::Instant::now();
    let mut all = match api.client.list_tasks(limit).await {
        Ok(all) => all,
        Err(asyncjobs::Error::NoTasks) => return Ok(Some(StateCounts::default())),
        Err(e) => return Err(format!("counting tasks: {e}")),
    };
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0;
    while let Some(t) = all.next().await {
        if let Ok(t) = t {
            *states.entry(t.state.as_str().to_string()).or_default() += 1;
        }
        total += 1;
    }
    Ok(Some(StateCounts {
        at_ms: now_ms(),
        took_ms: started.elapsed().as_millis() as u64,
        total,
        states,
        replica: crate::replica().to_string(),
    }))
}

async fn store(js: &jetstream::Context, c: &StateCounts, replicas: usize) -> Result<(), String> {
    let body = serde_json::to_vec(c).map_err(|e| e.to_string())?;
    crate::streams::publish_creating(js, SUBJECT, Default::default(), body, || {
        roller::create(js, replicas)
    })
    .await
    .map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
