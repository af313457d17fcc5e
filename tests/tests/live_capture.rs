//! Live capture: replay shared captures with `tcpreplay` onto one end of a veth pair inside a
//! network namespace this test creates, capture on the other end with `canh-sensor live`, and
//! check that the events equal those of `canh-sensor pcap` on the same file, with the fields that
//! depend on the clock masked (timestamps, durations, DNS round-trip times, event ids).
//!
//! Needs root (creating a namespace and interfaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN) and
//! `tcpreplay` (scripts/install.sh installs it). Without them the test fails and says so: it
//! never skips silently. It needs neither Kafka nor ClickHouse.

use canh_tests::{binary, shared_data};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The interface tcpreplay writes to and the one the sensor captures on (names are local to the
/// namespace, so parallel tests do not clash).
const TX: &str = "canh-tx";
const RX: &str = "canh-rx";

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn check(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace with a veth pair in it; deleted on drop, also when the test fails.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("canh-live-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let output = run(Command::new("ip").args(["netns", "add", &name]));
        assert!(
            output.status.success(),
            "the live capture test must create a network namespace and needs root \
             (CAP_SYS_ADMIN, CAP_NET_ADMIN) for it; `ip netns add {name}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        // From here on, a failing step still removes the namespace.
        let ns = Netns { name };
        // No IPv6: the kernel would send router solicitations and MLD reports on the new links,
        // packets that are not in the capture file.
        check(&mut ns.exec(&[
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
             echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
        ]));
        check(
            Command::new("ip")
                .args(["-n", &ns.name, "link", "add", TX, "type", "veth", "peer", "name", RX]),
        );
        check(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        for link in [TX, RX] {
            // Room for the largest frame of a capture taken with offloads on.
            check(Command::new("ip").args(["-n", &ns.name, "link", "set", link, "mtu", "9000"]));
            check(Command::new("ip").args(["-n", &ns.name, "link", "set", link, "up"]));
        }
        ns
    }

    /// `ip netns exec NAME args...`
    fn exec(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A child process killed on drop (a failed assertion must not leave a sensor running).
struct Running {
    child: Child,
}

impl Running {
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("try_wait on the sensor") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events of `canh-sensor pcap FILE`.
fn offline_events(file: &Path) -> Vec<Value> {
    let stdout = check(Command::new(binary("canh-sensor")).arg("pcap").arg(file));
    stdout.lines().map(|l| serde_json::from_str(l).expect("offline event is JSON")).collect()
}

fn dataset(event: &Value) -> &str {
    event["event"]["dataset"].as_str().unwrap_or("")
}

/// The event without the fields that depend on when the packets were seen.
fn masked(event: &Value) -> String {
    let mut event = event.clone();
    if let Some(obj) = event.as_object_mut() {
        obj.remove("@timestamp");
        obj.remove("observer");
    }
    if let Some(obj) = event["event"].as_object_mut() {
        for key in ["id", "start", "end", "duration"] {
            obj.remove(key);
        }
    }
    if let Some(dns) = event.get_mut("dns").and_then(Value::as_object_mut) {
        dns.remove("rtt");
    }
    event.to_string()
}

/// The next `sensor` event from the capture, skipping others; None at the timeout.
fn next_stats(lines: &Receiver<String>, seen: &mut Vec<Value>, timeout: Duration) -> Option<Value> {
    let until = Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("live output is not JSON ({e}): {line}"));
                if dataset(&event) == "sensor" {
                    return Some(event);
                }
                seen.push(event);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn counter(stats: &Value, field: &str) -> u64 {
    stats["sensor"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("sensor event without sensor.{field}: {stats}"))
}

/// Replay `capture` live and compare; `immediate` picks libpcap's immediate mode (TPACKET_V2)
/// instead of its buffered blocks (TPACKET_V3).
fn live_equals_offline(capture: &str, immediate: bool) -> Vec<Value> {
    let file = shared_data().join(capture);
    assert!(file.exists(), "{} is missing (shared data set)", file.display());
    let version = run(Command::new("tcpreplay").arg("--version"));
    assert!(version.status.success(), "tcpreplay is not installed: run scripts/install.sh");
    let expected = offline_events(&file);

    let ns = Netns::create();
    let sensor_path = binary("canh-sensor");
    let sensor_bin = sensor_path.to_str().expect("utf-8 path");
    let mut args = vec![sensor_bin, "live", "--interface", RX, "--stats-interval", "200ms"];
    if immediate {
        args.push("--immediate");
    }
    let mut command = ns.exec(&args);
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut sensor = Running { child: command.spawn().expect("start canh-sensor live") };
    let stdout = sensor.child.stdout.take().expect("piped stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // The first statistics event says the capture is open and reading.
    let mut seen = Vec::new();
    let first = next_stats(&lines, &mut seen, Duration::from_secs(20))
        .expect("no sensor statistics event within 20 s: the live capture did not start");
    assert_eq!(first["sensor"]["interface"], RX, "{first}");
    assert_eq!(counter(&first, "packets_received"), 0, "packets before the replay: {first}");

    let sent = replay(&ns, &file);

    // Wait until libpcap's counters show every frame sent, then stop the sensor.
    let until = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let left = until.saturating_duration_since(Instant::now());
        let stats = next_stats(&lines, &mut seen, left).unwrap_or_else(|| {
            panic!("the sensor did not report {sent} packets received within 30 s")
        });
        if counter(&stats, "packets_received") >= sent {
            break stats;
        }
    };
    sensor.terminate();
    let status = sensor.wait(Duration::from_secs(15)).expect("the sensor exits on SIGTERM");
    assert!(status.success(), "canh-sensor live exited with {status}");
    let mut final_stats = last;
    while let Some(stats) = next_stats(&lines, &mut seen, Duration::from_secs(5)) {
        final_stats = stats;
    }
    assert_eq!(counter(&final_stats, "packets_received"), sent, "{final_stats}");
    assert_eq!(counter(&final_stats, "packets_dropped"), 0, "{final_stats}");
    assert_eq!(counter(&final_stats, "packets_if_dropped"), 0, "{final_stats}");

    let mut want: Vec<String> = expected.iter().map(masked).collect();
    let mut got: Vec<String> = seen.iter().map(masked).collect();
    want.sort();
    got.sort();
    let missing: Vec<_> = want.iter().filter(|e| !got.contains(e)).collect();
    let extra: Vec<_> = got.iter().filter(|e| !want.contains(e)).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && want.len() == got.len(),
        "{capture}: live events differ from the file's ({} offline, {} live)\n\
         only offline: {missing:#?}\nonly live: {extra:#?}",
        want.len(),
        got.len()
    );
    expected
}

/// Replay `capture` onto the namespace's wire; returns the frames tcpreplay sent.
fn replay(ns: &Netns, capture: &Path) -> u64 {
    let output = check(&mut ns.exec(&["tcpreplay", "-i", TX, capture.to_str().expect("utf-8")]));
    let number = |label: &str| -> u64 {
        let line = output.lines().find(|l| l.trim_start().starts_with(label));
        let line = line.unwrap_or_else(|| panic!("no {label:?} in tcpreplay output:\n{output}"));
        line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a count")
    };
    assert_eq!(number("Failed packets:"), 0, "tcpreplay could not send every frame:\n{output}");
    let sent = number("Successful packets:");
    assert!(sent > 0, "{output}");
    sent
}

fn count(events: &[Value], name: &str) -> usize {
    events.iter().filter(|e| dataset(e) == name).count()
}

#[test]
fn live_tcp_udp_dns_http_equal_the_file() {
    // Several TCP and UDP flows, DNS and HTTP; libpcap's default buffered mode.
    let events = live_equals_offline("pcap/zeek/wikipedia.pcap", false);
    assert!(count(&events, "flow") >= 30, "too few flows to mean much: {}", events.len());
    assert!(count(&events, "dns") >= 10 && count(&events, "http") >= 10);
    let tcp = events.iter().filter(|e| e["network"]["transport"] == "tcp").count();
    let udp = events.iter().filter(|e| e["network"]["transport"] == "udp").count();
    assert!(tcp >= 5 && udp >= 5, "tcp {tcp}, udp {udp}");
}

#[test]
fn live_tls_equals_the_file() {
    let events = live_equals_offline("pcap/zeek/tls-conn-with-extensions.pcap", true);
    assert_eq!(count(&events, "tls"), 1, "{events:?}");
}

#[test]
fn live_q_in_q_vlan_tags_equal_the_file() {
    // veth hands VLAN tags to libpcap out of band; libpcap must put both back in place.
    let events = live_equals_offline("pcap/zeek/q-in-q.pcap", true);
    let flow = events.iter().find(|e| dataset(e) == "flow").expect("a flow");
    assert!(flow["network"]["vlan"]["id"].is_u64(), "{flow}");
    assert!(flow["network"]["inner"]["vlan"]["id"].is_u64(), "{flow}");
}

/// The value of a Prometheus sample line `name{labels} value` in a /metrics body.
fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn run_mode_reports_capture_counters_on_the_admin_port() {
    let file = shared_data().join("pcap/zeek/http-get.pcap");
    let ns = Netns::create();
    let dir = std::env::temp_dir().join(format!("canh-live-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("sensor.toml");
    // No broker in the namespace: events go to the spool, which is not what this test is about.
    std::fs::write(
        &config,
        format!(
            r#"
[sensor]
id = "live-run"
tenant = "t"
state_dir = {state:?}

[kafka]
brokers = "127.0.0.1:9"
flush_timeout = "1s"

[input.interface]
name = "{RX}"
stats_interval = "200ms"

[admin]
listen = "127.0.0.1:9465"
"#,
            state = dir.join("state").display().to_string(),
        ),
    )
    .expect("write config");
    let sensor_path = binary("canh-sensor");
    let mut command = ns.exec(&[sensor_path.to_str().expect("utf-8"), "run", "--config"]);
    // Kafka errors (no broker here) would drown the output: only the sensor's own errors.
    command.env("CANH_LOG", "error,librdkafka=off,canh_sensor::produce=off");
    command.arg(&config).stdout(Stdio::null()).stderr(Stdio::inherit());
    let mut sensor = Running { child: command.spawn().expect("start canh-sensor run") };
    let metrics = || {
        let output = run(&mut ns.exec(&["curl", "-sf", "http://127.0.0.1:9465/metrics"]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let received = format!("canh_sensor_capture_received_packets_total{{interface=\"{RX}\"}}");
    let dropped = format!("canh_sensor_capture_kernel_dropped_packets_total{{interface=\"{RX}\"}}");
    let if_dropped =
        format!("canh_sensor_capture_interface_dropped_packets_total{{interface=\"{RX}\"}}");
    let wait_for = |what: &str, ok: &dyn Fn(&str) -> bool| -> String {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let body = metrics();
            if ok(&body) {
                return body;
            }
            assert!(Instant::now() < until, "{what} not on /metrics within 30 s:\n{body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let before = wait_for("the capture counters", &|b| sample(b, &received).is_some());
    assert_eq!(sample(&before, &received), Some(0), "{before}");

    let sent = replay(&ns, &file);
    // The kernel's count (pcap_stats) runs ahead of the sensor's own, which moves only once the
    // capture thread has read and decoded the frame: wait for both.
    let after = wait_for("every replayed frame", &|b| {
        sample(b, &received) >= Some(sent) && sample(b, "canh_sensor_packets_total") >= Some(sent)
    });
    assert_eq!(sample(&after, &received), Some(sent), "{after}");
    assert_eq!(sample(&after, &dropped), Some(0), "{after}");
    assert_eq!(sample(&after, &if_dropped), Some(0), "{after}");
    assert_eq!(sample(&after, "canh_sensor_packets_total"), Some(sent), "{after}");

    sensor.terminate();
    let status = sensor.wait(Duration::from_secs(20)).expect("the sensor exits on SIGTERM");
    assert!(status.success(), "canh-sensor run exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
