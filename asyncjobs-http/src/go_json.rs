//! JSON as Go's `encoding/json` writes and reports it (docs/storage.md §7,
//! docs/interfaces.md §2.3): object keys sorted, `<`, `>` and `&` escaped, payload numbers
//! passed through `float64`, and Go's decoder messages for malformed
//! request bodies, so that clients matching on Go's bytes or messages see
//! the same.

use serde_json::Value;

/// `value` as Go's `json.Marshal` writes a map-backed value: object keys in
/// byte order, no spaces, `<` `>` `&` U+2028 U+2029 escaped. Numbers are
/// written as they are held.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value, false);
    out
}

/// Like [`encode`], with every number converted to `float64` and written
/// the way Go writes one: what Go's server stores when it re-encodes a
/// request's `payload` (an `interface{}`), so a payload enqueued over HTTP
/// has the bytes Go would have stored.
pub fn encode_as_go_any(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value, true);
    out
}

fn write_value(out: &mut Vec<u8>, value: &Value, float64: bool) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) if float64 => match n.as_f64() {
            Some(f) => out.extend_from_slice(go_float64(f).as_bytes()),
            None => out.extend_from_slice(n.to_string().as_bytes()),
        },
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, float64);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_value(out, v, float64);
            }
            out.push(b'}');
        }
    }
}

/// A JSON string with Go's escaping (`encoding/json` with HTML escaping on).
fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let n = c as u32;
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((n >> shift) & 0xf) as usize]);
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// `f` as Go's `encoding/json` writes a `float64`: the shortest decimal
/// that reads back as `f`, in exponent form (`1e+21`, `1e-07`) when the
/// magnitude is below 1e-6 or at least 1e21.
pub fn go_float64(f: f64) -> String {
    if !f.is_finite() {
        // Go refuses these; JSON cannot hold them
        return "null".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust writes `1e21`, `1.5e-7`; Go writes `1e+21`, `1.5e-07`
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        // shortest digits that read back, without exponent (as Go's 'f', -1)
        format!("{f}")
    }
}

/// Most arrays and objects one request body may nest: the deepest
/// serde_json decodes (its recursion limit of 128 refuses the 128th
/// level). Go's decoder allows 10,000 (docs/go-differences.md §66).
pub const MAX_DEPTH: usize = 127;

/// What [`syntax_error`] says of a body nesting deeper than [`MAX_DEPTH`]:
/// the words of Go's decoder for its own (deeper) limit.
pub const DEPTH_MESSAGE: &str = "exceeded max depth";

/// Why a request body is not JSON, in the words of Go's `json.Decoder`
/// (for example `invalid character 'n' looking for beginning of object key
/// string`, `unexpected EOF`, `EOF` for an empty body), or `None` when it is
/// one well-formed JSON value (surrounded by white space at most).
///
/// Arrays and objects nested deeper than [`MAX_DEPTH`] are refused with
/// [`DEPTH_MESSAGE`] as soon as the opening bracket is read, so the check
/// never recurses deeper than that whatever a client sends, and it accepts
/// exactly what serde_json can then decode.
pub fn syntax_error(input: &[u8]) -> Option<String> {
    let mut p = Parser {
        s: input,
        i: 0,
        depth: 0,
    };
    p.space();
    if p.i == input.len() {
        return Some("EOF".into());
    }
    if let Err(e) = p.value() {
        return Some(e);
    }
    p.space();
    p.peek()
        .map(|c| format!("invalid character {} after top-level value", quote(c)))
}

/// Go's `json.Decoder` message for an unknown field of a strictly decoded
/// body: `json: unknown field "<name>"`, from serde's error text.
pub fn unknown_field(serde_message: &str) -> Option<String> {
    let rest = serde_message.strip_prefix("unknown field `")?;
    let name = &rest[..rest.find('`')?];
    Some(format!("json: unknown field \"{name}\""))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Arrays and objects open around the current position.
    depth: usize,
}

type Step = Result<(), String>;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    /// The next byte, or Go's message for input that ends here.
    fn next(&mut self) -> Result<u8, String> {
        let c = self.peek().ok_or_else(|| "unexpected EOF".to_string())?;
        self.i += 1;
        Ok(c)
    }

    fn value(&mut self) -> Step {
        self.space();
        let c = self.next()?;
        match c {
            b'{' | b'[' => {
                if self.depth >= MAX_DEPTH {
                    return Err(DEPTH_MESSAGE.into());
                }
                self.depth += 1;
                let nested = if c == b'{' {
                    self.object()
                } else {
                    self.array()
                };
                self.depth -= 1;
                nested
            }
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(c),
            b't' => self.literal(b"rue", "true"),
            b'f' => self.literal(b"alse", "false"),
            b'n' => self.literal(b"ull", "null"),
            c => Err(invalid(c, "looking for beginning of value")),
        }
    }

    fn object(&mut self) -> Step {
        self.space();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.space();
            match self.next()? {
                b'"' => self.string()?,
                c => return Err(invalid(c, "looking for beginning of object key string")),
            }
            self.space();
            match self.next()? {
                b':' => {}
                c => return Err(invalid(c, "after object key")),
            }
            self.value()?;
            self.space();
            match self.next()? {
                b',' => continue,
                b'}' => return Ok(()),
                c => return Err(invalid(c, "after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Step {
        self.space();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.space();
            match self.next()? {
                b',' => continue,
                b']' => return Ok(()),
                c => return Err(invalid(c, "after array element")),
            }
        }
    }

    fn string(&mut self) -> Step {
        loop {
            match self.next()? {
                b'"' => return Ok(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        for _ in 0..4 {
                            let h = self.next()?;
                            if !h.is_ascii_hexdigit() {
                                return Err(invalid(h, "in \\u hexadecimal character escape"));
                            }
                        }
                    }
                    c => return Err(invalid(c, "in string escape code")),
                },
                c if c < 0x20 => return Err(invalid(c, "in string literal")),
                _ => {}
            }
        }
    }

    fn number(&mut self, first: u8) -> Step {
        let mut c = first;
        if c == b'-' {
            c = self.next()?;
            if !c.is_ascii_digit() {
                return Err(invalid(c, "in numeric literal"));
            }
        }
        if c != b'0' {
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let d = self.next()?;
            if !d.is_ascii_digit() {
                return Err(invalid(d, "after decimal point in numeric literal"));
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let mut d = self.next()?;
            if d == b'+' || d == b'-' {
                d = self.next()?;
            }
            if !d.is_ascii_digit() {
                return Err(invalid(d, "in exponent of numeric literal"));
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        Ok(())
    }

    fn literal(&mut self, rest: &[u8], word: &str) -> Step {
        for &want in rest {
            let c = self.next()?;
            if c != want {
                return Err(invalid(
                    c,
                    &format!("in literal {word} (expecting {})", quote(want)),
                ));
            }
        }
        Ok(())
    }
}

fn invalid(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote(c))
}

/// A byte as Go's scanner quotes it: `'x'`, `'\''`, `'"'`, `'\n'`,
/// `'\x00'`-style escapes for other control bytes.
fn quote(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        b'\n' => "'\\n'".into(),
        b'\r' => "'\\r'".into(),
        b'\t' => "'\\t'".into(),
        0x07 => "'\\a'".into(),
        0x08 => "'\\b'".into(),
        0x0c => "'\\f'".into(),
        0x0b => "'\\v'".into(),
        c if c < 0x20 || c == 0x7f => format!("'\\x{c:02x}'"),
        c if c < 0x80 => format!("'{}'", c as char),
        // a byte of a multi-byte character: Go quotes the rune; the byte
        // is what we have here
        c => format!("'\\x{c:02x}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn go_messages() {
        assert_eq!(
            syntax_error(b"{not json").as_deref(),
            Some("invalid character 'n' looking for beginning of object key string")
        );
        assert_eq!(syntax_error(b"").as_deref(), Some("EOF"));
        assert_eq!(syntax_error(b"  \n").as_deref(), Some("EOF"));
        assert_eq!(syntax_error(b"{\"a\":").as_deref(), Some("unexpected EOF"));
        assert_eq!(
            syntax_error(b"{\"a\" 1}").as_deref(),
            Some("invalid character '1' after object key")
        );
        assert_eq!(
            syntax_error(b"{\"a\":1 \"b\"}").as_deref(),
            Some("invalid character '\"' after object key:value pair")
        );
        assert_eq!(
            syntax_error(b"[1 2]").as_deref(),
            Some("invalid character '2' after array element")
        );
        assert_eq!(
            syntax_error(b"tru ").as_deref(),
            Some("invalid character ' ' in literal true (expecting 'e')")
        );
        assert_eq!(
            syntax_error(b"{} x").as_deref(),
            Some("invalid character 'x' after top-level value")
        );
        assert_eq!(
            syntax_error(b"-x").as_deref(),
            Some("invalid character 'x' in numeric literal")
        );
        assert_eq!(syntax_error(b"{\"a\":[1,{\"b\":null}]}"), None);
        assert_eq!(
            unknown_field("unknown field `bogus`, expected one of `type`").as_deref(),
            Some("json: unknown field \"bogus\"")
        );
    }

    #[test]
    fn go_encoding() {
        let v = json!({"to": "a<b>&c", "subject": "hi", "n": [1, 2.5, null, true]});
        assert_eq!(
            String::from_utf8(encode(&v)).unwrap(),
            r#"{"n":[1,2.5,null,true],"subject":"hi","to":"a\u003cb\u003e\u0026c"}"#
        );
        assert_eq!(go_float64(1.0), "1");
        assert_eq!(go_float64(1e21), "1e+21");
        assert_eq!(go_float64(1.5e-7), "1.5e-07");
        assert_eq!(go_float64(0.000001), "0.000001");
        assert_eq!(go_float64(123456789.0), "123456789");
        assert_eq!(go_float64(-0.5), "-0.5");
        // integers beyond float64's precision come out as Go stores them
        let big: Value = serde_json::from_str("12345678901234567891").unwrap();
        assert_eq!(encode_as_go_any(&big), b"12345678901234567000");
    }

    /// JSON-ish text: mostly valid documents with a byte changed, cut or
    /// added, so both sides of the check are exercised.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let doc = prop_oneof![
            Just(r#"{"type":"x","payload":{"a":[1,2.5e3,-0.1,true,false,null]}}"#.to_string()),
            Just(r#"[1, "a\"b\\c\u00e9", {"k": {}} , []]"#.to_string()),
            Just("  -12.5E+3 ".to_string()),
            "[ -~]{0,20}",
        ];
        (doc, any::<prop::sample::Index>(), any::<u8>(), 0..3u8).prop_map(|(d, at, b, op)| {
            let mut v = d.into_bytes();
            if !v.is_empty() {
                let i = at.index(v.len());
                match op {
                    0 => v[i] = b,
                    1 => v.truncate(i),
                    _ => v.insert(i, b),
                }
            }
            v
        })
    }

    /// `depth` arrays and objects nested inside one another (`kinds` picks
    /// which, cycling), with `1` innermost.
    fn nested(depth: usize, kinds: &[bool]) -> Vec<u8> {
        let mut out = Vec::with_capacity(depth * 6 + 1);
        for i in 0..depth {
            let object = !kinds.is_empty() && kinds[i % kinds.len()];
            out.extend_from_slice(if object { b"{\"a\":" } else { b"[" });
        }
        out.push(b'1');
        for i in (0..depth).rev() {
            let object = !kinds.is_empty() && kinds[i % kinds.len()];
            out.push(if object { b'}' } else { b']' });
        }
        out
    }

    /// Whether serde_json decodes `input` as a value (not `IgnoredAny`,
    /// which skips nesting without a limit; the API decodes values).
    fn serde_accepts(input: &[u8]) -> bool {
        serde_json::from_slice::<Value>(input).is_ok()
    }

    #[test]
    fn depth_limit_is_serdes() {
        for kinds in [&[false][..], &[true], &[true, false]] {
            let deepest = nested(MAX_DEPTH, kinds);
            assert_eq!(syntax_error(&deepest), None);
            assert!(serde_accepts(&deepest));
            let deeper = nested(MAX_DEPTH + 1, kinds);
            assert_eq!(syntax_error(&deeper).as_deref(), Some(DEPTH_MESSAGE));
            assert!(!serde_accepts(&deeper));
        }
        // issue 29: 200,000 arrays (400 KB) are an error, not a crash
        let deep = [vec![b'['; 200_000], vec![b']'; 200_000]].concat();
        assert_eq!(syntax_error(&deep).as_deref(), Some(DEPTH_MESSAGE));
        // unclosed too
        assert_eq!(
            syntax_error(&vec![b'['; 1_000_000]).as_deref(),
            Some(DEPTH_MESSAGE)
        );
        // shallow but broken input still gets its own message
        assert_eq!(
            syntax_error(&nested(MAX_DEPTH, &[false])[..MAX_DEPTH]).as_deref(),
            Some("unexpected EOF")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Any bytes at all: no panic, and never a value serde_json refuses
        /// (Go, and so the check, lets bytes that are not UTF-8 through in
        /// strings, which serde_json refuses afterwards).
        #[test]
        fn arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..256)) {
            let ours = syntax_error(&input).is_none();
            let serde = serde_accepts(&input);
            prop_assert!(!serde || ours, "serde accepts what we refuse: {:?}", String::from_utf8_lossy(&input));
            if std::str::from_utf8(&input).is_ok() {
                prop_assert_eq!(ours, serde, "input {:?}", String::from_utf8_lossy(&input));
            }
        }

        /// JSON-ish bytes drawn from JSON's own alphabet: mostly broken,
        /// sometimes nested deep; the check agrees with serde_json.
        #[test]
        fn agrees_with_serde_on_json_alphabet(
            input in prop::collection::vec(
                prop::sample::select(b"[]{}:,\"\\ 0123-.eE+tfnrulsa\n".to_vec()), 0..400)
        ) {
            prop_assert_eq!(syntax_error(&input).is_none(), serde_accepts(&input),
                "input {:?}", String::from_utf8_lossy(&input));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Nesting of any depth and shape, whole or cut short: no crash,
        /// the same verdict as serde_json, and the depth message once the
        /// limit is passed.
        #[test]
        fn nesting_at_any_depth(
            depth in prop_oneof![0..300usize, 0..300_000usize],
            kinds in prop::collection::vec(any::<bool>(), 1..8),
            cut in any::<prop::sample::Index>(),
            whole in any::<bool>(),
        ) {
            let mut input = nested(depth, &kinds);
            if !whole {
                input.truncate(cut.index(input.len()));
            }
            let ours = syntax_error(&input);
            prop_assert_eq!(ours.is_none(), serde_accepts(&input));
            if depth > MAX_DEPTH && (whole || ours.as_deref() == Some(DEPTH_MESSAGE)) {
                prop_assert_eq!(ours.as_deref(), Some(DEPTH_MESSAGE));
            }
        }
    }

    proptest! {
        /// The scanner accepts exactly what serde_json accepts as one value.
        #[test]
        fn agrees_with_serde(input in jsonish()) {
            let ours = syntax_error(&input).is_none();
            let serde = serde_json::from_slice::<serde::de::IgnoredAny>(&input).is_ok();
            prop_assert_eq!(ours, serde, "input {:?}", String::from_utf8_lossy(&input));
        }

        /// Go's float64 text reads back as the same number.
        #[test]
        fn float64_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let text = go_float64(f);
            prop_assert_eq!(text.parse::<f64>().unwrap(), f);
        }
    }
}
