-- Typed tables for the protocol and log datasets, the sensor-health table, and the aggregate tables
-- the dashboards read, fed by materialized views. Same rules as 001: valid on ClickHouse 18.16 and
-- current releases; ReplacingMergeTree on a sorting key that ends in event_id; `raw` keeps the
-- whole event as received, so fields without a column yet are never lost.

CREATE TABLE IF NOT EXISTS dns (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    source_ip FixedString(16),
    source_port UInt16,
    destination_ip FixedString(16),
    destination_port UInt16,
    transport String,
    community_id String,
    dns_id UInt16,
    dns_type String,
    op_code String,
    question_name String,
    question_type String,
    question_class String,
    response_code String,
    header_flags Array(String),
    answers_name Array(String),
    answers_type Array(String),
    answers_ttl Array(UInt32),
    answers_data Array(String),
    rtt_ns Nullable(Int64),
    raw String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, ts, event_id);

CREATE TABLE IF NOT EXISTS http (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    source_ip FixedString(16),
    source_port UInt16,
    destination_ip FixedString(16),
    destination_port UInt16,
    transport String,
    community_id String,
    version String,
    method String,
    url_domain String,
    url_original String,
    referrer String,
    user_agent String,
    status_code Nullable(UInt16),
    request_body_bytes Nullable(UInt64),
    response_body_bytes Nullable(UInt64),
    raw String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, ts, event_id);

CREATE TABLE IF NOT EXISTS tls (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    source_ip FixedString(16),
    source_port UInt16,
    destination_ip FixedString(16),
    destination_port UInt16,
    transport String,
    community_id String,
    version String,
    cipher String,
    established Nullable(UInt8),
    next_protocol String,
    server_name String,
    ja3 String,
    ja4 String,
    ja3s String,
    server_subject String,
    server_issuer String,
    server_not_before_ns Nullable(Int64),
    server_not_after_ns Nullable(Int64),
    raw String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, ts, event_id);

CREATE TABLE IF NOT EXISTS ssh (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    source_ip FixedString(16),
    source_port UInt16,
    destination_ip FixedString(16),
    destination_port UInt16,
    transport String,
    community_id String,
    client_banner String,
    server_banner String,
    raw String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, ts, event_id);

CREATE TABLE IF NOT EXISTS icmp (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    source_ip FixedString(16),
    source_port UInt16,
    destination_ip FixedString(16),
    destination_port UInt16,
    transport String,
    community_id String,
    icmp_type UInt8,
    icmp_code UInt8,
    raw String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, ts, event_id);

CREATE TABLE IF NOT EXISTS logs (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    source_ip FixedString(16),
    source_port UInt16,
    destination_ip FixedString(16),
    destination_port UInt16,
    hostname String,
    appname String,
    procid String,
    msgid String,
    priority Nullable(UInt8),
    facility String,
    severity String,
    category Array(String),
    type Array(String),
    outcome String,
    user_name String,
    process_name String,
    process_pid Nullable(UInt32),
    file_path String,
    message String,
    original String,
    parse_error String,
    raw String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, ts, event_id);

CREATE TABLE IF NOT EXISTS sensor_health (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    interface String,
    packets_received Nullable(UInt64),
    packets_dropped Nullable(UInt64),
    packets_if_dropped Nullable(UInt64),
    events_sent Nullable(UInt64),
    spool_bytes Nullable(UInt64),
    raw String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, observer_id, ts, event_id);

-- Dashboard aggregates. Materialized views see inserted blocks, before ReplacingMergeTree folds
-- replays, so a batch redelivered after a crash is counted again here (see collector/STORAGE.md).
CREATE TABLE IF NOT EXISTS events_per_minute (
    minute DateTime,
    organization_id String,
    observer_id String,
    dataset String,
    events UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (organization_id, minute, observer_id, dataset);

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_flows TO events_per_minute AS
SELECT toStartOfMinute(ts) AS minute, organization_id, observer_id, 'flow' AS dataset, count() AS events
FROM flows GROUP BY minute, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_dns TO events_per_minute AS
SELECT toStartOfMinute(ts) AS minute, organization_id, observer_id, 'dns' AS dataset, count() AS events
FROM dns GROUP BY minute, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_http TO events_per_minute AS
SELECT toStartOfMinute(ts) AS minute, organization_id, observer_id, 'http' AS dataset, count() AS events
FROM http GROUP BY minute, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_tls TO events_per_minute AS
SELECT toStartOfMinute(ts) AS minute, organization_id, observer_id, 'tls' AS dataset, count() AS events
FROM tls GROUP BY minute, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_ssh TO events_per_minute AS
SELECT toStartOfMinute(ts) AS minute, organization_id, observer_id, 'ssh' AS dataset, count() AS events
FROM ssh GROUP BY minute, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_icmp TO events_per_minute AS
SELECT toStartOfMinute(ts) AS minute, organization_id, observer_id, 'icmp' AS dataset, count() AS events
FROM icmp GROUP BY minute, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_logs TO events_per_minute AS
SELECT toStartOfMinute(ts) AS minute, organization_id, observer_id, 'log' AS dataset, count() AS events
FROM logs GROUP BY minute, organization_id, observer_id;

CREATE TABLE IF NOT EXISTS flow_bytes_per_minute (
    minute DateTime,
    organization_id String,
    source_ip FixedString(16),
    destination_ip FixedString(16),
    flows UInt64,
    packets UInt64,
    bytes UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (organization_id, minute, source_ip, destination_ip);

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_bytes_per_minute_flows TO flow_bytes_per_minute AS
SELECT toStartOfMinute(ts) AS minute, organization_id, source_ip, destination_ip,
       count() AS flows,
       sum(source_packets + destination_packets) AS packets,
       sum(source_bytes + destination_bytes) AS bytes
FROM flows GROUP BY minute, organization_id, source_ip, destination_ip;
