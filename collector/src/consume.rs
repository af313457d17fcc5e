//! The Kafka consumer: records in, batches written to ClickHouse, offsets committed only after the
//! write succeeded. A full batch stops consumption until it is written: the collector never drops,
//! Kafka keeps the data.

use crate::config::Settings;
use crate::detect::load::{self, LoadReport};
use crate::detect::mapping::Mapping;
use crate::detect::tape::Tape;
use crate::detect::{intel, suppress, Detector, HealthLedger, Stats};
use crate::metrics::Metrics;
use crate::store::{self, Batch, DeadLetterRow, Origin};
use canh_event::pack::PackReader;
use canh_event::{Dataset, DecodeError, Event, Timestamp};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("creating the kafka consumer for {brokers}: {source}")]
    Create { brokers: String, source: rdkafka::error::KafkaError },
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe { topics: Vec<String>, source: rdkafka::error::KafkaError },
    #[error("creating the kafka producer for alerts on {brokers}: {source}")]
    Producer { brokers: String, source: rdkafka::error::KafkaError },
    #[error("loading detection rules: {0}")]
    Rules(String),
}

/// Decode one Kafka record into the batch: a stored row, or a dead letter with its reason.
pub fn route(
    payload: Option<&[u8]>,
    origin: Origin,
    batch: &mut Batch,
) -> Result<(), &'static str> {
    let dead = |batch: &mut Batch, reason: &'static str, error: String, raw: &[u8]| {
        dead_letter(batch, origin, reason, error, raw)
    };
    let Some(raw) = payload.filter(|p| !p.is_empty()) else {
        return dead(batch, "empty", "record has no payload".into(), &[]);
    };
    let mut event = match Event::from_json_boxed(raw) {
        Ok(event) => event,
        Err(err @ DecodeError::Json(_)) => {
            return dead(batch, classify_json_error(raw), err.to_string(), raw)
        }
        Err(err @ DecodeError::SchemaVersion(_)) => {
            return dead(batch, "schema_version", err.to_string(), raw)
        }
    };
    if event.event.dataset == Dataset::Flow
        && (event.source.is_none() || event.destination.is_none() || event.network.is_none())
    {
        return dead(
            batch,
            "missing_fields",
            "flow event without source, destination or network".into(),
            raw,
        );
    }
    // Alerts (ours, read back from `<prefix>alert`, or another collector's) are stored, where the
    // same alert id folds into one row; they are not detected on.
    if event.event.dataset != Dataset::Alert {
        if let Some(inputs) = batch.detect_inputs.as_mut() {
            // Written from the typed event, so numbers are numbers (rsigma 0.23 treats a numeric
            // string as equal to a number). An event serde cannot write (none of Canh's) is
            // left out of detection, as `serde_json::to_value` would have left it.
            let _ = inputs.push(&event);
        }
    }
    batch.push(&mut event, raw, origin);
    Ok(())
}

/// Decode one Kafka record into the batch. A record holds one event or, from Canh's sensor, a pack
/// of events one per line (sensor/UPLINK.md; event JSON never holds a raw newline), which the
/// sensor may have compressed as one zstd frame (`packs` reads it). Each line is routed as
/// [`route`] routes a record: a bad line becomes a dead letter of its own and the rest of the pack
/// is stored. Empty lines are skipped; a record with nothing else is one "empty" dead letter; a
/// compressed record that does not decompress (or would expand past `pack::MAX_PACK_BYTES`) is one
/// "bad_compression" dead letter with the record's bytes. `outcome` is called with each line's
/// result.
pub fn route_record(
    payload: Option<&[u8]>,
    origin: Origin,
    batch: &mut Batch,
    packs: &mut PackReader,
    mut outcome: impl FnMut(Result<(), &'static str>),
) {
    let mut lines = 0;
    let value = payload.unwrap_or_default();
    let payload = match packs.lines(value) {
        Ok(payload) => payload,
        Err(err) => {
            outcome(dead_letter(batch, origin, "bad_compression", err.to_string(), value));
            return;
        }
    };
    // The line ends found with SIMD (`memchr`): a byte loop over every pack was 8 % of the
    // collector's time on the storage path.
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', payload).chain([payload.len()]) {
        let line = &payload[start..end];
        start = end + 1;
        if line.is_empty() {
            continue;
        }
        lines += 1;
        outcome(route(Some(line), origin, batch));
    }
    if lines == 0 {
        outcome(route(None, origin, batch));
    }
}

/// Keep `raw` as a dead letter of the batch, with its Kafka coordinates and why; the reason back.
fn dead_letter(
    batch: &mut Batch,
    origin: Origin,
    reason: &'static str,
    error: String,
    raw: &[u8],
) -> Result<(), &'static str> {
    batch.dead_letters.push(DeadLetterRow {
        received_at: now_secs(),
        topic: origin.topic.to_string(),
        kafka_partition: origin.partition,
        kafka_offset: origin.offset,
        reason: reason.to_string(),
        error,
        raw: raw.to_vec(),
    });
    Err(reason)
}

/// Why a record that does not decode as an event failed: not JSON at all, JSON naming a dataset
/// Canh does not know, or JSON with missing or mistyped fields.
fn classify_json_error(raw: &[u8]) -> &'static str {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return "invalid_json";
    };
    match value.pointer("/event/dataset").and_then(|d| d.as_str()) {
        Some(name) if Dataset::parse(name).is_none() => "unknown_dataset",
        _ => "wrong_types",
    }
}

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

pub fn topics(prefix: &str) -> Vec<String> {
    Dataset::ALL.iter().map(|d| format!("{prefix}{}", d.as_str())).collect()
}

/// The consumer's librdkafka callbacks: the group's assignments and errors go to the log, so a
/// collector that joined but holds no partition, or a group that keeps rebalancing, shows. Before
/// partitions are taken away, the batches handed to the writer are written and committed
/// ([`InFlight::revoke`]).
pub struct GroupContext {
    in_flight: Arc<InFlight>,
    /// `canh_collector_kafka_partitions_assigned`: what the last rebalance left this member.
    assigned: prometheus::IntGauge,
}

impl rdkafka::ClientContext for GroupContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl rdkafka::consumer::ConsumerContext for GroupContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        // Anything but an assignment takes the partitions away (librdkafka unassigns on an error
        // too); an assignment needs nothing from the batches.
        if !matches!(rebalance, rdkafka::consumer::Rebalance::Assign(_)) {
            self.in_flight.revoke();
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        match rebalance {
            // The eager protocol hands over the whole assignment and takes all of it back.
            rdkafka::consumer::Rebalance::Assign(list) => {
                self.assigned.set(list.count() as i64);
                tracing::info!(partitions = list.count(), "kafka partitions assigned")
            }
            rdkafka::consumer::Rebalance::Revoke(list) => {
                self.assigned.set(0);
                tracing::info!(partitions = list.count(), "kafka partitions revoked")
            }
            rdkafka::consumer::Rebalance::Error(err) => {
                self.assigned.set(0);
                tracing::warn!(error = %err, "kafka rebalance failed")
            }
        }
    }
}

/// Longest wait of a revocation for the batches in flight (a write that keeps failing, e.g.
/// ClickHouse down): past it the partitions go, and the batch's commit, when it comes, is one a
/// revoked member makes (refused, or accepted for rows that are stored: harmless either way).
const REVOKE_WAIT: Duration = Duration::from_secs(60);

/// The batches handed to the writer and not yet committed (or given up), shared by the reader, the
/// writer and the rebalance callback. The reader takes a permit for each batch it hands over (at
/// most `batch.in_flight`, at least 1), the writer returns it after the commit. A revocation waits
/// until every permit is back, so a batch's commit never overlaps the group's re-forming (Tansu
/// 0.6 mishandled commits that arrive during a join: collector/STORAGE.md), and counts itself so
/// the reader drops what it batched under the old assignment.
pub(crate) struct InFlight {
    permits: Arc<tokio::sync::Semaphore>,
    depth: u32,
    revocations: std::sync::atomic::AtomicU64,
}

impl InFlight {
    pub(crate) fn new(depth: usize) -> InFlight {
        let depth = u32::try_from(depth.max(1)).unwrap_or(1);
        InFlight {
            permits: Arc::new(tokio::sync::Semaphore::new(depth as usize)),
            depth,
            revocations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn busy(&self) -> bool {
        self.permits.available_permits() < self.depth as usize
    }

    fn revocations(&self) -> u64 {
        self.revocations.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Partitions are being revoked: note it, and wait on this thread (librdkafka's rebalance
    /// callback, inside the reader's `recv`) until the batches in flight are committed or given up.
    fn revoke(&self) {
        self.revocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if !self.busy() {
            return;
        }
        tracing::info!(
            "partitions revoked with a batch in flight: waiting for its write and commit"
        );
        let wait = |handle: tokio::runtime::Handle| {
            handle.block_on(async {
                let all = self.permits.acquire_many(self.depth);
                tokio::time::timeout(REVOKE_WAIT, all).await.is_ok()
            })
        };
        let done = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| wait(handle))
            }
            _ => false,
        };
        if !done {
            tracing::warn!("partitions revoked before the batch in flight was committed");
        }
    }

    /// Wait until no batch is in flight.
    async fn idle(&self) {
        drop(self.permits.acquire_many(self.depth).await);
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

fn consumer(
    settings: &Settings,
    in_flight: Arc<InFlight>,
    metrics: &Metrics,
) -> Result<GroupConsumer, ConsumeError> {
    let kafka = &settings.config.kafka;
    let mut client = client_config(settings);
    client
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", settings.session_timeout.as_millis().to_string())
        .set("fetch.wait.max.ms", settings.fetch_wait_max.as_millis().to_string())
        .set("fetch.min.bytes", kafka.consumer.fetch_min_bytes.to_string())
        .set("max.partition.fetch.bytes", kafka.consumer.max_partition_fetch_bytes.to_string())
        .set("queued.max.messages.kbytes", kafka.consumer.queued_max_kbytes.to_string());
    client
        .create_with_context(GroupContext { in_flight, assigned: metrics.kafka_partitions.clone() })
        .map_err(|source| ConsumeError::Create { brokers: kafka.brokers.clone(), source })
}

fn producer(settings: &Settings) -> Result<FutureProducer, ConsumeError> {
    let kafka = &settings.config.kafka;
    let mut client = client_config(settings);
    // Alerts are few and matter: wait for every in-sync replica.
    client.set("acks", "all").set("enable.idempotence", "true");
    client
        .create()
        .map_err(|source| ConsumeError::Producer { brokers: kafka.brokers.clone(), source })
}

/// Brokers and credentials, shared by the consumer, the alert producer and the lag probe.
pub(crate) fn client_config(settings: &Settings) -> ClientConfig {
    let kafka = &settings.config.kafka;
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &kafka.brokers);
    for (name, value) in kafka.security().client_settings() {
        client.set(name, value);
    }
    client
}

/// A batch's detection under way on a blocking thread (`Detection::begin`).
struct DetectJob {
    /// The detector, the alerts, the inputs' tape and the time detection took on its thread.
    handle: tokio::task::JoinHandle<(Detector, Vec<Event>, Tape, Duration)>,
    before: Stats,
}

/// Detection in the consumer: the active rule set, and the producer its alerts go to.
pub struct Detection {
    /// Taken out while a batch is evaluated on a blocking thread.
    detector: Option<Detector>,
    producer: FutureProducer,
    topic: String,
    health: HealthLedger,
    /// When rule health was last written to `rule_stats`.
    health_written: Instant,
    collector: String,
}

/// Read the rule directory and the suppressions named by `[detection]`. Files that do not load are
/// in the report; only an unreadable directory or suppressions file is an error.
pub fn load_detector(settings: &Settings) -> Result<Option<(Detector, LoadReport)>, ConsumeError> {
    let (Some(section), Some(detect_settings)) =
        (settings.config.detection.as_ref(), settings.detection.as_ref())
    else {
        return Ok(None);
    };
    let mapping = Mapping::builtin();
    let loaded = load::load_dir(&section.rules_dir, &mapping).map_err(|e| {
        ConsumeError::Rules(format!("reading {}: {e}", section.rules_dir.display()))
    })?;
    let report = loaded.report.clone();
    let mut detector = Detector::new(loaded, mapping, detect_settings.clone());
    if let Some(path) = &section.suppressions {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConsumeError::Rules(format!("reading suppressions {shown}: {e}")))?;
        let list =
            suppress::parse(&text, &shown).map_err(|e| ConsumeError::Rules(e.to_string()))?;
        detector.set_suppressions(list);
    }
    if !section.intel.is_empty() {
        let (set, intel_report) = intel::load_files(&section.intel)
            .map_err(|e| ConsumeError::Rules(format!("indicator file {e}")))?;
        tracing::info!(
            files = intel_report.files,
            loaded = ?intel_report.loaded,
            unsupported = ?intel_report.unsupported,
            "threat-intelligence indicators loaded"
        );
        for example in &intel_report.unsupported_examples {
            tracing::warn!(indicator = %example, "indicator pattern not supported, skipped");
        }
        detector.set_intel(set);
    }
    Ok(Some((detector, report)))
}

fn warn_lateness(detector: &Detector) {
    if let Some(shortest) = detector.lateness_exceeds_shortest_window() {
        tracing::warn!(
            shortest_window_secs = shortest,
            "detection.lateness exceeds the shortest correlation window; late events can widen it"
        );
    }
}

fn log_report(report: &LoadReport) {
    for err in &report.errors {
        tracing::error!(file = %err.path, line = err.line, error = %err.message, "rule file rejected");
    }
    for warning in &report.warnings {
        tracing::warn!(file = %warning.path, line = warning.line, warning = %warning.message, "rule file");
    }
    tracing::info!(
        files = report.files,
        applicable = report.applicable,
        skipped = report.skipped.values().sum::<usize>(),
        "rules loaded"
    );
}

impl Detection {
    /// Start detection if `[detection]` is configured.
    pub fn start(
        settings: &Settings,
        metrics: &Metrics,
    ) -> Result<Option<Detection>, ConsumeError> {
        let Some((detector, report)) = load_detector(settings)? else { return Ok(None) };
        log_report(&report);
        warn_lateness(&detector);
        metrics.rules_loaded.set(detector.rule_count() as i64);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Ok(Some(Detection {
            detector: Some(detector),
            producer: producer(settings)?,
            topic: format!("{}{}", settings.config.kafka.topic_prefix, Dataset::Alert.as_str()),
            health: HealthLedger::default(),
            health_written: Instant::now(),
            collector: format!("{}@{}", settings.config.kafka.group_id, host.trim()),
        }))
    }

    /// Load the rules again. A set with any rejected file is refused whole and the active set stays.
    pub fn reload(&mut self, settings: &Settings, metrics: &Metrics) {
        let loaded = match tokio::task::block_in_place(|| load_detector(settings)) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return,
            Err(err) => {
                metrics.rule_reloads.with_label_values(&["rejected"]).inc();
                tracing::error!(error = %err, "rule reload failed; the active rule set stays");
                return;
            }
        };
        let (mut detector, report) = loaded;
        if !report.errors.is_empty() {
            for err in &report.errors {
                tracing::error!(file = %err.path, line = err.line, error = %err.message, "rule file rejected");
            }
            metrics.rule_reloads.with_label_values(&["rejected"]).inc();
            tracing::error!(
                rejected = report.errors.len(),
                "rule reload refused; the active rule set stays"
            );
            return;
        }
        if let Some(old) = self.detector.as_ref() {
            detector.carry_state_from(old);
        }
        warn_lateness(&detector);
        metrics.rules_loaded.set(detector.rule_count() as i64);
        metrics.rule_reloads.with_label_values(&["applied"]).inc();
        tracing::info!(rules = detector.rule_count(), "rule set reloaded");
        self.detector = Some(detector);
    }

    /// Start detection over the batch's events on a blocking thread: the batch's detection
    /// inputs go with it, its rows stay for the writes that run meanwhile. `finish` takes the
    /// alerts. Runs once per batch: the inputs are taken. None when there is nothing to detect.
    fn begin(&mut self, batch: &mut Batch) -> Option<DetectJob> {
        let inputs = batch.detect_inputs.take()?;
        if inputs.is_empty() {
            batch.detect_inputs = Some(inputs);
            return None;
        }
        let Some(mut detector) = self.detector.take() else {
            batch.detect_inputs = Some(inputs);
            return None;
        };
        let before = detector.stats().clone();
        let now = wall_clock();
        let handle = tokio::task::spawn_blocking(move || {
            // In event-time order (`Tape::time_order`): a batch holds several partitions'
            // records, each partition in order but a whole fetch of one after another's; a
            // sensor's events are spread over the partitions by key, so correlation would
            // otherwise see older events after newer ones from the same sensor, and keep them
            // out as late.
            let started = Instant::now();
            let alerts = detector.process_tape(&inputs, now);
            (detector, alerts, inputs, started.elapsed())
        });
        Some(DetectJob { handle, before })
    }

    /// Wait for a batch's detection, count it, and add its alert rows to the batch (`raised`
    /// of them at the end of `alerts`). The detector and the inputs' tape come back for the next
    /// batch.
    async fn finish(
        &mut self,
        job: DetectJob,
        batch: &mut Batch,
        settings: &Settings,
        metrics: &Metrics,
    ) {
        let DetectJob { handle, before } = job;
        let (detector, alerts, inputs, took) = match handle.await {
            Ok(done) => done,
            Err(err) => {
                // Only a bug in detection gets here; the batch is still stored, its alerts lost.
                metrics.errors.with_label_values(&["detect", "panic"]).inc();
                tracing::error!(error = %err, "detection failed on a batch; rebuilding the detector");
                match load_detector(settings) {
                    Ok(Some((fresh, _))) => self.detector = Some(fresh),
                    _ => tracing::error!("detector not rebuilt; detection is off until a reload"),
                }
                return;
            }
        };
        metrics.detect_seconds.observe(took.as_secs_f64());
        let after = detector.stats();
        metrics.detect_events.inc_by(after.events - before.events);
        metrics.detect_value_events.inc_by(after.tape_fallbacks - before.tape_fallbacks);
        metrics.alerts.with_label_values(&["raised"]).inc_by(after.alerts - before.alerts);
        metrics
            .alerts
            .with_label_values(&["deduplicated"])
            .inc_by(after.deduplicated - before.deduplicated);
        metrics
            .alerts
            .with_label_values(&["suppressed"])
            .inc_by(after.suppressed - before.suppressed);
        metrics.detect_late_events.inc_by(after.late_events - before.late_events);
        metrics.correlation_evictions.inc_by(after.evictions - before.evictions);
        metrics.correlation_keys.set(detector.correlation_keys() as i64);
        let (rules, groups) = self.health.observe(&detector);
        for rule in rules {
            if rule.hits > 0 {
                metrics.rule_hits.with_label_values(&[&rule.rule_id]).inc_by(rule.hits);
            }
            if rule.errors > 0 {
                metrics.rule_errors.with_label_values(&[&rule.rule_id]).inc_by(rule.errors);
            }
        }
        for (group, change) in groups {
            metrics.rule_group_evaluations.with_label_values(&[&group]).inc_by(change.evaluations);
            metrics
                .rule_group_eval_seconds
                .with_label_values(&[&group])
                .inc_by(change.nanos as f64 / 1e9);
        }
        self.detector = Some(detector);
        // Back to the batch, cleared and reused with it.
        batch.detect_inputs = Some(inputs);
        batch.alerts.extend(alerts.iter().map(store::alert_row));
        batch.raised = alerts.len();
    }

    /// Write the rules' health of the interval to `rule_stats` when the interval is over (or
    /// `force`, at shutdown). A failed write keeps nothing back: the interval's figures are lost
    /// and counted, the metrics still have them.
    async fn write_health(
        &mut self,
        db: &clickhouse::Client,
        metrics: &Metrics,
        interval: Duration,
        force: bool,
    ) {
        if !force && self.health_written.elapsed() < interval {
            return;
        }
        self.health_written = Instant::now();
        let now = wall_clock();
        let rows: Vec<store::RuleStatsRow> = self
            .health
            .take_interval()
            .into_iter()
            .map(|(rule, group)| store::RuleStatsRow {
                ts: u32::try_from(now.secs()).unwrap_or(0),
                ts_ns: now.nanos(),
                collector: self.collector.clone(),
                rule_id: rule.rule_id,
                rule_name: rule.title,
                level: rule.level,
                rule_group: rule.group,
                hits: rule.hits,
                errors: rule.errors,
                group_evaluations: group.evaluations,
                group_eval_seconds: group.nanos as f64 / 1e9,
            })
            .collect();
        if let Err(err) = store::write_rule_stats(db, &rows).await {
            metrics.errors.with_label_values(&["store", "rule_stats"]).inc();
            tracing::warn!(error = %err, rows = rows.len(), "writing rule health failed; interval lost");
        }
    }

    /// Produce the alerts the batch raised (not those it read from the alert topic) and wait for
    /// every delivery. An error means the whole set is sent again on retry; consumers see an alert
    /// id twice at worst. `&mut self` because the writer's task must be `Send` and the detector is
    /// not `Sync`.
    async fn produce(&mut self, batch: &Batch) -> Result<(), String> {
        let raised = &batch.alerts[batch.alerts.len() - batch.raised..];
        let mut pending = Vec::with_capacity(raised.len());
        for row in raised {
            let record = FutureRecord::to(&self.topic).key(&row.event_id).payload(&row.raw);
            match self.producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((err, _)) => return Err(format!("queueing an alert: {err}")),
            }
        }
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => return Err(format!("delivering an alert: {err}")),
                Err(_) => return Err("alert delivery cancelled".into()),
            }
        }
        Ok(())
    }
}

/// How often the rule directory is checked for changes.
const RULE_POLL: Duration = Duration::from_secs(10);

/// What changes when a rule file is added, removed or edited: (path, length, modified) of each.
fn rules_fingerprint(
    settings: &Settings,
) -> Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)> {
    let Some(section) = settings.config.detection.as_ref() else { return Vec::new() };
    let files = tokio::task::block_in_place(|| load::rule_files(&section.rules_dir));
    let Ok(mut files) = files else { return Vec::new() };
    files.extend(section.intel.iter().cloned());
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect()
}

fn wall_clock() -> Timestamp {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_secs_nanos(
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        since.subsec_nanos(),
    )
}

/// Records taken from librdkafka's queue in one go before the select looks at its other branches.
const DRAIN_MAX: usize = 1_000;

/// The highest offset taken per (topic, partition) in the current batch. A handful of entries (the
/// partitions assigned), so a list beats a map and needs no allocation per record.
#[derive(Debug, Default)]
struct Offsets(Vec<(String, i32, i64)>);

impl Offsets {
    fn note(&mut self, origin: Origin) {
        let known = self.0.iter_mut().find(|(t, p, _)| *p == origin.partition && t == origin.topic);
        match known {
            Some((_, _, offset)) => *offset = (*offset).max(origin.offset),
            None => self.0.push((origin.topic.to_string(), origin.partition, origin.offset)),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The per-record counters, looked up once rather than by label for every record.
struct Counters {
    kafka_records: prometheus::IntCounter,
    stored: prometheus::IntCounter,
    dead_letter: prometheus::IntCounter,
    errors: prometheus::IntCounterVec,
}

impl Counters {
    fn new(metrics: &Metrics) -> Counters {
        Counters {
            kafka_records: metrics.kafka_records.clone(),
            stored: metrics.records.with_label_values(&["stored"]),
            dead_letter: metrics.records.with_label_values(&["dead_letter"]),
            errors: metrics.errors.clone(),
        }
    }
}

/// Route one record (all the events of a pack) into the batch and note its offset: the offset
/// is committed with the batch, after every row of the record is stored.
fn take(
    message: &rdkafka::message::BorrowedMessage<'_>,
    batch: &mut Batch,
    offsets: &mut Offsets,
    counters: &Counters,
    packs: &mut PackReader,
) {
    let origin =
        Origin { topic: message.topic(), partition: message.partition(), offset: message.offset() };
    counters.kafka_records.inc();
    route_record(message.payload(), origin, batch, packs, |routed| match routed {
        Ok(()) => counters.stored.inc(),
        Err(reason) => {
            counters.dead_letter.inc();
            counters.errors.with_label_values(&["decode", reason]).inc();
            tracing::debug!(reason, topic = origin.topic, offset = origin.offset, "dead letter");
        }
    });
    offsets.note(origin);
}

fn consume_error(metrics: &Metrics, err: &rdkafka::error::KafkaError) {
    metrics.errors.with_label_values(&["consume", "kafka"]).inc();
    tracing::warn!(error = %err, "kafka consume error");
}

/// A batch on its way from the reader to the writer.
struct Pending {
    batch: Batch,
    offsets: Offsets,
    /// Held until the batch is committed or given up (none for the last batch at shutdown).
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The reader's last batch at shutdown: retried until the shutdown bound, not given up when
    /// shutdown comes (it came before).
    last: bool,
}

/// Where the writer puts a batch and commits its offsets: ClickHouse and Kafka ([`Store`]), or
/// a test's record.
trait Sink: Send + Sync + 'static {
    /// Write the batch's rows, every table.
    fn write(&self, batch: &Batch) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// Write the alerts the batch's detection raised (after its rows: detection runs while they
    /// are written).
    fn write_alerts(
        &self,
        alerts: &[store::AlertRow],
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
    fn commit(
        &self,
        offsets: &Offsets,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// The collector's sink: the batch's tables in ClickHouse, its offsets committed in the group.
struct Store {
    db: clickhouse::Client,
    consumer: Arc<GroupConsumer>,
}

impl Sink for Store {
    async fn write(&self, batch: &Batch) -> Result<(), String> {
        store::write(&self.db, batch).await.map_err(|err| err.to_string())
    }

    async fn write_alerts(&self, alerts: &[store::AlertRow]) -> Result<(), String> {
        store::write_alerts(&self.db, alerts).await.map_err(|err| err.to_string())
    }

    async fn commit(&self, offsets: &Offsets) -> Result<(), String> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in &offsets.0 {
            // Kafka's committed offset is the next record to read.
            list.add_partition_offset(topic, *partition, Offset::Offset(offset + 1))
                .map_err(|err| format!("building the offset commit: {err}"))?;
        }
        // On the blocking pool, not `block_in_place`: that hands this worker's queue to another
        // thread, so the writer task would move to another thread at every commit.
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|err| format!("commit task: {err}"))?
            .map_err(|err| err.to_string())
    }
}

/// Longest time shutdown gives the writer for the batches in flight and the reader's last one.
const SHUTDOWN_WRITE: Duration = Duration::from_secs(30);

/// Consume until `shutdown` turns true, then write what is batched, commit, and return.
///
/// Two loops run at once: the reader ([`read_batches`]) takes records from Kafka and decodes them
/// into a batch; the writer ([`write_batches`], its own task) runs detection over the batch before,
/// writes it to ClickHouse, produces its alerts and commits its offsets. Batches are detected,
/// written and committed in the order they were read; at most `batch.in_flight` of them are with
/// the writer at a time (the reader waits, Kafka keeps the data).
pub async fn run(
    settings: Arc<Settings>,
    db: clickhouse::Client,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    reload: watch::Receiver<u64>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), ConsumeError> {
    let in_flight = Arc::new(InFlight::new(settings.config.batch.in_flight));
    let consumer = Arc::new(consumer(&settings, in_flight.clone(), &metrics)?);
    let detection = Detection::start(&settings, &metrics)?;
    let detect = detection.is_some();
    let topics = topics(&settings.config.kafka.topic_prefix);
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(|source| ConsumeError::Subscribe { topics: topics.clone(), source })?;
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(?topics, group = %settings.config.kafka.group_id, "consuming");

    let (to_writer, batches) = tokio::sync::mpsc::unbounded_channel();
    let (recycle, mut recycled) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer {
        settings: settings.clone(),
        sink: Store { db: db.clone(), consumer: consumer.clone() },
        db,
        metrics: metrics.clone(),
        detection,
    };
    let mut writing =
        tokio::spawn(write_batches(writer, batches, recycle, shutdown.clone(), reload));
    let reader = Reader { settings: &settings, consumer: &consumer, metrics: &metrics, in_flight };
    reader.read_batches(detect, to_writer, &mut recycled, shutdown).await;
    // The reader handed over its last batch: the writer stores and commits what it holds.
    match tokio::time::timeout(SHUTDOWN_WRITE, &mut writing).await {
        Ok(Ok(writer)) => {
            let Writer { db, mut detection, .. } = writer;
            if let Some(detection) = detection.as_mut() {
                let last =
                    detection.write_health(&db, &metrics, settings.rule_stats_interval, true);
                if tokio::time::timeout(Duration::from_secs(10), last).await.is_err() {
                    tracing::warn!(
                        "shutdown: rule health of the last interval not written in time"
                    );
                }
            }
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "the batch writer failed; kafka keeps what was not committed")
        }
        Err(_) => {
            // Wait for the writer's task to be dropped, so its permits and its hold on the
            // consumer are gone before the consumer closes below.
            writing.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), writing).await;
            tracing::warn!(
                "shutdown: batches not written in time; kafka keeps them for the next start"
            );
        }
    }
    // The consumer closes here (its last holder), after the writer let go of it.
    drop(consumer);
    Ok(())
}

/// The reading half of [`run`].
struct Reader<'a> {
    settings: &'a Settings,
    consumer: &'a GroupConsumer,
    metrics: &'a Metrics,
    in_flight: Arc<InFlight>,
}

impl Reader<'_> {
    /// Read and decode records into batches and hand each full (or `batch.max_wait` old) batch to
    /// the writer, taking a permit for it first (back-pressure). On shutdown, hand over what is
    /// batched and return.
    async fn read_batches(
        &self,
        detect: bool,
        to_writer: tokio::sync::mpsc::UnboundedSender<Pending>,
        recycled: &mut tokio::sync::mpsc::UnboundedReceiver<Batch>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let max_records = self.settings.config.batch.max_records;
        let overlap = self.settings.config.batch.in_flight > 0;
        let metrics = self.metrics;
        let mut batch = Batch::new(detect);
        let mut offsets = Offsets::default();
        let mut batch_deadline: Option<tokio::time::Instant> = None;
        let mut revocations = self.in_flight.revocations();
        let counters = Counters::new(metrics);
        // Reads the sensor's compressed packs (a zstd context and a buffer, kept for the run).
        let mut packs = PackReader::new().expect("a zstd context (fails only without memory)");
        // Partitions were revoked while `recv` served the group: what is batched was read under
        // the old assignment. It is dropped, not written: the new owner (maybe this collector
        // again) reads it from the committed offsets, and no commit goes out while the group
        // re-forms.
        let mut forget_revoked =
            |batch: &mut Batch, offsets: &mut Offsets, deadline: &mut Option<_>| {
                let now = self.in_flight.revocations();
                if now == revocations {
                    return;
                }
                revocations = now;
                if !offsets.is_empty() {
                    tracing::info!(
                        events = batch.len(),
                        "partitions revoked: the batch read under the old assignment is dropped \
                         and read again"
                    );
                    batch.clear(detect);
                    offsets.clear();
                    *deadline = None;
                    metrics.batch_records.set(0);
                }
            };
        loop {
            let deadline = batch_deadline;
            let received = tokio::select! {
                _ = shutdown.changed() => break,
                message = self.consumer.recv() => Some(message),
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => None,
            };
            forget_revoked(&mut batch, &mut offsets, &mut batch_deadline);
            match received {
                Some(Ok(message)) => {
                    take(&message, &mut batch, &mut offsets, &counters, &mut packs);
                    batch_deadline.get_or_insert_with(|| {
                        tokio::time::Instant::now() + self.settings.max_wait
                    });
                    // Take the records librdkafka already holds without a trip through the select
                    // for each (its timers and wakers cost more than decoding a small record), up
                    // to DRAIN_MAX at a time so the other branches are looked at often.
                    let mut drained = 0;
                    while drained < DRAIN_MAX && batch.len() < max_records {
                        let next = tokio::select! {
                            biased;
                            next = self.consumer.recv() => next,
                            _ = std::future::ready(()) => break,
                        };
                        forget_revoked(&mut batch, &mut offsets, &mut batch_deadline);
                        match next {
                            Ok(message) => {
                                take(&message, &mut batch, &mut offsets, &counters, &mut packs);
                                batch_deadline.get_or_insert_with(|| {
                                    tokio::time::Instant::now() + self.settings.max_wait
                                });
                            }
                            Err(err) => {
                                consume_error(metrics, &err);
                                break;
                            }
                        }
                        drained += 1;
                    }
                    metrics.batch_records.set(batch.len() as i64);
                }
                Some(Err(err)) => {
                    consume_error(metrics, &err);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => {}
            }
            let due = batch_deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if batch.len() >= max_records || (due && !offsets.is_empty()) {
                // At most `in_flight` batches with the writer: wait for one to be committed.
                let permit = tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    permit = self.in_flight.permits.clone().acquire_owned() => permit.ok(),
                };
                let next = match recycled.try_recv() {
                    Ok(mut used) => {
                        used.clear(detect);
                        used
                    }
                    Err(_) => Batch::new(detect),
                };
                let pending = Pending {
                    batch: std::mem::replace(&mut batch, next),
                    offsets: std::mem::take(&mut offsets),
                    permit,
                    last: false,
                };
                batch_deadline = None;
                metrics.batch_records.set(0);
                if to_writer.send(pending).is_err() {
                    // The writer stopped (it gave up a batch at shutdown, or failed): nothing
                    // more may be committed; Kafka redelivers after restart.
                    return;
                }
                if !overlap {
                    // `batch.in_flight = 0`: read nothing while a batch is written.
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = self.in_flight.idle() => {}
                    }
                }
            }
        }
        // Shutting down: hand over what is batched; the writer stores it within its time bound.
        forget_revoked(&mut batch, &mut offsets, &mut batch_deadline);
        if !offsets.is_empty() {
            let _ = to_writer.send(Pending { batch, offsets, permit: None, last: true });
        }
    }
}

/// What the writer needs: where to write and commit, and detection with its rules.
struct Writer<S> {
    settings: Arc<Settings>,
    sink: S,
    /// For rule health (`rule_stats`).
    db: clickhouse::Client,
    metrics: Arc<Metrics>,
    detection: Option<Detection>,
}

/// Detect, store and commit the reader's batches in order until the reader is done, reloading the
/// rules when asked (SIGHUP or a changed rule file), and send each batch back for reuse.
/// Returns early, without committing anything more, when a batch is given up at shutdown.
async fn write_batches<S: Sink>(
    mut writer: Writer<S>,
    mut batches: tokio::sync::mpsc::UnboundedReceiver<Pending>,
    recycle: tokio::sync::mpsc::UnboundedSender<Batch>,
    mut shutdown: watch::Receiver<bool>,
    mut reload: watch::Receiver<u64>,
) -> Writer<S> {
    let detect = writer.detection.is_some();
    let mut reload_open = true;
    // Rule files are looked at every RULE_POLL; a change reloads them like SIGHUP does.
    let mut rule_poll = tokio::time::interval(RULE_POLL);
    rule_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rules_seen = rules_fingerprint(&writer.settings);
    loop {
        tokio::select! {
            pending = batches.recv() => {
                let Some(Pending { mut batch, offsets, permit, last }) = pending else { break };
                let stored = if last {
                    let (_never, mut no_stop) = watch::channel(false);
                    writer.flush(&mut batch, &offsets, &mut no_stop).await
                } else {
                    writer.flush(&mut batch, &offsets, &mut shutdown).await
                };
                if !stored {
                    // Nothing after a batch given up may be committed: its offsets would cover it.
                    drop(permit);
                    break;
                }
                // Back to the reader uncleared: it empties the batch on its own thread, which
                // allocated the rows and detection inputs (freed here, from another thread, the
                // inputs cost the collector 16.3 instead of 13.0 CPU-s per million with the pack
                // in one pair of runs). Before the permit: a reader that gets the permit finds the
                // batch to reuse (else it would make a new one, and batches would pile up).
                let _ = recycle.send(batch);
                // Committed: the reader may hand over the next batch, and a revocation waiting
                // for this one may go on.
                drop(permit);
            }
            changed = reload.changed(), if reload_open => {
                match (changed, writer.detection.as_mut()) {
                    (Ok(()), Some(detection)) => detection.reload(&writer.settings, &writer.metrics),
                    (Ok(()), None) => {}
                    // The signal watcher is gone: stop listening rather than spin.
                    (Err(_), _) => reload_open = false,
                }
            }
            _ = rule_poll.tick(), if detect => {
                let now = rules_fingerprint(&writer.settings);
                if now != rules_seen {
                    rules_seen = now;
                    tracing::info!("rule files changed; reloading");
                    if let Some(detection) = writer.detection.as_mut() {
                        detection.reload(&writer.settings, &writer.metrics);
                    }
                }
            }
        }
    }
    writer
}

impl<S: Sink> Writer<S> {
    /// Write the batch's rows while detection runs over its events, then the alerts detection
    /// raised (each write retried with backoff until it lands), produce the alerts, and only then
    /// commit its offsets. Returns false if shutdown came first: nothing is committed then, and
    /// Kafka redelivers the batch after restart.
    async fn flush(
        &mut self,
        batch: &mut Batch,
        offsets: &Offsets,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let Writer { settings, sink, db, metrics, detection } = self;
        // Detection takes the batch's inputs to a blocking thread; ClickHouse stores the rows
        // meanwhile (the alerts read from the alert topic among them).
        let job = detection.as_mut().and_then(|detection| detection.begin(batch));
        let started = Instant::now();
        let stored = write_until_stored(settings, metrics, shutdown, || sink.write(batch)).await;
        if stored {
            metrics.write_seconds.observe(started.elapsed().as_secs_f64());
        }
        // Waited for even when shutdown came first: the detector comes back with it.
        if let (Some(job), Some(detection)) = (job, detection.as_mut()) {
            detection.finish(job, batch, settings, metrics).await;
        }
        if !stored {
            return false;
        }
        if let Some(detection) = detection.as_mut() {
            detection.write_health(db, metrics, settings.rule_stats_interval, false).await;
        }
        if batch.raised > 0 {
            let raised = &batch.alerts[batch.alerts.len() - batch.raised..];
            if !write_until_stored(settings, metrics, shutdown, || sink.write_alerts(raised)).await
            {
                return false;
            }
        }
        for (table, rows) in batch.counts() {
            metrics.rows_written.with_label_values(&[table]).inc_by(rows as u64);
        }
        let stored_at = Instant::now();

        // `&mut`: a shared reference to the detector (not `Sync`) would keep this future off
        // other threads.
        if let Some(detection) = detection.as_mut().filter(|_| batch.raised > 0) {
            let mut backoff = Duration::from_millis(100);
            while let Err(err) = detection.produce(batch).await {
                metrics.errors.with_label_values(&["produce", "kafka"]).inc();
                tracing::warn!(error = %err, retry_in = ?backoff, "producing alerts failed; consumption paused");
                if !back_off(&mut backoff, settings.max_backoff, shutdown).await {
                    return false;
                }
            }
        }

        // A failed commit (e.g. after a rebalance took the partition) means a redelivery later;
        // the rows' event ids make that harmless.
        match sink.commit(offsets).await {
            Ok(()) => {
                metrics.commits.inc();
                metrics.commit_seconds.observe(stored_at.elapsed().as_secs_f64());
            }
            Err(err) => {
                metrics.errors.with_label_values(&["commit", "kafka"]).inc();
                tracing::warn!(error = %err, "offset commit failed; records will be redelivered");
            }
        }
        true
    }
}

/// Run `write` until it succeeds, backing off between tries (consumption pauses meanwhile: the
/// reader waits for this batch). False if shutdown came first.
async fn write_until_stored<F, W>(
    settings: &Settings,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
    mut write: W,
) -> bool
where
    W: FnMut() -> F,
    F: std::future::Future<Output = Result<(), String>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match write().await {
            Ok(()) => return true,
            Err(err) => {
                metrics.write_retries.inc();
                metrics.errors.with_label_values(&["store", "clickhouse"]).inc();
                tracing::warn!(error = %err, retry_in = ?backoff, "batch write failed; consumption paused");
                if !back_off(&mut backoff, settings.max_backoff, shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Wait `backoff` before a retry, then double it up to `max`. False if shutdown came first.
async fn back_off(
    backoff: &mut Duration,
    max: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = shutdown.changed() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(max);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin<'static> {
        Origin { topic: "canh-flow", partition: 2, offset: 41 }
    }

    /// A sink that records what the writer did, in order: `write N` / `write failed N` and
    /// `commit N`, N being the batch's dead letter's Kafka offset. The first `fail` writes fail.
    #[derive(Clone, Default)]
    struct Recorder {
        log: Arc<std::sync::Mutex<Vec<String>>>,
        fail: Arc<std::sync::atomic::AtomicUsize>,
        delay: Duration,
    }

    impl Recorder {
        fn log(&self) -> Vec<String> {
            self.log.lock().expect("log").clone()
        }
    }

    fn id_of(batch: &Batch) -> i64 {
        batch.dead_letters.first().map_or(-1, |d| d.kafka_offset)
    }

    impl Sink for Recorder {
        async fn write(&self, batch: &Batch) -> Result<(), String> {
            tokio::time::sleep(self.delay).await;
            let failing = self
                .fail
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok();
            let id = id_of(batch);
            if failing {
                self.log.lock().expect("log").push(format!("write failed {id}"));
                return Err("down".into());
            }
            self.log.lock().expect("log").push(format!("write {id}"));
            Ok(())
        }

        async fn write_alerts(&self, alerts: &[store::AlertRow]) -> Result<(), String> {
            self.log.lock().expect("log").push(format!("write {} alerts", alerts.len()));
            Ok(())
        }

        async fn commit(&self, offsets: &Offsets) -> Result<(), String> {
            let offset = offsets.0.first().map_or(-1, |(_, _, o)| *o);
            self.log.lock().expect("log").push(format!("commit {offset}"));
            Ok(())
        }
    }

    fn test_settings() -> Arc<Settings> {
        let text = r#"
            [kafka]
            brokers = "127.0.0.1:9"
            [clickhouse]
            url = "http://127.0.0.1:9"
            [batch]
            max_backoff = "200ms"
        "#;
        let config = toml::from_str(text).expect("parses");
        Arc::new(crate::config::validate("test.toml", config).expect("valid"))
    }

    /// Batch `id`: one dead letter at offset `id` of partition 0, its offset noted.
    fn pending(id: i64, in_flight: &InFlight, last: bool) -> Pending {
        let mut batch = Batch::default();
        let origin = Origin { topic: "canh-flow", partition: 0, offset: id };
        let _ = route(None, origin, &mut batch);
        let mut offsets = Offsets::default();
        offsets.note(origin);
        let permit = if last { None } else { in_flight.permits.clone().try_acquire_owned().ok() };
        Pending { batch, offsets, permit, last }
    }

    struct Started {
        to_writer: tokio::sync::mpsc::UnboundedSender<Pending>,
        stop: watch::Sender<bool>,
        writing: tokio::task::JoinHandle<Writer<Recorder>>,
        _reload: watch::Sender<u64>,
        _recycled: tokio::sync::mpsc::UnboundedReceiver<Batch>,
    }

    fn start_writer(sink: Recorder) -> Started {
        let writer = Writer {
            settings: test_settings(),
            sink,
            db: clickhouse::Client::default().with_url("http://127.0.0.1:9"),
            metrics: Arc::new(Metrics::new()),
            detection: None,
        };
        let (to_writer, batches) = tokio::sync::mpsc::unbounded_channel();
        let (recycle, recycled) = tokio::sync::mpsc::unbounded_channel();
        let (stop, shutdown) = watch::channel(false);
        let (reload_tx, reload) = watch::channel(0);
        let writing = tokio::spawn(write_batches(writer, batches, recycle, shutdown, reload));
        Started { to_writer, stop, writing, _reload: reload_tx, _recycled: recycled }
    }

    /// Each batch is committed after its write succeeded (failed writes are retried first), and
    /// batches are written and committed in the order they were handed over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_committed_only_after_its_write_and_in_order() {
        let sink = Recorder { delay: Duration::from_millis(20), ..Recorder::default() };
        sink.fail.store(2, std::sync::atomic::Ordering::SeqCst);
        let in_flight = InFlight::new(4);
        let started = start_writer(sink.clone());
        for id in 1..=3 {
            started.to_writer.send(pending(id, &in_flight, false)).expect("writer runs");
        }
        drop(started.to_writer);
        started.writing.await.expect("writer ends");
        assert_eq!(
            sink.log(),
            [
                "write failed 1",
                "write failed 1",
                "write 1",
                "commit 1",
                "write 2",
                "commit 2",
                "write 3",
                "commit 3"
            ]
        );
        assert!(!in_flight.busy(), "every permit back after its commit");
    }

    /// Shutdown while a batch's write keeps failing: the batch is given up, and nothing after it
    /// (the reader's last batch included) is written or committed, since its offsets would cover
    /// the batch given up. The permits come back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_given_up_at_shutdown_lets_nothing_after_it_commit() {
        let sink = Recorder::default();
        sink.fail.store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
        let in_flight = InFlight::new(1);
        let started = start_writer(sink.clone());
        started.to_writer.send(pending(1, &in_flight, false)).expect("writer runs");
        tokio::time::sleep(Duration::from_millis(150)).await;
        started.stop.send(true).expect("writer listens");
        // The reader's last batch; the writer may have stopped already.
        let _ = started.to_writer.send(pending(2, &in_flight, true));
        let writing = tokio::time::timeout(Duration::from_secs(5), started.writing);
        writing.await.expect("gives up at once").expect("writer ends");
        let log = sink.log();
        assert!(log.iter().all(|l| l == "write failed 1"), "{log:?}");
        assert!(!in_flight.busy());
    }

    /// Shutdown with a batch being written and the reader's last batch behind it: both are
    /// written and committed, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_writes_and_commits_the_batch_in_flight_and_the_last() {
        let sink = Recorder { delay: Duration::from_millis(200), ..Recorder::default() };
        let in_flight = InFlight::new(1);
        let started = start_writer(sink.clone());
        started.to_writer.send(pending(1, &in_flight, false)).expect("writer runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
        started.stop.send(true).expect("writer listens");
        started.to_writer.send(pending(2, &in_flight, true)).expect("writer runs");
        drop(started.to_writer);
        started.writing.await.expect("writer ends");
        assert_eq!(sink.log(), ["write 1", "commit 1", "write 2", "commit 2"]);
    }

    /// A revocation (the rebalance callback, on the reader's thread) returns only after the
    /// batch in flight is written and committed, and counts itself for the reader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_waits_for_the_batch_in_flight_to_be_committed() {
        let sink = Recorder { delay: Duration::from_millis(300), ..Recorder::default() };
        let in_flight = Arc::new(InFlight::new(1));
        let started = start_writer(sink.clone());
        started.to_writer.send(pending(1, &in_flight, false)).expect("writer runs");
        assert!(in_flight.busy());
        let before = in_flight.revocations();
        in_flight.revoke();
        assert_eq!(sink.log(), ["write 1", "commit 1"], "committed before the revocation went on");
        assert_eq!(in_flight.revocations(), before + 1);
        // Nothing in flight: a revocation does not wait.
        let started_at = Instant::now();
        in_flight.revoke();
        assert!(started_at.elapsed() < Duration::from_millis(100));
        drop(started.to_writer);
        started.writing.await.expect("writer ends");
    }

    #[test]
    fn poison_records_become_dead_letters_with_reasons() {
        let mut batch = Batch::default();
        assert_eq!(route(None, origin(), &mut batch), Err("empty"));
        assert_eq!(route(Some(b"{nope"), origin(), &mut batch), Err("invalid_json"));
        assert_eq!(route(Some(b"\xff\xfe garbage"), origin(), &mut batch), Err("invalid_json"));
        let mut event = Event::new(Dataset::Flow, "id".into(), canh_event::Timestamp(0), "s", "t");
        assert_eq!(
            route(Some(event.to_json().as_bytes()), origin(), &mut batch),
            Err("missing_fields")
        );
        event.canh.schema_version = 999;
        assert_eq!(
            route(Some(event.to_json().as_bytes()), origin(), &mut batch),
            Err("schema_version")
        );
        assert_eq!(batch.dead_letters.len(), 5);
        assert!(batch.flows.is_empty());
        let mut unknown = serde_json::to_value(&event).expect("json");
        unknown["canh"]["schema_version"] = 1.into();
        unknown["event"]["dataset"] = "netflow".into();
        let bytes = serde_json::to_vec(&unknown).expect("json");
        assert_eq!(route(Some(&bytes), origin(), &mut batch), Err("unknown_dataset"));
        unknown["event"]["dataset"] = "dns".into();
        unknown["source"] = serde_json::json!({"port": "not a number"});
        let bytes = serde_json::to_vec(&unknown).expect("json");
        assert_eq!(route(Some(&bytes), origin(), &mut batch), Err("wrong_types"));
        assert_eq!(batch.dead_letters[2].raw, b"\xff\xfe garbage");
        assert_eq!(batch.dead_letters[0].kafka_offset, 41);
    }

    /// Twelve sshd failures from one address within four minutes, then another address's sshd
    /// login on the same sensor half an hour later: the pack's brute-force correlation (ten in five minutes) fires.
    /// Spread over two partitions and read one partition after the other (the failures with even
    /// numbers and the login in the first), the second partition's failures come after the
    /// sensor's newest event is 30 minutes on: late for correlation (default lateness 5 min), and
    /// six failures stay. Ordered by event time first, the alert is raised.
    #[test]
    fn a_batch_read_partition_after_partition_is_detected_in_event_time_order() {
        let at =
            |secs: i64| Timestamp(1_700_000_000_000_000_000 + secs * 1_000_000_000).to_string();
        let failure = |i: i64| {
            serde_json::json!({
                "@timestamp": at(i * 20),
                "event": {"id": format!("e{i}"), "dataset": "log", "kind": "event",
                          "category": ["authentication"], "type": ["start"], "outcome": "failure"},
                "observer": {"id": "s1"}, "organization": {"id": "t1"},
                "process": {"name": "sshd"}, "source": {"ip": "198.51.100.7"},
                "user": {"name": "root"}, "message": "Failed password for root"
            })
        };
        let later = serde_json::json!({
            "@timestamp": at(1800),
            "event": {"id": "ok", "dataset": "log", "kind": "event",
                      "category": ["authentication"], "type": ["start"], "outcome": "success"},
            "observer": {"id": "s1"}, "organization": {"id": "t1"},
            "process": {"name": "sshd"}, "source": {"ip": "203.0.113.5"},
            "user": {"name": "alice"}, "message": "Accepted publickey for alice"
        });
        let (even, odd): (Vec<i64>, Vec<i64>) = (0..12).partition(|i| i % 2 == 0);
        let mut by_partition: Vec<serde_json::Value> = even.into_iter().map(failure).collect();
        by_partition.push(later);
        by_partition.extend(odd.into_iter().map(failure));
        let brute_force = |events: &[serde_json::Value]| {
            let mapping = Mapping::builtin();
            let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
            let loaded = load::load_dir(&rules, &mapping).expect("rule pack");
            let mut detector = Detector::new(loaded, mapping, crate::detect::Settings::default());
            let alerts = detector.process(events, Timestamp(1_800_000_000_000_000_000));
            let name = |a: &Event| a.rule.as_ref().map(|r| r.name.clone()).unwrap_or_default();
            alerts.iter().filter(|a| name(a) == "SSH brute force from one source").count()
        };
        assert_eq!(brute_force(&by_partition), 0, "read as it arrives, half is late");
        let mut tape = crate::detect::tape::Tape::new();
        for event in &by_partition {
            tape.push(event).expect("on the tape");
        }
        let ordered: Vec<serde_json::Value> =
            tape.time_order().into_iter().map(|i| tape.value(i as usize)).collect();
        let times: Vec<&str> =
            ordered.iter().map(|e| e["@timestamp"].as_str().expect("ts")).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(brute_force(&ordered), 1, "in event-time order the correlation fires");
        let mapping = Mapping::builtin();
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let loaded = load::load_dir(&rules, &mapping).expect("rule pack");
        let mut detector = Detector::new(loaded, mapping, crate::detect::Settings::default());
        let alerts = detector.process_tape(&tape, Timestamp(1_800_000_000_000_000_000));
        let name = |a: &Event| a.rule.as_ref().map(|r| r.name.clone()).unwrap_or_default();
        let fired = alerts.iter().filter(|a| name(a) == "SSH brute force from one source").count();
        assert_eq!(fired, 1, "the tape is processed in event-time order");
    }

    #[test]
    fn a_pack_is_split_into_lines_and_a_bad_line_is_a_dead_letter_of_its_own() {
        let mut batch = Batch::default();
        let dns =
            |id: &str| Event::new(Dataset::Dns, id.into(), canh_event::Timestamp(0), "s", "t");
        let mut pack = Vec::new();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            if i > 0 {
                pack.push(b'\n');
            }
            pack.extend_from_slice(dns(id).to_json().as_bytes());
        }
        pack.extend_from_slice(b"\n{nope\n");
        pack.extend_from_slice(dns("d").to_json().as_bytes());
        let mut outcomes = Vec::new();
        let mut packs = PackReader::new().expect("zstd context");
        route_record(Some(&pack), origin(), &mut batch, &mut packs, |o| outcomes.push(o));
        assert_eq!(outcomes, vec![Ok(()), Ok(()), Ok(()), Err("invalid_json"), Ok(())]);
        let ids: Vec<&str> = batch.dns.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(batch.dead_letters.len(), 1);
        assert_eq!(batch.dead_letters[0].raw, b"{nope");
        assert_eq!(batch.dead_letters[0].kafka_offset, 41);

        // One event per record (old records, other producers), with or without a final newline.
        let mut single = Batch::default();
        let mut outcomes = Vec::new();
        let one = dns("e").to_json();
        route_record(Some(one.as_bytes()), origin(), &mut single, &mut packs, |o| outcomes.push(o));
        route_record(Some(format!("{one}\n").as_bytes()), origin(), &mut single, &mut packs, |o| {
            outcomes.push(o)
        });
        route_record(Some(b"\n"), origin(), &mut single, &mut packs, |o| outcomes.push(o));
        route_record(None, origin(), &mut single, &mut packs, |o| outcomes.push(o));
        assert_eq!(outcomes, vec![Ok(()), Ok(()), Err("empty"), Err("empty")]);
        assert_eq!(single.dns.len(), 2);

        // The same pack compressed by the sensor (one zstd frame): the same rows and dead letter.
        let mut compressed = Vec::new();
        canh_event::pack::PackWriter::new(1)
            .expect("zstd context")
            .compress(&pack, &mut compressed)
            .expect("compress");
        let mut unpacked = Batch::default();
        let mut outcomes = Vec::new();
        route_record(Some(&compressed), origin(), &mut unpacked, &mut packs, |o| outcomes.push(o));
        assert_eq!(outcomes, vec![Ok(()), Ok(()), Ok(()), Err("invalid_json"), Ok(())]);
        let ids: Vec<&str> = unpacked.dns.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(unpacked.dead_letters[0].raw, b"{nope");

        // A damaged frame: one dead letter holding the record's bytes, nothing stored.
        let cut = &compressed[..compressed.len() - 7];
        let mut damaged = Batch::default();
        let mut outcomes = Vec::new();
        route_record(Some(cut), origin(), &mut damaged, &mut packs, |o| outcomes.push(o));
        assert_eq!(outcomes, vec![Err("bad_compression")]);
        assert_eq!(damaged.dns.len(), 0);
        assert_eq!(damaged.dead_letters.len(), 1);
        assert_eq!(damaged.dead_letters[0].reason, "bad_compression");
        assert_eq!(damaged.dead_letters[0].raw, cut);
    }

    #[test]
    fn events_are_routed_by_dataset() {
        let mut batch = Batch::default();
        let dns = Event::new(Dataset::Dns, "a".into(), canh_event::Timestamp(0), "s", "t");
        route(Some(dns.to_json().as_bytes()), origin(), &mut batch).expect("stored");
        let mut flow = Event::new(Dataset::Flow, "b".into(), canh_event::Timestamp(0), "s", "t");
        flow.source = Some(Default::default());
        flow.destination = Some(Default::default());
        flow.network = Some(Default::default());
        route(Some(flow.to_json().as_bytes()), origin(), &mut batch).expect("stored");
        assert_eq!((batch.dns.len(), batch.flows.len()), (1, 1));
        assert_eq!(batch.dns[0].event_id, "a");
    }

    #[test]
    fn alerts_read_back_go_to_the_alerts_table_not_to_detection() {
        let mut batch = Batch::new(true);
        let golden = include_str!("../../event/tests/golden/alert.json");
        route(Some(golden.as_bytes()), origin(), &mut batch).expect("stored");
        assert_eq!(batch.alerts.len(), 1);
        assert_eq!(batch.detect_inputs.as_ref().map(Tape::len), Some(0));
        let dns = Event::new(Dataset::Dns, "a".into(), canh_event::Timestamp(0), "s", "t");
        route(Some(dns.to_json().as_bytes()), origin(), &mut batch).expect("stored");
        assert_eq!(batch.detect_inputs.as_ref().map(Tape::len), Some(1));
    }
}
