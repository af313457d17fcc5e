//! JSON lines: one object per line. The common field names of application loggers are mapped to
//! the event (`message`/`msg`, `@timestamp`/`timestamp`/`time`, `level`, `host`), and so are
//! journald's (`journalctl -o json`: `MESSAGE`, `__REALTIME_TIMESTAMP`, `_HOSTNAME`,
//! `SYSLOG_IDENTIFIER`, `_PID`, `PRIORITY`); a line naming its program has its message parsed by
//! that program's parser (sshd, sudo, ...). The whole object stays in `event.original`.

use super::record::{LogEvent, ProcessFields};
use super::{program_into, with_text};
use canh_event::Timestamp;
use serde_json::Value;
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("invalid json: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("json line is not an object")]
    NotObject,
}

pub fn parse_into<'a>(line: &'a [u8], event: &mut LogEvent<'a>) -> Result<(), JsonError> {
    let value: Value = serde_json::from_slice(line)?;
    let Value::Object(object) = value else { return Err(JsonError::NotObject) };
    let text = |keys: &[&str]| {
        keys.iter().find_map(|k| object.get(*k).and_then(Value::as_str).map(str::to_string))
    };
    let nested = |outer: &str, inner: &str| object.get(outer)?.get(inner);
    let time = ["@timestamp", "timestamp", "time", "ts"].iter().find_map(|k| object.get(*k));
    let journal_time = || {
        // journald's `__REALTIME_TIMESTAMP`: microseconds since the epoch, as a string.
        let micros: i64 = object.get("__REALTIME_TIMESTAMP")?.as_str()?.parse().ok()?;
        Some(Timestamp(micros.checked_mul(1_000)?))
    };
    if let Some(ts) = time.and_then(json_time).or_else(journal_time) {
        event.timestamp = ts;
    }
    let level = text(&["level", "log.level", "severity", "lvl"])
        .or_else(|| nested("log", "level")?.as_str().map(str::to_string))
        .or_else(|| journal_level(object.get("PRIORITY")?.as_str()?));
    if let Some(level) = level {
        event.log.level = Some(Cow::Owned(level.to_lowercase()));
    }
    let host = text(&["hostname", "host", "_HOSTNAME"])
        .or_else(|| nested("host", "name")?.as_str().map(str::to_string))
        .or_else(|| nested("host", "hostname")?.as_str().map(str::to_string));
    if let Some(hostname) = host {
        event.host = Some(Cow::Owned(hostname));
    }
    // The program that logged the line (journald's SYSLOG_IDENTIFIER, ECS process.name, ...): its
    // message goes through that program's parser, as a syslog line's would.
    let program = text(&["SYSLOG_IDENTIFIER", "program", "appname", "ident", "_COMM"])
        .or_else(|| nested("process", "name")?.as_str().map(str::to_string))
        .filter(|p| !p.is_empty());
    let pid = ["_PID", "SYSLOG_PID", "pid"]
        .iter()
        .find_map(|k| object.get(*k))
        .or_else(|| nested("process", "pid"))
        .and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()))
        .and_then(|p| u32::try_from(p).ok());
    if let Some(name) = &program {
        event.process =
            Some(ProcessFields { name: Some(Cow::Owned(name.clone())), pid, command_line: None });
    }
    if let Some(message) = text(&["message", "msg", "log", "MESSAGE"]) {
        match &program {
            Some(program) => with_text(Cow::Owned(message), event, |message, event| {
                program_into(program, message, event);
                event.message = Some(Cow::Borrowed(message));
            }),
            None => event.message = Some(Cow::Owned(message)),
        }
    }
    Ok(())
}

/// journald's PRIORITY (a syslog severity, 0-7) as a level name.
fn journal_level(priority: &str) -> Option<String> {
    const NAMES: [&str; 8] =
        ["emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug"];
    NAMES.get(priority.parse::<usize>().ok()?).map(|n| n.to_string())
}

/// An RFC 3339 string, or seconds since the epoch as a number.
fn json_time(value: &Value) -> Option<Timestamp> {
    match value {
        Value::String(s) => Timestamp::parse(s).ok(),
        Value::Number(n) => {
            let secs = n.as_f64()?;
            if !(0.0..1e11).contains(&secs) {
                return None;
            }
            Some(Timestamp((secs * 1e9) as i64))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::into_event;
    use canh_event::Event;

    fn parse_into(line: &[u8], event: &mut Event) -> Result<(), JsonError> {
        into_event(event, |f| super::parse_into(line, f))
    }

    use canh_event::Dataset;

    #[test]
    fn maps_common_fields() {
        let mut e = Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t");
        parse_into(
            br#"{"time":"2024-05-01T10:00:00+07:00","level":"WARN","msg":"disk low","host":"db1"}"#,
            &mut e,
        )
        .expect("parses");
        assert_eq!(e.timestamp, Timestamp::parse("2024-05-01T03:00:00Z").expect("valid"));
        assert_eq!(e.message.as_deref(), Some("disk low"));
        assert_eq!(e.log.as_ref().and_then(|l| l.level.as_deref()), Some("warn"));
        assert_eq!(e.host.as_ref().map(|h| h.hostname.as_str()), Some("db1"));
        let mut e = Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t");
        parse_into(br#"{"ts":1700000000.5}"#, &mut e).expect("parses");
        assert_eq!(e.timestamp, Timestamp(1_700_000_000_500_000_000));
        assert!(parse_into(b"[1,2]", &mut e).is_err());
        assert!(parse_into(b"{\"a\":", &mut e).is_err());
    }

    /// `journalctl -o json` output of an OpenSSH 9.8+ host, and an ECS-style line naming its
    /// process: the sshd parser runs on their messages (an escaped quote in the second).
    #[test]
    fn journald_and_ecs_lines_run_the_program_parser() {
        let mut e = Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t");
        parse_into(
            br#"{"__REALTIME_TIMESTAMP":"1763892000123456","_HOSTNAME":"web01","SYSLOG_IDENTIFIER":"sshd-session","_PID":"1234","PRIORITY":"6","MESSAGE":"Failed password for root from 192.0.2.1 port 41234 ssh2"}"#,
            &mut e,
        )
        .expect("parses");
        assert_eq!(e.timestamp, Timestamp(1_763_892_000_123_456_000));
        assert_eq!(e.host.as_ref().map(|h| h.hostname.as_str()), Some("web01"));
        let process = e.process.as_ref().expect("process");
        assert_eq!((process.name.as_deref(), process.pid), (Some("sshd-session"), Some(1234)));
        assert_eq!(e.log.as_ref().and_then(|l| l.level.as_deref()), Some("informational"));
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
        assert_eq!(e.source.as_ref().and_then(|s| s.ip), Some("192.0.2.1".parse().expect("ip")));
        assert_eq!(e.user.as_ref().map(|u| u.name.as_str()), Some("root"));

        let mut e = Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t");
        parse_into(
            br#"{"@timestamp":"2026-11-23T10:00:00Z","host":{"name":"web02"},"process":{"name":"sshd","pid":77},"message":"Invalid user \"x\" from 192.0.2.9 port 5000"}"#,
            &mut e,
        )
        .expect("parses");
        assert_eq!(e.process.as_ref().and_then(|p| p.pid), Some(77));
        assert_eq!(e.event.action.as_deref(), Some("invalid-user"));
        assert_eq!(e.source.as_ref().and_then(|s| s.ip), Some("192.0.2.9".parse().expect("ip")));
        assert_eq!(e.message.as_deref(), Some("Invalid user \"x\" from 192.0.2.9 port 5000"));
    }
}
