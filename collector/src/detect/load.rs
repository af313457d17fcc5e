//! Loading Sigma rule files: each file parsed, linted, mapped and compiled on its own, so one broken
//! file is reported (file:line) and skipped while the others load. No file can crash the loader:
//! the library calls run under `catch_unwind` as a last line of defence.

use super::mapping::{Mapping, NotApplicable};
use rsigma_eval::CompiledRule;
use rsigma_parser::{
    ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType, Modifier,
    SigmaCollection, SigmaRule,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

/// A rule file that could not be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

/// A detection rule ready for an engine: compiled, with the family it belongs to.
#[derive(Debug)]
pub struct LoadedRule {
    pub family: usize,
    pub compiled: CompiledRule,
    /// The mapped rule, kept for the correlation engine (which needs rule identities).
    pub rule: SigmaRule,
    pub path: String,
}

/// What a directory held and what became of it.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub files: usize,
    /// Detection and correlation rules parsed from files that parsed.
    pub rules_parsed: usize,
    /// Rules that will run on Canh's events.
    pub applicable: usize,
    /// Skip reason -> number of rules.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Skip reason -> a few details (logsource, field), with counts.
    pub skipped_details: BTreeMap<&'static str, BTreeMap<String, usize>>,
    /// Files rejected whole (parse error, lint error).
    pub errors: Vec<FileError>,
    /// Problems that did not stop a rule from loading.
    pub warnings: Vec<FileError>,
}

impl LoadReport {
    /// The compatibility report as text: totals, then skip reasons with counts and the most common
    /// details.
    pub fn render(&self) -> String {
        let report = self;
        let mut out = String::new();
        let skipped: usize = report.skipped.values().sum();
        out.push_str(&format!("files: {}\n", report.files));
        out.push_str(&format!("files rejected: {}\n", report.errors.len()));
        out.push_str(&format!("rules loaded (parsed): {}\n", report.rules_parsed));
        out.push_str(&format!("rules applicable to Canh's datasets: {}\n", report.applicable));
        out.push_str(&format!("rules skipped: {skipped}\n"));
        for (reason, count) in &report.skipped {
            out.push_str(&format!("  {reason}: {count}\n"));
            let mut details: Vec<(&String, &usize)> =
                report.skipped_details.get(reason).map(|d| d.iter().collect()).unwrap_or_default();
            details.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (detail, count) in details.iter().take(8) {
                out.push_str(&format!("    {count:>5}  {detail}\n"));
            }
            if details.len() > 8 {
                out.push_str(&format!("    ... {} more\n", details.len() - 8));
            }
        }
        for err in report.errors.iter().take(20) {
            out.push_str(&format!("rejected: {err}\n"));
        }
        out
    }

    fn skip(&mut self, why: NotApplicable) {
        *self.skipped.entry(why.reason).or_default() += 1;
        *self.skipped_details.entry(why.reason).or_default().entry(why.detail).or_default() += 1;
    }
}

/// Every rule a directory yields.
#[derive(Debug, Default)]
pub struct LoadedRules {
    pub rules: Vec<LoadedRule>,
    pub correlations: Vec<(CorrelationRule, String)>,
    pub report: LoadReport,
}

/// Rule files under `dir`, sorted: `*.yml` / `*.yaml`, leaving out rule test files (`*.test.yml`)
/// and the `mappings` folder.
pub fn rule_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() {
                if name != "mappings" && !name.starts_with('.') {
                    pending.push(path);
                }
                continue;
            }
            let is_yaml = name.ends_with(".yml") || name.ends_with(".yaml");
            if is_yaml && !name.ends_with(".test.yml") && !name.ends_with(".test.yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Load every rule file under `dir`. Only an unreadable directory is an error; everything about
/// single files lands in the report.
/// The rules of several directories as one set (e.g. Canh's pack and SigmaHQ), each loaded by
/// [`load_dir`]; their reports are not merged.
pub fn load_dirs(dirs: &[&Path], mapping: &Mapping) -> std::io::Result<LoadedRules> {
    let mut all = LoadedRules::default();
    for dir in dirs {
        let loaded = load_dir(dir, mapping)?;
        all.rules.extend(loaded.rules);
        all.correlations.extend(loaded.correlations);
    }
    Ok(all)
}

pub fn load_dir(dir: &Path, mapping: &Mapping) -> std::io::Result<LoadedRules> {
    let mut loaded = LoadedRules::default();
    for path in rule_files(dir)? {
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => load_text(&text, &shown, mapping, &mut loaded),
            Err(err) => {
                loaded.report.files += 1;
                loaded.report.errors.push(FileError {
                    path: shown,
                    line: 0,
                    message: format!("reading: {err}"),
                });
            }
        }
    }
    resolve_correlations(&mut loaded);
    Ok(loaded)
}

/// Load the rules of one file's text into `loaded`. The whole file is rejected on a parse or lint
/// error; single rules are skipped when Canh has no events for them.
pub fn load_text(text: &str, path: &str, mapping: &Mapping, loaded: &mut LoadedRules) {
    loaded.report.files += 1;
    let collection = match parse(text) {
        Ok(collection) => collection,
        Err(message) => {
            let line = error_line(&message, text);
            loaded.report.errors.push(FileError { path: path.to_string(), line, message });
            return;
        }
    };
    loaded.report.rules_parsed += collection.rules.len() + collection.correlations.len();
    if let Err(err) = lint(&collection, text, path) {
        loaded.report.errors.push(err);
        for _ in 0..collection.rules.len() + collection.correlations.len() {
            loaded.report.skip(NotApplicable { reason: "lint_error", detail: path.to_string() });
        }
        return;
    }
    loaded.report.warnings.extend(warnings(&collection, text, path));
    for rule in collection.rules {
        let family = match mapping.family_for(&rule.logsource) {
            Ok(family) => family,
            Err(why) => {
                loaded.report.skip(why);
                continue;
            }
        };
        let mut mapped = rule;
        if let Err(why) = mapping.apply(family, &mut mapped) {
            loaded.report.skip(why);
            continue;
        }
        let compiled =
            std::panic::catch_unwind(AssertUnwindSafe(|| rsigma_eval::compile_rule(&mapped)));
        match compiled {
            Ok(Ok(compiled)) => {
                loaded.rules.push(LoadedRule {
                    family,
                    compiled,
                    rule: mapped,
                    path: path.to_string(),
                });
            }
            Ok(Err(err)) => {
                let line = line_of(text, &mapped.title);
                loaded.report.warnings.push(FileError {
                    path: path.to_string(),
                    line,
                    message: format!("rule {:?} does not compile: {err}", mapped.title),
                });
                loaded.report.skip(NotApplicable {
                    reason: "compile_error",
                    detail: err.to_string().chars().take(80).collect(),
                });
            }
            Err(_) => {
                loaded.report.skip(NotApplicable {
                    reason: "compile_error",
                    detail: "the compiler panicked".into(),
                });
            }
        }
    }
    for correlation in collection.correlations {
        loaded.correlations.push((correlation, path.to_string()));
    }
}

fn parse(text: &str) -> Result<SigmaCollection, String> {
    let parsed = std::panic::catch_unwind(|| rsigma_parser::parse_sigma_yaml(text));
    match parsed {
        Err(_) => Err("the sigma parser panicked on this file".into()),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(collection)) => match collection.errors.first() {
            Some(first) => Err(first.clone()),
            None if collection.rules.is_empty()
                && collection.correlations.is_empty()
                && collection.filters.is_empty() =>
            {
                Err("no sigma rule in this file".into())
            }
            None => Ok(collection),
        },
    }
}

/// Checks Canh makes beyond the parser's, for the known limits of rsigma 0.23.0.
fn lint(collection: &SigmaCollection, text: &str, path: &str) -> Result<(), FileError> {
    for correlation in &collection.correlations {
        let temporal = matches!(
            correlation.correlation_type,
            CorrelationType::Temporal | CorrelationType::TemporalOrdered
        );
        // Without `condition:` 0.23.0 defaults a temporal correlation to `gte: 1`, which fires on
        // any single rule; `gte: 1` written out is the same misfire.
        if temporal && single_rule_suffices(&correlation.condition) {
            return Err(FileError {
                path: path.to_string(),
                line: line_of(text, "correlation:"),
                message: format!(
                    "temporal correlation {:?} needs an explicit condition requiring every rule \
                     (e.g. `condition: {{gte: {}}}`)",
                    correlation.title,
                    correlation.rules.len()
                ),
            });
        }
    }
    Ok(())
}

fn single_rule_suffices(condition: &CorrelationCondition) -> bool {
    match condition {
        CorrelationCondition::Threshold { predicates, .. } => predicates.iter().any(|(op, n)| {
            matches!(op, ConditionOperator::Gte) && *n <= 1
                || matches!(op, ConditionOperator::Gt) && *n == 0
        }),
        CorrelationCondition::Extended(_) => false,
    }
}

/// Problems that do not stop loading but that a rule author should know about.
fn warnings(collection: &SigmaCollection, text: &str, path: &str) -> Vec<FileError> {
    let mut out = Vec::new();
    for rule in &collection.rules {
        let uses_windash = rule.detection.named.values().any(detection_uses_windash);
        if uses_windash {
            out.push(FileError {
                path: path.to_string(),
                line: line_of(text, "|windash"),
                message: format!(
                    "rule {:?}: windash in rsigma 0.23 does not expand '/' (fixed in 0.26)",
                    rule.title
                ),
            });
        }
    }
    out
}

fn detection_uses_windash(detection: &rsigma_parser::Detection) -> bool {
    use rsigma_parser::Detection;
    match detection {
        Detection::AllOf(items) => {
            items.iter().any(|item| item.field.modifiers.contains(&Modifier::WindAsh))
        }
        Detection::AnyOf(children) | Detection::And(children) => {
            children.iter().any(detection_uses_windash)
        }
        Detection::ArrayMatch { body, .. } => detection_uses_windash(body),
        Detection::Conditional { named, .. } => named.values().any(detection_uses_windash),
        Detection::Keywords(_) => false,
    }
}

/// Drop correlations whose rules did not load (reported), keep the rest.
fn resolve_correlations(loaded: &mut LoadedRules) {
    let mut known: HashSet<String> = HashSet::new();
    for rule in &loaded.rules {
        known.extend(rule.rule.id.iter().cloned());
        known.extend(rule.rule.name.iter().cloned());
    }
    for (correlation, _) in &loaded.correlations {
        known.extend(correlation.id.iter().cloned());
        known.extend(correlation.name.iter().cloned());
    }
    let mut kept = Vec::new();
    for (correlation, path) in std::mem::take(&mut loaded.correlations) {
        let missing = correlation.rules.iter().find(|r| !known.contains(r.as_str()));
        match missing {
            Some(missing) => loaded.report.skip(NotApplicable {
                reason: "correlation_rule_not_loaded",
                detail: missing.clone(),
            }),
            None => kept.push((correlation, path)),
        }
    }
    loaded.correlations = kept;
    loaded.report.applicable = loaded.rules.len() + loaded.correlations.len();
}

/// 1-based line of the first occurrence of `needle`, or 1.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|line| line.contains(needle)).map(|i| i + 1).unwrap_or(1)
}

/// The line a parser message names ("... at line 7 column 3"), else 1.
fn error_line(message: &str, _text: &str) -> usize {
    let Some(at) = message.find("line ") else { return 1 };
    let digits: String = message[at + 5..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap_or(1)
}

/// Rule identities (id and name) referenced by correlations, and whether the referenced rule
/// should still raise alerts of its own (`generate: true`).
pub fn correlation_refs(correlations: &[(CorrelationRule, String)]) -> HashMap<String, bool> {
    let mut refs: HashMap<String, bool> = HashMap::new();
    for (correlation, _) in correlations {
        for rule in &correlation.rules {
            let generate = refs.entry(rule.clone()).or_insert(false);
            *generate |= correlation.generate;
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> LoadedRules {
        let mut loaded = LoadedRules::default();
        load_text(text, "t.yml", &Mapping::builtin(), &mut loaded);
        resolve_correlations(&mut loaded);
        loaded
    }

    #[test]
    fn broken_yaml_is_reported_with_its_line() {
        let loaded = load("title: x\nlogsource:\n  product: linux\ndetection: [unclosed\n");
        assert_eq!(loaded.rules.len(), 0);
        assert_eq!(loaded.report.errors.len(), 1);
        let err = &loaded.report.errors[0];
        assert_eq!(err.path, "t.yml");
        assert!(err.line >= 4, "{err}");
    }

    #[test]
    fn hostile_files_never_panic() {
        let inputs = [
            "",
            "---\n---\n",
            "title: [",
            "title: x\ndetection:\n  condition: (((((((((",
            "title: x\nlogsource: {product: linux}\ndetection:\n  sel: {a|nope: 1}\n  condition: sel\n",
            "\u{0}\u{1}\u{2}",
            "correlation: {type: temporal}\n",
        ];
        for input in inputs {
            let loaded = load(input);
            assert!(loaded.rules.is_empty(), "{input:?}");
            assert!(
                !loaded.report.errors.is_empty() || !loaded.report.skipped.is_empty(),
                "{input:?}"
            );
        }
    }

    #[test]
    fn temporal_without_condition_is_refused() {
        let text = "title: a\nid: a\nlogsource: {product: canh, service: flow}\n\
            detection:\n  sel: {flow.state: S0}\n  condition: sel\n---\n\
            title: b\nid: b\nlogsource: {product: canh, service: flow}\n\
            detection:\n  sel: {flow.state: REJ}\n  condition: sel\n---\n\
            title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [source.ip]\n  timespan: 5m\n";
        let loaded = load(text);
        assert!(loaded.rules.is_empty());
        assert_eq!(loaded.report.errors.len(), 1);
        assert!(loaded.report.errors[0].message.contains("explicit condition"));
        assert_eq!(loaded.report.errors[0].line, 16, "the line of `correlation:`");
    }

    #[test]
    fn rules_for_other_platforms_are_skipped_with_reasons() {
        let text = "title: w\nlogsource: {product: windows, category: process_creation}\n\
            detection:\n  sel: {Image|endswith: '\\cmd.exe'}\n  condition: sel\n---\n\
            title: d\nlogsource: {category: dns}\ndetection:\n  sel: {query|endswith: '.onion'}\n  condition: sel\n---\n\
            title: u\nlogsource: {category: dns}\ndetection:\n  sel: {ParentImage: x}\n  condition: sel\n";
        let loaded = load(text);
        assert_eq!(loaded.rules.len(), 1);
        assert_eq!(loaded.report.applicable, 1);
        assert_eq!(loaded.report.skipped.get("logsource_not_collected"), Some(&1));
        assert_eq!(loaded.report.skipped.get("unmapped_field"), Some(&1));
    }
}
