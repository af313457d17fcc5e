//! Community ID flow hashing, version 1, as published by Corelight's community-id-spec: a hash of the
//! seed, both endpoints (in a canonical order so both directions agree), the IP protocol and the
//! ports, written as `1:` followed by the base64 of the SHA-1 digest.

use std::net::IpAddr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// Community ID v1 of a flow. For TCP, UDP and SCTP pass the ports; for ICMP and ICMPv6 pass the
/// message type as `src_port` and the code as `dst_port` (the spec maps them to port equivalents);
/// for other protocols the ports are ignored.
pub fn community_id_v1(
    seed: u16,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    proto: u8,
    src_port: u16,
    dst_port: u16,
) -> String {
    let bytes = community_id_v1_bytes(seed, src_ip, dst_ip, proto, src_port, dst_port);
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// [`community_id_v1`] as its 30 ASCII bytes, without allocating.
pub fn community_id_v1_bytes(
    seed: u16,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    proto: u8,
    src_port: u16,
    dst_port: u16,
) -> [u8; 30] {
    let (mut sport, mut dport, one_way) = match proto {
        PROTO_ICMP => icmp_port_equivalents(src_port, dst_port, false),
        PROTO_ICMPV6 => icmp_port_equivalents(src_port, dst_port, true),
        _ => (src_port, dst_port, false),
    };
    let (mut sip, mut dip) = (src_ip, dst_ip);
    // (address bytes, port) in lexicographic order. Addresses of one family compare as big-endian
    // numbers, which orders them as their bytes (and costs no `memcmp` call per event).
    let ordered = one_way
        || match (sip, dip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (u32::from(s), sport) < (u32::from(d), dport),
            (IpAddr::V6(s), IpAddr::V6(d)) => (u128::from(s), sport) < (u128::from(d), dport),
            // Mixed address families cannot belong to one flow; compare their canonical byte
            // forms anyway so the result stays deterministic.
            _ => {
                let (skey, dkey) = (ip_key(&sip), ip_key(&dip));
                (&skey.0[..skey.1], sport) < (&dkey.0[..dkey.1], dport)
            }
        };
    if !ordered {
        std::mem::swap(&mut sip, &mut dip);
        std::mem::swap(&mut sport, &mut dport);
    }

    // The spec's input (seed, addresses, protocol, a zero byte, ports: at most 40 bytes) fits one
    // SHA-1 block with its padding (a 0x80 byte, the bit length in the last 8 bytes), so the block
    // is built here and compressed once, without the hasher's buffering.
    // Built where `compress` reads it (a `[u8; 64]` converted into the block type was copied
    // with wide loads that waited for the byte stores that built it).
    let mut block =
        sha1::digest::generic_array::GenericArray::<u8, sha1::digest::consts::U64>::default();
    block[..2].copy_from_slice(&seed.to_be_bytes());
    let mut n = 2;
    for ip in [sip, dip] {
        let (key, len) = ip_key(&ip);
        block[n..n + len].copy_from_slice(&key[..len]);
        n += len;
    }
    block[n] = proto;
    n += 2;
    if has_ports(proto) {
        block[n..n + 2].copy_from_slice(&sport.to_be_bytes());
        block[n + 2..n + 4].copy_from_slice(&dport.to_be_bytes());
        n += 4;
    }
    block[n] = 0x80;
    block[56..].copy_from_slice(&(n as u64 * 8).to_be_bytes());
    let mut state = SHA1_INIT;
    sha1::compress(&mut state, std::slice::from_ref(&block));
    let mut digest = [0u8; 20];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    let mut out = [b'='; 30];
    out[0] = b'1';
    out[1] = b':';
    // 20 digest bytes are 28 base64 characters (standard alphabet, one `=` of padding).
    for (group, chunk) in digest.chunks(3).enumerate() {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let bits = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let at = 2 + 4 * group;
        for k in 0..=chunk.len() {
            out[at + k] = BASE64[(bits >> (18 - 6 * k) & 0x3f) as usize];
        }
    }
    out
}

/// SHA-1's initial state (FIPS 180-4, 5.3.1).
const SHA1_INIT: [u32; 5] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476, 0xc3d2_e1f0];

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn has_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_ICMP | PROTO_ICMPV6)
}

/// The address's bytes (4 or 16 of them) in a fixed buffer, and how many there are.
fn ip_key(ip: &IpAddr) -> ([u8; 16], usize) {
    let mut key = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            key[..4].copy_from_slice(&v4.octets());
            (key, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    }
}

/// The spec's port equivalents for ICMP: request/reply pairs map to (type, counterpart type) and
/// are treated as two-way; any other message is one-way, keyed by (type, code).
fn icmp_port_equivalents(msg_type: u16, code: u16, v6: bool) -> (u16, u16, bool) {
    let counterpart = if v6 {
        match msg_type {
            128 => Some(129), // echo request / reply
            129 => Some(128),
            130 => Some(131), // multicast listener query / report
            131 => Some(130),
            133 => Some(134), // router solicitation / advertisement
            134 => Some(133),
            135 => Some(136), // neighbour solicitation / advertisement
            136 => Some(135),
            139 => Some(140), // node information query / response
            140 => Some(139),
            144 => Some(145), // home agent address discovery request / reply
            145 => Some(144),
            _ => None,
        }
    } else {
        match msg_type {
            8 => Some(0), // echo / echo reply
            0 => Some(8),
            13 => Some(14), // timestamp / reply
            14 => Some(13),
            15 => Some(16), // information request / reply
            16 => Some(15),
            10 => Some(9), // router solicitation / advertisement
            9 => Some(10),
            17 => Some(18), // address mask request / reply
            18 => Some(17),
            _ => None,
        }
    };
    match counterpart {
        Some(other) => (msg_type, other, false),
        None => (msg_type, code, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    /// One row of the spec's baseline files (`baseline/baseline_deflt.json` and
    /// `baseline_seed1.json` in corelight/community-id-spec), copied as test vectors.
    struct Vector {
        proto: u8,
        saddr: &'static str,
        daddr: &'static str,
        sport: u16,
        dport: u16,
        seed0: &'static str,
        seed1: &'static str,
    }

    const VECTORS: &[Vector] = &[
        Vector {
            proto: 58,
            saddr: "fe80::200:86ff:fe05:80da",
            daddr: "fe80::260:97ff:fe07:69ea",
            sport: 135,
            dport: 136,
            seed0: "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            seed1: "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
        },
        Vector {
            proto: 58,
            saddr: "fe80::260:97ff:fe07:69ea",
            daddr: "fe80::200:86ff:fe05:80da",
            sport: 136,
            dport: 135,
            seed0: "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            seed1: "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
        },
        Vector {
            proto: 58,
            saddr: "fe80::260:97ff:fe07:69ea",
            daddr: "fe80::200:86ff:fe05:80da",
            sport: 135,
            dport: 136,
            seed0: "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            seed1: "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM=",
        },
        Vector {
            proto: 58,
            saddr: "fe80::200:86ff:fe05:80da",
            daddr: "fe80::260:97ff:fe07:69ea",
            sport: 136,
            dport: 135,
            seed0: "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            seed1: "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM=",
        },
        Vector {
            proto: 58,
            saddr: "3ffe:501:1800:2345::2",
            daddr: "3ffe:507:0:1:200:86ff:fe05:80da",
            sport: 3,
            dport: 0,
            seed0: "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
            seed1: "1:lVEtCZpYu84Xqaa++3lXFyuu2n4=",
        },
        Vector {
            proto: 58,
            saddr: "3ffe:501:410:0:2c0:dfff:fe47:33e",
            daddr: "3ffe:507:0:1:200:86ff:fe05:80da",
            sport: 1,
            dport: 4,
            seed0: "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
            seed1: "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8=",
        },
        Vector {
            proto: 58,
            saddr: "3ffe:507:0:1:200:86ff:fe05:80da",
            daddr: "3ffe:501:0:1001::2",
            sport: 128,
            dport: 129,
            seed0: "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            seed1: "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
        },
        Vector {
            proto: 58,
            saddr: "3ffe:501:0:1001::2",
            daddr: "3ffe:507:0:1:200:86ff:fe05:80da",
            sport: 129,
            dport: 128,
            seed0: "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            seed1: "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
        },
        Vector {
            proto: 58,
            saddr: "fe80::200:86ff:fe05:80da",
            daddr: "ff02::2",
            sport: 133,
            dport: 134,
            seed0: "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=",
            seed1: "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8=",
        },
        Vector {
            proto: 58,
            saddr: "fe80::260:97ff:fe07:69ea",
            daddr: "ff02::1",
            sport: 134,
            dport: 133,
            seed0: "1:pkvHqCL88/tg1k4cPigmZXUtL00=",
            seed1: "1:K/ee5UCqAMAQXDorP5nSa2CGLjc=",
        },
        Vector {
            proto: 1,
            saddr: "192.168.0.89",
            daddr: "192.168.0.1",
            sport: 8,
            dport: 0,
            seed0: "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            seed1: "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
        },
        Vector {
            proto: 1,
            saddr: "192.168.0.1",
            daddr: "192.168.0.89",
            sport: 0,
            dport: 8,
            seed0: "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            seed1: "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
        },
        Vector {
            proto: 1,
            saddr: "10.0.0.1",
            daddr: "10.0.0.2",
            sport: 11,
            dport: 0,
            seed0: "1:YHxtAirCG//0OzkcVAukqKQN9xM=",
            seed1: "1:XjUibYHaafLQ3pxQeiMI8g25q20=",
        },
        Vector {
            proto: 6,
            saddr: "2001:470:e5bf:dead:4957:2174:e82c:4887",
            daddr: "2607:f8b0:400c:c03::1a",
            sport: 63943,
            dport: 25,
            seed0: "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            seed1: "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
        },
        Vector {
            proto: 6,
            saddr: "2607:f8b0:400c:c03::1a",
            daddr: "2001:470:e5bf:dead:4957:2174:e82c:4887",
            sport: 25,
            dport: 63943,
            seed0: "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            seed1: "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
        },
        Vector {
            proto: 132,
            saddr: "192.168.170.8",
            daddr: "192.168.170.56",
            sport: 7,
            dport: 7,
            seed0: "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            seed1: "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
        },
        Vector {
            proto: 132,
            saddr: "192.168.170.56",
            daddr: "192.168.170.8",
            sport: 7,
            dport: 7,
            seed0: "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            seed1: "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
        },
        Vector {
            proto: 6,
            saddr: "128.232.110.120",
            daddr: "66.35.250.204",
            sport: 34855,
            dport: 80,
            seed0: "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            seed1: "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
        },
        Vector {
            proto: 6,
            saddr: "66.35.250.204",
            daddr: "128.232.110.120",
            sport: 80,
            dport: 34855,
            seed0: "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            seed1: "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
        },
        Vector {
            proto: 17,
            saddr: "192.168.1.52",
            daddr: "8.8.8.8",
            sport: 54585,
            dport: 53,
            seed0: "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            seed1: "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
        },
        Vector {
            proto: 17,
            saddr: "8.8.8.8",
            daddr: "192.168.1.52",
            sport: 53,
            dport: 54585,
            seed0: "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            seed1: "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
        },
        Vector {
            proto: 46,
            saddr: "10.1.12.1",
            daddr: "10.1.12.2",
            sport: 0,
            dport: 0,
            seed0: "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            seed1: "1:rYir8gphR31noO9iDRQmF/BteEI=",
        },
        Vector {
            proto: 46,
            saddr: "10.1.12.2",
            daddr: "10.1.12.1",
            sport: 0,
            dport: 0,
            seed0: "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            seed1: "1:rYir8gphR31noO9iDRQmF/BteEI=",
        },
    ];

    /// The spec's algorithm spelled out as it was first written here (one hasher update per field,
    /// the base64 crate's encoder), for comparison with the one-call form.
    fn reference(seed: u16, s: IpAddr, d: IpAddr, proto: u8, sport: u16, dport: u16) -> String {
        use base64::Engine;
        let (mut sport, mut dport, one_way) = match proto {
            PROTO_ICMP => icmp_port_equivalents(sport, dport, false),
            PROTO_ICMPV6 => icmp_port_equivalents(sport, dport, true),
            _ => (sport, dport, false),
        };
        let (sk, dk) = (ip_key(&s), ip_key(&d));
        let ordered = one_way
            || sk.0[..sk.1] < dk.0[..dk.1]
            || (sk.0[..sk.1] == dk.0[..dk.1] && sport < dport);
        let (s, d) = if ordered { (s, d) } else { (d, s) };
        if !ordered {
            std::mem::swap(&mut sport, &mut dport);
        }
        let mut hasher = Sha1::new();
        hasher.update(seed.to_be_bytes());
        for ip in [s, d] {
            match ip {
                IpAddr::V4(v4) => hasher.update(v4.octets()),
                IpAddr::V6(v6) => hasher.update(v6.octets()),
            }
        }
        hasher.update([proto, 0]);
        if has_ports(proto) {
            hasher.update(sport.to_be_bytes());
            hasher.update(dport.to_be_bytes());
        }
        format!("1:{}", base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
    }

    #[test]
    fn one_call_form_matches_the_field_by_field_reference() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..5_000 {
            let (a, b) = (next(), next());
            let v4 = |w: u64| IpAddr::from((w as u32).to_be_bytes());
            let v6 = |w: u64| IpAddr::from((u128::from(w) << 64 | u128::from(!w)).to_be_bytes());
            let (s, d) = match i % 6 {
                0 => (v4(a), v4(b)),
                1 => (v6(a), v6(b)),
                2 => (v4(a), v6(b)),
                3 => (v6(a), v4(b)),
                4 => (v6(a), v6(a)),
                _ => (v4(a), v4(a)),
            };
            let proto = [6, 17, 1, 58, 132, 46, 0, 255][i % 8];
            let (sp, dp) = ((next() % 300) as u16, (next() % 300) as u16);
            let seed = (next() % 3) as u16;
            assert_eq!(
                community_id_v1(seed, s, d, proto, sp, dp),
                reference(seed, s, d, proto, sp, dp),
                "{s} {d} {proto} {sp} {dp} seed {seed}"
            );
        }
    }

    #[test]
    fn spec_baseline_vectors() {
        for v in VECTORS {
            let (s, d) = (v.saddr.parse().expect("ip"), v.daddr.parse().expect("ip"));
            assert_eq!(
                community_id_v1(0, s, d, v.proto, v.sport, v.dport),
                v.seed0,
                "{} seed 0",
                v.saddr
            );
            assert_eq!(
                community_id_v1(1, s, d, v.proto, v.sport, v.dport),
                v.seed1,
                "{} seed 1",
                v.saddr
            );
        }
    }

    #[test]
    fn suricata_verify_seed_7() {
        // suricata-verify community-id-ipv4 expects this id for the TLS flow, run with seed 7.
        let id = community_id_v1(
            7,
            "172.26.0.39".parse().expect("ip"),
            "172.217.14.206".parse().expect("ip"),
            PROTO_TCP,
            35958,
            443,
        );
        assert_eq!(id, "1:IwiTNfuO7aCaamMijl+7/X9uLx0=");
    }
}
