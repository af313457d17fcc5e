//! IPv4 and IPv6 fragment reassembly with bounded memory: fragments in, whole IP packets out.
//! Uses etherparse's `IpDefragBuf` for the byte ranges; this module keys, bounds and times out the
//! buffers and rebuilds a plain IP header for the reassembled packet. Pure: time comes from packets.

use crate::decode::Fragment;
use etherparse::defrag::IpDefragBuf;
use etherparse::IpFragOffset;
use std::collections::HashMap;
use std::net::IpAddr;

/// Most packets being reassembled at once.
const MAX_BUFFERS: usize = 4096;
/// Most fragment bytes held across all buffers.
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long an incomplete packet waits for its missing fragments (Linux's ipfrag_time).
const TIMEOUT_NS: i64 = 30 * 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
    vlan: Option<u16>,
    inner_vlan: Option<u16>,
}

struct Buffer {
    buf: IpDefragBuf,
    first_ns: i64,
    ttl: u8,
}

/// Counters the caller turns into metrics (fixed reasons).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefragStats {
    pub reassembled: u64,
    /// Incomplete packets dropped after `TIMEOUT_NS`.
    pub timed_out: u64,
    /// Fragments dropped because the table or its byte budget was full.
    pub table_full: u64,
    /// Fragments that contradicted earlier ones (overlaps with a different end, bad lengths).
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
        let key = Key {
            src: f.src,
            dst: f.dst,
            id: f.id,
            proto: f.proto,
            vlan: f.vlan,
            inner_vlan: f.inner_vlan,
        };
        if !self.buffers.contains_key(&key) {
            if self.buffers.len() >= MAX_BUFFERS || self.bytes + f.data.len() > MAX_BYTES {
                self.stats.table_full += 1;
                return None;
            }
            let buf = IpDefragBuf::new(etherparse::IpNumber(f.proto), Vec::new(), Vec::new());
            self.buffers.insert(key.clone(), Buffer { buf, first_ns: ts_ns, ttl: f.ttl });
        }
        if self.bytes + f.data.len() > MAX_BYTES {
            self.stats.table_full += 1;
            return None;
        }
        let entry = self.buffers.get_mut(&key)?;
        let before = entry.buf.data().len();
        let offset = IpFragOffset::try_new(f.offset).ok()?;
        if entry.buf.add(offset, f.more, f.data).is_err() {
            self.stats.invalid += 1;
            if let Some(dropped) = self.buffers.remove(&key) {
                self.bytes -= before.min(self.bytes);
                drop(dropped);
            }
            return None;
        }
        self.bytes += entry.buf.data().len().saturating_sub(before);
        if !entry.buf.is_complete() {
            return None;
        }
        let done = self.buffers.remove(&key)?;
        let (payload, _) = done.buf.take_bufs();
        self.bytes -= payload.len().min(self.bytes);
        self.stats.reassembled += 1;
        Some(Reassembled {
            ip: ip_packet(&key, done.ttl, &payload)?,
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
                freed += b.buf.data().len();
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
    fn bad_fragments_are_counted_not_panics() {
        let mut d = Defrag::default();
        // Not a multiple of 8 with more fragments to come.
        assert!(d.add(0, &frag(0, true, &UDP[..13])).is_none());
        assert_eq!(d.stats.invalid, 1);
        assert!(d.add(0, &frag(8191, false, UDP)).is_none());
    }
}
