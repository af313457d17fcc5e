//! The packet path without I/O: frames in, events out. Capture feeds it; a sink takes the events.

use crate::decode::{decode, LinkType};
use crate::flow::{FlowConfig, FlowRecord, FlowTable, Identity};
use crate::metrics::Metrics;
use canh_event::Event;

pub struct PacketPipeline<'m> {
    who: Identity,
    table: FlowTable,
    next_seq: u64,
    finished: Vec<FlowRecord>,
    metrics: &'m Metrics,
    last_ts_ns: i64,
}

impl<'m> PacketPipeline<'m> {
    /// `first_seq` numbers the first event; see `sequence` for how it is kept across restarts.
    pub fn new(who: Identity, flows: FlowConfig, first_seq: u64, metrics: &'m Metrics) -> Self {
        PacketPipeline {
            who,
            table: FlowTable::new(flows),
            next_seq: first_seq,
            finished: Vec::new(),
            metrics,
            last_ts_ns: i64::MIN,
        }
    }

    /// Process one captured frame; events for flows it finished are pushed to `out`.
    pub fn frame(&mut self, link: LinkType, ts_ns: i64, data: &[u8], out: &mut Vec<Event>) {
        self.metrics.packets.inc();
        self.last_ts_ns = self.last_ts_ns.max(ts_ns);
        match decode(link, data) {
            Ok(packet) => self.table.observe(ts_ns, &packet, &mut self.finished),
            Err(err) => self.metrics.decode_errors.with_label_values(&[err.reason()]).inc(),
        }
        self.drain(out);
    }

    /// Time passed without packets (live capture): expire idle flows.
    pub fn tick(&mut self, now_ns: i64, out: &mut Vec<Event>) {
        self.table.expire(now_ns, &mut self.finished);
        self.drain(out);
    }

    /// The input ended: write every open flow.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.table.flush(&mut self.finished);
        self.drain(out);
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        self.metrics.flows_active.set(self.table.len() as i64);
        self.metrics
            .flow_evictions
            .inc_by(self.table.stats.evicted.saturating_sub(self.metrics.flow_evictions.get()));
        for record in self.finished.drain(..) {
            out.push(record.to_event(&self.who, self.next_seq));
            self.next_seq += 1;
            self.metrics.events.with_label_values(&["flow"]).inc();
        }
    }
}
