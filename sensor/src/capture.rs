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

/// Size of the stdio buffer libpcap reads a capture file through. 64 KiB: 16 times fewer system
/// calls than stdio's 4 KiB, and still in cache when libpcap copies packets out of it (a 1 MiB
/// buffer measured slower than 4 KiB: the kernel's copy into it missed the cache).
const FILE_BUFFER_BYTES: usize = 64 << 10;

/// libpcap reads a file through a stdio `FILE`, whose buffer is one 4 KiB block by default: one
/// system call per 4 KiB. This opens the file with a `FILE_BUFFER_BYTES` buffer and hands it to
/// libpcap (`pcap_fopen_offline_with_tstamp_precision`), which then reads pcap and pcapng exactly
/// as `pcap_open_offline` would.
struct OfflineFile {
    // Declared first so it is dropped first: pcap_close closes the FILE, which uses `_buffer`.
    capture: pcap::Capture<pcap::Offline>,
    _buffer: Option<Box<[u8]>>,
}

/// libpcap's handle, opaque here.
#[repr(C)]
struct PcapHandle {
    _private: [u8; 0],
}

#[allow(unsafe_code)]
extern "C" {
    // From libpcap (linked by the pcap crate): open a capture from a stdio stream it then owns.
    fn pcap_fopen_offline_with_tstamp_precision(
        fp: *mut libc::FILE,
        precision: libc::c_uint,
        errbuf: *mut libc::c_char,
    ) -> *mut PcapHandle;
}

/// libpcap's PCAP_TSTAMP_PRECISION_NANO.
const PRECISION_NANO: libc::c_uint = 1;
/// libpcap's PCAP_ERRBUF_SIZE.
const ERRBUF_SIZE: usize = 256;

impl OfflineFile {
    /// The file opened with a large buffer, or `None` if it cannot be opened or libpcap does not
    /// read it (the caller then lets `pcap_open_offline` report the error).
    #[allow(unsafe_code)] // FFI to libpcap; the only unsafe block in the workspace
    fn open(path: &Path) -> Option<OfflineFile> {
        use std::os::unix::ffi::OsStrExt;
        let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        let mut buffer = vec![0u8; FILE_BUFFER_BYTES].into_boxed_slice();
        let mut errbuf = [0 as libc::c_char; ERRBUF_SIZE];
        // SAFETY: `cpath` and the mode are NUL-terminated; `buffer` outlives the FILE (it is
        // dropped after `capture`, whose drop runs pcap_close and so fclose); on failure the FILE
        // is closed here (pcap_fopen_offline does not take it then), before `buffer` is dropped.
        let handle = unsafe {
            let file = libc::fopen(cpath.as_ptr(), c"rb".as_ptr());
            if file.is_null() {
                return None;
            }
            let buf = buffer.as_mut_ptr().cast::<libc::c_char>();
            if libc::setvbuf(file, buf, libc::_IOFBF, FILE_BUFFER_BYTES) != 0 {
                libc::fclose(file);
                return None;
            }
            let handle =
                pcap_fopen_offline_with_tstamp_precision(file, PRECISION_NANO, errbuf.as_mut_ptr());
            if handle.is_null() {
                libc::fclose(file);
                return None;
            }
            handle
        };
        let handle = std::ptr::NonNull::new(handle)?;
        // The pcap crate wraps a raw libpcap handle and closes it on drop.
        let capture = pcap::Capture::from(handle.cast());
        Some(OfflineFile { capture, _buffer: Some(buffer) })
    }

    fn unbuffered(capture: pcap::Capture<pcap::Offline>) -> OfflineFile {
        OfflineFile { capture, _buffer: None }
    }
}

/// Read a pcap or pcapng file, calling `on_frame(link, ts_ns, bytes)` for every frame.
#[allow(clippy::useless_conversion)]
pub fn read_file(
    path: &Path,
    on_frame: impl FnMut(LinkType, i64, &[u8]),
) -> Result<u64, CaptureError> {
    let name = path.display().to_string();
    let mut file = match OfflineFile::open(path) {
        Some(file) => file,
        // Could not open with a large buffer: libpcap's own open says why (or succeeds).
        None => OfflineFile::unbuffered(open_offline(path, &name)?),
    };
    read_frames(&mut file.capture, name, on_frame)
}

/// [`read_file`] through libpcap's own `pcap_open_offline` and its default stdio buffer: the same
/// frames and errors, more system calls. Kept to check the buffered read against, and to measure
/// the difference (`examples/pcap_floor.rs --libpcap`).
pub fn read_file_libpcap(
    path: &Path,
    on_frame: impl FnMut(LinkType, i64, &[u8]),
) -> Result<u64, CaptureError> {
    let name = path.display().to_string();
    let mut capture = open_offline(path, &name)?;
    read_frames(&mut capture, name, on_frame)
}

fn open_offline(path: &Path, name: &str) -> Result<pcap::Capture<pcap::Offline>, CaptureError> {
    pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
        .map_err(|source| CaptureError::Open { path: name.to_string(), source })
}

/// Every frame of an opened capture file to `on_frame`; the number of frames read.
#[allow(clippy::useless_conversion)]
fn read_frames(
    capture: &mut pcap::Capture<pcap::Offline>,
    name: String,
    mut on_frame: impl FnMut(LinkType, i64, &[u8]),
) -> Result<u64, CaptureError> {
    let linktype = capture.get_datalink().0;
    let link = LinkType::from_pcap(linktype)
        .ok_or(CaptureError::LinkType { path: name.clone(), linktype })?;
    let mut frames = 0u64;
    // One pcap_loop over the whole file: libpcap calls back for each frame, without
    // pcap_next_ex's entry and one-shot callback per frame.
    let read = capture.for_each(None, |packet| {
        frames += 1;
        // Nanosecond precision: tv_usec holds nanoseconds.
        let ts = packet.header.ts.tv_sec * 1_000_000_000 + packet.header.ts.tv_usec;
        on_frame(link, ts, packet.data);
    });
    match read {
        Ok(()) => Ok(frames),
        Err(source) => Err(CaptureError::Read { path: name, source }),
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
