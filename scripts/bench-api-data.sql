-- Synthetic data for scripts/bench-api.sh (BENCHMARKS.md, "API latency"): 10,000,000 flows spread
-- evenly over the 10 days before now, 4 organizations, 16 sensors, sources in 10.0.0.0/13, 200
-- destinations, every flow with its own address pair; 10,000 alerts of 20 rules. Run it against a
-- database migrated by `canh-collector migrate`, e.g.
--   clickhouse-client --port PORT -d bench --multiquery < scripts/bench-api-data.sql
-- The materialized views fill the aggregate tables as the rows go in. (ClickHouse 18.16 folds two
-- select expressions that are the same into one column, so no two expressions here are equal.)

INSERT INTO flows
SELECT
    concat('bench-', toString(number)) AS event_id,
    toDateTime(toUInt32(now()) - 864000 + intDiv(number * 864, 10000)) AS ts,
    (toInt64(toUInt32(now()) - 864000) * 1000000000) + toInt64(number * 86400) AS ts_ns,
    concat('sensor-', toString(number % 16)) AS observer_id,
    concat('org-', toString(number % 4 + 1)) AS organization_id,
    ts_ns AS start_ns,
    ts_ns + 1500000000 AS end_ns,
    1500000000 AS duration_ns,
    IPv4ToIPv6(toUInt32(167772160 + number % 524288)) AS source_ip,
    toUInt16(1024 + number % 60000) AS source_port,
    toUInt64(1 + number % 20) AS source_packets,
    toUInt64(60 + (number * 7) % 15000) AS source_bytes,
    IPv4ToIPv6(toUInt32(2886729728 + intDiv(number, 524288) % 200)) AS destination_ip,
    toUInt16([22, 53, 80, 443, 123, 445, 3389, 8080][number % 8 + 1]) AS destination_port,
    toUInt64(1 + number % 30) AS destination_packets,
    toUInt64(60 + (number * 13) % 90000) AS destination_bytes,
    if(number % 8 IN (1, 4), 'udp', 'tcp') AS transport,
    toUInt8(if(number % 8 IN (1, 4), 17, 6)) AS iana_number,
    concat('1:', toString(cityHash64(number))) AS community_id,
    CAST(NULL AS Nullable(UInt16)) AS vlan_id,
    CAST(NULL AS Nullable(UInt16)) AS inner_vlan_id,
    ['SF', 'S0', 'RSTO', 'SH'][number % 4 + 1] AS state,
    'ShADadFf' AS history,
    toUInt64(number % 5000) AS orig_payload_bytes,
    toUInt64(number % 70000) AS resp_payload_bytes,
    toUInt64(0) AS missed_bytes,
    'idle' AS reason,
    toInt32(number % 4) AS kafka_partition,
    toInt64(number) AS kafka_offset
FROM numbers(10000000);

INSERT INTO alerts
SELECT
    concat('bench-alert-', toString(number)) AS event_id,
    toDateTime(toUInt32(now()) - 864000 + intDiv(number * 864000, 10000)) AS ts,
    toInt64(toUInt32(ts)) * 1000000000 AS ts_ns,
    toUInt64(ts_ns) AS version,
    concat('org-', toString(number % 4 + 1)) AS organization_id,
    concat('sensor-', toString(number % 16)) AS observer_id,
    concat('rule-', toString(number % 20)) AS rule_id,
    concat('Bench rule ', toString(number % 20)) AS rule_name,
    ['low', 'medium', 'high', 'critical'][number % 4 + 1] AS level,
    toUInt8(number % 4 * 25 + 25) AS severity,
    ['attack.discovery'] AS tags,
    ['T1046'] AS techniques,
    [concat('bench-', toString(number * 1000))] AS event_ids,
    ['source.ip'] AS group_keys,
    [IPv4NumToString(toUInt32(167772160 + number % 524288))] AS group_values,
    ts_ns + 0 AS first_seen_ns,
    ts_ns + 60000000000 AS last_seen_ns,
    toUInt64(1) AS count,
    '{}' AS raw
FROM numbers(10000);
