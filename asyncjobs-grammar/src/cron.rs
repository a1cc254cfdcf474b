//! The grammar of robfig/cron's standard parser, which the Go scheduler
//! uses: the five fields (each a bit set of the values it matches), the `@`
//! descriptors and the optional `TZ=`/`CRON_TZ=` prefix. The runtime
//! (`asyncjobs::cron`) computes fire times from what this parses; the
//! `#[task_handler(cron = ...)]` attribute checks its literal with
//! [`check_cron`] at compile time. Errors follow robfig/cron's wording.
//!
//! ```
//! use asyncjobs_grammar::cron::check_cron;
//! assert!(check_cron("0 3 * * *").is_ok());
//! assert!(check_cron("@every 1m").is_ok());
//! assert!(check_cron("* * * * 7").unwrap_err().contains("above maximum"));
//! ```

use std::time::Duration;

/// What a spec without its time zone prefix describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// A five-field schedule (or a descriptor such as `@daily`).
    Fields(Fields),
    /// `@every <duration>`, in whole seconds (at least one).
    Every(Duration),
}

/// Splits an optional leading `TZ=<zone> ` or `CRON_TZ=<zone> ` from
/// `spec`: the zone name (not looked up here) and the rest, trimmed.
pub fn split_time_zone(spec: &str) -> Result<(Option<&str>, &str), String> {
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').expect("prefix has '='");
        let Some(space) = spec.find(' ') else {
            return Err(format!(
                "missing schedule after time zone in {spec:?} (expected \"TZ=<zone> <schedule>\")"
            ));
        };
        return Ok((Some(&spec[eq + 1..space]), spec[space..].trim()));
    }
    Ok((None, spec))
}

/// Parses a spec without its time zone prefix: a descriptor, or exactly
/// five fields that can fire on some day.
pub fn parse_schedule(rest: &str) -> Result<Schedule, String> {
    if rest.starts_with('@') {
        return parse_descriptor(rest);
    }
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.len() != 5 {
        // robfig's `%s` of the field slice: `[a b c]`
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let f = Fields {
        minute: get_field(fields[0], MINUTES)?,
        hour: get_field(fields[1], HOURS)?,
        dom: get_field(fields[2], DOM)?,
        month: get_field(fields[3], MONTHS)?,
        dow: get_field(fields[4], DOW)?,
    };
    if !f.has_a_day() {
        return Err(format!(
            "the schedule {rest:?} never fires: none of its months has the day of the month it names"
        ));
    }
    Ok(Schedule::Fields(f))
}

/// Checks a whole spec as the runtime parses it, except that a time zone
/// name is not looked up (the runtime refuses an unknown zone when the
/// schedule is stored).
pub fn check_cron(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let (_, rest) = split_time_zone(spec)?;
    parse_schedule(rest).map(|_| ())
}

/// Set in a field's bits when the field was `*` or `?` (robfig's `starBit`).
pub const STAR: u64 = 1 << 63;

/// One field's range and the names its values may go by.
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

/// A field schedule: per field, the bits of the values it matches (bit
/// `v` for value `v`, plus [`STAR`] for `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    /// Minutes 0-59.
    pub minute: u64,
    /// Hours 0-23.
    pub hour: u64,
    /// Days of the month 1-31.
    pub dom: u64,
    /// Months 1-12.
    pub month: u64,
    /// Days of the week 0-6 (Sunday is 0).
    pub dow: u64,
}

impl Fields {
    /// True when some month of the schedule has a day it names (29 February
    /// counts). A weekday restriction always matches some day: with `*` for
    /// the day of the month both must match, otherwise either does.
    pub fn has_a_day(&self) -> bool {
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

/// An `@` descriptor: `@yearly` … `@hourly`, or `@every <Go duration>`.
fn parse_descriptor(spec: &str) -> Result<Schedule, String> {
    let all = |b: Bounds| bits(b.min, b.max, 1) | STAR;
    let f = |minute, hour, dom, month, dow| {
        Schedule::Fields(Fields {
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
                return Err(format!("unrecognized descriptor: {spec}"));
            };
            let nanos = crate::parse_go_duration(d)
                .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
            // Go: below one second becomes one second; sub-second part truncated.
            let secs = if nanos < 1_000_000_000 {
                1
            } else {
                (nanos / 1_000_000_000) as u64
            };
            Schedule::Every(Duration::from_secs(secs))
        }
    })
}

/// One field: a comma list of ranges.
fn get_field(field: &str, b: Bounds) -> Result<u64, String> {
    let mut out = 0;
    // like strings.FieldsFunc: empty parts are skipped
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        out |= get_range(expr, b)?;
    }
    Ok(out)
}

fn get_range(expr: &str, b: Bounds) -> Result<u64, String> {
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
            _ => return Err(format!("too many hyphens: {expr}")),
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
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn parse_int_or_name(expr: &str, b: Bounds) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_int(expr)
}

/// Go's `strconv.Atoi` followed by robfig's negative check.
fn parse_int(expr: &str) -> Result<u32, String> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    let valid = !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit());
    let num: i64 = if valid {
        expr.parse()
            .map_err(|_| format!("failed to parse int from {expr}: value out of range"))?
    } else {
        return Err(format!("failed to parse int from {expr}: invalid syntax"));
    };
    if num < 0 {
        return Err(format!("negative number ({num}) not allowed: {expr}"));
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
