//! The name rules: which strings can be a task type (or a task id) and which
//! can be a queue name.
//!
//! A task type travels in subjects and JSON and is matched by handlers, so
//! it keeps to `^[a-zA-Z0-9_:-]+$`, as Go's `asyncjobs` requires; task ids
//! follow the same rule. A queue name becomes part of a JetStream stream
//! name (`CHORIA_AJ_Q_<queue>`) and of subjects, so it cannot contain what
//! JetStream refuses there.
//!
//! The functions are pure; the runtime wraps them in its own error types,
//! and the macro reports them at the attribute's literals.

/// The queue a task goes to, and a worker serves, when none is named
/// (Go's `DEFAULT`).
pub const DEFAULT_QUEUE_NAME: &str = "DEFAULT";

/// True when `name` is a valid task type or task id: non-empty, ASCII
/// letters, digits, `_`, `:` and `-` only (`^[a-zA-Z0-9_:-]+$`).
///
/// The catch-all task type `""` of a handler is not a name: callers that
/// accept it check for it first.
///
/// ```
/// use asyncjobs_grammar::is_valid_name;
///
/// assert!(is_valid_name("email:new"));
/// assert!(is_valid_name("a_b-c:D9"));
/// assert!(!is_valid_name(""));
/// assert!(!is_valid_name("email.new"));
/// assert!(!is_valid_name("e mail"));
/// ```
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
}

/// True when `name` can be a queue name: non-empty, without `.`, `*`, `>`,
/// `/`, `\`, NUL or any whitespace.
///
/// ```
/// use asyncjobs_grammar::is_valid_queue_name;
///
/// assert!(is_valid_queue_name("EMAIL"));
/// assert!(is_valid_queue_name("high-priority_2"));
/// assert!(!is_valid_queue_name(""));
/// assert!(!is_valid_queue_name("EMAIL.HIGH"));
/// assert!(!is_valid_queue_name("EMAIL >"));
/// ```
pub fn is_valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| matches!(c, '>' | '*' | '.' | '/' | '\\' | '\0') || c.is_whitespace())
}

/// [`is_valid_queue_name`], with a message naming the name and the rule
/// when it does not hold (the wording `#[task_handler(queue = …)]`
/// reports).
///
/// # Errors
///
/// `invalid queue name "…": it must be non-empty without '.', '*', '>',
/// '/', '\' or whitespace`.
///
/// ```
/// use asyncjobs_grammar::check_queue_name;
///
/// assert_eq!(check_queue_name("EMAIL"), Ok(()));
/// assert_eq!(
///     check_queue_name("A.B").unwrap_err(),
///     "invalid queue name \"A.B\": it must be non-empty without '.', '*', '>', '/', '\\' \
///      or whitespace"
/// );
/// ```
pub fn check_queue_name(name: &str) -> Result<(), String> {
    if is_valid_queue_name(name) {
        return Ok(());
    }
    Err(format!(
        "invalid queue name {name:?}: it must be non-empty without '.', '*', '>', '/', '\\' \
         or whitespace"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_type_names() {
        for good in ["email:new", "a_b-c:D9", "X", "0", "a::b--c__"] {
            assert!(is_valid_name(good), "{good:?}");
        }
        for bad in ["", "a b", "a.b", "a/b", "a*", "a>", "é", "a\n", "a\0"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn queue_names() {
        for good in ["EMAIL", "DEFAULT", "a-b_c:d", "é", "q1"] {
            assert!(is_valid_queue_name(good), "{good:?}");
            assert_eq!(check_queue_name(good), Ok(()));
        }
        for bad in [
            "", "A.B", "a b", "a\tb", "a>", "a*", "a/b", "a\\b", "a\0", "a\u{a0}b",
        ] {
            assert!(!is_valid_queue_name(bad), "{bad:?}");
            assert!(check_queue_name(bad)
                .unwrap_err()
                .starts_with(&format!("invalid queue name {bad:?}: ")));
        }
    }
}
