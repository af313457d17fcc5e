//! Detection on real attack and benign data, offline (no Kafka, no ClickHouse): `canh-sensor pcap`
//! or `canh-sensor logs` piped into `canh-collector detect --rules rules` with the sample indicator
//! files. Each known attack raises the matching alert; the benign traces raise none. The figures
//! are listed in `rules/REAL-DATA.md`.

use canh_tests::{binary, repo, shared_data};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// Alerts (rule name -> count) of the events one sensor command prints.
fn alerts(sensor_args: &[&str], inputs: &[&Path]) -> BTreeMap<String, usize> {
    let events = Command::new(binary("canh-sensor"))
        .args(sensor_args)
        .args(inputs)
        .stderr(Stdio::null())
        .output()
        .expect("run canh-sensor");
    assert!(events.status.success(), "canh-sensor {sensor_args:?} {inputs:?} failed");
    assert!(!events.stdout.is_empty(), "no events from {inputs:?}");
    let output = detect_output(&events.stdout, false);
    let mut out = BTreeMap::new();
    for line in String::from_utf8_lossy(&output).lines() {
        let alert: serde_json::Value = serde_json::from_str(line).expect("alert JSON");
        let name = alert["rule"]["name"].as_str().expect("rule name").to_string();
        *out.entry(name).or_default() += 1;
    }
    out
}

fn pcap(relative: &str) -> BTreeMap<String, usize> {
    let path = shared_data().join(relative);
    alerts(&["pcap", "--community-id-seed", "0"], &[&path])
}

fn only(found: &BTreeMap<String, usize>, rule: &str) {
    assert_eq!(found.keys().collect::<Vec<_>>(), [rule], "{found:?}");
}

#[test]
fn synscan_raises_a_vertical_scan() {
    only(&pcap("pcap/samples/synscan.pcapng"), "Vertical port scan");
}

#[test]
fn iodine_raises_a_long_dns_name() {
    only(&pcap("pcap/samples/dns-tunnel-iodine.pcap"), "DNS query with a very long name or label");
}

#[test]
fn dvwa_sql_injection_raises_sql_injection() {
    only(&pcap("pcap/samples/http-dvwa-sqlinjection.pcapng"), "SQL injection in a web request");
}

#[test]
fn sshguess_raises_password_guessing_on_the_wire() {
    only(&pcap("pcap/zeek/ssh-sshguess.pcap"), "SSH password guessing seen on the wire");
}

#[test]
fn honeynet_secure_logs_raise_ssh_brute_force() {
    let dir = shared_data().join("logs/sotm34/original/syslog");
    let files: Vec<_> = (0..7)
        .map(|i| if i == 0 { dir.join("secure") } else { dir.join(format!("secure.{i}")) })
        .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let found = alerts(&["logs", "--reference-time", "2005-03-01T00:00:00Z"], &refs);
    only(&found, "SSH brute force from one source");
    assert_eq!(found["SSH brute force from one source"], 7, "seven guessing sources");
}

#[test]
fn honeynet_web_logs_raise_path_traversal_and_command_injection() {
    let dir = shared_data().join("logs/sotm34/original/http");
    let files: Vec<_> = (0..7)
        .map(|i| if i == 0 { dir.join("access_log") } else { dir.join(format!("access_log.{i}")) })
        .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let found =
        alerts(&["logs", "--format", "access", "--reference-time", "2005-03-01T00:00:00Z"], &refs);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        ["OS command injection in a web request", "Path traversal in a web request"],
        "{found:?}"
    );
}

#[test]
fn benign_zeek_traces_raise_nothing() {
    let dir = shared_data().join("pcap/zeek");
    let mut traces: Vec<_> = std::fs::read_dir(&dir)
        .expect("zeek traces")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.ends_with("ssh-sshguess.pcap"))
        .collect();
    traces.sort();
    assert!(traces.len() >= 20);
    for trace in traces {
        let events = Command::new(binary("canh-sensor"))
            .args(["pcap", "--community-id-seed", "0"])
            .arg(&trace)
            .stderr(Stdio::null())
            .output()
            .expect("run canh-sensor");
        if events.stdout.is_empty() {
            continue; // a trace of fragments only, nothing to detect on
        }
        let found = alerts(&["pcap", "--community-id-seed", "0"], &[&trace]);
        assert!(found.is_empty(), "{}: {found:?}", trace.display());
    }
}

/// The sample indicator files through `canh-collector detect`: a flow to the STIX bundle's address,
/// a DNS lookup under the CSV's C2 domain, a TLS client with the CSV's JA3, and an event that hits
/// nothing.
#[test]
fn sample_indicators_raise_intel_alerts_through_detect() {
    let base = |id: &str, dataset: &str| {
        serde_json::json!({"@timestamp": "2026-11-23T10:00:00Z",
            "event": {"id": id, "kind": "event", "dataset": dataset},
            "observer": {"id": "s1"}, "organization": {"id": "t1"}, "canh": {"schema_version": 1},
            "source": {"ip": "10.1.2.3", "port": 40000}, "destination": {"ip": "10.1.2.4", "port": 443}})
    };
    let mut flow = base("e1", "flow");
    flow["destination"]["ip"] = "203.0.113.66".into();
    let mut dns = base("e2", "dns");
    dns["dns"] = serde_json::json!({"question": {"name": "beacon.c2.example.net"}});
    let mut tls = base("e3", "tls");
    tls["tls"] = serde_json::json!({"client": {"ja3": "3b5074b1b5d032e5620f69f9f700ff0e"}});
    let clean = base("e4", "flow");
    let input: String = [flow, dns, tls, clean].iter().map(|e| format!("{e}\n")).collect();
    let rules = repo().join("rules");
    let mut detect = Command::new(binary("canh-collector"))
        .args(["detect", "--rules"])
        .arg(&rules)
        .arg("--intel")
        .arg(rules.join("intel/example.csv"))
        .arg("--intel")
        .arg(rules.join("intel/example.stix.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run canh-collector detect");
    {
        use std::io::Write;
        let mut stdin = detect.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("feed events");
    }
    let output = detect.wait_with_output().expect("detect output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("1 unsupported"), "the bundle's file hash is reported: {stderr}");
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect();
    let mut seen: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            let group = &a["alert"]["group"];
            (
                a["rule"]["id"].as_str().unwrap_or_default().to_string(),
                group["threat.indicator.value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("canh-intel-domain".to_string(), "c2.example.net".to_string()),
            ("canh-intel-ip".to_string(), "203.0.113.66".to_string()),
            ("canh-intel-ja3".to_string(), "3b5074b1b5d032e5620f69f9f700ff0e".to_string()),
        ]
    );
    let ip = alerts.iter().find(|a| a["rule"]["id"] == "canh-intel-ip").expect("ip alert");
    assert_eq!(ip["rule"]["level"], "high");
    assert_eq!(ip["alert"]["event_ids"], serde_json::json!(["e1"]));
    assert!(ip["alert"]["group"]["threat.indicator.provider"]
        .as_str()
        .is_some_and(|p| p.ends_with("example.stix.json: Example C2 address")));
}

/// `canh-collector detect` over the events of one run of the sensor, with or without `--tape`.
fn detect_output(events: &[u8], tape: bool) -> Vec<u8> {
    let rules = repo().join("rules");
    let mut command = Command::new(binary("canh-collector"));
    command
        .arg("detect")
        .arg("--rules")
        .arg(&rules)
        .args(["--lateness", "24h", "--intel"])
        .arg(rules.join("intel/example.csv"))
        .arg("--intel")
        .arg(rules.join("intel/example.stix.json"));
    if tape {
        command.arg("--tape");
    }
    let mut detect = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run canh-collector detect");
    let mut stdin = detect.stdin.take().expect("stdin");
    let input = events.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&input).expect("feed events");
    });
    let output = detect.wait_with_output().expect("detect output");
    writer.join().expect("writer");
    assert!(output.status.success(), "canh-collector detect failed");
    output.stdout
}

/// A log and its six rotations (`secure`, `secure.1`, ..., `secure.6`).
fn rotated(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    (0..7).map(|i| if i == 0 { dir.join(name) } else { dir.join(format!("{name}.{i}")) }).collect()
}

/// The collector's detection input (the events on a tape, `detect --tape`) against the plain one
/// (JSON values) on real sensor output: the attack captures, the honeynet's logs and the benign
/// Zeek traces, with the sample indicators. The events go in event-time order (the tape's order
/// within each chunk), so both ways see the same sequence and must print the same bytes.
#[test]
fn real_sensor_output_gives_the_same_alerts_on_the_tape() {
    let data = shared_data();
    let mut runs: Vec<(Vec<&str>, Vec<std::path::PathBuf>)> = vec![
        (
            vec!["pcap", "--community-id-seed", "0"],
            vec![
                data.join("pcap/samples/synscan.pcapng"),
                data.join("pcap/samples/dns-tunnel-iodine.pcap"),
                data.join("pcap/samples/http-dvwa-sqlinjection.pcapng"),
            ],
        ),
        (
            vec!["logs", "--reference-time", "2005-03-01T00:00:00Z"],
            rotated(&data.join("logs/sotm34/original/syslog"), "secure"),
        ),
        (
            vec!["logs", "--format", "access", "--reference-time", "2005-03-01T00:00:00Z"],
            rotated(&data.join("logs/sotm34/original/http"), "access_log"),
        ),
    ];
    let mut zeek: Vec<_> = std::fs::read_dir(data.join("pcap/zeek"))
        .expect("zeek traces")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    zeek.sort();
    runs.push((vec!["pcap", "--community-id-seed", "0"], zeek));
    let mut lines: Vec<(i64, String)> = Vec::new();
    for (args, inputs) in &runs {
        for input in inputs {
            let out = Command::new(binary("canh-sensor"))
                .args(args)
                .arg(input)
                .stderr(Stdio::null())
                .output()
                .expect("run canh-sensor");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let value: serde_json::Value = serde_json::from_str(line).expect("event JSON");
                let time = value["@timestamp"]
                    .as_str()
                    .and_then(|t| canh_event::Timestamp::parse(t).ok())
                    .map_or(i64::MIN, |t| t.nanos());
                lines.push((time, line.to_string()));
            }
        }
    }
    assert!(lines.len() > 5_000, "events: {}", lines.len());
    lines.sort_by_key(|(time, _)| *time);
    let events: String = lines.iter().map(|(_, line)| format!("{line}\n")).collect();
    let plain = detect_output(events.as_bytes(), false);
    let tape = detect_output(events.as_bytes(), true);
    let alerts = plain.iter().filter(|&&b| b == b'\n').count();
    assert!(alerts >= 100, "alerts: {alerts}");
    assert!(plain == tape, "the tape's alerts differ from the plain path's ({alerts} alerts)");
}
