//! The sensor's TOML configuration: parsed with unknown fields refused, then validated into typed
//! settings. Defaults live here, next to the structs.

use crate::capture::LiveOptions;
use crate::flow::FlowConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sensor: SensorSection,
    pub kafka: KafkaSection,
    #[serde(default)]
    pub input: InputSection,
    #[serde(default)]
    pub flows: FlowsSection,
    /// Live log inputs; absent: the sensor reads no logs.
    #[serde(default)]
    pub logs: Option<LogsSection>,
    #[serde(default)]
    pub spool: SpoolSection,
    #[serde(default)]
    pub uplink: UplinkSection,
    #[serde(default)]
    pub admin: Option<AdminSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    /// `observer.id` of every event.
    pub id: String,
    /// `organization.id` of every event: the province or ministry.
    pub tenant: String,
    #[serde(default)]
    pub community_id_seed: u16,
    /// Where the sensor keeps state across restarts (the event sequence epoch).
    pub state_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// Topics are `<prefix><dataset>`, e.g. `canh-flow`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// The codec's level (librdkafka `compression.level`: zstd 1..=22, lz4 0..=12, gzip 0..=9,
    /// -1 = the codec's default). Unset: 1 for zstd (BENCHMARKS.md, "Sensor uplink"), else the
    /// codec's default.
    #[serde(default)]
    pub compression_level: Option<i32>,
    #[serde(default = "default_true")]
    pub idempotence: bool,
    /// How long a batch may wait to fill, as a duration string.
    #[serde(default = "default_linger")]
    pub linger: String,
    /// How long the sensor waits at exit for Kafka to acknowledge what it sent.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout: String,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl. SASL credentials come from the environment
    /// (CANH_KAFKA_USERNAME, CANH_KAFKA_PASSWORD), never from this file.
    #[serde(default = "default_security_protocol")]
    pub security_protocol: String,
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    #[serde(default)]
    pub ssl_certificate_location: Option<PathBuf>,
    #[serde(default)]
    pub ssl_key_location: Option<PathBuf>,
    /// How long librdkafka retries a record before the uplink takes it back into the spool.
    #[serde(default = "default_message_timeout")]
    pub message_timeout: String,
}

impl KafkaSection {
    /// TLS and SASL settings, credentials from the environment.
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

/// The on-disk spool (see sensor/UPLINK.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Default: `<state_dir>/spool`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// How often the segment being written is `fsync`ed ("0s": after every batch). Records are
    /// handed to the operating system at every batch regardless, which is what `kill -9` needs;
    /// this bounds what a power loss or kernel crash can take.
    #[serde(default = "default_sync_interval")]
    pub sync_interval: String,
}

impl Default for SpoolSection {
    fn default() -> SpoolSection {
        SpoolSection {
            dir: None,
            max_bytes: default_spool_max_bytes(),
            segment_bytes: default_segment_bytes(),
            sync_interval: default_sync_interval(),
        }
    }
}

/// The path from the packet pipeline to Kafka.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSection {
    /// Events waiting in memory between the capture thread and the uplink thread.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Events handed to the producer and not yet acknowledged; beyond this, events are spooled.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Payload bytes handed to the producer and not yet acknowledged (librdkafka holds a copy of
    /// each until Kafka acknowledges it); beyond this, events are spooled.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// Events per second sent to Kafka (alerts and health excepted); 0 = no cap.
    #[serde(default)]
    pub rate_limit: u32,
    /// Period of the `sensor` health event; "0s" = none.
    #[serde(default = "default_health_interval")]
    pub health_interval: String,
    /// No acknowledgement for this long while events are in flight: the link counts as down.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: String,
    /// How long the uplink spools everything after the link went down before trying again.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff: String,
    /// Write every event to the spool before handing it to Kafka, so events already taken by the
    /// uplink survive `kill -9` (sensor/UPLINK.md). Off: only spooled events do.
    #[serde(default = "default_true")]
    pub write_ahead: bool,
    /// Events of one topic and partition go to Kafka packed in one record of up to this many
    /// bytes, one event per line (sensor/UPLINK.md); 0 = one event per record.
    #[serde(default = "default_pack_bytes")]
    pub pack_bytes: usize,
    /// A pack is sent at the latest this long after its first event.
    #[serde(default = "default_pack_linger")]
    pub pack_linger: String,
    /// How the uplink compresses each pack before it is written ahead and sent: "zstd" (one
    /// zstd frame per record, which the collector reads; sensor/UPLINK.md) or "none".
    #[serde(default = "default_pack_compression")]
    pub pack_compression: String,
    /// zstd's level for packs: 1 (its fastest positive level, the default) to 22, or a negative
    /// level (faster, less compression) down to -50.
    #[serde(default = "default_pack_compression_level")]
    pub pack_compression_level: i32,
}

impl Default for UplinkSection {
    fn default() -> UplinkSection {
        UplinkSection {
            queue_capacity: default_queue_capacity(),
            max_in_flight: default_max_in_flight(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            rate_limit: 0,
            health_interval: default_health_interval(),
            stall_timeout: default_stall_timeout(),
            retry_backoff: default_retry_backoff(),
            write_ahead: true,
            pack_bytes: default_pack_bytes(),
            pack_linger: default_pack_linger(),
            pack_compression: default_pack_compression(),
            pack_compression_level: default_pack_compression_level(),
        }
    }
}

/// The admin HTTP port: `/metrics`, `/healthz`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    #[serde(default)]
    pub pcap_files: Vec<PathBuf>,
    #[serde(default)]
    pub interface: Option<InterfaceSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    pub name: String,
    #[serde(default = "default_snaplen")]
    pub snaplen: i32,
    #[serde(default = "default_true")]
    pub promiscuous: bool,
    #[serde(default = "default_buffer_size")]
    pub buffer_size: i32,
    #[serde(default)]
    pub immediate: bool,
    #[serde(default)]
    pub filter: Option<String>,
    /// How often libpcap's counters (received, dropped) refresh the capture metrics that
    /// `/metrics` and the `sensor` health events report.
    #[serde(default = "default_stats_interval")]
    pub stats_interval: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsSection {
    #[serde(default = "default_tcp_idle")]
    pub tcp_idle_timeout: String,
    #[serde(default = "default_udp_idle")]
    pub udp_idle_timeout: String,
    #[serde(default = "default_udp_idle")]
    pub other_idle_timeout: String,
    #[serde(default = "default_close_delay")]
    pub tcp_close_delay: String,
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
}

impl Default for FlowsSection {
    fn default() -> FlowsSection {
        FlowsSection {
            tcp_idle_timeout: default_tcp_idle(),
            udp_idle_timeout: default_udp_idle(),
            other_idle_timeout: default_udp_idle(),
            tcp_close_delay: default_close_delay(),
            max_flows: default_max_flows(),
        }
    }
}

/// `[logs]`: syslog receivers and tailed files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Zone of timestamps that carry none (RFC 3164), unless an input sets its own.
    #[serde(default = "default_log_timezone")]
    pub timezone: String,
    /// Longer messages and lines are cut to this many bytes and counted.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Lines waiting between the inputs and the parser; when full, UDP drops (counted), TCP, TLS
    /// and files wait. The default (100,000, about half a second of a 200 k/s syslog flood, tens
    /// of MB at most) rides out the pipeline thread losing the CPU for a while.
    #[serde(default = "default_log_channel_capacity")]
    pub channel_capacity: usize,
    /// How often tailed files are checked for new lines, rotation and new files.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: String,
    #[serde(default)]
    pub syslog_udp: Option<SyslogUdpSection>,
    #[serde(default)]
    pub syslog_tcp: Option<SyslogTcpSection>,
    #[serde(default)]
    pub syslog_tls: Option<SyslogTlsSection>,
    #[serde(default)]
    pub files: Vec<LogFilesSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogUdpSection {
    /// `address:port`, e.g. "0.0.0.0:514".
    pub listen: String,
    #[serde(default)]
    pub timezone: Option<String>,
    /// SO_RCVBUF asked for: datagrams that arrive while the receiver is busy wait here instead of
    /// being dropped by the kernel. Linux grants at most twice `net.core.rmem_max`; the size
    /// granted is logged at start-up.
    #[serde(default = "default_udp_receive_buffer")]
    pub receive_buffer_bytes: usize,
}

fn default_udp_receive_buffer() -> usize {
    8 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTcpSection {
    pub listen: String,
    /// Connections past this are closed at once and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection silent this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    #[serde(default)]
    pub timezone: Option<String>,
}

/// RFC 5425 syslog over TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTlsSection {
    pub listen: String,
    /// PEM certificate chain and PEM private key of the listener.
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilesSection {
    /// Glob patterns, e.g. "/var/log/nginx/*.log".
    pub paths: Vec<String>,
    /// auto, syslog, json, access or error.
    #[serde(default = "default_log_format")]
    pub format: String,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Where to start in files found at the first start without a checkpoint: beginning or end.
    #[serde(default = "default_start_at")]
    pub start_at: String,
}

fn default_log_timezone() -> String {
    "+07:00".into()
}
fn default_max_message_bytes() -> usize {
    64 * 1024
}
fn default_log_channel_capacity() -> usize {
    100_000
}
fn default_poll_interval() -> String {
    "1s".into()
}
fn default_max_connections() -> usize {
    256
}
fn default_idle_timeout() -> String {
    "5m".into()
}
fn default_log_format() -> String {
    "auto".into()
}
fn default_start_at() -> String {
    "beginning".into()
}

fn default_topic_prefix() -> String {
    "canh-".into()
}
fn default_compression() -> String {
    "zstd".into()
}
fn default_true() -> bool {
    true
}
fn default_linger() -> String {
    "20ms".into()
}
fn default_flush_timeout() -> String {
    "30s".into()
}
fn default_message_timeout() -> String {
    "30s".into()
}
fn default_spool_max_bytes() -> u64 {
    1 << 30
}
fn default_segment_bytes() -> u64 {
    8 << 20
}
fn default_sync_interval() -> String {
    "1s".into()
}
fn default_queue_capacity() -> usize {
    10_000
}
fn default_max_in_flight() -> usize {
    1_000_000
}
fn default_max_in_flight_bytes() -> usize {
    64 << 20
}
fn default_health_interval() -> String {
    "30s".into()
}
fn default_stall_timeout() -> String {
    "5s".into()
}
fn default_pack_bytes() -> usize {
    128 << 10
}
fn default_pack_linger() -> String {
    "5ms".into()
}
fn default_pack_compression() -> String {
    "zstd".into()
}
fn default_pack_compression_level() -> i32 {
    1
}
/// Largest pack: below librdkafka's `message.max.bytes` and Kafka's default record size limit
/// (both about 1 MB), with room for a last event past the bound and the record's framing.
pub const MAX_PACK_BYTES: usize = 512 << 10;
fn default_retry_backoff() -> String {
    "2s".into()
}
fn default_security_protocol() -> String {
    "plaintext".into()
}
fn default_snaplen() -> i32 {
    65535
}
fn default_buffer_size() -> i32 {
    64 << 20
}
fn default_stats_interval() -> String {
    "1s".into()
}
fn default_tcp_idle() -> String {
    "5m".into()
}
fn default_udp_idle() -> String {
    "1m".into()
}
fn default_close_delay() -> String {
    "5s".into()
}
fn default_max_flows() -> usize {
    1_000_000
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

/// Validated settings.
#[derive(Debug)]
pub struct Settings {
    pub config: Config,
    pub flows: FlowConfig,
    pub linger: Duration,
    pub flush_timeout: Duration,
    pub live: Option<LiveOptions>,
    pub logs: Option<crate::logs::pipeline::LogInputs>,
    pub message_timeout: Duration,
    pub spool_dir: PathBuf,
    pub spool_sync_interval: Duration,
    /// `None`: no health events.
    pub health_interval: Option<Duration>,
    pub stall_timeout: Duration,
    pub retry_backoff: Duration,
    pub pack_linger: Duration,
    pub admin_listen: Option<std::net::SocketAddr>,
}

pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: name.clone(), source })?;
    let config: Config = toml::from_str(&text)
        .map_err(|source| ConfigError::Parse { path: name.clone(), source })?;
    validate(&name, config)
}

fn validate(path: &str, config: Config) -> Result<Settings, ConfigError> {
    let invalid = |field: &'static str, message: String| ConfigError::Invalid {
        path: path.to_string(),
        field,
        message,
    };
    let duration = |field: &'static str, text: &str| {
        humantime::parse_duration(text).map_err(|e| invalid(field, format!("{text:?}: {e}")))
    };
    if config.sensor.id.trim().is_empty() {
        return Err(invalid("sensor.id", "must not be empty".into()));
    }
    if config.sensor.tenant.trim().is_empty() {
        return Err(invalid("sensor.tenant", "must not be empty".into()));
    }
    if let Some(level) = config.kafka.compression_level.filter(|l| !(-1..=22).contains(l)) {
        return Err(invalid("kafka.compression_level", format!("{level} is not in -1..=22")));
    }
    if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&config.kafka.compression.as_str()) {
        return Err(invalid(
            "kafka.compression",
            format!("unknown codec {:?}", config.kafka.compression),
        ));
    }
    if let Err(e) = config.kafka.security().check() {
        return Err(invalid(e.field, e.message));
    }
    if config.input.pcap_files.is_empty()
        && config.input.interface.is_none()
        && config.logs.is_none()
    {
        return Err(invalid("input", "configure pcap_files, an interface or [logs]".into()));
    }
    if config.flows.max_flows == 0 {
        return Err(invalid("flows.max_flows", "must be at least 1".into()));
    }
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let flows = FlowConfig {
        tcp_idle_timeout_ns: nanos(duration(
            "flows.tcp_idle_timeout",
            &config.flows.tcp_idle_timeout,
        )?),
        udp_idle_timeout_ns: nanos(duration(
            "flows.udp_idle_timeout",
            &config.flows.udp_idle_timeout,
        )?),
        other_idle_timeout_ns: nanos(duration(
            "flows.other_idle_timeout",
            &config.flows.other_idle_timeout,
        )?),
        tcp_close_delay_ns: nanos(duration(
            "flows.tcp_close_delay",
            &config.flows.tcp_close_delay,
        )?),
        tcp_attempt_ns: crate::flow::FlowConfig::default().tcp_attempt_ns,
        max_flows: config.flows.max_flows,
    };
    if config.spool.segment_bytes < 4096 || config.spool.max_bytes < config.spool.segment_bytes {
        return Err(invalid(
            "spool",
            "segment_bytes must be at least 4096 and at most max_bytes".into(),
        ));
    }
    if config.uplink.queue_capacity == 0
        || config.uplink.max_in_flight == 0
        || config.uplink.max_in_flight_bytes == 0
    {
        return Err(invalid(
            "uplink",
            "queue_capacity, max_in_flight and max_in_flight_bytes must be at least 1".into(),
        ));
    }
    let message_timeout = duration("kafka.message_timeout", &config.kafka.message_timeout)?;
    let health_interval = duration("uplink.health_interval", &config.uplink.health_interval)?;
    let health_interval = (!health_interval.is_zero()).then_some(health_interval);
    let stall_timeout = duration("uplink.stall_timeout", &config.uplink.stall_timeout)?;
    let retry_backoff = duration("uplink.retry_backoff", &config.uplink.retry_backoff)?;
    let pack_linger = duration("uplink.pack_linger", &config.uplink.pack_linger)?;
    if config.uplink.pack_bytes > MAX_PACK_BYTES {
        return Err(invalid(
            "uplink.pack_bytes",
            format!("{} is above the limit of {MAX_PACK_BYTES}", config.uplink.pack_bytes),
        ));
    }
    if !["zstd", "none"].contains(&config.uplink.pack_compression.as_str()) {
        return Err(invalid(
            "uplink.pack_compression",
            format!("{:?} is neither \"zstd\" nor \"none\"", config.uplink.pack_compression),
        ));
    }
    if !(-50..=22).contains(&config.uplink.pack_compression_level) {
        return Err(invalid(
            "uplink.pack_compression_level",
            format!("{} is not in -50..=22", config.uplink.pack_compression_level),
        ));
    }
    let spool_sync_interval = duration("spool.sync_interval", &config.spool.sync_interval)?;
    let admin_listen = match &config.admin {
        Some(admin) => Some(
            admin
                .listen
                .parse()
                .map_err(|e| invalid("admin.listen", format!("{:?}: {e}", admin.listen)))?,
        ),
        None => None,
    };
    let spool_dir =
        config.spool.dir.clone().unwrap_or_else(|| config.sensor.state_dir.join("spool"));
    let linger = duration("kafka.linger", &config.kafka.linger)?;
    let flush_timeout = duration("kafka.flush_timeout", &config.kafka.flush_timeout)?;
    let live = match &config.input.interface {
        Some(i) => {
            let stats_interval = duration("input.interface.stats_interval", &i.stats_interval)?;
            if stats_interval.is_zero() {
                return Err(invalid("input.interface.stats_interval", "must be above 0s".into()));
            }
            Some(LiveOptions {
                interface: i.name.clone(),
                snaplen: i.snaplen,
                promiscuous: i.promiscuous,
                buffer_size: i.buffer_size,
                immediate: i.immediate,
                filter: i.filter.clone(),
                stats_interval,
            })
        }
        None => None,
    };
    let logs = match &config.logs {
        Some(section) => Some(validate_logs(path, section, &config.sensor.state_dir)?),
        None => None,
    };
    Ok(Settings {
        config,
        flows,
        linger,
        flush_timeout,
        live,
        message_timeout,
        spool_dir,
        spool_sync_interval,
        health_interval,
        stall_timeout,
        retry_backoff,
        pack_linger,
        admin_listen,
        logs,
    })
}

fn validate_logs(
    path: &str,
    logs: &LogsSection,
    state_dir: &Path,
) -> Result<crate::logs::pipeline::LogInputs, ConfigError> {
    use crate::logs::pipeline::{LogInputs, UdpSettings};
    use crate::logs::receive::StreamSettings;
    use crate::logs::tail::TailSettings;
    use crate::logs::{parse_utc_offset, LineFormat, LineOptions};
    let invalid = |field: &'static str, message: String| ConfigError::Invalid {
        path: path.to_string(),
        field,
        message,
    };
    let zone = |field: &'static str, text: &str| {
        parse_utc_offset(text).ok_or_else(|| invalid(field, format!("{text:?} is not like +07:00")))
    };
    let duration = |field: &'static str, text: &str| {
        humantime::parse_duration(text).map_err(|e| invalid(field, format!("{text:?}: {e}")))
    };
    let address = |field: &'static str, text: &str| {
        text.parse::<std::net::SocketAddr>()
            .map_err(|e| invalid(field, format!("{text:?} is not address:port: {e}")))
    };
    let default_zone = zone("logs.timezone", &logs.timezone)?;
    if logs.max_message_bytes == 0 || logs.max_message_bytes > 16 << 20 {
        return Err(invalid("logs.max_message_bytes", "must be 1 to 16777216".into()));
    }
    if logs.channel_capacity == 0 {
        return Err(invalid("logs.channel_capacity", "must be at least 1".into()));
    }
    // Network inputs: a missing PRI means user.notice (RFC 3164 4.3.3).
    let network =
        |field: &'static str, timezone: &Option<String>| -> Result<LineOptions, ConfigError> {
            Ok(LineOptions {
                format: LineFormat::Syslog,
                utc_offset_secs: match timezone {
                    Some(t) => zone(field, t)?,
                    None => default_zone,
                },
                default_priority: Some(13),
            })
        };
    let udp = match &logs.syslog_udp {
        Some(u) => Some(UdpSettings {
            listen: address("logs.syslog_udp.listen", &u.listen)?,
            max_bytes: logs.max_message_bytes,
            receive_buffer_bytes: match u.receive_buffer_bytes {
                0 => {
                    return Err(invalid(
                        "logs.syslog_udp.receive_buffer_bytes",
                        "must be at least 1".into(),
                    ))
                }
                n => n.min(1 << 30),
            },
            options: network("logs.syslog_udp.timezone", &u.timezone)?,
        }),
        None => None,
    };
    let tcp = match &logs.syslog_tcp {
        Some(t) => Some(StreamSettings {
            listen: address("logs.syslog_tcp.listen", &t.listen)?,
            max_connections: t.max_connections.max(1),
            idle_timeout: duration("logs.syslog_tcp.idle_timeout", &t.idle_timeout)?,
            max_bytes: logs.max_message_bytes,
            options: network("logs.syslog_tcp.timezone", &t.timezone)?,
            tls: None,
        }),
        None => None,
    };
    let tls = match &logs.syslog_tls {
        Some(t) => Some(StreamSettings {
            listen: address("logs.syslog_tls.listen", &t.listen)?,
            max_connections: t.max_connections.max(1),
            idle_timeout: duration("logs.syslog_tls.idle_timeout", &t.idle_timeout)?,
            max_bytes: logs.max_message_bytes,
            options: network("logs.syslog_tls.timezone", &t.timezone)?,
            tls: Some((t.cert.clone(), t.key.clone())),
        }),
        None => None,
    };
    let mut files = Vec::new();
    for f in &logs.files {
        let format = LineFormat::parse(&f.format).ok_or_else(|| {
            invalid("logs.files.format", format!("unknown format {:?}", f.format))
        })?;
        let start_at_end = match f.start_at.as_str() {
            "beginning" => false,
            "end" => true,
            other => {
                return Err(invalid("logs.files.start_at", format!("{other:?}: beginning or end")))
            }
        };
        if f.paths.is_empty() {
            return Err(invalid("logs.files.paths", "must name at least one path".into()));
        }
        files.push(TailSettings {
            patterns: f.paths.clone(),
            options: LineOptions {
                format,
                utc_offset_secs: match &f.timezone {
                    Some(t) => zone("logs.files.timezone", t)?,
                    None => default_zone,
                },
                default_priority: None,
            },
            start_at_end,
            max_bytes: logs.max_message_bytes,
        });
    }
    Ok(LogInputs {
        channel_capacity: logs.channel_capacity,
        udp,
        tcp,
        tls,
        files,
        poll_interval: duration("logs.poll_interval", &logs.poll_interval)?,
        checkpoint_path: state_dir.join("log-checkpoints"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("sensor/config exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen > 0, "no example configs in {}", dir.display());
    }

    #[test]
    fn logs_section_is_validated() {
        let base = r#"
            [sensor]
            id = "s"
            tenant = "t"
            state_dir = "/tmp/x"
            [kafka]
            brokers = "127.0.0.1:9092"
            [logs]
            timezone = "+07:00"
            [logs.syslog_udp]
            listen = "127.0.0.1:5514"
            [[logs.files]]
            paths = ["/var/log/*.log"]
        "#;
        let config: Config = toml::from_str(base).expect("parses");
        let settings = validate("x.toml", config).expect("logs alone are an input");
        let logs = settings.logs.expect("logs settings");
        assert_eq!(logs.udp.as_ref().map(|u| u.options.utc_offset_secs), Some(25_200));
        assert_eq!(logs.udp.as_ref().and_then(|u| u.options.default_priority), Some(13));
        assert_eq!(logs.files[0].options.default_priority, None);
        assert_eq!(logs.checkpoint_path, Path::new("/tmp/x/log-checkpoints"));
        for (from, to, field) in [
            ("+07:00", "UTC+7", "logs.timezone"),
            ("127.0.0.1:5514", "localhost", "logs.syslog_udp.listen"),
            ("[[logs.files]]", "[[logs.files]]\nformat = \"xml\"", "logs.files.format"),
        ] {
            let config: Config = toml::from_str(&base.replace(from, to)).expect("parses");
            let err = validate("x.toml", config).expect_err("invalid");
            assert!(err.to_string().contains(field), "{err}");
        }
        assert!(toml::from_str::<Config>(&base.replace("[logs]", "[logs]\ntypo = 1")).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let text = r#"
            [sensor]
            id = "s"
            tenant = "t"
            state_dir = "/tmp/x"
            [kafka]
            brokers = "127.0.0.1:9092"
            compression = "brotli"
            [input]
            pcap_files = ["a.pcap"]
        "#;
        let config: Config = toml::from_str(text).expect("parses");
        let err = validate("x.toml", config).expect_err("bad codec");
        assert!(err.to_string().contains("kafka.compression"), "{err}");
        let unknown = toml::from_str::<Config>(&text.replace("[input]", "[input]\ntypo = 1"));
        assert!(unknown.is_err());
        let zstd = text.replace("\"brotli\"", "\"zstd\"");
        for (line, field) in [
            ("pack_compression = \"lz4\"", "uplink.pack_compression"),
            ("pack_compression_level = 23", "uplink.pack_compression_level"),
            ("pack_compression_level = -51", "uplink.pack_compression_level"),
        ] {
            let config: Config =
                toml::from_str(&format!("{zstd}\n[uplink]\n{line}\n")).expect("parses");
            let err = validate("x.toml", config).expect_err(line);
            assert!(err.to_string().contains(field), "{err}");
        }
        let config: Config = toml::from_str(&zstd).expect("parses");
        let settings = validate("x.toml", config).expect("valid");
        let uplink = &settings.config.uplink;
        assert_eq!((uplink.pack_compression.as_str(), uplink.pack_compression_level), ("zstd", 1));
    }

    #[test]
    fn capture_stats_interval_defaults_and_is_checked() {
        let base = r#"
            [sensor]
            id = "s"
            tenant = "t"
            state_dir = "/tmp/x"
            [kafka]
            brokers = "127.0.0.1:9092"
            [input.interface]
            name = "eth1"
        "#;
        let settings = validate("x.toml", toml::from_str(base).expect("parses")).expect("valid");
        let live = settings.live.expect("live capture configured");
        assert_eq!(live.stats_interval, Duration::from_secs(1));
        for (value, ok) in [("\"250ms\"", true), ("\"0s\"", false), ("\"soon\"", false)] {
            let text = format!("{base}stats_interval = {value}\n");
            let result = validate("x.toml", toml::from_str(&text).expect("parses"));
            match result {
                Ok(s) => {
                    assert!(ok, "{value} accepted");
                    let live = s.live.expect("live");
                    assert_eq!(live.stats_interval, Duration::from_millis(250));
                }
                Err(err) => {
                    assert!(!ok, "{value}: {err}");
                    assert!(err.to_string().contains("input.interface.stats_interval"), "{err}");
                }
            }
        }
    }

    #[test]
    fn uplink_sections_are_checked() {
        let base = r#"
            [sensor]
            id = "s"
            tenant = "t"
            state_dir = "/tmp/x"
            [kafka]
            brokers = "127.0.0.1:9092"
            [input]
            pcap_files = ["a.pcap"]
        "#;
        let settings = validate("x.toml", toml::from_str(base).expect("parses")).expect("valid");
        assert_eq!(settings.spool_dir, PathBuf::from("/tmp/x/spool"));
        assert_eq!(settings.health_interval, Some(Duration::from_secs(30)));
        assert!(settings.admin_listen.is_none());
        let bad = [
            ("[spool]\nsegment_bytes = 10", "spool"),
            ("[spool]\nmax_bytes = 5000\nsegment_bytes = 8000", "spool"),
            ("[uplink]\nmax_in_flight = 0", "uplink"),
            ("[uplink]\nhealth_interval = \"often\"", "uplink.health_interval"),
            ("[admin]\nlisten = \"localhost\"", "admin.listen"),
        ];
        for (extra, field) in bad {
            let config: Config = toml::from_str(&format!("{base}\n{extra}")).expect("parses");
            let err = validate("x.toml", config).expect_err(extra);
            assert!(err.to_string().contains(field), "{extra}: {err}");
        }
        let level = base.replace("[input]", "compression_level = 30\n            [input]");
        let err = validate("x.toml", toml::from_str(&level).expect("parses")).expect_err("level");
        assert!(err.to_string().contains("kafka.compression_level"), "{err}");
        let off: Config =
            toml::from_str(&format!("{base}\n[uplink]\nhealth_interval = \"0s\"")).expect("parses");
        assert_eq!(validate("x.toml", off).expect("valid").health_interval, None);
    }
}
