//! KSUIDs: the ids of tasks and events (docs/storage.md §6, as Go's
//! `segmentio/ksuid`): 20 bytes, a big-endian count of seconds since
//! 2014-05-13T16:53:20Z followed by 16 random bytes, written as 27
//! base62 digits (`0-9A-Za-z`), so ids sort by creation time.
//!
//! Written here because ids are made on the hot path (one per task, one
//! per state event): a payload from the thread's random generator (not a
//! `getrandom` system call each) and a base62 encoding of fixed width
//! without big-number arithmetic. The property test compares the encoding
//! with `svix-ksuid`'s.

use time::OffsetDateTime;

/// The KSUID epoch (Unix seconds).
const EPOCH: i64 = 1_400_000_000;
/// Base62 digits, in order.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of an encoded KSUID.
pub(crate) const ENCODED_LEN: usize = 27;

/// A new KSUID for now and the time it carries (whole seconds).
pub(crate) fn new() -> (String, OffsetDateTime) {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    (with_payload(now, &rand::random()), seconds(now))
}

/// The KSUID of `unix_secs` (clamped to the KSUID range) and `payload`.
pub(crate) fn with_payload(unix_secs: i64, payload: &[u8; 16]) -> String {
    let stamp = (unix_secs - EPOCH).clamp(0, u32::MAX as i64) as u32;
    let mut raw = [0u8; 20];
    raw[..4].copy_from_slice(&stamp.to_be_bytes());
    raw[4..].copy_from_slice(payload);
    encode(&raw)
}

fn seconds(unix_secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The 27 base62 digits of a 160-bit big-endian number, most significant
/// first, zero-padded.
fn encode(raw: &[u8; 20]) -> String {
    // 62^5 fits in 32 bits: each pass divides the number by it and yields
    // five digits
    const CHUNK: u64 = 62 * 62 * 62 * 62 * 62;
    let mut words = [0u32; 5];
    for (w, b) in words.iter_mut().zip(raw.chunks_exact(4)) {
        *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    }
    let mut out = [b'0'; ENCODED_LEN];
    let mut pos = ENCODED_LEN;
    while pos > 0 {
        let mut rem = 0u64;
        for w in &mut words {
            let cur = (rem << 32) | u64::from(*w);
            *w = (cur / CHUNK) as u32;
            rem = cur % CHUNK;
        }
        for _ in 0..5 {
            if pos == 0 {
                break;
            }
            pos -= 1;
            out[pos] = ALPHABET[(rem % 62) as usize];
            rem /= 62;
        }
    }
    out.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use svix_ksuid::KsuidLike;

    proptest::proptest! {
        #[test]
        fn encodes_as_svix_ksuid(secs in EPOCH..EPOCH + u32::MAX as i64, payload: [u8; 16]) {
            let ours = with_payload(secs, &payload);
            let theirs = svix_ksuid::Ksuid::from_seconds(Some(secs), Some(&payload)).to_string();
            proptest::prop_assert_eq!(&ours, &theirs);
            let back: svix_ksuid::Ksuid = ours.parse().unwrap();
            proptest::prop_assert_eq!(back.timestamp::<OffsetDateTime>(), seconds(secs));
        }
    }

    #[test]
    fn extremes() {
        assert_eq!(encode(&[0; 20]), "0".repeat(27));
        // the largest KSUID (Go's ksuid.Max)
        assert_eq!(encode(&[0xff; 20]), "aWgEPTl1tmebfsQzFP4bxwgy80V");
    }

    #[test]
    fn new_ids_differ_and_carry_now() {
        let before = OffsetDateTime::now_utc().unix_timestamp();
        let (a, at) = new();
        let (b, _) = new();
        assert_ne!(a, b);
        assert_eq!(a.len(), ENCODED_LEN);
        assert!(at.unix_timestamp() >= before && at.unix_timestamp() <= before + 1);
    }
}
