//! One parsed log line as borrowed fields: the text fields are slices of the line (copies only
//! where the line was not UTF-8 or a parser had to build the text), the names and classifications
//! are `&'static str`. Parsing a line allocates nothing on the usual path; the JSON is written
//! straight from this record ([`LogEvent::write_json`]), byte for byte what
//! `to_event(..).write_json(..)` writes (the tests and `tests/logs_json.rs` check both on every
//! real sample).

use crate::flow::Identity;
use crate::syslog::{self, StructuredData};
use canh_event::json::Obj;
use canh_event::{
    Body, CodeName, Dataset, Endpoint, Event, Group, Host, Http, HttpRequest, HttpResponse,
    InterfaceName, Log, Network, ObserverInterface, Process, Syslog, Timestamp, Url, User,
    UserAgent, UserTarget,
};
use std::borrow::Cow;

/// Text of a field: borrowed from the line, or built.
pub type Text<'a> = Cow<'a, str>;

/// The fields a log line can set on its event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogEvent<'a> {
    /// The event time (the line's own, else when it was received).
    pub timestamp: Timestamp,
    /// `event.category`, `event.type`, `event.outcome` (set together by `classify`).
    pub category: Option<&'static [&'static str]>,
    pub r#type: Option<&'static [&'static str]>,
    pub outcome: Option<&'static str>,
    pub action: Option<Text<'a>>,
    /// Nanoseconds.
    pub duration: Option<i64>,
    /// The line (invalid UTF-8 escaped).
    pub original: Text<'a>,
    /// `observer.ingress.interface.name` / `observer.egress.interface.name`.
    pub ingress: Option<Text<'a>>,
    pub egress: Option<Text<'a>>,
    pub source: Option<Endpoint>,
    pub destination: Option<Endpoint>,
    pub network: Option<NetworkFields<'a>>,
    pub http: Option<HttpFields<'a>>,
    pub url: Option<UrlFields<'a>>,
    pub user_agent: Option<Text<'a>>,
    pub log: LogFields<'a>,
    pub message: Option<Text<'a>>,
    pub host: Option<Text<'a>>,
    pub process: Option<ProcessFields<'a>>,
    pub user: Option<UserFields<'a>>,
    pub group: Option<Text<'a>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkFields<'a> {
    pub transport: Option<Text<'a>>,
    pub iana_number: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpFields<'a> {
    pub version: Option<Text<'a>>,
    pub request: Option<HttpRequestFields<'a>>,
    pub response: Option<HttpResponseFields>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRequestFields<'a> {
    pub method: Option<Text<'a>>,
    pub referrer: Option<Text<'a>>,
    pub body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpResponseFields {
    pub status_code: Option<u16>,
    pub body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UrlFields<'a> {
    pub domain: Option<Text<'a>>,
    pub original: Option<Text<'a>>,
}

/// `log.*`; the object is left out when nothing in it is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFields<'a> {
    pub level: Option<Text<'a>>,
    pub syslog: Option<SyslogFields<'a>>,
    pub parse_error: Option<&'static str>,
    pub escaped: bool,
    pub truncated: bool,
}

/// `log.syslog.*`: facility and severity follow from the priority.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyslogFields<'a> {
    pub priority: Option<u8>,
    pub hostname: Option<Text<'a>>,
    pub appname: Option<Text<'a>>,
    pub procid: Option<Text<'a>>,
    pub msgid: Option<Text<'a>>,
    pub structured_data: Option<StructuredData>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessFields<'a> {
    pub name: Option<Text<'a>>,
    pub pid: Option<u32>,
    pub command_line: Option<Text<'a>>,
}

/// `user.*`; `name` may be empty when only a target or effective user was named.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserFields<'a> {
    pub name: Text<'a>,
    pub target: Option<Text<'a>>,
    pub effective: Option<Text<'a>>,
}

/// The members of a log event's JSON that are the same for every event one sensor writes
/// (`kind`, `dataset`, the observer and organization ids, the schema version), encoded once and
/// then copied into each event.
#[derive(Debug, Clone)]
pub struct JsonConstants {
    sensor_id: String,
    tenant: String,
    /// The first half of log event ids: the prefix of the sensor id with a `/log` suffix (see
    /// `log_event_id_bytes`).
    id_prefix: [u8; 16],
    /// `,"kind":"event","dataset":"log"` (members of `event`, after its id).
    kind: Vec<u8>,
    /// `},"observer":{"id":"<sensor id>"`: the end of `event`, the start of `observer`.
    observer_id: Vec<u8>,
    /// `},"organization":{"id":"<tenant>"},"canh":{"schema_version":N}`: the end of `observer`,
    /// then the members after it.
    organization: Vec<u8>,
    /// The last second an `@timestamp` was written for, and its text to the second
    /// (`2026-11-23T10:00:00`): lines of the same second format only their fraction.
    second: std::cell::Cell<(Option<i64>, [u8; 19])>,
}

impl JsonConstants {
    pub fn new(who: &Identity) -> JsonConstants {
        // Written with the same calls the members were written with one by one.
        let members = |write: &dyn Fn(&mut Obj<'_>)| {
            let mut buf = Vec::new();
            let mut o = Obj::begin(&mut buf);
            write(&mut o);
            o.end();
            // Without the braces of the scratch object.
            buf[1..buf.len() - 1].to_vec()
        };
        JsonConstants {
            sensor_id: who.sensor_id.clone(),
            tenant: who.tenant.clone(),
            id_prefix: canh_event::sensor_prefix(&format!("{}/log", who.sensor_id)),
            kind: [
                &b","[..],
                &members(&|e| {
                    e.str("kind", Dataset::Log.kind().as_str());
                    e.str("dataset", Dataset::Log.as_str());
                }),
            ]
            .concat(),
            observer_id: [&b"},\"observer\":{"[..], &members(&|obs| obs.str("id", &who.sensor_id))]
                .concat(),
            second: std::cell::Cell::new((None, [0; 19])),
            organization: [
                &b"},"[..],
                &members(&|o| {
                    let mut org = o.obj("organization");
                    org.str("id", &who.tenant);
                    org.end();
                    let mut c = o.obj("canh");
                    c.u64("schema_version", u64::from(canh_event::SCHEMA_VERSION));
                    c.end();
                }),
            ]
            .concat(),
        }
    }

    /// `log_event_id_bytes(sensor id, seq)`, with the hashed prefix computed once.
    pub fn log_event_id(&self, seq: u64) -> [u8; 32] {
        canh_event::event_id_with_prefix(&self.id_prefix, seq)
    }

    /// `ts` as a JSON string, the bytes of `json::write_ts`.
    fn write_timestamp(&self, out: &mut Vec<u8>, ts: Timestamp) {
        let secs = ts.secs();
        let (cached, mut text) = self.second.get();
        if cached != Some(secs) {
            text.copy_from_slice(&ts.rfc3339()[..19]);
            self.second.set((Some(secs), text));
        }
        out.push(b'"');
        out.extend_from_slice(&text);
        let mut fraction = *b".000000000Z\"";
        let mut nanos = ts.subsec_nanos();
        // Most log times are whole seconds: nothing to write into the zeros.
        if nanos != 0 {
            for digit in fraction[1..10].iter_mut().rev() {
                *digit = b'0' + (nanos % 10) as u8;
                nanos /= 10;
            }
        }
        out.extend_from_slice(&fraction);
    }

    /// Whether these are the constants of `who`.
    pub fn is_for(&self, who: &Identity) -> bool {
        self.sensor_id == who.sensor_id && self.tenant == who.tenant
    }
}

/// `"priority":P,"facility":{"code":F,"name":".."},"severity":{"code":S,"name":".."}` (members
/// of `log.syslog`) for every PRI byte, encoded once.
static PRIORITY_JSON: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
    (0..=u8::MAX)
        .map(|p| {
            let mut buf = Vec::new();
            let mut y = Obj::begin(&mut buf);
            y.u64("priority", u64::from(p));
            code_name(&mut y, "facility", p >> 3, syslog::facility_name(p >> 3));
            code_name(&mut y, "severity", p & 7, syslog::severity_name(p & 7));
            y.end();
            buf[1..buf.len() - 1].to_vec()
        })
        .collect()
});

/// `part`, a slice of `whole`, borrowing what `whole` borrows (copied when `whole` was built).
pub fn sub<'a>(whole: &Text<'a>, part: &str) -> Text<'a> {
    match whole {
        Cow::Borrowed(text) => {
            let start = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
            match start.checked_add(part.len()).and_then(|end| text.get(start..end)) {
                Some(slice) if slice.as_ptr() == part.as_ptr() => Cow::Borrowed(slice),
                _ => Cow::Owned(part.to_string()),
            }
        }
        Cow::Owned(_) => Cow::Owned(part.to_string()),
    }
}

impl LogFields<'_> {
    fn is_empty(&self) -> bool {
        self.level.is_none()
            && self.syslog.is_none()
            && self.parse_error.is_none()
            && !self.escaped
            && !self.truncated
    }
}

fn owned(text: &Option<Text<'_>>) -> Option<String> {
    text.as_ref().map(|t| t.to_string())
}

fn own(text: Option<Text<'_>>) -> Option<Text<'static>> {
    text.map(|t| Cow::Owned(t.into_owned()))
}

impl LogEvent<'_> {
    /// The same fields with every text owned (for program fields read from a message that was
    /// itself built, when the line was not UTF-8).
    pub fn into_owned(self) -> LogEvent<'static> {
        let LogEvent {
            timestamp,
            category,
            r#type,
            outcome,
            action,
            duration,
            original,
            ingress,
            egress,
            source,
            destination,
            network,
            http,
            url,
            user_agent,
            log,
            message,
            host,
            process,
            user,
            group,
        } = self;
        let LogFields { level, syslog, parse_error, escaped, truncated } = log;
        LogEvent {
            timestamp,
            category,
            r#type,
            outcome,
            action: own(action),
            duration,
            original: Cow::Owned(original.into_owned()),
            ingress: own(ingress),
            egress: own(egress),
            source,
            destination,
            network: network
                .map(|n| NetworkFields { transport: own(n.transport), iana_number: n.iana_number }),
            http: http.map(|h| HttpFields {
                version: own(h.version),
                request: h.request.map(|r| HttpRequestFields {
                    method: own(r.method),
                    referrer: own(r.referrer),
                    body_bytes: r.body_bytes,
                }),
                response: h.response,
            }),
            url: url.map(|u| UrlFields { domain: own(u.domain), original: own(u.original) }),
            user_agent: own(user_agent),
            log: LogFields {
                level: own(level),
                syslog: syslog.map(|s| SyslogFields {
                    priority: s.priority,
                    hostname: own(s.hostname),
                    appname: own(s.appname),
                    procid: own(s.procid),
                    msgid: own(s.msgid),
                    structured_data: s.structured_data,
                }),
                parse_error,
                escaped,
                truncated,
            },
            message: own(message),
            host: own(host),
            process: process.map(|p| ProcessFields {
                name: own(p.name),
                pid: p.pid,
                command_line: own(p.command_line),
            }),
            user: user.map(|u| UserFields {
                name: Cow::Owned(u.name.into_owned()),
                target: own(u.target),
                effective: own(u.effective),
            }),
            group: own(group),
        }
    }

    /// The event's Kafka key: what `produce::key_of` gives for `to_event` (log events have no
    /// Community ID): the host name, else the sensor id.
    pub fn key<'k>(&'k self, who: &'k Identity) -> &'k str {
        self.host.as_deref().unwrap_or(&who.sensor_id)
    }

    /// The owned event with id `id`, observed by `who`.
    pub fn to_event(&self, id: String, who: &Identity) -> Event {
        let mut event = Event::new(Dataset::Log, id, self.timestamp, &who.sensor_id, &who.tenant);
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        event.event.category = self.category.map(list);
        event.event.r#type = self.r#type.map(list);
        event.event.outcome = self.outcome.map(str::to_string);
        event.event.action = owned(&self.action);
        event.event.duration = self.duration;
        event.event.original = Some(self.original.to_string());
        let interface = |name: &Text<'_>| ObserverInterface {
            interface: InterfaceName { name: name.to_string() },
        };
        event.observer.ingress = self.ingress.as_ref().map(interface);
        event.observer.egress = self.egress.as_ref().map(interface);
        event.source = self.source.clone();
        event.destination = self.destination.clone();
        event.network = self.network.as_ref().map(|n| Network {
            transport: owned(&n.transport),
            iana_number: n.iana_number,
            ..Network::default()
        });
        let body = |bytes: Option<u64>| bytes.map(|bytes| Body { bytes, content: None });
        event.http = self.http.as_ref().map(|h| Http {
            version: owned(&h.version),
            request: h.request.as_ref().map(|r| HttpRequest {
                method: owned(&r.method),
                referrer: owned(&r.referrer),
                body: body(r.body_bytes),
            }),
            response: h
                .response
                .as_ref()
                .map(|r| HttpResponse { status_code: r.status_code, body: body(r.body_bytes) }),
        });
        event.url = self
            .url
            .as_ref()
            .map(|u| Url { domain: owned(&u.domain), original: owned(&u.original) });
        event.user_agent = self.user_agent.as_ref().map(|a| UserAgent { original: a.to_string() });
        if !self.log.is_empty() {
            let LogFields { level, syslog, parse_error, escaped, truncated } = &self.log;
            event.log = Some(Log {
                level: owned(level),
                file: None,
                syslog: syslog.as_ref().map(|s| Syslog {
                    priority: s.priority,
                    facility: s.priority.map(|p| CodeName {
                        code: p >> 3,
                        name: syslog::facility_name(p >> 3).to_string(),
                    }),
                    severity: s.priority.map(|p| CodeName {
                        code: p & 7,
                        name: syslog::severity_name(p & 7).to_string(),
                    }),
                    hostname: owned(&s.hostname),
                    appname: owned(&s.appname),
                    procid: owned(&s.procid),
                    msgid: owned(&s.msgid),
                    structured_data: s.structured_data.clone(),
                }),
                parse_error: parse_error.map(str::to_string),
                escaped: escaped.then_some(true),
                truncated: truncated.then_some(true),
            });
        }
        event.message = owned(&self.message);
        event.host = self.host.as_ref().map(|h| Host { hostname: h.to_string() });
        event.process = self.process.as_ref().map(|p| Process {
            name: owned(&p.name),
            pid: p.pid,
            command_line: owned(&p.command_line),
        });
        event.user = self.user.as_ref().map(|u| User {
            name: u.name.to_string(),
            target: u.target.as_ref().map(|t| UserTarget { name: t.to_string() }),
            effective: u.effective.as_ref().map(|t| UserTarget { name: t.to_string() }),
        });
        event.group = self.group.as_ref().map(|g| Group { name: g.to_string() });
        event
    }

    /// Append the event's JSON (one line, no newline) to `out`: the bytes of
    /// `self.to_event(id, who).write_json(out)`, without building the event. `id` is the
    /// `event.id` (32 hex digits for line numbers, see `log_event_id`).
    pub fn write_json(&self, id: &str, who: &Identity, out: &mut Vec<u8>) {
        self.write_json_with(id, &JsonConstants::new(who), out);
    }

    /// [`LogEvent::write_json`] with the sensor's constant members encoded beforehand.
    ///
    /// Written without `Obj`: each key goes out with the punctuation around it as one constant
    /// (`,"hostname":`), so a member costs one append for its key instead of four; this writer is
    /// most of the work per log line. Objects whose members are all optional use [`Members`] for
    /// their commas.
    pub fn write_json_with(&self, id: &str, constants: &JsonConstants, out: &mut Vec<u8>) {
        use canh_event::json::{write_i64, write_ip, write_str, write_str_noting, write_u64};
        out.extend_from_slice(b"{\"@timestamp\":");
        constants.write_timestamp(out, self.timestamp);
        out.extend_from_slice(b",\"event\":{\"id\":");
        write_str(out, id);
        out.extend_from_slice(&constants.kind);
        if let Some(list) = self.category {
            out.extend_from_slice(b",\"category\":");
            str_list(out, list);
        }
        if let Some(list) = self.r#type {
            out.extend_from_slice(b",\"type\":");
            str_list(out, list);
        }
        if let Some(outcome) = self.outcome {
            out.extend_from_slice(b",\"outcome\":");
            plain(out, outcome);
        }
        // Before the original: escaped by itself.
        if let Some(action) = &self.action {
            out.extend_from_slice(b",\"action\":");
            write_str(out, action);
        }
        if let Some(duration) = self.duration {
            out.extend_from_slice(b",\"duration\":");
            write_i64(out, duration);
        }
        // The offsets of the original's bytes that needed an escape: the fields that are slices
        // of the line without one of them are then copied instead of being escaped again.
        out.extend_from_slice(b",\"original\":");
        let mut line = Original { text: &self.original, escapes: [0; 16], count: 0 };
        write_str_noting(out, &self.original, |at| {
            if let Some(slot) = line.escapes.get_mut(line.count) {
                *slot = at;
            }
            line.count += 1;
        });
        out.extend_from_slice(&constants.observer_id);
        if let Some(name) = &self.ingress {
            out.extend_from_slice(b",\"ingress\":{\"interface\":{\"name\":");
            line.write(out, name);
            out.extend_from_slice(b"}}");
        }
        if let Some(name) = &self.egress {
            out.extend_from_slice(b",\"egress\":{\"interface\":{\"name\":");
            line.write(out, name);
            out.extend_from_slice(b"}}");
        }
        out.extend_from_slice(&constants.organization);
        for (key, side) in
            [(&b",\"source\":{"[..], &self.source), (b",\"destination\":{", &self.destination)]
        {
            if let Some(Endpoint { ip, port, packets, bytes }) = side {
                out.extend_from_slice(key);
                let mut p = Members::new(out);
                if let Some(ip) = ip {
                    write_ip(p.key(b"\"ip\":"), *ip);
                }
                if let Some(port) = port {
                    write_u64(p.key(b"\"port\":"), u64::from(*port));
                }
                if let Some(packets) = packets {
                    write_u64(p.key(b"\"packets\":"), *packets);
                }
                if let Some(bytes) = bytes {
                    write_u64(p.key(b"\"bytes\":"), *bytes);
                }
                out.push(b'}');
            }
        }
        if let Some(NetworkFields { transport, iana_number }) = &self.network {
            out.extend_from_slice(b",\"network\":{");
            let mut n = Members::new(out);
            if let Some(transport) = transport {
                line.write(n.key(b"\"transport\":"), transport);
            }
            if let Some(number) = iana_number {
                write_u64(n.key(b"\"iana_number\":"), u64::from(*number));
            }
            out.push(b'}');
        }
        if let Some(HttpFields { version, request, response }) = &self.http {
            out.extend_from_slice(b",\"http\":{");
            let mut h = Members::new(out);
            if let Some(version) = version {
                line.write(h.key(b"\"version\":"), version);
            }
            if let Some(HttpRequestFields { method, referrer, body_bytes }) = request {
                let out = h.key(b"\"request\":{");
                let mut r = Members::new(out);
                if let Some(method) = method {
                    line.write(r.key(b"\"method\":"), method);
                }
                if let Some(referrer) = referrer {
                    line.write(r.key(b"\"referrer\":"), referrer);
                }
                body(&mut r, *body_bytes);
                out.push(b'}');
            }
            if let Some(HttpResponseFields { status_code, body_bytes }) = response {
                let out = h.key(b"\"response\":{");
                let mut r = Members::new(out);
                if let Some(code) = status_code {
                    write_u64(r.key(b"\"status_code\":"), u64::from(*code));
                }
                body(&mut r, *body_bytes);
                out.push(b'}');
            }
            out.push(b'}');
        }
        if let Some(UrlFields { domain, original }) = &self.url {
            out.extend_from_slice(b",\"url\":{");
            let mut u = Members::new(out);
            if let Some(domain) = domain {
                line.write(u.key(b"\"domain\":"), domain);
            }
            if let Some(original) = original {
                line.write(u.key(b"\"original\":"), original);
            }
            out.push(b'}');
        }
        if let Some(agent) = &self.user_agent {
            out.extend_from_slice(b",\"user_agent\":{\"original\":");
            line.write(out, agent);
            out.push(b'}');
        }
        if !self.log.is_empty() {
            let LogFields { level, syslog, parse_error, escaped, truncated } = &self.log;
            out.extend_from_slice(b",\"log\":{");
            let mut l = Members::new(out);
            if let Some(level) = level {
                line.write(l.key(b"\"level\":"), level);
            }
            if let Some(s) = syslog {
                let out = l.key(b"\"syslog\":{");
                let mut y = Members::new(out);
                if let Some(p) = s.priority {
                    y.key(&PRIORITY_JSON[usize::from(p)]);
                }
                for (key, value) in [
                    (&b"\"hostname\":"[..], &s.hostname),
                    (b"\"appname\":", &s.appname),
                    (b"\"procid\":", &s.procid),
                    (b"\"msgid\":", &s.msgid),
                ] {
                    if let Some(value) = value {
                        line.write(y.key(key), value);
                    }
                }
                if let Some(sd) = &s.structured_data {
                    structured_data(y.key(b"\"structured_data\":"), sd);
                }
                out.push(b'}');
            }
            if let Some(reason) = parse_error {
                write_str(l.key(b"\"parse_error\":"), reason);
            }
            if *escaped {
                l.key(b"\"escaped\":true");
            }
            if *truncated {
                l.key(b"\"truncated\":true");
            }
            out.push(b'}');
        }
        if let Some(message) = &self.message {
            out.extend_from_slice(b",\"message\":");
            line.write(out, message);
        }
        if let Some(host) = &self.host {
            out.extend_from_slice(b",\"host\":{\"hostname\":");
            line.write(out, host);
            out.push(b'}');
        }
        if let Some(ProcessFields { name, pid, command_line }) = &self.process {
            out.extend_from_slice(b",\"process\":{");
            let mut p = Members::new(out);
            if let Some(name) = name {
                line.write(p.key(b"\"name\":"), name);
            }
            if let Some(pid) = pid {
                write_u64(p.key(b"\"pid\":"), u64::from(*pid));
            }
            if let Some(command_line) = command_line {
                line.write(p.key(b"\"command_line\":"), command_line);
            }
            out.push(b'}');
        }
        if let Some(UserFields { name, target, effective }) = &self.user {
            out.extend_from_slice(b",\"user\":{\"name\":");
            line.write(out, name);
            for (key, who) in [
                (&b",\"target\":{\"name\":"[..], target),
                (b",\"effective\":{\"name\":", effective),
            ] {
                if let Some(name) = who {
                    out.extend_from_slice(key);
                    line.write(out, name);
                    out.push(b'}');
                }
            }
            out.push(b'}');
        }
        if let Some(group) = &self.group {
            out.extend_from_slice(b",\"group\":{\"name\":");
            line.write(out, group);
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// The members of a JSON object that may have none: a comma before each but the first. Keys are
/// passed encoded (`"name":`, or a whole encoded member).
struct Members<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Members<'o> {
    #[inline(always)]
    fn new(out: &'o mut Vec<u8>) -> Members<'o> {
        Members { out, empty: true }
    }

    /// Append `key` (with a comma before it unless it is the first) and hand back the buffer for
    /// the value.
    #[inline(always)]
    fn key(&mut self, key: &[u8]) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(key);
        self.out
    }
}

/// The offset of `part` in `whole` when `part` is a slice of it (compared by address).
fn within(whole: &str, part: &str) -> Option<usize> {
    let offset = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (offset.checked_add(part.len())? <= whole.len()).then_some(offset)
}

/// The event's original line once written, with the offsets of its first bytes that JSON escapes:
/// most text fields are slices of the line, and one that holds none of those bytes is written as
/// it is (the bytes `write_str` would give) instead of being scanned again.
struct Original<'t> {
    text: &'t str,
    escapes: [usize; 16],
    /// How many bytes were escaped (more than `escapes` holds when the line has many).
    count: usize,
}

impl Original<'_> {
    /// `text` as a JSON string.
    #[inline(always)]
    fn write(&self, out: &mut Vec<u8>, text: &str) {
        if !self.holds_plain(text) {
            canh_event::json::write_str(out, text);
            return;
        }
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }

    /// Whether `part` is a slice of the line without a byte that needed an escape.
    #[inline(always)]
    fn holds_plain(&self, part: &str) -> bool {
        let Some(start) = within(self.text, part) else { return false };
        let Some(escapes) = self.escapes.get(..self.count) else { return false };
        let end = start + part.len();
        !escapes.iter().any(|&at| start <= at && at < end)
    }
}

#[inline(always)]
fn str_list(out: &mut Vec<u8>, values: &[&str]) {
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        plain(out, v);
    }
    out.push(b']');
}

/// A JSON string of text that needs no escape: the `&'static` names of this module
/// (`event.category`, `type`, `outcome`), which are plain ASCII words.
#[inline(always)]
fn plain(out: &mut Vec<u8>, text: &str) {
    debug_assert!(text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'), "{text}");
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

#[inline(always)]
fn body(m: &mut Members<'_>, bytes: Option<u64>) {
    if let Some(bytes) = bytes {
        let out = m.key(b"\"body\":{\"bytes\":");
        canh_event::json::write_u64(out, bytes);
        out.push(b'}');
    }
}

#[inline(always)]
fn code_name(o: &mut Obj<'_>, key: &str, code: u8, name: &str) {
    let mut c = o.obj(key);
    c.u64("code", u64::from(code));
    c.str("name", name);
    c.end();
}

/// SD-ID -> (name -> value) as nested JSON objects, keys escaped (as the schema's writer does).
fn structured_data(out: &mut Vec<u8>, sd: &StructuredData) {
    use canh_event::json::write_str;
    out.push(b'{');
    for (i, (id, params)) in sd.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, id);
        out.extend_from_slice(b":{");
        for (j, (name, value)) in params.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_str(out, name);
            out.push(b':');
            write_str(out, value);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// For the parsers' unit tests, which check the owned event: run `parse` on fresh fields (at
/// `event`'s time) and replace `event` with what it set.
#[cfg(test)]
pub fn into_event<'a, R>(event: &mut Event, parse: impl FnOnce(&mut LogEvent<'a>) -> R) -> R {
    let mut fields = LogEvent { timestamp: event.timestamp, ..LogEvent::default() };
    let result = parse(&mut fields);
    let who = Identity {
        sensor_id: event.observer.id.clone(),
        tenant: event.organization.id.clone(),
        community_id_seed: 0,
    };
    let original = event.event.original.take();
    *event = fields.to_event(event.event.id.clone(), &who);
    event.event.original = original;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_the_json_writer_writes_them() {
        let who = Identity { sensor_id: "s".into(), tenant: "t".into(), community_id_seed: 0 };
        let constants = JsonConstants::new(&who);
        // Repeated seconds (the cached text), new seconds, fractions, before 1970.
        for nanos in [
            0,
            0,
            999_999_999,
            1_000_000_000,
            1_795_428_000_000_000_001,
            1_795_428_000_123_456_789,
            1_795_428_000_000_000_000,
            1_795_428_001_000_000_000,
            -1,
            -1_000_000_000,
            i64::MIN,
            i64::MAX,
        ] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            constants.write_timestamp(&mut ours, Timestamp(nanos));
            canh_event::json::write_ts(&mut theirs, Timestamp(nanos));
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }
}
