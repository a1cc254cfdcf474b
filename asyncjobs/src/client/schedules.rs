//! Scheduled-task storage of the [`Client`]: records under
//! `scheduled_tasks.<name>` in the `CHORIA_AJ_CONFIGURATION` bucket
//! (docs/storage.md), which running schedulers follow.

use super::Client;
use crate::error::Error;
use crate::scheduler::{
    decode_record, Declaration, ScheduleError, ScheduledTask, SCHEDULED_TASK_KEY_PREFIX,
};
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

    /// Creates a task from schedule `name` now, outside its timetable (an
    /// operator's "run now"): the task [`ScheduledTask::to_task`] makes,
    /// with a fresh id, enqueued into the schedule's queue. The schedule's
    /// own slots are unchanged. Returns the task as stored.
    ///
    /// # Errors
    /// [`ScheduleError::NotFound`] when there is no such schedule; the
    /// enqueue's errors otherwise (for example the queue does not exist).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let task = client.run_scheduled_task_now("daily-report").await?;
    /// println!("created task {}", task.id);
    /// # Ok(()) }
    /// ```
    pub async fn run_scheduled_task_now(&self, name: &str) -> Result<Task, ScheduleError> {
        let st = self.load_scheduled_task(name).await?;
        let mut task = st.to_task()?;
        self.enqueue_to(&st.queue, &mut task).await?;
        Ok(task)
    }

    /// Pauses schedule `name` (`paused` true) or resumes it (false): a
    /// running Rust scheduler reads the change at once and fires none of
    /// its slots while it is paused; slots that pass meanwhile are not made
    /// up after a resume. A Go scheduler ignores the pause
    /// ([`ScheduledTask::paused`]). The record is rewritten only if it did
    /// not change since it was read (compare-and-set); the schedule as
    /// stored is returned.
    ///
    /// # Errors
    /// [`ScheduleError::NotFound`] when there is no such schedule;
    /// [`Error::ConcurrentUpdate`] when it kept changing meanwhile; the
    /// store's errors otherwise.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// client.pause_scheduled_task("nightly", true).await?;
    /// // ... maintenance ...
    /// client.pause_scheduled_task("nightly", false).await?;
    /// # Ok(()) }
    /// ```
    pub async fn pause_scheduled_task(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<ScheduledTask, ScheduleError> {
        if !is_valid_name(name) || name.contains(':') {
            return Err(ScheduleError::NotFound(name.to_string()));
        }
        let bucket = self.storage().config_bucket().await?;
        let key = format!("{SCHEDULED_TASK_KEY_PREFIX}{name}");
        for _ in 0..5 {
            let Some(written) = bucket
                .written(&key, || format!("loading scheduled task {name}"))
                .await
                .map_err(Error::from)?
            else {
                return Err(ScheduleError::NotFound(name.to_string()));
            };
            let mut st = decode_record(name, &written.value)?;
            if st.paused == paused {
                return Ok(st);
            }
            st.paused = paused;
            let updated = bucket
                .update_if(&key, st.to_json().into(), written.revision, || {
                    format!("storing scheduled task {name}")
                })
                .await
                .map_err(Error::from)?;
            if updated.is_some() {
                return Ok(st);
            }
        }
        Err(Error::ConcurrentUpdate(format!("scheduled task {name}")).into())
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

    /// Stores a schedule declared in code, as a worker started with
    /// `asyncjobs::main!()` does for every `#[task_handler(cron = ...)]`
    /// and `main!(schedule = ...)` (docs/processing.md §2.20). Safe to call
    /// from many processes at once: the record is written with a KV create
    /// or a compare-and-set on the revision read, so one schedule is
    /// stored whatever the races.
    ///
    /// * no schedule has the name: it is created ([`Declaration::Created`]);
    /// * the stored one makes the same tasks ([`ScheduledTask::same_tasks_as`]):
    ///   nothing is written ([`Declaration::Unchanged`]);
    /// * the stored one was declared in code too (it has
    ///   [`declared_in`](ScheduledTask::declared_in)) and differs: it is
    ///   replaced ([`Declaration::Updated`]);
    /// * the stored one was created otherwise (an operator, `ajc`, the HTTP
    ///   API, Go) and differs: it is kept ([`Declaration::Kept`]); the
    ///   caller reports it.
    ///
    /// `task` is marked as declared (with `"code"` when it names no place).
    ///
    /// # Errors
    /// An invalid schedule; [`ScheduleError::InvalidRecord`] when a record
    /// that does not decode is stored under the name (it is left alone);
    /// the bucket's errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// use asyncjobs::scheduler::Declaration;
    /// use asyncjobs::{ScheduledTask, Task};
    /// let template = Task::new("report:daily", &())?;
    /// let schedule = ScheduledTask::new("report_daily", "0 3 * * *", "REPORTS", &template)?
    ///     .with_declared_in("reports::daily");
    /// if let Declaration::Kept { stored } = client.declare_scheduled_task(&schedule).await? {
    ///     eprintln!("an operator's schedule {} is kept", stored.name);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn declare_scheduled_task(
        &self,
        task: &ScheduledTask,
    ) -> Result<Declaration, ScheduleError> {
        task.validate()?;
        let mut task = task.clone();
        if task.declared_in.is_none() {
            task.declared_in = Some("code".into());
        }
        let bucket = self.storage().config_bucket().await?;
        let key = task.key();
        let context = || format!("storing scheduled task {}", task.name);
        // each turn loses a race to another writer, which cannot go on for ever
        for _ in 0..20 {
            let written = bucket
                .written(&key, || format!("loading scheduled task {}", task.name))
                .await
                .map_err(Error::from)?;
            let Some(written) = written else {
                match bucket.create(&key, task.to_json().into(), context).await {
                    Ok(Some(_)) => return Ok(Declaration::Created),
                    Ok(None) => continue,
                    Err(e) => return Err(Error::from(e).into()),
                }
            };
            let stored = match decode_record(&task.name, &written.value) {
                Ok(stored) => stored,
                // not ours to overwrite: whoever wrote it decides
                Err(e) => return Err(e),
            };
            if stored.same_tasks_as(&task) {
                return Ok(Declaration::Unchanged);
            }
            if stored.declared_in.is_none() {
                return Ok(Declaration::Kept { stored });
            }
            // an operator's pause outlives a change of the code
            task.paused = stored.paused;
            let updated = bucket
                .update_if(&key, task.to_json().into(), written.revision, context)
                .await
                .map_err(Error::from)?;
            if updated.is_some() {
                return Ok(Declaration::Updated { previous: stored });
            }
        }
        Err(Error::Nats(crate::error::NatsError::new(
            crate::error::NatsErrorKind::JetStream,
            format!(
                "storing scheduled task {}: other writers changed it 20 times while it was written",
                task.name
            ),
        ))
        .into())
    }
}
