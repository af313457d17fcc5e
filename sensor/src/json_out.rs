//! JSON lines output for `canh-sensor pcap`: flow and protocol metadata events are written
//! straight from the flow records and the analysers' output (no `Event` value, no allocation per
//! flow, DNS or HTTP event), other events with the event crate's direct writer. The writers must
//! give the same bytes as serde_json on `FlowRecord::to_event` and `session::to_event`;
//! `tests/json_output.rs` checks that on every shared capture.

use crate::flow::{EndReason, FlowRecord, FlowView, History, Identity};
use crate::packets::EventSink;
use crate::session::Meta;
use crate::{dns, http, tls};
use canh_event::json::{write_str, Obj};
use canh_event::{Event, Timestamp};
use std::io::Write;

/// Bytes gathered before one write to the output.
const CHUNK: usize = 1 << 16;

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

    fn meta(&mut self, view: &FlowView, meta: &Meta, who: &Identity, seq: u64) {
        self.identity(who);
        write_meta(&mut self.buf, view, meta, who, seq, &self.ident);
        self.line_done();
    }
}

/// The JSON of `record.to_event(who, seq)`; `ident` is the observer/organization/canh part
/// ([`identity_json`]). Returns the flow's Community ID written in it (the uplink's message key).
pub fn write_flow(
    out: &mut Vec<u8>,
    r: &FlowRecord,
    who: &Identity,
    seq: u64,
    ident: &[u8],
) -> [u8; 30] {
    let cid = r.view().community_id(who.community_id_seed);
    let plain = |text: &str| text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    let history = r.history.as_str();
    // Nearly every flow: the line fits the fast writer's bound, and the strings need no escape.
    if ident.len() + history.len() <= 400 && !ident.is_empty() && plain(history) && plain(r.state) {
        // Written into a per-thread buffer zeroed once, then copied: cheaper than zeroing the
        // bound's 1,280 bytes of `out` for every flow and cutting them back.
        FLOW_LINE.with_borrow_mut(|line| {
            let at = flow_line(&mut line[..], r, who, seq, ident, &cid);
            out.extend_from_slice(&line[..at]);
        });
        return cid;
    }
    write_flow_members(out, r, who, seq, ident, &cid);
    cid
}

/// Bytes the fast flow writer may use: the fixed text of a flow event with the longest numbers
/// (about 800 bytes), plus at most 400 of identity and history.
const MAX_FLOW_LINE: usize = 1280;

thread_local! {
    /// The fast flow writer's buffer (its bytes past a line's end are left from earlier lines).
    static FLOW_LINE: std::cell::RefCell<Box<[u8; MAX_FLOW_LINE]>> =
        std::cell::RefCell::new(Box::new([0; MAX_FLOW_LINE]));
}

/// A flow event written into a buffer of `MAX_FLOW_LINE` bytes at fixed offsets: no capacity check
/// and no small copy call per field (the general writer's `Vec` pushes and `memcpy` calls were a
/// fifth of `canh-sensor pcap`'s time). Same bytes as [`write_flow_members`]; returns the length.
fn flow_line(
    buf: &mut [u8],
    r: &FlowRecord,
    who: &Identity,
    seq: u64,
    ident: &[u8],
    cid: &[u8; 30],
) -> usize {
    // Times and the id are written in place (`Line::fill`), the start time once and then copied
    // within the line.
    let mut l = Line { buf, at: 0 };
    l.put(b"{\"@timestamp\":\"");
    let start = l.at;
    l.fill(|text| Timestamp(r.start_ns).write_rfc3339(text));
    l.put(b"\",\"event\":{\"id\":\"");
    l.fill(|text| canh_event::write_event_id(&who.sensor_id, seq, text));
    l.put(b"\",\"kind\":\"event\",\"dataset\":\"flow\",\"start\":\"");
    l.copy_from(start, 30);
    l.put(b"\",\"end\":\"");
    if r.end_ns == r.start_ns {
        // A flow of one packet (most of a scan or a flood): its start time again.
        l.copy_from(start, 30);
    } else {
        l.fill(|text| Timestamp(r.end_ns).write_rfc3339(text));
    }
    l.put(b"\",\"duration\":");
    l.i64(r.end_ns - r.start_ns);
    l.put(b"},");
    l.put(ident);
    l.put(b",\"source\":");
    l.endpoint(r.orig_ip, r.orig_port, r.orig_packets, r.orig_ip_bytes);
    l.put(b",\"destination\":");
    l.endpoint(r.resp_ip, r.resp_port, r.resp_packets, r.resp_ip_bytes);
    l.put(b",\"network\":{\"transport\":");
    match TRANSPORTS_PADDED.iter().find(|t| t.0 == r.proto) {
        Some((_, name, len)) => l.put_padded(name, *len),
        None => {
            l.put(b"\"");
            l.u64(u64::from(r.proto));
            l.put(b"\"");
        }
    }
    l.put(b",\"iana_number\":");
    l.u64(u64::from(r.proto));
    l.put(b",\"community_id\":\"");
    l.put(cid);
    l.put(b"\"");
    if let Some(id) = r.vlan {
        l.put(b",\"vlan\":{\"id\":");
        l.u64(u64::from(id));
        l.put(b"}");
    }
    if let Some(id) = r.inner_vlan {
        l.put(b",\"inner\":{\"vlan\":{\"id\":");
        l.u64(u64::from(id));
        l.put(b"}}");
    }
    l.put(b"},\"flow\":{\"state\":\"");
    l.put(r.state.as_bytes());
    l.put(b"\",\"history\":\"");
    match &r.history {
        // The inline letters copied whole (a fixed-size copy), the line cut at their length.
        History::Inline { len, letters } => l.put_padded(letters, usize::from(*len)),
        History::Heap(text) => l.put(text.as_bytes()),
    }
    l.put(b"\",\"orig_payload_bytes\":");
    l.u64(r.orig_payload_bytes);
    l.put(b",\"resp_payload_bytes\":");
    l.u64(r.resp_payload_bytes);
    l.put(b",\"missed_bytes\":");
    l.u64(r.missed_bytes);
    l.put(b",\"reason\":\"");
    let (reason, len) = match r.reason {
        EndReason::End => &REASONS_PADDED[0],
        EndReason::Evicted => &REASONS_PADDED[1],
        EndReason::Shutdown => &REASONS_PADDED[2],
    };
    l.put_padded(reason, *len);
    l.put(b"\"}");
    if let Some((t, c)) = r.icmp {
        l.put(b",\"icmp\":{\"type\":");
        l.u64(u64::from(t));
        l.put(b",\"code\":");
        l.u64(u64::from(c));
        l.put(b"}");
    }
    l.put(b"}");
    l.at
}

/// A fixed buffer being filled from the start (indexing panics past its end, which the caller's
/// bound on the variable parts rules out).
struct Line<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Line<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    /// `N` bytes written in place by `write`: no copy from a returned array, which would have to
    /// wait for the narrow stores that built it.
    #[inline(always)]
    fn fill<const N: usize>(&mut self, write: impl FnOnce(&mut [u8; N])) {
        // A range of N bytes always converts (and indexing past the end panics, as in `put`).
        if let Ok(bytes) = <&mut [u8; N]>::try_from(&mut self.buf[self.at..self.at + N]) {
            write(bytes);
        }
        self.at += N;
    }

    /// The `len` bytes written earlier at `from`, again.
    #[inline(always)]
    fn copy_from(&mut self, from: usize, len: usize) {
        self.buf.copy_within(from..from + len, self.at);
        self.at += len;
    }

    /// The first `len` bytes of `bytes`, written with a copy of all `N` (a fixed-size copy is a
    /// few moves; a copy of a few bytes of unknown length is a `memcpy` call). The caller's
    /// bound leaves room past the line for the bytes beyond `len`, which later writes cover.
    #[inline(always)]
    fn put_padded<const N: usize>(&mut self, bytes: &[u8; N], len: usize) {
        self.buf[self.at..self.at + N].copy_from_slice(bytes);
        self.at += len.min(N);
    }

    /// Decimal digits, written in place (as itoa, without the copy).
    #[inline]
    fn u64(&mut self, mut value: u64) {
        let digits = value.checked_ilog10().unwrap_or(0) as usize + 1;
        let end = self.at + digits;
        for slot in self.buf[self.at..end].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.at = end;
    }

    #[inline]
    fn i64(&mut self, value: i64) {
        if value < 0 {
            self.put(b"-");
        }
        self.u64(value.unsigned_abs());
    }

    /// A flow side: `{"ip":"..","port":..,"packets":..,"bytes":..}`.
    #[inline(always)]
    fn endpoint(&mut self, ip: std::net::IpAddr, port: u16, packets: u64, bytes: u64) {
        self.put(b"{\"ip\":\"");
        self.ip(ip);
        self.put(b"\",\"port\":");
        self.u64(u64::from(port));
        self.put(b",\"packets\":");
        self.u64(packets);
        self.put(b",\"bytes\":");
        self.u64(bytes);
        self.put(b"}");
    }

    /// An address in its `Display` form (as serde writes it).
    #[inline]
    fn ip(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                // Each octet's digits and a dot from a table, 4 bytes copied at a time (the
                // caller's bound leaves room past the line); the last dot is dropped.
                for octet in v4.octets() {
                    let (text, len) = &OCTETS[usize::from(octet)];
                    self.buf[self.at..self.at + 4].copy_from_slice(text);
                    self.at += usize::from(*len);
                }
                self.at -= 1;
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write;
                let mut rest = &mut self.buf[self.at..];
                let room = rest.len();
                // At most 45 bytes (`ffff:...` with an embedded IPv4): the caller's bound holds.
                let _ = write!(rest, "{v6}");
                self.at += room - rest.len();
            }
        }
    }
}

/// A short constant in a 16-byte array (at compile time), for [`Line::put_padded`].
const fn padded(text: &[u8]) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < text.len() {
        out[i] = text[i];
        i += 1;
    }
    (out, text.len())
}

/// [`transport_str`]'s names, padded (a unit test keeps the two in step).
const TRANSPORTS_PADDED: [(u8, [u8; 16], usize); 4] = {
    let (tcp, udp, icmp, icmp6) =
        (padded(b"\"tcp\""), padded(b"\"udp\""), padded(b"\"icmp\""), padded(b"\"ipv6-icmp\""));
    [(6, tcp.0, tcp.1), (17, udp.0, udp.1), (1, icmp.0, icmp.1), (58, icmp6.0, icmp6.1)]
};

/// `EndReason::as_str` of End, Evicted and Shutdown, padded (a unit test keeps them in step).
const REASONS_PADDED: [([u8; 16], usize); 3] =
    [padded(b"end"), padded(b"evicted"), padded(b"shutdown")];

/// Per octet value: its decimal digits followed by a dot, padded to 4 bytes, and how many of
/// those bytes count (2 to 4).
static OCTETS: [([u8; 4], u8); 256] = {
    let mut table = [([0u8; 4], 0u8); 256];
    let mut n = 0;
    while n < 256 {
        let v = n as u8;
        let (h, t, u) = (b'0' + v / 100, b'0' + v / 10 % 10, b'0' + v % 10);
        table[n] = if v >= 100 {
            ([h, t, u, b'.'], 4)
        } else if v >= 10 {
            ([t, u, b'.', 0], 3)
        } else {
            ([u, b'.', 0, 0], 2)
        };
        n += 1;
    }
    table
};

/// [`write_flow`] through the general object writer (identities or histories that need escaping
/// or do not fit the fast writer's bound).
fn write_flow_members(
    out: &mut Vec<u8>,
    r: &FlowRecord,
    who: &Identity,
    seq: u64,
    ident: &[u8],
    cid: &[u8; 30],
) {
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
    write_transport(&mut net, r.proto);
    net.u64("iana_number", u64::from(r.proto));
    quoted(net.key("community_id"), cid);
    write_vlans(&mut net, r.vlan, r.inner_vlan);
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

/// `"transport":...` as `flow::transport_name` names the protocol.
fn write_transport(net: &mut Obj<'_>, proto: u8) {
    match transport_str(proto) {
        Some(name) => net.raw("transport", name),
        None => {
            let b = net.key("transport");
            b.push(b'"');
            canh_event::json::write_u64(b, u64::from(proto));
            b.push(b'"');
        }
    }
}

/// `"vlan":{...}` and `"inner":{"vlan":{...}}` when the flow has the tags.
fn write_vlans(net: &mut Obj<'_>, vlan: Option<u16>, inner_vlan: Option<u16>) {
    if let Some(id) = vlan {
        let mut v = net.obj("vlan");
        v.u64("id", u64::from(id));
        v.end();
    }
    if let Some(id) = inner_vlan {
        let mut inner = net.obj("inner");
        let mut v = inner.obj("vlan");
        v.u64("id", u64::from(id));
        v.end();
        inner.end();
    }
}

/// ASCII bytes that need no escaping, as a JSON string.
fn quoted(b: &mut Vec<u8>, text: &[u8]) {
    b.push(b'"');
    b.extend_from_slice(text);
    b.push(b'"');
}

/// The JSON of `session::to_event(view, meta, who, seq)`, written without building the event
/// (no allocation for the common DNS and HTTP events); `ident` and the returned Community ID as
/// for [`write_flow`].
pub fn write_meta(
    out: &mut Vec<u8>,
    view: &FlowView,
    meta: &Meta,
    who: &Identity,
    seq: u64,
    ident: &[u8],
) -> [u8; 30] {
    let (dataset, ts_ns, protocol) = meta.header();
    let mut o = Obj::begin(out);
    o.ts("@timestamp", Timestamp(ts_ns));
    let mut event = o.obj("event");
    quoted(event.key("id"), &canh_event::event_id_bytes(&who.sensor_id, seq));
    event.str("kind", dataset.kind().as_str());
    event.str("dataset", dataset.as_str());
    event.end();
    o.raw_members(ident);
    let mut src = o.obj("source");
    src.ip("ip", view.orig_ip);
    src.u64("port", u64::from(view.orig_port));
    src.end();
    let mut dst = o.obj("destination");
    dst.ip("ip", view.resp_ip);
    dst.u64("port", u64::from(view.resp_port));
    dst.end();
    let mut net = o.obj("network");
    write_transport(&mut net, view.proto);
    net.str("protocol", protocol);
    net.u64("iana_number", u64::from(view.proto));
    let cid = view.community_id(who.community_id_seed);
    quoted(net.key("community_id"), &cid);
    write_vlans(&mut net, view.vlan, view.inner_vlan);
    net.end();
    match meta {
        Meta::Dns(t) => write_dns(o.obj("dns"), t),
        Meta::Http(t) => write_http(&mut o, t),
        Meta::Tls(t) => write_tls(o.obj("tls"), t),
        Meta::Ssh(t) => {
            let mut s = o.obj("ssh");
            for (key, banner) in [("client", &t.client), ("server", &t.server)] {
                if let Some(banner) = banner {
                    let mut p = s.obj(key);
                    p.str("banner", banner);
                    p.end();
                }
            }
            s.end();
        }
    }
    o.end();
    cid
}

/// `dns` of `session::to_event`, in the order of `canh_event::Dns`.
fn write_dns(mut d: Obj<'_>, t: &dns::Transaction) {
    let main = t.response.as_ref().or(t.query.as_ref());
    if let Some(m) = main {
        d.u64("id", u64::from(m.id));
    }
    d.str("type", if t.response.is_some() { "answer" } else { "query" });
    if let Some(m) = main {
        let name = match m.opcode {
            0 => Some("QUERY"),
            1 => Some("IQUERY"),
            2 => Some("STATUS"),
            4 => Some("NOTIFY"),
            5 => Some("UPDATE"),
            _ => None,
        };
        match name {
            Some(name) => d.str("op_code", name),
            None => {
                let b = d.key("op_code");
                b.push(b'"');
                canh_event::json::write_u64(b, u64::from(m.opcode));
                b.push(b'"');
            }
        }
    }
    // As `to_event`: the question's name (`Transaction::question`), its type and class only from
    // a query; without a question, the first logged answer's name.
    let question = t.question();
    if let Some((m, q)) = question {
        let mut qo = d.obj("question");
        qo.str("name", m.text(q.name));
        if t.query.is_some() {
            qo.str("type", &m.question_type_name(q.qtype));
            qo.str("class", &dns::class_name(q.qclass));
        }
        qo.end();
    } else if let Some(name) = t.response.as_ref().and_then(|r| r.first_logged_answer_name()) {
        let mut qo = d.obj("question");
        qo.str("name", name);
        qo.end();
    }
    if let Some(r) = &t.response {
        d.str("response_code", &dns::rcode_name(r.rcode));
    }
    if let Some(m) = main {
        let b = d.key("header_flags");
        b.push(b'[');
        let mut first = true;
        for (on, name) in [
            (m.aa, "\"AA\""),
            (m.tc, "\"TC\""),
            (m.rd, "\"RD\""),
            (m.ra, "\"RA\""),
            (m.ad, "\"AD\""),
            (m.cd, "\"CD\""),
        ] {
            if on {
                if !first {
                    b.push(b',');
                }
                first = false;
                b.extend_from_slice(name.as_bytes());
            }
        }
        b.push(b']');
    }
    if let Some(r) = &t.response {
        let mut answers = r.answers.iter().filter(|a| a.data.is_some()).peekable();
        if answers.peek().is_some() {
            let b = d.key("answers");
            b.push(b'[');
            for (i, a) in answers.enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                let mut ao = Obj::begin(b);
                ao.str("name", r.text(a.name));
                ao.str("type", &dns::type_name(a.rtype));
                ao.str("class", &dns::class_name(a.class));
                ao.u64("ttl", u64::from(a.ttl));
                if let Some(data) = a.data {
                    ao.str("data", r.text(data));
                }
                ao.end();
            }
            b.push(b']');
        }
    }
    d.opt_i64("rtt", t.rtt_ns);
    d.end();
}

/// `http`, `url` and `user_agent` of `session::to_event`.
fn write_http(o: &mut Obj<'_>, t: &http::Transaction) {
    let mut h = o.obj("http");
    // The response's version only: Zeek logs none for a request without a reply.
    if let Some(version) = t.response_version.as_deref() {
        h.str("version", version);
    }
    let mut req = h.obj("request");
    if let Some(method) = t.method.as_deref() {
        req.str("method", method);
    }
    if let Some(referrer) = t.referrer() {
        req.str("referrer", referrer);
    }
    let mut body = req.obj("body");
    body.u64("bytes", t.request_body_bytes);
    if !t.request_body.is_empty() {
        body.str("content", &String::from_utf8_lossy(&t.request_body));
    }
    body.end();
    req.end();
    let mut resp = h.obj("response");
    resp.opt_u64("status_code", t.status_code.map(u64::from));
    let mut body = resp.obj("body");
    body.u64("bytes", t.response_body_bytes);
    body.end();
    resp.end();
    h.end();
    let mut url = o.obj("url");
    if let Some(host) = t.host() {
        url.str("domain", host);
    }
    if let Some(uri) = t.uri() {
        url.str("original", uri);
    }
    url.end();
    if let Some(agent) = t.user_agent() {
        let mut u = o.obj("user_agent");
        u.str("original", agent);
        u.end();
    }
}

/// `tls` of `session::to_event` (rare: built with the analyser's own helpers).
fn write_tls(mut o: Obj<'_>, t: &tls::Summary) {
    let client = t.client_hello.as_ref();
    let server = t.server_hello.as_ref();
    if let Some((protocol, version)) = server.and_then(tls::negotiated_version) {
        o.str("version", version);
        o.str("version_protocol", protocol);
    }
    if let Some(s) = server {
        o.str("cipher", &tls::cipher_name(s.cipher));
    }
    o.bool("established", t.established);
    if let Some(alpn) = server.and_then(|s| s.alpn.as_ref()) {
        o.str("next_protocol", alpn);
    }
    if let Some(c) = client {
        let mut co = o.obj("client");
        co.opt_str("server_name", &c.server_name);
        co.str("ja3", tls::ja3(c).as_str());
        co.str("ja4", tls::ja4(c, t.carrier).as_str());
        co.end();
    }
    if let Some(s) = server {
        let cert = t.server_certificate.as_ref();
        let mut so = o.obj("server");
        so.str("ja3s", tls::ja3s(s).as_str());
        if let Some(c) = cert {
            so.str("subject", &c.subject);
            so.str("issuer", &c.issuer);
            so.ts("not_before", Timestamp(c.not_before_ns));
            so.ts("not_after", Timestamp(c.not_after_ns));
        }
        so.end();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{EndReason, History};
    use std::net::IpAddr;

    fn record(orig: &str, resp: &str, history: History) -> FlowRecord {
        FlowRecord {
            orig_ip: orig.parse().expect("address"),
            orig_port: u16::MAX,
            resp_ip: resp.parse().expect("address"),
            resp_port: 0,
            proto: 250,
            vlan: Some(4095),
            inner_vlan: Some(u16::MAX),
            // The longest duration: 20 characters with its sign.
            start_ns: i64::MAX / 2,
            end_ns: -(i64::MAX / 2),
            orig_packets: u64::MAX,
            orig_ip_bytes: u64::MAX,
            resp_packets: 0,
            resp_ip_bytes: 9,
            orig_payload_bytes: 10,
            resp_payload_bytes: u64::MAX,
            missed_bytes: 99,
            state: "RSTOS0",
            history,
            reason: EndReason::Evicted,
            icmp: Some((255, 0)),
        }
    }

    /// The padded transport names and end reasons are those of `transport_str` and `as_str`.
    #[test]
    fn padded_names_equal_their_sources() {
        for proto in 0..=255u8 {
            let padded = TRANSPORTS_PADDED.iter().find(|t| t.0 == proto);
            let padded = padded.map(|(_, name, len)| &name[..*len]);
            assert_eq!(padded, transport_str(proto), "proto {proto}");
        }
        for (i, reason) in
            [EndReason::End, EndReason::Evicted, EndReason::Shutdown].iter().enumerate()
        {
            let (name, len) = &REASONS_PADDED[i];
            assert_eq!(&name[..*len], reason.as_str().as_bytes());
        }
    }

    /// The fast writer gives the general writer's bytes, up to its bound on the variable parts
    /// (longest addresses and numbers, every optional member).
    #[test]
    fn fast_flow_line_equals_the_general_writer_at_its_bounds() {
        let who = Identity {
            sensor_id: "hn-01 \"edge\"".into(),
            tenant: "hà-nội".into(),
            community_id_seed: 1,
        };
        let ident = identity_json(&who);
        let longest = "S".repeat(400 - ident.len());
        let addresses = [
            ("255.255.255.255", "0.0.0.0"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:255.255.255.255"),
            ("1::", "fe80::1:2"),
        ];
        let histories = [
            History::Heap(Box::new(longest)),
            History::Heap(Box::new("Sh\"\\".into())),
            History::Inline { len: 2, letters: *b"ShADadFfTtWwGgIiQqRr^^" },
            History::Inline { len: 0, letters: [0; 22] },
        ];
        for (orig, resp) in addresses {
            for history in &histories {
                let mut r = record(orig, resp, history.clone());
                for (proto, icmp, vlan) in [(250, Some((255, 0)), Some(1)), (6, None, None)] {
                    r.proto = proto;
                    r.icmp = icmp;
                    r.vlan = vlan;
                    r.inner_vlan = vlan;
                    let mut fast = Vec::new();
                    write_flow(&mut fast, &r, &who, u64::MAX, &ident);
                    let mut general = Vec::new();
                    let cid = r.view().community_id(who.community_id_seed);
                    write_flow_members(&mut general, &r, &who, u64::MAX, &ident, &cid);
                    assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&general));
                    let event = r.to_event(&who, u64::MAX);
                    assert_eq!(fast, serde_json::to_vec(&event).expect("serialise"));
                    assert!(matches!(r.orig_ip, IpAddr::V4(_) | IpAddr::V6(_)));
                }
            }
        }
    }
}
