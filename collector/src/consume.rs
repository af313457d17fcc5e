//! The Kafka consumer: records in, batches written to ClickHouse, offsets committed only after the
//! write succeeded. A full batch stops consumption until it is written: the collector never drops,
//! Kafka keeps the data.

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::{self, Batch, DeadLetterRow, Origin};
use canh_event::{Dataset, DecodeError, Event};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("creating the kafka consumer for {brokers}: {source}")]
    Create { brokers: String, source: rdkafka::error::KafkaError },
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe { topics: Vec<String>, source: rdkafka::error::KafkaError },
}

/// Decode one Kafka record into the batch: a stored row, or a dead letter with its reason.
pub fn route(
    payload: Option<&[u8]>,
    origin: &Origin,
    batch: &mut Batch,
) -> Result<(), &'static str> {
    let dead = |batch: &mut Batch, reason: &'static str, error: String, raw: &[u8]| {
        batch.dead_letters.push(DeadLetterRow {
            received_at: now_secs(),
            topic: origin.topic.clone(),
            kafka_partition: origin.partition,
            kafka_offset: origin.offset,
            reason: reason.to_string(),
            error,
            raw: raw.to_vec(),
        });
        Err(reason)
    };
    let Some(raw) = payload.filter(|p| !p.is_empty()) else {
        return dead(batch, "empty", "record has no payload".into(), &[]);
    };
    let event = match Event::from_json(raw) {
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
    batch.push(&event, raw, origin);
    Ok(())
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

fn consumer(settings: &Settings) -> Result<StreamConsumer, ConsumeError> {
    let kafka = &settings.config.kafka;
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", settings.session_timeout.as_millis().to_string())
        .set("security.protocol", &kafka.security_protocol);
    if let Some(mechanism) = &kafka.sasl_mechanism {
        client.set("sasl.mechanism", mechanism);
    }
    if let Ok(user) = std::env::var("CANH_KAFKA_USERNAME") {
        client.set("sasl.username", user);
    }
    if let Ok(password) = std::env::var("CANH_KAFKA_PASSWORD") {
        client.set("sasl.password", password);
    }
    client
        .create()
        .map_err(|source| ConsumeError::Create { brokers: kafka.brokers.clone(), source })
}

/// Consume until `shutdown` turns true, then write what is batched, commit, and return.
pub async fn run(
    settings: &Settings,
    db: clickhouse::Client,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), ConsumeError> {
    let consumer = consumer(settings)?;
    let topics = topics(&settings.config.kafka.topic_prefix);
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(|source| ConsumeError::Subscribe { topics: topics.clone(), source })?;
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(?topics, group = %settings.config.kafka.group_id, "consuming");

    let max_records = settings.config.batch.max_records;
    let mut batch = Batch::default();
    // Highest offset seen per (topic, partition) in the current batch.
    let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
    let mut batch_deadline: Option<tokio::time::Instant> = None;
    loop {
        let deadline = batch_deadline;
        let received = tokio::select! {
            _ = shutdown.changed() => break,
            message = consumer.recv() => Some(message),
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => None,
        };
        match received {
            Some(Ok(message)) => {
                let origin = Origin {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                };
                match route(message.payload(), &origin, &mut batch) {
                    Ok(()) => metrics.records.with_label_values(&["stored"]).inc(),
                    Err(reason) => {
                        metrics.records.with_label_values(&["dead_letter"]).inc();
                        metrics.errors.with_label_values(&["decode", reason]).inc();
                        tracing::debug!(reason, topic = %origin.topic, offset = origin.offset, "dead letter");
                    }
                }
                let entry =
                    offsets.entry((origin.topic, origin.partition)).or_insert(origin.offset);
                *entry = (*entry).max(origin.offset);
                batch_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + settings.max_wait);
                metrics.batch_records.set(batch.len() as i64);
            }
            Some(Err(err)) => {
                metrics.errors.with_label_values(&["consume", "kafka"]).inc();
                tracing::warn!(error = %err, "kafka consume error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => {}
        }
        let due = batch_deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        if batch.len() >= max_records || (due && !offsets.is_empty()) {
            if !flush(settings, &consumer, &db, &metrics, &mut batch, &mut offsets, &mut shutdown)
                .await
            {
                return Ok(());
            }
            batch_deadline = None;
        }
    }
    // Shutting down: write and commit what is batched, within a time bound.
    if !offsets.is_empty() {
        let (_never, mut no_stop) = watch::channel(false);
        let bounded = tokio::time::timeout(
            Duration::from_secs(30),
            flush(settings, &consumer, &db, &metrics, &mut batch, &mut offsets, &mut no_stop),
        );
        if bounded.await.is_err() {
            tracing::warn!(
                "shutdown: batch not written in time; kafka keeps it for the next start"
            );
        }
    }
    Ok(())
}

/// Write the batch (retrying with backoff until it lands) and commit its offsets. Returns false if
/// shutdown came first: nothing is committed then, and Kafka redelivers the batch after restart.
async fn flush(
    settings: &Settings,
    consumer: &StreamConsumer,
    db: &clickhouse::Client,
    metrics: &Metrics,
    batch: &mut Batch,
    offsets: &mut HashMap<(String, i32), i64>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        match store::write(db, batch).await {
            Ok(()) => {
                metrics.write_seconds.observe(started.elapsed().as_secs_f64());
                break;
            }
            Err(err) => {
                metrics.write_retries.inc();
                metrics.errors.with_label_values(&["store", "clickhouse"]).inc();
                tracing::warn!(error = %err, retry_in = ?backoff, "batch write failed; consumption paused");
                tokio::select! {
                    _ = shutdown.changed() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(settings.max_backoff);
            }
        }
    }
    for (table, rows) in batch.counts() {
        metrics.rows_written.with_label_values(&[table]).inc_by(rows as u64);
    }

    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets.iter() {
        // Kafka's committed offset is the next record to read.
        if let Err(err) = list.add_partition_offset(topic, *partition, Offset::Offset(offset + 1)) {
            tracing::warn!(error = %err, "building the offset commit");
        }
    }
    // A failed commit (e.g. after a rebalance took the partition) means a redelivery later; the
    // rows' event ids make that harmless.
    match tokio::task::block_in_place(|| consumer.commit(&list, CommitMode::Sync)) {
        Ok(()) => metrics.commits.inc(),
        Err(err) => {
            metrics.errors.with_label_values(&["commit", "kafka"]).inc();
            tracing::warn!(error = %err, "offset commit failed; records will be redelivered");
        }
    }
    *batch = Batch::default();
    offsets.clear();
    metrics.batch_records.set(0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin { topic: "canh-flow".into(), partition: 2, offset: 41 }
    }

    #[test]
    fn poison_records_become_dead_letters_with_reasons() {
        let mut batch = Batch::default();
        assert_eq!(route(None, &origin(), &mut batch), Err("empty"));
        assert_eq!(route(Some(b"{nope"), &origin(), &mut batch), Err("invalid_json"));
        assert_eq!(route(Some(b"\xff\xfe garbage"), &origin(), &mut batch), Err("invalid_json"));
        let mut event = Event::new(Dataset::Flow, "id".into(), canh_event::Timestamp(0), "s", "t");
        assert_eq!(
            route(Some(event.to_json().as_bytes()), &origin(), &mut batch),
            Err("missing_fields")
        );
        event.canh.schema_version = 999;
        assert_eq!(
            route(Some(event.to_json().as_bytes()), &origin(), &mut batch),
            Err("schema_version")
        );
        assert_eq!(batch.dead_letters.len(), 5);
        assert!(batch.flows.is_empty());
        let mut unknown = serde_json::to_value(&event).expect("json");
        unknown["canh"]["schema_version"] = 1.into();
        unknown["event"]["dataset"] = "netflow".into();
        let bytes = serde_json::to_vec(&unknown).expect("json");
        assert_eq!(route(Some(&bytes), &origin(), &mut batch), Err("unknown_dataset"));
        unknown["event"]["dataset"] = "dns".into();
        unknown["source"] = serde_json::json!({"port": "not a number"});
        let bytes = serde_json::to_vec(&unknown).expect("json");
        assert_eq!(route(Some(&bytes), &origin(), &mut batch), Err("wrong_types"));
        assert_eq!(batch.dead_letters[2].raw, b"\xff\xfe garbage");
        assert_eq!(batch.dead_letters[0].kafka_offset, 41);
    }

    #[test]
    fn events_are_routed_by_dataset() {
        let mut batch = Batch::default();
        let dns = Event::new(Dataset::Dns, "a".into(), canh_event::Timestamp(0), "s", "t");
        route(Some(dns.to_json().as_bytes()), &origin(), &mut batch).expect("stored");
        let mut flow = Event::new(Dataset::Flow, "b".into(), canh_event::Timestamp(0), "s", "t");
        flow.source = Some(Default::default());
        flow.destination = Some(Default::default());
        flow.network = Some(Default::default());
        route(Some(flow.to_json().as_bytes()), &origin(), &mut batch).expect("stored");
        assert_eq!((batch.dns.len(), batch.flows.len()), (1, 1));
        assert_eq!(batch.dns[0].event_id, "a");
    }
}
