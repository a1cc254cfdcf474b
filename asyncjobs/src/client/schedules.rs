//! Scheduled-task storage of the [`Client`]: records under
//! `scheduled_tasks.<name>` in the `CHORIA_AJ_CONFIGURATION` bucket
//! (docs/storage.md), which running schedulers follow.

use super::Client;
use crate::error::Error;
use crate::scheduler::{decode_record, ScheduleError, ScheduledTask, SCHEDULED_TASK_KEY_PREFIX};
use crate::task::{is_valid_name, Task};

impl Client {
    /// Validates and stores a new schedule (KV create); an existing name is
    /// [`ScheduleError::AlreadyExists`]. The queue is not checked to exist.
    ///
    /// # Errors
    /// [`ScheduleError::AlreadyExists`], an invalid schedule
    /// ([`ScheduleError`]'s validation variants), or the bucket's errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::{ScheduledTask, Task};
    /// let template = Task::new("report:daily", &serde_json::json!({"format": "pdf"}))?;
    /// let schedule = ScheduledTask::new("daily_report", "0 6 * * *", "REPORTS", &template)?;
    /// client.create_scheduled_task(&schedule).await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_scheduled_task(&self, task: &ScheduledTask) -> Result<(), ScheduleError> {
        task.validate()?;
        let bucket = self.storage().config_bucket().await?;
        let created = bucket
            .create(&task.key(), task.to_json().into(), || {
                format!("storing scheduled task {}", task.name)
            })
            .await
            .map_err(Error::from)?;
        match created {
            Some(_) => Ok(()),
            None => Err(ScheduleError::AlreadyExists(task.name.clone())),
        }
    }

    /// Like Go's `NewScheduledTask`: builds the schedule from a template task
    /// ([`ScheduledTask::new`]) and stores it.
    pub async fn new_scheduled_task(
        &self,
        name: &str,
        schedule: &str,
        queue: &str,
        template: &Task,
    ) -> Result<ScheduledTask, ScheduleError> {
        let st = ScheduledTask::new(name, schedule, queue, template)?;
        self.create_scheduled_task(&st).await?;
        Ok(st)
    }

    /// Loads a schedule by name.
    pub async fn load_scheduled_task(&self, name: &str) -> Result<ScheduledTask, ScheduleError> {
        if !is_valid_name(name) || name.contains(':') {
            return Err(ScheduleError::NotFound(name.to_string()));
        }
        let bucket = self.storage().config_bucket().await?;
        let value = bucket
            .entry(&format!("{SCHEDULED_TASK_KEY_PREFIX}{name}"), || {
                format!("loading scheduled task {name}")
            })
            .await
            .map_err(Error::from)?;
        match value {
            Some(value) => decode_record(name, &value),
            None => Err(ScheduleError::NotFound(name.to_string())),
        }
    }

    /// All schedules, sorted by name. Records that do not decode are
    /// skipped with a warning.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// for s in client.scheduled_tasks().await? {
    ///     println!("{} {} -> {}", s.name, s.schedule, s.queue);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn scheduled_tasks(&self) -> Result<Vec<ScheduledTask>, ScheduleError> {
        let bucket = self.storage().config_bucket().await?;
        let keys = bucket
            .keys(|| "listing scheduled tasks".into())
            .await
            .map_err(Error::from)?;
        let names = keys
            .iter()
            .filter_map(|key| key.strip_prefix(SCHEDULED_TASK_KEY_PREFIX));
        let mut out = Vec::with_capacity(keys.len());
        for name in names {
            match self.load_scheduled_task(name).await {
                Ok(st) => out.push(st),
                // deleted since the key listing
                Err(ScheduleError::NotFound(_)) => {}
                Err(ScheduleError::InvalidRecord { name, reason }) => {
                    tracing::warn!(schedule = %name, %reason, "skipping undecodable scheduled task")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Validates and stores a schedule whether or not it exists (KV put).
    /// A running scheduler replaces its timer for it.
    pub async fn update_scheduled_task(&self, task: &ScheduledTask) -> Result<(), ScheduleError> {
        task.validate()?;
        let bucket = self.storage().config_bucket().await?;
        bucket
            .put(&task.key(), task.to_json().into(), || {
                format!("storing scheduled task {}", task.name)
            })
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    /// Deletes a schedule (KV delete marker); running schedulers drop it.
    pub async fn delete_scheduled_task(&self, name: &str) -> Result<(), ScheduleError> {
        self.load_scheduled_task(name).await.map(|_| ())?;
        let bucket = self.storage().config_bucket().await?;
        bucket
            .delete(&format!("{SCHEDULED_TASK_KEY_PREFIX}{name}"), || {
                format!("deleting scheduled task {name}")
            })
            .await
            .map_err(Error::from)?;
        Ok(())
    }
}
