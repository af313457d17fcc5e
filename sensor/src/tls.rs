//! TLS handshake parsing over reassembled TCP streams, and DTLS over UDP datagrams: ClientHello and
//! ServerHello fields as Zeek's ssl.log shows them (version, cipher, SNI, ALPN chosen, established)
//! plus JA3, JA3S and JA4. Pure and bounded: each direction buffers at most one record
//! (`MAX_RECORD` bytes) and one handshake message being assembled (`MAX_HANDSHAKE` bytes).

use md5::{Digest, Md5};
use sha2::Sha256;

/// A TLS record's payload is at most 2^14 bytes plus expansion (RFC 8446 5.2).
const MAX_RECORD: usize = 18 * 1024 + 5;
/// Most handshake bytes assembled per direction before the handshake is abandoned.
const MAX_HANDSHAKE: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub version: u16,
    pub ciphers: Vec<u16>,
    pub extensions: Vec<u16>,
    pub server_name: Option<String>,
    pub alpn: Vec<String>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    pub supported_versions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub version: u16,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    pub selected_version: Option<u16>,
    pub alpn: Option<String>,
}

impl ServerHello {
    /// TLS 1.3 (or a draft of it) chosen: only those ServerHellos carry supported_versions.
    fn is_tls13(&self) -> bool {
        self.selected_version.is_some()
    }
}

/// What carries a TLS handshake: records over a TCP stream, DTLS records in UDP datagrams (DTLS
/// versions, a cookie in the ClientHello), or QUIC's CRYPTO frames (in Initial packets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Carrier {
    #[default]
    Tcp,
    Dtls,
    Quic,
}

impl Carrier {
    /// `network.protocol` of the event.
    pub fn protocol(self) -> &'static str {
        match self {
            Carrier::Tcp => "tls",
            Carrier::Dtls => "dtls",
            Carrier::Quic => "quic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("tls handshake message shorter than its fields")]
    Truncated,
}

/// What one connection's handshake showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub ts_ns: i64,
    pub client_hello: Option<ClientHello>,
    pub server_hello: Option<ServerHello>,
    pub established: bool,
    pub alert: bool,
    /// What carried the handshake.
    pub carrier: Carrier,
    /// The server's (first) certificate, visible in TLS 1.2 and earlier.
    pub server_certificate: Option<crate::x509::Certificate>,
}

#[derive(Debug, Default)]
struct Side {
    buf: Vec<u8>,
    handshake: Vec<u8>,
    /// Sent ChangeCipherSpec or application data: what follows is encrypted.
    encrypted: bool,
    stopped: bool,
    /// DTLS: the message sequence number of the message being assembled from fragments in
    /// `handshake`, if any, and the next one expected (earlier ones are retransmissions).
    dtls_assembling: Option<u16>,
    dtls_next: u16,
    /// DTLS: fragments that arrived before the bytes they follow (at most `MAX_EARLY`).
    dtls_early: Vec<Fragment>,
}

/// A DTLS handshake fragment held until the bytes before it arrive.
#[derive(Debug)]
struct Fragment {
    msg_type: u8,
    len: usize,
    seq: u16,
    offset: usize,
    bytes: Vec<u8>,
}

/// Most DTLS fragments held per direction ahead of the bytes they follow.
const MAX_EARLY: usize = 16;

#[derive(Debug, Default)]
pub struct TlsFlow {
    client: Side,
    server: Side,
    pub summary: Summary,
    /// DTLS: the flow's responder sent the ClientHello (over TCP the client is the originator).
    client_is_responder: bool,
}

fn be16(b: &[u8], pos: usize) -> Result<u16, TlsError> {
    let s = b.get(pos..pos + 2).ok_or(TlsError::Truncated)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

fn slice(b: &[u8], pos: usize, len: usize) -> Result<&[u8], TlsError> {
    b.get(pos..pos + len).ok_or(TlsError::Truncated)
}

/// Does this look like the start of a TLS handshake record?
pub fn looks_like_tls(data: &[u8]) -> bool {
    data.len() >= 6 && data[0] == 0x16 && data[1] == 3 && data[2] <= 4 && matches!(data[5], 1 | 2)
}

/// Length of a DTLS record header (RFC 6347 4.1: type, version, epoch, sequence number, length)
/// and of a DTLS handshake message header (RFC 6347 4.2.2: type, length, message sequence,
/// fragment offset, fragment length).
const DTLS_RECORD_HEADER: usize = 13;
const DTLS_HANDSHAKE_HEADER: usize = 12;

/// Does this UDP payload start with a DTLS ClientHello: a plaintext handshake record (epoch 0, an
/// early record sequence number) of DTLS 1.0 or 1.2 holding a ClientHello of DTLS 1.0 or 1.2 (DTLS
/// 1.3 sends its ClientHello that way too)? The same test as Zeek's DTLS signature.
pub fn looks_like_dtls_client_hello(data: &[u8]) -> bool {
    let dtls_version = |at: usize| data[at] == 0xfe && matches!(data[at + 1], 0xff | 0xfd);
    data.len() > DTLS_RECORD_HEADER + DTLS_HANDSHAKE_HEADER + 2
        && data[0] == 0x16
        && dtls_version(1)
        && data[3..9].iter().all(|&b| b == 0)
        && data[DTLS_RECORD_HEADER] == 1
        && dtls_version(DTLS_RECORD_HEADER + DTLS_HANDSHAKE_HEADER)
}

/// A 24-bit big-endian length (handshake message headers); `b` holds at least 3 bytes.
pub(crate) fn be24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// The `random` of a HelloRetryRequest (RFC 8446, 4.1.3: SHA-256 of "HelloRetryRequest").
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

impl TlsFlow {
    pub fn new(ts_ns: i64) -> TlsFlow {
        TlsFlow { summary: Summary { ts_ns, ..Summary::default() }, ..TlsFlow::default() }
    }

    /// Both sides encrypt now: nothing further is readable.
    pub fn done(&self) -> bool {
        (self.client.encrypted || self.client.stopped)
            && (self.server.encrypted || self.server.stopped)
    }

    /// A hole in either direction: records can no longer be found, and, as Zeek's SSL
    /// analyser does after a content gap, neither side is read further.
    pub fn gap(&mut self) {
        self.client.stopped = true;
        self.server.stopped = true;
    }

    /// In-order bytes from one side.
    pub fn data(&mut self, from_client: bool, data: &[u8]) {
        let side = if from_client { &mut self.client } else { &mut self.server };
        if side.stopped {
            return;
        }
        // Records are read where they lie when nothing is left over from earlier segments (then
        // only an incomplete record's bytes are copied), else after the new bytes are appended.
        let held = !side.buf.is_empty();
        let mut buf = std::mem::take(&mut side.buf);
        if held {
            buf.extend_from_slice(data);
        }
        let input: &[u8] = if held { &buf } else { data };
        // Under TLS 1.3 a ChangeCipherSpec is only for middlebox compatibility: the side is
        // encrypted from its first application-data record (Zeek ignores it too).
        let tls13 = self.summary.server_hello.as_ref().is_some_and(ServerHello::is_tls13);
        let mut pos = 0;
        while let Some(header) = input.get(pos..pos + 5) {
            let (ctype, len) = (header[0], usize::from(u16::from_be_bytes([header[3], header[4]])));
            if header[1] != 3 || len + 5 > MAX_RECORD {
                side.stopped = true;
                break;
            }
            let Some(body) = input.get(pos + 5..pos + 5 + len) else { break };
            match ctype {
                20 if tls13 => {}
                20 | 23 => side.encrypted = true,
                // A fatal alert before the handshake finished (plaintext alert level 2).
                21 if !side.encrypted && body.first() == Some(&2) => self.summary.alert = true,
                22 if !side.encrypted => {
                    if side.handshake.len() + body.len() > MAX_HANDSHAKE {
                        side.stopped = true;
                        break;
                    }
                    side.handshake.extend_from_slice(body);
                }
                _ => {}
            }
            pos += 5 + len;
        }
        let consumed = pos.min(input.len());
        if input.len() - consumed > MAX_RECORD {
            side.stopped = true;
            buf.clear();
        } else if held {
            buf.drain(..consumed);
        } else {
            buf.extend_from_slice(&data[consumed..]);
        }
        side.buf = buf;
        // Complete handshake messages.
        let mut handshake = std::mem::take(&mut self.side(from_client).handshake);
        let mut hpos = 0;
        while let Some(h) = handshake.get(hpos..hpos + 4) {
            let (msg_type, len) = (h[0], be24(&h[1..4]));
            let Some(body) = handshake.get(hpos + 4..hpos + 4 + len) else { break };
            self.message(from_client, msg_type, body);
            hpos += 4 + len;
        }
        handshake.drain(..hpos);
        self.side(from_client).handshake = handshake;
        self.update_established();
    }

    fn update_established(&mut self) {
        self.summary.established = self.summary.server_hello.is_some()
            && self.client.encrypted
            && self.server.encrypted
            && !self.summary.alert;
    }

    /// One complete handshake message of type `msg_type` from one side.
    fn message(&mut self, from_client: bool, msg_type: u8, body: &[u8]) {
        match (msg_type, from_client) {
            (1, true) if self.summary.client_hello.is_none() => {
                self.summary.client_hello =
                    parse_hello_from_client(body, self.summary.carrier == Carrier::Dtls).ok();
            }
            (11, false) if self.summary.server_certificate.is_none() => {
                // certificate_list length (3 bytes), then the first entry's length and DER.
                let first = body.get(3..6).and_then(|l| body.get(6..6 + be24(l)));
                self.summary.server_certificate =
                    first.and_then(|der| crate::x509::parse(der).ok());
            }
            // A HelloRetryRequest (a ServerHello with that fixed random): the client
            // tries again, and the ServerHello that follows in plaintext is the one kept.
            (2, false) if body.get(2..34) == Some(&HELLO_RETRY_RANDOM[..]) => {}
            (2, false) if self.summary.server_hello.is_none() => {
                let hello = parse_server_hello(body).ok();
                // TLS 1.3: everything after the ServerHello is encrypted.
                if hello.as_ref().is_some_and(ServerHello::is_tls13) {
                    self.server.encrypted = true;
                }
                self.summary.server_hello = hello;
            }
            _ => {}
        }
    }

    /// A DTLS flow (see [`looks_like_dtls_client_hello`]) whose ClientHello came from the
    /// originator or, in a flow another protocol started (WebRTC's STUN), from the responder.
    pub fn new_dtls(ts_ns: i64, client_is_orig: bool) -> TlsFlow {
        let mut flow = TlsFlow::new(ts_ns);
        flow.summary.carrier = Carrier::Dtls;
        flow.client_is_responder = !client_is_orig;
        flow
    }

    /// One UDP datagram of a DTLS flow: whole records, each handshake record holding fragments of
    /// handshake messages, which are put together in order of their message sequence numbers.
    /// Retransmitted messages (a sequence number already seen) are skipped.
    pub fn datagram(&mut self, from_orig: bool, data: &[u8]) {
        let from_client = from_orig != self.client_is_responder;
        let side = if from_client { &self.client } else { &self.server };
        // DTLS shares its flow with STUN, TURN channels, ZRTP and RTP in WebRTC; their datagrams
        // are told apart by the first byte, DTLS's being 20 to 63 (RFC 7983 7), and are skipped.
        if side.stopped || !matches!(data.first(), Some(20..=63)) {
            return;
        }
        let tls13 = self.summary.server_hello.as_ref().is_some_and(ServerHello::is_tls13);
        let mut pos = 0;
        while pos < data.len() {
            // DTLS 1.3's encrypted records have a short header whose first bits are 001
            // (RFC 9147 4): this side encrypts from here on.
            if data[pos] & 0xe0 == 0x20 {
                self.side(from_client).encrypted = true;
                break;
            }
            let Some(header) = data.get(pos..pos + DTLS_RECORD_HEADER) else { break };
            let ctype = header[0];
            let epoch = u16::from_be_bytes([header[3], header[4]]);
            let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
            // Not a DTLS record after all: the rest of this datagram is not read.
            if header[1] != 0xfe {
                break;
            }
            let Some(body) = data.get(pos + DTLS_RECORD_HEADER..pos + DTLS_RECORD_HEADER + len)
            else {
                break;
            };
            let side = self.side(from_client);
            match ctype {
                20 if tls13 => {}
                20 | 23 => side.encrypted = true,
                21 if epoch == 0 && body.first() == Some(&2) => self.summary.alert = true,
                // Epoch 0 is plaintext; a later epoch's handshake record is an encrypted Finished.
                22 if epoch == 0 && !side.encrypted => self.handshake_fragments(from_client, body),
                _ => {}
            }
            pos += DTLS_RECORD_HEADER + len;
        }
        self.update_established();
    }

    fn side(&mut self, from_client: bool) -> &mut Side {
        if from_client {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    /// The handshake message fragments of one DTLS record from one side.
    fn handshake_fragments(&mut self, from_client: bool, mut record: &[u8]) {
        while let Some(h) = record.get(..DTLS_HANDSHAKE_HEADER) {
            let (msg_type, len, seq) = (h[0], be24(&h[1..4]), u16::from_be_bytes([h[4], h[5]]));
            let (offset, frag_len) = (be24(&h[6..9]), be24(&h[9..12]));
            let Some(bytes) = record.get(DTLS_HANDSHAKE_HEADER..DTLS_HANDSHAKE_HEADER + frag_len)
            else {
                break;
            };
            record = &record[DTLS_HANDSHAKE_HEADER + frag_len..];
            if len <= MAX_HANDSHAKE && offset + frag_len <= len {
                let fragment = Fragment { msg_type, len, seq, offset, bytes: bytes.to_vec() };
                self.fragment(from_client, fragment);
            }
        }
    }

    /// One DTLS handshake fragment: messages are put together in message-sequence order, each
    /// from its fragments in offset order. Earlier sequence numbers are retransmissions; a
    /// fragment that comes before the bytes it follows waits (up to `MAX_EARLY` of them).
    fn fragment(&mut self, from_client: bool, fragment: Fragment) {
        let side = self.side(from_client);
        if fragment.seq < side.dtls_next {
            return;
        }
        let joins = match side.dtls_assembling {
            Some(seq) => seq == fragment.seq && fragment.offset <= side.handshake.len(),
            // A message's first fragment starts it, unless a fragment of an earlier message is
            // waiting (then that message comes first).
            None => {
                fragment.offset == 0
                    && !side
                        .dtls_early
                        .iter()
                        .any(|e| e.seq >= side.dtls_next && e.seq < fragment.seq)
            }
        };
        if !joins {
            let held: usize = side.dtls_early.iter().map(|f| f.bytes.len()).sum();
            if side.dtls_early.len() < MAX_EARLY && held + fragment.bytes.len() <= MAX_HANDSHAKE {
                side.dtls_early.push(fragment);
                return;
            }
        }
        // With no room to wait, the first fragment of a later message starts it: the one being
        // assembled is given up.
        let restarts = !joins
            && fragment.offset == 0
            && side.dtls_assembling.is_some_and(|seq| fragment.seq > seq);
        if !joins && !restarts {
            return;
        }
        if restarts || side.dtls_assembling.is_none() {
            side.dtls_assembling = Some(fragment.seq);
            side.handshake.clear();
        }
        let mut next = Some(fragment);
        while let Some(f) = next.take() {
            let side = self.side(from_client);
            let held = side.handshake.len();
            if f.offset + f.bytes.len() > held {
                side.handshake.extend_from_slice(&f.bytes[held - f.offset..]);
            }
            if side.handshake.len() == f.len {
                side.dtls_assembling = None;
                side.dtls_next = f.seq.wrapping_add(1);
                let message = std::mem::take(&mut side.handshake);
                self.message(from_client, f.msg_type, &message);
                let side = self.side(from_client);
                side.handshake = message;
                side.handshake.clear();
                side.dtls_early.retain(|e| e.seq >= side.dtls_next);
            }
            // A held fragment that now joins: of the message being assembled, or the first of
            // the next one.
            let side = self.side(from_client);
            let (assembling, held) = (side.dtls_assembling, side.handshake.len());
            let i = side.dtls_early.iter().position(|e| match assembling {
                Some(seq) => e.seq == seq && e.offset <= held,
                None => e.seq == side.dtls_next && e.offset == 0,
            });
            if let Some(i) = i {
                let f = side.dtls_early.swap_remove(i);
                if assembling.is_none() {
                    side.dtls_assembling = Some(f.seq);
                }
                next = Some(f);
            }
        }
    }
}

fn parse_extensions(
    b: &[u8],
    mut pos: usize,
    mut each: impl FnMut(u16, &[u8]) -> Result<(), TlsError>,
) -> Result<Vec<u16>, TlsError> {
    let mut types = Vec::new();
    if pos >= b.len() {
        return Ok(types);
    }
    let total = usize::from(be16(b, pos)?);
    pos += 2;
    let end = pos + total;
    slice(b, pos, total)?;
    while pos + 4 <= end {
        let t = be16(b, pos)?;
        let len = usize::from(be16(b, pos + 2)?);
        let data = slice(b, pos + 4, len)?;
        types.push(t);
        each(t, data)?;
        pos += 4 + len;
    }
    Ok(types)
}

fn u16_list(data: &[u8], len_bytes: usize) -> Result<Vec<u16>, TlsError> {
    let len = if len_bytes == 1 {
        usize::from(*data.first().ok_or(TlsError::Truncated)?)
    } else {
        usize::from(be16(data, 0)?)
    };
    let list = slice(data, len_bytes, len)?;
    Ok(list.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
}

fn alpn_list(data: &[u8]) -> Result<Vec<String>, TlsError> {
    let len = usize::from(be16(data, 0)?);
    let list = slice(data, 2, len)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < list.len() {
        let n = usize::from(list[i]);
        out.push(String::from_utf8_lossy(slice(list, i + 1, n)?).into_owned());
        i += 1 + n;
    }
    Ok(out)
}

pub fn parse_client_hello(b: &[u8]) -> Result<ClientHello, TlsError> {
    parse_hello_from_client(b, false)
}

/// A ClientHello's body; DTLS's has a cookie after the session id (RFC 6347 4.2.1).
fn parse_hello_from_client(b: &[u8], dtls: bool) -> Result<ClientHello, TlsError> {
    let mut hello = ClientHello { version: be16(b, 0)?, ..ClientHello::default() };
    let mut pos = 2 + 32;
    let sid = usize::from(*b.get(pos).ok_or(TlsError::Truncated)?);
    pos += 1 + sid;
    if dtls {
        let cookie = usize::from(*b.get(pos).ok_or(TlsError::Truncated)?);
        pos += 1 + cookie;
    }
    let clen = usize::from(be16(b, pos)?);
    hello.ciphers = slice(b, pos + 2, clen)?
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    pos += 2 + clen;
    let comp = usize::from(*b.get(pos).ok_or(TlsError::Truncated)?);
    pos += 1 + comp;
    slice(b, 0, pos)?;
    let mut sni = None;
    let mut alpn = Vec::new();
    let mut groups = Vec::new();
    let mut points = Vec::new();
    let mut versions = Vec::new();
    let mut sigs = Vec::new();
    hello.extensions = parse_extensions(b, pos, |t, data| {
        match t {
            0 => {
                // server_name list: the first host_name entry.
                let name_len = usize::from(be16(data, 3)?);
                if data.get(2) == Some(&0) {
                    sni = Some(String::from_utf8_lossy(slice(data, 5, name_len)?).into_owned());
                }
            }
            10 => groups = u16_list(data, 2)?,
            11 => {
                let n = usize::from(*data.first().ok_or(TlsError::Truncated)?);
                points = slice(data, 1, n)?.to_vec();
            }
            13 => sigs = u16_list(data, 2)?,
            16 => alpn = alpn_list(data)?,
            43 => versions = u16_list(data, 1)?,
            _ => {}
        }
        Ok(())
    })?;
    hello.server_name = sni;
    hello.alpn = alpn;
    hello.groups = groups;
    hello.point_formats = points;
    hello.supported_versions = versions;
    hello.signature_algorithms = sigs;
    Ok(hello)
}

pub fn parse_server_hello(b: &[u8]) -> Result<ServerHello, TlsError> {
    let mut hello = ServerHello { version: be16(b, 0)?, ..ServerHello::default() };
    let mut pos = 2 + 32;
    let sid = usize::from(*b.get(pos).ok_or(TlsError::Truncated)?);
    pos += 1 + sid;
    hello.cipher = be16(b, pos)?;
    pos += 3;
    slice(b, 0, pos)?;
    let mut selected = None;
    let mut alpn = None;
    hello.extensions = parse_extensions(b, pos, |t, data| {
        match t {
            43 => selected = Some(be16(data, 0)?),
            16 => alpn = alpn_list(data)?.into_iter().next(),
            _ => {}
        }
        Ok(())
    })?;
    hello.selected_version = selected;
    hello.alpn = alpn;
    Ok(hello)
}

fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// "1.2", "1.3", ... for a protocol version number (TLS's or DTLS's); drafts of 1.3 count as 1.3.
pub fn version_text(v: u16) -> Option<&'static str> {
    let text = match v {
        0x0300 => "3.0",
        0x0301 | 0xfeff => "1.0",
        0x0302 => "1.1",
        0x0303 | 0xfefd => "1.2",
        0x0304 | 0xfefc => "1.3",
        0x7f00..=0x7fff => "1.3",
        _ => return None,
    };
    Some(text)
}

/// ECS `tls.version_protocol` and `tls.version` of the version a ServerHello chose: `ssl` for
/// SSL 3.0, `dtls` for DTLS's versions (RFC 6347's one's-complement numbers), `tls` for the rest.
pub fn negotiated_version(s: &ServerHello) -> Option<(&'static str, &'static str)> {
    let v = s.selected_version.unwrap_or(s.version);
    let protocol = match v {
        0x0300 => "ssl",
        0xfe00.. => "dtls",
        _ => "tls",
    };
    Some((protocol, version_text(v)?))
}

/// A fingerprint's text (ASCII: hex digits, `_` and JA4's prefix), held without an allocation:
/// a TLS event's three fingerprints were ~60 small `String`s (one per list item) before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint<const N: usize>([u8; N]);

impl<const N: usize> Fingerprint<N> {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The lower-case hex digits of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// Text hashed as it is written, through a small buffer: a fingerprint's lists are fed item by
/// item without building the text.
struct HashedText<D: Digest> {
    digest: D,
    buf: [u8; 256],
    len: usize,
}

impl<D: Digest> HashedText<D> {
    fn new() -> Self {
        HashedText { digest: D::new(), buf: [0; 256], len: 0 }
    }

    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() > self.buf.len() {
            // Larger than the buffer: hashed after what it holds, without passing through it.
            self.digest.update(&self.buf[..self.len]);
            self.len = 0;
            self.digest.update(bytes);
            return;
        }
        self.room(bytes.len());
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Room for `n` more bytes in the buffer (`n` at most its size).
    fn room(&mut self, n: usize) {
        if self.len + n > self.buf.len() {
            self.digest.update(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// `items` in decimal, `sep` between them. Each item's bytes are written in place: a
    /// `copy_from_slice` of a few bytes is a `memcpy` call.
    fn decimals(&mut self, items: impl Iterator<Item = u16>, sep: u8) {
        for (n, item) in items.enumerate() {
            // A separator and at most 5 digits.
            self.room(6);
            if n > 0 {
                self.buf[self.len] = sep;
                self.len += 1;
            }
            let digits = if item >= 10_000 {
                5
            } else if item >= 1_000 {
                4
            } else if item >= 100 {
                3
            } else if item >= 10 {
                2
            } else {
                1
            };
            let mut v = item;
            for at in (self.len..self.len + digits).rev() {
                self.buf[at] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            self.len += digits;
        }
    }

    /// `items` as four hex digits each (`{:04x}`), `,` between them.
    fn hex_list(&mut self, items: &[u16]) {
        for (n, item) in items.iter().enumerate() {
            self.room(5);
            if n > 0 {
                self.buf[self.len] = b',';
                self.len += 1;
            }
            let at = self.len;
            hex_into(&item.to_be_bytes(), &mut self.buf[at..at + 4]);
            self.len += 4;
        }
    }

    fn finish(self) -> md5::digest::Output<D> {
        let HashedText { mut digest, buf, len } = self;
        digest.update(&buf[..len]);
        digest.finalize()
    }
}

/// The MD5 of `text` in hex.
fn md5_fingerprint(text: HashedText<Md5>) -> Fingerprint<32> {
    let mut out = [0u8; 32];
    hex_into(&text.finish(), &mut out);
    Fingerprint(out)
}

/// JA3: MD5 of version, ciphers, extensions, groups and point formats, GREASE removed.
pub fn ja3(h: &ClientHello) -> Fingerprint<32> {
    let mut text = HashedText::<Md5>::new();
    text.decimals(std::iter::once(h.version), b',');
    text.put(b",");
    text.decimals(h.ciphers.iter().copied().filter(|c| !is_grease(*c)), b'-');
    text.put(b",");
    text.decimals(h.extensions.iter().copied().filter(|c| !is_grease(*c)), b'-');
    text.put(b",");
    text.decimals(h.groups.iter().copied().filter(|c| !is_grease(*c)), b'-');
    text.put(b",");
    text.decimals(h.point_formats.iter().map(|p| u16::from(*p)), b'-');
    md5_fingerprint(text)
}

/// JA3S: MD5 of the server's version, chosen cipher and extensions.
pub fn ja3s(h: &ServerHello) -> Fingerprint<32> {
    let mut text = HashedText::<Md5>::new();
    text.decimals([h.version, h.cipher].into_iter(), b',');
    text.put(b",");
    text.decimals(h.extensions.iter().copied(), b'-');
    md5_fingerprint(text)
}

/// JA4 of a ClientHello (over TCP, or DTLS), per the FoxIO JA4 specification: `a_b_c`,
/// 10 + 1 + 12 + 1 + 12 bytes.
pub fn ja4(h: &ClientHello, carrier: Carrier) -> Fingerprint<36> {
    let mut out = [0u8; 36];
    let version =
        h.supported_versions.iter().copied().filter(|v| !is_grease(*v)).max().unwrap_or(h.version);
    let v = match version {
        0x0304 => b"13",
        0x0303 => b"12",
        0x0302 => b"11",
        0x0301 => b"10",
        0x0300 => b"s3",
        0x0002 => b"s2",
        0xfeff => b"d1",
        0xfefd => b"d2",
        0xfefc => b"d3",
        _ => b"00",
    };
    let sni = if h.server_name.is_some() { b'd' } else { b'i' };
    let ciphers = h.ciphers.iter().filter(|c| !is_grease(**c)).count().min(99) as u8;
    let exts = h.extensions.iter().filter(|c| !is_grease(**c)).count().min(99) as u8;
    let alpn = match h.alpn.first().map(|a| a.as_bytes()) {
        Some([first, .., last])
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() =>
        {
            [*first, *last]
        }
        Some([only]) if only.is_ascii_alphanumeric() => [*only, *only],
        Some([first, .., last]) => [HEX[usize::from(first >> 4)], HEX[usize::from(last & 0xf)]],
        _ => *b"00",
    };
    out[0] = match carrier {
        Carrier::Tcp => b't',
        Carrier::Dtls => b'd',
        Carrier::Quic => b'q',
    };
    out[1..3].copy_from_slice(v);
    out[3] = sni;
    out[4..6].copy_from_slice(&[b'0' + ciphers / 10, b'0' + ciphers % 10]);
    out[6..8].copy_from_slice(&[b'0' + exts / 10, b'0' + exts % 10]);
    out[8..10].copy_from_slice(&alpn);
    out[10] = b'_';
    out[23] = b'_';
    // One list reused for the sorted ciphers, then the sorted extensions.
    let mut sorted: Vec<u16> = h.ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
    sorted.sort_unstable();
    ja4_hash(&sorted, &[], &mut out[11..23]);
    sorted.clear();
    sorted.extend(h.extensions.iter().copied().filter(|e| !is_grease(*e) && *e != 0 && *e != 16));
    sorted.sort_unstable();
    ja4_hash(&sorted, &h.signature_algorithms, &mut out[24..36]);
    Fingerprint(out)
}

/// A JA4 hash part into `out` (12 hex digits): the first 6 bytes of the SHA-256 of `list` as
/// comma-separated 4-digit hex, then `_` and `after` the same way when `after` is not empty;
/// twelve zeros for an empty `list`.
fn ja4_hash(list: &[u16], after: &[u16], out: &mut [u8]) {
    if list.is_empty() {
        out.fill(b'0');
        return;
    }
    let mut text = HashedText::<Sha256>::new();
    text.hex_list(list);
    if !after.is_empty() {
        text.put(b"_");
        text.hex_list(after);
    }
    hex_into(&text.finish()[..6], out);
}

/// The name Zeek's ssl.log gives a cipher suite: [`CIPHER_NAMES`], `unknown-N` for the rest.
pub fn cipher_name(id: u16) -> std::borrow::Cow<'static, str> {
    match CIPHER_NAMES.binary_search_by_key(&id, |&(number, _)| number) {
        Ok(i) => CIPHER_NAMES[i].1.into(),
        Err(_) => format!("unknown-{id}").into(),
    }
}

/// TLS cipher suites by number, with the names Zeek's `SSL::cipher_desc` gives them (the IANA
/// registry's names as Wireshark lists them, `anon` upper-cased and the pre-RFC ChaCha20 suites
/// marked `_OLD`, as Zeek writes them). Sorted by number for a binary search.
const CIPHER_NAMES: &[(u16, &str)] = &[
    (0x0000, "TLS_NULL_WITH_NULL_NULL"),
    (0x0001, "TLS_RSA_WITH_NULL_MD5"),
    (0x0002, "TLS_RSA_WITH_NULL_SHA"),
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"),
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5"),
    (0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA"),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0009, "TLS_RSA_WITH_DES_CBC_SHA"),
    (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x000b, "TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA"),
    (0x000c, "TLS_DH_DSS_WITH_DES_CBC_SHA"),
    (0x000d, "TLS_DH_DSS_WITH_3DES_EDE_CBC_SHA"),
    (0x000e, "TLS_DH_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x000f, "TLS_DH_RSA_WITH_DES_CBC_SHA"),
    (0x0010, "TLS_DH_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0011, "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0012, "TLS_DHE_DSS_WITH_DES_CBC_SHA"),
    (0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA"),
    (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA"),
    (0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0017, "TLS_DH_ANON_EXPORT_WITH_RC4_40_MD5"),
    (0x0018, "TLS_DH_ANON_WITH_RC4_128_MD5"),
    (0x0019, "TLS_DH_ANON_EXPORT_WITH_DES40_CBC_SHA"),
    (0x001a, "TLS_DH_ANON_WITH_DES_CBC_SHA"),
    (0x001b, "TLS_DH_ANON_WITH_3DES_EDE_CBC_SHA"),
    (0x001c, "SSL_FORTEZZA_KEA_WITH_NULL_SHA"),
    (0x001d, "SSL_FORTEZZA_KEA_WITH_FORTEZZA_CBC_SHA"),
    (0x001e, "TLS_KRB5_WITH_DES_CBC_SHA"),
    (0x001f, "TLS_KRB5_WITH_3DES_EDE_CBC_SHA"),
    (0x0020, "TLS_KRB5_WITH_RC4_128_SHA"),
    (0x0021, "TLS_KRB5_WITH_IDEA_CBC_SHA"),
    (0x0022, "TLS_KRB5_WITH_DES_CBC_MD5"),
    (0x0023, "TLS_KRB5_WITH_3DES_EDE_CBC_MD5"),
    (0x0024, "TLS_KRB5_WITH_RC4_128_MD5"),
    (0x0025, "TLS_KRB5_WITH_IDEA_CBC_MD5"),
    (0x0026, "TLS_KRB5_EXPORT_WITH_DES_CBC_40_SHA"),
    (0x0027, "TLS_KRB5_EXPORT_WITH_RC2_CBC_40_SHA"),
    (0x0028, "TLS_KRB5_EXPORT_WITH_RC4_40_SHA"),
    (0x0029, "TLS_KRB5_EXPORT_WITH_DES_CBC_40_MD5"),
    (0x002a, "TLS_KRB5_EXPORT_WITH_RC2_CBC_40_MD5"),
    (0x002b, "TLS_KRB5_EXPORT_WITH_RC4_40_MD5"),
    (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    (0x0030, "TLS_DH_DSS_WITH_AES_128_CBC_SHA"),
    (0x0031, "TLS_DH_RSA_WITH_AES_128_CBC_SHA"),
    (0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA"),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
    (0x0034, "TLS_DH_ANON_WITH_AES_128_CBC_SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x0036, "TLS_DH_DSS_WITH_AES_256_CBC_SHA"),
    (0x0037, "TLS_DH_RSA_WITH_AES_256_CBC_SHA"),
    (0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA"),
    (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
    (0x003a, "TLS_DH_ANON_WITH_AES_256_CBC_SHA"),
    (0x003b, "TLS_RSA_WITH_NULL_SHA256"),
    (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    (0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    (0x003e, "TLS_DH_DSS_WITH_AES_128_CBC_SHA256"),
    (0x003f, "TLS_DH_RSA_WITH_AES_128_CBC_SHA256"),
    (0x0040, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256"),
    (0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0042, "TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0043, "TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0044, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0046, "TLS_DH_ANON_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0060, "TLS_RSA_EXPORT1024_WITH_RC4_56_MD5"),
    (0x0061, "TLS_RSA_EXPORT1024_WITH_RC2_CBC_56_MD5"),
    (0x0062, "TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA"),
    (0x0063, "TLS_DHE_DSS_EXPORT1024_WITH_DES_CBC_SHA"),
    (0x0064, "TLS_RSA_EXPORT1024_WITH_RC4_56_SHA"),
    (0x0065, "TLS_DHE_DSS_EXPORT1024_WITH_RC4_56_SHA"),
    (0x0066, "TLS_DHE_DSS_WITH_RC4_128_SHA"),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0x0068, "TLS_DH_DSS_WITH_AES_256_CBC_SHA256"),
    (0x0069, "TLS_DH_RSA_WITH_AES_256_CBC_SHA256"),
    (0x006a, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256"),
    (0x006b, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    (0x006c, "TLS_DH_ANON_WITH_AES_128_CBC_SHA256"),
    (0x006d, "TLS_DH_ANON_WITH_AES_256_CBC_SHA256"),
    (0x0072, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_RMD"),
    (0x0073, "TLS_DHE_DSS_WITH_AES_128_CBC_RMD"),
    (0x0074, "TLS_DHE_DSS_WITH_AES_256_CBC_RMD"),
    (0x0077, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_RMD"),
    (0x0078, "TLS_DHE_RSA_WITH_AES_128_CBC_RMD"),
    (0x0079, "TLS_DHE_RSA_WITH_AES_256_CBC_RMD"),
    (0x007c, "TLS_RSA_WITH_3DES_EDE_CBC_RMD"),
    (0x007d, "TLS_RSA_WITH_AES_128_CBC_RMD"),
    (0x007e, "TLS_RSA_WITH_AES_256_CBC_RMD"),
    (0x0080, "TLS_GOSTR341094_WITH_28147_CNT_IMIT"),
    (0x0081, "TLS_GOSTR341001_WITH_28147_CNT_IMIT"),
    (0x0082, "TLS_GOSTR341094_WITH_NULL_GOSTR3411"),
    (0x0083, "TLS_GOSTR341001_WITH_NULL_GOSTR3411"),
    (0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0085, "TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0086, "TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0087, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0089, "TLS_DH_ANON_WITH_CAMELLIA_256_CBC_SHA"),
    (0x008a, "TLS_PSK_WITH_RC4_128_SHA"),
    (0x008b, "TLS_PSK_WITH_3DES_EDE_CBC_SHA"),
    (0x008c, "TLS_PSK_WITH_AES_128_CBC_SHA"),
    (0x008d, "TLS_PSK_WITH_AES_256_CBC_SHA"),
    (0x008e, "TLS_DHE_PSK_WITH_RC4_128_SHA"),
    (0x008f, "TLS_DHE_PSK_WITH_3DES_EDE_CBC_SHA"),
    (0x0090, "TLS_DHE_PSK_WITH_AES_128_CBC_SHA"),
    (0x0091, "TLS_DHE_PSK_WITH_AES_256_CBC_SHA"),
    (0x0092, "TLS_RSA_PSK_WITH_RC4_128_SHA"),
    (0x0093, "TLS_RSA_PSK_WITH_3DES_EDE_CBC_SHA"),
    (0x0094, "TLS_RSA_PSK_WITH_AES_128_CBC_SHA"),
    (0x0095, "TLS_RSA_PSK_WITH_AES_256_CBC_SHA"),
    (0x0096, "TLS_RSA_WITH_SEED_CBC_SHA"),
    (0x0097, "TLS_DH_DSS_WITH_SEED_CBC_SHA"),
    (0x0098, "TLS_DH_RSA_WITH_SEED_CBC_SHA"),
    (0x0099, "TLS_DHE_DSS_WITH_SEED_CBC_SHA"),
    (0x009a, "TLS_DHE_RSA_WITH_SEED_CBC_SHA"),
    (0x009b, "TLS_DH_ANON_WITH_SEED_CBC_SHA"),
    (0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    (0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    (0x009e, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0x009f, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0x00a0, "TLS_DH_RSA_WITH_AES_128_GCM_SHA256"),
    (0x00a1, "TLS_DH_RSA_WITH_AES_256_GCM_SHA384"),
    (0x00a2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256"),
    (0x00a3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384"),
    (0x00a4, "TLS_DH_DSS_WITH_AES_128_GCM_SHA256"),
    (0x00a5, "TLS_DH_DSS_WITH_AES_256_GCM_SHA384"),
    (0x00a6, "TLS_DH_ANON_WITH_AES_128_GCM_SHA256"),
    (0x00a7, "TLS_DH_ANON_WITH_AES_256_GCM_SHA384"),
    (0x00a8, "TLS_PSK_WITH_AES_128_GCM_SHA256"),
    (0x00a9, "TLS_PSK_WITH_AES_256_GCM_SHA384"),
    (0x00aa, "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256"),
    (0x00ab, "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384"),
    (0x00ac, "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256"),
    (0x00ad, "TLS_RSA_PSK_WITH_AES_256_GCM_SHA384"),
    (0x00ae, "TLS_PSK_WITH_AES_128_CBC_SHA256"),
    (0x00af, "TLS_PSK_WITH_AES_256_CBC_SHA384"),
    (0x00b0, "TLS_PSK_WITH_NULL_SHA256"),
    (0x00b1, "TLS_PSK_WITH_NULL_SHA384"),
    (0x00b2, "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256"),
    (0x00b3, "TLS_DHE_PSK_WITH_AES_256_CBC_SHA384"),
    (0x00b4, "TLS_DHE_PSK_WITH_NULL_SHA256"),
    (0x00b5, "TLS_DHE_PSK_WITH_NULL_SHA384"),
    (0x00b6, "TLS_RSA_PSK_WITH_AES_128_CBC_SHA256"),
    (0x00b7, "TLS_RSA_PSK_WITH_AES_256_CBC_SHA384"),
    (0x00b8, "TLS_RSA_PSK_WITH_NULL_SHA256"),
    (0x00b9, "TLS_RSA_PSK_WITH_NULL_SHA384"),
    (0x00ba, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00bb, "TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00bc, "TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00bd, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00be, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00bf, "TLS_DH_ANON_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00c0, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00c1, "TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00c2, "TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00c3, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00c4, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00c5, "TLS_DH_ANON_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00c6, "TLS_SM4_GCM_SM3"),
    (0x00c7, "TLS_SM4_CCM_SM3"),
    (0x00ff, "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"),
    (0x1301, "TLS_AES_128_GCM_SHA256"),
    (0x1302, "TLS_AES_256_GCM_SHA384"),
    (0x1303, "TLS_CHACHA20_POLY1305_SHA256"),
    (0x1304, "TLS_AES_128_CCM_SHA256"),
    (0x1305, "TLS_AES_128_CCM_8_SHA256"),
    (0x1306, "TLS_AEGIS_256_SHA384"),
    (0x1307, "TLS_AEGIS_128L_SHA256"),
    (0x16b7, "TLS_CECPQ1_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0x16b8, "TLS_CECPQ1_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0x16b9, "TLS_CECPQ1_RSA_WITH_AES_256_GCM_SHA384"),
    (0x16ba, "TLS_CECPQ1_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0x5600, "TLS_FALLBACK_SCSV"),
    (0xc001, "TLS_ECDH_ECDSA_WITH_NULL_SHA"),
    (0xc002, "TLS_ECDH_ECDSA_WITH_RC4_128_SHA"),
    (0xc003, "TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0xc004, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA"),
    (0xc005, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xc006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"),
    (0xc007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"),
    (0xc008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xc00b, "TLS_ECDH_RSA_WITH_NULL_SHA"),
    (0xc00c, "TLS_ECDH_RSA_WITH_RC4_128_SHA"),
    (0xc00d, "TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xc00e, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA"),
    (0xc00f, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA"),
    (0xc010, "TLS_ECDHE_RSA_WITH_NULL_SHA"),
    (0xc011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
    (0xc012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    (0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    (0xc015, "TLS_ECDH_ANON_WITH_NULL_SHA"),
    (0xc016, "TLS_ECDH_ANON_WITH_RC4_128_SHA"),
    (0xc017, "TLS_ECDH_ANON_WITH_3DES_EDE_CBC_SHA"),
    (0xc018, "TLS_ECDH_ANON_WITH_AES_128_CBC_SHA"),
    (0xc019, "TLS_ECDH_ANON_WITH_AES_256_CBC_SHA"),
    (0xc01a, "TLS_SRP_SHA_WITH_3DES_EDE_CBC_SHA"),
    (0xc01b, "TLS_SRP_SHA_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xc01c, "TLS_SRP_SHA_DSS_WITH_3DES_EDE_CBC_SHA"),
    (0xc01d, "TLS_SRP_SHA_WITH_AES_128_CBC_SHA"),
    (0xc01e, "TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA"),
    (0xc01f, "TLS_SRP_SHA_DSS_WITH_AES_128_CBC_SHA"),
    (0xc020, "TLS_SRP_SHA_WITH_AES_256_CBC_SHA"),
    (0xc021, "TLS_SRP_SHA_RSA_WITH_AES_256_CBC_SHA"),
    (0xc022, "TLS_SRP_SHA_DSS_WITH_AES_256_CBC_SHA"),
    (0xc023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xc024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xc025, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xc026, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xc027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0xc028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    (0xc029, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256"),
    (0xc02a, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384"),
    (0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xc02d, "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xc02e, "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0xc031, "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256"),
    (0xc032, "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384"),
    (0xc033, "TLS_ECDHE_PSK_WITH_RC4_128_SHA"),
    (0xc034, "TLS_ECDHE_PSK_WITH_3DES_EDE_CBC_SHA"),
    (0xc035, "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA"),
    (0xc036, "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA"),
    (0xc037, "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256"),
    (0xc038, "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384"),
    (0xc039, "TLS_ECDHE_PSK_WITH_NULL_SHA"),
    (0xc03a, "TLS_ECDHE_PSK_WITH_NULL_SHA256"),
    (0xc03b, "TLS_ECDHE_PSK_WITH_NULL_SHA384"),
    (0xc03c, "TLS_RSA_WITH_ARIA_128_CBC_SHA256"),
    (0xc03d, "TLS_RSA_WITH_ARIA_256_CBC_SHA384"),
    (0xc03e, "TLS_DH_DSS_WITH_ARIA_128_CBC_SHA256"),
    (0xc03f, "TLS_DH_DSS_WITH_ARIA_256_CBC_SHA384"),
    (0xc040, "TLS_DH_RSA_WITH_ARIA_128_CBC_SHA256"),
    (0xc041, "TLS_DH_RSA_WITH_ARIA_256_CBC_SHA384"),
    (0xc042, "TLS_DHE_DSS_WITH_ARIA_128_CBC_SHA256"),
    (0xc043, "TLS_DHE_DSS_WITH_ARIA_256_CBC_SHA384"),
    (0xc044, "TLS_DHE_RSA_WITH_ARIA_128_CBC_SHA256"),
    (0xc045, "TLS_DHE_RSA_WITH_ARIA_256_CBC_SHA384"),
    (0xc046, "TLS_DH_ANON_WITH_ARIA_128_CBC_SHA256"),
    (0xc047, "TLS_DH_ANON_WITH_ARIA_256_CBC_SHA384"),
    (0xc048, "TLS_ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256"),
    (0xc049, "TLS_ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384"),
    (0xc04a, "TLS_ECDH_ECDSA_WITH_ARIA_128_CBC_SHA256"),
    (0xc04b, "TLS_ECDH_ECDSA_WITH_ARIA_256_CBC_SHA384"),
    (0xc04c, "TLS_ECDHE_RSA_WITH_ARIA_128_CBC_SHA256"),
    (0xc04d, "TLS_ECDHE_RSA_WITH_ARIA_256_CBC_SHA384"),
    (0xc04e, "TLS_ECDH_RSA_WITH_ARIA_128_CBC_SHA256"),
    (0xc04f, "TLS_ECDH_RSA_WITH_ARIA_256_CBC_SHA384"),
    (0xc050, "TLS_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0xc051, "TLS_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xc052, "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0xc053, "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xc054, "TLS_DH_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0xc055, "TLS_DH_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xc056, "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256"),
    (0xc057, "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384"),
    (0xc058, "TLS_DH_DSS_WITH_ARIA_128_GCM_SHA256"),
    (0xc059, "TLS_DH_DSS_WITH_ARIA_256_GCM_SHA384"),
    (0xc05a, "TLS_DH_ANON_WITH_ARIA_128_GCM_SHA256"),
    (0xc05b, "TLS_DH_ANON_WITH_ARIA_256_GCM_SHA384"),
    (0xc05c, "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256"),
    (0xc05d, "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384"),
    (0xc05e, "TLS_ECDH_ECDSA_WITH_ARIA_128_GCM_SHA256"),
    (0xc05f, "TLS_ECDH_ECDSA_WITH_ARIA_256_GCM_SHA384"),
    (0xc060, "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0xc061, "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xc062, "TLS_ECDH_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0xc063, "TLS_ECDH_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xc064, "TLS_PSK_WITH_ARIA_128_CBC_SHA256"),
    (0xc065, "TLS_PSK_WITH_ARIA_256_CBC_SHA384"),
    (0xc066, "TLS_DHE_PSK_WITH_ARIA_128_CBC_SHA256"),
    (0xc067, "TLS_DHE_PSK_WITH_ARIA_256_CBC_SHA384"),
    (0xc068, "TLS_RSA_PSK_WITH_ARIA_128_CBC_SHA256"),
    (0xc069, "TLS_RSA_PSK_WITH_ARIA_256_CBC_SHA384"),
    (0xc06a, "TLS_PSK_WITH_ARIA_128_GCM_SHA256"),
    (0xc06b, "TLS_PSK_WITH_ARIA_256_GCM_SHA384"),
    (0xc06c, "TLS_DHE_PSK_WITH_ARIA_128_GCM_SHA256"),
    (0xc06d, "TLS_DHE_PSK_WITH_ARIA_256_GCM_SHA384"),
    (0xc06e, "TLS_RSA_PSK_WITH_ARIA_128_GCM_SHA256"),
    (0xc06f, "TLS_RSA_PSK_WITH_ARIA_256_GCM_SHA384"),
    (0xc070, "TLS_ECDHE_PSK_WITH_ARIA_128_CBC_SHA256"),
    (0xc071, "TLS_ECDHE_PSK_WITH_ARIA_256_CBC_SHA384"),
    (0xc072, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xc073, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xc074, "TLS_ECDH_ECDSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xc075, "TLS_ECDH_ECDSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xc076, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xc077, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xc078, "TLS_ECDH_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xc079, "TLS_ECDH_RSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xc07a, "TLS_RSA_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc07b, "TLS_RSA_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc07c, "TLS_DHE_RSA_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc07d, "TLS_DHE_RSA_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc07e, "TLS_DH_RSA_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc07f, "TLS_DH_RSA_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc080, "TLS_DHE_DSS_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc081, "TLS_DHE_DSS_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc082, "TLS_DH_DSS_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc083, "TLS_DH_DSS_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc084, "TLS_DH_ANON_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc085, "TLS_DH_ANON_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc086, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc087, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc088, "TLS_ECDH_ECDSA_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc089, "TLS_ECDH_ECDSA_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc08a, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc08b, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc08c, "TLS_ECDH_RSA_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc08d, "TLS_ECDH_RSA_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc08e, "TLS_PSK_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc08f, "TLS_PSK_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc090, "TLS_DHE_PSK_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc091, "TLS_DHE_PSK_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc092, "TLS_RSA_PSK_WITH_CAMELLIA_128_GCM_SHA256"),
    (0xc093, "TLS_RSA_PSK_WITH_CAMELLIA_256_GCM_SHA384"),
    (0xc094, "TLS_PSK_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xc095, "TLS_PSK_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xc096, "TLS_DHE_PSK_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xc097, "TLS_DHE_PSK_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xc098, "TLS_RSA_PSK_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xc099, "TLS_RSA_PSK_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xc09a, "TLS_ECDHE_PSK_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xc09b, "TLS_ECDHE_PSK_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xc09c, "TLS_RSA_WITH_AES_128_CCM"),
    (0xc09d, "TLS_RSA_WITH_AES_256_CCM"),
    (0xc09e, "TLS_DHE_RSA_WITH_AES_128_CCM"),
    (0xc09f, "TLS_DHE_RSA_WITH_AES_256_CCM"),
    (0xc0a0, "TLS_RSA_WITH_AES_128_CCM_8"),
    (0xc0a1, "TLS_RSA_WITH_AES_256_CCM_8"),
    (0xc0a2, "TLS_DHE_RSA_WITH_AES_128_CCM_8"),
    (0xc0a3, "TLS_DHE_RSA_WITH_AES_256_CCM_8"),
    (0xc0a4, "TLS_PSK_WITH_AES_128_CCM"),
    (0xc0a5, "TLS_PSK_WITH_AES_256_CCM"),
    (0xc0a6, "TLS_DHE_PSK_WITH_AES_128_CCM"),
    (0xc0a7, "TLS_DHE_PSK_WITH_AES_256_CCM"),
    (0xc0a8, "TLS_PSK_WITH_AES_128_CCM_8"),
    (0xc0a9, "TLS_PSK_WITH_AES_256_CCM_8"),
    (0xc0aa, "TLS_PSK_DHE_WITH_AES_128_CCM_8"),
    (0xc0ab, "TLS_PSK_DHE_WITH_AES_256_CCM_8"),
    (0xc0ac, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
    (0xc0ad, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    (0xc0ae, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"),
    (0xc0af, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8"),
    (0xc0b0, "TLS_ECCPWD_WITH_AES_128_GCM_SHA256"),
    (0xc0b1, "TLS_ECCPWD_WITH_AES_256_GCM_SHA384"),
    (0xc0b2, "TLS_ECCPWD_WITH_AES_128_CCM_SHA256"),
    (0xc0b3, "TLS_ECCPWD_WITH_AES_256_CCM_SHA384"),
    (0xc0b4, "TLS_SHA256_SHA256"),
    (0xc0b5, "TLS_SHA384_SHA384"),
    (0xc100, "TLS_GOSTR341112_256_WITH_KUZNYECHIK_CTR_OMAC"),
    (0xc101, "TLS_GOSTR341112_256_WITH_MAGMA_CTR_OMAC"),
    (0xc102, "TLS_GOSTR341112_256_WITH_28147_CNT_IMIT"),
    (0xc103, "TLS_GOSTR341112_256_WITH_KUZNYECHIK_MGM_L"),
    (0xc104, "TLS_GOSTR341112_256_WITH_MAGMA_MGM_L"),
    (0xc105, "TLS_GOSTR341112_256_WITH_KUZNYECHIK_MGM_S"),
    (0xc106, "TLS_GOSTR341112_256_WITH_MAGMA_MGM_S"),
    (0xcc13, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD"),
    (0xcc14, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256_OLD"),
    (0xcc15, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD"),
    (0xcca8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xcca9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xccaa, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xccab, "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256"),
    (0xccac, "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256"),
    (0xccad, "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256"),
    (0xccae, "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256"),
    (0xd001, "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256"),
    (0xd002, "TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384"),
    (0xd003, "TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256"),
    (0xd004, "TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256_OLD"),
    (0xd005, "TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256"),
    (0xfefe, "SSL_RSA_FIPS_WITH_DES_CBC_SHA"),
    (0xfeff, "SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA"),
    (0xff80, "SSL_RSA_WITH_RC2_CBC_MD5"),
    (0xff81, "SSL_RSA_WITH_IDEA_CBC_MD5"),
    (0xff82, "SSL_RSA_WITH_DES_CBC_MD5"),
    (0xff83, "SSL_RSA_WITH_3DES_EDE_CBC_MD5"),
    (0xffe0, "SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA_2"),
    (0xffe1, "SSL_RSA_FIPS_WITH_DES_CBC_SHA_2"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_are_zeeks() {
        // The table is sorted (the binary search needs it) and has no number twice.
        assert!(CIPHER_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        // Names Zeek's ssl.log baselines show, and Zeek's own spellings.
        let cases = [
            (0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA"),
            (0x0018, "TLS_DH_ANON_WITH_RC4_128_MD5"),
            (0xcc13, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD"),
            (0xffe0, "SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA_2"),
            (0x1303, "TLS_CHACHA20_POLY1305_SHA256"),
            (0xc0ad, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
            (0x002c, "unknown-44"),
            (0x0a0a, "unknown-2570"),
        ];
        for (id, name) in cases {
            assert_eq!(cipher_name(id), name);
        }
    }

    /// A ClientHello body: TLS 1.2, two ciphers, SNI "a.b", ALPN "h2", groups, point formats.
    fn client_hello() -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[0u8; 32]);
        b.push(0); // session id
        b.extend_from_slice(&[0, 4, 0xc0, 0x2f, 0x0a, 0x0a]); // ciphers incl. GREASE
        b.extend_from_slice(&[1, 0]); // compression
        let mut ext = Vec::new();
        ext.extend_from_slice(&[0, 0, 0, 8, 0, 6, 0, 0, 3, b'a', b'.', b'b']); // SNI
        ext.extend_from_slice(&[0, 16, 0, 5, 0, 3, 2, b'h', b'2']); // ALPN
        ext.extend_from_slice(&[0, 10, 0, 4, 0, 2, 0, 29]); // groups x25519
        ext.extend_from_slice(&[0, 11, 0, 2, 1, 0]); // point formats
        b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        b.extend_from_slice(&ext);
        b
    }

    #[test]
    fn parses_client_hello_and_fingerprints() {
        let h = parse_client_hello(&client_hello()).expect("parses");
        assert_eq!(h.server_name.as_deref(), Some("a.b"));
        assert_eq!(h.alpn, vec!["h2".to_string()]);
        assert_eq!(h.extensions, vec![0, 16, 10, 11]);
        // JA3 string per the spec: 771,49199,0-16-10-11,29,0 (GREASE cipher dropped).
        assert_eq!(ja3(&h).as_str(), md5_hex("771,49199,0-16-10-11,29,0"));
        let j4 = ja4(&h, Carrier::Tcp);
        let j4 = j4.as_str();
        assert!(j4.starts_with("t12d0104h2_"), "{j4}");
        assert_eq!(cipher_name(0xc02f), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    }

    /// The fingerprints as first written (a `String` per item, then `format!` and `join`): the
    /// reference the allocation-free ones must equal.
    fn join<T: ToString>(items: impl Iterator<Item = T>, sep: &str) -> String {
        items.map(|i| i.to_string()).collect::<Vec<_>>().join(sep)
    }

    fn md5_hex(text: &str) -> String {
        let digest = Md5::digest(text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sha256_12(text: &str) -> String {
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    fn ja3_reference(h: &ClientHello) -> String {
        let text = format!(
            "{},{},{},{},{}",
            h.version,
            join(h.ciphers.iter().filter(|c| !is_grease(**c)), "-"),
            join(h.extensions.iter().filter(|c| !is_grease(**c)), "-"),
            join(h.groups.iter().filter(|c| !is_grease(**c)), "-"),
            join(h.point_formats.iter(), "-"),
        );
        md5_hex(&text)
    }

    fn ja3s_reference(h: &ServerHello) -> String {
        md5_hex(&format!("{},{},{}", h.version, h.cipher, join(h.extensions.iter(), "-")))
    }

    fn ja4_reference(h: &ClientHello, protocol: char) -> String {
        let version = h
            .supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(h.version);
        let v = match version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0002 => "s2",
            0xfeff => "d1",
            0xfefd => "d2",
            0xfefc => "d3",
            _ => "00",
        };
        let sni = if h.server_name.is_some() { 'd' } else { 'i' };
        let ciphers: Vec<u16> = h.ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
        let exts: Vec<u16> = h.extensions.iter().copied().filter(|c| !is_grease(*c)).collect();
        let alpn = match h.alpn.first().map(|a| a.as_bytes()) {
            Some([first, .., last])
                if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() =>
            {
                format!("{}{}", char::from(*first), char::from(*last))
            }
            Some([only]) if only.is_ascii_alphanumeric() => format!("{0}{0}", char::from(*only)),
            Some([first, .., last]) => format!("{:x}{:x}", first >> 4, last & 0xf),
            _ => "00".to_string(),
        };
        let (nc, ne) = (ciphers.len().min(99), exts.len().min(99));
        let a = format!("{protocol}{v}{sni}{nc:02}{ne:02}{alpn}");
        let mut sorted_ciphers = ciphers.clone();
        sorted_ciphers.sort_unstable();
        let b = if sorted_ciphers.is_empty() {
            "000000000000".to_string()
        } else {
            sha256_12(&join(sorted_ciphers.iter().map(|c| format!("{c:04x}")), ","))
        };
        let mut sorted_exts: Vec<u16> = exts.into_iter().filter(|e| *e != 0 && *e != 16).collect();
        sorted_exts.sort_unstable();
        let mut c_text = join(sorted_exts.iter().map(|e| format!("{e:04x}")), ",");
        if !h.signature_algorithms.is_empty() {
            c_text.push('_');
            c_text.push_str(&join(h.signature_algorithms.iter().map(|s| format!("{s:04x}")), ","));
        }
        let c =
            if sorted_exts.is_empty() { "000000000000".to_string() } else { sha256_12(&c_text) };
        format!("{a}_{b}_{c}")
    }

    /// Lists drawn mostly from a few values (GREASE, SNI and ALPN types among them) so that
    /// filtering and sorting matter; long enough to pass the hashing buffer's 256 bytes.
    fn u16s(max: usize) -> impl proptest::strategy::Strategy<Value = Vec<u16>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                Just(0u16),
                Just(16),
                Just(0x0a0a),
                Just(0xfafa),
                Just(0x0304),
                Just(0x0303),
                Just(0x0300),
                Just(0x7f1c),
                Just(0xfefd),
                Just(0xfeff),
                any::<u16>(),
            ],
            0..max,
        )
    }

    proptest::proptest! {
        #[test]
        fn fingerprints_equal_the_formatted_reference(
            version in proptest::prelude::any::<u16>(),
            ciphers in u16s(120),
            extensions in u16s(40),
            groups in u16s(20),
            point_formats in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4),
            supported_versions in u16s(6),
            signature_algorithms in u16s(30),
            sni in proptest::prelude::any::<bool>(),
            carrier in 0..3usize,
            alpn in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4), 0..3),
        ) {
            let alpn: Vec<String> =
                alpn.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let h = ClientHello {
                version,
                ciphers: ciphers.clone(),
                extensions: extensions.clone(),
                server_name: sni.then(|| "a.b".to_string()),
                alpn: alpn.clone(),
                groups,
                point_formats,
                supported_versions,
                signature_algorithms,
            };
            let (carrier, letter) =
                [(Carrier::Tcp, 't'), (Carrier::Dtls, 'd'), (Carrier::Quic, 'q')][carrier];
            let (j3, j4) = (ja3(&h), ja4(&h, carrier));
            proptest::prop_assert_eq!(j3.as_str(), ja3_reference(&h));
            proptest::prop_assert_eq!(j4.as_str(), ja4_reference(&h, letter));
            let s = ServerHello {
                version,
                cipher: ciphers.first().copied().unwrap_or(0),
                extensions,
                selected_version: None,
                alpn: alpn.first().cloned(),
            };
            let j3s = ja3s(&s);
            proptest::prop_assert_eq!(j3s.as_str(), ja3s_reference(&s));
        }
    }

    #[test]
    fn fingerprints_of_empty_hellos() {
        let h = ClientHello::default();
        assert_eq!(ja3(&h).as_str(), ja3_reference(&h));
        assert_eq!(ja4(&h, Carrier::Tcp).as_str(), ja4_reference(&h, 't'));
        assert_eq!(ja4(&h, Carrier::Tcp).as_str(), "t00i000000_000000000000_000000000000");
        let s = ServerHello::default();
        assert_eq!(ja3s(&s).as_str(), ja3s_reference(&s));
    }

    proptest::proptest! {
        /// Records read in place (nothing held) and through the held buffer give the same
        /// summary wherever the segments end.
        #[test]
        fn summary_does_not_depend_on_segment_boundaries(
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..8),
        ) {
            // Two records: the ClientHello's handshake split across them, then application data.
            let body = client_hello();
            let mut message = vec![1, 0];
            message.extend_from_slice(&(body.len() as u16).to_be_bytes());
            message.extend_from_slice(&body);
            let (a, b) = message.split_at(7);
            let mut stream = Vec::new();
            for part in [a, b] {
                stream.extend_from_slice(&[22, 3, 1]);
                stream.extend_from_slice(&(part.len() as u16).to_be_bytes());
                stream.extend_from_slice(part);
            }
            stream.extend_from_slice(&[23, 3, 3, 0, 2, 0xaa, 0xbb]);
            let mut whole = TlsFlow::new(0);
            whole.data(true, &stream);
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            at.push(0);
            at.push(stream.len());
            at.sort_unstable();
            let mut cut = TlsFlow::new(0);
            for w in at.windows(2) {
                cut.data(true, &stream[w[0]..w[1]]);
            }
            proptest::prop_assert!(whole.summary.client_hello.is_some());
            proptest::prop_assert!(whole.client.encrypted);
            proptest::prop_assert_eq!(&cut.summary, &whole.summary);
            proptest::prop_assert_eq!(cut.client.encrypted, whole.client.encrypted);
            proptest::prop_assert_eq!(cut.client.buf.len(), 0);
        }
    }

    /// A TLS record of `ctype` holding one handshake message of `htype` (or, for other record
    /// types, `body` as it is).
    fn record(ctype: u8, htype: u8, body: &[u8]) -> Vec<u8> {
        let mut payload = Vec::new();
        if ctype == 22 {
            payload.extend_from_slice(&[htype, 0]);
            payload.extend_from_slice(&(body.len() as u16).to_be_bytes());
        }
        payload.extend_from_slice(body);
        let mut r = vec![ctype, 3, 3];
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(&payload);
        r
    }

    /// A TLS 1.3 ServerHello body (supported_versions 0x0304) with `random` and `cipher`.
    fn server_hello_13(random: [u8; 32], cipher: u16) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&random);
        b.push(0); // session id
        b.extend_from_slice(&cipher.to_be_bytes());
        b.push(0); // compression
        b.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
        b
    }

    #[test]
    fn tls13_is_established_by_the_clients_first_encrypted_record_not_its_ccs() {
        let hello = record(22, 1, &client_hello());
        let ccs = record(20, 0, &[1]);
        let encrypted = record(23, 0, &[0xaa; 8]);
        // Client hello, server hello (TLS 1.3), then the client's compatibility CCS and nothing
        // more: not established (Zeek ignores the CCS under TLS 1.3).
        let mut flow = TlsFlow::new(0);
        flow.data(true, &hello);
        flow.data(false, &record(22, 2, &server_hello_13([7; 32], 0x1301)));
        flow.data(true, &ccs);
        assert!(!flow.summary.established);
        // Its first encrypted record (the Finished) establishes it.
        flow.data(true, &encrypted);
        assert!(flow.summary.established);

        // A HelloRetryRequest first: the ServerHello that follows it is the one kept.
        let mut flow = TlsFlow::new(0);
        flow.data(true, &hello);
        flow.data(false, &record(22, 2, &server_hello_13(HELLO_RETRY_RANDOM, 0x1302)));
        flow.data(true, &ccs);
        flow.data(true, &hello);
        assert!(!flow.summary.established);
        flow.data(false, &record(22, 2, &server_hello_13([7; 32], 0x1303)));
        flow.data(true, &encrypted);
        let cipher = flow.summary.server_hello.as_ref().map(|s| s.cipher);
        assert_eq!((cipher, flow.summary.established), (Some(0x1303), true));

        // Before TLS 1.3 a CCS from each side establishes the connection, as before.
        let mut flow = TlsFlow::new(0);
        flow.data(true, &hello);
        let mut hello12 = server_hello_13([7; 32], 0xc02f);
        hello12.truncate(hello12.len() - 8);
        flow.data(false, &record(22, 2, &hello12));
        flow.data(true, &ccs);
        flow.data(false, &ccs);
        assert!(flow.summary.established);
    }

    /// A DTLS record of `epoch` (RFC 6347 4.1), sequence number 0.
    fn dtls_record(ctype: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut r = vec![ctype, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0; 6]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    /// A DTLS handshake fragment: `message[offset..offset + len]` of message `seq`.
    fn dtls_fragment(htype: u8, seq: u16, message: &[u8], offset: usize, len: usize) -> Vec<u8> {
        let be24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let mut f = vec![htype];
        f.extend_from_slice(&be24(message.len()));
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&be24(offset));
        f.extend_from_slice(&be24(len));
        f.extend_from_slice(&message[offset..offset + len]);
        f
    }

    /// A whole DTLS handshake message in one plaintext record.
    fn dtls_message(htype: u8, seq: u16, message: &[u8]) -> Vec<u8> {
        dtls_record(22, 0, &dtls_fragment(htype, seq, message, 0, message.len()))
    }

    /// `client_hello()` as DTLS 1.2 sends it: its version, and a cookie after the session id.
    fn dtls_client_hello(cookie: &[u8]) -> Vec<u8> {
        let mut b = client_hello();
        b[..2].copy_from_slice(&[0xfe, 0xfd]);
        let at = 2 + 32 + 1;
        b.insert(at, cookie.len() as u8);
        b.splice(at + 1..at + 1, cookie.iter().copied());
        b
    }

    #[test]
    fn dtls_client_hello_is_recognised_only_in_a_plaintext_handshake_record() {
        let hello = dtls_message(1, 0, &dtls_client_hello(&[]));
        assert!(looks_like_dtls_client_hello(&hello));
        let mut v10 = hello.clone();
        v10[2] = 0xff;
        assert!(looks_like_dtls_client_hello(&v10));
        // A ServerHello, a later epoch, TLS over TCP's record, or a truncated record: no.
        assert!(!looks_like_dtls_client_hello(&dtls_message(2, 0, &dtls_client_hello(&[]))));
        let mut epoch1 = hello.clone();
        epoch1[4] = 1;
        assert!(!looks_like_dtls_client_hello(&epoch1));
        assert!(!looks_like_dtls_client_hello(&record(22, 1, &client_hello())));
        let mut tls_version_inside = hello.clone();
        tls_version_inside[25..27].copy_from_slice(&[3, 3]);
        assert!(!looks_like_dtls_client_hello(&tls_version_inside));
        assert!(!looks_like_dtls_client_hello(&hello[..20]));
        // Every truncated prefix: no hello (the record is incomplete), no panic; the whole one
        // gives it.
        for n in 0..hello.len() {
            let mut flow = TlsFlow::new_dtls(0, true);
            flow.datagram(true, &hello[..n]);
            assert!(flow.summary.client_hello.is_none(), "{n}");
        }
        let mut flow = TlsFlow::new_dtls(0, true);
        flow.datagram(true, &hello);
        assert!(flow.summary.client_hello.is_some());
    }

    #[test]
    fn dtls_handshake_from_fragments_with_retransmissions() {
        let mut flow = TlsFlow::new_dtls(0, true);
        // The first ClientHello, the server's HelloVerifyRequest, the ClientHello with the cookie.
        flow.datagram(true, &dtls_message(1, 0, &dtls_client_hello(&[])));
        flow.datagram(false, &dtls_message(3, 0, &[0xfe, 0xff, 2, 0xab, 0xcd]));
        flow.datagram(true, &dtls_message(1, 1, &dtls_client_hello(&[0xab, 0xcd])));
        let client = flow.summary.client_hello.clone().expect("client hello");
        assert_eq!(client.version, 0xfefd);
        assert_eq!(client.server_name.as_deref(), Some("a.b"));
        assert_eq!(client.ciphers, [0xc02f, 0x0a0a]);
        assert_eq!(client.alpn, ["h2"]);
        // The ServerHello (message 1) in three fragments: the second arrives first and waits,
        // then the first (twice), then the second again with the third.
        let mut server_hello = server_hello_13([7; 32], 0xc02f);
        server_hello.truncate(server_hello.len() - 8);
        server_hello[..2].copy_from_slice(&[0xfe, 0xfd]);
        let n = server_hello.len();
        let part =
            |offset, len| dtls_record(22, 0, &dtls_fragment(2, 1, &server_hello, offset, len));
        flow.datagram(false, &part(10, 10));
        flow.datagram(false, &part(0, 10));
        flow.datagram(false, &part(0, 10));
        assert!(flow.summary.server_hello.is_none());
        // The second and third fragments in one datagram (two records).
        let mut datagram = part(10, 10);
        datagram.extend_from_slice(&part(20, n - 20));
        flow.datagram(false, &datagram);
        let server = flow.summary.server_hello.clone().expect("server hello");
        assert_eq!((server.version, server.cipher), (0xfefd, 0xc02f));
        assert_eq!(negotiated_version(&server), Some(("dtls", "1.2")));
        // A retransmitted ClientHello (an earlier message) changes nothing; a CCS from each side
        // (then the epoch-1 Finished) establishes the connection.
        flow.datagram(true, &dtls_message(1, 0, &client_hello()));
        assert_eq!(flow.summary.client_hello.as_ref(), Some(&client));
        assert!(!flow.summary.established);
        let mut finish = dtls_record(20, 0, &[1]);
        finish.extend_from_slice(&dtls_record(22, 1, &[0x55; 40]));
        flow.datagram(true, &finish);
        flow.datagram(false, &finish);
        assert!(flow.summary.established);
        assert!(flow.done());
        let fingerprint = ja4(&client, Carrier::Dtls);
        assert!(fingerprint.as_str().starts_with("dd2d"), "{}", fingerprint.as_str());
    }

    #[test]
    fn stun_between_dtls_datagrams_is_skipped() {
        let mut flow = TlsFlow::new_dtls(0, true);
        flow.datagram(true, &dtls_message(1, 0, &dtls_client_hello(&[])));
        // ICE consent checks (STUN binding request and response, first bytes 0x00 0x01 and 0x01
        // 0x01) and an RTP packet (0x80) arrive during the handshake.
        let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8];
        flow.datagram(false, &stun);
        flow.datagram(false, &[0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
        flow.datagram(true, &[0x80, 0x60, 0x00, 0x01, 0, 0, 0, 0]);
        let mut hello12 = server_hello_13([7; 32], 0xc02f);
        hello12.truncate(hello12.len() - 8);
        flow.datagram(false, &dtls_message(2, 0, &hello12));
        assert_eq!(flow.summary.server_hello.as_ref().map(|s| s.cipher), Some(0xc02f));
    }

    #[test]
    fn dtls_client_may_be_the_flows_responder() {
        // A WebRTC flow whose first packet (STUN) came from the side that is the DTLS server.
        let mut flow = TlsFlow::new_dtls(0, false);
        flow.datagram(false, &dtls_message(1, 0, &dtls_client_hello(&[])));
        let mut hello12 = server_hello_13([7; 32], 0xc02f);
        hello12.truncate(hello12.len() - 8);
        flow.datagram(true, &dtls_message(2, 0, &hello12));
        assert!(flow.summary.client_hello.is_some());
        assert_eq!(flow.summary.server_hello.as_ref().map(|s| s.cipher), Some(0xc02f));
    }

    #[test]
    fn dtls_fragments_in_any_order_make_their_messages() {
        // The ServerHello (message 0) and a second message (1) from the server, each in three
        // fragments, reordered: each message's fragments backwards, and the second message's
        // first fragment before the first message's.
        let mut hello12 = server_hello_13([7; 32], 0xc030);
        hello12.truncate(hello12.len() - 8);
        let done = [14u8, 0, 0, 0]; // a ServerHelloDone-like body, never parsed
        let mut fragments = Vec::new();
        for (seq, msg, htype) in [(0u16, &hello12[..], 2u8), (1, &done[..], 14)] {
            let n = msg.len();
            for (offset, len) in [(0, n / 3), (n / 3, n / 3), (2 * (n / 3), n - 2 * (n / 3))] {
                fragments.push(dtls_record(22, 0, &dtls_fragment(htype, seq, msg, offset, len)));
            }
        }
        let mut flow = TlsFlow::new_dtls(0, true);
        flow.datagram(true, &dtls_message(1, 0, &dtls_client_hello(&[])));
        // The ServerHello is complete from its first fragment on, not before.
        let mut complete = false;
        for i in [2, 1, 3, 0, 5, 4] {
            flow.datagram(false, &fragments[i]);
            complete |= i == 0;
            assert_eq!(flow.summary.server_hello.is_some(), complete, "after fragment {i}");
        }
        assert_eq!(flow.summary.server_hello.as_ref().map(|s| s.cipher), Some(0xc030));
        assert_eq!(flow.server.dtls_next, 2);
        assert!(flow.server.dtls_early.is_empty());
        // A fragment far ahead of anything waits at most MAX_EARLY times.
        for i in 0..40 {
            flow.datagram(false, &dtls_record(22, 0, &dtls_fragment(2, 9, &[0; 100], 10 + i, 1)));
        }
        assert_eq!(flow.server.dtls_early.len(), MAX_EARLY);
    }

    #[test]
    fn dtls_alerts_and_dtls13() {
        // A fatal plaintext alert: not established.
        let mut flow = TlsFlow::new_dtls(0, true);
        flow.datagram(true, &dtls_message(1, 0, &dtls_client_hello(&[])));
        let mut hello12 = server_hello_13([7; 32], 0xc02f);
        hello12.truncate(hello12.len() - 8);
        flow.datagram(false, &dtls_message(2, 0, &hello12));
        flow.datagram(false, &dtls_record(21, 0, &[2, 40]));
        flow.datagram(true, &dtls_record(20, 0, &[1]));
        flow.datagram(false, &dtls_record(20, 0, &[1]));
        assert!(!flow.summary.established);

        // DTLS 1.3 (supported_versions 0xfefc): the server encrypts after its ServerHello, the
        // client from its first record with the short encrypted header.
        let mut flow = TlsFlow::new_dtls(0, true);
        flow.datagram(true, &dtls_message(1, 0, &dtls_client_hello(&[])));
        let mut hello13 = server_hello_13([7; 32], 0x1301);
        let last = hello13.len() - 2;
        hello13[last..].copy_from_slice(&[0xfe, 0xfc]);
        flow.datagram(false, &dtls_message(2, 0, &hello13));
        let server = flow.summary.server_hello.clone().expect("server hello");
        assert_eq!(negotiated_version(&server), Some(("dtls", "1.3")));
        assert!(!flow.summary.established);
        flow.datagram(true, &[0x2c, 0x00, 0x01, 0x00, 0x20, 0xaa, 0xbb]);
        assert!(flow.summary.established);
    }

    #[test]
    fn truncated_hellos_are_errors_never_panics() {
        let b = client_hello();
        for len in 0..b.len() {
            let _ = parse_client_hello(&b[..len]);
            let _ = parse_server_hello(&b[..len]);
        }
        assert!(parse_client_hello(&b[..10]).is_err());
    }

    #[test]
    fn md5_matches_rfc1321_vector() {
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    proptest::proptest! {
        #[test]
        fn flow_never_panics(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
                             b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut flow = TlsFlow::new(0);
            flow.data(true, &[0x16, 3, 1]);
            flow.data(true, &a);
            flow.data(false, &b);
            let _ = parse_client_hello(&a);
            let _ = parse_server_hello(&b);
            let mut flow = TlsFlow::new_dtls(0, true);
            flow.datagram(true, &a);
            flow.datagram(false, &b);
            let _ = parse_hello_from_client(&a, true);
        }
    }
}
