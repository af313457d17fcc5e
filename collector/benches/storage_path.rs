//! The collector's per-event work on the storage path without Kafka or ClickHouse (a benchmark, not
//! a test): JSON lines packed as the sensor packs them, routed into batches of 50,000 events
//! (`consume::route_record`: decode, rows, and with detection the tape (`detect::tape`) the
//! detector reads), then, with detection, `Detector::process_tape` over the batch; the batch is
//! dropped as after a write. Prints CPU-s per million events (this thread's and the process's) for
//! storage alone, storage with the detection inputs made but no detection, and the whole path.
//!
//! `cargo bench -p canh-collector --bench storage_path`. Environment: `CANH_BENCH_TEMPLATES=FILE`
//! (JSON lines; default: the detection benchmark's mix, `support/mix.rs`), `CANH_BENCH_EVENTS`
//! (default 300,000), `CANH_BENCH_DETECTION=0|1` (default both, one after the other),
//! `CANH_BENCH_BATCH` (events per batch, default 50,000).

/// The collector's allocator (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mix.rs"]
mod mix;

use canh_collector::consume::route_record;
use canh_collector::detect::load::load_dir;
use canh_collector::detect::mapping::Mapping;
use canh_collector::detect::{Detector, Settings};
use canh_collector::store::{Batch, Origin};
use canh_event::Timestamp;
use std::path::Path;
use std::time::Instant;

const PACK_BYTES: usize = 128 * 1024;

fn cpu(path: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().collect();
    if path.ends_with("schedstat") {
        return fields.first().and_then(|n| n.parse::<f64>().ok()).unwrap_or(0.0) / 1e9;
    }
    // /proc/self/stat: utime and stime in clock ticks (fields 14 and 15), 100 per second here.
    let ticks = |i: usize| fields.get(i).and_then(|n| n.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) + ticks(14)) / 100.0
}

/// Events per batch: `CANH_BENCH_BATCH`, default 50,000 (the collector's `batch.max_records`).
fn batch_size() -> usize {
    std::env::var("CANH_BENCH_BATCH").ok().and_then(|n| n.parse().ok()).unwrap_or(50_000)
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Packs of JSON lines, each up to PACK_BYTES, holding `count` events cycled from `templates`.
fn packs(templates: &[String], count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pack = Vec::new();
    for i in 0..count {
        if !pack.is_empty() {
            pack.push(b'\n');
        }
        pack.extend_from_slice(templates[i % templates.len()].as_bytes());
        if pack.len() >= PACK_BYTES {
            out.push(std::mem::take(&mut pack));
        }
    }
    if !pack.is_empty() {
        out.push(pack);
    }
    out
}

/// Route every pack; `inputs`: make the detection inputs too; `detector`: and run it per batch.
fn run(
    label: &str,
    packs: &[Vec<u8>],
    count: usize,
    inputs: bool,
    detector: Option<&mut Detector>,
) {
    let origin = Origin { topic: "canh-flow", partition: 0, offset: 0 };
    let mut detector = detector;
    let (thread0, process0, started) =
        (cpu("/proc/thread-self/schedstat"), cpu("/proc/self/stat"), Instant::now());
    let mut batch = Batch::new(inputs);
    let (mut stored, mut dead, mut alerts) = (0usize, 0usize, 0usize);
    // The largest tape (bytes held, events on it) a batch left.
    let mut tape_bytes = (0usize, 0usize);
    let mut reader = canh_event::pack::PackReader::new().expect("zstd context");
    for (n, pack) in packs.iter().enumerate() {
        route_record(Some(pack), origin, &mut batch, &mut reader, |routed| match routed {
            Ok(()) => stored += 1,
            Err(_) => dead += 1,
        });
        if batch.len() >= batch_size() || n + 1 == packs.len() {
            if let Some(tape) = batch.detect_inputs.as_ref() {
                tape_bytes = tape_bytes.max((tape.capacity_bytes(), tape.len()));
            }
            if let (Some(detector), Some(inputs)) = (detector.as_mut(), batch.detect_inputs.take())
            {
                alerts += detector.process_tape(&inputs, Timestamp(0)).len();
                // As the consumer does: the inputs go back to the batch and are cleared with it.
                batch.detect_inputs = Some(inputs);
            }
            batch.clear(inputs);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let thread = cpu("/proc/thread-self/schedstat") - thread0;
    let process = cpu("/proc/self/stat") - process0;
    let per_m = |s: f64| s * 1e6 / count as f64;
    println!(
        "{label:<28} {stored} stored, {dead} dead letters, {alerts} alerts: {:.2} CPU-s per million (thread), {:.2} (process), {:.0} events/s wall",
        per_m(thread),
        per_m(process),
        count as f64 / wall
    );
    if tape_bytes.1 > 0 {
        println!(
            "{:<28} largest tape {:.1} MB for {} events ({} bytes per event)",
            "",
            tape_bytes.0 as f64 / 1e6,
            tape_bytes.1,
            tape_bytes.0 / tape_bytes.1
        );
    }
}

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let templates: Vec<String> = match std::env::var("CANH_BENCH_TEMPLATES") {
        Ok(path) => std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {path}: {e}"))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => mix::events(200_000).iter().map(|e| e.to_string()).collect(),
    };
    let count = std::env::var("CANH_BENCH_EVENTS").ok().and_then(|n| n.parse().ok());
    let count = count.unwrap_or(300_000);
    let only = std::env::var("CANH_BENCH_DETECTION").unwrap_or_default();
    let packs = packs(&templates, count);
    println!(
        "{count} events from {} templates in {} packs; load average {}",
        templates.len(),
        packs.len(),
        load_average()
    );
    if only != "1" {
        run("storage only", &packs, count, false, None);
        run("storage + detection inputs", &packs, count, true, None);
    }
    if only != "0" {
        let mapping = Mapping::builtin();
        let loaded = load_dir(&manifest.join("../rules"), &mapping).expect("rule pack");
        let settings = Settings { lateness_secs: 3650 * 86_400, ..Settings::default() };
        let mut detector = Detector::new(loaded, mapping, settings);
        run("storage + rule pack", &packs, count, true, Some(&mut detector));
    }
    println!("load average at the end {}", load_average());
}
