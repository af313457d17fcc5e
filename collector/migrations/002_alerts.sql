-- Canh schema v2: alerts raised by detection. Runs on ClickHouse 18.16: no TTL, codecs, IP column
-- types, Map or JSON. An alert's id is deterministic (rule, tenant, group, first time), so an alert
-- written again (a replayed batch, or an update with a higher count) folds into one row on merge;
-- the row with the highest `version` (its last_seen) wins. `raw` keeps the whole alert event.

CREATE TABLE IF NOT EXISTS alerts (
    alert_id String,
    ts DateTime,
    ts_ns Int64,
    version UInt64,
    organization_id String,
    observer_id String,
    rule_id String,
    rule_name String,
    level String,
    severity UInt8,
    tags Array(String),
    technique_ids Array(String),
    event_ids Array(String),
    group_fields Array(String),
    group_values Array(String),
    first_seen_ns Int64,
    last_seen_ns Int64,
    count UInt64,
    raw String
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, rule_id, alert_id);
