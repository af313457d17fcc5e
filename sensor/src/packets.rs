//! The packet path without I/O: frames in, events out. Capture feeds it; a sink takes the events.

use crate::decode::{decode, decode_into, DecodeError, LinkType, Packet};
use crate::defrag::{Defrag, DefragStats};
use crate::flow::{Analysis, Finished, FlowConfig, FlowRecord, FlowTable, FlowView, Identity};
use crate::metrics::Metrics;
use crate::session::{Meta, SessionStats, Sessions};
use canh_event::{Dataset, Event};

/// Where the pipeline's events go. A `Vec<Event>` collects them; [`crate::json_out::JsonLines`]
/// writes their JSON straight from the flow records, without building `Event` values.
pub trait EventSink {
    /// A finished flow, numbered `seq`.
    fn flow(&mut self, record: &FlowRecord, who: &Identity, seq: u64);
    /// Any other event.
    fn event(&mut self, event: Event);
    /// Protocol metadata of the flow `view`, numbered `seq`. By default the event is built and
    /// handed to [`EventSink::event`]; a sink that writes JSON can write it straight from `meta`.
    fn meta(&mut self, view: &FlowView, meta: &Meta, who: &Identity, seq: u64) {
        self.event(crate::session::to_event(view, meta, who, seq));
    }
}

impl EventSink for Vec<Event> {
    fn flow(&mut self, record: &FlowRecord, who: &Identity, seq: u64) {
        self.push(record.to_event(who, seq));
    }

    fn event(&mut self, event: Event) {
        self.push(event);
    }
}

/// Flows a sweep writes at a time (`PacketPipeline::sweep`).
const SWEEP_CHUNK: usize = 256;

pub struct PacketPipeline<'m> {
    who: Identity,
    table: FlowTable,
    next_seq: u64,
    finished: Vec<Finished>,
    sessions: Sessions,
    /// `metrics.events` per dataset, in `Dataset::ALL` order (label lookups cost per event).
    event_counters: Vec<prometheus::IntCounter>,
    defrag: Defrag,
    defrag_reported: DefragStats,
    metas: Vec<(FlowView, Meta)>,
    reported: SessionStats,
    metrics: &'m Metrics,
    last_ts_ns: i64,
    /// The most flows held at once.
    peak_flows: usize,
    /// `flows_active` and `flow_evictions` as last set.
    reported_flows: usize,
    reported_evictions: u64,
}

impl<'m> PacketPipeline<'m> {
    /// `first_seq` numbers the first event; see `sequence` for how it is kept across restarts.
    pub fn new(who: Identity, flows: FlowConfig, first_seq: u64, metrics: &'m Metrics) -> Self {
        PacketPipeline {
            who,
            table: FlowTable::new(flows.clone()),
            next_seq: first_seq,
            finished: Vec::new(),
            sessions: Sessions::new(flows.max_flows),
            event_counters: Dataset::ALL
                .iter()
                .map(|d| metrics.events.with_label_values(&[d.as_str()]))
                .collect(),
            defrag: Defrag::default(),
            defrag_reported: DefragStats::default(),
            metas: Vec::new(),
            reported: SessionStats::default(),
            metrics,
            last_ts_ns: i64::MIN,
            peak_flows: 0,
            reported_flows: usize::MAX,
            reported_evictions: 0,
        }
    }

    /// Process one captured frame; events for flows it finished are pushed to `out`.
    pub fn frame(&mut self, link: LinkType, ts_ns: i64, data: &[u8], out: &mut impl EventSink) {
        self.metrics.packets.inc();
        self.last_ts_ns = self.last_ts_ns.max(ts_ns);
        // Decoded in place: the packet is used where `decode_into` wrote it, not copied out of
        // a returned value first (a copy that waited on decode's narrower stores).
        let mut packet = Packet::EMPTY;
        match decode_into(link, data, &mut packet) {
            Ok(()) => self.packet(ts_ns, &packet, out),
            Err(DecodeError::Fragment) => {
                let whole = crate::decode::fragment_of(link, data).and_then(|(fragment, outer)| {
                    // A fragment out of a tunnel: the tunnel's packet counts in its flow now.
                    if let Some(outer) = &outer {
                        self.tunnel(ts_ns, outer, out);
                    }
                    self.defrag.add(ts_ns, &fragment)
                });
                if let Some(whole) = whole {
                    match decode(LinkType::Raw, &whole.ip) {
                        Ok(mut packet) => {
                            // The frame's tags belong to its outermost packet.
                            match packet.outer.as_deref_mut() {
                                Some(outer) => outer.tag_outermost(whole.vlan, whole.inner_vlan),
                                None => {
                                    packet.vlan = whole.vlan;
                                    packet.inner_vlan = whole.inner_vlan;
                                }
                            }
                            self.packet(ts_ns, &packet, out);
                        }
                        Err(err) => {
                            self.metrics.decode_errors.with_label_values(&[err.reason()]).inc()
                        }
                    }
                }
                self.report_defrag();
            }
            Err(err) => self.metrics.decode_errors.with_label_values(&[err.reason()]).inc(),
        }
        self.drain(out);
    }

    fn packet(&mut self, ts_ns: i64, packet: &crate::decode::Packet<'_>, out: &mut impl EventSink) {
        if let Some(outer) = &packet.outer {
            self.tunnel(ts_ns, outer, out);
        }
        self.sweep(ts_ns, out);
        // By reference, for the same reason as the decoded packet in `frame`.
        if let Some((view, analysis)) = &mut self.table.observe(ts_ns, packet, &mut self.finished) {
            self.sessions.packet(analysis, view, ts_ns, packet, &mut self.metas);
        }
    }

    /// The UDP flows of the tunnels around a packet, outermost first (as Zeek meets them). Their
    /// payload is the tunnel: counted, not analysed.
    fn tunnel(&mut self, ts_ns: i64, outer: &crate::decode::OuterUdp, out: &mut impl EventSink) {
        if let Some(further) = &outer.outer {
            self.tunnel(ts_ns, further, out);
        }
        self.sweep(ts_ns, out);
        let _ = self.table.observe(ts_ns, &outer.packet(), &mut self.finished);
    }

    /// The flow table's sweep, when one is due before the packet at `ts_ns` is observed: the flows
    /// it finds due are written SWEEP_CHUNK at a time, so their records are never all held at once
    /// (on a SYN flood one sweep finds tens of thousands: ~35 bytes per active flow of peak memory
    /// when they were listed together). They are written before the packet's own events.
    fn sweep(&mut self, ts_ns: i64, out: &mut impl EventSink) {
        if self.table.start_sweep(ts_ns) {
            self.write_due(out);
        }
    }

    /// The flows the table's sweep noted as due, written SWEEP_CHUNK at a time.
    fn write_due(&mut self, out: &mut impl EventSink) {
        while self.table.expire_some(&mut self.finished, SWEEP_CHUNK) {
            self.write_finished(out);
        }
    }

    fn report_defrag(&mut self) {
        if self.defrag.stats == self.defrag_reported {
            return;
        }
        let stats = self.defrag.stats.clone();
        let m = &self.metrics.fragments;
        m.with_label_values(&["reassembled"])
            .inc_by(stats.reassembled - self.defrag_reported.reassembled);
        m.with_label_values(&["timed_out"])
            .inc_by(stats.timed_out - self.defrag_reported.timed_out);
        m.with_label_values(&["table_full"])
            .inc_by(stats.table_full - self.defrag_reported.table_full);
        m.with_label_values(&["invalid"]).inc_by(stats.invalid - self.defrag_reported.invalid);
        self.defrag_reported = stats;
    }

    /// Time passed without packets (live capture): expire idle flows.
    pub fn tick(&mut self, now_ns: i64, out: &mut impl EventSink) {
        // SWEEP_CHUNK at a time, as a packet's sweep writes them.
        self.table.note_due(now_ns);
        self.write_due(out);
        self.drain(out);
    }

    /// The input ended: write every open flow.
    pub fn finish(&mut self, out: &mut impl EventSink) {
        self.drain(out);
        // One flow at a time: the records of a full table are never all held at once.
        let mut table = std::mem::replace(&mut self.table, FlowTable::new(FlowConfig::default()));
        table.flush(|(record, analysis)| self.write_flow(&record, analysis, out));
        self.table = table;
        self.drain(out);
    }

    /// The most flows the table held at once so far.
    pub fn peak_flows(&self) -> usize {
        self.peak_flows
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn drain(&mut self, out: &mut impl EventSink) {
        // Called for every frame: the shared metrics are touched only when they changed.
        let flows = self.table.len();
        if flows != self.reported_flows {
            self.peak_flows = self.peak_flows.max(flows);
            self.metrics.flows_active.set(flows as i64);
            self.reported_flows = flows;
        }
        if self.table.stats.evicted != self.reported_evictions {
            self.metrics.flow_evictions.inc_by(self.table.stats.evicted - self.reported_evictions);
            self.reported_evictions = self.table.stats.evicted;
        }
        self.write_finished(out);
        self.emit_metadata(out);
        if self.sessions.stats == self.reported {
            return;
        }
        let stats = self.sessions.stats.clone();
        let drops = &self.metrics.metadata_drops;
        drops
            .with_label_values(&["table_full"])
            .inc_by(stats.table_full - self.reported.table_full);
        drops
            .with_label_values(&["buffer_full"])
            .inc_by(stats.buffer_full - self.reported.buffer_full);
        drops
            .with_label_values(&["parse_error"])
            .inc_by(stats.parse_errors - self.reported.parse_errors);
        self.reported = stats;
    }

    /// The finished flows waiting in `finished`, in order.
    fn write_finished(&mut self, out: &mut impl EventSink) {
        let mut finished = std::mem::take(&mut self.finished);
        // By reference: a finished flow is not moved again on its way out.
        for (record, analysis) in finished.iter_mut() {
            let analysis = std::mem::replace(analysis, Analysis::Off);
            self.write_flow(record, analysis, out);
        }
        finished.clear();
        self.finished = finished;
    }

    /// A finished flow: its analyser's last metadata, then the flow record.
    fn write_flow(&mut self, record: &FlowRecord, analysis: Analysis, out: &mut impl EventSink) {
        self.sessions.end(analysis, &record.view(), &mut self.metas);
        self.emit_metadata(out);
        out.flow(record, &self.who, self.next_seq);
        self.next_seq += 1;
        self.event_counters[0].inc();
    }

    fn emit_metadata(&mut self, out: &mut impl EventSink) {
        for (view, meta) in self.metas.drain(..) {
            let dataset = meta.header().0;
            let i = Dataset::ALL.iter().position(|d| *d == dataset).unwrap_or(0);
            self.event_counters[i].inc();
            out.meta(&view, &meta, &self.who, self.next_seq);
            self.next_seq += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw IPv4/UDP packet from 10.0.0.53:53 to 10.0.0.1:40000 carrying `payload` (checksums
    /// are not verified, so they are left zero).
    fn udp_from_server(payload: &[u8]) -> Vec<u8> {
        let total = (20 + 8 + payload.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 53, 10, 0, 0, 1];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&(total - 20).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn a_dns_response_with_a_bad_record_keeps_the_records_before_it() {
        // A response to "ex.org" A: one good answer, then an A record whose data is 3 bytes.
        let mut dns = vec![0, 9, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        dns.extend_from_slice(&[2, b'e', b'x', 3, b'o', b'r', b'g', 0, 0, 1, 0, 1]);
        dns.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
        dns.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 3, 192, 0, 2]);
        let metrics = Metrics::new();
        let who = Identity { sensor_id: "t".into(), tenant: "t".into(), community_id_seed: 0 };
        let mut pipeline = PacketPipeline::new(who, FlowConfig::default(), 0, &metrics);
        let mut events: Vec<Event> = Vec::new();
        pipeline.frame(LinkType::Raw, 1_000_000_000, &udp_from_server(&dns), &mut events);
        pipeline.finish(&mut events);
        let dns_events: Vec<_> = events.iter().filter_map(|e| e.dns.as_ref()).collect();
        assert_eq!(dns_events.len(), 1, "{events:?}");
        let d = dns_events[0];
        assert_eq!(d.question.as_ref().and_then(|q| q.name.as_deref()), Some("ex.org"));
        let answers = d.answers.as_ref().expect("answers");
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].data.as_deref(), Some("192.0.2.7"));
        let drops = metrics.metadata_drops.with_label_values(&["parse_error"]).get();
        assert_eq!(drops, 1);
    }
}
