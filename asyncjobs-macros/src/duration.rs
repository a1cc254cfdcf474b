//! A copy of the runtime's duration grammar (`asyncjobs/src/wire/duration.rs`,
//! Go's `time.ParseDuration`): a proc-macro crate cannot depend on the
//! runtime. Both copies are tested against `testdata/go_durations.txt` at
//! the workspace root and give the same messages; change them together.

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

/// Parses `text` (surrounding whitespace ignored) as a Go duration:
/// signed nanoseconds, or the runtime's message naming the grammar.
pub(crate) fn parse_go_duration(text: &str) -> Result<i64, String> {
    let s = text.trim();
    go_nanos(s).map_err(|e| e.explain(s))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            if input.trim() == input {
                assert_eq!(parse_go_duration(input).ok(), expected, "{input:?}");
            }
        }
    }

    #[test]
    fn the_runtime_messages() {
        assert_eq!(
            parse_go_duration("hour").unwrap_err(),
            "invalid duration \"hour\": expected a Go duration such as 300ms, 1.5h or 2h45m \
             (units ns, us, ms, s, m, h)"
        );
        assert_eq!(
            parse_go_duration("5x").unwrap_err(),
            "unknown unit \"x\" in duration \"5x\": expected a Go duration such as 300ms, 1.5h \
             or 2h45m (units ns, us, ms, s, m, h)"
        );
        assert!(parse_go_duration("1d").unwrap_err().contains("24h"));
        assert_eq!(parse_go_duration(" 1.5h "), Ok(5_400_000_000_000));
    }
}
