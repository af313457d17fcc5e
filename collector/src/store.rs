//! ClickHouse storage: the schema migrations and the typed rows written per table.

use crate::detect::tape::Tape;
use canh_event::{Dataset, Event};
use clickhouse::Row;
use serde::Serialize;
use std::net::IpAddr;

/// Migrations, applied in order at start and recorded in `schema_migrations`. Each statement is
/// idempotent, so a migration cut short by a crash can run again.
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/001_initial.sql")),
    (2, "datasets", include_str!("../migrations/002_datasets.sql")),
    (3, "alerts", include_str!("../migrations/003_alerts.sql")),
    (4, "rollups", include_str!("../migrations/004_rollups.sql")),
    (5, "rule_stats", include_str!("../migrations/005_rule_stats.sql")),
];

/// Days each table keeps by default. Alerts are kept longest; aggregates outlive the raw rows so
/// dashboards can show long trends.
pub const RETENTION_DEFAULT_DAYS: &[(&str, u32)] = &[
    ("flows", 30),
    ("dns", 90),
    ("http", 90),
    ("tls", 90),
    ("ssh", 90),
    ("icmp", 30),
    ("logs", 180),
    ("sensor_health", 30),
    ("alerts", 730),
    ("dead_letters", 30),
    ("events_per_minute", 400),
    ("flow_bytes_per_minute", 400),
    ("rule_stats", 90),
    ("events_per_hour", 400),
    ("source_bytes_per_hour", 400),
    ("top_sources_per_hour", 400),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("clickhouse: {context}: {source}")]
    ClickHouse { context: String, source: clickhouse::error::Error },
}

fn ch(context: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::ClickHouse { context, source }
}

/// A client for `database` on the server at `url` (credentials from the environment).
pub fn client(url: &str, user: &str, database: Option<&str>) -> clickhouse::Client {
    let mut client = clickhouse::Client::default()
        .with_url(url)
        .with_user(user)
        // Debian's 18.16 rejects the settings the schema validation sends; rows are typed here.
        .with_validation(false);
    if let Ok(password) = std::env::var("CANH_CLICKHOUSE_PASSWORD") {
        client = client.with_password(password);
    }
    if let Some(db) = database {
        client = client.with_database(db);
    }
    client
}

/// Create the database and apply the migrations not applied yet. Returns the versions applied now.
pub async fn migrate(url: &str, user: &str, database: &str) -> Result<Vec<u32>, StoreError> {
    // The database name was checked to be a plain identifier when the config was validated.
    client(url, user, None)
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await
        .map_err(ch(format!("creating database {database}")))?;
    let db = client(url, user, Some(database));
    db.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, \
         applied_at DateTime) ENGINE = ReplacingMergeTree() ORDER BY version",
    )
    .execute()
    .await
    .map_err(ch("creating schema_migrations"))?;
    let applied: Vec<u32> = db
        .query("SELECT DISTINCT version FROM schema_migrations")
        .fetch_all()
        .await
        .map_err(ch("reading schema_migrations"))?;
    let mut now_applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        for statement in statements(sql) {
            db.query(&statement)
                .execute()
                .await
                .map_err(ch(format!("migration {version} ({name})")))?;
        }
        db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())")
            .bind(*version)
            .bind(*name)
            .execute()
            .await
            .map_err(ch(format!("recording migration {version}")))?;
        tracing::info!(version, name, "migration applied");
        now_applied.push(*version);
    }
    Ok(now_applied)
}

/// Split a migration file into statements: `;` at the end of a line ends one; `--` lines are
/// comments.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let statement = current.trim().trim_end_matches(';').to_string();
            out.push(statement);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// The daily partitions (`YYYYMMDD`) older than each table's retention at `now_ns`. `parts` are
/// (table, partition id) pairs as `system.parts` lists them; unknown tables and partition ids that
/// are not dates are left alone.
pub fn expired_partitions(
    parts: &[(String, String)],
    days: &std::collections::BTreeMap<&'static str, u32>,
    now_ns: i64,
) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for (table, partition) in parts {
        let Some(keep) = days.get(table.as_str()) else { continue };
        let Ok(day) = partition.parse::<u32>() else { continue };
        let cutoff_ns =
            now_ns.saturating_sub(i64::from(*keep).saturating_mul(86_400 * 1_000_000_000));
        if day < yyyymmdd(cutoff_ns) {
            out.push((table.clone(), day));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn yyyymmdd(ts_ns: i64) -> u32 {
    let text = canh_event::Timestamp(ts_ns).to_string();
    text.get(..10).map(|d| d.replace('-', "")).and_then(|d| d.parse().ok()).unwrap_or(0)
}

/// Drop every daily partition past its table's retention. Returns what was dropped.
pub async fn apply_retention(
    db: &clickhouse::Client,
    database: &str,
    days: &std::collections::BTreeMap<&'static str, u32>,
    now_ns: i64,
) -> Result<Vec<(String, u32)>, StoreError> {
    #[derive(Row, serde::Deserialize)]
    struct Part {
        table: String,
        partition: String,
    }
    let parts: Vec<Part> = db
        .query("SELECT table, partition FROM system.parts WHERE database = ? AND active GROUP BY table, partition")
        .bind(database)
        .fetch_all()
        .await
        .map_err(ch("listing partitions"))?;
    let parts: Vec<(String, String)> = parts.into_iter().map(|p| (p.table, p.partition)).collect();
    let expired = expired_partitions(&parts, days, now_ns);
    for (table, day) in &expired {
        // Both parts are safe to format: the table name comes from RETENTION_DEFAULT_DAYS and the
        // partition id was parsed as a number.
        db.query(&format!("ALTER TABLE {table} DROP PARTITION {day}"))
            .execute()
            .await
            .map_err(ch(format!("dropping partition {day} of {table}")))?;
        tracing::info!(table = %table, partition = day, "retention: partition dropped");
    }
    Ok(expired)
}

/// An address in the 16-byte IPv6-mapped form the schema stores.
pub fn ip16(ip: Option<IpAddr>) -> [u8; 16] {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
        Some(IpAddr::V6(v6)) => v6.octets(),
        None => [0; 16],
    }
}

/// Seconds for a DateTime column: clamped to its range (1970..2106).
fn datetime(ts_ns: i64) -> u32 {
    u32::try_from(ts_ns.div_euclid(1_000_000_000).max(0)).unwrap_or(u32::MAX)
}

/// Where a record came from in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Rows of one batch, by table.
#[derive(Debug, Default)]
pub struct Batch {
    pub flows: Vec<FlowRow>,
    pub dns: Vec<DnsRow>,
    pub http: Vec<HttpRow>,
    pub tls: Vec<TlsRow>,
    pub ssh: Vec<SshRow>,
    pub icmp: Vec<IcmpRow>,
    pub logs: Vec<LogRow>,
    pub sensor_health: Vec<SensorHealthRow>,
    pub alerts: Vec<AlertRow>,
    /// How many of `alerts`, at its end, this collector's detection raised: the ones it produces
    /// to the alert topic. The others were read from that topic and are only stored (producing
    /// them again would echo every alert around the topic forever).
    pub raised: usize,
    pub dead_letters: Vec<DeadLetterRow>,
    /// Decoded events waiting for detection (filled only when detection is on), on one tape
    /// reused from batch to batch.
    pub detect_inputs: Option<Tape>,
}

impl Batch {
    /// A batch that keeps decoded events for detection when `detect` is set.
    pub fn new(detect: bool) -> Batch {
        Batch { detect_inputs: detect.then(Tape::new), ..Batch::default() }
    }

    /// Empty the batch for the next one, keeping what its tables' lists have allocated (a full
    /// batch's rows would otherwise be moved again each time a list doubles).
    pub fn clear(&mut self, detect: bool) {
        // Every field by name: a list added to `Batch` and not emptied here would be written again
        // with the next batch, so a new field must not compile until it is handled.
        let Batch {
            flows,
            dns,
            http,
            tls,
            ssh,
            icmp,
            logs,
            sensor_health,
            alerts,
            raised,
            dead_letters,
            detect_inputs,
        } = self;
        flows.clear();
        dns.clear();
        http.clear();
        tls.clear();
        ssh.clear();
        icmp.clear();
        logs.clear();
        sensor_health.clear();
        alerts.clear();
        *raised = 0;
        dead_letters.clear();
        match (detect_inputs, detect) {
            (Some(inputs), true) => inputs.clear(),
            (inputs, _) => *inputs = detect.then(Tape::new),
        }
    }

    /// Rows per table, in the order `write` writes them.
    pub fn counts(&self) -> [(&'static str, usize); 10] {
        [
            ("flows", self.flows.len()),
            ("dns", self.dns.len()),
            ("http", self.http.len()),
            ("tls", self.tls.len()),
            ("ssh", self.ssh.len()),
            ("icmp", self.icmp.len()),
            ("logs", self.logs.len()),
            ("sensor_health", self.sensor_health.len()),
            ("alerts", self.alerts.len()),
            ("dead_letters", self.dead_letters.len()),
        ]
    }

    pub fn len(&self) -> usize {
        self.counts().iter().map(|(_, n)| n).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add a decoded event's row to the table of its dataset. The row takes the event's strings
    /// (`event` is left partly emptied): the event is decoded once and never moved whole (~2 KB).
    pub fn push(&mut self, event: &mut Event, raw: &[u8], origin: Origin) {
        match event.event.dataset {
            Dataset::Flow => self.flows.push(flow_row(event, origin)),
            Dataset::Dns => self.dns.push(dns_row(event, raw, origin)),
            Dataset::Http => self.http.push(http_row(event, raw, origin)),
            Dataset::Tls => self.tls.push(tls_row(event, raw, origin)),
            Dataset::Ssh => self.ssh.push(ssh_row(event, raw, origin)),
            Dataset::Icmp => self.icmp.push(icmp_row(event, raw, origin)),
            Dataset::Log => self.logs.push(log_row(event, raw, origin)),
            Dataset::Sensor => self.sensor_health.push(sensor_health_row(event, raw, origin)),
            Dataset::Alert => self.alerts.push(alert_row(event)),
        }
    }
}

#[derive(Debug, Row, Serialize)]
pub struct DeadLetterRow {
    pub received_at: u32,
    pub topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub reason: String,
    pub error: String,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

#[derive(Debug, Row, Serialize)]
pub struct AlertRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub version: u64,
    pub organization_id: String,
    pub observer_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub level: String,
    pub severity: u8,
    pub tags: Vec<String>,
    pub techniques: Vec<String>,
    pub event_ids: Vec<String>,
    pub group_keys: Vec<String>,
    pub group_values: Vec<String>,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub count: u64,
    pub raw: String,
}

/// One rule's health over one interval (see `migrations/005_rule_stats.sql`).
#[derive(Debug, Clone, Row, Serialize, PartialEq)]
pub struct RuleStatsRow {
    pub ts: u32,
    pub ts_ns: i64,
    pub collector: String,
    pub rule_id: String,
    pub rule_name: String,
    pub level: String,
    pub rule_group: String,
    pub hits: u64,
    pub errors: u64,
    pub group_evaluations: u64,
    pub group_eval_seconds: f64,
}

pub async fn write_rule_stats(
    db: &clickhouse::Client,
    rows: &[RuleStatsRow],
) -> Result<(), StoreError> {
    write_table(db, "rule_stats", rows).await
}

/// The row of an alert event (dataset `alert`), with the event's JSON kept whole in `raw`.
pub fn alert_row(alert: &Event) -> AlertRow {
    let rule = alert.rule.clone().unwrap_or_default();
    let summary = alert.alert.clone().unwrap_or_default();
    AlertRow {
        event_id: alert.event.id.clone(),
        // First seen, not the alert's own time: updates of one alert must share a partition and
        // a sorting key to fold into one row.
        ts: datetime(summary.first_seen.nanos()),
        ts_ns: summary.first_seen.nanos(),
        version: u64::try_from(summary.last_seen.nanos()).unwrap_or(0),
        organization_id: alert.organization.id.clone(),
        observer_id: alert.observer.id.clone(),
        rule_id: rule.id,
        rule_name: rule.name,
        level: rule.level.unwrap_or_default(),
        severity: alert.event.severity.unwrap_or(0),
        tags: rule.tags.unwrap_or_default(),
        techniques: alert.threat.as_ref().map(|t| t.technique.id.clone()).unwrap_or_default(),
        event_ids: summary.event_ids,
        group_keys: summary.group.keys().cloned().collect(),
        group_values: summary.group.values().cloned().collect(),
        first_seen_ns: summary.first_seen.nanos(),
        last_seen_ns: summary.last_seen.nanos(),
        count: summary.count,
        raw: alert.to_json(),
    }
}

/// The columns the event tables share: identity and time (every table), the endpoints (every
/// table but `sensor_health`), and the record's raw bytes and Kafka coordinates. Taken out of the
/// event, so the strings move into the row instead of being copied.
struct Common {
    event_id: String,
    ts: u32,
    ts_ns: i64,
    observer_id: String,
    organization_id: String,
    source_ip: [u8; 16],
    source_port: u16,
    destination_ip: [u8; 16],
    destination_port: u16,
    transport: String,
    community_id: String,
    raw: Vec<u8>,
    kafka_partition: i32,
    kafka_offset: i64,
}

fn common(event: &mut Event, raw: &[u8], origin: Origin) -> Common {
    let source = event.source.as_ref();
    let destination = event.destination.as_ref();
    let network = event.network.as_mut();
    Common {
        event_id: std::mem::take(&mut event.event.id),
        ts: datetime(event.timestamp.nanos()),
        ts_ns: event.timestamp.nanos(),
        observer_id: std::mem::take(&mut event.observer.id),
        organization_id: std::mem::take(&mut event.organization.id),
        source_ip: ip16(source.and_then(|s| s.ip)),
        source_port: source.and_then(|s| s.port).unwrap_or(0),
        destination_ip: ip16(destination.and_then(|d| d.ip)),
        destination_port: destination.and_then(|d| d.port).unwrap_or(0),
        transport: network.as_ref().and_then(|n| n.transport.clone()).unwrap_or_default(),
        community_id: network.and_then(|n| n.community_id.take()).unwrap_or_default(),
        raw: raw.to_vec(),
        kafka_partition: origin.partition,
        kafka_offset: origin.offset,
    }
}

#[derive(Debug, Row, Serialize)]
pub struct FlowRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub observer_id: String,
    pub organization_id: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub duration_ns: i64,
    pub source_ip: [u8; 16],
    pub source_port: u16,
    pub source_packets: u64,
    pub source_bytes: u64,
    pub destination_ip: [u8; 16],
    pub destination_port: u16,
    pub destination_packets: u64,
    pub destination_bytes: u64,
    pub transport: String,
    pub iana_number: u8,
    pub community_id: String,
    pub vlan_id: Option<u16>,
    pub inner_vlan_id: Option<u16>,
    pub state: String,
    pub history: String,
    pub orig_payload_bytes: u64,
    pub resp_payload_bytes: u64,
    pub missed_bytes: u64,
    pub reason: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// The flows table keeps no raw JSON: every field the sensor sends has a column.
pub fn flow_row(event: &mut Event, origin: Origin) -> FlowRow {
    let start = event.event.start.unwrap_or(event.timestamp).nanos();
    let end = event.event.end.unwrap_or(event.timestamp).nanos();
    let duration_ns = event.event.duration.unwrap_or(end - start);
    let Common {
        event_id,
        ts,
        ts_ns,
        observer_id,
        organization_id,
        source_ip,
        source_port,
        destination_ip,
        destination_port,
        transport,
        community_id,
        raw: _,
        kafka_partition,
        kafka_offset,
    } = common(event, &[], origin);
    let source = event.source.take().unwrap_or_default();
    let destination = event.destination.take().unwrap_or_default();
    let network = event.network.take().unwrap_or_default();
    let flow = event.flow.take().unwrap_or_default();
    FlowRow {
        event_id,
        ts,
        ts_ns,
        observer_id,
        organization_id,
        start_ns: start,
        end_ns: end,
        duration_ns,
        source_ip,
        source_port,
        source_packets: source.packets.unwrap_or(0),
        source_bytes: source.bytes.unwrap_or(0),
        destination_ip,
        destination_port,
        destination_packets: destination.packets.unwrap_or(0),
        destination_bytes: destination.bytes.unwrap_or(0),
        transport,
        iana_number: network.iana_number.unwrap_or(0),
        community_id,
        vlan_id: network.vlan.map(|v| v.id),
        inner_vlan_id: network.inner.and_then(|i| i.vlan).map(|v| v.id),
        state: flow.state.unwrap_or_default(),
        history: flow.history.unwrap_or_default(),
        orig_payload_bytes: flow.orig_payload_bytes.unwrap_or(0),
        resp_payload_bytes: flow.resp_payload_bytes.unwrap_or(0),
        missed_bytes: flow.missed_bytes.unwrap_or(0),
        reason: flow.reason.unwrap_or_default(),
        kafka_partition,
        kafka_offset,
    }
}

#[derive(Debug, Row, Serialize)]
pub struct DnsRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub observer_id: String,
    pub organization_id: String,
    pub source_ip: [u8; 16],
    pub source_port: u16,
    pub destination_ip: [u8; 16],
    pub destination_port: u16,
    pub transport: String,
    pub community_id: String,
    pub dns_id: u16,
    pub dns_type: String,
    pub op_code: String,
    pub question_name: String,
    pub question_type: String,
    pub question_class: String,
    pub response_code: String,
    pub header_flags: Vec<String>,
    pub answers_name: Vec<String>,
    pub answers_type: Vec<String>,
    pub answers_ttl: Vec<u32>,
    pub answers_data: Vec<String>,
    pub rtt_ns: Option<i64>,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

pub fn dns_row(event: &mut Event, raw: &[u8], origin: Origin) -> DnsRow {
    let c = common(event, raw, origin);
    let dns = event.dns.take().unwrap_or_default();
    let question = dns.question.unwrap_or_default();
    let answers = dns.answers.unwrap_or_default();
    let mut answers_name = Vec::with_capacity(answers.len());
    let mut answers_type = Vec::with_capacity(answers.len());
    let mut answers_ttl = Vec::with_capacity(answers.len());
    let mut answers_data = Vec::with_capacity(answers.len());
    for answer in answers {
        answers_name.push(answer.name.unwrap_or_default());
        answers_type.push(answer.r#type.unwrap_or_default());
        answers_ttl.push(answer.ttl.unwrap_or(0));
        answers_data.push(answer.data.unwrap_or_default());
    }
    DnsRow {
        event_id: c.event_id,
        ts: c.ts,
        ts_ns: c.ts_ns,
        observer_id: c.observer_id,
        organization_id: c.organization_id,
        source_ip: c.source_ip,
        source_port: c.source_port,
        destination_ip: c.destination_ip,
        destination_port: c.destination_port,
        transport: c.transport,
        community_id: c.community_id,
        dns_id: dns.id.unwrap_or(0),
        dns_type: dns.r#type.unwrap_or_default(),
        op_code: dns.op_code.unwrap_or_default(),
        question_name: question.name.unwrap_or_default(),
        question_type: question.r#type.unwrap_or_default(),
        question_class: question.class.unwrap_or_default(),
        response_code: dns.response_code.unwrap_or_default(),
        header_flags: dns.header_flags.unwrap_or_default(),
        answers_name,
        answers_type,
        answers_ttl,
        answers_data,
        rtt_ns: dns.rtt,
        raw: c.raw,
        kafka_partition: c.kafka_partition,
        kafka_offset: c.kafka_offset,
    }
}

#[derive(Debug, Row, Serialize)]
pub struct HttpRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub observer_id: String,
    pub organization_id: String,
    pub source_ip: [u8; 16],
    pub source_port: u16,
    pub destination_ip: [u8; 16],
    pub destination_port: u16,
    pub transport: String,
    pub community_id: String,
    pub version: String,
    pub method: String,
    pub url_domain: String,
    pub url_original: String,
    pub referrer: String,
    pub user_agent: String,
    pub status_code: Option<u16>,
    pub request_body_bytes: Option<u64>,
    pub response_body_bytes: Option<u64>,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

pub fn http_row(event: &mut Event, raw: &[u8], origin: Origin) -> HttpRow {
    let c = common(event, raw, origin);
    let http = event.http.take().unwrap_or_default();
    let request = http.request.unwrap_or_default();
    let response = http.response.unwrap_or_default();
    let url = event.url.take().unwrap_or_default();
    HttpRow {
        event_id: c.event_id,
        ts: c.ts,
        ts_ns: c.ts_ns,
        observer_id: c.observer_id,
        organization_id: c.organization_id,
        source_ip: c.source_ip,
        source_port: c.source_port,
        destination_ip: c.destination_ip,
        destination_port: c.destination_port,
        transport: c.transport,
        community_id: c.community_id,
        version: http.version.unwrap_or_default(),
        method: request.method.unwrap_or_default(),
        url_domain: url.domain.unwrap_or_default(),
        url_original: url.original.unwrap_or_default(),
        referrer: request.referrer.unwrap_or_default(),
        user_agent: event.user_agent.take().map(|u| u.original).unwrap_or_default(),
        status_code: response.status_code,
        request_body_bytes: request.body.map(|b| b.bytes),
        response_body_bytes: response.body.map(|b| b.bytes),
        raw: c.raw,
        kafka_partition: c.kafka_partition,
        kafka_offset: c.kafka_offset,
    }
}

#[derive(Debug, Row, Serialize)]
pub struct TlsRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub observer_id: String,
    pub organization_id: String,
    pub source_ip: [u8; 16],
    pub source_port: u16,
    pub destination_ip: [u8; 16],
    pub destination_port: u16,
    pub transport: String,
    pub community_id: String,
    pub version: String,
    pub cipher: String,
    pub established: Option<u8>,
    pub next_protocol: String,
    pub server_name: String,
    pub ja3: String,
    pub ja4: String,
    pub ja3s: String,
    pub server_subject: String,
    pub server_issuer: String,
    pub server_not_before_ns: Option<i64>,
    pub server_not_after_ns: Option<i64>,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

pub fn tls_row(event: &mut Event, raw: &[u8], origin: Origin) -> TlsRow {
    let c = common(event, raw, origin);
    let tls = event.tls.take().unwrap_or_default();
    let client = tls.client.unwrap_or_default();
    let server = tls.server.unwrap_or_default();
    TlsRow {
        event_id: c.event_id,
        ts: c.ts,
        ts_ns: c.ts_ns,
        observer_id: c.observer_id,
        organization_id: c.organization_id,
        source_ip: c.source_ip,
        source_port: c.source_port,
        destination_ip: c.destination_ip,
        destination_port: c.destination_port,
        transport: c.transport,
        community_id: c.community_id,
        version: tls.version.unwrap_or_default(),
        cipher: tls.cipher.unwrap_or_default(),
        established: tls.established.map(u8::from),
        next_protocol: tls.next_protocol.unwrap_or_default(),
        server_name: client.server_name.unwrap_or_default(),
        ja3: client.ja3.unwrap_or_default(),
        ja4: client.ja4.unwrap_or_default(),
        ja3s: server.ja3s.unwrap_or_default(),
        server_subject: server.subject.unwrap_or_default(),
        server_issuer: server.issuer.unwrap_or_default(),
        server_not_before_ns: server.not_before.map(|t| t.nanos()),
        server_not_after_ns: server.not_after.map(|t| t.nanos()),
        raw: c.raw,
        kafka_partition: c.kafka_partition,
        kafka_offset: c.kafka_offset,
    }
}

#[derive(Debug, Row, Serialize)]
pub struct SshRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub observer_id: String,
    pub organization_id: String,
    pub source_ip: [u8; 16],
    pub source_port: u16,
    pub destination_ip: [u8; 16],
    pub destination_port: u16,
    pub transport: String,
    pub community_id: String,
    pub client_banner: String,
    pub server_banner: String,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

pub fn ssh_row(event: &mut Event, raw: &[u8], origin: Origin) -> SshRow {
    let c = common(event, raw, origin);
    let ssh = event.ssh.take().unwrap_or_default();
    SshRow {
        event_id: c.event_id,
        ts: c.ts,
        ts_ns: c.ts_ns,
        observer_id: c.observer_id,
        organization_id: c.organization_id,
        source_ip: c.source_ip,
        source_port: c.source_port,
        destination_ip: c.destination_ip,
        destination_port: c.destination_port,
        transport: c.transport,
        community_id: c.community_id,
        client_banner: ssh.client.map(|p| p.banner).unwrap_or_default(),
        server_banner: ssh.server.map(|p| p.banner).unwrap_or_default(),
        raw: c.raw,
        kafka_partition: c.kafka_partition,
        kafka_offset: c.kafka_offset,
    }
}

#[derive(Debug, Row, Serialize)]
pub struct IcmpRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub observer_id: String,
    pub organization_id: String,
    pub source_ip: [u8; 16],
    pub source_port: u16,
    pub destination_ip: [u8; 16],
    pub destination_port: u16,
    pub transport: String,
    pub community_id: String,
    pub icmp_type: u8,
    pub icmp_code: u8,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

pub fn icmp_row(event: &mut Event, raw: &[u8], origin: Origin) -> IcmpRow {
    let c = common(event, raw, origin);
    let icmp = event.icmp.take().unwrap_or_default();
    IcmpRow {
        event_id: c.event_id,
        ts: c.ts,
        ts_ns: c.ts_ns,
        observer_id: c.observer_id,
        organization_id: c.organization_id,
        source_ip: c.source_ip,
        source_port: c.source_port,
        destination_ip: c.destination_ip,
        destination_port: c.destination_port,
        transport: c.transport,
        community_id: c.community_id,
        icmp_type: icmp.r#type,
        icmp_code: icmp.code,
        raw: c.raw,
        kafka_partition: c.kafka_partition,
        kafka_offset: c.kafka_offset,
    }
}

#[derive(Debug, Row, Serialize)]
pub struct LogRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub observer_id: String,
    pub organization_id: String,
    pub source_ip: [u8; 16],
    pub source_port: u16,
    pub destination_ip: [u8; 16],
    pub destination_port: u16,
    pub hostname: String,
    pub appname: String,
    pub procid: String,
    pub msgid: String,
    pub priority: Option<u8>,
    pub facility: String,
    pub severity: String,
    pub category: Vec<String>,
    pub r#type: Vec<String>,
    pub outcome: String,
    pub user_name: String,
    pub process_name: String,
    pub process_pid: Option<u32>,
    pub file_path: String,
    pub message: String,
    pub original: String,
    pub parse_error: String,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

pub fn log_row(event: &mut Event, raw: &[u8], origin: Origin) -> LogRow {
    let c = common(event, raw, origin);
    let log = event.log.take().unwrap_or_default();
    let syslog = log.syslog.unwrap_or_default();
    let process = event.process.take().unwrap_or_default();
    let hostname = event.host.take().map(|h| h.hostname).or(syslog.hostname).unwrap_or_default();
    LogRow {
        event_id: c.event_id,
        ts: c.ts,
        ts_ns: c.ts_ns,
        observer_id: c.observer_id,
        organization_id: c.organization_id,
        source_ip: c.source_ip,
        source_port: c.source_port,
        destination_ip: c.destination_ip,
        destination_port: c.destination_port,
        hostname,
        appname: syslog.appname.unwrap_or_default(),
        procid: syslog.procid.unwrap_or_default(),
        msgid: syslog.msgid.unwrap_or_default(),
        priority: syslog.priority,
        facility: syslog.facility.map(|f| f.name).unwrap_or_default(),
        severity: syslog.severity.map(|s| s.name).unwrap_or_default(),
        category: event.event.category.take().unwrap_or_default(),
        r#type: event.event.r#type.take().unwrap_or_default(),
        outcome: event.event.outcome.take().unwrap_or_default(),
        user_name: event.user.take().map(|u| u.name).unwrap_or_default(),
        process_name: process.name.unwrap_or_default(),
        process_pid: process.pid,
        file_path: log.file.map(|f| f.path).unwrap_or_default(),
        message: event.message.take().unwrap_or_default(),
        original: event.event.original.take().unwrap_or_default(),
        parse_error: log.parse_error.unwrap_or_default(),
        raw: c.raw,
        kafka_partition: c.kafka_partition,
        kafka_offset: c.kafka_offset,
    }
}

#[derive(Debug, Row, Serialize)]
pub struct SensorHealthRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub observer_id: String,
    pub organization_id: String,
    pub interface: String,
    pub packets_received: Option<u64>,
    pub packets_dropped: Option<u64>,
    pub packets_if_dropped: Option<u64>,
    pub events_sent: Option<u64>,
    pub spool_bytes: Option<u64>,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

pub fn sensor_health_row(event: &mut Event, raw: &[u8], origin: Origin) -> SensorHealthRow {
    let c = common(event, raw, origin);
    let stats = event.sensor.take().unwrap_or_default();
    SensorHealthRow {
        event_id: c.event_id,
        ts: c.ts,
        ts_ns: c.ts_ns,
        observer_id: c.observer_id,
        organization_id: c.organization_id,
        interface: stats.interface.unwrap_or_default(),
        packets_received: stats.packets_received,
        packets_dropped: stats.packets_dropped,
        packets_if_dropped: stats.packets_if_dropped,
        events_sent: stats.events_sent,
        spool_bytes: stats.spool_bytes,
        raw: c.raw,
        kafka_partition: c.kafka_partition,
        kafka_offset: c.kafka_offset,
    }
}

/// Write a batch: one insert per table, all at once. ClickHouse runs each insert (and the
/// materialized views it feeds) on a thread of its own, so the tables are stored side by side
/// instead of one after another. A failure leaves the caller to retry the whole batch: rows that
/// did land are folded by ReplacingMergeTree when written again.
pub async fn write(db: &clickhouse::Client, batch: &Batch) -> Result<(), StoreError> {
    tokio::try_join!(
        write_table(db, "flows", &batch.flows),
        write_table(db, "dns", &batch.dns),
        write_table(db, "http", &batch.http),
        write_table(db, "tls", &batch.tls),
        write_table(db, "ssh", &batch.ssh),
        write_table(db, "icmp", &batch.icmp),
        write_table(db, "logs", &batch.logs),
        write_table(db, "sensor_health", &batch.sensor_health),
        write_table(db, "alerts", &batch.alerts),
        write_table(db, "dead_letters", &batch.dead_letters),
    )?;
    Ok(())
}

/// Write alert rows (those a batch's detection raised, after the batch's other rows).
pub async fn write_alerts(db: &clickhouse::Client, alerts: &[AlertRow]) -> Result<(), StoreError> {
    write_table(db, "alerts", alerts).await
}

async fn write_table<T>(db: &clickhouse::Client, table: &str, rows: &[T]) -> Result<(), StoreError>
where
    T: Row + Serialize + for<'a> clickhouse::RowWrite<Value<'a> = T>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = db.insert::<T>(table).await.map_err(ch(format!("insert into {table}")))?;
    for row in rows {
        insert.write(row).await.map_err(ch(format!("insert into {table}")))?;
    }
    insert.end().await.map_err(ch(format!("insert into {table}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_into_statements() {
        let parts = statements(MIGRATIONS[0].2);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        for (_, _, sql) in MIGRATIONS {
            for statement in statements(sql) {
                assert!(!statement.contains(';'), "{statement}");
                // The client binds `?`: a migration must hold none.
                assert!(!statement.contains('?'), "{statement}");
                if statement.starts_with("INSERT INTO ") {
                    // A backfill runs again after a crash: it must add nothing to a filled table.
                    let table = statement.split_whitespace().nth(2).unwrap_or("");
                    let guard = format!("WHERE (SELECT count() FROM {table}) = 0");
                    assert!(statement.contains(&guard), "unguarded backfill: {statement}");
                } else {
                    assert!(statement.contains(" IF NOT EXISTS "), "{statement}");
                }
            }
        }
    }

    #[test]
    fn old_partitions_expire_recent_ones_stay() {
        let days: std::collections::BTreeMap<&'static str, u32> =
            RETENTION_DEFAULT_DAYS.iter().copied().collect();
        // 2026-11-23T12:00:00Z
        let now = 1_795_435_200 * 1_000_000_000;
        let parts = |t: &str, p: &str| (t.to_string(), p.to_string());
        let listed = vec![
            parts("flows", "20261023"), // 31 days old: past flows' 30
            parts("flows", "20261024"), // the cutoff day itself stays
            parts("flows", "20261123"),
            parts("alerts", "20251123"), // 365 days: alerts keep 730
            parts("alerts", "20241122"), // 731 days: gone
            parts("schema_migrations", "tuple()"),
            parts("unknown_table", "20000101"),
        ];
        let expired = expired_partitions(&listed, &days, now);
        assert_eq!(
            expired,
            vec![("alerts".to_string(), 20241122), ("flows".to_string(), 20261023)]
        );
    }

    #[test]
    fn alerts_migration_is_one_statement_for_old_clickhouse() {
        let parts = statements(MIGRATIONS[2].2);
        let sql = &parts[0];
        assert!(sql.starts_with("CREATE TABLE IF NOT EXISTS alerts"));
        assert!(sql.contains("ReplacingMergeTree(version)") && sql.contains("toYYYYMMDD(ts)"));
        for newer in ["TTL", "CODEC", "IPv4", "IPv6", "Map(", "JSON"] {
            assert!(!sql.contains(newer), "{newer} does not exist on ClickHouse 18.16");
        }
    }

    #[test]
    fn alert_rows_carry_the_alert() {
        let golden = include_str!("../../event/tests/golden/alert.json");
        let alert = Event::from_json(golden.as_bytes()).expect("golden alert");
        let row = alert_row(&alert);
        assert_eq!(row.event_id, alert.event.id);
        let summary = alert.alert.as_ref().expect("summary");
        assert_eq!(row.count, summary.count);
        assert_eq!(row.group_keys.len(), row.group_values.len());
        assert_eq!(row.version as i64, summary.last_seen.nanos());
        assert_eq!(Event::from_json(row.raw.as_bytes()).expect("raw decodes"), alert);
    }

    #[test]
    fn addresses_are_ipv6_mapped() {
        let v4 = ip16(Some("10.1.2.3".parse().expect("ip")));
        assert_eq!(&v4[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&v4[12..], &[10, 1, 2, 3]);
        assert_eq!(ip16(None), [0; 16]);
    }
}
