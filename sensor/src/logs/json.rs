//! JSON lines: one object per line. The common field names of application loggers are mapped to
//! the event (`message`/`msg`, `@timestamp`/`timestamp`/`time`, `level`, `host`); the whole object
//! stays in `event.original`.

use super::record::LogEvent;
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

pub fn parse_into(line: &[u8], event: &mut LogEvent<'_>) -> Result<(), JsonError> {
    let value: Value = serde_json::from_slice(line)?;
    let Value::Object(object) = value else { return Err(JsonError::NotObject) };
    let text = |keys: &[&str]| {
        keys.iter().find_map(|k| object.get(*k).and_then(Value::as_str).map(str::to_string))
    };
    if let Some(message) = text(&["message", "msg", "log", "MESSAGE"]) {
        event.message = Some(Cow::Owned(message));
    }
    let time = ["@timestamp", "timestamp", "time", "ts"].iter().find_map(|k| object.get(*k));
    if let Some(ts) = time.and_then(json_time) {
        event.timestamp = ts;
    }
    let level = text(&["level", "log.level", "severity", "lvl"])
        .or_else(|| object.get("log")?.get("level")?.as_str().map(str::to_string));
    if let Some(level) = level {
        event.log.level = Some(Cow::Owned(level.to_lowercase()));
    }
    let host = text(&["hostname", "host"])
        .or_else(|| object.get("host")?.get("name")?.as_str().map(str::to_string));
    if let Some(hostname) = host {
        event.host = Some(Cow::Owned(hostname));
    }
    Ok(())
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
}
