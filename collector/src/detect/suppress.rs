//! Suppressions as data: a TOML file of entries, each with the rule it silences, the group values it
//! must match, an expiry and a reason. An expired entry silences nothing.
//!
//! ```toml
//! [[suppress]]
//! rule = "c0a1b2c3-0000-4000-8000-000000000001"   # or "*" for every rule
//! group = { "source.ip" = "10.0.0.5" }            # every listed value must equal the alert's
//! expires = "2026-12-31T00:00:00Z"
//! reason = "authorised vulnerability scanner, ticket SOC-42"
//! ```

use canh_event::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressFile {
    #[serde(default)]
    suppress: Vec<SuppressEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressEntry {
    rule: String,
    #[serde(default)]
    group: BTreeMap<String, String>,
    expires: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub rule: String,
    pub group: BTreeMap<String, String>,
    pub expires: Timestamp,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SuppressError {
    #[error("parsing suppressions {path}: {message}")]
    Parse { path: String, message: String },
    #[error("suppressions {path}: entry {index}: {message}")]
    Invalid { path: String, index: usize, message: String },
}

pub fn parse(text: &str, path: &str) -> Result<Vec<Suppression>, SuppressError> {
    let file: SuppressFile = toml::from_str(text)
        .map_err(|e| SuppressError::Parse { path: path.to_string(), message: e.to_string() })?;
    let mut out = Vec::new();
    for (index, entry) in file.suppress.into_iter().enumerate() {
        let invalid = |message: String| SuppressError::Invalid {
            path: path.to_string(),
            index: index + 1,
            message,
        };
        if entry.reason.trim().is_empty() {
            return Err(invalid("reason must not be empty".into()));
        }
        if entry.rule.trim().is_empty() {
            return Err(invalid("rule must not be empty (use \"*\" for every rule)".into()));
        }
        let expires =
            Timestamp::parse(&entry.expires).map_err(|e| invalid(format!("expires: {e}")))?;
        out.push(Suppression {
            rule: entry.rule,
            group: entry.group,
            expires,
            reason: entry.reason,
        });
    }
    Ok(out)
}

/// The first live suppression that silences an alert of `rule` with `group`, at `now`.
pub fn find<'a>(
    suppressions: &'a [Suppression],
    rule: &str,
    group: &BTreeMap<String, String>,
    now: Timestamp,
) -> Option<&'a Suppression> {
    suppressions.iter().find(|s| {
        now < s.expires
            && (s.rule == "*" || s.rule == rule)
            && s.group.iter().all(|(field, value)| group.get(field) == Some(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[suppress]]
        rule = "r1"
        group = { "source.ip" = "10.0.0.5" }
        expires = "2026-12-31T00:00:00Z"
        reason = "scanner"
    "#;

    #[test]
    fn matches_rule_group_and_expiry() {
        let list = parse(FILE, "s.toml").expect("parses");
        let mut group = BTreeMap::new();
        group.insert("source.ip".to_string(), "10.0.0.5".to_string());
        let before = Timestamp::parse("2026-06-01T00:00:00Z").expect("ts");
        let after = Timestamp::parse("2027-01-01T00:00:00Z").expect("ts");
        assert!(find(&list, "r1", &group, before).is_some());
        assert!(find(&list, "r1", &group, after).is_none(), "expired");
        assert!(find(&list, "r2", &group, before).is_none(), "other rule");
        group.insert("source.ip".to_string(), "10.0.0.6".to_string());
        assert!(find(&list, "r1", &group, before).is_none(), "other source");
    }

    #[test]
    fn entries_need_reason_and_valid_expiry() {
        let no_reason = FILE.replace("\"scanner\"", "\"\"");
        assert!(parse(&no_reason, "s.toml").is_err());
        let bad_time = FILE.replace("2026-12-31T00:00:00Z", "next week");
        let err = parse(&bad_time, "s.toml").expect_err("refused");
        assert!(err.to_string().contains("entry 1"), "{err}");
    }
}
