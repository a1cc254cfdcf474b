//! The cron grammar and fire times, against what robfig/cron does.

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
