//! One harness for the fuzz targets (`sensor/fuzz`, which include this file) and the regression and
//! property tests (`sensor/tests/robustness.rs`): bytes go through decode, fragment reassembly, the
//! flow table, the protocol analysers and JSON encoding, and the harness checks what must hold for
//! any input: nothing panics, every frame is counted, and a frame the decoder rejects is counted
//! under its reason in `canh_sensor_decode_errors_total`.

#![allow(dead_code)] // each includer uses part of it

use canh_sensor::decode::{decode, DecodeError, LinkType};
use canh_sensor::flow::{FlowConfig, Identity};
use canh_sensor::metrics::Metrics;
use canh_sensor::packets::PacketPipeline;

/// What one run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub frames: u64,
    pub events: usize,
    /// Frames the decoder rejected (fragments excepted), by reason, as the metric counted them.
    pub decode_errors: Vec<(&'static str, u64)>,
}

thread_local! {
    // One registry per thread: building one per input would dominate a fuzzing run.
    static METRICS: &'static Metrics = Box::leak(Box::new(Metrics::new()));
}

fn error_counts(metrics: &Metrics) -> [u64; 5] {
    DecodeError::ALL.map(|e| metrics.decode_errors.with_label_values(&[e.reason()]).get())
}

/// Run `frames` (link type, timestamp in ns, bytes) through one packet pipeline and check the
/// counters after each frame. Panics when an invariant does not hold.
pub fn run(frames: &[(LinkType, i64, &[u8])]) -> Outcome {
    let metrics: &'static Metrics = METRICS.with(|m| *m);
    let who = Identity { sensor_id: "fuzz".into(), tenant: "fuzz".into(), community_id_seed: 0 };
    let mut pipeline = PacketPipeline::new(who, FlowConfig::default(), 0, metrics);
    let mut events = Vec::new();
    let mut outcome = Outcome::default();
    let packets_before = metrics.packets.get();
    let errors_before = error_counts(metrics);
    for &(link, ts_ns, data) in frames {
        let expected = decode(link, data).err();
        let before = error_counts(metrics);
        pipeline.frame(link, ts_ns, data, &mut events);
        let after = error_counts(metrics);
        let grown: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        match expected {
            None => assert!(grown.iter().all(|&n| n == 0), "decoded frame counted as error"),
            // A fragment may complete a packet that then fails to decode: at most one count.
            Some(DecodeError::Fragment) => assert!(grown.iter().sum::<u64>() <= 1),
            Some(err) => {
                let i = DecodeError::ALL.iter().position(|e| *e == err).expect("listed reason");
                for (j, n) in grown.iter().enumerate() {
                    assert_eq!(*n, u64::from(i == j), "{err:?} not counted under its reason");
                }
            }
        }
        outcome.frames += 1;
        outcome.events += encode(&mut events);
    }
    pipeline.finish(&mut events);
    outcome.events += encode(&mut events);
    assert_eq!(metrics.packets.get() - packets_before, outcome.frames, "every frame is counted");
    let errors_after = error_counts(metrics);
    outcome.decode_errors = DecodeError::ALL
        .iter()
        .zip(errors_after.iter().zip(errors_before))
        .map(|(e, (a, b))| (e.reason(), a - b))
        .filter(|(_, n)| *n > 0)
        .collect();
    outcome
}

/// Encode every event as the sensor writes it (JSON) and check it reads back.
fn encode(events: &mut Vec<canh_event::Event>) -> usize {
    let n = events.len();
    for event in events.drain(..) {
        let json = serde_json::to_vec(&event).expect("events always encode");
        let back: serde_json::Value = serde_json::from_slice(&json).expect("encoded JSON parses");
        assert!(back.get("event").is_some());
    }
    n
}

/// The input as one Ethernet frame.
pub fn ethernet_frame(data: &[u8]) -> Outcome {
    run(&[(LinkType::Ethernet, 1_000_000_000, data)])
}

/// The input as one raw IPv4 or IPv6 packet.
pub fn ip_packet(data: &[u8]) -> Outcome {
    run(&[(LinkType::Raw, 1_000_000_000, data)])
}

/// The input as a classic pcap file (either byte order, microsecond or nanosecond timestamps),
/// so real captures seed the corpus and flows and sessions see many packets. Reading stops at the
/// first record that does not fit; an unknown header or link type gives no frames.
pub fn pcap_file(data: &[u8]) -> Outcome {
    run(&pcap_frames(data))
}

pub fn pcap_frames(data: &[u8]) -> Vec<(LinkType, i64, &[u8])> {
    let Some(magic) = data.get(..4) else { return Vec::new() };
    let (little, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => return Vec::new(),
    };
    let u32_at = |at: usize| -> Option<u32> {
        let bytes: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if little { u32::from_le_bytes(bytes) } else { u32::from_be_bytes(bytes) })
    };
    let Some(link) = u32_at(20).and_then(|l| LinkType::from_pcap(l as i32)) else {
        return Vec::new();
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while let (Some(secs), Some(frac), Some(caplen)) = (u32_at(at), u32_at(at + 4), u32_at(at + 8))
    {
        let start = at + 16;
        let Some(bytes) = data.get(start..start.saturating_add(caplen as usize)) else { break };
        let frac_ns = if nanos { i64::from(frac) } else { i64::from(frac) * 1_000 };
        frames.push((link, i64::from(secs) * 1_000_000_000 + frac_ns, bytes));
        at = start + bytes.len();
    }
    frames
}
