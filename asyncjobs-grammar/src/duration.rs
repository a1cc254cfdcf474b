//! The one duration grammar of asyncjobs: Go's `time.ParseDuration`, and
//! Go's `time.Duration.String()` to print durations back.
//!
//! A duration is an optional sign followed by one or more decimal numbers,
//! each with an optional fraction and a unit: `300ms`, `1.5h`, `2h45m`,
//! `.5s`, `-2m`. The units are `ns`, `us` (or `µs`/`μs`), `ms`, `s`, `m` and
//! `h`; there are no days. `0` needs no unit. The value must fit in Go's
//! `time.Duration`, a signed 64-bit count of nanoseconds (about 292 years).
//!
//! Two families of error messages come out of one grammar:
//!
//! * [`parse_go_duration`] returns Go's own messages
//!   (`time: unknown unit "x" in duration "1x"`), for text that a Go
//!   process would also read (the cron `@every` descriptor, the HTTP API);
//! * [`parse_duration`] and [`parse_signed_duration`] return Go's reason
//!   followed by what the grammar looks like, for people typing flags and
//!   attribute values.
//!
//! The cases of `testdata/go_durations.txt` at the workspace root describe
//! the strict grammar; this module's tests run them against every parser.

use std::fmt::Write as _;
use std::time::Duration;

/// What the grammar looks like, appended to every error message.
const EXPECTED: &str =
    "expected a Go duration such as 300ms, 1.5h or 2h45m (units ns, us, ms, s, m, h)";

/// Why a string is not a Go duration, worded as Go's `time` package does.
enum Invalid {
    /// `time: invalid duration "…"`
    Syntax,
    /// `time: missing unit in duration "…"`
    MissingUnit,
    /// `time: unknown unit "…" in duration "…"`
    UnknownUnit(String),
}

impl Invalid {
    /// Go's message without its `time: ` prefix.
    fn describe(&self, input: &str) -> String {
        match self {
            Invalid::Syntax => format!("invalid duration {input:?}"),
            Invalid::MissingUnit => format!("missing unit in duration {input:?}"),
            Invalid::UnknownUnit(u) => format!("unknown unit {u:?} in duration {input:?}"),
        }
    }

    /// The message the public parsers return: Go's reason, then the grammar.
    fn explain(&self, input: &str) -> String {
        let days = match self {
            Invalid::UnknownUnit(u) if u == "d" => "; there are no days, write e.g. 24h or 48h",
            _ => "",
        };
        format!("{}: {EXPECTED}{days}", self.describe(input))
    }
}

/// The strict grammar, exactly as Go's `time.ParseDuration` (no trimming):
/// nanoseconds, or why not.
fn go_nanos(orig: &str) -> Result<i64, Invalid> {
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            s = &s[1..];
        }
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(Invalid::Syntax);
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(Invalid::Syntax);
        }
        // the integer part
        let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let pre = n > 0;
        let mut v: u128 = 0;
        for &c in &s[..n] {
            v = v * 10 + u128::from(c - b'0');
            if v > 1 << 63 {
                return Err(Invalid::Syntax);
            }
        }
        s = &s[n..];
        // the fraction; digits beyond what fits are ignored, like Go
        let mut frac: u128 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
            post = n > 0;
            let mut overflow = false;
            for &c in &s[..n] {
                if overflow {
                    continue;
                }
                if frac > (i64::MAX as u128 - 1) / 10 {
                    overflow = true;
                    continue;
                }
                frac = frac * 10 + u128::from(c - b'0');
                scale *= 10.0;
            }
            s = &s[n..];
        }
        if !pre && !post {
            return Err(Invalid::Syntax);
        }
        // the unit: everything up to the next number
        let n = s
            .iter()
            .take_while(|&&c| !(c == b'.' || c.is_ascii_digit()))
            .count();
        if n == 0 {
            return Err(Invalid::MissingUnit);
        }
        let unit: u128 = match &s[..n] {
            b"ns" => 1,
            // µs with U+00B5 (micro sign) or U+03BC (Greek mu)
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            other => {
                return Err(Invalid::UnknownUnit(
                    String::from_utf8_lossy(other).into_owned(),
                ))
            }
        };
        s = &s[n..];
        if v > (1u128 << 63) / unit {
            return Err(Invalid::Syntax);
        }
        v *= unit;
        if frac > 0 {
            // float64 arithmetic, as Go does
            v += (frac as f64 * (unit as f64 / scale)) as u128;
            if v > 1 << 63 {
                return Err(Invalid::Syntax);
            }
        }
        total += v;
        if total > 1 << 63 {
            return Err(Invalid::Syntax);
        }
    }
    if neg {
        return Ok((total as i128).wrapping_neg() as i64);
    }
    i64::try_from(total).map_err(|_| Invalid::Syntax)
}

/// Parses `s` exactly as Go's `time.ParseDuration` does, with Go's own error
/// messages: signed nanoseconds (Go's `time.Duration`).
///
/// Nothing is trimmed: `" 1s"` is an error, as it is in Go.
///
/// # Errors
///
/// Go's message, prefixed `time: `: `time: invalid duration "…"`,
/// `time: missing unit in duration "…"` or
/// `time: unknown unit "…" in duration "…"`.
///
/// ```
/// use asyncjobs_grammar::parse_go_duration;
///
/// assert_eq!(parse_go_duration("-1m30s"), Ok(-90_000_000_000));
/// assert_eq!(parse_go_duration("1µs"), Ok(1_000));
/// assert_eq!(
///     parse_go_duration("3d").unwrap_err(),
///     "time: unknown unit \"d\" in duration \"3d\""
/// );
/// assert_eq!(parse_go_duration(" 1s").unwrap_err(), "time: invalid duration \" 1s\"");
/// ```
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    go_nanos(s).map_err(|e| format!("time: {}", e.describe(s)))
}

/// Parses a non-negative duration in Go's syntax into a [`Duration`],
/// ignoring whitespace around the text.
///
/// # Errors
///
/// The message of [`parse_signed_duration`] for text outside the grammar,
/// and `invalid duration "…": must not be negative` (the input trimmed)
/// for a negative value.
///
/// ```
/// use asyncjobs_grammar::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration(" 90s\n"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1_500)));
/// assert_eq!(
///     parse_duration("-2m").unwrap_err(),
///     "invalid duration \"-2m\": must not be negative"
/// );
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let nanos = parse_signed_duration(s)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("invalid duration {:?}: must not be negative", s.trim()))
}

/// Parses a duration in Go's syntax that may be negative, ignoring
/// whitespace around the text: signed nanoseconds (Go's `time.Duration`).
///
/// # Errors
///
/// Go's reason without its `time: ` prefix, then the grammar:
/// `invalid duration "hour": expected a Go duration such as 300ms, 1.5h or
/// 2h45m (units ns, us, ms, s, m, h)`. The unit `d` adds
/// `; there are no days, write e.g. 24h or 48h`. The input is quoted
/// trimmed.
///
/// ```
/// use asyncjobs_grammar::parse_signed_duration;
///
/// assert_eq!(parse_signed_duration("\t-1s "), Ok(-1_000_000_000));
/// assert!(parse_signed_duration("2d")
///     .unwrap_err()
///     .ends_with("there are no days, write e.g. 24h or 48h"));
/// ```
pub fn parse_signed_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    go_nanos(s).map_err(|e| e.explain(s))
}

/// Formats `d` as Go's `time.Duration.String()` does.
///
/// Zero is `0s`. Below a second the largest of `ns`, `µs` (U+00B5) and `ms`
/// that keeps the integer part non-zero is used, with a fraction where one
/// is left; from a second on, hours and minutes (when non-zero, or when a
/// larger unit is) and seconds with their fraction. Trailing zeros of a
/// fraction are left out.
///
/// [`parse_duration`] reads the text back to the same value for every
/// duration up to Go's maximum (`i64::MAX` nanoseconds); longer durations
/// are printed the same way but do not parse.
///
/// ```
/// use asyncjobs_grammar::format_duration;
/// use std::time::Duration;
///
/// assert_eq!(format_duration(Duration::ZERO), "0s");
/// assert_eq!(format_duration(Duration::from_nanos(1_500)), "1.5\u{b5}s");
/// assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
/// assert_eq!(format_duration(Duration::from_secs(7200)), "2h0m0s");
/// ```
pub fn format_duration(d: Duration) -> String {
    let u = d.as_nanos();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (digits, unit) = match u {
            u if u < 1_000 => (0, "ns"),
            u if u < 1_000_000 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        let (int, frac) = split_fraction(u, digits);
        return format!("{int}{frac}{unit}");
    }
    let (secs, frac) = split_fraction(u, 9);
    let (mins, secs) = (secs / 60, secs % 60);
    let (hours, mins) = (mins / 60, mins % 60);
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || mins > 0 {
        let _ = write!(out, "{mins}m");
    }
    let _ = write!(out, "{secs}{frac}s");
    out
}

/// `v / 10^digits` and its fraction as `.5`-style text (trailing zeros and
/// a zero fraction left out).
fn split_fraction(v: u128, digits: u32) -> (u128, String) {
    let p = 10u128.pow(digits);
    let (int, frac) = (v / p, v % p);
    if frac == 0 {
        return (int, String::new());
    }
    let text = format!("{frac:0width$}", width = digits as usize);
    (int, format!(".{}", text.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The shared cases: (input, nanoseconds or `None` for an error).
    fn cases() -> Vec<(&'static str, Option<i64>)> {
        include_str!("../../testdata/go_durations.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let rest = l.strip_prefix('"').expect("case starts with a quote");
                let end = rest.rfind('"').expect("case has a closing quote");
                let expected = match rest[end + 1..].trim() {
                    "error" => None,
                    n => Some(n.parse().expect("nanoseconds or error")),
                };
                (&rest[..end], expected)
            })
            .collect()
    }

    #[test]
    fn the_shared_cases() {
        let cases = cases();
        assert!(cases.len() > 50);
        for (input, expected) in cases {
            assert_eq!(go_nanos(input).ok(), expected, "{input:?}");
            assert_eq!(parse_go_duration(input).ok(), expected, "{input:?}");
            if input.trim() == input {
                assert_eq!(parse_signed_duration(input).ok(), expected, "{input:?}");
                let unsigned = expected.and_then(|n| u64::try_from(n).ok());
                assert_eq!(
                    parse_duration(input).ok(),
                    unsigned.map(Duration::from_nanos),
                    "{input:?}"
                );
            }
        }
    }

    #[test]
    fn go_messages_for_cron() {
        assert_eq!(
            parse_go_duration(""),
            Err("time: invalid duration \"\"".into())
        );
        assert_eq!(
            parse_go_duration("5"),
            Err("time: missing unit in duration \"5\"".into())
        );
        assert_eq!(
            parse_go_duration("1d"),
            Err("time: unknown unit \"d\" in duration \"1d\"".into())
        );
    }

    #[test]
    fn messages_name_the_grammar() {
        assert_eq!(
            parse_duration("hour").unwrap_err(),
            "invalid duration \"hour\": expected a Go duration such as 300ms, 1.5h or 2h45m \
             (units ns, us, ms, s, m, h)"
        );
        assert_eq!(
            parse_duration("5x").unwrap_err(),
            "unknown unit \"x\" in duration \"5x\": expected a Go duration such as 300ms, 1.5h \
             or 2h45m (units ns, us, ms, s, m, h)"
        );
        assert!(parse_duration("1d").unwrap_err().contains("24h"));
        assert_eq!(
            parse_duration(" -5s ").unwrap_err(),
            "invalid duration \"-5s\": must not be negative"
        );
        assert!(parse_signed_duration("5")
            .unwrap_err()
            .contains("missing unit"));
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(parse_duration(" 30s\n"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_signed_duration("\t-1s "), Ok(-1_000_000_000));
        assert_eq!(parse_signed_duration(" 1.5h "), Ok(5_400_000_000_000));
    }

    #[test]
    fn formats_like_go() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_500, "1.5\u{b5}s"),
            (300_000_000, "300ms"),
            (1_000_001, "1.000001ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (5_400_000_000_000, "1h30m0s"),
            (9_900_000_000_000, "2h45m0s"),
            (3_723_004_005_006, "1h2m3.004005006s"),
            (172_800_000_000_000, "48h0m0s"),
            (i64::MAX as u64, "2562047h47m16.854775807s"),
        ] {
            assert_eq!(format_duration(Duration::from_nanos(nanos)), text);
            assert_eq!(parse_duration(text), Ok(Duration::from_nanos(nanos)));
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_duration(&s);
            let _ = parse_signed_duration(&s);
        }

        #[test]
        fn never_panics_on_near_misses(s in "[-+]?[0-9.]{0,25}(ns|us|µs|ms|s|m|h|d|x)?([0-9.]{0,25}(ns|us|ms|s|m|h))*") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn format_parses_back(nanos in 0..=i64::MAX as u64) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn format_parses_back_small(nanos in 0u64..10_000_000_000) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
