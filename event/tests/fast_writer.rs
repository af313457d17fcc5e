//! `Event::write_json` must write exactly what serde_json writes, and decode back to the same
//! event: checked on every golden file and on arbitrary events that fill every part of the schema.

use canh_event::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

fn fast(event: &Event) -> String {
    let mut out = Vec::new();
    event.write_json(&mut out);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn golden_events_write_as_serde_json() {
    let dir = format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("golden dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read(&path).expect("read golden");
        let event = Event::from_json(&text).expect("golden decodes");
        let theirs = serde_json::to_string(&event).expect("serialise");
        assert_eq!(fast(&event), theirs, "{}", path.display());
        assert_eq!(event.to_json(), theirs);
        seen += 1;
    }
    assert_eq!(seen, Dataset::ALL.len());
}

fn s() -> impl Strategy<Value = String> {
    // Control characters, quotes, backslashes and non-ASCII all take the escaping paths.
    prop_oneof!["[a-z0-9.]{0,12}", ".{0,12}", "[\\x00-\\x1f\"\\\\\u{7f}é😀]{0,8}"]
}

fn os() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(s())
}

fn ts() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from),]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        proptest::option::of(ip()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(ip, port, packets, bytes)| Endpoint { ip, port, packets, bytes })
}

fn list() -> impl Strategy<Value = Option<Vec<String>>> {
    proptest::option::of(proptest::collection::vec(s(), 0..3))
}

fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(s(), s(), 0..3)
}

fn network() -> impl Strategy<Value = Network> {
    (
        os(),
        os(),
        proptest::option::of(any::<u8>()),
        os(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(proptest::option::of(any::<u16>())),
    )
        .prop_map(|(transport, protocol, iana_number, community_id, vlan, inner)| Network {
            transport,
            protocol,
            iana_number,
            community_id,
            vlan: vlan.map(|id| Vlan { id }),
            inner: inner.map(|v| InnerNetwork { vlan: v.map(|id| Vlan { id }) }),
        })
}

fn dns() -> impl Strategy<Value = Dns> {
    let answer = (os(), os(), os(), proptest::option::of(any::<u32>()), os())
        .prop_map(|(name, r#type, class, ttl, data)| DnsAnswer { name, r#type, class, ttl, data });
    (
        proptest::option::of(any::<u16>()),
        os(),
        os(),
        proptest::option::of((os(), os(), os())),
        os(),
        list(),
        proptest::option::of(proptest::collection::vec(answer, 0..3)),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(id, r#type, op_code, q, response_code, header_flags, answers, rtt)| Dns {
            id,
            r#type,
            op_code,
            question: q.map(|(name, r#type, class)| DnsQuestion { name, r#type, class }),
            response_code,
            header_flags,
            answers,
            rtt,
        })
}

fn http() -> impl Strategy<Value = (Http, Url, UserAgent)> {
    (
        os(),
        proptest::option::of((os(), os(), proptest::option::of((any::<u64>(), os())))),
        proptest::option::of((
            proptest::option::of(any::<u16>()),
            proptest::option::of((any::<u64>(), os())),
        )),
        os(),
        os(),
        s(),
    )
        .prop_map(|(version, req, resp, domain, original, agent)| {
            (
                Http {
                    version,
                    request: req.map(|(method, referrer, body)| HttpRequest {
                        method,
                        referrer,
                        body: body.map(|(bytes, content)| Body { bytes, content }),
                    }),
                    response: resp.map(|(status_code, body)| HttpResponse {
                        status_code,
                        body: body.map(|(bytes, content)| Body { bytes, content }),
                    }),
                },
                Url { domain, original },
                UserAgent { original: agent },
            )
        })
}

fn tls() -> impl Strategy<Value = Tls> {
    (
        (os(), os(), os(), proptest::option::of(any::<bool>()), os()),
        proptest::option::of((os(), os(), os())),
        proptest::option::of((
            os(),
            os(),
            os(),
            proptest::option::of(ts()),
            proptest::option::of(ts()),
        )),
    )
        .prop_map(
            |((version, version_protocol, cipher, established, next_protocol), c, sv)| Tls {
                version,
                version_protocol,
                cipher,
                established,
                next_protocol,
                client: c.map(|(server_name, ja3, ja4)| TlsClient { server_name, ja3, ja4 }),
                server: sv.map(|(ja3s, subject, issuer, not_before, not_after)| TlsServer {
                    ja3s,
                    subject,
                    issuer,
                    not_before,
                    not_after,
                }),
            },
        )
}

fn log() -> impl Strategy<Value = Log> {
    let code = || (any::<u8>(), s()).prop_map(|(code, name)| CodeName { code, name });
    let syslog = (
        proptest::option::of(any::<u8>()),
        proptest::option::of(code()),
        proptest::option::of(code()),
        (os(), os(), os(), os()),
        proptest::option::of(proptest::collection::btree_map(s(), map(), 0..3)),
    )
        .prop_map(|(priority, facility, severity, (hostname, appname, procid, msgid), sd)| {
            Syslog {
                priority,
                facility,
                severity,
                hostname,
                appname,
                procid,
                msgid,
                structured_data: sd,
            }
        });
    (
        os(),
        proptest::option::of(s()),
        proptest::option::of(syslog),
        os(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(level, file, syslog, parse_error, escaped, truncated)| Log {
            level,
            file: file.map(|path| LogFile { path }),
            syslog,
            parse_error,
            escaped,
            truncated,
        })
}

fn event() -> impl Strategy<Value = Event> {
    let info = (
        (proptest::sample::select(Dataset::ALL.to_vec()), s(), ts()),
        (list(), list(), os(), os()),
        (
            proptest::option::of(ts()),
            proptest::option::of(ts()),
            proptest::option::of(any::<i64>()),
        ),
        (proptest::option::of(any::<u8>()), os()),
    );
    let observer = (s(), s(), os(), proptest::option::of(s()), proptest::option::of(s()));
    let parts = (
        proptest::option::of(endpoint()),
        proptest::option::of(endpoint()),
        proptest::option::of(network()),
        proptest::option::of((os(), os(), proptest::option::of(any::<u64>()), os())),
        proptest::option::of(dns()),
        proptest::option::of(http()),
        proptest::option::of(tls()),
        proptest::option::of((os(), os())),
        proptest::option::of((any::<u8>(), any::<u8>())),
        proptest::option::of(log()),
    );
    let rest = (
        (os(), os(), proptest::option::of((os(), proptest::option::of(any::<u32>()), os()))),
        proptest::option::of((s(), os(), os())),
        proptest::option::of((s(), s(), os(), list())),
        proptest::option::of(proptest::collection::vec(s(), 0..3)),
        proptest::option::of((
            proptest::collection::vec(s(), 0..3),
            map(),
            ts(),
            ts(),
            any::<u64>(),
        )),
        proptest::option::of((
            os(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        )),
        os(),
    );
    (info, observer, parts, rest).prop_map(|(info, observer, parts, rest)| {
        let (
            (dataset, id, at),
            (category, r#type, outcome, action),
            (start, end, duration),
            (severity, original),
        ) = info;
        let mut e = Event::new(dataset, id, at, &observer.0, &observer.1);
        e.event.category = category;
        e.event.r#type = r#type;
        e.event.outcome = outcome;
        e.event.action = action;
        e.event.start = start;
        e.event.end = end;
        e.event.duration = duration;
        e.event.severity = severity;
        e.event.original = original;
        e.observer.hostname = observer.2;
        e.observer.ingress =
            observer.3.map(|name| ObserverInterface { interface: InterfaceName { name } });
        e.observer.egress =
            observer.4.map(|name| ObserverInterface { interface: InterfaceName { name } });
        let (source, destination, network, flow, dns, http, tls, ssh, icmp, log) = parts;
        e.source = source;
        e.destination = destination;
        e.network = network;
        e.flow = flow.map(|(state, history, bytes, reason)| Flow {
            state,
            history,
            orig_payload_bytes: bytes,
            resp_payload_bytes: bytes.map(|b| b / 2),
            missed_bytes: None,
            reason,
        });
        e.dns = dns;
        if let Some((h, u, a)) = http {
            e.http = Some(h);
            e.url = Some(u);
            e.user_agent = Some(a);
        }
        e.tls = tls;
        e.ssh = ssh.map(|(c, s)| Ssh {
            client: c.map(|banner| SshPeer { banner }),
            server: s.map(|banner| SshPeer { banner }),
        });
        e.icmp = icmp.map(|(t, c)| Icmp { r#type: t, code: c });
        e.log = log;
        let ((message, host, process), user, rule, threat, alert, sensor, group) = rest;
        e.message = message;
        e.host = host.map(|hostname| Host { hostname });
        e.process = process.map(|(name, pid, command_line)| Process { name, pid, command_line });
        e.user = user.map(|(name, t, f)| User {
            name,
            target: t.map(|name| UserTarget { name }),
            effective: f.map(|name| UserTarget { name }),
        });
        e.rule = rule.map(|(id, name, level, tags)| Rule { id, name, level, tags });
        e.threat = threat.map(|id| Threat { technique: ThreatTechnique { id } });
        e.alert = alert.map(|(event_ids, group, first_seen, last_seen, count)| Alert {
            event_ids,
            group,
            first_seen,
            last_seen,
            count,
        });
        e.sensor = sensor.map(|(interface, a, b)| SensorStats {
            interface,
            packets_received: a,
            packets_dropped: b,
            packets_if_dropped: a,
            events_sent: b,
            spool_bytes: None,
        });
        e.group = group.map(|name| Group { name });
        e
    })
}

#[test]
fn arbitrary_events_write_as_serde_json_and_decode_back() {
    // The strategy's nested types need more stack than a test thread has in debug builds.
    let run = || {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
        let result = runner.run(&event(), |e| {
            let ours = fast(&e);
            let theirs = serde_json::to_string(&e).expect("serialise");
            prop_assert_eq!(&ours, &theirs);
            let decoded: Event = serde_json::from_str(&ours).expect("decodes");
            prop_assert_eq!(decoded, e);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    };
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(run)
        .expect("spawn")
        .join()
        .expect("property holds");
}
