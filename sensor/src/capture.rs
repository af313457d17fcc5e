//! Packet capture with libpcap: offline files and live interfaces. I/O only; frames go to the
//! packet pipeline.

use crate::decode::LinkType;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open capture {path}: {source}")]
    Open { path: String, source: pcap::Error },
    #[error("capture {path} has link type {linktype}, which the decoder does not support")]
    LinkType { path: String, linktype: i32 },
    #[error("reading capture {path}: {source}")]
    Read { path: String, source: pcap::Error },
    #[error("invalid BPF filter {filter:?} on {interface}: {source}")]
    Filter { interface: String, filter: String, source: pcap::Error },
}

/// Settings of a live capture.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub interface: String,
    pub snaplen: i32,
    pub promiscuous: bool,
    pub buffer_size: i32,
    pub immediate: bool,
    pub filter: Option<String>,
}

// time_t/suseconds_t are i64 on 64-bit Linux but not everywhere: keep the conversion.
#[allow(clippy::useless_conversion)]
fn timestamp_ns(header: &pcap::PacketHeader) -> i64 {
    header.ts.tv_sec * 1_000_000_000 + header.ts.tv_usec * 1_000
}

/// Read a pcap or pcapng file, calling `on_frame(link, ts_ns, bytes)` for every frame.
#[allow(clippy::useless_conversion)]
pub fn read_file(
    path: &Path,
    mut on_frame: impl FnMut(LinkType, i64, &[u8]),
) -> Result<u64, CaptureError> {
    let name = path.display().to_string();
    let mut capture = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
        .map_err(|source| CaptureError::Open { path: name.clone(), source })?;
    let linktype = capture.get_datalink().0;
    let link = LinkType::from_pcap(linktype)
        .ok_or(CaptureError::LinkType { path: name.clone(), linktype })?;
    let mut frames = 0u64;
    loop {
        match capture.next_packet() {
            Ok(packet) => {
                frames += 1;
                // Nanosecond precision: tv_usec holds nanoseconds.
                let ts = packet.header.ts.tv_sec * 1_000_000_000 + packet.header.ts.tv_usec;
                on_frame(link, ts, packet.data);
            }
            Err(pcap::Error::NoMorePackets) => return Ok(frames),
            Err(source) => return Err(CaptureError::Read { path: name, source }),
        }
    }
}

/// What a live capture hands its caller.
pub enum Live<'a> {
    Frame {
        link: LinkType,
        ts_ns: i64,
        data: &'a [u8],
    },
    /// The read timed out without a packet: time for idle flows to expire.
    Idle {
        now_ns: i64,
    },
}

/// Capture live until `stop` is set. Returns libpcap's final statistics.
pub fn capture_live(
    options: &LiveOptions,
    stop: &AtomicBool,
    mut on_capture: impl FnMut(Live<'_>),
) -> Result<pcap::Stat, CaptureError> {
    let name = options.interface.clone();
    let open_err = |source| CaptureError::Open { path: name.clone(), source };
    let inactive = pcap::Capture::from_device(options.interface.as_str()).map_err(open_err)?;
    let mut capture = inactive
        .snaplen(options.snaplen)
        .promisc(options.promiscuous)
        .buffer_size(options.buffer_size)
        .immediate_mode(options.immediate)
        .timeout(500)
        .open()
        .map_err(open_err)?;
    if let Some(filter) = &options.filter {
        capture.filter(filter, true).map_err(|source| CaptureError::Filter {
            interface: name.clone(),
            filter: filter.clone(),
            source,
        })?;
    }
    let linktype = capture.get_datalink().0;
    let link = LinkType::from_pcap(linktype)
        .ok_or(CaptureError::LinkType { path: name.clone(), linktype })?;
    while !stop.load(Ordering::Relaxed) {
        match capture.next_packet() {
            Ok(packet) => on_capture(Live::Frame {
                link,
                ts_ns: timestamp_ns(packet.header),
                data: packet.data,
            }),
            Err(pcap::Error::TimeoutExpired) => on_capture(Live::Idle { now_ns: now_ns() }),
            Err(source) => return Err(CaptureError::Read { path: name, source }),
        }
    }
    capture.stats().map_err(|source| CaptureError::Read { path: name, source })
}

/// Wall-clock time, nanoseconds since the epoch (for live inputs; parsers take time as a value).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
