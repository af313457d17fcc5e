-- Alerts, their triage state, and the audit trail of every query and triage action.

CREATE TABLE IF NOT EXISTS alerts (
    event_id String,
    ts DateTime,
    ts_ns Int64,
    observer_id String,
    organization_id String,
    rule_id String,
    rule_name String,
    level String,
    tags Array(String),
    techniques Array(String),
    event_ids Array(String),
    group_keys Array(String),
    group_values Array(String),
    first_seen_ns Int64,
    last_seen_ns Int64,
    count UInt64,
    raw String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (organization_id, ts, event_id);

-- Triage changes are appended; the current state of an alert is the row with the highest version
-- (argMax(status, version) or FINAL).
CREATE TABLE IF NOT EXISTS alert_triage (
    alert_id String,
    organization_id String,
    version Int64,
    status String,
    assignee String,
    reason String,
    changed_by String,
    changed_at DateTime
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(changed_at)
ORDER BY (organization_id, alert_id);

CREATE TABLE IF NOT EXISTS audit_log (
    at DateTime,
    at_ns Int64,
    user String,
    role String,
    organization_id String,
    action String,
    target String,
    detail String,
    outcome String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (at, user);
