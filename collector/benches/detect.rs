//! Detection throughput (events/s, one thread) on a synthetic but realistic mix of Canh events
//! (flow, dns, http, tls, log; about 1% attacks), Canh's routed detector against the naive rsigma
//! loop (one engine, every rule on every event) over the same compiled rules; then memory with one
//! million distinct correlation keys. A benchmark, not a test: it prints figures.
//!
//! `cargo bench -p canh-collector --bench detect` (release profile).

use canh_collector::detect::load::{load_dir, LoadedRules};
use canh_collector::detect::mapping::Mapping;
use canh_collector::detect::{Detector, Settings};
use canh_event::Timestamp;
use rsigma_eval::event::JsonEvent;
use rsigma_eval::Engine;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

const EVENTS: usize = 200_000;

/// A tiny deterministic generator (xorshift), so every run sees the same events.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn events() -> Vec<Value> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let ts = Timestamp::from_secs_nanos(1_800_000_000 + (i / 200) as i64, 0).to_string();
        let src = format!("10.{}.{}.{}", rng.below(4), rng.below(256), rng.below(254) + 1);
        let dst = format!("203.0.{}.{}", rng.below(256), rng.below(254) + 1);
        let base = |dataset: &str| {
            json!({"@timestamp": ts, "event": {"id": format!("ev{i}"), "kind": "event", "dataset": dataset},
                   "observer": {"id": "hn-01"}, "organization": {"id": "hanoi"}, "canh": {"schema_version": 1},
                   "source": {"ip": src, "port": 40000 + rng_port(i)}, "destination": {"ip": dst}})
        };
        let attack = rng.below(100) == 0;
        let kind = rng.below(100);
        let mut e;
        if kind < 50 {
            e = base("flow");
            let state =
                if attack { "S0" } else { ["SF", "SF", "SF", "S1", "RSTO"][rng.below(5) as usize] };
            e["destination"]["port"] = json!([443, 80, 53, 22, 8080][rng.below(5) as usize]);
            e["network"] = json!({"transport": "tcp", "community_id": "1:abc"});
            e["flow"] = json!({"state": state, "history": "ShADadFf", "orig_payload_bytes": rng.below(100_000)});
            e["source"]["bytes"] = json!(rng.below(2_000_000));
        } else if kind < 70 {
            e = base("dns");
            let name = if attack {
                format!("{:x}{:x}.t.tunnel.example", rng.next(), rng.next())
            } else {
                ["www.gov.vn", "mail.example.com", "cdn.jsdelivr.net", "api.github.com"]
                    [rng.below(4) as usize]
                    .to_string()
            };
            e["dns"] = json!({"type": "query", "question": {"name": name, "type": "A", "class": "IN"}, "response_code": "NOERROR"});
        } else if kind < 85 {
            e = base("http");
            let url = if attack {
                "/item.php?id=1%20union%20select%20password%20from%20users"
            } else {
                "/static/app.js?v=12"
            };
            e["http"] = json!({"version": "1.1", "request": {"method": "GET"}, "response": {"status_code": 200}});
            e["url"] = json!({"domain": "portal.example.vn", "original": url});
            e["user_agent"] =
                json!({"original": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"});
        } else if kind < 95 {
            e = base("tls");
            e["tls"] = json!({"version": "1.3", "cipher": "TLS_AES_128_GCM_SHA256", "established": true,
                              "client": {"server_name": "login.example.com", "ja3": "771,4865-4866,0-23,29-23,0"}});
        } else {
            e = base("log");
            let outcome = if attack { "failure" } else { "success" };
            e["event"]["category"] = json!(["authentication"]);
            e["event"]["outcome"] = json!(outcome);
            e["process"] = json!({"name": "sshd", "pid": 811});
            e["user"] = json!({"name": "root"});
            e["message"] = json!(format!(
                "{} password for root from {} port 4122 ssh2",
                if attack { "Failed" } else { "Accepted" },
                src
            ));
        }
        out.push(e);
    }
    out
}

fn rng_port(i: usize) -> u64 {
    (i as u64 * 7919) % 20000
}

fn load(dirs: &[&Path], mapping: &Mapping) -> LoadedRules {
    let mut all = LoadedRules::default();
    for dir in dirs {
        let loaded = load_dir(dir, mapping).expect("rules");
        all.rules.extend(loaded.rules);
        all.correlations.extend(loaded.correlations);
    }
    all
}

fn rate(events: usize, seconds: f64) -> String {
    format!("{:>9.0} events/s", events as f64 / seconds)
}

fn routed(label: &str, dirs: &[&Path], events: &[Value]) {
    let mapping = Mapping::builtin();
    let loaded = load(dirs, &mapping);
    let mut detector = Detector::new(loaded, mapping, Settings::default());
    let rules = detector.rule_count();
    // Warm up on a slice, then time the whole set in batches like the consumer's.
    detector.process(&events[..1000], Timestamp(0));
    let mut detector = {
        let loaded = load(dirs, &Mapping::builtin());
        Detector::new(loaded, Mapping::builtin(), Settings::default())
    };
    let started = Instant::now();
    let mut alerts = 0;
    for chunk in events.chunks(5000) {
        alerts += detector.process(chunk, Timestamp(0)).len();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "canh routed   {label:<34} {rules:>5} rules  {}  ({alerts} alerts)",
        rate(events.len(), seconds)
    );
    let started = Instant::now();
    let mut matches = 0;
    for event in events {
        matches += detector.matching_rules(event).len();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "canh routed   {:<34} {rules:>5} rules  {}  ({matches} matches)",
        format!("{label}, detection only"),
        rate(events.len(), seconds)
    );
}

fn naive(label: &str, dirs: &[&Path], mapping: Mapping, events: &[Value], bloom: bool) {
    let loaded = load(dirs, &mapping);
    let mut engine = Engine::new();
    engine.set_bloom_prefilter(bloom);
    let compiled: Vec<_> = loaded.rules.into_iter().map(|r| r.compiled).collect();
    let rules = compiled.len();
    engine.extend_compiled_rules(compiled);
    let started = Instant::now();
    let mut matches = 0;
    for event in events {
        matches += engine.evaluate(&JsonEvent::borrow(event)).len();
    }
    let seconds = started.elapsed().as_secs_f64();
    let bloom = if bloom { " +bloom" } else { "" };
    println!(
        "naive rsigma  {:<34} {rules:>5} rules  {}  ({matches} matches)",
        format!("{label}{bloom}"),
        rate(events.len(), seconds)
    );
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
    let started = Instant::now();
    let total = 1_100_000usize;
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..total {
        let ip =
            format!("{}.{}.{}.{}", 1 + (i >> 24) % 200, (i >> 16) & 255, (i >> 8) & 255, i & 255);
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
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "memory: {total} sshd failures from distinct sources, cap 1,000,000 keys: {} keys held, {} evicted, RSS +{} MiB, {}",
        detector.correlation_keys(),
        detector.stats().evictions,
        (rss_kib().saturating_sub(before)) / 1024,
        rate(total, seconds)
    );
}

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pack = manifest.join("../rules");
    let sigmahq = manifest.join("../../shared/data/sigma/rules");
    let events = events();
    println!(
        "{} events: ~50% flow, 20% dns, 15% http, 10% tls, 5% sshd log; ~1% attacks",
        events.len()
    );
    routed("Canh pack", &[&pack], &events);
    naive("Canh pack", &[&pack], Mapping::builtin(), &events, false);
    routed("Canh pack + applicable SigmaHQ", &[&pack, &sigmahq], &events);
    naive("Canh pack + applicable SigmaHQ", &[&pack, &sigmahq], Mapping::builtin(), &events, false);
    naive("Canh pack + applicable SigmaHQ", &[&pack, &sigmahq], Mapping::builtin(), &events, true);
    naive("all SigmaHQ, unmapped", &[&sigmahq], Mapping::identity(), &events[..50_000], false);
    memory_with_a_million_keys(&pack);
}
