//! Packet capture with libpcap: offline files and live interfaces. I/O only; frames go to the
//! packet pipeline.

use crate::decode::LinkType;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    #[error("starting the capture waker thread for {interface}: {source}")]
    Waker { interface: String, source: std::io::Error },
}

/// How often a live capture wakes up when no packet comes (idle flows, statistics, shutdown).
pub const IDLE_TICK: Duration = Duration::from_millis(500);

/// Settings of a live capture.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub interface: String,
    pub snaplen: i32,
    pub promiscuous: bool,
    pub buffer_size: i32,
    pub immediate: bool,
    pub filter: Option<String>,
    /// How often libpcap's statistics are read and handed on as [`Live::Stats`].
    pub stats_interval: Duration,
}

/// libpcap's counters of one live capture (`pcap_stats`), as 64-bit totals since it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets the capture filter accepted (`ps_recv`). On Linux this includes the ones the kernel
    /// then dropped, so the packets the sensor got are `received - dropped`.
    pub received: u64,
    /// Packets the kernel dropped because the capture buffer was full (`ps_drop`).
    pub dropped: u64,
    /// Packets the interface or its driver dropped (`ps_ifdrop`; on Linux the interface's
    /// receive drop counters since the capture opened).
    pub if_dropped: u64,
}

/// Turns libpcap's 32-bit counters, which wrap around, into 64-bit totals. Read it more often
/// than once per 2^31 packets (the capture reads it every `stats_interval`).
#[derive(Debug, Default)]
pub struct StatsTotals {
    last: [u32; 3],
    totals: CaptureStats,
}

impl StatsTotals {
    /// Fold in a new reading of libpcap's counters and return the totals.
    pub fn update(&mut self, received: u32, dropped: u32, if_dropped: u32) -> CaptureStats {
        let now = [received, dropped, if_dropped];
        let mut grown = [0u64; 3];
        for i in 0..3 {
            let delta = now[i].wrapping_sub(self.last[i]);
            // A step of 2^31 or more is a counter that went back (reset), not one that wrapped:
            // take the new value as the base and add nothing.
            if delta < 1 << 31 {
                grown[i] = u64::from(delta);
            }
        }
        self.last = now;
        self.totals.received += grown[0];
        self.totals.dropped += grown[1];
        self.totals.if_dropped += grown[2];
        self.totals
    }
}

/// When the next statistics reading is due, on the capture's clock (packet timestamps are wall
/// clock on live captures, so no extra clock read per packet).
#[derive(Debug)]
pub struct StatsSchedule {
    interval_ns: i64,
    next_ns: Option<i64>,
}

impl StatsSchedule {
    pub fn new(interval: Duration) -> StatsSchedule {
        let interval_ns = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX).max(1);
        StatsSchedule { interval_ns, next_ns: None }
    }

    /// True when a reading is due at `now_ns`; the first call only starts the schedule.
    pub fn due(&mut self, now_ns: i64) -> bool {
        let after = now_ns.saturating_add(self.interval_ns);
        let Some(next) = self.next_ns else {
            self.next_ns = Some(after);
            return false;
        };
        if now_ns >= next {
            self.next_ns = Some(after);
            return true;
        }
        // The clock went back: never wait longer than one interval from now.
        self.next_ns = Some(next.min(after));
        false
    }
}

// time_t/suseconds_t are i64 on 64-bit Linux but not everywhere: keep the conversion.
#[allow(clippy::useless_conversion)]
fn timestamp_ns(header: &pcap::PacketHeader) -> i64 {
    header.ts.tv_sec * 1_000_000_000 + header.ts.tv_usec * 1_000
}

/// Read a pcap or pcapng file, calling `on_frame(link, ts_ns, bytes)` for every frame. Classic
/// pcap files are read by [`read_classic_pcap`] in large blocks (libpcap reads through a 4 KiB
/// stdio buffer, one system call per 4 KiB, a fifth of the sensor's time on large files); pcapng
/// and anything else go through libpcap.
pub fn read_file(
    path: &Path,
    mut on_frame: impl FnMut(LinkType, i64, &[u8]),
) -> Result<u64, CaptureError> {
    // Anything unusual (cannot open, not a classic pcap) goes to libpcap, which reports it.
    let mut magic = [0u8; 4];
    let classic = std::fs::File::open(path).is_ok_and(|mut f| {
        std::io::Read::read_exact(&mut f, &mut magic).is_ok()
            && ClassicHeader::magic(magic).is_some()
    });
    let file = match std::fs::File::open(path) {
        Ok(file) if classic => file,
        _ => return read_file_libpcap(path, on_frame),
    };
    let name = path.display().to_string();
    read_classic_pcap(file, &name, &mut on_frame)
}

/// Read a file with libpcap (any format it knows), calling `on_frame(link, ts_ns, bytes)` for
/// every frame.
#[allow(clippy::useless_conversion)]
pub fn read_file_libpcap(
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

/// The global header of a classic pcap file: byte order and timestamp unit from the magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClassicHeader {
    big_endian: bool,
    nanos: bool,
}

impl ClassicHeader {
    fn magic(bytes: [u8; 4]) -> Option<ClassicHeader> {
        let (big_endian, nanos) = match bytes {
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            _ => return None,
        };
        Some(ClassicHeader { big_endian, nanos })
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// The largest frame a classic pcap record may hold (libpcap's limit for most link types).
const MAX_RECORD: usize = 262_144;
/// How much of the file is read at once.
const READ_BLOCK: usize = 1 << 20;

fn read_error(path: &str, message: String) -> CaptureError {
    CaptureError::Read { path: path.to_string(), source: pcap::Error::PcapError(message) }
}

/// Read a classic pcap file (libpcap's format, either byte order, micro- or nanosecond
/// timestamps) from `input`, calling `on_frame(link, ts_ns, bytes)` for every frame. Errors as
/// libpcap's: a truncated record or one longer than 256 KiB ends the read with an error.
pub fn read_classic_pcap(
    mut input: impl std::io::Read,
    path: &str,
    on_frame: &mut impl FnMut(LinkType, i64, &[u8]),
) -> Result<u64, CaptureError> {
    let mut buf = vec![0u8; READ_BLOCK];
    let (mut start, mut end) = (0usize, 0usize);
    let mut at_eof = false;
    // Make `need` bytes available at `buf[start..]`; false when the input ends first.
    let mut fill = |buf: &mut Vec<u8>, start: &mut usize, end: &mut usize, need: usize| {
        if *end - *start >= need {
            return Ok(true);
        }
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
        while *end < need && !at_eof {
            match input.read(&mut buf[*end..]) {
                Ok(0) => at_eof = true,
                Ok(n) => *end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(path, format!("reading the file: {e}"))),
            }
        }
        Ok(*end >= need)
    };
    if !fill(&mut buf, &mut start, &mut end, 24)? {
        return Err(read_error(path, "truncated pcap file header".into()));
    }
    let head = &buf[start..start + 24];
    let header = ClassicHeader::magic([head[0], head[1], head[2], head[3]])
        .ok_or_else(|| read_error(path, "not a classic pcap file".into()))?;
    // The low 26 bits hold the link type (the others carry FCS information).
    let linktype_raw = header.u32(&head[20..24]) & 0x03ff_ffff;
    // libpcap maps LINKTYPE_RAW (101) to DLT_RAW, which `LinkType::from_pcap` also reads.
    let linktype = i32::try_from(linktype_raw).unwrap_or(i32::MAX);
    let link = LinkType::from_pcap(linktype)
        .ok_or(CaptureError::LinkType { path: path.to_string(), linktype })?;
    // A record longer than the file's snap length is cut to it, as libpcap does.
    let snaplen = match header.u32(&head[16..20]) as usize {
        0 => MAX_RECORD,
        n => n.min(MAX_RECORD),
    };
    start += 24;
    let mut frames = 0u64;
    loop {
        if !fill(&mut buf, &mut start, &mut end, 16)? {
            if end > start {
                return Err(read_error(
                    path,
                    format!(
                        "truncated dump file; tried to read 16 header bytes, only got {}",
                        end - start
                    ),
                ));
            }
            return Ok(frames);
        }
        let record = &buf[start..start + 16];
        let secs = i64::from(header.u32(&record[0..4]));
        let frac = i64::from(header.u32(&record[4..8]));
        let caplen = header.u32(&record[8..12]) as usize;
        if caplen > MAX_RECORD {
            return Err(read_error(
                path,
                format!(
                    "invalid packet capture length {caplen}, bigger than maximum of {MAX_RECORD}"
                ),
            ));
        }
        start += 16;
        if !fill(&mut buf, &mut start, &mut end, caplen)? {
            return Err(read_error(
                path,
                format!(
                    "truncated dump file; tried to read {caplen} captured bytes, only got {}",
                    end - start
                ),
            ));
        }
        let ts = secs * 1_000_000_000 + if header.nanos { frac } else { frac * 1_000 };
        frames += 1;
        on_frame(link, ts, &buf[start..start + caplen.min(snaplen)]);
        start += caplen;
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
    /// libpcap's counters, every `stats_interval`.
    Stats(CaptureStats),
}

/// Capture live until `stop` is set. Returns libpcap's final statistics.
pub fn capture_live(
    options: &LiveOptions,
    stop: &AtomicBool,
    mut on_capture: impl FnMut(Live<'_>),
) -> Result<CaptureStats, CaptureError> {
    let name = options.interface.clone();
    let open_err = |source| CaptureError::Open { path: name.clone(), source };
    let inactive = pcap::Capture::from_device(options.interface.as_str()).map_err(open_err)?;
    let mut capture = inactive
        .snaplen(options.snaplen)
        .promisc(options.promiscuous)
        .buffer_size(options.buffer_size)
        .immediate_mode(options.immediate)
        .timeout(IDLE_TICK.as_millis() as i32)
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
    // libpcap's read timeout cannot be relied on to return on a quiet interface (seen here: a
    // capture in immediate mode never returned after SIGTERM; Linux, libpcap 1.10). A waker
    // thread breaks the read every IDLE_TICK, so idle flows expire, statistics are read and
    // `stop` is seen within a tick however quiet the link.
    let (_waker_alive, waker_gone) = std::sync::mpsc::channel::<()>();
    let breaker = capture.breakloop_handle();
    std::thread::Builder::new()
        .name("capture-waker".into())
        .spawn(move || {
            // Ends when capture_live returns and drops the sender.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                waker_gone.recv_timeout(IDLE_TICK)
            {
                breaker.breakloop();
            }
        })
        .map_err(|source| CaptureError::Waker { interface: name.clone(), source })?;
    let mut totals = StatsTotals::default();
    let mut schedule = StatsSchedule::new(options.stats_interval);
    schedule.due(now_ns());
    while !stop.load(Ordering::Relaxed) {
        let clock_ns = match capture.next_packet() {
            Ok(packet) => {
                let ts_ns = timestamp_ns(packet.header);
                on_capture(Live::Frame { link, ts_ns, data: packet.data });
                ts_ns
            }
            // NoMorePackets is how the pcap crate reports a read broken by the waker.
            Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => {
                let now_ns = now_ns();
                on_capture(Live::Idle { now_ns });
                now_ns
            }
            Err(source) => return Err(CaptureError::Read { path: name, source }),
        };
        if schedule.due(clock_ns) {
            let stat = capture
                .stats()
                .map_err(|source| CaptureError::Read { path: name.clone(), source })?;
            on_capture(Live::Stats(totals.update(stat.received, stat.dropped, stat.if_dropped)));
        }
    }
    let stat = capture.stats().map_err(|source| CaptureError::Read { path: name, source })?;
    Ok(totals.update(stat.received, stat.dropped, stat.if_dropped))
}

/// Wall-clock time, nanoseconds since the epoch (for live inputs; parsers take time as a value).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_libpcap_counters_across_a_wrap() {
        let mut totals = StatsTotals::default();
        assert_eq!(
            totals.update(10, 2, 1),
            CaptureStats { received: 10, dropped: 2, if_dropped: 1 }
        );
        // Readings come often enough that each step is below 2^31.
        assert_eq!(totals.update(1 << 31, 2, 1).received, 1 << 31);
        assert_eq!(totals.update(u32::MAX - 5, 2, 1).received, u64::from(u32::MAX) - 5);
        // received wraps past 2^32: 6 to reach 2^32, 4 more after it.
        let after = totals.update(4, 7, 1);
        assert_eq!(after.received, (1u64 << 32) + 4);
        assert_eq!(after.dropped, 7);
    }

    #[test]
    fn a_counter_that_goes_back_is_rebased_not_wrapped() {
        let mut totals = StatsTotals::default();
        totals.update(1000, 50, 9);
        // The interface's drop counter was reset (driver reload): no jump of 4 billion.
        let after = totals.update(1200, 60, 3);
        assert_eq!(after, CaptureStats { received: 1200, dropped: 60, if_dropped: 9 });
        assert_eq!(totals.update(1300, 60, 5).if_dropped, 11);
    }

    #[test]
    fn statistics_are_due_once_per_interval_and_survive_a_clock_jump() {
        let mut schedule = StatsSchedule::new(Duration::from_secs(1));
        let s = 1_000_000_000;
        assert!(!schedule.due(100 * s), "the first call starts the schedule");
        assert!(!schedule.due(100 * s + s / 2));
        assert!(schedule.due(101 * s));
        assert!(!schedule.due(101 * s + 1));
        // The wall clock steps back an hour: the next reading comes one interval later, not
        // after the hour has passed again.
        assert!(!schedule.due(101 * s - 3600 * s));
        assert!(schedule.due(101 * s - 3599 * s));
    }
}
