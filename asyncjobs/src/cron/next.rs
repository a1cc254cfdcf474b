//! The next fire time of a field schedule: robfig/cron's
//! `SpecSchedule.Next`, with jiff doing the time zone arithmetic.

use asyncjobs_grammar::cron::{Fields, STAR};
use jiff::{SignedDuration, Timestamp, ToSpan, ZonedDateTime};

/// Whether `bits` holds value `v`.
fn has(bits: u64, v: i8) -> bool {
    bits & (1u64 << (v as u32)) != 0
}

/// Whether `t`'s day matches: both day fields when either is `*`, else
/// either (robfig's `dayMatches`).
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
pub(super) fn next_fields(f: &Fields, t: ZonedDateTime) -> Option<ZonedDateTime> {
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
