//! Hostile and broken packets: the fuzz targets' regression inputs, property tests over the decoder
//! and the packet path, and the reasons malformed frames are counted under. The harness (shared
//! with `sensor/fuzz`) checks for every input that nothing panics, every frame is counted and a
//! rejected frame is counted under its reason; see `robustness_support`.

mod robustness_support;

use canh_sensor::decode::{decode, DecodeError, LinkType};
use etherparse::PacketBuilder;
use proptest::prelude::*;
use robustness_support::{ethernet_frame, ip_packet, pcap_file, pcap_frames, Outcome};
use std::path::{Path, PathBuf};

fn counted(outcome: &Outcome) -> Vec<(&'static str, u64)> {
    outcome.decode_errors.clone()
}

/// A TCP SYN over IPv4 in Ethernet with a 4-byte payload.
fn tcp_v4_frame() -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1000, 64240)
        .syn();
    let mut frame = Vec::new();
    builder.write(&mut frame, b"GET ").expect("write frame");
    frame
}

/// A DNS query over UDP over IPv6 in 802.1Q-tagged Ethernet.
fn udp_v6_vlan_frame() -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
        .single_vlan(etherparse::VlanId::try_new(42).expect("vlan id"))
        .ipv6([0x20; 16], [0x21; 16], 64)
        .udp(53000, 53);
    let query = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l',
        b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
    ];
    let mut frame = Vec::new();
    builder.write(&mut frame, &query).expect("write frame");
    frame
}

#[test]
fn malformed_frames_are_counted_by_reason() {
    let tcp = tcp_v4_frame();
    // 14 bytes Ethernet, 20 IPv4, 20 TCP.
    assert_eq!(counted(&ethernet_frame(&tcp[..10])), [("truncated_link", 1)]);
    assert_eq!(counted(&ethernet_frame(&tcp[..14 + 12])), [("bad_ip_header", 1)]);
    assert_eq!(counted(&ethernet_frame(&tcp[..14 + 20 + 10])), [("bad_transport_header", 1)]);
    let mut arp = tcp.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(counted(&ethernet_frame(&arp[..14 + 28])), [("not_ip", 1)]);
    let mut ipx = tcp.clone();
    ipx[12..14].copy_from_slice(&[0x81, 0x37]);
    assert_eq!(counted(&ethernet_frame(&ipx)), [("not_ip", 1)]);
    assert_eq!(counted(&ip_packet(&[0x45, 0, 0])), [("bad_ip_header", 1)]);
    // Whole frames decode, make a flow, and count nothing.
    for frame in [tcp, udp_v6_vlan_frame()] {
        let outcome = ethernet_frame(&frame);
        assert_eq!(counted(&outcome), [], "{frame:02x?}");
        assert!(outcome.events >= 1, "no flow event for a valid frame");
    }
}

#[test]
fn every_truncated_prefix_of_valid_frames_is_handled() {
    for frame in [tcp_v4_frame(), udp_v6_vlan_frame()] {
        for len in 0..frame.len() {
            let outcome = ethernet_frame(&frame[..len]);
            let errors: u64 = outcome.decode_errors.iter().map(|(_, n)| n).sum();
            // A prefix either decodes (a flow with a cut payload) or is counted once.
            assert!(errors + u64::from(outcome.events >= 1) == 1, "prefix {len}: {outcome:?}");
        }
    }
}

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

/// Inputs that crashed a fuzz target once, named `<target>-<what>`; each must now run cleanly.
#[test]
fn fuzz_regression_inputs_run_cleanly() {
    let mut ran = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(regressions_dir())
        .expect("sensor/tests/fuzz_regressions exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_string();
        let data = std::fs::read(&path).expect("read regression input");
        let target = name.split('-').next().unwrap_or("");
        match target {
            "ethernet_frame" => ethernet_frame(&data),
            "ip_packet" => ip_packet(&data),
            "pcap_file" => pcap_file(&data),
            _ => panic!("{name}: the name must start with a fuzz target's name and a '-'"),
        };
        ran += 1;
    }
    eprintln!("{ran} fuzz regression inputs ran cleanly");
}

/// The shared Zeek traces (the fuzz corpus seeds) through the harness: its pcap reader finds the
/// frames libpcap finds, and real traffic passes every invariant.
#[test]
fn shared_captures_pass_the_harness() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pcap/zeek");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("{} not found: shared data set absent, nothing to check", dir.display());
        return;
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "pcap"));
    files.sort();
    let (mut checked, mut with_events) = (0, 0);
    for file in &files {
        let data = std::fs::read(file).expect("read capture");
        let frames = pcap_frames(&data);
        if frames.is_empty() {
            continue; // pcapng or a link type the sensor does not read
        }
        let by_libpcap = canh_sensor::capture::read_file(file, |_, _, _| {}).expect("libpcap");
        assert_eq!(frames.len() as u64, by_libpcap, "{}", file.display());
        let outcome = pcap_file(&data);
        assert_eq!(outcome.frames, by_libpcap);
        checked += 1;
        with_events += usize::from(outcome.events > 0);
    }
    // A few traces hold only fragments that never complete: no events, and that is right.
    assert!(checked >= 20, "only {checked} of {} captures read by the harness", files.len());
    assert!(with_events >= 20, "only {with_events} of {checked} captures gave events");
}

/// A valid frame, then damage: cut it short and overwrite a few bytes.
fn damaged_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::bool::ANY,
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    )
        .prop_map(|(v6, cut, hits)| {
            let mut frame = if v6 { udp_v6_vlan_frame() } else { tcp_v4_frame() };
            frame.truncate(cut.index(frame.len() + 1));
            if !frame.is_empty() {
                for (at, byte) in hits {
                    let i = at.index(frame.len());
                    frame[i] = byte;
                }
            }
            frame
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_as_an_ethernet_frame(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        ethernet_frame(&bytes);
    }

    #[test]
    fn any_bytes_as_an_ip_packet(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        ip_packet(&bytes);
    }

    #[test]
    fn damaged_valid_frames(frame in damaged_frame()) {
        let outcome = ethernet_frame(&frame);
        let errors: u64 = outcome.decode_errors.iter().map(|(_, n)| n).sum();
        prop_assert!(errors <= 1);
        // A lone fragment waits for the rest (counted in canh_sensor_fragments_total on timeout).
        let fragment = matches!(decode(LinkType::Ethernet, &frame), Err(DecodeError::Fragment));
        prop_assert!(
            errors == 1 || fragment || outcome.events >= 1,
            "neither counted nor a flow: {:?}",
            outcome
        );
    }

    #[test]
    fn sequences_of_damaged_frames(frames in prop::collection::vec(damaged_frame(), 1..20)) {
        // One pipeline across the frames: flows, sessions and reassembly see them in order.
        let frames: Vec<_> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| (LinkType::Ethernet, i as i64 * 1_000_000, f.as_slice()))
            .collect();
        let outcome = robustness_support::run(&frames);
        prop_assert_eq!(outcome.frames, frames.len() as u64);
    }
}
