//! Sigma logsources and field names onto Canh's events: which family of rules an event is routed to,
//! and how a rule's Sigma taxonomy field names are rewritten to Canh's ECS names. The table itself is
//! data (`rules/mappings/canh.yml`); this module reads it and applies it to parsed rules.

use crate::detect::fields;
use crate::detect::tape::{Leaf, ScalarValue, TapeEvent};
use rsigma_parser::{Detection, LogSource, SigmaRule};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// The mapping Canh ships with, compiled in so the collector runs without extra files.
pub const BUILTIN: &str = include_str!("../../../rules/mappings/canh.yml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    families: Vec<FamilyFile>,
    canh_fields: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyFile {
    name: String,
    sigma: Vec<BTreeMap<String, String>>,
    datasets: Vec<String>,
    #[serde(default)]
    when: Option<When>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

/// An extra routing condition: the event has `field` (and, if `values` is set, one of them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    pub field: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// One family of logsources that share datasets and field names.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    patterns: Vec<BTreeMap<String, String>>,
    /// Datasets (as `event.dataset` spells them) whose events this family's rules see. Empty with
    /// `any_event` set: every event (the identity mapping used for the oracle).
    pub datasets: Vec<String>,
    pub any_event: bool,
    pub when: Option<When>,
    pub fields: BTreeMap<String, String>,
}

/// The whole table.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub families: Vec<Family>,
    canh_fields: HashSet<String>,
    /// Accept every field name as it is (the identity mapping).
    accept_any_field: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("parsing field mapping: {0}")]
    Parse(String),
    #[error("field mapping family {family}: unknown dataset {dataset:?}")]
    Dataset { family: String, dataset: String },
}

/// Why a rule is not applicable to Canh's events. The reasons are a fixed set (for counting); the
/// detail says which logsource or field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplicable {
    pub reason: &'static str,
    pub detail: String,
}

impl Mapping {
    pub fn parse(text: &str) -> Result<Mapping, MappingError> {
        let file: MappingFile =
            yaml_serde::from_str(text).map_err(|e| MappingError::Parse(e.to_string()))?;
        let mut families = Vec::new();
        for family in file.families {
            for dataset in &family.datasets {
                if canh_event::Dataset::parse(dataset).is_none() {
                    return Err(MappingError::Dataset {
                        family: family.name.clone(),
                        dataset: dataset.clone(),
                    });
                }
            }
            families.push(Family {
                name: family.name,
                patterns: family.sigma,
                datasets: family.datasets,
                any_event: false,
                when: family.when,
                fields: family.fields,
            });
        }
        Ok(Mapping {
            families,
            canh_fields: file.canh_fields.into_iter().collect(),
            accept_any_field: false,
        })
    }

    /// The table Canh ships with.
    pub fn builtin() -> Mapping {
        // The built-in table is checked by a unit test; a broken one is a build defect.
        Mapping::parse(BUILTIN).expect("rules/mappings/canh.yml parses")
    }

    /// Every rule in one family, fields as written, evaluated on every event: how the Sigma oracle
    /// (flat events named the way the rules name them) is run.
    pub fn identity() -> Mapping {
        Mapping {
            families: vec![Family {
                name: "all".into(),
                patterns: Vec::new(),
                datasets: Vec::new(),
                any_event: true,
                when: None,
                fields: BTreeMap::new(),
            }],
            canh_fields: HashSet::new(),
            accept_any_field: true,
        }
    }

    pub fn is_canh_field(&self, name: &str) -> bool {
        self.canh_fields.contains(name) || name.starts_with("log.syslog.structured_data.")
    }

    /// The family whose patterns accept this logsource.
    pub fn family_for(&self, logsource: &LogSource) -> Result<usize, NotApplicable> {
        for (index, family) in self.families.iter().enumerate() {
            if family.any_event || family.patterns.iter().any(|p| pattern_accepts(p, logsource)) {
                return Ok(index);
            }
        }
        Err(NotApplicable {
            reason: "logsource_not_collected",
            detail: describe_logsource(logsource),
        })
    }

    /// Rewrite the rule's field names for `family`, or say which field Canh has no value for.
    pub fn apply(&self, family: usize, rule: &mut SigmaRule) -> Result<(), NotApplicable> {
        let family = &self.families[family];
        let mut missing = None;
        for detection in rule.detection.named.values_mut() {
            rename_fields(detection, &mut |name: &mut String| {
                if let Some(target) = family.fields.get(name.as_str()) {
                    *name = target.clone();
                } else if !self.accept_any_field && !self.is_canh_field(name) && missing.is_none() {
                    missing = Some(name.clone());
                }
            });
        }
        match missing {
            Some(field) => Err(NotApplicable {
                reason: "unmapped_field",
                detail: format!("{field} ({})", family.name),
            }),
            None => Ok(()),
        }
    }

    /// Indices of the families whose rules see this event.
    pub fn route(&self, event: &Value, out: &mut Vec<usize>) {
        self.route_among(event, 0..self.families.len(), out);
    }

    /// Like `route`, considering only the families in `candidates` (e.g. those holding rules).
    pub fn route_among(
        &self,
        event: &Value,
        candidates: impl IntoIterator<Item = usize>,
        out: &mut Vec<usize>,
    ) {
        let table = self.route_table(candidates);
        table.route(self, &fields::Root::new(event), out);
    }

    /// The families among `candidates` (in their order) for each dataset: built once per rule
    /// load, so an event's dataset is matched once instead of against every family's datasets.
    pub fn route_table(&self, candidates: impl IntoIterator<Item = usize>) -> RouteTable {
        let candidates: Vec<usize> = candidates.into_iter().collect();
        let mut datasets: Vec<&str> = Vec::new();
        for &index in &candidates {
            for dataset in &self.families[index].datasets {
                if !datasets.contains(&dataset.as_str()) {
                    datasets.push(dataset);
                }
            }
        }
        let families_for = |dataset: Option<&str>| -> Vec<usize> {
            candidates
                .iter()
                .copied()
                .filter(|&index| {
                    let family = &self.families[index];
                    family.any_event
                        || dataset.is_some_and(|d| family.datasets.iter().any(|f| f == d))
                })
                .collect()
        };
        RouteTable {
            by_dataset: datasets
                .iter()
                .map(|&dataset| (dataset.to_string(), families_for(Some(dataset))))
                .collect(),
            other: families_for(None),
        }
    }
}

/// Which families an event's dataset routes it to, before their `when` conditions
/// (`Mapping::route_table`).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    by_dataset: Vec<(String, Vec<usize>)>,
    /// Families that see every event (whatever its dataset, or without one).
    other: Vec<usize>,
}

impl RouteTable {
    /// The candidate families of an event of this dataset (`other` for an unknown one or none).
    fn families_of(&self, dataset: Option<&str>) -> &[usize] {
        dataset
            .and_then(|dataset| {
                self.by_dataset.iter().find(|(d, _)| d.len() == dataset.len() && d == dataset)
            })
            .map_or(&self.other, |(_, families)| families)
    }

    /// Indices of the families whose rules see this event: what `Mapping::route_among` answers
    /// for the table's candidates.
    pub fn route(&self, mapping: &Mapping, root: &fields::Root, out: &mut Vec<usize>) {
        out.clear();
        // Not `pointer("/event/dataset")`: it parses the pointer (and allocates) on every call.
        let dataset =
            root.get("event").and_then(|e| fields::get(e, "dataset")).and_then(Value::as_str);
        let families = self.families_of(dataset);
        // The field of the last `when` and its value: the log families all ask for
        // `process.name`, looked up once.
        let mut last_when: Option<(&str, Option<&Value>)> = None;
        for &index in families {
            let family = &mapping.families[index];
            if let (false, Some(when)) = (family.any_event, &family.when) {
                let value = match last_when {
                    Some((field, value)) if field == when.field => value,
                    _ => root.lookup(&when.field),
                };
                last_when = Some((&when.field, value));
                if !when_holds(when, value) {
                    continue;
                }
            }
            out.push(index);
        }
    }
}

impl RouteTable {
    /// `route` for an event of a tape.
    pub fn route_tape(&self, mapping: &Mapping, event: &TapeEvent, out: &mut Vec<usize>) {
        out.clear();
        let families = self.families_of(event.str_under(&["event", "dataset"]));
        let mut last_when: Option<(&str, Option<usize>)> = None;
        for &index in families {
            let family = &mapping.families[index];
            if let (false, Some(when)) = (family.any_event, &family.when) {
                let node = match last_when {
                    Some((field, node)) if field == when.field => node,
                    _ => event.lookup(&when.field),
                };
                last_when = Some((&when.field, node));
                if !when_holds_on_tape(when, node.map(|node| event.leaf(node))) {
                    continue;
                }
            }
            out.push(index);
        }
    }
}

/// `when_holds` for a value of a tape.
fn when_holds_on_tape(when: &When, value: Option<Leaf>) -> bool {
    let Some(value) = value else { return false };
    if when.values.is_empty() {
        return !matches!(value, Leaf::Scalar(ScalarValue::Null));
    }
    let Leaf::Str(text) = value else { return false };
    when.values.iter().any(|v| v.eq_ignore_ascii_case(text))
}

fn pattern_accepts(pattern: &BTreeMap<String, String>, logsource: &LogSource) -> bool {
    let keys = [
        ("category", logsource.category.as_deref()),
        ("product", logsource.product.as_deref()),
        ("service", logsource.service.as_deref()),
    ];
    for (key, value) in keys {
        match (pattern.get(key), value) {
            (None, None) => {}
            (Some(want), Some(have)) if want == "*" || want.eq_ignore_ascii_case(have) => {}
            _ => return false,
        }
    }
    true
}

fn describe_logsource(logsource: &LogSource) -> String {
    let mut parts = Vec::new();
    for (key, value) in [
        ("product", &logsource.product),
        ("category", &logsource.category),
        ("service", &logsource.service),
    ] {
        if let Some(value) = value {
            parts.push(format!("{key}:{value}"));
        }
    }
    parts.join(" ")
}

/// Whether `value` (the event's value of `when.field`) passes `when`.
fn when_holds(when: &When, value: Option<&Value>) -> bool {
    let Some(value) = value else { return false };
    if when.values.is_empty() {
        return !value.is_null();
    }
    let Some(text) = value.as_str() else { return false };
    when.values.iter().any(|v| v.eq_ignore_ascii_case(text))
}

/// A dotted path in a nested JSON object.
pub fn lookup<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = fields::get(event, path) {
        return Some(value);
    }
    // A path without a dot was the lookup above (a byte loop: no `memchr` call for a short path).
    if !path.bytes().any(|b| b == b'.') {
        return None;
    }
    fields::descend(event, path)
}

fn rename_fields(detection: &mut Detection, rename: &mut dyn FnMut(&mut String)) {
    match detection {
        Detection::AllOf(items) => {
            for item in items {
                if let Some(name) = item.field.name.as_mut() {
                    rename(name);
                }
            }
        }
        Detection::AnyOf(children) | Detection::And(children) => {
            for child in children {
                rename_fields(child, rename);
            }
        }
        Detection::Keywords(_) => {}
        Detection::ArrayMatch { field, body, .. } => {
            rename(field);
            // Fields inside the body are relative to one array member: left as written.
            let _ = body;
        }
        Detection::Conditional { named, .. } => {
            for child in named.values_mut() {
                rename_fields(child, rename);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_mapping_parses_and_routes() {
        let mapping = Mapping::builtin();
        let sshd: Value = serde_json::json!({
            "event": {"dataset": "log"}, "process": {"name": "sshd"}
        });
        let mut families = Vec::new();
        mapping.route(&sshd, &mut families);
        let names: Vec<&str> =
            families.iter().map(|&i| mapping.families[i].name.as_str()).collect();
        assert_eq!(names, ["linux_sshd", "application", "linux_auth", "linux_syslog"]);
        for program in ["sshd-session", "sshd-auth"] {
            let split: Value = serde_json::json!({
                "event": {"dataset": "log"}, "process": {"name": program}
            });
            families.clear();
            mapping.route(&split, &mut families);
            assert_eq!(mapping.families[families[0]].name, "linux_sshd", "{program}");
        }

        let flow = serde_json::json!({"event": {"dataset": "flow"}});
        mapping.route(&flow, &mut families);
        let names: Vec<&str> =
            families.iter().map(|&i| mapping.families[i].name.as_str()).collect();
        assert_eq!(names, ["network_connection", "firewall", "zeek_conn", "canh"]);
    }

    #[test]
    fn logsource_patterns_need_every_key() {
        let mapping = Mapping::builtin();
        let logsource =
            |product: Option<&str>, category: Option<&str>, service: Option<&str>| LogSource {
                product: product.map(String::from),
                category: category.map(String::from),
                service: service.map(String::from),
                ..Default::default()
            };
        let name =
            |ls: LogSource| mapping.family_for(&ls).map(|i| mapping.families[i].name.clone());
        assert_eq!(name(logsource(Some("linux"), None, Some("sshd"))).as_deref(), Ok("linux_sshd"));
        assert_eq!(name(logsource(Some("linux"), None, None)).as_deref(), Ok("linux_syslog"));
        assert_eq!(name(logsource(None, Some("dns"), None)).as_deref(), Ok("dns"));
        assert_eq!(name(logsource(Some("zeek"), None, Some("http"))).as_deref(), Ok("zeek_http"));
        let windows = name(logsource(Some("windows"), Some("process_creation"), None));
        assert_eq!(windows.expect_err("not collected").reason, "logsource_not_collected");
        let linux_proc = name(logsource(Some("linux"), Some("process_creation"), None));
        assert!(linux_proc.is_err());
    }

    /// Every field in the schema's golden events is known to the mapping, so a rule written with
    /// Canh's names is never skipped as unmapped.
    #[test]
    fn every_golden_field_is_a_canh_field() {
        let mapping = Mapping::builtin();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../event/tests/golden");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("golden dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name == "alert.json" || name == "sensor.json" {
                continue;
            }
            let value: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            let mut leaves = Vec::new();
            collect_leaves(&value, String::new(), &mut leaves);
            for leaf in leaves {
                assert!(mapping.is_canh_field(&leaf), "{name}: {leaf} missing from canh_fields");
                seen += 1;
            }
        }
        assert!(seen > 50);
    }

    fn collect_leaves(value: &Value, prefix: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let path =
                        if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    collect_leaves(child, path, out);
                }
            }
            Value::Array(items) if items.iter().any(Value::is_object) => {
                for item in items {
                    collect_leaves(item, prefix.clone(), out);
                }
            }
            _ => out.push(prefix),
        }
    }
}
