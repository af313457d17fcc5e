//! Live log inputs with real clients: util-linux `logger` over UDP and TCP (both framings),
//! `openssl s_client` over TLS, file tailing across rotation and restart, and hostile input
//! (over-long messages, a TCP connection flood). The pipeline's events are collected in-process
//! instead of going to Kafka.

use canh_event::Event;
use canh_sensor::flow::Identity;
use canh_sensor::logs::pipeline::{self, LogInputs, PipelineMetrics, RunningLogs, UdpSettings};
use canh_sensor::logs::receive::{ReceiverMetrics, StreamSettings};
use canh_sensor::logs::tail::TailSettings;
use canh_sensor::logs::{LineFormat, LineOptions};
use canh_sensor::metrics::Metrics;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX: usize = 2048;

fn network_options() -> LineOptions {
    LineOptions {
        format: LineFormat::Syslog,
        utc_offset_secs: 7 * 3600,
        default_priority: Some(13),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn inputs(dir: &Path) -> LogInputs {
    LogInputs {
        channel_capacity: 1000,
        udp: None,
        tcp: None,
        tls: None,
        files: Vec::new(),
        poll_interval: Duration::from_millis(100),
        checkpoint_path: dir.join("log-checkpoints"),
    }
}

fn stream(tls: Option<(PathBuf, PathBuf)>, max_connections: usize) -> StreamSettings {
    StreamSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        max_connections,
        idle_timeout: Duration::from_secs(30),
        max_bytes: MAX,
        options: network_options(),
        tls,
    }
}

struct Harness {
    running: Option<RunningLogs>,
    stop: Arc<AtomicBool>,
    events: mpsc::Receiver<Event>,
    metrics: Metrics,
}

fn start(inputs: &LogInputs) -> Harness {
    let metrics = Metrics::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, events) = mpsc::channel();
    let log_metrics = PipelineMetrics {
        receivers: ReceiverMetrics {
            lines: metrics.log_lines.clone(),
            truncated: metrics.log_truncated.clone(),
            dropped: metrics.log_dropped.clone(),
            connections_refused: metrics.log_connections_refused.clone(),
            udp_kernel_drops: metrics.log_udp_kernel_drops.clone(),
        },
        parse_errors: metrics.log_parse_errors.clone(),
        events: metrics.events.clone(),
    };
    let who = Identity { sensor_id: "live".into(), tenant: "t".into(), community_id_seed: 0 };
    let running = pipeline::start(
        inputs,
        who,
        0,
        stop.clone(),
        log_metrics,
        // Read back from the JSON the pipeline hands on, as the collector does.
        move |log: &pipeline::LogJson<'_>| {
            let event: Event = serde_json::from_slice(log.json).map_err(|e| e.to_string())?;
            assert_eq!(log.key, canh_sensor::produce::key_of(&event), "kafka key");
            tx.send(event).map_err(|e| e.to_string())
        },
        // The collecting "uplink" has everything as soon as it was sent.
        || true,
    )
    .expect("log inputs start");
    Harness { running: Some(running), stop, events, metrics }
}

impl Harness {
    /// Events until `n` arrived or 10 s passed.
    fn wait_for(&self, n: usize) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => got.push(e),
                Err(_) => break,
            }
        }
        got
    }

    fn stop(&mut self) -> pipeline::PipelineResult {
        self.stop.store(true, Ordering::Relaxed);
        self.running.take().expect("running").join()
    }
}

fn logger(args: &[&str]) {
    let status = Command::new("logger").args(args).status().expect("logger (util-linux) runs");
    assert!(status.success(), "logger {args:?}");
}

fn syslog_field<'a>(
    e: &'a Event,
    f: impl Fn(&'a canh_event::Syslog) -> Option<&'a String>,
) -> Option<&'a str> {
    e.log.as_ref().and_then(|l| l.syslog.as_ref()).and_then(f).map(String::as_str)
}

#[test]
fn logger_over_udp_and_tcp() {
    let dir = temp_dir("live-net");
    let mut config = inputs(&dir);
    config.udp = Some(UdpSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        max_bytes: MAX,
        receive_buffer_bytes: 1 << 20,
        options: network_options(),
    });
    config.tcp = Some(stream(None, 16));
    let mut h = start(&config);
    let running = h.running.as_ref().expect("running");
    let udp = running.udp_addr.expect("udp bound").port().to_string();
    let tcp = running.tcp_addr.expect("tcp bound").port().to_string();

    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &udp,
        "-d",
        "-t",
        "canhudp",
        "-p",
        "auth.warning",
        "hello over udp",
    ]);
    let got = h.wait_for(1);
    assert_eq!(got.len(), 1, "udp message arrived");
    assert_eq!(got[0].message.as_deref(), Some("hello over udp"));
    assert_eq!(syslog_field(&got[0], |s| s.appname.as_ref()), Some("canhudp"));
    let sys = got[0].log.as_ref().and_then(|l| l.syslog.as_ref()).expect("syslog");
    assert_eq!(sys.priority, Some(4 * 8 + 4));

    // logger's TCP default is RFC 5424 with octet counting; --rfc3164 for the BSD format.
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-T",
        "--octet-count",
        "-t",
        "canhtcp",
        "--msgid",
        "M1",
        "octet counted",
    ]);
    logger(&["-n", "127.0.0.1", "-P", &tcp, "-T", "--rfc3164", "-t", "canhbsd", "newline framed"]);
    let mut got = h.wait_for(2);
    got.sort_by_key(|e| e.message.clone());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].message.as_deref(), Some("newline framed"));
    assert_eq!(syslog_field(&got[0], |s| s.appname.as_ref()), Some("canhbsd"));
    assert_eq!(got[1].message.as_deref(), Some("octet counted"));
    assert_eq!(syslog_field(&got[1], |s| s.msgid.as_ref()), Some("M1"));

    // sshd-like line through the network path gets the program parser's fields.
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &udp,
        "-d",
        "-t",
        "sshd",
        "Failed password for root from 192.0.2.44 port 5050 ssh2",
    ]);
    let got = h.wait_for(1);
    assert_eq!(got[0].event.outcome.as_deref(), Some("failure"));
    assert_eq!(got[0].source.as_ref().and_then(|s| s.port), Some(5050));

    let result = h.stop();
    assert_eq!(result.events, 4);
    assert_eq!(h.metrics.log_lines.with_label_values(&["udp"]).get(), 2);
    assert_eq!(h.metrics.log_lines.with_label_values(&["tcp"]).get(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn over_long_messages_are_capped_and_counted() {
    let dir = temp_dir("live-long");
    let mut config = inputs(&dir);
    config.udp = Some(UdpSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        max_bytes: MAX,
        receive_buffer_bytes: 1 << 20,
        options: network_options(),
    });
    config.tcp = Some(stream(None, 4));
    let mut h = start(&config);
    let running = h.running.as_ref().expect("running");
    let tcp_addr = running.tcp_addr.expect("tcp");
    let udp_addr = running.udp_addr.expect("udp");
    let long = format!("<13>Nov 23 10:00:00 h app: {}", "x".repeat(10 * MAX));
    let mut conn = TcpStream::connect(tcp_addr).expect("connect");
    conn.write_all(format!("{long}\n<13>Nov 23 10:00:01 h app: after\n").as_bytes()).expect("send");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.send_to(long.as_bytes(), udp_addr).expect("udp send");
    let got = h.wait_for(3);
    assert_eq!(got.len(), 3);
    let truncated: Vec<&Event> =
        got.iter().filter(|e| e.log.as_ref().and_then(|l| l.truncated) == Some(true)).collect();
    assert_eq!(truncated.len(), 2);
    for e in &truncated {
        assert_eq!(e.event.original.as_ref().map(String::len), Some(MAX));
    }
    assert!(got.iter().any(|e| e.message.as_deref() == Some("after")), "stream resynced");
    drop(conn);
    h.stop();
    assert_eq!(h.metrics.log_truncated.with_label_values(&["tcp"]).get(), 1);
    assert_eq!(h.metrics.log_truncated.with_label_values(&["udp"]).get(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_utf8_over_the_network_is_kept_escaped() {
    let dir = temp_dir("live-utf8");
    let mut config = inputs(&dir);
    config.udp = Some(UdpSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        max_bytes: MAX,
        receive_buffer_bytes: 1 << 20,
        options: network_options(),
    });
    config.tcp = Some(stream(None, 4));
    let mut h = start(&config);
    let running = h.running.as_ref().expect("running");
    let (tcp_addr, udp_addr) = (running.tcp_addr.expect("tcp"), running.udp_addr.expect("udp"));
    let line = b"<13>Nov 23 10:00:00 h app: caf\xe9 \xff\xfe back\\slash";
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.send_to(line, udp_addr).expect("udp send");
    let mut conn = TcpStream::connect(tcp_addr).expect("connect");
    conn.write_all(&[&line[..], b"\n"].concat()).expect("send");
    let got = h.wait_for(2);
    assert_eq!(got.len(), 2);
    for e in &got {
        assert_eq!(e.log.as_ref().and_then(|l| l.escaped), Some(true));
        // Each byte that is not UTF-8 as \xNN, each backslash doubled: the bytes can be recovered.
        assert_eq!(
            e.event.original.as_deref(),
            Some(r"<13>Nov 23 10:00:00 h app: caf\xe9 \xff\xfe back\\slash")
        );
        assert_eq!(e.message.as_deref(), Some(r"caf\xe9 \xff\xfe back\\slash"));
        assert_eq!(syslog_field(e, |s| s.appname.as_ref()), Some("app"));
    }
    drop(conn);
    h.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flood on the running UDP receiver with a tiny socket buffer: what the kernel dropped is read
/// from the socket statistics into `canh_sensor_log_udp_kernel_drops`, and every datagram sent is
/// either received or counted there.
#[test]
fn udp_flood_on_the_receiver_is_counted_in_kernel_drops() {
    let dir = temp_dir("live-udp-flood");
    let mut config = inputs(&dir);
    config.channel_capacity = 100_000;
    config.udp = Some(UdpSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        max_bytes: MAX,
        // The smallest buffer Linux grants: a few datagrams.
        receive_buffer_bytes: 1,
        options: network_options(),
    });
    let mut h = start(&config);
    let addr = h.running.as_ref().and_then(|r| r.udp_addr).expect("udp");
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let payload = [b'x'; 1000];
    let sent = (0..50_000).filter(|_| sender.send_to(&payload, addr).is_ok()).count() as u64;
    // Let the receiver drain its buffer, then the gauge (read once a second) catch up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut drops = 0;
    let mut gauge = -1;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        drops = canh_sensor::logs::receive::udp_kernel_drops(addr.port()).expect("socket listed");
        gauge = h.metrics.log_udp_kernel_drops.get();
        let received = h.metrics.log_lines.with_label_values(&["udp"]).get();
        if received + drops == sent && gauge == drops as i64 {
            break;
        }
    }
    let received = h.metrics.log_lines.with_label_values(&["udp"]).get();
    println!("udp flood: sent {sent}, received {received}, kernel drops {drops}");
    assert!(drops > 0, "a 50,000-datagram flood into a few-datagram buffer drops some");
    assert_eq!(gauge, drops as i64, "the gauge reports the socket's drops");
    assert_eq!(received + drops, sent, "every datagram is received or counted as dropped");
    h.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connection_flood_hits_the_limit_without_harming_existing_senders() {
    let dir = temp_dir("live-flood");
    let mut config = inputs(&dir);
    config.tcp = Some(stream(None, 4));
    let mut h = start(&config);
    let addr = h.running.as_ref().and_then(|r| r.tcp_addr).expect("tcp");
    let mut sender = TcpStream::connect(addr).expect("connect");
    sender.write_all(b"<13>Nov 23 10:00:00 h app: before the flood\n").expect("send");
    assert_eq!(h.wait_for(1).len(), 1);
    // 3 more fill the limit; the next 50 are refused (closed by the receiver at once).
    let mut flood: Vec<TcpStream> = (0..53).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut closed = 0;
    for conn in &mut flood {
        conn.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let mut byte = [0u8; 1];
        if matches!(conn.read(&mut byte), Ok(0)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "connections past the limit are closed");
    assert_eq!(h.metrics.log_connections_refused.get(), 50);
    sender.write_all(b"<13>Nov 23 10:00:01 h app: during the flood\n").expect("send");
    let got = h.wait_for(1);
    assert_eq!(got.first().and_then(|e| e.message.as_deref()), Some("during the flood"));
    drop(flood);
    h.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_with_openssl_client() {
    let dir = temp_dir("live-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let mut config = inputs(&dir);
    config.tls = Some(stream(Some((cert.clone(), key.clone())), 8));
    let mut h = start(&config);
    let addr = h.running.as_ref().and_then(|r| r.tls_addr).expect("tls");
    // RFC 5425 framing: octet counted.
    let message = "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8";
    let framed = format!("{} {message}", message.len());
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &addr.to_string()])
        .arg("-CAfile")
        .arg(&cert)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_client runs");
    client.stdin.take().expect("stdin").write_all(framed.as_bytes()).expect("write");
    let got = h.wait_for(1);
    let _ = client.kill();
    let _ = client.wait();
    assert_eq!(got.len(), 1, "tls message arrived");
    assert_eq!(got[0].message.as_deref(), Some("'su root' failed for lonvick on /dev/pts/8"));
    assert_eq!(syslog_field(&got[0], |s| s.appname.as_ref()), Some("su"));
    h.stop();
    assert_eq!(h.metrics.log_lines.with_label_values(&["tls"]).get(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

fn messages(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| e.message.clone()).collect()
}

#[test]
fn tailing_follows_rotation_and_resumes_after_restart() {
    let dir = temp_dir("live-tail");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("dir");
    let auth = logs.join("auth.log");
    append(&auth, "Nov 23 10:00:00 h app: one\nNov 23 10:00:01 h app: two\n");
    let mut config = inputs(&dir);
    config.files = vec![TailSettings {
        patterns: vec![logs.join("*.log").display().to_string()],
        options: LineOptions {
            format: LineFormat::Auto,
            utc_offset_secs: 0,
            default_priority: None,
        },
        start_at_end: false,
        max_bytes: MAX,
    }];
    let mut h = start(&config);
    assert_eq!(messages(&h.wait_for(2)), ["one", "two"]);
    // A half-written line waits for its newline.
    append(&auth, "Nov 23 10:00:02 h app: thr");
    std::thread::sleep(Duration::from_millis(300));
    append(&auth, "ee\n");
    assert_eq!(messages(&h.wait_for(1)), ["three"]);
    // Rotation by rename: the old file's last lines, then the new file.
    append(&auth, "Nov 23 10:00:03 h app: four\n");
    std::fs::rename(&auth, logs.join("auth.log.1")).expect("rotate");
    append(&auth, "Nov 23 10:00:04 h app: five\n");
    let mut got = messages(&h.wait_for(2));
    got.sort();
    assert_eq!(got, ["five", "four"]);
    // Rotation by copytruncate.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&auth, "").expect("truncate");
    std::thread::sleep(Duration::from_millis(300));
    append(&auth, "Nov 23 10:00:05 h app: six\n");
    assert_eq!(messages(&h.wait_for(1)), ["six"]);
    // A new file matching the glob.
    append(&logs.join("nginx.log"), "Nov 23 10:00:06 h nginx: seven\n");
    assert_eq!(messages(&h.wait_for(1)), ["seven"]);
    let result = h.stop();
    pipeline::save_checkpoints(&result, &config.checkpoint_path).expect("save checkpoints");

    // Lines written while the sensor is down are read after the restart, and nothing twice.
    append(&auth, "Nov 23 10:00:07 h app: eight\n");
    append(&logs.join("nginx.log"), "Nov 23 10:00:08 h nginx: nine\n");
    let mut h = start(&config);
    let mut got = messages(&h.wait_for(2));
    got.sort();
    assert_eq!(got, ["eight", "nine"], "the lines written while stopped");
    assert!(h.events.recv_timeout(Duration::from_millis(800)).is_err(), "nothing read twice");
    h.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// rsyslog forwarding with omfwd: `logger` -> rsyslogd (imudp) -> three omfwd actions -> our
/// receivers: TCP octet-counted (RFC 6587 3.4.1) with the RFC 5424 template, TCP newline-framed
/// ("traditional", RFC 6587 3.4.2) with the RFC 3164 forward template, and UDP with the RFC 3164
/// forward template. rsyslogd is Debian's (`scripts/install.sh` installs the `rsyslog` package), run
/// with its own config in a temp dir, in the foreground, no system daemon. `CANH_RSYSLOGD` (path)
/// and `CANH_RSYSLOG_MODULES` (module directory) select another build.
#[test]
fn rsyslog_omfwd_forwards_to_us() {
    let rsyslogd = std::env::var("CANH_RSYSLOGD").unwrap_or_else(|_| "/usr/sbin/rsyslogd".into());
    assert!(
        Path::new(&rsyslogd).exists(),
        "{rsyslogd} not found: run scripts/install.sh (Debian package rsyslog)"
    );
    let dir = temp_dir("live-rsyslog");
    let mut config = inputs(&dir);
    config.udp = Some(UdpSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        max_bytes: MAX,
        receive_buffer_bytes: 1 << 20,
        options: network_options(),
    });
    config.tcp = Some(stream(None, 16));
    let mut h = start(&config);
    let running = h.running.as_ref().expect("running");
    let udp = running.udp_addr.expect("udp").port();
    let tcp = running.tcp_addr.expect("tcp").port();
    // A free port for rsyslog's own UDP input.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let rsyslog_in = probe.local_addr().expect("addr").port();
    drop(probe);
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{rsyslog_in}")
*.* action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
*.* action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="traditional" template="RSYSLOG_ForwardFormat")
*.* action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp" template="RSYSLOG_ForwardFormat")
"#,
            work = dir.display()
        ),
    )
    .expect("write rsyslog.conf");
    let mut command = Command::new(&rsyslogd);
    command.arg("-n").arg("-f").arg(&conf).arg("-i").arg(dir.join("rsyslogd.pid"));
    if let Ok(modules) = std::env::var("CANH_RSYSLOG_MODULES") {
        command.arg("-M").arg(modules);
    }
    let mut daemon = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {rsyslogd}: {e}"));
    // Until rsyslog's input is up, datagrams sent to it are lost: send until the first copy arrives.
    let send = |text: &str| {
        logger(&[
            "-n",
            "127.0.0.1",
            "-P",
            &rsyslog_in.to_string(),
            "-d",
            "--rfc3164",
            "-t",
            "sshd",
            "-p",
            "auth.info",
            text,
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut first = None;
    while first.is_none() && Instant::now() < deadline {
        send("rsyslog probe");
        first = h.events.recv_timeout(Duration::from_millis(500)).ok();
    }
    assert!(first.is_some(), "rsyslogd forwarded nothing within 15 s");
    // Let the probe's other copies arrive, then drop them.
    std::thread::sleep(Duration::from_millis(1000));
    while h.events.try_recv().is_ok() {}
    let lines_before = |input: &str| h.metrics.log_lines.with_label_values(&[input]).get();
    let (tcp_before, udp_before) = (lines_before("tcp"), lines_before("udp"));
    send("Accepted publickey for alice from 198.51.100.20 port 50122 ssh2");
    let got = h.wait_for(3);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(got.len(), 3, "one copy per omfwd action");
    for e in &got {
        assert_eq!(syslog_field(e, |s| s.appname.as_ref()), Some("sshd"));
        assert_eq!(
            e.log.as_ref().and_then(|l| l.syslog.as_ref()).and_then(|s| s.priority),
            Some(38)
        );
        assert_eq!(e.event.action.as_deref(), Some("accepted-publickey"));
        assert_eq!(e.user.as_ref().map(|u| u.name.as_str()), Some("alice"));
        assert_eq!(
            e.source.as_ref().and_then(|s| s.ip).map(|ip| ip.to_string()).as_deref(),
            Some("198.51.100.20")
        );
        // rsyslog's %msg% keeps the space after the TAG; its RFC 5424 template therefore sends
        // MSG with a leading space, which RFC 5424 makes part of the MSG (kept as sent).
        assert_eq!(
            e.message.as_deref().map(str::trim_start),
            Some("Accepted publickey for alice from 198.51.100.20 port 50122 ssh2")
        );
    }
    // The RFC 5424 copy carries rsyslog's version field; the RFC 3164 ones do not.
    let rfc5424 =
        got.iter().filter(|e| e.event.original.as_deref().is_some_and(|o| o.starts_with("<38>1 ")));
    assert_eq!(rfc5424.count(), 1, "one copy in the RFC 5424 template");
    h.stop();
    assert_eq!(h.metrics.log_lines.with_label_values(&["tcp"]).get() - tcp_before, 2);
    assert_eq!(h.metrics.log_lines.with_label_values(&["udp"]).get() - udp_before, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP flood the receiver cannot keep up with shows up in the kernel's socket statistics, which
/// `udp_kernel_drops` reads (here on a socket nobody reads, so every datagram past its buffer is
/// dropped by the kernel).
#[test]
fn udp_flood_drops_are_read_from_socket_statistics() {
    let victim = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = victim.local_addr().expect("addr").port();
    assert_eq!(canh_sensor::logs::receive::udp_kernel_drops(port), Some(0));
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let payload = [b'x'; 1000];
    for _ in 0..20_000 {
        let _ = sender.send_to(&payload, ("127.0.0.1", port));
    }
    let drops = canh_sensor::logs::receive::udp_kernel_drops(port).expect("socket listed");
    assert!(drops > 0, "the kernel dropped datagrams");
    println!("kernel drops after 20000 datagrams to an unread socket: {drops}");
}
