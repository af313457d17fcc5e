//! File tailing with persistent checkpoints. Files are found by glob on every poll and followed by
//! identity (device and inode), not by name, so:
//! - rotation by rename: the renamed file is read to its end, then the new file at the path from 0;
//! - rotation by copytruncate: a file shorter than the offset read so far was truncated: from 0;
//! - new files matching a glob are read from their start;
//! - a restart resumes each file at the checkpointed offset of its inode. The pipeline writes the
//!   checkpoint only past lines whose events the uplink holds durably (spool or Kafka), so a crash
//!   skips nothing; lines read again after a crash get the same event id ([`line_event_id`]), so
//!   they are duplicates by id, which the collector folds.
//!
//! Runs on its own thread; lines go to the pipeline over the bounded channel with a blocking send:
//! when the channel is full the tailer waits (the file keeps the data).

use super::receive::{now, FilePosition, InputKind, RawLine, ReceiverMetrics};
use super::LineOptions;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Most lines read from one file per poll, so one busy file cannot starve the others.
const LINES_PER_POLL: usize = 10_000;

#[derive(Debug, Clone)]
pub struct TailSettings {
    pub patterns: Vec<String>,
    pub options: LineOptions,
    /// Files found at start-up without a checkpoint are read from their end instead of their start.
    pub start_at_end: bool,
    pub max_bytes: usize,
}

/// Offsets read so far, by file identity. Stored as text, one `dev ino offset path` per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoints {
    entries: BTreeMap<(u64, u64), (u64, String)>,
}

impl Checkpoints {
    pub fn load(path: &Path) -> std::io::Result<Checkpoints> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoints::default()),
            Err(e) => return Err(e),
        };
        let mut entries = BTreeMap::new();
        for line in text.lines() {
            let mut fields = line.splitn(4, ' ');
            let numbers = (fields.next(), fields.next(), fields.next());
            let (Some(dev), Some(ino), Some(offset)) = numbers else { continue };
            let (Ok(dev), Ok(ino), Ok(offset)) = (dev.parse(), ino.parse(), offset.parse()) else {
                continue;
            };
            entries.insert((dev, ino), (offset, fields.next().unwrap_or("").to_string()));
        }
        Ok(Checkpoints { entries })
    }

    pub fn offset(&self, dev: u64, ino: u64) -> Option<u64> {
        self.entries.get(&(dev, ino)).map(|(offset, _)| *offset)
    }

    pub fn set(&mut self, position: &FilePosition) {
        self.entries
            .insert((position.dev, position.ino), (position.offset, position.path.to_string()));
    }

    /// Write durably: a temporary file, fsync, rename.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        for ((dev, ino), (offset, name)) in &self.entries {
            writeln!(file, "{dev} {ino} {offset} {name}")?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// The event id of a file line: a hash of the sensor id, the file's identity (device, inode), the
/// offset just past the line and a CRC of the line's bytes. Reading the same line again (after a
/// crash, from an older checkpoint) gives the same id; the CRC tells apart different lines written
/// at the same offset of the same inode after a copytruncate or an inode reuse. Two different
/// events get one id only if a file with the same inode holds a line with the same bytes ending at
/// the same offset (the collector would then keep one of them).
pub fn line_event_id(sensor_id: &str, position: &FilePosition, line: &[u8]) -> String {
    let id = line_event_id_bytes(sensor_id, position, line);
    String::from_utf8_lossy(&id).into_owned()
}

/// [`line_event_id`] as its 32 hex digits, without allocating for the usual short sensor ids:
/// this runs once per tailed line. The hashed namespace differs per line (it holds the line's
/// CRC), so its prefix is computed here rather than looked up in `event_id_bytes`'s cache.
pub fn line_event_id_bytes(sensor_id: &str, position: &FilePosition, line: &[u8]) -> [u8; 32] {
    use std::io::Write;
    let crc = crc32fast::hash(line);
    let mut buf = [0u8; 256];
    let mut rest = &mut buf[..];
    let written = write!(rest, "{sensor_id}/file/{}/{}/{crc:08x}", position.dev, position.ino);
    let len = 256 - rest.len();
    let prefix = match (written, std::str::from_utf8(&buf[..len])) {
        (Ok(()), Ok(namespace)) => canh_event::sensor_prefix(namespace),
        // A sensor id too long for the buffer.
        _ => canh_event::sensor_prefix(&format!(
            "{sensor_id}/file/{}/{}/{crc:08x}",
            position.dev, position.ino
        )),
    };
    canh_event::event_id_with_prefix(&prefix, position.offset)
}

struct Tracked {
    path: Arc<str>,
    file: std::fs::File,
    dev: u64,
    ino: u64,
    offset: u64,
    group: usize,
}

/// Follow the files of `groups` until `stop` is set.
pub fn run_tail(
    groups: Vec<TailSettings>,
    saved: Checkpoints,
    poll_interval: Duration,
    tx: mpsc::Sender<RawLine>,
    stop: Arc<AtomicBool>,
    metrics: ReceiverMetrics,
) {
    let mut tracked: HashMap<(u64, u64), Tracked> = HashMap::new();
    let mut first_scan = true;
    while !stop.load(Ordering::Relaxed) {
        let mut seen = HashSet::new();
        for (index, group) in groups.iter().enumerate() {
            for path in expand(&group.patterns) {
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if !meta.is_file() {
                    continue;
                }
                let id = (meta.dev(), meta.ino());
                seen.insert(id);
                if let Some(t) = tracked.get_mut(&id) {
                    if meta.len() < t.offset {
                        tracing::info!(file = %t.path, "file truncated, reading from its start");
                        t.offset = 0;
                    }
                    continue;
                }
                let offset = match saved.offset(id.0, id.1) {
                    Some(offset) if offset <= meta.len() => offset,
                    Some(_) => 0,
                    None if first_scan && group.start_at_end => meta.len(),
                    None => 0,
                };
                let Ok(file) = std::fs::File::open(&path) else { continue };
                let path: Arc<str> = path.display().to_string().into();
                tracing::info!(file = %path, offset, "following file");
                tracked
                    .insert(id, Tracked { path, file, dev: id.0, ino: id.1, offset, group: index });
            }
        }
        first_scan = false;
        let mut gone = Vec::new();
        for (id, t) in tracked.iter_mut() {
            let group = &groups[t.group];
            let rotated_away = !seen.contains(id);
            match read_lines(t, group, rotated_away, &tx, &metrics) {
                // A file rotated away is dropped once it was read to its end.
                Ok(at_end) if rotated_away && at_end => gone.push(*id),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(file = %t.path, error = %e, "cannot read file");
                    gone.push(*id);
                }
            }
        }
        for id in gone {
            if let Some(t) = tracked.remove(&id) {
                tracing::info!(file = %t.path, "stopped following rotated or removed file");
            }
        }
        let mut waited = Duration::ZERO;
        while waited < poll_interval && !stop.load(Ordering::Relaxed) {
            let step = Duration::from_millis(50).min(poll_interval - waited);
            std::thread::sleep(step);
            waited += step;
        }
    }
}

fn expand(patterns: &[String]) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for pattern in patterns {
        match glob::glob(pattern) {
            Ok(found) => paths.extend(found.flatten()),
            Err(e) => tracing::warn!(pattern, error = %e, "bad glob pattern"),
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Send the complete lines after `t.offset`. A last line without its newline waits for the next
/// poll, unless the file was rotated away (its writer is done): then it is sent as it is.
/// Returns whether the end of the file was reached.
fn read_lines(
    t: &mut Tracked,
    group: &TailSettings,
    final_read: bool,
    tx: &mpsc::Sender<RawLine>,
    metrics: &ReceiverMetrics,
) -> std::io::Result<bool> {
    t.file.seek(SeekFrom::Start(t.offset))?;
    let mut reader = BufReader::with_capacity(64 * 1024, &mut t.file);
    let mut line = Vec::new();
    let mut truncated = false;
    let mut pos = t.offset;
    let mut sent = 0;
    let label = [InputKind::File.as_str()];
    let send = |bytes: Vec<u8>, truncated: bool, end: u64| -> bool {
        metrics.lines.with_label_values(&label).inc();
        if truncated {
            metrics.truncated.with_label_values(&label).inc();
        }
        let position = FilePosition { path: t.path.clone(), dev: t.dev, ino: t.ino, offset: end };
        let raw = RawLine {
            bytes,
            truncated,
            received: now(),
            input: InputKind::File,
            options: group.options,
            position: Some(position),
        };
        tx.blocking_send(raw).is_ok()
    };
    let mut committed = t.offset;
    let mut at_end = false;
    while sent < LINES_PER_POLL {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            at_end = true;
            break;
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = group.max_bytes.saturating_sub(line.len());
        if chunk.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len() + usize::from(newline.is_some());
        reader.consume(used);
        pos += used as u64;
        if newline.is_some() {
            let bytes = std::mem::take(&mut line);
            if !send(bytes, truncated, pos) {
                t.offset = committed;
                return Ok(false);
            }
            truncated = false;
            committed = pos;
            sent += 1;
        }
    }
    if final_read
        && at_end
        && (!line.is_empty() || truncated)
        && send(std::mem::take(&mut line), truncated, pos)
    {
        committed = pos;
    }
    t.offset = committed;
    Ok(at_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_read_again_gets_the_same_id_and_other_lines_do_not() {
        let at = |offset| FilePosition { path: "/var/log/a".into(), dev: 1, ino: 2, offset };
        let id = line_event_id("s1", &at(10), b"line one");
        assert_eq!(id, line_event_id("s1", &at(10), b"line one"));
        assert_ne!(id, line_event_id("s1", &at(20), b"line one"));
        assert_ne!(id, line_event_id("s1", &at(10), b"line two"));
        assert_ne!(id, line_event_id("s2", &at(10), b"line one"));
        let other_inode = FilePosition { ino: 3, ..at(10) };
        assert_ne!(id, line_event_id("s1", &other_inode, b"line one"));
        assert_ne!(id, crate::logs::log_event_id("s1", 10));
        // The documented scheme, with short and over-long sensor ids.
        for sensor_id in ["s1", &"x".repeat(300)] {
            let position = FilePosition { dev: u64::MAX, ..at(u64::MAX) };
            let namespace =
                format!("{sensor_id}/file/{}/2/{:08x}", u64::MAX, crc32fast::hash(b"l"));
            let expected = canh_event::event_id(&namespace, u64::MAX);
            assert_eq!(line_event_id(sensor_id, &position, b"l"), expected);
        }
    }

    #[test]
    fn checkpoints_round_trip() {
        let dir = std::env::temp_dir().join(format!("canh-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("checkpoints");
        assert_eq!(Checkpoints::load(&path).expect("missing is empty"), Checkpoints::default());
        let mut c = Checkpoints::default();
        c.set(&FilePosition { path: "/var/log/a b.log".into(), dev: 1, ino: 2, offset: 3 });
        c.save(&path).expect("save");
        let loaded = Checkpoints::load(&path).expect("load");
        assert_eq!(loaded, c);
        assert_eq!(loaded.offset(1, 2), Some(3));
        assert_eq!(loaded.offset(1, 3), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
