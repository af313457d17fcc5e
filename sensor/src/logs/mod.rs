//! Log lines to events (dataset `log`). Pure: a line's bytes, its receive time and the options in,
//! one event out; no clock, no I/O. Exactly one event per line: a line no parser understands still
//! becomes an event carrying the raw text in `event.original` and the reason in `log.parse_error`.
//!
//! The header grammars live in `crate::syslog` (syslog), `web` (Apache/nginx access and error
//! logs) and `json` (JSON lines); the program parsers that add ECS fields from a syslog MSG live
//! in `auth` (sshd, sudo, su, PAM, account tools, cron) and `firewall` (iptables / nftables LOG).

pub mod auth;
pub mod firewall;
pub mod framing;
pub mod json;
pub mod lines;
pub mod pipeline;
pub mod receive;
pub mod record;
pub mod tail;
pub mod w3c;
pub mod web;

use crate::flow::Identity;
use crate::syslog::{self, ParseOptions};
use canh_event::{Event, Timestamp};
use record::{LogEvent, ProcessFields, SyslogFields, Text};
use std::borrow::Cow;

/// How lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// Try JSON, syslog, access log and error log, in that order.
    Auto,
    Syslog,
    Json,
    /// Apache / nginx common or combined access log.
    Access,
    /// Apache (2.2 and 2.4) or nginx error log.
    Error,
    /// Microsoft IIS W3C extended log (`#Fields:` header-driven).
    W3c,
}

impl LineFormat {
    pub const NAMES: [&'static str; 6] = ["auto", "syslog", "json", "access", "error", "w3c"];

    /// `apache` and `nginx` are accepted for `access`, `apache-error` / `nginx-error` for `error`.
    pub fn parse(name: &str) -> Option<LineFormat> {
        match name {
            "auto" => Some(LineFormat::Auto),
            "syslog" => Some(LineFormat::Syslog),
            "json" => Some(LineFormat::Json),
            "access" | "apache" | "nginx" => Some(LineFormat::Access),
            "error" | "apache-error" | "nginx-error" => Some(LineFormat::Error),
            "w3c" | "iis" => Some(LineFormat::W3c),
            _ => None,
        }
    }
}

/// Settings of one log source.
#[derive(Debug, Clone, Copy)]
pub struct LineOptions {
    pub format: LineFormat,
    /// Zone of timestamps without one (RFC 3164, Apache error logs), seconds east of UTC.
    pub utc_offset_secs: i32,
    /// PRI assumed for syslog messages without one: `Some(13)` for network inputs (RFC 3164
    /// 4.3.3), `None` for files.
    pub default_priority: Option<u8>,
}

/// A zone as an offset from UTC in seconds: `+07:00`, `-0530`, `UTC` or `Z`.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

/// Fixed reasons for `log.parse_error`, also the metric label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    Empty,
    NoSyslogHeader,
    InvalidJson,
    NotAccessLog,
    NotErrorLog,
    NotW3cLog,
    Unrecognised,
}

impl LineError {
    pub const ALL: [LineError; 7] = [
        LineError::Empty,
        LineError::NoSyslogHeader,
        LineError::InvalidJson,
        LineError::NotAccessLog,
        LineError::NotErrorLog,
        LineError::NotW3cLog,
        LineError::Unrecognised,
    ];

    /// The error whose `reason` is `reason`.
    pub fn from_reason(reason: &str) -> Option<LineError> {
        LineError::ALL.into_iter().find(|e| e.reason() == reason)
    }

    pub fn reason(self) -> &'static str {
        match self {
            LineError::Empty => "empty",
            LineError::NoSyslogHeader => "no_syslog_header",
            LineError::InvalidJson => "invalid_json",
            LineError::NotAccessLog => "not_access_log",
            LineError::NotErrorLog => "not_error_log",
            LineError::NotW3cLog => "not_w3c_log",
            LineError::Unrecognised => "unrecognised",
        }
    }
}

/// One line (without its terminator) as an event. `truncated` says the reader cut the line at its
/// maximum length; `received` is when it was read, the event time when the line carries none.
/// Stateless: W3C records are read with IIS's default columns. Use a `LineParser` per source to
/// follow its `#Fields:` directives.
pub fn line_event(
    line: &[u8],
    truncated: bool,
    received: Timestamp,
    seq: u64,
    who: &Identity,
    options: &LineOptions,
) -> Event {
    LineParser::new(*options).event(line, truncated, received, seq, who)
}

/// Parses the lines of one source in order, remembering what a line says about the ones after it
/// (the columns a W3C `#Fields:` directive names).
#[derive(Debug, Clone)]
pub struct LineParser {
    pub options: LineOptions,
    w3c: w3c::W3cState,
    /// The JSON members of the identity last written with (`write_json`).
    constants: Option<record::JsonConstants>,
}

impl LineParser {
    pub fn new(options: LineOptions) -> LineParser {
        LineParser { options, w3c: w3c::W3cState::default(), constants: None }
    }

    /// One line as an event (see `line_event`).
    pub fn event(
        &mut self,
        line: &[u8],
        truncated: bool,
        received: Timestamp,
        seq: u64,
        who: &Identity,
    ) -> Event {
        self.fields(line, truncated, received).to_event(log_event_id(&who.sensor_id, seq), who)
    }

    /// One line's JSON (the bytes of `event(..).write_json(..)`, without building the event)
    /// appended to `out`; returns why the line could not be parsed, if it could not.
    pub fn write_json(
        &mut self,
        line: &[u8],
        truncated: bool,
        received: Timestamp,
        seq: u64,
        who: &Identity,
        out: &mut Vec<u8>,
    ) -> Option<LineError> {
        let fields = self.fields(line, truncated, received);
        if !self.constants.as_ref().is_some_and(|c| c.is_for(who)) {
            self.constants = None;
        }
        let constants = self.constants.get_or_insert_with(|| record::JsonConstants::new(who));
        let id = constants.log_event_id(seq);
        // Hex digits are ASCII.
        let id = std::str::from_utf8(&id).unwrap_or_default();
        fields.write_json_with(id, constants, out);
        fields.log.parse_error.and_then(LineError::from_reason)
    }

    /// One line's fields, borrowed from the line where it is UTF-8.
    pub fn fields<'a>(
        &mut self,
        line: &'a [u8],
        truncated: bool,
        received: Timestamp,
    ) -> LogEvent<'a> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut event = LogEvent { timestamp: received, ..LogEvent::default() };
        match std::str::from_utf8(line) {
            Ok(text) => event.original = Cow::Borrowed(text),
            Err(_) => {
                event.original = Cow::Owned(syslog::escape_invalid_utf8(line));
                event.log.escaped = true;
            }
        }
        event.log.truncated = truncated;
        if let Err(err) = self.parse_into(line, received, &mut event) {
            event.log.parse_error = Some(err.reason());
        }
        event
    }

    fn parse_into<'a>(
        &mut self,
        line: &'a [u8],
        received: Timestamp,
        event: &mut LogEvent<'a>,
    ) -> Result<(), LineError> {
        let options = &self.options;
        if line.iter().all(u8::is_ascii_whitespace) {
            return Err(LineError::Empty);
        }
        match options.format {
            LineFormat::Syslog => syslog_into(line, received, options, event),
            LineFormat::Json => json::parse_into(line, event).map_err(|_| LineError::InvalidJson),
            LineFormat::Access => {
                web::access_into(line, event).map_err(|_| LineError::NotAccessLog)
            }
            LineFormat::Error => web::error_into(line, options.utc_offset_secs, event)
                .map_err(|_| LineError::NotErrorLog),
            LineFormat::W3c => {
                if w3c::directive_into(line, &mut self.w3c, event) {
                    return Ok(());
                }
                w3c::record_into(line, self.w3c.layout.as_ref(), event)
                    .map_err(|_| LineError::NotW3cLog)
            }
            LineFormat::Auto => {
                let first = line.iter().find(|b| !b.is_ascii_whitespace());
                if first == Some(&b'#') && w3c::directive_into(line, &mut self.w3c, event) {
                    return Ok(());
                }
                // After W3C directives, records come first (and would not be syslog anyway).
                if self.w3c.seen && w3c::record_into(line, self.w3c.layout.as_ref(), event).is_ok()
                {
                    return Ok(());
                }
                if first == Some(&b'{') && json::parse_into(line, event).is_ok() {
                    return Ok(());
                }
                if syslog_into(line, received, options, event).is_ok() {
                    return Ok(());
                }
                if web::access_into(line, event).is_ok() {
                    return Ok(());
                }
                if web::error_into(line, options.utc_offset_secs, event).is_ok() {
                    return Ok(());
                }
                // A W3C record without its header: IIS's default columns.
                if !self.w3c.seen && w3c::record_into(line, None, event).is_ok() {
                    return Ok(());
                }
                Err(LineError::Unrecognised)
            }
        }
    }
}

/// Log events number their own sequence, apart from the packet pipeline's: their ids hash the
/// sensor id with a `/log` suffix so the two sequences never give the same id.
pub fn log_event_id(sensor_id: &str, seq: u64) -> String {
    let id = log_event_id_bytes(sensor_id, seq);
    String::from_utf8_lossy(&id).into_owned()
}

/// [`log_event_id`] as its 32 hex digits.
pub fn log_event_id_bytes(sensor_id: &str, seq: u64) -> [u8; 32] {
    // Built on the stack for the usual short sensor ids: this runs once per line.
    let mut buf = [0u8; 128];
    let len = sensor_id.len() + 4;
    if len <= buf.len() {
        buf[..sensor_id.len()].copy_from_slice(sensor_id.as_bytes());
        buf[sensor_id.len()..len].copy_from_slice(b"/log");
        if let Ok(namespace) = std::str::from_utf8(&buf[..len]) {
            return canh_event::event_id_bytes(namespace, seq);
        }
    }
    canh_event::event_id_bytes(&format!("{sensor_id}/log"), seq)
}

/// A syslog line: header fields, then the program parser for its TAG.
fn syslog_into<'a>(
    line: &'a [u8],
    received: Timestamp,
    options: &LineOptions,
    event: &mut LogEvent<'a>,
) -> Result<(), LineError> {
    let parse_options = ParseOptions {
        utc_offset_secs: options.utc_offset_secs,
        received,
        default_priority: options.default_priority,
    };
    // The line was checked to be UTF-8 when the event was started (its `original`).
    let parsed = match checked_text(line, event) {
        Some(text) => syslog::parse_text(text, &parse_options),
        None => syslog::parse(line, &parse_options),
    };
    let msg = parsed.map_err(|e| match e {
        syslog::SyslogError::Empty => LineError::Empty,
        syslog::SyslogError::NoHeader => LineError::NoSyslogHeader,
    })?;
    if let Some(ts) = msg.timestamp {
        event.timestamp = ts;
    }
    event.host.clone_from(&msg.hostname);
    let appname = msg.appname.clone().unwrap_or_default();
    let (program, _) = split_program(&appname);
    if !program.is_empty() {
        event.process = Some(ProcessFields {
            name: Some(record::sub(&appname, program)),
            pid: msg.procid.as_deref().and_then(|p| p.parse().ok()),
            command_line: None,
        });
    }
    // The program parser reads the message first; then the parsed parts move into the event.
    with_text(msg.message, event, |message, event| {
        program_into(&appname, message, event);
        if !message.is_empty() {
            event.message = Some(Cow::Borrowed(message));
        }
    });
    event.log.level = msg.priority.map(|p| Cow::Borrowed(syslog::severity_name(p & 7)));
    event.log.syslog = Some(SyslogFields {
        priority: msg.priority,
        hostname: msg.hostname,
        appname: msg.appname,
        procid: msg.procid,
        msgid: msg.msgid,
        structured_data: msg.structured_data,
    });
    Ok(())
}

/// `line` as text: the event's `original` when that is this very line (already checked to be
/// UTF-8 when the event was started), else checked (and escaped where invalid) here.
pub fn line_text<'a>(line: &'a [u8], event: &LogEvent<'a>) -> Text<'a> {
    match checked_text(line, event) {
        Some(text) => Cow::Borrowed(text),
        None => syslog::field_cow(line),
    }
}

/// `line` as text when the event's `original` is this very line, already checked to be UTF-8.
fn checked_text<'a>(line: &'a [u8], event: &LogEvent<'a>) -> Option<&'a str> {
    match event.original {
        Cow::Borrowed(text) if text.as_ptr() == line.as_ptr() && text.len() == line.len() => {
            Some(text)
        }
        _ => None,
    }
}

/// Run `parse` on `text` and `event`. When `text` was built (escaped, not a slice of the line),
/// the fields `parse` took from it are copied, so they outlive it.
pub fn with_text<'a, R>(
    text: Text<'a>,
    event: &mut LogEvent<'a>,
    parse: impl for<'t> FnOnce(&'t str, &mut LogEvent<'t>) -> R,
) -> R {
    match text {
        Cow::Borrowed(text) => parse(text, event),
        Cow::Owned(text) => {
            let mut scratch = std::mem::take(event);
            let result = parse(&text, &mut scratch);
            *event = scratch.into_owned();
            result
        }
    }
}

/// `sshd(pam_unix)` (old Red Hat PAM tags) is program `sshd` with PAM module `pam_unix`.
pub fn split_program(appname: &str) -> (&str, Option<&str>) {
    match split_once_byte(appname, b'(') {
        Some((program, rest)) if rest.ends_with(')') => (program, Some(&rest[..rest.len() - 1])),
        _ => (appname, None),
    }
}

/// `text.split_once(sep)` for an ASCII separator, by a plain byte scan: the pieces split this
/// way are a few bytes long, where a plain loop beats the searcher's set-up.
pub fn split_once_byte(text: &str, sep: u8) -> Option<(&str, &str)> {
    let i = text.bytes().position(|b| b == sep)?;
    // An ASCII byte is a character boundary.
    Some((&text[..i], &text[i + 1..]))
}

/// `text.split_once([a, b])` for two ASCII separators (whichever comes first).
pub fn split_once_byte_of(text: &str, a: u8, b: u8) -> Option<(&str, &str)> {
    let i = text.bytes().position(|x| x == a || x == b)?;
    Some((&text[..i], &text[i + 1..]))
}

/// Add the ECS fields a program's message carries. Unknown programs keep only the syslog fields.
pub fn program_into<'a>(appname: &str, message: &'a str, event: &mut LogEvent<'a>) {
    let (program, module) = split_program(appname);
    let program: std::borrow::Cow<str> = if program.bytes().any(|b| b.is_ascii_uppercase()) {
        program.to_ascii_lowercase().into()
    } else {
        program.into()
    };
    // "message repeated 3 times: [ Failed password for ...]" (rsyslog/syslogd reduction).
    let message = repeated_inner(message).unwrap_or(message);
    if module.is_some_and(|m| m.starts_with("pam_")) {
        auth::pam_into(&program, message, event);
        return;
    }
    match &*program {
        // OpenSSH 9.8 and later log each connection from `sshd-session` (and, from 10.0, the
        // pre-authentication child `sshd-auth`), with sshd's messages.
        "sshd" | "sshd-session" | "sshd-auth" => auth::sshd_into(message, event),
        "sudo" => auth::sudo_into(message, event),
        "su" => auth::su_into(message, event),
        "useradd" | "usermod" | "userdel" | "groupadd" | "groupmod" | "groupdel" | "passwd"
        | "chpasswd" | "chage" | "gpasswd" => auth::account_into(&program, message, event),
        "cron" | "crond" | "anacron" => auth::cron_into(message, event),
        "kernel" => firewall::kernel_into(message, event),
        // Web servers logging their access log to syslog (nginx `access_log syslog:...`, Apache
        // piped to logger): the message is an access-log line.
        "nginx" | "apache" | "apache2" | "httpd" => {
            if web::access_into(message.as_bytes(), event).is_err() {
                auth::generic_pam_into(message, event)
            }
        }
        _ => auth::generic_pam_into(message, event),
    }
}

fn repeated_inner(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("message repeated ")?;
    let (_, rest) = rest.split_once(" times: [")?;
    let inner = rest.strip_suffix(']').unwrap_or(rest);
    Some(inner.trim())
}

/// Set `event.category`, `event.type`, `event.outcome` and `event.action` together.
pub fn classify<'a>(
    event: &mut LogEvent<'a>,
    category: &'static [&'static str],
    kind: &'static [&'static str],
    outcome: &'static str,
    action: &'a str,
) {
    event.category = Some(category);
    event.r#type = Some(kind);
    if !outcome.is_empty() {
        event.outcome = Some(outcome);
    }
    event.action = Some(Cow::Borrowed(action));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Identity {
        Identity { sensor_id: "s1".into(), tenant: "t1".into(), community_id_seed: 0 }
    }

    fn opts(format: LineFormat) -> LineOptions {
        LineOptions { format, utc_offset_secs: 7 * 3600, default_priority: None }
    }

    const NOW: Timestamp = Timestamp(1_795_428_000_000_000_000);

    #[test]
    fn unparseable_line_still_yields_event() {
        let e = line_event(b"just some words", false, NOW, 1, &who(), &opts(LineFormat::Syslog));
        assert_eq!(e.event.original.as_deref(), Some("just some words"));
        assert_eq!(e.log.as_ref().and_then(|l| l.parse_error.as_deref()), Some("no_syslog_header"));
        assert_eq!(e.timestamp, NOW);
        let e = line_event(b"", false, NOW, 2, &who(), &opts(LineFormat::Auto));
        assert_eq!(e.log.as_ref().and_then(|l| l.parse_error.as_deref()), Some("empty"));
    }

    #[test]
    fn invalid_utf8_and_truncation_are_marked() {
        let e = line_event(
            b"<13>Nov 23 16:00:00 h app: caf\xe9 \\o/",
            true,
            NOW,
            1,
            &who(),
            &opts(LineFormat::Auto),
        );
        let log = e.log.as_ref().expect("log");
        assert_eq!(log.escaped, Some(true));
        assert_eq!(log.truncated, Some(true));
        assert_eq!(e.event.original.as_deref(), Some("<13>Nov 23 16:00:00 h app: caf\\xe9 \\\\o/"));
        assert_eq!(log.parse_error, None);
        // Timestamp read in +07:00.
        assert_eq!(e.timestamp, Timestamp::parse("2026-11-23T09:00:00Z").expect("valid"));
    }

    #[test]
    fn syslog_fields_and_program() {
        let e = line_event(
            b"<38>Mar 27 19:06:53 web01 sshd(pam_unix)[12750]: session opened for user foo by (uid=0)\r",
            false,
            NOW,
            1,
            &who(),
            &opts(LineFormat::Auto),
        );
        let sys = e.log.as_ref().and_then(|l| l.syslog.as_ref()).expect("syslog");
        assert_eq!(sys.facility.as_ref().map(|f| f.name.as_str()), Some("auth"));
        assert_eq!(sys.severity.as_ref().map(|f| f.code), Some(6));
        assert_eq!(e.process.as_ref().and_then(|p| p.name.as_deref()), Some("sshd"));
        assert_eq!(e.process.as_ref().and_then(|p| p.pid), Some(12750));
        assert_eq!(e.user.as_ref().map(|u| u.name.as_str()), Some("foo"));
        assert_eq!(e.event.category, Some(vec!["session".to_string()]));
        assert_eq!(e.host.as_ref().map(|h| h.hostname.as_str()), Some("web01"));
    }

    /// OpenSSH 9.8+ (Debian 13) logs per-connection messages as `sshd-session`, with rsyslog's
    /// default RFC 3339 timestamps: parsed as sshd's, the process name kept as logged.
    #[test]
    fn sshd_session_lines_are_parsed_as_sshd() {
        for (program, line) in [
            ("sshd-session", &b"2026-11-23T10:00:00.123456+07:00 web01 sshd-session[1234]: Failed password for invalid user admin from 192.0.2.1 port 41234 ssh2"[..]),
            ("sshd-auth", b"<38>Nov 23 10:00:01 web01 sshd-auth[99]: Failed password for root from 192.0.2.1 port 41235 ssh2"),
        ] {
            let e = line_event(line, false, NOW, 1, &who(), &opts(LineFormat::Auto));
            assert_eq!(e.process.as_ref().and_then(|p| p.name.as_deref()), Some(program));
            assert_eq!(e.event.category, Some(vec!["authentication".to_string()]), "{program}");
            assert_eq!(e.event.outcome.as_deref(), Some("failure"), "{program}");
            assert_eq!(e.source.as_ref().and_then(|s| s.ip), Some("192.0.2.1".parse().expect("ip")));
            assert!(e.user.is_some(), "{program}");
        }
    }

    /// nginx's `access_log syslog:server=...`: the syslog message is an access-log line.
    #[test]
    fn web_server_access_lines_over_syslog_are_parsed() {
        let line = br#"<190>Nov 23 10:00:04 web01 nginx: 203.0.113.9 - - [23/Nov/2026:10:00:04 +0700] "GET /wp-login.php HTTP/1.1" 404 0 "-" "Nikto""#;
        let e = line_event(line, false, NOW, 1, &who(), &opts(LineFormat::Auto));
        assert_eq!(e.process.as_ref().and_then(|p| p.name.as_deref()), Some("nginx"));
        assert_eq!(e.url.as_ref().and_then(|u| u.original.as_deref()), Some("/wp-login.php"));
        assert_eq!(e.source.as_ref().and_then(|s| s.ip), Some("203.0.113.9".parse().expect("ip")));
        assert_eq!(e.event.category, Some(vec!["web".to_string()]));
    }

    #[test]
    fn log_event_ids_hash_the_sensor_id_with_a_log_suffix() {
        assert_eq!(log_event_id("s1", 5), canh_event::event_id("s1/log", 5));
        let long = "x".repeat(300);
        assert_eq!(log_event_id(&long, 5), canh_event::event_id(&format!("{long}/log"), 5));
        assert_ne!(log_event_id("s1", 5), canh_event::event_id("s1", 5));
        for sensor_id in ["s1", long.as_str(), ""] {
            let who =
                Identity { sensor_id: sensor_id.into(), tenant: "t".into(), community_id_seed: 0 };
            let constants = record::JsonConstants::new(&who);
            assert_eq!(constants.log_event_id(7), log_event_id_bytes(sensor_id, 7));
        }
    }

    #[test]
    fn utc_offsets() {
        assert_eq!(parse_utc_offset("+07:00"), Some(25_200));
        assert_eq!(parse_utc_offset("-0530"), Some(-19_800));
        assert_eq!(parse_utc_offset("UTC"), Some(0));
        assert_eq!(parse_utc_offset("+7"), None);
        assert_eq!(parse_utc_offset("+25:00"), None);
        assert_eq!(parse_utc_offset(""), None);
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(LineFormat::parse("nginx"), Some(LineFormat::Access));
        assert_eq!(LineFormat::parse("xml"), None);
        for name in LineFormat::NAMES {
            assert!(LineFormat::parse(name).is_some());
        }
    }

    proptest::proptest! {
        #[test]
        fn program_parsers_never_panic(
            prefix in proptest::sample::select(vec![
                "", "Accepted password for ", "Failed publickey for invalid user ",
                "Connection closed by ", "Received disconnect from ", "Disconnecting ",
                "pam_unix(sshd:auth): authentication failure; ", "session opened for user ",
                " x : TTY=", "(root) CMD (", "new user: ", "add '", "IN=", "PAM ",
                "message repeated 2 times: [ ", "user ", "password for '", "(to ",
            ]),
            tail in "\\PC{0,80}",
        ) {
            let text = format!("{prefix}{tail}");
            for program in ["sshd", "sudo", "su", "usermod", "passwd", "cron", "kernel", "ftpd", "su(pam_unix)"] {
                let mut e = LogEvent::default();
                program_into(program, &text, &mut e);
            }
        }

        #[test]
        fn byte_splits_as_str_splits(text in "[ab:/( \\]é]{0,12}") {
            for sep in [' ', '(', ']', ':'] {
                proptest::prop_assert_eq!(split_once_byte(&text, sep as u8), text.split_once(sep));
            }
            proptest::prop_assert_eq!(split_once_byte_of(&text, b':', b'/'), text.split_once([':', '/']));
            let mut parts = text.splitn(4, [':', '/']);
            let pieces = (parts.next(), parts.next(), parts.next(), parts.next());
            let ours = split_once_byte_of(&text, b':', b'/').and_then(|(day, rest)| {
                let (month, rest) = split_once_byte_of(rest, b':', b'/')?;
                let (year, clock) = split_once_byte_of(rest, b':', b'/')?;
                Some((day, month, year, clock))
            });
            let theirs = match pieces {
                (Some(a), Some(b), Some(c), Some(d)) => Some((a, b, c, d)),
                _ => None,
            };
            proptest::prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn any_bytes_in_any_format_give_one_event(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            format in proptest::sample::select(vec![LineFormat::Syslog, LineFormat::Json, LineFormat::Access, LineFormat::Error]),
        ) {
            let e = line_event(&bytes, false, NOW, 9, &who(), &opts(format));
            proptest::prop_assert!(e.event.original.is_some());
        }

        #[test]
        fn any_bytes_give_exactly_one_event(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let e = line_event(&bytes, false, NOW, 9, &who(), &opts(LineFormat::Auto));
            proptest::prop_assert!(e.event.original.is_some());
        }
    }
}
