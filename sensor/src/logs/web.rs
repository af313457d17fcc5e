//! Web server logs: Apache / nginx access logs (common and combined format) and error logs
//! (Apache 2.2, Apache 2.4, nginx). Pure: bytes in, fields into the event or an error.

use super::auth::parse_ip;
use super::record::{
    HttpFields, HttpRequestFields, HttpResponseFields, LogEvent, ProcessFields, UrlFields,
};
use super::{classify, split_once_byte, split_once_byte_of};
use canh_event::{Endpoint, Timestamp};
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebError {
    #[error("not an access log line")]
    NotAccess,
    #[error("not an error log line")]
    NotError,
}

/// `host ident user [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326 "referer" "agent"`.
pub fn access_into<'a>(line: &'a [u8], event: &mut LogEvent<'a>) -> Result<(), WebError> {
    // Cheap rejection first: an access line has a `[` (its time) and a quoted request.
    if !line.contains(&b'[') {
        return Err(WebError::NotAccess);
    }
    super::with_text(super::line_text(line, event), event, access_text)
}

fn access_text<'a>(text: &'a str, event: &mut LogEvent<'a>) -> Result<(), WebError> {
    let mut rest = trim_start(text);
    fn next_word<'t>(rest: &mut &'t str) -> Result<&'t str, WebError> {
        let (word, after) = split_once_byte(rest, b' ').unwrap_or((rest, ""));
        *rest = trim_start(after);
        Some(word).filter(|w| !w.is_empty()).ok_or(WebError::NotAccess)
    }
    let mut client = next_word(&mut rest)?;
    let mut ident = next_word(&mut rest)?;
    let mut user = next_word(&mut rest)?;
    // Apache's vhost_combined puts the virtual host and port first: "www.example.org:443 client
    // ident user [time] ...".
    let mut vhost = None;
    if !rest.starts_with('[') {
        let host = client.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok());
        vhost = Some(host.ok_or(WebError::NotAccess)?.0);
        (client, ident) = (ident, user);
        user = next_word(&mut rest)?;
    }
    let _ = ident;
    let rest_after_user = rest;
    let time_text = rest_after_user.strip_prefix('[').ok_or(WebError::NotAccess)?;
    let (time_text, after) = split_once_byte(time_text, b']').ok_or(WebError::NotAccess)?;
    let timestamp = parse_access_time(time_text).ok_or(WebError::NotAccess)?;
    let after = trim_start(after);
    let (request, after) = quoted_field(after).ok_or(WebError::NotAccess)?;
    // `after.split_whitespace()`'s first two items.
    let (status, after_status) = first_word(after).ok_or(WebError::NotAccess)?;
    let status: Option<u16> = match status {
        "-" => None,
        s => Some(s.parse().map_err(|_| WebError::NotAccess)?),
    };
    let bytes = first_word(after_status).and_then(|(b, _)| b.parse::<u64>().ok());
    // Referrer and user agent follow the size in the combined format: what follows the second
    // space (`splitn(3, ' ').nth(2)`).
    let after_size = split_once_byte(trim_start(after), b' ')
        .and_then(|(_, rest)| split_once_byte(rest, b' '))
        .map_or("", |(_, rest)| trim_start(rest));
    let (referrer, after) = quoted_field(after_size).unwrap_or_default();
    let (agent, _) = quoted_field(trim_start(after)).unwrap_or_default();

    event.timestamp = timestamp;
    let ip = parse_ip(client);
    event.source = Some(Endpoint { ip, ..Endpoint::default() });
    if user != "-" {
        super::auth::set_user(event, user);
    }
    // `request.splitn(3, ' ')`.
    let (method, url, version) = match split_once_byte(request, b' ') {
        None => (Some(request), None, None),
        Some((method, rest)) => match split_once_byte(rest, b' ') {
            None => (Some(method), Some(rest), None),
            Some((url, version)) => (Some(method), Some(url), Some(version)),
        },
    };
    let mut http = HttpFields {
        request: Some(HttpRequestFields {
            method: method.filter(|_| url.is_some()).map(Cow::Borrowed),
            referrer: Some(referrer).filter(|r| !r.is_empty() && *r != "-").map(Cow::Borrowed),
            body_bytes: None,
        }),
        response: Some(HttpResponseFields { status_code: status, body_bytes: bytes }),
        version: version.and_then(|v| v.strip_prefix("HTTP/")).map(Cow::Borrowed),
    };
    if http.request.as_ref().is_some_and(|r| r.method.is_none() && r.referrer.is_none()) {
        http.request = None;
    }
    event.http = Some(http);
    // A request line that is not "METHOD URL VERSION" (garbage from scanners) is kept as the URL.
    let original_url = match url {
        Some(url) => url,
        None => request,
    };
    if !original_url.is_empty() && original_url != "-" {
        event.url = Some(UrlFields { original: Some(Cow::Borrowed(original_url)), domain: None });
    }
    if let Some(host) = vhost.filter(|h| !h.is_empty() && *h != "-") {
        event.url.get_or_insert_with(UrlFields::default).domain = Some(Cow::Borrowed(host));
    }
    if !agent.is_empty() && agent != "-" {
        event.user_agent = Some(Cow::Borrowed(agent));
    }
    let outcome = match status {
        Some(code) if code < 400 => "success",
        Some(_) => "failure",
        None => "unknown",
    };
    classify(event, &["web"], &["access"], outcome, "http-request");
    Ok(())
}

/// Whether `b` is an ASCII character that `char::is_whitespace` holds for (which includes the
/// vertical tab, unlike `u8::is_ascii_whitespace`).
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// `text.trim_start()`, returning at once when the first byte is an ASCII character other than
/// whitespace (the usual case; `trim_start` decodes characters).
fn trim_start(text: &str) -> &str {
    match text.as_bytes().first() {
        Some(&b) if b.is_ascii() && !is_ascii_space(b) => text,
        _ => text.trim_start(),
    }
}

/// `text.split_whitespace()`'s first item and the text after it, reading ASCII bytes directly.
fn first_word(text: &str) -> Option<(&str, &str)> {
    let text = trim_start(text);
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let end = match bytes.iter().position(|&b| !b.is_ascii() || is_ascii_space(b)) {
        None => bytes.len(),
        Some(at) if bytes[at].is_ascii() => at,
        // Another character: the std search from there (it may be a Unicode space).
        Some(at) => at + text[at..].find(char::is_whitespace).unwrap_or(text.len() - at),
    };
    Some((&text[..end], &text[end..]))
}

/// A `"..."` field with `\"` and `\\` escapes (Apache escapes quotes in the request and agent);
/// returns the unescaped text and what follows the closing quote.
fn quoted_field(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('"')?;
    let bytes = body.as_bytes();
    let mut i = 0;
    // From one quote or backslash to the next (a vectorised search); a backslash skips the byte
    // after it.
    while let Some(n) = bytes.get(i..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
        let at = i + n;
        if bytes[at] == b'"' {
            return Some((&body[..at], &body[at + 1..]));
        }
        i = at + 2;
    }
    None
}

/// `10/Oct/2000:13:55:36 -0700`.
fn parse_access_time(text: &str) -> Option<Timestamp> {
    let (date, zone) = split_once_byte(text, b' ').unwrap_or((text, "+0000"));
    // `date.splitn(4, [':', '/'])`, by bytes.
    let (day, rest) = split_once_byte_of(date, b':', b'/')?;
    let (month, rest) = split_once_byte_of(rest, b':', b'/')?;
    let (year, clock) = split_once_byte_of(rest, b':', b'/')?;
    let zone = zone.trim();
    let (sign, digits) = zone.split_at_checked(1)?;
    let (hours, minutes) = digits.split_at_checked(2)?;
    let offset = hours.parse::<i32>().ok()? * 3600 + minutes.parse::<i32>().ok()? * 60;
    let offset = if sign == "-" { -offset } else { offset };
    bsd_with_year(month, day, year, clock, offset)
}

fn bsd_with_year(
    month: &str,
    day: &str,
    year: &str,
    clock: &str,
    offset: i32,
) -> Option<Timestamp> {
    let bytes = str::as_bytes;
    crate::syslog::timestamp_from_parts(bytes(month), bytes(day), bytes(year), bytes(clock), offset)
}

/// Apache 2.2: `[Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] msg`
/// Apache 2.4: `[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 43] [client 1.2.3.4:80] msg`
/// nginx:      `2016/08/10 12:34:56 [error] 1234#0: *1 msg, client: 1.2.3.4, server: x, request: "GET / HTTP/1.1"`
pub fn error_into<'a>(
    line: &'a [u8],
    utc_offset_secs: i32,
    event: &mut LogEvent<'a>,
) -> Result<(), WebError> {
    super::with_text(super::line_text(line, event), event, |text, event| {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix('[') {
            return apache_error(text, rest, utc_offset_secs, event);
        }
        nginx_error(text, utc_offset_secs, event)
    })
}

/// `whole` is the line from its `[`, `text` what follows that bracket.
fn apache_error<'a>(
    whole: &'a str,
    text: &'a str,
    offset: i32,
    event: &mut LogEvent<'a>,
) -> Result<(), WebError> {
    let (stamp, after_stamp) = text.split_once(']').ok_or(WebError::NotError)?;
    // "Sun Dec 04 04:47:44 2005"; some collectors strip it and start at the level.
    let mut words = stamp.split_whitespace();
    let words =
        [words.next(), words.next(), words.next(), words.next(), words.next(), words.next()];
    let (ts, fields) = match words {
        [Some(_weekday), Some(month), Some(day), Some(clock), Some(year), None] => {
            let ts = bsd_with_year(month, day, year, clock, offset).ok_or(WebError::NotError)?;
            (Some(ts), after_stamp)
        }
        [Some(_level), None, ..] => (None, whole),
        _ => return Err(WebError::NotError),
    };
    let mut rest = fields;
    let mut level = None;
    let mut pid = None;
    let mut client = None;
    // Bracketed fields: level (or module:level), pid, client.
    while let Some(inner) = rest.trim_start().strip_prefix('[') {
        let Some((field, after)) = inner.split_once(']') else { break };
        if let Some(p) = field.strip_prefix("pid ") {
            pid = p.split(':').next().and_then(|p| p.parse::<u32>().ok());
        } else if let Some(c) = field.strip_prefix("client ") {
            client = Some(c);
        } else if level.is_none() && !field.contains(' ') {
            level = Some(field.rsplit(':').next().unwrap_or(field));
        } else {
            break;
        }
        rest = after;
    }
    let level = level.ok_or(WebError::NotError)?;
    if !is_level(level) {
        return Err(WebError::NotError);
    }
    if let Some(ts) = ts {
        event.timestamp = ts;
    }
    if let Some(client) = client {
        let (ip, port) = split_client(client);
        event.source = Some(Endpoint { ip, port, ..Endpoint::default() });
    }
    if pid.is_some() {
        event.process =
            Some(ProcessFields { name: Some(Cow::Borrowed("httpd")), pid, command_line: None });
    }
    finish_error(event, level, rest.trim());
    Ok(())
}

fn is_level(level: &str) -> bool {
    matches!(level, "emerg" | "alert" | "crit" | "error" | "warn" | "notice" | "info" | "debug")
        || level.starts_with("trace")
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:5678` or `2001:db8::1`.
fn split_client(text: &str) -> (Option<std::net::IpAddr>, Option<u16>) {
    if let Some(ip) = parse_ip(text) {
        return (Some(ip), None);
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (parse_ip(host), port.parse().ok()),
        None => (None, None),
    }
}

fn nginx_error<'a>(text: &'a str, offset: i32, event: &mut LogEvent<'a>) -> Result<(), WebError> {
    // "2016/08/10 12:34:56 [error] 1234#0: *1 message"
    let (date, rest) = text.split_once(' ').ok_or(WebError::NotError)?;
    let (clock, rest) = rest.split_once(' ').ok_or(WebError::NotError)?;
    let mut parts = date.split('/');
    let (Some(year), Some(month), Some(day)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(WebError::NotError);
    };
    let iso = format!("{year}-{month}-{day}T{clock}");
    let ts = crate::syslog::parse_iso(iso.as_bytes(), offset).ok_or(WebError::NotError)?;
    let rest = rest.strip_prefix('[').ok_or(WebError::NotError)?;
    let (level, rest) = rest.split_once("] ").ok_or(WebError::NotError)?;
    let (pid_tid, message) = rest.split_once(": ").unwrap_or(("", rest));
    event.timestamp = ts;
    if let Some(pid) = pid_tid.split('#').next().and_then(|p| p.parse::<u32>().ok()) {
        event.process = Some(ProcessFields {
            name: Some(Cow::Borrowed("nginx")),
            pid: Some(pid),
            command_line: None,
        });
    }
    if let Some((_, client)) = message.split_once(", client: ") {
        let client = client.split(',').next().unwrap_or(client);
        event.source = Some(Endpoint { ip: parse_ip(client), ..Endpoint::default() });
    }
    if let Some((_, request)) = message.split_once(", request: ") {
        if let Some((request, _)) = quoted_field(request) {
            let mut parts = request.splitn(3, ' ');
            if let (Some(method), Some(url)) = (parts.next(), parts.next()) {
                event.http = Some(HttpFields {
                    request: Some(HttpRequestFields {
                        method: Some(Cow::Borrowed(method)),
                        ..HttpRequestFields::default()
                    }),
                    ..HttpFields::default()
                });
                event.url = Some(UrlFields { original: Some(Cow::Borrowed(url)), domain: None });
            }
        }
    }
    finish_error(event, level, message);
    Ok(())
}

fn finish_error<'a>(event: &mut LogEvent<'a>, level: &'a str, message: &'a str) {
    event.log.level = Some(Cow::Borrowed(level));
    if !message.is_empty() {
        event.message = Some(Cow::Borrowed(message));
    }
    let (kind, outcome): (&'static [&'static str], _) = match level {
        "emerg" | "alert" | "crit" | "error" | "warn" => (&["error"], "failure"),
        _ => (&["info"], ""),
    };
    let action = if message.contains("File does not exist") || message.contains("No such file") {
        "file-not-found"
    } else if message.contains("Directory index forbidden") || message.contains("forbidden") {
        "access-forbidden"
    } else {
        "web-server-message"
    };
    classify(event, &["web"], kind, outcome, action);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::into_event;
    use canh_event::Event;

    fn access_into(line: &[u8], event: &mut Event) -> Result<(), WebError> {
        into_event(event, |f| super::access_into(line, f))
    }
    fn error_into(line: &[u8], offset: i32, event: &mut Event) -> Result<(), WebError> {
        into_event(event, |f| super::error_into(line, offset, f))
    }

    use canh_event::Dataset;

    fn event() -> Event {
        Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t")
    }

    #[test]
    fn combined_access_line() {
        // The sample of Apache's log_formats documentation.
        let mut e = event();
        access_into(
            br#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
            &mut e,
        )
        .expect("parses");
        assert_eq!(e.timestamp, Timestamp::parse("2000-10-10T20:55:36Z").expect("valid"));
        assert_eq!(
            e.source.as_ref().and_then(|s| s.ip).map(|i| i.to_string()).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(e.user.as_ref().map(|u| u.name.as_str()), Some("frank"));
        let http = e.http.as_ref().expect("http");
        assert_eq!(http.request.as_ref().and_then(|r| r.method.as_deref()), Some("GET"));
        assert_eq!(
            http.request.as_ref().and_then(|r| r.referrer.as_deref()),
            Some("http://www.example.com/start.html")
        );
        assert_eq!(http.response.as_ref().and_then(|r| r.status_code), Some(200));
        assert_eq!(
            http.response.as_ref().and_then(|r| r.body.as_ref()).map(|b| b.bytes),
            Some(2326)
        );
        assert_eq!(http.version.as_deref(), Some("1.0"));
        assert_eq!(e.url.as_ref().and_then(|u| u.original.as_deref()), Some("/apache_pb.gif"));
        assert_eq!(
            e.user_agent.as_ref().map(|u| u.original.as_str()),
            Some("Mozilla/4.08 [en] (Win98; I ;Nav)")
        );
        assert_eq!(e.event.outcome.as_deref(), Some("success"));
    }

    /// Apache's vhost_combined: the virtual host and port first, then the combined fields.
    #[test]
    fn vhost_combined_access_line() {
        let mut e = event();
        access_into(
            br#"www.example.org:443 203.0.113.9 - - [23/Nov/2026:10:00:00 +0700] "GET /a?id=1 HTTP/1.1" 200 512 "-" "sqlmap/1.8""#,
            &mut e,
        )
        .expect("parses");
        assert_eq!(
            e.source.as_ref().and_then(|s| s.ip).map(|i| i.to_string()).as_deref(),
            Some("203.0.113.9")
        );
        let url = e.url.as_ref().expect("url");
        assert_eq!(url.domain.as_deref(), Some("www.example.org"));
        assert_eq!(url.original.as_deref(), Some("/a?id=1"));
        assert_eq!(e.user_agent.as_ref().map(|u| u.original.as_str()), Some("sqlmap/1.8"));
        // A first word that is not host:port before a missing time is not an access line.
        assert!(access_into(br#"a b c d [x] "GET / HTTP/1.1" 200 1"#, &mut event()).is_err());
    }

    #[test]
    fn common_format_and_garbage_request() {
        let mut e = event();
        access_into(
            br#"192.0.2.1 - - [10/Oct/2000:13:55:36 +0000] "\x16\x03\x01" 400 - "-" "-""#,
            &mut e,
        )
        .expect("parses");
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
        assert_eq!(e.url.as_ref().and_then(|u| u.original.as_deref()), Some(r"\x16\x03\x01"));
        assert!(access_into(b"<13>Mar  1 00:00:00 h a: b", &mut event()).is_err());
        for n in 0..60 {
            let line =
                br#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2 "r" "a""#;
            let _ = access_into(&line[..n.min(line.len())], &mut event());
        }
    }

    #[test]
    fn error_logs() {
        let mut e = event();
        error_into(b"[Sun Dec 04 04:47:44 2005] [error] [client 192.0.2.7] Directory index forbidden by rule: /var/www/html/", 0, &mut e)
            .expect("apache 2.2");
        assert_eq!(e.timestamp, Timestamp::parse("2005-12-04T04:47:44Z").expect("valid"));
        assert_eq!(e.log.as_ref().and_then(|l| l.level.as_deref()), Some("error"));
        assert_eq!(
            e.source.as_ref().and_then(|s| s.ip).map(|i| i.to_string()).as_deref(),
            Some("192.0.2.7")
        );

        let mut e = event();
        error_into(b"[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:4242] AH00124: Request exceeded the limit", 0, &mut e)
            .expect("apache 2.4");
        assert_eq!(e.process.as_ref().and_then(|p| p.pid), Some(35708));
        assert_eq!(e.source.as_ref().and_then(|s| s.port), Some(4242));

        let mut e = event();
        error_into(br#"2016/08/10 12:34:56 [error] 1234#0: *1 open() "/x" failed (2: No such file or directory), client: 192.0.2.8, server: localhost, request: "GET /x HTTP/1.1", host: "h""#, 0, &mut e)
            .expect("nginx");
        assert_eq!(
            e.source.as_ref().and_then(|s| s.ip).map(|i| i.to_string()).as_deref(),
            Some("192.0.2.8")
        );
        assert_eq!(e.url.as_ref().and_then(|u| u.original.as_deref()), Some("/x"));
        assert!(error_into(b"hello", 0, &mut event()).is_err());
        assert!(error_into(b"[", 0, &mut event()).is_err());
        // Wazuh's samples without the time stamp.
        let mut e = event();
        error_into(
            b"[error] [client 66.31.142.16] File does not exist: /var/www/html/default.ida",
            0,
            &mut e,
        )
        .expect("no time stamp");
        assert_eq!(e.event.action.as_deref(), Some("file-not-found"));
        assert!(error_into(b"[hello] world", 0, &mut event()).is_err());
    }

    /// The byte-at-a-time reading `quoted_field` had before it searched with memchr.
    fn quoted_field_bytewise(text: &str) -> Option<(&str, &str)> {
        let body = text.strip_prefix('"')?;
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => return Some((&body[..i], &body[i + 1..])),
                _ => i += 1,
            }
        }
        None
    }

    #[test]
    fn quoted_fields_with_escapes() {
        for text in [
            "",
            "\"",
            "\"\"",
            "\"abc\" rest",
            "\"a\\\"b\" c",
            "\"a\\\\\" c",
            "\"a\\",
            "\"a\\\\",
            "\"é\\ü\"x",
            "x\"a\"",
            "\"\\\"",
        ] {
            assert_eq!(quoted_field(text), quoted_field_bytewise(text), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn byte_scans_as_std(text in "[a\\- \t\n\x0b\x0c\r\x1fé\u{a0}\u{85}\u{2003}]{0,16}") {
            proptest::prop_assert_eq!(trim_start(&text), text.trim_start());
            let mut words = text.split_whitespace();
            let ours = first_word(&text);
            proptest::prop_assert_eq!(ours.map(|(w, _)| w), words.next());
            let second = ours.and_then(|(_, rest)| first_word(rest)).map(|(w, _)| w);
            proptest::prop_assert_eq!(second, words.next());
        }

        #[test]
        fn quoted_field_reads_as_bytewise(text in "\"[a\"\\\\é ]{0,20}") {
            proptest::prop_assert_eq!(quoted_field(&text), quoted_field_bytewise(&text));
        }
    }
}
