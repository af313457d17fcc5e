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
//! - A failed delivery of a memory event spools it; a failed delivery of a spooled or written-ahead
//!   event (already on disk) puts that record on a retry list, sent again before anything else;
//!   its segment stays on disk until the retry is acknowledged. Either marks the link down for a
//!   while. Only the records that failed are sent again: no segment is re-read while the sensor runs.
//! - With `write_ahead` (the default) an event sent straight to the producer is first written to a
//!   write-ahead segment of the spool, and handed to librdkafka only after the batch it came in was
//!   written to the operating system: an event the uplink took survives `kill -9`. Its delivery
//!   report acknowledges it in that segment like a spooled one.

use crate::capture::now_ns;
use crate::flow::{FlowRecord, FlowView, Identity};
use crate::json_out;
use crate::metrics::Metrics;
use crate::packets::EventSink;
use crate::produce::{self, KafkaProducer, Origin, Outcome, PartitionWatch, Partitions, Tag, Tags};
use crate::session::Meta;
use crate::spool::{Appended, Class, RecordRef, Spool, SpoolError, SpoolLimits};
use canh_event::pack::{PackReader, PackWriter};
use canh_event::{Dataset, Event, SensorStats, Timestamp};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, TryLockError};
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
    #[error("making a zstd context for packs: {0}")]
    Zstd(std::io::Error),
}

/// Everything the uplink needs besides the producer.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub topic_prefix: String,
    pub spool_dir: PathBuf,
    pub spool: SpoolLimits,
    pub queue_capacity: usize,
    pub max_in_flight: usize,
    /// Payload bytes unacknowledged at most (librdkafka's copies); beyond, records are spooled.
    pub max_in_flight_bytes: usize,
    /// Events per second for non-critical events; `None` = no cap.
    pub rate_limit: Option<u32>,
    pub health_interval: Option<Duration>,
    pub stall_timeout: Duration,
    pub retry_backoff: Duration,
    /// librdkafka's `message.timeout.ms`: what is in flight must be acknowledged within it.
    pub message_timeout: Duration,
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
    /// Events of one topic and partition are packed into one Kafka record (newline-delimited
    /// JSON) of up to this many bytes; 0 = one event per record.
    pub pack_bytes: usize,
    /// A pack is sent at the latest this long after its first event.
    pub pack_linger: Duration,
    /// zstd level at which the uplink thread compresses each pack (one frame per record);
    /// `None`: packs go as plain JSON lines.
    pub pack_compression: Option<i32>,
}

/// The uplink thread polls its queue instead of blocking on it while it takes at least
/// `BUSY_EVENTS` per `BUSY_WINDOW` (5,000 events/s; see `Worker::run`).
const BUSY_WINDOW: Duration = Duration::from_millis(20);
const BUSY_EVENTS: usize = 100;

/// Events in flight while the link is being tried again after an outage.
const PROBE_IN_FLIGHT: usize = 1_000;

/// An event ready for Kafka.
struct Outgoing {
    class: Class,
    dataset: u8,
    /// `None`: the dataset's topic in this run's [`Topics`] (no reference count shared between
    /// the threads); `Some`: a topic read back from the spool.
    topic: Option<Arc<str>>,
    key: Vec<u8>,
    /// One event's JSON, or a pack: several events of one topic and partition, one per line.
    payload: Vec<u8>,
    /// Events in `payload` (lines).
    events: u32,
    /// The buffers came from [`Recycle`] and go back there once the event is sent.
    recycle: bool,
}

impl Outgoing {
    /// An event of `dataset` for its topic of this run.
    fn new(dataset: Dataset, key: Vec<u8>, payload: Vec<u8>, recycle: bool) -> Outgoing {
        Outgoing {
            class: produce::class_of(dataset),
            dataset: produce::dataset_index(dataset),
            topic: None,
            key,
            payload,
            events: 1,
            recycle,
        }
    }

    fn topic<'a>(&'a self, topics: &'a Topics) -> &'a str {
        self.topic.as_deref().unwrap_or_else(|| topics.name(self.dataset))
    }
}

/// Payload buffers of packs the uplink has handed on (librdkafka and the spool copy them), given
/// back to the threads that fill packs: then no pack allocates its ~`pack_bytes` afresh (a fresh
/// allocation of that size is an `mmap` and its page faults), and no thread frees what another
/// allocated (glibc's slow path).
#[derive(Default)]
struct Recycle {
    spare: Mutex<Vec<Vec<u8>>>,
}

/// Buffers the pool holds at most.
const RECYCLE_MAX: usize = 64;

impl Recycle {
    /// Give `payload` back (emptied), unless the pool is full: then it is freed.
    fn put(&self, mut payload: Vec<u8>) {
        payload.clear();
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < RECYCLE_MAX {
            spare.push(payload);
        }
    }

    /// A buffer from the pool, if it holds one.
    fn take(&self) -> Option<Vec<u8>> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }
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
    /// Events Kafka acknowledged.
    pub delivered: u64,
    /// Kafka records acknowledged (one event or a pack each).
    pub records: u64,
    pub spooled: u64,
    pub drained: u64,
    pub dropped: u64,
    pub damaged_regions: u64,
    pub spool_bytes_left: u64,
    /// Events on disk sent again after a failed delivery or a refusal by the producer.
    pub retried: u64,
    /// Times a thread making events found the queue full and waited (the uplink was behind), and
    /// the milliseconds those waits took together.
    pub queue_full_waits: u64,
    pub queue_wait_ms: u64,
}

/// Why events went to the spool instead of straight to Kafka (logged at shutdown).
#[derive(Debug, Default, Clone, Copy)]
struct SpoolReasons {
    /// The link was marked down (failed delivery or stall).
    link_down: u64,
    /// Events were waiting in the spool or on the retry list: new ones queue behind them.
    behind_spool: u64,
    /// `max_in_flight` (or the probe limit) was reached.
    in_flight_limit: u64,
    rate_limit: u64,
    /// librdkafka's queue refused the record.
    producer_full: u64,
    delivery_failed: u64,
}

pub struct Uplink {
    /// The open packs and the queue's sender. The queue is bounded: when it is full, sending
    /// waits (with the lock held); the uplink thread empties it at Kafka or disk speed.
    packer: Arc<Mutex<Packer>>,
    thread: JoinHandle<Summary>,
    recycle: Arc<Recycle>,
    /// Partition counts of the topics (what events are packed by).
    partitions: Arc<Partitions>,
    watch: Option<PartitionWatch>,
}

/// The topic of each dataset, in `Dataset::ALL` order.
#[derive(Clone)]
struct Topics(Vec<Arc<str>>);

impl Topics {
    fn new(prefix: &str) -> Topics {
        Topics(Dataset::ALL.iter().map(|d| Arc::from(format!("{prefix}{}", d.as_str()))).collect())
    }

    fn name(&self, dataset: u8) -> &str {
        &self.0[usize::from(dataset)]
    }
}

impl Uplink {
    /// Start the uplink thread. With `metadata` (the producer's client settings) and packing on, a
    /// thread of [`PartitionWatch`] keeps the topics' partition counts; until a topic's count is
    /// known, its events go one per record.
    pub fn start(
        config: UplinkConfig,
        producer: KafkaProducer,
        metadata: Option<&ClientConfig>,
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
        let partitions = Arc::new(Partitions::default());
        let watch = match metadata.filter(|_| config.pack_bytes > 0) {
            Some(client) => {
                let topics = Topics::new(&config.topic_prefix).0;
                let topics = topics.iter().map(|t| t.to_string()).collect();
                Some(PartitionWatch::start(client, topics, partitions.clone())?)
            }
            None => None,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(queue_records(&config));
        let packer = Arc::new(Mutex::new(Packer::new(tx, &config, QueueWaits::new(&metrics))));
        let recycle = Arc::new(Recycle::default());
        let packs = Packs {
            writer: config
                .pack_compression
                .map(PackWriter::new)
                .transpose()
                .map_err(UplinkError::Zstd)?,
            reader: PackReader::new().map_err(UplinkError::Zstd)?,
            compressed: Vec::new(),
        };
        let worker =
            Worker::new(config, producer, spool, metrics, recycle.clone(), packer.clone(), packs);
        let thread = std::thread::Builder::new()
            .name("uplink".into())
            .spawn(move || worker.run(rx))
            .map_err(UplinkError::Thread)?;
        Ok(Uplink { packer, thread, recycle, partitions, watch })
    }

    /// The partition counts events are packed by (set by the partition watch; tests set them).
    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// Queue one event for Kafka. Waits while the in-memory queue is full.
    pub fn send(&self, event: &Event) -> Result<(), UplinkError> {
        let mut json = Vec::with_capacity(1024);
        event.write_json(&mut json);
        self.send_json(event.event.dataset, produce::key_of(event), &json)
    }

    /// Queue one event already written as JSON (the log pipeline writes it straight from its
    /// parse), with its key (`produce::key_of` of the same event). Waits while the queue is full.
    pub fn send_json(&self, dataset: Dataset, key: &str, json: &[u8]) -> Result<(), UplinkError> {
        self.add(dataset, key.as_bytes(), json)
    }

    /// Add an event to its pack (or queue it alone; see [`Packer::add`]).
    fn add(&self, dataset: Dataset, key: &[u8], json: &[u8]) -> Result<(), UplinkError> {
        let partitions = self.partitions.get(produce::dataset_index(dataset));
        let mut packer = self.packer.lock().unwrap_or_else(|p| p.into_inner());
        packer.add(dataset, partitions, key, json, &self.recycle)
    }

    /// Wait until every event this thread sent before is durable: written (and `fsync`ed) in the
    /// spool, or acknowledged by Kafka. False when that cannot be said within `timeout` (without
    /// write-ahead: events sent from memory are still unacknowledged), or the uplink stopped.
    pub fn barrier(&self, timeout: Duration) -> bool {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let sent = {
            let mut packer = self.packer.lock().unwrap_or_else(|p| p.into_inner());
            // The open packs go ahead of the barrier.
            packer.close_all().and_then(|()| packer.send(Item::Barrier(reply)))
        };
        if sent.is_err() {
            return false;
        }
        answer.recv_timeout(timeout).unwrap_or(false)
    }

    /// Stop taking events, deliver what Kafka takes within the flush timeout, keep the rest in
    /// the spool.
    pub fn shutdown(self) -> Result<Summary, UplinkError> {
        {
            let mut packer = self.packer.lock().unwrap_or_else(|p| p.into_inner());
            // The uplink thread may have stopped already; then there is nobody to send to.
            let _ = packer.close_all();
            // The queue's only sender: the uplink thread sees it closed once it is empty.
            packer.tx = None;
        }
        let summary = self.thread.join().map_err(|_| UplinkError::Stopped);
        if let Some(watch) = self.watch {
            watch.stop();
        }
        let waits = self.packer.lock().unwrap_or_else(|p| p.into_inner()).waits.clone();
        summary.map(|summary| Summary {
            queue_full_waits: waits.count.get(),
            queue_wait_ms: (waits.seconds.get() * 1e3) as u64,
            ..summary
        })
    }
}

/// Records the in-memory queue holds: `queue_capacity` events' worth. Without packing that many
/// one-event records; with packing about `queue_capacity` KiB of packs (at least 16 records).
fn queue_records(config: &UplinkConfig) -> usize {
    if config.pack_bytes == 0 {
        return config.queue_capacity;
    }
    (config.queue_capacity.saturating_mul(1024) / config.pack_bytes).max(16)
}

/// The packet pipeline's sink in `run`, on the capture thread: a flow's JSON is written straight
/// from its record with the writer `canh-sensor pcap` uses (the same bytes as
/// `record.to_event(..).to_json()`, without building the `Event`), other events as
/// [`Uplink::send`] does; each is then copied into its pack. The first error stops sending and is
/// kept.
pub struct UplinkSink<'a> {
    uplink: &'a Uplink,
    flows: FlowJson,
    /// The event being written (reused: it stays in this thread's cache).
    json: Vec<u8>,
    pub error: Option<UplinkError>,
}

impl<'a> UplinkSink<'a> {
    pub fn new(uplink: &'a Uplink) -> UplinkSink<'a> {
        UplinkSink { uplink, flows: FlowJson::default(), json: Vec::new(), error: None }
    }

    /// Hand the event in `self.json` on.
    fn add(&mut self, dataset: Dataset, key: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.uplink.add(dataset, key, &self.json) {
                self.error = Some(e);
            }
        }
    }
}

/// Flow and metadata events for Kafka straight from flow records.
#[derive(Default)]
struct FlowJson {
    /// `json_out::identity_json` of `ident_of`.
    ident: Vec<u8>,
    ident_of: (String, String),
}

impl FlowJson {
    /// `record.to_event(who, seq)` as JSON into `out` (emptied first); its key
    /// (`produce::key_of`: the Community ID, as written in the JSON).
    fn flow(
        &mut self,
        out: &mut Vec<u8>,
        record: &FlowRecord,
        who: &Identity,
        seq: u64,
    ) -> [u8; 30] {
        self.identity(who);
        out.clear();
        json_out::write_flow(out, record, who, seq, &self.ident)
    }

    /// `session::to_event(view, meta, who, seq)` as JSON into `out` (emptied first); its key
    /// (`produce::key_of`: its flow's Community ID, as written in the JSON).
    fn meta(
        &mut self,
        out: &mut Vec<u8>,
        view: &FlowView,
        meta: &Meta,
        who: &Identity,
        seq: u64,
    ) -> [u8; 30] {
        self.identity(who);
        out.clear();
        json_out::write_meta(out, view, meta, who, seq, &self.ident)
    }

    /// `ident` for `who` (kept while the identity stays the same).
    fn identity(&mut self, who: &Identity) {
        if self.ident.is_empty()
            || self.ident_of.0 != who.sensor_id
            || self.ident_of.1 != who.tenant
        {
            self.ident = json_out::identity_json(who);
            self.ident_of = (who.sensor_id.clone(), who.tenant.clone());
        }
    }
}

impl EventSink for UplinkSink<'_> {
    fn flow(&mut self, record: &FlowRecord, who: &Identity, seq: u64) {
        let key = self.flows.flow(&mut self.json, record, who, seq);
        self.add(Dataset::Flow, &key);
    }

    fn event(&mut self, event: Event) {
        self.json.clear();
        event.write_json(&mut self.json);
        self.add(event.event.dataset, produce::key_of(&event).as_bytes());
    }

    fn meta(&mut self, view: &FlowView, meta: &Meta, who: &Identity, seq: u64) {
        let key = self.flows.meta(&mut self.json, view, meta, who, seq);
        self.add(meta.header().0, &key);
    }
}

/// Events of one topic and partition waiting to go out as one record.
#[derive(Default)]
struct Pack {
    /// The first event's key: the pack's partition is its key's (`produce::partition_of`).
    key: Vec<u8>,
    /// The events' JSON, one per line.
    payload: Vec<u8>,
    events: u32,
    /// When the first event came in.
    opened: Option<Instant>,
}

/// The open packs and the uplink queue's only sender, behind one lock. The threads that make
/// events add each event to its pack under the lock (the JSON is copied while it is still in their
/// cache) and put full packs on the queue; the uplink thread, under the same lock, puts packs that
/// waited `pack_linger` on the queue. The queue thus holds the packs of a partition in the order
/// they were closed, and the uplink thread does no work per event.
struct Packer {
    /// `None` once the uplink is shut down.
    tx: Option<SyncSender<Item>>,
    pack_bytes: usize,
    /// Most events per pack (bounded by the rate cap, so a pack fits the token bucket).
    pack_events: u32,
    /// Open packs by dataset index, then partition.
    packs: Vec<Vec<Pack>>,
    /// Open packs holding at least one event.
    open: usize,
    waits: QueueWaits,
}

/// Sends that found the queue full and waited, and how long they waited
/// (`canh_sensor_uplink_queue_full_total`, `canh_sensor_uplink_queue_wait_seconds_total`).
#[derive(Clone)]
struct QueueWaits {
    count: prometheus::IntCounter,
    seconds: prometheus::Counter,
}

impl QueueWaits {
    fn new(metrics: &Metrics) -> QueueWaits {
        QueueWaits {
            count: metrics.uplink_queue_full.clone(),
            seconds: metrics.uplink_queue_wait_seconds.clone(),
        }
    }
}

/// How a closed pack goes on the queue.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Put {
    /// Wait while the queue is full (the threads that make events).
    Wait,
    /// Leave the pack open when the queue is full (the uplink thread: it empties the queue).
    Try,
}

impl Packer {
    fn new(tx: SyncSender<Item>, config: &UplinkConfig, waits: QueueWaits) -> Packer {
        Packer {
            tx: Some(tx),
            pack_bytes: config.pack_bytes,
            pack_events: match config.rate_limit {
                Some(rate) => (rate / 10).max(1),
                None => u32::MAX,
            },
            packs: Dataset::ALL.iter().map(|_| Vec::new()).collect(),
            open: 0,
            waits,
        }
    }

    /// Put `item` on the queue; waits while it is full.
    fn send(&self, item: Item) -> Result<(), UplinkError> {
        let Some(tx) = &self.tx else { return Err(UplinkError::Stopped) };
        match tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(item)) => {
                let since = Instant::now();
                let sent = tx.send(item).map_err(|_| UplinkError::Stopped);
                self.waits.count.inc();
                self.waits.seconds.inc_by(since.elapsed().as_secs_f64());
                sent
            }
            Err(TrySendError::Disconnected(_)) => Err(UplinkError::Stopped),
        }
    }

    /// Add one event (its key and JSON) to the open pack of its topic and partition, closing the
    /// pack when the event would not fit or it is full. `partitions` is the dataset's topic's
    /// partition count (0 = not known). Alerts and health events (which should not wait), events
    /// of a topic whose partition count is not known yet, and every event with packing off, go
    /// alone.
    fn add(
        &mut self,
        dataset: Dataset,
        partitions: u32,
        key: &[u8],
        json: &[u8],
        recycle: &Recycle,
    ) -> Result<(), UplinkError> {
        let class = produce::class_of(dataset);
        if self.pack_bytes == 0 || class == Class::Critical || partitions == 0 {
            let item = Outgoing::new(dataset, key.to_vec(), json.to_vec(), false);
            return self.send(Item::Event(item));
        }
        let d = usize::from(produce::dataset_index(dataset));
        if self.packs[d].len() != partitions as usize {
            // The topic's partition count changed (or is new): what is open goes out first.
            for p in 0..self.packs[d].len() {
                self.close(d, p, Put::Wait)?;
            }
            self.packs[d].resize_with(partitions as usize, Pack::default);
        }
        let p = produce::partition_of(key, partitions) as usize;
        let pack = &self.packs[d][p];
        if pack.events > 0 && pack.payload.len() + 1 + json.len() > self.pack_bytes {
            self.close(d, p, Put::Wait)?;
        }
        let pack_bytes = self.pack_bytes;
        let pack = &mut self.packs[d][p];
        if pack.events == 0 {
            pack.key.clear();
            pack.key.extend_from_slice(key);
            if pack.payload.capacity() == 0 {
                pack.payload = recycle.take().unwrap_or_default();
            }
            pack.payload.reserve(pack_bytes.max(json.len()));
            pack.opened = Some(Instant::now());
            self.open += 1;
        } else {
            pack.payload.push(b'\n');
        }
        pack.payload.extend_from_slice(json);
        pack.events += 1;
        if pack.payload.len() >= pack_bytes || pack.events >= self.pack_events {
            self.close(d, p, Put::Wait)?;
        }
        Ok(())
    }

    /// Put pack `p` of dataset `d` on the queue as one record (the pack is empty again). With
    /// [`Put::Try`] and the queue full it stays open: false.
    fn close(&mut self, d: usize, p: usize, put: Put) -> Result<bool, UplinkError> {
        let Some(pack) = self.packs.get_mut(d).and_then(|packs| packs.get_mut(p)) else {
            return Ok(true);
        };
        if pack.events == 0 {
            return Ok(true);
        }
        let item = Item::Event(Outgoing {
            class: produce::class_of(Dataset::ALL[d]),
            dataset: d as u8,
            topic: None,
            key: std::mem::take(&mut pack.key),
            payload: std::mem::take(&mut pack.payload),
            events: pack.events,
            recycle: true,
        });
        let sent = match (put, &self.tx) {
            (_, None) => Err(UplinkError::Stopped),
            (Put::Wait, Some(_)) => self.send(item).map(|()| true),
            (Put::Try, Some(tx)) => match tx.try_send(item) {
                Ok(()) => Ok(true),
                Err(TrySendError::Full(Item::Event(item))) => {
                    // Back into the pack, which stays open.
                    let pack = &mut self.packs[d][p];
                    pack.key = item.key;
                    pack.payload = item.payload;
                    return Ok(false);
                }
                Err(_) => Err(UplinkError::Stopped),
            },
        };
        let pack = &mut self.packs[d][p];
        pack.events = 0;
        pack.opened = None;
        self.open -= 1;
        sent
    }

    /// Put every open pack on the queue (waits while it is full).
    fn close_all(&mut self) -> Result<(), UplinkError> {
        for d in 0..self.packs.len() {
            for p in 0..self.packs[d].len() {
                self.close(d, p, Put::Wait)?;
            }
        }
        Ok(())
    }

    /// Put the packs whose first event came `linger` ago or earlier on the queue, as far as it has
    /// room (called by the uplink thread, which must not wait for its own queue).
    fn close_lingering(&mut self, linger: Duration) {
        if self.open == 0 {
            return;
        }
        let now = Instant::now();
        for d in 0..self.packs.len() {
            for p in 0..self.packs[d].len() {
                let opened = self.packs[d][p].opened;
                if opened.is_some_and(|at| now.duration_since(at) >= linger) {
                    match self.close(d, p, Put::Try) {
                        Ok(true) => {}
                        // Queue full or gone: the next turn tries again.
                        Ok(false) | Err(_) => return,
                    }
                }
            }
        }
    }
}

/// The uplink thread's zstd contexts for packs.
struct Packs {
    /// `None`: packs go as plain JSON lines (`uplink.pack_compression = "none"`).
    writer: Option<PackWriter>,
    /// Reads records back from the spool to count their events.
    reader: PackReader,
    /// Where packs are compressed (reused).
    compressed: Vec<u8>,
}

/// The spool segment being sent.
struct Draining {
    segment: u64,
    records: VecDeque<Outgoing>,
}

struct Worker {
    config: UplinkConfig,
    topics: Topics,
    producer: KafkaProducer,
    spool: Spool,
    metrics: Metrics,
    in_flight: usize,
    /// Payload bytes of the records in flight.
    in_flight_bytes: usize,
    draining: Option<Draining>,
    /// Records already on disk (spooled or written ahead) whose delivery failed or that the producer
    /// refused: sent again, oldest first, before anything else. Bounded by what was in flight.
    retry: VecDeque<(Outgoing, Origin)>,
    /// Events written ahead in this batch, handed to the producer once the batch is written out.
    staged: Vec<(Outgoing, Origin)>,
    /// Events in `staged` (records can be packs).
    staged_events: usize,
    /// Payload bytes in `staged`.
    staged_bytes: usize,
    /// The open packs (the uplink thread closes lingering ones).
    packer: Arc<Mutex<Packer>>,
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
    reasons: SpoolReasons,
    /// How often `check_stall` found the link stalled.
    stalls: u64,
    /// The in-flight limit that Kafka's measured pace allows (see `pace`), ≤ `max_in_flight`.
    window: usize,
    /// Set by the first record that timed out in librdkafka: from then on `window` follows the pace.
    paced: bool,
    /// Acknowledgements since `pace_since`.
    acked_since: u64,
    pace_since: Instant,
    /// Payload buffers of packs handed on, going back to the threads that fill packs.
    recycle: Arc<Recycle>,
    /// Delivery reports being handled (swapped with the producer context's list, both reused).
    outcomes: Vec<Outcome>,
    /// Tags of the records in flight.
    tags: Tags,
    packs: Packs,
}

impl Worker {
    fn new(
        config: UplinkConfig,
        producer: KafkaProducer,
        spool: Spool,
        metrics: Metrics,
        recycle: Arc<Recycle>,
        packer: Arc<Mutex<Packer>>,
        packs: Packs,
    ) -> Self {
        let now = Instant::now();
        let config_max_in_flight = config.max_in_flight;
        metrics.link_up.set(1);
        Worker {
            topics: Topics::new(&config.topic_prefix),
            next_health: config.health_interval.map(|_| now),
            health_seq: config.health_first_seq,
            config,
            producer,
            spool,
            metrics,
            in_flight: 0,
            in_flight_bytes: 0,
            draining: None,
            retry: VecDeque::new(),
            staged: Vec::new(),
            staged_events: 0,
            staged_bytes: 0,
            packer,
            memory_in_flight: 0,
            link_down_until: None,
            probing: false,
            last_progress: now,
            tokens: 0.0,
            last_refill: now,
            record_seq: 0,
            spool_full: false,
            summary: Summary::default(),
            reasons: SpoolReasons::default(),
            stalls: 0,
            window: config_max_in_flight,
            paced: false,
            acked_since: 0,
            pace_since: now,
            recycle,
            outcomes: Vec::new(),
            tags: Tags::default(),
            packs,
        }
    }

    /// `item` has been copied where it goes: a pack's buffer goes back to be filled again.
    fn spend(&mut self, item: Outgoing) {
        if item.recycle {
            self.give_back(item.payload);
        }
    }

    /// A pack's JSON buffer back to the threads that fill packs, unless it grew past twice
    /// `pack_bytes` (then it is freed).
    fn give_back(&self, payload: Vec<u8>) {
        if payload.capacity() <= 2 * self.config.pack_bytes {
            self.recycle.put(payload);
        }
    }

    /// A pack from the queue compressed as one zstd frame, when packs are compressed: its JSON
    /// buffer goes back to be filled again. Runs before the pack is routed, so the write-ahead
    /// record, the spool and librdkafka all hold the compressed bytes. A pack zstd refuses (it
    /// has no reason to) goes as it is.
    fn compress(&mut self, mut item: Outgoing) -> Outgoing {
        // Only packs are filled in recycled buffers (`recycle`); an event that goes alone (an
        // alert, a health event) stays plain JSON, which librdkafka compresses itself.
        let Some(writer) = self.packs.writer.as_mut().filter(|_| item.recycle) else {
            return item;
        };
        let out = &mut self.packs.compressed;
        if let Err(err) = writer.compress(&item.payload, out) {
            tracing::error!(error = %err, "cannot compress a pack: sending it uncompressed");
            return item;
        }
        self.metrics.pack_plain_bytes.inc_by(item.payload.len() as u64);
        self.metrics.pack_compressed_bytes.inc_by(out.len() as u64);
        // Copied out at its size (a fraction of the pack's): the scratch buffer keeps zstd's
        // worst-case capacity for the next pack.
        let plain = std::mem::replace(&mut item.payload, out.as_slice().to_vec());
        self.give_back(plain);
        item.recycle = false;
        item
    }

    fn run(mut self, rx: Receiver<Item>) -> Summary {
        let mut deadline = None;
        // At high rates (at least `BUSY_EVENTS` in the last `BUSY_WINDOW`) an empty queue is waited
        // on by sleeping a millisecond rather than blocking: the capture thread then never has to
        // wake this thread up (a futex call per event on both sides). At low rates it blocks.
        let mut window = (Instant::now(), 0_usize);
        let mut busy = false;
        loop {
            if window.0.elapsed() >= BUSY_WINDOW {
                busy = window.1 >= BUSY_EVENTS;
                window = (Instant::now(), 0);
            }
            if deadline.is_none() {
                let got = match rx.try_recv() {
                    Ok(item) => Ok(item),
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                    Err(TryRecvError::Empty) if busy => {
                        std::thread::sleep(Duration::from_millis(1));
                        rx.try_recv().map_err(|e| match e {
                            TryRecvError::Empty => RecvTimeoutError::Timeout,
                            TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                        })
                    }
                    Err(TryRecvError::Empty) => rx.recv_timeout(Duration::from_millis(10)),
                };
                match got {
                    Ok(item) => {
                        window.1 += self.take(item);
                        // Take what else is waiting, a bounded amount per turn.
                        for item in rx.try_iter().take(20_000) {
                            window.1 += self.take(item);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        // `Uplink::shutdown` put the open packs on the queue before closing it.
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

    /// Route a record, or answer a barrier; the events it held.
    fn take(&mut self, item: Item) -> usize {
        match item {
            Item::Event(item) => {
                let events = item.events as usize;
                let item = self.compress(item);
                self.route(item);
                events
            }
            Item::Barrier(reply) => {
                // The asking thread put the open packs on the queue before the barrier.
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
                0
            }
        }
    }

    /// Put the packs whose first event came `pack_linger` ago on the queue (taken in the next
    /// turn, after the packs closed before them). Skipped while another thread holds the packs:
    /// it may be waiting for room in the queue, which only this thread makes.
    fn close_lingering(&mut self) {
        let mut packer = match self.packer.try_lock() {
            Ok(packer) => packer,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        packer.close_lingering(self.config.pack_linger);
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
        let mut staged = std::mem::take(&mut self.staged);
        self.staged_events = 0;
        self.staged_bytes = 0;
        for (item, origin) in staged.drain(..) {
            if !self.retry.is_empty() {
                // Behind a refused one: keep their order.
                self.retry.push_back((item, origin));
                continue;
            }
            if let Err(item) = self.produce(item, origin) {
                // Written ahead already: it waits on the retry list, not in a new spool record.
                self.reasons.producer_full += u64::from(item.events);
                self.retry.push_back((item, origin));
            }
        }
        self.staged = staged;
    }

    /// The periodic work of one loop turn.
    fn turn(&mut self) {
        self.close_lingering();
        self.send_staged();
        self.poll_reports();
        self.handle_outcomes();
        self.pace();
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
            self.window.min(PROBE_IN_FLIGHT)
        } else {
            self.window
        }
    }

    /// Whether another record may go to the producer: fewer events than the in-flight limit and
    /// fewer payload bytes than `max_in_flight_bytes` are unacknowledged (written-ahead records of
    /// the batch being written count as sent).
    fn below_in_flight_limit(&self) -> bool {
        self.in_flight + self.staged_events < self.in_flight_limit()
            && self.in_flight_bytes + self.staged_bytes < self.config.max_in_flight_bytes
    }

    /// Once a record timed out in librdkafka, once a second: keep no more in flight than Kafka
    /// acknowledges in a quarter of the message timeout at the pace just measured (at least
    /// `PROBE_IN_FLIGHT`, at most `max_in_flight`). Otherwise a broker slower than
    /// `max_in_flight / message_timeout` lets records time out in librdkafka's queue, again and
    /// again after each retry, and nothing progresses.
    fn pace(&mut self) {
        let elapsed = self.pace_since.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        if self.paced && (self.acked_since > 0 || self.in_flight > 0) {
            let rate = self.acked_since as f64 / elapsed.as_secs_f64();
            let allowed = (rate * self.config.message_timeout.as_secs_f64() / 4.0) as usize;
            let max = self.config.max_in_flight;
            self.window = allowed.clamp(PROBE_IN_FLIGHT.min(max), max);
        }
        self.acked_since = 0;
        self.pace_since = Instant::now();
    }

    /// Whether `events` more may go to Kafka under the rate cap. A record larger than the bucket
    /// (a pack spooled by a run without the cap) goes once the bucket is full and leaves a debt.
    fn take_tokens(&mut self, events: u32) -> bool {
        let Some(rate) = self.config.rate_limit else { return true };
        let now = Instant::now();
        let rate = f64::from(rate);
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        // At most a tenth of a second's worth may pile up.
        let cap = (rate / 10.0).max(1.0);
        self.tokens = (self.tokens + elapsed * rate).min(cap);
        let events = f64::from(events);
        if self.tokens >= events.min(cap) {
            self.tokens -= events;
            true
        } else {
            false
        }
    }

    fn route(&mut self, item: Outgoing) {
        if self.link_down() {
            self.reasons.link_down += u64::from(item.events);
            return self.spool_append(item);
        }
        if item.class != Class::Critical {
            if self.draining.is_some() || !self.retry.is_empty() || self.spool.has_unsent() {
                self.reasons.behind_spool += u64::from(item.events);
                return self.spool_append(item);
            }
            if !self.below_in_flight_limit() {
                self.reasons.in_flight_limit += u64::from(item.events);
                return self.spool_append(item);
            }
            if !self.take_tokens(item.events) {
                self.reasons.rate_limit += u64::from(item.events);
                return self.spool_append(item);
            }
        }
        if self.config.write_ahead {
            match self.write_ahead(&item) {
                Some(segment) => {
                    self.staged_events += item.events as usize;
                    self.staged_bytes += item.payload.len();
                    self.staged.push((item, Origin::WriteAhead { segment }));
                    return;
                }
                // Not written ahead (spool full or failing): sent from memory, counted below.
                None => self.metrics.write_ahead_skipped.inc_by(u64::from(item.events)),
            }
        }
        if let Err(item) = self.produce(item, Origin::Memory) {
            self.reasons.producer_full += u64::from(item.events);
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
            topic: item.topic(&self.topics),
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
        self.produce_tagged(item, origin, false)
    }

    /// [`Worker::produce`] for a record of the retry list.
    fn produce_retry(&mut self, item: Outgoing, origin: Origin) -> Result<(), Outgoing> {
        self.produce_tagged(item, origin, true)
    }

    fn produce_tagged(
        &mut self,
        item: Outgoing,
        origin: Origin,
        retried: bool,
    ) -> Result<(), Outgoing> {
        let tag_bytes = item.payload.len();
        let tag = self.tags.insert(Tag {
            origin,
            class: item.class,
            dataset: item.dataset,
            events: item.events,
            bytes: tag_bytes,
            retried,
            sent_at: Instant::now(),
        });
        let record = BaseRecord::with_opaque_to(item.topic(&self.topics), tag)
            .payload(&item.payload)
            .key(&item.key);
        let sent = self.producer.send(record);
        if sent.is_err() {
            self.tags.release(tag);
        }
        match sent {
            Ok(()) => {
                let events = item.events as usize;
                self.spend(item);
                if self.in_flight == 0 {
                    self.last_progress = Instant::now();
                }
                self.in_flight += events;
                self.in_flight_bytes += tag_bytes;
                if origin == Origin::Memory {
                    self.memory_in_flight += events;
                }
                if retried {
                    self.summary.retried += events as u64;
                }
                Ok(())
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Err(item),
            Err((err, _)) => {
                self.metrics.kafka_errors.inc();
                let topic = item.topic(&self.topics);
                tracing::warn!(error = %err, topic, "producer refused an event");
                Err(item)
            }
        }
    }

    fn spool_append(&mut self, item: Outgoing) {
        self.record_seq += 1;
        let record = RecordRef {
            seq: self.record_seq,
            spooled_at_ns: now_ns(),
            class: item.class,
            dataset: item.dataset,
            topic: item.topic(&self.topics),
            key: &item.key,
            payload: &item.payload,
        };
        let dataset = produce::dataset_name(record.dataset);
        let appended = self.spool.append_ref(record);
        let events = u64::from(item.events);
        self.spend(item);
        match appended {
            Ok(Appended::Written) => {
                self.metrics.spooled.inc_by(events);
                self.summary.spooled += events;
                self.spool_full = false;
            }
            Ok(Appended::Full) => {
                self.metrics.dropped.with_label_values(&[dataset]).inc_by(events);
                self.summary.dropped += events;
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
                self.metrics.dropped.with_label_values(&[dataset]).inc_by(events);
                self.summary.dropped += events;
                tracing::error!(error = %err, dataset, events, "cannot write to the spool: events dropped");
            }
        }
    }

    /// Serve every delivery report librdkafka has ready (one `poll` serves one batch of them).
    fn poll_reports(&mut self) {
        let deliveries = self.producer.context();
        for _ in 0..10_000 {
            let before = deliveries.served();
            self.producer.poll(Duration::ZERO);
            if deliveries.served() == before {
                break;
            }
        }
    }

    fn handle_outcomes(&mut self) {
        let mut outcomes = std::mem::take(&mut self.outcomes);
        self.producer.context().take_into(&mut outcomes);
        if outcomes.is_empty() {
            self.outcomes = outcomes;
            return;
        }
        let now = Instant::now();
        for outcome in outcomes.drain(..) {
            let index = match &outcome {
                Outcome::Delivered(tag) | Outcome::Failed { tag, .. } => *tag,
            };
            let Some(tag) = self.tags.take(index) else {
                tracing::error!(index, "delivery report for an unknown record: ignored");
                continue;
            };
            let events = u64::from(tag.events);
            self.in_flight = self.in_flight.saturating_sub(tag.events as usize);
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(tag.bytes);
            let origin = tag.origin;
            if origin == Origin::Memory {
                self.memory_in_flight = self.memory_in_flight.saturating_sub(tag.events as usize);
            }
            match outcome {
                Outcome::Delivered(_) => {
                    self.last_progress = now;
                    self.acked_since += events;
                    self.metrics.kafka_delivered.inc_by(events);
                    self.metrics.kafka_records.inc();
                    self.metrics
                        .kafka_delivery_seconds
                        .observe(now.saturating_duration_since(tag.sent_at).as_secs_f64());
                    self.summary.delivered += events;
                    self.summary.records += 1;
                    if self.probing {
                        tracing::info!("kafka acknowledges events again");
                        self.probing = false;
                    }
                    self.link_down_until = None;
                    let segment = match tag.origin {
                        Origin::Memory => continue,
                        Origin::Spool { segment } | Origin::WriteAhead { segment } => segment,
                    };
                    // Spooled records, and written-ahead ones that failed once (counted as spooled
                    // then), are drained now.
                    if matches!(tag.origin, Origin::Spool { .. }) || tag.retried {
                        self.metrics.drained.inc_by(events);
                        self.summary.drained += events;
                    }
                    if let Err(err) = self.spool.ack(segment, 1) {
                        self.metrics.spool_errors.inc();
                        tracing::error!(error = %err, "cannot delete a sent spool segment");
                    }
                }
                Outcome::Failed { tag: _, error, topic, key, payload } => {
                    self.metrics.kafka_errors.inc_by(events);
                    tracing::debug!(error = %error, topic = %topic, "kafka delivery failed");
                    if matches!(
                        error,
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
                    ) {
                        self.paced = true;
                    }
                    self.mark_link_down(&error);
                    let item = Outgoing {
                        class: tag.class,
                        dataset: tag.dataset,
                        topic: Some(Arc::from(topic)),
                        key,
                        payload,
                        events: tag.events,
                        recycle: false,
                    };
                    match tag.origin {
                        Origin::Memory => {
                            self.reasons.delivery_failed += events;
                            self.spool_append(item);
                        }
                        Origin::Spool { .. } | Origin::WriteAhead { .. } => {
                            if matches!(tag.origin, Origin::WriteAhead { .. }) && !tag.retried {
                                // On disk already; from now on it waits like a spooled one.
                                self.metrics.spooled.inc_by(events);
                                self.summary.spooled += events;
                                self.reasons.delivery_failed += events;
                            }
                            self.retry.push_back((item, tag.origin));
                        }
                    }
                }
            }
        }
        self.outcomes = outcomes;
    }

    fn mark_link_down(&mut self, error: &KafkaError) {
        if !self.link_down() {
            tracing::warn!(error = %error, "kafka delivery failed: spooling until the link is back");
        }
        self.probing = true;
        self.link_down_until = Some(Instant::now() + self.config.retry_backoff);
    }

    /// Events in flight and no acknowledgement for `stall_timeout`: the link counts as down (new
    /// events are spooled for `retry_backoff`, then at most `PROBE_IN_FLIGHT` go out until the next
    /// acknowledgement). Records still in librdkafka's queue (never sent) are taken back: memory
    /// ones into the spool, the others onto the retry list. Nothing sent is sent again for it.
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
        self.stalls += 1;
        self.link_down_until = Some(now + self.config.retry_backoff);
        self.probing = true;
        self.last_progress = now;
        // Queued records (never sent) come back as failed deliveries: memory ones are spooled,
        // the others go to the retry list. Records already on the wire fail at message_timeout.
        self.producer.purge(PurgeConfig::default().queue());
    }

    /// Send the retry list again, oldest first, as far as the in-flight limit allows.
    fn send_retries(&mut self) {
        while self.below_in_flight_limit() {
            let Some((item, origin)) = self.retry.pop_front() else { return };
            if let Err(item) = self.produce_retry(item, origin) {
                self.retry.push_front((item, origin));
                return;
            }
        }
    }

    fn drain_spool(&mut self) {
        if self.link_down() {
            return;
        }
        self.send_retries();
        if !self.retry.is_empty() {
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
                        let records = batch.records.into_iter().map(|r| Outgoing {
                            class: r.class,
                            dataset: r.dataset,
                            topic: Some(Arc::from(r.topic)),
                            key: r.key,
                            events: canh_event::pack::events_in(&r.payload, &mut self.packs.reader),
                            payload: r.payload,
                            recycle: false,
                        });
                        self.draining =
                            Some(Draining { segment: batch.segment, records: records.collect() });
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
            let origin = Origin::Spool { segment: draining.segment };
            while self.below_in_flight_limit() {
                let Some(item) = draining.records.pop_front() else { break };
                if item.class != Class::Critical && !self.take_tokens(item.events) {
                    draining.records.push_front(item);
                    break;
                }
                if let Err(item) = self.produce(item, origin) {
                    draining.records.push_front(item);
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
        let mut json = Vec::with_capacity(1024);
        event.write_json(&mut json);
        let key = produce::key_of(&event).as_bytes().to_vec();
        let item = Outgoing::new(event.event.dataset, key, json, false);
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
        let r = self.reasons;
        tracing::info!(
            link_down = r.link_down,
            behind_spool = r.behind_spool,
            in_flight_limit = r.in_flight_limit,
            rate_limit = r.rate_limit,
            producer_full = r.producer_full,
            delivery_failed = r.delivery_failed,
            stalls = self.stalls,
            retried = self.summary.retried,
            "uplink: why events were spooled"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KafkaSection;
    use crate::produce::ProducerTuning;

    /// Flow and metadata events sent by `UplinkSink` carry the bytes and key of the `Event` path.
    #[test]
    fn flow_events_from_records_equal_the_event_path() {
        struct Compare {
            flows: FlowJson,
            compared: usize,
            metas: usize,
            others: usize,
        }
        impl EventSink for Compare {
            fn flow(&mut self, record: &FlowRecord, who: &Identity, seq: u64) {
                // The reused buffer holds an earlier event's bytes: they must not leak through.
                let mut direct = b"{\"old\":1}".to_vec();
                let key = self.flows.flow(&mut direct, record, who, seq);
                let event = record.to_event(who, seq);
                assert_eq!(direct, event.to_json().into_bytes());
                assert_eq!(&key[..], produce::key_of(&event).as_bytes());
                self.compared += 1;
            }
            fn event(&mut self, _: Event) {
                self.others += 1;
            }
            fn meta(&mut self, view: &FlowView, meta: &Meta, who: &Identity, seq: u64) {
                let mut direct = b"{\"old\":1}".to_vec();
                let key = self.flows.meta(&mut direct, view, meta, who, seq);
                let event = crate::session::to_event(view, meta, who, seq);
                assert_eq!(direct, event.to_json().into_bytes());
                assert_eq!(&key[..], produce::key_of(&event).as_bytes());
                assert_eq!(meta.header().0, event.event.dataset);
                self.metas += 1;
            }
        }
        let samples =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pcap/samples");
        if !samples.exists() {
            eprintln!("shared data not found at {}; skipping", samples.display());
            return;
        }
        // A sensor id that needs escaping.
        let who = Identity {
            sensor_id: "hn-01 \"edge\"".into(),
            tenant: "hà-nội".into(),
            community_id_seed: 3,
        };
        let metrics = Metrics::new();
        let mut sink = Compare { flows: FlowJson::default(), compared: 0, metas: 0, others: 0 };
        // TLS, DNS and HTTP metadata between them.
        for name in ["asyncrat-c2.pcap", "dns-tunnel-iodine.pcap", "http-dvwa-sqlinjection.pcapng"]
        {
            let mut pipeline = crate::packets::PacketPipeline::new(
                who.clone(),
                crate::flow::FlowConfig::default(),
                5,
                &metrics,
            );
            crate::capture::read_file(&samples.join(name), |link, ts, data| {
                pipeline.frame(link, ts, data, &mut sink)
            })
            .expect("read");
            pipeline.finish(&mut sink);
        }
        assert!(sink.compared > 0, "flows compared: {}", sink.compared);
        assert!(sink.metas > 0, "metadata events compared: {}", sink.metas);
    }

    fn event(dataset: Dataset, seq: u64) -> Event {
        Event::new(dataset, canh_event::event_id("unit", seq), Timestamp(0), "unit", "t")
    }

    /// An uplink to a Kafka that is not there, spooling into `dir`.
    fn unreachable_uplink(dir: &std::path::Path, pack_bytes: usize) -> (Uplink, Metrics) {
        unreachable_uplink_limited(dir, pack_bytes, 50, 1 << 20, Duration::from_millis(200))
    }

    /// [`unreachable_uplink`] with the in-flight limits given, and how long the uplink waits for an
    /// acknowledgement before it calls the link down (`stall_timeout`; librdkafka's message
    /// timeout is ten times that, at least 2 s).
    fn unreachable_uplink_limited(
        dir: &std::path::Path,
        pack_bytes: usize,
        max_in_flight: usize,
        max_in_flight_bytes: usize,
        stall_timeout: Duration,
    ) -> (Uplink, Metrics) {
        let message_timeout = (stall_timeout * 10).max(Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(dir);
        let kafka: KafkaSection =
            toml::from_str("brokers = \"127.0.0.1:1\"\nidempotence = false").expect("kafka");
        let tuning = ProducerTuning {
            linger: Duration::from_millis(5),
            message_timeout,
            queue_records: 10_000,
        };
        let producer = produce::connect(&kafka, tuning).expect("producer");
        let config = UplinkConfig {
            topic_prefix: "canh-".into(),
            spool_dir: dir.to_path_buf(),
            spool: unit_limits(),
            queue_capacity: 16,
            max_in_flight,
            max_in_flight_bytes,
            rate_limit: None,
            health_interval: None,
            stall_timeout,
            retry_backoff: Duration::from_millis(200),
            message_timeout,
            flush_timeout: Duration::from_secs(1),
            sensor_id: "unit".into(),
            tenant: "t".into(),
            interface: None,
            health_first_seq: 1 << 31,
            write_ahead: true,
            pack_bytes,
            pack_linger: Duration::from_millis(5),
            pack_compression: Some(1),
        };
        let metrics = Metrics::new();
        let uplink = Uplink::start(config, producer, None, metrics.clone()).expect("start");
        (uplink, metrics)
    }

    fn unit_limits() -> SpoolLimits {
        SpoolLimits {
            max_bytes: 1 << 24,
            segment_bytes: 1 << 14,
            sync_interval: std::time::Duration::ZERO,
        }
    }

    /// Every spooled record of `dir`, read back: (record, the events of its lines).
    fn spooled(dir: &std::path::Path) -> Vec<(crate::spool::Record, Vec<Event>)> {
        let mut spool = Spool::open(dir, unit_limits()).expect("reopen");
        let mut out = Vec::new();
        while let Some(batch) = spool.next_batch().expect("read") {
            spool.ack(batch.segment, batch.records.len() as u64).expect("ack");
            let mut reader = PackReader::new().expect("zstd context");
            for record in batch.records {
                let lines = reader.lines(&record.payload).expect("a readable record").to_vec();
                let events = lines
                    .split(|b| *b == b'\n')
                    .map(|line| Event::from_json(line).expect("an event per line"))
                    .collect();
                out.push((record, events));
            }
        }
        out
    }

    /// Kafka unreachable: nothing is delivered, nothing is lost, everything is in the spool at
    /// exit (memory events taken back from the producer included).
    #[test]
    fn with_kafka_unreachable_every_event_ends_in_the_spool() {
        let dir = std::env::temp_dir().join(format!("canh-uplink-unit-{}", std::process::id()));
        let (uplink, metrics) = unreachable_uplink(&dir, 0);
        for seq in 0..300 {
            uplink.send(&event(Dataset::Flow, seq)).expect("send");
        }
        uplink.send(&event(Dataset::Alert, 300)).expect("send");
        let summary = uplink.shutdown().expect("shutdown");
        assert_eq!(summary.delivered, 0);
        assert_eq!(summary.dropped, 0);
        assert!(summary.spool_bytes_left > 0);
        assert_eq!(metrics.in_flight.get(), 0);

        let mut ids = std::collections::HashSet::new();
        for (record, events) in spooled(&dir) {
            assert_eq!(events.len(), 1, "one event per record with packing off");
            let event = &events[0];
            assert_eq!(record.topic, format!("canh-{}", event.event.dataset.as_str()));
            assert_eq!(record.class, produce::class_of(event.event.dataset));
            ids.insert(event.event.id.clone());
        }
        let want: std::collections::HashSet<String> =
            (0..=300).map(|seq| canh_event::event_id("unit", seq)).collect();
        assert!(ids == want, "{} of {} events in the spool", ids.len(), want.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `max_in_flight_bytes` bounds what is handed to the producer by payload bytes, whatever
    /// the event count allows: with room for 10 events' bytes, no more than 10 are in flight and
    /// the others wait in the spool. The link is given 30 s before it counts as down, so what is
    /// in flight stays there while the test looks (with 200 ms, a loaded machine could let the
    /// link go down, and the records in flight back to the spool, before the first look).
    #[test]
    fn in_flight_payload_bytes_are_bounded() {
        let dir = std::env::temp_dir().join(format!("canh-uplink-bytes-{}", std::process::id()));
        let size = event(Dataset::Flow, 100).to_json().len();
        let patience = Duration::from_secs(30);
        let (uplink, metrics) = unreachable_uplink_limited(&dir, 0, 100_000, 10 * size, patience);
        let mut peak = 0;
        for seq in 100..300 {
            uplink.send(&event(Dataset::Flow, seq)).expect("send");
            peak = peak.max(metrics.in_flight.get());
        }
        let until = Instant::now() + Duration::from_secs(5);
        while metrics.in_flight.get() + (metrics.spooled.get() as i64) < 200
            && Instant::now() < until
        {
            peak = peak.max(metrics.in_flight.get());
            std::thread::sleep(Duration::from_millis(1));
        }
        // The gauges can reach 200 together before any look above saw them (the uplink thread
        // sets them once per turn): look once more, while the 10 are still in flight.
        peak = peak.max(metrics.in_flight.get());
        let summary = uplink.shutdown().expect("shutdown");
        assert!(peak > 0 && peak <= 10, "{peak} events in flight");
        assert_eq!((summary.delivered, summary.dropped, summary.spooled), (0, 0, 200));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A pack that does not fill is put on the queue by the uplink thread once it waited
    /// `pack_linger` (5 ms here), not only at shutdown.
    #[test]
    fn a_pack_that_does_not_fill_goes_out_after_its_linger() {
        let dir = std::env::temp_dir().join(format!("canh-uplink-linger-{}", std::process::id()));
        let (uplink, metrics) = unreachable_uplink(&dir, 1 << 16);
        uplink.partitions().set(produce::dataset_index(Dataset::Flow), 4);
        for seq in 0..3 {
            uplink.send(&event(Dataset::Flow, seq)).expect("send");
        }
        // Routed: in flight (written ahead, handed to librdkafka) or, once the link counts as
        // down, spooled.
        let routed = || metrics.in_flight.get() as u64 + metrics.spooled.get();
        let until = Instant::now() + Duration::from_secs(5);
        while routed() < 3 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(routed() >= 3, "the pack went out before shutdown");
        uplink.shutdown().expect("shutdown");
        let records = spooled(&dir);
        assert_eq!(records.len(), 1, "one pack");
        assert_eq!(records[0].1.len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Packing on, partition counts known: events of one topic and partition share a record of at
    /// most `pack_bytes` (one event per line, each line's key leading to the record key's
    /// partition); alerts go alone; a topic whose partition count is unknown goes one per record.
    /// Every event is counted once and every one is in the spool at exit.
    #[test]
    fn events_are_packed_by_topic_and_partition() {
        let dir = std::env::temp_dir().join(format!("canh-uplink-pack-{}", std::process::id()));
        let pack_bytes = 4096;
        let (uplink, metrics) = unreachable_uplink(&dir, pack_bytes);
        uplink.partitions().set(produce::dataset_index(Dataset::Flow), 4);
        let flows = 2_000;
        for seq in 0..flows {
            let mut flow = event(Dataset::Flow, seq);
            flow.network = Some(canh_event::Network {
                community_id: Some(format!("1:{}", seq % 37)),
                ..Default::default()
            });
            uplink.send(&flow).expect("send");
        }
        uplink.send(&event(Dataset::Alert, flows)).expect("send");
        uplink.send(&event(Dataset::Dns, flows + 1)).expect("send");
        let summary = uplink.shutdown().expect("shutdown");
        assert_eq!((summary.delivered, summary.dropped), (0, 0));
        assert_eq!(summary.spooled, flows + 2, "spooled counts events, not records");
        assert_eq!(metrics.spooled.get(), flows + 2);

        let mut ids = std::collections::HashSet::new();
        let mut flow_records = 0;
        for (record, events) in spooled(&dir) {
            let mut reader = PackReader::new().expect("zstd context");
            assert_eq!(
                canh_event::pack::events_in(&record.payload, &mut reader) as usize,
                events.len()
            );
            let dataset = events[0].event.dataset;
            assert_eq!(record.topic, format!("canh-{}", dataset.as_str()));
            if dataset != Dataset::Flow {
                assert_eq!(events.len(), 1, "{} events go alone", dataset.as_str());
                assert!(!canh_event::pack::is_compressed(&record.payload), "alone: plain JSON");
            } else {
                flow_records += 1;
                assert!(canh_event::pack::is_compressed(&record.payload), "packs are compressed");
                let plain = reader.lines(&record.payload).expect("readable").len();
                assert!(plain <= pack_bytes, "pack of {plain}");
                if events.len() >= 5 {
                    assert!(record.payload.len() < plain, "{} of {plain}", record.payload.len());
                }
                assert_eq!(record.key, produce::key_of(&events[0]).as_bytes());
                let partition = produce::partition_of(&record.key, 4);
                for event in &events {
                    assert_eq!(event.event.dataset, Dataset::Flow);
                    assert_eq!(
                        produce::partition_of(produce::key_of(event).as_bytes(), 4),
                        partition
                    );
                }
            }
            for event in events {
                assert!(ids.insert(event.event.id), "each event once");
            }
        }
        let want: std::collections::HashSet<String> =
            (0..flows + 2).map(|seq| canh_event::event_id("unit", seq)).collect();
        assert!(ids == want, "{} of {} events in the spool", ids.len(), want.len());
        assert!(flow_records < flows / 10, "{flow_records} records for {flows} flows");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
