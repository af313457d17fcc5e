-- Alerts, their triage state, and the audit trail of every query and triage action.

-- An alert's id is deterministic (rule, tenant, group, first seen), so an alert written again (a
-- replayed batch, or an update with a higher count) folds into one row; the row with the highest
-- `version` (its last_seen) wins. `ts` is the first-seen time, the same for every update.
CREATE TABLE IF NOT EXISTS alerts (
    event_id String,
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
    techniques Array(String),
    event_ids Array(String),
    group_keys Array(String),
    group_values Array(String),
    first_seen_ns Int64,
    last_seen_ns Int64,
    count UInt64,
    raw String
) ENGINE = ReplacingMergeTree(version)
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
