//! TLS handshake parsing over reassembled TCP streams: ClientHello and ServerHello fields as Zeek's
//! ssl.log shows them (version, cipher, SNI, ALPN chosen, established) plus JA3, JA3S and JA4.
//! Pure and bounded: each direction buffers at most one record (`MAX_RECORD` bytes).

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
}

#[derive(Debug, Default)]
pub struct TlsFlow {
    client: Side,
    server: Side,
    pub summary: Summary,
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
        let mut pos = 0;
        while let Some(header) = input.get(pos..pos + 5) {
            let (ctype, len) = (header[0], usize::from(u16::from_be_bytes([header[3], header[4]])));
            if header[1] != 3 || len + 5 > MAX_RECORD {
                side.stopped = true;
                break;
            }
            let Some(body) = input.get(pos + 5..pos + 5 + len) else { break };
            match ctype {
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
        let mut hpos = 0;
        while let Some(h) = side.handshake.get(hpos..hpos + 4) {
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            let Some(body) = side.handshake.get(hpos + 4..hpos + 4 + len) else { break };
            match (h[0], from_client) {
                (1, true) if self.summary.client_hello.is_none() => {
                    self.summary.client_hello = parse_client_hello(body).ok();
                }
                (11, false) if self.summary.server_certificate.is_none() => {
                    // certificate_list length (3 bytes), then the first entry's length and DER.
                    let first = body.get(3..6).and_then(|l| {
                        let len = (usize::from(l[0]) << 16)
                            | (usize::from(l[1]) << 8)
                            | usize::from(l[2]);
                        body.get(6..6 + len)
                    });
                    self.summary.server_certificate =
                        first.and_then(|der| crate::x509::parse(der).ok());
                }
                (2, false) if self.summary.server_hello.is_none() => {
                    let hello = parse_server_hello(body).ok();
                    // TLS 1.3: everything after the ServerHello is encrypted.
                    if hello.as_ref().is_some_and(|s| s.selected_version.is_some()) {
                        side.encrypted = true;
                    }
                    self.summary.server_hello = hello;
                }
                _ => {}
            }
            hpos += 4 + len;
        }
        side.handshake.drain(..hpos.min(side.handshake.len()));
        self.summary.established = self.summary.server_hello.is_some()
            && self.client.encrypted
            && self.server.encrypted
            && !self.summary.alert;
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
    let mut hello = ClientHello { version: be16(b, 0)?, ..ClientHello::default() };
    let mut pos = 2 + 32;
    let sid = usize::from(*b.get(pos).ok_or(TlsError::Truncated)?);
    pos += 1 + sid;
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

/// "1.2", "1.3", ... for a protocol version number; drafts of 1.3 count as 1.3.
pub fn version_text(v: u16) -> Option<&'static str> {
    let text = match v {
        0x0300 => "3.0",
        0x0301 => "1.0",
        0x0302 => "1.1",
        0x0303 => "1.2",
        0x0304 => "1.3",
        0x7f00..=0x7fff => "1.3",
        _ => return None,
    };
    Some(text)
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

/// JA4 (TCP) of a ClientHello, per the FoxIO JA4 specification: `a_b_c`, 10 + 1 + 12 + 1 + 12
/// bytes.
pub fn ja4(h: &ClientHello) -> Fingerprint<36> {
    let mut out = [0u8; 36];
    let version =
        h.supported_versions.iter().copied().filter(|v| !is_grease(*v)).max().unwrap_or(h.version);
    let v = match version {
        0x0304 => b"13",
        0x0303 => b"12",
        0x0302 => b"11",
        0x0301 => b"10",
        0x0300 => b"s3",
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
    out[0] = b't';
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

/// IANA names of cipher suites (as Zeek prints them), for the suites seen in practice.
pub fn cipher_name(id: u16) -> std::borrow::Cow<'static, str> {
    let name = match id {
        0x0004 => "TLS_RSA_WITH_RC4_128_MD5",
        0x0005 => "TLS_RSA_WITH_RC4_128_SHA",
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        0x0016 => "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0032 => "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
        0x0033 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x0038 => "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
        0x0039 => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256",
        0x003d => "TLS_RSA_WITH_AES_256_CBC_SHA256",
        0x0041 => "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
        0x0067 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
        0x006b => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
        0x0084 => "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0x00ff => "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0x1305 => "TLS_AES_128_CCM_8_SHA256",
        0x5600 => "TLS_FALLBACK_SCSV",
        0xc007 => "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc011 => "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        0xc012 => "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc023 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc024 => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xc028 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xccaa => "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        _ => return format!("unknown-{id}").into(),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let j4 = ja4(&h);
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

    fn ja4_reference(h: &ClientHello) -> String {
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
        let a = format!("t{v}{sni}{:02}{:02}{alpn}", ciphers.len().min(99), exts.len().min(99));
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
            let (j3, j4) = (ja3(&h), ja4(&h));
            proptest::prop_assert_eq!(j3.as_str(), ja3_reference(&h));
            proptest::prop_assert_eq!(j4.as_str(), ja4_reference(&h));
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
        assert_eq!(ja4(&h).as_str(), ja4_reference(&h));
        assert_eq!(ja4(&h).as_str(), "t00i000000_000000000000_000000000000");
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
        }
    }
}
