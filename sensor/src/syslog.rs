//! Syslog message headers: RFC 5424 and RFC 3164 ("BSD syslog") with the variants seen in real
//! traffic (no PRI, no year, a year after the day, ISO timestamps, a colon after the timestamp,
//! missing hostname, over-long tags, odd spacing). Pure: bytes and a reference time in, fields out;
//! no clock, no I/O. Hostile or truncated input is an error value, never a panic.

use canh_event::Timestamp;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Which header grammar a message was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc3164,
    Rfc5424,
}

/// RFC 5424 structured data: SD-ID -> (param name -> value).
pub type StructuredData = BTreeMap<String, BTreeMap<String, String>>;

/// The header fields of one syslog message, and its MSG part: slices of the input when it is
/// UTF-8, escaped copies (see `escape_invalid_utf8`) of the fields that are not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyslogMessage<'a> {
    pub format: Option<Format>,
    /// `<PRI>` value (facility * 8 + severity), or the default when the message had none.
    pub priority: Option<u8>,
    pub timestamp: Option<Timestamp>,
    pub hostname: Option<Cow<'a, str>>,
    /// RFC 5424 APP-NAME; for RFC 3164 the program name of the TAG (`sshd` in `sshd[42]:`).
    pub appname: Option<Cow<'a, str>>,
    pub procid: Option<Cow<'a, str>>,
    pub msgid: Option<Cow<'a, str>>,
    pub structured_data: Option<StructuredData>,
    /// The MSG part (RFC 3164 CONTENT), without the BOM and without the single space after the TAG.
    pub message: Cow<'a, str>,
}

/// What the parser needs to know beyond the bytes.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Offset from UTC, in seconds, of timestamps that carry no zone (RFC 3164, and ISO timestamps
    /// without an offset): the sender's zone.
    pub utc_offset_secs: i32,
    /// When the message was received; RFC 3164 timestamps have no year and get the year that puts
    /// them closest before this instant (a December message read in January is last year's).
    pub received: Timestamp,
    /// PRI of a message that has none. RFC 3164 4.3.3 has a relay assume 13 (user.notice); for
    /// lines read from files, where no PRI is ever written, `None` leaves the fields unset.
    pub default_priority: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    #[error("empty syslog message")]
    Empty,
    #[error("no syslog header: neither a <PRI> nor a timestamp")]
    NoHeader,
}

impl SyslogError {
    /// A fixed label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            SyslogError::Empty => "empty",
            SyslogError::NoHeader => "no_header",
        }
    }
}

/// Longest RFC 3164 TAG (program name and `[pid]`) taken as a tag; a longer first word is message.
const MAX_TAG: usize = 255;
/// Longest `[pid]` content.
const MAX_PROCID: usize = 128;

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] =
    ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// Facility name of a code (rsyslog's `syslogfacility-text` names).
pub fn facility_name(code: u8) -> &'static str {
    FACILITIES.get(usize::from(code)).copied().unwrap_or("invalid")
}

/// Severity name of a code (rsyslog's `syslogseverity-text` names).
pub fn severity_name(code: u8) -> &'static str {
    SEVERITIES.get(usize::from(code)).copied().unwrap_or("invalid")
}

/// Parse one syslog message (without its line terminator).
pub fn parse<'a>(
    input: &'a [u8],
    options: &ParseOptions,
) -> Result<SyslogMessage<'a>, SyslogError> {
    parse_source(Source { bytes: input, text: None }, options)
}

/// [`parse`] of a message already known to be UTF-8 (a log line is checked once, when its event
/// is started): the fields are slices of `input` without another check.
pub fn parse_text<'a>(
    input: &'a str,
    options: &ParseOptions,
) -> Result<SyslogMessage<'a>, SyslogError> {
    parse_source(Source { bytes: input.as_bytes(), text: Some(input) }, options)
}

/// A message's bytes, and the same bytes as text when they are known to be UTF-8.
#[derive(Debug, Clone, Copy)]
struct Source<'a> {
    bytes: &'a [u8],
    text: Option<&'a str>,
}

impl<'a> Source<'a> {
    /// `part`, a slice of the message, as text: sliced from the text when the message is known to
    /// be UTF-8 (fields are split at ASCII bytes, so they start and end on character
    /// boundaries), else checked (and escaped where invalid) by `field_cow`.
    fn field(self, part: &'a [u8]) -> Cow<'a, str> {
        if let Some(text) = self.text {
            let start = (part.as_ptr() as usize).wrapping_sub(self.bytes.as_ptr() as usize);
            let end = start.wrapping_add(part.len());
            if let Some(field) = text.get(start..end).filter(|f| f.as_ptr() == part.as_ptr()) {
                return Cow::Borrowed(field);
            }
        }
        field_cow(part)
    }
}

fn parse_source<'a>(
    source: Source<'a>,
    options: &ParseOptions,
) -> Result<SyslogMessage<'a>, SyslogError> {
    let input = source.bytes;
    if input.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(SyslogError::Empty);
    }
    let (priority, rest) = match parse_pri(input) {
        Some((pri, rest)) => (Some(pri), rest),
        // An out-of-range PRI (`<999>`) is skipped: the rest may still be a good header.
        None => (None, skip_bad_pri(input)),
    };
    if priority.is_some() {
        if let Some(after_version) = rest.strip_prefix(b"1 ") {
            let mut msg = parse_5424(after_version, source, options);
            msg.priority = priority;
            return Ok(msg);
        }
    }
    // Without a PRI, only a timestamp says the line is syslog: fail before building any field.
    let mut msg =
        parse_3164(rest, source, options, priority.is_some()).ok_or(SyslogError::NoHeader)?;
    msg.priority = priority.or(options.default_priority);
    Ok(msg)
}

/// `<PRI>`: one to three digits, at most 191. None when absent or malformed (then the text is
/// left for the message).
fn parse_pri(input: &[u8]) -> Option<(u8, &[u8])> {
    let rest = input.strip_prefix(b"<")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 3 || rest.get(digits) != Some(&b'>') {
        return None;
    }
    let value = rest[..digits].iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if value > 191 {
        return None;
    }
    Some((value as u8, &rest[digits + 1..]))
}

fn skip_bad_pri(input: &[u8]) -> &[u8] {
    let Some(rest) = input.strip_prefix(b"<") else { return input };
    let digits = rest.iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    match rest.get(digits) {
        Some(b'>') if digits > 0 => &rest[digits + 1..],
        _ => input,
    }
}

fn skip_spaces(input: &[u8]) -> &[u8] {
    let n = input.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &input[n..]
}

/// The next space-delimited token and what follows it (the delimiter not consumed).
fn token(input: &[u8]) -> (&[u8], &[u8]) {
    let n = input.iter().position(|&b| b == b' ').unwrap_or(input.len());
    input.split_at(n)
}

/// `field_text` without a copy when the bytes are UTF-8.
pub fn field_cow(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => std::borrow::Cow::Owned(escape_invalid_utf8(bytes)),
    }
}

/// Text of a field: UTF-8 as is; bytes that are not UTF-8 written as `\xNN`.
pub fn field_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => escape_invalid_utf8(bytes),
    }
}

/// Lossless text of bytes that may not be UTF-8: valid UTF-8 sequences are kept, every other byte
/// is written `\xNN` and a backslash `\\`, so the bytes can be recovered exactly.
pub fn escape_invalid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn nil_or_text<'a>(token: &'a [u8], source: Source<'a>) -> Option<Cow<'a, str>> {
    if token.is_empty() || token == b"-" {
        None
    } else {
        Some(source.field(token))
    }
}

/// RFC 5424 after `<PRI>1 `. Missing trailing fields (a truncated message) are left unset;
/// malformed structured data is kept in the message.
fn parse_5424<'a>(
    input: &'a [u8],
    source: Source<'a>,
    options: &ParseOptions,
) -> SyslogMessage<'a> {
    let mut msg = SyslogMessage { format: Some(Format::Rfc5424), ..SyslogMessage::default() };
    let rest = skip_spaces(input);
    let (ts, rest) = token(rest);
    if ts != b"-" {
        msg.timestamp = parse_iso(ts, options.utc_offset_secs);
    }
    let (host, rest) = token(skip_spaces(rest));
    msg.hostname = nil_or_text(host, source);
    let (app, rest) = token(skip_spaces(rest));
    msg.appname = nil_or_text(app, source);
    let (procid, rest) = token(skip_spaces(rest));
    msg.procid = nil_or_text(procid, source);
    let (msgid, rest) = token(skip_spaces(rest));
    msg.msgid = nil_or_text(msgid, source);
    let rest = skip_spaces(rest);
    let rest = if let Some(after) = rest.strip_prefix(b"-") {
        after
    } else if rest.first() == Some(&b'[') {
        match parse_structured_data(rest) {
            Some((sd, after)) => {
                msg.structured_data = Some(sd);
                after
            }
            None => rest,
        }
    } else {
        rest
    };
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let rest = rest.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(rest);
    msg.message = source.field(rest);
    msg
}

/// One or more `[SD-ID name="value" ...]` elements. Tolerates spaces around `=`. None when
/// malformed (unterminated element or value, missing quotes).
fn parse_structured_data(mut input: &[u8]) -> Option<(StructuredData, &[u8])> {
    let mut sd = StructuredData::new();
    while let Some(rest) = input.strip_prefix(b"[") {
        let id_len = rest.iter().position(|&b| b == b' ' || b == b']')?;
        if id_len == 0 {
            return None;
        }
        let id = field_text(&rest[..id_len]);
        let mut rest = &rest[id_len..];
        let mut params = BTreeMap::new();
        loop {
            rest = skip_spaces(rest);
            if let Some(after) = rest.strip_prefix(b"]") {
                rest = after;
                break;
            }
            let name_len = rest.iter().position(|&b| b == b'=' || b == b' ' || b == b']')?;
            let name = field_text(&rest[..name_len]);
            rest = skip_spaces(&rest[name_len..]).strip_prefix(b"=")?;
            rest = skip_spaces(rest).strip_prefix(b"\"")?;
            let (value, after) = quoted_value(rest)?;
            params.insert(name, value);
            rest = after;
        }
        sd.entry(id).or_default().extend(params);
        input = rest;
    }
    Some((sd, input))
}

/// A PARAM-VALUE after its opening quote, with `\"`, `\\` and `\]` unescaped (RFC 5424 6.3.3:
/// a backslash before any other character is kept).
fn quoted_value(input: &[u8]) -> Option<(String, &[u8])> {
    let mut value = Vec::new();
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'"' => return Some((field_text(&value), &input[i + 1..])),
            b'\\' => match input.get(i + 1) {
                Some(&next @ (b'"' | b'\\' | b']')) => {
                    value.push(next);
                    i += 2;
                }
                _ => {
                    value.push(b);
                    i += 1;
                }
            },
            _ => {
                value.push(b);
                i += 1;
            }
        }
    }
    None
}

/// RFC 3164 after the PRI: `TIMESTAMP HOSTNAME TAG[PID]: MSG`, each part optional in practice.
/// None when the message had no PRI (`has_pri` false) and has no timestamp either.
fn parse_3164<'a>(
    input: &'a [u8],
    source: Source<'a>,
    options: &ParseOptions,
    has_pri: bool,
) -> Option<SyslogMessage<'a>> {
    let mut msg = SyslogMessage { format: Some(Format::Rfc3164), ..SyslogMessage::default() };
    let start = skip_spaces(input);
    let timestamp = parse_3164_timestamp(start, options);
    if timestamp.is_none() && !has_pri {
        return None;
    }
    let rest = match timestamp {
        Some((ts, after)) => {
            msg.timestamp = Some(ts);
            let rest = skip_spaces(after);
            let (word, after_word) = token(rest);
            if is_hostname(word) {
                msg.hostname = Some(source.field(word));
                skip_spaces(after_word)
            } else {
                rest
            }
        }
        // No timestamp: rsyslog then takes no hostname either; the TAG starts the text.
        None => input,
    };
    parse_tag(rest, source, &mut msg);
    Some(msg)
}

/// A hostname (or IP address) rather than a TAG: no `:` at the end, no `[`, only characters of
/// host names and addresses.
fn is_hostname(word: &[u8]) -> bool {
    !word.is_empty()
        && word.len() <= 255
        && word.last() != Some(&b':')
        && word.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

/// `name[pid]: msg`, `name: msg`, `name msg` or just `msg`.
fn parse_tag<'a>(input: &'a [u8], source: Source<'a>, msg: &mut SyslogMessage<'a>) {
    let name_len = input
        .iter()
        .take(MAX_TAG + 1)
        .position(|&b| b == b' ' || b == b':' || b == b'[' || b == b'\t')
        .unwrap_or(input.len().min(MAX_TAG + 1));
    if name_len == 0 || name_len > MAX_TAG {
        msg.message = source.field(input);
        return;
    }
    msg.appname = Some(source.field(&input[..name_len]));
    let mut rest = &input[name_len..];
    if let Some(after) = rest.strip_prefix(b"[") {
        let close = after.iter().take(MAX_PROCID + 1).position(|&b| b == b']' || b == b' ');
        if let Some(len) = close.filter(|&len| after.get(len) == Some(&b']')) {
            if len > 0 {
                msg.procid = Some(source.field(&after[..len]));
            }
            rest = &after[len + 1..];
        }
    }
    rest = rest.strip_prefix(b":").unwrap_or(rest);
    rest = rest.strip_prefix(b" ").unwrap_or(rest);
    msg.message = source.field(rest);
}

/// An RFC 3164 timestamp, or an ISO one, at the start of `input`; returns it and what follows.
/// Accepts `Mmm dd hh:mm:ss`, `Mmm d hh:mm:ss`, `Mmm dd yyyy hh:mm:ss`, fractional seconds, any
/// case of the month, and a stray `:` after the time. The timestamp must end at a space or the end.
fn parse_3164_timestamp<'a>(
    input: &'a [u8],
    options: &ParseOptions,
) -> Option<(Timestamp, &'a [u8])> {
    if input.first().is_some_and(u8::is_ascii_digit) {
        let (word, rest) = token(input);
        let word = word.strip_suffix(b":").unwrap_or(word);
        if let Some(ts) = parse_iso(word, options.utc_offset_secs) {
            return Some((ts, rest));
        }
        // "2015 Nov 13 13:40:01": the year first (seen from some syslog daemons).
        let (year, after) = number(input, 4, 4)?;
        return bsd_timestamp(after.strip_prefix(b" ")?, Some(year), options);
    }
    bsd_timestamp(input, None, options)
}

/// `Mmm dd [yyyy ]hh:mm:ss[.frac][:]`, the year possibly already read before the month.
fn bsd_timestamp<'a>(
    input: &'a [u8],
    year_first: Option<u32>,
    options: &ParseOptions,
) -> Option<(Timestamp, &'a [u8])> {
    let month = month_number(input.get(..3)?)?;
    let rest = input.get(3..)?;
    if rest.first() != Some(&b' ') {
        return None;
    }
    let rest = skip_spaces(rest);
    let (day, rest) = number(rest, 1, 2)?;
    let rest = skip_spaces(rest.strip_prefix(b" ")?);
    let (year, rest) = match number(rest, 4, 4) {
        Some((year, after)) if after.first() == Some(&b' ') => (Some(year), skip_spaces(after)),
        _ => (year_first, rest),
    };
    let (hour, minute, second, nanos, rest) = clock(rest)?;
    let rest = rest.strip_prefix(b":").unwrap_or(rest);
    if !(rest.is_empty() || rest.first() == Some(&b' ')) {
        return None;
    }
    let offset = options.utc_offset_secs;
    let at = |year: i32| civil_to_timestamp(year, month, day, hour, minute, second, nanos, offset);
    let ts = match year {
        Some(year) => at(year as i32)?,
        None => infer_year(options.received, offset, at)?,
    };
    Some((ts, rest))
}

/// A timestamp from the words of a BSD-style date that carries its year, as web servers write
/// them: month name (`Oct`), day (`10`), year (`2000`), clock (`13:55:36[.frac]`), in a zone.
pub fn timestamp_from_parts(
    month: &[u8],
    day: &[u8],
    year: &[u8],
    clock_text: &[u8],
    utc_offset_secs: i32,
) -> Option<Timestamp> {
    if month.len() != 3 {
        return None;
    }
    let month = month_number(month)?;
    let (day, rest) = number(day, 1, 2)?;
    if !rest.is_empty() {
        return None;
    }
    let (year, rest) = number(year, 4, 4)?;
    if !rest.is_empty() {
        return None;
    }
    let (hour, minute, second, nanos, rest) = clock(clock_text)?;
    if !rest.strip_prefix(b":").unwrap_or(rest).is_empty() {
        return None;
    }
    civil_to_timestamp(year as i32, month, day, hour, minute, second, nanos, utc_offset_secs)
}

/// The year that puts a year-less timestamp at or before `received` (allowing one day of clock
/// skew), trying the received year, then the one before (and, for 29 February, earlier leap years).
fn infer_year(
    received: Timestamp,
    offset: i32,
    at: impl Fn(i32) -> Option<Timestamp>,
) -> Option<Timestamp> {
    let local = Timestamp(received.0.saturating_add(i64::from(offset) * 1_000_000_000));
    let this_year = year_of(local);
    let skew = 86_400 * 1_000_000_000;
    let mut fallback = None;
    for year in (this_year - 8..=this_year).rev() {
        if let Some(ts) = at(year) {
            if ts.0 <= received.0.saturating_add(skew) {
                return Some(ts);
            }
            fallback.get_or_insert(ts);
        }
    }
    fallback
}

fn year_of(ts: Timestamp) -> i32 {
    i32::try_from(year_from_days(ts.secs().div_euclid(86_400))).unwrap_or(1970)
}

fn month_number(name: &[u8]) -> Option<u8> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let lower =
        [name[0].to_ascii_lowercase(), name[1].to_ascii_lowercase(), name[2].to_ascii_lowercase()];
    MONTHS.iter().position(|m| **m == lower).map(|i| i as u8 + 1)
}

/// `min..=max` ASCII digits.
fn number(input: &[u8], min: usize, max: usize) -> Option<(u32, &[u8])> {
    let n = input.iter().take(max + 1).take_while(|b| b.is_ascii_digit()).count();
    if n < min || n > max {
        return None;
    }
    let value = input[..n].iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    Some((value, &input[n..]))
}

/// `hh:mm:ss[.fraction]`.
fn clock(input: &[u8]) -> Option<(u8, u8, u8, u32, &[u8])> {
    let (hour, rest) = number(input, 2, 2)?;
    let (minute, rest) = number(rest.strip_prefix(b":")?, 2, 2)?;
    let (second, rest) = number(rest.strip_prefix(b":")?, 2, 2)?;
    let (nanos, rest) = fraction(rest);
    Some((hour as u8, minute as u8, second as u8, nanos, rest))
}

/// An optional `.digits` (or `,digits`), as nanoseconds; digits past the ninth are ignored.
fn fraction(input: &[u8]) -> (u32, &[u8]) {
    let Some(digits) = input.strip_prefix(b".").or_else(|| input.strip_prefix(b",")) else {
        return (0, input);
    };
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return (0, input);
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        let digit = digits.get(i).filter(|_| i < n).map_or(0, |d| u32::from(d - b'0'));
        nanos = nanos * 10 + digit;
    }
    (nanos, &digits[n..])
}

/// An RFC 3339 timestamp (`2003-10-11T22:14:15.003Z`, `...+07:00`), also without an offset (then
/// in `default_offset`). The whole of `word` must be the timestamp.
pub fn parse_iso(word: &[u8], default_offset: i32) -> Option<Timestamp> {
    let (year, rest) = number(word, 4, 4)?;
    let (month, rest) = number(rest.strip_prefix(b"-")?, 2, 2)?;
    let (day, rest) = number(rest.strip_prefix(b"-")?, 2, 2)?;
    let rest = rest.strip_prefix(b"T").or_else(|| rest.strip_prefix(b"t"))?;
    let (hour, minute, second, nanos, rest) = clock(rest)?;
    let offset = match rest {
        [] => default_offset,
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] => {
            let (hours, after) = number(&rest[1..], 2, 2)?;
            let after = after.strip_prefix(b":").unwrap_or(after);
            let (minutes, after) = number(after, 2, 2)?;
            if !after.is_empty() || hours > 23 || minutes > 59 {
                return None;
            }
            let secs = (hours * 3600 + minutes * 60) as i32;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    civil_to_timestamp(year as i32, month as u8, day, hour, minute, second, nanos, offset)
}

#[allow(clippy::too_many_arguments)]
fn civil_to_timestamp(
    year: i32,
    month: u8,
    day: u32,
    hour: u8,
    minute: u8,
    second: u8,
    nanos: u32,
    offset_secs: i32,
) -> Option<Timestamp> {
    // The ranges the `time` crate accepts (years -9999..=9999, offsets under 26 hours), checked
    // here with plain arithmetic: this runs once or twice per log line.
    if !(-9999..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    if day == 0 || day > u32::from(days_in_month(year, month)) {
        return None;
    }
    if hour > 23 || minute > 59 || nanos > 999_999_999 {
        return None;
    }
    if offset_secs.unsigned_abs() >= 26 * 3600 {
        return None;
    }
    // A leap second (:60) is read as the last second of the minute (as is any second past it).
    let second = second.min(59);
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - i64::from(offset_secs);
    secs.checked_mul(1_000_000_000)?.checked_add(i64::from(nanos)).map(Timestamp)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date: whole 400-year eras (146,097 days each),
/// counting years from March so that the leap day is the last day of a year.
fn days_from_civil(year: i32, month: u8, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year of a day count from 1970-01-01 (the inverse of `days_from_civil`, year only).
fn year_from_days(days: i64) -> i64 {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    year_of_era + era * 400 + i64::from(month_from_march >= 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23T10:00:00Z, a Monday.
    const NOW: Timestamp = Timestamp(1_795_428_000_000_000_000);

    fn opts() -> ParseOptions {
        ParseOptions { utc_offset_secs: 0, received: NOW, default_priority: Some(13) }
    }

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).expect("valid test timestamp")
    }

    #[test]
    fn rfc3164_example_section_5_4() {
        let m = parse(
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            &opts(),
        )
        .expect("parses");
        assert_eq!(m.format, Some(Format::Rfc3164));
        assert_eq!(m.priority, Some(34));
        assert_eq!(m.timestamp, Some(ts("2026-10-11T22:14:15Z")));
        assert_eq!(m.hostname.as_deref(), Some("mymachine"));
        assert_eq!(m.appname.as_deref(), Some("su"));
        assert_eq!(m.procid, None);
        assert_eq!(m.message, "'su root' failed for lonvick on /dev/pts/8");
    }

    #[test]
    fn rfc3164_year_is_inferred_backwards_and_zone_applied() {
        // NOW is 23 November; a 24 December timestamp is last year's.
        let m = parse(b"<13>Dec 24 08:00:00 h app: x", &opts()).expect("parses");
        assert_eq!(m.timestamp, Some(ts("2025-12-24T08:00:00Z")));
        let hanoi = ParseOptions { utc_offset_secs: 7 * 3600, ..opts() };
        let m = parse(b"<13>Nov 23 16:30:00 h app: x", &hanoi).expect("parses");
        assert_eq!(m.timestamp, Some(ts("2026-11-23T09:30:00Z")));
        // Explicit year after the day (rsyslog's empty.parse1 case).
        let m = parse(b"<14>Jan  6 2009 15:22:26 localhost ", &opts()).expect("parses");
        assert_eq!(m.timestamp, Some(ts("2009-01-06T15:22:26Z")));
        assert_eq!(m.hostname.as_deref(), Some("localhost"));
        assert_eq!(m.appname, None);
        // 29 February goes to the last leap year.
        let m = parse(b"<13>Feb 29 00:00:00 h app: x", &opts()).expect("parses");
        assert_eq!(m.timestamp, Some(ts("2024-02-29T00:00:00Z")));
    }

    #[test]
    fn bsd_timestamp_with_year() {
        assert_eq!(
            timestamp_from_parts(b"Dec", b"04", b"2005", b"04:47:44", 3600),
            Some(ts("2005-12-04T03:47:44Z"))
        );
        assert_eq!(
            timestamp_from_parts(b"oct", b"1", b"2000", b"13:55:36.5", 0),
            Some(ts("2000-10-01T13:55:36.5Z"))
        );
        assert_eq!(timestamp_from_parts(b"Dec", b"04", b"05", b"04:47:44", 0), None);
        assert_eq!(timestamp_from_parts(b"Dec", b"04", b"2005", b"04:47:44 junk", 0), None);
        assert_eq!(timestamp_from_parts(b"December", b"04", b"2005", b"04:47:44", 0), None);
        assert_eq!(timestamp_from_parts(b"Dec", b"32", b"2005", b"04:47:44", 0), None);
        assert_eq!(timestamp_from_parts(b"", b"", b"", b"", 0), None);
    }

    #[test]
    fn rfc3164_variants() {
        // One space before the date, single-digit day, colon after the time, upper-case month.
        for line in [
            &b"<38> Mar  7 19:06:53 example tag: testmessage"[..],
            b"<38>Mar 7 19:06:53 example tag: testmessage",
            b"<38>Mar 7 19:06:53: example tag: testmessage",
            b"<38>MAR  7 19:06:53 example tag: testmessage",
        ] {
            let m = parse(line, &opts()).expect("parses");
            assert_eq!(m.timestamp, Some(ts("2026-03-07T19:06:53Z")), "{line:?}");
            assert_eq!(m.hostname.as_deref(), Some("example"));
            assert_eq!(m.appname.as_deref(), Some("tag"));
            assert_eq!(m.message, "testmessage");
        }
        // Year first.
        let m = parse(b"2015 Nov 13 13:40:01 ether rsyslogd-2177: imuxsock begins", &opts())
            .expect("parses");
        assert_eq!(m.timestamp, Some(ts("2015-11-13T13:40:01Z")));
        assert_eq!(m.hostname.as_deref(), Some("ether"));
        assert_eq!(m.appname.as_deref(), Some("rsyslogd-2177"));
        // Fractional seconds (rsyslog's high-precision file format without the ISO date).
        let m = parse(b"<13>Mar  7 19:06:53.250 h a: b", &opts()).expect("parses");
        assert_eq!(m.timestamp, Some(ts("2026-03-07T19:06:53.25Z")));
    }

    #[test]
    fn rfc3164_tag_forms() {
        let m = parse(
            b"<38>Mar 27 19:06:53 source_server sshd(pam_unix)[12750]: session opened",
            &opts(),
        )
        .expect("parses");
        assert_eq!(m.appname.as_deref(), Some("sshd(pam_unix)"));
        assert_eq!(m.procid.as_deref(), Some("12750"));
        assert_eq!(m.message, "session opened");
        // Missing hostname: the first word is a TAG (ends in a colon or has a [pid]).
        let m = parse(b"<13>Mar 27 19:06:53 sshd[7]: hello", &opts()).expect("parses");
        assert_eq!(m.hostname, None);
        assert_eq!(m.appname.as_deref(), Some("sshd"));
        assert_eq!(m.procid.as_deref(), Some("7"));
        let m = parse(b"<13>Mar 27 19:06:53 kernel: hello", &opts()).expect("parses");
        assert_eq!(m.hostname, None);
        assert_eq!(m.appname.as_deref(), Some("kernel"));
        // No colon after the tag.
        let m = parse(b"<6>Feb 18 16:01:59 serverX -- MARK --", &opts()).expect("parses");
        assert_eq!(m.appname.as_deref(), Some("--"));
        assert_eq!(m.message, "MARK --");
        // Over-long tag: kept up to MAX_TAG, longer is message.
        let long = [b'A'; 300];
        let mut line = b"<13>Mar 27 19:06:53 h ".to_vec();
        line.extend_from_slice(&long);
        let m = parse(&line, &opts()).expect("parses");
        assert_eq!(m.appname, None);
        assert_eq!(m.message.len(), 300);
        // No PRI: the relay default applies, or nothing for files.
        let m = parse(b"Feb 18 16:01:59 serverX -- MARK --", &opts()).expect("parses");
        assert_eq!(m.priority, Some(13));
        let files = ParseOptions { default_priority: None, ..opts() };
        let m = parse(b"Feb 18 16:01:59 serverX -- MARK --", &files).expect("parses");
        assert_eq!(m.priority, None);
    }

    #[test]
    fn iso_timestamp_in_bsd_header() {
        let m = parse(b"<14>2010-08-30T23:00:05Z X4711 AAAA", &opts()).expect("parses");
        assert_eq!(m.format, Some(Format::Rfc3164));
        assert_eq!(m.timestamp, Some(ts("2010-08-30T23:00:05Z")));
        assert_eq!(m.hostname.as_deref(), Some("X4711"));
        assert_eq!(m.appname.as_deref(), Some("AAAA"));
        let m = parse(b"2024-05-01T10:00:00.5+07:00 web nginx[1]: up", &opts()).expect("parses");
        assert_eq!(m.timestamp, Some(ts("2024-05-01T03:00:00.5Z")));
        assert_eq!(m.priority, Some(13));
        // rsyslog "precise" file format without offset uses the configured zone.
        let hanoi = ParseOptions { utc_offset_secs: 7 * 3600, ..opts() };
        let m = parse(b"2024-05-01T10:00:00 web app: x", &hanoi).expect("parses");
        assert_eq!(m.timestamp, Some(ts("2024-05-01T03:00:00Z")));
    }

    #[test]
    fn rfc5424_examples_section_6_5() {
        // Example 1, with the BOM.
        let m = parse(
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
            &opts(),
        )
        .expect("parses");
        assert_eq!(m.format, Some(Format::Rfc5424));
        assert_eq!(m.priority, Some(34));
        assert_eq!(m.timestamp, Some(ts("2003-10-11T22:14:15.003Z")));
        assert_eq!(m.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.appname.as_deref(), Some("su"));
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid.as_deref(), Some("ID47"));
        assert_eq!(m.structured_data, None);
        assert_eq!(m.message, "'su root' failed for lonvick on /dev/pts/8");
        // Example 2: offset, procid, no SD, no BOM.
        let m = parse(
            b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
            &opts(),
        )
        .expect("parses");
        assert_eq!(m.timestamp, Some(ts("2003-08-24T12:14:15.000003Z")));
        assert_eq!(m.procid.as_deref(), Some("8710"));
        assert_eq!(m.msgid, None);
        assert_eq!(m.message, "%% It's time to make the do-nuts.");
        // Example 4: two SD elements, no MSG.
        let m = parse(
            br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#,
            &opts(),
        )
        .expect("parses");
        let sd = m.structured_data.expect("structured data");
        assert_eq!(sd["exampleSDID@32473"]["eventSource"], "Application");
        assert_eq!(sd["exampleSDID@32473"]["iut"], "3");
        assert_eq!(sd["examplePriority@32473"]["class"], "high");
        assert_eq!(m.message, "");
    }

    #[test]
    fn rfc5424_escapes_nil_and_tolerance() {
        let m =
            parse(br#"<13>1 - - - - - [a b="x\"y\\z\]" c = "1"] msg"#, &opts()).expect("parses");
        assert_eq!(m.timestamp, None);
        assert_eq!(m.hostname, None);
        assert_eq!(m.appname, None);
        let sd = m.structured_data.expect("sd");
        assert_eq!(sd["a"]["b"], r#"x"y\z]"#);
        assert_eq!(sd["a"]["c"], "1");
        assert_eq!(m.message, "msg");
        // Unterminated SD stays in the message rather than being lost.
        let m = parse(br#"<13>1 - h app 1 id [a b="x"#, &opts()).expect("parses");
        assert_eq!(m.structured_data, None);
        assert_eq!(m.message, r#"[a b="x"#);
    }

    #[test]
    fn errors_and_pri_edge_cases() {
        assert_eq!(parse(b"", &opts()), Err(SyslogError::Empty));
        assert_eq!(parse(b"   ", &opts()), Err(SyslogError::Empty));
        assert_eq!(parse(b"hello world", &opts()), Err(SyslogError::NoHeader));
        // PRI above 191 is not a PRI.
        assert_eq!(
            parse(b"<192>Mar  7 19:06:53 h a: b", &opts()).map(|m| m.priority),
            Ok(Some(13))
        );
        assert_eq!(parse(b"<0>x", &opts()).map(|m| m.priority), Ok(Some(0)));
        assert_eq!(facility_name(23), "local7");
        assert_eq!(severity_name(7), "debug");
        assert_eq!(facility_name(24), "invalid");
    }

    #[test]
    fn invalid_utf8_is_escaped_losslessly() {
        assert_eq!(escape_invalid_utf8(b"a\xffb\\c\xc3\xa4"), "a\\xffb\\\\c\u{e4}");
        let m = parse(b"<13>Mar  7 19:06:53 h app: caf\xe9", &opts()).expect("parses");
        assert_eq!(m.message, "caf\\xe9");
    }

    #[test]
    fn every_truncated_prefix_parses_or_errs() {
        // Each line with the length below which a prefix may fail (no complete PRI or timestamp).
        let lines: [(&[u8], usize); 4] = [
            (b"<34>Oct 11 22:14:15 mymachine su[12]: 'su root' failed", 4),
            (b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 12 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] \xEF\xBB\xBFAn application event", 5),
            (b"<14>Jan  6 2009 15:22:26.123 localhost tag: x", 4),
            (b"2024-05-01T10:00:00.5+07:00 web nginx[1]: up", 27),
        ];
        for (line, must_parse_from) in lines {
            for end in 0..=line.len() {
                let prefix = &line[..end];
                match parse(prefix, &opts()) {
                    // The MSG part is always the tail of the input (when that is UTF-8; a cut
                    // BOM is escaped instead).
                    Ok(m) => assert!(
                        prefix.ends_with(m.message.as_bytes())
                            || std::str::from_utf8(prefix).is_err(),
                        "{prefix:?}"
                    ),
                    // Only a prefix too short to hold a PRI or timestamp may fail.
                    Err(_) => assert!(end < must_parse_from, "{prefix:?}"),
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn calendar_arithmetic_agrees_with_the_time_crate(
            year in 1600i32..=2300,
            month in 1u8..=12,
            day in 1u32..=31,
            hour in 0u8..=23,
            second in 0u8..=99,
            offset in -93_599i32..=93_599,
        ) {
            let with_time = (|| {
                let date = time::Date::from_calendar_date(
                    year,
                    time::Month::try_from(month).ok()?,
                    u8::try_from(day).ok()?,
                )
                .ok()?;
                let clock = time::Time::from_hms_nano(hour, 7, second.min(59), 5).ok()?;
                let offset = time::UtcOffset::from_whole_seconds(offset).ok()?;
                let nanos = time::PrimitiveDateTime::new(date, clock)
                    .assume_offset(offset)
                    .unix_timestamp_nanos();
                i64::try_from(nanos).ok().map(Timestamp)
            })();
            proptest::prop_assert_eq!(
                civil_to_timestamp(year, month, day, hour, 7, second, 5, offset),
                with_time
            );
            if let Some(ts) = with_time {
                let year_there = time::OffsetDateTime::from_unix_timestamp(ts.secs())
                    .map(|t| t.year())
                    .ok();
                proptest::prop_assert_eq!(Some(year_of(ts)), year_there);
            }
        }

        /// Text already known to be UTF-8 parses to the same fields as its bytes, each a slice of
        /// the text (no copy).
        #[test]
        fn parse_text_as_parse(
            head in "(<[0-9]{1,3}>)?(1 )?[A-Za-z0-9 :.TZ+\\[\\]-]{0,40}",
            tail in "\\PC{0,40}",
        ) {
            let line = format!("{head}{tail}");
            let from_text = parse_text(&line, &opts());
            proptest::prop_assert_eq!(&from_text, &parse(line.as_bytes(), &opts()));
            if let Ok(m) = from_text {
                let fields = [m.hostname, m.appname, m.procid, m.msgid, Some(m.message)];
                for field in fields.into_iter().flatten() {
                    proptest::prop_assert!(matches!(field, Cow::Borrowed(_)), "{field:?}");
                }
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes, &opts());
        }

        #[test]
        fn never_panics_on_header_like_input(
            head in "<[0-9]{1,3}>(1 )?[A-Za-z0-9 :.TZ+-]{0,40}",
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let mut line = head.into_bytes();
            line.extend_from_slice(&tail);
            let _ = parse(&line, &opts());
        }
    }
}
