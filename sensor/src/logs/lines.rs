//! Splitting a byte stream into lines with a length cap. The cap bounds memory per line: bytes past
//! it are skipped up to the next newline and the line is reported as truncated.

use std::io::{BufRead, ErrorKind};

/// Read `reader` to its end, calling `line(bytes, truncated)` once per line (without the `\n`). A
/// last line without a newline is still a line; an empty input has no lines. Returns the number of
/// lines.
pub fn for_each_line(
    reader: &mut impl BufRead,
    max_bytes: usize,
    mut line: impl FnMut(&[u8], bool),
) -> std::io::Result<u64> {
    let mut current = Vec::with_capacity(max_bytes.min(8192));
    let mut truncated = false;
    let mut count = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !current.is_empty() || truncated {
                line(&current, truncated);
                count += 1;
            }
            return Ok(count);
        }
        let (chunk, newline) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if newline && current.is_empty() && !truncated {
            // The whole line is in the buffer: handed on from there, not copied.
            let capped = chunk.len() > max_bytes;
            let used = chunk.len() + 1;
            line(&chunk[..chunk.len().min(max_bytes)], capped);
            count += 1;
            reader.consume(used);
            continue;
        }
        let room = max_bytes.saturating_sub(current.len());
        if chunk.len() > room {
            truncated = true;
        }
        current.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len() + usize::from(newline);
        reader.consume(used);
        if newline {
            line(&current, truncated);
            count += 1;
            current.clear();
            truncated = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        // A tiny buffer makes lines span many reads.
        let mut reader = std::io::BufReader::with_capacity(3, input);
        let n = for_each_line(&mut reader, max, |l, t| out.push((l.to_vec(), t))).expect("reads");
        assert_eq!(n as usize, out.len());
        out
    }

    #[test]
    fn one_call_per_line() {
        let out = collect(b"a\n\nbcd\nlast", 100);
        assert_eq!(
            out,
            vec![
                (b"a".to_vec(), false),
                (vec![], false),
                (b"bcd".to_vec(), false),
                (b"last".to_vec(), false)
            ]
        );
        assert!(collect(b"", 100).is_empty());
        assert_eq!(collect(b"x\n", 100).len(), 1);
    }

    #[test]
    fn lines_read_whole_or_in_pieces_alike() {
        let input = b"a\n\nbcd\n0123456789\nok\n\n0123456789";
        let whole = {
            let mut out = Vec::new();
            let mut reader = std::io::BufReader::with_capacity(1 << 10, &input[..]);
            for_each_line(&mut reader, 4, |l, t| out.push((l.to_vec(), t))).expect("reads");
            out
        };
        assert_eq!(whole, collect(input, 4));
        assert_eq!(whole[3], (b"0123".to_vec(), true));
        assert_eq!(whole.len(), 7);
    }

    #[test]
    fn long_lines_are_capped_and_marked() {
        let out = collect(b"0123456789\nok\n0123456789", 4);
        assert_eq!(
            out,
            vec![(b"0123".to_vec(), true), (b"ok".to_vec(), false), (b"0123".to_vec(), true)]
        );
    }
}
