//! Log parsing + JSON serialisation throughput on one core, on a mix of real lines from the shared
//! data (loghub OpenSSH/Linux/Apache, Elastic's Apache access log, SotM34 secure and iptables).
//! Then UDP ingest on loopback: one thread sends datagrams as fast as it can to the syslog UDP
//! receiver, whose pipeline parses them into events (counted, not sent to Kafka).
//! Not a test: prints rates. Run with `cargo bench -p canh-sensor --bench logs_parse`.

use canh_event::Timestamp;
use canh_sensor::flow::Identity;
use canh_sensor::logs::{line_event, LineFormat, LineOptions};
use std::path::PathBuf;
use std::time::Instant;

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(path)
}

fn main() {
    // `CANH_BENCH_UDP_TARGET=host:port`: only send the UDP load to another receiver (rsyslog, to
    // compare) and exit.
    if let Ok(target) = std::env::var("CANH_BENCH_UDP_TARGET") {
        let bytes = std::fs::read(data("logs/loghub/OpenSSH/OpenSSH_2k.log")).expect("sample");
        let sample: Vec<Vec<u8>> =
            bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let total = 300_000usize;
        let start = Instant::now();
        for i in 0..total {
            let _ = socket.send_to(&sample[i % sample.len()], &target);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "sent {total} datagrams to {target} in {secs:.2} s ({:.0}/s offered)",
            total as f64 / secs
        );
        return;
    }
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
        let mut out = 0usize;
        for (seq, line) in (0u64..).zip(&lines) {
            let event = line_event(line, false, received, seq, &who, &options);
            out += event.to_json().len();
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
    // The two halves apart: parsing into events, and serialising them.
    let start = Instant::now();
    let events: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| line_event(line, false, received, i as u64, &who, &options))
        .collect();
    let parse_rate = lines.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let json: usize = events.iter().map(|e| e.to_json().len()).sum();
    let json_rate = lines.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "parse only {parse_rate:.0} lines/s; serialise only {json_rate:.0} events/s ({json} bytes)"
    );
    // The first 2000 lines are loghub's OpenSSH sample, as sent to rsyslog in the comparison.
    udp_ingest(&lines[..2000]);
}

fn udp_ingest(sample: &[Vec<u8>]) {
    use canh_sensor::logs::pipeline::{self, LogInputs, PipelineMetrics, UdpSettings};
    use canh_sensor::logs::receive::ReceiverMetrics;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    let metrics = canh_sensor::metrics::Metrics::new();
    let dir = std::env::temp_dir().join(format!("canh-bench-{}", std::process::id()));
    let inputs = LogInputs {
        channel_capacity: 10_000,
        udp: Some(UdpSettings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            max_bytes: 65_536,
            options: LineOptions {
                format: LineFormat::Syslog,
                utc_offset_secs: 7 * 3600,
                default_priority: Some(13),
            },
        }),
        tcp: None,
        tls: None,
        files: Vec::new(),
        poll_interval: Duration::from_secs(1),
        checkpoint_path: dir.join("checkpoints"),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let counter = events.clone();
    let who = Identity { sensor_id: "bench".into(), tenant: "t".into(), community_id_seed: 0 };
    let running = pipeline::start(
        &inputs,
        who,
        0,
        stop.clone(),
        PipelineMetrics {
            receivers: ReceiverMetrics {
                lines: metrics.log_lines.clone(),
                truncated: metrics.log_truncated.clone(),
                dropped: metrics.log_dropped.clone(),
                connections_refused: metrics.log_connections_refused.clone(),
                udp_kernel_drops: metrics.log_udp_kernel_drops.clone(),
            },
            parse_errors: metrics.log_parse_errors.clone(),
            events: metrics.events.clone(),
        },
        move |e: &canh_event::Event| -> Result<(), String> {
            std::hint::black_box(e.to_json());
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        },
        || true,
    )
    .expect("udp input starts");
    let addr = running.udp_addr.expect("udp bound");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let total = 300_000usize;
    let start = Instant::now();
    for i in 0..total {
        let _ = socket.send_to(&sample[i % sample.len()], addr);
    }
    let send_secs = start.elapsed().as_secs_f64();
    let mut last = u64::MAX;
    while events.load(Ordering::Relaxed) != last {
        last = events.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
    }
    let kernel_drops = canh_sensor::logs::receive::udp_kernel_drops(addr.port()).unwrap_or(0);
    stop.store(true, Ordering::Relaxed);
    let _ = running.join();
    let parsed = events.load(Ordering::Relaxed);
    let received = metrics.log_lines.with_label_values(&["udp"]).get();
    let channel_drops = metrics.log_dropped.with_label_values(&["udp"]).get();
    println!(
        "udp ingest: {total} datagrams sent in {send_secs:.2} s ({:.0}/s offered); received {received}, parsed into events {parsed}, dropped on a full channel {channel_drops}, dropped by the kernel {kernel_drops}",
        total as f64 / send_secs
    );
    let _ = std::fs::remove_dir_all(&dir);
}
