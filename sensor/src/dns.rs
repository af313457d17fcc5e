//! DNS message parsing (RFC 1035 and the record types Zeek's dns.log prints) and query/response
//! pairing per flow, following Zeek's dns.log: one record per query, paired with the first response
//! carrying its id; a response without a query is a record of its own; queries still unanswered when
//! the flow ends are reported without a response. Pure: bytes and timestamps in, values out.

use std::borrow::Cow;
use std::net::Ipv6Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("dns message shorter than its header or a record it announces")]
    Truncated,
    #[error("dns name with a bad label or compression loop")]
    BadName,
    #[error("dns message announcing more than 25 questions")]
    TooManyQuestions,
}

/// Where a name or a record's text lies in its message's [`Message::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Span,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: Span,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// The record's data as Zeek's dns.log shows it; None for types Zeek does not print.
    pub data: Option<Span>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub ad: bool,
    pub cd: bool,
    pub rcode: u8,
    pub questions: Vec<Question>,
    /// The answer section only (as Zeek's `answers`).
    pub answers: Vec<Answer>,
    /// A NetBIOS name service message (port 137).
    pub netbios: bool,
    /// Why reading stopped before the end of the question and answer sections (the records
    /// before it are here).
    pub error: Option<DnsError>,
    /// The questions' and answers' names and record texts, one after another: one allocation
    /// per message instead of one per name and per record.
    text: String,
}

impl Message {
    /// The text of a name or record of this message.
    pub fn text(&self, span: Span) -> &str {
        self.text.get(span.start as usize..span.end as usize).unwrap_or_default()
    }

    /// The name of a question's type: Zeek's `query_types` name, except that type 33 of NetBIOS
    /// is a node status request (`NBSTAT`), not SRV, as Zeek's dns script renames it.
    pub fn question_type_name(&self, qtype: u16) -> Cow<'static, str> {
        if self.netbios && qtype == 33 {
            return Cow::Borrowed("NBSTAT");
        }
        type_name(qtype)
    }

    /// Where the text of the records read so far ends (each record's text follows the one
    /// before it, a name before its answer's data).
    fn records_text_end(&self) -> usize {
        let answer = self.answers.last().map(|a| a.data.map_or(a.name.end, |d| d.end));
        let question = || self.questions.last().map(|q| q.name.end);
        answer.or_else(question).map_or(0, |end| end as usize)
    }

    /// The name Zeek logs as the query of a response without a question (mDNS announcements, a
    /// NetBIOS node status reply): the owner of the first answer it logs, if any.
    pub fn first_logged_answer_name(&self) -> Option<&str> {
        self.answers.iter().find(|a| a.data.is_some()).map(|a| self.text(a.name))
    }
}

/// The text appended to `text` since it was `start` bytes long. A message's text is far below
/// 4 GiB (at most 128 records of at most a few KiB), so the offsets fit `u32`.
fn span_from(text: &str, start: usize) -> Span {
    Span { start: start as u32, end: text.len() as u32 }
}

/// Most questions and answers kept from one message; the rest are skipped.
const MAX_RECORDS: usize = 64;
/// Most compression pointers followed in one name.
const MAX_POINTERS: usize = 16;

fn u16_at(b: &[u8], pos: usize) -> Result<u16, DnsError> {
    let s = b.get(pos..pos + 2).ok_or(DnsError::Truncated)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], pos: usize) -> Result<u32, DnsError> {
    let s = b.get(pos..pos + 4).ok_or(DnsError::Truncated)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Zeek's `dns_max_queries`: a message announcing more questions is not read past its header.
const MAX_QUESTIONS: usize = 25;

/// The ports Zeek's DNS analyser serves: DNS, NetBIOS name service, mDNS, LLMNR.
pub fn is_dns_port(port: u16) -> bool {
    matches!(port, 53 | 137 | 5353 | 5355)
}

/// Parse one DNS message. `netbios` decodes NetBIOS first-level encoded names (port 137).
///
/// Only a message shorter than its 12-byte header is an error. Past the header, the records are
/// read until one is malformed; what was read before it is kept and the reason is in
/// [`Message::error`], as Zeek's analyser logs a message with what it parsed before a bad record.
pub fn parse(msg: &[u8], netbios: bool) -> Result<Message, DnsError> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    let qd = usize::from(u16_at(msg, 4)?);
    let an = usize::from(u16_at(msg, 6)?);
    let mut m = Message {
        id,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        aa: flags & 0x0400 != 0,
        tc: flags & 0x0200 != 0,
        rd: flags & 0x0100 != 0,
        ra: flags & 0x0080 != 0,
        ad: flags & 0x0020 != 0,
        cd: flags & 0x0010 != 0,
        rcode: (flags & 0xf) as u8,
        questions: Vec::new(),
        answers: Vec::new(),
        netbios,
        error: None,
        text: String::with_capacity(256),
    };
    if let Err(e) = read_records(msg, qd, an, &mut m) {
        // The text of the record that failed goes: what is kept ends with the last record read.
        m.text.truncate(m.records_text_end());
        m.error = Some(e);
    }
    Ok(m)
}

/// The question and answer sections of `msg` into `m`, up to the first malformed record.
fn read_records(msg: &[u8], qd: usize, an: usize, m: &mut Message) -> Result<(), DnsError> {
    if qd > MAX_QUESTIONS {
        return Err(DnsError::TooManyQuestions);
    }
    let netbios = m.netbios;
    let text = &mut m.text;
    let mut pos = 12;
    for _ in 0..qd {
        let start = text.len();
        let next = read_name(msg, pos, text)?;
        let qtype = u16_at(msg, next)?;
        let qclass = u16_at(msg, next + 2)?;
        pos = next + 4;
        if netbios {
            let decoded = decode_netbios(&text[start..]);
            text.truncate(start);
            text.push_str(&decoded);
        }
        m.questions.push(Question { name: span_from(text, start), qtype, qclass });
    }
    for _ in 0..an {
        let start = text.len();
        let next = read_name(msg, pos, text)?;
        let rtype = u16_at(msg, next)?;
        let class = u16_at(msg, next + 2)?;
        let ttl = u32_at(msg, next + 4)?;
        let rdlen = usize::from(u16_at(msg, next + 8)?);
        let rdata_at = next + 10;
        if rdlen == 0 && msg.len() > rdata_at {
            // Zeek's analyser stops reading a message at an empty record that more bytes follow
            // ("DNS_zero_rdlength"): the answers before it are kept, it and the rest are not.
            text.truncate(start);
            break;
        }
        let rdata = msg.get(rdata_at..rdata_at + rdlen).ok_or(DnsError::Truncated)?;
        pos = rdata_at + rdlen;
        if m.answers.len() < MAX_RECORDS {
            let name = span_from(text, start);
            let record = Record { msg, start: rdata_at, rdata, rtype, owner: name, netbios };
            let data = rdata_text(&record, text)?;
            m.answers.push(Answer { name, rtype, class, ttl, data });
        } else {
            text.truncate(start);
        }
    }
    Ok(())
}

/// A possibly compressed name at `pos`, appended to `name`; returns the position after it.
fn read_name(msg: &[u8], mut pos: usize, name: &mut String) -> Result<usize, DnsError> {
    let start = name.len();
    let mut end = None;
    let mut pointers = 0;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok(end.unwrap_or(pos + 1));
                }
                let label =
                    msg.get(pos + 1..pos + 1 + usize::from(len)).ok_or(DnsError::Truncated)?;
                if name.len() > start {
                    name.push('.');
                }
                name.reserve(label.len());
                for &c in label {
                    // Zeek escapes bytes outside printable ASCII as \xNN (lower-case hex).
                    // Names compare case-insensitively; Zeek logs them in lower case.
                    if c.is_ascii_graphic() || c == b' ' {
                        name.push(char::from(c.to_ascii_lowercase()));
                    } else {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        name.push_str("\\x");
                        name.push(char::from(HEX[usize::from(c >> 4)]));
                        name.push(char::from(HEX[usize::from(c & 0xf)]));
                    }
                }
                if name.len() - start > 1024 {
                    return Err(DnsError::BadName);
                }
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let target = usize::from(u16_at(msg, pos)? & 0x3fff);
                end.get_or_insert(pos + 2);
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(DnsError::BadName);
                }
                pos = target;
            }
            _ => return Err(DnsError::BadName),
        }
    }
}

/// NetBIOS first-level encoding: 32 letters A-P encode 16 bytes; the last byte is a suffix.
fn decode_netbios(name: &str) -> String {
    let (first, rest) = name.split_once('.').unwrap_or((name, ""));
    let upper = first.to_ascii_uppercase();
    let b = upper.as_bytes();
    if b.len() != 32 || !b.iter().all(|c| (b'A'..=b'P').contains(c)) {
        return name.to_string();
    }
    let bytes: Vec<u8> = b.chunks(2).map(|p| ((p[0] - b'A') << 4) | (p[1] - b'A')).collect();
    let text: String = bytes[..15].iter().map(|&c| char::from(c)).collect();
    let text = text.trim_end_matches([' ', '\0']).to_string();
    if rest.is_empty() {
        text
    } else {
        format!("{text}.{rest}")
    }
}

/// One answer record being read: its message, where its data starts, the data, its type, its
/// owner name (already in the message's text) and whether the message is NetBIOS (port 137).
struct Record<'a> {
    msg: &'a [u8],
    start: usize,
    rdata: &'a [u8],
    rtype: u16,
    owner: Span,
    netbios: bool,
}

/// The record's data as Zeek's dns.log `answers` prints it, appended to `text`; None (nothing
/// appended) for the types Zeek parses without logging (WKS, HINFO, NB, CAA, SVCB, HTTPS, EDNS's
/// OPT, TKEY, TSIG, SRV on NetBIOS, where type 33 is NBSTAT, and LOC not of 16 bytes). Types
/// Zeek's DNS analyser does not know are `<unknown type=N>`, as its `dns_unknown_reply` handler
/// writes them. The formats follow
/// Zeek's `base/protocols/dns/main.zeek` handlers (DNSSEC records as their algorithm numbers, the
/// covered type and signer, or a fixed word).
fn rdata_text(r: &Record<'_>, text: &mut String) -> Result<Option<Span>, DnsError> {
    use std::fmt::Write;
    let (msg, start, rdata) = (r.msg, r.start, r.rdata);
    let byte = |at: usize| rdata.get(at).copied().ok_or(DnsError::Truncated);
    let from = text.len();
    match r.rtype {
        1 => {
            let a: [u8; 4] = rdata.try_into().map_err(|_| DnsError::Truncated)?;
            ipv4_text(a, text);
        }
        // AAAA, and A6 (read by Zeek as a plain 16-byte address).
        28 | 38 => {
            let a: [u8; 16] = rdata.try_into().map_err(|_| DnsError::Truncated)?;
            let _ = write!(text, "{}", Ipv6Addr::from(a));
        }
        2 | 5 | 12 => {
            read_name(msg, start, text)?;
        }
        6 => {
            read_name(msg, start, text)?;
        }
        15 => {
            read_name(msg, start + 2, text)?;
        }
        33 if r.netbios => return Ok(None),
        33 => {
            read_name(msg, start + 6, text)?;
        }
        16 | 99 => {
            let mut i = 0;
            while i < rdata.len() {
                let n = usize::from(rdata[i]);
                let s = rdata.get(i + 1..i + 1 + n).ok_or(DnsError::Truncated)?;
                text.push_str(&String::from_utf8_lossy(s));
                i += 1 + n;
            }
        }
        46 => {
            // RRSIG: Zeek prints the covered type number and the signer's name.
            let covered = u16_at(rdata, 0)?;
            let _ = write!(text, "RRSIG {covered} ");
            let signer_at = text.len();
            read_name(msg, start + 18, text)?;
            if text.len() == signer_at {
                text.push_str("<Root>");
            }
        }
        // DNSKEY: flags (2 bytes), protocol, then the algorithm number.
        48 => {
            let algorithm = byte(3)?;
            let _ = write!(text, "DNSKEY {algorithm}");
        }
        // DS: key tag (2 bytes), algorithm, digest type.
        43 => {
            let (algorithm, digest_type) = (byte(2)?, byte(3)?);
            let _ = write!(text, "DS {algorithm} {digest_type}");
        }
        // NSEC: the record's own name, then the next name.
        47 => {
            text.push_str("NSEC ");
            text.extend_from_within(r.owner.start as usize..r.owner.end as usize);
            text.push(' ');
            read_name(msg, start, text)?;
        }
        // NAPTR: order, preference, then flags, service and regexp as character-strings and the
        // replacement name; Zeek joins regexp and replacement with a space when both are there.
        35 => {
            let (order, preference) = (u16_at(rdata, 0)?, u16_at(rdata, 2)?);
            let mut at = 4;
            let mut strings: [&[u8]; 3] = [&[]; 3];
            for s in &mut strings {
                let n = usize::from(byte(at)?);
                *s = rdata.get(at + 1..at + 1 + n).ok_or(DnsError::Truncated)?;
                at += 1 + n;
            }
            let [flags, service, regexp] = strings.map(String::from_utf8_lossy);
            let _ = write!(text, "NAPTR {order} {preference} {flags} {service} {regexp}");
            let replacement_at = text.len();
            read_name(msg, start + at, text)?;
            if !regexp.is_empty() && text.len() > replacement_at {
                text.insert(replacement_at, ' ');
            }
        }
        50 => text.push_str("NSEC3"),
        51 => text.push_str("NSEC3PARAM"),
        // BIND's private signing-state record.
        65534 => text.push_str("BIND9 signing signal"),
        // SSHFP: algorithm, fingerprint type, then the fingerprint, printed in hex.
        44 => {
            let fingerprint = rdata.get(2..).ok_or(DnsError::Truncated)?;
            text.push_str("SSHFP: ");
            for b in fingerprint {
                let _ = write!(text, "{b:02x}");
            }
        }
        // LOC: version, size, horizontal and vertical precision (two spaces after the colon,
        // as Zeek's format string has them); Zeek takes a record of exactly 16 bytes only
        // ("dns_invalid_loc_length").
        29 if rdata.len() != 16 => return Ok(None),
        29 => {
            let (size, horizontal, vertical) = (byte(1)?, byte(2)?, byte(3)?);
            let _ = write!(text, "LOC:  {size} {horizontal} {vertical}");
        }
        11 | 13 | 32 | 41 | 64 | 65 | 249 | 250 | 257 => return Ok(None),
        other => {
            let _ = write!(text, "<unknown type={other}>");
        }
    }
    Ok(Some(span_from(text, from)))
}

/// An IPv4 address in dotted-quad form (as `Ipv4Addr`'s `Display`, without the formatter),
/// appended to `text`.
fn ipv4_text(octets: [u8; 4], text: &mut String) {
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
}

/// Query type names as Zeek's `DNS::query_types` prints them.
pub fn type_name(t: u16) -> Cow<'static, str> {
    let name = match t {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAP-PTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        30 => "NXT",
        31 => "EID",
        32 => "NIMLOC",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        40 => "SINK",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        56 => "NINFO",
        57 => "RKEY",
        58 => "TALINK",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        100 => "UINFO",
        101 => "UID",
        102 => "GID",
        103 => "UNSPEC",
        104 => "NID",
        105 => "L32",
        106 => "L64",
        107 => "LP",
        108 => "EUI48",
        109 => "EUI64",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "*",
        256 => "URI",
        257 => "CAA",
        32768 => "TA",
        32769 => "DLV",
        65281 => "WINS",
        65282 => "WINS-R",
        65422 => "XPF",
        65521 => "INTEGRITY",
        _ => return Cow::Owned(format!("query-{t}")),
    };
    Cow::Borrowed(name)
}

/// Response code names as Zeek's `DNS::base_errors` prints them.
pub fn rcode_name(code: u8) -> Cow<'static, str> {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        // Zeek's spelling.
        8 => "NXRRSet",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11..=15 => return Cow::Owned(format!("unassigned-{code}")),
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => return Cow::Owned(format!("rcode-{code}")),
    };
    Cow::Borrowed(name)
}

pub fn class_name(c: u16) -> Cow<'static, str> {
    match c {
        1 => Cow::Borrowed("IN"),
        3 => Cow::Borrowed("CH"),
        4 => Cow::Borrowed("HS"),
        255 => Cow::Borrowed("ANY"),
        other => Cow::Owned(other.to_string()),
    }
}

/// One dns.log record: a query with its response, a lone response, or an unanswered query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub ts_ns: i64,
    pub query: Option<Message>,
    pub response: Option<Message>,
    pub rtt_ns: Option<i64>,
}

impl Transaction {
    /// The question that names the transaction, with its message: the query's (or a lone
    /// response's) last question, as Zeek's `dns_request` handler keeps the last it is called
    /// for. Its type and class count only when it is the query's.
    pub fn question(&self) -> Option<(&Message, &Question)> {
        let message = self.query.as_ref().or(self.response.as_ref())?;
        message.questions.last().map(|q| (message, q))
    }
}

/// Per-flow DNS state: queries waiting for their response.
#[derive(Debug, Default)]
pub struct DnsFlow {
    pending: Vec<(i64, Message)>,
    /// Queries dropped because too many were pending (counted by the caller).
    pub dropped: u64,
}

/// Most queries waiting for an answer in one flow.
const MAX_PENDING: usize = 64;

impl DnsFlow {
    /// One parsed message; completed transactions are pushed to `out`.
    pub fn message(&mut self, ts_ns: i64, msg: Message, out: &mut Vec<Transaction>) {
        if !msg.response {
            if self.pending.len() >= MAX_PENDING {
                let (ts, old) = self.pending.remove(0);
                self.dropped += 1;
                out.push(Transaction { ts_ns: ts, query: Some(old), response: None, rtt_ns: None });
            }
            self.pending.push((ts_ns, msg));
            return;
        }
        match self.pending.iter().position(|(_, q)| q.id == msg.id) {
            Some(i) => {
                let (qts, query) = self.pending.remove(i);
                out.push(Transaction {
                    ts_ns: qts,
                    query: Some(query),
                    response: Some(msg),
                    rtt_ns: Some(ts_ns - qts),
                });
            }
            None => out.push(Transaction { ts_ns, query: None, response: Some(msg), rtt_ns: None }),
        }
    }

    /// The flow ended: every query still waiting is reported unanswered.
    pub fn finish(&mut self, out: &mut Vec<Transaction>) {
        for (ts, q) in self.pending.drain(..) {
            out.push(Transaction { ts_ns: ts, query: Some(q), response: None, rtt_ns: None });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_text_is_the_display_form() {
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 42, 250] {
                let octets = [a, b, a ^ b, b.wrapping_add(a)];
                let mut text = String::from("x");
                ipv4_text(octets, &mut text);
                assert_eq!(text[1..], std::net::Ipv4Addr::from(octets).to_string());
            }
        }
    }

    #[test]
    fn name_bytes_outside_printable_ascii_are_escaped_as_zeek_does() {
        // Labels "A\x01b" and "\xab c" (a space stays), then the root.
        let msg = [3, b'A', 1, b'b', 3, 0xab, b' ', b'c', 0];
        let mut name = String::new();
        let end = read_name(&msg, 0, &mut name).expect("name");
        assert_eq!(name, "a\\x01b.\\xab c");
        assert_eq!(end, msg.len());
    }

    // A response for example.com A with one answer, using a compression pointer.
    const RESPONSE: &[u8] = &[
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0, // header: id, QR RD RA, 1 q, 2 an
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0,
        1, // question
        0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 93, 184, 216,
        34, // A 93.184.216.34 ttl 3600
        0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 5, 0, 6, 2, b'h', b'i', 2, b'y',
        b'o', // TXT "hi" "yo"
    ];

    #[test]
    fn parses_a_response() {
        let m = parse(RESPONSE, false).expect("parses");
        assert_eq!(m.id, 0x1234);
        assert!(m.response && m.rd && m.ra && !m.aa);
        let q = &m.questions[0];
        assert_eq!((m.text(q.name), q.qtype, q.qclass), ("example.com", 1, 1));
        assert_eq!(m.answers[0].data.map(|d| m.text(d)), Some("93.184.216.34"));
        assert_eq!(m.text(m.answers[0].name), "example.com");
        assert_eq!(m.answers[0].ttl, 3600);
        assert_eq!(m.answers[1].data.map(|d| m.text(d)), Some("hiyo"));
        assert_eq!(type_name(m.answers[1].rtype), "TXT");
    }

    /// A response to "Ex.org" with one answer per `(type, rdata)`, each owned by the question's
    /// name (a pointer to offset 12).
    fn response_with(records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut msg = vec![0, 9, 0x81, 0x80, 0, 1, 0, records.len() as u8, 0, 0, 0, 0];
        msg.extend_from_slice(&[2, b'E', b'x', 3, b'o', b'r', b'g', 0, 0, 255, 0, 1]);
        for (rtype, rdata) in records {
            msg.extend_from_slice(&[0xc0, 12]);
            msg.extend_from_slice(&rtype.to_be_bytes());
            msg.extend_from_slice(&[0, 1, 0, 0, 1, 0]);
            msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            msg.extend_from_slice(rdata);
        }
        msg
    }

    fn answer_texts(m: &Message) -> Vec<Option<&str>> {
        m.answers.iter().map(|a| a.data.map(|d| m.text(d))).collect()
    }

    #[test]
    fn dnssec_and_other_records_are_written_as_zeek_writes_them() {
        // Expected strings from the format strings of Zeek's base/protocols/dns/main.zeek
        // handlers; the rdata below is hand-built, its fields chosen to be told apart.
        let msg = response_with(&[
            // DNSKEY: flags 257, protocol 3, algorithm 13, key bytes.
            (48, &[1, 1, 3, 13, 0xaa, 0xbb]),
            // DS: key tag 2371, algorithm 8, digest type 2, digest bytes.
            (43, &[0x09, 0x43, 8, 2, 0xde, 0xad]),
            // NSEC: next name "A.Ex.org" (pointer to the question's name), one bitmap window.
            (47, &[1, b'A', 0xc0, 12, 0, 1, 0x40]),
            // NSEC3 and NSEC3PARAM: hash 1, flags 0, 10 iterations, no salt.
            (50, &[1, 0, 0, 10, 0, 1, 0xff]),
            (51, &[1, 0, 0, 10, 0]),
            // SSHFP: algorithm 4, SHA-256 type, fingerprint bytes in hex, lower case.
            (44, &[4, 2, 0x0f, 0xa0, 0x5c]),
            // LOC: version 0, size 0x12, precisions 0x16 and 0x13, then the coordinates.
            (29, &[0, 0x12, 0x16, 0x13, 0x80, 0, 0, 0, 0x80, 0, 0, 0, 0x00, 0x98, 0x96, 0x80]),
            // NAPTR: order 100, preference 10, flags "S", service "SIPS+D2T", no regexp, and
            // the replacement name "_sips._tcp.Ex.org" (its last labels a pointer).
            (35, b"\x00\x64\x00\x0a\x01S\x08SIPS+D2T\x00\x05_sips\x04_tcp\xc0\x0c"),
            // The same with a regexp and the root as replacement.
            (35, b"\x00\x64\x00\x0a\x01U\x07E2U+sip\x06!^.*$!\x00"),
            // BIND's signing record (type 65534).
            (65534, &[8, 0x12, 0x34, 0, 0]),
            // DNAME and TLSA: not in Zeek's analyser, so `dns_unknown_reply`.
            (39, &[3, b'n', b'e', b't', 0]),
            (52, &[3, 1, 1, 0xab]),
            // CAA, HINFO and HTTPS: parsed by Zeek, not logged.
            (257, &[0, 5, b'i', b's', b's', b'u', b'e', b'x']),
            (13, &[1, b'a', 1, b'b']),
            (65, &[0, 1, 0]),
        ]);
        let m = parse(&msg, false).expect("parses");
        assert_eq!(
            answer_texts(&m),
            vec![
                Some("DNSKEY 13"),
                Some("DS 8 2"),
                Some("NSEC ex.org a.ex.org"),
                Some("NSEC3"),
                Some("NSEC3PARAM"),
                Some("SSHFP: 0fa05c"),
                Some("LOC:  18 22 19"),
                Some("NAPTR 100 10 S SIPS+D2T _sips._tcp.ex.org"),
                Some("NAPTR 100 10 U E2U+sip !^.*$!"),
                Some("BIND9 signing signal"),
                Some("<unknown type=39>"),
                Some("<unknown type=52>"),
                None,
                None,
                None,
            ]
        );
        // NBSTAT (type 33 on NetBIOS) is not logged; elsewhere 33 is SRV and logs its target.
        let srv = response_with(&[(33, &[0, 1, 0, 2, 0, 80, 0xc0, 12])]);
        assert_eq!(answer_texts(&parse(&srv, false).expect("parses")), vec![Some("ex.org")]);
        assert_eq!(answer_texts(&parse(&srv, true).expect("parses")), vec![None]);
        // Too short for the fields Zeek reads: reading stops there, as for a short A record;
        // the record before it is kept.
        let a: &[u8] = &[10, 0, 0, 1];
        let m = parse(&response_with(&[(1, a), (48, &[1, 1, 3]), (1, a)]), false).expect("header");
        assert_eq!(
            (answer_texts(&m), m.error),
            (vec![Some("10.0.0.1")], Some(DnsError::Truncated))
        );
        // A LOC record of another length than 16 bytes is not logged, and reading goes on.
        let m = parse(&response_with(&[(29, &[0, 1]), (1, a)]), false).expect("parses");
        assert_eq!((answer_texts(&m), m.error), (vec![None, Some("10.0.0.1")], None));
    }

    #[test]
    fn type_and_rcode_names_are_zeeks() {
        // Values from Zeek's base/protocols/dns/consts.zeek (query_types, base_errors).
        let types =
            [(59, "CDS"), (65422, "XPF"), (32769, "DLV"), (255, "*"), (65534, "query-65534")];
        for (t, name) in types {
            assert_eq!(type_name(t), name);
        }
        let rcodes = [(3, "NXDOMAIN"), (8, "NXRRSet"), (12, "unassigned-12"), (23, "BADCOOKIE")];
        for (code, name) in rcodes {
            assert_eq!(rcode_name(code), name);
        }
        assert_eq!(rcode_name(200), "rcode-200");
    }

    #[test]
    fn an_empty_record_with_more_to_follow_ends_the_message_as_in_zeek() {
        let a: &[u8] = &[10, 0, 0, 1];
        // The empty record is not last: the answers before it are kept, the rest dropped.
        let m = parse(&response_with(&[(1, a), (10, &[]), (1, a)]), false).expect("parses");
        assert_eq!(answer_texts(&m), vec![Some("10.0.0.1")]);
        // Last in the message: read like any other record (type 10, NULL, is unknown to Zeek).
        let m = parse(&response_with(&[(1, a), (10, &[])]), false).expect("parses");
        assert_eq!(answer_texts(&m), vec![Some("10.0.0.1"), Some("<unknown type=10>")]);
    }

    #[test]
    fn records_past_the_cap_are_read_but_not_kept() {
        // 25 questions "qN.example" (Zeek's most), then 70 A answers pointing at the first
        // question's name.
        let (nq, n) = (MAX_QUESTIONS, MAX_RECORDS + 6);
        let mut msg = vec![0, 7, 0x81, 0x80, 0, nq as u8, 0, n as u8, 0, 0, 0, 0];
        for i in 0..nq {
            let label = format!("q{i}");
            msg.push(label.len() as u8);
            msg.extend_from_slice(label.as_bytes());
            msg.extend_from_slice(&[7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1]);
        }
        for i in 0..n {
            msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, i as u8]);
        }
        let m = parse(&msg, false).expect("parses");
        assert_eq!((m.questions.len(), m.answers.len()), (nq, MAX_RECORDS));
        let last_q = &m.questions[nq - 1];
        assert_eq!(m.text(last_q.name), format!("q{}.example", nq - 1));
        let last_a = &m.answers[MAX_RECORDS - 1];
        assert_eq!(m.text(last_a.name), "q0.example");
        assert_eq!(
            last_a.data.map(|d| m.text(d)),
            Some(format!("10.0.0.{}", MAX_RECORDS - 1).as_str())
        );
        // Only what is kept takes room in the text.
        let kept: usize = m.questions.iter().map(|q| m.text(q.name).len()).sum::<usize>()
            + m.answers
                .iter()
                .map(|a| m.text(a.name).len() + a.data.map_or(0, |d| m.text(d).len()))
                .sum::<usize>();
        assert_eq!(m.text.len(), kept);
    }

    #[test]
    fn a_truncated_message_keeps_the_records_before_the_cut() {
        let whole = parse(RESPONSE, false).expect("parses");
        assert_eq!(whole.error, None);
        for len in 0..RESPONSE.len() {
            let Ok(m) = parse(&RESPONSE[..len], false) else {
                assert!(len < 12, "prefix {len}: only a short header is an error");
                continue;
            };
            assert_eq!(m.error, Some(DnsError::Truncated), "prefix {len}");
            assert_eq!(m.id, whole.id);
            // What was kept is what the whole message has, record for record.
            assert!(m.questions.len() <= whole.questions.len() && m.answers.len() < 2, "{len}");
            for (q, w) in m.questions.iter().zip(&whole.questions) {
                assert_eq!((m.text(q.name), q.qtype), (whole.text(w.name), w.qtype));
            }
            for (a, w) in m.answers.iter().zip(&whole.answers) {
                let data = |m: &Message, d: Option<Span>| d.map(|d| m.text(d).to_string());
                assert_eq!(
                    (m.text(a.name), data(&m, a.data)),
                    (whole.text(w.name), data(&whole, w.data))
                );
            }
            // Nothing of a cut record is left in the text.
            let kept: usize = m.questions.iter().map(|q| m.text(q.name).len()).sum::<usize>()
                + m.answers
                    .iter()
                    .map(|a| m.text(a.name).len() + a.data.map_or(0, |d| m.text(d).len()))
                    .sum::<usize>();
            assert_eq!(m.text.len(), kept, "prefix {len}");
        }
        // A question cut short: no questions, the header's fields kept.
        let m = parse(&RESPONSE[..20], false).expect("header");
        assert!(m.questions.is_empty() && m.response && m.rd);
    }

    #[test]
    fn more_than_25_questions_are_not_read() {
        let mut msg = vec![0, 7, 0x01, 0x00, 0, 26, 0, 0, 0, 0, 0, 0];
        for _ in 0..26 {
            msg.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        }
        let m = parse(&msg, false).expect("header");
        assert_eq!((m.questions.len(), m.error), (0, Some(DnsError::TooManyQuestions)));
        msg[5] = 25;
        msg.truncate(12 + 25 * 7);
        let m = parse(&msg, false).expect("parses");
        assert_eq!((m.questions.len(), m.error), (25, None));
    }

    #[test]
    fn compression_loops_are_errors() {
        let msg = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        let m = parse(&msg, false).expect("header");
        assert_eq!((m.questions.len(), m.error), (0, Some(DnsError::BadName)));
    }

    #[test]
    fn netbios_names_are_decoded() {
        // "FRED" padded with spaces, suffix 0x00 (RFC 1001 section 14.1 example style).
        let mut raw = *b"FRED           \0";
        raw[15] = 0;
        let encoded: String = raw
            .iter()
            .flat_map(|b| [char::from(b'A' + (b >> 4)), char::from(b'A' + (b & 15))])
            .collect();
        assert_eq!(encoded.len(), 32);
        assert_eq!(decode_netbios(&encoded), "FRED");
        assert_eq!(decode_netbios("not-netbios"), "not-netbios");
    }

    #[test]
    fn pairs_queries_and_responses() {
        let mut flow = DnsFlow::default();
        let mut out = Vec::new();
        let mut q = parse(RESPONSE, false).expect("parses");
        q.response = false;
        flow.message(10, q.clone(), &mut out);
        flow.message(11, q.clone(), &mut out);
        flow.message(30, parse(RESPONSE, false).expect("parses"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rtt_ns, Some(20));
        flow.message(40, parse(RESPONSE, false).expect("parses"), &mut out);
        flow.message(50, parse(RESPONSE, false).expect("parses"), &mut out);
        assert_eq!(out[2].query, None);
        flow.finish(&mut out);
        assert_eq!(out.len(), 3);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes, false);
            let _ = parse(&bytes, true);
        }
    }
}
