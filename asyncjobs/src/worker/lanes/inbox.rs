//! The lanes' inbox (docs/processing.md §2.21): following the lane
//! notices, looking at every lane now and then, and carrying out claimed
//! items' acknowledgements, which arrive on this worker's claim inbox
//! instead of at a consumer. `+ACK` and `+TERM` delete the claim's backup
//! item (`storage/lanes.rs`); `-NAK` puts the item back in its lane (held
//! until due for a delay of a second or more) and keeps this worker off
//! that item for the NAK's delay.

use super::{Lanes, LOOK_EVERY};
use crate::queue::lane::{Lane, KEY_SHARDS};
use crate::task::MAX_PRIORITY;
use crate::throttle::{warn_throttled, Throttle};
use crate::worker::Shared;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Subscribes to the lane notices and the claim inbox and follows them
/// until `stop`; `None` (logged) when a subscription fails: lane items
/// then run in arrival order, as a Go worker runs them.
pub(in crate::worker) async fn start(
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Option<(Arc<Lanes>, tokio::task::JoinHandle<()>)> {
    let subscribed = async {
        let notices = shared.storage.lane_notices(&shared.name).await?;
        let (prefix, acks) = shared.storage.claim_inbox().await?;
        Ok::<_, crate::Error>((notices, prefix, acks))
    }
    .await;
    match subscribed {
        Ok((notices, prefix, acks)) => {
            let lanes = Arc::new(Lanes::new(prefix));
            // before the first pull: a backlog's priority items go first
            look_at_all(&shared, &lanes).await;
            let follower = tokio::spawn(follow(shared, lanes.clone(), notices, acks, stop));
            Some((lanes, follower))
        }
        Err(e) => {
            tracing::warn!(queue = %shared.name, error = %e,
                "this worker does not serve lanes; their items run in arrival order");
            None
        }
    }
}

/// Follows the lane notices (marking their lanes), looks at every lane
/// when it starts and every [`LOOK_EVERY`] (marking those holding items:
/// off the slots' path, one read per lane), and carries out claimed
/// items' acknowledgements, until `stop`.
async fn follow(
    shared: Arc<Shared>,
    lanes: Arc<Lanes>,
    mut notices: async_nats::Subscriber,
    mut acks: async_nats::Subscriber,
    stop: CancellationToken,
) {
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut looking: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = look.tick() => {
                if looking.as_ref().is_none_or(|l| l.is_finished()) {
                    let (shared, lanes) = (shared.clone(), lanes.clone());
                    looking = Some(tokio::spawn(async move { look_at_all(&shared, &lanes).await }));
                }
            }
            n = notices.next() => match n {
                Some(n) => lanes.noticed(Lane::from_notice(n.payload.first().copied().unwrap_or(0))),
                None => break,
            },
            a = acks.next() => match a {
                Some(a) => {
                    let shared = shared.clone();
                    let lanes = lanes.clone();
                    tokio::spawn(async move { acknowledge(&shared, &lanes, a).await });
                }
                None => break,
            },
        }
    }
}

/// Marks every lane that holds an item (a lane that does not is unmarked
/// by the claim that finds it empty).
async fn look_at_all(shared: &Shared, lanes: &Lanes) {
    let all = (1..=MAX_PRIORITY)
        .map(Lane::Priority)
        .chain((0..KEY_SHARDS).map(Lane::Shard));
    for lane in all {
        match shared.storage.next_lane_item(&shared.name, lane, 0).await {
            Ok(Some(_)) => lanes.noticed(lane),
            Ok(None) => {}
            Err(e) => {
                static LOOK: Throttle = Throttle::new(Duration::from_secs(60));
                warn_throttled!(LOOK, queue = %shared.name, error = %e,
                    "looking for items in the queue's lanes failed; trying again shortly");
                return;
            }
        }
    }
}

/// Carries out one acknowledgement of a claimed item (see the module docs).
async fn acknowledge(shared: &Shared, lanes: &Lanes, ack: async_nats::Message) {
    let Some((backup, lane, id)) = ack
        .subject
        .strip_prefix(lanes.prefix.as_str())
        .and_then(|rest| parse_claim(rest.trim_start_matches('.')))
    else {
        return;
    };
    let body = ack.payload.as_ref();
    let mut reply = ack.reply.clone();
    let result = if body.starts_with(b"+ACK") || body.starts_with(b"+TERM") {
        // the try has ended: answered at once, the backup deleted after (a
        // worker dying in between leaves it, later acknowledged as a
        // duplicate of a final task)
        if let Some(reply) = reply.take() {
            shared.storage.answer(reply).await;
        }
        lanes.keys.lock().expect("keys lock").remove(&backup);
        shared
            .storage
            .remove_backup(&shared.name, id, backup, None)
            .await
    } else if body.starts_with(b"-NAK") {
        let key = lanes
            .keys
            .lock()
            .expect("keys lock")
            .remove(&backup)
            .flatten();
        // the item waits for the delay; its lane's other items do not (a
        // task found running elsewhere is handed back for the rest of its
        // run time: its lane, passed over for that, waited an hour)
        let delay = nak_delay(body);
        if let Some(delay) = delay {
            lanes.defer(id, delay);
        }
        super::backup::back_to_lane(shared, backup, lane, key.as_deref(), id, delay).await
    } else {
        Ok(())
    };
    if let Err(e) = result {
        static ACK: Throttle = Throttle::new(Duration::from_secs(10));
        warn_throttled!(ACK, task = %id, error = %e,
            "acknowledging a claimed item failed; its backup item is delivered later");
    }
    if let Some(reply) = reply {
        shared.storage.answer(reply).await;
    }
}

/// The delay of a `-NAK {"delay": <ns>}` body, `None` without one.
fn nak_delay(body: &[u8]) -> Option<Duration> {
    let json = body.strip_prefix(b"-NAK")?;
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    v["delay"].as_u64().map(Duration::from_nanos)
}

/// The backup's sequence, the lane and the task id of a claimed item's
/// ack subject (after the prefix): `<seq>.<lane notice>.<id>`.
fn parse_claim(rest: &str) -> Option<(u64, Lane, &str)> {
    let mut parts = rest.splitn(3, '.');
    let seq = parts.next()?.parse().ok()?;
    let lane = Lane::from_notice(parts.next()?.parse().ok()?);
    let id = parts
        .next()
        .filter(|id| !id.is_empty() && !id.contains('.'))?;
    Some((seq, lane, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_subjects_and_nak_delays_parse() {
        assert_eq!(
            parse_claim("12.9.abc"),
            Some((12, Lane::Priority(9), "abc"))
        );
        assert_eq!(parse_claim("12.18.abc"), Some((12, Lane::Shard(2), "abc")));
        assert_eq!(parse_claim("x.9.abc"), None);
        assert_eq!(parse_claim("12.9."), None);
        assert_eq!(parse_claim("12.9.a.b"), None);
        assert_eq!(parse_claim("12"), None);
        assert_eq!(
            nak_delay(br#"-NAK {"delay": 1500000000}"#),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(nak_delay(b"-NAK"), None);
    }
}
