//! Lanes: where in its queue's stream a task's work item waits
//! (docs/storage.md §2.1, docs/processing.md §2.21 and §2.24).
//!
//! Every item is in the queue's stream, under `CHORIA_AJ.Q.<queue>.>`, so
//! the `WORKERS` consumer (and a Go worker) hands each out in arrival
//! order. A task's lane only adds a token before its id, which lets a Rust
//! worker find the oldest item of a lane and claim it out of order:
//!
//! | lane | subject |
//! |---|---|
//! | plain | `CHORIA_AJ.Q.<queue>.<id>` |
//! | priority `p` (1–9) | `CHORIA_AJ.Q.<queue>.P<p>.<id>` |
//! | key shard `s` (0–15) | `CHORIA_AJ.Q.<queue>.K<s>.<id>`, with the key in header `AJ-Key` |
//! | a claim's backup | `CHORIA_AJ.Q.<queue>.B.<id>` (in no lane) |
//!
//! A task id never holds a `.`, so a lane subject is never another task's
//! plain subject.

use super::RELEASED_ITEM_PREFIX;
use crate::task::{Task, MAX_PRIORITY};

/// How many shards keyed tasks are spread over (by a hash of the key).
pub(crate) const KEY_SHARDS: u8 = 16;

/// The header a keyed task's item carries its key in (ours).
pub(crate) const KEY_HEADER: &str = "AJ-Key";

/// Where a task's work item waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub(crate) enum Lane {
    /// In arrival order only.
    #[default]
    Plain,
    /// A priority's lane (1–9).
    Priority(u8),
    /// A key shard's lane (0 to [`KEY_SHARDS`] − 1).
    Shard(u8),
}

impl Lane {
    /// The lane of `task`: its priority's, else its key's shard, else plain.
    pub(crate) fn of(task: &Task) -> Lane {
        match (task.priority, &task.key) {
            (p, _) if p > 0 => Lane::Priority(p.min(MAX_PRIORITY)),
            (_, Some(key)) => Lane::Shard(shard_of(key)),
            _ => Lane::Plain,
        }
    }

    fn token(self) -> Option<String> {
        match self {
            Lane::Plain => None,
            Lane::Priority(p) => Some(format!("P{p}")),
            Lane::Shard(s) => Some(format!("K{s}")),
        }
    }

    /// The lane an item or released item subject names
    /// (`CHORIA_AJ.<Q or R>.<queue>.<token>.<id>`); plain when none.
    pub(crate) fn of_subject(subject: &str) -> Lane {
        if subject.split('.').count() != 5 {
            return Lane::Plain;
        }
        let token = subject.rsplit('.').nth(1).unwrap_or_default();
        let number = |t: &str| {
            t.parse::<u8>()
                .ok()
                .filter(|_| !t.starts_with('0') || t == "0")
        };
        match token.split_at_checked(1) {
            Some(("P", n)) => match number(n) {
                Some(p) if (1..=MAX_PRIORITY).contains(&p) => Lane::Priority(p),
                _ => Lane::Plain,
            },
            Some(("K", n)) => match number(n) {
                Some(s) if s < KEY_SHARDS => Lane::Shard(s),
                _ => Lane::Plain,
            },
            _ => Lane::Plain,
        }
    }

    /// The subject of `task_id`'s item in this lane of `queue`.
    pub(crate) fn item_subject(self, queue: &str, task_id: &str) -> String {
        match self.token() {
            None => super::item_subject(queue, task_id),
            Some(t) => format!("CHORIA_AJ.Q.{queue}.{t}.{task_id}"),
        }
    }

    /// The subject a held item of this lane is released to: the lane's
    /// token before the id, so the item returns to its lane.
    pub(crate) fn released_subject(self, queue: &str, task_id: &str) -> String {
        match self.token() {
            None => super::released_item_subject(queue, task_id),
            Some(t) => format!("{RELEASED_ITEM_PREFIX}{queue}.{t}.{task_id}"),
        }
    }

    /// The filter matching every item of this lane of `queue` (plain: the
    /// items outside every lane).
    pub(crate) fn filter(self, queue: &str) -> String {
        match self.token() {
            None => format!("CHORIA_AJ.Q.{queue}.*"),
            Some(t) => format!("CHORIA_AJ.Q.{queue}.{t}.*"),
        }
    }

    /// The one-byte body of a lane notice naming this lane (0: none).
    pub(crate) fn notice(self) -> u8 {
        match self {
            Lane::Plain => 0,
            Lane::Priority(p) => p,
            Lane::Shard(s) => 16 + s,
        }
    }

    /// The lane a notice body names.
    pub(crate) fn from_notice(body: u8) -> Lane {
        match body {
            p @ 1..=MAX_PRIORITY => Lane::Priority(p),
            b if (16..16 + KEY_SHARDS).contains(&b) => Lane::Shard(b - 16),
            _ => Lane::Plain,
        }
    }
}

/// The subject of the backup item a claim leaves in the queue
/// (`storage/lanes.rs`): in no lane, so never claimed; the `WORKERS`
/// consumer hands it out in arrival order.
pub(crate) fn backup_subject(queue: &str, task_id: &str) -> String {
    format!("CHORIA_AJ.Q.{queue}.B.{task_id}")
}

/// The filter matching a task's item in any lane of `queue` other than
/// plain, and its claim's backup.
pub(crate) fn any_lane_subject(queue: &str, task_id: &str) -> String {
    format!("CHORIA_AJ.Q.{queue}.*.{task_id}")
}

/// The core NATS subject a producer tells `queue`'s workers on that one of
/// its lanes has an item (ours; docs/storage.md §2.1).
pub(crate) fn lane_notice_subject(queue: &str) -> String {
    format!("CHORIA_AJ.PRIO.{queue}")
}

/// The shard of `key`: FNV-1a (64 bit) of its bytes modulo [`KEY_SHARDS`],
/// the same in every process and version.
pub(crate) fn shard_of(key: &str) -> u8 {
    (fnv1a(key) % u64::from(KEY_SHARDS)) as u8
}

/// A name for `key` safe in subjects and KV keys: FNV-1a (64 bit) in hex.
pub(crate) fn key_name(key: &str) -> String {
    format!("{:016x}", fnv1a(key))
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_round_trip_through_their_subjects() {
        let lanes = (0..=MAX_PRIORITY)
            .map(|p| {
                if p == 0 {
                    Lane::Plain
                } else {
                    Lane::Priority(p)
                }
            })
            .chain((0..KEY_SHARDS).map(Lane::Shard));
        for lane in lanes {
            assert_eq!(Lane::of_subject(&lane.item_subject("Q", "P1")), lane);
            assert_eq!(Lane::of_subject(&lane.released_subject("Q", "K1")), lane);
            assert_eq!(Lane::from_notice(lane.notice()), lane);
        }
        assert_eq!(
            Lane::Priority(7).item_subject("Q", "abc"),
            "CHORIA_AJ.Q.Q.P7.abc"
        );
        assert_eq!(Lane::Plain.item_subject("Q", "abc"), "CHORIA_AJ.Q.Q.abc");
        assert_eq!(Lane::Shard(3).filter("Q"), "CHORIA_AJ.Q.Q.K3.*");
    }

    #[test]
    fn only_well_formed_tokens_are_lanes() {
        for subject in [
            // a queue named like a token
            "CHORIA_AJ.Q.P3.abc",
            "CHORIA_AJ.Q.Q.P0.abc",
            "CHORIA_AJ.Q.Q.P10.abc",
            "CHORIA_AJ.Q.Q.P03.abc",
            "CHORIA_AJ.Q.Q.K16.abc",
            "CHORIA_AJ.Q.Q.K.abc",
            "CHORIA_AJ.Q.Q.X1.abc",
            "",
        ] {
            assert_eq!(Lane::of_subject(subject), Lane::Plain, "{subject}");
        }
        assert_eq!(Lane::from_notice(0), Lane::Plain);
        assert_eq!(Lane::from_notice(10), Lane::Plain);
        assert_eq!(Lane::from_notice(32), Lane::Plain);
    }

    #[test]
    fn keys_hash_the_same_everywhere() {
        // FNV-1a test vectors
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_name("a"), "af63dc4c8601ec8c");
        assert!(shard_of("customer-42") < KEY_SHARDS);
    }

    #[test]
    fn a_task_takes_its_priority_lane_first_then_its_key_shard() {
        let mut t = Task::new("x", &()).unwrap();
        assert_eq!(Lane::of(&t), Lane::Plain);
        t.key = Some("a".into());
        assert_eq!(Lane::of(&t), Lane::Shard(shard_of("a")));
        t.priority = 4;
        assert_eq!(Lane::of(&t), Lane::Priority(4));
    }
}
