//! A gate in front of an rsigma engine: a cheap test, built from the rules at load time, that is
//! true for every event on which at least one of the rules can match. Most events match nothing;
//! for them the gate answers "no" without running the engine (its candidate index, the rule
//! evaluation, the result building).
//!
//! Each rule's condition becomes a conjunction of clauses, each clause a disjunction of the rule's
//! own detection items (`field|modifier: values`). A clause holds on every event the rule matches:
//! `and` keeps the clauses of both sides, `or` keeps one clause of each side joined, and `not`,
//! array matches and anything else unusual give no clause (the rule then always passes the gate).
//! The items are evaluated as rsigma evaluates them (`item_holds` mirrors its item evaluation, and
//! calls its matchers), with a shortcut for ASCII strings compared against literals that gives the
//! matcher's answer without allocating. An item is evaluated at most once per event even when
//! several rules use it. `tests/detect_fast_path.rs` checks gated against ungated detection on the
//! pack, the applicable SigmaHQ rules and all SigmaHQ rules.

use rsigma_eval::{
    CompiledDetection, CompiledDetectionItem, CompiledMatcher, CompiledRule, Event, EventValue,
};
use rsigma_parser::{ConditionExpr, Quantifier};
use std::collections::HashMap;

/// One test on the event: a detection item, or a keyword detection.
#[derive(Debug)]
enum Atom {
    Item(CompiledDetectionItem),
    Keywords(CompiledMatcher),
}

/// Clauses (all must hold) of atoms (one must hold), or nothing known (always holds).
#[derive(Debug, Clone)]
enum Gate {
    Open,
    All(Vec<Vec<usize>>),
}

/// The gate of a set of rules (the rules one engine holds).
#[derive(Debug, Default)]
pub struct Prefilter {
    atoms: Vec<Atom>,
    /// Per rule, its clauses, cheapest first.
    rules: Vec<Vec<Vec<usize>>>,
    /// Per rule (same index as `rules`), its title, for tests and diagnostics.
    titles: Vec<String>,
    /// Some rule has no clause: every event passes.
    open: bool,
}

/// Per-event memory of atom verdicts (kept between events to save the allocation).
#[derive(Debug, Default)]
pub struct Memo {
    verdicts: Vec<Verdict>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Unknown,
    True,
    False,
}

impl Prefilter {
    pub fn build<'a>(rules: impl IntoIterator<Item = &'a CompiledRule>) -> Prefilter {
        let mut builder = Builder::default();
        let mut out = Prefilter::default();
        for rule in rules {
            match builder.rule(rule) {
                Gate::Open => out.open = true,
                Gate::All(mut clauses) => {
                    clauses.sort_by_key(Vec::len);
                    out.rules.push(clauses);
                    out.titles.push(rule.title.clone());
                }
            }
        }
        out.atoms = builder.atoms;
        out
    }

    /// Whether every event passes (some rule has no clause).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// False only if none of the rules can match this event.
    pub fn may_match(&self, event: &impl Event, memo: &mut Memo) -> bool {
        if self.open {
            return true;
        }
        memo.verdicts.clear();
        memo.verdicts.resize(self.atoms.len(), Verdict::Unknown);
        self.rules.iter().any(|clauses| {
            clauses.iter().all(|clause| clause.iter().any(|&atom| self.atom(atom, event, memo)))
        })
    }

    /// Titles of the gated rules whose gate holds on this event.
    pub fn passing(&self, event: &impl Event) -> Vec<&str> {
        let mut memo = Memo::default();
        memo.verdicts.resize(self.atoms.len(), Verdict::Unknown);
        let mut out = Vec::new();
        for (clauses, title) in self.rules.iter().zip(&self.titles) {
            let holds = clauses
                .iter()
                .all(|clause| clause.iter().any(|&atom| self.atom(atom, event, &mut memo)));
            if holds {
                out.push(title.as_str());
            }
        }
        out
    }

    fn atom(&self, index: usize, event: &impl Event, memo: &mut Memo) -> bool {
        match memo.verdicts[index] {
            Verdict::True => return true,
            Verdict::False => return false,
            Verdict::Unknown => {}
        }
        let holds = match &self.atoms[index] {
            Atom::Item(item) => item_holds(item, event),
            Atom::Keywords(matcher) => matcher.matches_keyword(event),
        };
        memo.verdicts[index] = if holds { Verdict::True } else { Verdict::False };
        holds
    }
}

/// Builds gates, giving equal items one atom.
#[derive(Default)]
struct Builder {
    atoms: Vec<Atom>,
    seen: HashMap<String, usize>,
}

impl Builder {
    fn atom(&mut self, key: String, atom: Atom) -> Gate {
        let next = self.atoms.len();
        let index = *self.seen.entry(key).or_insert(next);
        if index == next {
            self.atoms.push(atom);
        }
        Gate::All(vec![vec![index]])
    }

    /// A rule matches when any of its conditions holds.
    fn rule(&mut self, rule: &CompiledRule) -> Gate {
        if rule.conditions.is_empty() {
            return Gate::Open;
        }
        let parts: Vec<Gate> =
            rule.conditions.iter().map(|c| self.condition(c, &rule.detections)).collect();
        any(parts)
    }

    fn condition(
        &mut self,
        condition: &ConditionExpr,
        detections: &HashMap<String, CompiledDetection>,
    ) -> Gate {
        match condition {
            ConditionExpr::Identifier(name) => match detections.get(name) {
                Some(detection) => self.detection(detection),
                None => Gate::Open,
            },
            ConditionExpr::And(parts) => {
                let parts = parts.iter().map(|p| self.condition(p, detections)).collect();
                all(parts)
            }
            ConditionExpr::Or(parts) => {
                let parts = parts.iter().map(|p| self.condition(p, detections)).collect();
                any(parts)
            }
            ConditionExpr::Not(_) => Gate::Open,
            ConditionExpr::Selector { quantifier, pattern } => {
                // Sorted, so the same rule always gives the same gate.
                let mut names: Vec<&String> =
                    detections.keys().filter(|n| pattern.matches_detection_name(n)).collect();
                names.sort();
                if names.is_empty() || matches!(quantifier, Quantifier::Count(0)) {
                    // `all of` nothing holds vacuously; `0 of` always holds.
                    return Gate::Open;
                }
                let parts: Vec<Gate> =
                    names.into_iter().map(|n| self.detection(&detections[n])).collect();
                match quantifier {
                    Quantifier::All => all(parts),
                    Quantifier::Any | Quantifier::Count(_) => any(parts),
                }
            }
        }
    }

    fn detection(&mut self, detection: &CompiledDetection) -> Gate {
        match detection {
            CompiledDetection::AllOf(items) if items.is_empty() => Gate::Open,
            CompiledDetection::AllOf(items) => {
                let parts = items
                    .iter()
                    .map(|item| self.atom(format!("item {item:?}"), Atom::Item(item.clone())))
                    .collect();
                all(parts)
            }
            CompiledDetection::AnyOf(parts) if parts.is_empty() => Gate::Open,
            CompiledDetection::AnyOf(parts) => {
                let parts = parts.iter().map(|d| self.detection(d)).collect();
                any(parts)
            }
            CompiledDetection::And(parts) if parts.is_empty() => Gate::Open,
            CompiledDetection::And(parts) => {
                let parts = parts.iter().map(|d| self.detection(d)).collect();
                all(parts)
            }
            CompiledDetection::Keywords(matcher) => {
                self.atom(format!("keywords {matcher:?}"), Atom::Keywords(matcher.clone()))
            }
            // Member-scoped bodies: not worth a gate.
            CompiledDetection::ArrayMatch { .. } | CompiledDetection::Conditional { .. } => {
                Gate::Open
            }
        }
    }
}

/// Every part holds: all their clauses.
fn all(parts: Vec<Gate>) -> Gate {
    let mut clauses = Vec::new();
    for part in parts {
        if let Gate::All(more) = part {
            clauses.extend(more);
        }
    }
    if clauses.is_empty() {
        Gate::Open
    } else {
        Gate::All(clauses)
    }
}

/// One of the parts holds: one clause of each part (its shortest), joined into one clause.
fn any(mut parts: Vec<Gate>) -> Gate {
    if parts.len() == 1 {
        return parts.remove(0);
    }
    let mut joined: Vec<usize> = Vec::new();
    for part in parts {
        let Gate::All(clauses) = part else { return Gate::Open };
        let Some(shortest) = clauses.into_iter().min_by_key(Vec::len) else {
            return Gate::Open;
        };
        for atom in shortest {
            if !joined.contains(&atom) {
                joined.push(atom);
            }
        }
    }
    if joined.is_empty() {
        Gate::Open
    } else {
        Gate::All(vec![joined])
    }
}

/// A detection item, as rsigma 0.23 evaluates it (`eval_detection_item`, without its optional
/// bloom filter, which only ever skips items that cannot match).
fn item_holds(item: &CompiledDetectionItem, event: &impl Event) -> bool {
    if let Some(expect_exists) = item.exists {
        return match &item.field {
            Some(field) => event.get_field(field).is_some_and(|v| !v.is_null()) == expect_exists,
            None => !expect_exists,
        };
    }
    match &item.field {
        Some(field) => match event.get_field(field) {
            Some(value) => matches(&item.matcher, &value, event),
            None => matches!(item.matcher, CompiledMatcher::Null),
        },
        None => item.matcher.matches_keyword(event),
    }
}

/// `matcher.matches(value)`, answered without allocating when the value is an ASCII string and
/// the matcher compares literals.
fn matches(matcher: &CompiledMatcher, value: &EventValue, event: &impl Event) -> bool {
    if let EventValue::Str(text) = value {
        if text.is_ascii() {
            if let Some(verdict) = ascii_matches(matcher, text) {
                return verdict;
            }
        }
    }
    matcher.matches(value, event)
}

/// What rsigma's literal matchers answer for an ASCII string, or `None` for other matchers.
/// rsigma lowercases the string with `to_lowercase` for a case-insensitive matcher (its literal
/// is stored lowercased); on ASCII that is the byte-wise ASCII lowercase compared here.
fn ascii_matches(matcher: &CompiledMatcher, text: &str) -> Option<bool> {
    let verdict = match matcher {
        CompiledMatcher::Exact { value, case_insensitive: true } => eq_lower(text, value),
        CompiledMatcher::Exact { value, case_insensitive: false } => text == value,
        CompiledMatcher::Contains { value, case_insensitive: true } => contains_lower(text, value),
        CompiledMatcher::Contains { value, case_insensitive: false } => {
            text.contains(value.as_str())
        }
        CompiledMatcher::StartsWith { value, case_insensitive: true } => {
            text.len() >= value.len() && eq_lower(&text[..value.len()], value)
        }
        CompiledMatcher::StartsWith { value, case_insensitive: false } => {
            text.starts_with(value.as_str())
        }
        CompiledMatcher::EndsWith { value, case_insensitive: true } => {
            text.len() >= value.len() && eq_lower(&text[text.len() - value.len()..], value)
        }
        CompiledMatcher::EndsWith { value, case_insensitive: false } => {
            text.ends_with(value.as_str())
        }
        CompiledMatcher::AnyOf(children) => {
            for child in children {
                if ascii_matches(child, text)? {
                    return Some(true);
                }
            }
            false
        }
        CompiledMatcher::AllOf(children) => {
            for child in children {
                if !ascii_matches(child, text)? {
                    return Some(false);
                }
            }
            true
        }
        _ => return None,
    };
    Some(verdict)
}

/// `text.to_ascii_lowercase() == lowered`, for ASCII `text`, without the copy.
fn eq_lower(text: &str, lowered: &str) -> bool {
    text.len() == lowered.len()
        && text.bytes().zip(lowered.bytes()).all(|(a, b)| a.to_ascii_lowercase() == b)
}

/// `text.to_ascii_lowercase().contains(lowered)`, for ASCII `text`, without the copy.
fn contains_lower(text: &str, lowered: &str) -> bool {
    if !text.bytes().any(|b| b.is_ascii_uppercase()) {
        return text.contains(lowered);
    }
    if lowered.is_empty() {
        return true;
    }
    text.as_bytes()
        .windows(lowered.len())
        .any(|window| window.iter().zip(lowered.bytes()).all(|(a, b)| a.to_ascii_lowercase() == b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::fields::CanhEvent;
    use serde_json::json;

    fn compile(yaml: &str) -> CompiledRule {
        let collection = rsigma_parser::parse_sigma_yaml(yaml).expect("rule parses");
        rsigma_eval::compile_rule(&collection.rules[0]).expect("rule compiles")
    }

    const SCAN: &str = "title: scan\nlogsource: {product: canh, service: flow}\ndetection:\n  \
        tcp: {network.transport: tcp}\n  no_session: {flow.state: [S0, REJ]}\n  \
        connect: {flow.state: RSTO, flow.orig_payload_bytes: 0}\n  \
        condition: tcp and (no_session or connect)\n";

    #[test]
    fn and_keeps_every_side_and_or_joins_one_clause_of_each() {
        let filter = Prefilter::build([&compile(SCAN)]);
        assert!(!filter.is_open());
        assert_eq!(filter.rules.len(), 1);
        assert_eq!(filter.rules[0].len(), 2, "{:?}", filter.rules);
        let mut memo = Memo::default();
        let pass = |event: serde_json::Value, memo: &mut Memo| {
            filter.may_match(&CanhEvent::new(&event), memo)
        };
        let flow = |state: &str| json!({"network": {"transport": "TCP"}, "flow": {"state": state}});
        assert!(pass(flow("s0"), &mut memo));
        assert!(pass(flow("RSTO"), &mut memo), "the gate of `connect` is its state alone");
        assert!(!pass(flow("SF"), &mut memo));
        assert!(!pass(
            json!({"network": {"transport": "udp"}, "flow": {"state": "S0"}}),
            &mut memo
        ));
    }

    #[test]
    fn negations_and_absence_leave_the_rule_open() {
        for detection in [
            "  sel: {a: x}\n  filter: {b: y}\n  condition: sel or not filter\n",
            "  sel: {a: null}\n  condition: sel\n",
            "  sel: {a|exists: false}\n  condition: sel\n",
            "  sel: {a: x}\n  condition: all of nothing*\n",
        ] {
            let rule =
                compile(&format!("title: t\nlogsource: {{product: x}}\ndetection:\n{detection}"));
            let filter = Prefilter::build([&rule]);
            let event = json!({"c": 1});
            if !filter.is_open() {
                // `a: null` holds on an absent field: the gate must let the event through.
                assert!(
                    filter.may_match(&CanhEvent::new(&event), &mut Memo::default()),
                    "{detection}"
                );
            }
        }
    }

    #[test]
    fn ascii_shortcut_answers_like_the_matcher() {
        let rule = compile(
            "title: t\nlogsource: {product: x}\ndetection:\n  sel:\n    a: Ab\n    \
             b|contains: [dEf, x]\n    c|startswith: GH\n    d|endswith: '.Exe'\n    \
             e|contains|cased: Kk\n  condition: sel\n",
        );
        let texts = [
            "ab", "AB", "aB ", "xdefx", "DEF", "gh1", "G", "a.exe", "A.EXE", "exe", "Kk", "kk", "",
            "ä",
        ];
        let mut checked = 0;
        for detection in rule.detections.values() {
            let CompiledDetection::AllOf(items) = detection else { continue };
            for item in items {
                for text in texts {
                    let event = json!({"z": text});
                    let wrapped = CanhEvent::new(&event);
                    let value = EventValue::Str(text.into());
                    let want = item.matcher.matches(&value, &wrapped);
                    assert_eq!(matches(&item.matcher, &value, &wrapped), want, "{item:?} {text:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 5 * texts.len());
    }
}
