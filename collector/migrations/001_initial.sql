-- Canh schema v1. Runs on ClickHouse 18.16 and on current releases: no TTL, codecs or IP column
-- types. Addresses are FixedString(16) in IPv6-mapped form (read them with IPv6NumToString).
-- Timestamps: `ts` (DateTime, seconds) partitions and orders; `*_ns` columns keep nanoseconds.
-- Duplicates from replays carry the same event_id and the same sorting key, so ReplacingMergeTree
-- folds them on merge; queries that must count exactly use FINAL (or GROUP BY event_id).

CREATE TABLE IF NOT EXISTS flows (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    start_ns Int64,
    end_ns Int64,
    duration_ns Int64,
    source_ip FixedString(16),
    source_port UInt16,
    source_packets UInt64,
    source_bytes UInt64,
    destination_ip FixedString(16),
    destination_port UInt16,
    destination_packets UInt64,
    destination_bytes UInt64,
    transport String,
    iana_number UInt8,
    community_id String,
    vlan_id Nullable(UInt16),
    inner_vlan_id Nullable(UInt16),
    state String,
    history String,
    orig_payload_bytes UInt64,
    resp_payload_bytes UInt64,
    missed_bytes UInt64,
    reason String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, ts, event_id);

-- Records that could not be stored, with the reason and where they came from.
CREATE TABLE IF NOT EXISTS dead_letters (
    received_at DateTime,
    topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    reason String,
    error String,
    raw String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (topic, kafka_partition, kafka_offset);
