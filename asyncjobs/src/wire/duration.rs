//! Durations written by people, in Go's `time.ParseDuration` syntax, and
//! printed back as Go's `time.Duration.String()` does.
//!
//! The grammar itself lives once in the internal `asyncjobs-grammar` crate,
//! which `#[task_handler]` also uses to check its `deadline` and
//! `queue_run_time` at compile time; these functions are the runtime's
//! public names for it and return its messages unchanged.

use std::time::Duration;

/// Go's `time.ParseDuration` with Go's own error messages, for text a Go
/// process also reads: the cron `@every` descriptor and the HTTP API, whose
/// errors read as Go's.
///
/// Returns signed nanoseconds (Go's `time.Duration`). Nothing is trimmed:
/// `" 1s"` is an error, as in Go.
///
/// # Errors
///
/// Go's message: `time: invalid duration "…"`, `time: missing unit in
/// duration "…"` or `time: unknown unit "…" in duration "…"`.
///
/// ```
/// assert_eq!(asyncjobs::wire::parse_go_duration("1m"), Ok(60_000_000_000));
/// assert_eq!(asyncjobs::wire::parse_go_duration("-1.5s"), Ok(-1_500_000_000));
/// assert_eq!(
///     asyncjobs::wire::parse_go_duration("forever").unwrap_err(),
///     "time: invalid duration \"forever\""
/// );
/// ```
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    asyncjobs_grammar::parse_go_duration(s)
}

/// Parses a non-negative duration in Go's `time.ParseDuration` syntax.
///
/// A duration is one or more decimal numbers, each with an optional
/// fraction and a unit: `300ms`, `1.5h`, `2h45m`, `.5s`, `2us`. The units
/// are `ns`, `us` (or `µs`), `ms`, `s`, `m` and `h`; there are no days
/// (write `48h`). `0` needs no unit. The value must fit in Go's
/// `time.Duration` (`i64::MAX` nanoseconds, about 292 years). Whitespace
/// around the text is ignored.
///
/// # Errors
///
/// A message naming the input and the grammar when the text is not a Go
/// duration, for example
/// `unknown unit "d" in duration "1d": expected a Go duration such as 300ms,
/// 1.5h or 2h45m (units ns, us, ms, s, m, h); …`, and
/// `invalid duration "-5s": must not be negative` for a negative one. The
/// messages suit clap's `value_parser`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(asyncjobs::parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
/// assert_eq!(asyncjobs::parse_duration("2h45m"), Ok(Duration::from_secs(9900)));
/// assert!(asyncjobs::parse_duration("1d").is_err());
/// assert!(asyncjobs::parse_duration("-1s").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    asyncjobs_grammar::parse_duration(s)
}

/// Parses a duration in Go's syntax that may be negative, as signed
/// nanoseconds (Go's `time.Duration`): `-1s` is `-1_000_000_000`.
/// Whitespace around the text is ignored. For flags whose negative values
/// mean something (such as "leave unchanged").
///
/// # Errors
///
/// The messages of [`parse_duration`], except that negative values parse.
///
/// ```
/// assert_eq!(asyncjobs::parse_signed_duration("-1s"), Ok(-1_000_000_000));
/// assert_eq!(asyncjobs::parse_signed_duration(" 2m "), Ok(120_000_000_000));
/// assert!(asyncjobs::parse_signed_duration("5").unwrap_err().contains("missing unit"));
/// ```
pub fn parse_signed_duration(s: &str) -> Result<i64, String> {
    asyncjobs_grammar::parse_signed_duration(s)
}

/// Formats `d` as Go's `time.Duration.String()` does: `0s`, `1.5µs`,
/// `300ms`, `1.5s`, `1m0s`, `2h45m0s`. Below a second the largest unit
/// that keeps the integer part non-zero is used (`ns`, `µs`, `ms`);
/// otherwise hours, minutes and seconds with the fraction of a second.
///
/// [`parse_duration`] reads the text back to the same value for every
/// duration up to Go's maximum (`i64::MAX` nanoseconds); longer durations
/// are printed the same way but do not parse.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(asyncjobs::format_duration(Duration::from_millis(300)), "300ms");
/// assert_eq!(asyncjobs::format_duration(Duration::from_secs(9900)), "2h45m0s");
/// ```
pub fn format_duration(d: Duration) -> String {
    asyncjobs_grammar::format_duration(d)
}
