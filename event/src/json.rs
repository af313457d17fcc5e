//! A direct JSON writer for events: the same bytes `serde_json::to_vec(&event)` produces (field
//! order of the structs, absent values left out, serde_json's string escaping), written into a
//! reusable buffer without building intermediate values. The tests compare it byte for byte with
//! serde_json; the writer destructures every struct without `..`, so a new field does not compile
//! until it is written here too (keep the struct's field order).
//!
//! [`Obj`] is also the building block for callers that write an event's JSON straight from their
//! own records (the packet sensor's flow records); they must be tested against serde_json too.

use crate::schema::*;
use crate::Timestamp;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Append `text` as a JSON string (quoted and escaped as serde_json does).
#[inline]
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    write_str_noting(out, text, |_| {});
}

/// [`write_str`], calling `escaped` with the offset in `text` of each byte it escaped (in order),
/// for callers that copy slices of `text` later without scanning them again.
#[inline(always)]
pub fn write_str_noting(out: &mut Vec<u8>, text: &str, mut escaped: impl FnMut(usize)) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Sixteen, then eight bytes at a time over the runs that need no escape (most of any
        // text). The sixteen-byte test is written as a plain loop over the bytes, which the
        // compiler turns into vector compares (SSE2).
        while let Some(chunk) = bytes.get(i..i + 16) {
            if chunk.iter().fold(false, |any, &b| any | (b < 0x20) | (b == b'"') | (b == b'\\')) {
                break;
            }
            i += 16;
        }
        while let Some(word) = bytes.get(i..i + 8) {
            if needs_escape(load(word)) {
                break;
            }
            i += 8;
        }
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes[i];
            if b >= 0x20 && b != b'"' && b != b'\\' {
                i += 1;
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            write_escape(out, b);
            escaped(i);
            i += 1;
            start = i;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `word` is a control character, `"` or `\\` (the bytes JSON
/// strings escape). Bytes of 0x80 and above never match.
#[inline]
fn needs_escape(word: u64) -> bool {
    escape_bits(word) != 0
}

/// Non-zero when [`needs_escape`]: the high bit of each byte that may need one.
#[inline]
fn escape_bits(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v;
    (below_space | zero_in(quote) | zero_in(backslash)) & HIGH
}

/// The first eight bytes of `bytes` (at least eight long) as a little-endian word.
#[inline(always)]
fn load(bytes: &[u8]) -> u64 {
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

/// The escape serde_json writes for a byte that needs one.
#[cold]
fn write_escape(out: &mut Vec<u8>, b: u8) {
    let escape: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
            return;
        }
    };
    out.extend_from_slice(escape);
}

/// Append an unsigned integer in decimal.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(value).as_bytes());
}

/// Append a signed integer in decimal.
#[inline]
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(value).as_bytes());
}

/// Append a timestamp as a JSON string (RFC 3339, as its `Display`).
#[inline]
pub fn write_ts(out: &mut Vec<u8>, ts: Timestamp) {
    out.push(b'"');
    out.extend_from_slice(&ts.rfc3339());
    out.push(b'"');
}

/// Append an address as a JSON string (its `Display` form, as serde writes it).
#[inline]
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Built on the stack, then appended whole (a fixed-length copy) and cut to its length.
            let mut text = [0u8; 17];
            text[0] = b'"';
            let mut n = 1;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                // One to three digits, without leading zeros.
                if octet >= 100 {
                    text[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    text[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + octet % 10;
                n += 1;
            }
            text[n] = b'"';
            out.extend_from_slice(&text);
            out.truncate(out.len() - (text.len() - n - 1));
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            out.push(b'"');
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{v6}");
            out.push(b'"');
        }
    }
}

/// One JSON object being written: keys get their commas, values their encoding.
pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    /// Start an object at the end of `out`.
    #[inline(always)]
    pub fn begin(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, empty: true }
    }

    /// Write `"key":` (with the comma before it when needed) and hand back the buffer for the
    /// value. `key` must not need escaping (every schema field name is plain ASCII).
    #[inline(always)]
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// A key that may need escaping (map keys).
    #[inline(always)]
    fn escaped_key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    #[inline(always)]
    pub fn str(&mut self, key: &str, value: &str) {
        write_str(self.key(key), value);
    }

    #[inline(always)]
    pub fn opt_str(&mut self, key: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    #[inline(always)]
    pub fn u64(&mut self, key: &str, value: u64) {
        write_u64(self.key(key), value);
    }

    #[inline(always)]
    pub fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.u64(key, v);
        }
    }

    #[inline(always)]
    pub fn i64(&mut self, key: &str, value: i64) {
        write_i64(self.key(key), value);
    }

    #[inline(always)]
    pub fn opt_i64(&mut self, key: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.i64(key, v);
        }
    }

    #[inline(always)]
    pub fn bool(&mut self, key: &str, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
    }

    #[inline(always)]
    pub fn opt_bool(&mut self, key: &str, value: Option<bool>) {
        if let Some(v) = value {
            self.bool(key, v);
        }
    }

    #[inline(always)]
    pub fn ts(&mut self, key: &str, value: Timestamp) {
        write_ts(self.key(key), value);
    }

    #[inline(always)]
    pub fn opt_ts(&mut self, key: &str, value: Option<Timestamp>) {
        if let Some(v) = value {
            self.ts(key, v);
        }
    }

    #[inline(always)]
    pub fn ip(&mut self, key: &str, value: IpAddr) {
        write_ip(self.key(key), value);
    }

    /// Bytes already encoded as a JSON value.
    #[inline(always)]
    pub fn raw(&mut self, key: &str, json: &[u8]) {
        self.key(key).extend_from_slice(json);
    }

    /// Members already encoded (`"a":1,"b":2`), appended after this object's others.
    #[inline(always)]
    pub fn raw_members(&mut self, members: &[u8]) {
        if members.is_empty() {
            return;
        }
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(members);
    }

    /// A nested object under `key`; call [`Obj::end`] on it.
    #[inline(always)]
    pub fn obj(&mut self, key: &str) -> Obj<'_> {
        Obj::begin(self.key(key))
    }

    #[inline(always)]
    pub fn str_list(&mut self, key: &str, values: &[String]) {
        let out = self.key(key);
        out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, v);
        }
        out.push(b']');
    }

    #[inline(always)]
    pub fn opt_str_list(&mut self, key: &str, values: &Option<Vec<String>>) {
        if let Some(v) = values {
            self.str_list(key, v);
        }
    }

    #[inline(always)]
    pub fn end(self) {
        self.out.push(b'}');
    }
}

impl Event {
    /// Append this event's JSON (one line, no newline) to `out`: byte for byte what
    /// `serde_json::to_vec(self)` gives, several times faster.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let Event {
            timestamp,
            event,
            observer,
            organization,
            canh,
            source,
            destination,
            network,
            flow,
            dns,
            http,
            url,
            user_agent,
            tls,
            ssh,
            icmp,
            log,
            message,
            host,
            process,
            user,
            rule,
            threat,
            alert,
            sensor,
            group,
        } = self;
        let mut o = Obj::begin(out);
        o.ts("@timestamp", *timestamp);
        event_info(o.obj("event"), event);
        observer_json(o.obj("observer"), observer);
        let Organization { id } = organization;
        let mut org = o.obj("organization");
        org.str("id", id);
        org.end();
        let CanhInfo { schema_version } = canh;
        let mut c = o.obj("canh");
        c.u64("schema_version", u64::from(*schema_version));
        c.end();
        if let Some(v) = source {
            endpoint(o.obj("source"), v);
        }
        if let Some(v) = destination {
            endpoint(o.obj("destination"), v);
        }
        if let Some(v) = network {
            network_json(o.obj("network"), v);
        }
        if let Some(v) = flow {
            flow_json(o.obj("flow"), v);
        }
        if let Some(v) = dns {
            dns_json(o.obj("dns"), v);
        }
        if let Some(v) = http {
            http_json(o.obj("http"), v);
        }
        if let Some(Url { domain, original }) = url {
            let mut u = o.obj("url");
            u.opt_str("domain", domain);
            u.opt_str("original", original);
            u.end();
        }
        if let Some(UserAgent { original }) = user_agent {
            let mut u = o.obj("user_agent");
            u.str("original", original);
            u.end();
        }
        if let Some(v) = tls {
            tls_json(o.obj("tls"), v);
        }
        if let Some(Ssh { client, server }) = ssh {
            let mut s = o.obj("ssh");
            for (key, peer) in [("client", client), ("server", server)] {
                if let Some(SshPeer { banner }) = peer {
                    let mut p = s.obj(key);
                    p.str("banner", banner);
                    p.end();
                }
            }
            s.end();
        }
        if let Some(Icmp { r#type, code }) = icmp {
            let mut i = o.obj("icmp");
            i.u64("type", u64::from(*r#type));
            i.u64("code", u64::from(*code));
            i.end();
        }
        if let Some(v) = log {
            log_json(o.obj("log"), v);
        }
        o.opt_str("message", message);
        if let Some(Host { hostname }) = host {
            let mut h = o.obj("host");
            h.str("hostname", hostname);
            h.end();
        }
        if let Some(Process { name, pid, command_line }) = process {
            let mut p = o.obj("process");
            p.opt_str("name", name);
            p.opt_u64("pid", pid.map(u64::from));
            p.opt_str("command_line", command_line);
            p.end();
        }
        if let Some(User { name, target, effective }) = user {
            let mut u = o.obj("user");
            u.str("name", name);
            for (key, who) in [("target", target), ("effective", effective)] {
                if let Some(UserTarget { name }) = who {
                    let mut t = u.obj(key);
                    t.str("name", name);
                    t.end();
                }
            }
            u.end();
        }
        if let Some(Rule { id, name, level, tags }) = rule {
            let mut r = o.obj("rule");
            r.str("id", id);
            r.str("name", name);
            r.opt_str("level", level);
            r.opt_str_list("tags", tags);
            r.end();
        }
        if let Some(Threat { technique: ThreatTechnique { id } }) = threat {
            let mut t = o.obj("threat");
            let mut tech = t.obj("technique");
            tech.str_list("id", id);
            tech.end();
            t.end();
        }
        if let Some(v) = alert {
            alert_json(o.obj("alert"), v);
        }
        if let Some(v) = sensor {
            sensor_json(o.obj("sensor"), v);
        }
        if let Some(Group { name }) = group {
            let mut g = o.obj("group");
            g.str("name", name);
            g.end();
        }
        o.end();
    }
}

fn event_info(mut o: Obj<'_>, e: &EventInfo) {
    let EventInfo {
        id,
        kind,
        dataset,
        category,
        r#type,
        outcome,
        action,
        start,
        end,
        duration,
        severity,
        original,
    } = e;
    o.str("id", id);
    o.str("kind", kind.as_str());
    o.str("dataset", dataset.as_str());
    o.opt_str_list("category", category);
    o.opt_str_list("type", r#type);
    o.opt_str("outcome", outcome);
    o.opt_str("action", action);
    o.opt_ts("start", *start);
    o.opt_ts("end", *end);
    o.opt_i64("duration", *duration);
    o.opt_u64("severity", severity.map(u64::from));
    o.opt_str("original", original);
    o.end();
}

fn observer_json(mut o: Obj<'_>, v: &Observer) {
    let Observer { id, hostname, ingress, egress } = v;
    o.str("id", id);
    o.opt_str("hostname", hostname);
    for (key, side) in [("ingress", ingress), ("egress", egress)] {
        if let Some(ObserverInterface { interface: InterfaceName { name } }) = side {
            let mut s = o.obj(key);
            let mut i = s.obj("interface");
            i.str("name", name);
            i.end();
            s.end();
        }
    }
    o.end();
}

fn endpoint(mut o: Obj<'_>, v: &Endpoint) {
    let Endpoint { ip, port, packets, bytes } = v;
    if let Some(ip) = ip {
        o.ip("ip", *ip);
    }
    o.opt_u64("port", port.map(u64::from));
    o.opt_u64("packets", *packets);
    o.opt_u64("bytes", *bytes);
    o.end();
}

fn network_json(mut o: Obj<'_>, v: &Network) {
    let Network { transport, protocol, iana_number, community_id, vlan, inner } = v;
    o.opt_str("transport", transport);
    o.opt_str("protocol", protocol);
    o.opt_u64("iana_number", iana_number.map(u64::from));
    o.opt_str("community_id", community_id);
    if let Some(Vlan { id }) = vlan {
        let mut v = o.obj("vlan");
        v.u64("id", u64::from(*id));
        v.end();
    }
    if let Some(InnerNetwork { vlan }) = inner {
        let mut i = o.obj("inner");
        if let Some(Vlan { id }) = vlan {
            let mut v = i.obj("vlan");
            v.u64("id", u64::from(*id));
            v.end();
        }
        i.end();
    }
    o.end();
}

fn flow_json(mut o: Obj<'_>, v: &Flow) {
    let Flow { state, history, orig_payload_bytes, resp_payload_bytes, missed_bytes, reason } = v;
    o.opt_str("state", state);
    o.opt_str("history", history);
    o.opt_u64("orig_payload_bytes", *orig_payload_bytes);
    o.opt_u64("resp_payload_bytes", *resp_payload_bytes);
    o.opt_u64("missed_bytes", *missed_bytes);
    o.opt_str("reason", reason);
    o.end();
}

fn dns_json(mut o: Obj<'_>, v: &Dns) {
    let Dns { id, r#type, op_code, question, response_code, header_flags, answers, rtt } = v;
    o.opt_u64("id", id.map(u64::from));
    o.opt_str("type", r#type);
    o.opt_str("op_code", op_code);
    if let Some(DnsQuestion { name, r#type, class }) = question {
        let mut q = o.obj("question");
        q.opt_str("name", name);
        q.opt_str("type", r#type);
        q.opt_str("class", class);
        q.end();
    }
    o.opt_str("response_code", response_code);
    o.opt_str_list("header_flags", header_flags);
    if let Some(answers) = answers {
        let out = o.key("answers");
        out.push(b'[');
        for (i, a) in answers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let DnsAnswer { name, r#type, class, ttl, data } = a;
            let mut a = Obj::begin(out);
            a.opt_str("name", name);
            a.opt_str("type", r#type);
            a.opt_str("class", class);
            a.opt_u64("ttl", ttl.map(u64::from));
            a.opt_str("data", data);
            a.end();
        }
        out.push(b']');
    }
    o.opt_i64("rtt", *rtt);
    o.end();
}

fn http_json(mut o: Obj<'_>, v: &Http) {
    let Http { version, request, response } = v;
    o.opt_str("version", version);
    if let Some(HttpRequest { method, referrer, body }) = request {
        let mut r = o.obj("request");
        r.opt_str("method", method);
        r.opt_str("referrer", referrer);
        if let Some(Body { bytes, content }) = body {
            let mut b = r.obj("body");
            b.u64("bytes", *bytes);
            b.opt_str("content", content);
            b.end();
        }
        r.end();
    }
    if let Some(HttpResponse { status_code, body }) = response {
        let mut r = o.obj("response");
        r.opt_u64("status_code", status_code.map(u64::from));
        if let Some(Body { bytes, content }) = body {
            let mut b = r.obj("body");
            b.u64("bytes", *bytes);
            b.opt_str("content", content);
            b.end();
        }
        r.end();
    }
    o.end();
}

fn tls_json(mut o: Obj<'_>, v: &Tls) {
    let Tls { version, version_protocol, cipher, established, next_protocol, client, server } = v;
    o.opt_str("version", version);
    o.opt_str("version_protocol", version_protocol);
    o.opt_str("cipher", cipher);
    o.opt_bool("established", *established);
    o.opt_str("next_protocol", next_protocol);
    if let Some(TlsClient { server_name, ja3, ja4 }) = client {
        let mut c = o.obj("client");
        c.opt_str("server_name", server_name);
        c.opt_str("ja3", ja3);
        c.opt_str("ja4", ja4);
        c.end();
    }
    if let Some(TlsServer { ja3s, subject, issuer, not_before, not_after }) = server {
        let mut s = o.obj("server");
        s.opt_str("ja3s", ja3s);
        s.opt_str("subject", subject);
        s.opt_str("issuer", issuer);
        s.opt_ts("not_before", *not_before);
        s.opt_ts("not_after", *not_after);
        s.end();
    }
    o.end();
}

fn code_name(mut o: Obj<'_>, v: &CodeName) {
    let CodeName { code, name } = v;
    o.u64("code", u64::from(*code));
    o.str("name", name);
    o.end();
}

fn log_json(mut o: Obj<'_>, v: &Log) {
    let Log { level, file, syslog, parse_error, escaped, truncated } = v;
    o.opt_str("level", level);
    if let Some(LogFile { path }) = file {
        let mut f = o.obj("file");
        f.str("path", path);
        f.end();
    }
    if let Some(s) = syslog {
        let Syslog {
            priority,
            facility,
            severity,
            hostname,
            appname,
            procid,
            msgid,
            structured_data,
        } = s;
        let mut y = o.obj("syslog");
        y.opt_u64("priority", priority.map(u64::from));
        if let Some(f) = facility {
            code_name(y.obj("facility"), f);
        }
        if let Some(s) = severity {
            code_name(y.obj("severity"), s);
        }
        y.opt_str("hostname", hostname);
        y.opt_str("appname", appname);
        y.opt_str("procid", procid);
        y.opt_str("msgid", msgid);
        if let Some(sd) = structured_data {
            let mut d = y.obj("structured_data");
            for (id, params) in sd {
                string_map(Obj::begin(d.escaped_key(id)), params);
            }
            d.end();
        }
        y.end();
    }
    o.opt_str("parse_error", parse_error);
    o.opt_bool("escaped", *escaped);
    o.opt_bool("truncated", *truncated);
    o.end();
}

fn string_map(mut o: Obj<'_>, map: &BTreeMap<String, String>) {
    for (k, v) in map {
        write_str(o.escaped_key(k), v);
    }
    o.end();
}

fn alert_json(mut o: Obj<'_>, v: &Alert) {
    let Alert { event_ids, group, first_seen, last_seen, count } = v;
    o.str_list("event_ids", event_ids);
    string_map(o.obj("group"), group);
    o.ts("first_seen", *first_seen);
    o.ts("last_seen", *last_seen);
    o.u64("count", *count);
    o.end();
}

fn sensor_json(mut o: Obj<'_>, v: &SensorStats) {
    let SensorStats {
        interface,
        packets_received,
        packets_dropped,
        packets_if_dropped,
        events_sent,
        spool_bytes,
    } = v;
    o.opt_str("interface", interface);
    o.opt_u64("packets_received", *packets_received);
    o.opt_u64("packets_dropped", *packets_dropped);
    o.opt_u64("packets_if_dropped", *packets_if_dropped);
    o.opt_u64("events_sent", *events_sent);
    o.opt_u64("spool_bytes", *spool_bytes);
    o.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut all = String::new();
        for c in 0u8..=0x7f {
            all.push(char::from(c));
        }
        all.push_str("é漢字😀\u{2028}\u{7f}");
        for text in [all.as_str(), "", "plain", "\"\\", "a\u{1}b\u{1f}"] {
            let mut ours = Vec::new();
            write_str(&mut ours, text);
            let theirs = serde_json::to_vec(text).expect("serialise");
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }

    #[test]
    fn escapes_at_every_position_of_a_word() {
        // The writer scans eight bytes at a time: put each special byte at each offset, around
        // multi-byte characters, in strings of every length up to three words.
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}', 'é', ' ', '!', '#', ']'] {
            for len in 0..24 {
                for at in 0..len {
                    let text: String =
                        (0..len).map(|i| if i == at { special } else { 'a' }).collect();
                    let mut ours = Vec::new();
                    write_str(&mut ours, &text);
                    assert_eq!(ours, serde_json::to_vec(&text).expect("serialise"), "{text:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_escapes_as_serde_json(text in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
            let mut ours = Vec::new();
            write_str(&mut ours, &text);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&text).expect("serialise"));
        }
    }

    #[test]
    fn numbers_and_addresses_as_serde_json() {
        for v in [0u64, 1, 9, 10, 99, 12345, u64::MAX] {
            let mut ours = Vec::new();
            write_u64(&mut ours, v);
            assert_eq!(ours, serde_json::to_vec(&v).expect("serialise"));
        }
        for v in [0i64, -1, i64::MIN, i64::MAX, 42] {
            let mut ours = Vec::new();
            write_i64(&mut ours, v);
            assert_eq!(ours, serde_json::to_vec(&v).expect("serialise"));
        }
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.1.20.3",
            "::",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            "fe80::1:0:0:1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            let mut ours = Vec::new();
            write_ip(&mut ours, ip);
            assert_eq!(ours, serde_json::to_vec(&ip).expect("serialise"));
        }
        // Every octet value in every place.
        for octet in 0..=u8::MAX {
            for ip in
                [[octet, 0, 9, 10], [99, octet, 100, 199], [200, 255, octet, 1], [1, 2, 3, octet]]
            {
                let ip = IpAddr::from(ip);
                let mut ours = Vec::new();
                write_ip(&mut ours, ip);
                assert_eq!(ours, serde_json::to_vec(&ip).expect("serialise"));
            }
        }
    }
}
