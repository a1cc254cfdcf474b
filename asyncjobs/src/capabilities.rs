//! What the connected nats-server supports of this crate's features, learnt
//! once when a [`Client`](crate::Client) is built, and the one warning a
//! process logs when the server is too old for some of them
//! (docs/processing.md §2.15).
//!
//! Four features depend on the server:
//!
//! - unique tasks and the retention of finished task records use
//!   JetStream's per-message TTL (nats-server [`TTL_NEEDS`]): unique
//!   tasks are refused with [`Error::ServerTooOld`](crate::Error::ServerTooOld),
//!   finished records are kept forever (docs/processing.md §2.19);
//! - delayed tasks and held retries use JetStream message schedules
//!   (nats-server [`SCHEDULES_NEED`]);
//! - pausing a queue uses JetStream's consumer pause (nats-server
//!   [`PAUSE_NEEDS`]; docs/storage.md §4.4): asked of an older server, it
//!   is refused with [`Error::ServerTooOld`](crate::Error::ServerTooOld);
//! - worker presence (the `CHORIA_AJ_WORKERS` bucket behind
//!   [`Client::workers`](crate::Client::workers)) and crash leases (the
//!   quick rescue of a dead worker's tries), like the HTTP API's
//!   idempotency keys and shared form token, create their buckets through
//!   the NATS client's key-value API, which reads the account's JetStream
//!   information first and needs the reserved storage the servers report
//!   from [`PRESENCE_NEEDS`] on. Older servers (Debian's 2.9, for one)
//!   answer without it, which the client reports as a decoding error (`data
//!   did not match any variant of untagged enum Response`); these features
//!   are then off instead of failing at every try.
//!
//! Every other feature works on any server with JetStream.

use std::collections::HashSet;
use std::sync::Mutex;

/// The nats-server version delayed tasks and held retries need (JetStream
/// message schedules).
pub const SCHEDULES_NEED: &str = "2.12";
/// The nats-server version pausing a queue needs (JetStream consumer pause).
pub const PAUSE_NEEDS: &str = "2.11";
/// The nats-server version unique tasks and the retention of finished
/// task records need (JetStream per-message TTL).
pub const TTL_NEEDS: &str = "2.11";
/// The nats-server version worker presence, crash leases and the HTTP
/// API's idempotency keys need (its account information reports reserved
/// storage).
pub const PRESENCE_NEEDS: &str = "2.10.8";

/// What the connected server supports (see the [module](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Where the server is (`host:port` as it reports itself).
    pub server: String,
    /// Its version.
    pub version: String,
    /// Delayed tasks and held retries (JetStream message schedules).
    pub schedules: bool,
    /// Pausing queues (JetStream consumer pause).
    pub pause: bool,
    /// Unique tasks and the retention of finished records (JetStream
    /// per-message TTL).
    pub ttl: bool,
    /// Worker presence, crash leases and the HTTP API's shared buckets
    /// (idempotency keys, the dashboard's form token): buckets the NATS
    /// client's key-value API creates.
    pub presence: bool,
}

/// A feature the server is too old for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Missing {
    /// What is off, in words (`delayed tasks and held retries`).
    pub feature: &'static str,
    /// The nats-server version that brings it.
    pub needs: &'static str,
}

impl Capabilities {
    /// The features the server is too old for; empty when none.
    pub fn missing(&self) -> Vec<Missing> {
        let mut m = vec![];
        if !self.schedules {
            m.push(Missing {
                feature: "delayed tasks and held retries",
                needs: SCHEDULES_NEED,
            });
        }
        if !self.pause {
            m.push(Missing {
                feature: "pausing queues",
                needs: PAUSE_NEEDS,
            });
        }
        if !self.ttl {
            m.push(Missing {
                feature: "unique tasks and the retention of finished tasks",
                needs: TTL_NEEDS,
            });
        }
        if !self.presence {
            m.push(Missing {
                feature: "worker presence, crash leases and the HTTP API's idempotency keys",
                needs: PRESENCE_NEEDS,
            });
        }
        m
    }

    /// One line naming the server, what is off and the version each
    /// needs (`nats-server 2.11.11 at 127.0.0.1:4222: delayed tasks and
    /// held retries need 2.12 — this is off`); `None` when nothing is.
    pub fn summary(&self) -> Option<String> {
        let missing = self.missing();
        if missing.is_empty() {
            return None;
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|m| format!("{} need {}", m.feature, m.needs))
            .collect();
        Some(format!(
            "nats-server {} at {}: {} — {} off",
            self.version,
            self.server,
            parts.join("; "),
            if missing.len() == 1 {
                "this is"
            } else {
                "these are"
            }
        ))
    }

    /// What a server of `version` supports, presence assumed (before the
    /// account is read).
    pub(crate) fn from_version(server: String, version: String) -> Capabilities {
        Capabilities {
            schedules: version_at_least(&version, 2, 12),
            pause: version_at_least(&version, 2, 11),
            ttl: version_at_least(&version, 2, 11),
            presence: true,
            server,
            version,
        }
    }
}

/// Learns what the server behind `nc` supports: its version, and whether
/// the NATS client can read its account information through `js` (worker
/// presence's bucket needs it).
pub(crate) async fn probe(
    nc: &async_nats::Client,
    js: &async_nats::jetstream::Context,
) -> Capabilities {
    let info = nc.server_info();
    let mut caps = Capabilities::from_version(format!("{}:{}", info.host, info.port), info.version);
    if let Err(e) = js.query_account().await {
        // a reply the client cannot decode (no reserved storage): too old;
        // a time-out or a missing permission says nothing of the version
        if matches!(
            e.kind(),
            async_nats::jetstream::context::AccountErrorKind::Other
        ) {
            tracing::debug!(error = %e, "the server's account information cannot be read: worker presence is off");
            caps.presence = false;
        }
    }
    caps
}

/// Servers whose missing features this process has reported.
static REPORTED: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

/// Logs [`Capabilities::summary`] at `warn`, once per process and server.
pub(crate) fn report_once(caps: &Capabilities) {
    let Some(summary) = caps.summary() else {
        return;
    };
    let first = REPORTED
        .lock()
        .map(|mut r| {
            r.get_or_insert_with(HashSet::new)
                .insert((caps.server.clone(), caps.version.clone()))
        })
        .unwrap_or(true);
    if first {
        tracing::warn!(server = %caps.server, version = %caps.version, "{summary}");
    }
}

/// Whether a `major.minor.patch` server version is at least `major.minor`.
pub(crate) fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_what_is_off_and_the_version_it_needs() {
        let mut c = Capabilities::from_version("127.0.0.1:4222".into(), "2.9.10".into());
        c.presence = false;
        assert_eq!(
            c.summary().unwrap(),
            "nats-server 2.9.10 at 127.0.0.1:4222: delayed tasks and held retries need 2.12; pausing queues need 2.11; unique tasks and the retention of finished tasks need 2.11; worker presence, crash leases and the HTTP API's idempotency keys need 2.10.8 — these are off"
        );
        let c = Capabilities::from_version("h:1".into(), "2.11.11".into());
        assert_eq!(
            c.summary().unwrap(),
            "nats-server 2.11.11 at h:1: delayed tasks and held retries need 2.12 — this is off"
        );
        assert_eq!(
            Capabilities::from_version("h:1".into(), "2.15.1".into()).summary(),
            None
        );
    }
}
