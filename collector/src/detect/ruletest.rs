//! Rule tests as data, and the lint Canh's own rule pack must pass. Each rule file `x.yml` has a
//! `x.test.yml` beside it:
//!
//! ```yaml
//! rule: 5b0c1c6e-...            # the rule (or correlation) whose alert the cases are about
//! must_match:
//!   - name: five failures in two minutes
//!     events: [ {...}, {...} ]  # Canh events (JSON objects); run in order on a fresh detector
//! must_not_match:
//!   - name: four failures
//!     events: [ ... ]
//! ```
//!
//! Events are decoded as Canh events and encoded again before detection, so a field that is not in
//! the schema vanishes and a case relying on it fails. Missing `event.id`, `@timestamp` (case start
//! + one second per event), `observer`, `organization` and `canh` are filled in.

use super::load::{self, LoadedRules};
use super::mapping::Mapping;
use super::{Detector, Settings};
use canh_event::{Event, Timestamp};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    pub rule: String,
    #[serde(default)]
    pub must_match: Vec<Case>,
    #[serde(default)]
    pub must_not_match: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub events: Vec<Value>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub rule_file: String,
    pub case: String,
    pub expect_match: bool,
    pub passed: bool,
    pub detail: String,
}

/// Base time of every case: test files need no timestamps unless timing matters.
const CASE_START: &str = "2026-01-01T00:00:00Z";

/// Run every case of one rule file's tests. `rule_text` is the rule file, `test_text` its test file.
pub fn run(rule_path: &str, rule_text: &str, test_text: &str) -> Vec<CaseResult> {
    let failed = |case: &str, detail: String| CaseResult {
        rule_file: rule_path.to_string(),
        case: case.to_string(),
        expect_match: true,
        passed: false,
        detail,
    };
    let tests: TestFile = match yaml_serde::from_str(test_text) {
        Ok(tests) => tests,
        Err(err) => return vec![failed("(test file)", format!("parsing the test file: {err}"))],
    };
    if tests.must_match.is_empty() || tests.must_not_match.is_empty() {
        return vec![failed("(test file)", "needs must_match and must_not_match cases".into())];
    }
    let mut results = Vec::new();
    let cases = tests
        .must_match
        .iter()
        .map(|c| (c, true))
        .chain(tests.must_not_match.iter().map(|c| (c, false)));
    for (case, expect_match) in cases {
        let mut loaded = LoadedRules::default();
        load::load_text(rule_text, rule_path, &Mapping::builtin(), &mut loaded);
        if let Some(err) = loaded.report.errors.first() {
            results.push(failed(&case.name, format!("rule file does not load: {err}")));
            continue;
        }
        let mut detector = Detector::new(loaded, Mapping::builtin(), Settings::default());
        let events = match prepare(&case.events) {
            Ok(events) => events,
            Err(detail) => {
                results.push(failed(&case.name, detail));
                continue;
            }
        };
        let alerts = detector.process(&events, Timestamp(0));
        let raised =
            alerts.iter().filter(|a| a.rule.as_ref().is_some_and(|r| r.id == tests.rule)).count();
        let passed = (raised > 0) == expect_match;
        results.push(CaseResult {
            rule_file: rule_path.to_string(),
            case: case.name.clone(),
            expect_match,
            passed,
            detail: format!("{raised} alert(s) of {}", tests.rule),
        });
    }
    results
}

/// Fill in what every event carries, then pass each through Canh's schema.
fn prepare(events: &[Value]) -> Result<Vec<Value>, String> {
    let start = Timestamp::parse(CASE_START).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let mut event = event.clone();
        let Some(object) = event.as_object_mut() else {
            return Err(format!("event {index} is not a JSON object"));
        };
        let at = Timestamp(start.nanos() + index as i64 * 1_000_000_000);
        object.entry("@timestamp").or_insert_with(|| Value::String(at.to_string()));
        object.entry("observer").or_insert_with(|| serde_json::json!({"id": "test-sensor"}));
        object.entry("organization").or_insert_with(|| serde_json::json!({"id": "test-tenant"}));
        object.entry("canh").or_insert_with(|| serde_json::json!({"schema_version": 1}));
        let info = object.entry("event").or_insert_with(|| serde_json::json!({}));
        if let Some(info) = info.as_object_mut() {
            info.entry("id").or_insert_with(|| Value::String(format!("test-event-{index}")));
            info.entry("kind").or_insert_with(|| Value::String("event".into()));
        }
        let bytes = event.to_string();
        let decoded = Event::from_json(bytes.as_bytes())
            .map_err(|e| format!("event {index} is not a Canh event: {e}"))?;
        let reencoded: Value =
            serde_json::to_value(&decoded).map_err(|e| format!("event {index}: {e}"))?;
        // Timestamps come back in one spelling (nine fractional digits); compare the rest.
        event["@timestamp"] = reencoded["@timestamp"].clone();
        if reencoded != event {
            return Err(format!(
                "event {index} has fields outside Canh's schema: {}",
                first_extra(&event, &reencoded).unwrap_or_default()
            ));
        }
        out.push(reencoded);
    }
    Ok(out)
}

/// The first path present in `given` but absent or different in `kept`.
fn first_extra(given: &Value, kept: &Value) -> Option<String> {
    let (Value::Object(given), Value::Object(kept)) = (given, kept) else {
        return if given == kept { None } else { Some(String::new()) };
    };
    for (key, value) in given {
        match kept.get(key) {
            None => return Some(key.clone()),
            Some(other) if other != value => {
                let inner = first_extra(value, other).unwrap_or_default();
                return Some(if inner.is_empty() { key.clone() } else { format!("{key}.{inner}") });
            }
            _ => {}
        }
    }
    None
}

/// What Canh's own rule pack must satisfy beyond loading: ATT&CK tags, a test file, ids on rules
/// correlations reference, group-by and value fields that exist in the schema.
pub fn lint_pack(rule_path: &str, rule_text: &str, has_test_file: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mapping = Mapping::builtin();
    let mut loaded = LoadedRules::default();
    load::load_text(rule_text, rule_path, &mapping, &mut loaded);
    for err in &loaded.report.errors {
        problems.push(err.to_string());
    }
    for (reason, details) in &loaded.report.skipped_details {
        for detail in details.keys() {
            problems.push(format!("{rule_path}: a rule is skipped: {reason} {detail}"));
        }
    }
    if !has_test_file {
        problems.push(format!("{rule_path}: no test file beside it (.test.yml)"));
    }
    let has_attack = |tags: &[String]| !super::technique_ids(tags).is_empty();
    let referenced: Vec<String> =
        loaded.correlations.iter().flat_map(|(c, _)| c.rules.clone()).collect();
    for rule in &loaded.rules {
        let name = &rule.rule.title;
        let is_base =
            rule.rule.id.iter().chain(rule.rule.name.iter()).any(|r| referenced.contains(r));
        if !is_base && !has_attack(&rule.rule.tags) {
            problems.push(format!("{rule_path}: rule {name:?} has no attack.tNNNN tag"));
        }
        if rule.rule.id.is_none() {
            problems.push(format!("{rule_path}: rule {name:?} has no id"));
        }
    }
    for (correlation, _) in &loaded.correlations {
        let name = &correlation.title;
        if !has_attack(&correlation.tags) {
            problems.push(format!("{rule_path}: correlation {name:?} has no attack.tNNNN tag"));
        }
        if correlation.id.is_none() {
            problems.push(format!("{rule_path}: correlation {name:?} has no id"));
        }
        let mut fields = correlation.group_by.clone();
        if let rsigma_parser::CorrelationCondition::Threshold { field: Some(f), .. } =
            &correlation.condition
        {
            fields.extend(f.iter().cloned());
        }
        for field in fields {
            if !mapping.is_canh_field(&field) {
                problems.push(format!(
                    "{rule_path}: correlation {name:?} uses {field:?}, not a field of Canh's events"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "title: t\nid: r1\nlogsource: {product: canh, service: flow}\n\
        tags: [attack.t1046]\ndetection:\n  sel: {flow.state: REJ}\n  condition: sel\n";

    #[test]
    fn cases_pass_and_fail_as_written() {
        let tests = "rule: r1\nmust_match:\n  - name: rej\n    events:\n      - {event: {dataset: flow}, flow: {state: REJ}}\n\
            must_not_match:\n  - name: sf\n    events:\n      - {event: {dataset: flow}, flow: {state: SF}}\n";
        let results = run("t.yml", RULE, tests);
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.passed), "{results:?}");
        // The same events with the expectations swapped must fail: the harness can say no.
        let swapped = tests
            .replace("must_match", "x")
            .replace("must_not_match", "must_match")
            .replace("x:", "must_not_match:");
        let results = run("t.yml", RULE, &swapped);
        assert!(results.iter().all(|r| !r.passed), "{results:?}");
    }

    #[test]
    fn fields_outside_the_schema_fail_the_case() {
        let tests = "rule: r1\nmust_match:\n  - name: typo\n    events:\n      - {event: {dataset: flow}, flow: {stat: REJ}}\n\
            must_not_match:\n  - name: sf\n    events:\n      - {event: {dataset: flow}, flow: {state: SF}}\n";
        let results = run("t.yml", RULE, tests);
        assert!(!results[0].passed);
        assert!(results[0].detail.contains("flow.stat"), "{}", results[0].detail);
    }

    #[test]
    fn pack_lint_wants_tags_and_tests() {
        let untagged = RULE.replace("tags: [attack.t1046]\n", "");
        let problems = lint_pack("t.yml", &untagged, false);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(lint_pack("t.yml", RULE, true).is_empty());
    }
}
