//! Schedules declared in code (docs/processing.md §2.20): what storing one
//! at worker start did ([`Declaration`]) and the name a
//! `#[task_handler(cron = ...)]` schedule gets ([`declared_schedule_name`]).

use super::ScheduledTask;

/// What [`Client::declare_scheduled_task`](crate::Client::declare_scheduled_task)
/// did with a schedule declared in code.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Declaration {
    /// No schedule had the name: the declared one is stored.
    Created,
    /// The same schedule is stored already (by an earlier start or another
    /// worker): nothing was written.
    Unchanged,
    /// A schedule declared in code (an earlier version of the program) had
    /// the name and other content: it is replaced.
    Updated {
        /// What was stored before.
        previous: ScheduledTask,
    },
    /// A schedule an operator, `ajc`, the HTTP API or Go created has the
    /// name and other content: it is kept and the declared one is not
    /// stored.
    Kept {
        /// The schedule kept.
        stored: ScheduledTask,
    },
}

/// The name of the schedule `#[task_handler("report:daily", cron = ...)]`
/// declares: the task type with every `:` replaced by `_`
/// (`report_daily`), since schedule names are KV keys, which cannot hold
/// `:`.
///
/// ```
/// assert_eq!(asyncjobs::scheduler::declared_schedule_name("report:daily"), "report_daily");
/// ```
pub fn declared_schedule_name(task_type: &str) -> String {
    task_type.replace(':', "_")
}
