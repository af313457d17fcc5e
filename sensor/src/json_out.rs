//! JSON lines output for `canh-sensor pcap`: flow events are written straight from the flow
//! records (no `Event` value, no allocation per event), other events with the event crate's
//! direct writer. The flow writer must give the same bytes as serde_json on
//! `FlowRecord::to_event`; `tests/json_output.rs` checks that on every shared capture.

use crate::flow::{FlowRecord, Identity};
use crate::packets::EventSink;
use canh_event::json::{write_str, Obj};
use canh_event::{Event, Timestamp};
use std::io::Write;

/// Bytes gathered before one write to the output.
const CHUNK: usize = 1 << 20;

pub struct JsonLines<W: Write> {
    out: W,
    buf: Vec<u8>,
    /// `"observer":{...},"organization":{...},"canh":{...}` for the identity in `ident_of`.
    ident: Vec<u8>,
    ident_of: (String, String),
    error: Option<std::io::Error>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> JsonLines<W> {
        JsonLines {
            out,
            buf: Vec::with_capacity(CHUNK + 64 * 1024),
            ident: Vec::new(),
            ident_of: (String::new(), String::new()),
            error: None,
        }
    }

    fn line_done(&mut self) {
        self.buf.push(b'\n');
        if self.buf.len() >= CHUNK {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    /// Write what is buffered and flush; the first write error of the run, if any.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.write_out();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }

    fn identity(&mut self, who: &Identity) {
        if self.ident.is_empty()
            || self.ident_of.0 != who.sensor_id
            || self.ident_of.1 != who.tenant
        {
            self.ident = identity_json(who);
            self.ident_of = (who.sensor_id.clone(), who.tenant.clone());
        }
    }
}

/// `"observer":{...},"organization":{...},"canh":{...}` for `who`: the `ident` of [`write_flow`].
pub fn identity_json(who: &Identity) -> Vec<u8> {
    // Built as the tail of an object after a first key, then the leading comma dropped.
    let mut text = Vec::new();
    let mut o = Obj::begin(&mut text);
    o.raw("x", b"0");
    let mut observer = o.obj("observer");
    observer.str("id", &who.sensor_id);
    observer.end();
    let mut org = o.obj("organization");
    org.str("id", &who.tenant);
    org.end();
    let mut canh = o.obj("canh");
    canh.u64("schema_version", u64::from(canh_event::SCHEMA_VERSION));
    canh.end();
    o.end();
    // `{"x":0,` ... `}` -> `"observer":...`
    let skip = b"{\"x\":0,".len();
    text[skip..text.len() - 1].to_vec()
}

impl<W: Write> EventSink for JsonLines<W> {
    fn flow(&mut self, record: &FlowRecord, who: &Identity, seq: u64) {
        self.identity(who);
        write_flow(&mut self.buf, record, who, seq, &self.ident);
        self.line_done();
    }

    fn event(&mut self, event: Event) {
        event.write_json(&mut self.buf);
        self.line_done();
    }
}

/// The JSON of `record.to_event(who, seq)`; `ident` is the observer/organization/canh part
/// ([`identity_json`]).
pub fn write_flow(out: &mut Vec<u8>, r: &FlowRecord, who: &Identity, seq: u64, ident: &[u8]) {
    let start = Timestamp(r.start_ns).rfc3339();
    let mut o = Obj::begin(out);
    {
        let b = o.key("@timestamp");
        b.push(b'"');
        b.extend_from_slice(&start);
        b.push(b'"');
    }
    let mut event = o.obj("event");
    {
        let b = event.key("id");
        b.push(b'"');
        b.extend_from_slice(&canh_event::event_id_bytes(&who.sensor_id, seq));
        b.push(b'"');
    }
    event.raw("kind", b"\"event\"");
    event.raw("dataset", b"\"flow\"");
    {
        let b = event.key("start");
        b.push(b'"');
        b.extend_from_slice(&start);
        b.push(b'"');
    }
    event.ts("end", Timestamp(r.end_ns));
    event.i64("duration", r.end_ns - r.start_ns);
    event.end();
    // `ident` follows a key, so it needs its comma: write it as the value-less tail.
    o.raw_members(ident);
    let mut src = o.obj("source");
    src.ip("ip", r.orig_ip);
    src.u64("port", u64::from(r.orig_port));
    src.u64("packets", r.orig_packets);
    src.u64("bytes", r.orig_ip_bytes);
    src.end();
    let mut dst = o.obj("destination");
    dst.ip("ip", r.resp_ip);
    dst.u64("port", u64::from(r.resp_port));
    dst.u64("packets", r.resp_packets);
    dst.u64("bytes", r.resp_ip_bytes);
    dst.end();
    let mut net = o.obj("network");
    match transport_str(r.proto) {
        Some(name) => net.raw("transport", name),
        None => {
            let b = net.key("transport");
            b.push(b'"');
            canh_event::json::write_u64(b, u64::from(r.proto));
            b.push(b'"');
        }
    }
    net.u64("iana_number", u64::from(r.proto));
    {
        let id = canh_event::community_id::community_id_v1_bytes(
            who.community_id_seed,
            r.orig_ip,
            r.resp_ip,
            r.proto,
            r.orig_port,
            r.resp_port,
        );
        let b = net.key("community_id");
        b.push(b'"');
        b.extend_from_slice(&id);
        b.push(b'"');
    }
    if let Some(id) = r.vlan {
        let mut v = net.obj("vlan");
        v.u64("id", u64::from(id));
        v.end();
    }
    if let Some(id) = r.inner_vlan {
        let mut inner = net.obj("inner");
        let mut v = inner.obj("vlan");
        v.u64("id", u64::from(id));
        v.end();
        inner.end();
    }
    net.end();
    let mut flow = o.obj("flow");
    write_str(flow.key("state"), r.state);
    write_str(flow.key("history"), r.history.as_str());
    flow.u64("orig_payload_bytes", r.orig_payload_bytes);
    flow.u64("resp_payload_bytes", r.resp_payload_bytes);
    flow.u64("missed_bytes", r.missed_bytes);
    write_str(flow.key("reason"), r.reason.as_str());
    flow.end();
    if let Some((t, c)) = r.icmp {
        let mut icmp = o.obj("icmp");
        icmp.u64("type", u64::from(t));
        icmp.u64("code", u64::from(c));
        icmp.end();
    }
    o.end();
}

/// `network.transport` as a JSON string, for the names `flow::transport_name` knows.
fn transport_str(proto: u8) -> Option<&'static [u8]> {
    match proto {
        6 => Some(b"\"tcp\""),
        17 => Some(b"\"udp\""),
        1 => Some(b"\"icmp\""),
        58 => Some(b"\"ipv6-icmp\""),
        _ => None,
    }
}
