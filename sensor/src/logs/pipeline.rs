//! The live log path: receivers and tailers on their own threads, one bounded channel, and one
//! pipeline thread that parses each line into an event, numbers it, hands it to the uplink and
//! keeps the file checkpoints.

use super::receive::{self, RawLine, ReceiveError, ReceiverMetrics, StreamSettings};
use super::tail::{self, Checkpoints, TailSettings};
use super::{LineOptions, LineParser};
use crate::flow::Identity;
use prometheus::IntCounterVec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Validated log inputs (from the `[logs]` config section).
#[derive(Debug, Clone)]
pub struct LogInputs {
    /// Lines waiting between the inputs and the pipeline thread.
    pub channel_capacity: usize,
    pub udp: Option<UdpSettings>,
    pub tcp: Option<StreamSettings>,
    pub tls: Option<StreamSettings>,
    pub files: Vec<TailSettings>,
    pub poll_interval: Duration,
    /// Where file offsets are kept across restarts.
    pub checkpoint_path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct UdpSettings {
    pub listen: SocketAddr,
    pub max_bytes: usize,
    /// SO_RCVBUF to ask for.
    pub receive_buffer_bytes: usize,
    pub options: LineOptions,
}

/// The running inputs; `stop` (the process's shutdown flag) ends them.
pub struct RunningLogs {
    inputs: Vec<JoinHandle<()>>,
    pipeline: JoinHandle<PipelineResult>,
    /// The addresses actually bound (port 0 in the config picks a free one).
    pub udp_addr: Option<SocketAddr>,
    pub tcp_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    /// SO_RCVBUF the kernel granted the UDP socket (Linux reports twice the size it accepted,
    /// the extra being its bookkeeping allowance).
    pub udp_receive_buffer: Option<usize>,
}

pub struct PipelineResult {
    pub events: u64,
    pub checkpoints: Checkpoints,
    pub error: Option<String>,
}

pub struct PipelineMetrics {
    pub receivers: ReceiverMetrics,
    pub parse_errors: IntCounterVec,
    pub events: IntCounterVec,
}

/// One log event as the pipeline hands it on: its JSON (one line, no newline) and its Kafka key
/// (what `produce::key_of` gives for the same event: the host name, else the sensor id).
pub struct LogJson<'a> {
    pub key: &'a str,
    pub json: &'a [u8],
}

/// How often file checkpoints are written while running (each write first waits for the uplink to
/// have everything acknowledged).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// Most lines the pipeline takes from the channel at once.
const RECEIVE_BATCH: usize = 256;

/// Most tailed files whose parser state (W3C columns) is kept at once.
const MAX_FILE_PARSERS: usize = 4096;

/// Bind every configured input and start the threads. `send` hands one event's JSON to the uplink; it
/// runs on the pipeline thread and may block (back-pressure reaches TCP senders and tailers).
/// `acknowledged` waits until the uplink has everything sent so far acknowledged and says whether
/// it has; checkpoints are written only then, so a crash re-reads lines rather than skipping them.
pub fn start<E: std::fmt::Display>(
    inputs: &LogInputs,
    who: Identity,
    first_seq: u64,
    stop: Arc<AtomicBool>,
    metrics: PipelineMetrics,
    mut send: impl FnMut(&LogJson<'_>) -> Result<(), E> + Send + 'static,
    mut acknowledged: impl FnMut() -> bool + Send + 'static,
) -> Result<RunningLogs, ReceiveError> {
    // Full: UDP drops and counts; TCP, TLS and files wait (see `receive` and `tail`).
    let (tx, mut rx) = mpsc::channel::<RawLine>(inputs.channel_capacity.max(1));
    let mut handles = Vec::new();
    let checkpoints = Checkpoints::load(&inputs.checkpoint_path).map_err(|source| {
        ReceiveError::Checkpoints { path: inputs.checkpoint_path.display().to_string(), source }
    })?;
    let (mut udp_addr, mut tcp_addr, mut tls_addr) = (None, None, None);
    let mut udp_receive_buffer = None;
    if let Some(udp) = &inputs.udp {
        let (socket, granted) = receive::bind_udp(udp.listen, udp.receive_buffer_bytes)?;
        let addr = socket
            .local_addr()
            .map_err(|source| ReceiveError::Bind { addr: udp.listen, source })?;
        udp_addr = Some(addr);
        udp_receive_buffer = Some(granted);
        tracing::info!(
            %addr,
            asked = udp.receive_buffer_bytes,
            granted,
            "syslog udp receive buffer"
        );
        let (tx, stop, m, udp) = (tx.clone(), stop.clone(), metrics.receivers.clone(), udp.clone());
        handles.push(spawn("syslog-udp", move || {
            if let Err(e) = receive::run_udp(socket, udp.max_bytes, udp.options, tx, stop, m) {
                tracing::error!(error = %e, "syslog udp receiver stopped");
            }
        }));
    }
    let mut streams = Vec::new();
    for settings in [&inputs.tcp, &inputs.tls].into_iter().flatten() {
        let listener = receive::bind_tcp(settings.listen)?;
        let addr = listener
            .local_addr()
            .map_err(|source| ReceiveError::Bind { addr: settings.listen, source })?;
        let acceptor = match &settings.tls {
            Some((cert, key)) => {
                tls_addr = Some(addr);
                Some(receive::tls_acceptor(cert, key)?)
            }
            None => {
                tcp_addr = Some(addr);
                None
            }
        };
        streams.push((listener, settings.clone(), acceptor));
    }
    if !streams.is_empty() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("syslog-stream")
            .enable_all()
            .build()
            .map_err(ReceiveError::Runtime)?;
        let (tx, stop, m) = (tx.clone(), stop.clone(), metrics.receivers.clone());
        handles.push(spawn("syslog-stream", move || {
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for (listener, settings, acceptor) in streams {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        continue;
                    };
                    let (tx, stop, m) = (tx.clone(), stop.clone(), m.clone());
                    tasks.push(tokio::spawn(receive::run_stream(
                        listener, settings, acceptor, tx, stop, m,
                    )));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
            // Connections still open are dropped with the runtime.
            runtime.shutdown_timeout(Duration::from_secs(1));
        }));
    }
    if !inputs.files.is_empty() {
        let (tx, stop, m) = (tx.clone(), stop.clone(), metrics.receivers.clone());
        let (files, saved, poll) =
            (inputs.files.clone(), checkpoints.clone(), inputs.poll_interval);
        handles.push(spawn("log-tail", move || tail::run_tail(files, saved, poll, tx, stop, m)));
    }
    drop(tx);
    let checkpoint_path = inputs.checkpoint_path.clone();
    let pipeline = spawn("log-pipeline", move || {
        let mut checkpoints = checkpoints;
        let mut seq = first_seq;
        let mut events = 0;
        let mut last_save = Instant::now();
        let mut dirty = false;
        let mut error = None;
        let log_events = metrics.events.with_label_values(&["log"]);
        // One parser per tailed file: a W3C file's `#Fields:` header applies to its later lines.
        let mut file_parsers: HashMap<Arc<str>, LineParser> = HashMap::new();
        // Lines are taken in batches: a busy pipeline then rarely sleeps and is woken per line.
        let mut batch = Vec::with_capacity(RECEIVE_BATCH);
        // The parser of a line from the network (set per line: they keep no state).
        let mut stateless: LineParser;
        // One event's JSON, the buffer reused for every event.
        let mut json = Vec::with_capacity(4096);
        let constants = super::record::JsonConstants::new(&who);
        while rx.blocking_recv_many(&mut batch, RECEIVE_BATCH) > 0 {
            for raw in batch.drain(..) {
                if error.is_some() {
                    continue;
                }
                let parser = match &raw.position {
                    Some(position) => {
                        if file_parsers.len() >= MAX_FILE_PARSERS
                            && !file_parsers.contains_key(&position.path)
                        {
                            // Bounded: forgetting the headers of other files only costs W3C
                            // records their named columns until the file's next header.
                            file_parsers.clear();
                        }
                        file_parsers
                            .entry(position.path.clone())
                            .or_insert_with(|| LineParser::new(raw.options))
                    }
                    None => {
                        // Network sources keep no state between lines.
                        stateless = LineParser::new(raw.options);
                        &mut stateless
                    }
                };
                let fields = parser.fields(&raw.bytes, raw.truncated, raw.received);
                json.clear();
                let id = match &raw.position {
                    // A file line read again after a crash keeps its id.
                    Some(position) => {
                        tail::line_event_id_bytes(&who.sensor_id, position, &raw.bytes)
                    }
                    None => constants.log_event_id(seq),
                };
                // Hex digits are ASCII.
                fields.write_json_with(
                    std::str::from_utf8(&id).unwrap_or_default(),
                    &constants,
                    &mut json,
                );
                seq += 1;
                if let Some(reason) = fields.log.parse_error {
                    metrics.parse_errors.with_label_values(&[reason]).inc();
                }
                if let Err(e) = send(&LogJson { key: fields.key(&who), json: &json }) {
                    tracing::error!(error = %e, "log events can no longer be sent");
                    error = Some(e.to_string());
                    continue;
                }
                log_events.inc();
                events += 1;
                if let Some(position) = &raw.position {
                    checkpoints.set(position);
                    dirty = true;
                }
                if dirty && last_save.elapsed() >= CHECKPOINT_EVERY {
                    last_save = Instant::now();
                    if !acknowledged() {
                        tracing::warn!("uplink has unacknowledged events; checkpoints not saved");
                        continue;
                    }
                    if let Err(e) = checkpoints.save(&checkpoint_path) {
                        tracing::warn!(error = %e, "cannot save log checkpoints");
                    }
                    dirty = false;
                }
            }
        }
        PipelineResult { events, checkpoints, error }
    });
    Ok(RunningLogs { inputs: handles, pipeline, udp_addr, tcp_addr, tls_addr, udp_receive_buffer })
}

fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    // Thread creation fails only when the system is out of resources, at start-up.
    std::thread::Builder::new().name(name.into()).spawn(body).expect("spawning a log thread")
}

impl RunningLogs {
    /// Wait for the inputs to stop (after `stop` was set), then for the pipeline to drain the
    /// channel. Returns what the pipeline did; the caller flushes the uplink, then saves the
    /// checkpoints with `save_checkpoints`.
    pub fn join(self) -> PipelineResult {
        for handle in self.inputs {
            let _ = handle.join();
        }
        if let Some(port) = self.udp_addr.map(|a| a.port()) {
            if let Some(drops) = receive::udp_kernel_drops(port) {
                if drops > 0 {
                    tracing::warn!(drops, port, "the kernel dropped syslog datagrams");
                }
            }
        }
        self.pipeline.join().unwrap_or(PipelineResult {
            events: 0,
            checkpoints: Checkpoints::default(),
            error: Some("the log pipeline thread panicked".into()),
        })
    }
}

pub fn save_checkpoints(result: &PipelineResult, path: &std::path::Path) -> std::io::Result<()> {
    result.checkpoints.save(path)
}
