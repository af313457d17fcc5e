//! Fidelity harness: runs the sensor over every Zeek test trace that has baseline logs and compares
//! our events with Zeek's conn/dns/http/ssl logs field by field, then checks the fields Suricata's
//! verification cases assert. Prints an agreement table and fails when agreement falls below the
//! floors in `zeek_agreement_floor.toml`.
//!
//! Run with `cargo test -p canh-sensor --test zeek_agreement -- --nocapture` to see the table.
//! The data lives outside the repository at `../shared/data` (relative to the repo root); when it is
//! absent the test says so and passes, so builds without the data set still work.

use canh_event::Event;
use canh_sensor::capture;
use canh_sensor::flow::{FlowConfig, Identity};
use canh_sensor::metrics::Metrics;
use canh_sensor::packets::PacketPipeline;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// One log record as column name -> text, in Zeek's ASCII conventions (`-` unset).
type Record = HashMap<String, String>;

/// Parse a Zeek ASCII log (as stored in a btest baseline).
fn parse_zeek_log(text: &str) -> Vec<Record> {
    let mut fields: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#fields\t") {
            fields = rest.split('\t').map(str::to_string).collect();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let values: Vec<&str> = line.split('\t').collect();
        let record = fields.iter().zip(values).map(|(f, v)| (f.clone(), v.to_string())).collect();
        out.push(record);
    }
    out
}

const LOGS: [(&str, &[&str]); 6] = [
    (
        "conn",
        &[
            "proto",
            "duration",
            "orig_bytes",
            "resp_bytes",
            "conn_state",
            "missed_bytes",
            "history",
            "orig_pkts",
            "resp_pkts",
            "orig_ip_bytes",
            "resp_ip_bytes",
        ],
    ),
    ("dns", &["trans_id", "query", "qtype_name", "rcode_name", "answers", "TTLs"]),
    (
        "http",
        &[
            "method",
            "host",
            "uri",
            "version",
            "user_agent",
            "request_body_len",
            "response_body_len",
            "status_code",
        ],
    ),
    (
        "ssl",
        &["version", "cipher", "server_name", "established", "next_protocol", "subject", "issuer"],
    ),
    ("ssh", &["client", "server"]),
    (
        "x509",
        &[
            "certificate.subject",
            "certificate.issuer",
            "certificate.not_valid_before",
            "certificate.not_valid_after",
        ],
    ),
];

/// Run the sensor library over one capture, as `canh-sensor pcap FILE` does.
fn run_sensor(pcap: &Path, seed: u16) -> Vec<Event> {
    let metrics = Metrics::new();
    let who = Identity {
        sensor_id: "agreement".to_string(),
        tenant: "test".to_string(),
        community_id_seed: seed,
    };
    let mut pipeline = PacketPipeline::new(who, FlowConfig::default(), 0, &metrics);
    let mut events = Vec::new();
    capture::read_file(pcap, |link, ts, data| pipeline.frame(link, ts, data, &mut events))
        .unwrap_or_else(|e| panic!("reading {}: {e}", pcap.display()));
    pipeline.finish(&mut events);
    events
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn tuple(event: &Event, record: &mut Record) {
    let src = event.source.clone().unwrap_or_default();
    let dst = event.destination.clone().unwrap_or_default();
    record.insert("id.orig_h".into(), opt(src.ip));
    record.insert("id.orig_p".into(), opt(src.port));
    record.insert("id.resp_h".into(), opt(dst.ip));
    record.insert("id.resp_p".into(), opt(dst.port));
    let proto = event.network.as_ref().and_then(|n| n.transport.clone());
    let proto = match proto.as_deref() {
        Some("ipv6-icmp") => "icmp".to_string(),
        Some(p) => p.to_string(),
        None => "-".to_string(),
    };
    record.insert("proto".into(), proto);
}

/// Our events written the way Zeek would log them, for one log kind.
fn as_zeek(events: &[Event], log: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for event in events {
        let mut r = Record::new();
        match (log, event.event.dataset) {
            ("conn", canh_event::Dataset::Flow) => {
                let flow = event.flow.clone().unwrap_or_default();
                let src = event.source.clone().unwrap_or_default();
                let dst = event.destination.clone().unwrap_or_default();
                let duration = event.event.duration.unwrap_or(0);
                // Zeek's conn.zeek sets duration and the byte counts only when duration > 0.
                if duration > 0 {
                    r.insert("duration".into(), format!("{:.6}", duration as f64 / 1e9));
                    r.insert("orig_bytes".into(), opt(flow.orig_payload_bytes));
                    r.insert("resp_bytes".into(), opt(flow.resp_payload_bytes));
                } else {
                    for f in ["duration", "orig_bytes", "resp_bytes"] {
                        r.insert(f.into(), "-".into());
                    }
                }
                r.insert("conn_state".into(), opt(flow.state));
                r.insert("missed_bytes".into(), opt(flow.missed_bytes));
                let history = flow.history.unwrap_or_default();
                r.insert("history".into(), if history.is_empty() { "-".into() } else { history });
                r.insert("orig_pkts".into(), opt(src.packets));
                r.insert("resp_pkts".into(), opt(dst.packets));
                r.insert("orig_ip_bytes".into(), opt(src.bytes));
                r.insert("resp_ip_bytes".into(), opt(dst.bytes));
            }
            ("dns", canh_event::Dataset::Dns) => {
                let dns = event.dns.clone().unwrap_or_default();
                let q = dns.question.clone().unwrap_or_default();
                r.insert("trans_id".into(), opt(dns.id));
                r.insert("query".into(), opt(q.name));
                r.insert("qtype_name".into(), opt(q.r#type));
                r.insert("rcode_name".into(), opt(dns.response_code));
                let answers = dns.answers.unwrap_or_default();
                if answers.is_empty() {
                    r.insert("answers".into(), "-".into());
                    r.insert("TTLs".into(), "-".into());
                } else {
                    let data: Vec<String> =
                        answers.iter().map(|a| a.data.clone().unwrap_or_default()).collect();
                    let ttls: Vec<String> =
                        answers.iter().map(|a| format!("{}.000000", a.ttl.unwrap_or(0))).collect();
                    r.insert("answers".into(), data.join(","));
                    r.insert("TTLs".into(), ttls.join(","));
                }
            }
            ("http", canh_event::Dataset::Http) => {
                let http = event.http.clone().unwrap_or_default();
                let req = http.request.clone().unwrap_or_default();
                let resp = http.response.clone();
                let url = event.url.clone().unwrap_or_default();
                r.insert("method".into(), opt(req.method));
                r.insert("host".into(), opt(url.domain));
                r.insert("uri".into(), opt(url.original));
                r.insert("version".into(), opt(http.version));
                r.insert("user_agent".into(), opt(event.user_agent.clone().map(|u| u.original)));
                r.insert("request_body_len".into(), req.body.map_or(0, |b| b.bytes).to_string());
                r.insert(
                    "response_body_len".into(),
                    resp.as_ref().and_then(|x| x.body.clone()).map_or(0, |b| b.bytes).to_string(),
                );
                r.insert("status_code".into(), opt(resp.and_then(|x| x.status_code)));
            }
            ("ssl", canh_event::Dataset::Tls) => {
                let tls = event.tls.clone().unwrap_or_default();
                let dtls = tls.version_protocol.as_deref() == Some("dtls");
                let version = tls.version.as_deref().map(|v| match v {
                    "3.0" => "SSLv3".to_string(),
                    "2.0" => "SSLv2".to_string(),
                    v if dtls => format!("DTLSv{}", v.replace('.', "")),
                    v => format!("TLSv{}", v.replace('.', "")),
                });
                r.insert("version".into(), opt(version));
                r.insert("cipher".into(), opt(tls.cipher));
                r.insert(
                    "server_name".into(),
                    opt(tls.client.as_ref().and_then(|c| c.server_name.clone())),
                );
                r.insert(
                    "established".into(),
                    if tls.established == Some(true) { "T" } else { "F" }.into(),
                );
                r.insert("next_protocol".into(), opt(tls.next_protocol));
                let server = tls.server.clone().unwrap_or_default();
                r.insert("subject".into(), opt(server.subject));
                r.insert("issuer".into(), opt(server.issuer));
            }
            ("x509", canh_event::Dataset::Tls) => {
                // x509.log has no connection tuple; our leaf certificates match by content.
                let Some(server) = event.tls.as_ref().and_then(|t| t.server.clone()) else {
                    continue;
                };
                if server.subject.is_none() {
                    continue;
                }
                let secs =
                    |t: Option<canh_event::Timestamp>| t.map(|t| format!("{}.000000", t.secs()));
                r.insert("certificate.subject".into(), opt(server.subject));
                r.insert("certificate.issuer".into(), opt(server.issuer));
                r.insert("certificate.not_valid_before".into(), opt(secs(server.not_before)));
                r.insert("certificate.not_valid_after".into(), opt(secs(server.not_after)));
                out.push(r);
                continue;
            }
            ("ssh", canh_event::Dataset::Ssh) => {
                let ssh = event.ssh.clone().unwrap_or_default();
                r.insert("client".into(), opt(ssh.client.map(|c| c.banner)));
                r.insert("server".into(), opt(ssh.server.map(|c| c.banner)));
            }
            _ => continue,
        }
        tuple(event, &mut r);
        // Zeek writes an empty string as its empty-field marker.
        for v in r.values_mut() {
            if v.is_empty() {
                *v = "(empty)".to_string();
            }
        }
        out.push(r);
    }
    out
}

/// Zeek prints each TXT answer as `TXT <len> <string>` per character-string; we keep the text the
/// record carries (the strings concatenated). Bring Zeek's form to ours before comparing.
fn normalise_zeek_answer(answer: &str) -> String {
    let mut rest = answer;
    if !rest.starts_with("TXT ") {
        return answer.to_string();
    }
    let mut text = String::new();
    while let Some(r) = rest.strip_prefix("TXT ") {
        let Some((len, tail)) = r.split_once(' ') else { return answer.to_string() };
        let Ok(len) = len.parse::<usize>() else { return answer.to_string() };
        let Some(s) = tail.get(..len) else { return answer.to_string() };
        text.push_str(s);
        rest = tail[len..].strip_prefix(' ').unwrap_or(&tail[len..]);
    }
    text
}

fn normalise_zeek(log: &str, record: &mut Record) {
    if log == "dns" {
        if let Some(answers) = record.get("answers").cloned() {
            if answers != "-" {
                let parts: Vec<String> = answers.split(',').map(normalise_zeek_answer).collect();
                record.insert("answers".into(), parts.join(","));
            }
        }
    }
}

fn field_equal(field: &str, ours: &str, zeek: &str) -> bool {
    if field == "duration" && ours != "-" && zeek != "-" {
        let (Ok(a), Ok(b)) = (ours.parse::<f64>(), zeek.parse::<f64>()) else { return false };
        return (a - b).abs() <= 0.001;
    }
    ours == zeek
}

fn key(record: &Record, with_proto: bool) -> String {
    let mut k = ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"]
        .iter()
        .map(|f| record.get(*f).cloned().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    if with_proto {
        k.push(' ');
        k.push_str(record.get("proto").map_or("", String::as_str));
    }
    k
}

#[derive(Default)]
struct Tally {
    baseline: usize,
    matched: usize,
    ours_extra: usize,
    /// field -> (equal, compared)
    fields: BTreeMap<String, (usize, usize)>,
    mismatches: Vec<String>,
}

/// Match baseline records to ours by 5-tuple; among several candidates with the same tuple (DNS
/// queries or HTTP requests sharing a connection) take the unused one agreeing on most fields.
fn compare(
    case: &str,
    log: &str,
    fields: &[&str],
    zeek: Vec<Record>,
    ours: Vec<Record>,
    t: &mut Tally,
) {
    let with_proto = zeek.first().is_some_and(|r| r.contains_key("proto"));
    let mut used = vec![false; ours.len()];
    for mut z in zeek {
        normalise_zeek(log, &mut z);
        t.baseline += 1;
        let k = key(&z, with_proto);
        let score = |o: &Record| {
            fields
                .iter()
                .filter(|f| {
                    field_equal(
                        f,
                        o.get(**f).map_or("-", String::as_str),
                        z.get(**f).map_or("-", String::as_str),
                    )
                })
                .count()
        };
        let best = ours
            .iter()
            .enumerate()
            .filter(|(i, o)| !used[*i] && key(o, with_proto) == k)
            .max_by_key(|(i, o)| (score(o), usize::MAX - i))
            .map(|(i, _)| i);
        let Some(i) = best else {
            t.mismatches.push(format!("{case} {log}: no record for {k}"));
            continue;
        };
        used[i] = true;
        t.matched += 1;
        // Only columns the baseline has are compared (btest-diff-cut keeps a subset).
        for f in fields.iter().filter(|f| z.contains_key(**f)) {
            let ov = ours[i].get(*f).map_or("-", String::as_str);
            let zv = z.get(*f).map_or("-", String::as_str);
            let entry = t.fields.entry(f.to_string()).or_default();
            entry.1 += 1;
            if field_equal(f, ov, zv) {
                entry.0 += 1;
            } else {
                let short = |s: &str| {
                    if s.len() > 80 {
                        format!("{}...", &s[..s.floor_char_boundary(80)])
                    } else {
                        s.to_string()
                    }
                };
                t.mismatches.push(format!(
                    "{case} {log} {k} {f}: ours {:?} zeek {:?}",
                    short(ov),
                    short(zv)
                ));
            }
        }
    }
    t.ours_extra += used.iter().filter(|u| !**u).count();
}

/// The case directory a trace belongs to: `<case>__<part>.pcap` or `<case>.pcap`.
fn case_of(pcap: &Path) -> String {
    let stem = pcap.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    stem.split("__").next().unwrap_or(&stem).to_string()
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn zeek_agreement() -> BTreeMap<String, Tally> {
    let dir = data_dir().join("pcap/zeek");
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("zeek pcap dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    pcaps.sort();
    let mut by_case: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for p in pcaps {
        by_case.entry(case_of(&p)).or_default().push(p);
    }
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for (case, pcaps) in by_case {
        let base = data_dir().join("pcap/zeek-baseline").join(&case);
        if !base.is_dir() {
            continue;
        }
        // Zeek ran each trace on its own; so do we.
        let events: Vec<Event> = pcaps.iter().flat_map(|p| run_sensor(p, 0)).collect();
        for (log, fields) in LOGS {
            let Ok(text) = std::fs::read_to_string(base.join(format!("{log}.log"))) else {
                continue;
            };
            let mut zeek = parse_zeek_log(&text);
            if log == "x509" {
                // The chain is logged leaf first; we report the server's leaf certificate only.
                zeek.truncate(1);
            }
            let ours = as_zeek(&events, log);
            compare(&case, log, fields, zeek, ours, tallies.entry(log.to_string()).or_default());
        }
    }
    tallies
}

// ---------------------------------------------------------------------------------------------
// Wireshark (tshark) reference tables for the sample captures: JA3, SNI and JA3S per TLS flow.

const TSHARK_TLS_FIELDS: &[&str] = &["server_name", "ja3", "ja3s", "version", "cipher"];

fn read_tsv(path: &Path) -> Vec<HashMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let names: Vec<&str> = header.split('\t').collect();
    lines
        .map(|l| {
            names.iter().map(|n| n.to_string()).zip(l.split('\t').map(str::to_string)).collect()
        })
        .collect()
}

fn tsv_tuple(row: &HashMap<String, String>) -> (String, String, String, String) {
    let get = |a: &str, b: &str| {
        let v = row.get(a).cloned().unwrap_or_default();
        if v.is_empty() {
            row.get(b).cloned().unwrap_or_default()
        } else {
            v
        }
    };
    (
        get("ip.src", "ipv6.src"),
        get("tcp.srcport", "udp.srcport"),
        get("ip.dst", "ipv6.dst"),
        get("tcp.dstport", "udp.dstport"),
    )
}

/// A sample capture that has a reference folder, and our events for it.
struct Sample {
    name: String,
    dir: PathBuf,
    events: Vec<Event>,
}

/// Every sample capture with a reference folder, run through the sensor once for all the
/// comparisons.
fn samples() -> Vec<Sample> {
    let reference = data_dir().join("pcap/tshark-reference");
    let captures = data_dir().join("pcap/samples");
    let Ok(dirs) = std::fs::read_dir(&reference) else { return Vec::new() };
    let mut cases: Vec<PathBuf> = dirs.filter_map(|e| e.ok().map(|e| e.path())).collect();
    cases.sort();
    cases
        .into_iter()
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().to_string();
            let pcap = ["pcap", "pcapng"]
                .iter()
                .map(|x| captures.join(format!("{name}.{x}")))
                .find(|p| p.exists())?;
            Some(Sample { name, dir, events: run_sensor(&pcap, 0) })
        })
        .collect()
}

const TSHARK_HTTP_FIELDS: &[&str] = &["method", "host", "uri", "user_agent"];

/// HTTP requests over TCP from the reference tables: method, Host, URI and User-Agent.
fn tshark_http(samples: &[Sample], tally: &mut Tally) {
    for Sample { name, dir: case, events } in samples {
        let rows: Vec<_> = read_tsv(&case.join("http.tsv"))
            .into_iter()
            .filter(|r| {
                r.get("http.request.method").is_some_and(|m| !m.is_empty())
                    && r.get("tcp.srcport").is_some_and(|p| !p.is_empty())
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let field = |row: &HashMap<String, String>, f: &str| {
            let v = row.get(f).cloned().unwrap_or_default();
            if v.is_empty() {
                "-".to_string()
            } else {
                v
            }
        };
        let reference: Vec<Record> = rows
            .iter()
            .map(|row| {
                let (sh, sp, dh, dp) = tsv_tuple(row);
                let mut r = Record::new();
                r.insert("id.orig_h".into(), sh);
                r.insert("id.orig_p".into(), sp);
                r.insert("id.resp_h".into(), dh);
                r.insert("id.resp_p".into(), dp);
                r.insert("method".into(), field(row, "http.request.method"));
                r.insert("host".into(), field(row, "http.host"));
                r.insert("uri".into(), field(row, "http.request.uri"));
                r.insert("user_agent".into(), field(row, "http.user_agent"));
                r
            })
            .collect();
        let ours = as_zeek(events, "http");
        compare(name, "tshark-http", TSHARK_HTTP_FIELDS, reference, ours, tally);
    }
}

const TSHARK_RESPONSE_FIELDS: &[&str] = &["status codes"];

/// HTTP responses over TCP, per connection: the status codes of its final responses (tshark
/// lists `100 Continue` too, which are not transactions) in order. Per connection rather than
/// per response, because tshark leaves out a response it cannot dissect (one a lost segment
/// cut), which would shift every response after it.
fn tshark_http_responses(samples: &[Sample], tally: &mut Tally) {
    for Sample { name, dir: case, events } in samples {
        let mut reference: BTreeMap<(String, String, String, String), Vec<String>> =
            BTreeMap::new();
        for row in read_tsv(&case.join("http.tsv")) {
            let code = row.get("http.response.code").cloned().unwrap_or_default();
            if code.is_empty() || code.starts_with('1') {
                continue;
            }
            // HTTP over TCP only (tshark also dissects SSDP's HTTP over UDP).
            if row.get("tcp.srcport").is_none_or(|p| p.is_empty()) {
                continue;
            }
            let (sh, sp, dh, dp) = tsv_tuple(&row);
            // A response travels server -> client; the connection is keyed client first.
            reference.entry((dh, dp, sh, sp)).or_default().push(code);
        }
        if reference.is_empty() {
            continue;
        }
        let mut ours: HashMap<(String, String, String, String), Vec<String>> = HashMap::new();
        for event in events.iter().filter(|e| is(e, canh_event::Dataset::Http)) {
            let code = event.http.as_ref().and_then(|h| h.response.as_ref()?.status_code);
            let Some(code) = code else { continue };
            let mut r = Record::new();
            tuple(event, &mut r);
            let key = ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"].map(|f| r[f].clone());
            ours.entry(key.into()).or_default().push(code.to_string());
        }
        for (key, codes) in reference {
            tally.baseline += 1;
            let Some(got) = ours.get(&key) else {
                tally.mismatches.push(format!("{name} tshark-http-responses: none for {key:?}"));
                continue;
            };
            tally.matched += 1;
            let entry = tally.fields.entry("status codes".to_string()).or_default();
            entry.1 += 1;
            if *got == codes {
                entry.0 += 1;
            } else {
                tally.mismatches.push(format!(
                    "{name} tshark-http-responses {key:?}: ours {got:?} tshark {codes:?}"
                ));
            }
        }
    }
}

/// A DNS name as tshark prints it: we escape bytes above 0x7e as `\xNN` (Zeek's form); tshark
/// reads the name as UTF-8, printing valid sequences as their characters and each invalid one as
/// the replacement character U+FFFD. Our escapes are undone and the bytes read the same way.
fn as_tshark_prints(name: &str) -> String {
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let hex = tail
            .strip_prefix(b"x")
            .and_then(|t| t.get(..2))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) if first == b'\\' && byte > 0x7e => {
                bytes.push(byte);
                rest = &tail[3..];
            }
            _ => {
                bytes.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

const TSHARK_DNS_FIELDS: &[&str] = &["trans_id", "query", "rcode_name", "a"];

/// DNS responses from the reference tables: id, question name, rcode and the A records.
fn tshark_dns(samples: &[Sample], tally: &mut Tally) {
    for Sample { name, dir: case, events } in samples {
        let rows: Vec<_> = read_tsv(&case.join("dns.tsv"))
            .into_iter()
            .filter(|r| r.get("dns.flags.response").map(String::as_str) == Some("1"))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let reference: Vec<Record> = rows
            .iter()
            .map(|row| {
                // A response travels server -> client; the flow's originator is the client.
                let (sh, sp, dh, dp) = tsv_tuple(row);
                let mut r = Record::new();
                r.insert("id.orig_h".into(), dh);
                r.insert("id.orig_p".into(), dp);
                r.insert("id.resp_h".into(), sh);
                r.insert("id.resp_p".into(), sp);
                let id = row.get("dns.id").map(|i| i.trim_start_matches("0x")).unwrap_or("");
                r.insert(
                    "trans_id".into(),
                    u16::from_str_radix(id, 16).map_or("-".into(), |v| v.to_string()),
                );
                let q = row.get("dns.qry.name").cloned().unwrap_or_default().to_ascii_lowercase();
                r.insert("query".into(), if q.is_empty() { "-".into() } else { q });
                let rcode =
                    row.get("dns.flags.rcode").and_then(|c| c.parse::<u8>().ok()).unwrap_or(0);
                r.insert("rcode_name".into(), canh_sensor::dns::rcode_name(rcode).into_owned());
                let mut a: Vec<String> = row
                    .get("dns.a")
                    .map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
                    .unwrap_or_default();
                a.sort();
                r.insert("a".into(), if a.is_empty() { "-".into() } else { a.join(",") });
                r
            })
            .collect();
        let ours: Vec<Record> = events
            .iter()
            .filter(|e| e.dns.as_ref().is_some_and(|d| d.response_code.is_some()))
            .map(|e| {
                let mut r = Record::new();
                tuple(e, &mut r);
                let d = e.dns.clone().unwrap_or_default();
                r.insert("trans_id".into(), opt(d.id));
                let name = d.question.and_then(|q| q.name).map(|n| as_tshark_prints(&n));
                r.insert("query".into(), opt(name));
                r.insert("rcode_name".into(), opt(d.response_code));
                let mut a: Vec<String> = d
                    .answers
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| x.r#type.as_deref() == Some("A"))
                    .filter_map(|x| x.data)
                    .collect();
                a.sort();
                r.insert("a".into(), if a.is_empty() { "-".into() } else { a.join(",") });
                r
            })
            .collect();
        compare(name, "tshark-dns", TSHARK_DNS_FIELDS, reference, ours, tally);
    }
}

fn tshark_tls(samples: &[Sample], tally: &mut Tally) {
    for Sample { name, dir: case, events } in samples {
        let hellos = read_tsv(&case.join("tls_client_hello.tsv"));
        if hellos.is_empty() {
            continue;
        }
        // One record per ClientHello; the ServerHello of the reverse tuple adds JA3S.
        let mut zeek_like: Vec<Record> = Vec::new();
        for row in &hellos {
            let (sh, sp, dh, dp) = tsv_tuple(row);
            let mut r = Record::new();
            r.insert("id.orig_h".into(), sh);
            r.insert("id.orig_p".into(), sp);
            r.insert("id.resp_h".into(), dh);
            r.insert("id.resp_p".into(), dp);
            let sni = row.get("tls.handshake.extensions_server_name").cloned().unwrap_or_default();
            r.insert("server_name".into(), if sni.is_empty() { "-".into() } else { sni });
            r.insert("ja3".into(), row.get("tls.handshake.ja3").cloned().unwrap_or_default());
            zeek_like.push(r);
        }
        for row in read_tsv(&case.join("tls_server_hello.tsv")) {
            let (sh, sp, dh, dp) = tsv_tuple(&row);
            let ja3s = row.get("tls.handshake.ja3s").cloned().unwrap_or_default();
            // The version chosen: the supported_versions extension's (TLS 1.3), else the
            // ServerHello's own; the cipher by its IANA number, named with our table.
            let hex = |f: &str| {
                let v = row.get(f).map_or("", String::as_str);
                u16::from_str_radix(v.split(',').next().unwrap_or("").trim_start_matches("0x"), 16)
                    .ok()
            };
            let version = hex("tls.handshake.extensions.supported_version")
                .or_else(|| hex("tls.handshake.version"))
                .and_then(canh_sensor::tls::version_text);
            let cipher = hex("tls.handshake.ciphersuite").map(canh_sensor::tls::cipher_name);
            if let Some(r) = zeek_like.iter_mut().find(|r| {
                r["id.orig_h"] == dh
                    && r["id.orig_p"] == dp
                    && r["id.resp_h"] == sh
                    && r["id.resp_p"] == sp
                    && !r.contains_key("ja3s")
            }) {
                r.insert("ja3s".into(), ja3s);
                r.insert("version".into(), opt(version));
                r.insert("cipher".into(), opt(cipher));
            }
        }
        let ours: Vec<Record> = events
            .iter()
            .filter(|e| e.event.dataset == canh_event::Dataset::Tls)
            .map(|e| {
                let mut r = Record::new();
                tuple(e, &mut r);
                let tls = e.tls.clone().unwrap_or_default();
                let client = tls.client.clone().unwrap_or_default();
                r.insert("server_name".into(), opt(client.server_name));
                r.insert("ja3".into(), opt(client.ja3));
                r.insert("ja3s".into(), opt(tls.server.and_then(|s| s.ja3s)));
                r.insert("version".into(), opt(tls.version));
                r.insert("cipher".into(), opt(tls.cipher));
                r
            })
            .collect();
        compare(name, "tshark-tls", TSHARK_TLS_FIELDS, zeek_like, ours, tally);
    }
}

const TSHARK_CONVERSATION_FIELDS: &[&str] = &["frames a->b", "frames b->a"];

type Endpoint = (std::net::IpAddr, u16);

/// One row of `tshark -z conv,tcp` / `conv,udp`: `A:port <-> B:port`, then frames and bytes from
/// B to A, from A to B, and in all. Only the frame counts are exact (bytes are rounded to kB/MB and
/// count whole frames, link header and padding included), so only they are read.
fn parse_conversation(line: &str) -> Option<(Endpoint, Endpoint, u64, u64)> {
    let endpoint = |s: &str| -> Option<Endpoint> {
        let (host, port) = s.rsplit_once(':')?;
        Some((host.parse().ok()?, port.parse().ok()?))
    };
    let mut words = line.split_whitespace();
    let a = endpoint(words.next()?)?;
    if words.next()? != "<->" {
        return None;
    }
    let b = endpoint(words.next()?)?;
    let b_to_a: u64 = words.next()?.parse().ok()?;
    let _bytes = (words.next()?, words.next()?);
    let a_to_b: u64 = words.next()?.parse().ok()?;
    Some((a, b, a_to_b, b_to_a))
}

/// Wireshark's conversations are per address and port pair over the whole capture; ours are
/// flows, which timeouts and connection reuse split. Our flows' packets are summed per direction
/// of each pair and compared with tshark's frames each way: every frame of a TCP or UDP packet
/// (reassembled fragments count once) must be in exactly one flow, in the right direction.
fn tshark_conversations(samples: &[Sample], tally: &mut Tally) {
    for Sample { name, dir: case, events } in samples {
        for transport in ["tcp", "udp"] {
            let Ok(text) = std::fs::read_to_string(case.join(format!("conv_{transport}.txt")))
            else {
                continue;
            };
            let mut ours: HashMap<(Endpoint, Endpoint), u64> = HashMap::new();
            for event in events.iter().filter(|e| is(e, canh_event::Dataset::Flow)) {
                if event.network.as_ref().and_then(|n| n.transport.as_deref()) != Some(transport) {
                    continue;
                }
                let (Some(src), Some(dst)) = (&event.source, &event.destination) else { continue };
                let (Some(si), Some(sp), Some(di), Some(dp)) = (src.ip, src.port, dst.ip, dst.port)
                else {
                    continue;
                };
                *ours.entry(((si, sp), (di, dp))).or_default() += src.packets.unwrap_or(0);
                *ours.entry(((di, dp), (si, sp))).or_default() += dst.packets.unwrap_or(0);
            }
            let mut seen = std::collections::HashSet::new();
            for (a, b, a_to_b, b_to_a) in text.lines().filter_map(parse_conversation) {
                tally.baseline += 1;
                seen.insert((a, b));
                seen.insert((b, a));
                let got = |from: Endpoint, to: Endpoint| ours.get(&(from, to)).copied();
                if got(a, b).is_none() {
                    tally.mismatches.push(format!("{name} {transport}: no flow for {a:?} {b:?}"));
                    continue;
                }
                tally.matched += 1;
                for (field, want, have) in [
                    ("frames a->b", a_to_b, got(a, b).unwrap_or(0)),
                    ("frames b->a", b_to_a, got(b, a).unwrap_or(0)),
                ] {
                    let entry = tally.fields.entry(field.to_string()).or_default();
                    entry.1 += 1;
                    if want == have {
                        entry.0 += 1;
                    } else {
                        tally.mismatches.push(format!(
                            "{name} {transport} {a:?} {b:?} {field}: ours {have} tshark {want}"
                        ));
                    }
                }
            }
            tally.ours_extra +=
                ours.iter().filter(|(pair, n)| **n > 0 && !seen.contains(*pair)).count();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Suricata verification cases: the fields their test.yaml asserts, mapped to our events.

struct SuricataCheck {
    case: &'static str,
    what: &'static str,
    pass: bool,
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("literal address")
}

fn is(event: &Event, dataset: canh_event::Dataset) -> bool {
    event.event.dataset == dataset
}

fn from_to(event: &Event, src: &str, dst: &str) -> bool {
    event.source.as_ref().and_then(|s| s.ip) == Some(ip(src))
        && event.destination.as_ref().and_then(|d| d.ip) == Some(ip(dst))
}

fn ports(event: &Event, sp: u16, dp: u16) -> bool {
    event.source.as_ref().and_then(|s| s.port) == Some(sp)
        && event.destination.as_ref().and_then(|d| d.port) == Some(dp)
}

fn community_id(event: &Event) -> Option<&str> {
    event.network.as_ref().and_then(|n| n.community_id.as_deref())
}

fn answer_types(event: &Event) -> Vec<String> {
    let answers = event.dns.as_ref().and_then(|d| d.answers.clone()).unwrap_or_default();
    answers.iter().map(|a| a.r#type.clone().unwrap_or_default()).collect()
}

fn suricata_checks() -> Vec<SuricataCheck> {
    use canh_event::Dataset::{Dns, Flow, Http, Tls};
    let pcap = |name: &str| data_dir().join(format!("pcap/suricata-verify/{name}.pcap"));
    let mut checks = Vec::new();
    let mut check = |case: &'static str, what: &'static str, pass: bool| {
        checks.push(SuricataCheck { case, what, pass });
    };

    // Community ID with seed 7 (the seed the brief fixes for these cases).
    let ev = run_sensor(&pcap("sv-community-id-ipv4"), 7);
    let cid = "1:IwiTNfuO7aCaamMijl+7/X9uLx0=";
    let tls: Vec<&Event> = ev
        .iter()
        .filter(|e| {
            is(e, Tls) && from_to(e, "172.26.0.39", "172.217.14.206") && ports(e, 35958, 443)
        })
        .collect();
    check("sv-community-id-ipv4", "one tls event for the flow", tls.len() == 1);
    check(
        "sv-community-id-ipv4",
        "tls community_id",
        tls.iter().any(|e| community_id(e) == Some(cid)),
    );
    let sni = |e: &Event| {
        e.tls.as_ref().and_then(|t| t.client.as_ref()).and_then(|c| c.server_name.clone())
    };
    check(
        "sv-community-id-ipv4",
        "tls sni",
        tls.iter().any(|e| sni(e).as_deref() == Some("ipv4.google.com")),
    );
    let version = |e: &Event| e.tls.as_ref().and_then(|t| t.version.clone());
    check(
        "sv-community-id-ipv4",
        "tls version 1.3",
        tls.iter().any(|e| version(e).as_deref() == Some("1.3")),
    );
    let flows: Vec<&Event> = ev
        .iter()
        .filter(|e| {
            is(e, Flow) && from_to(e, "172.26.0.39", "172.217.14.206") && ports(e, 35958, 443)
        })
        .collect();
    check(
        "sv-community-id-ipv4",
        "one flow, its community_id",
        flows.len() == 1 && community_id(flows[0]) == Some(cid),
    );

    // IPv6 fragments behind a VLAN tag, and IPv4 fragments of a TCP SYN: the reassembled packet
    // Suricata alerts on must be the one our flow counts.
    for (case, link) in [("sv-defrag-eth-vlan-ipv6-tcp", 1), ("sv-defrag-ipv4-tcp-syn", 228)] {
        let yaml = std::fs::read_to_string(
            data_dir().join(format!("pcap/suricata-verify-expected/{case}/test.yaml")),
        )
        .expect("test.yaml");
        let b64 = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("packet: "))
            .map(|s| s.trim_matches('"').to_string())
            .expect("packet in test.yaml");
        let bytes = base64_decode(&b64);
        let link = canh_sensor::decode::LinkType::from_pcap(link).expect("link type");
        let Ok(expected) = canh_sensor::decode::decode(link, &bytes) else {
            check(case, "decode the reassembled packet", false);
            continue;
        };
        let ev = run_sensor(&pcap(case), 7);
        let hit = ev.iter().any(|e| {
            is(e, Flow)
                && e.network.as_ref().and_then(|n| n.iana_number) == Some(expected.proto)
                && ((from_to(e, &expected.src.to_string(), &expected.dst.to_string())
                    && ports(e, expected.src_port, expected.dst_port)
                    && e.source.as_ref().and_then(|s| s.bytes) == Some(u64::from(expected.ip_len)))
                    || (from_to(e, &expected.dst.to_string(), &expected.src.to_string())
                        && ports(e, expected.dst_port, expected.src_port)
                        && e.destination.as_ref().and_then(|s| s.bytes)
                            == Some(u64::from(expected.ip_len))))
        });
        check(case, "flow of the reassembled packet with its full IP length", hit);
    }

    // A lone DNS response: originator is the client (Zeek and Suricata both reverse it).
    let ev = run_sensor(&pcap("sv-dns-reversed-udp-1"), 7);
    let dns: Vec<&Event> = ev.iter().filter(|e| is(e, Dns)).collect();
    check(
        "sv-dns-reversed-udp-1",
        "one dns event, client is source",
        dns.len() == 1 && from_to(dns[0], "10.16.1.11", "10.16.1.1"),
    );
    check(
        "sv-dns-reversed-udp-1",
        "answers CNAME, A, A",
        dns.first().is_some_and(|e| {
            answer_types(e).starts_with(&["CNAME".into(), "A".into(), "A".into()])
        }),
    );
    let flows: Vec<&Event> = ev.iter().filter(|e| is(e, Flow)).collect();
    check(
        "sv-dns-reversed-udp-1",
        "flow source is the client",
        flows.len() == 1 && from_to(flows[0], "10.16.1.11", "10.16.1.1"),
    );

    // DNS over TCP: the request and its response.
    let ev = run_sensor(&pcap("sv-dns-tcp-www-google-com"), 7);
    let dns: Vec<&Event> =
        ev.iter().filter(|e| is(e, Dns) && from_to(e, "10.16.1.11", "8.8.4.4")).collect();
    check("sv-dns-tcp-www-google-com", "one dns transaction 10.16.1.11 -> 8.8.4.4", dns.len() == 1);
    check(
        "sv-dns-tcp-www-google-com",
        "request and response seen",
        dns.first().is_some_and(|e| {
            let d = e.dns.clone().unwrap_or_default();
            d.question.is_some() && d.response_code.is_some()
        }),
    );

    // DNS over UDP, A and TXT.
    let ev = run_sensor(&pcap("sv-dns-udp-eve-txt"), 7);
    for (id, sport, name, qtype, rdata, ttl) in [
        (
            39372u16,
            60922u16,
            "textsecure-service-ca.whispersystems.org",
            "A",
            "34.197.178.240",
            5u32,
        ),
        (28243, 52345, "google.com", "TXT", "v=spf1 include:_spf.google.com ~all", 3217),
    ] {
        let hit = ev.iter().find(|e| {
            is(e, Dns)
                && from_to(e, "10.16.1.11", "10.16.1.1")
                && ports(e, sport, 53)
                && e.dns.as_ref().and_then(|d| d.id) == Some(id)
        });
        let d = hit.and_then(|e| e.dns.clone()).unwrap_or_default();
        let q = d.question.clone().unwrap_or_default();
        check("sv-dns-udp-eve-txt", "dns event by id and ports", hit.is_some());
        check(
            "sv-dns-udp-eve-txt",
            "question name and type",
            q.name.as_deref() == Some(name) && q.r#type.as_deref() == Some(qtype),
        );
        let first = d.answers.clone().unwrap_or_default().into_iter().next().unwrap_or_default();
        check(
            "sv-dns-udp-eve-txt",
            "first answer data, type, ttl",
            first.data.as_deref() == Some(rdata)
                && first.r#type.as_deref() == Some(qtype)
                && first.ttl == Some(ttl),
        );
        let flags = d.header_flags.clone().unwrap_or_default();
        check(
            "sv-dns-udp-eve-txt",
            "rcode NOERROR, flags RD RA (0x8180)",
            d.response_code.as_deref() == Some("NOERROR")
                && flags.contains(&"RD".to_string())
                && flags.contains(&"RA".to_string())
                && !flags.contains(&"AA".to_string()),
        );
    }
    for (sport, to_server, to_client) in [(60922u16, 100u64, 116u64), (52345, 81, 129)] {
        // Suricata's flow bytes count whole frames (14-byte Ethernet header included), one packet each way.
        let hit = ev.iter().any(|e| {
            is(e, Flow)
                && from_to(e, "10.16.1.11", "10.16.1.1")
                && ports(e, sport, 53)
                && e.source.as_ref().and_then(|s| s.bytes) == Some(to_server - 14)
                && e.destination.as_ref().and_then(|s| s.bytes) == Some(to_client - 14)
                && e.source.as_ref().and_then(|s| s.packets) == Some(1)
                && e.destination.as_ref().and_then(|s| s.packets) == Some(1)
        });
        check("sv-dns-udp-eve-txt", "flow packets and bytes per direction", hit);
    }

    // VLAN: one flow with a single tag 6, one with outer 1 and inner 10.
    let ev = run_sensor(&pcap("sv-eve-flow-vlan"), 7);
    let vlans = |e: &Event| {
        let n = e.network.clone().unwrap_or_default();
        (n.vlan.map(|v| v.id), n.inner.and_then(|i| i.vlan).map(|v| v.id))
    };
    let flows: Vec<&Event> = ev.iter().filter(|e| is(e, Flow)).collect();
    check(
        "sv-eve-flow-vlan",
        "one flow with vlan [6]",
        flows.iter().filter(|e| vlans(e) == (Some(6), None)).count() == 1,
    );
    check(
        "sv-eve-flow-vlan",
        "one flow with vlan [1, 10]",
        flows.iter().filter(|e| vlans(e) == (Some(1), Some(10))).count() == 1,
    );

    // HTTP: one transaction, Host header, response Content-Length 18070.
    let ev = run_sensor(&pcap("sv-http-all-headers"), 7);
    let http: Vec<&Event> = ev.iter().filter(|e| is(e, Http)).collect();
    check("sv-http-all-headers", "one http event", http.len() == 1);
    check(
        "sv-http-all-headers",
        "url.domain from Host",
        http.first().and_then(|e| e.url.as_ref()).and_then(|u| u.domain.as_deref())
            == Some("www.ethereal.com"),
    );

    // TLS 1.3 draft 28: two handshakes with SNI localhost.
    let ev = run_sensor(&pcap("sv-tls13-draft28"), 7);
    let tls: Vec<&Event> = ev
        .iter()
        .filter(|e| {
            is(e, Tls)
                && sni(e).as_deref() == Some("localhost")
                && version(e).as_deref() == Some("1.3")
        })
        .collect();
    check("sv-tls13-draft28", "two tls events, sni localhost, version 1.3", tls.len() == 2);
    checks
}

fn base64_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let Some(v) = alphabet.iter().position(|a| *a == c) else { continue };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct Floor {
    records: f64,
    fields: f64,
}

#[derive(serde::Deserialize)]
struct Floors {
    conn: Floor,
    dns: Floor,
    http: Floor,
    ssl: Floor,
    ssh: Floor,
    x509: Floor,
    tshark_tls: Floor,
    tshark_http: Floor,
    tshark_http_responses: Floor,
    tshark_dns: Floor,
    tshark_conversations: Floor,
    suricata: SuricataFloor,
}

#[derive(serde::Deserialize)]
struct SuricataFloor {
    passed: usize,
}

/// A reference comparison: title, label, fields compared, the run that fills a tally, its floor.
type Reference<'a> = (&'a str, &'a str, &'a [&'a str], fn(&[Sample], &mut Tally), &'a Floor);

/// Print one comparison's agreement table (records matched, then each field) and its first
/// mismatches, and add a failure for each ratio below its floor.
fn report(
    label: &str,
    fields: &[&str],
    t: &Tally,
    floor: &Floor,
    what: &str,
    failures: &mut Vec<String>,
) {
    let rec = ratio(t.matched, t.baseline);
    println!(
        "{label:<6} {:<28} {:>9} {:>9} {:>7.1}%   (our extra records: {})",
        "records matched",
        t.matched,
        t.baseline,
        rec * 100.0,
        t.ours_extra
    );
    let (mut eq, mut cmp) = (0, 0);
    for f in fields {
        let (e, c) = t.fields.get(*f).copied().unwrap_or((0, 0));
        eq += e;
        cmp += c;
        println!("{label:<6} {f:<28} {e:>9} {c:>9} {:>7.1}%", ratio(e, c) * 100.0);
    }
    let fr = ratio(eq, cmp);
    println!("{label:<6} {:<28} {eq:>9} {cmp:>9} {:>7.1}%", "ALL FIELDS", fr * 100.0);
    for m in t.mismatches.iter().take(20) {
        println!("  {m}");
    }
    if t.mismatches.len() > 20 {
        println!("  ... and {} more", t.mismatches.len() - 20);
    }
    if rec + 1e-9 < floor.records {
        failures.push(format!("{what}: records matched {rec:.4} below floor {}", floor.records));
    }
    if fr + 1e-9 < floor.fields {
        failures.push(format!("{what}: fields equal {fr:.4} below floor {}", floor.fields));
    }
}

#[test]
fn agreement_with_zeek_and_suricata() {
    if !data_dir().join("pcap/zeek").is_dir() {
        eprintln!("shared data not found at {}; skipping", data_dir().display());
        return;
    }
    let floors: Floors =
        toml::from_str(include_str!("zeek_agreement_floor.toml")).expect("floor file");
    let tallies = zeek_agreement();

    println!("\n{:<6} {:<28} {:>9} {:>9} {:>8}", "log", "field", "equal", "compared", "ratio");
    let mut failures = Vec::new();
    for (log, fields) in LOGS {
        let t = tallies.get(log).map_or_else(Tally::default, |t| Tally {
            mismatches: vec![],
            fields: t.fields.clone(),
            ..*t
        });
        let floor = match log {
            "conn" => &floors.conn,
            "dns" => &floors.dns,
            "http" => &floors.http,
            "ssl" => &floors.ssl,
            "ssh" => &floors.ssh,
            _ => &floors.x509,
        };
        report(log, fields, &t, floor, log, &mut failures);
        println!();
    }
    println!("mismatches:");
    for t in tallies.values() {
        for m in &t.mismatches {
            println!("  {m}");
        }
    }

    let samples = samples();
    let references: [Reference; 5] = [
        ("TLS per ClientHello", "tls", TSHARK_TLS_FIELDS, tshark_tls, &floors.tshark_tls),
        ("HTTP requests over TCP", "http", TSHARK_HTTP_FIELDS, tshark_http, &floors.tshark_http),
        (
            "HTTP responses, per connection",
            "resp",
            TSHARK_RESPONSE_FIELDS,
            tshark_http_responses,
            &floors.tshark_http_responses,
        ),
        ("DNS responses", "dns", TSHARK_DNS_FIELDS, tshark_dns, &floors.tshark_dns),
        (
            "TCP and UDP conversations, frames each way",
            "conv",
            TSHARK_CONVERSATION_FIELDS,
            tshark_conversations,
            &floors.tshark_conversations,
        ),
    ];
    for (title, label, fields, run, floor) in references {
        let mut tally = Tally::default();
        run(&samples, &mut tally);
        println!("\ntshark reference (sample captures), {title}:");
        report(label, fields, &tally, floor, &format!("tshark {label}"), &mut failures);
    }

    let checks = suricata_checks();
    let passed = checks.iter().filter(|c| c.pass).count();
    println!("\nsuricata-verify checks: {passed} of {} pass", checks.len());
    for c in &checks {
        println!("  [{}] {}: {}", if c.pass { "ok" } else { "FAIL" }, c.case, c.what);
    }
    if passed < floors.suricata.passed {
        failures.push(format!(
            "suricata checks passed {passed} below floor {}",
            floors.suricata.passed
        ));
    }
    assert!(failures.is_empty(), "agreement below floor:\n{}", failures.join("\n"));
}

#[test]
fn parses_zeek_ascii_logs() {
    let text = "### BTest baseline data generated by btest-diff.\n#separator \\x09\n#fields\tts\tuid\tanswers\tTTLs\n#types\ttime\tstring\tvector[string]\tvector[interval]\nXXXXXXXXXX.XXXXXX\tC1\t(empty)\t-\n";
    let records = parse_zeek_log(text);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["uid"], "C1");
    assert_eq!(records[0]["answers"], "(empty)");
    assert_eq!(records[0]["TTLs"], "-");
    assert_eq!(normalise_zeek_answer("TXT 3 abc TXT 2 de"), "abcde");
    assert_eq!(normalise_zeek_answer("1.2.3.4"), "1.2.3.4");
    assert_eq!(case_of(Path::new("x/icmp-events__icmp-ping.pcap")), "icmp-events");
    assert_eq!(base64_decode("RQAA"), vec![0x45, 0, 0]);
    assert_eq!(as_tshark_prints("j\\xe4ger\\x01\\x"), "j\u{fffd}ger\\x01\\x");
    assert_eq!(as_tshark_prints("a\\xe4\\xbd\\xbdb"), "a\u{4f7d}b");
    let row =
        "fe80::1:546    <-> ff02::1:2:547     0 0 bytes   3 312 bytes   3 312 bytes   1.5   2.0";
    let (a, b, a_to_b, b_to_a) = parse_conversation(row).expect("IPv6 row");
    assert_eq!((a.1, b.1, a_to_b, b_to_a), (546, 547, 3, 0));
    assert_eq!(b.0, ip("ff02::1:2"));
    let row = "10.0.0.1:80  <-> 10.0.0.2:5000   12 14 kB   7 1,024 bytes   19 15 kB  0.1  9.9";
    assert_eq!(parse_conversation(row).map(|r| (r.2, r.3)), Some((7, 12)));
    assert_eq!(parse_conversation("TCP Conversations"), None);
}
