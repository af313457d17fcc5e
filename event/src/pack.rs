//! The value of a Kafka record from Canh's sensor: one event's JSON, or a *pack* of events one per
//! line, and a pack may be compressed by the sensor as one zstd frame (sensor/UPLINK.md, "Packs").
//!
//! A compressed value is told apart by the zstd frame's magic number, which no JSON text starts
//! with (`0x28` is `(`), so plain records of older sensors and of other producers read as before
//! and a record needs no header (records read back from the sensor's spool have none).

use std::io;

/// The first four bytes of a zstd frame (RFC 8878, 3.1.1).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Largest pack a compressed record may expand to. The sensor's packs are at most 512 KiB
/// (`uplink.pack_bytes`); a frame that claims more, or expands to more, is refused, so a hostile
/// record cannot make a reader allocate without bound.
pub const MAX_PACK_BYTES: usize = 16 << 20;

/// Whether a record's value is a zstd frame (a compressed pack) rather than JSON lines.
pub fn is_compressed(value: &[u8]) -> bool {
    value.starts_with(&ZSTD_MAGIC)
}

/// Why a compressed record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(
        "compressed pack would expand to {size} bytes, more than the {MAX_PACK_BYTES} allowed"
    )]
    TooLarge { size: u64 },
    #[error("compressed pack does not decompress: {0}")]
    Corrupt(io::Error),
}

/// Compresses packs, one zstd frame each (its size in the frame header). Keeps its zstd context
/// between packs: making one per pack costs more than compressing a small pack.
pub struct PackWriter {
    compressor: zstd::bulk::Compressor<'static>,
}

impl PackWriter {
    /// A writer at zstd `level` (1 is zstd's fastest positive level; negative levels trade ratio
    /// for speed).
    pub fn new(level: i32) -> io::Result<PackWriter> {
        Ok(PackWriter { compressor: zstd::bulk::Compressor::new(level)? })
    }

    /// `pack` compressed into `out` (replacing what `out` held).
    pub fn compress(&mut self, pack: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(pack.len()));
        self.compressor.compress_to_buffer(pack, out)?;
        Ok(())
    }
}

/// Reads record values: plain ones as they are, compressed ones into a buffer it keeps.
pub struct PackReader {
    decompressor: zstd::bulk::Decompressor<'static>,
    buffer: Vec<u8>,
}

impl PackReader {
    pub fn new() -> io::Result<PackReader> {
        Ok(PackReader { decompressor: zstd::bulk::Decompressor::new()?, buffer: Vec::new() })
    }

    /// The JSON lines of a record's `value`: `value` itself, or what its zstd frame expands to
    /// (valid until the next call).
    pub fn lines<'a>(&'a mut self, value: &'a [u8]) -> Result<&'a [u8], PackError> {
        if !is_compressed(value) {
            return Ok(value);
        }
        // The frame header's content size, when it has one, sizes the buffer exactly; a frame
        // without it may expand up to the limit.
        let capacity = match zstd::zstd_safe::get_frame_content_size(value) {
            Ok(Some(size)) if size > MAX_PACK_BYTES as u64 => {
                return Err(PackError::TooLarge { size })
            }
            Ok(Some(size)) => size as usize,
            Ok(None) => MAX_PACK_BYTES,
            Err(_) => {
                return Err(PackError::Corrupt(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unreadable zstd frame header",
                )))
            }
        };
        self.buffer.clear();
        self.buffer.reserve_exact(capacity);
        // zstd writes at most the buffer's capacity (never more than the limit): frames that
        // expand to more (a header that lies, frames concatenated) are its error, not a larger
        // allocation.
        self.decompressor
            .decompress_to_buffer(value, &mut self.buffer)
            .map_err(PackError::Corrupt)?;
        Ok(&self.buffer)
    }
}

/// How many events a record's value holds: one per line (a compressed one is read to count).
/// A compressed value that does not decompress counts as one: it is still one record to deliver.
pub fn events_in(value: &[u8], reader: &mut PackReader) -> u32 {
    let lines = match reader.lines(value) {
        Ok(lines) => lines,
        Err(_) => return 1,
    };
    let newlines = memchr::memchr_iter(b'\n', lines).count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(events: usize) -> Vec<u8> {
        let lines: Vec<String> = (0..events)
            .map(|i| format!(r#"{{"event":{{"id":"{i:016x}","dataset":"flow"}},"n":{i}}}"#))
            .collect();
        lines.join("\n").into_bytes()
    }

    #[test]
    fn a_compressed_pack_reads_back_as_its_lines() {
        let plain = pack(500);
        let mut writer = PackWriter::new(1).expect("writer");
        let mut compressed = Vec::new();
        writer.compress(&plain, &mut compressed).expect("compress");
        assert!(is_compressed(&compressed));
        assert!(compressed.len() < plain.len() / 4, "{} of {}", compressed.len(), plain.len());
        let mut reader = PackReader::new().expect("reader");
        assert_eq!(reader.lines(&compressed).expect("lines"), &plain[..]);
        assert_eq!(events_in(&compressed, &mut reader), 500);
        // The writer and the reader are reused.
        let other = pack(3);
        writer.compress(&other, &mut compressed).expect("compress");
        assert_eq!(reader.lines(&compressed).expect("lines"), &other[..]);
    }

    #[test]
    fn plain_values_are_read_as_they_are() {
        let mut reader = PackReader::new().expect("reader");
        let plain = pack(2);
        assert!(!is_compressed(&plain));
        assert_eq!(reader.lines(&plain).expect("lines"), &plain[..]);
        assert_eq!(events_in(&plain, &mut reader), 2);
        assert_eq!(reader.lines(b"").expect("empty"), b"");
    }

    #[test]
    fn damaged_and_oversized_frames_are_errors() {
        let mut reader = PackReader::new().expect("reader");
        let mut writer = PackWriter::new(1).expect("writer");
        let mut compressed = Vec::new();
        writer.compress(&pack(200), &mut compressed).expect("compress");
        // Cut short.
        let cut = &compressed[..compressed.len() / 2];
        assert!(matches!(reader.lines(cut), Err(PackError::Corrupt(_))));
        assert_eq!(events_in(cut, &mut reader), 1);
        // The magic alone.
        assert!(reader.lines(&ZSTD_MAGIC).is_err());
        // A frame whose header claims more than the limit: refused before any allocation.
        let big = vec![b'x'; MAX_PACK_BYTES + 1];
        writer.compress(&big, &mut compressed).expect("compress");
        assert!(matches!(reader.lines(&compressed), Err(PackError::TooLarge { .. })));
        // Every byte flipped in turn: an error or some bytes, never a panic.
        writer.compress(&pack(20), &mut compressed).expect("compress");
        for i in 0..compressed.len() {
            let mut damaged = compressed.clone();
            damaged[i] ^= 0x55;
            let _ = reader.lines(&damaged);
        }
    }
}
