//! ClickHouse storage: the schema migrations and the typed rows written per table.

use canh_event::Event;
use clickhouse::Row;
use serde::Serialize;
use std::net::IpAddr;

/// Migrations, applied in order at start and recorded in `schema_migrations`. Each statement is
/// idempotent, so a migration cut short by a crash can run again.
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/001_initial.sql")),
    (2, "alerts", include_str!("../migrations/002_alerts.sql")),
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

/// An address in the 16-byte IPv6-mapped form the schema stores.
pub fn ip16(ip: Option<IpAddr>) -> [u8; 16] {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
        Some(IpAddr::V6(v6)) => v6.octets(),
        None => [0; 16],
    }
}

/// Where a record came from in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
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

#[derive(Debug, Row, Serialize)]
pub struct EventRow {
    pub event_id: String,
    pub ts: u32,
    pub ts_ns: i64,
    pub dataset: String,
    pub observer_id: String,
    pub organization_id: String,
    pub source_ip: [u8; 16],
    pub destination_ip: [u8; 16],
    pub community_id: String,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
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
    pub alert_id: String,
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
    pub technique_ids: Vec<String>,
    pub event_ids: Vec<String>,
    pub group_fields: Vec<String>,
    pub group_values: Vec<String>,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub count: u64,
    pub raw: String,
}

/// The row of an alert event (dataset `alert`), with the event's JSON kept whole in `raw`.
pub fn alert_row(alert: &Event) -> AlertRow {
    let rule = alert.rule.clone().unwrap_or_default();
    let summary = alert.alert.clone().unwrap_or_default();
    AlertRow {
        alert_id: alert.event.id.clone(),
        ts: datetime(alert.timestamp.nanos()),
        ts_ns: alert.timestamp.nanos(),
        version: u64::try_from(summary.last_seen.nanos()).unwrap_or(0),
        organization_id: alert.organization.id.clone(),
        observer_id: alert.observer.id.clone(),
        rule_id: rule.id,
        rule_name: rule.name,
        level: rule.level.unwrap_or_default(),
        severity: alert.event.severity.unwrap_or(0),
        tags: rule.tags.unwrap_or_default(),
        technique_ids: alert.threat.as_ref().map(|t| t.technique.id.clone()).unwrap_or_default(),
        event_ids: summary.event_ids,
        group_fields: summary.group.keys().cloned().collect(),
        group_values: summary.group.values().cloned().collect(),
        first_seen_ns: summary.first_seen.nanos(),
        last_seen_ns: summary.last_seen.nanos(),
        count: summary.count,
        raw: alert.to_json(),
    }
}

/// Seconds for a DateTime column: clamped to its range (1970..2106).
fn datetime(ts_ns: i64) -> u32 {
    u32::try_from(ts_ns.div_euclid(1_000_000_000).max(0)).unwrap_or(u32::MAX)
}

pub fn flow_row(event: &Event, origin: &Origin) -> FlowRow {
    let source = event.source.clone().unwrap_or_default();
    let destination = event.destination.clone().unwrap_or_default();
    let network = event.network.clone().unwrap_or_default();
    let flow = event.flow.clone().unwrap_or_default();
    let start = event.event.start.unwrap_or(event.timestamp).nanos();
    let end = event.event.end.unwrap_or(event.timestamp).nanos();
    FlowRow {
        event_id: event.event.id.clone(),
        ts: datetime(event.timestamp.nanos()),
        ts_ns: event.timestamp.nanos(),
        observer_id: event.observer.id.clone(),
        organization_id: event.organization.id.clone(),
        start_ns: start,
        end_ns: end,
        duration_ns: event.event.duration.unwrap_or(end - start),
        source_ip: ip16(source.ip),
        source_port: source.port.unwrap_or(0),
        source_packets: source.packets.unwrap_or(0),
        source_bytes: source.bytes.unwrap_or(0),
        destination_ip: ip16(destination.ip),
        destination_port: destination.port.unwrap_or(0),
        destination_packets: destination.packets.unwrap_or(0),
        destination_bytes: destination.bytes.unwrap_or(0),
        transport: network.transport.unwrap_or_default(),
        iana_number: network.iana_number.unwrap_or(0),
        community_id: network.community_id.unwrap_or_default(),
        vlan_id: network.vlan.map(|v| v.id),
        inner_vlan_id: network.inner.and_then(|i| i.vlan).map(|v| v.id),
        state: flow.state.unwrap_or_default(),
        history: flow.history.unwrap_or_default(),
        orig_payload_bytes: flow.orig_payload_bytes.unwrap_or(0),
        resp_payload_bytes: flow.resp_payload_bytes.unwrap_or(0),
        missed_bytes: flow.missed_bytes.unwrap_or(0),
        reason: flow.reason.unwrap_or_default(),
        kafka_partition: origin.partition,
        kafka_offset: origin.offset,
    }
}

pub fn event_row(event: &Event, raw: &[u8], origin: &Origin) -> EventRow {
    EventRow {
        event_id: event.event.id.clone(),
        ts: datetime(event.timestamp.nanos()),
        ts_ns: event.timestamp.nanos(),
        dataset: event.event.dataset.as_str().to_string(),
        observer_id: event.observer.id.clone(),
        organization_id: event.organization.id.clone(),
        source_ip: ip16(event.source.as_ref().and_then(|s| s.ip)),
        destination_ip: ip16(event.destination.as_ref().and_then(|d| d.ip)),
        community_id: event
            .network
            .as_ref()
            .and_then(|n| n.community_id.clone())
            .unwrap_or_default(),
        raw: raw.to_vec(),
        kafka_partition: origin.partition,
        kafka_offset: origin.offset,
    }
}

/// Rows of one batch, by table.
#[derive(Debug, Default)]
pub struct Batch {
    pub flows: Vec<FlowRow>,
    pub events: Vec<EventRow>,
    pub dead_letters: Vec<DeadLetterRow>,
    pub alerts: Vec<AlertRow>,
    /// Decoded events waiting for detection (filled only when detection is on).
    pub detect_inputs: Option<Vec<serde_json::Value>>,
}

impl Batch {
    /// A batch that keeps decoded events for detection when `detect` is set.
    pub fn new(detect: bool) -> Batch {
        Batch { detect_inputs: detect.then(Vec::new), ..Batch::default() }
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.flows.len() + self.events.len() + self.dead_letters.len() + self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Write a batch, table by table. A failure leaves the caller to retry the whole batch: rows that
/// did land are folded by ReplacingMergeTree when written again.
pub async fn write(db: &clickhouse::Client, batch: &Batch) -> Result<(), StoreError> {
    write_table(db, "flows", &batch.flows).await?;
    write_table(db, "events", &batch.events).await?;
    write_table(db, "dead_letters", &batch.dead_letters).await?;
    write_table(db, "alerts", &batch.alerts).await?;
    Ok(())
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
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        assert!(parts.iter().all(|s| !s.contains(';')));
    }

    #[test]
    fn alerts_migration_is_one_statement_for_old_clickhouse() {
        let parts = statements(MIGRATIONS[1].2);
        assert_eq!(parts.len(), 1);
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
        assert_eq!(row.alert_id, alert.event.id);
        let summary = alert.alert.as_ref().expect("summary");
        assert_eq!(row.count, summary.count);
        assert_eq!(row.group_fields.len(), row.group_values.len());
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
