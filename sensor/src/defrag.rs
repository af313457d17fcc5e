//! IPv4 and IPv6 fragment reassembly with bounded memory: fragments in, whole IP packets out.
//! Follows Zeek's reassembly rules, so the flows agree with its conn.log on odd fragment trains:
//! bytes seen first win where fragments overlap; fragments of any length are accepted (Zeek only
//! flags small ones); the packet's size is the end of the last fragment (no MF flag), grown when
//! a later fragment reaches beyond it; and when the bytes from offset 0 are contiguous up to that
//! size the packet is complete, even if stray bytes lie beyond a hole further on (they are cut
//! off, as Zeek does). This module keys, bounds and times out the buffers and rebuilds a plain
//! IP header for the reassembled packet. Pure: time comes from packets.

use crate::decode::Fragment;
use std::collections::HashMap;
use std::net::IpAddr;

/// Most packets being reassembled at once.
const MAX_BUFFERS: usize = 4096;
/// Most fragment bytes held across all buffers.
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long an incomplete packet waits for its missing fragments (Linux's ipfrag_time).
const TIMEOUT_NS: i64 = 30 * 1_000_000_000;
/// The largest reassembled payload: what an IPv4 total length (with a 20-byte header) or an
/// IPv6 payload length can state.
const MAX_PAYLOAD_V4: usize = 65_535 - 20;
const MAX_PAYLOAD_V6: usize = 65_535;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
    vlan: Option<u16>,
    inner_vlan: Option<u16>,
}

/// One packet being reassembled.
#[derive(Debug, Default)]
struct Buffer {
    /// The payload bytes received so far, at their offsets (zero where nothing arrived yet).
    data: Vec<u8>,
    /// Byte ranges of `data` received, sorted, disjoint and not touching.
    have: Vec<(usize, usize)>,
    /// The payload's size as the fragments state it; 0 while no last fragment was seen.
    size: usize,
    first_ns: i64,
    ttl: u8,
}

impl Buffer {
    /// Add a fragment's bytes at `start`; bytes already received are kept (first wins).
    fn add(&mut self, start: usize, bytes: &[u8], last: bool) {
        let end = start + bytes.len();
        // The size: the last fragment's end, grown by any fragment reaching beyond it.
        if last && self.size == 0 {
            self.size = end;
        }
        if self.size != 0 && end > self.size {
            self.size = end;
        }
        if bytes.is_empty() {
            return;
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        // Copy the parts of [start, end) that no earlier fragment covered.
        let mut at = start;
        for &(a, b) in &self.have {
            if b <= at {
                continue;
            }
            if a >= end {
                break;
            }
            if a > at {
                self.data[at..a].copy_from_slice(&bytes[at - start..a - start]);
            }
            at = at.max(b);
            if at >= end {
                break;
            }
        }
        if at < end {
            self.data[at..end].copy_from_slice(&bytes[at - start..]);
        }
        // Merge [start, end) into the ranges.
        let (mut lo, mut hi) = (start, end);
        self.have.retain(|&(a, b)| {
            if b < lo || a > hi {
                return true;
            }
            lo = lo.min(a);
            hi = hi.max(b);
            false
        });
        let at = self.have.partition_point(|&(a, _)| a < lo);
        self.have.insert(at, (lo, hi));
    }

    /// The payload's length once the packet is complete.
    fn complete_len(&self) -> Option<usize> {
        let &(first_start, first_end) = self.have.first()?;
        if first_start > 0 || self.size == 0 {
            return None;
        }
        // Contiguous from offset 0 up to the stated size: complete. Bytes beyond a hole further on
        // are dropped; a contiguous run past the stated size makes the packet that long.
        (first_end >= self.size).then_some(first_end)
    }
}

/// Counters the caller turns into metrics (fixed reasons).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefragStats {
    pub reassembled: u64,
    /// Incomplete packets dropped after `TIMEOUT_NS`.
    pub timed_out: u64,
    /// Fragments dropped because the table or its byte budget was full.
    pub table_full: u64,
    /// Fragments dropped because they reach beyond the largest IP packet.
    pub invalid: u64,
}

#[derive(Default)]
pub struct Defrag {
    buffers: HashMap<Key, Buffer, foldhash::fast::RandomState>,
    bytes: usize,
    last_expire_ns: i64,
    pub stats: DefragStats,
}

/// The reassembled packet: an IP header without options or extension headers, then the payload.
pub struct Reassembled {
    pub ip: Vec<u8>,
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
}

impl Defrag {
    /// Add one fragment; returns the whole packet once its last piece arrived.
    pub fn add(&mut self, ts_ns: i64, f: &Fragment<'_>) -> Option<Reassembled> {
        if ts_ns.saturating_sub(self.last_expire_ns) >= 1_000_000_000 {
            self.expire(ts_ns);
            self.last_expire_ns = ts_ns;
        }
        let start = usize::from(f.offset) * 8;
        let end = start + f.data.len();
        let max = if f.src.is_ipv4() { MAX_PAYLOAD_V4 } else { MAX_PAYLOAD_V6 };
        if end > max {
            self.stats.invalid += 1;
            return None;
        }
        let key = Key {
            src: f.src,
            dst: f.dst,
            id: f.id,
            proto: f.proto,
            vlan: f.vlan,
            inner_vlan: f.inner_vlan,
        };
        if !self.buffers.contains_key(&key) && self.buffers.len() >= MAX_BUFFERS {
            self.stats.table_full += 1;
            return None;
        }
        let entry = self.buffers.entry(key.clone()).or_insert_with(|| Buffer {
            first_ns: ts_ns,
            ttl: f.ttl,
            ..Buffer::default()
        });
        let grows = end.saturating_sub(entry.data.len());
        if self.bytes + grows > MAX_BYTES {
            self.stats.table_full += 1;
            if entry.have.is_empty() {
                self.buffers.remove(&key);
            }
            return None;
        }
        entry.add(start, f.data, !f.more);
        self.bytes += grows;
        let len = entry.complete_len()?;
        let done = self.buffers.remove(&key)?;
        self.bytes -= done.data.len().min(self.bytes);
        self.stats.reassembled += 1;
        Some(Reassembled {
            ip: ip_packet(&key, done.ttl, done.data.get(..len)?)?,
            vlan: key.vlan,
            inner_vlan: key.inner_vlan,
        })
    }

    /// Drop incomplete packets older than the timeout.
    pub fn expire(&mut self, now_ns: i64) {
        let before = self.buffers.len();
        let mut freed = 0;
        self.buffers.retain(|_, b| {
            let keep = now_ns.saturating_sub(b.first_ns) <= TIMEOUT_NS;
            if !keep {
                freed += b.data.len();
            }
            keep
        });
        self.stats.timed_out += (before - self.buffers.len()) as u64;
        self.bytes -= freed.min(self.bytes);
    }

    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }
}

fn ip_packet(key: &Key, ttl: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(payload.len() + 40);
    match (key.src, key.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = u16::try_from(payload.len() + 20).ok()?;
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&(key.id as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, ttl, key.proto, 0, 0]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let len = u16::try_from(payload.len()).ok()?;
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&[key.proto, ttl]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        _ => return None,
    }
    out.extend_from_slice(payload);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType};

    fn frag(offset: u16, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            src: "10.0.0.1".parse().expect("ip"),
            dst: "10.0.0.2".parse().expect("ip"),
            id: 7,
            proto: 17,
            offset,
            more,
            ttl: 64,
            data,
            vlan: Some(5),
            inner_vlan: None,
        }
    }

    // A UDP datagram 1000 -> 53 with 12 payload bytes, split after 16 bytes (offset 2 x 8).
    const UDP: &[u8] = &[0x03, 0xe8, 0, 53, 0, 20, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    #[test]
    fn reassembles_out_of_order_fragments() {
        let mut d = Defrag::default();
        assert!(d.add(0, &frag(2, false, &UDP[16..])).is_none());
        let whole = d.add(1, &frag(0, true, &UDP[..16])).expect("complete");
        assert_eq!(whole.vlan, Some(5));
        let p = decode(LinkType::Raw, &whole.ip).expect("decodes");
        assert_eq!((p.src_port, p.dst_port, p.ip_len, p.payload_len), (1000, 53, 40, 12));
        assert!(d.is_empty());
        assert_eq!(d.stats.reassembled, 1);
    }

    #[test]
    fn incomplete_packets_time_out() {
        let mut d = Defrag::default();
        assert!(d.add(0, &frag(0, true, &UDP[..16])).is_none());
        d.expire(TIMEOUT_NS + 1);
        assert!(d.is_empty());
        assert_eq!(d.stats.timed_out, 1);
        assert_eq!(d.bytes, 0);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_fragments_never_panic(
            frags in proptest::collection::vec((0u16..8192, proptest::prelude::any::<bool>(), 0usize..64, 0u32..4), 0..60)
        ) {
            let data = [1u8; 64];
            let mut d = Defrag::default();
            for (i, (offset, more, len, id)) in frags.into_iter().enumerate() {
                let mut f = frag(offset, more, &data[..len]);
                f.id = id;
                if let Some(whole) = d.add(i as i64, &f) {
                    let _ = decode(LinkType::Raw, &whole.ip);
                }
            }
            proptest::prop_assert!(d.bytes <= MAX_BYTES);
        }
    }

    #[test]
    fn fragments_beyond_the_largest_packet_are_counted_not_panics() {
        let mut d = Defrag::default();
        assert!(d.add(0, &frag(8191, false, UDP)).is_none());
        assert_eq!(d.stats.invalid, 1);
        assert!(d.is_empty());
    }

    /// Zeek's `ipv4/fragmented-1` trace: a first fragment of 18 bytes (not a multiple of 8), the
    /// last fragment at 48..164, then a fragment at 0..304 that overlaps both and reaches past the
    /// stated end. Zeek grows the packet to 304 bytes and keeps the bytes it saw first.
    #[test]
    fn odd_sizes_overlaps_and_a_grown_end_as_zeek() {
        let first: Vec<u8> = (0..18).collect();
        let last = vec![0xbb; 116];
        let late = vec![0xcc; 304];
        let mut d = Defrag::default();
        assert!(d.add(0, &frag(0, true, &first)).is_none());
        assert!(d.add(1, &frag(6, false, &last)).is_none());
        let whole = d.add(2, &frag(0, true, &late)).expect("complete");
        let payload = &whole.ip[20..];
        assert_eq!(payload.len(), 304);
        assert_eq!(&payload[..18], &first[..]);
        assert!(payload[18..48].iter().all(|&b| b == 0xcc));
        assert!(payload[48..164].iter().all(|&b| b == 0xbb));
        assert!(payload[164..].iter().all(|&b| b == 0xcc));
        assert_eq!(u16::from_be_bytes([whole.ip[2], whole.ip[3]]), 324);
        assert_eq!(d.bytes, 0);
    }

    /// A hole that stays open (Zeek's `ipv4/fragmented-2`), and fragments that all say "more
    /// follow" (`ipv4/fragmented-3`): never complete, as in Zeek.
    #[test]
    fn holes_and_a_missing_last_fragment_never_complete() {
        let mut d = Defrag::default();
        assert!(d.add(0, &frag(0, true, &[1; 18])).is_none());
        assert!(d.add(1, &frag(6, false, &[2; 116])).is_none());
        assert!(d.add(2, &frag(0, true, &[1; 18])).is_none());
        let mut d = Defrag::default();
        for i in 0..5u16 {
            assert!(d.add(i64::from(i), &frag(i * 185, true, &[3; 1480])).is_none());
        }
        assert_eq!(d.len(), 1);
    }

    /// Contiguous from 0 to the stated end with stray bytes beyond a hole: complete at the end.
    #[test]
    fn stray_bytes_beyond_a_hole_are_cut_off() {
        let mut d = Defrag::default();
        assert!(d.add(0, &frag(4, true, &[9; 8])).is_none()); // 32..40, beyond the end
        assert!(d.add(1, &frag(1, false, &[2; 8])).is_none()); // 8..16, the last
        let whole = d.add(2, &frag(0, true, &[1; 8])).expect("complete");
        assert_eq!(&whole.ip[20..], &[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]);
    }
}
