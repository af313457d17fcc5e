//! Bidirectional flow tracking with Zeek conn.log semantics (originator, per-direction packets and IP
//! bytes, payload bytes from TCP sequence numbers, conn_state, history). Pure: time comes from the
//! packets, not from a clock.

use crate::decode::Packet;
use crate::slot_index::{prefetch_all, SlotIndex};
use std::net::IpAddr;

const NANOS: i64 = 1_000_000_000;
/// How often idle and closed flows are looked for, in packet time.
const SWEEP_INTERVAL_NS: i64 = 5 * NANOS;
/// How many flows ahead a sweep asks for the slots it will read, and for the index entries it
/// will remove (fewer: the slot's key must have arrived to find the entry).
const SLOT_AHEAD: usize = 8;
const INDEX_AHEAD: usize = 4;

#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub tcp_idle_timeout_ns: i64,
    pub udp_idle_timeout_ns: i64,
    pub other_idle_timeout_ns: i64,
    /// How long a closed or reset TCP flow lingers for its last packets before it is written.
    pub tcp_close_delay_ns: i64,
    /// How long a SYN may go unanswered before the attempt is written (Zeek's tcp_attempt_delay).
    pub tcp_attempt_ns: i64,
    /// The most flows held at once; beyond it the oldest-looking flow is written early.
    pub max_flows: usize,
}

impl Default for FlowConfig {
    fn default() -> FlowConfig {
        // Zeek's defaults: tcp_inactivity_timeout 5 min, udp/icmp 1 min, tcp_close_delay 5 s.
        FlowConfig {
            tcp_idle_timeout_ns: 300 * NANOS,
            udp_idle_timeout_ns: 60 * NANOS,
            other_idle_timeout_ns: 60 * NANOS,
            tcp_close_delay_ns: 5 * NANOS,
            tcp_attempt_ns: 5 * NANOS,
            max_flows: 1_000_000,
        }
    }
}

/// Why a flow record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Closed (FIN/RST) or idle past its timeout.
    End,
    /// Pushed out because the table was full.
    Evicted,
    /// The input ended while the flow was still open.
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::End => "end",
            EndReason::Evicted => "evicted",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// TCP endpoint states, as Zeek names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcpState {
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// Most sequence holes remembered per direction; older holes beyond it count as missed at once.
const MAX_HOLES: usize = 16;

/// "Not set" for the time and sequence fields below (saves an `Option`'s tag per field).
const NO_TIME: i64 = i64::MAX;
const NO_SEQ: u64 = u64::MAX;

/// Sequence holes of one direction: rare, so kept out of line.
#[derive(Debug, Clone, Default)]
struct Holes {
    /// Ranges below `seq_high` never seen (relative), oldest first.
    list: Vec<(u64, u64)>,
    /// Hole bytes forgotten because of `MAX_HOLES`.
    forgotten: u64,
}

#[derive(Debug, Clone)]
struct Side {
    packets: u64,
    ip_bytes: u64,
    /// TCP: highest payload end seen, relative to `seq_base`. Other protocols: the sum of payload
    /// lengths (a flow's packets are all TCP or all not: its key holds the protocol, and the
    /// decoder gives TCP details exactly to protocol 6).
    seq_high: u64,
    /// TCP: where this side's FIN sits (relative), once seen; `NO_SEQ` before.
    fin_at: u64,
    /// TCP: the highest acknowledgment the peer sent for this side's data (relative).
    acked: u64,
    /// TCP: sequence number of the first payload byte (valid when `has_base`); set from the SYN or
    /// the first packet seen.
    seq_base: u32,
    /// TCP: retransmitted segments, for Zeek's 1, 10, 100, ... repetition of `T` (saturates).
    retransmits: u32,
    /// TCP: zero-window advertisements, for the same repetition of `W` (saturates).
    zero_windows: u32,
    /// History letters already recorded for this side (bit [`letter_bit`]).
    letters: u16,
    state: TcpState,
    has_base: bool,
    holes: Option<Box<Holes>>,
}

impl Side {
    fn new() -> Side {
        Side {
            packets: 0,
            ip_bytes: 0,
            seq_high: 0,
            fin_at: NO_SEQ,
            acked: 0,
            seq_base: 0,
            retransmits: 0,
            zero_windows: 0,
            letters: 0,
            state: TcpState::Inactive,
            has_base: false,
            holes: None,
        }
    }

    fn holes(&self) -> &[(u64, u64)] {
        self.holes.as_deref().map_or(&[], |h| h.list.as_slice())
    }

    /// Payload size from sequence numbers as Zeek computes it: what was seen, or what the peer
    /// acknowledged when that is more (the data was sent but not captured); SYN and FIN excluded.
    fn size(&self) -> u64 {
        let acked = if self.fin_at == NO_SEQ { self.acked } else { self.acked.min(self.fin_at) };
        self.seq_high.max(acked)
    }

    /// Bytes in sequence space never seen but acknowledged by the peer (Zeek's content gaps).
    fn missed(&self) -> u64 {
        let acked = self.size();
        let holes: u64 = self.holes().iter().map(|&(a, b)| b.min(acked).saturating_sub(a)).sum();
        let forgotten = self.holes.as_deref().map_or(0, |h| h.forgotten);
        holes + forgotten + acked.saturating_sub(self.seq_high)
    }

    /// Account one segment's payload at `rel..rel+len` of which the first `captured` bytes were
    /// captured (a short snap length leaves the rest unseen: a hole, as in Zeek). Returns true when
    /// the segment brought nothing new (a retransmission).
    fn add_segment(&mut self, rel: u64, len: u64, captured: u64) -> bool {
        let end = rel + len;
        let seen_end = rel + captured.min(len);
        let mut new_bytes = false;
        if rel > self.seq_high {
            self.add_hole(self.seq_high, rel);
        }
        // Fill the holes the captured bytes cover.
        if let Some(holes) = self.holes.as_deref_mut() {
            let list = &mut holes.list;
            let mut i = if seen_end > rel { 0 } else { list.len() };
            while i < list.len() {
                let (a, b) = list[i];
                if seen_end <= a || rel >= b {
                    i += 1;
                    continue;
                }
                new_bytes = true;
                list.remove(i);
                if a < rel {
                    list.insert(i, (a, rel));
                    i += 1;
                }
                if seen_end < b {
                    list.insert(i, (seen_end, b));
                    i += 1;
                }
            }
        }
        if end > self.seq_high {
            new_bytes = true;
            if seen_end < end {
                self.add_hole(seen_end.max(self.seq_high), end);
            }
            self.seq_high = end;
        }
        !new_bytes
    }

    fn add_hole(&mut self, from: u64, to: u64) {
        let holes = self.holes.get_or_insert_with(Box::default);
        if holes.list.len() >= MAX_HOLES {
            let (a, b) = holes.list.remove(0);
            holes.forgotten += b - a;
        }
        holes.list.push((from, to));
    }
}

/// Zeek's history letters of one flow. Most histories are a dozen letters or fewer: they live in
/// the flow itself; a longer one moves to the heap.
#[derive(Clone, PartialEq, Eq)]
pub enum History {
    Inline { len: u8, letters: [u8; HISTORY_INLINE] },
    Heap(Box<String>),
}

const HISTORY_INLINE: usize = 22;

impl History {
    fn new() -> History {
        History::Inline { len: 0, letters: [0; HISTORY_INLINE] }
    }

    fn push(&mut self, letter: u8) {
        match self {
            History::Inline { len, letters } => {
                let n = usize::from(*len);
                if n < HISTORY_INLINE {
                    letters[n] = letter;
                    *len += 1;
                } else {
                    let mut text = self.as_str().to_string();
                    text.push(char::from(letter));
                    *self = History::Heap(Box::new(text));
                }
            }
            History::Heap(text) => text.push(char::from(letter)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Only ASCII letters and '^' are pushed.
            History::Inline { len, letters } => {
                std::str::from_utf8(&letters[..usize::from(*len)]).unwrap_or_default()
            }
            History::Heap(text) => text,
        }
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<&str> for History {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One finished (or flushed) flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub orig_ip: IpAddr,
    pub orig_port: u16,
    pub resp_ip: IpAddr,
    pub resp_port: u16,
    pub proto: u8,
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub orig_packets: u64,
    pub orig_ip_bytes: u64,
    pub resp_packets: u64,
    pub resp_ip_bytes: u64,
    pub orig_payload_bytes: u64,
    pub resp_payload_bytes: u64,
    pub missed_bytes: u64,
    pub state: &'static str,
    pub history: History,
    pub reason: EndReason,
    /// ICMP type and code of the first message (ICMP flows).
    pub icmp: Option<(u8, u8)>,
}

impl FlowRecord {
    /// The flow as protocol analysers saw it (for the metadata they flush at its end).
    pub fn view(&self) -> FlowView {
        FlowView {
            orig_ip: self.orig_ip,
            orig_port: self.orig_port,
            resp_ip: self.resp_ip,
            resp_port: self.resp_port,
            proto: self.proto,
            vlan: self.vlan,
            inner_vlan: self.inner_vlan,
            from_orig: true,
        }
    }
}

/// The 5-tuple (+ VLANs) with the lower endpoint first, so both directions find the flow.
/// Addresses are 16 bytes; an IPv4 address fills the first 4 (and `V6` is clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    lo: [u8; 16],
    hi: [u8; 16],
    lo_port: u16,
    hi_port: u16,
    vlan: u16,
    inner_vlan: u16,
    proto: u8,
    /// `KEY_V6`, `KEY_VLAN`, `KEY_INNER_VLAN`.
    flags: u8,
}

/// Four words instead of a call per field: the key is hashed for every packet.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.lo));
        state.write_u128(u128::from_ne_bytes(self.hi));
        state.write_u64(
            u64::from(self.lo_port)
                | u64::from(self.hi_port) << 16
                | u64::from(self.vlan) << 32
                | u64::from(self.inner_vlan) << 48,
        );
        state.write_u16(u16::from(self.proto) << 8 | u16::from(self.flags));
    }
}

const KEY_V6: u8 = 1;
const KEY_VLAN: u8 = 2;
const KEY_INNER_VLAN: u8 = 4;

impl Key {
    fn ip(&self, bytes: &[u8; 16]) -> IpAddr {
        if self.flags & KEY_V6 != 0 {
            IpAddr::from(*bytes)
        } else {
            IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
        }
    }

    fn vlan(&self) -> Option<u16> {
        (self.flags & KEY_VLAN != 0).then_some(self.vlan)
    }

    fn inner_vlan(&self) -> Option<u16> {
        (self.flags & KEY_INNER_VLAN != 0).then_some(self.inner_vlan)
    }
}

fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Protocol analysis of one flow: whether it has any, and the analyser's state once there is
/// something to analyse. The state is allocated at the first payload, so flows that never carry
/// any (scans, floods) cost nothing beyond this field.
pub enum Analysis {
    /// Not analysed, and not counted toward the session cap.
    Off,
    /// Counted toward the cap, nothing to analyse (a TCP flow joined without its SYN).
    Idle,
    /// Counted toward the cap, and nothing to remember but where each direction's stream goes on
    /// (`next[dir]`, valid when bit `dir` of `has_next` is set) and how many data chunks were
    /// looked at without recognising the protocol: flows that carry no payload, or payload we
    /// never recognise, cost no allocation. `dns`: a DNS flow whose first payload is to come.
    Pending {
        dns: bool,
        has_next: u8,
        next: [u32; 2],
        chunks: u32,
    },
    Active(Box<crate::session::Session>),
}

struct Flow {
    start_ns: i64,
    last_ns: i64,
    /// When a closed/reset TCP flow may be written (`NO_TIME`: not closed).
    close_at: i64,
    /// A SYN from the originator: unless the responder has answered by then, the attempt ends.
    attempt_until: i64,
    orig: Side,
    resp: Side,
    history: History,
    analysis: Analysis,
}

/// What identifies a flow: its key, which end started it, and (ICMP) its first message. Kept
/// beside the key so the small fields share its padding.
#[derive(Debug, Clone, Copy)]
struct Head {
    key: Key,
    /// The key's `lo` endpoint is the originator.
    lo_is_orig: bool,
    /// ICMP type and code of the flow's first message.
    icmp: Option<(u8, u8)>,
}

/// A flow table entry.
struct Slot {
    head: Head,
    /// None: a free slot (its index is on the free list).
    flow: Option<Flow>,
}

/// The flow a packet belongs to, as protocol analysers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowView {
    pub orig_ip: IpAddr,
    pub orig_port: u16,
    pub resp_ip: IpAddr,
    pub resp_port: u16,
    pub proto: u8,
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    /// The packet was sent by the originator.
    pub from_orig: bool,
}

impl FlowView {
    /// The flow's Community ID v1 (originator first) as its 30 ASCII bytes.
    pub fn community_id(&self, seed: u16) -> [u8; 30] {
        canh_event::community_id::community_id_v1_bytes(
            seed,
            self.orig_ip,
            self.resp_ip,
            self.proto,
            self.orig_port,
            self.resp_port,
        )
    }
}

/// Counters the caller turns into metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub created: u64,
    pub evicted: u64,
}

/// A finished flow and its analyser state (to flush).
pub type Finished = (FlowRecord, Analysis);

/// The flow table: flows live in a slab (`slots`, reused through `free`), and a hash table of
/// slot numbers finds them by key. Both grow with the number of flows held, which `max_flows`
/// bounds; a slot costs the same whatever the protocol.
pub struct FlowTable {
    config: FlowConfig,
    /// foldhash: fast, and seeded per process so crafted keys cannot aim at one bucket.
    hasher: foldhash::fast::RandomState,
    index: SlotIndex,
    slots: Vec<Slot>,
    /// When each slot's flow must next be looked at: a sweep visits only the flows that may be
    /// due, not the whole table.
    timers: Timers,
    /// Scratch lists of the flows a sweep looks at, and of those it found due.
    candidates: Vec<u32>,
    due: Vec<u32>,
    /// How many of `due` were taken out so far.
    due_taken: usize,
    free: Vec<u32>,
    last_sweep_ns: i64,
    pub stats: FlowStats,
}

impl FlowTable {
    pub fn new(config: FlowConfig) -> FlowTable {
        FlowTable {
            config,
            hasher: foldhash::fast::RandomState::default(),
            index: SlotIndex::default(),
            slots: Vec::new(),
            timers: Timers::default(),
            candidates: Vec::new(),
            due: Vec::new(),
            due_taken: 0,
            free: Vec::new(),
            last_sweep_ns: i64::MIN,
            stats: FlowStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    fn hash(&self, key: &Key) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &Key, hash: u64) -> Option<usize> {
        let slots = &self.slots;
        self.index.find(hash, |i| slots[i as usize].head.key == *key).map(|i| i as usize)
    }

    /// Finish the flow in slot `i` (which must hold one) for `reason` and free the slot. The
    /// record is built from the slot in place: the flow itself is not moved out.
    fn remove(&mut self, i: usize, reason: EndReason) -> Option<Finished> {
        let key = self.slots[i].head.key;
        self.index.remove(self.hash(&key), i as u32);
        let slot = &mut self.slots[i];
        let finished = finish(&slot.head, slot.flow.as_mut()?, reason);
        slot.flow = None;
        self.timers.clear(i);
        // Slot numbers fit u32: the table never holds more than `max_flows` (a usize config that
        // `insert` caps at u32::MAX).
        self.free.push(i as u32);
        Some(finished)
    }

    /// Start loading slot `i` into the cache (it need not hold a flow).
    fn prefetch_slot(&self, i: u32) {
        if let Some(slot) = self.slots.get(i as usize) {
            prefetch_all(slot);
        }
    }

    /// Start loading the index entry of the flow in slot `i`: the slot's key is read (so it
    /// should be on its way already) and hashed.
    fn prefetch_index_entry(&self, i: u32) {
        if let Some(slot) = self.slots.get(i as usize) {
            self.index.prefetch(self.hash(&slot.head.key));
        }
    }

    /// A new flow whose first packet is `packet`, built in its slot: a `Flow` built first and
    /// then moved in was copied with wide loads right after the narrow stores that built it.
    fn insert(&mut self, head: Head, ts_ns: i64, packet: &Packet<'_>, hash: u64) -> usize {
        let i = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.push(Slot { head, flow: None });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        slot.head = head;
        slot.flow = Some(new_flow(ts_ns, packet));
        self.timers.add_slot(i);
        self.index.insert(hash, i as u32);
        i
    }

    /// Account one packet seen at `ts_ns`; finished flows are appended to `out`. Returns the flow
    /// the packet belongs to, oriented originator to responder, and its analysis state.
    pub fn observe(
        &mut self,
        ts_ns: i64,
        packet: &Packet<'_>,
        out: &mut Vec<Finished>,
    ) -> Option<(FlowView, &mut Analysis)> {
        // A sweep visits every flow, so it runs every few seconds of packet time; a flow that is due
        // is also written as soon as its own next packet arrives, so no record depends on it. (The
        // packet pipeline starts it itself, before this, to write the flows a chunk at a time.)
        if self.start_sweep(ts_ns) {
            while self.expire_some(out, usize::MAX) {}
        }
        let (key, src_is_lo) = key_of(packet);
        let hash = self.hash(&key);
        let mut slot = self.find(&key, hash);
        // A flow whose time is up, or a closed one whose ports are reused by a new SYN (Zeek's
        // connection reuse), is written before this packet starts a new one.
        if let Some(i) = slot {
            let due = self.slots[i].flow.as_ref().is_some_and(|f| {
                let reused = packet.tcp.is_some_and(|t| t.syn && !t.ack)
                    && matches!(f.orig.state, TcpState::Closed | TcpState::Reset)
                    && matches!(f.resp.state, TcpState::Closed | TcpState::Reset);
                is_due(&self.config, &key, f, ts_ns) || reused
            });
            if due {
                if let Some(finished) = self.remove(i, EndReason::End) {
                    out.push(finished);
                }
                slot = None;
            }
        }
        let i = match slot {
            Some(i) => i,
            None => {
                if self.len() >= self.config.max_flows.min(u32::MAX as usize) {
                    self.evict_one(out);
                }
                self.stats.created += 1;
                self.insert(head_of(key, packet, src_is_lo), ts_ns, packet, hash)
            }
        };
        let lo_is_orig = self.slots[i].head.lo_is_orig;
        let flow = self.slots[i].flow.as_mut()?;
        // The same endpoint on both sides (a "land" packet) is always from the originator.
        let same_ends = key.lo == key.hi && key.lo_port == key.hi_port;
        let from_orig = same_ends || src_is_lo == lo_is_orig;
        update(flow, ts_ns, packet, from_orig, &self.config);
        self.timers.schedule(i, wake_time(&self.config, key.proto, flow));
        let (orig_ip, orig_port, resp_ip, resp_port) = if from_orig {
            (packet.src, packet.src_port, packet.dst, packet.dst_port)
        } else {
            (packet.dst, packet.dst_port, packet.src, packet.src_port)
        };
        let view = FlowView {
            orig_ip,
            orig_port,
            resp_ip,
            resp_port,
            proto: key.proto,
            vlan: key.vlan(),
            inner_vlan: key.inner_vlan(),
            from_orig,
        };
        Some((view, &mut flow.analysis))
    }

    /// Write every flow whose idle timeout or close delay has passed at `now_ns`, in slot order.
    pub fn expire(&mut self, now_ns: i64, out: &mut Vec<Finished>) {
        self.note_due(now_ns);
        while self.expire_some(out, usize::MAX) {}
    }

    /// Start the sweep `observe` would make at `ts_ns`, if one is due then: the flows due are
    /// noted (in slot order) and taken out by [`FlowTable::expire_some`], a few at a time, so a
    /// sweep that finds tens of thousands of flows due never holds all their records at once.
    /// Every noted flow must be taken out before the next packet is observed.
    pub fn start_sweep(&mut self, ts_ns: i64) -> bool {
        if ts_ns.saturating_sub(self.last_sweep_ns) < SWEEP_INTERVAL_NS {
            return false;
        }
        self.note_due(ts_ns);
        self.last_sweep_ns = ts_ns;
        true
    }

    /// Take out up to `max` of the flows the sweep noted, in slot order, appending their records
    /// to `out`. False when none were left.
    pub fn expire_some(&mut self, out: &mut Vec<Finished>, max: usize) -> bool {
        if self.due_taken >= self.due.len() {
            return false;
        }
        let end = self.due.len().min(self.due_taken.saturating_add(max));
        for k in self.due_taken..end {
            // The flows a sweep takes out have been idle for a while: their slots and index
            // entries are in no cache. Ask for them a few flows ahead, the slot first (its key
            // locates the index entry).
            if let Some(&ahead) = self.due.get(k + SLOT_AHEAD) {
                self.prefetch_slot(ahead);
            }
            if let Some(&ahead) = self.due.get(k + INDEX_AHEAD) {
                self.prefetch_index_entry(ahead);
            }
            let i = self.due[k] as usize;
            if let Some(finished) = self.remove(i, EndReason::End) {
                out.push(finished);
            }
        }
        self.due_taken = end;
        true
    }

    /// Note the flows due at `now_ns` (in slot order) for [`FlowTable::expire_some`]; the others
    /// looked at are scheduled again.
    pub fn note_due(&mut self, now_ns: i64) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        self.timers.take_due(now_ns, &mut candidates);
        let mut done = std::mem::take(&mut self.due);
        done.clear();
        for (k, &i) in candidates.iter().enumerate() {
            if let Some(&ahead) = candidates.get(k + SLOT_AHEAD) {
                self.prefetch_slot(ahead);
            }
            let slot = &self.slots[i as usize];
            let Some(flow) = slot.flow.as_ref() else { continue };
            if is_due(&self.config, &slot.head.key, flow, now_ns) {
                done.push(i);
            } else {
                // Its deadline moved on since it was scheduled: look again then.
                let wake = wake_time(&self.config, slot.head.key.proto, flow);
                self.timers.schedule(i as usize, wake.max(now_ns.saturating_add(1)));
            }
        }
        self.candidates = candidates;
        // Slot order, as a sweep over the whole table would write them.
        done.sort_unstable();
        self.due = done;
        self.due_taken = 0;
    }

    /// Write every flow still open (the input ended), one at a time to `emit`, by start time.
    pub fn flush(&mut self, mut emit: impl FnMut(Finished)) {
        let slots = &self.slots;
        let orig = |i: u32| {
            let s = &slots[i as usize];
            let k = &s.head.key;
            let (ip, port) =
                if s.head.lo_is_orig { (&k.lo, k.lo_port) } else { (&k.hi, k.hi_port) };
            (s.flow.as_ref().map_or(0, |f| f.start_ns), k.ip(ip), port)
        };
        let mut order: Vec<u32> = self.index.slots().collect();
        // Deterministic output order for offline runs: by start time, then addresses.
        order.sort_unstable_by(|&a, &b| orig(a).cmp(&orig(b)).then(a.cmp(&b)));
        for i in order {
            let closed =
                self.slots[i as usize].flow.as_ref().is_some_and(|f| f.close_at != NO_TIME);
            let reason = if closed { EndReason::End } else { EndReason::Shutdown };
            if let Some(finished) = self.remove(i as usize, reason) {
                emit(finished);
            }
        }
        self.slots = Vec::new();
        self.timers = Timers::default();
        self.free = Vec::new();
    }

    fn evict_one(&mut self, out: &mut Vec<Finished>) {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.flow.as_ref().map(|f| (i, f.last_ns)))
            .min_by_key(|&(_, last)| last)
            .map(|(i, _)| i);
        if let Some(i) = victim {
            if let Some(finished) = self.remove(i, EndReason::Evicted) {
                self.stats.evicted += 1;
                out.push(finished);
            }
        }
    }
}

/// Seconds of packet time the timer ring spans; a deadline further out waits in its bucket for a
/// later lap.
const RING_SECONDS: usize = 1024;
/// `Timers::at` of a slot with no live entry.
const NOT_SCHEDULED: u32 = u32::MAX;

/// When each flow must next be looked at: a ring of one-second buckets of slot numbers (a hashed
/// timer wheel). A flow's live entry sits in the bucket of its earliest possible deadline or of
/// an earlier second; a sweep takes the buckets that came due, so its cost follows the flows that
/// may be due rather than the table's size. Entries are not removed when a deadline moves: an
/// entry whose slot now points at another bucket is stale and dropped when its bucket comes up.
#[derive(Default)]
struct Timers {
    /// Per slot, the second (relative to `base`) of the bucket holding its live entry.
    at: Vec<u32>,
    /// `RING_SECONDS` buckets, created at the first entry.
    ring: Vec<Vec<u32>>,
    /// The packet-time second that relative second 0 stands for (set by the first deadline).
    base: Option<i64>,
    /// Every bucket before this relative second has been swept.
    swept_to: u32,
}

impl Timers {
    /// The relative second of `ns` (times before the base count as the base).
    fn second(&mut self, ns: i64) -> u32 {
        let s = ns.div_euclid(NANOS);
        let base = *self.base.get_or_insert(s);
        u32::try_from(s.saturating_sub(base).max(0)).unwrap_or(NOT_SCHEDULED - 1)
    }

    /// Slot `i` holds a new flow, not scheduled yet.
    fn add_slot(&mut self, i: usize) {
        if self.at.len() <= i {
            self.at.resize(i + 1, NOT_SCHEDULED);
        }
        self.at[i] = NOT_SCHEDULED;
    }

    /// Slot `i` was freed: its entries become stale.
    fn clear(&mut self, i: usize) {
        if let Some(at) = self.at.get_mut(i) {
            *at = NOT_SCHEDULED;
        }
    }

    /// Slot `i`'s flow may be due from `wake_ns` on: make sure a sweep looks at it by then. An
    /// entry for an earlier second stays (that sweep reschedules it).
    fn schedule(&mut self, i: usize, wake_ns: i64) {
        let second = self.second(wake_ns).max(self.swept_to);
        if second >= self.at[i] {
            return;
        }
        if self.ring.is_empty() {
            self.ring = vec![Vec::new(); RING_SECONDS];
        }
        self.at[i] = second;
        self.ring[second as usize % RING_SECONDS].push(i as u32);
    }

    /// Take out the slots whose bucket's second is at or before `now_ns`'s into `out`, now
    /// unscheduled: the caller writes those that are due and reschedules the others.
    fn take_due(&mut self, now_ns: i64, out: &mut Vec<u32>) {
        if self.ring.is_empty() {
            return;
        }
        let now = self.second(now_ns);
        if now < self.swept_to {
            return; // packet time went back
        }
        let seconds = (now - self.swept_to) as usize + 1;
        for k in 0..seconds.min(RING_SECONDS) {
            let bucket = (self.swept_to as usize + k) % RING_SECONDS;
            let at = &mut self.at;
            self.ring[bucket].retain(|&i| {
                let second = at[i as usize];
                if second == NOT_SCHEDULED || second as usize % RING_SECONDS != bucket {
                    return false; // stale: the slot was freed or rescheduled elsewhere
                }
                if second > now {
                    return true; // a later lap of the ring
                }
                at[i as usize] = NOT_SCHEDULED;
                out.push(i);
                false
            });
        }
        // The current second's bucket may still receive deadlines later in this second.
        self.swept_to = now;
    }
}

/// Closed or reset and past the close delay, idle past its timeout, or a SYN left unanswered.
fn is_due(config: &FlowConfig, key: &Key, flow: &Flow, now_ns: i64) -> bool {
    (flow.close_at != NO_TIME && now_ns >= flow.close_at)
        || now_ns.saturating_sub(flow.last_ns) > idle_timeout(config, key.proto)
        || (flow.attempt_until != NO_TIME
            && now_ns >= flow.attempt_until
            && flow.orig.state == TcpState::SynSent
            && flow.resp.state == TcpState::Inactive)
}

/// The earliest time at which `is_due` can hold for `flow` (its state only changes with its
/// packets, which recompute this).
fn wake_time(config: &FlowConfig, proto: u8, flow: &Flow) -> i64 {
    // `is_due` wants the idle time strictly exceeded.
    let idle = flow.last_ns.saturating_add(idle_timeout(config, proto)).saturating_add(1);
    let mut wake = flow.close_at.min(idle);
    if flow.orig.state == TcpState::SynSent && flow.resp.state == TcpState::Inactive {
        wake = wake.min(flow.attempt_until);
    }
    wake
}

fn idle_timeout(config: &FlowConfig, proto: u8) -> i64 {
    match proto {
        6 => config.tcp_idle_timeout_ns,
        17 => config.udp_idle_timeout_ns,
        _ => config.other_idle_timeout_ns,
    }
}

/// The packet's key, and whether its source is the key's `lo` endpoint.
fn key_of(p: &Packet<'_>) -> (Key, bool) {
    let (src, dst) = (ip_bytes(p.src), ip_bytes(p.dst));
    let src_is_lo = match (p.src, p.dst) {
        // The same order as the byte arrays' (an IPv4 address fills their first 4 bytes), compared
        // as numbers rather than read back from the arrays just written.
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a), p.src_port) <= (u32::from(b), p.dst_port),
        _ => (src, p.src_port) <= (dst, p.dst_port),
    };
    let ((lo, lo_port), (hi, hi_port)) = if src_is_lo {
        ((src, p.src_port), (dst, p.dst_port))
    } else {
        ((dst, p.dst_port), (src, p.src_port))
    };
    let mut flags = 0;
    if p.src.is_ipv6() {
        flags |= KEY_V6;
    }
    if p.vlan.is_some() {
        flags |= KEY_VLAN;
    }
    if p.inner_vlan.is_some() {
        flags |= KEY_INNER_VLAN;
    }
    let key = Key {
        lo,
        hi,
        lo_port,
        hi_port,
        vlan: p.vlan.unwrap_or(0),
        inner_vlan: p.inner_vlan.unwrap_or(0),
        proto: p.proto,
        flags,
    };
    (key, src_is_lo)
}

/// A new flow's head, with the originator chosen as Zeek does: the sender of a SYN; the receiver of a
/// SYN-ACK; otherwise the sender, unless only the sender's port looks like a service port.
fn head_of(key: Key, p: &Packet<'_>, src_is_lo: bool) -> Head {
    let sender_is_orig = is_sender_orig(p);
    Head { key, lo_is_orig: sender_is_orig == src_is_lo, icmp: p.icmp }
}

fn is_sender_orig(p: &Packet<'_>) -> bool {
    match p.tcp {
        Some(tcp) if tcp.syn && !tcp.ack => true,
        Some(tcp) if tcp.syn && tcp.ack => false,
        // A DNS response as the first packet to a port Zeek's DNS analyser serves (53, NetBIOS
        // 137, mDNS 5353, LLMNR 5355): its receiver asked, and Zeek's analyser flips the
        // connection, unless the receiver is a multicast group. A response from port 53 to
        // another port is flipped by the port rule below.
        None if p.proto == 17
            && crate::dns::is_dns_port(p.dst_port)
            && !p.dst.is_multicast()
            && is_dns_response(p.payload) =>
        {
            false
        }
        _ => !is_service_port(p.proto, p.src_port) || is_service_port(p.proto, p.dst_port),
    }
}

/// The state of a new flow whose first packet is `p`.
fn new_flow(ts_ns: i64, p: &Packet<'_>) -> Flow {
    let mut history = History::new();
    if !is_sender_orig(p) {
        history.push(b'^');
    }
    Flow {
        start_ns: ts_ns,
        last_ns: ts_ns,
        close_at: NO_TIME,
        attempt_until: NO_TIME,
        orig: Side::new(),
        resp: Side::new(),
        history,
        analysis: Analysis::Off,
    }
}

fn is_dns_response(payload: &[u8]) -> bool {
    payload.len() >= 12 && payload[2] & 0x80 != 0
}

/// Zeek's `likely_server_ports` with its default scripts: the ports its protocol analysers
/// register. Only these (not "any port below 1024") make a flow's first sender the responder.
fn is_service_port(proto: u8, port: u16) -> bool {
    match proto {
        6 => matches!(
            port,
            21 | 22
                | 25
                | 53
                | 80
                | 81
                | 88
                | 110
                | 111
                | 135
                | 139
                | 143
                | 389
                | 443
                | 445
                | 502
                | 563
                | 585
                | 587
                | 614
                | 631
                | 636
                | 989
                | 990
                | 992
                | 993
                | 995
                | 1080
                | 2811
                | 3128
                | 3268
                | 3306
                | 3389
                | 5222
                | 5223
                | 5269
                | 5432
                | 6666..=6669 | 8000 | 8080 | 8888 | 20000
        ),
        17 => matches!(
            port,
            53 | 67
                | 68
                | 88
                | 111
                | 123
                | 137
                | 161
                | 162
                | 443
                | 514
                | 547
                | 1812
                | 2123
                | 2152
                | 3544
                | 4789
                | 5060
                | 5072
                | 5353
                | 5355
                | 6081
        ),
        _ => false,
    }
}

fn update(flow: &mut Flow, ts_ns: i64, p: &Packet<'_>, from_orig: bool, config: &FlowConfig) {
    // After both sides closed, Zeek still counts packets and history letters but neither extends
    // the duration nor changes the endpoint states (a trailing ACK or RST keeps the flow SF).
    let finished = flow.orig.state == TcpState::Closed && flow.resp.state == TcpState::Closed;
    if !finished {
        flow.last_ns = flow.last_ns.max(ts_ns);
    }
    let (me, peer) =
        if from_orig { (&mut flow.orig, &mut flow.resp) } else { (&mut flow.resp, &mut flow.orig) };
    me.packets += 1;
    me.ip_bytes += u64::from(p.ip_len);

    let Some(tcp) = p.tcp else {
        me.seq_high += u64::from(p.payload_len);
        if p.payload_len > 0 && p.proto == 17 {
            record(&mut flow.history, me, b'D', from_orig);
        }
        return;
    };

    // Sequence space: payload bytes are counted from the SYN (or the first packet) to the highest
    // byte seen, so retransmissions count once; holes are remembered until filled.
    if tcp.syn && !me.has_base {
        me.seq_base = tcp.seq.wrapping_add(1);
        me.has_base = true;
    }
    if !me.has_base {
        me.seq_base = tcp.seq;
        me.has_base = true;
    }
    let base = me.seq_base;
    let len = u64::from(p.payload_len);
    let rel = u64::from(tcp.seq.wrapping_add(u32::from(tcp.syn)).wrapping_sub(base));
    // A start far "behind" the base wraps to a huge offset: old data.
    let in_window = rel < (1 << 31);
    let mut retransmit = false;
    if len > 0 {
        retransmit = !in_window || me.add_segment(rel, len, p.payload.len() as u64);
    }
    if tcp.fin && in_window && me.fin_at == NO_SEQ {
        me.fin_at = rel + len;
    }
    // The peer's data this packet acknowledges; acknowledging unseen data reveals a gap.
    let mut peer_gap = false;
    if tcp.ack && peer.has_base {
        let acked = u64::from(tcp.ack_number.wrapping_sub(peer.seq_base));
        if acked < (1 << 31) && acked > peer.acked {
            peer.acked = acked;
            let limit = peer.size();
            peer_gap = limit > peer.seq_high || peer.holes().iter().any(|&(a, _)| a < limit);
        }
    }

    // History letters, as Zeek's TCP analyser records them: a packet with two or more of SYN,
    // FIN and RST is `I` (FIN and RST) or `Q` (any other pair) and nothing else; a packet with one
    // of them is `S`/`H`, `F` or `R`; data without them is `D`, a bare ACK `A`.
    let flags_set = u8::from(tcp.syn) + u8::from(tcp.fin) + u8::from(tcp.rst);
    if flags_set > 1 {
        let letter = if tcp.fin && tcp.rst { b'I' } else { b'Q' };
        record(&mut flow.history, me, letter, from_orig);
    } else if tcp.syn {
        record(&mut flow.history, me, if tcp.ack { b'H' } else { b'S' }, from_orig);
    } else if tcp.fin {
        record(&mut flow.history, me, b'F', from_orig);
    } else if tcp.rst {
        record(&mut flow.history, me, b'R', from_orig);
    }
    if len > 0 && flags_set == 0 {
        record(&mut flow.history, me, b'D', from_orig);
    } else if len == 0 && tcp.ack && flags_set == 0 {
        record(&mut flow.history, me, b'A', from_orig);
    }
    if retransmit {
        me.retransmits = me.retransmits.saturating_add(1);
        // Zeek repeats `T` when the count reaches 1, 10, 100, ...
        if is_power_of_ten(u64::from(me.retransmits)) {
            flow.history.push(if from_orig { b'T' } else { b't' });
        }
    }
    // A zero window, unless it comes with or after this side's reset or after the peer's FIN
    // (Zeek's rule: then no window matters); repeated at 1, 10, 100, ... as `T`.
    if tcp.window == 0 && !tcp.rst && me.state != TcpState::Reset && peer.state != TcpState::Closed
    {
        me.zero_windows = me.zero_windows.saturating_add(1);
        if is_power_of_ten(u64::from(me.zero_windows)) {
            flow.history.push(if from_orig { b'W' } else { b'w' });
        }
    }
    if peer_gap {
        record(&mut flow.history, peer, b'G', !from_orig);
    }

    if finished {
        return;
    }
    // Endpoint states, following Zeek's TCP state machine.
    match me.state {
        TcpState::Inactive => {
            if tcp.syn {
                if tcp.ack {
                    me.state = TcpState::SynAckSent;
                    match peer.state {
                        TcpState::SynSent => peer.state = TcpState::Established,
                        TcpState::Inactive => peer.state = TcpState::Partial,
                        _ => {}
                    }
                } else {
                    me.state = TcpState::SynSent;
                    if from_orig && flow.attempt_until == NO_TIME {
                        flow.attempt_until =
                            ts_ns.saturating_add(config.tcp_attempt_ns).min(NO_TIME - 1);
                    }
                }
            }
            if tcp.fin {
                me.state = TcpState::Closed;
            }
            if tcp.rst {
                me.state = TcpState::Reset;
            }
            if me.state == TcpState::Inactive {
                me.state = TcpState::Partial;
            }
        }
        TcpState::SynSent | TcpState::SynAckSent => {
            if tcp.fin {
                me.state = TcpState::Closed;
            }
            if tcp.rst {
                me.state = TcpState::Reset;
            } else if tcp.ack && !tcp.syn && peer.state == TcpState::Established {
                me.state = TcpState::Established;
            }
        }
        TcpState::Partial | TcpState::Established => {
            if tcp.syn
                && !tcp.ack
                && me.state == TcpState::Partial
                && peer.state == TcpState::Inactive
            {
                me.state = TcpState::SynSent;
            }
            if tcp.fin && !tcp.rst {
                me.state = TcpState::Closed;
            }
            if tcp.rst {
                me.state = TcpState::Reset;
            }
        }
        TcpState::Closed => {
            if tcp.rst {
                me.state = TcpState::Reset;
            }
        }
        TcpState::Reset => {}
    }
    let closed = me.state == TcpState::Reset
        || (me.state == TcpState::Closed
            && matches!(peer.state, TcpState::Closed | TcpState::Reset));
    if closed && flow.close_at == NO_TIME {
        flow.close_at = ts_ns.saturating_add(config.tcp_close_delay_ns).min(NO_TIME - 1);
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// The bit of `Side::letters` for a letter recorded once per direction.
fn letter_bit(letter: u8) -> u16 {
    match letter {
        b'S' => 1,
        b'H' => 1 << 1,
        b'A' => 1 << 2,
        b'D' => 1 << 3,
        b'F' => 1 << 4,
        b'R' => 1 << 5,
        b'Q' => 1 << 6,
        b'I' => 1 << 7,
        b'G' => 1 << 8,
        _ => 1 << 15,
    }
}

/// Add a history letter the first time it happens in a direction (upper case: originator).
fn record(history: &mut History, side: &mut Side, letter: u8, from_orig: bool) {
    let bit = letter_bit(letter);
    if side.letters & bit != 0 {
        return;
    }
    side.letters |= bit;
    history.push(if from_orig { letter } else { letter.to_ascii_lowercase() });
}

/// The record of a flow that ends now; its history and analysis state are taken out of `flow`,
/// which the caller then drops.
fn finish(head: &Head, flow: &mut Flow, reason: EndReason) -> Finished {
    let key = &head.key;
    let (orig, resp) = if head.lo_is_orig {
        ((&key.lo, key.lo_port), (&key.hi, key.hi_port))
    } else {
        ((&key.hi, key.hi_port), (&key.lo, key.lo_port))
    };
    let is_tcp = key.proto == 6;
    let payload = |s: &Side| if is_tcp { s.size() } else { s.seq_high };
    let missed = |s: &Side| if is_tcp { s.missed() } else { 0 };
    let record = FlowRecord {
        orig_ip: key.ip(orig.0),
        orig_port: orig.1,
        resp_ip: key.ip(resp.0),
        resp_port: resp.1,
        proto: key.proto,
        vlan: key.vlan(),
        inner_vlan: key.inner_vlan(),
        start_ns: flow.start_ns,
        end_ns: flow.last_ns,
        orig_packets: flow.orig.packets,
        orig_ip_bytes: flow.orig.ip_bytes,
        resp_packets: flow.resp.packets,
        resp_ip_bytes: flow.resp.ip_bytes,
        orig_payload_bytes: payload(&flow.orig),
        resp_payload_bytes: payload(&flow.resp),
        missed_bytes: missed(&flow.orig) + missed(&flow.resp),
        // Before the history is taken: the state reads it.
        state: conn_state(key.proto, flow),
        history: std::mem::replace(&mut flow.history, History::new()),
        reason,
        icmp: head.icmp,
    };
    (record, std::mem::replace(&mut flow.analysis, Analysis::Off))
}

/// Zeek's conn_state code from the two endpoint states.
fn conn_state(proto: u8, flow: &Flow) -> &'static str {
    let (os, rs) = (flow.orig.state, flow.resp.state);
    match proto {
        6 => {
            let o_inactive = matches!(os, TcpState::Inactive | TcpState::Partial);
            let r_inactive = matches!(rs, TcpState::Inactive | TcpState::Partial);
            if rs == TcpState::Reset {
                if matches!(os, TcpState::SynSent | TcpState::SynAckSent)
                    || (os == TcpState::Reset && flow.orig.size() == 0 && flow.resp.size() == 0)
                {
                    "REJ"
                } else if o_inactive {
                    "RSTRH"
                } else {
                    "RSTR"
                }
            } else if os == TcpState::Reset {
                if r_inactive {
                    if is_syn_then_reset(flow.history.as_str()) {
                        "RSTOS0"
                    } else {
                        "OTH"
                    }
                } else {
                    "RSTO"
                }
            } else if rs == TcpState::Closed && os == TcpState::Closed {
                "SF"
            } else if os == TcpState::Closed {
                if r_inactive {
                    "SH"
                } else {
                    "S2"
                }
            } else if rs == TcpState::Closed {
                if o_inactive {
                    "SHR"
                } else {
                    "S3"
                }
            } else if os == TcpState::SynSent && rs == TcpState::Inactive {
                "S0"
            } else if os == TcpState::Established && rs == TcpState::Established {
                "S1"
            } else {
                "OTH"
            }
        }
        17 => match (flow.orig.packets > 0, flow.resp.packets > 0) {
            (true, true) => "SF",
            (true, false) => "S0",
            (false, true) => "SHR",
            (false, false) => "OTH",
        },
        _ => "OTH",
    }
}

/// Zeek's `^?S[^HAFGIQ]*R.*` on the history: a SYN, then a reset before any handshake or data.
fn is_syn_then_reset(history: &str) -> bool {
    let rest = history.strip_prefix('^').unwrap_or(history);
    let Some(rest) = rest.strip_prefix('S') else { return false };
    for c in rest.chars() {
        if c == 'R' {
            return true;
        }
        if "HAFGIQ".contains(c) {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpInfo;

    fn tcp(
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        flags: &str,
        seq: u32,
        len: u32,
    ) -> Packet<'static> {
        Packet {
            src: src.parse().expect("ip"),
            dst: dst.parse().expect("ip"),
            proto: 6,
            src_port: sport,
            dst_port: dport,
            ip_len: 40 + len,
            payload_len: len,
            payload: &ZEROS[..len as usize],
            tcp: Some(TcpInfo {
                syn: flags.contains('S'),
                ack: flags.contains('A'),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
                seq,
                ack_number: 0,
                window: 1024,
            }),
            vlan: None,
            inner_vlan: None,
            icmp: None,
            outer: None,
        }
    }

    static ZEROS: [u8; 64] = [0; 64];

    fn run(packets: &[Packet<'static>]) -> Vec<FlowRecord> {
        let mut table = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            table.observe(i as i64 * 1000, p, &mut out);
        }
        table.flush(|f| out.push(f));
        out.into_iter().map(|(record, _)| record).collect()
    }

    const C: &str = "10.0.0.1";
    const S: &str = "10.0.0.2";

    #[test]
    fn full_connection_is_sf() {
        let out = run(&[
            tcp(C, 40000, S, 80, "S", 100, 0),
            tcp(S, 80, C, 40000, "SA", 500, 0),
            tcp(C, 40000, S, 80, "A", 101, 0),
            tcp(C, 40000, S, 80, "A", 101, 10),
            tcp(S, 80, C, 40000, "A", 501, 20),
            tcp(C, 40000, S, 80, "FA", 111, 0),
            tcp(S, 80, C, 40000, "FA", 521, 0),
            tcp(C, 40000, S, 80, "A", 112, 0),
        ]);
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!((f.orig_port, f.resp_port), (40000, 80));
        assert_eq!(f.state, "SF");
        // The responder sent no pure ACK, so no `a` (Zeek records `A` for ACKs without payload).
        assert_eq!(f.history, "ShADdFf");
        assert_eq!((f.orig_payload_bytes, f.resp_payload_bytes, f.missed_bytes), (10, 20, 0));
        assert_eq!((f.orig_packets, f.resp_packets), (5, 3));
        assert_eq!(f.orig_ip_bytes, 5 * 40 + 10);
    }

    #[test]
    fn rejected_and_unanswered() {
        let out = run(&[tcp(C, 40000, S, 81, "S", 1, 0), tcp(S, 81, C, 40000, "RA", 0, 0)]);
        assert_eq!(out[0].state, "REJ");
        assert_eq!(out[0].history, "Sr");
        let out = run(&[tcp(C, 40001, S, 81, "S", 1, 0)]);
        assert_eq!(out[0].state, "S0");
    }

    #[test]
    fn syn_ack_first_flips_the_originator() {
        let out = run(&[tcp(S, 80, C, 40000, "SA", 500, 0), tcp(C, 40000, S, 80, "A", 101, 0)]);
        assert_eq!((out[0].orig_ip, out[0].orig_port), (C.parse().expect("ip"), 40000));
        assert!(out[0].history.as_str().starts_with('^'));
    }

    #[test]
    fn uncaptured_payload_acknowledged_is_missed() {
        // Zeek's missed_bytes: the payload beyond the snap length was never seen but was acked.
        let mut data = tcp(C, 40000, S, 80, "A", 101, 10);
        data.payload = &ZEROS[..4];
        let mut ack = tcp(S, 80, C, 40000, "A", 501, 0);
        if let Some(t) = ack.tcp.as_mut() {
            t.ack_number = 111;
        }
        let out = run(&[
            tcp(C, 40000, S, 80, "S", 100, 0),
            tcp(S, 80, C, 40000, "SA", 500, 0),
            data,
            ack,
        ]);
        assert_eq!((out[0].orig_payload_bytes, out[0].missed_bytes), (10, 6));
        assert_eq!(out[0].history, "ShDaG");
    }

    #[test]
    fn a_syn_after_close_starts_a_new_flow() {
        let out = run(&[
            tcp(C, 40000, S, 80, "S", 100, 0),
            tcp(S, 80, C, 40000, "SA", 500, 0),
            tcp(C, 40000, S, 80, "FA", 101, 0),
            tcp(S, 80, C, 40000, "FA", 501, 0),
            tcp(C, 40000, S, 80, "S", 9000, 0),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].state, "SF");
        assert_eq!((out[1].state, out[1].history.as_str()), ("S0", "S"));
    }

    #[test]
    fn retransmission_counts_once() {
        let out = run(&[
            tcp(C, 40000, S, 80, "S", 100, 0),
            tcp(C, 40000, S, 80, "A", 101, 10),
            tcp(C, 40000, S, 80, "A", 101, 10),
        ]);
        assert_eq!(out[0].orig_payload_bytes, 10);
        assert!(out[0].history.as_str().contains('T'));
    }

    fn udp(sport: u16) -> Packet<'static> {
        Packet { proto: 17, tcp: None, ..tcp(C, sport, S, 53, "", 0, 4) }
    }

    #[test]
    fn a_dns_response_first_makes_its_receiver_the_originator_as_zeek() {
        // A DNS header with the response bit set, then nothing: enough for the check.
        static RESPONSE: [u8; 12] = [0, 1, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
        let dns = |src: &str, sport: u16, dst: &str, dport: u16, response: bool| Packet {
            proto: 17,
            tcp: None,
            payload: if response { &RESPONSE[..] } else { &ZEROS[..12] },
            payload_len: 12,
            ..tcp(src, sport, dst, dport, "", 0, 12)
        };
        let orig = |p: Packet<'static>| {
            let r = &run(&[p])[0];
            (r.orig_ip.to_string(), r.orig_port)
        };
        // NetBIOS and LLMNR between service ports: the port rule keeps the sender, the DNS
        // analyser flips.
        assert_eq!(orig(dns(S, 137, C, 137, true)), (C.to_string(), 137));
        assert_eq!(orig(dns(S, 5355, C, 5355, true)), (C.to_string(), 5355));
        // From port 53 to a client port: flipped by the port rule.
        assert_eq!(orig(dns(S, 53, C, 40000, true)), (C.to_string(), 40000));
        // A query first, or a response to a multicast group (mDNS): the sender stays.
        assert_eq!(orig(dns(S, 137, C, 137, false)), (S.to_string(), 137));
        assert_eq!(orig(dns(S, 5353, "224.0.0.251", 5353, true)), (S.to_string(), 5353));
        // A response to a port Zeek's DNS analyser does not serve: only the port rule.
        assert_eq!(orig(dns(S, 53, C, 123, true)), (S.to_string(), 53));
    }

    #[test]
    fn sweeps_write_the_due_flows_in_slot_order() {
        let mut table = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for port in 0..4u16 {
            table.observe(0, &udp(1000 + port), &mut out);
        }
        // Refreshed at 50 s: due at 110 s, not at 60 s.
        table.observe(50 * NANOS, &udp(1001), &mut out);
        table.expire(60 * NANOS + 1, &mut out);
        let ports: Vec<u16> = out.iter().map(|f| f.0.orig_port).collect();
        assert_eq!(ports, vec![1000, 1002, 1003]);
        table.expire(110 * NANOS, &mut out);
        assert_eq!(out.len(), 3);
        table.expire(110 * NANOS + 1, &mut out);
        assert_eq!(out.len(), 4);
        assert!(table.is_empty());
    }

    /// A sweep taken out a few flows at a time writes the same flows in the same order as one
    /// taken out at once, and leaves the table as that one does.
    #[test]
    fn a_sweep_in_chunks_writes_what_a_whole_sweep_writes() {
        let fill = |table: &mut FlowTable| {
            let mut out = Vec::new();
            for port in 0..10u16 {
                table.observe(0, &udp(1000 + port), &mut out);
            }
            // Refreshed: not due at the sweep below.
            table.observe(50 * NANOS, &udp(1004), &mut out);
            assert!(out.is_empty());
        };
        let now = 61 * NANOS;
        let mut whole = FlowTable::new(FlowConfig::default());
        fill(&mut whole);
        let mut all = Vec::new();
        whole.expire(now, &mut all);

        let mut chunked = FlowTable::new(FlowConfig::default());
        fill(&mut chunked);
        assert!(chunked.start_sweep(now));
        let mut ports = Vec::new();
        let mut chunk = Vec::new();
        while chunked.expire_some(&mut chunk, 4) {
            assert!(chunk.len() <= 4);
            ports.extend(chunk.drain(..).map(|f| f.0.orig_port));
        }
        assert_eq!(ports, all.iter().map(|f| f.0.orig_port).collect::<Vec<_>>());
        assert_eq!(ports.len(), 9);
        assert_eq!(chunked.len(), whole.len());
        assert_eq!(chunked.len(), 1);
        // Not due again before the sweep interval has passed.
        assert!(!chunked.start_sweep(now + 1));
    }

    #[test]
    fn deadlines_beyond_the_timer_ring_wait_for_their_lap() {
        let config = FlowConfig { udp_idle_timeout_ns: 3000 * NANOS, ..FlowConfig::default() };
        let mut table = FlowTable::new(config);
        let mut out = Vec::new();
        table.observe(0, &udp(1000), &mut out);
        for second in [500, 1024, 2048, 3000] {
            table.expire(second * NANOS, &mut out);
            assert!(out.is_empty(), "written at {second} s");
        }
        table.expire(3001 * NANOS, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn history_letters_for_multi_flag_packets_and_zero_windows() {
        let mut zero = tcp(S, 80, C, 40000, "A", 501, 0);
        if let Some(t) = zero.tcp.as_mut() {
            t.window = 0;
        }
        let mut packets = vec![
            tcp(C, 40000, S, 80, "S", 100, 0),
            tcp(S, 80, C, 40000, "SA", 500, 0),
            tcp(C, 40000, S, 80, "A", 101, 10),
        ];
        // Ten zero-window ACKs from the responder: `a`, then `w` at the first and the tenth.
        packets.extend(std::iter::repeat_n(zero, 10));
        // FIN and RST together: `I`, and neither `F` nor `R`.
        packets.push(tcp(C, 40000, S, 80, "FRA", 111, 0));
        let out = run(&packets);
        assert_eq!(out[0].history, "ShDawwI");
        // SYN with FIN: `Q` alone.
        let out = run(&[tcp(C, 40001, S, 80, "SF", 100, 0)]);
        assert_eq!(out[0].history, "Q");
    }

    #[test]
    fn idle_flows_expire_and_table_is_bounded() {
        let mut table = FlowTable::new(FlowConfig { max_flows: 2, ..FlowConfig::default() });
        let mut out = Vec::new();
        for port in 0..5u16 {
            table.observe(i64::from(port), &tcp(C, 1000 + port, S, 80, "S", 1, 0), &mut out);
        }
        assert_eq!(table.len(), 2);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|f| f.0.reason == EndReason::Evicted));
        assert_eq!(table.stats.evicted, 3);
        table.expire(1000 * NANOS, &mut out);
        assert!(table.is_empty());
    }
}

/// `network.transport` for an IANA protocol number.
pub fn transport_name(proto: u8) -> String {
    match proto {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        1 => "icmp".to_string(),
        58 => "ipv6-icmp".to_string(),
        other => other.to_string(),
    }
}

/// Who is writing events: the sensor's identity, the Community ID seed, and the sequence numbers
/// that make `event.id` deterministic.
#[derive(Debug, Clone)]
pub struct Identity {
    pub sensor_id: String,
    pub tenant: String,
    pub community_id_seed: u16,
}

impl FlowRecord {
    pub fn to_event(&self, who: &Identity, seq: u64) -> canh_event::Event {
        use canh_event::{
            community_id, Dataset, Endpoint, Event, Flow, InnerNetwork, Network, Timestamp, Vlan,
        };
        let mut event = Event::new(
            Dataset::Flow,
            canh_event::event_id(&who.sensor_id, seq),
            Timestamp(self.start_ns),
            &who.sensor_id,
            &who.tenant,
        );
        event.event.start = Some(Timestamp(self.start_ns));
        event.event.end = Some(Timestamp(self.end_ns));
        event.event.duration = Some(self.end_ns - self.start_ns);
        event.source = Some(Endpoint {
            ip: Some(self.orig_ip),
            port: Some(self.orig_port),
            packets: Some(self.orig_packets),
            bytes: Some(self.orig_ip_bytes),
        });
        event.destination = Some(Endpoint {
            ip: Some(self.resp_ip),
            port: Some(self.resp_port),
            packets: Some(self.resp_packets),
            bytes: Some(self.resp_ip_bytes),
        });
        let transport = transport_name(self.proto);
        event.network = Some(Network {
            transport: Some(transport),
            iana_number: Some(self.proto),
            community_id: Some(community_id::community_id_v1(
                who.community_id_seed,
                self.orig_ip,
                self.resp_ip,
                self.proto,
                self.orig_port,
                self.resp_port,
            )),
            vlan: self.vlan.map(|id| Vlan { id }),
            inner: self.inner_vlan.map(|id| InnerNetwork { vlan: Some(Vlan { id }) }),
            ..Network::default()
        });
        event.icmp = self.icmp.map(|(t, c)| canh_event::Icmp { r#type: t, code: c });
        event.flow = Some(Flow {
            state: Some(self.state.to_string()),
            history: Some(self.history.as_str().to_string()),
            orig_payload_bytes: Some(self.orig_payload_bytes),
            resp_payload_bytes: Some(self.resp_payload_bytes),
            missed_bytes: Some(self.missed_bytes),
            reason: Some(self.reason.as_str().to_string()),
        });
        event
    }
}

#[cfg(test)]
mod size {
    /// The flow table's memory per flow is this slot plus 11-21 bytes of index (8-byte entries,
    /// at most 3/4 full), 4 of timer bucket and 4 of timer entry;
    /// BENCHMARKS.md measures the whole (300 bytes per active flow is the target).
    #[test]
    fn a_flow_slot_stays_small() {
        assert!(
            std::mem::size_of::<super::Slot>() <= 272,
            "{}",
            std::mem::size_of::<super::Slot>()
        );
    }
}
