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

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, ZonedDateTime};
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

fn err(msg: impl Into<String>) -> CronError {
    CronError(msg.into())
}

/// Set in a field's bits when the field was `*` or `?` (robfig's `starBit`).
const STAR: u64 = 1 << 63;

#[derive(Clone, Copy)]
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    Every(Duration),
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
        let mut rest = spec;
        let mut zone = None;
        let mut zone_name = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let eq = spec.find('=').expect("prefix has '='");
            let Some(space) = spec.find(' ') else {
                return Err(err(format!(
                    "missing schedule after time zone in {spec:?} (expected \"TZ=<zone> <schedule>\")"
                )));
            };
            let name = &spec[eq + 1..space];
            zone = Some(load_location(name)?);
            zone_name = Some(name.to_string());
            rest = spec[space..].trim();
        }
        let kind = if rest.starts_with('@') {
            parse_descriptor(rest)?
        } else {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() != 5 {
                // robfig's `%s` of the field slice: `[a b c]`
                return Err(err(format!(
                    "expected exactly 5 fields, found {}: [{}]",
                    fields.len(),
                    fields.join(" ")
                )));
            }
            let f = Fields {
                minute: get_field(fields[0], MINUTES)?,
                hour: get_field(fields[1], HOURS)?,
                dom: get_field(fields[2], DOM)?,
                month: get_field(fields[3], MONTHS)?,
                dow: get_field(fields[4], DOW)?,
            };
            if !f.has_a_day() {
                return Err(err(format!(
                    "the schedule {rest:?} never fires: none of its months has the day of the month it names"
                )));
            }
            Kind::Fields(f)
        };
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
                let next = next_fields(f, ZonedDateTime::new(ts, tz))?;
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

fn parse_descriptor(spec: &str) -> Result<Kind, CronError> {
    let all = |b: Bounds| bits(b.min, b.max, 1) | STAR;
    let f = |minute, hour, dom, month, dow| {
        Kind::Fields(Fields {
            minute,
            hour,
            dom,
            month,
            dow,
        })
    };
    Ok(match spec {
        "@yearly" | "@annually" => f(1, 1, 1 << 1, 1 << 1, all(DOW)),
        "@monthly" => f(1, 1, 1 << 1, all(MONTHS), all(DOW)),
        "@weekly" => f(1, 1, all(DOM), all(MONTHS), 1),
        "@daily" | "@midnight" => f(1, 1, all(DOM), all(MONTHS), all(DOW)),
        "@hourly" => f(1, all(HOURS), all(DOM), all(MONTHS), all(DOW)),
        _ => {
            let Some(d) = spec.strip_prefix("@every ") else {
                return Err(err(format!("unrecognized descriptor: {spec}")));
            };
            let nanos = crate::wire::parse_go_duration(d)
                .map_err(|e| err(format!("failed to parse duration {spec}: {e}")))?;
            // Go: below one second becomes one second; sub-second part truncated.
            let secs = if nanos < 1_000_000_000 {
                1
            } else {
                (nanos / 1_000_000_000) as u64
            };
            Kind::Every(Duration::from_secs(secs))
        }
    })
}

fn get_field(field: &str, b: Bounds) -> Result<u64, CronError> {
    let mut out = 0;
    // like strings.FieldsFunc: empty parts are skipped
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        out |= get_range(expr, b)?;
    }
    Ok(out)
}

fn get_range(expr: &str, b: Bounds) -> Result<u64, CronError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        start = b.min;
        end = b.max;
        extra = STAR;
    } else {
        start = parse_int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], b)?,
            _ => return Err(err(format!("too many hyphens: {expr}"))),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step"
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(err(format!("too many slashes: {expr}"))),
    };
    if start < b.min {
        return Err(err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        )));
    }
    if end > b.max {
        return Err(err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        )));
    }
    if start > end {
        return Err(err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        )));
    }
    if step == 0 {
        return Err(err(format!(
            "step of range should be a positive number: {expr}"
        )));
    }
    Ok(bits(start, end, step) | extra)
}

fn parse_int_or_name(expr: &str, b: Bounds) -> Result<u32, CronError> {
    let lower = expr.to_ascii_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_int(expr)
}

/// Go's `strconv.Atoi` followed by robfig's negative check.
fn parse_int(expr: &str) -> Result<u32, CronError> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    let valid = !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit());
    let num: i64 = if valid {
        expr.parse().map_err(|_| {
            err(format!(
                "failed to parse int from {expr}: value out of range"
            ))
        })?
    } else {
        return Err(err(format!(
            "failed to parse int from {expr}: invalid syntax"
        )));
    };
    if num < 0 {
        return Err(err(format!("negative number ({num}) not allowed: {expr}")));
    }
    // anything this large is above every field's maximum anyway
    Ok(num.min(u32::MAX as i64) as u32)
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    let mut out = 0u64;
    let mut i = min;
    while i <= max {
        out |= 1 << i;
        match i.checked_add(step) {
            Some(n) => i = n,
            None => break,
        }
    }
    out
}

fn has(bits: u64, v: i8) -> bool {
    bits & (1u64 << (v as u32)) != 0
}

impl Fields {
    /// True when some month of the schedule has a day it names (29 February
    /// counts). A weekday restriction always matches some day: with `*` for
    /// the day of the month both must match, otherwise either does.
    fn has_a_day(&self) -> bool {
        const DAYS: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if self.dow & STAR == 0 {
            return true;
        }
        (1..=12u32).any(|m| {
            self.month & (1u64 << m) != 0
                && (1..=DAYS[m as usize]).any(|d| self.dom & (1u64 << d) != 0)
        })
    }
}

fn day_matches(f: &Fields, t: &ZonedDateTime) -> bool {
    let dom = has(f.dom, t.day());
    let dow = has(f.dow, t.weekday().to_sunday_zero_offset());
    if f.dom & STAR != 0 || f.dow & STAR != 0 {
        dom && dow
    } else {
        dom || dow
    }
}

/// Wall-clock midnight (or `h`:00) of `t`'s day, resolved like Go's `time.Date`.
fn wall(t: &ZonedDateTime, hour: i8) -> Option<ZonedDateTime> {
    t.date()
        .at(hour, 0, 0, 0)
        .to_zoned_datetime(t.time_zone().clone())
        .ok()
}

/// robfig/cron's `SpecSchedule.Next`, with jiff doing the zone arithmetic:
/// calendar steps (months, days) keep the wall clock, hour and minute steps
/// are absolute, so DST gaps are skipped and repeated hours repeat as in Go.
fn next_fields(f: &Fields, t: ZonedDateTime) -> Option<ZonedDateTime> {
    let sec = |n: i64| SignedDuration::from_secs(n);
    // the upcoming whole second
    let nanos = t.timestamp().subsec_nanosecond() as i64;
    let mut t = t
        .checked_add(SignedDuration::new(1, 0) - SignedDuration::from_nanos(nanos))
        .ok()?;
    let mut added = false;
    let year_limit = t.year() + 5;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !has(f.month, t.month()) {
            if !added {
                added = true;
                t = t
                    .date()
                    .first_of_month()
                    .at(0, 0, 0, 0)
                    .to_zoned_datetime(t.time_zone().clone())
                    .ok()?;
            }
            t = t.checked_add(1.month()).ok()?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(f, &t) {
            if !added {
                added = true;
                t = wall(&t, 0)?;
            }
            t = t.checked_add(1.day()).ok()?;
            // the hour may no longer be midnight because of DST
            let h = t.hour() as i64;
            if h != 0 {
                t = if h > 12 {
                    t.checked_add(sec((24 - h) * 3600)).ok()?
                } else {
                    t.checked_add(sec(-h * 3600)).ok()?
                };
            }
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !has(f.hour, t.hour()) {
            if !added {
                added = true;
                t = wall(&t, t.hour())?;
            }
            t = t.checked_add(sec(3600)).ok()?;
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(f.minute, t.minute()) {
            if !added {
                added = true;
                let s = t.timestamp().as_second();
                t = ZonedDateTime::new(
                    Timestamp::from_second(s - s.rem_euclid(60)).ok()?,
                    t.time_zone().clone(),
                );
            }
            t = t.checked_add(sec(60)).ok()?;
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        // the (implicit) seconds field is always 0
        while t.second() != 0 {
            if !added {
                added = true;
                let s = t.timestamp().as_second();
                t = ZonedDateTime::new(Timestamp::from_second(s).ok()?, t.time_zone().clone());
            }
            t = t.checked_add(sec(1)).ok()?;
            if t.second() == 0 {
                continue 'wrap;
            }
        }
        return Some(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(spec: &str, after: OffsetDateTime) -> OffsetDateTime {
        CronSchedule::parse(spec)
            .unwrap()
            .next_after(after)
            .unwrap()
    }

    fn parse_err(spec: &str) -> String {
        CronSchedule::parse(spec).unwrap_err().to_string()
    }

    #[test]
    fn rejects_what_robfig_rejects() {
        assert_eq!(parse_err(""), "empty spec string");
        assert_eq!(
            parse_err("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert!(parse_err("0 * * * * *").starts_with("expected exactly 5 fields, found 6"));
        assert_eq!(
            parse_err("* * * * 7"),
            "end of range (7) above maximum (6): 7"
        );
        assert_eq!(
            parse_err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            parse_err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            parse_err("5-3 * * * *"),
            "beginning of range (5) beyond end of range (3): 5-3"
        );
        assert_eq!(
            parse_err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(parse_err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(parse_err("1/2/3 * * * *"), "too many slashes: 1/2/3");
        assert!(parse_err("x * * * *").starts_with("failed to parse int from x"));
        assert!(parse_err("* * L * *").starts_with("failed to parse int from L"));
        assert!(parse_err("* * * * 1#2").starts_with("failed to parse int from 1#2"));
        assert_eq!(parse_err("@often"), "unrecognized descriptor: @often");
        assert_eq!(parse_err("@DAILY"), "unrecognized descriptor: @DAILY");
        assert!(parse_err("@every").starts_with("unrecognized descriptor"));
        assert_eq!(
            parse_err("@every 1x"),
            "failed to parse duration @every 1x: time: unknown unit \"x\" in duration \"1x\""
        );
        assert!(parse_err("TZ=Nowhere/Special * * * * *")
            .starts_with("provided bad location Nowhere/Special"));
        assert!(parse_err("TZ=UTC").starts_with("missing schedule after time zone"));
        assert!(CronSchedule::parse("-1 * * * *").is_err());
    }

    #[test]
    fn accepts_the_standard_forms() {
        for spec in [
            "* * * * *",
            "? ? ? ? ?",
            "*/5 * * * *",
            "0 9-17/2 * JAN-jun mon-FRI",
            "5/15 * 1,15 * SUN",
            "0 0 1 1 *",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
            "@every 1s",
            "@every 1h30m",
            "TZ=Europe/Berlin 0 9 * * *",
            "CRON_TZ=America/New_York 0 9 * * *",
            "TZ=UTC @every 5m",
            "   1  2 3 4 5  ",
        ] {
            assert!(CronSchedule::parse(spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn fire_times() {
        let t = datetime!(2024-06-01 12:00:30.5 UTC); // a Saturday
        assert_eq!(next("TZ=UTC * * * * *", t), datetime!(2024-06-01 12:01 UTC));
        assert_eq!(
            next("TZ=UTC */5 * * * *", t),
            datetime!(2024-06-01 12:05 UTC)
        );
        assert_eq!(
            next("TZ=UTC 5/20 * * * *", t),
            datetime!(2024-06-01 12:05 UTC)
        );
        assert_eq!(next("TZ=UTC @hourly", t), datetime!(2024-06-01 13:00 UTC));
        assert_eq!(next("TZ=UTC @daily", t), datetime!(2024-06-02 00:00 UTC));
        assert_eq!(next("TZ=UTC @weekly", t), datetime!(2024-06-02 00:00 UTC));
        assert_eq!(next("TZ=UTC @monthly", t), datetime!(2024-07-01 00:00 UTC));
        assert_eq!(next("TZ=UTC @yearly", t), datetime!(2025-01-01 00:00 UTC));
        // strictly after
        assert_eq!(
            next("TZ=UTC 0 12 * * *", datetime!(2024-06-01 12:00 UTC)),
            datetime!(2024-06-02 12:00 UTC)
        );
        // DOM and DOW both restricted: either matches (1st of July or a Monday)
        assert_eq!(
            next("TZ=UTC 0 0 1 * MON", t),
            datetime!(2024-06-03 00:00 UTC)
        );
        assert_eq!(
            next("TZ=UTC 0 0 1 * MON", datetime!(2024-06-30 12:00 UTC)),
            datetime!(2024-07-01 00:00 UTC)
        );
        // one of them unrestricted: both must match
        assert_eq!(next("TZ=UTC 0 0 1 * *", t), datetime!(2024-07-01 00:00 UTC));
        assert_eq!(
            next("TZ=UTC 0 0 * * MON", t),
            datetime!(2024-06-03 00:00 UTC)
        );
        // `*/1` keeps the star, `*/2` does not
        assert_eq!(
            next("TZ=UTC 0 0 */1 * MON", t),
            datetime!(2024-06-03 00:00 UTC)
        );
        assert_eq!(
            next("TZ=UTC 0 0 */2 * MON", t),
            datetime!(2024-06-03 00:00 UTC)
        );
        assert_eq!(
            next("TZ=UTC 0 0 */2 * MON", datetime!(2024-06-03 12:00 UTC)),
            datetime!(2024-06-05 00:00 UTC)
        );
        // leap day
        assert_eq!(
            next("TZ=UTC 0 0 29 2 *", t),
            datetime!(2028-02-29 00:00 UTC)
        );
        // never: refused when parsed (issue 14), see schedules_that_never_fire_are_refused
        assert!(CronSchedule::parse("TZ=UTC 0 0 30 2 *").is_err());
    }

    #[test]
    fn time_zones_and_dst() {
        // 09:00 in Berlin (UTC+2 in summer)
        assert_eq!(
            next(
                "TZ=Europe/Berlin 0 9 * * *",
                datetime!(2024-06-01 12:00 UTC)
            ),
            datetime!(2024-06-02 07:00 UTC)
        );
        // spring forward in New York, 2024-03-10: 02:30 does not exist
        assert_eq!(
            next(
                "TZ=America/New_York 30 2 * * *",
                datetime!(2024-03-09 12:00 UTC)
            ),
            datetime!(2024-03-11 06:30 UTC)
        );
        // fall back, 2024-11-03: 01:30 happens twice and Go fires at both
        let first = next(
            "TZ=America/New_York 30 1 * * *",
            datetime!(2024-11-03 04:00 UTC),
        );
        assert_eq!(first, datetime!(2024-11-03 05:30 UTC));
        let second = next("TZ=America/New_York 30 1 * * *", first);
        assert_eq!(second, datetime!(2024-11-03 06:30 UTC));
    }

    #[test]
    fn every() {
        let s = CronSchedule::parse("@every 10s").unwrap();
        assert_eq!(s.interval(), Some(Duration::from_secs(10)));
        assert_eq!(
            s.next_after(datetime!(2024-06-01 12:00:05.5 UTC)),
            Some(datetime!(2024-06-01 12:00:10 UTC))
        );
        assert_eq!(
            s.next_after(datetime!(2024-06-01 12:00:10 UTC)),
            Some(datetime!(2024-06-01 12:00:20 UTC))
        );
        let s = s.with_anchor(datetime!(2024-06-01 12:00:03.9 UTC));
        assert_eq!(
            s.next_after(datetime!(2024-06-01 12:00:05.5 UTC)),
            Some(datetime!(2024-06-01 12:00:13 UTC))
        );
        // before the anchor
        assert_eq!(
            s.next_after(datetime!(2024-06-01 11:59:59 UTC)),
            Some(datetime!(2024-06-01 12:00:03 UTC))
        );
        for (spec, secs) in [
            ("@every 100ms", 1),
            ("@every 0s", 1),
            ("@every -5s", 1),
            ("@every 1.9s", 1),
            ("@every 2m0.5s", 120),
            ("@every 1h", 3600),
        ] {
            assert_eq!(
                CronSchedule::parse(spec).unwrap().interval(),
                Some(Duration::from_secs(secs)),
                "{spec}"
            );
        }
    }

    #[test]
    fn schedules_that_never_fire_are_refused() {
        for spec in [
            "0 0 30 2 *",
            "0 0 31 4 *",
            "0 0 31 2,4,6,9,11 *",
            "0 0 30-31 2 ?",
        ] {
            let e = CronSchedule::parse(spec).unwrap_err().to_string();
            assert!(e.contains("never fires"), "{spec}: {e}");
        }
        for spec in [
            "0 0 29 2 *",
            "0 0 31 * *",
            "0 0 30 2 1",
            "0 0 31 3,4 *",
            "0 0 * 2 *",
        ] {
            let s = CronSchedule::parse(spec).unwrap();
            assert!(
                s.next_after(OffsetDateTime::now_utc()).is_some(),
                "{spec} fires"
            );
        }
    }
}
