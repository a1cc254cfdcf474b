//! Unique tasks: at most one task per key, across every producer
//! (docs/processing.md §2.18, storage.md's `CHORIA_AJ_UNIQUE`).

use crate::error::{Error, Result};
use std::time::Duration;

/// Longest uniqueness key, in bytes.
pub const MAX_UNIQUE_KEY: usize = 200;

/// How a task is unique, set with [`TaskBuilder::unique`](crate::TaskBuilder::unique)
/// or [`TaskBuilder::unique_for`](crate::TaskBuilder::unique_for).
///
/// An enqueue that finds an earlier task holding the key is refused with
/// [`Error::TaskExists`], which names that task's id; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    /// The key: given, or made from the task's type and payload.
    pub key: String,
    /// Refused while the key is younger than this (from the first task's
    /// enqueue), finished or not; `None`: refused while the earlier task
    /// has not finished.
    pub period: Option<Duration>,
}

impl Unique {
    /// Checks a key given by the caller: 1 to [`MAX_UNIQUE_KEY`] bytes of
    /// letters, digits, `-`, `_`, `=` and `/`, and `.` between them (what
    /// a JetStream key-value key may hold).
    ///
    /// # Errors
    /// [`Error::Config`] naming the key and what is wrong with it.
    pub fn check_key(key: &str) -> Result<()> {
        let bad = |why: &str| {
            Err(Error::Config(format!(
                "unique key {key:?} {why}: use 1 to {MAX_UNIQUE_KEY} bytes of letters, digits, '-', '_', '=', '/' and '.' between them"
            )))
        };
        if key.is_empty() {
            return bad("is empty");
        }
        if key.len() > MAX_UNIQUE_KEY {
            return bad(&format!("is {} bytes long", key.len()));
        }
        if let Some(c) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_=/.".contains(*c)))
        {
            return bad(&format!("has {c:?}, which the server refuses in a key"));
        }
        if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
            return bad("has a '.' at an end or two in a row");
        }
        Ok(())
    }

    /// The default key of a task: its type and payload, hashed
    /// (`t-<64 hex digits>` of SHA-256 over the type, a newline and the
    /// payload bytes), so tasks of the same type with the same payload
    /// share it.
    pub fn default_key(task_type: &str, payload: Option<&[u8]>) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(task_type.as_bytes());
        h.update(b"\n");
        h.update(payload.unwrap_or_default());
        let digest = h.finalize();
        let mut key = String::with_capacity(66);
        key.push_str("t-");
        for b in digest {
            key.push_str(&format!("{b:02x}"));
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for ok in ["invoice-42", "tenant/7/report", "a.b", "x=1", "A_z"] {
            assert!(Unique::check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a:b", "a*", "a>", ".a", "a.", "a..b", "ü"] {
            let e = Unique::check_key(bad).unwrap_err().to_string();
            assert!(e.contains("unique key"), "{bad}: {e}");
        }
        assert!(Unique::check_key(&"k".repeat(MAX_UNIQUE_KEY)).is_ok());
        let e = Unique::check_key(&"k".repeat(MAX_UNIQUE_KEY + 1)).unwrap_err();
        assert!(e.to_string().contains("201 bytes long"), "{e}");
    }

    #[test]
    fn the_default_key_is_type_and_payload() {
        let a = Unique::default_key("email:new", Some(b"{\"to\":1}"));
        assert_eq!(a.len(), 66);
        assert!(Unique::check_key(&a).is_ok());
        assert_eq!(a, Unique::default_key("email:new", Some(b"{\"to\":1}")));
        assert_ne!(a, Unique::default_key("email:new", Some(b"{\"to\":2}")));
        assert_ne!(a, Unique::default_key("email:old", Some(b"{\"to\":1}")));
    }
}
