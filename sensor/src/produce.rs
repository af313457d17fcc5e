//! The Kafka side of the uplink: the producer's settings, and the delivery reports it hands back.
//! One topic per dataset family (`<prefix><dataset>`); the message key keeps related events on one
//! partition (see [`key_of`]).

use crate::config::KafkaSection;
use crate::spool::Class;
use canh_event::{Dataset, Event};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, ProducerContext};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("creating the kafka producer for {brokers}: {source}")]
    Create { brokers: String, source: KafkaError },
}

/// Where a record in flight came from, so its delivery report can acknowledge the right thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Sent straight from the in-memory queue.
    Memory,
    /// Read back from a spool segment.
    Spool { segment: u64 },
    /// Sent straight from the in-memory queue after being written ahead to `segment`.
    WriteAhead { segment: u64 },
}

/// What the uplink attaches to every record it produces (kept in [`Tags`]).
#[derive(Debug, Clone, Copy)]
pub struct Tag {
    pub origin: Origin,
    pub class: Class,
    pub dataset: u8,
    /// Sent again after a failed delivery.
    pub retried: bool,
    pub sent_at: Instant,
}

/// The tags of the records in flight. librdkafka carries each record's index here as its opaque
/// value, so producing a record allocates nothing for its tag.
#[derive(Debug, Default)]
pub struct Tags {
    slots: Vec<Tag>,
    free: Vec<usize>,
}

impl Tags {
    pub fn insert(&mut self, tag: Tag) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.slots[index] = tag;
                index
            }
            None => {
                self.slots.push(tag);
                self.slots.len() - 1
            }
        }
    }

    /// The tag of a delivery report; its slot is free again. Each index is taken once, by the
    /// report of the record it was given to.
    pub fn take(&mut self, index: usize) -> Option<Tag> {
        let tag = *self.slots.get(index)?;
        self.free.push(index);
        Some(tag)
    }

    /// Give back a slot whose record the producer refused (no report will come for it).
    pub fn release(&mut self, index: usize) {
        if index < self.slots.len() {
            self.free.push(index);
        }
    }
}

/// A delivery report, with the index of its record's [`Tag`].
pub enum Outcome {
    Delivered(usize),
    /// Kafka did not take the record; its bytes come back so it can be spooled again.
    Failed {
        tag: usize,
        error: KafkaError,
        topic: String,
        key: Vec<u8>,
        payload: Vec<u8>,
    },
}

/// Collects delivery reports while the producer is polled; the uplink takes them after each poll.
#[derive(Default)]
pub struct Deliveries {
    outcomes: Mutex<Vec<Outcome>>,
    /// Callbacks served so far (delivery reports and errors), to poll until none is left.
    served: AtomicU64,
}

impl Deliveries {
    /// Move the reports collected so far into `into` (expected empty): the two lists are swapped,
    /// so both keep their capacity.
    pub fn take_into(&self, into: &mut Vec<Outcome>) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *outcomes, into);
    }

    /// How many callbacks the producer's `poll` has served so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        self.served.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        self.served.fetch_add(1, Ordering::Relaxed);
        let outcome = match result {
            Ok(_) => Outcome::Delivered(tag),
            Err((error, message)) => Outcome::Failed {
                tag,
                error: error.clone(),
                topic: message.topic().to_string(),
                key: message.key().unwrap_or_default().to_vec(),
                payload: message.payload().unwrap_or_default().to_vec(),
            },
        };
        self.outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(outcome);
    }
}

pub type KafkaProducer = BaseProducer<Deliveries>;

/// Settings of the producer beyond the config file's `[kafka]` section.
#[derive(Debug, Clone, Copy)]
pub struct ProducerTuning {
    pub linger: Duration,
    /// How long librdkafka keeps retrying a record before reporting it failed.
    pub message_timeout: Duration,
    /// librdkafka's own queue limit (records).
    pub queue_records: usize,
}

/// The librdkafka settings for `kafka`. SASL credentials come from CANH_KAFKA_USERNAME and
/// CANH_KAFKA_PASSWORD.
pub fn client_config(kafka: &KafkaSection, tuning: ProducerTuning) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &kafka.brokers)
        .set("compression.type", &kafka.compression)
        .set("compression.level", compression_level(kafka).to_string())
        .set("enable.idempotence", kafka.idempotence.to_string())
        .set("linger.ms", tuning.linger.as_millis().to_string())
        .set("batch.size", (1 << 20).to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", tuning.queue_records.to_string())
        .set("queue.buffering.max.kbytes", (1 << 20).to_string())
        .set("message.timeout.ms", tuning.message_timeout.as_millis().to_string());
    for (name, value) in kafka.security().client_settings() {
        client.set(name, value);
    }
    client
}

/// `kafka.compression_level`, else 1 for zstd (its fastest level; about twice the speed of its
/// default 3 for most of the ratio, BENCHMARKS.md) and the codec's default for the others.
fn compression_level(kafka: &KafkaSection) -> i32 {
    match kafka.compression_level {
        Some(level) => level,
        None if kafka.compression == "zstd" => 1,
        None => -1,
    }
}

pub fn connect(
    kafka: &KafkaSection,
    tuning: ProducerTuning,
) -> Result<KafkaProducer, ProduceError> {
    client_config(kafka, tuning)
        .create_with_context(Deliveries::default())
        .map_err(|source| ProduceError::Create { brokers: kafka.brokers.clone(), source })
}

/// The message key: the Community ID for network events, the host for logs, else the sensor id.
pub fn key_of(event: &Event) -> &str {
    if let Some(id) = event.network.as_ref().and_then(|n| n.community_id.as_deref()) {
        return id;
    }
    if let Some(host) = &event.host {
        return &host.hostname;
    }
    &event.observer.id
}

/// Which spool class (and so which drop order and priority) a dataset belongs to.
pub fn class_of(dataset: Dataset) -> Class {
    match dataset {
        Dataset::Alert | Dataset::Sensor => Class::Critical,
        Dataset::Log => Class::Normal,
        Dataset::Flow
        | Dataset::Dns
        | Dataset::Http
        | Dataset::Tls
        | Dataset::Ssh
        | Dataset::Icmp => Class::Bulk,
    }
}

/// Index of `dataset` in `Dataset::ALL`, as stored in spool records.
pub fn dataset_index(dataset: Dataset) -> u8 {
    Dataset::ALL.iter().position(|d| *d == dataset).unwrap_or(0) as u8
}

/// The dataset name of an index from [`dataset_index`] (for metric labels).
pub fn dataset_name(index: u8) -> &'static str {
    Dataset::ALL.get(index as usize).map_or("unknown", |d| d.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_reuse_free_slots_and_give_each_tag_back_once() {
        let tag = |dataset| Tag {
            origin: Origin::Memory,
            class: Class::Bulk,
            dataset,
            retried: false,
            sent_at: Instant::now(),
        };
        let mut tags = Tags::default();
        let (a, b) = (tags.insert(tag(1)), tags.insert(tag(2)));
        assert_ne!(a, b);
        assert_eq!(tags.take(a).map(|t| t.dataset), Some(1));
        // The freed slot is used again, and holds the new tag.
        let c = tags.insert(tag(3));
        assert_eq!(c, a);
        assert_eq!(tags.take(c).map(|t| t.dataset), Some(3));
        tags.release(b);
        assert_eq!(tags.insert(tag(4)), b);
        assert_eq!(tags.take(99).map(|t| t.dataset), None);
    }

    #[test]
    fn keys_follow_the_kind_of_event() {
        let mut flow = Event::new(Dataset::Flow, "id".into(), canh_event::Timestamp(0), "s1", "t");
        assert_eq!(key_of(&flow), "s1");
        flow.network =
            Some(canh_event::Network { community_id: Some("1:abc".into()), ..Default::default() });
        assert_eq!(key_of(&flow), "1:abc");
        let mut log = Event::new(Dataset::Log, "id".into(), canh_event::Timestamp(0), "s1", "t");
        log.host = Some(canh_event::Host { hostname: "web-01".into() });
        assert_eq!(key_of(&log), "web-01");
    }

    #[test]
    fn zstd_defaults_to_level_1_other_codecs_to_their_own_default() {
        let kafka = |text: &str| -> KafkaSection { toml::from_str(text).expect("kafka section") };
        assert_eq!(compression_level(&kafka("brokers = \"b:1\"")), 1);
        assert_eq!(compression_level(&kafka("brokers = \"b:1\"\ncompression = \"lz4\"")), -1);
        let explicit = kafka("brokers = \"b:1\"\ncompression_level = 6");
        assert_eq!(compression_level(&explicit), 6);
        let tuning = ProducerTuning {
            linger: Duration::from_millis(5),
            message_timeout: Duration::from_secs(1),
            queue_records: 10,
        };
        let config = client_config(&explicit, tuning);
        assert_eq!(config.get("compression.level"), Some("6"));
        assert_eq!(config.get("compression.type"), Some("zstd"));
    }

    #[test]
    fn alerts_and_health_are_critical_flows_are_bulk() {
        assert_eq!(class_of(Dataset::Alert), Class::Critical);
        assert_eq!(class_of(Dataset::Sensor), Class::Critical);
        assert_eq!(class_of(Dataset::Log), Class::Normal);
        assert_eq!(class_of(Dataset::Flow), Class::Bulk);
        for dataset in Dataset::ALL {
            assert_eq!(dataset_name(dataset_index(dataset)), dataset.as_str());
        }
    }
}
