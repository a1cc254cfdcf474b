//! The signing keys of `--sign` and `--verify`, shared by every task
//! command that reads or writes tasks.

use crate::error::{CliError, Result};
use asyncjobs::signing::Keys;
use asyncjobs::ClientBuilder;
use std::path::Path;

/// One key flag: an existing file holds the hex, anything else is the hex.
fn key_arg(
    flag: &str,
    arg: &str,
    what: &str,
    from_file: fn(&str) -> asyncjobs::Result<Keys>,
    from_hex: fn(&str) -> asyncjobs::Result<Keys>,
) -> Result<Keys> {
    let text = |e: asyncjobs::Error| CliError::from(e).to_string();
    if Path::new(arg).is_file() {
        from_file(arg).map_err(|e| CliError::msg(format!("{flag} {arg}: {}", text(e))))
    } else {
        from_hex(arg).map_err(|e| {
            CliError::msg(format!(
                "{flag}: {arg:?} is neither an existing file nor a hex encoded ed25519 {what}: {}",
                text(e)
            ))
        })
    }
}

/// Keys from `--sign` and `--verify` (docs/processing.md §5.2): an existing file
/// holds the hex, anything else is the hex itself (a 32-byte seed for
/// `--sign`, a 32-byte public key for `--verify`). With `--sign` alone,
/// unsigned tasks stay readable, as in Go.
pub fn signing_keys(sign: Option<&str>, verify: Option<&str>) -> Result<Option<Keys>> {
    let signer = sign
        .map(|s| {
            key_arg(
                "--sign",
                s,
                "seed",
                |p| Keys::from_seed_file(p),
                Keys::from_seed_hex,
            )
        })
        .transpose()?;
    let verifier = verify
        .map(|s| {
            key_arg(
                "--verify",
                s,
                "public key",
                |p| Keys::from_public_file(p),
                Keys::from_public_hex,
            )
        })
        .transpose()?;
    Ok(match (signer, verifier) {
        (Some(s), Some(v)) => Some(s.with_verifying_key(&v)),
        // a seed alone signs; like Go it does not make unsigned tasks
        // unreadable (signed ones are still checked against its key)
        (Some(s), None) => Some(s.optional(true)),
        (None, Some(v)) => Some(v),
        (None, None) => None,
    })
}

/// Applies signing keys to a client builder.
pub fn with_keys(b: ClientBuilder, keys: Option<Keys>) -> ClientBuilder {
    match keys {
        Some(k) => b.signing_keys(k),
        None => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(signing_keys(None, None).unwrap().is_none());
        let seed = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
        let k = signing_keys(Some(seed), None).unwrap().unwrap();
        assert!(k.signs());
        assert!(signing_keys(Some("zz"), None).is_err());
        assert!(signing_keys(Some("0102"), None).is_err());
        assert!(signing_keys(None, Some("nothex")).is_err());
        let k = signing_keys(
            None,
            Some("79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"),
        )
        .unwrap()
        .unwrap();
        assert!(k.verifies() && !k.signs());
    }
}
