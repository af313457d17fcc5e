//! Microsoft IIS logs in the W3C extended log file format. A file starts with directives
//! (`#Software:`, `#Version:`, `#Date:`, `#Fields:`) and the `#Fields:` directive names the
//! space-separated columns of the records that follow. Values never contain spaces (IIS writes a
//! space in a user agent as `+`); `-` means absent. Date and time are UTC.
//!
//! Field names and meanings: Microsoft's "W3C Logging" (HTTP Server API) page and the
//! `HTTP_LOG_FIELD_` constants, as summarised in `sensor/LOGS.md`. Pure: bytes in, fields out.

use super::auth::parse_ip;
use super::classify;
use super::record::{
    self, HttpFields, HttpRequestFields, HttpResponseFields, LogEvent, Text, UrlFields, UserFields,
};
use crate::syslog::{field_cow, field_text, parse_iso};
use canh_event::{Endpoint, Timestamp};
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum W3cError {
    #[error("not a w3c extended log record")]
    NotW3c,
}

/// The columns this parser maps to ECS; any other named column is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Date,
    Time,
    SiteName,
    ComputerName,
    ServerIp,
    Method,
    UriStem,
    UriQuery,
    ServerPort,
    UserName,
    ClientIp,
    ClientPort,
    Version,
    UserAgent,
    Cookie,
    Referer,
    Host,
    Status,
    Substatus,
    Win32Status,
    BytesSent,
    BytesReceived,
    TimeTaken,
    Other,
}

impl Field {
    fn from_name(name: &str) -> Field {
        // Names are case-insensitive in practice (IIS writes them in lower case).
        match name.to_ascii_lowercase().as_str() {
            "date" => Field::Date,
            "time" => Field::Time,
            "s-sitename" => Field::SiteName,
            "s-computername" => Field::ComputerName,
            "s-ip" => Field::ServerIp,
            "cs-method" => Field::Method,
            "cs-uri-stem" => Field::UriStem,
            "cs-uri-query" => Field::UriQuery,
            "s-port" => Field::ServerPort,
            "cs-username" => Field::UserName,
            "c-ip" => Field::ClientIp,
            "c-port" => Field::ClientPort,
            "cs-version" => Field::Version,
            "cs(user-agent)" => Field::UserAgent,
            "cs(cookie)" => Field::Cookie,
            "cs(referer)" => Field::Referer,
            "cs-host" => Field::Host,
            "sc-status" => Field::Status,
            "sc-substatus" => Field::Substatus,
            "sc-win32-status" => Field::Win32Status,
            "sc-bytes" => Field::BytesSent,
            "cs-bytes" => Field::BytesReceived,
            "time-taken" => Field::TimeTaken,
            _ => Field::Other,
        }
    }
}

/// The columns of a file's records, from its `#Fields:` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    fields: Vec<Field>,
}

/// Most columns a `#Fields:` directive may name (IIS has about 30; custom fields add a few).
const MAX_FIELDS: usize = 128;

impl Layout {
    /// The field names after `#Fields:`.
    pub fn from_names(names: &str) -> Option<Layout> {
        let fields: Vec<Field> = names.split_ascii_whitespace().map(Field::from_name).collect();
        if fields.is_empty() || fields.len() > MAX_FIELDS {
            return None;
        }
        Some(Layout { fields })
    }

    /// For records without a `#Fields:` directive before them (a file cut from its header, a
    /// single line): IIS's default field selections, told apart by the number of columns and by
    /// whether the third column is an address (`s-ip`) or a site name (`s-sitename`).
    fn default_for(columns: &[&[u8]]) -> Option<Layout> {
        use Field::*;
        const IIS85: [Field; 15] = [
            Date,
            Time,
            ServerIp,
            Method,
            UriStem,
            UriQuery,
            ServerPort,
            UserName,
            ClientIp,
            UserAgent,
            Referer,
            Status,
            Substatus,
            Win32Status,
            TimeTaken,
        ];
        const IIS7: [Field; 14] = [
            Date,
            Time,
            ServerIp,
            Method,
            UriStem,
            UriQuery,
            ServerPort,
            UserName,
            ClientIp,
            UserAgent,
            Status,
            Substatus,
            Win32Status,
            TimeTaken,
        ];
        const IIS6: [Field; 14] = [
            Date,
            Time,
            SiteName,
            ServerIp,
            Method,
            UriStem,
            UriQuery,
            ServerPort,
            UserName,
            ClientIp,
            UserAgent,
            Status,
            Substatus,
            Win32Status,
        ];
        const ALL: [Field; 22] = [
            Date,
            Time,
            SiteName,
            ComputerName,
            ServerIp,
            Method,
            UriStem,
            UriQuery,
            ServerPort,
            UserName,
            ClientIp,
            Version,
            UserAgent,
            Cookie,
            Referer,
            Host,
            Status,
            Substatus,
            Win32Status,
            BytesSent,
            BytesReceived,
            TimeTaken,
        ];
        let third_is_ip = columns.get(2).is_some_and(|c| ip_of(c).is_some());
        let fields: &[Field] = match columns.len() {
            15 => &IIS85,
            14 if third_is_ip => &IIS7,
            14 => &IIS6,
            22 => &ALL,
            _ => return None,
        };
        Some(Layout { fields: fields.to_vec() })
    }
}

/// What a parser remembers of one W3C source: whether directives were seen, and the columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct W3cState {
    /// A W3C directive was seen: records are tried as W3C first (`auto`).
    pub seen: bool,
    pub layout: Option<Layout>,
}

/// Is this line a W3C directive (`#Name: value`)? When it is, update the state and mark the event.
pub fn directive_into(line: &[u8], state: &mut W3cState, event: &mut LogEvent<'_>) -> bool {
    let Some(rest) = line.strip_prefix(b"#") else { return false };
    let Some(colon) = rest.iter().position(|&b| b == b':') else { return false };
    let name = &rest[..colon];
    let known =
        [&b"Software"[..], b"Version", b"Date", b"Fields", b"Remark", b"Start-Date", b"End-Date"];
    if !known.iter().any(|k| k.eq_ignore_ascii_case(name)) {
        return false;
    }
    let value = field_text(&rest[colon + 1..]);
    if name.eq_ignore_ascii_case(b"Fields") {
        state.layout = Layout::from_names(&value);
    }
    state.seen = true;
    event.action = Some(Cow::Borrowed("w3c-directive"));
    true
}

fn absent(value: &[u8]) -> bool {
    value.is_empty() || value == b"-"
}

fn text_of(value: &[u8]) -> Option<Text<'_>> {
    if absent(value) {
        None
    } else {
        Some(field_cow(value))
    }
}

fn ip_of(value: &[u8]) -> Option<std::net::IpAddr> {
    std::str::from_utf8(value).ok().and_then(parse_ip)
}

fn number_of<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `2024-05-01` and `10:00:00` (UTC, as IIS writes them).
fn date_time(date: &[u8], time: &[u8]) -> Option<Timestamp> {
    if date.len() != 10 || !(8..=18).contains(&time.len()) {
        return None;
    }
    let mut buf = [0u8; 30];
    buf[..10].copy_from_slice(date);
    buf[10] = b'T';
    buf[11..11 + time.len()].copy_from_slice(time);
    buf[11 + time.len()] = b'Z';
    parse_iso(&buf[..12 + time.len()], 0)
}

/// One record, read with `layout` (or an IIS default layout when there is none).
pub fn record_into<'a>(
    line: &'a [u8],
    layout: Option<&Layout>,
    event: &mut LogEvent<'a>,
) -> Result<(), W3cError> {
    let columns: Vec<&[u8]> =
        line.split(|&b| b == b' ' || b == b'\t').filter(|c| !c.is_empty()).collect();
    let guessed;
    let layout = match layout {
        Some(layout) => layout,
        None => {
            guessed = Layout::default_for(&columns).ok_or(W3cError::NotW3c)?;
            &guessed
        }
    };
    if columns.len() != layout.fields.len() {
        return Err(W3cError::NotW3c);
    }
    let mut date = None;
    let mut time = None;
    let (mut method, mut stem, mut query, mut host) = (None, None, None, None);
    let (mut client_ip, mut client_port, mut server_ip, mut server_port) = (None, None, None, None);
    let (mut user, mut agent, mut referrer, mut version, mut computer) =
        (None, None, None, None, None);
    let (mut status, mut sent, mut received, mut taken) = (None, None, None, None);
    for (field, &value) in layout.fields.iter().zip(&columns) {
        match field {
            Field::Date => date = Some(value),
            Field::Time => time = Some(value),
            Field::ComputerName => computer = text_of(value),
            Field::ServerIp => server_ip = ip_of(value),
            Field::Method => method = text_of(value),
            Field::UriStem => stem = text_of(value),
            Field::UriQuery => query = text_of(value),
            Field::ServerPort => server_port = number_of::<u16>(value),
            Field::UserName => user = text_of(value),
            Field::ClientIp => client_ip = ip_of(value),
            Field::ClientPort => client_port = number_of::<u16>(value),
            Field::Version => version = text_of(value),
            // IIS writes a space in these as '+'.
            Field::UserAgent => agent = text_of(value).map(plus_as_space),
            Field::Referer => referrer = text_of(value),
            Field::Host => host = text_of(value),
            Field::Status => {
                if !absent(value) {
                    status = Some(number_of::<u16>(value).ok_or(W3cError::NotW3c)?);
                }
            }
            Field::BytesSent => sent = number_of::<u64>(value),
            Field::BytesReceived => received = number_of::<u64>(value),
            Field::TimeTaken => taken = number_of::<i64>(value),
            Field::SiteName
            | Field::Cookie
            | Field::Substatus
            | Field::Win32Status
            | Field::Other => {}
        }
    }
    // A record has at least its time and its request.
    let timestamp = match (date, time) {
        (Some(d), Some(t)) => date_time(d, t).ok_or(W3cError::NotW3c)?,
        _ => return Err(W3cError::NotW3c),
    };
    if method.is_none() && stem.is_none() {
        return Err(W3cError::NotW3c);
    }
    event.timestamp = timestamp;
    if client_ip.is_some() || client_port.is_some() {
        event.source = Some(Endpoint { ip: client_ip, port: client_port, ..Endpoint::default() });
    }
    if server_ip.is_some() || server_port.is_some() {
        event.destination =
            Some(Endpoint { ip: server_ip, port: server_port, ..Endpoint::default() });
    }
    if let Some(user) = &user {
        let name = user.trim();
        if !name.is_empty() {
            event.user.get_or_insert_with(UserFields::default).name = record::sub(user, name);
        }
    }
    if let Some(hostname) = computer {
        event.host = Some(hostname);
    }
    let request = HttpRequestFields { method, referrer, body_bytes: received };
    event.http = Some(HttpFields {
        version: version.map(|v| match v.strip_prefix("HTTP/") {
            Some(number) => record::sub(&v, number),
            None => v,
        }),
        request: Some(request).filter(|r| *r != HttpRequestFields::default()),
        response: Some(HttpResponseFields { status_code: status, body_bytes: sent }),
    });
    let original = match (stem, query) {
        (Some(stem), Some(query)) => Some(Cow::Owned(format!("{stem}?{query}"))),
        (Some(stem), None) => Some(stem),
        (None, query) => query.map(|q| Cow::Owned(format!("?{q}"))),
    };
    event.url = Some(UrlFields { original, domain: host });
    if let Some(original) = agent {
        event.user_agent = Some(original);
    }
    // time-taken is in milliseconds.
    event.duration = taken.and_then(|ms| ms.checked_mul(1_000_000));
    let outcome = match status {
        Some(code) if code < 400 => "success",
        Some(_) => "failure",
        None => "unknown",
    };
    classify(event, &["web"], &["access"], outcome, "http-request");
    Ok(())
}

/// IIS writes a space in a user agent as `+`.
fn plus_as_space(text: Text<'_>) -> Text<'_> {
    if text.contains('+') {
        Cow::Owned(text.replace('+', " "))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::into_event;
    use canh_event::Event;

    fn directive_into(line: &[u8], state: &mut W3cState, event: &mut Event) -> bool {
        into_event(event, |f| super::directive_into(line, state, f))
    }
    fn record_into(
        line: &[u8],
        layout: Option<&Layout>,
        event: &mut Event,
    ) -> Result<(), W3cError> {
        into_event(event, |f| super::record_into(line, layout, f))
    }

    use canh_event::Dataset;

    // Records written for these tests from Microsoft's field list: documentation addresses
    // (RFC 5737, RFC 3849), made-up paths and agents.

    fn event() -> Event {
        Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t")
    }

    fn ip(e: &Option<Endpoint>) -> Option<String> {
        e.as_ref().and_then(|s| s.ip).map(|i| i.to_string())
    }

    #[test]
    fn header_names_the_columns() {
        let mut state = W3cState::default();
        let mut e = event();
        assert!(directive_into(
            b"#Software: Microsoft Internet Information Services 10.0",
            &mut state,
            &mut e
        ));
        assert!(state.seen);
        assert_eq!(e.event.action.as_deref(), Some("w3c-directive"));
        assert!(directive_into(
            b"#Fields: date time c-ip cs-username s-ip s-port cs-method cs-uri-stem cs-uri-query sc-status sc-bytes cs-bytes time-taken cs-version cs-host cs(User-Agent) cs(Referer) x-custom",
            &mut state,
            &mut event()
        ));
        let layout = state.layout.clone().expect("layout");
        let mut e = event();
        record_into(
            b"2024-05-01 03:04:05 198.51.100.23 CORP\\alice 192.0.2.10 443 POST /owa/auth.owa a=1&b=2 302 512 1833 15 HTTP/1.1 mail.example.org Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64) https://mail.example.org/owa/ v1",
            Some(&layout),
            &mut e,
        )
        .expect("record");
        assert_eq!(e.timestamp, Timestamp::parse("2024-05-01T03:04:05Z").expect("valid"));
        assert_eq!(ip(&e.source).as_deref(), Some("198.51.100.23"));
        assert_eq!(ip(&e.destination).as_deref(), Some("192.0.2.10"));
        assert_eq!(e.destination.as_ref().and_then(|d| d.port), Some(443));
        assert_eq!(e.user.as_ref().map(|u| u.name.as_str()), Some("CORP\\alice"));
        let http = e.http.as_ref().expect("http");
        assert_eq!(http.version.as_deref(), Some("1.1"));
        let request = http.request.as_ref().expect("request");
        assert_eq!(request.method.as_deref(), Some("POST"));
        assert_eq!(request.referrer.as_deref(), Some("https://mail.example.org/owa/"));
        assert_eq!(request.body.as_ref().map(|b| b.bytes), Some(1833));
        let response = http.response.as_ref().expect("response");
        assert_eq!(response.status_code, Some(302));
        assert_eq!(response.body.as_ref().map(|b| b.bytes), Some(512));
        let url = e.url.as_ref().expect("url");
        assert_eq!(url.original.as_deref(), Some("/owa/auth.owa?a=1&b=2"));
        assert_eq!(url.domain.as_deref(), Some("mail.example.org"));
        assert_eq!(
            e.user_agent.as_ref().map(|u| u.original.as_str()),
            Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64)")
        );
        assert_eq!(e.event.duration, Some(15_000_000));
        assert_eq!(e.event.outcome.as_deref(), Some("success"));
        assert_eq!(e.event.action.as_deref(), Some("http-request"));
        // A column count that does not match the header is not a record.
        assert_eq!(
            record_into(b"2024-05-01 03:04:05 198.51.100.23", Some(&layout), &mut event()),
            Err(W3cError::NotW3c)
        );
    }

    #[test]
    fn dashes_are_absent() {
        let layout =
            Layout::from_names("date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken")
                .expect("layout");
        let mut e = event();
        record_into(
            b"2024-05-01 23:59:59 192.0.2.10 GET /missing.aspx - 80 - 2001:db8::5 - - 404 0 2 0",
            Some(&layout),
            &mut e,
        )
        .expect("record");
        assert_eq!(e.user, None);
        assert_eq!(e.user_agent, None);
        assert_eq!(e.url.as_ref().and_then(|u| u.original.as_deref()), Some("/missing.aspx"));
        assert_eq!(
            e.http.as_ref().and_then(|h| h.request.as_ref()).and_then(|r| r.referrer.as_ref()),
            None
        );
        assert_eq!(ip(&e.source).as_deref(), Some("2001:db8::5"));
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
        assert_eq!(e.event.duration, Some(0));
    }

    #[test]
    fn default_layouts_without_header() {
        // IIS 8.5+ default selection (15 columns).
        let mut e = event();
        record_into(
            b"2024-05-01 10:00:00 192.0.2.10 GET /default.aspx id=7 443 - 203.0.113.9 Mozilla/5.0+(X11;+Linux) https://example.org/ 200 0 0 31",
            None,
            &mut e,
        )
        .expect("iis 8.5 default");
        assert_eq!(ip(&e.source).as_deref(), Some("203.0.113.9"));
        assert_eq!(e.url.as_ref().and_then(|u| u.original.as_deref()), Some("/default.aspx?id=7"));
        // IIS 7 default (14 columns, s-ip third) and IIS 6 default (s-sitename third).
        let mut e = event();
        record_into(
            b"2024-05-01 10:00:00 192.0.2.10 GET /a.asp - 80 - 203.0.113.9 curl/8.0 500 0 0 12",
            None,
            &mut e,
        )
        .expect("iis 7 default");
        assert_eq!(
            e.http.as_ref().and_then(|h| h.response.as_ref()).and_then(|r| r.status_code),
            Some(500)
        );
        let mut e = event();
        record_into(
            b"2024-05-01 10:00:00 W3SVC1 192.0.2.10 GET /a.asp - 80 - 203.0.113.9 curl/8.0 200 0 0",
            None,
            &mut e,
        )
        .expect("iis 6 default");
        assert_eq!(ip(&e.destination).as_deref(), Some("192.0.2.10"));
        assert_eq!(e.event.duration, None);
        // Anything else is not a W3C record.
        for line in [
            &b"2024-05-01 10:00:00 hello world"[..],
            b"",
            b"2024-13-01 10:00:00 192.0.2.10 GET /a.asp - 80 - 203.0.113.9 curl/8.0 500 0 0 12",
            b"2024-05-01 10:00:00 192.0.2.10 GET /a.asp - 80 - 203.0.113.9 curl/8.0 OK 0 0 12",
        ] {
            assert_eq!(record_into(line, None, &mut event()), Err(W3cError::NotW3c), "{line:?}");
        }
    }

    #[test]
    fn other_hash_lines_are_not_directives() {
        let mut state = W3cState::default();
        assert!(!directive_into(b"# just a comment", &mut state, &mut event()));
        assert!(!directive_into(b"#include: x", &mut state, &mut event()));
        assert!(!state.seen);
        // A #Fields: with nothing after it leaves no layout.
        assert!(directive_into(b"#Fields:", &mut state, &mut event()));
        assert_eq!(state.layout, None);
    }

    #[test]
    fn truncated_records_never_panic() {
        let line = b"2024-05-01 10:00:00 192.0.2.10 GET /default.aspx id=7 443 - 203.0.113.9 Mozilla/5.0 https://example.org/ 200 0 0 31";
        for end in 0..=line.len() {
            let _ = record_into(&line[..end], None, &mut event());
        }
    }
}
