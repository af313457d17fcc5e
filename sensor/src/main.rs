//! `canh-sensor`: the command-line shell. Errors are reported once, here.

use anyhow::{bail, Context};
use canh_event::Event;
use canh_sensor::flow::{FlowConfig, Identity};
use canh_sensor::metrics::Metrics;
use canh_sensor::packets::PacketPipeline;
use canh_sensor::{admin, capture, config, produce, sequence, spool, uplink};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "canh-sensor", version, about = "Canh packet and log sensor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read pcap/pcapng files and print events as JSON lines on stdout (no Kafka needed).
    Pcap {
        /// Community ID seed; sites that share flow ids agree on one.
        #[arg(long, default_value_t = 0)]
        community_id_seed: u16,
        /// `observer.id` of the events.
        #[arg(long, default_value = "offline")]
        sensor_id: String,
        /// `organization.id` of the events.
        #[arg(long, default_value = "offline")]
        tenant: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Read log files (`-` for stdin) and print exactly one event per line as JSON lines.
    Logs {
        /// auto, syslog, json, access (apache, nginx), error (apache-error, nginx-error) or w3c (iis).
        #[arg(long, default_value = "auto")]
        format: String,
        /// `observer.id` of the events.
        #[arg(long, default_value = "offline")]
        sensor_id: String,
        /// `organization.id` of the events.
        #[arg(long, default_value = "offline")]
        tenant: String,
        /// Zone of timestamps that carry none (RFC 3164, Apache error logs).
        #[arg(long, default_value = "+07:00")]
        timezone: String,
        /// Longer lines are cut to this many bytes and marked `log.truncated`.
        #[arg(long, default_value_t = 65_536)]
        max_line_bytes: usize,
        /// The time year-less timestamps are read relative to (RFC 3339); default: now.
        #[arg(long)]
        reference_time: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Capture live from an interface and print events as JSON lines on stdout until SIGINT or
    /// SIGTERM (no Kafka needed). Capture statistics come as `sensor` events.
    Live {
        /// The interface to capture on.
        #[arg(long)]
        interface: String,
        /// BPF filter, e.g. "not port 22".
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, default_value_t = 65_535)]
        snaplen: i32,
        /// Capture only frames addressed to this host.
        #[arg(long)]
        no_promiscuous: bool,
        /// Kernel capture buffer, bytes.
        #[arg(long, default_value_t = 64 << 20)]
        buffer_size: i32,
        /// Deliver each packet at once instead of in buffered blocks.
        #[arg(long)]
        immediate: bool,
        /// Period of the `sensor` events with libpcap's counters ("500ms", "10s").
        #[arg(long, default_value = "10s")]
        stats_interval: String,
        /// Community ID seed; sites that share flow ids agree on one.
        #[arg(long, default_value_t = 0)]
        community_id_seed: u16,
        /// `observer.id` of the events.
        #[arg(long, default_value = "live")]
        sensor_id: String,
        /// `organization.id` of the events.
        #[arg(long, default_value = "offline")]
        tenant: String,
    },
    /// Capture from the configured inputs and publish to Kafka.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CANH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pcap { community_id_seed, sensor_id, tenant, files } => {
            let who = Identity { sensor_id, tenant, community_id_seed };
            offline(who, &files)
        }
        Command::Logs {
            format,
            sensor_id,
            tenant,
            timezone,
            max_line_bytes,
            reference_time,
            files,
        } => {
            let who = Identity { sensor_id, tenant, community_id_seed: 0 };
            offline_logs(who, &format, &timezone, max_line_bytes, reference_time.as_deref(), &files)
        }
        Command::Live {
            interface,
            filter,
            snaplen,
            no_promiscuous,
            buffer_size,
            immediate,
            stats_interval,
            community_id_seed,
            sensor_id,
            tenant,
        } => humantime::parse_duration(&stats_interval)
            .with_context(|| format!("reading --stats-interval {stats_interval:?}"))
            .and_then(|stats_interval| {
                if stats_interval.is_zero() {
                    bail!("--stats-interval must be above 0s");
                }
                let options = capture::LiveOptions {
                    interface,
                    snaplen,
                    promiscuous: !no_promiscuous,
                    buffer_size,
                    immediate,
                    filter,
                    stats_interval,
                };
                live_stdout(Identity { sensor_id, tenant, community_id_seed }, &options)
            }),
        Command::Run { config } => run(&config),
    };
    if let Err(err) = result {
        eprintln!("canh-sensor: error: {err:#}");
        std::process::exit(1);
    }
}

/// `canh-sensor pcap`: every file through one pipeline, events to stdout.
fn offline(who: Identity, files: &[PathBuf]) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let mut pipeline = PacketPipeline::new(who, FlowConfig::default(), 0, &metrics);
    // Events are written as JSON straight into large chunks of stdout, not built as values.
    let mut out = canh_sensor::json_out::JsonLines::new(std::io::stdout().lock());
    let mut failed = Vec::new();
    for file in files {
        let result =
            capture::read_file(file, |link, ts, data| pipeline.frame(link, ts, data, &mut out));
        if let Err(err) = result {
            eprintln!("canh-sensor: error: {err}");
            failed.push(file.display().to_string());
        }
    }
    pipeline.finish(&mut out);
    out.finish().context("writing events to stdout")?;
    tracing::info!(
        events = pipeline.next_seq(),
        peak_flows = pipeline.peak_flows(),
        "capture read"
    );
    report_decode_errors(&metrics);
    if !failed.is_empty() {
        bail!(
            "{} of {} captures could not be read: {}",
            failed.len(),
            files.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// `canh-sensor live`: one interface until a signal, events to stdout. Every `stats_interval`, and
/// once at the end, a `sensor` event carries libpcap's counters.
fn live_stdout(who: Identity, options: &capture::LiveOptions) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let mut pipeline = PacketPipeline::new(who.clone(), FlowConfig::default(), 0, &metrics);
    let mut stats_seq = sequence::UPLINK_OFFSET;
    let stats_event = |seq: u64| {
        let mut event = Event::new(
            canh_event::Dataset::Sensor,
            canh_event::event_id(&who.sensor_id, seq),
            canh_event::Timestamp(capture::now_ns()),
            &who.sensor_id,
            &who.tenant,
        );
        event.sensor = Some(metrics.capture_health(Some(&options.interface)));
        event
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut events = Vec::new();
    let mut write_error: Option<std::io::Error> = None;
    let mut write = |events: &mut Vec<Event>, flush: bool| {
        for event in events.drain(..) {
            if write_error.is_none() {
                let result = serde_json::to_writer(&mut out, &event)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(e) = result {
                    write_error = Some(e);
                }
            }
        }
        if flush && write_error.is_none() {
            if let Err(e) = out.flush() {
                write_error = Some(e);
            }
        }
    };
    tracing::info!(interface = %options.interface, "live capture starting");
    let totals = capture::capture_live(options, &stop, |captured| match captured {
        capture::Live::Frame { link, ts_ns, data } => {
            pipeline.frame(link, ts_ns, data, &mut events);
            write(&mut events, false);
        }
        capture::Live::Idle { now_ns } => {
            pipeline.tick(now_ns, &mut events);
            write(&mut events, true);
        }
        capture::Live::Stats(totals) => {
            metrics.record_capture(&options.interface, &totals);
            events.push(stats_event(stats_seq));
            stats_seq += 1;
            write(&mut events, true);
        }
    })
    .with_context(|| format!("capturing on {}", options.interface))?;
    pipeline.finish(&mut events);
    metrics.record_capture(&options.interface, &totals);
    events.push(stats_event(stats_seq));
    write(&mut events, true);
    if let Some(e) = write_error {
        return Err(e).context("writing events to stdout");
    }
    report_decode_errors(&metrics);
    tracing::info!(
        received = totals.received,
        dropped = totals.dropped,
        if_dropped = totals.if_dropped,
        "live capture stopped"
    );
    Ok(())
}

/// `canh-sensor logs`: every line of every file to one event on stdout.
fn offline_logs(
    who: Identity,
    format: &str,
    timezone: &str,
    max_line_bytes: usize,
    reference_time: Option<&str>,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    use canh_sensor::logs::{self, LineFormat, LineOptions};
    let Some(format) = LineFormat::parse(format) else {
        bail!("unknown log format {format:?}; use one of {}", LineFormat::NAMES.join(", "));
    };
    let Some(utc_offset_secs) = logs::parse_utc_offset(timezone) else {
        bail!("invalid timezone {timezone:?}; write it as +07:00");
    };
    if max_line_bytes == 0 {
        bail!("--max-line-bytes must be at least 1");
    }
    let received = match reference_time {
        Some(text) => canh_event::Timestamp::parse(text)
            .with_context(|| format!("reading --reference-time {text:?}"))?,
        None => now(),
    };
    let options = LineOptions { format, utc_offset_secs, default_priority: None };
    let metrics = Metrics::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut seq = 0u64;
    let mut write_error = None;
    let mut failed = Vec::new();
    // One event's JSON line, the buffer reused for every event.
    let mut json = Vec::with_capacity(4096);
    for file in files {
        let is_stdin = file.as_os_str() == "-";
        let input = if is_stdin { "stdin" } else { "file" };
        let mut reader: Box<dyn std::io::BufRead> = if is_stdin {
            Box::new(std::io::BufReader::with_capacity(1 << 16, std::io::stdin()))
        } else {
            match std::fs::File::open(file) {
                Ok(f) => Box::new(std::io::BufReader::with_capacity(1 << 16, f)),
                Err(e) => {
                    eprintln!("canh-sensor: error: opening {}: {e}", file.display());
                    failed.push(file.display().to_string());
                    continue;
                }
            }
        };
        // Each file is its own source: a W3C `#Fields:` header applies to the lines after it.
        let mut parser = logs::LineParser::new(options);
        // The counters of this input, looked up once rather than per line.
        let lines_read = metrics.log_lines.with_label_values(&[input]);
        let lines_truncated = metrics.log_truncated.with_label_values(&[input]);
        let result = logs::lines::for_each_line(&mut reader, max_line_bytes, |line, truncated| {
            json.clear();
            let error = parser.write_json(line, truncated, received, seq, &who, &mut json);
            seq += 1;
            lines_read.inc();
            if truncated {
                lines_truncated.inc();
            }
            if let Some(error) = error {
                metrics.log_parse_errors.with_label_values(&[error.reason()]).inc();
            }
            if write_error.is_none() {
                json.push(b'\n');
                if let Err(e) = out.write_all(&json) {
                    write_error = Some(e);
                }
            }
        });
        if let Err(e) = result {
            eprintln!("canh-sensor: error: reading {}: {e}", file.display());
            failed.push(file.display().to_string());
        }
    }
    out.flush().context("writing events to stdout")?;
    if let Some(e) = write_error {
        return Err(e).context("writing events to stdout");
    }
    let truncated: u64 =
        ["file", "stdin"].iter().map(|i| metrics.log_truncated.with_label_values(&[i]).get()).sum();
    let unparsed: u64 = logs::LineError::ALL
        .iter()
        .map(|r| metrics.log_parse_errors.with_label_values(&[r.reason()]).get())
        .sum();
    tracing::info!(lines = seq, unparsed, truncated, "log lines read");
    if !failed.is_empty() {
        bail!(
            "{} of {} inputs could not be read: {}",
            failed.len(),
            files.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn now() -> canh_event::Timestamp {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    canh_event::Timestamp(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

fn report_decode_errors(metrics: &Metrics) {
    for reason in canh_sensor::decode::DecodeError::ALL {
        let n = metrics.decode_errors.with_label_values(&[reason.reason()]).get();
        if n > 0 {
            tracing::info!(reason = reason.reason(), packets = n, "packets not decoded");
        }
    }
}

/// `canh-sensor run`: configured inputs to Kafka.
fn run(config_path: &std::path::Path) -> anyhow::Result<()> {
    let settings = config::load(config_path)?;
    let cfg = &settings.config;
    let metrics = Metrics::new();
    let first_seq = sequence::reserve(&cfg.sensor.state_dir).with_context(|| {
        format!("reserving an event sequence in {}", cfg.sensor.state_dir.display())
    })?;
    if let Some(listen) = settings.admin_listen {
        let bound = admin::serve(listen, metrics.registry.clone())
            .with_context(|| format!("binding the admin port {listen}"))?;
        tracing::info!(listen = %bound, "admin port serving /metrics and /healthz");
    }
    let uplink = Arc::new(start_uplink(&settings, &metrics, first_seq)?);
    let who = Identity {
        sensor_id: cfg.sensor.id.clone(),
        tenant: cfg.sensor.tenant.clone(),
        community_id_seed: cfg.sensor.community_id_seed,
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    tracing::info!(sensor = %who.sensor_id, tenant = %who.tenant, "sensor starting");
    let logs = match &settings.logs {
        Some(inputs) => Some(start_logs(inputs, &who, first_seq, &stop, &metrics, &uplink)?),
        None => None,
    };

    let mut pipeline = PacketPipeline::new(who, settings.flows.clone(), first_seq, &metrics);
    // Events go to the uplink as the pipeline makes them; flow JSON is written from the flow
    // record on this thread, the rest of the uplink's work is on its own thread.
    let mut sink = uplink::UplinkSink::new(&uplink);
    for file in &cfg.input.pcap_files {
        if stop.load(Ordering::Relaxed) || sink.error.is_some() {
            break;
        }
        let frames = capture::read_file(file, |link, ts, data| {
            pipeline.frame(link, ts, data, &mut sink);
        })?;
        tracing::info!(file = %file.display(), frames, "capture file read");
    }
    if let Some(live) = &settings.live {
        let stats = capture::capture_live(live, &stop, |captured| match captured {
            capture::Live::Frame { link, ts_ns, data } => {
                pipeline.frame(link, ts_ns, data, &mut sink)
            }
            capture::Live::Idle { now_ns } => pipeline.tick(now_ns, &mut sink),
            capture::Live::Stats(totals) => metrics.record_capture(&live.interface, &totals),
        })?;
        metrics.record_capture(&live.interface, &stats);
        tracing::info!(
            received = stats.received,
            dropped = stats.dropped,
            if_dropped = stats.if_dropped,
            "live capture stopped"
        );
    }
    pipeline.finish(&mut sink);
    let events = pipeline.next_seq() - first_seq;
    if let Some(e) = sink.error.take() {
        return Err(e.into());
    }
    let log_result = logs.map(|running| {
        // Log inputs run until the signal, also when the packet inputs are done.
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        running.join()
    });
    // The log pipeline thread has ended and dropped its handle: the uplink is ours alone again.
    let uplink = Arc::try_unwrap(uplink)
        .map_err(|_| anyhow::anyhow!("an input still holds the uplink at shutdown"))?;
    // Everything sent is now acknowledged by Kafka or durable in the spool.
    let summary = uplink.shutdown()?;
    if let (Some(result), Some(inputs)) = (&log_result, &settings.logs) {
        // Saved only once every event is acknowledged or spooled: a restart skips nothing.
        canh_sensor::logs::pipeline::save_checkpoints(result, &inputs.checkpoint_path)
            .with_context(|| format!("saving {}", inputs.checkpoint_path.display()))?;
        tracing::info!(events = result.events, "log inputs stopped");
        if let Some(e) = &result.error {
            bail!("log events were not all sent: {e}");
        }
    }
    report_decode_errors(&metrics);
    // The final stats line: what the uplink did this run.
    tracing::info!(
        events,
        delivered = summary.delivered,
        records = summary.records,
        spooled = summary.spooled,
        drained = summary.drained,
        dropped = summary.dropped,
        damaged_regions = summary.damaged_regions,
        spool_bytes_left = summary.spool_bytes_left,
        queue_full_waits = summary.queue_full_waits,
        queue_wait_ms = summary.queue_wait_ms,
        "sensor stopped"
    );
    if summary.spool_bytes_left > 0 {
        tracing::warn!(
            bytes = summary.spool_bytes_left,
            "kafka did not take everything before the flush timeout: the rest waits in the spool"
        );
    }
    Ok(())
}

/// Start the configured log inputs; their events go to `uplink` from the log pipeline thread.
fn start_logs(
    inputs: &canh_sensor::logs::pipeline::LogInputs,
    who: &Identity,
    first_seq: u64,
    stop: &Arc<AtomicBool>,
    metrics: &Metrics,
    uplink: &Arc<uplink::Uplink>,
) -> anyhow::Result<canh_sensor::logs::pipeline::RunningLogs> {
    use canh_sensor::logs::pipeline::{self, PipelineMetrics};
    use canh_sensor::logs::receive::ReceiverMetrics;
    let log_metrics = PipelineMetrics {
        receivers: ReceiverMetrics {
            lines: metrics.log_lines.clone(),
            truncated: metrics.log_truncated.clone(),
            dropped: metrics.log_dropped.clone(),
            connections_refused: metrics.log_connections_refused.clone(),
            udp_kernel_drops: metrics.log_udp_kernel_drops.clone(),
        },
        parse_errors: metrics.log_parse_errors.clone(),
        events: metrics.events.clone(),
    };
    let sender = uplink.clone();
    let barrier = uplink.clone();
    let running = pipeline::start(
        inputs,
        who.clone(),
        first_seq,
        stop.clone(),
        log_metrics,
        move |log| sender.send_json(canh_event::Dataset::Log, log.key, log.json),
        // Checkpoints move only past lines whose events are in the spool (written ahead, fsynced)
        // or acknowledged by Kafka.
        move || barrier.barrier(std::time::Duration::from_secs(30)),
    )
    .context("starting the log inputs")?;
    tracing::info!(
        udp = ?running.udp_addr,
        tcp = ?running.tcp_addr,
        tls = ?running.tls_addr,
        files = inputs.files.len(),
        "log inputs started"
    );
    Ok(running)
}

fn start_uplink(
    settings: &config::Settings,
    metrics: &Metrics,
    first_seq: u64,
) -> anyhow::Result<uplink::Uplink> {
    let cfg = &settings.config;
    let max_in_flight = cfg.uplink.max_in_flight;
    let tuning = produce::ProducerTuning {
        linger: settings.linger,
        message_timeout: settings.message_timeout,
        // Room above max_in_flight for alerts and health, which are not held back.
        queue_records: max_in_flight + 10_000,
    };
    let producer = produce::connect(&cfg.kafka, tuning)?;
    let config = uplink::UplinkConfig {
        topic_prefix: cfg.kafka.topic_prefix.clone(),
        spool_dir: settings.spool_dir.clone(),
        spool: spool::SpoolLimits {
            max_bytes: cfg.spool.max_bytes,
            segment_bytes: cfg.spool.segment_bytes,
            sync_interval: settings.spool_sync_interval,
        },
        queue_capacity: cfg.uplink.queue_capacity,
        max_in_flight,
        max_in_flight_bytes: cfg.uplink.max_in_flight_bytes,
        rate_limit: (cfg.uplink.rate_limit > 0).then_some(cfg.uplink.rate_limit),
        health_interval: settings.health_interval,
        stall_timeout: settings.stall_timeout,
        retry_backoff: settings.retry_backoff,
        message_timeout: settings.message_timeout,
        flush_timeout: settings.flush_timeout,
        sensor_id: cfg.sensor.id.clone(),
        tenant: cfg.sensor.tenant.clone(),
        interface: cfg.input.interface.as_ref().map(|i| i.name.clone()),
        health_first_seq: first_seq + sequence::UPLINK_OFFSET,
        write_ahead: cfg.uplink.write_ahead,
        pack_bytes: cfg.uplink.pack_bytes,
        pack_linger: settings.pack_linger,
        pack_compression: (cfg.uplink.pack_compression == "zstd")
            .then_some(cfg.uplink.pack_compression_level),
    };
    let metadata = produce::client_config(&cfg.kafka, tuning);
    uplink::Uplink::start(config, producer, Some(&metadata), metrics.clone())
        .with_context(|| format!("starting the uplink (spool {})", settings.spool_dir.display()))
}

/// Set `stop` on SIGINT or SIGTERM.
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal watcher")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot watch SIGTERM");
                            return;
                        }
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("stopping on signal");
                stop.store(true, Ordering::Relaxed);
            });
        })
        .context("starting the signal watcher")?;
    Ok(())
}
