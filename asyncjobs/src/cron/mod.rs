//! Cron schedules exactly as the Go scheduler reads them (docs/processing.md §7.1).
//!
//! The Go implementation parses schedules with the robfig/cron v3 "standard"
//! parser; this module accepts and rejects the same specs and computes the
//! same fire times:
//!
//! * exactly five fields: minute (0-59), hour (0-23), day of month (1-31),
//!   month (1-12 or `JAN`-`DEC`), day of week (0-6 or `SUN`-`SAT`; 7 is
//!   rejected); no seconds field;
//! * per field `*`, `?` (same as `*`), `a`, `a-b`, `*/n`, `a-b/n`, `a/n`
//!   (= `a` through the maximum, step `n`) and comma lists; names are
//!   case-insensitive;
//! * when day of month or day of week is unrestricted (`*`, `?`, `*/1`) both
//!   must match, when both are restricted either may match;
//! * `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
//!   `@hourly` and `@every <Go duration>` (sub-second part truncated,
//!   minimum one second);
//! * an optional leading `TZ=<zone> ` or `CRON_TZ=<zone> `; otherwise times
//!   are evaluated in the process's local time zone (like Go's `time.Local`:
//!   `$TZ`, else `/etc/localtime`).
//!
//! One deliberate difference: Go runs `@every d` at fixed intervals from the
//! moment its scheduler started, so two schedulers disagree about the
//! slots. Here the slots are `anchor + k·d` for a shared anchor (see
//! [`CronSchedule::with_anchor`]; the scheduler uses the schedule's
//! `created_at`), so every instance computes the same fire times.
//!
//! ```
//! use asyncjobs::cron::CronSchedule;
//! use time::macros::datetime;
//!
//! let s = CronSchedule::parse("TZ=UTC 30 9 * * MON-FRI").unwrap();
//! // Saturday 2024-06-01 → the following Monday 09:30 UTC
//! let next = s.next_after(datetime!(2024-06-01 12:00 UTC)).unwrap();
//! assert_eq!(next, datetime!(2024-06-03 09:30 UTC));
//!
//! assert!(CronSchedule::parse("* * * * 7").is_err());
//! assert_eq!(
//!     CronSchedule::parse("@every 1m30s").unwrap().interval(),
//!     Some(std::time::Duration::from_secs(90))
//! );
//! ```

// the five-field grammar and the descriptors are asyncjobs-grammar's
// (shared with the `cron = ...` attribute); the next fire time of a field
// schedule (next)
mod next;
#[cfg(test)]
mod tests;

use asyncjobs_grammar::cron::{parse_schedule, split_time_zone, Schedule as Kind};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;

/// Why a spec was rejected. The message follows robfig/cron's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(String);

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CronError {}

pub(super) fn err(msg: impl Into<String>) -> CronError {
    CronError(msg.into())
}

/// A parsed schedule; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct CronSchedule {
    spec: String,
    kind: Kind,
    /// `None`: the process's local time zone, looked up when times are computed.
    zone: Option<TimeZone>,
    zone_name: Option<String>,
    /// Unix seconds `@every` slots are aligned to.
    anchor: i64,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.zone_name == other.zone_name && self.anchor == other.anchor
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl std::str::FromStr for CronSchedule {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, CronError> {
        CronSchedule::parse(s)
    }
}

impl CronSchedule {
    /// Parses a spec with the rules of robfig/cron's standard parser.
    pub fn parse(spec: &str) -> Result<CronSchedule, CronError> {
        if spec.is_empty() {
            return Err(err("empty spec string"));
        }
        let (zone_name, rest) = split_time_zone(spec).map_err(err)?;
        let mut zone = zone_name.map(load_location).transpose()?;
        let mut zone_name = zone_name.map(str::to_string);
        let kind = parse_schedule(rest).map_err(err)?;
        // `@every` ignores the zone: intervals are absolute.
        if matches!(kind, Kind::Every(_)) {
            zone = None;
            zone_name = None;
        }
        Ok(CronSchedule {
            spec: spec.to_string(),
            kind,
            zone,
            zone_name,
            anchor: 0,
        })
    }

    /// The spec as given.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The interval of an `@every` schedule.
    pub fn interval(&self) -> Option<Duration> {
        match self.kind {
            Kind::Every(d) => Some(d),
            Kind::Fields(_) => None,
        }
    }

    /// The zone named by a `TZ=`/`CRON_TZ=` prefix (`None`: local time).
    pub fn time_zone(&self) -> Option<&str> {
        self.zone_name.as_deref()
    }

    /// Aligns `@every` slots to `anchor` (truncated to whole seconds):
    /// they are `anchor + k·interval`. The default anchor is the Unix epoch.
    /// Has no effect on other schedules.
    pub fn with_anchor(mut self, anchor: OffsetDateTime) -> Self {
        self.anchor = anchor.unix_timestamp();
        self
    }

    /// The first fire time strictly after `after`, or `None` when the
    /// schedule does not fire within five years, as Go. (Specs that can
    /// never fire, such as `0 0 30 2 *`, are refused by [`CronSchedule::parse`].)
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        match &self.kind {
            Kind::Every(d) => {
                let d = d.as_secs() as i64;
                let after_s = after.unix_timestamp();
                // slots are whole seconds: anchor + k*d > after
                let k = (after_s - self.anchor).div_euclid(d) + 1;
                let slot = self.anchor.checked_add(k.checked_mul(d)?)?;
                OffsetDateTime::from_unix_timestamp(slot).ok()
            }
            Kind::Fields(f) => {
                let tz = match &self.zone {
                    Some(tz) => tz.clone(),
                    None => TimeZone::system(),
                };
                let ts = Timestamp::from_nanosecond(after.unix_timestamp_nanos()).ok()?;
                let next = next::next_fields(f, ZonedDateTime::new(ts, tz))?;
                OffsetDateTime::from_unix_timestamp_nanos(next.timestamp().as_nanosecond()).ok()
            }
        }
    }
}

fn load_location(name: &str) -> Result<TimeZone, CronError> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        "Local" => Ok(TimeZone::system()),
        _ => TimeZone::get(name).map_err(|e| err(format!("provided bad location {name}: {e}"))),
    }
}
