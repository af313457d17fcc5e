//! Every metric the collector exports. Names follow `canh_collector_<noun>_<unit>[_total]`; labels
//! come from fixed sets only.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Reasons a record goes to the dead-letter table.
pub const DEAD_LETTER_REASONS: [&str; 6] =
    ["empty", "invalid_json", "wrong_types", "unknown_dataset", "schema_version", "missing_fields"];

pub struct Metrics {
    pub registry: Registry,
    /// Events consumed (a Kafka record holds one, or a pack of them one per line), by outcome.
    pub records: IntCounterVec,
    /// Kafka records consumed.
    pub kafka_records: IntCounter,
    pub errors: IntCounterVec,
    pub rows_written: IntCounterVec,
    pub write_seconds: Histogram,
    /// Producing a batch's alerts (until acknowledged) and committing its offsets.
    pub commit_seconds: Histogram,
    pub write_retries: IntCounter,
    pub commits: IntCounter,
    pub batch_records: IntGauge,
    /// Kafka partitions the group has given this collector (0: joined but idle, or re-forming).
    pub kafka_partitions: IntGauge,
    /// Records the group has still to read, by topic and partition (see `lag.rs`).
    pub kafka_lag: IntGaugeVec,
    /// Detection: events evaluated, alerts by outcome, late events, evictions, state, time.
    pub detect_events: IntCounter,
    /// Of those, the events made a JSON value for rule evaluation (a rule may match them or an
    /// indicator hits them); the others were decided on the batch's tape.
    pub detect_value_events: IntCounter,
    pub alerts: IntCounterVec,
    pub detect_late_events: IntCounter,
    pub correlation_evictions: IntCounter,
    pub correlation_keys: IntGauge,
    pub detect_seconds: Histogram,
    pub rules_loaded: IntGauge,
    pub rule_reloads: IntCounterVec,
    pub rule_hits: IntCounterVec,
    pub rule_errors: IntCounterVec,
    pub rule_group_evaluations: IntCounterVec,
    pub rule_group_eval_seconds: prometheus::CounterVec,
}

/// Outcomes of an alert candidate.
pub const ALERT_OUTCOMES: [&str; 3] = ["raised", "deduplicated", "suppressed"];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let records = IntCounterVec::new(
            Opts::new(
                "canh_collector_records_total",
                "events consumed (lines of Kafka records), by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let kafka_records = IntCounter::new(
            "canh_collector_kafka_records_total",
            "Kafka records consumed (one event or a pack of events each)",
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("canh_collector_errors_total", "errors by stage and reason"),
            &["stage", "reason"],
        )
        .expect("valid metric");
        let rows_written = IntCounterVec::new(
            Opts::new("canh_collector_rows_written_total", "rows written to ClickHouse, by table"),
            &["table"],
        )
        .expect("valid metric");
        let write_seconds = Histogram::with_opts(HistogramOpts::new(
            "canh_collector_write_seconds",
            "time to write one batch to ClickHouse",
        ))
        .expect("valid metric");
        let commit_seconds = Histogram::with_opts(HistogramOpts::new(
            "canh_collector_commit_seconds",
            "time from a batch stored to its offsets committed (its alerts produced first)",
        ))
        .expect("valid metric");
        let write_retries = IntCounter::new(
            "canh_collector_write_retries_total",
            "batch writes retried after a ClickHouse error",
        )
        .expect("valid metric");
        let commits = IntCounter::new(
            "canh_collector_commits_total",
            "Kafka offset commits after a successful write",
        )
        .expect("valid metric");
        let batch_records =
            IntGauge::new("canh_collector_batch_records", "records waiting in the current batch")
                .expect("valid metric");
        let kafka_partitions = IntGauge::new(
            "canh_collector_kafka_partitions_assigned",
            "Kafka partitions the consumer group has assigned to this collector",
        )
        .expect("valid metric");
        let kafka_lag = IntGaugeVec::new(
            Opts::new(
                "canh_collector_kafka_lag",
                "records the consumer group has still to read, by topic and partition",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let detect_events =
            IntCounter::new("canh_collector_detect_events_total", "events evaluated by detection")
                .expect("valid metric");
        let detect_value_events = IntCounter::new(
            "canh_collector_detect_value_events_total",
            "events detection made a json value of (a rule may match them or an indicator hits)",
        )
        .expect("valid metric");
        let alerts = IntCounterVec::new(
            Opts::new("canh_collector_alerts_total", "alert candidates by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let detect_late_events = IntCounter::new(
            "canh_collector_detect_late_events_total",
            "events too far behind the newest event time to enter correlation",
        )
        .expect("valid metric");
        let correlation_evictions = IntCounter::new(
            "canh_collector_correlation_evictions_total",
            "correlation and deduplication keys evicted at the cap",
        )
        .expect("valid metric");
        let correlation_keys =
            IntGauge::new("canh_collector_correlation_keys", "correlation state entries held")
                .expect("valid metric");
        let detect_seconds = Histogram::with_opts(HistogramOpts::new(
            "canh_collector_detect_seconds",
            "time to run detection over one batch",
        ))
        .expect("valid metric");
        let rules_loaded =
            IntGauge::new("canh_collector_rules_loaded", "Sigma rules in the active rule set")
                .expect("valid metric");
        let rule_reloads = IntCounterVec::new(
            Opts::new("canh_collector_rule_reloads_total", "rule set reloads by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        // Labelled by rule id and rule group: both come from the loaded rule set (bounded by
        // it), never from event data.
        let rule_hits = IntCounterVec::new(
            Opts::new(
                "canh_collector_rule_hits_total",
                "events matched (correlations: alerts raised), by rule",
            ),
            &["rule"],
        )
        .expect("valid metric");
        let rule_errors = IntCounterVec::new(
            Opts::new(
                "canh_collector_rule_errors_total",
                "rule matches correlation could not use (no timestamp, too late), by rule",
            ),
            &["rule"],
        )
        .expect("valid metric");
        let rule_group_evaluations = IntCounterVec::new(
            Opts::new(
                "canh_collector_rule_group_evaluations_total",
                "events evaluated by the rules of one logsource family",
            ),
            &["group"],
        )
        .expect("valid metric");
        let rule_group_eval_seconds = prometheus::CounterVec::new(
            Opts::new(
                "canh_collector_rule_group_eval_seconds_total",
                "time spent evaluating one logsource family's rules (sampled, 1 event in 8)",
            ),
            &["group"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(rule_hits.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rule_errors.clone()),
            Box::new(rule_group_evaluations.clone()),
            Box::new(rule_group_eval_seconds.clone()),
            Box::new(detect_events.clone()),
            Box::new(detect_value_events.clone()),
            Box::new(alerts.clone()),
            Box::new(detect_late_events.clone()),
            Box::new(correlation_evictions.clone()),
            Box::new(correlation_keys.clone()),
            Box::new(detect_seconds.clone()),
            Box::new(rules_loaded.clone()),
            Box::new(rule_reloads.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        for outcome in ALERT_OUTCOMES {
            alerts.with_label_values(&[outcome]);
        }
        for outcome in ["applied", "rejected"] {
            rule_reloads.with_label_values(&[outcome]);
        }
        for metric in [
            Box::new(records.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(kafka_records.clone()),
            Box::new(errors.clone()),
            Box::new(rows_written.clone()),
            Box::new(write_seconds.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(write_retries.clone()),
            Box::new(commits.clone()),
            Box::new(batch_records.clone()),
            Box::new(kafka_partitions.clone()),
            Box::new(kafka_lag.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        for outcome in ["stored", "dead_letter"] {
            records.with_label_values(&[outcome]);
        }
        for reason in DEAD_LETTER_REASONS {
            errors.with_label_values(&["decode", reason]);
        }
        errors.with_label_values(&["lag", "kafka"]);
        Metrics {
            registry,
            records,
            kafka_records,
            errors,
            rows_written,
            write_seconds,
            commit_seconds,
            write_retries,
            commits,
            batch_records,
            kafka_partitions,
            kafka_lag,
            detect_events,
            detect_value_events,
            alerts,
            detect_late_events,
            correlation_evictions,
            correlation_keys,
            detect_seconds,
            rules_loaded,
            rule_reloads,
            rule_hits,
            rule_errors,
            rule_group_evaluations,
            rule_group_eval_seconds,
        }
    }

    /// Replace the lag gauges with one measurement (partitions no longer there disappear).
    pub fn set_kafka_lag(&self, lag: &[crate::lag::PartitionLag]) {
        self.kafka_lag.reset();
        for partition in lag {
            self.kafka_lag
                .with_label_values(&[partition.topic.as_str(), &partition.partition.to_string()])
                .set(partition.lag);
        }
    }

    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        // Text encoding of gathered families only fails on invalid metric data, which the fixed
        // definitions above cannot produce.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_health_metrics_render_with_their_labels() {
        let metrics = Metrics::new();
        metrics.rule_hits.with_label_values(&["r1"]).inc_by(3);
        metrics.rule_errors.with_label_values(&["r1"]).inc();
        metrics.rule_group_evaluations.with_label_values(&["dns"]).inc_by(10);
        metrics.rule_group_eval_seconds.with_label_values(&["dns"]).inc_by(0.5);
        let text = metrics.render();
        for line in [
            "canh_collector_rule_hits_total{rule=\"r1\"} 3",
            "canh_collector_rule_errors_total{rule=\"r1\"} 1",
            "canh_collector_rule_group_evaluations_total{group=\"dns\"} 10",
            "canh_collector_rule_group_eval_seconds_total{group=\"dns\"} 0.5",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
