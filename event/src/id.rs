//! Deterministic event ids.

use sha1::{Digest, Sha1};
use std::cell::RefCell;

/// The `event.id` of the event a sensor numbered `seq`: 32 lowercase hex digits, the first 16 the
/// sensor's id prefix ([`sensor_prefix`]: the first 8 bytes of SHA-1 over `"canh-event-id\0"` and
/// the sensor id), the last 16 the big-endian sequence number. A replayed event (from the spool,
/// or a pcap read again) carries the same id, which lets the store drop duplicates; two events of
/// one sensor never share an id, and two sensors' ids differ unless their 64-bit prefixes collide.
pub fn event_id(sensor_id: &str, seq: u64) -> String {
    let hex = event_id_bytes(sensor_id, seq);
    // Hex digits are ASCII: always valid UTF-8.
    String::from_utf8_lossy(&hex).into_owned()
}

/// [`event_id`] as bytes, without allocating (for writers that put it straight into JSON). The
/// prefix of the last sensor id asked for is kept per thread, so a sensor's events cost no hash.
pub fn event_id_bytes(sensor_id: &str, seq: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    write_event_id(sensor_id, seq, &mut out);
    out
}

/// [`event_id_bytes`] written into `out` in place (see `Timestamp::write_rfc3339`: no copy of a
/// returned array that waits on the stores that built it).
pub fn write_event_id(sensor_id: &str, seq: u64, out: &mut [u8; 32]) {
    LAST_PREFIX.with_borrow_mut(|last| {
        if last.0.as_deref() != Some(sensor_id) {
            last.1 = sensor_prefix(sensor_id);
            match &mut last.0 {
                Some(text) => {
                    text.clear();
                    text.push_str(sensor_id);
                }
                None => last.0 = Some(sensor_id.to_string()),
            }
        }
        out[..16].copy_from_slice(&last.1);
    });
    write_seq_hex(seq, &mut out[16..]);
}

/// [`event_id_bytes`] for a caller that keeps the sensor's prefix itself ([`sensor_prefix`]).
pub fn event_id_with_prefix(prefix: &[u8; 16], seq: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(prefix);
    write_seq_hex(seq, &mut out[16..]);
    out
}

/// `seq` as 16 lowercase hex digits, big-endian, into `out` (16 bytes).
fn write_seq_hex(seq: u64, out: &mut [u8]) {
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = HEX[(seq >> (60 - 4 * i) & 0x0f) as usize];
    }
}

/// The first half of a sensor's event ids: the first 8 bytes of SHA-1 over `"canh-event-id\0"`
/// and the sensor id, as 16 hex digits.
pub fn sensor_prefix(sensor_id: &str) -> [u8; 16] {
    let mut hasher = Sha1::new();
    hasher.update(b"canh-event-id\0");
    hasher.update(sensor_id.as_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    for (i, byte) in digest[..8].iter().enumerate() {
        out[2 * i] = HEX[(byte >> 4) as usize];
        out[2 * i + 1] = HEX[(byte & 0x0f) as usize];
    }
    out
}

thread_local! {
    /// The sensor id last asked for and its prefix.
    static LAST_PREFIX: RefCell<(Option<String>, [u8; 16])> = const { RefCell::new((None, [0; 16])) };
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_follows_the_documented_scheme() {
        // The scheme above, computed independently with Python's hashlib:
        // sha1(b"canh-event-id\0" + sensor).hexdigest()[:16] + "%016x" % seq
        assert_eq!(event_id("offline", 0), "7cf8d796741a98570000000000000000");
        assert_eq!(event_id("hn-01", 7), "e4e97589a1ec83440000000000000007");
        assert_eq!(event_id("hn-01", 0x0102_0304_0506_0708), "e4e97589a1ec83440102030405060708");
        assert_eq!(&sensor_prefix("hn-01"), b"e4e97589a1ec8344");
    }

    #[test]
    fn ids_from_a_kept_prefix() {
        for seq in [0, 7, 0x0102_0304_0506_0708, u64::MAX] {
            let ours = event_id_with_prefix(&sensor_prefix("hn-01"), seq);
            assert_eq!(ours, event_id_bytes("hn-01", seq));
        }
    }

    #[test]
    fn same_inputs_same_id() {
        assert_eq!(event_id("hn-01", 7), event_id("hn-01", 7));
        assert_eq!(event_id("hn-01", 7).len(), 32);
    }

    #[test]
    fn sensor_and_sequence_both_matter() {
        assert_ne!(event_id("hn-01", 7), event_id("hn-01", 8));
        assert_ne!(event_id("hn-01", 7), event_id("hn-02", 7));
        assert_ne!(event_id("a", 1), event_id("a\0", 1));
        assert_ne!(event_id("", 1), event_id("a", 1));
    }

    #[test]
    fn the_cached_prefix_follows_the_sensor_id() {
        // Alternating sensor ids on one thread: each id gets its own prefix, not the last one's.
        let a = event_id("s-a", 1);
        let b = event_id("s-b", 1);
        assert_eq!(&a.as_bytes()[..16], &sensor_prefix("s-a"));
        assert_eq!(&b.as_bytes()[..16], &sensor_prefix("s-b"));
        assert_eq!(event_id("s-a", 1), a);
        assert_eq!(event_id("", 2)[..16], String::from_utf8_lossy(&sensor_prefix(""))[..]);
    }
}
