//! Log parsing + JSON serialisation throughput on one core, on a mix of real lines from the shared
//! data (loghub OpenSSH/Linux/Apache, Elastic's Apache access log, SotM34 secure and iptables).
//! Then UDP ingest on loopback: one thread sends datagrams as fast as it can to the syslog UDP
//! receiver, whose pipeline parses them into events (counted, not sent to Kafka).
//! Not a test: prints rates. Run with `cargo bench -p canh-sensor --bench logs_parse`;
//! `CANH_BENCH_SKIP_UDP=1` skips the UDP part, `CANH_BENCH_PROFILE=N` only parses and serialises, N rounds (for `perf record`, callgrind).

use canh_event::Timestamp;
use canh_sensor::flow::Identity;
use canh_sensor::logs::{line_event, LineFormat, LineOptions, LineParser};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(path)
}

fn main() {
    // `CANH_BENCH_UDP_TARGET=host:port`: only send the UDP load to another receiver (rsyslog, to
    // compare) and exit.
    if let Ok(target) = std::env::var("CANH_BENCH_UDP_TARGET") {
        let target: SocketAddr = target.parse().expect("CANH_BENCH_UDP_TARGET is host:port");
        let bytes = std::fs::read(data("logs/loghub/OpenSSH/OpenSSH_2k.log")).expect("sample");
        let sample: Vec<Vec<u8>> =
            bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        let load = UdpLoad::from_env();
        let sent = send_udp(&sample, target, &load);
        println!("{sent}");
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
    // Each measure runs 7 rounds over all lines; the first warms caches and the allocator and is
    // not counted. Rates are per second of wall time and per second of this thread's CPU time
    // (from /proc/thread-self/schedstat), which a loaded machine disturbs less.
    let rounds = |name: &str, body: &mut dyn FnMut() -> usize| {
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        let mut out = 0;
        for round in 0..7 {
            let (start, start_cpu) = (Instant::now(), thread_cpu_ns());
            out = body();
            let secs = start.elapsed().as_secs_f64();
            let cpu_secs = thread_cpu_ns().saturating_sub(start_cpu) as f64 / 1e9;
            if round > 0 {
                wall.push(lines.len() as f64 / secs);
                cpu.push(lines.len() as f64 / cpu_secs);
            }
        }
        wall.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.0} lines/s wall (min {:.0}, max {:.0}), median {:.0} lines/s of CPU time (min {:.0}, max {:.0}); {out} bytes out per round",
            wall[wall.len() / 2],
            wall[0],
            wall[wall.len() - 1],
            cpu[cpu.len() / 2],
            cpu[0],
            cpu[cpu.len() - 1],
        );
    };
    // As `canh-sensor logs` and the log pipeline do: the line parsed into borrowed fields, its
    // JSON written straight from them into one reused buffer.
    let mut parser = LineParser::new(options);
    if let Ok(rounds) = std::env::var("CANH_BENCH_PROFILE") {
        // For `perf record` (or callgrind with `CANH_BENCH_PROFILE=1`): parse + serialise, the
        // given number of rounds (40 when not a number).
        let rounds: usize = rounds.parse().unwrap_or(40);
        let mut json = Vec::with_capacity(1 << 16);
        for _ in 0..rounds {
            for (seq, line) in (0u64..).zip(&lines) {
                json.clear();
                parser.write_json(line, false, received, seq, &who, &mut json);
                std::hint::black_box(&json);
            }
        }
        return;
    }
    println!("{} lines per round, one thread", lines.len());
    rounds("parse only (LineParser::fields)", &mut || {
        lines
            .iter()
            .map(|line| std::hint::black_box(parser.fields(line, false, received)).original.len())
            .sum()
    });
    let mut json = Vec::with_capacity(1 << 16);
    let fields: Vec<_> = lines.iter().map(|line| parser.fields(line, false, received)).collect();
    let constants = canh_sensor::logs::record::JsonConstants::new(&who);
    rounds("serialise only (LogEvent::write_json)", &mut || {
        (0u64..)
            .zip(&fields)
            .map(|(seq, f)| {
                json.clear();
                let id = canh_sensor::logs::log_event_id_bytes(&who.sensor_id, seq);
                f.write_json_with(std::str::from_utf8(&id).expect("hex"), &constants, &mut json);
                std::hint::black_box(&json).len()
            })
            .sum()
    });
    drop(fields);
    rounds("parse + serialise (LineParser::write_json)", &mut || {
        (0u64..)
            .zip(&lines)
            .map(|(seq, line)| {
                json.clear();
                parser.write_json(line, false, received, seq, &who, &mut json);
                std::hint::black_box(&json).len()
            })
            .sum()
    });
    // The path before this round, for comparison: an owned `Event`, then `Event::write_json`.
    rounds("parse + serialise through an owned Event (before)", &mut || {
        (0u64..)
            .zip(&lines)
            .map(|(seq, line)| {
                json.clear();
                line_event(line, false, received, seq, &who, &options).write_json(&mut json);
                std::hint::black_box(&json).len()
            })
            .sum()
    });
    if std::env::var_os("CANH_BENCH_SKIP_UDP").is_some() {
        return;
    }
    // The first 2000 lines are loghub's OpenSSH sample, as sent to rsyslog in the comparison.
    udp_ingest(&lines[..2000]);
}

/// CPU time this thread has run, in nanoseconds (first field of /proc/thread-self/schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn udp_ingest(sample: &[Vec<u8>]) {
    use canh_sensor::logs::pipeline::{self, LogInputs, PipelineMetrics, UdpSettings};
    use canh_sensor::logs::receive::ReceiverMetrics;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let metrics = canh_sensor::metrics::Metrics::new();
    // SO_RCVBUF asked for: `CANH_BENCH_RCVBUF` bytes, default 8 MiB (the sensor's default).
    let receive_buffer_bytes: usize =
        std::env::var("CANH_BENCH_RCVBUF").ok().and_then(|v| v.parse().ok()).unwrap_or(8 << 20);
    let dir = std::env::temp_dir().join(format!("canh-bench-{}", std::process::id()));
    let inputs = LogInputs {
        channel_capacity: 100_000, // the config default
        udp: Some(UdpSettings {
            // `CANH_BENCH_UDP_PORT` picks the port (default: a free one).
            listen: SocketAddr::from((
                [127, 0, 0, 1],
                std::env::var("CANH_BENCH_UDP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0),
            )),
            max_bytes: 65_536,
            receive_buffer_bytes,
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
        move |log: &pipeline::LogJson<'_>| -> Result<(), String> {
            // The copies the uplink makes (`Uplink::send_json`).
            std::hint::black_box((log.key.as_bytes().to_vec(), log.json.to_vec()));
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        },
        || true,
    )
    .expect("udp input starts");
    let addr = running.udp_addr.expect("udp bound");
    println!(
        "udp receive buffer: asked {receive_buffer_bytes} bytes, kernel granted {} bytes",
        running.udp_receive_buffer.unwrap_or(0)
    );
    let load = UdpLoad::from_env();
    let cpu_before = thread_cpu_by_name();
    let sent = send_udp(sample, addr, &load);
    let mut last = u64::MAX;
    while events.load(Ordering::Relaxed) != last {
        last = events.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
    }
    let cpu_after = thread_cpu_by_name();
    let kernel_drops = canh_sensor::logs::receive::udp_kernel_drops(addr.port()).unwrap_or(0);
    stop.store(true, Ordering::Relaxed);
    let _ = running.join();
    let parsed = events.load(Ordering::Relaxed);
    let received = metrics.log_lines.with_label_values(&["udp"]).get();
    let channel_drops = metrics.log_dropped.with_label_values(&["udp"]).get();
    println!("{sent}");
    println!(
        "udp ingest: received {received}, parsed into events {parsed}, dropped on a full channel {channel_drops}, dropped by the kernel {kernel_drops}; unaccounted {}",
        sent.total as i128 - i128::from(received) - i128::from(kernel_drops)
    );
    for name in ["syslog-udp", "log-pipeline"] {
        let cpu = cpu_after.get(name).copied().unwrap_or(0)
            - cpu_before
                .get(name)
                .copied()
                .unwrap_or(0)
                .min(cpu_after.get(name).copied().unwrap_or(0));
        println!(
            "  thread {name}: {:.2} s of CPU, {:.0} datagrams per CPU-second",
            cpu as f64 / 1e9,
            received as f64 / (cpu as f64 / 1e9)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// How much UDP load to offer: `CANH_BENCH_UDP_COUNT` datagrams (default 1,000,000) at
/// `CANH_BENCH_UDP_RATE` per second (default 200,000; 0 = as fast as the sender can).
struct UdpLoad {
    total: usize,
    rate: u64,
}

impl UdpLoad {
    fn from_env() -> UdpLoad {
        let var = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        };
        UdpLoad {
            total: var("CANH_BENCH_UDP_COUNT", 1_000_000) as usize,
            rate: var("CANH_BENCH_UDP_RATE", 200_000),
        }
    }
}

struct Sent {
    total: usize,
    secs: f64,
    cpu_secs: f64,
    rate: u64,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} datagrams in {:.2} s: {:.0}/s offered (asked {}/s), sender thread {:.2} s of CPU",
            self.total,
            self.secs,
            self.total as f64 / self.secs,
            if self.rate == 0 { "max".to_string() } else { self.rate.to_string() },
            self.cpu_secs
        )
    }
}

/// Send `load.total` datagrams, cycling over `sample`, to `target` with sendmmsg in batches of
/// 64, paced to `load.rate` per second. Every datagram is sent (a full socket buffer on the
/// sending side blocks, it does not drop).
fn send_udp(sample: &[Vec<u8>], target: SocketAddr, load: &UdpLoad) -> Sent {
    use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags};
    use std::io::IoSlice;
    const BATCH: usize = 64;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(target).expect("connect");
    let (start, start_cpu) = (Instant::now(), thread_cpu_ns());
    let mut sent = 0usize;
    while sent < load.total {
        if load.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / load.rate as f64);
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        let n = BATCH.min(load.total - sent);
        let iovs: Vec<[IoSlice<'_>; 1]> =
            (sent..sent + n).map(|i| [IoSlice::new(&sample[i % sample.len()])]).collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
            (0..n).map(|_| SendAncillaryBuffer::default()).collect();
        let mut messages: Vec<MMsgHdr<'_>> =
            iovs.iter().zip(controls.iter_mut()).map(|(iov, c)| MMsgHdr::new(iov, c)).collect();
        let mut done = 0;
        while done < n {
            match sendmmsg(&socket, &mut messages[done..], SendFlags::empty()) {
                Ok(k) => done += k,
                Err(e) if e == rustix::io::Errno::INTR || e == rustix::io::Errno::AGAIN => {}
                // Loopback refuses only while nothing listens: count the rest as not sent.
                Err(e) => panic!("sendmmsg to {target}: {e}"),
            }
        }
        sent += n;
    }
    Sent {
        total: sent,
        secs: start.elapsed().as_secs_f64(),
        cpu_secs: thread_cpu_ns().saturating_sub(start_cpu) as f64 / 1e9,
        rate: load.rate,
    }
}

/// CPU time (ns) of this process's threads by name, from /proc/self/task/*/{comm,schedstat}.
fn thread_cpu_by_name() -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_string()).or_insert(0) += ns;
    }
    out
}
