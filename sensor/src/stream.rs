//! One direction of a TCP connection put back in order for protocol parsers: segments in, in-order
//! bytes out. Retransmitted bytes are delivered once; a few out-of-order segments are held until the
//! hole fills; beyond that cap the hole is skipped and reported as a gap. Pure and bounded.

/// Most out-of-order segments held per direction.
const MAX_HELD_SEGMENTS: usize = 32;
/// Most out-of-order bytes held per direction.
const MAX_HELD_BYTES: usize = 128 * 1024;

#[derive(Debug, Default)]
pub struct Stream {
    next: Option<u32>,
    held: Vec<(u32, Vec<u8>)>,
    held_bytes: usize,
    /// Where this direction's FIN sits, once seen: an acknowledgment of the FIN is not one of
    /// a byte.
    fin: Option<u32>,
}

/// What one segment produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// A hole was skipped before the bytes appended this time: how many bytes it held.
    pub gap: Option<u32>,
}

impl Stream {
    /// A stream whose first byte is at `next` when known (the SYN was seen), else at the first
    /// segment's.
    pub fn starting_at(next: Option<u32>) -> Stream {
        Stream { next, ..Stream::default() }
    }

    /// Where the next in-order byte is expected, once known.
    pub fn next(&self) -> Option<u32> {
        self.next
    }

    /// No out-of-order segment is held.
    pub fn holds_nothing(&self) -> bool {
        self.held.is_empty()
    }

    /// This direction sent its FIN at sequence number `seq`.
    pub fn fin_at(&mut self, seq: u32) {
        self.fin.get_or_insert(seq);
    }

    /// The peer acknowledged every byte before `ack`: those not seen by now never will be (the
    /// capture missed them), as Zeek's reassembler concludes. Skips the first such hole (up to
    /// the first held segment after it, or to `ack`), appends to `out` what then lies in order
    /// and returns how many bytes the hole held. None when nothing before `ack` is missing; call
    /// again until None, as each hole is reported on its own.
    pub fn acked(&mut self, ack: u32, out: &mut Vec<u8>) -> Option<u32> {
        let next = self.next?;
        let ack = match self.fin {
            Some(fin) if after(ack, fin) => fin,
            _ => ack,
        };
        if !after(ack, next) {
            return None;
        }
        // Held segments all start after `next` (they are drained as soon as they do not).
        let end = self
            .held
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| !after(*s, ack))
            .min_by_key(|s| s.wrapping_sub(next))
            .unwrap_or(ack);
        self.next = Some(end);
        self.drain_held(out);
        Some(end.wrapping_sub(next))
    }

    /// Feed one segment; in-order bytes are appended to `out`.
    pub fn segment(&mut self, seq: u32, syn: bool, payload: &[u8], out: &mut Vec<u8>) -> Delivery {
        let mut delivery = Delivery::default();
        if syn {
            self.next.get_or_insert(seq.wrapping_add(1));
            // Data on a SYN is rare; it starts right after the SYN's sequence number.
            if payload.is_empty() {
                return delivery;
            }
        }
        if payload.is_empty() {
            return delivery;
        }
        let next = *self.next.get_or_insert(seq);
        let rel = seq.wrapping_sub(next) as i32;
        if rel <= 0 {
            self.take(seq, payload, out);
        } else if self.held.len() < MAX_HELD_SEGMENTS
            && self.held_bytes + payload.len() <= MAX_HELD_BYTES
        {
            self.held_bytes += payload.len();
            self.held.push((seq, payload.to_vec()));
            return delivery;
        } else {
            // Too much waiting on a hole: skip to the earliest byte we hold (or this segment).
            let earliest = self
                .held
                .iter()
                .map(|(s, _)| *s)
                .chain(std::iter::once(seq))
                .min_by_key(|s| s.wrapping_sub(next))
                .unwrap_or(seq);
            self.next = Some(earliest);
            delivery.gap = Some(earliest.wrapping_sub(next));
            if earliest == seq {
                self.take(seq, payload, out);
            } else {
                self.held_bytes += payload.len();
                self.held.push((seq, payload.to_vec()));
            }
        }
        self.drain_held(out);
        delivery
    }

    /// [`Stream::segment`], with the in-order bytes returned: borrowed from `payload` when
    /// nothing is held out of order (nearly always, and then no byte is copied), else assembled
    /// in `scratch` (cleared first).
    pub fn segment_bytes<'a>(
        &mut self,
        seq: u32,
        syn: bool,
        payload: &'a [u8],
        scratch: &'a mut Vec<u8>,
    ) -> (&'a [u8], Delivery) {
        if self.held.is_empty() && !payload.is_empty() {
            let next = if syn {
                *self.next.get_or_insert(seq.wrapping_add(1))
            } else {
                *self.next.get_or_insert(seq)
            };
            // In order or overlapping what was delivered: `take`'s case, with nothing to drain.
            if seq.wrapping_sub(next) as i32 <= 0 {
                let skip = next.wrapping_sub(seq) as usize;
                if skip >= payload.len() {
                    return (&[], Delivery::default());
                }
                self.next = Some(seq.wrapping_add(payload.len() as u32));
                return (&payload[skip..], Delivery::default());
            }
        }
        scratch.clear();
        let delivery = self.segment(seq, syn, payload, scratch);
        (scratch, delivery)
    }

    fn take(&mut self, seq: u32, payload: &[u8], out: &mut Vec<u8>) {
        let Some(next) = self.next else { return };
        let skip = next.wrapping_sub(seq) as usize;
        if skip < payload.len() {
            out.extend_from_slice(&payload[skip..]);
            self.next = Some(seq.wrapping_add(payload.len() as u32));
        }
    }

    fn drain_held(&mut self, out: &mut Vec<u8>) {
        loop {
            let Some(next) = self.next else { return };
            let Some(i) = self.held.iter().position(|(s, _)| s.wrapping_sub(next) as i32 <= 0)
            else {
                return;
            };
            let (seq, data) = self.held.swap_remove(i);
            self.held_bytes -= data.len();
            self.take(seq, &data, out);
        }
    }
}

/// `a` lies after `b` in sequence space (within half of it, as TCP compares).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_and_drops_retransmissions() {
        let mut s = Stream::default();
        let mut out = Vec::new();
        s.segment(99, true, b"", &mut out);
        s.segment(100, false, b"abc", &mut out);
        s.segment(106, false, b"ghi", &mut out);
        assert_eq!(out, b"abc");
        s.segment(103, false, b"def", &mut out);
        s.segment(100, false, b"abcd", &mut out);
        assert_eq!(out, b"abcdefghi");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_segments_never_panic_and_stay_bounded(
            segs in proptest::collection::vec((proptest::prelude::any::<u32>(), 0usize..2000, proptest::prelude::any::<bool>()), 0..80)
        ) {
            let mut s = Stream::default();
            let data = vec![7u8; 2000];
            let mut out = Vec::new();
            for (seq, len, syn) in segs {
                s.segment(seq, syn, &data[..len], &mut out);
                proptest::prop_assert!(s.held.len() <= MAX_HELD_SEGMENTS + 1);
                proptest::prop_assert!(s.held_bytes <= MAX_HELD_BYTES + 2000);
                // An acknowledgment near the segment: every hole before it is skipped, and what
                // stays held lies after it.
                let ack = seq.wrapping_add(len as u32 / 2);
                let mut holes = 0;
                while s.acked(ack, &mut out).is_some() {
                    holes += 1;
                    proptest::prop_assert!(holes <= MAX_HELD_SEGMENTS + 2);
                }
                if let Some(next) = s.next {
                    proptest::prop_assert!(!after(ack, next));
                    proptest::prop_assert!(s.held.iter().all(|(h, _)| after(*h, next)));
                }
            }
        }
    }

    proptest::proptest! {
        /// Near-in-order segments (retransmissions, overlaps, holes, SYNs) with distinct bytes:
        /// the borrowing path delivers what `segment` appends, with the same gaps and state.
        #[test]
        fn segment_bytes_delivers_what_segment_appends(
            start in proptest::prelude::any::<u32>(),
            segs in proptest::collection::vec((0u32..3000, 0usize..700, 0u8..8), 0..60)
        ) {
            let data: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
            let (mut a, mut b) = (Stream::default(), Stream::default());
            let (mut appended, mut returned, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
            for (offset, len, syn) in segs {
                let seq = start.wrapping_add(offset);
                let payload = &data[offset as usize..offset as usize + len];
                let syn = syn == 0;
                let before = appended.len();
                let d1 = a.segment(seq, syn, payload, &mut appended);
                let (bytes, d2) = b.segment_bytes(seq, syn, payload, &mut scratch);
                proptest::prop_assert_eq!(&appended[before..], bytes);
                returned.extend_from_slice(bytes);
                proptest::prop_assert_eq!(d1, d2);
                proptest::prop_assert_eq!(a.next, b.next);
                proptest::prop_assert_eq!(&a.held, &b.held);
            }
            proptest::prop_assert_eq!(appended, returned);
        }
    }

    /// Acknowledged bytes that never came are a hole: skipped at once, each hole on its own,
    /// and what is held after it delivered; the FIN's sequence number is not a missing byte.
    #[test]
    fn an_acknowledged_hole_is_skipped_at_once() {
        let mut s = Stream::default();
        let mut out = Vec::new();
        s.segment(99, true, b"", &mut out);
        s.segment(100, false, b"abc", &mut out);
        // 103..106 and 109..110 never come; 106..109 and 110..112 are held.
        s.segment(106, false, b"ghi", &mut out);
        s.segment(110, false, b"kl", &mut out);
        assert_eq!(out, b"abc");
        assert_eq!(s.acked(103, &mut out), None, "nothing missing before 103");
        let mut gaps = Vec::new();
        while let Some(skipped) = s.acked(112, &mut out) {
            gaps.push(skipped);
        }
        assert_eq!(gaps, vec![3, 1]);
        assert_eq!(out, b"abcghikl");
        assert!(s.holds_nothing());
        // Byte 112 not acknowledged yet: "n" is held, no hole.
        s.segment(113, false, b"n", &mut out);
        assert_eq!(s.acked(112, &mut out), None);
        s.fin_at(114);
        // The peer acknowledges the FIN (115): only byte 112 is missing.
        assert_eq!(s.acked(115, &mut out), Some(1));
        assert_eq!(s.acked(115, &mut out), None);
        assert_eq!(out, b"abcghikln");
        // A stream that has not started knows of no hole.
        assert_eq!(Stream::default().acked(5, &mut out), None);
    }

    #[test]
    fn skips_a_hole_when_too_much_is_held() {
        let mut s = Stream::default();
        let mut out = Vec::new();
        s.segment(0, false, b"a", &mut out);
        let mut gaps = Vec::new();
        for i in 0..=MAX_HELD_SEGMENTS as u32 {
            gaps.extend(s.segment(10 + i, false, b"x", &mut out).gap);
        }
        // Bytes 1..10 never came: one hole of 9 bytes, then everything held is delivered.
        assert_eq!(gaps, vec![9]);
        assert_eq!(out.len(), 1 + MAX_HELD_SEGMENTS + 1);
    }
}
