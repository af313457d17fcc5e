//! Syslog over a byte stream (TCP, TLS): RFC 6587 framing. A frame that starts with digits and a
//! space is octet-counted (`LEN SP MSG`, RFC 5425 and RFC 6587 3.4.1); anything else runs to the
//! next LF (non-transparent framing, 3.4.2), a trailing CR dropped. Pure and incremental: feed
//! whatever the socket gave, get whole messages out. Messages longer than the maximum are cut to it
//! and reported as truncated; the rest of such a frame is skipped, so memory stays bounded.

/// Digits of an octet count: 9 allows up to 999,999,999 bytes, more than any maximum we accept.
const MAX_COUNT_DIGITS: usize = 9;

#[derive(Debug)]
pub struct Framer {
    max: usize,
    /// The message being collected (at most `max` bytes).
    current: Vec<u8>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame boundary: nothing of the next frame seen yet.
    Start,
    /// Reading the digits of an octet count (the digits are in `current`).
    Count,
    /// Inside an octet-counted frame: this many bytes still belong to it.
    Counted { remaining: usize, truncated: bool },
    /// Inside an LF-terminated frame.
    Line { truncated: bool },
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer { max: max.max(1), current: Vec::new(), state: State::Start }
    }

    /// Feed bytes; `emit(message, truncated)` is called for each complete message.
    pub fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            match self.state {
                State::Start => {
                    if data[0].is_ascii_digit() {
                        self.state = State::Count;
                    } else {
                        self.state = State::Line { truncated: false };
                    }
                }
                State::Count => {
                    let b = data[0];
                    if b.is_ascii_digit() && self.current.len() < MAX_COUNT_DIGITS {
                        self.current.push(b);
                        data = &data[1..];
                    } else if b == b' ' && !self.current.is_empty() {
                        let count = self
                            .current
                            .iter()
                            .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0'));
                        self.current.clear();
                        data = &data[1..];
                        if count == 0 {
                            emit(&[], false);
                            self.state = State::Start;
                        } else {
                            self.state = State::Counted { remaining: count, truncated: false };
                        }
                    } else {
                        // Not an octet count after all ("2024-05-01T..." or a long number): the
                        // digits start an LF-terminated message.
                        let truncated = self.current.len() > self.max;
                        self.current.truncate(self.max);
                        self.state = State::Line { truncated };
                    }
                }
                State::Counted { remaining, truncated } => {
                    let take = remaining.min(data.len());
                    let room = self.max.saturating_sub(self.current.len());
                    let keep = take.min(room);
                    self.current.extend_from_slice(&data[..keep]);
                    let truncated = truncated || keep < take;
                    data = &data[take..];
                    let remaining = remaining - take;
                    if remaining == 0 {
                        let message = trim_lf(&self.current);
                        emit(message, truncated);
                        self.current.clear();
                        self.state = State::Start;
                    } else {
                        self.state = State::Counted { remaining, truncated };
                    }
                }
                State::Line { truncated } => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let chunk = &data[..end.unwrap_or(data.len())];
                    let room = self.max.saturating_sub(self.current.len());
                    let keep = chunk.len().min(room);
                    self.current.extend_from_slice(&chunk[..keep]);
                    let truncated = truncated || keep < chunk.len();
                    match end {
                        Some(i) => {
                            data = &data[i + 1..];
                            let message = self.current.strip_suffix(b"\r").unwrap_or(&self.current);
                            emit(message, truncated);
                            self.current.clear();
                            self.state = State::Start;
                        }
                        None => {
                            data = &[];
                            self.state = State::Line { truncated };
                        }
                    }
                }
            }
        }
    }

    /// The stream ended: a message without its final LF still counts; a cut octet-counted frame
    /// is reported as truncated.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        match self.state {
            State::Start => {}
            State::Count | State::Line { .. } => {
                let truncated = matches!(self.state, State::Line { truncated: true });
                if !self.current.is_empty() || truncated {
                    emit(&self.current, truncated);
                }
            }
            State::Counted { .. } => emit(&self.current, true),
        }
        self.current.clear();
        self.state = State::Start;
    }
}

/// Some senders end an octet-counted message with LF too.
fn trim_lf(message: &[u8]) -> &[u8] {
    let message = message.strip_suffix(b"\n").unwrap_or(message);
    message.strip_suffix(b"\r").unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        let mut emit = |m: &[u8], t: bool| out.push((m.to_vec(), t));
        for chunk in chunks {
            framer.push(chunk, &mut emit);
        }
        framer.finish(&mut emit);
        out
    }

    #[test]
    fn octet_counting_rfc6587_example() {
        // RFC 5425 section 4.3: "MSG-LEN SP SYSLOG-MSG", back to back.
        let out = frames(&[b"11 <13>1 - - x9 <13>hello"], 100);
        assert_eq!(out, vec![(b"<13>1 - - x".to_vec(), false), (b"<13>hello".to_vec(), false)]);
    }

    #[test]
    fn split_anywhere_gives_the_same_messages() {
        let stream: &[u8] = b"<13>a b\r\n12 <14>Mar 1 x\n<15>last";
        let whole = frames(&[stream], 100);
        assert_eq!(whole.len(), 3);
        for cut in 0..stream.len() {
            assert_eq!(frames(&[&stream[..cut], &stream[cut..]], 100), whole, "cut at {cut}");
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(&bytes, 100), whole);
    }

    #[test]
    fn digits_without_space_are_a_line() {
        let out = frames(&[b"2024-05-01T10:00:00Z host app: x\n"], 100);
        assert_eq!(out, vec![(b"2024-05-01T10:00:00Z host app: x".to_vec(), false)]);
        let out = frames(&[b"1234567890123 x\n"], 100);
        assert_eq!(out, vec![(b"1234567890123 x".to_vec(), false)]);
    }

    #[test]
    fn over_long_messages_are_cut_and_the_stream_resyncs() {
        let out = frames(&[b"0123456789\nok\n20 abcdefghijklmnopqrst4 fine"], 4);
        assert_eq!(
            out,
            vec![
                (b"0123".to_vec(), true),
                (b"ok".to_vec(), false),
                (b"abcd".to_vec(), true),
                (b"fine".to_vec(), false),
            ]
        );
        // A frame cut by the end of the stream.
        assert_eq!(frames(&[b"10 abc"], 100), vec![(b"abc".to_vec(), true)]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_bounds_messages(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..50), 0..10),
            max in 1usize..64,
        ) {
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            for (message, _) in frames(&chunks, max) {
                proptest::prop_assert!(message.len() <= max);
            }
        }
    }
}
