//! Human formats shared by every command (docs/interfaces.md §1.5): Go's time
//! layout, humanized durations, IEC sizes and thousands separators, plus the
//! Go duration syntax accepted by flags.

use std::time::Duration;
use time::OffsetDateTime;

/// A duration given on the command line in Go syntax (`1h30m`, `90s`,
/// `-1s`), kept as signed nanoseconds so sentinel values can be negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub i64);

impl GoDuration {
    /// The duration, or an error naming `flag` when it is negative.
    pub fn non_negative(self, flag: &str) -> Result<Duration, String> {
        if self.0 < 0 {
            return Err(format!("{flag} must not be negative"));
        }
        Ok(Duration::from_nanos(self.0 as u64))
    }
}

/// clap value parser for [`GoDuration`]: the library's one duration
/// grammar ([`asyncjobs::parse_signed_duration`]), negative values allowed.
pub fn parse_duration(s: &str) -> Result<GoDuration, String> {
    asyncjobs::parse_signed_duration(s).map(GoDuration)
}

/// Go's `humanizeDuration` of the Go `ajc`: `forever` for 0, `never` for
/// the largest duration, `1y2d3h4m5s`-style above a minute and seconds with
/// two decimals below.
pub fn humanize_nanos(d: i64) -> String {
    if d == i64::MAX {
        return "never".into();
    }
    if d == 0 {
        return "forever".into();
    }
    // integer division truncates toward zero, like Go's
    let secs = d / 1_000_000_000;
    let mins = secs / 60;
    let hrs = mins / 60;
    let days = hrs / 24;
    let years = days / 365;
    if years > 0 {
        format!(
            "{years}y{}d{}h{}m{}s",
            days % 365,
            hrs % 24,
            mins % 60,
            secs % 60
        )
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hrs % 24, mins % 60, secs % 60)
    } else if hrs > 0 {
        format!("{hrs}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{:.2}s", d as f64 / 1e9)
    }
}

/// [`humanize_nanos`] of a [`Duration`] (saturating at "never").
pub fn humanize(d: Duration) -> String {
    humanize_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The time elapsed since `t`, humanized (negative when `t` is in the future).
pub fn age(t: OffsetDateTime) -> String {
    let nanos = (OffsetDateTime::now_utc() - t).whole_nanoseconds();
    humanize_nanos(nanos.clamp(i64::MIN as i128, (i64::MAX - 1) as i128) as i64)
}

/// IEC size as go-humanize's `IBytes` prints it: `9 B`, `2.2 KiB`, `15 MiB`.
pub fn iec_bytes(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if s < 10 {
        return format!("{s} B");
    }
    let base = 1024f64;
    let e = ((s as f64).ln() / base.ln()).floor();
    let suffix = SIZES[(e as usize).min(SIZES.len() - 1)];
    let val = ((s as f64) / base.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

/// A limit in a human table or block: `unlimited` when it is off (zero or
/// negative, as JetStream reports it), else [`comma`]. `--json` keeps the
/// number (docs/go-differences.md §67).
pub fn limit(n: i64) -> String {
    if n <= 0 {
        "unlimited".into()
    } else {
        comma(n)
    }
}

/// An integer with commas between thousands (`1,234,567`).
pub fn comma(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// [`comma`] of an unsigned count.
pub fn ucomma(n: u64) -> String {
    comma(i64::try_from(n).unwrap_or(i64::MAX))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The zone as Go's `MST` layout element prints a zone without a name:
/// `UTC` for UTC, else `+0200`-style.
fn zone(t: OffsetDateTime) -> String {
    let off = t.offset();
    if off.is_utc() {
        return "UTC".into();
    }
    let secs = off.whole_seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.abs();
    format!("{sign}{:02}{:02}", secs / 3600, (secs % 3600) / 60)
}

/// Go layout `02 Jan 06 15:04:05 MST`, in the time's own offset (stored
/// times are UTC, so this normally ends in `UTC`).
pub fn go_time(t: OffsetDateTime) -> String {
    format!(
        "{:02} {} {:02} {:02}:{:02}:{:02} {}",
        t.day(),
        MONTHS[(u8::from(t.month()) - 1) as usize],
        t.year().rem_euclid(100),
        t.hour(),
        t.minute(),
        t.second(),
        zone(t)
    )
}

/// Go layout `15:04:05`.
pub fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// RFC 3339 as Go writes times in JSON (nanoseconds, trailing zeros trimmed).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations() {
        assert_eq!(humanize_nanos(0), "forever");
        assert_eq!(humanize_nanos(i64::MAX), "never");
        assert_eq!(humanize_nanos(1_500_000_000), "1.50s");
        assert_eq!(humanize_nanos(60_000_000_000), "1m0s");
        assert_eq!(humanize_nanos(3_600_000_000_000), "1h0m0s");
        assert_eq!(humanize_nanos(90_061_000_000_000), "1d1h1m1s");
        assert_eq!(humanize_nanos(365 * 86_400_000_000_000 + 1), "1y0d0h0m0s");
        assert_eq!(humanize_nanos(-5_000_000_000), "-5.00s");
    }

    #[test]
    fn sizes() {
        assert_eq!(iec_bytes(0), "0 B");
        assert_eq!(iec_bytes(9), "9 B");
        assert_eq!(iec_bytes(100), "100 B");
        assert_eq!(iec_bytes(1024), "1.0 KiB");
        assert_eq!(iec_bytes(2250), "2.2 KiB");
        assert_eq!(iec_bytes(15 * 1024 * 1024), "15 MiB");
    }

    #[test]
    fn commas() {
        assert_eq!(comma(0), "0");
        assert_eq!(comma(999), "999");
        assert_eq!(comma(1000), "1,000");
        assert_eq!(comma(1234567), "1,234,567");
        assert_eq!(comma(-1234), "-1,234");
    }

    #[test]
    fn times() {
        assert_eq!(
            go_time(datetime!(2022-02-02 13:04:26 UTC)),
            "02 Feb 22 13:04:26 UTC"
        );
        assert_eq!(
            go_time(datetime!(2022-02-02 13:04:26 +02:00)),
            "02 Feb 22 13:04:26 +0200"
        );
        assert_eq!(clock(datetime!(2022-02-02 03:04:05 UTC)), "03:04:05");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1h").unwrap(), GoDuration(3_600_000_000_000));
        assert_eq!(parse_duration("-1s").unwrap(), GoDuration(-1_000_000_000));
        assert!(parse_duration("5x")
            .unwrap_err()
            .contains("expected a Go duration"));
        assert!(parse_duration("1d").is_err());
        assert_eq!(
            parse_duration(" 1.5h ").unwrap(),
            GoDuration(5_400_000_000_000)
        );
        assert!(parse_duration("").is_err());
        assert!(GoDuration(-1).non_negative("--age").is_err());
    }
}
