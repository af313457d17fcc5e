//! Load generator for the storage benchmarks (not a test).
//!
//! `fill`: produce N events to Kafka as fast as the broker takes them, then exit.
//! `latency`: produce events at a fixed rate with `@timestamp` = send time, and measure for sampled
//! flow events when each becomes queryable in ClickHouse (first poll that returns its event id).
//!
//! Events are copies of templates (JSON lines, e.g. `canh-sensor pcap FILES` output): each copy gets
//! a new `event.id`, the sensor id `--sensor`, and its times shifted to the send time. Like the
//! sensor's uplink (sensor/UPLINK.md), events are packed several per Kafka record, one JSON line
//! each, per topic and partition, the partition chosen from the event's key (community id, host or
//! sensor id), a pack sent at `--pack-bytes` (0: one event per record) or at the end of a tick.
//! As the sensor's defaults: each pack compressed as one zstd frame at level 1
//! (`--pack-compression none`: plain JSON lines), and librdkafka's compression zstd.
//!
//! `templates`: print the detection benchmark's synthetic mix (`benches/support/mix.rs`: ~50 % flow,
//! 20 % dns, 15 % http, 10 % tls, 5 % sshd log, ~1 % attacks from random sources) as JSON lines,
//! for `fill` and `latency` (`BENCH_MIX=detect` in scripts/bench-setup.sh).
//!
//! ```text
//! storage_load templates --events 200000 > t.jsonl
//! storage_load fill --brokers 127.0.0.1:9092 --prefix bench- --templates t.jsonl --events 1000000
//! storage_load latency --brokers .. --prefix .. --templates t.jsonl --rate 20000 --seconds 60 \
//!     --clickhouse http://127.0.0.1:8123 --database bench
//! ```

use anyhow::{bail, Context, Result};
use canh_event::{Dataset, Event, Timestamp};
use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../benches/support/mix.rs"]
mod mix;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Source {
    #[arg(long)]
    brokers: String,
    /// Topics are `<prefix><dataset>`.
    #[arg(long)]
    prefix: String,
    /// JSON lines, one event each.
    #[arg(long)]
    templates: std::path::PathBuf,
    /// `observer.id` of the produced events; event ids derive from it and a counter.
    #[arg(long, default_value = "load-1")]
    sensor: String,
    #[arg(long, default_value = "zstd")]
    compression: String,
    /// A pack is sent once it holds this many bytes; 0 sends one event per record (the format of
    /// producers other than Canh's sensor).
    #[arg(long, default_value_t = 128 * 1024)]
    pack_bytes: usize,
    /// "zstd": each pack compressed as one zstd frame at level 1, as the sensor's uplink does by
    /// default; "none": packs of plain JSON lines.
    #[arg(long, default_value = "zstd")]
    pack_compression: String,
}

#[derive(Subcommand)]
enum Command {
    /// Print the detection benchmark's event mix, one JSON event per line.
    Templates {
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
    Fill {
        #[command(flatten)]
        source: Source,
        #[arg(long)]
        events: u64,
    },
    Latency {
        #[command(flatten)]
        source: Source,
        /// Events per second.
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
        #[arg(long)]
        clickhouse: String,
        #[arg(long)]
        database: String,
        /// Every Nth flow event is sampled for latency.
        #[arg(long, default_value_t = 100)]
        sample_every: u64,
        /// Pause between two ClickHouse polls.
        #[arg(long, default_value_t = 100)]
        poll_ms: u64,
        /// After the last event, how long to wait for sampled events still missing.
        #[arg(long, default_value_t = 30)]
        drain_seconds: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Templates { events } => templates(events),
        Command::Fill { source, events } => fill(&source, events),
        Command::Latency {
            source,
            rate,
            seconds,
            clickhouse,
            database,
            sample_every,
            poll_ms,
            drain_seconds,
        } => {
            let poll = Duration::from_millis(poll_ms);
            let drain = Duration::from_secs(drain_seconds);
            let plan = RatePlan { rate, seconds, sample_every };
            latency(&source, plan, &clickhouse, &database, poll, drain)
        }
    }
}

fn templates(count: usize) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for event in mix::events(count) {
        serde_json::to_writer(&mut out, &event).context("writing a template")?;
        out.write_all(b"\n").context("writing a template")?;
    }
    out.flush().context("writing the templates")
}

fn now() -> Timestamp {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

fn load_templates(path: &std::path::Path) -> Result<Vec<Event>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let event = Event::from_json(line.as_bytes())
            .with_context(|| format!("{}:{}", path.display(), n + 1))?;
        // Alerts come from detection; sensor health is not what the benchmark is about.
        if !matches!(event.event.dataset, Dataset::Alert | Dataset::Sensor) {
            out.push(event);
        }
    }
    if out.is_empty() {
        bail!("{}: no event templates", path.display());
    }
    Ok(out)
}

fn producer(source: &Source) -> Result<BaseProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", &source.brokers)
        .set("compression.type", &source.compression)
        .set("enable.idempotence", "false")
        .set("linger.ms", "20")
        .set("batch.size", (1 << 20).to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", (1 << 20).to_string())
        .create()
        .context("creating the producer")
}

/// The `seq`th copy of a template: its own id, the load's sensor id, times moved to `at`.
fn copy(template: &Event, sensor: &str, seq: u64, at: Timestamp) -> Event {
    let mut event = template.clone();
    let shift = at.nanos() - template.timestamp.nanos();
    event.timestamp = at;
    event.event.id = canh_event::event_id(sensor, seq);
    event.event.start = event.event.start.map(|t| Timestamp(t.nanos() + shift));
    event.event.end = event.event.end.map(|t| Timestamp(t.nanos() + shift));
    event.observer.id = sensor.to_string();
    event
}

fn key_of(event: &Event) -> &str {
    if let Some(id) = event.network.as_ref().and_then(|n| n.community_id.as_deref()) {
        return id;
    }
    if let Some(host) = &event.host {
        return &host.hostname;
    }
    &event.observer.id
}

/// Queue one record, waiting while librdkafka's queue is full. Returns the number of waits.
fn send(producer: &BaseProducer, topic: &str, partition: i32, payload: &[u8]) -> Result<u64> {
    let mut waits = 0;
    loop {
        let record = BaseRecord::<(), [u8]>::to(topic).partition(partition).payload(payload);
        match producer.send(record) {
            Ok(()) => return Ok(waits),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                waits += 1;
                producer.poll(Duration::from_millis(5));
            }
            Err((err, _)) => bail!("producing to {topic}: {err}"),
        }
    }
}

/// Events gathered per topic and partition into packs of JSON lines.
struct Packer {
    topics: HashMap<Dataset, String>,
    partitions: HashMap<Dataset, u32>,
    packs: HashMap<(Dataset, i32), Vec<u8>>,
    limit: usize,
    records: u64,
    waits: u64,
    /// Compresses each pack before it is sent (`--pack-compression zstd`).
    writer: Option<canh_event::pack::PackWriter>,
    compressed: Vec<u8>,
}

impl Packer {
    fn new(producer: &BaseProducer, source: &Source) -> Result<Packer> {
        let (prefix, limit) = (&source.prefix, source.pack_bytes);
        let writer = match source.pack_compression.as_str() {
            "zstd" => Some(canh_event::pack::PackWriter::new(1).context("zstd context")?),
            "none" => None,
            other => bail!("--pack-compression must be zstd or none, not {other:?}"),
        };
        let topics: HashMap<Dataset, String> =
            Dataset::ALL.iter().map(|d| (*d, format!("{prefix}{}", d.as_str()))).collect();
        let mut partitions = HashMap::new();
        for (dataset, topic) in &topics {
            let metadata = producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .with_context(|| format!("metadata of {topic}"))?;
            let n = metadata.topics().first().map_or(0, |t| t.partitions().len()) as u32;
            partitions.insert(*dataset, n.max(1));
        }
        Ok(Packer {
            topics,
            partitions,
            packs: HashMap::new(),
            limit,
            records: 0,
            waits: 0,
            writer,
            compressed: Vec::new(),
        })
    }

    /// Send one pack, compressed if packs are.
    fn send(
        &mut self,
        producer: &BaseProducer,
        dataset: Dataset,
        partition: i32,
        pack: &[u8],
    ) -> Result<()> {
        let payload = match self.writer.as_mut() {
            Some(writer) => {
                writer.compress(pack, &mut self.compressed).context("compressing a pack")?;
                &self.compressed[..]
            }
            None => pack,
        };
        self.waits += send(producer, &self.topics[&dataset], partition, payload)?;
        self.records += 1;
        Ok(())
    }

    fn add(&mut self, producer: &BaseProducer, event: &Event) -> Result<()> {
        let dataset = event.event.dataset;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(key_of(event), &mut hasher);
        let partition =
            (std::hash::Hasher::finish(&hasher) % u64::from(self.partitions[&dataset])) as i32;
        let pack = self.packs.entry((dataset, partition)).or_default();
        if !pack.is_empty() {
            pack.push(b'\n');
        }
        pack.extend_from_slice(event.to_json().as_bytes());
        if pack.len() >= self.limit {
            let pack = std::mem::take(pack);
            self.send(producer, dataset, partition, &pack)?;
        }
        Ok(())
    }

    /// Send every open pack.
    fn flush(&mut self, producer: &BaseProducer) -> Result<()> {
        let open: Vec<(Dataset, i32)> =
            self.packs.iter().filter(|(_, p)| !p.is_empty()).map(|(k, _)| *k).collect();
        for (dataset, partition) in open {
            let pack = self.packs.remove(&(dataset, partition)).unwrap_or_default();
            self.send(producer, dataset, partition, &pack)?;
        }
        Ok(())
    }
}

fn fill(source: &Source, events: u64) -> Result<()> {
    let templates = load_templates(&source.templates)?;
    let producer = producer(source)?;
    let mut packer = Packer::new(&producer, source)?;
    let started = Instant::now();
    let mut per_dataset: HashMap<Dataset, u64> = HashMap::new();
    for seq in 0..events {
        let template = &templates[(seq % templates.len() as u64) as usize];
        let event = copy(template, &source.sensor, seq, now());
        packer.add(&producer, &event)?;
        *per_dataset.entry(event.event.dataset).or_default() += 1;
        producer.poll(Duration::ZERO);
    }
    packer.flush(&producer)?;
    producer.flush(Duration::from_secs(120)).context("flushing the producer")?;
    let secs = started.elapsed().as_secs_f64();
    let mut counts: Vec<_> = per_dataset.into_iter().map(|(d, n)| (d.as_str(), n)).collect();
    counts.sort();
    println!(
        "filled {events} events in {} records in {secs:.1} s ({:.0}/s): {counts:?}",
        packer.records,
        events as f64 / secs
    );
    Ok(())
}

/// What the latency run produces.
struct RatePlan {
    rate: u64,
    seconds: u64,
    sample_every: u64,
}

/// Sampled events: sent (id -> event time) and seen (latency in ns).
#[derive(Default)]
struct Samples {
    pending: HashMap<String, i64>,
    latencies_ns: Vec<i64>,
    sampled: u64,
}

fn latency(
    source: &Source,
    plan: RatePlan,
    url: &str,
    database: &str,
    poll: Duration,
    drain: Duration,
) -> Result<()> {
    let templates = load_templates(&source.templates)?;
    if !templates.iter().any(|t| t.event.dataset == Dataset::Flow) {
        bail!("the templates hold no flow event to sample");
    }
    let samples = Arc::new(Mutex::new(Samples::default()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = {
        let producer = producer(source)?;
        let mut packer = Packer::new(&producer, source)?;
        let samples = Arc::clone(&samples);
        let done = Arc::clone(&done);
        let sensor = source.sensor.clone();
        std::thread::spawn(move || -> Result<(u64, u64, f64)> {
            let total = plan.rate * plan.seconds;
            let started = Instant::now();
            let (mut seq, mut flows) = (0u64, 0u64);
            while seq < total {
                // Send what is due by now, then sleep a tick: the rate holds over any 10 ms.
                let due = (started.elapsed().as_secs_f64() * plan.rate as f64) as u64;
                while seq < due.min(total) {
                    let template = &templates[(seq % templates.len() as u64) as usize];
                    let event = copy(template, &sensor, seq, now());
                    packer.add(&producer, &event)?;
                    if event.event.dataset == Dataset::Flow {
                        if flows % plan.sample_every == 0 {
                            let mut s = samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                            s.pending.insert(event.event.id.clone(), event.timestamp.nanos());
                            s.sampled += 1;
                        }
                        flows += 1;
                    }
                    seq += 1;
                }
                // What a tick gathered goes out now, as the sensor's linger sends its packs.
                packer.flush(&producer)?;
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(10));
            }
            let secs = started.elapsed().as_secs_f64();
            producer.flush(Duration::from_secs(60)).context("flushing the producer")?;
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok((seq, packer.waits, secs))
        })
    };
    let db = canh_collector::store::client(url, "default", Some(database));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut drain_until: Option<Instant> = None;
    let mut polls = 0u64;
    runtime.block_on(async {
        loop {
            tokio::time::sleep(poll).await;
            let ids: Vec<String> = {
                let s = samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                s.pending.keys().cloned().collect()
            };
            if !ids.is_empty() {
                // Ids are 32 hex digits (event_id), safe to put in the query text.
                let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
                let query = format!("SELECT event_id FROM flows WHERE event_id IN ({list})");
                let seen: Vec<String> = db.query(&query).fetch_all().await?;
                let at = now().nanos();
                polls += 1;
                let mut s = samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                for id in seen {
                    if let Some(sent) = s.pending.remove(&id) {
                        s.latencies_ns.push(at - sent);
                    }
                }
            }
            if done.load(std::sync::atomic::Ordering::Relaxed) {
                let until = *drain_until.get_or_insert_with(|| Instant::now() + drain);
                let empty =
                    samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pending.is_empty();
                if empty || Instant::now() >= until {
                    return Ok::<(), anyhow::Error>(());
                }
            }
        }
    })?;
    let (sent, waits, secs) =
        producing.join().map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    let s = samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut lat = s.latencies_ns.clone();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let index = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[index] as f64 / 1e9
    };
    println!(
        "sent {sent} events in {secs:.1} s ({:.0}/s, target {}/s, {waits} queue-full waits)",
        sent as f64 / secs,
        plan.rate
    );
    println!(
        "sampled {} flow events, seen {} (missing {}), {polls} polls every {} ms",
        s.sampled,
        lat.len(),
        s.pending.len(),
        poll.as_millis()
    );
    println!(
        "latency event time -> queryable: p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
