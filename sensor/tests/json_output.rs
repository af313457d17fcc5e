//! `canh-sensor pcap` writes flow events straight from flow records (`json_out`). On every shared
//! capture, its output must be byte for byte the serde_json encoding of the events the pipeline
//! builds for a `Vec<Event>` sink (what the uplink sends), in the same order.

use canh_event::Event;
use canh_sensor::capture;
use canh_sensor::flow::{FlowConfig, Identity};
use canh_sensor::json_out::JsonLines;
use canh_sensor::metrics::Metrics;
use canh_sensor::packets::PacketPipeline;
use std::path::{Path, PathBuf};

fn who(seed: u16) -> Identity {
    // A sensor id that needs JSON escaping takes the escaped path of the cached identity.
    Identity {
        sensor_id: "hn-01 \"edge\"".into(),
        tenant: "hà-nội".into(),
        community_id_seed: seed,
    }
}

fn events(pcap: &Path, seed: u16) -> Vec<Event> {
    let metrics = Metrics::new();
    let mut pipeline = PacketPipeline::new(who(seed), FlowConfig::default(), 7, &metrics);
    let mut out = Vec::new();
    capture::read_file(pcap, |link, ts, data| pipeline.frame(link, ts, data, &mut out))
        .unwrap_or_else(|e| panic!("reading {}: {e}", pcap.display()));
    pipeline.finish(&mut out);
    out
}

fn json_lines(pcap: &Path, seed: u16) -> Vec<u8> {
    let metrics = Metrics::new();
    let mut pipeline = PacketPipeline::new(who(seed), FlowConfig::default(), 7, &metrics);
    let mut buf = Vec::new();
    let mut out = JsonLines::new(&mut buf);
    capture::read_file(pcap, |link, ts, data| pipeline.frame(link, ts, data, &mut out))
        .unwrap_or_else(|e| panic!("reading {}: {e}", pcap.display()));
    pipeline.finish(&mut out);
    out.finish().expect("write to memory");
    buf
}

fn captures(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            captures(&path, found);
        } else if path.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
            found.push(path);
        }
    }
}

#[test]
fn direct_json_equals_serde_json_of_the_events_on_every_shared_capture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pcap");
    if !root.is_dir() {
        // As the agreement test: the shared data lives outside the repository.
        eprintln!("shared data not found at {}; skipping", root.display());
        return;
    }
    let mut files = Vec::new();
    captures(&root, &mut files);
    files.sort();
    assert!(files.len() >= 40, "expected the shared captures under {}", root.display());
    let mut total = 0;
    for file in &files {
        for seed in [0, 7] {
            let expected: Vec<u8> = events(file, seed)
                .iter()
                .flat_map(|e| {
                    let mut line = serde_json::to_vec(e).expect("serialise");
                    line.push(b'\n');
                    line
                })
                .collect();
            let ours = json_lines(file, seed);
            if ours != expected {
                let ours = String::from_utf8_lossy(&ours);
                let expected = String::from_utf8_lossy(&expected);
                let (a, b) = ours
                    .lines()
                    .zip(expected.lines())
                    .find(|(a, b)| a != b)
                    .unwrap_or(("(line count differs)", ""));
                panic!(
                    "{} seed {seed}: first difference\nours:   {a}\nserde:  {b}",
                    file.display()
                );
            }
            total += ours.iter().filter(|&&b| b == b'\n').count();
        }
    }
    assert!(total > 50_000, "only {total} events written");
}
