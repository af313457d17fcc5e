//! Golden files for the JSON of each event kind: what Kafka consumers, the collector's tables and
//! other tools read. Regenerate with `CANH_UPDATE_GOLDEN=1 cargo test -p canh-event` and review the
//! diff: a changed golden file is a changed wire format.

use canh_event::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

const T0: i64 = 1_258_531_221_123_456_000;

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("test ip"))
}

fn base(dataset: Dataset, seq: u64) -> Event {
    let mut e = Event::new(dataset, event_id("hn-01", seq), Timestamp(T0), "hn-01", "hanoi");
    e.observer.hostname = Some("sensor-hn-01".into());
    e
}

fn flow() -> Event {
    let mut e = base(Dataset::Flow, 1);
    e.event.start = Some(Timestamp(T0));
    e.event.end = Some(Timestamp(T0 + 1_500_000_000));
    e.event.duration = Some(1_500_000_000);
    e.source = Some(Endpoint {
        ip: ip("10.1.2.3"),
        port: Some(51544),
        packets: Some(6),
        bytes: Some(520),
    });
    e.destination = Some(Endpoint {
        ip: ip("203.0.113.80"),
        port: Some(80),
        packets: Some(4),
        bytes: Some(1900),
    });
    e.network = Some(Network {
        transport: Some("tcp".into()),
        iana_number: Some(6),
        community_id: Some(community_id::community_id_v1(
            0,
            "10.1.2.3".parse().expect("ip"),
            "203.0.113.80".parse().expect("ip"),
            6,
            51544,
            80,
        )),
        vlan: Some(Vlan { id: 100 }),
        inner: Some(InnerNetwork { vlan: Some(Vlan { id: 20 }) }),
        ..Network::default()
    });
    e.flow = Some(Flow {
        state: Some("SF".into()),
        history: Some("ShADadFf".into()),
        orig_payload_bytes: Some(200),
        resp_payload_bytes: Some(1700),
        missed_bytes: Some(0),
        reason: Some("end".into()),
    });
    e
}

fn dns() -> Event {
    let mut e = base(Dataset::Dns, 2);
    e.source = Some(Endpoint { ip: ip("10.1.2.3"), port: Some(40000), ..Endpoint::default() });
    e.destination = Some(Endpoint { ip: ip("10.0.0.53"), port: Some(53), ..Endpoint::default() });
    e.network = Some(Network {
        transport: Some("udp".into()),
        protocol: Some("dns".into()),
        ..Network::default()
    });
    e.dns = Some(Dns {
        id: Some(4242),
        r#type: Some("answer".into()),
        op_code: Some("QUERY".into()),
        question: Some(DnsQuestion {
            name: Some("portal.gov.vn".into()),
            r#type: Some("A".into()),
            class: Some("IN".into()),
        }),
        response_code: Some("NOERROR".into()),
        header_flags: Some(vec!["RD".into(), "RA".into()]),
        answers: Some(vec![DnsAnswer {
            name: Some("portal.gov.vn".into()),
            r#type: Some("A".into()),
            class: Some("IN".into()),
            ttl: Some(300),
            data: Some("203.0.113.10".into()),
        }]),
        rtt: Some(12_000_000),
    });
    e
}

fn http() -> Event {
    let mut e = base(Dataset::Http, 3);
    e.network = Some(Network {
        transport: Some("tcp".into()),
        protocol: Some("http".into()),
        ..Network::default()
    });
    e.http = Some(Http {
        version: Some("1.1".into()),
        request: Some(HttpRequest {
            method: Some("GET".into()),
            referrer: Some("http://portal.gov.vn/".into()),
            body: Some(Body { bytes: 0, content: None }),
        }),
        response: Some(HttpResponse {
            status_code: Some(200),
            body: Some(Body { bytes: 5120, content: None }),
        }),
    });
    e.url =
        Some(Url { domain: Some("portal.gov.vn".into()), original: Some("/tin-tuc?id=1".into()) });
    e.user_agent = Some(UserAgent { original: "Mozilla/5.0".into() });
    e
}

fn tls() -> Event {
    let mut e = base(Dataset::Tls, 4);
    e.tls = Some(Tls {
        version: Some("1.2".into()),
        version_protocol: Some("tls".into()),
        cipher: Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()),
        established: Some(true),
        next_protocol: Some("h2".into()),
        client: Some(TlsClient {
            server_name: Some("portal.gov.vn".into()),
            ja3: Some("771,4865-4866,0-23,29-23,0".into()),
            ja4: Some("t13d1516h2_8daaf6152771_02713d6af862".into()),
        }),
        server: Some(TlsServer {
            ja3s: Some("771,49199,65281-0".into()),
            subject: Some("CN=portal.gov.vn".into()),
            issuer: Some("CN=Example CA".into()),
            not_before: Some(Timestamp(T0)),
            not_after: Some(Timestamp(T0 + 86_400_000_000_000)),
        }),
    });
    e
}

fn ssh() -> Event {
    let mut e = base(Dataset::Ssh, 5);
    e.ssh = Some(Ssh {
        client: Some(SshPeer { banner: "SSH-2.0-OpenSSH_9.2p1".into() }),
        server: Some(SshPeer { banner: "SSH-2.0-OpenSSH_8.4".into() }),
    });
    e
}

fn icmp() -> Event {
    let mut e = base(Dataset::Icmp, 6);
    e.icmp = Some(Icmp { r#type: 3, code: 3 });
    e
}

fn log() -> Event {
    let mut e = base(Dataset::Log, 7);
    e.event.category = Some(vec!["authentication".into()]);
    e.event.r#type = Some(vec!["start".into()]);
    e.event.outcome = Some("failure".into());
    e.event.original = Some("<38>Nov 23 10:00:00 web01 sshd[811]: Failed password for root from 198.51.100.7 port 4122 ssh2".into());
    e.message = Some("Failed password for root from 198.51.100.7 port 4122 ssh2".into());
    let mut sd = BTreeMap::new();
    sd.insert("origin".to_string(), BTreeMap::from([("ip".to_string(), "10.1.2.3".to_string())]));
    e.log = Some(Log {
        level: Some("info".into()),
        file: None,
        syslog: Some(Syslog {
            priority: Some(38),
            facility: Some(CodeName { code: 4, name: "auth".into() }),
            severity: Some(CodeName { code: 6, name: "informational".into() }),
            hostname: Some("web01".into()),
            appname: Some("sshd".into()),
            procid: Some("811".into()),
            msgid: None,
            structured_data: Some(sd),
        }),
        parse_error: None,
        escaped: None,
        truncated: None,
    });
    e.source = Some(Endpoint { ip: ip("198.51.100.7"), port: Some(4122), ..Endpoint::default() });
    e.user = Some(User { name: "root".into(), target: None, effective: None });
    e.process = Some(Process { name: Some("sshd".into()), pid: Some(811), command_line: None });
    e.host = Some(Host { hostname: "web01".into() });
    e
}

fn alert() -> Event {
    let mut e = base(Dataset::Alert, 8);
    e.rule = Some(Rule {
        id: "3f9a0c62-2f0c-4b59-9b0b-6d0a3f1c2d11".into(),
        name: "SSH brute force".into(),
        level: Some("high".into()),
        tags: Some(vec!["attack.credential-access".into(), "attack.t1110".into()]),
    });
    e.threat = Some(Threat { technique: ThreatTechnique { id: vec!["T1110".into()] } });
    e.alert = Some(Alert {
        event_ids: vec![event_id("hn-01", 7)],
        group: BTreeMap::from([("source.ip".to_string(), "198.51.100.7".to_string())]),
        first_seen: Timestamp(T0),
        last_seen: Timestamp(T0 + 60_000_000_000),
        count: 12,
    });
    e
}

fn sensor() -> Event {
    let mut e = base(Dataset::Sensor, 9);
    e.sensor = Some(SensorStats {
        interface: Some("eth1".into()),
        packets_received: Some(1_000_000),
        packets_dropped: Some(12),
        packets_if_dropped: Some(0),
        events_sent: Some(42_000),
        spool_bytes: Some(0),
    });
    e
}

#[test]
fn golden_json_of_each_event_kind() {
    let update = std::env::var_os("CANH_UPDATE_GOLDEN").is_some();
    let cases = [flow(), dns(), http(), tls(), ssh(), icmp(), log(), alert(), sensor()];
    assert_eq!(cases.len(), Dataset::ALL.len(), "one golden case per dataset");
    for event in cases {
        let name = event.event.dataset.as_str();
        let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let json = serde_json::to_string_pretty(&event).expect("serialise") + "\n";
        if update {
            std::fs::write(&path, &json).expect("write golden");
        }
        let expected =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        assert_eq!(json, expected, "{name}: JSON differs from {path}");
        // The golden text decodes back to the same event.
        let decoded = Event::from_json(expected.as_bytes()).expect("golden decodes");
        assert_eq!(decoded, event, "{name}: decode of golden file");
    }
}

#[test]
fn wrong_schema_version_is_refused() {
    let mut event = flow();
    event.canh.schema_version = 99;
    let json = serde_json::to_vec(&event).expect("serialise");
    assert!(matches!(Event::from_json(&json), Err(DecodeError::SchemaVersion(99))));
    assert!(matches!(Event::from_json_boxed(&json), Err(DecodeError::SchemaVersion(99))));
    assert!(matches!(Event::from_json(b"{not json"), Err(DecodeError::Json(_))));
}

/// `from_json` checks UTF-8 once and parses text; what it refuses and the error it gives (the
/// dead-letter reason and text) must stay those of parsing the bytes directly.
#[test]
fn decode_errors_are_those_of_parsing_the_bytes() {
    let valid = flow().to_json();
    let cases: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        b"\xff\xfe garbage".to_vec(),
        b"{\"@timestamp\": \"caf\xc3\"}".to_vec(),
        valid.replacen("\"s\"", "\"\u{e9}\"", 1).into_bytes(),
        [&valid.as_bytes()[..20], b"\xe9", &valid.as_bytes()[21..]].concat(),
        [valid.as_bytes(), b"\xff"].concat(),
        valid.replacen("\"port\":", "\"port\":\"22\",\"x\":", 1).into_bytes(),
        valid.replacen("1,", "1 ,", 1).into_bytes(),
        valid.as_bytes()[..valid.len() / 2].to_vec(),
        b"{\"s\":\"\\ud800\"}".to_vec(),
    ];
    for bytes in cases {
        let direct = serde_json::from_slice::<Event>(&bytes).map_err(|e| e.to_string());
        let ours = Event::from_json(&bytes);
        let boxed = Event::from_json_boxed(&bytes);
        match (direct, ours, boxed) {
            (Err(expected), Err(DecodeError::Json(err)), Err(DecodeError::Json(boxed))) => {
                assert_eq!(err.to_string(), expected, "{}", String::from_utf8_lossy(&bytes));
                assert_eq!(boxed.to_string(), expected, "{}", String::from_utf8_lossy(&bytes));
            }
            (Ok(expected), Ok(event), Ok(boxed)) => {
                assert_eq!(event, expected);
                assert_eq!(*boxed, expected);
            }
            (direct, ours, boxed) => panic!("{direct:?} vs {ours:?} vs {boxed:?}"),
        }
    }
    assert_eq!(Event::from_json(valid.as_bytes()).expect("decodes"), flow());
    assert_eq!(*Event::from_json_boxed(valid.as_bytes()).expect("decodes"), flow());
}

mod round_trip {
    use super::*;
    use proptest::prelude::*;

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]
    }

    fn any_endpoint() -> impl Strategy<Value = Endpoint> {
        (
            proptest::option::of(any_ip()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(ip, port, packets, bytes)| Endpoint { ip, port, packets, bytes })
    }

    proptest! {
        #[test]
        fn flow_events_survive_encode_decode(
            seq in any::<u64>(),
            ts in any::<i64>().prop_map(|n| n / 4), // stay inside RFC 3339's year range
            src in any_endpoint(),
            dst in any_endpoint(),
            history in "[ShHADdFfRrTtCcIiQqWwGg^]{0,16}",
            message in proptest::option::of(".*"),
            duration in proptest::option::of(any::<i64>()),
        ) {
            let mut e = Event::new(Dataset::Flow, event_id("s", seq), Timestamp(ts), "s", "t");
            e.source = Some(src);
            e.destination = Some(dst);
            e.event.duration = duration;
            e.flow = Some(Flow { history: Some(history), ..Flow::default() });
            e.message = message;
            let json = e.to_json();
            prop_assert_eq!(Event::from_json(json.as_bytes()).expect("decodes"), e);
        }
    }
}
