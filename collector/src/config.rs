//! The collector's TOML configuration: parsed with unknown fields refused, then validated. Defaults
//! live here. Secrets come from the environment (CANH_CLICKHOUSE_PASSWORD, CANH_KAFKA_USERNAME,
//! CANH_KAFKA_PASSWORD), never from the file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaSection,
    pub clickhouse: ClickHouseSection,
    #[serde(default)]
    pub batch: BatchSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub retention: RetentionSection,
    /// Sigma detection over every consumed event. Without this section nothing is detected.
    #[serde(default)]
    pub detection: Option<DetectionSection>,
    #[serde(default)]
    pub api: ApiSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSection {
    /// Directory of Sigma rule files (read again on SIGHUP).
    pub rules_dir: PathBuf,
    /// How far behind the newest event time an event may arrive and still be correlated.
    #[serde(default = "default_lateness")]
    pub lateness: String,
    /// Correlation state entries (correlation x group key) kept at most; more are evicted.
    #[serde(default = "default_max_correlation_keys")]
    pub max_correlation_keys: usize,
    /// Alerts of one rule and group key within this window fold into one.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: String,
    /// Suppressions file (TOML, entries with rule, group, expires, reason).
    #[serde(default)]
    pub suppressions: Option<PathBuf>,
    /// Threat-intelligence indicator files (CSV or STIX 2.1 bundles), matched against flow, dns,
    /// http and tls events; read again with the rules (SIGHUP or a file change).
    #[serde(default)]
    pub intel: Vec<PathBuf>,
    /// How often per-rule health (hits, errors, evaluation time) is written to `rule_stats`.
    #[serde(default = "default_rule_stats_interval")]
    pub rule_stats_interval: String,
}

/// `canh-collector api`: the HTTP API and dashboards for analysts and responders.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Loopback by default: put it on a wider address only with TLS.
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain and private key (relative to the config file); both or neither.
    /// Without them the API speaks plain HTTP.
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Users TOML (`[[user]] name, role, tenant, token_sha256`); relative to the config file.
    #[serde(default = "default_api_users")]
    pub users: std::path::PathBuf,
    /// Most rows one query returns.
    #[serde(default = "default_api_max_rows")]
    pub max_rows: u64,
    /// Widest time window one search or pivot may cover.
    #[serde(default = "default_api_max_window")]
    pub max_window: String,
    /// ClickHouse stops a query after this long.
    #[serde(default = "default_api_query_timeout")]
    pub query_timeout: String,
}

impl Default for ApiSection {
    fn default() -> ApiSection {
        ApiSection {
            listen: default_api_listen(),
            tls_cert: None,
            tls_key: None,
            users: default_api_users(),
            max_rows: default_api_max_rows(),
            max_window: default_api_max_window(),
            query_timeout: default_api_query_timeout(),
        }
    }
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_api_users() -> std::path::PathBuf {
    "users.toml".into()
}
fn default_api_max_rows() -> u64 {
    1_000
}
fn default_api_max_window() -> String {
    "31days".into()
}
fn default_api_query_timeout() -> String {
    "10s".into()
}

/// How long each table keeps its daily partitions. Tables not listed keep their default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// How often old partitions are looked for.
    #[serde(default = "default_retention_interval")]
    pub interval: String,
    /// Table name -> days kept, overriding the defaults in `store::RETENTION_DEFAULT_DAYS`.
    #[serde(default)]
    pub days: std::collections::BTreeMap<String, u32>,
}

impl Default for RetentionSection {
    fn default() -> RetentionSection {
        RetentionSection { interval: default_retention_interval(), days: Default::default() }
    }
}

fn default_retention_interval() -> String {
    "1h".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub brokers: String,
    /// Consumer group: collectors sharing it split the partitions between them.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Topics are `<prefix><dataset>` for every dataset.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_session_timeout")]
    pub session_timeout: String,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl. SASL credentials come from the environment
    /// (CANH_KAFKA_USERNAME, CANH_KAFKA_PASSWORD), never from this file.
    #[serde(default = "default_security_protocol")]
    pub security_protocol: String,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    /// PEM file of the CAs that sign the brokers' certificates.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    #[serde(default)]
    pub ssl_certificate_location: Option<PathBuf>,
    #[serde(default)]
    pub ssl_key_location: Option<PathBuf>,
    /// How often the collector measures its group's lag (`canh_collector_kafka_lag`).
    #[serde(default = "default_lag_interval")]
    pub lag_interval: String,
    /// How the consumer fetches; the defaults suit a broker on the same network.
    #[serde(default)]
    pub consumer: ConsumerSection,
}

impl KafkaSection {
    /// TLS and SASL settings, credentials from the environment (same options as the sensor's).
    pub fn security(&self) -> canh_event::kafka::KafkaSecurity {
        canh_event::kafka::KafkaSecurity::from_env(
            &self.security_protocol,
            self.sasl_mechanism.as_deref(),
            self.ssl_ca_location.as_ref(),
            self.ssl_certificate_location.as_ref(),
            self.ssl_key_location.as_ref(),
        )
    }
}

/// Consumer fetch settings, passed to librdkafka under the names in the comments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSection {
    /// Longest time the broker holds a fetch waiting for `fetch_min_bytes` (`fetch.wait.max.ms`).
    /// Tansu 0.6 also waits part of it when data is there, so it bounds each fetch's turnaround.
    #[serde(default = "default_fetch_wait_max")]
    pub fetch_wait_max: String,
    /// Bytes a fetch waits for before the broker answers (`fetch.min.bytes`).
    #[serde(default = "default_fetch_min_bytes")]
    pub fetch_min_bytes: u32,
    /// Most bytes one fetch returns per partition (`max.partition.fetch.bytes`).
    #[serde(default = "default_max_partition_fetch_bytes")]
    pub max_partition_fetch_bytes: u32,
    /// Most KiB librdkafka prefetches and holds per partition (`queued.max.messages.kbytes`).
    #[serde(default = "default_queued_max_kbytes")]
    pub queued_max_kbytes: u32,
}

impl Default for ConsumerSection {
    fn default() -> ConsumerSection {
        ConsumerSection {
            fetch_wait_max: default_fetch_wait_max(),
            fetch_min_bytes: default_fetch_min_bytes(),
            max_partition_fetch_bytes: default_max_partition_fetch_bytes(),
            queued_max_kbytes: default_queued_max_kbytes(),
        }
    }
}

fn default_fetch_wait_max() -> String {
    "100ms".into()
}
fn default_fetch_min_bytes() -> u32 {
    1
}
fn default_max_partition_fetch_bytes() -> u32 {
    1 << 20
}
fn default_queued_max_kbytes() -> u32 {
    64 << 10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSection {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default = "default_user")]
    pub user: String,
    /// How the collector's inserts are compressed on the wire: "lz4" (default) or "none" (a
    /// collector next to ClickHouse spends no CPU on it, nor the server on undoing it).
    #[serde(default = "default_compression")]
    pub compression: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    /// A batch is written when it holds this many records...
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// ...or when its oldest record waited this long.
    #[serde(default = "default_max_wait")]
    pub max_wait: String,
    /// Longest pause between retries of a failed write.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: String,
    /// Batches handed to the writer (detection, ClickHouse, commit) and not yet committed while
    /// the reader builds the next one: 1 (default) overlaps one write with one read, 0 reads
    /// nothing while a batch is written (the collector before pipelining). At most 4.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
}

impl Default for BatchSection {
    fn default() -> BatchSection {
        BatchSection {
            max_records: default_max_records(),
            max_wait: default_max_wait(),
            max_backoff: default_max_backoff(),
            in_flight: default_in_flight(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

impl Default for AdminSection {
    fn default() -> AdminSection {
        AdminSection { listen: default_admin_listen() }
    }
}

fn default_group() -> String {
    "canh-collector".into()
}
fn default_topic_prefix() -> String {
    "canh-".into()
}
fn default_session_timeout() -> String {
    "10s".into()
}
fn default_lag_interval() -> String {
    "15s".into()
}
fn default_security_protocol() -> String {
    "plaintext".into()
}
fn default_database() -> String {
    "canh".into()
}
fn default_compression() -> String {
    "lz4".into()
}
fn default_user() -> String {
    "default".into()
}
fn default_max_records() -> usize {
    50_000
}
fn default_max_wait() -> String {
    "1s".into()
}
fn default_max_backoff() -> String {
    "10s".into()
}
fn default_in_flight() -> usize {
    1
}
fn default_lateness() -> String {
    "5m".into()
}
fn default_max_correlation_keys() -> usize {
    100_000
}
fn default_dedup_window() -> String {
    "10m".into()
}
fn default_rule_stats_interval() -> String {
    "1m".into()
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing config {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("config {path}: {field}: {message}")]
    Invalid { path: String, field: &'static str, message: String },
}

#[derive(Debug)]
pub struct Settings {
    pub config: Config,
    /// Days kept per table, defaults merged with the configured overrides.
    pub retention_days: std::collections::BTreeMap<&'static str, u32>,
    pub retention_interval: Duration,
    pub max_wait: Duration,
    pub max_backoff: Duration,
    pub session_timeout: Duration,
    pub fetch_wait_max: Duration,
    pub lag_interval: Duration,
    /// `[detection]` validated, when the section is present.
    pub detection: Option<crate::detect::Settings>,
    pub rule_stats_interval: Duration,
    pub api_max_window: Duration,
    pub api_query_timeout: Duration,
    /// `api.users` resolved against the config file's folder.
    pub api_users: std::path::PathBuf,
}

pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: name.clone(), source })?;
    let config: Config = toml::from_str(&text)
        .map_err(|source| ConfigError::Parse { path: name.clone(), source })?;
    let mut settings = validate(&name, config)?;
    // Files named by the config are relative to the config file's folder.
    if let Some(dir) = path.parent() {
        if settings.api_users.is_relative() {
            settings.api_users = dir.join(&settings.api_users);
        }
        let api = &mut settings.config.api;
        for file in [&mut api.tls_cert, &mut api.tls_key].into_iter().flatten() {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
    }
    Ok(settings)
}

pub(crate) fn validate(path: &str, config: Config) -> Result<Settings, ConfigError> {
    let invalid = |field: &'static str, message: String| ConfigError::Invalid {
        path: path.to_string(),
        field,
        message,
    };
    let duration = |field: &'static str, text: &str| {
        humantime::parse_duration(text).map_err(|e| invalid(field, format!("{text:?}: {e}")))
    };
    if config.batch.max_records == 0 {
        return Err(invalid("batch.max_records", "must be at least 1".into()));
    }
    if !matches!(config.clickhouse.compression.as_str(), "lz4" | "none") {
        return Err(invalid("clickhouse.compression", "must be \"lz4\" or \"none\"".into()));
    }
    if config.batch.in_flight > 4 {
        return Err(invalid("batch.in_flight", "must be 0 to 4".into()));
    }
    if let Err(e) = config.kafka.security().check() {
        return Err(invalid(e.field, e.message));
    }
    let db = &config.clickhouse.database;
    if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid("clickhouse.database", format!("{db:?} is not a plain identifier")));
    }
    if !config.clickhouse.url.starts_with("http://")
        && !config.clickhouse.url.starts_with("https://")
    {
        return Err(invalid("clickhouse.url", "must start with http:// or https://".into()));
    }
    let max_wait = duration("batch.max_wait", &config.batch.max_wait)?;
    let max_backoff = duration("batch.max_backoff", &config.batch.max_backoff)?;
    let session_timeout = duration("kafka.session_timeout", &config.kafka.session_timeout)?;
    let consumer = &config.kafka.consumer;
    let fetch_wait_max = duration("kafka.consumer.fetch_wait_max", &consumer.fetch_wait_max)?;
    if fetch_wait_max.is_zero() || fetch_wait_max > Duration::from_secs(300) {
        return Err(invalid("kafka.consumer.fetch_wait_max", "must be 1ms to 300s".into()));
    }
    // The ranges librdkafka accepts.
    if !(1..=100_000_000).contains(&consumer.fetch_min_bytes) {
        return Err(invalid("kafka.consumer.fetch_min_bytes", "must be 1 to 100000000".into()));
    }
    if !(1..=1_000_000_000).contains(&consumer.max_partition_fetch_bytes) {
        return Err(invalid(
            "kafka.consumer.max_partition_fetch_bytes",
            "must be 1 to 1000000000".into(),
        ));
    }
    if !(1..=2_097_151).contains(&consumer.queued_max_kbytes) {
        return Err(invalid("kafka.consumer.queued_max_kbytes", "must be 1 to 2097151".into()));
    }
    let lag_interval = duration("kafka.lag_interval", &config.kafka.lag_interval)?;
    if lag_interval.is_zero() {
        return Err(invalid("kafka.lag_interval", "must be longer than zero".into()));
    }
    let retention_interval = duration("retention.interval", &config.retention.interval)?;
    let api_max_window = duration("api.max_window", &config.api.max_window)?;
    let api_query_timeout = duration("api.query_timeout", &config.api.query_timeout)?;
    if config.api.max_rows == 0 || config.api.max_rows > 100_000 {
        return Err(invalid("api.max_rows", "must be 1 to 100000".into()));
    }
    if config.api.tls_cert.is_some() != config.api.tls_key.is_some() {
        return Err(invalid("api.tls_cert", "tls_cert and tls_key go together".into()));
    }
    let api_users = config.api.users.clone();
    let mut retention_days: std::collections::BTreeMap<&'static str, u32> =
        crate::store::RETENTION_DEFAULT_DAYS.iter().copied().collect();
    for (table, days) in &config.retention.days {
        let Some((known, _)) =
            crate::store::RETENTION_DEFAULT_DAYS.iter().find(|(name, _)| name == table)
        else {
            return Err(invalid("retention.days", format!("unknown table {table:?}")));
        };
        if *days == 0 || *days > 36_500 {
            return Err(invalid("retention.days", format!("{table}: keep 1 to 36500 days")));
        }
        retention_days.insert(known, *days);
    }
    let mut detection = None;
    let mut rule_stats_interval = Duration::from_secs(60);
    if let Some(section) = &config.detection {
        rule_stats_interval =
            duration("detection.rule_stats_interval", &section.rule_stats_interval)?;
        if rule_stats_interval.is_zero() {
            return Err(invalid("detection.rule_stats_interval", "must be above zero".into()));
        }
        if section.max_correlation_keys == 0 {
            return Err(invalid("detection.max_correlation_keys", "must be at least 1".into()));
        }
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        detection = Some(crate::detect::Settings {
            lateness_secs: secs(duration("detection.lateness", &section.lateness)?),
            dedup_window_secs: secs(duration("detection.dedup_window", &section.dedup_window)?),
            max_keys: section.max_correlation_keys,
            ..crate::detect::Settings::default()
        });
    }
    Ok(Settings {
        config,
        retention_days,
        retention_interval,
        max_wait,
        max_backoff,
        session_timeout,
        fetch_wait_max,
        lag_interval,
        detection,
        rule_stats_interval,
        api_max_window,
        api_query_timeout,
        api_users,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("collector/config exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen > 0);
    }

    #[test]
    fn detection_section_is_validated() {
        let text = r#"
            [kafka]
            brokers = "127.0.0.1:9092"
            [clickhouse]
            url = "http://127.0.0.1:8123"
            [detection]
            rules_dir = "rules"
            lateness = "2m"
        "#;
        let config: Config = toml::from_str(text).expect("parses");
        let settings = validate("c.toml", config).expect("valid");
        let detection = settings.detection.expect("detection on");
        assert_eq!(detection.lateness_secs, 120);
        assert_eq!(detection.max_keys, 100_000);
        let bad = text.replace("\"2m\"", "\"soon\"");
        let config: Config = toml::from_str(&bad).expect("parses");
        let err = validate("c.toml", config).expect_err("refused");
        assert!(err.to_string().contains("detection.lateness"), "{err}");
    }

    #[test]
    fn consumer_section_has_defaults_and_is_validated() {
        let base = r#"
            [kafka]
            brokers = "127.0.0.1:9092"
            [clickhouse]
            url = "http://127.0.0.1:8123"
        "#;
        let config: Config = toml::from_str(base).expect("parses");
        let settings = validate("c.toml", config).expect("valid");
        assert_eq!(settings.fetch_wait_max, Duration::from_millis(100));
        assert_eq!(settings.config.kafka.consumer.fetch_min_bytes, 1);
        let tuned = base.replace(
            "[clickhouse]",
            "[kafka.consumer]\nfetch_wait_max = \"20ms\"\nqueued_max_kbytes = 1024\n[clickhouse]",
        );
        let config: Config = toml::from_str(&tuned).expect("parses");
        let settings = validate("c.toml", config).expect("valid");
        assert_eq!(settings.fetch_wait_max, Duration::from_millis(20));
        assert_eq!(settings.config.kafka.consumer.queued_max_kbytes, 1024);
        for bad in ["fetch_wait_max = \"0s\"", "fetch_min_bytes = 0", "queued_max_kbytes = 3000000"]
        {
            let text =
                base.replace("[clickhouse]", &format!("[kafka.consumer]\n{bad}\n[clickhouse]"));
            let config: Config = toml::from_str(&text).expect("parses");
            let err = validate("c.toml", config).expect_err(bad);
            assert!(err.to_string().contains("kafka.consumer"), "{err}");
        }
        let unknown =
            base.replace("[clickhouse]", "[kafka.consumer]\nfetch_wait = 1\n[clickhouse]");
        assert!(toml::from_str::<Config>(&unknown).is_err());
    }

    #[test]
    fn hostile_database_name_is_refused() {
        let text = r#"
            [kafka]
            brokers = "127.0.0.1:9092"
            [clickhouse]
            url = "http://127.0.0.1:8123"
            database = "canh; DROP TABLE x"
        "#;
        let config: Config = toml::from_str(text).expect("parses");
        let err = validate("c.toml", config).expect_err("refused");
        assert!(err.to_string().contains("clickhouse.database"), "{err}");
    }

    #[test]
    fn retention_overrides_known_tables_only() {
        let base = r#"
            [kafka]
            brokers = "127.0.0.1:9092"
            [clickhouse]
            url = "http://127.0.0.1:8123"
            [retention.days]
        "#;
        let ok: Config = toml::from_str(&format!("{base}flows = 7")).expect("parses");
        let settings = validate("c.toml", ok).expect("valid");
        assert_eq!(settings.retention_days["flows"], 7);
        assert!(settings.retention_days["alerts"] > settings.retention_days["flows"]);
        let bad: Config = toml::from_str(&format!("{base}nonsense = 7")).expect("parses");
        assert!(validate("c.toml", bad).is_err());
        let zero: Config = toml::from_str(&format!("{base}logs = 0")).expect("parses");
        assert!(validate("c.toml", zero).is_err());
    }
}
