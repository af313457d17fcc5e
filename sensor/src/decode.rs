//! Packet decoding: raw frame bytes in, the fields flow tracking needs out. Pure: no I/O, no clock.
//! Hostile or truncated input is an error value with a fixed reason, never a panic.

use etherparse::{LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};
use std::net::IpAddr;

/// Link-layer header types (the pcap LINKTYPE_ values) the decoder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Raw IPv4 or IPv6, no link header.
    Raw,
    /// BSD loopback: a 4-byte address family in host byte order.
    Null,
    /// Linux "cooked" capture v1.
    LinuxSll,
}

impl LinkType {
    /// Map a pcap link-type number to a decoder, or None when unsupported.
    pub fn from_pcap(linktype: i32) -> Option<LinkType> {
        match linktype {
            1 => Some(LinkType::Ethernet),
            12 | 14 | 101 | 228 | 229 => Some(LinkType::Raw),
            0 | 108 => Some(LinkType::Null),
            113 => Some(LinkType::LinuxSll),
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
    #[error("IP fragment (reassembly not enabled)")]
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
    let sliced = match link {
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
    };
    from_sliced(&sliced)
}

fn from_sliced<'a>(sliced: &LaxSlicedPacket<'a>) -> Result<Packet<'a>, DecodeError> {
    let mut vlans = sliced.link_exts.iter().filter_map(|ext| match ext {
        etherparse::LaxLinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
        _ => None,
    });
    let vlan = vlans.next();
    let inner_vlan = vlans.next();
    if matches!(sliced.link, Some(LinkSlice::EtherPayload(_) | LinkSlice::LinuxSllPayload(_)))
        && sliced.net.is_none()
    {
        return Err(DecodeError::NotIp);
    }

    let (src, dst, ip_len, ip_payload, fragmented) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let header = v4.header();
            let total = u32::from(header.total_len());
            let header_len = u32::from(header.ihl()) * 4;
            let payload = v4.payload();
            // A zero total length (TSO on the capturing host) falls back to what was captured.
            let ip_len = if total == 0 { header_len + payload.payload.len() as u32 } else { total };
            (
                IpAddr::from(header.source()),
                IpAddr::from(header.destination()),
                ip_len,
                payload,
                v4.is_payload_fragmented(),
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let header = v6.header();
            let ip_len = 40 + u32::from(header.payload_length());
            (
                IpAddr::from(header.source()),
                IpAddr::from(header.destination()),
                ip_len,
                v6.payload(),
                v6.is_payload_fragmented(),
            )
        }
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
    if fragmented {
        return Err(DecodeError::Fragment);
    }
    let proto = ip_payload.ip_number.0;
    // Transport length per the IP header, so truncated captures still count the real sizes.
    let transport_len = ip_len.saturating_sub(ip_header_len(sliced)) as u64;

    let mut packet = Packet {
        src,
        dst,
        proto,
        src_port: 0,
        dst_port: 0,
        ip_len,
        payload_len: 0,
        payload: &[],
        tcp: None,
        vlan,
        inner_vlan,
    };
    match &sliced.transport {
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
            });
        }
        Some(TransportSlice::Udp(udp)) => {
            packet.src_port = udp.source_port();
            packet.dst_port = udp.destination_port();
            packet.payload_len = transport_len.saturating_sub(8) as u32;
            packet.payload = udp.payload();
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            packet.src_port = u16::from(icmp.type_u8());
            packet.dst_port = u16::from(icmp.code_u8());
            packet.payload_len = transport_len.saturating_sub(8) as u32;
            packet.payload = icmp.payload();
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            packet.src_port = u16::from(icmp.type_u8());
            packet.dst_port = u16::from(icmp.code_u8());
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
            packet.payload = ip_payload.payload;
        }
    }
    Ok(packet)
}

fn ip_header_len(sliced: &LaxSlicedPacket<'_>) -> u32 {
    match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => u32::from(v4.header().ihl()) * 4,
        Some(LaxNetSlice::Ipv6(v6)) => 40 + v6.extensions().slice().len() as u32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

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
    fn arp_is_not_ip() {
        let mut frame = vec![0xffu8; 12];
        frame.extend_from_slice(&[0x08, 0x06]);
        frame.extend_from_slice(&[0u8; 28]);
        assert_eq!(decode(LinkType::Ethernet, &frame), Err(DecodeError::NotIp));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            for link in [LinkType::Ethernet, LinkType::Raw, LinkType::Null, LinkType::LinuxSll] {
                let _ = decode(link, &bytes);
            }
        }
    }
}
