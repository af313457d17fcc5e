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
use canh_event::{Dataset, Event, SensorStats, Timestamp};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
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

/// Key and payload buffers of events the uplink has handed on (librdkafka and the spool copy
/// them), given back to the capture thread for its next events. Then neither thread allocates or
/// frees per event: glibc's allocator is slow when one thread frees what another allocated, and
/// the fresh memory costs page faults.
#[derive(Default)]
struct Recycle {
    spare: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// Pairs of buffers the pool holds at most (about `RECYCLE_MAX` events' worth of memory).
const RECYCLE_MAX: usize = 4096;
/// Buffers go back to the pool this many at a time (one lock per batch).
const RECYCLE_BATCH: usize = 256;
/// A payload buffer grown beyond this is freed rather than kept.
const RECYCLE_MAX_CAPACITY: usize = 8 << 10;

impl Recycle {
    /// Give `spent` back (emptied), unless the pool is full: then they are freed.
    fn put(&self, spent: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < RECYCLE_MAX {
            spare.append(spent);
        }
        drop(spare);
        spent.clear();
    }

    /// Move what the pool holds into `local` (expected empty).
    fn take(&self, local: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(local, &mut *spare);
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
    // Bounded: when full, `send` waits; the uplink thread empties it at Kafka or disk speed.
    tx: SyncSender<Item>,
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
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_capacity);
        let recycle = Arc::new(Recycle::default());
        let worker =
            Worker::new(config, producer, spool, metrics, recycle.clone(), partitions.clone());
        let thread = std::thread::Builder::new()
            .name("uplink".into())
            .spawn(move || worker.run(rx))
            .map_err(UplinkError::Thread)?;
        Ok(Uplink { tx, thread, recycle, partitions, watch })
    }

    /// The partition counts events are packed by (set by the partition watch; tests set them).
    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// Queue one event for Kafka. Waits while the in-memory queue is full.
    pub fn send(&self, event: &Event) -> Result<(), UplinkError> {
        self.send_item(Item::Event(outgoing(event, (Vec::new(), Vec::with_capacity(1024)), false)))
    }

    /// Queue one event already written as JSON (the log pipeline writes it straight from its
    /// parse), with its key (`produce::key_of` of the same event). Waits while the queue is full.
    pub fn send_json(&self, dataset: Dataset, key: &str, json: &[u8]) -> Result<(), UplinkError> {
        self.send_item(Item::Event(Outgoing::new(
            dataset,
            key.as_bytes().to_vec(),
            json.to_vec(),
            false,
        )))
    }

    fn send_item(&self, item: Item) -> Result<(), UplinkError> {
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
        let summary = self.thread.join().map_err(|_| UplinkError::Stopped);
        if let Some(watch) = self.watch {
            watch.stop();
        }
        summary
    }
}

/// `event` for Kafka, written into `buffers` (key, payload; both emptied first).
fn outgoing(event: &Event, buffers: (Vec<u8>, Vec<u8>), recycle: bool) -> Outgoing {
    let (mut key, mut payload) = buffers;
    key.clear();
    payload.clear();
    key.extend_from_slice(produce::key_of(event).as_bytes());
    event.write_json(&mut payload);
    Outgoing::new(event.event.dataset, key, payload, recycle)
}

/// The packet pipeline's sink in `run`, on the capture thread: a flow's JSON is written straight
/// from its record with the writer `canh-sensor pcap` uses (the same bytes as
/// `record.to_event(..).to_json()`, without building the `Event`), other events as
/// [`Uplink::send`] does. The first error stops sending and is kept.
pub struct UplinkSink<'a> {
    uplink: &'a Uplink,
    flows: FlowJson,
    /// Buffers taken from the uplink's [`Recycle`] pool, used before allocating new ones.
    buffers: Vec<(Vec<u8>, Vec<u8>)>,
    pub error: Option<UplinkError>,
}

impl<'a> UplinkSink<'a> {
    pub fn new(uplink: &'a Uplink) -> UplinkSink<'a> {
        UplinkSink { uplink, flows: FlowJson::default(), buffers: Vec::new(), error: None }
    }

    /// Buffers for the next event: recycled ones when the uplink gave some back.
    fn buffers(&mut self) -> (Vec<u8>, Vec<u8>) {
        if self.buffers.is_empty() {
            self.uplink.recycle.take(&mut self.buffers);
        }
        self.buffers.pop().unwrap_or_else(|| (Vec::new(), Vec::with_capacity(1024)))
    }

    fn send_item(&mut self, item: Item) {
        if self.error.is_none() {
            if let Err(e) = self.uplink.send_item(item) {
                self.error = Some(e);
            }
        }
    }
}

/// Flow events for Kafka straight from flow records.
#[derive(Default)]
struct FlowJson {
    /// `json_out::identity_json` of `ident_of`.
    ident: Vec<u8>,
    ident_of: (String, String),
    /// The last payload's length, so that one allocation fits the next.
    last_len: usize,
}

impl FlowJson {
    /// What [`outgoing`] gives for `record.to_event(who, seq)`.
    fn outgoing(
        &mut self,
        buffers: (Vec<u8>, Vec<u8>),
        record: &FlowRecord,
        who: &Identity,
        seq: u64,
    ) -> Outgoing {
        self.identity(who);
        let (mut key, mut payload) = buffers;
        key.clear();
        payload.clear();
        payload.reserve(self.last_len + 64);
        // `produce::key_of` of a flow event: its Community ID, as written in the JSON.
        let cid = json_out::write_flow(&mut payload, record, who, seq, &self.ident);
        self.last_len = payload.len();
        key.extend_from_slice(&cid);
        Outgoing::new(Dataset::Flow, key, payload, true)
    }

    /// What [`outgoing`] gives for `session::to_event(view, meta, who, seq)`.
    fn meta_outgoing(
        &mut self,
        buffers: (Vec<u8>, Vec<u8>),
        view: &FlowView,
        meta: &Meta,
        who: &Identity,
        seq: u64,
    ) -> Outgoing {
        self.identity(who);
        let (mut key, mut payload) = buffers;
        key.clear();
        payload.clear();
        // `produce::key_of` of a metadata event: its flow's Community ID, as written in the JSON.
        let cid = json_out::write_meta(&mut payload, view, meta, who, seq, &self.ident);
        key.extend_from_slice(&cid);
        Outgoing::new(meta.header().0, key, payload, true)
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
        let buffers = self.buffers();
        let item = self.flows.outgoing(buffers, record, who, seq);
        self.send_item(Item::Event(item));
    }

    fn event(&mut self, event: Event) {
        let buffers = self.buffers();
        let item = outgoing(&event, buffers, true);
        self.send_item(Item::Event(item));
    }

    fn meta(&mut self, view: &FlowView, meta: &Meta, who: &Identity, seq: u64) {
        let buffers = self.buffers();
        let item = self.flows.meta_outgoing(buffers, view, meta, who, seq);
        self.send_item(Item::Event(item));
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

/// How many events a record of `payload` holds: one per line.
pub(crate) fn events_in(payload: &[u8]) -> u32 {
    let newlines = payload.iter().filter(|b| **b == b'\n').count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
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
    draining: Option<Draining>,
    /// Records already on disk (spooled or written ahead) whose delivery failed or that the producer
    /// refused: sent again, oldest first, before anything else. Bounded by what was in flight.
    retry: VecDeque<(Outgoing, Origin)>,
    /// Events written ahead in this batch, handed to the producer once the batch is written out.
    staged: Vec<(Outgoing, Origin)>,
    /// Events in `staged` (records can be packs).
    staged_events: usize,
    /// Open packs by dataset index, then partition.
    packs: Vec<Vec<Pack>>,
    /// Open packs holding at least one event.
    open_packs: usize,
    partitions: Arc<Partitions>,
    /// Most events per pack (bounded by the rate cap, so a pack fits the token bucket).
    pack_events: u32,
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
    /// Buffers of events handed on, going back to the capture thread.
    recycle: Arc<Recycle>,
    spent: Vec<(Vec<u8>, Vec<u8>)>,
    /// Delivery reports being handled (swapped with the producer context's list, both reused).
    outcomes: Vec<Outcome>,
    /// Tags of the records in flight.
    tags: Tags,
}

impl Worker {
    fn new(
        config: UplinkConfig,
        producer: KafkaProducer,
        spool: Spool,
        metrics: Metrics,
        recycle: Arc<Recycle>,
        partitions: Arc<Partitions>,
    ) -> Self {
        let now = Instant::now();
        let pack_events = match config.rate_limit {
            Some(rate) => (rate / 10).max(1),
            None => u32::MAX,
        };
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
            draining: None,
            retry: VecDeque::new(),
            staged: Vec::new(),
            staged_events: 0,
            packs: Dataset::ALL.iter().map(|_| Vec::new()).collect(),
            open_packs: 0,
            partitions,
            pack_events,
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
            spent: Vec::new(),
            outcomes: Vec::new(),
            tags: Tags::default(),
        }
    }

    /// `item` has been copied where it goes: keep its buffers for the capture thread.
    fn spend(&mut self, item: Outgoing) {
        if item.recycle && item.payload.capacity() <= RECYCLE_MAX_CAPACITY {
            self.spent.push((item.key, item.payload));
            if self.spent.len() >= RECYCLE_BATCH {
                self.recycle.put(&mut self.spent);
            }
        }
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
                        self.take(item);
                        window.1 += 1;
                        // Take what else is waiting, a bounded amount per turn.
                        for item in rx.try_iter().take(20_000) {
                            self.take(item);
                            window.1 += 1;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.close_packs(None);
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
            Item::Event(item) => self.pack(item),
            Item::Barrier(reply) => {
                self.close_packs(None);
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

    /// Add a new event to the open pack of its topic and partition; a full pack is routed. Events
    /// of a topic whose partition count is not known yet, alerts and health events (which should
    /// not wait) go alone.
    fn pack(&mut self, item: Outgoing) {
        let count = match self.config.pack_bytes {
            0 => 0,
            _ if item.class == Class::Critical || item.topic.is_some() => 0,
            _ => self.partitions.get(item.dataset),
        };
        if count == 0 {
            return self.route(item);
        }
        let dataset = usize::from(item.dataset);
        if self.packs[dataset].len() != count as usize {
            // The topic's partition count changed (or is new): what is open goes out first.
            self.close_packs(Some(dataset));
            self.packs[dataset].resize_with(count as usize, Pack::default);
        }
        let partition = produce::partition_of(&item.key, count) as usize;
        let pack = &self.packs[dataset][partition];
        if pack.events > 0 && pack.payload.len() + 1 + item.payload.len() > self.config.pack_bytes {
            self.close_pack(dataset, partition);
        }
        let pack = &mut self.packs[dataset][partition];
        if pack.events == 0 {
            pack.key.clear();
            pack.key.extend_from_slice(&item.key);
            pack.payload.reserve(self.config.pack_bytes.max(item.payload.len()));
            pack.opened = Some(Instant::now());
            self.open_packs += 1;
        } else {
            pack.payload.push(b'\n');
        }
        pack.payload.extend_from_slice(&item.payload);
        pack.events += 1;
        let full = pack.payload.len() >= self.config.pack_bytes || pack.events >= self.pack_events;
        self.spend(item);
        if full {
            self.close_pack(dataset, partition);
        }
    }

    /// Route the pack as one record (the pack is empty again).
    fn close_pack(&mut self, dataset: usize, partition: usize) {
        let Some(pack) = self.packs.get_mut(dataset).and_then(|p| p.get_mut(partition)) else {
            return;
        };
        if pack.events == 0 {
            return;
        }
        let item = Outgoing {
            class: produce::class_of(Dataset::ALL[dataset]),
            dataset: dataset as u8,
            topic: None,
            key: std::mem::take(&mut pack.key),
            payload: std::mem::take(&mut pack.payload),
            events: pack.events,
            recycle: false,
        };
        pack.events = 0;
        pack.opened = None;
        self.open_packs -= 1;
        self.route(item);
    }

    /// Route every open pack (of one dataset, or all).
    fn close_packs(&mut self, dataset: Option<usize>) {
        for d in 0..self.packs.len() {
            if dataset.is_some_and(|only| only != d) {
                continue;
            }
            for partition in 0..self.packs[d].len() {
                self.close_pack(d, partition);
            }
        }
    }

    /// Route the packs whose first event came in `pack_linger` ago or earlier.
    fn close_lingering(&mut self) {
        if self.open_packs == 0 {
            return;
        }
        let now = Instant::now();
        for d in 0..self.packs.len() {
            for partition in 0..self.packs[d].len() {
                let opened = self.packs[d][partition].opened;
                if opened.is_some_and(|at| now.duration_since(at) >= self.config.pack_linger) {
                    self.close_pack(d, partition);
                }
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
        let mut staged = std::mem::take(&mut self.staged);
        self.staged_events = 0;
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
            if self.in_flight + self.staged_events >= self.in_flight_limit() {
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
        let tag = self.tags.insert(Tag {
            origin,
            class: item.class,
            dataset: item.dataset,
            events: item.events,
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
        while self.in_flight < self.in_flight_limit() {
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
                            events: events_in(&r.payload),
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
            while self.in_flight < self.in_flight_limit() {
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
        let item = outgoing(&event, (Vec::new(), Vec::with_capacity(1024)), false);
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
            topics: Topics,
            flows: FlowJson,
            compared: usize,
            metas: usize,
            others: usize,
        }
        impl EventSink for Compare {
            fn flow(&mut self, record: &FlowRecord, who: &Identity, seq: u64) {
                // Recycled buffers hold an earlier event's bytes: they must not leak through.
                let used = (b"old key".to_vec(), b"{\"old\":1}".to_vec());
                let direct = self.flows.outgoing(used.clone(), record, who, seq);
                let via_event = outgoing(&record.to_event(who, seq), used, true);
                assert_eq!(direct.payload, via_event.payload);
                assert_eq!(direct.key, via_event.key);
                assert_eq!(direct.topic(&self.topics), via_event.topic(&self.topics));
                assert_eq!(direct.topic(&self.topics), "p-flow");
                assert_eq!((direct.class, direct.dataset), (via_event.class, via_event.dataset));
                self.compared += 1;
            }
            fn event(&mut self, _: Event) {
                self.others += 1;
            }
            fn meta(&mut self, view: &FlowView, meta: &Meta, who: &Identity, seq: u64) {
                let used = (b"old key".to_vec(), b"{\"old\":1}".to_vec());
                let direct = self.flows.meta_outgoing(used.clone(), view, meta, who, seq);
                let event = crate::session::to_event(view, meta, who, seq);
                let via_event = outgoing(&event, used, true);
                assert_eq!(direct.payload, via_event.payload);
                assert_eq!(direct.key, via_event.key);
                assert_eq!(direct.topic(&self.topics), via_event.topic(&self.topics));
                assert_eq!((direct.class, direct.dataset), (via_event.class, via_event.dataset));
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
        let mut sink = Compare {
            topics: Topics::new("p-"),
            flows: FlowJson::default(),
            compared: 0,
            metas: 0,
            others: 0,
        };
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
        let _ = std::fs::remove_dir_all(dir);
        let kafka: KafkaSection =
            toml::from_str("brokers = \"127.0.0.1:1\"\nidempotence = false").expect("kafka");
        let tuning = ProducerTuning {
            linger: Duration::from_millis(5),
            message_timeout: Duration::from_secs(2),
            queue_records: 10_000,
        };
        let producer = produce::connect(&kafka, tuning).expect("producer");
        let config = UplinkConfig {
            topic_prefix: "canh-".into(),
            spool_dir: dir.to_path_buf(),
            spool: unit_limits(),
            queue_capacity: 16,
            max_in_flight: 50,
            rate_limit: None,
            health_interval: None,
            stall_timeout: Duration::from_millis(200),
            retry_backoff: Duration::from_millis(200),
            message_timeout: Duration::from_secs(2),
            flush_timeout: Duration::from_secs(1),
            sensor_id: "unit".into(),
            tenant: "t".into(),
            interface: None,
            health_first_seq: 1 << 31,
            write_ahead: true,
            pack_bytes,
            pack_linger: Duration::from_millis(5),
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
            for record in batch.records {
                let events = record
                    .payload
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
            assert_eq!(crate::uplink::events_in(&record.payload) as usize, events.len());
            let dataset = events[0].event.dataset;
            assert_eq!(record.topic, format!("canh-{}", dataset.as_str()));
            if dataset != Dataset::Flow {
                assert_eq!(events.len(), 1, "{} events go alone", dataset.as_str());
            } else {
                flow_records += 1;
                assert!(record.payload.len() <= pack_bytes, "pack of {}", record.payload.len());
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
