//! Deterministic event ids.

use sha1::{Digest, Sha1};

/// The `event.id` of the event a sensor numbered `seq`: 32 lowercase hex digits derived from the
/// sensor id and the sensor-local sequence number. A replayed event (from the spool, or a pcap read
/// again) carries the same id, which lets the store drop duplicates.
pub fn event_id(sensor_id: &str, seq: u64) -> String {
    let hex = event_id_bytes(sensor_id, seq);
    // Hex digits are ASCII: always valid UTF-8.
    String::from_utf8_lossy(&hex).into_owned()
}

/// [`event_id`] as bytes, without allocating (for writers that put it straight into JSON).
pub fn event_id_bytes(sensor_id: &str, seq: u64) -> [u8; 32] {
    let mut hasher = Sha1::new();
    hasher.update(b"canh-event-id\0");
    hasher.update(sensor_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(seq.to_be_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 32];
    for (i, byte) in digest[..16].iter().enumerate() {
        out[2 * i] = HEX[(byte >> 4) as usize];
        out[2 * i + 1] = HEX[(byte & 0x0f) as usize];
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_follows_the_documented_scheme() {
        // The README's scheme (first 16 bytes of SHA-1 over "canh-event-id\0", the sensor id,
        // "\0" and the big-endian sequence number), computed independently with Python's hashlib.
        assert_eq!(event_id("offline", 0), "06d5156cdb12268693dd2a9e1e070855");
        assert_eq!(event_id("hn-01", 7), "a8e5ac82dead690a1613100712a12f29");
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
        // The separator keeps ("a", ..) and ("a\0..", ..) apart from concatenation accidents.
        assert_ne!(event_id("a", 1), event_id("a\0", 1));
    }
}
