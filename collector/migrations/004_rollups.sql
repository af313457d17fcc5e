-- Rollups for the dashboards: events per hour (7- and 30-day overviews read hours, not minutes),
-- traffic per source per hour without the destination, and each hour's top sources (top talkers). Same rules as 002: valid on
-- ClickHouse 18.16 and current releases, fed by materialized views whose column types equal the
-- table's (18.16 converts nothing on the way), daily partitions for retention.
--
-- A materialized view sees only blocks inserted after it exists, and 18.16 does not cascade views
-- (a view over events_per_minute would never fire). So each table is first backfilled from the
-- finer aggregate already stored, only while it is still empty (running this file again adds
-- nothing), and its views are created after. Rows a running collector inserts between the backfill
-- and the view creation are missing from the rollup: migrate with the collectors stopped
-- (`canh-collector migrate`) for an exact backfill. See collector/STORAGE.md.

CREATE TABLE IF NOT EXISTS events_per_hour (
    hour DateTime,
    organization_id String,
    observer_id String,
    dataset String,
    events UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(hour)
ORDER BY (organization_id, hour, observer_id, dataset);

INSERT INTO events_per_hour
SELECT toStartOfHour(minute) AS hour, organization_id, observer_id, dataset, sum(events) AS events
FROM events_per_minute
WHERE (SELECT count() FROM events_per_hour) = 0
GROUP BY hour, organization_id, observer_id, dataset;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_hour_flows TO events_per_hour AS
SELECT toStartOfHour(ts) AS hour, organization_id, observer_id, 'flow' AS dataset, count() AS events
FROM flows GROUP BY hour, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_hour_dns TO events_per_hour AS
SELECT toStartOfHour(ts) AS hour, organization_id, observer_id, 'dns' AS dataset, count() AS events
FROM dns GROUP BY hour, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_hour_http TO events_per_hour AS
SELECT toStartOfHour(ts) AS hour, organization_id, observer_id, 'http' AS dataset, count() AS events
FROM http GROUP BY hour, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_hour_tls TO events_per_hour AS
SELECT toStartOfHour(ts) AS hour, organization_id, observer_id, 'tls' AS dataset, count() AS events
FROM tls GROUP BY hour, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_hour_ssh TO events_per_hour AS
SELECT toStartOfHour(ts) AS hour, organization_id, observer_id, 'ssh' AS dataset, count() AS events
FROM ssh GROUP BY hour, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_hour_icmp TO events_per_hour AS
SELECT toStartOfHour(ts) AS hour, organization_id, observer_id, 'icmp' AS dataset, count() AS events
FROM icmp GROUP BY hour, organization_id, observer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_hour_logs TO events_per_hour AS
SELECT toStartOfHour(ts) AS hour, organization_id, observer_id, 'log' AS dataset, count() AS events
FROM logs GROUP BY hour, organization_id, observer_id;

CREATE TABLE IF NOT EXISTS source_bytes_per_hour (
    hour DateTime,
    organization_id String,
    source_ip FixedString(16),
    flows UInt64,
    packets UInt64,
    bytes UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(hour)
ORDER BY (organization_id, hour, source_ip);

INSERT INTO source_bytes_per_hour
SELECT toStartOfHour(minute) AS hour, organization_id, source_ip,
       sum(flows) AS flows, sum(packets) AS packets, sum(bytes) AS bytes
FROM flow_bytes_per_minute
WHERE (SELECT count() FROM source_bytes_per_hour) = 0
GROUP BY hour, organization_id, source_ip;

CREATE MATERIALIZED VIEW IF NOT EXISTS source_bytes_per_hour_flows TO source_bytes_per_hour AS
SELECT toStartOfHour(ts) AS hour, organization_id, source_ip,
       count() AS flows,
       sum(source_packets + destination_packets) AS packets,
       sum(source_bytes + destination_bytes) AS bytes
FROM flows GROUP BY hour, organization_id, source_ip;

-- The 100 sources with the most bytes of each hour and tenant, written by the collector once the
-- hour is settled (collector/src/rollup.rs: two hours after it began, newest hours first, and the
-- hours already stored before this migration too). Overviews over many hours sum these plus the
-- hours not summarized yet from source_bytes_per_hour: a source counts in an hour only where it was
-- among that hour's top 100 (the usual top-N-of-top-Ns approximation). Two collectors writing the
-- same hour write the same rows, which fold (read with FINAL).
CREATE TABLE IF NOT EXISTS top_sources_per_hour (
    hour DateTime,
    organization_id String,
    source_ip FixedString(16),
    flows UInt64,
    packets UInt64,
    bytes UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(hour)
ORDER BY (organization_id, hour, source_ip);
