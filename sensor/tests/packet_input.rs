//! The packet sensor's input edge on the shared captures: libpcap reading through the sensor's
//! large stdio buffer gives exactly the frames and errors of libpcap's own open, and IP fragment trains from Zeek's test suite become
//! the flows Zeek's reassembly makes of them.

use canh_event::Event;
use canh_sensor::capture;
use canh_sensor::decode::LinkType;
use canh_sensor::flow::{FlowConfig, Identity};
use canh_sensor::metrics::Metrics;
use canh_sensor::packets::PacketPipeline;
use std::path::{Path, PathBuf};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pcap").join(rel)
}

fn captures(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            captures(&path, found);
        } else if path.extension().is_some_and(|e| e == "pcap" || e == "pcapng" || e == "cap") {
            found.push(path);
        }
    }
}

type Frames = Vec<(LinkType, i64, Vec<u8>)>;

fn frames(
    path: &Path,
    read: impl Fn(&Path, &mut dyn FnMut(LinkType, i64, &[u8])) -> Result<u64, capture::CaptureError>,
) -> Result<Frames, String> {
    let mut out = Vec::new();
    let n = read(path, &mut |link, ts, data| out.push((link, ts, data.to_vec())))
        .map_err(|e| e.to_string())?;
    assert_eq!(n as usize, out.len());
    Ok(out)
}

#[test]
fn the_buffered_read_gives_what_libpcap_alone_gives_on_every_shared_capture() {
    let mut files = Vec::new();
    captures(&shared(""), &mut files);
    if files.is_empty() {
        eprintln!("shared data set absent, nothing to check");
        return;
    }
    files.sort();
    let mut compared = 0;
    for file in &files {
        let ours = frames(file, |p, f| capture::read_file(p, f));
        let libpcap = frames(file, |p, f| capture::read_file_libpcap(p, f));
        match (ours, libpcap) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.len(), b.len(), "{}", file.display());
                assert!(a == b, "{}: frames differ", file.display());
                compared += 1;
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{}: ours {:?}, libpcap {:?}", file.display(), a.err(), b.err()),
        }
    }
    assert!(compared >= 40, "only {compared} captures compared");
}

/// A classic pcap file cut short, and one with a record longer than libpcap accepts: errors, as
/// libpcap gives, after the whole frames before them.
#[test]
fn damaged_pcap_files_end_with_an_error() {
    let file = shared("zeek/http-get.pcap");
    let Ok(data) = std::fs::read(&file) else { return };
    let whole = frames(&file, |p, f| capture::read_file(p, f)).expect("reads");
    let dir = std::env::temp_dir().join(format!("canh-packet-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &data[..data.len() - 3]).expect("write");
    let mut seen = 0;
    let err = capture::read_file(&cut, |_, _, _| seen += 1).expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(seen, whole.len() - 1);
    let lib = capture::read_file_libpcap(&cut, |_, _, _| {}).expect_err("libpcap agrees");
    assert!(lib.to_string().contains("truncated"), "{lib}");
    // The first record's captured length set to 1 MiB.
    let mut big = data.clone();
    big[24 + 8..24 + 12].copy_from_slice(&(1u32 << 20).to_le_bytes());
    let big_file = dir.join("big.pcap");
    std::fs::write(&big_file, &big).expect("write");
    assert!(capture::read_file(&big_file, |_, _, _| {}).is_err());
    assert!(capture::read_file_libpcap(&big_file, |_, _, _| {}).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn events(file: &Path) -> Vec<Event> {
    let metrics = Metrics::new();
    let who = Identity { sensor_id: "t".into(), tenant: "t".into(), community_id_seed: 0 };
    let mut pipeline = PacketPipeline::new(who, FlowConfig::default(), 0, &metrics);
    let mut out = Vec::new();
    capture::read_file(file, |link, ts, data| pipeline.frame(link, ts, data, &mut out))
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    pipeline.finish(&mut out);
    out
}

/// (orig ip, orig port, resp ip, resp port, orig packets, orig IP bytes) of every flow.
fn flows(events: &[Event]) -> Vec<(String, u16, String, u16, u64, u64)> {
    events
        .iter()
        .filter_map(|e| {
            let (s, d) = (e.source.as_ref()?, e.destination.as_ref()?);
            e.flow.as_ref()?;
            Some((s.ip?.to_string(), s.port?, d.ip?.to_string(), d.port?, s.packets?, s.bytes?))
        })
        .collect()
}

/// Zeek's `core/reassembly` traces (its baseline only lists the weirds, so the expected flows
/// follow from its reassembly rules, see `defrag`):
/// 1. 18 bytes at 0 (more), 116 at 48 (last: 164), 304 at 0 (more, beyond 164): complete at 304
///    bytes, one UDP packet 123 -> 137 of 324 IP bytes.
/// 2. 18 at 0, 116 at 48 (last), 18 at 0 again: a hole at 18..48 stays, no packet.
/// 3. five 1480-byte fragments all saying "more follow" (the last one was never captured): no
///    packet, so no flow, in Zeek as here.
/// 4. an unrelated SYN, then 24 at 0, 24 at 48, 17 at 72 (last: 89), 48 at 24 (overlapping the
///    one at 48, whose bytes stay), then a FIN: a TCP segment of 109 IP bytes.
#[test]
fn zeek_fragment_traces_give_the_flows_zeek_reassembles() {
    let file =
        |n: u8| shared(&format!("zeek/ip-fragments-and-tcp-reassembly__ipv4-fragmented-{n}.pcap"));
    if !file(1).exists() {
        eprintln!("shared data set absent, nothing to check");
        return;
    }
    assert_eq!(
        flows(&events(&file(1))),
        vec![("164.1.123.163".into(), 123, "164.1.123.61".into(), 137, 1, 324)]
    );
    assert_eq!(flows(&events(&file(2))), vec![]);
    assert_eq!(flows(&events(&file(3))), vec![]);
    let four = flows(&events(&file(4)));
    let reassembled = four
        .iter()
        .find(|f| f.0 == "128.32.46.142" && f.1 == 7790)
        .unwrap_or_else(|| panic!("no flow from the reassembled segment: {four:?}"));
    // The reassembled segment (20 + 89 bytes) and the FIN (40 bytes).
    assert_eq!((reassembled.4, reassembled.5), (2, 109 + 40));
}

type Rewrite = dyn Fn(&[u8]) -> Option<Vec<u8>>;

/// An Ethernet capture with every frame rewritten by `rewrite` (None leaves the frame out), saved
/// with link type `linktype`.
fn rewritten(
    source: &Path,
    linktype: i32,
    out: &Path,
    mut rewrite: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> usize {
    let dead = pcap::Capture::dead_with_precision(pcap::Linktype(linktype), pcap::Precision::Nano)
        .expect("dead capture");
    let mut file = dead.savefile(out).expect("savefile");
    let mut written = 0;
    capture::read_file(source, |link, ts, data| {
        assert_eq!(link, LinkType::Ethernet, "{}", source.display());
        let Some(frame) = rewrite(data) else { return };
        write_frame(&mut file, ts, &frame);
        written += 1;
    })
    .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    file.flush().expect("flush");
    written
}

/// One frame of time `ts_ns` into a capture file being written.
fn write_frame(file: &mut pcap::Savefile, ts_ns: i64, frame: &[u8]) {
    let header = pcap::PacketHeader {
        ts: libc::timeval {
            tv_sec: ts_ns.div_euclid(1_000_000_000) as libc::time_t,
            tv_usec: ts_ns.rem_euclid(1_000_000_000) as libc::suseconds_t,
        },
        caplen: frame.len() as u32,
        len: frame.len() as u32,
    };
    file.write(&pcap::Packet::new(&header, frame));
}

/// The frames of an Ethernet capture, as (time, bytes).
fn ethernet_frames(path: &Path) -> Vec<(i64, Vec<u8>)> {
    let all = frames(path, |p, f| capture::read_file(p, f)).expect("reads");
    assert!(all.iter().all(|(link, _, _)| *link == LinkType::Ethernet), "{}", path.display());
    all.into_iter().map(|(_, ts, data)| (ts, data)).collect()
}

/// `frames` saved as an Ethernet capture at `out`.
fn save_ethernet(out: &Path, frames: &[(i64, Vec<u8>)]) {
    let dead = pcap::Capture::dead_with_precision(pcap::Linktype(1), pcap::Precision::Nano)
        .expect("dead capture");
    let mut file = dead.savefile(out).expect("savefile");
    for (ts, frame) in frames {
        write_frame(&mut file, *ts, frame);
    }
    file.flush().expect("flush");
}

/// An Ethernet frame as a Linux "cooked" capture has it (what `tcpdump -i any` writes): version 1
/// (16-byte header, EtherType at 14) or version 2 (20-byte header, EtherType at 0). Frames with a
/// VLAN tag are left out: on "any" the kernel has already removed the tag.
fn cooked(data: &[u8], version: u8) -> Option<Vec<u8>> {
    let (ether_type, payload) = (data.get(12..14)?, data.get(14..)?);
    if ether_type == [0x81, 0x00] || ether_type == [0x88, 0xa8] {
        return None;
    }
    let mut frame = Vec::with_capacity(data.len() + 6);
    if version == 1 {
        frame.extend_from_slice(&[0, 0, 0, 1, 0, 6]); // incoming, ARPHRD_ETHER, 6-byte address
        frame.extend_from_slice(&data[6..12]);
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(ether_type);
    } else {
        frame.extend_from_slice(ether_type);
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6]); // ifindex 2, ARPHRD_ETHER
        frame.extend_from_slice(&data[6..12]);
        frame.extend_from_slice(&[0, 0]);
    }
    frame.extend_from_slice(payload);
    Some(frame)
}

/// An Ethernet frame carrying IP sent over MPLS: two labels (the bottom one with the S bit)
/// between the Ethernet header and the IP packet, EtherType 0x8847. Other frames stay as they are.
fn over_mpls(data: &[u8]) -> Option<Vec<u8>> {
    let ether_type = data.get(12..14)?;
    if ether_type != [0x08, 0x00] && ether_type != [0x86, 0xdd] {
        return Some(data.to_vec());
    }
    let mut frame = data[..12].to_vec();
    frame.extend_from_slice(&[0x88, 0x47]);
    frame.extend_from_slice(&[0x00, 0x01, 0x20, 0x40]); // label 18, TC 0, not bottom, TTL 64
    frame.extend_from_slice(&[0x00, 0x3e, 0x81, 0x3f]); // label 1000, bottom of stack, TTL 63
    frame.extend_from_slice(&data[14..]);
    Some(frame)
}

/// The same traffic captured on Ethernet, on Linux's "any" device (cooked v1 and v2), on an
/// MPLS link, on PPP links (plain and HDLC-framed), on Wi-Fi (802.11, plain and behind
/// radiotap), through netfilter's NFLOG, on FDDI, and behind VN-Tag, 802.1ah and FabricPath
/// headers gives the same events: flows, DNS, HTTP, TLS and SSH metadata alike. Each is written
/// as a capture file of its own link type and read back through libpcap.
#[test]
fn every_link_type_and_ethernet_encapsulation_gives_the_events_of_the_ethernet_capture() {
    let dir = std::env::temp_dir().join(format!("canh-cooked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut compared = 0;
    for name in ["http-get.pcap", "dns53.pcap", "tls-tls1.2.pcap", "ssh-sshguess.pcap"] {
        let source = shared(&format!("zeek/{name}"));
        if !source.exists() {
            continue;
        }
        let ethernet: Vec<String> =
            events(&source).iter().map(|e| serde_json::to_string(e).expect("json")).collect();
        assert!(!ethernet.is_empty(), "{name}");
        let variants: [(&str, i32, &Rewrite); 12] = [
            ("cooked v1", 113, &|d| cooked(d, 1)),
            ("cooked v2", 276, &|d| cooked(d, 2)),
            ("MPLS", 1, &over_mpls),
            ("PPP", 9, &|d| ip_of(d).map(|(ip, ppp)| [&[0xff, 0x03, 0x00, ppp][..], ip].concat())),
            ("PPP serial", 50, &|d| {
                ip_of(d).map(|(ip, ppp)| [&[0x0f, 0, 0, ppp][..], ip].concat())
            }),
            ("802.11", 105, &|d| wifi(d)),
            ("radiotap", 127, &|d| wifi(d).map(|w| [&[0, 0, 8, 0, 0, 0, 0, 0][..], &w].concat())),
            ("NFLOG", 239, &nflog),
            ("FDDI", 10, &|d| fddi(d)),
            ("VN-Tag", 1, &|d| Some([&d[..12], &[0x89, 0x26, 0x80, 0, 0, 7], &d[12..]].concat())),
            ("802.1ah", 1, &|d| Some([&d[..12], &[0x88, 0xe7, 0, 0, 0, 9], d].concat())),
            ("FabricPath", 1, &|d| Some([&d[..12], &[0x89, 0x03, 0, 0x3f], d].concat())),
        ];
        for (what, linktype, rewrite) in variants {
            let out = dir.join(format!("{name}.{linktype}.pcap"));
            let frames = rewritten(&source, linktype, &out, rewrite);
            assert!(frames > 0, "{name}");
            let got: Vec<String> =
                events(&out).iter().map(|e| serde_json::to_string(e).expect("json")).collect();
            assert_eq!(got, ethernet, "{name} as {what}");
        }
        compared += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(compared >= 3 || !shared("").exists(), "only {compared} captures compared");
}

/// The IP packet of an untagged Ethernet frame and its PPP protocol's low byte (0x21 IPv4,
/// 0x57 IPv6); None for anything else.
fn ip_of(frame: &[u8]) -> Option<(&[u8], u8)> {
    match frame.get(12..14)? {
        [0x08, 0x00] => Some((&frame[14..], 0x21)),
        [0x86, 0xdd] => Some((&frame[14..], 0x57)),
        _ => None,
    }
}

/// An untagged Ethernet frame's IP packet as an 802.11 QoS data frame from the distribution
/// system (24-byte header, QoS control, LLC/SNAP with the EtherType).
fn wifi(frame: &[u8]) -> Option<Vec<u8>> {
    ip_of(frame)?;
    let mut out = vec![0x88, 0x02, 0, 0];
    out.extend_from_slice(&frame[..6]); // receiver
    out.extend_from_slice(&frame[6..12]); // transmitter
    out.extend_from_slice(&frame[6..12]); // source
    out.extend_from_slice(&[0, 0, 0, 0]); // sequence control, QoS control
    out.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0]);
    out.extend_from_slice(&frame[12..]);
    Some(out)
}

/// An untagged Ethernet frame's IP packet as an FDDI frame: frame control, destination and
/// source addresses, LLC/SNAP with the EtherType.
fn fddi(frame: &[u8]) -> Option<Vec<u8>> {
    let (ip, _) = ip_of(frame)?;
    let header = [&[0x50][..], &frame[..12], &[0xaa, 0xaa, 0x03, 0, 0, 0], &frame[12..14]];
    Some([&header.concat()[..], ip].concat())
}

/// An untagged Ethernet frame's IP packet as an NFLOG record: header (family, version 0,
/// resource), a prefix attribute (4 + 5 bytes, padded to 12), then the packet attribute.
fn nflog(frame: &[u8]) -> Option<Vec<u8>> {
    let (ip, ppp) = ip_of(frame)?;
    let family = if ppp == 0x21 { 2 } else { 10 };
    let mut out = vec![family, 0, 0, 1];
    out.extend_from_slice(&9u16.to_ne_bytes());
    out.extend_from_slice(&10u16.to_ne_bytes());
    out.extend_from_slice(b"canh\0\0\0\0");
    out.extend_from_slice(&((4 + ip.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&9u16.to_ne_bytes());
    out.extend_from_slice(ip);
    Some(out)
}

/// UDP tunnels Zeek decapsulates, with how each wraps a captured Ethernet frame (None: the frame
/// cannot go in this tunnel and is left out).
#[derive(Clone, Copy, Debug)]
enum Tunnel {
    Vxlan,
    Geneve,
    Ayiya,
    Teredo,
    Gtp,
}

impl Tunnel {
    fn port(self) -> u16 {
        match self {
            Tunnel::Vxlan => 4789,
            Tunnel::Geneve => 6081,
            Tunnel::Ayiya => 5072,
            Tunnel::Teredo => 3544,
            Tunnel::Gtp => 2152,
        }
    }

    /// The UDP payload carrying `frame`.
    fn payload(self, frame: &[u8]) -> Option<Vec<u8>> {
        let ip = || match frame.get(12..14)? {
            [0x08, 0x00] => Some((4u8, &frame[14..])),
            [0x86, 0xdd] => Some((41u8, &frame[14..])),
            _ => None,
        };
        let mut out = Vec::new();
        match self {
            Tunnel::Vxlan => {
                out.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
                out.extend_from_slice(frame);
            }
            Tunnel::Geneve => {
                // Version 0, one 4-byte word of options, Ethernet follows; then the option.
                out.extend_from_slice(&[0x01, 0, 0x65, 0x58, 0, 0, 42, 0]);
                out.extend_from_slice(&[0x01, 0x02, 0x03, 0x00]);
                out.extend_from_slice(frame);
            }
            Tunnel::Ayiya => {
                let (next, packet) = ip()?;
                // 16-byte identity, 20-byte signature, "forward", next header, epoch.
                out.extend_from_slice(&[0x41, 0x52, 0x11, next, 0x5f, 0x00, 0x00, 0x01]);
                out.extend_from_slice(&[0xaa; 16]);
                out.extend_from_slice(&[0xbb; 20]);
                out.extend_from_slice(packet);
            }
            Tunnel::Gtp => {
                let (_, packet) = ip()?;
                // Version 1, GTP, E and S flags; G-PDU; length; TEID; sequence, N-PDU, next
                // extension type (0xc0: PDCP PDU number), then that extension and no other.
                let length = u16::try_from(packet.len() + 8).ok()?.to_be_bytes();
                out.extend_from_slice(&[0x36, 0xff, length[0], length[1], 0, 0, 0, 7]);
                out.extend_from_slice(&[0x00, 0x01, 0x00, 0xc0]);
                out.extend_from_slice(&[0x01, 0x12, 0x34, 0x00]);
                out.extend_from_slice(packet);
            }
            Tunnel::Teredo => {
                let (41, packet) = ip()? else { return None };
                // Origin indication (port and address obfuscated), then the IPv6 packet.
                out.extend_from_slice(&[0x00, 0x00, 0xf2, 0x27, 0x3f, 0xff, 0xfd, 0xfe]);
                out.extend_from_slice(packet);
            }
        }
        Some(out)
    }

    /// `frame` inside this tunnel: Ethernet, IPv4 192.0.2.1 -> 192.0.2.2, UDP 40000 -> the
    /// tunnel's port.
    fn wrap(self, frame: &[u8]) -> Option<Vec<u8>> {
        let payload = self.payload(frame)?;
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(40000, self.port());
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, &payload).expect("frame");
        Some(out)
    }
}

/// An event as JSON without its `event.id` (numbered in output order, which the tunnel's own flow
/// shifts).
fn without_id(event: &Event) -> String {
    let mut value = serde_json::to_value(event).expect("json");
    if let Some(info) = value.get_mut("event").and_then(|e| e.as_object_mut()) {
        info.remove("id");
    }
    value.to_string()
}

/// Traffic carried in VXLAN, Geneve, GTP-U, AYIYA or Teredo gives the events of the same traffic
/// captured bare (flows, DNS, HTTP, TLS, SSH metadata), plus the tunnel's own UDP flow, which
/// Zeek logs too (its conn.log for `core/tunnels/vxlan` and `teredo`): every frame counted in
/// packets and IP bytes, one direction (`S0`, history `D`).
#[test]
fn tunnelled_traffic_gives_the_inner_events_and_the_tunnel_flow() {
    let dir = std::env::temp_dir().join(format!("canh-tunnels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut compared = 0;
    let cases = [
        ("http-get.pcap", Tunnel::Vxlan),
        ("dns53.pcap", Tunnel::Vxlan),
        ("tls-tls1.2.pcap", Tunnel::Geneve),
        ("ssh-sshguess.pcap", Tunnel::Geneve),
        ("http-get.pcap", Tunnel::Ayiya),
        ("ftp-ipv6.pcap", Tunnel::Ayiya),
        ("dns53.pcap", Tunnel::Ayiya),
        ("http-get.pcap", Tunnel::Gtp),
        ("ftp-ipv6.pcap", Tunnel::Gtp),
        ("ftp-ipv6.pcap", Tunnel::Teredo),
        // IPv6 fragments inside the tunnel, reassembled as they would be bare.
        ("ipv6-fragmented-dns.pcap", Tunnel::Teredo),
        ("ipv6-fragmented-dns.pcap", Tunnel::Vxlan),
    ];
    for (name, tunnel) in cases {
        let source = shared(&format!("zeek/{name}"));
        if !source.exists() {
            continue;
        }
        // The bare traffic: the frames the tunnel can carry, as they were.
        let bare_file = dir.join(format!("{name}.{tunnel:?}.bare.pcap"));
        rewritten(&source, 1, &bare_file, |d| tunnel.payload(d).map(|_| d.to_vec()));
        let bare: Vec<String> = events(&bare_file).iter().map(without_id).collect();
        assert!(!bare.is_empty(), "{name}");

        let wrapped_file = dir.join(format!("{name}.{tunnel:?}.pcap"));
        let mut ip_bytes = 0u64;
        let frames = rewritten(&source, 1, &wrapped_file, |d| {
            let wrapped = tunnel.wrap(d)?;
            ip_bytes += (wrapped.len() - 14) as u64;
            Some(wrapped)
        });
        let got = events(&wrapped_file);
        let (outer, inner): (Vec<&Event>, Vec<&Event>) = got.iter().partition(|e| {
            e.source.as_ref().and_then(|s| s.port) == Some(40000)
                && e.destination.as_ref().and_then(|d| d.port) == Some(tunnel.port())
        });
        let inner: Vec<String> = inner.into_iter().map(without_id).collect();
        assert_eq!(inner, bare, "{name} in {tunnel:?}: inner events");
        assert_eq!(outer.len(), 1, "{name} in {tunnel:?}: tunnel flows {outer:?}");
        let (source_side, flow) = (outer[0].source.as_ref(), outer[0].flow.as_ref());
        assert_eq!(
            (source_side.and_then(|s| s.packets), source_side.and_then(|s| s.bytes)),
            (Some(frames as u64), Some(ip_bytes)),
            "{name} in {tunnel:?}: tunnel flow counts"
        );
        assert_eq!(
            flow.map(|f| (f.state.as_deref(), f.history.as_deref())),
            Some((Some("S0"), Some("D"))),
            "{name} in {tunnel:?}"
        );
        compared += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(compared >= 6 || !shared("").exists(), "only {compared} cases compared");
}

/// A server segment the capture lost inside a response body of known length (`rig-ek-infection`,
/// connection 192.168.1.46:49163 -> :80: three responses in 16 segments, the first with
/// `Content-Length: 6877`; its segment at relative sequence number 2921..4381 is left out). The
/// client's acknowledgment past it tells the sensor those bytes will not come, as Zeek's
/// reassembler concludes: the hole counts as body and both responses after it are still read,
/// though far fewer segments follow it than the reorder buffer holds.
#[test]
fn a_lost_segment_inside_a_response_body_leaves_the_later_responses_readable() {
    let source = shared("samples/rig-ek-infection.pcapng");
    if !source.exists() {
        eprintln!("shared data set absent, nothing to check");
        return;
    }
    const PORT: u16 = 49163;
    let responses = |events: &[Event]| -> Vec<(Option<u16>, u64)> {
        events
            .iter()
            .filter(|e| e.http.is_some() && e.source.as_ref().and_then(|s| s.port) == Some(PORT))
            .map(|e| {
                let response = e.http.as_ref().and_then(|h| h.response.as_ref());
                let status = response.and_then(|r| r.status_code);
                let body = response.and_then(|r| r.body.as_ref()).map(|b| b.bytes);
                (status, body.unwrap_or(0))
            })
            .collect()
    };
    let missed = |events: &[Event]| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e.flow.is_some() && e.source.as_ref().and_then(|s| s.port) == Some(PORT))
            .filter_map(|e| e.flow.as_ref()?.missed_bytes)
            .collect()
    };
    let whole = events(&source);
    let before = responses(&whole);
    assert_eq!(before, vec![(Some(200), 6877), (Some(200), 1718), (Some(200), 9903)]);
    assert_eq!(missed(&whole), vec![0]);

    let dir = std::env::temp_dir().join(format!("canh-lost-segment-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("lost.pcap");
    let mut server_isn = None;
    let mut dropped = 0;
    rewritten(&source, 1, &out, |frame| {
        let tcp_of = |f: &[u8]| -> Option<(u16, u16, u32, u8, usize)> {
            if f.get(12..14)? != [0x08, 0x00] || f.get(23)? != &6 {
                return None;
            }
            let ihl = usize::from(f.get(14)? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*f.get(16)?, *f.get(17)?]));
            let t = f.get(14 + ihl..)?;
            let doff = usize::from(t.get(12)? >> 4) * 4;
            let sport = u16::from_be_bytes([t[0], t[1]]);
            let dport = u16::from_be_bytes([t[2], t[3]]);
            let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            Some((sport, dport, seq, t[13], total.saturating_sub(ihl + doff)))
        };
        if let Some((80, PORT, seq, flags, len)) = tcp_of(frame) {
            if flags & 0x02 != 0 {
                server_isn = Some(seq);
            } else if server_isn.is_some_and(|isn| seq.wrapping_sub(isn) == 2921 && len > 0) {
                dropped += 1;
                return None;
            }
        }
        Some(frame.to_vec())
    });
    assert_eq!(dropped, 1, "the segment at 2921 was found");
    let lossy = events(&out);
    assert_eq!(responses(&lossy), before, "every response read, the hole counted as body");
    assert_eq!(missed(&lossy), vec![1460]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// DTLS handshakes between OpenSSL's client and server (`tests/dtls/`, made by
/// `scripts/make-handshake-captures.sh dtls`): one tls event per connection, with the values
/// Wireshark's dissection and the certificate give (tests/dtls/README.md). Both captures exchange a cookie
/// (two ClientHellos) and send the certificate in fragments spread over several datagrams.
#[test]
fn dtls_handshakes_give_what_wireshark_and_the_certificate_show() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dtls");
    // (file, version, cipher (Wireshark's number, by its IANA name), SNI, ALPN chosen, JA3, JA3S)
    let cases = [
        (
            "dtls1_0.pcap",
            "1.0",
            "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", // 0xc014
            "vpn.example.net",
            None,
            "286a367bb52e0536fe50f326e484150b",
            "63e4df981626f8f548debbc59b70d0ac",
        ),
        (
            "dtls1_2.pcap",
            "1.2",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", // 0xc030
            "media.example.org",
            Some("webrtc"),
            "096df697a18c538158d6a52abc65a0db",
            "e0fa7acd03af071725a47e9c2d72017b",
        ),
    ];
    for (file, version, cipher, sni, alpn, ja3, ja3s) in cases {
        let tls = tls_events(&dir.join(file));
        assert_eq!(tls.len(), 1, "{file}: {tls:?}");
        let e = &tls[0];
        let network = e.network.as_ref().expect("network fields");
        assert_eq!(network.protocol.as_deref(), Some("dtls"), "{file}");
        assert_eq!(network.transport.as_deref(), Some("udp"), "{file}");
        let t = e.tls.as_ref().expect("tls fields");
        assert_eq!(t.version_protocol.as_deref(), Some("dtls"), "{file}");
        assert_eq!(t.version.as_deref(), Some(version), "{file}");
        assert_eq!(t.cipher.as_deref(), Some(cipher), "{file}");
        assert_eq!(t.established, Some(true), "{file}");
        assert_eq!(t.next_protocol.as_deref(), alpn, "{file}");
        let client = t.client.as_ref().expect("client hello");
        assert_eq!(client.server_name.as_deref(), Some(sni), "{file}");
        assert_eq!(client.ja3.as_deref(), Some(ja3), "{file}");
        // JA4's protocol letter and version for DTLS: "d", then d1 / d2.
        let ja4_start = format!("dd{}d", if version == "1.0" { 1 } else { 2 });
        assert!(client.ja4.as_deref().is_some_and(|j| j.starts_with(&ja4_start)), "{file}");
        let server = t.server.as_ref().expect("server hello");
        assert_eq!(server.ja3s.as_deref(), Some(ja3s), "{file}");
        // The certificate, put together from its fragments (names in Zeek's order).
        let names = "O=Canh Test,CN=dtls.canh.test";
        assert_eq!(server.subject.as_deref(), Some(names), "{file}");
        assert_eq!(server.issuer.as_deref(), Some(names), "{file}");
        let not_before = server.not_before.map(|t| t.0);
        assert_eq!(not_before, Some(1_795_591_633_000_000_000), "{file}: 2026-11-25T07:27:13Z");
        let not_after = server.not_after.map(|t| t.0);
        assert_eq!(not_after, Some(1_827_127_633_000_000_000), "{file}: 2027-11-25T07:27:13Z");
    }
}

/// WebRTC sends STUN before DTLS, and either peer may be the DTLS client: here the DTLS server's
/// STUN packet comes first (so it is the flow's originator) and the ClientHello comes from the
/// responder. The client's fields are still the client's.
#[test]
fn dtls_after_stun_with_the_responder_as_client() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dtls/dtls1_2.pcap");
    let mut frames = ethernet_frames(&source);
    // The second frame is the server's HelloVerifyRequest; a copy of it whose UDP payload is a STUN
    // binding request (type 1, length, magic cookie, transaction id) goes first.
    let mut stun = frames[1].1.clone();
    let payload = &mut stun[14 + 20 + 8..];
    let attributes = (payload.len() - 20) as u16;
    payload.fill(0);
    payload[..2].copy_from_slice(&[0, 1]);
    payload[2..4].copy_from_slice(&attributes.to_be_bytes());
    payload[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    payload[8..20].copy_from_slice(b"canh-stun-id");
    frames.insert(0, (frames[0].0 - 1_000_000, stun));
    let dir = std::env::temp_dir().join(format!("canh-dtls-stun-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("stun-first.pcap");
    save_ethernet(&out, &frames);
    let tls = tls_events(&out);
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    assert_eq!(tls.len(), 1, "{tls:?}");
    // The flow's originator is the server (port 4435, the STUN packet's sender).
    assert_eq!(tls[0].source.as_ref().and_then(|s| s.port), Some(4435));
    let t = tls[0].tls.as_ref().expect("tls fields");
    let client = t.client.as_ref().expect("client hello");
    assert_eq!(client.server_name.as_deref(), Some("media.example.org"));
    assert_eq!(client.ja3.as_deref(), Some("096df697a18c538158d6a52abc65a0db"));
    let ja3s = t.server.as_ref().and_then(|s| s.ja3s.as_deref());
    assert_eq!(ja3s, Some("e0fa7acd03af071725a47e9c2d72017b"));
    assert_eq!((t.version.as_deref(), t.established), (Some("1.2"), Some(true)));
}

/// The tls events of a capture.
fn tls_events(file: &Path) -> Vec<Event> {
    events(file).into_iter().filter(|e| e.event.dataset == canh_event::Dataset::Tls).collect()
}

/// QUIC handshakes between aioquic's client and server (`tests/quic/`, made by
/// `scripts/make-handshake-captures.sh quic`): the hellos inside the Initial packets, protection
/// removed, give one tls event per connection with what Wireshark shows of them
/// (tests/quic/README.md).
/// As in Zeek's ssl.log for QUIC, the connection is not marked established and has no ALPN
/// chosen: the rest of the handshake is encrypted.
#[test]
fn quic_initial_packets_give_the_hellos_wireshark_shows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quic");
    for (file, sni, alpn) in [
        ("quic-v1.pcap", "www.example.org", "h3"),
        ("quic-v2-retry.pcap", "video.example.net", "h3"),
        ("quic-v1-long-hello.pcap", "big.example.com", "p1"),
    ] {
        let tls = tls_events(&dir.join(file));
        assert_eq!(tls.len(), 1, "{file}: {tls:?}");
        let network = tls[0].network.as_ref().expect("network fields");
        assert_eq!(network.protocol.as_deref(), Some("quic"), "{file}");
        assert_eq!(network.transport.as_deref(), Some("udp"), "{file}");
        let t = tls[0].tls.as_ref().expect("tls fields");
        assert_eq!(t.version.as_deref(), Some("1.3"), "{file}");
        assert_eq!(t.version_protocol.as_deref(), Some("tls"), "{file}");
        assert_eq!(t.cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"), "{file}");
        assert_eq!((t.established, t.next_protocol.as_deref()), (Some(false), None), "{file}");
        let client = t.client.as_ref().expect("client hello");
        assert_eq!(client.server_name.as_deref(), Some(sni), "{file}");
        assert_eq!(client.ja3.as_deref(), Some("121f6e4f22ee3205214b0676ed64b9e2"), "{file}");
        // JA4: QUIC, TLS 1.3, an SNI, 3 suites, 7 extensions, the first ALPN's first and last
        // characters.
        let ja4_start = format!("q13d0307{alpn}_");
        assert!(client.ja4.as_deref().is_some_and(|j| j.starts_with(&ja4_start)), "{file}");
        let ja3s = t.server.as_ref().and_then(|s| s.ja3s.as_deref());
        assert_eq!(ja3s, Some("15af977ce25de452b96affa2addb1036"), "{file}");
    }
}

/// A damaged client Initial fails its authentication tag: it does not start a QUIC analysis, and
/// nor does the server's Initial that answers it (a server's Initial cannot be opened with client
/// keys), as Zeek logs no ssl.log row when decryption fails from the start. When the client's
/// intact Initial follows the damaged one, the handshake is read as usual. A capture with no
/// Initial packet (the datagrams after the handshake) gives no tls event at all.
#[test]
fn damaged_or_missing_quic_initials_are_not_misread() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quic/quic-v1.pcap");
    let dir = std::env::temp_dir().join(format!("canh-quic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let frames = ethernet_frames(&source);
    // A byte of the first Initial's encrypted payload, well past its header.
    let mut broken = frames[0].clone();
    broken.1[14 + 20 + 8 + 200] ^= 0x40;
    let write = |name: &str, frames: &[(i64, Vec<u8>)]| {
        let out = dir.join(name);
        save_ethernet(&out, frames);
        out
    };
    let damaged = [vec![broken.clone()], frames[1..].to_vec()].concat();
    let tls = tls_events(&write("damaged.pcap", &damaged));
    assert!(tls.is_empty(), "{tls:?}");
    let retransmitted = [vec![(broken.0 - 1_000, broken.1)], frames.clone()].concat();
    let tls = tls_events(&write("retransmitted.pcap", &retransmitted));
    assert_eq!(tls.len(), 1, "{tls:?}");
    let t = tls[0].tls.as_ref().expect("tls fields");
    let sni = t.client.as_ref().and_then(|c| c.server_name.as_deref());
    assert_eq!(sni, Some("www.example.org"));
    assert_eq!(t.cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));

    let late = dir.join("late.pcap");
    let mut n = 0;
    rewritten(&source, 1, &late, |frame| {
        n += 1;
        (n > 4).then(|| frame.to_vec())
    });
    let all = events(&late);
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    assert!(!all.is_empty());
    assert!(all.iter().all(|e| e.event.dataset != canh_event::Dataset::Tls), "{all:?}");
}
