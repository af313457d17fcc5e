//! Every metric the sensor exports. Names follow `canh_sensor_<noun>_<unit>[_total]`; labels come from
//! fixed sets only.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub packets: IntCounter,
    /// libpcap's counters of a live capture, by interface: see [`Metrics::record_capture`].
    pub capture_received: IntCounterVec,
    pub capture_dropped: IntCounterVec,
    pub capture_if_dropped: IntCounterVec,
    pub decode_errors: IntCounterVec,
    pub flows_active: IntGauge,
    pub flow_evictions: IntCounter,
    /// Protocol metadata lost to a cap or a parse error, by reason.
    pub metadata_drops: IntCounterVec,
    /// IP fragments: packets reassembled, and incomplete ones dropped, by reason.
    pub fragments: IntCounterVec,
    pub events: IntCounterVec,
    pub kafka_delivered: IntCounter,
    /// Kafka records acknowledged (a record holds one event or a pack of them).
    pub kafka_records: IntCounter,
    pub kafka_errors: IntCounter,
    /// Log lines read, by input kind (`file`, `udp`, `tcp`, `tls`, `stdin`).
    pub log_lines: IntCounterVec,
    /// Log lines no parser understood, by `logs::LineError` reason.
    pub log_parse_errors: IntCounterVec,
    /// Log lines (or syslog messages) cut at the maximum size, by input kind.
    pub log_truncated: IntCounterVec,
    /// Log events dropped because the channel to the uplink was full, by input kind.
    pub log_dropped: IntCounterVec,
    /// TCP/TLS syslog connections refused because the connection limit was reached.
    pub log_connections_refused: IntCounter,
    /// Datagrams the kernel dropped on the syslog UDP socket (from /proc/net/udp).
    pub log_udp_kernel_drops: IntGauge,
    pub kafka_delivery_seconds: Histogram,
    pub in_flight: IntGauge,
    pub link_up: IntGauge,
    pub spool_bytes: IntGauge,
    pub spool_oldest_age_seconds: IntGauge,
    pub spooled: IntCounter,
    pub drained: IntCounter,
    pub dropped: IntCounterVec,
    pub spool_damaged_regions: IntCounter,
    pub spool_damaged_bytes: IntCounter,
    pub spool_errors: IntCounter,
    pub write_ahead_skipped: IntCounter,
    /// JSON bytes of the packs the uplink compressed, and the bytes they compressed to.
    pub pack_plain_bytes: IntCounter,
    pub pack_compressed_bytes: IntCounter,
    /// Times a thread making events found the uplink's queue full and waited for it, and how long
    /// those waits took together.
    pub uplink_queue_full: IntCounter,
    pub uplink_queue_wait_seconds: prometheus::Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let packets = IntCounter::new("canh_sensor_packets_total", "packets read from captures")
            .expect("valid metric");
        let capture_received = IntCounterVec::new(
            Opts::new(
                "canh_sensor_capture_received_packets_total",
                "packets the live capture filter accepted (libpcap ps_recv; on Linux including the ones then dropped)",
            ),
            &["interface"],
        )
        .expect("valid metric");
        let capture_dropped = IntCounterVec::new(
            Opts::new(
                "canh_sensor_capture_kernel_dropped_packets_total",
                "packets the kernel dropped because the capture buffer was full (libpcap ps_drop)",
            ),
            &["interface"],
        )
        .expect("valid metric");
        let capture_if_dropped = IntCounterVec::new(
            Opts::new(
                "canh_sensor_capture_interface_dropped_packets_total",
                "packets the interface or its driver dropped while capturing (libpcap ps_ifdrop)",
            ),
            &["interface"],
        )
        .expect("valid metric");
        let decode_errors = IntCounterVec::new(
            Opts::new("canh_sensor_decode_errors_total", "packets that could not be decoded"),
            &["reason"],
        )
        .expect("valid metric");
        let flows_active =
            IntGauge::new("canh_sensor_flows_active", "flows held in the flow table")
                .expect("valid metric");
        let flow_evictions = IntCounter::new(
            "canh_sensor_flow_evictions_total",
            "flows written early because the flow table was full",
        )
        .expect("valid metric");
        let metadata_drops = IntCounterVec::new(
            Opts::new(
                "canh_sensor_metadata_drops_total",
                "protocol metadata not produced: analyser table or per-flow buffer full, or a message that did not parse (all of it, or, for DNS, its records from the first bad one on)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let fragments = IntCounterVec::new(
            Opts::new(
                "canh_sensor_fragments_total",
                "IP packets reassembled from fragments, and fragments dropped (timed out, table full, invalid)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let events = IntCounterVec::new(
            Opts::new("canh_sensor_events_total", "events produced, by dataset"),
            &["dataset"],
        )
        .expect("valid metric");
        let kafka_delivered =
            IntCounter::new("canh_sensor_kafka_delivered_total", "events acknowledged by Kafka")
                .expect("valid metric");
        let kafka_records = IntCounter::new(
            "canh_sensor_kafka_records_total",
            "kafka records acknowledged (one event or a pack of events each)",
        )
        .expect("valid metric");
        let kafka_errors =
            IntCounter::new("canh_sensor_kafka_errors_total", "events Kafka did not acknowledge")
                .expect("valid metric");
        let log_lines = IntCounterVec::new(
            Opts::new("canh_sensor_log_lines_total", "log lines read, by input"),
            &["input"],
        )
        .expect("valid metric");
        let log_parse_errors = IntCounterVec::new(
            Opts::new("canh_sensor_log_parse_errors_total", "log lines not parsed, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let log_truncated = IntCounterVec::new(
            Opts::new("canh_sensor_log_truncated_total", "log lines cut at the maximum size"),
            &["input"],
        )
        .expect("valid metric");
        let log_dropped = IntCounterVec::new(
            Opts::new("canh_sensor_log_dropped_total", "log events dropped on a full channel"),
            &["input"],
        )
        .expect("valid metric");
        let log_connections_refused = IntCounter::new(
            "canh_sensor_log_connections_refused_total",
            "syslog connections refused at the connection limit",
        )
        .expect("valid metric");
        let log_udp_kernel_drops = IntGauge::new(
            "canh_sensor_log_udp_kernel_drops",
            "syslog datagrams the kernel dropped before the sensor read them",
        )
        .expect("valid metric");
        let kafka_delivery_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "canh_sensor_kafka_delivery_seconds",
                "time from handing an event to the producer to Kafka's acknowledgement",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "canh_sensor_uplink_in_flight",
            "events handed to the producer and not yet acknowledged or failed",
        )
        .expect("valid metric");
        let link_up = IntGauge::new(
            "canh_sensor_uplink_link_up",
            "1 while Kafka acknowledges events, 0 while the uplink spools everything",
        )
        .expect("valid metric");
        let spool_bytes = IntGauge::new("canh_sensor_spool_bytes", "bytes held in spool segments")
            .expect("valid metric");
        let spool_oldest_age_seconds = IntGauge::new(
            "canh_sensor_spool_oldest_age_seconds",
            "how long ago the oldest event still in the spool was spooled (0 when empty)",
        )
        .expect("valid metric");
        let spooled =
            IntCounter::new("canh_sensor_spooled_events_total", "events written to the spool to wait for Kafka (write-ahead records once their delivery failed)")
                .expect("valid metric");
        let drained = IntCounter::new(
            "canh_sensor_drained_events_total",
            "spooled events Kafka acknowledged (later removed from the spool)",
        )
        .expect("valid metric");
        let dropped = IntCounterVec::new(
            Opts::new(
                "canh_sensor_dropped_events_total",
                "events dropped because the spool was full for their class, by dataset",
            ),
            &["dataset"],
        )
        .expect("valid metric");
        let spool_damaged_regions = IntCounter::new(
            "canh_sensor_spool_damaged_regions_total",
            "torn or corrupt stretches of spool segments that were skipped",
        )
        .expect("valid metric");
        let spool_damaged_bytes = IntCounter::new(
            "canh_sensor_spool_damaged_bytes_total",
            "bytes of spool segments skipped as torn or corrupt",
        )
        .expect("valid metric");
        let spool_errors = IntCounter::new(
            "canh_sensor_spool_errors_total",
            "spool file operations that failed (the event is counted as dropped)",
        )
        .expect("valid metric");
        let write_ahead_skipped = IntCounter::new(
            "canh_sensor_write_ahead_skipped_total",
            "events sent from memory without a write-ahead record (spool full or failing)",
        )
        .expect("valid metric");
        let pack_plain_bytes = IntCounter::new(
            "canh_sensor_pack_plain_bytes_total",
            "JSON bytes of the packs the uplink compressed (uplink.pack_compression)",
        )
        .expect("valid metric");
        let pack_compressed_bytes = IntCounter::new(
            "canh_sensor_pack_compressed_bytes_total",
            "bytes those packs compressed to (what was written ahead and sent)",
        )
        .expect("valid metric");
        let uplink_queue_full = IntCounter::new(
            "canh_sensor_uplink_queue_full_total",
            "times a thread making events (capture, logs) found the uplink's queue full and waited: \
             the uplink was the slower side",
        )
        .expect("valid metric");
        let uplink_queue_wait_seconds = prometheus::Counter::new(
            "canh_sensor_uplink_queue_wait_seconds_total",
            "time the threads making events spent waiting for room in the uplink's full queue",
        )
        .expect("valid metric");
        for metric in [
            Box::new(packets.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(capture_received.clone()),
            Box::new(capture_dropped.clone()),
            Box::new(capture_if_dropped.clone()),
            Box::new(decode_errors.clone()),
            Box::new(flows_active.clone()),
            Box::new(flow_evictions.clone()),
            Box::new(metadata_drops.clone()),
            Box::new(fragments.clone()),
            Box::new(events.clone()),
            Box::new(kafka_delivered.clone()),
            Box::new(kafka_records.clone()),
            Box::new(kafka_errors.clone()),
            Box::new(log_lines.clone()),
            Box::new(log_parse_errors.clone()),
            Box::new(log_truncated.clone()),
            Box::new(log_dropped.clone()),
            Box::new(log_connections_refused.clone()),
            Box::new(log_udp_kernel_drops.clone()),
            Box::new(kafka_delivery_seconds.clone()),
            Box::new(in_flight.clone()),
            Box::new(link_up.clone()),
            Box::new(spool_bytes.clone()),
            Box::new(spool_oldest_age_seconds.clone()),
            Box::new(spooled.clone()),
            Box::new(drained.clone()),
            Box::new(dropped.clone()),
            Box::new(spool_damaged_regions.clone()),
            Box::new(spool_damaged_bytes.clone()),
            Box::new(spool_errors.clone()),
            Box::new(write_ahead_skipped.clone()),
            Box::new(pack_plain_bytes.clone()),
            Box::new(pack_compressed_bytes.clone()),
            Box::new(uplink_queue_full.clone()),
            Box::new(uplink_queue_wait_seconds.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        for reason in crate::decode::DecodeError::ALL {
            decode_errors.with_label_values(&[reason.reason()]);
        }
        for reason in ["table_full", "buffer_full", "parse_error"] {
            metadata_drops.with_label_values(&[reason]);
        }
        for outcome in ["reassembled", "timed_out", "table_full", "invalid"] {
            fragments.with_label_values(&[outcome]);
        }
        for reason in crate::logs::LineError::ALL {
            log_parse_errors.with_label_values(&[reason.reason()]);
        }
        for dataset in canh_event::Dataset::ALL {
            dropped.with_label_values(&[dataset.as_str()]);
        }
        Metrics {
            registry,
            packets,
            capture_received,
            capture_dropped,
            capture_if_dropped,
            decode_errors,
            flows_active,
            flow_evictions,
            metadata_drops,
            fragments,
            events,
            kafka_delivered,
            kafka_records,
            kafka_errors,
            log_lines,
            log_parse_errors,
            log_truncated,
            log_dropped,
            log_connections_refused,
            log_udp_kernel_drops,
            kafka_delivery_seconds,
            in_flight,
            link_up,
            spool_bytes,
            spool_oldest_age_seconds,
            spooled,
            drained,
            dropped,
            spool_damaged_regions,
            spool_damaged_bytes,
            spool_errors,
            write_ahead_skipped,
            pack_plain_bytes,
            pack_compressed_bytes,
            uplink_queue_full,
            uplink_queue_wait_seconds,
        }
    }
}

impl Metrics {
    /// Bring the capture counters of `interface` up to libpcap's totals (they only grow).
    pub fn record_capture(&self, interface: &str, totals: &crate::capture::CaptureStats) {
        for (counter, total) in [
            (&self.capture_received, totals.received),
            (&self.capture_dropped, totals.dropped),
            (&self.capture_if_dropped, totals.if_dropped),
        ] {
            let counter = counter.with_label_values(&[interface]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// The capture part of a `sensor` health event. `packets_received` is what the sensor got and
    /// decoded (all inputs), `packets_dropped` and `packets_if_dropped` what the kernel and the
    /// interface dropped before that, so the capture drop share is
    /// `(dropped + if_dropped) / (received + dropped + if_dropped)`.
    pub fn capture_health(&self, interface: Option<&str>) -> canh_event::SensorStats {
        let dropped = |vec: &IntCounterVec| interface.map(|i| vec.with_label_values(&[i]).get());
        canh_event::SensorStats {
            interface: interface.map(str::to_string),
            packets_received: Some(self.packets.get()),
            packets_dropped: dropped(&self.capture_dropped),
            packets_if_dropped: dropped(&self.capture_if_dropped),
            ..Default::default()
        }
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
    use crate::capture::CaptureStats;

    #[test]
    fn capture_counters_follow_the_totals_per_interface() {
        let m = Metrics::new();
        m.packets.inc_by(990);
        m.record_capture("eth1", &CaptureStats { received: 1000, dropped: 10, if_dropped: 2 });
        m.record_capture("eth1", &CaptureStats { received: 1500, dropped: 25, if_dropped: 2 });
        let (_, body) = crate::admin::respond("/metrics", &m.registry);
        for line in [
            "canh_sensor_capture_received_packets_total{interface=\"eth1\"} 1500",
            "canh_sensor_capture_kernel_dropped_packets_total{interface=\"eth1\"} 25",
            "canh_sensor_capture_interface_dropped_packets_total{interface=\"eth1\"} 2",
        ] {
            assert!(body.lines().any(|l| l == line), "{line} not in\n{body}");
        }
        let health = m.capture_health(Some("eth1"));
        assert_eq!(health.interface.as_deref(), Some("eth1"));
        assert_eq!(health.packets_received, Some(990));
        assert_eq!(health.packets_dropped, Some(25));
        assert_eq!(health.packets_if_dropped, Some(2));
        let offline = m.capture_health(None);
        assert_eq!((offline.packets_dropped, offline.packets_if_dropped), (None, None));
    }
}
