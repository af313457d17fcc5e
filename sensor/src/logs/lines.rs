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
        let (chunk, newline) = match memchr_newline(buf) {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
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

fn memchr_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
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
    fn long_lines_are_capped_and_marked() {
        let out = collect(b"0123456789\nok\n0123456789", 4);
        assert_eq!(
            out,
            vec![(b"0123".to_vec(), true), (b"ok".to_vec(), false), (b"0123".to_vec(), true)]
        );
    }
}
