//! Ed25519 task signatures (docs/processing.md §5), compatible with the Go
//! implementation: the same signed message, the same hex encoding.
//!
//! ```
//! use asyncjobs::signing::{Keys, signature_message};
//! let keys = Keys::from_seed_hex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20").unwrap();
//! let mut task = asyncjobs::Task::new("email:new", &1).unwrap();
//! task.queue = "EMAIL".into();
//! keys.sign(&mut task).unwrap();
//! assert_eq!(task.signature.len(), 128);
//! keys.verify(&task).unwrap();
//! ```

use crate::error::{Error, Result};
use crate::task::Task;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::path::Path;

/// The string that is signed: `<id>:<queue>:<type>:<max_tries>:<created ns>:<deadline ns or 0>:<base64 payload>`.
pub fn signature_message(task: &Task) -> Result<String> {
    if task.queue.is_empty() {
        return Err(Error::Signature(
            "signing a task requires the queue to be set".into(),
        ));
    }
    let payload = match task.payload.as_deref() {
        Some(p) if !p.is_empty() => base64::engine::general_purpose::STANDARD.encode(p),
        _ => String::new(),
    };
    Ok(format!(
        "{}:{}:{}:{}:{}:{}:{}",
        task.id,
        task.queue,
        task.task_type,
        task.max_tries,
        task.created.unix_timestamp_nanos(),
        task.deadline.map(|d| d.unix_timestamp_nanos()).unwrap_or(0),
        payload
    ))
}

fn decode_hex32(what: &str, text: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| Error::Config(format!("invalid {what}: not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| Error::Config(format!("invalid {what}: {} bytes, want 32", b.len())))
}

fn read_key_file(what: &str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("reading {what} file {}: {e}", path.display())))
}

/// Signing and verification keys with the signature policy.
///
/// A seed alone also verifies (its public key is derived; Go does not
/// verify in that case, docs/go-differences.md §13). Key files may end in a newline.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    signing: Option<SigningKey>,
    verifying: Option<VerifyingKey>,
    optional: bool,
}

impl Keys {
    /// No keys: nothing is signed or verified.
    pub fn none() -> Keys {
        Keys::default()
    }

    /// Keys from a 32-byte seed (signs, and verifies with its public key).
    pub fn from_seed(seed: [u8; 32]) -> Keys {
        let signing = SigningKey::from_bytes(&seed);
        Keys {
            verifying: Some(signing.verifying_key()),
            signing: Some(signing),
            optional: false,
        }
    }

    /// Keys from the hex of a 32-byte seed.
    pub fn from_seed_hex(hex: &str) -> Result<Keys> {
        Ok(Keys::from_seed(decode_hex32("ed25519 seed", hex)?))
    }

    /// Keys from a file holding the hex of a 32-byte seed (as `ajc --sign FILE`).
    pub fn from_seed_file(path: impl AsRef<Path>) -> Result<Keys> {
        Keys::from_seed_hex(&read_key_file("seed", path.as_ref())?)
    }

    /// Verification only, with a 32-byte public key.
    pub fn from_public(key: [u8; 32]) -> Result<Keys> {
        let verifying = VerifyingKey::from_bytes(&key)
            .map_err(|e| Error::Config(format!("invalid public key: {e}")))?;
        Ok(Keys {
            signing: None,
            verifying: Some(verifying),
            optional: false,
        })
    }

    /// Verification only, with the hex of a public key.
    pub fn from_public_hex(hex: &str) -> Result<Keys> {
        Keys::from_public(decode_hex32("public key", hex)?)
    }

    /// Verification only, with a file holding the hex of a public key.
    pub fn from_public_file(path: impl AsRef<Path>) -> Result<Keys> {
        Keys::from_public_hex(&read_key_file("public key", path.as_ref())?)
    }

    /// Verify with this public key instead (for example keys that sign with
    /// one seed but accept tasks signed by another producer).
    pub fn with_verifying_key(mut self, other: &Keys) -> Keys {
        self.verifying = other.verifying;
        self
    }

    /// Accept unsigned tasks (signed ones are still verified).
    pub fn optional(mut self, yes: bool) -> Keys {
        self.optional = yes;
        self
    }

    /// True when tasks are signed on enqueue.
    pub fn signs(&self) -> bool {
        self.signing.is_some()
    }

    /// True when loaded tasks are verified.
    pub fn verifies(&self) -> bool {
        self.verifying.is_some()
    }

    /// The public key as hex, if any.
    pub fn public_hex(&self) -> Option<String> {
        self.verifying.map(|k| hex::encode(k.as_bytes()))
    }

    /// Signs the task (its queue must be set); an already signed task is an error.
    pub fn sign(&self, task: &mut Task) -> Result<()> {
        let Some(key) = &self.signing else {
            return Ok(());
        };
        if !task.signature.is_empty() {
            return Err(Error::Signature("task is already signed".into()));
        }
        let msg = signature_message(task)?;
        task.signature = hex::encode(key.sign(msg.as_bytes()).to_bytes());
        Ok(())
    }

    /// Replaces any signature with a new one (used when retrying into another queue).
    pub fn resign(&self, task: &mut Task) -> Result<()> {
        if self.signing.is_some() {
            task.signature.clear();
            self.sign(task)?;
        }
        Ok(())
    }

    /// Verifies the task's signature per the policy.
    pub fn verify(&self, task: &Task) -> Result<()> {
        let Some(key) = &self.verifying else {
            return Ok(());
        };
        if task.signature.is_empty() {
            if self.optional {
                return Ok(());
            }
            return Err(Error::Signature(format!("task {} is not signed", task.id)));
        }
        let invalid =
            |detail: String| Error::Signature(format!("invalid task signature: {detail}"));
        let msg = signature_message(task).map_err(|e| invalid(e.to_string()))?;
        let sig = hex::decode(&task.signature)
            .map_err(|e| invalid(format!("signature is not hex: {e}")))?;
        let sig = Signature::from_slice(&sig).map_err(|e| invalid(e.to_string()))?;
        key.verify(msg.as_bytes(), &sig).map_err(|_| {
            invalid(format!(
                "task {} does not verify with public key {}",
                task.id,
                hex::encode(key.as_bytes())
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";

    #[test]
    fn reference_vector() {
        let keys = Keys::from_seed_hex(SEED).unwrap();
        assert_eq!(
            keys.public_hex().unwrap(),
            "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
        );
        let mut task = Task::builder("email:new")
            .id("24smZHaWnjuP371iglxeQWK7nOi")
            .raw_payload(br#"{"to":"user@example.net"}"#.to_vec())
            .build()
            .unwrap();
        task.queue = "EMAIL".into();
        task.created = crate::wire::parse_time("2022-02-09T17:28:41.943198067Z").unwrap();
        assert_eq!(
            signature_message(&task).unwrap(),
            "24smZHaWnjuP371iglxeQWK7nOi:EMAIL:email:new:10:1644427721943198067:0:eyJ0byI6InVzZXJAZXhhbXBsZS5uZXQifQ=="
        );
        keys.sign(&mut task).unwrap();
        assert_eq!(task.signature, "aa4c239e701c496e1d9e3d3ac6a0654b7f7552572ab2e4786a985f74a845303c423b78e772093b63114a2ffcb3f9e547bb269adbaac54459b31ca262bd40a602");
        let mut with_deadline = task.clone();
        with_deadline.signature.clear();
        with_deadline.deadline = Some(crate::wire::parse_time("2022-02-09T18:28:41Z").unwrap());
        keys.sign(&mut with_deadline).unwrap();
        assert_eq!(with_deadline.signature, "09f38ce15ef310c1e225a9abfbfe57ae074e9914b6ca3815f396719a2bb2cfa38a17bcc1b24b0fc94bbb8934c1ef811d5f01c0c252d1571b15719a5ff2f00600");
        assert!(
            matches!(keys.sign(&mut task), Err(Error::Signature(m)) if m == "task is already signed")
        );
    }

    #[test]
    fn policy() {
        let keys = Keys::from_seed_hex(SEED).unwrap();
        let mut task = Task::new("t", &1).unwrap();
        assert!(keys.sign(&mut task).is_err(), "queue required");
        task.queue = "Q".into();
        let unsigned = task.clone();
        assert!(keys.verify(&unsigned).is_err());
        assert!(keys.clone().optional(true).verify(&unsigned).is_ok());
        keys.sign(&mut task).unwrap();
        keys.verify(&task).unwrap();
        let mut tampered = task.clone();
        tampered.max_tries = 99;
        let err = keys.verify(&tampered).unwrap_err().to_string();
        assert!(err.starts_with("invalid task signature"), "{err}");
        let other = Keys::from_seed([7; 32]);
        assert!(other.verify(&task).is_err());
        assert!(Keys::from_seed_hex("abcd").is_err());
        assert!(
            Keys::from_seed_hex(&format!("{SEED}\n")).is_ok(),
            "trailing newline accepted"
        );
    }
}
