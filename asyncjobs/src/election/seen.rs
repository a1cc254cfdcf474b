//! What a candidate sees of the key while another candidate holds it, so a
//! new leader knows until when the previous one may still have acted
//! ([`Election::previous_leader_until`](super::Election::previous_leader_until)).

use std::time::Duration;
use time::OffsetDateTime;

/// A candidate's observations of other leaders.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// When this candidate first looked at the key.
    first_look: Option<OffsetDateTime>,
    /// The holder's last refresh seen: its name, the revision and when it
    /// was written (server time).
    last: Option<(String, u64, OffsetDateTime)>,
    /// The shortest time seen between two refreshes of that holder: at
    /// least its campaign interval.
    shortest_gap: Option<Duration>,
}

impl Seen {
    /// This candidate looks at the key (campaigns) at `now`.
    pub(super) fn look(&mut self, now: OffsetDateTime) {
        self.first_look.get_or_insert(now);
    }

    /// The key is held by `name`, last written at `at` as `revision`.
    pub(super) fn held_by(&mut self, name: &str, revision: u64, at: OffsetDateTime) {
        match &self.last {
            Some((n, r, t)) if n == name && *r != revision && at > *t => {
                let gap = Duration::try_from(at - *t).unwrap_or_default();
                self.shortest_gap = Some(self.shortest_gap.map_or(gap, |g| g.min(gap)));
            }
            Some((n, ..)) if n != name => self.shortest_gap = None,
            _ => {}
        }
        self.last = Some((name.to_string(), revision, at));
    }

    /// Until when another leader may have acted, as far as this candidate
    /// can tell: the last refresh it saw plus the longest that leader can go
    /// between refreshes (the shortest gap seen between two of them, or
    /// `default_interval` when it saw only one); or, when it saw no other
    /// leader, the time it first looked (anyone before that is unknown).
    pub(super) fn until(&self, default_interval: Duration) -> Option<OffsetDateTime> {
        match &self.last {
            Some((_, _, at)) => Some(*at + self.shortest_gap.unwrap_or(default_interval)),
            None => self.first_look,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-06 12:00:00 UTC);

    #[test]
    fn nothing_seen_means_the_first_look() {
        let mut seen = Seen::default();
        assert_eq!(seen.until(Duration::from_secs(7)), None);
        seen.look(T0);
        seen.look(T0 + Duration::from_secs(5));
        assert_eq!(seen.until(Duration::from_secs(7)), Some(T0));
    }

    #[test]
    fn a_holder_may_act_until_its_next_refresh() {
        let mut seen = Seen::default();
        seen.look(T0);
        seen.held_by("go-1", 10, T0);
        // one refresh seen: the default (Go's) interval
        assert_eq!(
            seen.until(Duration::from_millis(7500)),
            Some(T0 + Duration::from_millis(7500))
        );
        // its refreshes 2 s apart, seen once skipping one: the shortest gap
        seen.held_by("go-1", 14, T0 + Duration::from_secs(4));
        seen.held_by("go-1", 15, T0 + Duration::from_secs(6));
        seen.held_by("go-1", 15, T0 + Duration::from_secs(6));
        assert_eq!(
            seen.until(Duration::from_millis(7500)),
            Some(T0 + Duration::from_secs(8))
        );
        // another holder: its own gaps
        seen.held_by("rust-2", 20, T0 + Duration::from_secs(30));
        assert_eq!(
            seen.until(Duration::from_millis(7500)),
            Some(T0 + Duration::from_millis(37500))
        );
    }
}
