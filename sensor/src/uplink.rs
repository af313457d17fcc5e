//! The uplink: events from the capture thread to Kafka, through the spool when Kafka is unreachable
//! or slower than the input. One thread owns the producer and the spool; the capture thread only
//! calls [`Uplink::send`]. The policy is written down in sensor/UPLINK.md.
//!
//! Routing of each event:
//! - Alerts and sensor health ([`Class::Critical`]) go straight to the producer unless the link is
//!   down, ahead of anything spooled and outside the rate cap.
//! - Anything else goes straight to the producer only when nothing is waiting in the spool (so the
//!   spool drains in order), fewer than `max_in_flight` events are unacknowledged, the link is up
//!   and the rate cap allows; otherwise it is appended to the spool.
//! - Spooled events are sent again, oldest segment first, as the same limits allow; a segment is
//!   deleted once Kafka acknowledged all its records.
//! - A failed delivery of a memory event spools it; a failed delivery of a spooled event rewinds the
//!   spool (its segments are sent again whole later). Either marks the link down for a while.
//! - With `write_ahead` (the default) an event sent straight to the producer is first written to a
//!   write-ahead segment of the spool, and handed to librdkafka only after the batch it came in was
//!   written to the operating system: an event the uplink took survives `kill -9`. Its delivery
//!   report acknowledges it in that segment like a spooled one.

use crate::capture::now_ns;
use crate::metrics::Metrics;
use crate::produce::{self, KafkaProducer, Origin, Outcome, Tag};
use crate::spool::{Appended, Class, Record, RecordRef, Spool, SpoolError, SpoolLimits};
use canh_event::{Dataset, Event, SensorStats, Timestamp};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error(transparent)]
    Produce(#[from] produce::ProduceError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("starting the uplink thread: {0}")]
    Thread(std::io::Error),
    #[error("the uplink thread stopped")]
    Stopped,
}

/// Everything the uplink needs besides the producer.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub topic_prefix: String,
    pub spool_dir: PathBuf,
    pub spool: SpoolLimits,
    pub queue_capacity: usize,
    pub max_in_flight: usize,
    /// Events per second for non-critical events; `None` = no cap.
    pub rate_limit: Option<u32>,
    pub health_interval: Option<Duration>,
    pub stall_timeout: Duration,
    pub retry_backoff: Duration,
    /// How long shutdown waits for Kafka before leaving the rest in the spool.
    pub flush_timeout: Duration,
    pub sensor_id: String,
    pub tenant: String,
    pub interface: Option<String>,
    /// Sequence number of the first health event (see `sequence`: the upper half of the run's
    /// epoch is the uplink's, the lower half the packet pipeline's).
    pub health_first_seq: u64,
    /// Write every event to the spool before handing it to the producer.
    pub write_ahead: bool,
}

/// Events in flight while the link is being tried again after an outage.
const PROBE_IN_FLIGHT: usize = 1_000;

/// An event ready for Kafka.
struct Outgoing {
    class: Class,
    dataset: u8,
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// What the capture and log threads put on the uplink's queue.
enum Item {
    Event(Outgoing),
    /// Answer once everything queued before it is durable (see [`Uplink::barrier`]).
    Barrier(SyncSender<bool>),
}

/// What the uplink did, for the final stats line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub delivered: u64,
    pub spooled: u64,
    pub drained: u64,
    pub dropped: u64,
    pub damaged_regions: u64,
    pub spool_bytes_left: u64,
}

pub struct Uplink {
    // Bounded: when full, `send` waits; the uplink thread empties it at Kafka or disk speed.
    tx: SyncSender<Item>,
    thread: JoinHandle<Summary>,
    topic_prefix: String,
}

impl Uplink {
    pub fn start(
        config: UplinkConfig,
        producer: KafkaProducer,
        metrics: Metrics,
    ) -> Result<Uplink, UplinkError> {
        let spool = Spool::open(&config.spool_dir, config.spool)?;
        if !spool.is_empty() {
            tracing::info!(
                dir = %config.spool_dir.display(),
                bytes = spool.bytes(),
                "spool holds events from an earlier run; sending them first"
            );
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_capacity);
        let topic_prefix = config.topic_prefix.clone();
        let worker = Worker::new(config, producer, spool, metrics);
        let thread = std::thread::Builder::new()
            .name("uplink".into())
            .spawn(move || worker.run(rx))
            .map_err(UplinkError::Thread)?;
        Ok(Uplink { tx, thread, topic_prefix })
    }

    /// Queue one event for Kafka. Waits while the in-memory queue is full.
    pub fn send(&self, event: &Event) -> Result<(), UplinkError> {
        let item = Item::Event(outgoing(&self.topic_prefix, event));
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(item)) => self.tx.send(item).map_err(|_| UplinkError::Stopped),
            Err(TrySendError::Disconnected(_)) => Err(UplinkError::Stopped),
        }
    }

    /// Wait until every event this thread sent before is durable: written (and `fsync`ed) in the
    /// spool, or acknowledged by Kafka. False when that cannot be said within `timeout` (without
    /// write-ahead: events sent from memory are still unacknowledged), or the uplink stopped.
    pub fn barrier(&self, timeout: Duration) -> bool {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Item::Barrier(reply)).is_err() {
            return false;
        }
        answer.recv_timeout(timeout).unwrap_or(false)
    }

    /// Stop taking events, deliver what Kafka takes within the flush timeout, keep the rest in
    /// the spool.
    pub fn shutdown(self) -> Result<Summary, UplinkError> {
        drop(self.tx);
        self.thread.join().map_err(|_| UplinkError::Stopped)
    }
}

fn outgoing(topic_prefix: &str, event: &Event) -> Outgoing {
    let dataset = event.event.dataset;
    Outgoing {
        class: produce::class_of(dataset),
        dataset: produce::dataset_index(dataset),
        topic: format!("{topic_prefix}{}", dataset.as_str()),
        key: produce::key_of(event).as_bytes().to_vec(),
        payload: event.to_json().into_bytes(),
    }
}

/// The spool segment being sent.
struct Draining {
    segment: u64,
    records: VecDeque<Record>,
}

struct Worker {
    config: UplinkConfig,
    producer: KafkaProducer,
    spool: Spool,
    metrics: Metrics,
    in_flight: usize,
    /// Bumped on every rewind; delivery reports of older generations are ignored.
    generation: u64,
    draining: Option<Draining>,
    /// Events written ahead in this batch, handed to the producer once the batch is written out.
    staged: Vec<(Outgoing, Origin)>,
    /// Events sent from memory (not written ahead) and not yet acknowledged.
    memory_in_flight: usize,
    /// While set and in the future, everything is spooled.
    link_down_until: Option<Instant>,
    /// Set when the link went down, cleared by the next acknowledgement: until then at most
    /// `PROBE_IN_FLIGHT` events are sent, so a dead link does not pull the whole spool into memory.
    probing: bool,
    /// Last acknowledgement, or the last time nothing was in flight.
    last_progress: Instant,
    tokens: f64,
    last_refill: Instant,
    next_health: Option<Instant>,
    health_seq: u64,
    record_seq: u64,
    /// Whether the last append found the spool full (to log once per episode).
    spool_full: bool,
    summary: Summary,
}

impl Worker {
    fn new(config: UplinkConfig, producer: KafkaProducer, spool: Spool, metrics: Metrics) -> Self {
        let now = Instant::now();
        metrics.link_up.set(1);
        Worker {
            next_health: config.health_interval.map(|_| now),
            health_seq: config.health_first_seq,
            config,
            producer,
            spool,
            metrics,
            in_flight: 0,
            generation: 0,
            draining: None,
            staged: Vec::new(),
            memory_in_flight: 0,
            link_down_until: None,
            probing: false,
            last_progress: now,
            tokens: 0.0,
            last_refill: now,
            record_seq: 0,
            spool_full: false,
            summary: Summary::default(),
        }
    }

    fn run(mut self, rx: Receiver<Item>) -> Summary {
        let mut deadline = None;
        loop {
            if deadline.is_none() {
                match rx.recv_timeout(Duration::from_millis(10)) {
                    Ok(item) => {
                        self.take(item);
                        // Take what else is waiting, a bounded amount per turn.
                        for item in rx.try_iter().take(20_000) {
                            self.take(item);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        deadline = Some(Instant::now() + self.config.flush_timeout);
                    }
                }
            } else {
                self.producer.poll(Duration::from_millis(10));
            }
            self.turn();
            if let Some(deadline) = deadline {
                let done = self.in_flight == 0 && self.spool.is_empty();
                if done || Instant::now() >= deadline {
                    break;
                }
            }
        }
        self.finish();
        self.summary
    }

    fn take(&mut self, item: Item) {
        match item {
            Item::Event(item) => self.route(item),
            Item::Barrier(reply) => {
                self.send_staged();
                let durable = match self.spool.sync() {
                    Ok(()) => self.memory_in_flight == 0,
                    Err(err) => {
                        self.metrics.spool_errors.inc();
                        tracing::error!(error = %err, "cannot sync the spool");
                        false
                    }
                };
                // The asker may have given up waiting; nothing to do then.
                let _ = reply.try_send(durable);
            }
        }
    }

    /// Write the batch's write-ahead records out to the operating system, then hand them to the
    /// producer. Nothing reaches librdkafka before it is in a segment file.
    fn send_staged(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        if let Err(err) = self.spool.flush() {
            // Still in memory: send them anyway, and say they are not durable.
            self.metrics.spool_errors.inc();
            tracing::error!(error = %err, "cannot write the write-ahead records out");
        }
        let staged = std::mem::take(&mut self.staged);
        let mut refused = false;
        for (item, origin) in staged {
            if refused {
                continue;
            }
            if self.produce(item, origin).is_err() {
                // The rest of the batch is in the spool: send it again from there.
                refused = true;
            }
        }
        if refused {
            tracing::warn!(
                in_flight = self.in_flight,
                "producer refused a written-ahead event: sending the spool again from disk"
            );
            self.rewind();
        }
    }

    /// The periodic work of one loop turn.
    fn turn(&mut self) {
        self.send_staged();
        self.producer.poll(Duration::ZERO);
        self.handle_outcomes();
        self.check_stall();
        self.drain_spool();
        self.health();
        self.send_staged();
        if let Err(err) = self.spool.flush().and_then(|()| self.spool.retire_acknowledged()) {
            self.metrics.spool_errors.inc();
            tracing::error!(error = %err, "cannot flush the spool");
        }
        self.update_gauges();
    }

    fn link_down(&self) -> bool {
        self.link_down_until.is_some_and(|until| Instant::now() < until)
    }

    /// How many events may be unacknowledged right now.
    fn in_flight_limit(&self) -> usize {
        if self.probing {
            self.config.max_in_flight.min(PROBE_IN_FLIGHT)
        } else {
            self.config.max_in_flight
        }
    }

    fn take_token(&mut self) -> bool {
        let Some(rate) = self.config.rate_limit else { return true };
        let now = Instant::now();
        let rate = f64::from(rate);
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        // At most a tenth of a second's worth may pile up.
        self.tokens = (self.tokens + elapsed * rate).min((rate / 10.0).max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn route(&mut self, item: Outgoing) {
        if self.link_down() {
            return self.spool_append(item);
        }
        let direct = if item.class == Class::Critical {
            true
        } else {
            self.draining.is_none()
                && !self.spool.has_unsent()
                && self.in_flight + self.staged.len() < self.in_flight_limit()
                && self.take_token()
        };
        if !direct {
            return self.spool_append(item);
        }
        if self.config.write_ahead {
            match self.write_ahead(&item) {
                Some(segment) => {
                    let origin = Origin::WriteAhead { segment, generation: self.generation };
                    self.staged.push((item, origin));
                    return;
                }
                // Not written ahead (spool full or failing): sent from memory, counted below.
                None => self.metrics.write_ahead_skipped.inc(),
            }
        }
        if let Err(item) = self.produce(item, Origin::Memory) {
            self.spool_append(item);
        }
    }

    /// Write `item` to a write-ahead segment; the segment, or `None` if it was not written.
    fn write_ahead(&mut self, item: &Outgoing) -> Option<u64> {
        self.record_seq += 1;
        let record = RecordRef {
            seq: self.record_seq,
            spooled_at_ns: now_ns(),
            class: item.class,
            dataset: item.dataset,
            topic: &item.topic,
            key: &item.key,
            payload: &item.payload,
        };
        match self.spool.append_sent(record) {
            Ok(segment) => segment,
            Err(err) => {
                self.metrics.spool_errors.inc();
                tracing::error!(error = %err, "cannot write ahead to the spool: sending from memory");
                None
            }
        }
    }

    /// Hand one record to the producer; gives it back when the producer's queue refuses it.
    fn produce(&mut self, item: Outgoing, origin: Origin) -> Result<(), Outgoing> {
        let tag = Box::new(Tag {
            origin,
            class: item.class,
            dataset: item.dataset,
            sent_at: Instant::now(),
        });
        let record =
            BaseRecord::with_opaque_to(&item.topic, tag).payload(&item.payload).key(&item.key);
        match self.producer.send(record) {
            Ok(()) => {
                if self.in_flight == 0 {
                    self.last_progress = Instant::now();
                }
                self.in_flight += 1;
                if origin == Origin::Memory {
                    self.memory_in_flight += 1;
                }
                Ok(())
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Err(item),
            Err((err, _)) => {
                self.metrics.kafka_errors.inc();
                tracing::warn!(error = %err, topic = %item.topic, "producer refused an event; spooling it");
                Err(item)
            }
        }
    }

    fn spool_append(&mut self, item: Outgoing) {
        self.record_seq += 1;
        let record = Record {
            seq: self.record_seq,
            spooled_at_ns: now_ns(),
            class: item.class,
            dataset: item.dataset,
            topic: item.topic,
            key: item.key,
            payload: item.payload,
        };
        let dataset = produce::dataset_name(record.dataset);
        match self.spool.append(&record) {
            Ok(Appended::Written) => {
                self.metrics.spooled.inc();
                self.summary.spooled += 1;
                self.spool_full = false;
            }
            Ok(Appended::Full) => {
                self.metrics.dropped.with_label_values(&[dataset]).inc();
                self.summary.dropped += 1;
                if !self.spool_full {
                    tracing::error!(
                        dataset,
                        spool_bytes = self.spool.bytes(),
                        "spool full for this class of event: dropping (counted by dataset)"
                    );
                    self.spool_full = true;
                }
            }
            Err(err) => {
                self.metrics.spool_errors.inc();
                self.metrics.dropped.with_label_values(&[dataset]).inc();
                self.summary.dropped += 1;
                tracing::error!(error = %err, dataset, "cannot write to the spool: event dropped");
            }
        }
    }

    fn handle_outcomes(&mut self) {
        for outcome in self.producer.context().take() {
            self.in_flight = self.in_flight.saturating_sub(1);
            let origin = match &outcome {
                Outcome::Delivered(tag) | Outcome::Failed { tag, .. } => tag.origin,
            };
            if origin == Origin::Memory {
                self.memory_in_flight = self.memory_in_flight.saturating_sub(1);
            }
            match outcome {
                Outcome::Delivered(tag) => {
                    self.last_progress = Instant::now();
                    self.metrics.kafka_delivered.inc();
                    self.metrics
                        .kafka_delivery_seconds
                        .observe(tag.sent_at.elapsed().as_secs_f64());
                    self.summary.delivered += 1;
                    if self.probing {
                        tracing::info!("kafka acknowledges events again");
                        self.probing = false;
                    }
                    self.link_down_until = None;
                    let (segment, drained) = match tag.origin {
                        Origin::Memory => continue,
                        Origin::Spool { segment, generation } => (segment, generation),
                        Origin::WriteAhead { segment, generation } => (segment, generation),
                    };
                    if drained != self.generation {
                        continue;
                    }
                    if matches!(tag.origin, Origin::Spool { .. }) {
                        self.metrics.drained.inc();
                        self.summary.drained += 1;
                    }
                    if let Err(err) = self.spool.ack(segment, 1) {
                        self.metrics.spool_errors.inc();
                        tracing::error!(error = %err, "cannot delete a sent spool segment");
                    }
                }
                Outcome::Failed { tag, error, topic, key, payload } => {
                    self.metrics.kafka_errors.inc();
                    tracing::debug!(error = %error, topic = %topic, "kafka delivery failed");
                    self.mark_link_down(&error);
                    if matches!(tag.origin, Origin::WriteAhead { .. }) {
                        // Already on disk; from now on it waits in the spool like a spooled one.
                        self.metrics.spooled.inc();
                        self.summary.spooled += 1;
                    }
                    match tag.origin {
                        Origin::Memory => self.spool_append(Outgoing {
                            class: tag.class,
                            dataset: tag.dataset,
                            topic,
                            key,
                            payload,
                        }),
                        Origin::Spool { generation, .. }
                        | Origin::WriteAhead { generation, .. }
                            if generation == self.generation =>
                        {
                            self.rewind();
                        }
                        Origin::Spool { .. } | Origin::WriteAhead { .. } => {}
                    }
                }
            }
        }
    }

    fn mark_link_down(&mut self, error: &KafkaError) {
        if !self.link_down() {
            tracing::warn!(error = %error, "kafka delivery failed: spooling until the link is back");
        }
        self.probing = true;
        self.link_down_until = Some(Instant::now() + self.config.retry_backoff);
    }

    /// Send spooled segments again from the start (their records were not all delivered).
    fn rewind(&mut self) {
        self.generation += 1;
        self.draining = None;
        if let Err(err) = self.spool.rewind() {
            self.metrics.spool_errors.inc();
            tracing::error!(error = %err, "cannot close the write-ahead segment");
        }
    }

    /// Events in flight and no acknowledgement for `stall_timeout`: take queued events back.
    fn check_stall(&mut self) {
        let now = Instant::now();
        if self.in_flight == 0 {
            self.last_progress = now;
            return;
        }
        if now.duration_since(self.last_progress) < self.config.stall_timeout {
            return;
        }
        if !self.link_down() {
            tracing::warn!(
                in_flight = self.in_flight,
                "kafka has not acknowledged anything for {:?}: spooling",
                self.config.stall_timeout
            );
        }
        self.link_down_until = Some(now + self.config.retry_backoff);
        self.probing = true;
        self.last_progress = now;
        // Queued records come back as failed deliveries: memory ones are spooled, spooled ones
        // rewind the spool. Records already on the wire fail at message_timeout.
        self.producer.purge(PurgeConfig::default().queue());
    }

    fn drain_spool(&mut self) {
        if self.link_down() {
            return;
        }
        loop {
            if self.draining.is_none() {
                if !self.spool.has_unsent() {
                    return;
                }
                match self.spool.next_batch() {
                    Ok(Some(batch)) => {
                        if batch.damage.regions > 0 {
                            self.metrics.spool_damaged_regions.inc_by(batch.damage.regions);
                            self.summary.damaged_regions += batch.damage.regions;
                            self.metrics.spool_damaged_bytes.inc_by(batch.damage.bytes);
                            tracing::error!(
                                segment = batch.segment,
                                regions = batch.damage.regions,
                                bytes = batch.damage.bytes,
                                records = batch.records.len(),
                                "spool segment damaged: skipped the unreadable bytes"
                            );
                        }
                        self.draining = Some(Draining {
                            segment: batch.segment,
                            records: batch.records.into(),
                        });
                    }
                    Ok(None) => return,
                    Err(err) => {
                        self.metrics.spool_errors.inc();
                        tracing::error!(error = %err, "cannot read the spool");
                        self.link_down_until = Some(Instant::now() + self.config.retry_backoff);
                        return;
                    }
                }
            }
            let Some(draining) = self.draining.take() else { return };
            let mut draining = draining;
            let origin = Origin::Spool { segment: draining.segment, generation: self.generation };
            while self.in_flight < self.in_flight_limit() {
                let Some(record) = draining.records.pop_front() else { break };
                if record.class != Class::Critical && !self.take_token() {
                    draining.records.push_front(record);
                    break;
                }
                let item = Outgoing {
                    class: record.class,
                    dataset: record.dataset,
                    topic: record.topic,
                    key: record.key,
                    payload: record.payload,
                };
                if let Err(item) = self.produce(item, origin) {
                    draining.records.push_front(Record {
                        seq: record.seq,
                        spooled_at_ns: record.spooled_at_ns,
                        class: item.class,
                        dataset: item.dataset,
                        topic: item.topic,
                        key: item.key,
                        payload: item.payload,
                    });
                    break;
                }
            }
            if !draining.records.is_empty() {
                self.draining = Some(draining);
                return;
            }
        }
    }

    fn health(&mut self) {
        let (Some(next), Some(interval)) = (self.next_health, self.config.health_interval) else {
            return;
        };
        let now = Instant::now();
        if now < next {
            return;
        }
        self.next_health = Some(now + interval);
        let event = self.health_event();
        let item = outgoing(&self.config.topic_prefix, &event);
        self.route(item);
        self.send_staged();
    }

    fn health_event(&mut self) -> Event {
        let seq = self.health_seq;
        self.health_seq += 1;
        let mut event = Event::new(
            Dataset::Sensor,
            canh_event::event_id(&self.config.sensor_id, seq),
            Timestamp(now_ns()),
            &self.config.sensor_id,
            &self.config.tenant,
        );
        event.sensor = Some(SensorStats {
            events_sent: Some(self.metrics.kafka_delivered.get()),
            spool_bytes: Some(self.spool.bytes()),
            ..self.metrics.capture_health(self.config.interface.as_deref())
        });
        event
    }

    fn update_gauges(&mut self) {
        self.metrics.in_flight.set(self.in_flight as i64);
        self.metrics.link_up.set(i64::from(!self.link_down() && !self.probing));
        self.metrics.spool_bytes.set(self.spool.bytes() as i64);
        let age = self.spool.oldest_ns().map_or(0, |t| (now_ns() - t).max(0) / 1_000_000_000);
        self.metrics.spool_oldest_age_seconds.set(age);
    }

    /// Take back whatever Kafka did not acknowledge into the spool, and write the spool out.
    fn finish(&mut self) {
        self.send_staged();
        self.producer.purge(PurgeConfig::default().queue().inflight());
        let until = Instant::now() + Duration::from_secs(2);
        while self.in_flight > 0 && Instant::now() < until {
            self.producer.poll(Duration::from_millis(10));
            self.handle_outcomes();
        }
        if let Err(err) = self.spool.retire_acknowledged().and_then(|()| self.spool.sync()) {
            self.metrics.spool_errors.inc();
            tracing::error!(error = %err, "cannot flush the spool at shutdown");
        }
        self.update_gauges();
        self.summary.spool_bytes_left = self.spool.bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KafkaSection;
    use crate::produce::ProducerTuning;

    fn event(dataset: Dataset, seq: u64) -> Event {
        Event::new(dataset, canh_event::event_id("unit", seq), Timestamp(0), "unit", "t")
    }

    /// Kafka unreachable: nothing is delivered, nothing is lost, everything is in the spool at
    /// exit (memory events taken back from the producer included).
    #[test]
    fn with_kafka_unreachable_every_event_ends_in_the_spool() {
        let dir = std::env::temp_dir().join(format!("canh-uplink-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kafka: KafkaSection =
            toml::from_str("brokers = \"127.0.0.1:1\"\nidempotence = false").expect("kafka");
        let tuning = ProducerTuning {
            linger: Duration::from_millis(5),
            message_timeout: Duration::from_secs(2),
            queue_records: 10_000,
        };
        let producer = produce::connect(&kafka, tuning).expect("producer");
        let limits = SpoolLimits {
            max_bytes: 1 << 24,
            segment_bytes: 1 << 14,
            sync_interval: std::time::Duration::ZERO,
        };
        let config = UplinkConfig {
            topic_prefix: "canh-".into(),
            spool_dir: dir.clone(),
            spool: limits,
            queue_capacity: 16,
            max_in_flight: 50,
            rate_limit: None,
            health_interval: None,
            stall_timeout: Duration::from_millis(200),
            retry_backoff: Duration::from_millis(200),
            flush_timeout: Duration::from_secs(1),
            sensor_id: "unit".into(),
            tenant: "t".into(),
            interface: None,
            health_first_seq: 1 << 31,
            write_ahead: true,
        };
        let metrics = Metrics::new();
        let uplink = Uplink::start(config, producer, metrics.clone()).expect("start");
        for seq in 0..300 {
            uplink.send(&event(Dataset::Flow, seq)).expect("send");
        }
        uplink.send(&event(Dataset::Alert, 300)).expect("send");
        let summary = uplink.shutdown().expect("shutdown");
        assert_eq!(summary.delivered, 0);
        assert_eq!(summary.dropped, 0);
        assert!(summary.spool_bytes_left > 0);
        assert_eq!(metrics.in_flight.get(), 0);

        let mut spool = Spool::open(&dir, limits).expect("reopen");
        let mut ids = std::collections::HashSet::new();
        while let Some(batch) = spool.next_batch().expect("read") {
            for record in &batch.records {
                let event = Event::from_json(&record.payload).expect("an event");
                assert_eq!(record.topic, format!("canh-{}", event.event.dataset.as_str()));
                assert_eq!(record.class, produce::class_of(event.event.dataset));
                ids.insert(event.event.id);
            }
            spool.ack(batch.segment, batch.records.len() as u64).expect("ack");
        }
        let want: std::collections::HashSet<String> =
            (0..=300).map(|seq| canh_event::event_id("unit", seq)).collect();
        assert!(ids == want, "{} of {} events in the spool", ids.len(), want.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
