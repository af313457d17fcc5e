-- Per-rule health written by the collectors every minute: one row per rule per interval with what
-- happened in that interval (not running totals), so sums over any range and over several
-- collectors are right. `group_*` are the figures of the rule's group (the logsource family it is
-- evaluated in, `correlation` or `intel`): rsigma evaluates a family's rules in one call, so the
-- time is measured per family (sampled on one event in eight) and repeated on each of its rules.
CREATE TABLE IF NOT EXISTS rule_stats (
    ts DateTime,
    ts_ns Int64,
    collector String,
    rule_id String,
    rule_name String,
    level String,
    rule_group String,
    hits UInt64,
    errors UInt64,
    group_evaluations UInt64,
    group_eval_seconds Float64
) ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (rule_id, ts);
