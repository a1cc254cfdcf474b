//! Go-compatible text and JSON encodings: how asyncjobs writes and reads
//! times, byte payloads and durations so that Go's `asyncjobs` (Choria
//! Async Jobs) reads what it writes and the other way round.
//!
//! This module owns three things:
//!
//! * **Times.** Go's `time.Time.MarshalJSON` writes RFC 3339 with up to
//!   nine fractional digits, trailing zeros trimmed, and `Z` for UTC:
//!   [`format_time`] writes that, [`parse_time`] reads any RFC 3339 time,
//!   and [`parse_time_bound`] also reads the shorter forms people type in
//!   filters (`2026-12-03`, `2026-12-03T14:30`).
//! * **Durations written by people** (flags, `#[task_handler]` attributes,
//!   queue settings, cron `@every`), in Go's `time.ParseDuration` syntax:
//!   [`parse_duration`], [`parse_signed_duration`] and [`format_duration`]
//!   (also at the crate root), and [`parse_go_duration`] for text whose
//!   errors must read as Go's.
//! * **serde adapters** for the fields of Go's JSON records, where Go
//!   readers accept `null` for every field and leave the zero value:
//!   [`time_go`] (`time.Time`), [`opt_time_go`] (`*time.Time`),
//!   [`bytes_go`] (`[]byte` as padded base64), [`duration_go`]
//!   (`time.Duration` as integer nanoseconds) and [`null_default`].
//!
//! Every function here is pure: no server, no clock.
//!
//! ```
//! use asyncjobs::wire::{format_time, parse_go_duration, parse_time};
//!
//! let t = parse_time("2022-02-09T17:28:41.900Z").unwrap();
//! assert_eq!(format_time(&t), "2022-02-09T17:28:41.9Z");
//! assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
//! ```

mod duration;

pub use duration::{format_duration, parse_duration, parse_go_duration, parse_signed_duration};

use base64::Engine;
use serde::{Deserialize, Deserializer, Serializer};
use std::fmt::Write;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Go's zero `time.Time`: `0001-01-01T00:00:00Z`.
pub(crate) fn zero_time() -> OffsetDateTime {
    time::macros::datetime!(0001-01-01 00:00:00 UTC)
}

/// Formats a time the way Go's `time.Time.MarshalJSON` does (without the
/// quotes): RFC 3339 with the fraction of a second to the nanosecond,
/// trailing zeros trimmed and no fraction when it is zero; `Z` for UTC,
/// otherwise the offset as `+hh:mm` or `-hh:mm` (an offset's seconds are
/// not written).
///
/// This is how every time in a task record, event and schedule is written.
///
/// ```
/// use asyncjobs::wire::format_time;
/// use time::macros::datetime;
///
/// assert_eq!(format_time(&datetime!(2022-02-09 17:28:41.943198067 UTC)), "2022-02-09T17:28:41.943198067Z");
/// assert_eq!(format_time(&datetime!(2022-02-09 17:28:41.5 UTC)), "2022-02-09T17:28:41.5Z");
/// assert_eq!(format_time(&datetime!(2022-02-09 19:28:41 +02:00)), "2022-02-09T19:28:41+02:00");
/// ```
pub fn format_time(t: &OffsetDateTime) -> String {
    let mut buf = TimeBuf::default();
    write_time(t, &mut buf).to_string()
}

/// Room for the longest time [`write_time`] writes with its fast path
/// (`9999-12-31T23:59:59.999999999+23:59`, 35 bytes).
pub(crate) struct TimeBuf([u8; 40], String);

impl Default for TimeBuf {
    fn default() -> TimeBuf {
        TimeBuf([0; 40], String::new())
    }
}

/// Writes `t` as [`format_time`] does into `buf`, without allocating for
/// years 0–9999 (every time a task carries; others take the general path).
pub(crate) fn write_time<'b>(t: &OffsetDateTime, buf: &'b mut TimeBuf) -> &'b str {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        buf.1 = format_time_general(t);
        return &buf.1;
    }
    fn digits(b: &mut [u8; 40], mut v: u32, width: usize, n: &mut usize) {
        for i in (0..width).rev() {
            b[*n + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        *n += width;
    }
    let b = &mut buf.0;
    let mut n = 0;
    let fields = [
        (year as u32, 4, b'-'),
        (u8::from(t.month()).into(), 2, b'-'),
        (t.day().into(), 2, b'T'),
        (t.hour().into(), 2, b':'),
        (t.minute().into(), 2, b':'),
    ];
    for (value, width, separator) in fields {
        digits(b, value, width, &mut n);
        b[n] = separator;
        n += 1;
    }
    digits(b, t.second().into(), 2, &mut n);
    let ns = t.nanosecond();
    if ns != 0 {
        b[n] = b'.';
        n += 1;
        digits(b, ns, 9, &mut n);
        while b[n - 1] == b'0' {
            n -= 1;
        }
    }
    let off = t.offset();
    if off == UtcOffset::UTC {
        b[n] = b'Z';
        n += 1;
    } else {
        let secs = off.whole_seconds();
        b[n] = if secs < 0 { b'-' } else { b'+' };
        n += 1;
        let secs = secs.unsigned_abs();
        digits(b, secs / 3600, 2, &mut n);
        b[n] = b':';
        n += 1;
        digits(b, (secs % 3600) / 60, 2, &mut n);
    }
    std::str::from_utf8(&buf.0[..n]).expect("ASCII digits and separators")
}

/// [`format_time`] for any year, by the formatting machinery.
fn format_time_general(t: &OffsetDateTime) -> String {
    let mut s = String::with_capacity(36);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, se, ns) = (t.hour(), t.minute(), t.second(), t.nanosecond());
    let _ = write!(s, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}");
    if ns != 0 {
        let frac = format!("{ns:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let off = t.offset();
    if off == UtcOffset::UTC {
        s.push('Z');
    } else {
        let secs = off.whole_seconds();
        let sign = if secs < 0 { '-' } else { '+' };
        let secs = secs.abs();
        let _ = write!(s, "{sign}{:02}:{:02}", secs / 3600, (secs % 3600) / 60);
    }
    s
}

/// Parses an RFC 3339 time with 0 to 9 fractional digits and any offset,
/// as Go's `time.Time.UnmarshalJSON` does (without the quotes). The offset
/// is kept; compare times, not their text.
///
/// # Errors
///
/// The `time` crate's parse error when `s` is not RFC 3339 (a date alone,
/// no seconds, no offset, …); for the shorter forms people type use
/// [`parse_time_bound`].
///
/// ```
/// use asyncjobs::wire::{format_time, parse_time};
///
/// let t = parse_time("2022-02-09T19:28:41.5+02:00").unwrap();
/// assert_eq!(t, parse_time("2022-02-09T17:28:41.500Z").unwrap());
/// assert_eq!(format_time(&t), "2022-02-09T19:28:41.5+02:00");
/// assert!(parse_time("2022-02-09").is_err());
/// assert!(parse_time("2022-02-09T17:28:41").is_err());
/// assert!(parse_time("2022-02-09T17:28Z").is_err());
/// ```
pub fn parse_time(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// Parses a time bound given by a person: RFC 3339 (as [`parse_time`]),
/// `YYYY-MM-DDTHH:MM` (UTC; what an HTML `datetime-local` field sends) or
/// `YYYY-MM-DD` (midnight UTC). Filters of `ajc task retry --since`, the
/// HTTP API's `created_since` and the dashboard use it.
///
/// Returns `None` for anything else; the caller words the error.
///
/// ```
/// use asyncjobs::wire::parse_time_bound;
/// let day = parse_time_bound("2026-12-03").unwrap();
/// assert_eq!(day, parse_time_bound("2026-12-03T00:00").unwrap());
/// assert_eq!(day, parse_time_bound("2026-12-03T01:00:00+01:00").unwrap());
/// assert!(parse_time_bound("yesterday").is_none());
/// ```
pub fn parse_time_bound(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = parse_time(s) {
        return Some(t);
    }
    let minute = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    if let Ok(t) = time::PrimitiveDateTime::parse(s, &minute) {
        return Some(t.assume_utc());
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &day)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

fn de_opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let s: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => parse_time(&s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid RFC 3339 time {s:?}: {e}"))),
    }
}

/// serde adapter for a field that Go declares `time.Time`: the field is
/// always written, as [`format_time`] text, and `null` reads as Go's zero
/// time, `0001-01-01T00:00:00Z`.
///
/// Use it with `#[serde(with = "asyncjobs::wire::time_go")]` on an
/// [`OffsetDateTime`]. A missing field needs a `default` of its own.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use time::OffsetDateTime;
///
/// #[derive(Serialize, Deserialize)]
/// struct Record {
///     #[serde(with = "asyncjobs::wire::time_go")]
///     created: OffsetDateTime,
/// }
///
/// let r: Record = serde_json::from_str(r#"{"created":"2022-02-09T17:28:41.900Z"}"#).unwrap();
/// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"created":"2022-02-09T17:28:41.9Z"}"#);
/// let r: Record = serde_json::from_str(r#"{"created":null}"#).unwrap();
/// assert_eq!(r.created.year(), 1);
/// ```
pub mod time_go {
    use super::*;
    /// Writes `t` as a string in Go's format ([`format_time`]).
    ///
    /// # Errors
    ///
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(write_time(t, &mut TimeBuf::default()))
    }
    /// Reads an RFC 3339 string ([`parse_time`]); `null` gives Go's zero
    /// time.
    ///
    /// # Errors
    ///
    /// `invalid RFC 3339 time "…": …` for a string that is not one, and
    /// the deserializer's error for anything but a string or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        Ok(de_opt_time(d)?.unwrap_or_else(zero_time))
    }
}

/// serde adapter for a field that Go declares `*time.Time`: `Some` is
/// written as [`format_time`] text and `None` as `null`; `null` reads as
/// `None`.
///
/// Use it with `#[serde(with = "asyncjobs::wire::opt_time_go", default)]`
/// on an `Option<OffsetDateTime>`; add
/// `skip_serializing_if = "Option::is_none"` to leave the field out, as Go's
/// `omitempty` does.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use time::OffsetDateTime;
///
/// #[derive(Serialize, Deserialize)]
/// struct Record {
///     #[serde(with = "asyncjobs::wire::opt_time_go", default)]
///     deadline: Option<OffsetDateTime>,
/// }
///
/// let r: Record = serde_json::from_str(r#"{"deadline":"2022-02-09T17:28:41Z"}"#).unwrap();
/// assert_eq!(r.deadline.unwrap().unix_timestamp(), 1_644_427_721);
/// let r: Record = serde_json::from_str(r#"{"deadline":null}"#).unwrap();
/// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"deadline":null}"#);
/// ```
pub mod opt_time_go {
    use super::*;
    /// Writes `Some` as a string in Go's format ([`format_time`]) and `None`
    /// as `null`.
    ///
    /// # Errors
    ///
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(write_time(t, &mut TimeBuf::default())),
            None => s.serialize_none(),
        }
    }
    /// Reads an RFC 3339 string ([`parse_time`]) as `Some`, `null` as `None`.
    ///
    /// # Errors
    ///
    /// As [`time_go::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        de_opt_time(d)
    }
}

/// serde adapter for a field that Go declares `[]byte` (a task's payload):
/// the bytes as standard base64 with padding, `None` as `null`, as Go's
/// `encoding/json` writes them.
///
/// Use it with `#[serde(with = "asyncjobs::wire::bytes_go", default)]` on an
/// `Option<Vec<u8>>`.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Record {
///     #[serde(with = "asyncjobs::wire::bytes_go", default)]
///     payload: Option<Vec<u8>>,
/// }
///
/// let r = Record { payload: Some(b"{\"to\":1}".to_vec()) };
/// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"payload":"eyJ0byI6MX0="}"#);
/// let r: Record = serde_json::from_str(r#"{"payload":"eyJ0\r\nbyI6MX0="}"#).unwrap();
/// assert_eq!(r.payload.as_deref(), Some(&b"{\"to\":1}"[..]));
/// ```
pub mod bytes_go {
    use super::*;
    /// Writes `Some` as padded standard base64 and `None` as `null`.
    ///
    /// # Errors
    ///
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }
    /// Reads padded standard base64 as `Some` (carriage returns and line
    /// feeds ignored, as Go's decoder does) and `null` as `None`.
    ///
    /// # Errors
    ///
    /// `invalid base64 payload: …` for a string that is not base64, and the
    /// deserializer's error for anything but a string or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => {
                let cleaned: std::borrow::Cow<'_, str> = if s.contains(['\r', '\n']) {
                    s.replace(['\r', '\n'], "").into()
                } else {
                    std::borrow::Cow::Borrowed(&s)
                };
                base64::engine::general_purpose::STANDARD
                    .decode(cleaned.as_bytes())
                    .map(Some)
                    .map_err(|e| serde::de::Error::custom(format!("invalid base64 payload: {e}")))
            }
        }
    }
}

/// serde adapter for a field that Go declares `time.Duration`: an integer
/// count of nanoseconds, as Go's `encoding/json` writes it (not the `1m0s`
/// text of [`format_duration`]).
///
/// Use it with `#[serde(with = "asyncjobs::wire::duration_go")]` on a
/// [`std::time::Duration`]. Durations longer than Go's maximum
/// (`i64::MAX` nanoseconds, about 292 years) are written as that maximum;
/// negative values and `null` read as zero.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Serialize, Deserialize)]
/// struct Settings {
///     #[serde(with = "asyncjobs::wire::duration_go")]
///     max_age: Duration,
/// }
///
/// let s = Settings { max_age: Duration::from_secs(60) };
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"max_age":60000000000}"#);
/// let s: Settings = serde_json::from_str(r#"{"max_age":-5}"#).unwrap();
/// assert_eq!(s.max_age, Duration::ZERO);
/// ```
pub mod duration_go {
    use super::*;
    use std::time::Duration;
    /// Writes `d` as integer nanoseconds, at most `i64::MAX`.
    ///
    /// # Errors
    ///
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_nanos().min(i64::MAX as u128) as u64)
    }
    /// Reads integer nanoseconds; negative values and `null` read as zero.
    ///
    /// # Errors
    ///
    /// The deserializer's error for anything but an integer that fits in
    /// an `i64` or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v: Option<i64> = Option::deserialize(d)?;
        Ok(Duration::from_nanos(v.unwrap_or(0).max(0) as u64))
    }
}

/// serde `deserialize_with` function that reads `null` as the type's
/// default (`0`, `""`, an empty list, …), as Go leaves a non-pointer field
/// at its zero value when the JSON holds `null`.
///
/// Use it with `#[serde(default, deserialize_with = "asyncjobs::wire::null_default")]`:
/// `default` covers a missing field, this function a `null` one.
///
/// # Errors
///
/// The error of `T`'s own `Deserialize` for any value but `null`.
///
/// ```
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Record {
///     #[serde(default, deserialize_with = "asyncjobs::wire::null_default")]
///     tries: u32,
///     #[serde(default, deserialize_with = "asyncjobs::wire::null_default")]
///     queue: String,
/// }
///
/// let r: Record = serde_json::from_str(r#"{"tries":null,"queue":null}"#).unwrap();
/// assert_eq!((r.tries, r.queue.as_str()), (0, ""));
/// let r: Record = serde_json::from_str(r#"{"tries":3}"#).unwrap();
/// assert_eq!(r.tries, 3);
/// ```
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let t = parse_time("2022-02-09T17:28:41.943198067Z").unwrap();
        assert_eq!(format_time(&t), "2022-02-09T17:28:41.943198067Z");
        let t = parse_time("2022-02-09T17:28:41.900Z").unwrap();
        assert_eq!(format_time(&t), "2022-02-09T17:28:41.9Z");
        let t = parse_time("2022-02-09T17:28:41Z").unwrap();
        assert_eq!(format_time(&t), "2022-02-09T17:28:41Z");
        let t = parse_time("2022-02-09T19:28:41.5+02:00").unwrap();
        assert_eq!(format_time(&t), "2022-02-09T19:28:41.5+02:00");
        assert_eq!(format_time(&zero_time()), "0001-01-01T00:00:00Z");
    }

    proptest::proptest! {
        #[test]
        fn the_fast_time_format_is_the_general_one(
            secs in -62_135_596_800i64..253_402_300_800, ns in 0u32..1_000_000_000,
            trim in 0u32..10, off in -86_399i32..86_400,
        ) {
            // trailing zeros are common (whole seconds, milliseconds)
            let ns = ns / 10u32.pow(trim) * 10u32.pow(trim);
            let off = UtcOffset::from_whole_seconds(off / 60 * 60).unwrap();
            let t = (OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(ns as i64))
                .to_offset(off);
            proptest::prop_assert_eq!(format_time(&t), format_time_general(&t));
        }

        #[test]
        fn time_bounds_read_every_form_of_a_minute(
            y in 1970i32..2200, mo in 1u8..=12, d in 1u8..=28, h in 0u8..24, mi in 0u8..60,
        ) {
            let minute = parse_time_bound(&format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}")).unwrap();
            let rfc = parse_time_bound(&format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:00Z")).unwrap();
            proptest::prop_assert_eq!(minute, rfc);
            let day = parse_time_bound(&format!("{y:04}-{mo:02}-{d:02}")).unwrap();
            proptest::prop_assert!(day <= minute && minute - day < time::Duration::DAY);
        }

        #[test]
        fn time_bounds_never_panic(s in "\\PC{0,40}") {
            let _ = parse_time_bound(&s);
        }
    }
}
