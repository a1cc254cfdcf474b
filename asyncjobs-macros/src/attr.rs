//! Parsing and validating the arguments of `#[task_handler(...)]`.

use crate::errors::Errors;
use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

/// The options accepted after the task type, in the order the docs list them.
pub(crate) const OPTIONS: &[&str] = &[
    "queue",
    "max_tries",
    "priority",
    "deadline",
    "timeout",
    "unique",
    "cron",
    "queue_run_time",
    "queue_max_tries",
    "queue_concurrency",
    "crate",
];

/// The largest `queue_concurrency` JetStream accepts here (as `ajc queue
/// configure` and `QueueUpdate::validate`).
pub(crate) const MAX_QUEUE_CONCURRENCY: i64 = 10_000;

/// The parsed attribute.
#[derive(Default)]
pub(crate) struct Args {
    /// The task type literal (`""` is the catch-all).
    pub task_type: Option<LitStr>,
    /// `queue = "EMAIL"`
    pub queue: Option<LitStr>,
    /// `max_tries = 5`
    pub max_tries: Option<i64>,
    /// `priority = 7` (0 to 9)
    pub priority: Option<u8>,
    /// `deadline = "1h"`, in nanoseconds
    pub deadline_ns: Option<u64>,
    /// `timeout = "30s"`, in nanoseconds
    pub timeout_ns: Option<u64>,
    /// `unique = "payload"` (`Some(None)`: while unfinished) or
    /// `unique = "1h"` (`Some(Some(ns))`: for that long)
    pub unique: Option<Option<u64>>,
    /// `cron = "0 3 * * *"`: a schedule of tasks without payload
    pub cron: Option<LitStr>,
    /// `queue_run_time = "10m"`, in nanoseconds
    pub queue_run_time_ns: Option<u64>,
    /// `queue_max_tries = 50` (0 = unlimited)
    pub queue_max_tries: Option<i64>,
    /// `queue_concurrency = 20`
    pub queue_concurrency: Option<i64>,
    /// `crate = "path::to::asyncjobs"`
    pub krate: Option<syn::Path>,
}

impl Args {
    /// Parses the attribute tokens, recording every problem in `errors`.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        let parser = |input: ParseStream| parse_into(input, &mut args, errors);
        if let Err(e) = parser.parse2(tokens) {
            errors.push(e);
        }
        let catch_all = args
            .task_type
            .as_ref()
            .is_some_and(|t| t.value().is_empty());
        if let (Some(cron), true) = (&args.cron, catch_all) {
            errors.spanned(
                cron,
                "the catch-all handler \"\" cannot have a `cron` schedule: a schedule creates tasks of one type",
            );
        }
        args
    }
}

fn parse_into(input: ParseStream, args: &mut Args, errors: &mut Errors) -> syn::Result<()> {
    if input.is_empty() {
        errors.at(
            Span::call_site(),
            "missing task type: write the task type first, e.g. #[task_handler(\"email:new\")]",
        );
        return Ok(());
    }
    let mut seen: Vec<String> = Vec::new();
    let mut first = true;
    while !input.is_empty() {
        if input.peek(Lit) {
            let lit: Lit = input.parse()?;
            match lit {
                Lit::Str(s) if first => {
                    check_task_type(&s, errors);
                    args.task_type = Some(s);
                }
                Lit::Str(s) => errors.spanned(
                    &s,
                    "the task type must be the first argument and given once; \
                     other arguments are `key = value` options",
                ),
                other => errors.spanned(
                    &other,
                    "expected the task type as a string literal, e.g. #[task_handler(\"email:new\")]",
                ),
            }
        } else {
            let key = Ident::parse_any(input)?;
            if first {
                errors.spanned(
                    &key,
                    "missing task type: the first argument must be the task type as a \
                     string literal, e.g. #[task_handler(\"email:new\", queue = \"EMAIL\")]",
                );
            }
            let name = key.unraw().to_string();
            if !input.peek(Token![=]) {
                return Err(syn::Error::new(
                    key.span(),
                    format!("expected `{name} = <value>`"),
                ));
            }
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            if !OPTIONS.contains(&name.as_str()) {
                errors.spanned(
                    &key,
                    format!(
                        "unknown option `{name}`; valid options are: {}",
                        valid_options()
                    ),
                );
            } else if seen.contains(&name) {
                errors.spanned(
                    &key,
                    format!("duplicate option `{name}`: each option may be given once"),
                );
            } else {
                seen.push(name.clone());
                apply_option(&name, &value, args, errors);
            }
        }
        first = false;
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

fn valid_options() -> String {
    OPTIONS
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn apply_option(name: &str, value: &Expr, args: &mut Args, errors: &mut Errors) {
    let lit = match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        _ => None,
    };
    match (name, lit) {
        ("queue", Some(Lit::Str(s))) => {
            if let Err(msg) = asyncjobs_grammar::check_queue_name(&s.value()) {
                errors.spanned(s, msg);
            }
            args.queue = Some(s.clone());
        }
        ("queue", _) => errors.spanned(value, "`queue` expects a string literal, e.g. queue = \"EMAIL\""),
        ("max_tries", Some(Lit::Int(i))) => match i.base10_parse::<i64>() {
            Ok(n) if n >= 0 => args.max_tries = Some(n),
            _ => errors.spanned(i, "`max_tries` must be an integer from 0 (no per-task limit) to i64::MAX"),
        },
        ("max_tries", _) if is_negative(value) => {
            errors.spanned(value, "`max_tries` cannot be negative: use 0 to leave only the queue's limit")
        }
        ("max_tries", _) => errors.spanned(value, "`max_tries` expects an integer literal, e.g. max_tries = 5"),
        ("priority", Some(Lit::Int(i))) => match i.base10_parse::<u8>() {
            Ok(n) if n <= 9 => args.priority = Some(n),
            _ => errors.spanned(i, "`priority` must be an integer from 0 (the default) to 9 (runs first)"),
        },
        ("priority", _) if is_negative(value) => {
            errors.spanned(value, "`priority` cannot be negative: 0 (the default) is the lowest")
        }
        ("priority", _) => errors.spanned(value, "`priority` expects an integer literal, e.g. priority = 7"),
        ("deadline", Some(Lit::Str(s))) => match parse_deadline(&s.value()) {
            Ok(ns) => args.deadline_ns = Some(ns),
            Err(msg) => errors.spanned(s, msg),
        },
        ("deadline", _) => errors.spanned(
            value,
            "`deadline` expects a Go duration string, e.g. deadline = \"1h\" or \"1h30m\"",
        ),
        ("timeout", Some(Lit::Str(s))) => match parse_timeout(&s.value()) {
            Ok(ns) => args.timeout_ns = Some(ns),
            Err(msg) => errors.spanned(s, msg),
        },
        ("timeout", _) => errors.spanned(
            value,
            "`timeout` expects a Go duration string, e.g. timeout = \"30s\" or \"1m30s\"",
        ),
        ("unique", Some(Lit::Str(s))) => match parse_unique(&s.value()) {
            Ok(u) => args.unique = Some(u),
            Err(msg) => errors.spanned(s, msg),
        },
        ("unique", _) => errors.spanned(
            value,
            "`unique` expects \"payload\" (one unfinished task per payload) or a Go duration, e.g. unique = \"1h\"",
        ),
        ("cron", Some(Lit::Str(s))) => match asyncjobs_grammar::cron::check_cron(s.value().trim()) {
            Ok(()) => args.cron = Some(s.clone()),
            Err(msg) => errors.spanned(
                s,
                format!("invalid cron schedule {:?}: {msg}", s.value()),
            ),
        },
        ("cron", _) => errors.spanned(
            value,
            "`cron` expects a cron schedule string, e.g. cron = \"0 3 * * *\" or \"@every 10m\"",
        ),
        ("queue_run_time", Some(Lit::Str(s))) => match parse_run_time(&s.value()) {
            Ok(ns) => args.queue_run_time_ns = Some(ns),
            Err(msg) => errors.spanned(s, msg),
        },
        ("queue_run_time", _) => errors.spanned(
            value,
            "`queue_run_time` expects a Go duration string, e.g. queue_run_time = \"10m\"",
        ),
        ("queue_max_tries", Some(Lit::Int(i))) => match i.base10_parse::<i64>() {
            Ok(n) if n >= 0 => args.queue_max_tries = Some(n),
            _ => errors.spanned(i, "`queue_max_tries` must be an integer from 0 (unlimited) to i64::MAX"),
        },
        ("queue_max_tries", _) if is_negative(value) => errors.spanned(
            value,
            "`queue_max_tries` cannot be negative: use 0 for unlimited tries",
        ),
        ("queue_max_tries", _) => errors.spanned(
            value,
            "`queue_max_tries` expects an integer literal, e.g. queue_max_tries = 50",
        ),
        ("queue_concurrency", Some(Lit::Int(i))) => match i.base10_parse::<i64>() {
            Ok(n) if (1..=MAX_QUEUE_CONCURRENCY).contains(&n) => args.queue_concurrency = Some(n),
            _ => errors.spanned(
                i,
                format!("`queue_concurrency` must be from 1 to {MAX_QUEUE_CONCURRENCY}"),
            ),
        },
        ("queue_concurrency", _) if is_negative(value) => errors.spanned(
            value,
            format!("`queue_concurrency` must be from 1 to {MAX_QUEUE_CONCURRENCY}"),
        ),
        ("queue_concurrency", _) => errors.spanned(
            value,
            "`queue_concurrency` expects an integer literal, e.g. queue_concurrency = 20",
        ),
        ("crate", Some(Lit::Str(s))) => match s.parse::<syn::Path>() {
            Ok(path) => args.krate = Some(path),
            Err(_) => errors.spanned(s, "`crate` expects a path, e.g. crate = \"my_reexport::asyncjobs\""),
        },
        ("crate", _) => errors.spanned(
            value,
            "`crate` expects a string literal holding a path, e.g. crate = \"my_reexport::asyncjobs\"",
        ),
        _ => unreachable!("option names are checked before"),
    }
}

fn is_negative(value: &Expr) -> bool {
    matches!(value, Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)))
}

fn check_task_type(lit: &LitStr, errors: &mut Errors) {
    let t = lit.value();
    if !t.is_empty() && !asyncjobs_grammar::is_valid_name(&t) {
        errors.spanned(
            lit,
            format!(
                "invalid task type {t:?}: it must match ^[a-zA-Z0-9_:-]+$ \
                 (or be \"\" for the catch-all handler)"
            ),
        );
    }
}

/// Parses a deadline in Go's duration syntax (`"90s"`, `"1.5h"`,
/// `"2h45m"`) into nanoseconds; it must be positive.
pub(crate) fn parse_deadline(text: &str) -> Result<u64, String> {
    match nanos(text)? {
        0 => Err(format!(
            "deadline {text:?} is zero: a task would expire before it could run"
        )),
        n => Ok(n),
    }
}

/// Parses a handler's time-out in Go's duration syntax into nanoseconds;
/// it must be positive (the runtime's `HandlerOptions::timeout` refuses
/// zero too).
pub(crate) fn parse_timeout(text: &str) -> Result<u64, String> {
    match nanos(text)? {
        0 => Err(format!(
            "timeout {text:?} is zero: every try would time out at once"
        )),
        n => Ok(n),
    }
}

/// `unique = "payload"`: `None` (unique while the earlier task is
/// unfinished); a Go duration of at least one second: `Some(ns)` (unique
/// for that long; the key's TTL is in whole seconds).
pub(crate) fn parse_unique(text: &str) -> Result<Option<u64>, String> {
    if text.trim() == "payload" {
        return Ok(None);
    }
    match nanos(text) {
        Ok(n) if n >= 1_000_000_000 => Ok(Some(n)),
        Ok(_) => Err(format!(
            "unique period {:?} is too short: the shortest is 1s",
            text.trim()
        )),
        Err(e) => Err(format!(
            "`unique` expects \"payload\" or a Go duration, e.g. \"1h\": {e}"
        )),
    }
}

/// Parses a queue run time in Go's duration syntax into nanoseconds; it
/// must be at least one second (the shortest JetStream ack wait the queue
/// settings accept).
pub(crate) fn parse_run_time(text: &str) -> Result<u64, String> {
    match nanos(text)? {
        n if n >= 1_000_000_000 => Ok(n),
        _ => Err(format!(
            "queue run time {:?} is too short: the shortest is 1s",
            text.trim()
        )),
    }
}

/// A non-negative Go duration in nanoseconds, with the runtime's messages
/// (`asyncjobs::parse_duration`'s: the grammar, or "must not be negative").
fn nanos(text: &str) -> Result<u64, String> {
    let d = asyncjobs_grammar::parse_duration(text)?;
    // at most i64::MAX nanoseconds: the grammar refuses longer durations
    Ok(d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_times() {
        assert_eq!(parse_run_time("10m"), Ok(600_000_000_000));
        assert_eq!(parse_run_time("1s"), Ok(1_000_000_000));
        assert!(parse_run_time("999ms")
            .unwrap_err()
            .contains("shortest is 1s"));
        assert!(parse_run_time("-1m").unwrap_err().contains("negative"));
        assert!(parse_run_time("1d").is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("30s"), Ok(30_000_000_000));
        assert_eq!(parse_timeout("1m30s"), Ok(90_000_000_000));
        // shorter than the queue's shortest run time is allowed
        assert_eq!(parse_timeout("250ms"), Ok(250_000_000));
        assert!(parse_timeout("0s").unwrap_err().contains("is zero"));
        assert!(parse_timeout("-5s").unwrap_err().contains("negative"));
        for bad in ["", "30", "1d", "30 s"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn durations() {
        // the grammar is tested with the shared cases in asyncjobs-grammar
        assert_eq!(parse_deadline("500ms"), Ok(500_000_000));
        assert_eq!(parse_deadline("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_deadline(" 2us "), Ok(2_000));
        for bad in ["", "1", "2d", "1 h", "-1s", "0s", "0"] {
            assert!(parse_deadline(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(parse_deadline("0s").unwrap_err().contains("is zero"));
        assert!(parse_deadline("-1s").unwrap_err().contains("negative"));
    }
}
