//! Detection throughput (one thread) on a synthetic but realistic mix of Canh events (flow, dns,
//! http, tls, log; about 1% attacks; `support/mix.rs`), Canh's detector against the naive rsigma
//! loop (one engine, every rule on every event) over the same compiled rules; then memory with one
//! million distinct correlation keys. A benchmark, not a test: it prints figures. Every figure is
//! given per wall-clock second and per second of this thread's CPU time
//! (`/proc/thread-self/schedstat`), so runs on a busy machine still say something.
//!
//! `cargo bench -p canh-collector --bench detect` (release profile). For a profile, fewer events and
//! only some parts: `CANH_BENCH_EVENTS=20000 CANH_BENCH_ONLY=pack,sigmahq` (parts: pack, sigmahq,
//! naive, memory). `CANH_BENCH_DUMP=PREFIX` also writes the alerts of the `canh` runs as JSON
//! lines (`PREFIX-canh-pack.jsonl`, ...; the runs on tapes, the collector's path, as
//! `PREFIX-canh-pack-tape.jsonl`, ...), to compare two builds' alerts byte for byte.

#[path = "support/mix.rs"]
mod mix;

use canh_collector::detect::load::{load_dirs, LoadedRules};
use canh_collector::detect::mapping::Mapping;
use canh_collector::detect::tape::Tape;
use canh_collector::detect::{Detector, Settings};
use canh_event::Timestamp;
use rsigma_eval::event::JsonEvent;
use rsigma_eval::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

fn load(dirs: &[&Path], mapping: &Mapping) -> LoadedRules {
    load_dirs(dirs, mapping).expect("rules")
}

/// This thread's CPU time so far, nanoseconds (user + system, as the scheduler counts it).
fn thread_cpu_nanos() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Wall and thread-CPU seconds of `work`, with what it returned.
fn timed<T>(work: impl FnOnce() -> T) -> (T, f64, Option<f64>) {
    let cpu = thread_cpu_nanos();
    let started = Instant::now();
    let out = work();
    let wall = started.elapsed().as_secs_f64();
    let cpu = match (cpu, thread_cpu_nanos()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / 1e9),
        _ => None,
    };
    (out, wall, cpu)
}

/// One line of figures: events per wall second and per CPU second.
fn report(path: &str, label: &str, rules: usize, events: usize, wall: f64, cpu: Option<f64>) {
    let per_cpu = match cpu {
        Some(cpu) => format!("{:>9.0} events/CPU-s  cpu {cpu:>6.2} s", events as f64 / cpu),
        None => "no thread CPU time".to_string(),
    };
    println!(
        "{path:<13} {label:<44} {rules:>5} rules  {per_cpu}  {:>9.0} events/s wall  wall {wall:>6.2} s",
        events as f64 / wall
    );
}

/// With `CANH_BENCH_DUMP=PREFIX`, a file `PREFIX-<label>.jsonl` for the alerts of a run (one JSON
/// line each, in order), to check that a change leaves them byte for byte as they were.
fn alert_dump(label: &str) -> Option<std::fs::File> {
    let prefix = std::env::var("CANH_BENCH_DUMP").ok()?;
    let name: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let path = format!("{prefix}-{name}.jsonl");
    Some(std::fs::File::create(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// A batch's alerts into the dump, one JSON line each, if there is one.
fn write_alerts(dump: &mut Option<std::fs::File>, alerts: &[canh_event::Event]) {
    let Some(file) = dump.as_mut() else { return };
    for alert in alerts {
        writeln!(file, "{}", serde_json::to_string(alert).expect("alert JSON"))
            .expect("write the alert dump");
    }
}

fn routed(label: &str, dirs: &[&Path], events: &[Value]) {
    let mapping = Mapping::builtin();
    let loaded = load(dirs, &mapping);
    let mut detector = Detector::new(loaded, mapping, Settings::default());
    let rules = detector.rule_count();
    // Warm up on a slice (allocator, routes), then time the whole set in batches like the
    // consumer's, on a fresh detector.
    detector.process(&events[..events.len().min(1000)], Timestamp(0));
    let mut detector = {
        let loaded = load(dirs, &Mapping::builtin());
        Detector::new(loaded, Mapping::builtin(), Settings::default())
    };
    // Engines and prefilters are built on a route's first event: once per rule load, not timed.
    let ((), wall, cpu) = timed(|| detector.prepare_routes(&events[..events.len().min(1000)]));
    let cpu = cpu.map_or("?".to_string(), |c| format!("{c:.3}"));
    println!("  routes built in {wall:.3} s wall, {cpu} CPU-s (not in the figures)");
    let mut dump = alert_dump(label);
    let (alerts, wall, cpu) = timed(|| {
        let mut alerts = 0;
        for chunk in events.chunks(5000) {
            let batch = detector.process(chunk, Timestamp(0));
            write_alerts(&mut dump, &batch);
            alerts += batch.len();
        }
        alerts
    });
    report("canh", &format!("{label} ({alerts} alerts)"), rules, events.len(), wall, cpu);
    for route in detector.route_counts() {
        println!(
            "  route {:<60} {:>7} events, {:>6} through the prefilter to rsigma",
            route.families.join("+"),
            route.events,
            route.engine_runs
        );
    }
    let (matches, wall, cpu) =
        timed(|| events.iter().map(|e| detector.matching_rules(e).len()).sum::<usize>());
    let label = format!("{label}, detection only ({matches} matches)");
    report("canh", &label, rules, events.len(), wall, cpu);
}

/// `routed`'s timed run the collector's way: each batch of events decoded to Canh's type and
/// written on a tape (not timed, as the `Value`s above are not), then `Detector::process_tape`.
/// The alerts dump as `PREFIX-<label>-tape.jsonl`: the same bytes as the `Value` run's when the
/// batches are in event-time order (the mix is).
fn routed_tape(label: &str, dirs: &[&Path], events: &[Value]) {
    let mut detector = {
        let loaded = load(dirs, &Mapping::builtin());
        Detector::new(loaded, Mapping::builtin(), Settings::default())
    };
    detector.prepare_routes(&events[..events.len().min(1000)]);
    let tapes: Vec<Tape> = events
        .chunks(5000)
        .map(|chunk| {
            let mut tape = Tape::new();
            for event in chunk {
                let bytes = serde_json::to_vec(event).expect("json");
                let typed = canh_event::Event::from_json(&bytes).expect("a Canh event");
                tape.push(&typed).expect("on the tape");
            }
            tape
        })
        .collect();
    let mut dump = alert_dump(&format!("{label} tape"));
    let (alerts, wall, cpu) = timed(|| {
        let mut alerts = 0;
        for tape in &tapes {
            let batch = detector.process_tape(tape, Timestamp(0));
            write_alerts(&mut dump, &batch);
            alerts += batch.len();
        }
        alerts
    });
    let made = detector.stats().tape_fallbacks;
    let label = format!("{label}, on tapes ({alerts} alerts, {made} events made Values)");
    report("canh", &label, detector.rule_count(), events.len(), wall, cpu);
}

fn naive(label: &str, dirs: &[&Path], mapping: Mapping, events: &[Value], bloom: bool) {
    let loaded = load(dirs, &mapping);
    let mut engine = Engine::new();
    engine.set_bloom_prefilter(bloom);
    let compiled: Vec<_> = loaded.rules.into_iter().map(|r| r.compiled).collect();
    let rules = compiled.len();
    engine.extend_compiled_rules(compiled);
    let (matches, wall, cpu) = timed(|| {
        events.iter().map(|e| engine.evaluate(&JsonEvent::borrow(e)).len()).sum::<usize>()
    });
    let bloom = if bloom { " +bloom" } else { "" };
    let label = format!("{label}{bloom} ({matches} matches)");
    report("naive rsigma", &label, rules, events.len(), wall, cpu);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn memory_with_a_million_keys(pack: &Path) {
    let before = rss_kib();
    let loaded = load(&[pack], &Mapping::builtin());
    let mut detector = Detector::new(
        loaded,
        Mapping::builtin(),
        Settings { max_keys: 1_000_000, ..Settings::default() },
    );
    let total = 1_100_000usize;
    let ((), wall, cpu) = timed(|| {
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..total {
            let ip = format!(
                "{}.{}.{}.{}",
                1 + (i >> 24) % 200,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            );
            batch.push(json!({
                "@timestamp": Timestamp::from_secs_nanos(1_800_000_000 + (i / 10_000) as i64, 0).to_string(),
                "event": {"id": format!("m{i}"), "dataset": "log", "category": ["authentication"], "outcome": "failure"},
                "observer": {"id": "hn-01"}, "organization": {"id": "hanoi"},
                "process": {"name": "sshd"}, "source": {"ip": ip}
            }));
            if batch.len() == 10_000 {
                detector.process(&batch, Timestamp(0));
                batch.clear();
            }
        }
        detector.process(&batch, Timestamp(0));
    });
    println!(
        "memory: {total} sshd failures from distinct sources, cap 1,000,000 keys: {} keys held, {} evicted, RSS +{} MiB (events built inside the timing)",
        detector.correlation_keys(),
        detector.stats().evictions,
        (rss_kib().saturating_sub(before)) / 1024,
    );
    report("canh", "memory run, pack", detector.rule_count(), total, wall, cpu);
}

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pack = manifest.join("../rules");
    let sigmahq = manifest.join("../../shared/data/sigma/rules");
    let count = std::env::var("CANH_BENCH_EVENTS").ok().and_then(|n| n.parse().ok());
    let only = std::env::var("CANH_BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only.split(',').any(|p| p.trim() == name);
    let events = mix::events(count.unwrap_or(200_000));
    println!(
        "{} events: ~50% flow, 20% dns, 15% http, 10% tls, 5% sshd log; ~1% attacks; load average {}",
        events.len(),
        load_average()
    );
    let both: [&Path; 2] = [&pack, &sigmahq];
    if part("pack") {
        routed("Canh pack", &[&pack], &events);
        routed_tape("Canh pack", &[&pack], &events);
    }
    if part("naive") {
        naive("Canh pack", &[&pack], Mapping::builtin(), &events, false);
    }
    if part("sigmahq") {
        routed("Canh pack + applicable SigmaHQ", &both, &events);
        routed_tape("Canh pack + applicable SigmaHQ", &both, &events);
    }
    if part("naive") {
        naive("Canh pack + applicable SigmaHQ", &both, Mapping::builtin(), &events, false);
        naive("Canh pack + applicable SigmaHQ", &both, Mapping::builtin(), &events, true);
        let some = &events[..events.len().min(50_000)];
        naive("all SigmaHQ, unmapped", &[&sigmahq], Mapping::identity(), some, false);
    }
    if part("memory") {
        memory_with_a_million_keys(&pack);
    }
    println!("load average at the end {}", load_average());
}
