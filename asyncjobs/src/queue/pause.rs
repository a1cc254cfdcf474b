//! A paused queue (docs/storage.md §4.4): JetStream pauses the queue's
//! `WORKERS` consumer until a time, so no worker of the queue, Go's
//! included, gets an item until then or until it is resumed; enqueueing
//! goes on. Needs nats-server 2.11 or later.

use time::OffsetDateTime;

/// The end a pause "until resumed" is stored with: JetStream pauses only
/// until a time, so such a pause runs to 2200-01-01T00:00:00Z. Any end at
/// or after it reads back as "until resumed".
pub const UNTIL_RESUMED: OffsetDateTime = time::macros::datetime!(2200-01-01 00:00 UTC);

/// The `WORKERS` consumer's metadata key holding when the pause began
/// (RFC 3339), written by a consumer update just before the pause itself
/// (kept when a pause is extended; docs/storage.md §4.4).
pub(crate) const PAUSED_SINCE_KEY: &str = "asyncjobs_paused_since";

/// How long a queue stays paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseUntil {
    /// Until [`Client::resume_queue`](crate::Client::resume_queue).
    Resumed,
    /// Until this time (then it resumes by itself), or until resumed
    /// sooner.
    Time(OffsetDateTime),
}

impl PauseUntil {
    /// The pause's end as JetStream stores it ([`UNTIL_RESUMED`] for
    /// [`PauseUntil::Resumed`]).
    pub(crate) fn stored(self) -> OffsetDateTime {
        match self {
            PauseUntil::Resumed => UNTIL_RESUMED,
            PauseUntil::Time(t) => t,
        }
    }

    /// The pause a stored end means.
    pub(crate) fn from_stored(t: OffsetDateTime) -> PauseUntil {
        if t >= UNTIL_RESUMED {
            PauseUntil::Resumed
        } else {
            PauseUntil::Time(t)
        }
    }
}

impl std::fmt::Display for PauseUntil {
    /// `until resumed`, or `until <RFC 3339 time>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PauseUntil::Resumed => f.write_str("until resumed"),
            PauseUntil::Time(t) => write!(f, "until {}", crate::wire::format_time(t)),
        }
    }
}

/// A queue's pause, as [`QueueInfo::paused`](crate::QueueInfo::paused)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuePause {
    /// When it began; `None` when the consumer was paused by another tool
    /// (the `nats` CLI, a Go program) that does not record it.
    pub since: Option<OffsetDateTime>,
    /// When it ends.
    pub until: PauseUntil,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_end_at_or_after_the_marker_reads_as_until_resumed() {
        assert_eq!(PauseUntil::from_stored(UNTIL_RESUMED), PauseUntil::Resumed);
        assert_eq!(
            PauseUntil::from_stored(datetime!(2300-01-01 00:00 UTC)),
            PauseUntil::Resumed
        );
        let t = datetime!(2026-12-07 10:00 UTC);
        assert_eq!(PauseUntil::from_stored(t), PauseUntil::Time(t));
        assert_eq!(PauseUntil::Time(t).stored(), t);
        assert_eq!(PauseUntil::Resumed.stored(), UNTIL_RESUMED);
        assert_eq!(PauseUntil::Resumed.to_string(), "until resumed");
        assert_eq!(
            PauseUntil::Time(t).to_string(),
            format!("until {}", crate::wire::format_time(&t))
        );
    }
}
