//! Log parsing + JSON serialisation throughput on one core, on a mix of real lines from the shared
//! data (loghub OpenSSH/Linux/Apache, Elastic's Apache access log, SotM34 secure and iptables).
//! Not a test: prints lines per second. Run with `cargo bench -p canh-sensor --bench logs_parse`.

use canh_event::Timestamp;
use canh_sensor::flow::Identity;
use canh_sensor::logs::{line_event, LineFormat, LineOptions};
use std::path::PathBuf;
use std::time::Instant;

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(path)
}

fn main() {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut counts = Vec::new();
    for file in [
        "logs/loghub/OpenSSH/OpenSSH_2k.log",
        "logs/loghub/Linux/Linux_2k.log",
        "logs/loghub/Apache/Apache_2k.log",
        "logs/elastic-examples/apache_logs",
        "logs/sotm34/original/syslog/secure.6",
    ] {
        let bytes = std::fs::read(data(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let before = lines.len();
        lines.extend(bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
        counts.push((file, lines.len() - before));
    }
    let iptables = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(data("logs/sotm34/original/iptables/iptablesyslog.gz"))
        .output()
        .expect("gzip runs");
    let before = lines.len();
    lines.extend(
        iptables
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .take(10_000)
            .map(<[u8]>::to_vec),
    );
    counts.push((
        "logs/sotm34/original/iptables/iptablesyslog.gz (first 10000)",
        lines.len() - before,
    ));
    for (file, n) in &counts {
        println!("{n:>6} lines  {file}");
    }
    let who = Identity { sensor_id: "bench".into(), tenant: "t".into(), community_id_seed: 0 };
    let options =
        LineOptions { format: LineFormat::Auto, utc_offset_secs: 7 * 3600, default_priority: None };
    let received = Timestamp::parse("2026-11-23T10:00:00Z").expect("valid");
    let mut rates = Vec::new();
    let mut bytes_out = 0usize;
    for round in 0..7 {
        let start = Instant::now();
        let mut seq = 0u64;
        let mut out = 0usize;
        for line in &lines {
            let event = line_event(line, false, received, seq, &who, &options);
            out += event.to_json().len();
            seq += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = lines.len() as f64 / secs;
        // The first round warms caches and the allocator; it is not counted.
        if round > 0 {
            rates.push(rate);
        }
        bytes_out = out;
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{} lines/round, {} JSON bytes/round; parse+serialise, one thread: median {:.0} lines/s (min {:.0}, max {:.0}) over {} rounds",
        lines.len(),
        bytes_out,
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        rates.len()
    );
}
