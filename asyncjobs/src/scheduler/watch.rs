//! Following the stored schedules: a watch on the configuration bucket
//! that starts, replaces and stops each schedule's timer.

use super::fire::run_schedule;
use super::{decode_record, Entry, ScheduleError, Scheduler, SCHEDULED_TASK_KEY_PREFIX};
use crate::error::Error;
use crate::storage::{Bucket, CONFIG_BUCKET};
use async_nats::jetstream::kv;
use futures::StreamExt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Scheduler {
    /// Follows the stored schedules until `stop`. Each time the watch is
    /// (re)made, the schedules are re-read from scratch: those no longer
    /// stored stop (the bucket may have been deleted and re-created, so
    /// revisions cannot be trusted) and the stored ones are applied (a
    /// schedule that did not change keeps running). A failing watch keeps
    /// the running schedules, logs what is wrong and is made again after
    /// 1 s, doubling to [`WATCH_BACKOFF_MAX`].
    pub(super) async fn watch(
        &self,
        store: Bucket,
        stop: &CancellationToken,
    ) -> Result<(), ScheduleError> {
        let pattern = format!("{SCHEDULED_TASK_KEY_PREFIX}*");
        let mut started = false;
        let mut backoff = Duration::from_secs(1);
        loop {
            let watch = match self.prune_to_stored(&store).await {
                Ok(()) => store
                    .watch_with_history(&pattern, || {
                        format!("watching scheduled tasks in {CONFIG_BUCKET}")
                    })
                    .await
                    .map_err(Error::from),
                Err(e) => Err(e),
            };
            match watch {
                Err(e) if !started => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff,
                        "cannot read the scheduled tasks (is the {CONFIG_BUCKET} bucket missing?); running schedules continue");
                    crate::metrics::background_error("scheduler_watch");
                }
                Ok(mut watch) => {
                    if started {
                        tracing::info!("reading the scheduled tasks again");
                    }
                    started = true;
                    loop {
                        let item = tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            item = watch.next() => item,
                        };
                        match item {
                            Some(Ok(entry)) => {
                                backoff = Duration::from_secs(1);
                                self.apply(entry, stop);
                            }
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "scheduled tasks watch failed; making it again");
                                crate::metrics::background_error("scheduler_watch");
                                break;
                            }
                            None => {
                                tracing::warn!("scheduled tasks watch ended; making it again");
                                crate::metrics::background_error("scheduler_watch");
                                break;
                            }
                        }
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(WATCH_BACKOFF_MAX);
        }
    }

    /// Stops the running schedules that are no longer stored.
    async fn prune_to_stored(&self, store: &Bucket) -> Result<(), Error> {
        let stored: std::collections::HashSet<String> = store
            .keys(|| format!("listing scheduled tasks in {CONFIG_BUCKET}"))
            .await?
            .into_iter()
            .filter_map(|key| {
                key.strip_prefix(SCHEDULED_TASK_KEY_PREFIX)
                    .map(str::to_string)
            })
            .collect();
        let mut entries = self.inner.entries.lock().expect("scheduler entries");
        entries.retain(|name, entry| {
            let keep = stored.contains(name);
            if !keep {
                entry.stop.cancel();
                crate::metrics::scheduler_schedules_changed(-1);
                tracing::info!(schedule = %name, "removed schedule (no longer stored)");
            }
            keep
        });
        Ok(())
    }

    fn apply(&self, entry: kv::Entry, run: &CancellationToken) {
        let Some(name) = entry.key.strip_prefix(SCHEDULED_TASK_KEY_PREFIX) else {
            return;
        };
        let name = name.to_string();
        let mut entries = self.inner.entries.lock().expect("scheduler entries");
        let parsed = match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => None,
            kv::Operation::Put => match decode_record(&name, &entry.value) {
                Ok(st) => match st.cron() {
                    Ok(cron) => Some((st, cron)),
                    Err(e) => {
                        tracing::warn!(schedule = %name, error = %e, "scheduled task has an invalid schedule; not scheduling it");
                        crate::metrics::scheduler_error(&st.task_type, &st.queue);
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "undecodable scheduled task; not scheduling it");
                    crate::metrics::scheduler_error("", "");
                    None
                }
            },
        };
        match parsed {
            None => {
                if let Some(old) = entries.remove(&name) {
                    old.stop.cancel();
                    crate::metrics::scheduler_schedules_changed(-1);
                    tracing::info!(schedule = %name, "removed schedule");
                }
            }
            Some((st, cron)) => {
                if entries.get(&name).is_some_and(|old| old.task == st) {
                    return;
                }
                match entries.remove(&name) {
                    Some(old) => {
                        old.stop.cancel();
                        tracing::info!(schedule = %name, spec = %st.schedule, paused = st.paused, "replaced schedule");
                    }
                    None => {
                        crate::metrics::scheduler_schedules_changed(1);
                        tracing::info!(schedule = %name, spec = %st.schedule, queue = %st.queue, "added schedule");
                    }
                }
                let stop = run.child_token();
                tokio::spawn(run_schedule(
                    self.inner.clone(),
                    name.clone(),
                    st.clone(),
                    cron.with_anchor(st.created_at),
                    stop.clone(),
                ));
                entries.insert(name, Entry { task: st, stop });
            }
        }
    }
}

/// Longest wait between attempts to watch the scheduled tasks again.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(30);
