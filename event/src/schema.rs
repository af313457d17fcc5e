//! The event types. Field names follow ECS; fields ECS lacks live under a Canh-owned name
//! (`flow.*`, `icmp.*`, `ssh.*`, `canh.*`, `alert.*`, `sensor.*`). Absent values are left out of the
//! JSON rather than written as null.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// `event.dataset`: which family an event belongs to. Each family has its own Kafka topic and
/// ClickHouse table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    Flow,
    Dns,
    Http,
    Tls,
    Ssh,
    Icmp,
    Log,
    Alert,
    Sensor,
}

impl Dataset {
    pub const ALL: [Dataset; 9] = [
        Dataset::Flow,
        Dataset::Dns,
        Dataset::Http,
        Dataset::Tls,
        Dataset::Ssh,
        Dataset::Icmp,
        Dataset::Log,
        Dataset::Alert,
        Dataset::Sensor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Flow => "flow",
            Dataset::Dns => "dns",
            Dataset::Http => "http",
            Dataset::Tls => "tls",
            Dataset::Ssh => "ssh",
            Dataset::Icmp => "icmp",
            Dataset::Log => "log",
            Dataset::Alert => "alert",
            Dataset::Sensor => "sensor",
        }
    }

    pub fn parse(text: &str) -> Option<Dataset> {
        Dataset::ALL.into_iter().find(|d| d.as_str() == text)
    }

    /// The ECS `event.kind` events of this dataset carry.
    pub fn kind(self) -> Kind {
        match self {
            Dataset::Alert => Kind::Alert,
            Dataset::Sensor => Kind::Metric,
            _ => Kind::Event,
        }
    }
}

/// ECS `event.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Event,
    Alert,
    Metric,
    State,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Alert => "alert",
            Kind::Metric => "metric",
            Kind::State => "state",
        }
    }
}

/// One event. Construct with [`Event::new`] and fill in the parts of its dataset. The fast JSON
/// writer in `json.rs` follows the field order of these structs: keep it in step.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "@timestamp")]
    pub timestamp: Timestamp,
    pub event: EventInfo,
    pub observer: Observer,
    pub organization: Organization,
    pub canh: CanhInfo,
    #[serde(default)]
    pub source: Option<Endpoint>,
    #[serde(default)]
    pub destination: Option<Endpoint>,
    #[serde(default)]
    pub network: Option<Network>,
    #[serde(default)]
    pub flow: Option<Flow>,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(default)]
    pub http: Option<Http>,
    #[serde(default)]
    pub url: Option<Url>,
    #[serde(default)]
    pub user_agent: Option<UserAgent>,
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub ssh: Option<Ssh>,
    #[serde(default)]
    pub icmp: Option<Icmp>,
    #[serde(default)]
    pub log: Option<Log>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub host: Option<Host>,
    #[serde(default)]
    pub process: Option<Process>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub rule: Option<Rule>,
    #[serde(default)]
    pub threat: Option<Threat>,
    #[serde(default)]
    pub alert: Option<Alert>,
    #[serde(default)]
    pub sensor: Option<SensorStats>,
    /// ECS `group`: the group an account event is about (groupadd, usermod -G).
    #[serde(default)]
    pub group: Option<Group>,
}

impl Event {
    /// A new event with only the fields every event has.
    pub fn new(
        dataset: Dataset,
        id: String,
        timestamp: Timestamp,
        observer_id: &str,
        organization_id: &str,
    ) -> Event {
        Event {
            timestamp,
            event: EventInfo {
                id,
                kind: dataset.kind(),
                dataset,
                category: None,
                r#type: None,
                outcome: None,
                action: None,
                start: None,
                end: None,
                duration: None,
                severity: None,
                original: None,
            },
            observer: Observer {
                id: observer_id.to_string(),
                hostname: None,
                ingress: None,
                egress: None,
            },
            organization: Organization { id: organization_id.to_string() },
            canh: CanhInfo { schema_version: crate::SCHEMA_VERSION },
            source: None,
            destination: None,
            network: None,
            flow: None,
            dns: None,
            http: None,
            url: None,
            user_agent: None,
            tls: None,
            ssh: None,
            icmp: None,
            log: None,
            message: None,
            host: None,
            process: None,
            user: None,
            rule: None,
            threat: None,
            alert: None,
            sensor: None,
            group: None,
        }
    }

    /// Decode one event from JSON, checking what serde cannot: the schema version.
    pub fn from_json(bytes: &[u8]) -> Result<Event, DecodeError> {
        let event: Event = parse(bytes)?;
        check_version(event.canh.schema_version)?;
        Ok(event)
    }

    /// [`Event::from_json`] onto the heap: the ~2 KB event is moved once, from where serde builds
    /// it into its box, instead of at every return on the way (the collector's reader moved each
    /// event five or six times; memcpy was an eighth of its time).
    pub fn from_json_boxed(bytes: &[u8]) -> Result<Box<Event>, DecodeError> {
        let event: Box<Event> = parse(bytes)?;
        check_version(event.canh.schema_version)?;
        Ok(event)
    }

    /// The event's JSON, the same text serde_json writes (see [`Event::write_json`]).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(1024);
        self.write_json(&mut out);
        // The writer copies valid UTF-8 strings and writes ASCII around them.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One UTF-8 check over the whole text is cheaper than serde_json's check of each string (a fifth
/// of the decode). Text that is not UTF-8 goes the slice way, for its error.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let decoded = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    };
    decoded.map_err(DecodeError::Json)
}

fn check_version(version: u32) -> Result<(), DecodeError> {
    if version == crate::SCHEMA_VERSION {
        Ok(())
    } else {
        Err(DecodeError::SchemaVersion(version))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid event json: {0}")]
    Json(serde_json::Error),
    #[error("unsupported schema version {0} (this build reads {current})", current = crate::SCHEMA_VERSION)]
    SchemaVersion(u32),
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    pub id: String,
    pub kind: Kind,
    pub dataset: Dataset,
    #[serde(default)]
    pub category: Option<Vec<String>>,
    #[serde(default)]
    pub r#type: Option<Vec<String>>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub start: Option<Timestamp>,
    #[serde(default)]
    pub end: Option<Timestamp>,
    /// Nanoseconds, as in ECS.
    #[serde(default)]
    pub duration: Option<i64>,
    #[serde(default)]
    pub severity: Option<u8>,
    /// The raw text an event was parsed from (log lines).
    #[serde(default)]
    pub original: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observer {
    /// The sensor id.
    pub id: String,
    #[serde(default)]
    pub hostname: Option<String>,
    /// Interface a logged packet came in on (firewall logs: iptables `IN=`).
    #[serde(default)]
    pub ingress: Option<ObserverInterface>,
    /// Interface a logged packet went out on (firewall logs: iptables `OUT=`).
    #[serde(default)]
    pub egress: Option<ObserverInterface>,
}

/// ECS `observer.ingress` / `observer.egress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObserverInterface {
    pub interface: InterfaceName,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    /// The tenant: the province or ministry the sensor belongs to.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanhInfo {
    pub schema_version: u32,
}

/// `source` or `destination`. In flow events `source` is the originator and `destination` the
/// responder, and `bytes` counts IP-level bytes (Zeek's orig_ip_bytes / resp_ip_bytes).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub packets: Option<u64>,
    #[serde(default)]
    pub bytes: Option<u64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// `tcp`, `udp`, `icmp`, `ipv6-icmp`, or the IANA protocol number as text.
    #[serde(default)]
    pub transport: Option<String>,
    /// Application protocol, lowercase (`dns`, `http`, `tls`, `dtls`, `quic`, `ssh`).
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub iana_number: Option<u8>,
    #[serde(default)]
    pub community_id: Option<String>,
    /// Outer VLAN tag.
    #[serde(default)]
    pub vlan: Option<Vlan>,
    #[serde(default)]
    pub inner: Option<InnerNetwork>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vlan {
    pub id: u16,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InnerNetwork {
    /// Inner VLAN tag of a QinQ frame.
    #[serde(default)]
    pub vlan: Option<Vlan>,
}

/// Zeek conn.log fields ECS has no name for.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// Zeek's conn_state code (S0, S1, SF, REJ, RSTO, ...).
    #[serde(default)]
    pub state: Option<String>,
    /// Zeek's history letters.
    #[serde(default)]
    pub history: Option<String>,
    #[serde(default)]
    pub orig_payload_bytes: Option<u64>,
    #[serde(default)]
    pub resp_payload_bytes: Option<u64>,
    #[serde(default)]
    pub missed_bytes: Option<u64>,
    /// Why the record was written: `end` (closed or timed out), `active_timeout` (an update of a
    /// flow still running) or `shutdown` (the capture ended).
    #[serde(default)]
    pub reason: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub id: Option<u16>,
    /// `query` or `answer`.
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub op_code: Option<String>,
    #[serde(default)]
    pub question: Option<DnsQuestion>,
    #[serde(default)]
    pub response_code: Option<String>,
    #[serde(default)]
    pub header_flags: Option<Vec<String>>,
    #[serde(default)]
    pub answers: Option<Vec<DnsAnswer>>,
    /// Round-trip time between query and response, nanoseconds.
    #[serde(default)]
    pub rtt: Option<i64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsQuestion {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsAnswer {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub data: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Http {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub request: Option<HttpRequest>,
    #[serde(default)]
    pub response: Option<HttpResponse>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub referrer: Option<String>,
    #[serde(default)]
    pub body: Option<Body>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub body: Option<Body>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Body {
    pub bytes: u64,
    /// The first bytes of a textual request body (forms, JSON, XML, text) as the sensor saw them,
    /// lossily decoded as UTF-8: where POSTed injection payloads are found. ECS `http.request.body.content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Url {
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub original: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserAgent {
    pub original: String,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tls {
    /// "1.2", "1.3", ... (of TLS, or of DTLS when `version_protocol` is `dtls`)
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub version_protocol: Option<String>,
    /// IANA cipher suite name as Zeek prints it.
    #[serde(default)]
    pub cipher: Option<String>,
    #[serde(default)]
    pub established: Option<bool>,
    /// The ALPN protocol the server chose.
    #[serde(default)]
    pub next_protocol: Option<String>,
    #[serde(default)]
    pub client: Option<TlsClient>,
    #[serde(default)]
    pub server: Option<TlsServer>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsClient {
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub ja3: Option<String>,
    #[serde(default)]
    pub ja4: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsServer {
    #[serde(default)]
    pub ja3s: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub not_before: Option<Timestamp>,
    #[serde(default)]
    pub not_after: Option<Timestamp>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ssh {
    #[serde(default)]
    pub client: Option<SshPeer>,
    #[serde(default)]
    pub server: Option<SshPeer>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SshPeer {
    /// The identification string the peer sent, e.g. `SSH-2.0-OpenSSH_9.2p1`.
    pub banner: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Icmp {
    pub r#type: u8,
    pub code: u8,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Log {
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub file: Option<LogFile>,
    #[serde(default)]
    pub syslog: Option<Syslog>,
    /// Set when the line could not be parsed; the raw text is in `event.original`.
    #[serde(default)]
    pub parse_error: Option<String>,
    /// True when the line held bytes that are not UTF-8: in `event.original` each such byte is
    /// written `\xNN` and each backslash `\\`, so the bytes can be recovered exactly.
    #[serde(default)]
    pub escaped: Option<bool>,
    /// True when the line was longer than the configured maximum and was cut to it.
    #[serde(default)]
    pub truncated: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFile {
    pub path: String,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Syslog {
    #[serde(default)]
    pub priority: Option<u8>,
    #[serde(default)]
    pub facility: Option<CodeName>,
    #[serde(default)]
    pub severity: Option<CodeName>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub appname: Option<String>,
    #[serde(default)]
    pub procid: Option<String>,
    #[serde(default)]
    pub msgid: Option<String>,
    /// RFC 5424 structured data: SD-ID -> (param -> value).
    #[serde(default)]
    pub structured_data: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeName {
    pub code: u8,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub hostname: String,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    /// The command a log line says was run (sudo `COMMAND=`, cron `CMD`).
    #[serde(default)]
    pub command_line: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// ECS `user.target`: the account acted on or switched to (sudo/su target, useradd's new user).
    #[serde(default)]
    pub target: Option<UserTarget>,
    /// ECS `user.effective`: the account a command runs as (sudo `USER=`, su's target).
    #[serde(default)]
    pub effective: Option<UserTarget>,
}

/// A user named in `user.target` or `user.effective`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserTarget {
    pub name: String,
}

/// ECS `group`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
}

/// The detection rule behind an alert.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub name: String,
    /// Sigma level: informational, low, medium, high, critical.
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Threat {
    pub technique: ThreatTechnique,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreatTechnique {
    /// ATT&CK technique ids, e.g. `T1110`.
    pub id: Vec<String>,
}

/// What an alert summarises: the events that matched and the correlation key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub event_ids: Vec<String>,
    /// Group-by field -> value, e.g. `source.ip` -> `203.0.113.9`.
    pub group: BTreeMap<String, String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
}

/// Sensor health: capture and uplink counters since the sensor started.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorStats {
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub packets_received: Option<u64>,
    #[serde(default)]
    pub packets_dropped: Option<u64>,
    #[serde(default)]
    pub packets_if_dropped: Option<u64>,
    #[serde(default)]
    pub events_sent: Option<u64>,
    #[serde(default)]
    pub spool_bytes: Option<u64>,
}
