//! HTTP/1.x request/response parsing over reassembled TCP streams, as Zeek's http.log sees it:
//! one transaction per request, paired in order with responses (pipelining), interim 1xx responses
//! skipped, bodies counted (Content-Length, chunked, or until close). Of a request body with a
//! textual content type (forms, JSON, XML, text) the first `REQUEST_BODY_KEPT` bytes are kept, so
//! detection sees POSTed payloads; nothing else of a body is stored. Pure and bounded: header
//! blocks larger than `MAX_HEADER_BYTES` stop the parser for that flow.

use std::borrow::Cow;
use std::collections::VecDeque;

/// Most bytes of an unfinished request/status line plus headers held per direction.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most requests waiting for their response per flow.
const MAX_PENDING: usize = 64;
/// Most bytes of a textual request body kept per transaction (the start of a form or JSON document
/// is where login fields and injected payloads are).
pub const REQUEST_BODY_KEPT: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub ts_ns: i64,
    /// The method and the versions are nearly always one of a few: those are borrowed, not
    /// copied ([`token`]).
    pub method: Option<Cow<'static, str>>,
    /// Where the URI and the kept header values lie in `text` ([`Transaction::uri`], ...).
    uri: Option<Span>,
    /// Version of the request line ("1.1"; "0.9" for a request line without one).
    pub request_version: Option<Cow<'static, str>>,
    host: Option<Span>,
    user_agent: Option<Span>,
    referrer: Option<Span>,
    /// The URI and the kept header values, one after another: one allocation per transaction
    /// instead of one per field.
    text: String,
    pub request_body_bytes: u64,
    /// The first `REQUEST_BODY_KEPT` bytes of a textual request body (empty otherwise).
    pub request_body: Vec<u8>,
    pub status_code: Option<u16>,
    pub response_version: Option<Cow<'static, str>>,
    pub response_body_bytes: u64,
}

/// Where a field lies in its transaction's `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// Room reserved for a transaction's text at its first field (a URI, Host and User-Agent
/// usually fit).
const TEXT_RESERVED: usize = 256;

#[derive(Debug, Clone, Copy)]
enum Field {
    Uri,
    Host,
    UserAgent,
    Referrer,
}

impl Transaction {
    pub fn uri(&self) -> Option<&str> {
        self.field(self.uri)
    }

    pub fn host(&self) -> Option<&str> {
        self.field(self.host)
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.field(self.user_agent)
    }

    pub fn referrer(&self) -> Option<&str> {
        self.field(self.referrer)
    }

    fn field(&self, span: Option<Span>) -> Option<&str> {
        span.map(|s| self.text.get(s.start as usize..s.end as usize).unwrap_or_default())
    }

    /// Set `field` to `value` (a repeated header replaces the earlier value, as before).
    fn set(&mut self, field: Field, value: &str) {
        // A value replaced leaves its bytes behind: past the header cap, only the live values
        // are kept, so repeated headers cannot grow the text without bound.
        if self.text.len() + value.len() > MAX_HEADER_BYTES {
            self.compact();
        }
        if self.text.capacity() == 0 {
            self.text.reserve(TEXT_RESERVED.max(value.len()));
        }
        let start = self.text.len() as u32;
        self.text.push_str(value);
        let span = Some(Span { start, end: self.text.len() as u32 });
        match field {
            Field::Uri => self.uri = span,
            Field::Host => self.host = span,
            Field::UserAgent => self.user_agent = span,
            Field::Referrer => self.referrer = span,
        }
    }

    fn compact(&mut self) {
        let old = std::mem::take(&mut self.text);
        for span in [&mut self.uri, &mut self.host, &mut self.user_agent, &mut self.referrer]
            .into_iter()
            .flatten()
        {
            let start = self.text.len() as u32;
            self.text.push_str(old.get(span.start as usize..span.end as usize).unwrap_or_default());
            *span = Span { start, end: self.text.len() as u32 };
        }
    }
}

/// Methods and versions borrowed by [`token`].
const COMMON_METHODS: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT"];
const COMMON_VERSIONS: &[&str] = &["1.1", "1.0", "0.9"];

/// `text`, borrowed when it is one of `common`.
fn token(text: &str, common: &[&'static str]) -> Cow<'static, str> {
    match common.iter().find(|c| **c == text) {
        Some(c) => Cow::Borrowed(c),
        None => Cow::Owned(text.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Waiting for a start line.
    Idle,
    /// Start line read; reading header lines.
    Headers,
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    UntilClose,
    /// Nothing more will be parsed in this direction (tunnel, HTTP/0.9 reply or a bad stream).
    Stopped,
}

#[derive(Debug)]
struct Side {
    buf: Vec<u8>,
    state: Body,
    /// Framing learnt from the headers of the message being read.
    content_length: Option<u64>,
    chunked: bool,
    /// `Content-Encoding` of the message being read: gzip or deflate bodies are counted
    /// decompressed, as Zeek's `response_body_len` is.
    encoding: Option<Encoding>,
    /// The message being read declared a textual `Content-Type`: its body start is kept.
    textual: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Gzip,
    Deflate,
}

/// Most gzip header bytes waited for (the optional name and comment fields can be long).
const MAX_GZIP_HEADER: usize = 4096;

/// Counts the bytes a gzip or deflate body decompresses to, without keeping them.
struct BodyDecoder {
    encoding: Encoding,
    /// Gzip: header bytes not yet complete.
    header: Vec<u8>,
    inflate: Option<flate2::Decompress>,
    failed: bool,
    done: bool,
}

impl std::fmt::Debug for BodyDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyDecoder").field("encoding", &self.encoding).finish()
    }
}

/// Length of a complete gzip header at the start of `b` (RFC 1952 section 2.3), None when more
/// bytes are needed, Err when it is not gzip.
fn gzip_header_len(b: &[u8]) -> Result<Option<usize>, ()> {
    if b.len() < 10 {
        return if b.iter().zip([0x1f, 0x8b, 8]).all(|(x, y)| *x == y) {
            Ok(None)
        } else {
            Err(())
        };
    }
    if b[..3] != [0x1f, 0x8b, 8] {
        return Err(());
    }
    let flags = b[3];
    let mut pos = 10;
    if flags & 0x04 != 0 {
        let Some(l) = b.get(pos..pos + 2) else { return Ok(None) };
        pos += 2 + usize::from(u16::from_le_bytes([l[0], l[1]]));
    }
    for bit in [0x08, 0x10] {
        if flags & bit != 0 {
            let Some(end) = b.get(pos..).and_then(|r| r.iter().position(|&c| c == 0)) else {
                return Ok(None);
            };
            pos += end + 1;
        }
    }
    if flags & 0x02 != 0 {
        pos += 2;
    }
    Ok(if pos <= b.len() { Some(pos) } else { None })
}

impl BodyDecoder {
    fn new(encoding: Encoding) -> BodyDecoder {
        BodyDecoder { encoding, header: Vec::new(), inflate: None, failed: false, done: false }
    }

    /// Feed compressed body bytes; returns how many decompressed bytes they produced.
    fn feed(&mut self, data: &[u8]) -> u64 {
        if self.failed || self.done {
            return 0;
        }
        if self.inflate.is_some() {
            return self.inflate_bytes(data);
        }
        match self.encoding {
            Encoding::Gzip => {
                self.header.extend_from_slice(data);
                match gzip_header_len(&self.header) {
                    Ok(Some(n)) => {
                        let rest = self.header.split_off(n);
                        self.header = Vec::new();
                        self.inflate = Some(flate2::Decompress::new(false));
                        self.inflate_bytes(&rest)
                    }
                    Ok(None) if self.header.len() < MAX_GZIP_HEADER => 0,
                    _ => {
                        self.failed = true;
                        0
                    }
                }
            }
            Encoding::Deflate => {
                // "deflate" is zlib-wrapped (RFC 9110), but raw deflate is common too.
                let Some(&first) = data.first() else { return 0 };
                self.inflate = Some(flate2::Decompress::new(first & 0x0f == 8));
                self.inflate_bytes(data)
            }
        }
    }

    fn inflate_bytes(&mut self, mut data: &[u8]) -> u64 {
        let Some(inflate) = self.inflate.as_mut() else { return 0 };
        let mut out = [0u8; 16 * 1024];
        let before = inflate.total_out();
        while !data.is_empty() {
            let in_before = inflate.total_in();
            let out_before = inflate.total_out();
            match inflate.decompress(data, &mut out, flate2::FlushDecompress::None) {
                Ok(status) => {
                    let used = (inflate.total_in() - in_before) as usize;
                    data = &data[used.min(data.len())..];
                    if status == flate2::Status::StreamEnd {
                        self.done = true;
                        break;
                    }
                    if used == 0 && inflate.total_out() == out_before {
                        break;
                    }
                }
                Err(_) => {
                    self.failed = true;
                    break;
                }
            }
        }
        inflate.total_out() - before
    }
}

impl Side {
    fn learn(&mut self, framing: Framing) {
        match framing {
            Framing::Length(n) => self.content_length = n,
            Framing::Chunked(on) => self.chunked = on,
            Framing::Textual(on) => self.textual = on,
            Framing::Encoding(e) => self.encoding = e,
            Framing::Nothing => {}
        }
    }

    fn new() -> Side {
        Side {
            buf: Vec::new(),
            state: Body::Idle,
            content_length: None,
            chunked: false,
            encoding: None,
            textual: false,
        }
    }
}

#[derive(Debug)]
pub struct HttpFlow {
    req: Side,
    resp: Side,
    /// Requests read, oldest first; the front one is being answered.
    pending: VecDeque<Transaction>,
    /// The response being read (its request, or one made up for a response with no request).
    current: Option<Transaction>,
    interim: bool,
    /// Decompressing the response body being read.
    decoder: Option<Box<BodyDecoder>>,
    /// Headers over the cap or a malformed stream: counted by the caller.
    pub overflowed: bool,
}

impl Default for HttpFlow {
    fn default() -> HttpFlow {
        HttpFlow {
            req: Side::new(),
            resp: Side::new(),
            pending: VecDeque::new(),
            current: None,
            interim: false,
            decoder: None,
            overflowed: false,
        }
    }
}

/// A request line's method, per RFC 9110 `token`; upper-case letters as real methods are.
fn valid_method(m: &str) -> bool {
    !m.is_empty() && m.bytes().all(|c| c.is_ascii_uppercase() || c == b'_' || c == b'-')
}

fn take_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    // SIMD search: a byte loop here was half of the request parser's samples.
    let end = memchr::memchr(b'\n', buf)?;
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, end + 1))
}

/// What follows the `HTTP/` of a version, the keyword in any case (Zeek accepts `http/1.1` and
/// notes a weird).
fn strip_http(text: &str) -> Option<&str> {
    text.get(..5).filter(|k| k.eq_ignore_ascii_case("HTTP/")).and_then(|_| text.get(5..))
}

/// `String::from_utf8_lossy`, with valid UTF-8 (nearly every line) checked by the faster
/// validator first: borrowed, no allocation.
fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// `text.to_ascii_lowercase().starts_with(prefix)` for a lower-case ASCII `prefix`, without the
/// lower-case copy.
fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes().get(..prefix.len()).is_some_and(|b| b.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// `text.to_ascii_lowercase().contains(needle)` for a lower-case ASCII `needle`, without the
/// lower-case copy.
fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The transaction of the request being read: the newest one, still waiting for its reply, or
/// already taken by a reply that started before the request's body ended (a server that answers
/// an upload early: the rest of the body still counts, as in Zeek).
fn request_tx<'a>(
    pending: &'a mut VecDeque<Transaction>,
    current: &'a mut Option<Transaction>,
) -> Option<&'a mut Transaction> {
    match pending.back_mut() {
        Some(tx) => Some(tx),
        None => current.as_mut(),
    }
}

impl HttpFlow {
    /// In-order bytes from the client.
    pub fn request_data(&mut self, ts_ns: i64, data: &[u8], out: &mut Vec<Transaction>) {
        if self.req.state == Body::Stopped {
            return;
        }
        // Body bytes are counted straight from the segment, not copied into the buffer.
        let (used, body) = count_body(&mut self.req, data);
        if let Some(tx) = request_tx(&mut self.pending, &mut self.current) {
            tx.request_body_bytes += body;
            // count_body consumes body bytes only, so all `used` bytes are the body.
            if self.req.textual && body > 0 {
                keep_body(tx, &data[..used]);
            }
        }
        let mut buf = std::mem::take(&mut self.req.buf);
        parse_buffered(&mut buf, &data[used..], |text| self.parse_requests(ts_ns, text));
        self.req.buf = buf;
        self.check_cap(out);
    }

    /// In-order bytes from the server.
    pub fn response_data(&mut self, data: &[u8], out: &mut Vec<Transaction>) {
        if self.resp.state == Body::Stopped {
            return;
        }
        let (used, body) = count_body(&mut self.resp, data);
        let body = self.decoded(&data[..used], body);
        if let Some(tx) = self.current.as_mut() {
            tx.response_body_bytes += body;
        }
        if used > 0 && self.resp.state == Body::Idle {
            if let Some(tx) = self.current.take() {
                out.push(tx);
            }
        }
        let mut buf = std::mem::take(&mut self.resp.buf);
        parse_buffered(&mut buf, &data[used..], |text| self.parse_responses(text, out));
        self.resp.buf = buf;
        self.check_cap(out);
    }

    fn check_cap(&mut self, out: &mut Vec<Transaction>) {
        for side in [&mut self.req, &mut self.resp] {
            if side.buf.len() > MAX_HEADER_BYTES {
                side.buf.clear();
                side.state = Body::Stopped;
                self.overflowed = true;
            }
        }
        while self.pending.len() > MAX_PENDING {
            if let Some(tx) = self.pending.pop_front() {
                out.push(tx);
            }
        }
    }

    /// A hole of `len` bytes in one direction. Inside a body whose remaining length is known
    /// (its `Content-Length` or the current chunk's size) and that the hole does not overrun, the
    /// missing bytes are body: counted as such, and parsing goes on after them, as Zeek's HTTP
    /// analyser does. Anywhere else the framing is lost and that direction is not parsed any more.
    pub fn gap(&mut self, from_client: bool, len: u64, out: &mut Vec<Transaction>) {
        let side = if from_client { &mut self.req } else { &mut self.resp };
        let left = match side.state {
            Body::Length(n) | Body::ChunkData(n) if side.buf.is_empty() => n,
            _ => 0,
        };
        if len == 0 || len > left {
            side.state = Body::Stopped;
            side.buf.clear();
            return;
        }
        skip_known_body(&mut side.state, len);
        if from_client {
            if let Some(tx) = request_tx(&mut self.pending, &mut self.current) {
                tx.request_body_bytes += len;
            }
            return;
        }
        // A compressed body cannot be decoded past a hole: the hole counts as sent, the rest of
        // the body nothing (as where decompression fails).
        if let Some(decoder) = self.decoder.as_mut() {
            decoder.failed = true;
        }
        if let Some(tx) = self.current.as_mut() {
            tx.response_body_bytes += len;
        }
        if self.resp.state == Body::Idle {
            if let Some(tx) = self.current.take() {
                out.push(tx);
            }
        }
    }

    /// The connection ended: every transaction still open is written.
    pub fn finish(&mut self, out: &mut Vec<Transaction>) {
        if let Some(tx) = self.current.take() {
            out.push(tx);
        }
        // A line that was neither a request nor answered is not a transaction (Zeek logs none).
        out.extend(self.pending.drain(..).filter(|tx| tx.method.is_some()));
    }

    /// Parse what `input` holds of the request stream; returns how many bytes were consumed.
    fn parse_requests(&mut self, ts_ns: i64, input: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.req.state {
                Body::Stopped => break,
                Body::Idle => {
                    let Some((line, used)) = take_line(rest) else { break };
                    pos += used;
                    if line.is_empty() {
                        continue;
                    }
                    // Borrowed unless the line is not UTF-8: only the fields kept are copied.
                    let line = lossy(line);
                    let mut tx = Transaction { ts_ns, ..Transaction::default() };
                    // A request line needs a space after the method (Zeek logs none otherwise).
                    let (method, target) = line.split_once(' ').unwrap_or(("", ""));
                    let target = target.trim();
                    if !valid_method(method) {
                        // Not a request line Zeek would parse: the transaction is logged without
                        // request fields, and the rest of this direction is not parsed.
                        self.pending.push_back(tx);
                        self.req.state = Body::Stopped;
                        break;
                    }
                    tx.method = Some(token(method, COMMON_METHODS));
                    if let Some(version) = strip_http(target) {
                        // No request target at all.
                        tx.set(Field::Uri, "");
                        tx.request_version = Some(token(version, COMMON_VERSIONS));
                    } else {
                        let split = target.rsplit_once(' ');
                        match split.and_then(|(uri, last)| Some((uri, strip_http(last)?))) {
                            Some((uri, version)) => {
                                tx.set(Field::Uri, uri.trim());
                                tx.request_version = Some(token(version, COMMON_VERSIONS));
                            }
                            _ => {
                                // HTTP/0.9: no version, and the reply is a bare body.
                                tx.set(Field::Uri, target);
                                tx.request_version = Some(Cow::Borrowed("0.9"));
                            }
                        }
                    }
                    self.pending.push_back(tx);
                    self.req.content_length = None;
                    self.req.chunked = false;
                    self.req.textual = false;
                    self.req.state = Body::Headers;
                }
                Body::Headers => {
                    let Some((line, used)) = take_line(rest) else { break };
                    pos += used;
                    if line.is_empty() {
                        self.req.state = if self.req.chunked {
                            Body::ChunkSize
                        } else {
                            match self.req.content_length {
                                Some(n) if n > 0 => Body::Length(n),
                                _ => Body::Idle,
                            }
                        };
                        continue;
                    }
                    let Some((name, value)) = split_header(line) else { continue };
                    // Most header lines are none of these: nothing is copied for them.
                    let name = header_name(name);
                    if name == HeaderName::Other {
                        continue;
                    }
                    let value = lossy(value);
                    let value = value.trim();
                    let framing = header(name, value);
                    if let Some(tx) = request_tx(&mut self.pending, &mut self.current) {
                        // Only the values kept are copied.
                        match name {
                            HeaderName::Host => tx.set(Field::Host, value),
                            HeaderName::UserAgent => tx.set(Field::UserAgent, value),
                            HeaderName::Referer => tx.set(Field::Referrer, value),
                            _ => {}
                        }
                    }
                    self.req.learn(framing);
                }
                _ => {
                    let (used, body) = body_step(&mut self.req.state, rest);
                    if let Some(tx) = request_tx(&mut self.pending, &mut self.current) {
                        tx.request_body_bytes += body;
                        // Body bytes only when something was counted (not chunk framing).
                        if self.req.textual && body > 0 {
                            keep_body(tx, &rest[..used]);
                        }
                    }
                    if used == 0 {
                        break;
                    }
                    pos += used;
                }
            }
        }
        pos
    }

    /// Parse what `input` holds of the response stream; returns how many bytes were consumed.
    fn parse_responses(&mut self, input: &[u8], out: &mut Vec<Transaction>) -> usize {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.resp.state {
                Body::Stopped => break,
                Body::Idle => {
                    if rest.is_empty() {
                        break;
                    }
                    let http09 = self
                        .pending
                        .front()
                        .is_some_and(|tx| tx.request_version.as_deref() == Some("0.9"));
                    if http09 {
                        // A reply to an HTTP/0.9 request is the body alone, up to the close.
                        let mut tx = self.pending.pop_front().unwrap_or_default();
                        tx.response_body_bytes = rest.len() as u64;
                        // No status line; Zeek reports status code 0 and the request's version
                        // for such replies.
                        tx.status_code = Some(0);
                        tx.response_version = Some(Cow::Borrowed("0.9"));
                        pos += rest.len();
                        self.current = Some(tx);
                        self.resp.state = Body::UntilClose;
                        continue;
                    }
                    let Some((line, used)) = take_line(rest) else { break };
                    pos += used;
                    if line.is_empty() {
                        continue;
                    }
                    let line = lossy(line);
                    let Some(version) = strip_http(&line) else {
                        self.resp.state = Body::Stopped;
                        break;
                    };
                    let mut parts = version.splitn(3, ' ');
                    let version = parts.next().unwrap_or("");
                    let code = parts.next().and_then(|c| c.trim().parse::<u16>().ok());
                    self.interim = code.is_some_and(|c| (100..200).contains(&c));
                    if self.current.is_none() {
                        self.current = Some(self.pending.pop_front().unwrap_or_default());
                    }
                    if let Some(tx) = self.current.as_mut() {
                        // As Zeek's `http_reply` handler: every reply, 1xx included, sets the
                        // version and code, and the final reply's overwrite an interim one's (a
                        // 101 upgrade, or a 100 Continue whose reply never came, stays logged).
                        tx.response_version = Some(token(version, COMMON_VERSIONS));
                        tx.status_code = code;
                    }
                    self.resp.content_length = None;
                    self.resp.chunked = false;
                    self.resp.encoding = None;
                    self.decoder = None;
                    self.resp.state = Body::Headers;
                }
                Body::Headers => {
                    let Some((line, used)) = take_line(rest) else { break };
                    pos += used;
                    if !line.is_empty() {
                        if let Some((name, value)) = split_header(line) {
                            let name = header_name(name);
                            if name != HeaderName::Other {
                                let framing = header(name, lossy(value).trim());
                                self.resp.learn(framing);
                            }
                        }
                        continue;
                    }
                    let tx = self.current.as_ref();
                    let code = tx.and_then(|t| t.status_code).unwrap_or(0);
                    let method = tx.and_then(|t| t.method.as_deref()).unwrap_or("");
                    if self.interim && code != 101 {
                        self.resp.state = Body::Idle;
                        continue;
                    }
                    // A tunnel (CONNECT answered) or a protocol switch (101, e.g. to WebSocket):
                    // what follows is not HTTP, and Zeek parses neither side further.
                    if code == 101 || (method == "CONNECT" && (200..300).contains(&code)) {
                        // A tunnel: what follows is not HTTP.
                        if let Some(tx) = self.current.take() {
                            out.push(tx);
                        }
                        self.resp.state = Body::Stopped;
                        self.req.state = Body::Stopped;
                        break;
                    }
                    self.resp.state = if method == "HEAD" || code == 204 || code == 304 {
                        Body::Idle
                    } else if self.resp.chunked {
                        Body::ChunkSize
                    } else {
                        match self.resp.content_length {
                            Some(0) => Body::Idle,
                            Some(n) => Body::Length(n),
                            None => Body::UntilClose,
                        }
                    };
                    if let Some(encoding) = self.resp.encoding {
                        self.decoder = Some(Box::new(BodyDecoder::new(encoding)));
                    }
                    if self.resp.state == Body::Idle {
                        if let Some(tx) = self.current.take() {
                            out.push(tx);
                        }
                    }
                }
                _ => {
                    let (used, body) = body_step(&mut self.resp.state, rest);
                    let body = match self.decoder.as_mut() {
                        Some(d) if body > 0 => d.feed(&rest[..used]),
                        _ => body,
                    };
                    if let Some(tx) = self.current.as_mut() {
                        tx.response_body_bytes += body;
                    }
                    if self.resp.state == Body::Idle {
                        if let Some(tx) = self.current.take() {
                            out.push(tx);
                        }
                    }
                    if used == 0 {
                        break;
                    }
                    pos += used;
                }
            }
        }
        pos
    }
}

/// The header names the parser looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderName {
    Host,
    UserAgent,
    Referer,
    ContentLength,
    TransferEncoding,
    ContentEncoding,
    ContentType,
    Other,
}

/// A header line's name and value: the bytes before and after its first colon.
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    Some((&line[..colon], &line[colon + 1..]))
}

/// Which header `name` is, ignoring case and surrounding white space (as `str::trim` would
/// remove it from the name read as lossy UTF-8, so names with other Unicode white space around
/// them still match).
fn header_name(name: &[u8]) -> HeaderName {
    let lowered;
    let name: &[u8] = if name.is_ascii() {
        // The ASCII characters `char::is_whitespace` accepts.
        let space = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
        let start = name.iter().position(|b| !space(b)).unwrap_or(name.len());
        let end = name.iter().rposition(|b| !space(b)).map_or(start, |i| i + 1);
        &name[start..end]
    } else {
        lowered = lossy(name).trim().to_string();
        lowered.as_bytes()
    };
    HEADER_NAMES
        .iter()
        .find(|(wanted, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
        .map_or(HeaderName::Other, |&(_, header)| header)
}

/// The header names the parser looks at, as sent (compared ignoring case).
const HEADER_NAMES: [(&str, HeaderName); 7] = [
    ("host", HeaderName::Host),
    ("user-agent", HeaderName::UserAgent),
    ("referer", HeaderName::Referer),
    ("content-length", HeaderName::ContentLength),
    ("transfer-encoding", HeaderName::TransferEncoding),
    ("content-encoding", HeaderName::ContentEncoding),
    ("content-type", HeaderName::ContentType),
];

/// What a header line says about its message's framing (read while the line is still borrowed
/// from the side's buffer, applied to the side after).
enum Framing {
    Length(Option<u64>),
    Chunked(bool),
    Textual(bool),
    Encoding(Option<Encoding>),
    Nothing,
}

/// A Content-Length value as Zeek's HTTP analyser reads it: decimal digits (leading zeros
/// allowed) up to 2^63 - 1; anything else (a sign, letters, an overflow) is HTTP_bad_content_length
/// and counts as 0, so the message has no body and what follows is the next message.
fn content_length(value: &str) -> u64 {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    value.parse::<u64>().ok().filter(|&n| n <= i64::MAX as u64).unwrap_or(0)
}

fn header(name: HeaderName, value: &str) -> Framing {
    match name {
        HeaderName::ContentLength => Framing::Length(Some(content_length(value))),
        HeaderName::TransferEncoding => Framing::Chunked(contains_ignore_case(value, "chunked")),
        HeaderName::ContentType => Framing::Textual(textual_type(value)),
        HeaderName::ContentEncoding => {
            let v = value.trim();
            Framing::Encoding(
                if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
                    Some(Encoding::Gzip)
                } else if v.eq_ignore_ascii_case("deflate") {
                    Some(Encoding::Deflate)
                } else {
                    None
                },
            )
        }
        _ => Framing::Nothing,
    }
}

impl HttpFlow {
    /// Body bytes as Zeek counts them: decompressed when the response has a content encoding.
    fn decoded(&mut self, wire: &[u8], counted: u64) -> u64 {
        match self.decoder.as_mut() {
            Some(d) if counted > 0 => d.feed(wire),
            _ => counted,
        }
    }
}

/// Form, JSON, XML, multipart form and text bodies: the ones a person or a script types into.
fn textual_type(value: &str) -> bool {
    let v = value.trim();
    starts_with_ignore_case(v, "application/x-www-form-urlencoded")
        || starts_with_ignore_case(v, "multipart/form-data")
        || starts_with_ignore_case(v, "text/")
        || contains_ignore_case(v, "json")
        || contains_ignore_case(v, "xml")
}

/// Append request body bytes to what the transaction keeps, up to `REQUEST_BODY_KEPT`.
fn keep_body(tx: &mut Transaction, bytes: &[u8]) {
    let room = REQUEST_BODY_KEPT.saturating_sub(tx.request_body.len());
    tx.request_body.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// The kept request body as event text (invalid UTF-8 replaced), or nothing when none was kept.
pub fn body_text(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(body).into_owned())
}

/// Parse `data`, the next in-order bytes of one direction, after `buf`, what earlier segments
/// left unconsumed; `parse` returns how many bytes it consumed, and the rest stays in `buf`. With
/// nothing left over, `data` is parsed where it lies and only its unconsumed tail is copied.
fn parse_buffered(buf: &mut Vec<u8>, data: &[u8], mut parse: impl FnMut(&[u8]) -> usize) {
    if buf.is_empty() {
        let pos = parse(data);
        buf.extend_from_slice(&data[pos..]);
    } else {
        buf.extend_from_slice(data);
        let pos = parse(buf);
        buf.drain(..pos);
    }
}

/// With nothing buffered and a body being read, count body bytes directly from `data`; returns
/// (bytes consumed, body bytes counted). Stops where framing needs the parser again.
fn count_body(side: &mut Side, data: &[u8]) -> (usize, u64) {
    let (mut used, mut body) = (0, 0);
    while side.buf.is_empty()
        && used < data.len()
        && matches!(side.state, Body::Length(_) | Body::UntilClose | Body::ChunkData(_))
    {
        let (n, b) = body_step(&mut side.state, &data[used..]);
        if n == 0 {
            break;
        }
        used += n;
        body += b;
    }
    (used, body)
}

/// Pass up to `len` bytes of a body whose remaining length is known (a `Content-Length` body or
/// a chunk's data); returns how many were passed. Other states are left as they are.
fn skip_known_body(state: &mut Body, len: u64) -> u64 {
    match *state {
        Body::Length(n) => {
            let take = len.min(n);
            *state = if take == n { Body::Idle } else { Body::Length(n - take) };
            take
        }
        Body::ChunkData(n) => {
            let take = len.min(n);
            *state = if take == n { Body::ChunkEnd } else { Body::ChunkData(n - take) };
            take
        }
        _ => 0,
    }
}

/// Advance through body bytes; returns (bytes consumed, body bytes counted).
fn body_step(state: &mut Body, rest: &[u8]) -> (usize, u64) {
    match *state {
        Body::Length(_) | Body::ChunkData(_) => {
            let take = skip_known_body(state, rest.len() as u64);
            (take as usize, take)
        }
        Body::UntilClose => (rest.len(), rest.len() as u64),
        Body::ChunkSize => {
            let Some((line, used)) = take_line(rest) else { return (0, 0) };
            let size = lossy(line);
            let size = size.split(';').next().unwrap_or("").trim();
            // A size that is not a number, or above 2^63 - 1, is Zeek's HTTP_bad_chunk_size:
            // taken as 0, the last chunk, and the message ends after its trailers.
            match u64::from_str_radix(size, 16) {
                Ok(n) if n > 0 && n <= i64::MAX as u64 => *state = Body::ChunkData(n),
                _ => *state = Body::Trailers,
            }
            (used, 0)
        }
        Body::ChunkEnd => {
            let Some((_, used)) = take_line(rest) else { return (0, 0) };
            *state = Body::ChunkSize;
            (used, 0)
        }
        Body::Trailers => {
            let Some((line, used)) = take_line(rest) else { return (0, 0) };
            if line.is_empty() {
                *state = Body::Idle;
            }
            (used, 0)
        }
        Body::Idle | Body::Headers | Body::Stopped => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQS: &[u8] = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\nReferer: http://r/\r\n\r\nPOST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello";
    const RESPS: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n2\r\nab\r\n0\r\n\r\n";

    #[test]
    fn pipelined_requests_with_100_continue_and_chunked() {
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        flow.request_data(1, REQS, &mut out);
        // Byte by byte on the response side: parsing must not depend on segment boundaries.
        for b in RESPS {
            flow.response_data(std::slice::from_ref(b), &mut out);
        }
        flow.finish(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].method.as_deref(), Some("GET"));
        assert_eq!(out[0].host(), Some("example.com"));
        assert_eq!(out[0].user_agent(), Some("t/1"));
        assert_eq!(out[0].referrer(), Some("http://r/"));
        assert_eq!((out[0].status_code, out[0].response_body_bytes), (Some(200), 3));
        assert_eq!(out[1].uri(), Some("/b"));
        assert_eq!(out[1].request_body_bytes, 5);
        assert_eq!((out[1].status_code, out[1].response_body_bytes), (Some(201), 6));
    }

    /// A hole inside a body of known length is body: counted, and the messages after it are
    /// parsed (chunked and Content-Length, both directions). A hole in headers, one that overruns
    /// the body, or one in a body read until the close stops that direction.
    #[test]
    fn holes_inside_known_bodies_are_skipped_and_elsewhere_stop_the_direction() {
        let resp_of = |hole_at: usize, hole: usize| {
            let mut flow = HttpFlow::default();
            let mut out = Vec::new();
            flow.request_data(1, REQS, &mut out);
            flow.response_data(&RESPS[..hole_at], &mut out);
            flow.gap(false, hole as u64, &mut out);
            flow.response_data(&RESPS[hole_at + hole..], &mut out);
            flow.finish(&mut out);
            out.iter().map(|t| (t.status_code, t.response_body_bytes)).collect::<Vec<_>>()
        };
        let whole = vec![(Some(200), 3), (Some(201), 6)];
        // "abc" of the first body: one byte missing, then all of it.
        let body = RESPS.windows(3).position(|w| w == b"abc").expect("body");
        assert_eq!(resp_of(body + 1, 1), whole);
        assert_eq!(resp_of(body, 3), whole);
        // Inside the chunk "wxyz".
        let chunk = RESPS.windows(4).position(|w| w == b"wxyz").expect("chunk");
        assert_eq!(resp_of(chunk + 1, 2), whole);
        // Overrunning the first body into the next status line: the rest is not parsed.
        assert_eq!(resp_of(body + 1, 4), vec![(Some(200), 1), (None, 0)]);
        // In the headers of the first response.
        assert_eq!(resp_of(5, 2), vec![(None, 0), (None, 0)]);

        // The request side: a hole in the POST body.
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        let hello = REQS.windows(5).position(|w| w == b"hello").expect("body");
        flow.request_data(1, &REQS[..hello + 1], &mut out);
        flow.gap(true, 2, &mut out);
        flow.request_data(1, &REQS[hello + 3..], &mut out);
        flow.request_data(1, b"GET /c HTTP/1.1\r\n\r\n", &mut out);
        flow.finish(&mut out);
        let uris: Vec<_> = out.iter().map(|t| (t.uri(), t.request_body_bytes)).collect();
        assert_eq!(uris, vec![(Some("/a"), 0), (Some("/b"), 5), (Some("/c"), 0)]);

        // A body read until the close has no known length: a hole there stops the direction.
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        flow.request_data(1, b"GET / HTTP/1.0\r\n\r\n", &mut out);
        flow.response_data(b"HTTP/1.0 200 OK\r\n\r\nab", &mut out);
        flow.gap(false, 10, &mut out);
        flow.response_data(b"cd", &mut out);
        flow.finish(&mut out);
        assert_eq!(out.iter().map(|t| t.response_body_bytes).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn interim_replies_protocol_switches_and_lower_case_keywords_as_zeek() {
        let run = |requests: &[&[u8]], responses: &[&[u8]]| {
            let mut flow = HttpFlow::default();
            let mut out = Vec::new();
            for (i, r) in requests.iter().enumerate() {
                flow.request_data(i as i64, r, &mut out);
            }
            for r in responses {
                flow.response_data(r, &mut out);
            }
            flow.finish(&mut out);
            out
        };
        // A 101 switch to WebSocket: logged with 101, and the frames after it on either side
        // are not read as HTTP (Zeek's websocket baseline has the one row).
        let out = run(
            &[b"GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", b"\x81\x85GET /x"],
            &[b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x03abc"],
        );
        let rows: Vec<_> = out.iter().map(|t| (t.uri(), t.status_code)).collect();
        assert_eq!(rows, vec![(Some("/echo"), Some(101))]);
        // A 100 Continue whose final reply never came: the 100 is what is logged.
        let post: &[u8] =
            b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab";
        let out = run(&[post], &[b"HTTP/1.1 100 Continue\r\n\r\n"]);
        assert_eq!(out[0].status_code, Some(100));
        // ...and with one, the final reply's code and version.
        let out = run(
            &[post],
            &[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nz"],
        );
        let t = &out[0];
        assert_eq!((t.status_code, t.response_version.as_deref()), (Some(200), Some("1.0")));
        // The version keyword in lower case (Zeek's http-lower-case trace): parsed as HTTP.
        let out = run(
            &[b"GET /index.html http/1.1\r\nHost: h\r\n\r\n"],
            &[b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
        );
        let t = &out[0];
        assert_eq!((t.uri(), t.request_version.as_deref()), (Some("/index.html"), Some("1.1")));
        assert_eq!((t.status_code, t.response_version.as_deref()), (Some(200), Some("1.1")));
        // No reply: no response version (Zeek logs none); the request's is kept apart.
        let out = run(&[b"GET / HTTP/1.1\r\n\r\n"], &[]);
        let t = &out[0];
        let versions = (t.response_version.as_deref(), t.request_version.as_deref());
        assert_eq!(versions, (None, Some("1.1")));
    }

    #[test]
    fn bad_lengths_and_chunk_sizes_count_as_zero_as_in_zeek() {
        assert_eq!(content_length(" 000050 "), 50);
        for bad in ["-1", "18446744073709551615", "9223372036854775808", "12a", "", "1 2"] {
            assert_eq!(content_length(bad), 0, "{bad:?}");
        }
        assert_eq!(content_length("9223372036854775807"), i64::MAX as u64);
        // A request whose length overflows has no body: the request after it is read (Zeek's
        // 261/cl-uint64max trace logs the smuggled GET).
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        let req = b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
        flow.request_data(1, req, &mut out);
        // A chunk size past 2^63 is the last chunk: the reply after it is read.
        flow.response_data(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n\r\n",
            &mut out,
        );
        flow.response_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", &mut out);
        flow.finish(&mut out);
        let rows: Vec<_> = out.iter().map(|t| (t.uri(), t.status_code)).collect();
        assert_eq!(rows, vec![(Some("/"), Some(200)), (Some("/smuggled"), Some(404))]);
    }

    #[test]
    fn a_request_body_that_goes_on_after_the_reply_began_still_counts() {
        // Zeek's missing-http-entity trace: the server answers while the upload goes on.
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        flow.request_data(1, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabcde", &mut out);
        flow.response_data(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", &mut out);
        flow.request_data(2, b"fghij", &mut out);
        flow.response_data(b"\r\nxyz", &mut out);
        flow.finish(&mut out);
        let rows: Vec<_> = out
            .iter()
            .map(|t| (t.request_body_bytes, t.response_body_bytes, t.status_code))
            .collect();
        assert_eq!(rows, vec![(10, 3, Some(200))]);
    }

    /// `stream` fed in pieces cut at `cuts` (offsets, any order).
    fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        at.push(0);
        at.push(stream.len());
        at.sort_unstable();
        at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
    }

    proptest::proptest! {
        /// Parsing in place (nothing held) and through the held buffer give the same
        /// transactions wherever the segments end.
        #[test]
        fn transactions_do_not_depend_on_segment_boundaries(
            req_cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..8),
            resp_cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..8),
        ) {
            let mut whole = HttpFlow::default();
            let mut expected = Vec::new();
            whole.request_data(1, REQS, &mut expected);
            whole.response_data(RESPS, &mut expected);
            whole.finish(&mut expected);
            let mut cut = HttpFlow::default();
            let mut out = Vec::new();
            for piece in pieces(REQS, &req_cuts) {
                cut.request_data(1, piece, &mut out);
            }
            for piece in pieces(RESPS, &resp_cuts) {
                cut.response_data(piece, &mut out);
            }
            cut.finish(&mut out);
            proptest::prop_assert_eq!(expected.len(), 2);
            proptest::prop_assert_eq!(out, expected);
        }
    }

    #[test]
    fn repeated_headers_keep_the_last_value_in_bounded_text() {
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        flow.request_data(1, b"GET /x HTTP/1.1\r\nUser-Agent: ua\r\n", &mut out);
        let value = "h".repeat(1000);
        for i in 0..200 {
            let line = format!("Host: {value}{i}\r\n");
            flow.request_data(1, line.as_bytes(), &mut out);
        }
        flow.request_data(1, b"\r\n", &mut out);
        flow.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].host(), Some(format!("{value}199").as_str()));
        assert_eq!(
            (out[0].uri(), out[0].user_agent(), out[0].referrer()),
            (Some("/x"), Some("ua"), None)
        );
        // 200 values of ~1 KB were set; the text holds the live ones, not all of them.
        assert!(out[0].text.len() <= MAX_HEADER_BYTES + 2000, "{}", out[0].text.len());
    }

    #[test]
    fn common_methods_and_versions_are_borrowed_others_kept_as_sent() {
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        flow.request_data(1, b"GET / HTTP/1.1\r\n\r\nPROPFIND /d HTTP/1.2\r\n\r\n", &mut out);
        flow.response_data(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
        flow.response_data(b"HTTP/3.9 207 Multi\r\nContent-Length: 0\r\n\r\n", &mut out);
        flow.finish(&mut out);
        assert_eq!(out.len(), 2);
        let borrowed = |t: &Option<Cow<'static, str>>| matches!(t, Some(Cow::Borrowed(_)));
        assert_eq!(out[0].method.as_deref(), Some("GET"));
        assert_eq!(out[0].request_version.as_deref(), Some("1.1"));
        assert_eq!(out[0].response_version.as_deref(), Some("1.0"));
        assert!(borrowed(&out[0].method));
        assert!(borrowed(&out[0].request_version) && borrowed(&out[0].response_version));
        assert_eq!(out[1].method.as_deref(), Some("PROPFIND"));
        assert_eq!(out[1].request_version.as_deref(), Some("1.2"));
        assert_eq!(out[1].response_version.as_deref(), Some("3.9"));
        assert!(!borrowed(&out[1].method) && !borrowed(&out[1].response_version));
    }

    #[test]
    fn case_blind_matches_equal_the_lower_case_copies() {
        let texts = [
            "",
            "Chunked",
            "gzip, CHUNKED",
            "chunke",
            "TEXT/html",
            "Application/JSON; q=1",
            "image/svg+XML",
            "x-GZIP",
            " \u{e9}chunked\u{e9} ",
            "\u{130}chunked",
            "multipart/Form-Data",
        ];
        for text in texts {
            let lower = text.to_ascii_lowercase();
            for needle in ["chunked", "json", "xml", "text/", "gzip"] {
                assert_eq!(contains_ignore_case(text, needle), lower.contains(needle), "{text}");
                assert_eq!(
                    starts_with_ignore_case(text, needle),
                    lower.starts_with(needle),
                    "{text}"
                );
            }
        }
        for bytes in [&b"GET / HTTP/1.1"[..], b"a\xffb", b"\xe2\x82", b"", "h\u{e0}".as_bytes()] {
            assert_eq!(lossy(bytes), String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn textual_request_bodies_are_kept_up_to_the_cap() {
        let form = b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 27\r\n\r\nuser=admin'--&password=x&a=b";
        let chunked = b"POST /api HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n";
        let binary = b"POST /up HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\nabcd";
        let mut big =
            b"PUT /doc HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 3000\r\n\r\n"
                .to_vec();
        big.extend(std::iter::repeat_n(b'x', 3000));
        // Whole, and split at every byte: what is kept must not depend on segment boundaries.
        for input in [&form[..], &chunked[..], &binary[..], &big[..]] {
            for split in [input.len(), 1] {
                let mut flow = HttpFlow::default();
                let mut out = Vec::new();
                for piece in input.chunks(split) {
                    flow.request_data(1, piece, &mut out);
                }
                flow.finish(&mut out);
                assert_eq!(out.len(), 1);
                let kept = &out[0].request_body;
                match out[0].uri() {
                    Some("/login") => assert_eq!(kept, b"user=admin'--&password=x&a="),
                    Some("/api") => assert_eq!(kept, br#"{"a":1}"#),
                    Some("/up") => assert!(kept.is_empty()),
                    Some("/doc") => {
                        assert_eq!(kept.len(), REQUEST_BODY_KEPT);
                        assert_eq!(out[0].request_body_bytes, 3000);
                    }
                    other => panic!("unexpected transaction {other:?}"),
                }
            }
        }
        assert_eq!(body_text(b""), None);
        assert_eq!(body_text(b"a=\xff").as_deref(), Some("a=\u{fffd}"));
    }

    #[test]
    fn gzip_bodies_count_decompressed_bytes() {
        use std::io::Write;
        let text = vec![b'a'; 5000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).expect("compress");
        let body = gz.finish().expect("compress");
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        resp.extend_from_slice(&body);
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        flow.request_data(1, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &mut out);
        // In two pieces, split inside the gzip header.
        let cut = resp.len() - body.len() + 4;
        flow.response_data(&resp[..cut], &mut out);
        flow.response_data(&resp[cut..], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_body_bytes, 5000);
        // A corrupt body stops counting instead of failing the parser.
        let mut bad = BodyDecoder::new(Encoding::Gzip);
        assert_eq!(bad.feed(b"not gzip at all"), 0);
        assert!(bad.failed);
    }

    #[test]
    fn unparsable_unanswered_lines_are_not_transactions() {
        let mut flow = HttpFlow::default();
        let mut out = Vec::new();
        flow.request_data(1, b"\x16\x03garbage\r\n", &mut out);
        flow.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn truncated_streams_never_panic() {
        for cut in 0..REQS.len() {
            let mut flow = HttpFlow::default();
            let mut out = Vec::new();
            flow.request_data(1, &REQS[..cut], &mut out);
            flow.response_data(&RESPS[..cut.min(RESPS.len())], &mut out);
            flow.finish(&mut out);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                                       b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut flow = HttpFlow::default();
            let mut out = Vec::new();
            flow.request_data(1, b"GET / HTTP/1.1\r\n", &mut out);
            flow.request_data(1, &a, &mut out);
            flow.response_data(&b, &mut out);
            flow.finish(&mut out);
        }
    }
}
