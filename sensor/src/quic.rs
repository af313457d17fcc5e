//! QUIC's Initial packets (the versions Zeek reads: 1 and 2, the drafts 22 to 34, Facebook's mvfst
//! versions): their protection removed with
//! the keys any observer derives from the client's Destination Connection ID (RFC 9001 5.2 and
//! 5.4, RFC 9369 3.3), and the TLS ClientHello and ServerHello their CRYPTO frames carry read by
//! the TLS parser. That is what Zeek's QUIC analyser puts in ssl.log: version, cipher and server
//! name; not established and no ALPN chosen, as the rest of the handshake is encrypted with keys
//! an observer does not have. Pure and bounded: at most `MAX_CRYPTO` bytes of CRYPTO data are held
//! per direction.

use crate::tls::{self, Carrier, Summary};
use ring::{aead, hkdf};

/// Most CRYPTO bytes held per direction before the hello is given up (a ClientHello with large
/// post-quantum key shares is a few KiB).
const MAX_CRYPTO: usize = 64 * 1024;
/// Most CRYPTO frames held ahead of the bytes put together, per direction (a client that cuts its
/// ClientHello into frames sent out of order uses a few dozen; each frame joined rescans them).
const MAX_AHEAD: usize = 64;
/// Most Initial packets read from one datagram (a QUIC stack coalesces one Initial with its
/// Handshake and 1-RTT packets), and most times a flow's keys are derived again for another
/// version or a Retry: each derivation is a few microseconds, and a datagram could otherwise
/// hold a hundred tiny packets alternating versions.
const MAX_INITIALS_PER_DATAGRAM: usize = 4;
const MAX_REKEYS: u8 = 4;

/// The versions whose Initial packets are read: the salt of the initial secret, the prefix of
/// the key labels, and the long-header packet type an Initial has.
struct Version {
    salt: [u8; 20],
    labels: &'static str,
    initial_type: u8,
}

static V1: Version = Version {
    salt: [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ],
    labels: "quic",
    initial_type: 0,
};

static V2: Version = Version {
    salt: [
        0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d,
        0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
    ],
    labels: "quicv2",
    initial_type: 1,
};

static DRAFT_29: Version = Version {
    salt: [
        0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11,
        0xe0, 0x43, 0x90, 0xa8, 0x99,
    ],
    labels: "quic",
    initial_type: 0,
};

static DRAFT_23: Version = Version {
    salt: [
        0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63,
        0x65, 0xbe, 0xf9, 0xf5, 0x02,
    ],
    labels: "quic",
    initial_type: 0,
};

static DRAFT_22: Version = Version {
    salt: [
        0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e,
        0xbd, 0x7a, 0x02, 0x64, 0x4a,
    ],
    labels: "quic",
    initial_type: 0,
};

/// The versions Zeek's QUIC analyser decrypts: 1 and 2, the IETF drafts 22 to 34 (each draft
/// range has its salt; 33 and 34 have version 1's), and Facebook's mvfst versions, which use
/// the salts of drafts 22 and 23.
fn version(number: u32) -> Option<&'static Version> {
    match number {
        1 | 0xff00_0021..=0xff00_0022 => Some(&V1),
        0x6b33_43cf => Some(&V2),
        0xff00_001d..=0xff00_0020 => Some(&DRAFT_29),
        0xff00_0017..=0xff00_001c | 0xface_b002..=0xface_b013 => Some(&DRAFT_23),
        0xff00_0016 | 0xface_b001 => Some(&DRAFT_22),
        _ => None,
    }
}

/// The long header of one packet in a datagram.
struct LongHeader<'a> {
    version: &'static Version,
    packet_type: u8,
    dcid: &'a [u8],
    /// Where the (protected) packet number starts, and where the packet ends, in the datagram
    /// slice it was read from.
    pn_offset: usize,
    end: usize,
}

/// A variable-length integer (RFC 9000 16) at `*pos`, advancing it.
fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*pos..*pos + len)?;
    let mut v = u64::from(first & 0x3f);
    for &byte in &bytes[1..] {
        v = (v << 8) | u64::from(byte);
    }
    *pos += len;
    Some(v)
}

/// The version and packet type of the long header at the start of `b`, if it is one of a
/// version we read.
fn version_and_type(b: &[u8]) -> Option<(&'static Version, u8)> {
    let first = *b.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let version = version(u32::from_be_bytes(b.get(1..5)?.try_into().ok()?))?;
    Some((version, (first >> 4) & 3))
}

impl Version {
    /// The long-header type of a Retry: 3 in version 1 and the drafts, 0 in version 2.
    fn retry_type(&self) -> u8 {
        if self.initial_type == 0 {
            3
        } else {
            0
        }
    }
}

/// The long header at the start of `b`, if it is one of a version we read. Packets without a
/// length (Retry, Version Negotiation) give None.
fn long_header(b: &[u8]) -> Option<LongHeader<'_>> {
    let (version, packet_type) = version_and_type(b)?;
    if packet_type == version.retry_type() {
        return None;
    }
    let mut pos = 5;
    let dcid_len = usize::from(*b.get(pos)?);
    let dcid = b.get(pos + 1..pos + 1 + dcid_len)?;
    pos += 1 + dcid_len;
    let scid_len = usize::from(*b.get(pos)?);
    pos += 1 + scid_len;
    if dcid_len > 20 || scid_len > 20 {
        return None;
    }
    if packet_type == version.initial_type {
        let token = usize::try_from(varint(b, &mut pos)?).ok()?;
        pos = pos.checked_add(token)?;
    }
    let length = usize::try_from(varint(b, &mut pos)?).ok()?;
    let end = pos.checked_add(length)?;
    if end > b.len() {
        return None;
    }
    Some(LongHeader { version, packet_type, dcid, pn_offset: pos, end })
}

impl LongHeader<'_> {
    /// The header protection sample lies 4 bytes past the packet number's start, inside the
    /// packet (RFC 9001 5.4.2): a packet shorter than that is not one.
    fn holds_sample(&self) -> bool {
        self.end >= self.pn_offset + 20
    }
}

/// The Source Connection ID of the Retry packet at the start of `b`, if it is one: the client's
/// next Initial is sent to it, and the Initial keys of both directions derive from it from then on
/// (RFC 9001 5.2).
fn retry_scid(b: &[u8]) -> Option<&[u8]> {
    let (version, packet_type) = version_and_type(b)?;
    if packet_type != version.retry_type() {
        return None;
    }
    let dcid_len = usize::from(*b.get(5)?);
    let scid_at = 6 + dcid_len;
    let scid_len = usize::from(*b.get(scid_at)?);
    b.get(scid_at + 1..scid_at + 1 + scid_len).filter(|scid| scid.len() <= 20)
}

/// Does this UDP payload start with a QUIC Initial packet of a version we read, its fixed bit
/// set (what Zeek's QUIC signature looks for; Zeek also takes any QUIC packet on ports 443, 853
/// and 784, which this test finds there too)?
pub fn looks_like_initial(payload: &[u8]) -> bool {
    payload.first().is_some_and(|&b| b & 0xc0 == 0xc0)
        && long_header(payload).is_some_and(|h| h.packet_type == h.version.initial_type)
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 7.1) with an empty context, `N` bytes.
fn expand_label<const N: usize>(secret: &hkdf::Prk, label: &str) -> [u8; N] {
    let length = (N as u16).to_be_bytes();
    let full_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &full_len, b"tls13 ", label.as_bytes(), &[0]];
    let mut out = [0u8; N];
    // Only fails for an output longer than 255 hash lengths; N is at most 32.
    if let Ok(okm) = secret.expand(&info, Len(N)) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// The Initial keys of one direction.
struct Keys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    hp: aead::quic::HeaderProtectionKey,
}

/// The raw key material of one direction's Initial keys: (key, iv, hp).
fn key_material(v: &Version, dcid: &[u8], client: bool) -> ([u8; 16], [u8; 12], [u8; 16]) {
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, &v.salt).extract(dcid);
    let secret: [u8; 32] = expand_label(&initial, if client { "client in" } else { "server in" });
    let secret = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
    let label = |what: &str| format!("{} {what}", v.labels);
    (
        expand_label(&secret, &label("key")),
        expand_label(&secret, &label("iv")),
        expand_label(&secret, &label("hp")),
    )
}

fn keys(v: &Version, dcid: &[u8], client: bool) -> Option<Keys> {
    let (key, iv, hp) = key_material(v, dcid, client);
    Some(Keys {
        key: aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
        iv,
        hp: aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp).ok()?,
    })
}

/// The payload of the Initial packet `packet` (its header `h`), protection removed, into `out`.
fn decrypt(keys: &Keys, packet: &[u8], h: &LongHeader<'_>, out: &mut Vec<u8>) -> Option<()> {
    if !h.holds_sample() {
        return None;
    }
    let sample = packet.get(h.pn_offset + 4..h.pn_offset + 20)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    out.clear();
    out.extend_from_slice(packet.get(..h.end)?);
    out[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(out[0] & 3) + 1;
    let mut pn = 0u64;
    for i in 0..pn_len {
        out[h.pn_offset + i] ^= mask[1 + i];
        pn = (pn << 8) | u64::from(out[h.pn_offset + i]);
    }
    let header_end = h.pn_offset + pn_len;
    // The nonce is the IV with the packet number XORed into its last bytes. The truncated number
    // is the full one for the first 2^(8 * pn_len) packets, which is where the hellos are.
    let mut nonce = keys.iv;
    for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    let (header, payload) = out.split_at_mut(header_end);
    let nonce = aead::Nonce::assume_unique_for_key(nonce);
    let plain_len = keys.key.open_in_place(nonce, aead::Aad::from(&*header), payload).ok()?.len();
    out.copy_within(header_end..header_end + plain_len, 0);
    out.truncate(plain_len);
    Some(())
}

/// The CRYPTO frames of a decrypted Initial payload, as (offset, data); parsing stops at a frame
/// type an Initial packet may not carry.
fn crypto_frames(payload: &[u8], mut each: impl FnMut(u64, &[u8])) {
    let mut pos = 0;
    while pos < payload.len() {
        let Some(frame) = varint(payload, &mut pos) else { return };
        let ok = match frame {
            // PADDING, PING.
            0x00 | 0x01 => Some(()),
            // ACK (0x03 with ECN counts): largest, delay, range count, first range, ranges.
            0x02 | 0x03 => (|| {
                varint(payload, &mut pos)?;
                varint(payload, &mut pos)?;
                let ranges = varint(payload, &mut pos)?;
                varint(payload, &mut pos)?;
                for _ in 0..ranges.min(payload.len() as u64) {
                    varint(payload, &mut pos)?;
                    varint(payload, &mut pos)?;
                }
                if frame == 0x03 {
                    for _ in 0..3 {
                        varint(payload, &mut pos)?;
                    }
                }
                Some(())
            })(),
            0x06 => (|| {
                let offset = varint(payload, &mut pos)?;
                let len = usize::try_from(varint(payload, &mut pos)?).ok()?;
                let data = payload.get(pos..pos.checked_add(len)?)?;
                each(offset, data);
                pos += len;
                Some(())
            })(),
            // CONNECTION_CLOSE: error code, (0x1c) frame type, reason.
            0x1c | 0x1d => (|| {
                varint(payload, &mut pos)?;
                if frame == 0x1c {
                    varint(payload, &mut pos)?;
                }
                let len = usize::try_from(varint(payload, &mut pos)?).ok()?;
                pos = pos.checked_add(len)?;
                Some(())
            })(),
            _ => None,
        };
        if ok.is_none() {
            return;
        }
    }
}

/// One direction's CRYPTO stream: the bytes from offset 0 on that arrived in order, and the
/// frames that arrived ahead of them.
#[derive(Default)]
struct Crypto {
    data: Vec<u8>,
    ahead: Vec<(u64, Vec<u8>)>,
    /// The hello was read (or cannot be): nothing more is kept.
    done: bool,
}

impl Crypto {
    fn add(&mut self, offset: u64, bytes: &[u8]) {
        if self.done {
            return;
        }
        let Ok(offset) = usize::try_from(offset) else { return };
        if offset.saturating_add(bytes.len()) > MAX_CRYPTO {
            return;
        }
        if offset > self.data.len() {
            let held: usize = self.ahead.iter().map(|(_, b)| b.len()).sum();
            if held + bytes.len() <= MAX_CRYPTO && self.ahead.len() < MAX_AHEAD {
                self.ahead.push((offset as u64, bytes.to_vec()));
            }
            return;
        }
        self.extend(offset, bytes);
        // Frames that arrived early and now join on.
        while let Some(i) = self.ahead.iter().position(|(o, _)| *o as usize <= self.data.len()) {
            let (o, b) = self.ahead.swap_remove(i);
            self.extend(o as usize, &b);
        }
    }

    fn extend(&mut self, offset: usize, bytes: &[u8]) {
        let have = self.data.len();
        if offset + bytes.len() > have {
            self.data.extend_from_slice(&bytes[have - offset..]);
        }
    }

    /// Nothing more is kept of this direction (its hello was read, or cannot be).
    fn finish(&mut self) {
        *self = Crypto { done: true, ..Crypto::default() };
    }
}

/// The QUIC handshake of one flow, as far as an observer can read it.
pub struct QuicFlow {
    /// The Destination Connection ID the Initial keys derive from (the client's first, or the
    /// one a Retry gave), and the version.
    dcid: Vec<u8>,
    version: &'static Version,
    /// Client and server Initial keys.
    keys: [Keys; 2],
    crypto: [Crypto; 2],
    /// The flow's responder sent the client's Initial (the flow began otherwise).
    client_is_responder: bool,
    /// Times the keys were derived again (another version, a Retry), up to `MAX_REKEYS`.
    rekeys: u8,
    /// A Retry was taken (a client acts on one only).
    retried: bool,
    scratch: Vec<u8>,
    pub summary: Summary,
}

impl QuicFlow {
    /// A flow whose first client Initial is `payload` (see [`looks_like_initial`]), sent by the
    /// originator or the responder; None unless that Initial's protection comes off with the
    /// client keys of its connection ID (a server's Initial, or bytes that only look like one, do
    /// not start a flow).
    pub fn new(ts_ns: i64, payload: &[u8], client_is_orig: bool) -> Option<QuicFlow> {
        let h = long_header(payload)?;
        let version = h.version;
        let client = keys(version, h.dcid, true)?;
        let mut scratch = Vec::new();
        decrypt(&client, payload, &h, &mut scratch)?;
        Some(QuicFlow {
            dcid: h.dcid.to_vec(),
            version,
            keys: [client, keys(version, h.dcid, false)?],
            crypto: [Crypto::default(), Crypto::default()],
            client_is_responder: !client_is_orig,
            rekeys: 0,
            retried: false,
            scratch,
            summary: Summary { ts_ns, carrier: Carrier::Quic, ..Summary::default() },
        })
    }

    /// The keys of both directions derived again, from `dcid` under `version`, if the flow has
    /// not done so too often.
    fn rekey(&mut self, version: &'static Version, dcid: &[u8]) -> bool {
        if self.rekeys >= MAX_REKEYS {
            return false;
        }
        self.rekeys += 1;
        let (Some(client), Some(server)) = (keys(version, dcid, true), keys(version, dcid, false))
        else {
            return false;
        };
        self.keys = [client, server];
        self.version = version;
        self.dcid = dcid.to_vec();
        true
    }

    /// Both hellos read (or given up on): nothing more to learn.
    pub fn done(&self) -> bool {
        self.crypto[0].done && self.crypto[1].done
    }

    /// One UDP datagram of the flow: its coalesced long-header packets are walked, the Initial
    /// ones decrypted and their CRYPTO frames collected.
    pub fn datagram(&mut self, from_orig: bool, payload: &[u8]) {
        let from_client = from_orig != self.client_is_responder;
        let dir = usize::from(!from_client);
        if !from_client {
            if let Some(scid) = retry_scid(payload) {
                // The client acts on the first Retry only, and only before the server's
                // Initial (RFC 9000 17.2.5.2).
                let server_started = self.crypto[1].done || !self.crypto[1].data.is_empty();
                if !self.retried && !server_started {
                    self.retried = true;
                    self.rekey(self.version, scid);
                }
                return;
            }
        }
        if self.crypto[dir].done {
            return;
        }
        let mut rest = payload;
        let mut initials = 0;
        while let Some(h) = long_header(rest) {
            if h.packet_type == h.version.initial_type && initials < MAX_INITIALS_PER_DATAGRAM {
                initials += 1;
                self.initial(dir, rest, &h);
            }
            rest = &rest[h.end..];
        }
        self.read_hello(dir);
    }

    fn initial(&mut self, dir: usize, packet: &[u8], h: &LongHeader<'_>) {
        // Before keys are derived for it: a packet too short to decrypt.
        if !h.holds_sample() {
            return;
        }
        // Each packet's own version picks the salt: under compatible version negotiation (RFC
        // 9368) the server answers a version 1 Initial in version 2, with keys from the same
        // connection ID.
        if !std::ptr::eq(h.version, self.version) && !self.rekey(h.version, &self.dcid.clone()) {
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        if decrypt(&self.keys[dir], packet, h, &mut scratch).is_some() {
            let crypto = &mut self.crypto[dir];
            crypto_frames(&scratch, |offset, data| crypto.add(offset, data));
        }
        self.scratch = scratch;
    }

    fn read_hello(&mut self, dir: usize) {
        let crypto = &mut self.crypto[dir];
        let Some(h) = crypto.data.get(..4) else { return };
        let len = tls::be24(&h[1..4]);
        if 4 + len > MAX_CRYPTO {
            // It could never be held: given up.
            crypto.finish();
            return;
        }
        let Some(body) = crypto.data.get(4..4 + len) else { return };
        match (h[0], dir) {
            (1, 0) => self.summary.client_hello = tls::parse_client_hello(body).ok(),
            (2, 1) => self.summary.server_hello = tls::parse_server_hello(body).ok(),
            _ => {}
        }
        crypto.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 9001 Appendix A.1: the keys of connection ID 0x8394c8f03e515708.
    #[test]
    fn initial_keys_are_rfc_9001s() {
        let dcid = hex("8394c8f03e515708");
        let (key, iv, hp) = key_material(&V1, &dcid, true);
        assert_eq!(key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
        let (key, iv, hp) = key_material(&V1, &dcid, false);
        assert_eq!(key.to_vec(), hex("cf3a5331653c364c88f0f379b6067e37"));
        assert_eq!(iv.to_vec(), hex("0ac1493ca1905853b0bba03e"));
        assert_eq!(hp.to_vec(), hex("c206b8d9b9f0f37644430b490eeaa314"));
    }

    /// RFC 9369 Appendix A.1: the same connection ID under QUIC version 2.
    #[test]
    fn initial_keys_are_rfc_9369s() {
        let dcid = hex("8394c8f03e515708");
        let (key, iv, hp) = key_material(&V2, &dcid, true);
        assert_eq!(key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    #[test]
    fn crypto_frames_are_put_together_in_offset_order() {
        // The stream "0123456789abc" in overlapping frames, most of them early.
        let mut c = Crypto::default();
        c.add(6, b"6789a");
        c.add(10, b"abc");
        assert!(c.data.is_empty());
        c.add(0, b"0123");
        assert_eq!(c.data, b"0123");
        c.add(2, b"23456");
        assert_eq!(c.data, b"0123456789abc");
        assert!(c.ahead.is_empty());
        // Past the cap: dropped, nothing kept.
        c.add(MAX_CRYPTO as u64, b"x");
        assert_eq!(c.ahead.len(), 0);
        // At most MAX_AHEAD frames wait.
        for i in 0..2 * MAX_AHEAD as u64 {
            c.add(100 + 2 * i, b"y");
        }
        assert_eq!(c.ahead.len(), MAX_AHEAD);
    }

    #[test]
    fn varints_are_rfc_9000s() {
        // RFC 9000 A.1's examples.
        for (bytes, value) in [
            ("c2197c5eff14e88c", 151_288_809_941_952_652u64),
            ("9d7f3e7d", 494_878_333),
            ("7bbd", 15_293),
            ("25", 37),
            ("4025", 37),
        ] {
            let mut pos = 0;
            assert_eq!(varint(&hex(bytes), &mut pos), Some(value), "{bytes}");
            assert_eq!(pos, bytes.len() / 2);
        }
        assert_eq!(varint(&hex("c2197c"), &mut 0), None);
    }

    /// A client or server Initial packet of `number` (a version we read) carrying `frames`,
    /// protected with the keys of `dcid` as a QUIC stack does it (RFC 9001 5.3, 5.4).
    fn seal_initial(number: u32, dcid: &[u8], client: bool, pn: u8, frames: &[u8]) -> Vec<u8> {
        let v = version(number).expect("a version we read");
        let (key, iv, hp) = key_material(v, dcid, client);
        let mut payload = frames.to_vec();
        // PADDING, so that the header protection sample lies inside the packet.
        payload.resize(payload.len().max(20), 0);
        let length = 1 + payload.len() + 16;
        let mut packet = vec![0xc0 | (v.initial_type << 4)];
        packet.extend_from_slice(&number.to_be_bytes());
        packet.push(dcid.len() as u8);
        packet.extend_from_slice(dcid);
        packet.extend_from_slice(&[4, 9, 9, 9, 9, 0]); // SCID, no token
        packet.extend_from_slice(&[0x40 | (length >> 8) as u8, length as u8]);
        let pn_offset = packet.len();
        packet.push(pn);
        let mut nonce = iv;
        nonce[11] ^= pn;
        let key =
            aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).expect("key"));
        let aad = aead::Aad::from(packet.clone());
        key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aad, &mut payload)
            .expect("seal");
        packet.extend_from_slice(&payload);
        let hp = aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp).expect("hp");
        let mask = hp.new_mask(&packet[pn_offset + 4..pn_offset + 20]).expect("mask");
        packet[0] ^= mask[0] & 0x0f;
        packet[pn_offset] ^= mask[1];
        packet
    }

    /// A CRYPTO frame.
    fn crypto(offset: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06, offset, 0x40 | (data.len() >> 8) as u8, data.len() as u8];
        f.extend_from_slice(data);
        f
    }

    /// A TLS 1.3 ClientHello handshake message with an SNI, and a ServerHello choosing `cipher`.
    fn hellos(sni: &str, cipher: u16) -> (Vec<u8>, Vec<u8>) {
        let message = |kind: u8, body: Vec<u8>| {
            let mut m = vec![kind, 0, (body.len() >> 8) as u8, body.len() as u8];
            m.extend_from_slice(&body);
            m
        };
        let mut ch = vec![3, 3];
        ch.extend_from_slice(&[7; 32]);
        ch.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let n = sni.len() as u8;
        let ext = [&[0, 0, 0, n + 5, 0, n + 3, 0, 0, n][..], sni.as_bytes()].concat();
        ch.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        ch.extend_from_slice(&ext);
        let mut sh = vec![3, 3];
        sh.extend_from_slice(&[8; 32]);
        sh.push(0);
        sh.extend_from_slice(&cipher.to_be_bytes());
        sh.extend_from_slice(&[0, 0, 6, 0, 43, 0, 2, 3, 4]);
        (message(1, ch), message(2, sh))
    }

    fn flow_of(first: &[u8]) -> QuicFlow {
        assert!(looks_like_initial(first));
        QuicFlow::new(0, first, true).expect("a flow")
    }

    #[test]
    fn every_version_zeek_reads_is_read() {
        let dcid = [0x11; 8];
        for number in [
            1,
            0x6b33_43cf,
            0xff00_0016,
            0xff00_001b,
            0xff00_001d,
            0xff00_0022,
            0xface_b001,
            0xface_b00d,
        ] {
            let (ch, sh) = hellos("v.example", 0x1302);
            let first = seal_initial(number, &dcid, true, 0, &crypto(0, &ch));
            let mut flow = flow_of(&first);
            flow.datagram(true, &first);
            flow.datagram(false, &seal_initial(number, &dcid, false, 0, &crypto(0, &sh)));
            let client = flow.summary.client_hello.as_ref().map(|c| c.server_name.clone());
            assert_eq!(client, Some(Some("v.example".to_string())), "{number:#x}");
            let cipher = flow.summary.server_hello.as_ref().map(|s| s.cipher);
            assert_eq!(cipher, Some(0x1302), "{number:#x}");
            assert!(flow.done());
        }
        // A version we do not read is not taken for QUIC.
        let other = seal_initial(1, &dcid, true, 0, &crypto(0, b"x"));
        let mut unknown = other.clone();
        unknown[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
        assert!(!looks_like_initial(&unknown));
    }

    #[test]
    fn server_may_answer_in_version_2_with_the_same_connection_id() {
        let dcid = [0x22; 12];
        let (ch, sh) = hellos("compat.example", 0x1301);
        let first = seal_initial(1, &dcid, true, 0, &crypto(0, &ch));
        let mut flow = flow_of(&first);
        flow.datagram(true, &first);
        flow.datagram(false, &seal_initial(0x6b33_43cf, &dcid, false, 0, &crypto(0, &sh)));
        assert_eq!(flow.summary.server_hello.as_ref().map(|s| s.cipher), Some(0x1301));
    }

    #[test]
    fn frames_in_any_order_among_acks_pings_and_padding() {
        let dcid = [0x33; 8];
        let (ch, sh) = hellos("chaos.example", 0x1303);
        // Chrome's "chaos protection": the ClientHello cut into CRYPTO frames sent out of order,
        // with PING and PADDING between; the rest of it in a second packet.
        let mut frames = crypto(20, &ch[20..40]);
        frames.extend_from_slice(&[0x01, 0x00, 0x00]);
        frames.extend_from_slice(&crypto(0, &ch[..20]));
        let first = seal_initial(1, &dcid, true, 0, &frames);
        let mut flow = flow_of(&first);
        flow.datagram(true, &first);
        assert!(flow.summary.client_hello.is_none());
        flow.datagram(true, &seal_initial(1, &dcid, true, 1, &crypto(40, &ch[40..])));
        assert!(flow.summary.client_hello.is_some());
        // The server's Initial: an ACK (with ECN counts) before its CRYPTO frame.
        let mut frames = vec![0x03, 0x01, 0x00, 0x01, 0x00, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00];
        frames.extend_from_slice(&crypto(0, &sh));
        flow.datagram(false, &seal_initial(1, &dcid, false, 0, &frames));
        assert_eq!(flow.summary.server_hello.as_ref().map(|s| s.cipher), Some(0x1303));
    }

    #[test]
    fn a_server_that_closes_gives_no_server_hello() {
        let dcid = [0x44; 8];
        let (ch, _) = hellos("closed.example", 0x1301);
        let first = seal_initial(1, &dcid, true, 0, &crypto(0, &ch));
        let mut flow = flow_of(&first);
        flow.datagram(true, &first);
        // CONNECTION_CLOSE (0x1c): error code, frame type, reason "no".
        let close = [0x1c, 0x01, 0x06, 0x02, b'n', b'o'];
        flow.datagram(false, &seal_initial(1, &dcid, false, 0, &close));
        assert!(flow.summary.client_hello.is_some());
        assert!(flow.summary.server_hello.is_none());
        assert!(!flow.done());
    }

    /// A version 1 Retry from the server giving the client `scid` as its new destination.
    fn retry(scid: &[u8]) -> Vec<u8> {
        let mut r = vec![0xf0, 0, 0, 0, 1, 4, 9, 9, 9, 9, scid.len() as u8];
        r.extend_from_slice(scid);
        r.extend_from_slice(b"token");
        r.extend_from_slice(&[0xee; 16]); // integrity tag
        r
    }

    #[test]
    fn only_the_first_retry_before_the_servers_initial_changes_the_keys() {
        let (first_dcid, retry_dcid, other) = ([0x55; 8], [0x66; 8], [0x77; 8]);
        let (ch, sh) = hellos("retry.example", 0x1301);
        let first = seal_initial(1, &first_dcid, true, 0, &crypto(0, &ch[..10]));
        let mut flow = flow_of(&first);
        flow.datagram(true, &first);
        flow.datagram(false, &retry(&retry_dcid));
        // A second Retry (a stateless server answering a retransmission) is not taken.
        flow.datagram(false, &retry(&other));
        flow.datagram(true, &seal_initial(1, &retry_dcid, true, 1, &crypto(0, &ch)));
        assert!(flow.summary.client_hello.is_some());
        flow.datagram(false, &seal_initial(1, &retry_dcid, false, 0, &crypto(0, &sh[..10])));
        // Nor one after the server's Initial began.
        flow.datagram(false, &retry(&other));
        flow.datagram(false, &seal_initial(1, &retry_dcid, false, 1, &crypto(10, &sh[10..])));
        assert_eq!(flow.summary.server_hello.as_ref().map(|s| s.cipher), Some(0x1301));
    }

    #[test]
    fn packets_alternating_versions_derive_keys_a_bounded_number_of_times() {
        let dcid = [0x88; 8];
        let (ch, _) = hellos("many.example", 0x1301);
        let first = seal_initial(1, &dcid, true, 0, &crypto(0, &ch[..10]));
        let mut flow = flow_of(&first);
        // One datagram of 150 Initials of 9 bytes each, versions 1 and 2 in turn.
        let mut datagram = Vec::new();
        for i in 0..150 {
            let (first, version) = if i % 2 == 0 { (0xc0, 1u32) } else { (0xd0, 0x6b33_43cf) };
            datagram.push(first);
            datagram.extend_from_slice(&version.to_be_bytes());
            datagram.extend_from_slice(&[0, 0, 0, 0]);
        }
        for _ in 0..10 {
            flow.datagram(true, &datagram);
            flow.datagram(true, &seal_initial(0x6b33_43cf, &dcid, true, 1, b"x"));
            flow.datagram(true, &seal_initial(1, &dcid, true, 1, b"x"));
        }
        assert!(flow.rekeys <= MAX_REKEYS);
    }

    proptest::proptest! {
        /// Any frames cut from one stream, in any order and overlapping, put together give a
        /// prefix of the stream: all of it when they cover it.
        #[test]
        fn crypto_frames_give_a_prefix_of_their_stream(
            stream in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..3000),
            cuts in proptest::collection::vec((0..3000usize, 1..800usize), 1..30),
            cover in proptest::prelude::any::<bool>(),
        ) {
            let mut frames: Vec<(usize, usize)> = cuts
                .iter()
                .map(|&(at, len)| (at % stream.len(), len.min(stream.len() - at % stream.len())))
                .collect();
            if cover {
                frames.extend((0..stream.len()).step_by(700).map(|at| (at, 700.min(stream.len() - at))));
            }
            let mut c = Crypto::default();
            for &(at, len) in &frames {
                c.add(at as u64, &stream[at..at + len]);
            }
            proptest::prop_assert!(stream.starts_with(&c.data));
            if cover {
                proptest::prop_assert_eq!(&c.data, &stream);
                proptest::prop_assert!(c.ahead.is_empty());
            }
        }

        #[test]
        fn garbage_never_panics(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1400),
                                b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                                length in 0..64u8) {
            let _ = looks_like_initial(&a);
            let mut client_initial = a.clone();
            // A v1 Initial header with an 8-byte DCID in front of the noise.
            let mut head = vec![0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0];
            head.extend_from_slice(&[0x44, 0xd0]);
            head.append(&mut client_initial);
            if let Some(mut flow) = QuicFlow::new(0, &head, true) {
                flow.datagram(true, &head);
                flow.datagram(false, &b);
                flow.datagram(true, &a);
                // Initials of every short length (one-byte Length field), as the fuzzer found
                // one shorter than its header protection sample.
                let mut short = head[..16].to_vec();
                short.push(length);
                short.extend_from_slice(&a);
                flow.datagram(true, &short);
                flow.datagram(false, &short);
            }
            crypto_frames(&b, |_, _| {});
        }
    }
}
