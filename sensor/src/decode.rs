//! Packet decoding: raw frame bytes in, the fields flow tracking needs out. Pure: no I/O, no clock.
//! Hostile or truncated input is an error value with a fixed reason, never a panic.

use etherparse::{
    LaxIpPayloadSlice, LaxIpv4Slice, LaxIpv6Slice, LaxNetSlice, LaxSlicedPacket, LinkSlice,
    TransportSlice,
};
use std::net::IpAddr;

/// Link-layer header types (the pcap LINKTYPE_ values) the decoder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Raw IPv4 or IPv6, no link header.
    Raw,
    /// BSD loopback: a 4-byte address family in host byte order.
    Null,
    /// Linux "cooked" capture v1 (`tcpdump -i any` before libpcap 1.10).
    LinuxSll,
    /// Linux "cooked" capture v2 (`tcpdump -i any` and `tshark -i any` with libpcap 1.10 and
    /// later): a 20-byte header that starts with the EtherType.
    LinuxSll2,
    /// PPP (RFC 1661), with or without the HDLC-like address and control bytes `ff 03`.
    Ppp,
    /// PPP in HDLC-like framing (`ff 03`, or Cisco HDLC's address byte), always 4 header bytes.
    PppSerial,
    /// IEEE 802.11 frames as the radio sent them (data frames carry LLC/SNAP and an EtherType).
    Ieee80211,
    /// IEEE 802.11 behind a radiotap header (monitor-mode captures).
    Radiotap,
    /// Linux netfilter log (`nflog:` interfaces): a header, then type-length-value attributes,
    /// one of which is the packet.
    Nflog,
    /// FDDI: a 13-byte MAC header and an 8-byte LLC/SNAP header, then (as Zeek takes it) IP.
    Fddi,
}

impl LinkType {
    /// Map a pcap link-type number to a decoder, or None when unsupported.
    pub fn from_pcap(linktype: i32) -> Option<LinkType> {
        match linktype {
            1 => Some(LinkType::Ethernet),
            12 | 14 | 101 | 228 | 229 => Some(LinkType::Raw),
            0 | 108 => Some(LinkType::Null),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            9 => Some(LinkType::Ppp),
            50 => Some(LinkType::PppSerial),
            105 => Some(LinkType::Ieee80211),
            127 => Some(LinkType::Radiotap),
            239 => Some(LinkType::Nflog),
            10 => Some(LinkType::Fddi),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub seq: u32,
    pub ack_number: u32,
    /// The advertised window as sent (unscaled).
    pub window: u16,
}

/// One decoded IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number of the transport.
    pub proto: u8,
    /// Ports for TCP/UDP; for ICMP the message type and code.
    pub src_port: u16,
    pub dst_port: u16,
    /// IP-level length from the header (what Zeek counts as ip_bytes), not the captured length.
    pub ip_len: u32,
    /// Transport payload length per the headers (may exceed what was captured).
    pub payload_len: u32,
    /// The captured part of the transport payload.
    pub payload: &'a [u8],
    pub tcp: Option<TcpInfo>,
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// The UDP packet that carried this one, when it came out of a UDP tunnel (VXLAN, Geneve,
    /// AYIYA): Zeek logs that outer connection too. Boxed: tunnels are rare, and the common
    /// packet stays small.
    pub outer: Option<Box<OuterUdp>>,
}

impl Packet<'_> {
    /// A placeholder to decode into ([`decode_into`]): no addresses, ports or payload.
    pub const EMPTY: Packet<'static> = Packet {
        src: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        proto: 0,
        src_port: 0,
        dst_port: 0,
        ip_len: 0,
        payload_len: 0,
        payload: &[],
        tcp: None,
        vlan: None,
        inner_vlan: None,
        icmp: None,
        outer: None,
    };
}

/// The outer UDP packet of a tunnelled one: what its own flow needs (the payload is the tunnel,
/// not analysed). `outer` is the tunnel around it, if it came out of one too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterUdp {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub ip_len: u32,
    pub payload_len: u32,
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    pub outer: Option<Box<OuterUdp>>,
}

impl OuterUdp {
    /// Give the outermost packet of the chain these VLAN tags (those of the frame).
    pub fn tag_outermost(&mut self, vlan: Option<u16>, inner_vlan: Option<u16>) {
        match self.outer.as_deref_mut() {
            Some(next) => next.tag_outermost(vlan, inner_vlan),
            None => {
                self.vlan = vlan;
                self.inner_vlan = inner_vlan;
            }
        }
    }

    /// The outer packet as the flow table sees it: UDP, its lengths, no payload to analyse.
    pub fn packet(&self) -> Packet<'static> {
        Packet {
            src: self.src,
            dst: self.dst,
            proto: 17,
            src_port: self.src_port,
            dst_port: self.dst_port,
            ip_len: self.ip_len,
            payload_len: self.payload_len,
            payload: &[],
            tcp: None,
            vlan: self.vlan,
            inner_vlan: self.inner_vlan,
            icmp: None,
            outer: None,
        }
    }
}

/// Zeek's ICMP "ports": the source port is the message type; the destination port is the type of
/// the matching reply or request for request/reply pairs (so both directions share one flow),
/// and the code for one-way messages.
pub fn icmp_counterpart(v6: bool, icmp_type: u8, code: u8) -> u8 {
    let pairs: &[(u8, u8)] = if v6 {
        &[(128, 129), (133, 134), (135, 136), (130, 131), (139, 140), (144, 145)]
    } else {
        &[(8, 0), (13, 14), (15, 16), (17, 18), (10, 9)]
    };
    for &(a, b) in pairs {
        if icmp_type == a {
            return b;
        }
        if icmp_type == b {
            return a;
        }
    }
    code
}

/// Why a frame yielded no packet. The reasons are a fixed set: they label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame too short for its link header")]
    TruncatedLink,
    #[error("not an IP packet")]
    NotIp,
    #[error("malformed or truncated IP header")]
    BadIpHeader,
    #[error("malformed or truncated transport header")]
    BadTransportHeader,
    #[error("IP fragment (held for reassembly)")]
    Fragment,
}

impl DecodeError {
    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::TruncatedLink => "truncated_link",
            DecodeError::NotIp => "not_ip",
            DecodeError::BadIpHeader => "bad_ip_header",
            DecodeError::BadTransportHeader => "bad_transport_header",
            DecodeError::Fragment => "fragment",
        }
    }

    pub const ALL: [DecodeError; 5] = [
        DecodeError::TruncatedLink,
        DecodeError::NotIp,
        DecodeError::BadIpHeader,
        DecodeError::BadTransportHeader,
        DecodeError::Fragment,
    ];
}

/// Decode one captured frame.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let mut packet = Packet::EMPTY;
    decode_into(link, frame, &mut packet).map(|()| packet)
}

/// [`decode`], written into `packet` (whose earlier content does not matter; after an error
/// it holds nothing to use). The common frame's fields are stored where the caller reads them:
/// a returned `Packet` was copied with wide loads right after the narrow stores that built it,
/// and each such load waited for them (store-to-load forwarding fails).
pub fn decode_into<'a>(
    link: LinkType,
    frame: &'a [u8],
    packet: &mut Packet<'a>,
) -> Result<(), DecodeError> {
    if link == LinkType::Ethernet {
        if let Some(done) = ethernet_tcp_udp(frame, packet) {
            return done;
        }
    }
    let sliced = slice(link, frame)?;
    *packet = from_sliced(&sliced, 0)?;
    Ok(())
}

/// The common case, read straight from the frame's bytes: Ethernet, at most two VLAN tags, an
/// IPv4 packet (options allowed) or an IPv6 packet without extension headers, not a fragment,
/// TCP or UDP with a readable header. None for anything else, which takes the full path through
/// etherparse; both give the same `Packet` where this one answers (a property test compares them
/// on damaged frames). The lengths follow etherparse's lax slices: a length field that is zero,
/// too small or past the captured bytes gives way to what was captured.
/// The packet is written into `packet`, which is left as it was when this answers None.
fn ethernet_tcp_udp<'a>(
    frame: &'a [u8],
    packet: &mut Packet<'a>,
) -> Option<Result<(), DecodeError>> {
    let mut ether_type = be16(frame, 12)?;
    let mut at = 14;
    let mut vlans = [None; 2];
    for vlan in &mut vlans {
        // 802.1Q, 802.1ad and the older QinQ type.
        if !matches!(ether_type, 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        *vlan = Some(be16(frame, at)? & 0x0fff);
        ether_type = be16(frame, at + 2)?;
        at += 4;
    }
    if !matches!(ether_type, 0x0800 | 0x86dd) {
        return None;
    }
    // The version nibble decides, whatever the EtherType said (as etherparse does).
    let ip = frame.get(at..)?;
    let (src, dst, proto, ip_len, header_len, ip_payload) = match ip.first()? >> 4 {
        4 => {
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            if header_len < 20 || ip.len() < header_len {
                return None;
            }
            // More fragments, or a fragment offset (the DF bit aside): reassembly's business.
            if be16(ip, 6)? & 0x3fff != 0 {
                return None;
            }
            let total = usize::from(be16(ip, 2)?);
            let end = if total < header_len || ip.len() < total { ip.len() } else { total };
            let payload = &ip[header_len..end];
            // A zero total length (TSO on the capturing host) falls back to what was captured.
            let ip_len = if total == 0 { header_len + payload.len() } else { total };
            let src: [u8; 4] = ip[12..16].try_into().ok()?;
            let dst: [u8; 4] = ip[16..20].try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), ip[9], ip_len as u32, header_len as u32, payload)
        }
        6 => {
            if ip.len() < 40 {
                return None;
            }
            let payload_len = usize::from(be16(ip, 4)?);
            let rest = ip.len() - 40;
            let end = if (payload_len == 0 && rest > 0) || rest < payload_len {
                ip.len()
            } else {
                40 + payload_len
            };
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            let dst: [u8; 16] = ip[24..40].try_into().ok()?;
            // The next header must be the transport itself: extension headers take the full path.
            (IpAddr::from(src), IpAddr::from(dst), ip[6], 40 + payload_len as u32, 40, &ip[40..end])
        }
        _ => return None,
    };
    // Transport length per the IP header, so truncated captures still count the real sizes.
    let transport_len = u64::from(ip_len.saturating_sub(header_len));
    let src_port = be16(ip_payload, 0)?;
    let dst_port = be16(ip_payload, 2)?;
    let (payload_len, payload, tcp) = match proto {
        6 => {
            let tcp_header_len = usize::from(*ip_payload.get(12)? >> 4) * 4;
            if tcp_header_len < 20 || ip_payload.len() < tcp_header_len {
                return None;
            }
            let flags = ip_payload[13];
            let tcp = TcpInfo {
                syn: flags & 0x02 != 0,
                ack: flags & 0x10 != 0,
                fin: flags & 0x01 != 0,
                rst: flags & 0x04 != 0,
                seq: be32(ip_payload, 4)?,
                ack_number: be32(ip_payload, 8)?,
                window: be16(ip_payload, 14)?,
            };
            (
                transport_len.saturating_sub(tcp_header_len as u64),
                &ip_payload[tcp_header_len..],
                Some(tcp),
            )
        }
        17 => {
            if ip_payload.len() < 8 {
                return None;
            }
            let udp_len = usize::from(be16(ip_payload, 4)?);
            let udp = if ip_payload.len() < udp_len || udp_len < 8 {
                ip_payload
            } else {
                &ip_payload[..udp_len]
            };
            (transport_len.saturating_sub(8), &udp[8..], None)
        }
        _ => return None,
    };
    *packet = Packet {
        src,
        dst,
        proto,
        src_port,
        dst_port,
        ip_len,
        payload_len: payload_len as u32,
        payload,
        tcp,
        vlan: vlans[0],
        inner_vlan: vlans[1],
        icmp: None,
        outer: None,
    };
    if proto == 17 {
        // A UDP tunnel's packet comes out as the packet inside it.
        match decapsulate(packet, 0) {
            Some(Ok(inner)) => *packet = inner,
            Some(Err(e)) => return Some(Err(e)),
            None => {}
        }
    }
    Some(Ok(()))
}

/// The big-endian `u16` at `at`, if the bytes are there.
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// What the packet's fields need from its IP layer, whichever version.
struct IpView<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// IP-level length from the header.
    ip_len: u32,
    /// The IP header with its options or extension headers.
    header_len: u32,
    payload: LaxIpPayloadSlice<'a>,
    fragmented: bool,
}

impl<'a> IpView<'a> {
    fn v4(v4: &LaxIpv4Slice<'a>) -> IpView<'a> {
        let header = v4.header();
        let total = u32::from(header.total_len());
        let header_len = u32::from(header.ihl()) * 4;
        let payload = v4.payload().clone();
        // A zero total length (TSO on the capturing host) falls back to what was captured.
        let ip_len = if total == 0 { header_len + payload.payload.len() as u32 } else { total };
        IpView {
            src: IpAddr::from(header.source()),
            dst: IpAddr::from(header.destination()),
            ip_len,
            header_len,
            payload,
            fragmented: v4.is_payload_fragmented(),
        }
    }

    fn v6(v6: &LaxIpv6Slice<'a>) -> IpView<'a> {
        let header = v6.header();
        IpView {
            src: IpAddr::from(header.source()),
            dst: IpAddr::from(header.destination()),
            ip_len: 40 + u32::from(header.payload_length()),
            header_len: 40 + v6.extensions().slice().len() as u32,
            payload: v6.payload().clone(),
            fragmented: v6.is_payload_fragmented(),
        }
    }
}

/// One IP fragment, as reassembly needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    /// Protocol of the fragmented payload.
    pub proto: u8,
    /// Offset in 8-byte units.
    pub offset: u16,
    pub more: bool,
    pub ttl: u8,
    pub data: &'a [u8],
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
}

/// The fragment a frame carries, when `decode` said `DecodeError::Fragment`: the frame's own IP
/// packet, or the packet inside the tunnels it carries (with those tunnels' UDP packets, innermost
/// first, as in `Packet::outer`).
pub fn fragment_of(link: LinkType, frame: &[u8]) -> Option<(Fragment<'_>, Option<Box<OuterUdp>>)> {
    fragment_in(&slice(link, frame).ok()?, 0)
}

fn fragment_in<'a>(
    sliced: &LaxSlicedPacket<'a>,
    depth: u8,
) -> Option<(Fragment<'a>, Option<Box<OuterUdp>>)> {
    if let Some(fragment) = own_fragment(sliced) {
        return Some((fragment, None));
    }
    if depth >= MAX_TUNNEL_DEPTH {
        return None;
    }
    // Not a fragment itself: the packet as it is (a depth that unwraps nothing), then its tunnel.
    let outer = from_sliced(sliced, MAX_TUNNEL_DEPTH).ok()?;
    let (mut fragment, mut chain) = fragment_in(&tunnel_inner(&outer)?, depth + 1)?;
    if fragment.vlan.is_none() {
        fragment.vlan = outer.vlan;
        fragment.inner_vlan = outer.inner_vlan;
    }
    append_outer(&mut chain, &outer);
    Some((fragment, chain))
}

/// The IP packet of `sliced`, if it is a fragment.
fn own_fragment<'a>(sliced: &LaxSlicedPacket<'a>) -> Option<Fragment<'a>> {
    let mut vlans = sliced.link_exts.iter().filter_map(|ext| match ext {
        etherparse::LaxLinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
        _ => None,
    });
    let (vlan, inner_vlan) = (vlans.next(), vlans.next());
    match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            if !h.is_fragmenting_payload() {
                return None;
            }
            Some(Fragment {
                src: IpAddr::from(h.source()),
                dst: IpAddr::from(h.destination()),
                id: u32::from(h.identification()),
                proto: v4.payload().ip_number.0,
                offset: h.fragments_offset().value(),
                more: h.more_fragments(),
                ttl: h.ttl(),
                data: v4.payload().payload,
                vlan,
                inner_vlan,
            })
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let (offset, more, id) =
                ipv6_fragment_header(h.next_header().0, v6.extensions().slice())?;
            Some(Fragment {
                src: IpAddr::from(h.source()),
                dst: IpAddr::from(h.destination()),
                id,
                proto: v6.payload().ip_number.0,
                offset,
                more,
                ttl: h.hop_limit(),
                data: v6.payload().payload,
                vlan,
                inner_vlan,
            })
        }
        _ => None,
    }
}

/// Walk IPv6 extension headers to the fragment header: (offset in 8-byte units, more, id).
fn ipv6_fragment_header(mut next: u8, mut exts: &[u8]) -> Option<(u16, bool, u32)> {
    loop {
        let len = match next {
            0 | 43 | 60 => (usize::from(*exts.get(1)?) + 1) * 8,
            51 => (usize::from(*exts.get(1)?) + 2) * 4,
            44 => {
                let b = exts.get(..8)?;
                let off = u16::from_be_bytes([b[2], b[3]]);
                let id = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                return Some((off >> 3, off & 1 == 1, id));
            }
            _ => return None,
        };
        next = *exts.first()?;
        exts = exts.get(len..)?;
    }
}

#[inline(always)]
fn slice(link: LinkType, frame: &[u8]) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    Ok(unwrapped(slice_link(link, frame)?))
}

/// A sliced frame that etherparse left without an IP layer (and without an error) as what
/// `encapsulated_ip` finds under it; anything else, or when it finds nothing, the frame itself.
#[inline(always)]
fn unwrapped(sliced: LaxSlicedPacket<'_>) -> LaxSlicedPacket<'_> {
    if sliced.net.is_none() && sliced.stop_err.is_none() {
        if let Some(inner) = encapsulated_ip(&sliced) {
            return inner;
        }
    }
    sliced
}

/// Most MPLS labels a frame may carry before the stack counts as damaged.
const MAX_MPLS_LABELS: usize = 8;

/// What a frame whose EtherType etherparse does not decode carries, sliced with the frame's
/// link header and VLAN tags kept (the inner ones where there are any):
/// - the IP packet under an MPLS label stack (EtherType 0x8847 or 0x8848) or in a PPPoE session
///   (0x8864, PPP protocol 0x0021 IPv4 or 0x0057 IPv6). As in Zeek, the payload after the
///   bottom-of-stack label is IPv4 or IPv6 by its version nibble; anything else (a pseudowire, a
///   control word, PPP control protocols) is not decoded;
/// - what follows a Cisco VN-Tag (0x8926: a 4-byte tag, then the next EtherType);
/// - the customer frame inside an 802.1ah provider backbone frame (0x88e7: a 4-byte I-TAG, then
///   an Ethernet header) or a Cisco FabricPath frame (0x8903: 2 bytes, then an Ethernet header).
///
/// Up to four of these may nest.
fn encapsulated_ip<'a>(sliced: &LaxSlicedPacket<'a>) -> Option<LaxSlicedPacket<'a>> {
    let mut outer = sliced.clone();
    for _ in 0..4 {
        let payload = match outer.link_exts.last() {
            Some(etherparse::LaxLinkExtSlice::Vlan(vlan)) => vlan.payload(),
            Some(_) => return None,
            None => match &outer.link {
                Some(LinkSlice::Ethernet2(ethernet)) => ethernet.payload(),
                Some(LinkSlice::EtherPayload(payload)) => payload.clone(),
                _ => return None,
            },
        };
        let rest = payload.payload;
        let mut inner = match payload.ether_type.0 {
            0x8847 | 0x8848 => LaxSlicedPacket::from_ip(below_mpls_labels(rest)?).ok()?,
            0x8864 => match rest.get(6..8)? {
                [0x00, 0x21] | [0x00, 0x57] => LaxSlicedPacket::from_ip(rest.get(8..)?).ok()?,
                _ => return None,
            },
            0x8926 => {
                let next = etherparse::EtherType(be16(rest, 4)?);
                LaxSlicedPacket::from_ether_type(next, rest.get(6..)?)
            }
            0x88e7 => LaxSlicedPacket::from_ethernet(rest.get(4..)?).ok()?,
            0x8903 => LaxSlicedPacket::from_ethernet(rest.get(2..)?).ok()?,
            _ => return None,
        };
        if inner.link_exts.is_empty() {
            inner.link_exts = outer.link_exts.clone();
        }
        if !matches!(inner.link, Some(LinkSlice::Ethernet2(_))) {
            inner.link = outer.link.clone();
        }
        if inner.net.is_some() {
            return Some(inner);
        }
        if inner.stop_err.is_some() {
            return None;
        }
        outer = inner;
    }
    None
}

/// What follows the bottom-of-stack label, when it is IPv4 or IPv6.
fn below_mpls_labels(mut rest: &[u8]) -> Option<&[u8]> {
    for _ in 0..MAX_MPLS_LABELS {
        let bottom = rest.get(2)? & 0x01 == 1;
        rest = rest.get(4..)?;
        if bottom {
            return matches!(rest.first()? >> 4, 4 | 6).then_some(rest);
        }
    }
    None
}

#[inline(always)]
fn slice_link(link: LinkType, frame: &[u8]) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    Ok(match link {
        LinkType::Ethernet => {
            LaxSlicedPacket::from_ethernet(frame).map_err(|_| DecodeError::TruncatedLink)?
        }
        LinkType::Raw => LaxSlicedPacket::from_ip(frame).map_err(|_| DecodeError::BadIpHeader)?,
        LinkType::Null => {
            let rest = frame.get(4..).ok_or(DecodeError::TruncatedLink)?;
            LaxSlicedPacket::from_ip(rest).map_err(|_| DecodeError::BadIpHeader)?
        }
        LinkType::LinuxSll => {
            let rest = frame.get(16..).ok_or(DecodeError::TruncatedLink)?;
            let ether_type = u16::from_be_bytes([frame[14], frame[15]]);
            LaxSlicedPacket::from_ether_type(etherparse::EtherType(ether_type), rest)
        }
        LinkType::LinuxSll2 => {
            let rest = frame.get(20..).ok_or(DecodeError::TruncatedLink)?;
            let ether_type = u16::from_be_bytes([frame[0], frame[1]]);
            LaxSlicedPacket::from_ether_type(etherparse::EtherType(ether_type), rest)
        }
        LinkType::Ppp => {
            let rest = frame.strip_prefix(&[0xff, 0x03]).unwrap_or(frame);
            let protocol = be16(rest, 0).ok_or(DecodeError::TruncatedLink)?;
            ppp_ip(protocol, &rest[2..])?
        }
        LinkType::PppSerial => {
            let protocol = be16(frame, 2).ok_or(DecodeError::TruncatedLink)?;
            ppp_ip(protocol, &frame[4..])?
        }
        LinkType::Ieee80211 => ieee80211(frame)?,
        LinkType::Radiotap => {
            // The radiotap header's length is little-endian, at bytes 2-3.
            let len = frame.get(2..4).ok_or(DecodeError::TruncatedLink)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            ieee80211(frame.get(len..).ok_or(DecodeError::TruncatedLink)?)?
        }
        LinkType::Nflog => nflog(frame)?,
        LinkType::Fddi => {
            let ip =
                frame.get(21..).filter(|ip| !ip.is_empty()).ok_or(DecodeError::TruncatedLink)?;
            LaxSlicedPacket::from_ip(ip).map_err(|_| DecodeError::BadIpHeader)?
        }
    })
}

/// The IP packet a PPP frame carries (protocol 0x0021 IPv4, 0x0057 IPv6, 0x0281 MPLS over IP).
fn ppp_ip(protocol: u16, rest: &[u8]) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    let ip = match protocol {
        0x0021 | 0x0057 => rest,
        0x0281 => below_mpls_labels(rest).ok_or(DecodeError::NotIp)?,
        _ => return Err(DecodeError::NotIp),
    };
    LaxSlicedPacket::from_ip(ip).map_err(|_| DecodeError::BadIpHeader)
}

/// An 802.11 data frame's content, as Zeek reads it: data frames with data (not the "null"
/// subtypes), the fourth address when both DS bits are set, the QoS control field of QoS
/// subtypes, then an LLC/SNAP header with a zero organisation code and the EtherType.
/// Management and control frames, encrypted QoS frames and A-MSDU aggregates are not IP here.
fn ieee80211(frame: &[u8]) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    let (fc, flags) = match frame {
        [fc, flags, ..] if frame.len() > 24 => (*fc, *flags),
        _ => return Err(DecodeError::TruncatedLink),
    };
    let data_type = (fc >> 2) & 0x02 != 0;
    let no_data = (fc >> 4) & 0x04 != 0;
    if !data_type || no_data {
        return Err(DecodeError::NotIp);
    }
    let mut len = 24;
    if flags & 0x03 == 0x03 {
        len += 6;
    }
    if (fc >> 4) & 0x08 != 0 {
        let qos = *frame.get(len).ok_or(DecodeError::TruncatedLink)?;
        let amsdu = qos & 0x80 != 0;
        let protected = flags & 0x40 != 0;
        if amsdu || protected {
            return Err(DecodeError::NotIp);
        }
        len += 2;
    }
    let llc = frame.get(len..len + 8).ok_or(DecodeError::TruncatedLink)?;
    if llc[..6] != [0xaa, 0xaa, 0x03, 0, 0, 0] {
        return Err(DecodeError::NotIp);
    }
    let ether_type = u16::from_be_bytes([llc[6], llc[7]]);
    Ok(LaxSlicedPacket::from_ether_type(etherparse::EtherType(ether_type), &frame[len + 8..]))
}

/// The packet in an NFLOG record: after the 4-byte header (address family, version 0, resource
/// id), attributes of (length, type) in the capturing host's byte order (libpcap swaps them for
/// a file from another host), each padded to 4 bytes; type 9 holds the packet.
fn nflog(frame: &[u8]) -> Result<LaxSlicedPacket<'_>, DecodeError> {
    if frame.len() <= 4 {
        return Err(DecodeError::TruncatedLink);
    }
    if frame[1] != 0 {
        return Err(DecodeError::NotIp);
    }
    let mut rest = &frame[4..];
    loop {
        let tlv = rest.get(..4).ok_or(DecodeError::TruncatedLink)?;
        let len = usize::from(u16::from_ne_bytes([tlv[0], tlv[1]]));
        if u16::from_ne_bytes([tlv[2], tlv[3]]) == 9 {
            let packet = &rest[4..];
            return LaxSlicedPacket::from_ip(packet).map_err(|_| DecodeError::BadIpHeader);
        }
        if len < 4 {
            return Err(DecodeError::TruncatedLink);
        }
        rest = rest.get(len.next_multiple_of(4)..).ok_or(DecodeError::TruncatedLink)?;
    }
}

/// How many tunnel layers are unwrapped at most.
const MAX_TUNNEL_DEPTH: u8 = 3;

/// The packet inside a tunnel Zeek decapsulates (GRE v0/v1, IP-in-IP, and over UDP VXLAN,
/// Geneve, GTPv1, AYIYA and Teredo), if this is one. A packet out of a UDP tunnel carries the outer UDP
/// packet in `outer`, whose flow Zeek logs as well (service `vxlan`, `teredo`, ...).
fn decapsulate<'a>(outer: &Packet<'a>, depth: u8) -> Option<Result<Packet<'a>, DecodeError>> {
    if depth >= MAX_TUNNEL_DEPTH {
        return None;
    }
    let inner = tunnel_inner(outer)?;
    match from_sliced(&inner, depth + 1) {
        Ok(mut packet) => {
            if packet.vlan.is_none() {
                packet.vlan = outer.vlan;
                packet.inner_vlan = outer.inner_vlan;
            }
            append_outer(&mut packet.outer, outer);
            Some(Ok(packet))
        }
        // The packet inside is a fragment: `fragment_of` finds it, with the tunnel around it.
        Err(DecodeError::Fragment) => Some(Err(DecodeError::Fragment)),
        // Not a packet after all: the outer one stands.
        Err(_) => None,
    }
}

/// The tunnel's content, if `outer` is a tunnel packet Zeek unwraps.
fn tunnel_inner<'a>(outer: &Packet<'a>) -> Option<LaxSlicedPacket<'a>> {
    Some(match outer.proto {
        4 | 41 => LaxSlicedPacket::from_ip(outer.payload).ok()?,
        47 => {
            let b = outer.payload;
            let (flags, version) = (*b.first()?, *b.get(1)? & 0x07);
            let ether_type = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
            let mut len = 4;
            match version {
                0 => {
                    if flags & 0xc0 != 0 {
                        len += 4; // checksum and reserved
                    }
                    if flags & 0x20 != 0 {
                        len += 4; // key
                    }
                    if flags & 0x10 != 0 {
                        len += 4; // sequence number
                    }
                }
                1 => {
                    // Enhanced GRE (PPTP): key always present, sequence and acknowledgment optional.
                    len += 4;
                    if flags & 0x10 != 0 {
                        len += 4;
                    }
                    if b[1] & 0x80 != 0 {
                        len += 4;
                    }
                }
                _ => return None,
            }
            let rest = b.get(len..)?;
            match ether_type {
                0x0800 | 0x86dd => LaxSlicedPacket::from_ip(rest).ok()?,
                0x6558 => ethernet_inner(rest)?,
                // ERSPAN type I (no sequence number: no ERSPAN header) and II (8 bytes), then
                // the mirrored Ethernet frame.
                0x88be if version == 0 => {
                    ethernet_inner(rest.get(if flags & 0x10 != 0 { 8 } else { 0 }..)?)?
                }
                // ERSPAN type III: 12 bytes, and 8 more when its last bit (O) says a
                // platform-specific subheader follows.
                0x22eb if version == 0 => {
                    let header = if rest.get(11)? & 0x01 != 0 { 20 } else { 12 };
                    ethernet_inner(rest.get(header..)?)?
                }
                0x880b => {
                    // PPP: optional address/control bytes, then the protocol (0x0021 IPv4, 0x0057 IPv6).
                    let ppp = rest.strip_prefix(&[0xff, 0x03]).unwrap_or(rest);
                    match ppp {
                        [0x00, 0x21 | 0x57, ip @ ..] | [0x21 | 0x57, ip @ ..] => {
                            LaxSlicedPacket::from_ip(ip).ok()?
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        17 => udp_tunnel(outer)?,
        _ => return None,
    })
}

/// An Ethernet frame carried in a tunnel, unwrapped as a captured one is.
fn ethernet_inner(frame: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    Some(unwrapped(LaxSlicedPacket::from_ethernet(frame).ok()?))
}

/// Put the UDP packet `outer` (if it is UDP) at the end of a chain of tunnels, which runs from the
/// innermost tunnel outwards.
fn append_outer(chain: &mut Option<Box<OuterUdp>>, outer: &Packet<'_>) {
    if outer.proto != 17 {
        return;
    }
    let mut slot = chain;
    while let Some(next) = slot {
        slot = &mut next.outer;
    }
    *slot = Some(Box::new(OuterUdp {
        src: outer.src,
        dst: outer.dst,
        src_port: outer.src_port,
        dst_port: outer.dst_port,
        ip_len: outer.ip_len,
        payload_len: outer.payload_len,
        vlan: outer.vlan,
        inner_vlan: outer.inner_vlan,
        outer: None,
    }));
}

/// UDP ports Zeek hands to its tunnel analyzers (`vxlan_ports`, `geneve_ports`, `ayiya_ports`,
/// `teredo_ports`). Zeek forwards by the connection's responder port; a packet here is taken as
/// a tunnel when either of its ports is the tunnel's.
const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;
const AYIYA_PORT: u16 = 5072;
const TEREDO_PORT: u16 = 3544;
/// GTPv1's user and control plane ports (Zeek's `gtpv1_ports`); only G-PDUs carry packets.
const GTP_U_PORT: u16 = 2152;
const GTP_C_PORT: u16 = 2123;

/// The packet inside a UDP tunnel, if `outer` is one.
fn udp_tunnel<'a>(outer: &Packet<'a>) -> Option<LaxSlicedPacket<'a>> {
    let b = outer.payload;
    let on = |port: u16| outer.src_port == port || outer.dst_port == port;
    if on(VXLAN_PORT) {
        // VXLAN: 8-byte header with the I flag, then an Ethernet frame.
        if b.len() < 8 || b[0] & 0x08 == 0 {
            return None;
        }
        return ethernet_inner(&b[8..]);
    }
    if on(GENEVE_PORT) {
        // Geneve: version 0, options length in 4-byte words, then the protocol type of what
        // follows the options.
        let (&first, rest) = b.split_first()?;
        if first >> 6 != 0 || b.len() < 8 {
            return None;
        }
        let start = 8 + usize::from(first & 0x3f) * 4;
        let inner = rest.get(start - 1..)?;
        return match u16::from_be_bytes([b[2], b[3]]) {
            0x6558 => ethernet_inner(inner),
            0x0800 | 0x86dd => LaxSlicedPacket::from_ip(inner).ok(),
            _ => None,
        };
    }
    if on(GTP_U_PORT) || on(GTP_C_PORT) {
        return LaxSlicedPacket::from_ip(gtp_user_data(b)?).ok();
    }
    // AYIYA on its port or by its signature (Zeek's protocol detection).
    if on(AYIYA_PORT) || (b.len() >= 3 && b[1] == 0x52 && b[2] == 0x11) {
        if let Some(inner) = ayiya(b) {
            return LaxSlicedPacket::from_ip(inner).ok();
        }
        if on(AYIYA_PORT) {
            return None;
        }
    }
    let inner = teredo(b, on(TEREDO_PORT))?;
    LaxSlicedPacket::from_ip(inner).ok()
}

/// The IP packet a GTPv1 G-PDU (message type 255, protocol type GTP) carries: after the 8-byte
/// header, 4 optional bytes when any of the E, S, PN flags is set, then extension headers while E
/// is set (each a length in 4-byte units, content, next type). As Zeek's GTPv1 analyser: IPv4 or
/// IPv6 whose length fills the rest exactly.
fn gtp_user_data(b: &[u8]) -> Option<&[u8]> {
    let flags = *b.first()?;
    if b.len() < 8 || flags >> 5 != 1 || flags & 0x10 == 0 || b[1] != 0xff {
        return None;
    }
    let mut at = 8;
    if flags & 0x07 != 0 {
        let mut next = *b.get(11)?;
        at = 12;
        while flags & 0x04 != 0 && next != 0 {
            let len = usize::from(*b.get(at)?) * 4;
            if len == 0 {
                return None;
            }
            next = *b.get(at + len - 1)?;
            at += len;
        }
    }
    let inner = b.get(at..)?;
    let whole = match inner.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes([*inner.get(2)?, *inner.get(3)?])),
        6 => 40 + usize::from(u16::from_be_bytes([*inner.get(4)?, *inner.get(5)?])),
        _ => return None,
    };
    (whole == inner.len()).then_some(inner)
}

/// The IP packet an AYIYA "forward" message carries: 8 bytes of header, the identity (2^n bytes)
/// and the signature (4m bytes), then an IPv4 or IPv6 packet as the next-header byte says.
fn ayiya(b: &[u8]) -> Option<&[u8]> {
    if b.len() < 8 || b[2] & 0x0f != 1 || !matches!(b[3], 4 | 41) {
        return None;
    }
    let header = 8 + (1usize << (b[0] >> 4)) + usize::from(b[1] >> 4) * 4;
    let inner = b.get(header..).filter(|inner| !inner.is_empty())?;
    let version = inner[0] >> 4;
    (version == if b[3] == 4 { 4 } else { 6 }).then_some(inner)
}

/// The IPv6 packet of a Teredo datagram (RFC 4380): optional authentication and origin
/// indication headers, then IPv6 whose payload length fits the datagram. Off port 3544 only
/// what Zeek's protocol detection accepts: one of those headers, or a Teredo (2001:0::/32)
/// address in the IPv6 header.
fn teredo(mut b: &[u8], on_port: bool) -> Option<&[u8]> {
    // Most UDP payloads end here: Teredo starts with a header (0x00) or IPv6 (0x6_).
    if b.len() < 40 || !matches!(b[0], 0x00 | 0x60..=0x6f) {
        return None;
    }
    let mut headers = false;
    if b.len() >= 4 && b[0] == 0 && b[1] == 1 {
        // Authentication: id and auth lengths, nonce (8) and confirmation byte.
        let len = 4 + usize::from(b[2]) + usize::from(b[3]) + 9;
        b = b.get(len..)?;
        headers = true;
    }
    if b.len() >= 8 && b[0] == 0 && b[1] == 0 {
        b = &b[8..]; // origin indication
        headers = true;
    }
    if b.len() < 40 || b[0] >> 4 != 6 {
        return None;
    }
    let teredo_address = |at: usize| b[at..at + 4] == [0x20, 0x01, 0x00, 0x00];
    if !on_port && !headers && !teredo_address(8) && !teredo_address(24) {
        return None;
    }
    let payload = usize::from(u16::from_be_bytes([b[4], b[5]]));
    let bubble = b[6] == 59 && payload == 0;
    // As Zeek: the IPv6 packet must fill the datagram exactly (shorter: truncated; longer: not
    // Teredo), except that a bubble (no next header, nothing in it) may have bytes after it.
    if 40 + payload != b.len() && !(bubble && b.len() > 40) {
        return None;
    }
    Some(&b[..40 + payload])
}

#[inline]
fn from_sliced<'a>(sliced: &LaxSlicedPacket<'a>, depth: u8) -> Result<Packet<'a>, DecodeError> {
    let mut vlans = sliced.link_exts.iter().filter_map(|ext| match ext {
        etherparse::LaxLinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
        _ => None,
    });
    let vlans = [vlans.next(), vlans.next()];
    if matches!(sliced.link, Some(LinkSlice::EtherPayload(_) | LinkSlice::LinuxSllPayload(_)))
        && sliced.net.is_none()
    {
        return Err(DecodeError::NotIp);
    }
    let ip = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => IpView::v4(v4),
        Some(LaxNetSlice::Ipv6(v6)) => IpView::v6(v6),
        Some(LaxNetSlice::Arp(_)) => return Err(DecodeError::NotIp),
        None => {
            return Err(match sliced.stop_err {
                Some((_, etherparse::err::Layer::Ethernet2Header))
                | Some((_, etherparse::err::Layer::VlanHeader)) => DecodeError::TruncatedLink,
                Some(_) => DecodeError::BadIpHeader,
                None => DecodeError::NotIp,
            })
        }
    };
    from_parts(vlans, ip, sliced.transport.as_ref(), depth)
}

/// The packet from its VLAN tags (outer, inner), IP layer and transport slice (None when the
/// transport header was missing or did not parse).
#[inline]
fn from_parts<'a>(
    [vlan, inner_vlan]: [Option<u16>; 2],
    ip: IpView<'a>,
    transport: Option<&TransportSlice<'a>>,
    depth: u8,
) -> Result<Packet<'a>, DecodeError> {
    if ip.fragmented {
        return Err(DecodeError::Fragment);
    }
    let proto = ip.payload.ip_number.0;
    // Transport length per the IP header, so truncated captures still count the real sizes.
    let transport_len = ip.ip_len.saturating_sub(ip.header_len) as u64;

    let mut packet = Packet {
        src: ip.src,
        dst: ip.dst,
        proto,
        src_port: 0,
        dst_port: 0,
        ip_len: ip.ip_len,
        payload_len: 0,
        payload: &[],
        tcp: None,
        vlan,
        inner_vlan,
        icmp: None,
        outer: None,
    };
    match transport {
        Some(TransportSlice::Tcp(tcp)) => {
            packet.src_port = tcp.source_port();
            packet.dst_port = tcp.destination_port();
            let header_len = u64::from(tcp.data_offset()) * 4;
            packet.payload_len = transport_len.saturating_sub(header_len) as u32;
            packet.payload = tcp.payload();
            packet.tcp = Some(TcpInfo {
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
                seq: tcp.sequence_number(),
                ack_number: tcp.acknowledgment_number(),
                window: tcp.window_size(),
            });
        }
        Some(TransportSlice::Udp(udp)) => {
            packet.src_port = udp.source_port();
            packet.dst_port = udp.destination_port();
            packet.payload_len = transport_len.saturating_sub(8) as u32;
            packet.payload = udp.payload();
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            let (t, c) = (icmp.type_u8(), icmp.code_u8());
            packet.src_port = u16::from(t);
            packet.dst_port = u16::from(icmp_counterpart(false, t, c));
            packet.icmp = Some((t, c));
            packet.payload_len = transport_len.saturating_sub(8) as u32;
            packet.payload = icmp.payload();
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let (t, c) = (icmp.type_u8(), icmp.code_u8());
            packet.src_port = u16::from(t);
            packet.dst_port = u16::from(icmp_counterpart(true, t, c));
            packet.icmp = Some((t, c));
            packet.payload_len = transport_len.saturating_sub(8) as u32;
            packet.payload = icmp.payload();
        }
        None => {
            // TCP, UDP and ICMP without a readable header are malformed; other protocols (GRE,
            // ESP, ...) carry no ports and are tracked by address pair only.
            if matches!(proto, 1 | 6 | 17 | 58) {
                return Err(DecodeError::BadTransportHeader);
            }
            packet.payload_len = transport_len as u32;
            packet.payload = ip.payload.payload;
        }
    }
    match decapsulate(&packet, depth) {
        Some(inner) => inner,
        None => Ok(packet),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// The short path's answer as a value.
    fn short_path(frame: &[u8]) -> Option<Result<Packet<'_>, DecodeError>> {
        let mut packet = Packet::EMPTY;
        ethernet_tcp_udp(frame, &mut packet).map(|done| done.map(|()| packet))
    }

    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
            .single_vlan(etherparse::VlanId::try_new(100).expect("vlan"))
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .syn();
        let mut out = Vec::new();
        builder.write(&mut out, payload).expect("build");
        out
    }

    #[test]
    fn the_short_path_takes_plain_tcp_and_udp() {
        for kind in 0..SHORT_PATH_FRAMES {
            let frame = short_path_frame(kind);
            let short = short_path(&frame).expect("short path");
            assert_eq!(short, full_path(&frame));
        }
        assert_eq!(udp_v6_frame(2).len(), 14 + 8 + 40 + 8 + 11);
        let frame = udp_v6_frame(2);
        let p = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert_eq!((p.vlan, p.inner_vlan, p.dst_port), (Some(7), Some(9), 53));
    }

    /// An IPv4 fragment (more-fragments flag, an offset, or both; the DF bit alone is not one)
    /// is left to the full path, which holds it for reassembly.
    #[test]
    fn the_short_path_leaves_fragments_alone() {
        // (kind, where its IPv4 header starts)
        for (kind, ip) in [(0u8, 18usize), (4, 14), (5, 22), (6, 14)] {
            for flags in [[0x20u8, 0], [0, 1], [0x3f, 0xff], [0x40, 0]] {
                let mut frame = short_path_frame(kind);
                frame[ip + 6..ip + 8].copy_from_slice(&flags);
                let short = short_path(&frame);
                if flags == [0x40, 0] {
                    assert_eq!(short.expect("not a fragment"), full_path(&frame));
                } else {
                    assert_eq!(short, None, "kind {kind} flags {flags:?}");
                    assert_eq!(decode(LinkType::Ethernet, &frame), Err(DecodeError::Fragment));
                }
            }
        }
    }

    /// VLAN 100, then MPLS (EtherType 0x8847, one label, bottom of stack), then the IPv4 packet:
    /// the packet of the frame without MPLS, its VLAN kept. A pseudowire (payload that is not IP
    /// after the bottom label) and a stack without a bottom label are not IP.
    #[test]
    fn decodes_ip_under_an_mpls_label_stack() {
        let plain = tcp_frame(b"hello");
        let mpls = |label: [u8; 4], after: &[u8]| {
            let mut frame = plain[..16].to_vec();
            frame.extend_from_slice(&[0x88, 0x47]);
            frame.extend_from_slice(&label);
            frame.extend_from_slice(after);
            frame
        };
        let frame = mpls([0x00, 0x01, 0x21, 0x40], &plain[18..]);
        assert_eq!(decode(LinkType::Ethernet, &frame), decode(LinkType::Ethernet, &plain));
        assert_eq!(decode(LinkType::Ethernet, &frame).expect("decodes").vlan, Some(100));
        let pseudowire = mpls([0x00, 0x01, 0x21, 0x40], &plain[..]);
        assert_eq!(decode(LinkType::Ethernet, &pseudowire), Err(DecodeError::NotIp));
        let no_bottom = mpls([0x00, 0x01, 0x20, 0x40], &[0u8; 40]);
        assert_eq!(decode(LinkType::Ethernet, &no_bottom), Err(DecodeError::NotIp));
    }

    /// A PPPoE session frame (version/type 0x11, code 0, session 0x0001, length, PPP protocol
    /// 0x0021) carrying the IPv4 packet decodes as that packet; PPP's LCP (0xc021) is not IP.
    #[test]
    fn decodes_ip_in_a_pppoe_session() {
        let plain = tcp_frame(b"hello");
        let ip = &plain[18..];
        let pppoe = |protocol: [u8; 2]| {
            let mut frame = plain[..16].to_vec();
            frame.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x00, 0x01]);
            frame.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
            frame.extend_from_slice(&protocol);
            frame.extend_from_slice(ip);
            frame
        };
        assert_eq!(
            decode(LinkType::Ethernet, &pppoe([0x00, 0x21])),
            decode(LinkType::Ethernet, &plain)
        );
        assert_eq!(decode(LinkType::Ethernet, &pppoe([0xc0, 0x21])), Err(DecodeError::NotIp));
    }

    /// The frame a VN-Tag, an 802.1ah backbone header or a FabricPath header wraps decodes as
    /// the frame itself, also nested and around MPLS; VLAN tags inside win over those outside.
    #[test]
    fn decodes_ip_behind_vn_tag_backbone_and_fabricpath_headers() {
        let plain = tcp_frame(b"hello"); // VLAN 100, then IPv4
        let want = decode(LinkType::Ethernet, &plain);
        let macs = &plain[..12];
        let wrap = |ether_type: [u8; 2], header: &[u8], inner: &[u8]| {
            let mut frame = macs.to_vec();
            frame.extend_from_slice(&ether_type);
            frame.extend_from_slice(header);
            frame.extend_from_slice(inner);
            frame
        };
        // VN-Tag: 4 bytes of tag, then the EtherType of the VLAN tag that follows.
        let vntag = wrap([0x89, 0x26], &[0x80, 0x01, 0x00, 0x02], &plain[12..]);
        assert_eq!(decode(LinkType::Ethernet, &vntag), want);
        // 802.1ah: a 4-byte I-TAG, then the customer's whole Ethernet frame.
        let pbb = wrap([0x88, 0xe7], &[0x00, 0x00, 0x01, 0x00], &plain);
        assert_eq!(decode(LinkType::Ethernet, &pbb), want);
        // The same behind a backbone VLAN tag (200): the customer's tag (100) is the flow's.
        let mut tagged = macs.to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0x00, 200]);
        tagged.extend_from_slice(&pbb[12..]);
        assert_eq!(decode(LinkType::Ethernet, &tagged), want);
        // FabricPath: 2 bytes of FTag and TTL, then the frame; around a VN-Tag frame.
        let fabricpath = wrap([0x89, 0x03], &[0x00, 0x3f], &vntag);
        assert_eq!(decode(LinkType::Ethernet, &fabricpath), want);
        // Around MPLS: the label stack's IP packet, VLAN from the outer frame.
        let mut mpls = plain[..16].to_vec();
        mpls.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x21, 0x40]);
        mpls.extend_from_slice(&plain[18..]);
        let around_mpls = wrap([0x89, 0x03], &[0x00, 0x3f], &mpls);
        assert_eq!(decode(LinkType::Ethernet, &around_mpls), want);
        // What is not IP under them stays not IP; cut short, an error, never a panic.
        let arp = wrap([0x89, 0x26], &[0, 0, 0, 0, 0x08, 0x06], &[0u8; 28]);
        assert_eq!(decode(LinkType::Ethernet, &arp), Err(DecodeError::NotIp));
        for frame in [&vntag, &pbb, &tagged, &fabricpath, &around_mpls] {
            for len in 0..frame.len() {
                let _ = decode(LinkType::Ethernet, &frame[..len]);
            }
        }
    }

    /// ERSPAN in GRE: type I (no sequence number, no ERSPAN header), II (sequence number, 8
    /// bytes) and III (12 bytes, 8 more with the O bit) carry the mirrored frame.
    #[test]
    fn erspan_in_gre_is_unwrapped_to_the_mirrored_frame() {
        let mirrored = tcp_frame(b"mirrored");
        let want = decode(LinkType::Ethernet, &mirrored).expect("decodes");
        let outer = |gre: &[u8]| {
            let mut out = Vec::new();
            PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
                .write(&mut out, etherparse::IpNumber(47), gre)
                .expect("build");
            out
        };
        let type_1 = [&[0x00, 0x00, 0x88, 0xbe][..], &mirrored].concat();
        let type_2 =
            [&[0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 9][..], &[0x10, 0, 0, 1, 0, 0, 0, 0], &mirrored]
                .concat();
        let erspan_3 = [0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let type_3 = [&[0x00, 0x00, 0x22, 0xeb][..], &erspan_3, &mirrored].concat();
        let mut erspan_3_o = erspan_3;
        erspan_3_o[11] = 0x01;
        let type_3_o = [&[0x00, 0x00, 0x22, 0xeb][..], &erspan_3_o, &[7u8; 8], &mirrored].concat();
        for gre in [type_1, type_2, type_3, type_3_o] {
            let frame = outer(&gre);
            let p = decode(LinkType::Raw, &frame).expect("decodes");
            assert_eq!((p.src, p.dst, p.src_port, p.dst_port), (want.src, want.dst, 40000, 80));
            assert_eq!((p.vlan, p.payload), (Some(100), &b"mirrored"[..]));
            for len in 0..frame.len() {
                let _ = decode(LinkType::Raw, &frame[..len]);
            }
        }
    }

    /// The link types beyond Ethernet that Zeek reads: PPP (with and without `ff 03`), PPP in
    /// HDLC framing, 802.11 data frames (plain and behind radiotap; the fourth address and QoS
    /// control skipped), NFLOG, FDDI. Each gives the packet inside; what carries no IP is not IP.
    #[test]
    fn decodes_ppp_wifi_and_nflog_link_types() {
        let plain = tcp_frame(b"hello");
        let ip = &plain[18..];
        let want = decode(LinkType::Raw, ip);
        assert!(want.is_ok());
        let with = |header: &[u8]| [header, ip].concat();
        assert_eq!(decode(LinkType::Ppp, &with(&[0x00, 0x21])), want);
        assert_eq!(decode(LinkType::Ppp, &with(&[0xff, 0x03, 0x00, 0x21])), want);
        assert_eq!(decode(LinkType::Ppp, &with(&[0xc0, 0x21])), Err(DecodeError::NotIp));
        assert_eq!(decode(LinkType::PppSerial, &with(&[0x0f, 0x00, 0x00, 0x21])), want);
        let mpls = [&[0xff, 0x03, 0x02, 0x81, 0x00, 0x01, 0x21, 0x40][..], ip].concat();
        assert_eq!(decode(LinkType::PppSerial, &mpls), want);

        let snap = [0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
        // Data frame, from the distribution system: 24-byte header.
        let mut data = vec![0x08, 0x02];
        data.extend_from_slice(&[0u8; 22]);
        let data = [&data[..], &snap, ip].concat();
        assert_eq!(decode(LinkType::Ieee80211, &data), want);
        // QoS data, both DS bits (a fourth address), QoS control.
        let mut qos = vec![0x88, 0x03];
        qos.extend_from_slice(&[0u8; 28]);
        qos.extend_from_slice(&[0x00, 0x00]);
        let qos = [&qos[..], &snap, ip].concat();
        assert_eq!(decode(LinkType::Ieee80211, &qos), want);
        // Protected QoS data, an A-MSDU, a null-data frame and a beacon are not IP.
        let mut protected = qos.clone();
        protected[1] |= 0x40;
        let mut amsdu = qos.clone();
        amsdu[30] = 0x80;
        let mut null = data.clone();
        null[0] = 0x48;
        let mut beacon = data.clone();
        beacon[0] = 0x80;
        for frame in [&protected, &amsdu, &null, &beacon] {
            assert_eq!(decode(LinkType::Ieee80211, frame), Err(DecodeError::NotIp));
        }
        // Radiotap: version, pad, length 12 (little-endian), present flags, then the frame.
        let radiotap = [&[0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], &data].concat();
        assert_eq!(decode(LinkType::Radiotap, &radiotap), want);

        // NFLOG: AF_INET, version 0, resource 0; a prefix attribute of 6 bytes (padded to 8),
        // then the packet attribute (type 9).
        let host = |v: u16| v.to_ne_bytes();
        let mut nflog = vec![2, 0, 0, 0];
        nflog.extend_from_slice(&host(6));
        nflog.extend_from_slice(&host(10));
        nflog.extend_from_slice(&[b'x', b'y', 0, 0]);
        nflog.extend_from_slice(&host((4 + ip.len()) as u16));
        nflog.extend_from_slice(&host(9));
        nflog.extend_from_slice(ip);
        assert_eq!(decode(LinkType::Nflog, &nflog), want);
        let mut bad_version = nflog.clone();
        bad_version[1] = 1;
        assert_eq!(decode(LinkType::Nflog, &bad_version), Err(DecodeError::NotIp));
        // FDDI: frame control, two addresses, LLC/SNAP with the EtherType, then IP.
        let mut fddi = vec![0x50];
        fddi.extend_from_slice(&[1u8; 12]);
        fddi.extend_from_slice(&snap);
        let fddi = [&fddi[..], ip].concat();
        assert_eq!(decode(LinkType::Fddi, &fddi), want);

        for (link, frame) in [
            (LinkType::Ppp, with(&[0xff, 0x03, 0x00, 0x21])),
            (LinkType::PppSerial, mpls),
            (LinkType::Ieee80211, qos),
            (LinkType::Radiotap, radiotap),
            (LinkType::Nflog, nflog),
            (LinkType::Fddi, fddi),
        ] {
            for len in 0..frame.len() {
                let _ = decode(link, &frame[..len]);
            }
        }
        assert_eq!(LinkType::from_pcap(239), Some(LinkType::Nflog));
        assert_eq!(LinkType::from_pcap(127), Some(LinkType::Radiotap));
    }

    #[test]
    fn decodes_vlan_tcp() {
        let frame = tcp_frame(b"hello");
        let p = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!((p.src_port, p.dst_port, p.proto), (40000, 80, 6));
        assert_eq!(p.vlan, Some(100));
        assert_eq!(p.ip_len, 20 + 20 + 5);
        assert_eq!(p.payload_len, 5);
        assert_eq!(p.payload, b"hello");
        assert!(p.tcp.expect("tcp").syn);
    }

    #[test]
    fn every_truncated_prefix_is_an_error_or_a_packet_never_a_panic() {
        let frame = tcp_frame(b"some payload bytes");
        for len in 0..frame.len() {
            let _ = decode(LinkType::Ethernet, &frame[..len]);
            let _ = decode(LinkType::Raw, &frame[..len]);
            let _ = decode(LinkType::LinuxSll, &frame[..len]);
            let _ = decode(LinkType::Null, &frame[..len]);
        }
        // Cut inside the IP header: an error, with a reason from the fixed set.
        let err = decode(LinkType::Ethernet, &frame[..14 + 4 + 10]).expect_err("truncated");
        assert!(DecodeError::ALL.contains(&err));
        // Cut inside the payload: still a packet, sizes from the headers.
        let p = decode(LinkType::Ethernet, &frame[..frame.len() - 4]).expect("decodes");
        assert_eq!(p.payload_len, 18);
        assert_eq!(p.payload.len(), 14);
    }

    #[test]
    fn gre_is_unwrapped_to_the_inner_packet() {
        let mut inner = Vec::new();
        PacketBuilder::ipv4([10, 1, 1, 1], [10, 2, 2, 2], 64)
            .udp(5000, 53)
            .write(&mut inner, b"q")
            .expect("build");
        let mut gre = vec![0x20, 0x00, 0x08, 0x00, 0, 0, 0, 7]; // key present, IPv4
        gre.extend_from_slice(&inner);
        let mut outer = Vec::new();
        PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .write(&mut outer, etherparse::IpNumber(47), &gre)
            .expect("build");
        let p = decode(LinkType::Raw, &outer).expect("decodes");
        assert_eq!((p.src, p.dst_port, p.proto), ("10.1.1.1".parse().expect("ip"), 53, 17));
        assert_eq!(p.ip_len as usize, inner.len());
        // A truncated GRE payload leaves the outer packet as it is.
        let p = decode(LinkType::Raw, &outer[..22]).expect("decodes");
        assert_eq!(p.proto, 47);
    }

    #[test]
    fn icmp_echo_reply_shares_the_request_flow_ports() {
        // Request 8 -> ports (8, 0); reply 0 -> ports (0, 8): the same unordered pair.
        assert_eq!(icmp_counterpart(false, 8, 0), 0);
        assert_eq!(icmp_counterpart(false, 0, 0), 8);
        assert_eq!(icmp_counterpart(false, 3, 3), 3);
        assert_eq!(icmp_counterpart(true, 129, 0), 128);
    }

    #[test]
    fn finds_the_ipv6_fragment_header_behind_other_extensions() {
        // Hop-by-hop (8 bytes, next = fragment), then fragment: offset 55, more, id 0xa5d33a2d.
        let exts = [44, 0, 1, 4, 0, 0, 0, 0, 6, 0, 0x01, 0xb9, 0xa5, 0xd3, 0x3a, 0x2d];
        assert_eq!(ipv6_fragment_header(0, &exts), Some((55, true, 0xa5d3_3a2d)));
        for len in 0..exts.len() {
            assert_eq!(ipv6_fragment_header(0, &exts[..len]), None);
        }
    }

    #[test]
    fn arp_is_not_ip() {
        let mut frame = vec![0xffu8; 12];
        frame.extend_from_slice(&[0x08, 0x06]);
        frame.extend_from_slice(&[0u8; 28]);
        assert_eq!(decode(LinkType::Ethernet, &frame), Err(DecodeError::NotIp));
    }

    fn full_path(frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
        slice(LinkType::Ethernet, frame).and_then(|sliced| from_sliced(&sliced, 0))
    }

    fn udp_v6_frame(vlans: u8) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]);
        let ip = match vlans {
            0 => b.ipv6([1; 16], [2; 16], 64),
            1 => b
                .single_vlan(etherparse::VlanId::try_new(7).expect("vlan"))
                .ipv6([1; 16], [2; 16], 64),
            _ => b
                .double_vlan(
                    etherparse::VlanId::try_new(7).expect("vlan"),
                    etherparse::VlanId::try_new(9).expect("vlan"),
                )
                .ipv6([1; 16], [2; 16], 64),
        };
        let mut out = Vec::new();
        ip.udp(5353, 53).write(&mut out, b"query bytes").expect("build");
        out
    }

    /// IPv4 + TCP without a VLAN tag, with a payload.
    fn plain_tcp_frame(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
            .ipv4([192, 168, 1, 9], [10, 0, 0, 2], 64)
            .tcp(443, 51000, 7, 1024)
            .ack(99)
            .psh();
        let mut out = Vec::new();
        builder.write(&mut out, payload).expect("build");
        out
    }

    /// IPv4 + UDP in two VLAN tags.
    fn udp_v4_frame() -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
            .double_vlan(
                etherparse::VlanId::try_new(3).expect("vlan"),
                etherparse::VlanId::try_new(4).expect("vlan"),
            )
            .ipv4([10, 0, 0, 1], [10, 0, 0, 53], 64)
            .udp(40001, 53);
        let mut out = Vec::new();
        builder.write(&mut out, b"\x12\x34\x01\x00 a query").expect("build");
        out
    }

    /// `frame`'s IPv4 header (after `at` bytes of link header) given 8 bytes of options (NOPs):
    /// the header length and the total length grow to match.
    fn with_ipv4_options(mut frame: Vec<u8>, at: usize) -> Vec<u8> {
        frame.splice(at + 20..at + 20, [1u8; 8]);
        frame[at] += 2;
        let total = u16::from_be_bytes([frame[at + 2], frame[at + 3]]) + 8;
        frame[at + 2..at + 4].copy_from_slice(&total.to_be_bytes());
        frame
    }

    /// Frames of the kinds the short path takes.
    const SHORT_PATH_FRAMES: u8 = 7;
    fn short_path_frame(kind: u8) -> Vec<u8> {
        match kind {
            0 => tcp_frame(b"payload"),
            1..=3 => udp_v6_frame(kind - 1),
            4 => plain_tcp_frame(b"GET / HTTP/1.1\r\n"),
            5 => udp_v4_frame(),
            _ => with_ipv4_options(plain_tcp_frame(b"data"), 14),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Where the short path answers, it gives what etherparse's sliced packet gives: on
        /// frames of each kind it takes, cut short anywhere and with bytes overwritten (mostly
        /// in the headers, where the two could part).
        #[test]
        fn the_short_path_agrees_with_the_full_one(
            kind in 0..SHORT_PATH_FRAMES,
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            hits in proptest::collection::vec(
                (
                    proptest::prelude::any::<bool>(),
                    proptest::prelude::any::<proptest::sample::Index>(),
                    proptest::prelude::any::<u8>(),
                ),
                0..6,
            ),
        ) {
            let mut frame = short_path_frame(kind);
            frame.truncate(cut.index(frame.len() + 1));
            if !frame.is_empty() {
                for (in_headers, at, byte) in hits {
                    let span = if in_headers { frame.len().min(90) } else { frame.len() };
                    let i = at.index(span);
                    frame[i] = byte;
                }
            }
            if let Some(short) = short_path(&frame) {
                proptest::prop_assert_eq!(short, full_path(&frame));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            for link in [
                LinkType::Ethernet,
                LinkType::Raw,
                LinkType::Null,
                LinkType::LinuxSll,
                LinkType::LinuxSll2,
                LinkType::Ppp,
                LinkType::PppSerial,
                LinkType::Ieee80211,
                LinkType::Radiotap,
                LinkType::Nflog,
                LinkType::Fddi,
            ] {
                let _ = decode(link, &bytes);
            }
            // The same bytes behind each EtherType that `encapsulated_ip` unwraps.
            for ether_type in [[0x89, 0x26], [0x88, 0xe7], [0x89, 0x03], [0x88, 0x47], [0x88, 0x64]] {
                let frame = [&[0u8; 12][..], &ether_type, &bytes].concat();
                let _ = decode(LinkType::Ethernet, &frame);
            }
        }

        /// Garbage in a UDP datagram on any tunnel port, a few bytes of a real tunnel header
        /// first or not: a packet or an error, and where there is a fragment, its tunnel too.
        #[test]
        fn udp_tunnel_payloads_never_panic(
            port in proptest::sample::select(vec![4789u16, 6081, 2152, 2123, 5072, 3544, 9]),
            head in proptest::sample::select(vec![
                vec![],
                vec![0x08, 0, 0, 0, 0, 0, 1, 0],
                vec![0x30, 0xff, 0, 0, 0, 0, 0, 1],
                vec![0x36, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xc0],
                vec![0x11, 0x52, 0x11, 41, 0, 0, 0, 0],
                vec![0, 1, 3, 2],
                vec![0, 0, 1, 2, 3, 4, 5, 6, 0x60],
            ]),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        ) {
            let mut payload = head;
            payload.extend_from_slice(&tail);
            let frame = udp_frame((40000, port), &payload);
            let _ = decode(LinkType::Ethernet, &frame);
            let _ = fragment_of(LinkType::Ethernet, &frame);
        }
    }

    /// Ethernet, IPv4 10.0.0.1 -> 10.0.0.2, UDP `ports`, `payload`.
    fn udp_frame(ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(ports.0, ports.1);
        let mut out = Vec::new();
        builder.write(&mut out, payload).expect("build");
        out
    }

    /// An IPv6 UDP packet 2001:0:4136:e378::1 (a Teredo address) or 2001:db8::1 -> 2001:db8::2.
    fn ipv6_udp(teredo_source: bool) -> Vec<u8> {
        let source = if teredo_source {
            [0x20, 0x01, 0, 0, 0x41, 0x36, 0xe3, 0x78, 0, 0, 0, 0, 0, 0, 0, 1]
        } else {
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        };
        let mut dest = [0u8; 16];
        dest[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        dest[15] = 2;
        let mut out = Vec::new();
        PacketBuilder::ipv6(source, dest, 64).udp(1000, 2000).write(&mut out, b"hi").expect("ip");
        out
    }

    /// The destination port of the packet decoded from a UDP frame, and whether it came out of a
    /// tunnel.
    fn tunnel_of(ports: (u16, u16), payload: &[u8]) -> (u16, bool) {
        let frame = udp_frame(ports, payload);
        let p = decode(LinkType::Ethernet, &frame).expect("decodes");
        (p.dst_port, p.outer.is_some())
    }

    #[test]
    fn udp_tunnels_give_the_inner_packet_and_keep_the_outer_one() {
        let mut teredo = vec![0, 0, 1, 2, 3, 4, 5, 6]; // origin indication
        teredo.extend_from_slice(&ipv6_udp(false));
        let frame = udp_frame((50000, 3544), &teredo);
        let p = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert_eq!((p.src_port, p.dst_port, p.payload), (1000, 2000, &b"hi"[..]));
        let outer = p.outer.expect("outer");
        assert_eq!((outer.src_port, outer.dst_port), (50000, 3544));
        assert_eq!((outer.ip_len, outer.payload_len), (20 + 8 + 8 + 50, 8 + 50));
        assert_eq!(outer.src, "10.0.0.1".parse::<IpAddr>().expect("ip"));

        // Off port 3544 only what Zeek's detection takes: a Teredo address, or a Teredo header.
        assert_eq!(tunnel_of((50000, 40000), &ipv6_udp(true)), (2000, true));
        assert_eq!(tunnel_of((50000, 40000), &ipv6_udp(false)), (40000, false));
        // An IPv6 packet that does not fill the datagram is not Teredo.
        let mut padded = ipv6_udp(false);
        padded.push(0);
        assert_eq!(tunnel_of((50000, 3544), &padded), (3544, false));

        // AYIYA: only "forward" (opcode 1) messages carry a packet.
        let mut ayiya = vec![0x11, 0x00, 0x11, 41, 0, 0, 0, 0, 0xaa, 0xaa]; // 2-byte identity
        ayiya.extend_from_slice(&ipv6_udp(false));
        assert_eq!(tunnel_of((5072, 5072), &ayiya), (2000, true));
        ayiya[2] = 0x12;
        assert_eq!(tunnel_of((5072, 5072), &ayiya), (5072, false));

        // GTPv1: G-PDUs only, with an IP packet that fills the rest exactly.
        let inner = ipv6_udp(false);
        let mut gtp = vec![0x30, 0xff, 0, 50, 0, 0, 0, 1];
        gtp.extend_from_slice(&inner);
        assert_eq!(tunnel_of((2152, 2152), &gtp), (2000, true));
        gtp[1] = 16; // create PDP context request
        assert_eq!(tunnel_of((2152, 2152), &gtp), (2152, false));
        gtp[1] = 0xff;
        gtp.push(0);
        assert_eq!(tunnel_of((2152, 2152), &gtp), (2152, false));

        // Geneve: version 0 only; the options are skipped.
        let mut geneve = vec![0x01, 0, 0x86, 0xdd, 0, 0, 1, 0, 9, 9, 9, 0];
        geneve.extend_from_slice(&ipv6_udp(false));
        assert_eq!(tunnel_of((1234, 6081), &geneve), (2000, true));
        geneve[0] = 0x41;
        assert_eq!(tunnel_of((1234, 6081), &geneve), (6081, false));
    }

    /// A UDP tunnel inside a UDP tunnel: both outer packets, innermost tunnel first.
    #[test]
    fn nested_udp_tunnels_keep_every_outer_packet() {
        let mut inner = vec![0, 0, 1, 2, 3, 4, 5, 6];
        inner.extend_from_slice(&ipv6_udp(false));
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
        vxlan.extend_from_slice(&udp_frame((50000, 3544), &inner));
        let frame = udp_frame((40000, 4789), &vxlan);
        let p = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert_eq!(p.dst_port, 2000);
        let first = p.outer.expect("teredo");
        assert_eq!(first.dst_port, 3544);
        let second = first.outer.expect("vxlan");
        assert_eq!((second.dst_port, second.outer), (4789, None));
    }
}
