//! The on-disk spool: where events wait while Kafka is unreachable or slower than the input.
//!
//! A folder of append-only segment files named `<id>.seg` (id: 20 decimal digits, increasing).
//! Each record is framed as
//!
//! ```text
//! magic u32 LE (0x4C50_5343) | body length u32 LE | CRC-32 of the body u32 LE | body
//! body: seq u64 | spooled_at_ns i64 | class u8 | dataset u8 | topic_len u16 | topic
//!       | key_len u16 | key | payload (the rest)
//! ```
//!
//! Two kinds of segment, never mixed in one file:
//! - *spooled* segments hold records waiting for Kafka ([`Spool::append`]); they are read back and
//!   sent later ([`Spool::next_batch`]);
//! - *write-ahead* segments hold records the caller sends to Kafka right after writing them
//!   ([`Spool::append_sent`]); they are read back only after a restart (a failed delivery is sent
//!   again by the caller from the bytes librdkafka hands back; the segment waits for its ack).
//!
//! A segment is deleted once every record in it was acknowledged ([`Spool::ack`]); until then it
//! survives restarts and `kill -9` (records are written to the file, not kept in a user-space
//! buffer, before [`Spool::flush`] returns) and, once `fsync`ed (every `sync_interval`, at
//! [`Spool::sync`], and when a spooled segment is closed), a power loss. Acknowledgements are not written to
//! disk: after a restart the remaining segments are sent again whole, so a record may reach Kafka
//! twice, with the same `event.id`.
//!
//! A torn tail (crash mid-write) or corrupted bytes fail the magic, length or CRC check. The reader
//! then skips forward to the next valid record and counts what it skipped in [`Damage`]; it never
//! panics on any file content.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x4C50_5343;
const HEADER: usize = 12;
/// Fixed part of a body: seq, spooled_at_ns, class, dataset, topic_len, key_len.
const BODY_FIXED: usize = 8 + 8 + 1 + 1 + 2 + 2;
/// A body longer than this is treated as corruption (events are far smaller).
pub const MAX_BODY: usize = 16 << 20;

/// How important a record is when the spool fills up. Lower values are kept longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Alerts and sensor health: admitted until the spool is completely full.
    Critical = 0,
    /// Logs: admitted until the spool is 90 % full.
    Normal = 1,
    /// Flows and protocol metadata: admitted until the spool is 80 % full.
    Bulk = 2,
}

impl Class {
    pub fn from_u8(value: u8) -> Class {
        match value {
            0 => Class::Critical,
            1 => Class::Normal,
            _ => Class::Bulk,
        }
    }

    /// The share of `max_bytes` records of this class may fill, in percent.
    pub fn admit_percent(self) -> u64 {
        match self {
            Class::Critical => 100,
            Class::Normal => 90,
            Class::Bulk => 80,
        }
    }
}

/// One spooled event with where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub spooled_at_ns: i64,
    pub class: Class,
    /// Index into `canh_event::Dataset::ALL` (for per-dataset counters).
    pub dataset: u8,
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Record {
    /// The framed bytes of this record as written to a segment.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.as_ref().encode_into(&mut out);
        out
    }

    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            seq: self.seq,
            spooled_at_ns: self.spooled_at_ns,
            class: self.class,
            dataset: self.dataset,
            topic: &self.topic,
            key: &self.key,
            payload: &self.payload,
        }
    }
}

/// A record to write, borrowed from wherever its parts live (no copy before the frame).
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub seq: u64,
    pub spooled_at_ns: i64,
    pub class: Class,
    pub dataset: u8,
    pub topic: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// The length of this record's frame.
    pub fn frame_len(&self) -> usize {
        HEADER + self.body_len()
    }

    fn body_len(&self) -> usize {
        BODY_FIXED + self.topic().len() + self.key().len() + self.payload.len()
    }

    fn topic(&self) -> &[u8] {
        &self.topic.as_bytes()[..self.topic.len().min(u16::MAX as usize)]
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.key.len().min(u16::MAX as usize)]
    }

    /// Append the framed bytes of this record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.frame_len());
        // Writing into a Vec cannot fail.
        let _ = self.write_to(out);
    }

    /// Write the framed bytes of this record to `out` piece by piece, the checksum computed over
    /// the pieces, so that the payload is copied once (straight into `out`).
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let (topic, key) = (self.topic(), self.key());
        // Header and the body's fixed fields up to the topic (key_len follows the topic).
        let mut head = [0_u8; HEADER + BODY_FIXED - 2];
        head[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        head[4..8].copy_from_slice(&(self.body_len() as u32).to_le_bytes());
        head[12..20].copy_from_slice(&self.seq.to_le_bytes());
        head[20..28].copy_from_slice(&self.spooled_at_ns.to_le_bytes());
        head[28] = self.class as u8;
        head[29] = self.dataset;
        head[30..32].copy_from_slice(&(topic.len() as u16).to_le_bytes());
        let key_len = (key.len() as u16).to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        for part in [&head[HEADER..], topic, &key_len, key, self.payload] {
            crc.update(part);
        }
        head[8..12].copy_from_slice(&crc.finalize().to_le_bytes());
        for part in [&head[..], topic, &key_len, key, self.payload] {
            out.write_all(part)?;
        }
        Ok(())
    }
}

/// What the reader skipped in one segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Separate damaged stretches (a torn tail is one).
    pub regions: u64,
    pub bytes: u64,
}

/// Parse one body (already CRC-checked). `None` when its inner lengths do not add up.
fn decode_body(body: &[u8]) -> Option<Record> {
    let fixed = body.get(..20)?;
    let seq = u64::from_le_bytes(fixed[0..8].try_into().ok()?);
    let spooled_at_ns = i64::from_le_bytes(fixed[8..16].try_into().ok()?);
    let class = Class::from_u8(fixed[16]);
    let dataset = fixed[17];
    let topic_len = u16::from_le_bytes(fixed[18..20].try_into().ok()?) as usize;
    let rest = &body[20..];
    let topic = std::str::from_utf8(rest.get(..topic_len)?).ok()?.to_string();
    let rest = &rest[topic_len..];
    let key_len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let rest = &rest[2..];
    let key = rest.get(..key_len)?.to_vec();
    let payload = rest[key_len..].to_vec();
    Some(Record { seq, spooled_at_ns, class, dataset, topic, key, payload })
}

/// The record framed at the start of `bytes`, and its framed length; `None` if there is none.
fn decode_at(bytes: &[u8]) -> Option<(Record, usize)> {
    let header = bytes.get(..HEADER)?;
    if u32::from_le_bytes(header[0..4].try_into().ok()?) != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    if !(BODY_FIXED..=MAX_BODY).contains(&len) {
        return None;
    }
    let crc = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some((decode_body(body)?, HEADER + len))
}

/// Every valid record of a segment's bytes, in order, and what had to be skipped.
pub fn decode_segment(bytes: &[u8]) -> (Vec<Record>, Damage) {
    let mut records = Vec::new();
    let mut damage = Damage::default();
    let mut pos = 0;
    let mut in_damage = false;
    while pos < bytes.len() {
        match decode_at(&bytes[pos..]) {
            Some((record, len)) => {
                records.push(record);
                pos += len;
                in_damage = false;
            }
            None => {
                if !in_damage {
                    damage.regions += 1;
                    in_damage = true;
                }
                // Resynchronise on the next magic number.
                let next = bytes[pos + 1..]
                    .windows(4)
                    .position(|w| w == MAGIC.to_le_bytes())
                    .map(|i| pos + 1 + i)
                    .unwrap_or(bytes.len());
                damage.bytes += (next - pos) as u64;
                pos = next;
            }
        }
    }
    (records, damage)
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("spool segment {path}: {source}")]
    Segment { path: String, source: std::io::Error },
}

/// Size limits of the spool.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    /// Total bytes of all segments; see [`Class::admit_percent`] for who may fill how much.
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// How often [`Spool::flush`] also `fsync`s the segment being written; zero: at every flush.
    pub sync_interval: std::time::Duration,
}

/// The answer to [`Spool::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Written,
    /// The spool holds too much for this record's class: the record was not written.
    Full,
}

/// A closed segment handed out for sending.
#[derive(Debug)]
pub struct Batch {
    pub segment: u64,
    pub records: Vec<Record>,
    pub damage: Damage,
}

#[derive(Debug)]
struct Segment {
    bytes: u64,
    /// Records counted when the segment was handed out (known once it was read).
    records: u64,
    acked: u64,
    handed_out: bool,
    oldest_ns: Option<i64>,
}

struct Active {
    id: u64,
    file: BufWriter<File>,
    bytes: u64,
    records: u64,
    oldest_ns: Option<i64>,
    /// A write-ahead segment: its records were handed to Kafka as they were written.
    write_ahead: bool,
    /// Acknowledged records (write-ahead segments only).
    acked: u64,
    /// Written since the last fsync.
    unsynced: bool,
}

pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    /// Closed segments, oldest first.
    closed: BTreeMap<u64, Segment>,
    active: Option<Active>,
    next_id: u64,
    total_bytes: u64,
    last_sync: std::time::Instant,
    /// Closed write-ahead segments not `fsync`ed yet, with their files: synced at the next due
    /// [`Spool::flush`] or [`Spool::sync`], unless all their records are acknowledged (and the
    /// segment deleted) before. At high rates Kafka acknowledges a segment's records well within
    /// `sync_interval`, so its bytes are never written to the disk.
    unsynced_closed: Vec<(u64, File)>,
}

impl Spool {
    /// Open (or create) the spool in `dir`. Segments left by an earlier run are kept for sending;
    /// writing always continues in a new segment.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<Spool, SpoolError> {
        let folder_err = |source| SpoolError::Folder { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(folder_err)?;
        let mut closed = BTreeMap::new();
        let mut total_bytes = 0;
        for entry in std::fs::read_dir(dir).map_err(folder_err)? {
            let path = entry.map_err(folder_err)?.path();
            let Some(id) = segment_id(&path) else { continue };
            let bytes = std::fs::metadata(&path)
                .map_err(|source| SpoolError::Segment { path: path.display().to_string(), source })?
                .len();
            let oldest_ns = first_record_time(&path);
            total_bytes += bytes;
            closed
                .insert(id, Segment { bytes, records: 0, acked: 0, handed_out: false, oldest_ns });
        }
        let next_id = closed.keys().next_back().map_or(1, |id| id + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            limits,
            closed,
            active: None,
            next_id,
            total_bytes,
            last_sync: std::time::Instant::now(),
            unsynced_closed: Vec::new(),
        })
    }

    /// Write one record to be sent later, unless the spool is too full for its class.
    pub fn append(&mut self, record: &Record) -> Result<Appended, SpoolError> {
        self.append_ref(record.as_ref())
    }

    /// [`Spool::append`] of a borrowed record.
    pub fn append_ref(&mut self, record: RecordRef<'_>) -> Result<Appended, SpoolError> {
        Ok(self.write(record, false)?.map_or(Appended::Full, |_| Appended::Written))
    }

    /// Write ahead one record the caller hands to Kafka right after the next [`Spool::flush`]:
    /// returns the segment to acknowledge it in, or `None` when the spool is too full for its
    /// class (nothing was written).
    pub fn append_sent(&mut self, record: RecordRef<'_>) -> Result<Option<u64>, SpoolError> {
        self.write(record, true)
    }

    fn write(
        &mut self,
        record: RecordRef<'_>,
        write_ahead: bool,
    ) -> Result<Option<u64>, SpoolError> {
        let frame_len = record.frame_len() as u64;
        let limit = self.limits.max_bytes / 100 * record.class.admit_percent();
        if self.total_bytes + frame_len > limit {
            return Ok(None);
        }
        // One kind of record per segment: switching kind closes the segment.
        if self.active.as_ref().is_some_and(|a| a.write_ahead != write_ahead && a.records > 0) {
            self.close_active()?;
        }
        if self.active.is_none() {
            self.start_segment()?;
        }
        let Some(active) = self.active.as_mut() else { return Ok(None) };
        active.write_ahead = write_ahead;
        if let Err(source) = record.write_to(&mut active.file) {
            let id = active.id;
            return Err(SpoolError::Segment {
                path: self.path_of(id).display().to_string(),
                source,
            });
        }
        active.bytes += frame_len;
        active.records += 1;
        active.unsynced = true;
        active.oldest_ns.get_or_insert(record.spooled_at_ns);
        let id = active.id;
        self.total_bytes += frame_len;
        if active.bytes >= self.limits.segment_bytes {
            self.close_active()?;
        }
        Ok(Some(id))
    }

    /// Hand what was appended to the operating system, so that it survives the process dying;
    /// `fsync` it too when `sync_interval` has passed since the last time.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        let due = self.last_sync.elapsed() >= self.limits.sync_interval;
        self.flush_and_sync(due)
    }

    /// Flush and `fsync` now: everything appended so far survives a power loss.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.flush_and_sync(true)
    }

    fn flush_and_sync(&mut self, sync: bool) -> Result<(), SpoolError> {
        if sync {
            self.last_sync = std::time::Instant::now();
            while let Some((id, file)) = self.unsynced_closed.pop() {
                if let Err(source) = file.sync_data() {
                    // Kept, to be tried again.
                    self.unsynced_closed.push((id, file));
                    let path = self.path_of(id).display().to_string();
                    return Err(SpoolError::Segment { path, source });
                }
            }
        }
        let Some(active) = self.active.as_mut() else { return Ok(()) };
        let path = self.dir.join(segment_name(active.id));
        let io_err = |source| SpoolError::Segment { path: path.display().to_string(), source };
        active.file.flush().map_err(io_err)?;
        if sync && active.unsynced {
            active.file.get_ref().sync_data().map_err(io_err)?;
            active.unsynced = false;
        }
        Ok(())
    }

    /// Delete the write-ahead segment being written once Kafka acknowledged all its records, so a
    /// restart does not send them again. Called between batches.
    pub fn retire_acknowledged(&mut self) -> Result<(), SpoolError> {
        let done = self.active.as_ref().is_some_and(|a| a.write_ahead && a.acked >= a.records);
        if !done {
            return Ok(());
        }
        let Some(active) = self.active.take() else { return Ok(()) };
        drop(active.file);
        self.total_bytes = self.total_bytes.saturating_sub(active.bytes);
        let path = self.path_of(active.id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SpoolError::Segment { path: path.display().to_string(), source }),
        }
    }

    /// The oldest segment not handed out yet, read back; the segment being written is closed first
    /// when nothing older is waiting. `None` when the spool holds nothing to send.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, SpoolError> {
        loop {
            let next = self.closed.iter().find(|(_, s)| !s.handed_out).map(|(id, _)| *id);
            let id = match next {
                Some(id) => id,
                None if self.active.as_ref().is_some_and(|a| a.records > 0 && !a.write_ahead) => {
                    self.close_active()?;
                    continue;
                }
                None => return Ok(None),
            };
            let path = self.path_of(id);
            let bytes = std::fs::read(&path).map_err(|source| SpoolError::Segment {
                path: path.display().to_string(),
                source,
            })?;
            let (records, damage) = decode_segment(&bytes);
            if let Some(segment) = self.closed.get_mut(&id) {
                segment.handed_out = true;
                segment.records = records.len() as u64;
            }
            if records.is_empty() {
                self.remove(id)?;
                if damage.regions == 0 {
                    continue;
                }
            }
            return Ok(Some(Batch { segment: id, records, damage }));
        }
    }

    /// Kafka acknowledged `n` more records of `segment`; a segment whose records are all
    /// acknowledged is deleted.
    pub fn ack(&mut self, segment: u64, n: u64) -> Result<(), SpoolError> {
        if let Some(active) = self.active.as_mut().filter(|a| a.id == segment && a.write_ahead) {
            active.acked += n;
            return Ok(());
        }
        let Some(s) = self.closed.get_mut(&segment) else { return Ok(()) };
        s.acked += n;
        if s.handed_out && s.acked >= s.records {
            self.remove(segment)?;
        }
        Ok(())
    }

    /// Bytes held in segment files.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// True when no record waits for Kafka (written-ahead records acknowledged count as gone).
    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.active.as_ref().is_none_or(|a| a.acked >= a.records)
    }

    /// True when records are waiting that were not handed out yet.
    pub fn has_unsent(&self) -> bool {
        self.closed.values().any(|s| !s.handed_out)
            || self.active.as_ref().is_some_and(|a| a.records > 0 && !a.write_ahead)
    }

    /// When the oldest record still held was spooled.
    pub fn oldest_ns(&self) -> Option<i64> {
        self.closed
            .values()
            .find_map(|s| s.oldest_ns)
            .or_else(|| self.active.as_ref().and_then(|a| a.oldest_ns))
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(segment_name(id))
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let id = self.next_id;
        self.next_id += 1;
        let path = self.path_of(id);
        let file =
            OpenOptions::new().create_new(true).append(true).open(&path).map_err(|source| {
                SpoolError::Segment { path: path.display().to_string(), source }
            })?;
        self.active = Some(Active {
            id,
            file: BufWriter::with_capacity(1 << 16, file),
            bytes: 0,
            records: 0,
            oldest_ns: None,
            write_ahead: false,
            acked: 0,
            unsynced: false,
        });
        Ok(())
    }

    fn close_active(&mut self) -> Result<(), SpoolError> {
        let Some(mut active) = self.active.take() else { return Ok(()) };
        let path = self.path_of(active.id);
        let io_err = |source| SpoolError::Segment { path: path.display().to_string(), source };
        active.file.flush().map_err(io_err)?;
        if active.write_ahead && active.acked >= active.records {
            // Everything in it reached Kafka already: nothing to keep.
            drop(active.file);
            self.total_bytes = self.total_bytes.saturating_sub(active.bytes);
            return match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(io_err(source)),
            };
        }
        if active.unsynced {
            if active.write_ahead {
                // Synced with the segment being written (every `sync_interval`), unless deleted
                // before: the power-loss bound stays `sync_interval`.
                let file = active.file.into_inner().map_err(|e| io_err(e.into_error()))?;
                self.unsynced_closed.push((active.id, file));
            } else {
                active.file.get_ref().sync_data().map_err(io_err)?;
            }
        }
        self.closed.insert(
            active.id,
            Segment {
                bytes: active.bytes,
                records: active.records,
                // A write-ahead segment's records are all out already: it waits for their acks.
                acked: active.acked,
                handed_out: active.write_ahead,
                oldest_ns: active.oldest_ns,
            },
        );
        Ok(())
    }

    fn remove(&mut self, id: u64) -> Result<(), SpoolError> {
        let Some(segment) = self.closed.remove(&id) else { return Ok(()) };
        // Deleted: nothing of it to sync.
        self.unsynced_closed.retain(|(unsynced, _)| *unsynced != id);
        self.total_bytes = self.total_bytes.saturating_sub(segment.bytes);
        let path = self.path_of(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SpoolError::Segment { path: path.display().to_string(), source }),
        }
    }
}

fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

fn segment_id(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".seg")?.parse().ok()
}

/// When the first readable record of a segment was spooled (looked for in its first MiB, so a
/// start does not read the whole spool); `None` if there is none there.
fn first_record_time(path: &Path) -> Option<i64> {
    use std::io::Read;
    let mut head = Vec::new();
    File::open(path).ok()?.take(1 << 20).read_to_end(&mut head).ok()?;
    let (records, _) = decode_segment(&head);
    records.first().map(|r| r.spooled_at_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "canh-spool-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn record(seq: u64, class: Class) -> Record {
        Record {
            seq,
            spooled_at_ns: 1_000 + seq as i64,
            class,
            dataset: 0,
            topic: "canh-flow".into(),
            key: format!("key-{seq}").into_bytes(),
            payload: format!("{{\"n\":{seq}}}").into_bytes(),
        }
    }

    const LIMITS: SpoolLimits = SpoolLimits {
        max_bytes: 1 << 20,
        segment_bytes: 1 << 10,
        sync_interval: std::time::Duration::ZERO,
    };

    fn drain_all(spool: &mut Spool) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(batch) = spool.next_batch().expect("read") {
            seqs.extend(batch.records.iter().map(|r| r.seq));
            spool.ack(batch.segment, batch.records.len() as u64).expect("ack");
        }
        seqs
    }

    #[test]
    fn write_ahead_records_are_kept_until_acknowledged_and_never_mixed_with_spooled_ones() {
        let dir = temp("wal");
        let limits = SpoolLimits { segment_bytes: 1 << 20, ..LIMITS };
        let mut spool = Spool::open(&dir, limits).expect("open");
        let mut segments = Vec::new();
        for seq in 0..10 {
            let r = record(seq, Class::Bulk);
            segments.push(spool.append_sent(r.as_ref()).expect("append").expect("room"));
        }
        spool.flush().expect("flush");
        // Written ahead: on disk, not waiting to be sent, not empty until acknowledged.
        assert!(!spool.has_unsent());
        assert!(!spool.is_empty());
        assert!(spool.next_batch().expect("read").is_none());
        assert!(segments.iter().all(|s| *s == segments[0]));
        for _ in 0..9 {
            spool.ack(segments[0], 1).expect("ack");
        }
        assert!(!spool.is_empty());
        spool.ack(segments[0], 1).expect("ack");
        assert!(spool.is_empty());
        spool.retire_acknowledged().expect("retire");
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0, "acknowledged: deleted");
        assert_eq!(spool.bytes(), 0);

        // A spooled record after write-ahead ones starts a new segment, and back again.
        let wal = spool.append_sent(record(20, Class::Bulk).as_ref()).expect("a").expect("room");
        spool.append(&record(21, Class::Bulk)).expect("append");
        let wal2 = spool.append_sent(record(22, Class::Bulk).as_ref()).expect("a").expect("room");
        assert_ne!(wal, wal2);
        spool.flush().expect("flush");
        let batch = spool.next_batch().expect("read").expect("the spooled record");
        assert_eq!(batch.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![21]);
        spool.ack(batch.segment, 1).expect("ack");
        spool.ack(wal, 1).expect("ack");
        // Not acknowledged: a restart (here: reopening without closing) sends it again.
        drop(spool);
        let mut again = Spool::open(&dir, limits).expect("reopen");
        assert_eq!(drain_all(&mut again), vec![22]);
        assert!(again.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A closed write-ahead segment is `fsync`ed with the next sync, not when it is closed, and
    /// not at all when its records are acknowledged (and it is deleted) before.
    #[test]
    fn closed_write_ahead_segments_wait_for_the_next_sync() {
        let dir = temp("wa-sync");
        let limits = SpoolLimits {
            max_bytes: 1 << 24,
            segment_bytes: 256,
            sync_interval: std::time::Duration::from_secs(3600),
        };
        let mut spool = Spool::open(&dir, limits).expect("open");
        // Records per segment.
        let mut segments = BTreeMap::new();
        for seq in 0..40 {
            let record = record(seq, Class::Bulk);
            let segment = spool.append_sent(record.as_ref()).expect("write").expect("room");
            *segments.entry(segment).or_insert(0_u64) += 1;
        }
        spool.flush().expect("flush");
        assert!(segments.len() > 2, "{} segments", segments.len());
        let closed: Vec<u64> = spool.unsynced_closed.iter().map(|(id, _)| *id).collect();
        // Every closed segment (all but the one being written, if any) waits for a sync.
        let written = spool.active.as_ref().map_or(0, |_| 1);
        assert_eq!(closed.len(), segments.len() - written, "closed segments wait for a sync");
        // All records of the first segment acknowledged: deleted, nothing left to sync of it.
        let first = closed[0];
        spool.ack(first, segments[&first]).expect("ack");
        assert!(!spool.unsynced_closed.iter().any(|(id, _)| *id == first));
        assert!(!dir.join(segment_name(first)).exists());
        spool.sync().expect("sync");
        assert!(spool.unsynced_closed.is_empty());
        // The others are still there, to be sent again after a restart.
        assert!(dir.join(segment_name(closed[1])).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_round_trip_through_the_frame() {
        let r = record(7, Class::Normal);
        let frame = r.encode();
        assert_eq!(decode_at(&frame), Some((r, frame.len())));
    }

    #[test]
    fn write_read_ack_deletes_segments() {
        let dir = temp("ack");
        let mut spool = Spool::open(&dir, LIMITS).expect("open");
        for seq in 0..100 {
            assert_eq!(spool.append(&record(seq, Class::Bulk)).expect("append"), Appended::Written);
        }
        assert!(spool.bytes() > 0);
        assert_eq!(spool.oldest_ns(), Some(1_000));
        let batch = spool.next_batch().expect("read").expect("a batch");
        assert_eq!(batch.records[0].seq, 0);
        assert_eq!(batch.damage, Damage::default());
        // Not acknowledged: the segment stays.
        let files = std::fs::read_dir(&dir).expect("dir").count();
        spool.ack(batch.segment, batch.records.len() as u64 - 1).expect("ack");
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), files);
        spool.ack(batch.segment, 1).expect("ack");
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), files - 1);
        let rest = drain_all(&mut spool);
        assert_eq!(rest, (batch.records.len() as u64..100).collect::<Vec<_>>());
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unacked_records_survive_a_restart_in_order() {
        let dir = temp("restart");
        let mut spool = Spool::open(&dir, LIMITS).expect("open");
        for seq in 0..50 {
            spool.append(&record(seq, Class::Bulk)).expect("append");
        }
        // The first segment is sent and acknowledged, the second handed out but not acknowledged.
        let first = spool.next_batch().expect("read").expect("batch");
        spool.ack(first.segment, first.records.len() as u64).expect("ack");
        let second = spool.next_batch().expect("read").expect("batch");
        spool.flush().expect("flush");
        let bytes_before = spool.bytes();
        drop(spool);

        let mut again = Spool::open(&dir, LIMITS).expect("reopen");
        assert_eq!(again.bytes(), bytes_before);
        assert_eq!(again.oldest_ns(), Some(1_000 + first.records.len() as i64));
        let seqs = drain_all(&mut again);
        assert_eq!(seqs, (first.records.len() as u64..50).collect::<Vec<_>>());
        assert_eq!(seqs[0], second.records[0].seq);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writes_after_a_restart_go_to_a_new_segment_after_the_old_ones() {
        let dir = temp("append-after-restart");
        let mut spool = Spool::open(&dir, LIMITS).expect("open");
        spool.append(&record(1, Class::Bulk)).expect("append");
        spool.flush().expect("flush");
        drop(spool);
        let mut again = Spool::open(&dir, LIMITS).expect("reopen");
        again.append(&record(2, Class::Bulk)).expect("append");
        assert_eq!(drain_all(&mut again), vec![1, 2]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_truncation_point_keeps_the_whole_records_before_it() {
        let frames: Vec<Vec<u8>> = (0..5).map(|s| record(s, Class::Bulk).encode()).collect();
        let all: Vec<u8> = frames.concat();
        let ends: Vec<usize> = frames
            .iter()
            .scan(0, |end, f| {
                *end += f.len();
                Some(*end)
            })
            .collect();
        for cut in 0..=all.len() {
            let (records, damage) = decode_segment(&all[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(records.len(), whole, "cut at {cut}");
            let torn = cut - ends.iter().rev().find(|&&e| e <= cut).copied().unwrap_or(0);
            assert_eq!(damage.bytes, torn as u64, "cut at {cut}");
            assert_eq!(damage.regions, u64::from(torn > 0), "cut at {cut}");
        }
    }

    #[test]
    fn a_torn_segment_on_disk_is_reported_and_the_rest_delivered() {
        let dir = temp("torn");
        let limits = SpoolLimits {
            max_bytes: 1 << 20,
            segment_bytes: 1 << 20,
            sync_interval: std::time::Duration::ZERO,
        };
        let mut spool = Spool::open(&dir, limits).expect("open");
        for seq in 0..10 {
            spool.append(&record(seq, Class::Bulk)).expect("append");
        }
        spool.flush().expect("flush");
        drop(spool);
        let path =
            std::fs::read_dir(&dir).expect("dir").next().expect("one").expect("entry").path();
        let len = std::fs::metadata(&path).expect("meta").len();
        let file = OpenOptions::new().write(true).open(&path).expect("open segment");
        file.set_len(len - 3).expect("truncate");
        let mut again = Spool::open(&dir, limits).expect("reopen");
        let batch = again.next_batch().expect("read").expect("batch");
        assert_eq!(batch.records.len(), 9);
        assert_eq!(batch.damage.regions, 1);
        again.ack(batch.segment, 9).expect("ack");
        assert!(again.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_segment_of_garbage_is_skipped_not_fatal() {
        let dir = temp("garbage");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(segment_name(3)), b"not a spool segment at all").expect("write");
        std::fs::write(dir.join("notes.txt"), b"ignored").expect("write");
        let mut spool = Spool::open(&dir, LIMITS).expect("open");
        spool.append(&record(9, Class::Bulk)).expect("append");
        let batch = spool.next_batch().expect("read").expect("damage reported");
        assert!(batch.records.is_empty());
        assert_eq!(batch.damage, Damage { regions: 1, bytes: 26 });
        assert_eq!(drain_all(&mut spool), vec![9]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_size_cap_drops_bulk_first_and_critical_last() {
        let dir = temp("cap");
        let limits = SpoolLimits {
            max_bytes: 10_000,
            segment_bytes: 2_000,
            sync_interval: std::time::Duration::ZERO,
        };
        let mut spool = Spool::open(&dir, limits).expect("open");
        let frame = record(999, Class::Bulk).encode().len() as u64;
        let admitted = |class: Class, spool: &mut Spool| {
            let mut n = 0;
            while spool.append(&record(n, class)).expect("append") == Appended::Written {
                n += 1;
            }
            n
        };
        let bulk = admitted(Class::Bulk, &mut spool);
        assert!(bulk > 0, "bulk admitted while there is room");
        assert!(spool.bytes() <= 8_000 && spool.bytes() + frame > 8_000, "{}", spool.bytes());
        let normal = admitted(Class::Normal, &mut spool);
        assert!(normal > 0 && spool.bytes() <= 9_000);
        let critical = admitted(Class::Critical, &mut spool);
        assert!(critical > 0 && spool.bytes() <= 10_000);
        assert_eq!(spool.append(&record(1, Class::Bulk)).expect("append"), Appended::Full);
        // Draining makes room again.
        drain_all(&mut spool);
        assert_eq!(spool.append(&record(1, Class::Bulk)).expect("append"), Appended::Written);
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        #[test]
        fn corrupted_bytes_lose_only_the_records_they_touch(
            n in 1usize..20,
            hits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let frames: Vec<Vec<u8>> = (0..n as u64).map(|s| record(s, Class::Bulk).encode()).collect();
            let mut bytes = frames.concat();
            let mut touched = vec![false; n];
            for (index, value) in &hits {
                let at = index.index(bytes.len());
                if bytes[at] == *value {
                    continue;
                }
                bytes[at] = *value;
                let mut start = 0;
                for (i, f) in frames.iter().enumerate() {
                    if (start..start + f.len()).contains(&at) {
                        touched[i] = true;
                    }
                    start += f.len();
                }
            }
            let (records, damage) = decode_segment(&bytes);
            let want: Vec<u64> = (0..n as u64).filter(|&i| !touched[i as usize]).collect();
            let got: Vec<u64> = records.iter().map(|r| r.seq).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(damage.regions > 0, touched.iter().any(|&t| t));
            for r in &records {
                prop_assert_eq!(r, &record(r.seq, Class::Bulk));
            }
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let (records, damage) = decode_segment(&bytes);
            prop_assert!(damage.bytes as usize <= bytes.len());
            prop_assert!(records.len() <= bytes.len() / (HEADER + BODY_FIXED) + 1);
        }
    }
}
