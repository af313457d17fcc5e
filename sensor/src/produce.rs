//! The Kafka side of the uplink: the producer's settings, and the delivery reports it hands back.
//! One topic per dataset family (`<prefix><dataset>`); the message key keeps related events on one
//! partition (see [`key_of`]).

use crate::config::KafkaSection;
use crate::spool::Class;
use canh_event::{Dataset, Event};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("creating the kafka producer for {brokers}: {source}")]
    Create { brokers: String, source: KafkaError },
    #[error("starting the partition watch thread: {source}")]
    Thread { source: std::io::Error },
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
    /// Events in the record (a pack holds several, see `uplink`).
    pub events: u32,
    /// Bytes of the record's payload (what librdkafka holds a copy of until the report).
    pub bytes: usize,
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
        // The partition of a keyed record is `partition_of` its key: the uplink groups events
        // into packs by that partition and sends each pack with its first event's key.
        .set("partitioner", "murmur2")
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

/// Kafka's default partitioner hash (Java client's `Utils.murmur2`, librdkafka's `murmur2`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if let Some(&first) = rest.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition librdkafka's `murmur2` partitioner gives `key` among `partitions` (> 0).
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// The partition count of each dataset's topic (in `Dataset::ALL` order; 0 = not known yet),
/// kept up to date by [`PartitionWatch`] and read by the uplink thread.
#[derive(Debug, Default)]
pub struct Partitions {
    counts: [AtomicU32; Dataset::ALL.len()],
}

impl Partitions {
    pub fn get(&self, dataset: u8) -> u32 {
        self.counts.get(usize::from(dataset)).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn set(&self, dataset: u8, count: u32) {
        if let Some(c) = self.counts.get(usize::from(dataset)) {
            c.store(count, Ordering::Relaxed);
        }
    }
}

/// How often the partition counts are asked for again once all are known (new partitions are
/// picked up this late), and while some are not.
const PARTITIONS_REFRESH: Duration = Duration::from_secs(30);
const PARTITIONS_RETRY: Duration = Duration::from_secs(1);

/// A thread that asks Kafka for the partition counts of the uplink's topics, on a client of its
/// own, so that the uplink thread never waits for a metadata answer.
pub struct PartitionWatch {
    stop: std::sync::mpsc::Sender<()>,
}

impl PartitionWatch {
    /// Start watching `topics` (in `Dataset::ALL` order) with a client made from `client`.
    pub fn start(
        client: &ClientConfig,
        topics: Vec<String>,
        partitions: std::sync::Arc<Partitions>,
    ) -> Result<PartitionWatch, ProduceError> {
        let mut client = client.clone();
        // A client that never produces: it needs no producer id.
        client.set("enable.idempotence", "false");
        let brokers = client.get("bootstrap.servers").unwrap_or_default().to_string();
        let watcher: BaseProducer<rdkafka::producer::DefaultProducerContext> =
            client.create().map_err(|source| ProduceError::Create { brokers, source })?;
        let (stop, stopped) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("uplink-meta".into())
            .spawn(move || loop {
                // All topics in one request (asking for named ones could create them).
                let mut known = 0;
                if let Ok(metadata) = watcher.client().fetch_metadata(None, METADATA_TIMEOUT) {
                    for (index, name) in topics.iter().enumerate() {
                        let topic = metadata.topics().iter().find(|t| t.name() == name);
                        let count = topic
                            .filter(|t| t.error().is_none())
                            .map_or(0, |t| t.partitions().len());
                        if count > 0 {
                            partitions.set(index as u8, u32::try_from(count).unwrap_or(u32::MAX));
                            known += 1;
                        }
                    }
                }
                let wait =
                    if known == topics.len() { PARTITIONS_REFRESH } else { PARTITIONS_RETRY };
                match stopped.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })
            .map_err(|source| ProduceError::Thread { source })?;
        Ok(PartitionWatch { stop })
    }

    /// Tell the thread to stop (it ends after the request it may be waiting for; not joined).
    pub fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// How long one metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

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
            events: 1,
            bytes: 10,
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

    /// Values of Kafka's own test of `Utils.murmur2` (the Java client), which librdkafka's
    /// `murmur2` partitioner also reproduces.
    #[test]
    fn murmur2_equals_kafkas() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ];
        for (text, want) in cases {
            assert_eq!(murmur2(text.as_bytes()) as i32, want, "{text}");
        }
        assert!((0..1000).all(|i| partition_of(format!("k{i}").as_bytes(), 7) < 7));
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
