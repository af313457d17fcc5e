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

use crate::detect::fields::{CanhEvent, FieldPath, Walk};
use crate::detect::tape::{Leaf, TapeEvent, TapeWalk};
use aho_corasick::AhoCorasick;
use regex::RegexSet;
use rsigma_eval::matcher::GroupMode;
use rsigma_eval::{
    CompiledDetection, CompiledDetectionItem, CompiledMatcher, CompiledRule, Event, EventValue,
};
use rsigma_parser::{ConditionExpr, Quantifier};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;

/// Gates tested between two reorderings of the clauses (see `Prefilter::reorder`), once the
/// order has settled.
const REORDER_EVERY: u32 = 4096;

/// Gates tested before the first reordering; the interval then doubles up to `REORDER_EVERY`.
/// The clauses start in an order that knows nothing of the traffic (shortest first): a new
/// prefilter (every rule load) would run the first 4,096 events of its route in it (on the bench
/// mix, 8 % more instructions per event over the first 20,000 events than with early reordering).
const FIRST_REORDER: u32 = 64;

/// One clause of a rule's gate (one of its atoms must hold), with how often it was tested and
/// failed since the last reordering.
#[derive(Debug)]
struct Clause {
    atoms: Vec<usize>,
    tried: Cell<u32>,
    failed: Cell<u32>,
}

/// One test on the event: a detection item (with the index of its field in `Prefilter::fields`
/// and of the screen it is in, if any), or a keyword detection.
#[derive(Debug)]
enum Atom {
    Item { item: CompiledDetectionItem, field: Option<usize>, screen: Option<usize> },
    Keywords(CompiledMatcher),
}

/// One pass over a field for all the substring and regex tests several atoms make on it. On a
/// string with no ASCII capital letter and nothing but ASCII (lowercasing, which rsigma does for
/// case-insensitive tests, changes nothing), each such atom holds exactly when one of its
/// needles is in the string or one of its regexes matches it; so when no needle and no regex of
/// the screen hits, all its atoms are false without running them one by one (the web-attack
/// rules make about 20 such tests on every URL).
#[derive(Debug)]
struct Screen {
    needles: Option<AhoCorasick>,
    regexes: Option<RegexSet>,
}

impl Screen {
    /// False only when every atom of the screen is false on this value.
    fn may_hit(&self, value: Walk) -> bool {
        let Walk::Found(Value::String(text)) = value else { return true };
        self.may_hit_text(text)
    }

    /// `may_hit` for a string value.
    fn may_hit_text(&self, text: &str) -> bool {
        if !text.is_ascii() || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return true;
        }
        self.needles.as_ref().is_some_and(|n| n.is_match(text))
            || self.regexes.as_ref().is_some_and(|r| r.is_match(text))
    }
}

/// The needles and regex patterns of a matcher made only of substring tests and regexes, any of
/// which makes it hold; `None` for any other matcher.
fn screen_parts(
    matcher: &CompiledMatcher,
    needles: &mut Vec<String>,
    patterns: &mut Vec<String>,
) -> Option<()> {
    match matcher {
        CompiledMatcher::Contains { value, .. } => needles.push(value.clone()),
        CompiledMatcher::AhoCorasickSet { needles: more, .. } => {
            needles.extend(more.iter().cloned())
        }
        CompiledMatcher::Regex(regex) => patterns.push(regex.as_str().to_string()),
        CompiledMatcher::RegexSetMatch { set, mode: GroupMode::Any } => {
            patterns.extend(set.patterns().iter().cloned())
        }
        CompiledMatcher::AnyOf(children)
        | CompiledMatcher::CaseInsensitiveGroup { children, mode: GroupMode::Any } => {
            for child in children {
                screen_parts(child, needles, patterns)?;
            }
        }
        _ => return None,
    }
    Some(())
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
    /// The distinct fields the atoms read: each is looked up at most once per event, however
    /// many atoms read it.
    fields: Vec<FieldPath>,
    /// The top-level objects the fields are under (`flow` of `flow.state`), each looked up at
    /// most once per event however many fields are read from it.
    tops: Vec<String>,
    /// Per field (same index as `fields`), its top-level object in `tops`.
    field_tops: Vec<Option<usize>>,
    screens: Vec<Screen>,
    /// Per rule, in the order `build` was given them, its clauses, or `None` when the rule has
    /// no clause (it always passes). The clauses start shortest first and are then kept in the
    /// order of how often each failed (`reorder`): a rule is rejected at its first failing
    /// clause, so the one that fails most often should be tested first. The order changes the
    /// cost, never the verdict (all clauses must hold).
    rules: Vec<Option<Vec<Clause>>>,
    /// Gates tested since the last reordering.
    since_reorder: u32,
    /// Gates between this reordering and the next: `FIRST_REORDER`, doubling up to
    /// `REORDER_EVERY`.
    reorder_interval: u32,
    /// Per rule (same index as `rules`), its title, for tests and diagnostics.
    titles: Vec<String>,
    /// Some rule has no clause: every event passes.
    open: bool,
}

/// Per-event memory of atom verdicts and field lookups (kept between events to save the
/// allocation).
#[derive(Debug, Default)]
pub struct Memo {
    verdicts: Vec<Verdict>,
    screens: Vec<Verdict>,
    /// Always empty between events: only its allocation is kept (see `reuse`).
    lookups: Vec<Lookup<'static>>,
    /// The same for the top-level objects.
    tops: Vec<Lookup<'static>>,
}

/// What an atom is on an event of a tape: not yet looked at, true, false, or not known from the
/// tape (then it may hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnTape {
    NotYet,
    True,
    False,
    Maybe,
}

/// Per-event memory of `Prefilter::may_pass_on_tape` (kept between events for the allocations).
#[derive(Debug, Default)]
pub struct TapeMemo {
    atoms: Vec<OnTape>,
    screens: Vec<OnTape>,
    fields: Vec<Option<TapeWalk>>,
}

/// An rsigma `Event` over an event of a tape that answers keyword searches
/// (`any_string_value`, what `matches_keyword` asks) and records whether it was asked anything
/// else. A matcher given a value and this event answers as with the real event when it asked
/// nothing else (rsigma's matchers read the event only for keywords, field references and
/// templates).
struct Probe<'e, 't> {
    event: &'e TapeEvent<'t>,
    asked: Cell<bool>,
}

impl<'e, 't> Probe<'e, 't> {
    fn new(event: &'e TapeEvent<'t>) -> Probe<'e, 't> {
        Probe { event, asked: Cell::new(false) }
    }
}

impl Event for Probe<'_, '_> {
    fn get_field(&self, _path: &str) -> Option<EventValue<'_>> {
        self.asked.set(true);
        None
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.event.any_string_value(pred)
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.asked.set(true);
        Vec::new()
    }

    fn visit_string_values(&self, _visit: &mut dyn FnMut(&str)) {
        self.asked.set(true);
    }

    fn to_json(&self) -> Value {
        self.asked.set(true);
        Value::Null
    }

    fn field_keys(&self) -> Vec<Cow<'_, str>> {
        self.asked.set(true);
        Vec::new()
    }

    fn top_level_keys(&self) -> Option<Vec<Cow<'_, str>>> {
        self.asked.set(true);
        None
    }

    fn visit_top_level_keys(&self, _visit: &mut dyn FnMut(&str)) -> bool {
        self.asked.set(true);
        false
    }
}

/// The lookups of one event: its fields and their top-level objects.
struct Lookups<'a> {
    fields: Vec<Lookup<'a>>,
    tops: Vec<Lookup<'a>>,
}

/// A field of the event, looked up on first use.
#[derive(Debug, Clone, Copy)]
enum Lookup<'a> {
    NotYet,
    Done(Walk<'a>),
}

/// An empty vector of lookups in the allocation of `spare` (the lookups of one event borrow
/// that event, so the vector kept between events cannot hold any).
fn reuse<'a, 'b>(mut spare: Vec<Lookup<'a>>) -> Vec<Lookup<'b>> {
    spare.clear();
    // Collecting an emptied vector through a map to a type of the same size reuses its buffer.
    spare.into_iter().map(|_| Lookup::NotYet).collect()
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
                Gate::Open => {
                    out.open = true;
                    out.rules.push(None);
                }
                Gate::All(mut clauses) => {
                    clauses.sort_by_key(Vec::len);
                    let clauses = clauses
                        .into_iter()
                        .map(|atoms| Clause { atoms, tried: Cell::new(0), failed: Cell::new(0) })
                        .collect();
                    out.rules.push(Some(clauses));
                }
            }
            out.titles.push(rule.title.clone());
        }
        out.atoms = builder.atoms;
        out.fields = builder.fields;
        for field in &out.fields {
            let top = field.parent().map(|parent| {
                out.tops.iter().position(|t| t == parent).unwrap_or_else(|| {
                    out.tops.push(parent.to_string());
                    out.tops.len() - 1
                })
            });
            out.field_tops.push(top);
        }
        out.add_screens();
        out
    }

    /// A screen for each field that two or more atoms test only with substrings and regexes.
    fn add_screens(&mut self) {
        for field in 0..self.fields.len() {
            let mut members = Vec::new();
            let mut needles = Vec::new();
            let mut patterns = Vec::new();
            for (index, atom) in self.atoms.iter().enumerate() {
                let Atom::Item { item, field: Some(f), .. } = atom else { continue };
                if *f != field || item.exists.is_some() {
                    continue;
                }
                let (mut n, mut p) = (Vec::new(), Vec::new());
                if screen_parts(&item.matcher, &mut n, &mut p).is_some() {
                    members.push(index);
                    needles.append(&mut n);
                    patterns.append(&mut p);
                }
            }
            if members.len() < 2 {
                continue;
            }
            let needles = if needles.is_empty() {
                None
            } else {
                match AhoCorasick::new(&needles) {
                    Ok(automaton) => Some(automaton),
                    Err(_) => continue,
                }
            };
            let regexes = if patterns.is_empty() {
                None
            } else {
                match RegexSet::new(&patterns) {
                    Ok(set) => Some(set),
                    Err(_) => continue,
                }
            };
            let screen = self.screens.len();
            self.screens.push(Screen { needles, regexes });
            for index in members {
                if let Atom::Item { screen: slot, .. } = &mut self.atoms[index] {
                    *slot = Some(screen);
                }
            }
        }
    }

    /// The fields the atoms read.
    pub fn fields(&self) -> &[FieldPath] {
        &self.fields
    }

    /// Whether every event passes (some rule has no clause).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether some atom is a keyword search (a scan of every string of the event): then
    /// `candidates`, which tests every rule's gate, can cost more than the engine's own keyword
    /// index, and `may_match` (which stops at the first rule that can match) is the cheaper
    /// question.
    pub fn has_keywords(&self) -> bool {
        self.atoms.iter().any(|atom| matches!(atom, Atom::Keywords(_)))
    }

    /// False only if none of the rules can match this event.
    pub fn may_match(&mut self, event: &CanhEvent, memo: &mut Memo) -> bool {
        if self.open {
            return true;
        }
        self.count_and_reorder();
        self.with_scratch(event, memo, |holds| (0..self.rules.len()).any(holds))
    }

    /// The rules (their positions in the order `build` was given them, ascending) that may match
    /// this event: those whose clauses all hold and those without clauses. Every rule that
    /// matches the event is among them.
    pub fn candidates(&mut self, event: &CanhEvent, memo: &mut Memo, out: &mut Vec<usize>) {
        out.clear();
        self.count_and_reorder();
        self.with_scratch(event, memo, |holds| {
            out.extend((0..self.rules.len()).filter(|&r| holds(r)))
        });
    }

    /// Titles of the gated rules whose gate holds on this event.
    pub fn passing(&self, event: &CanhEvent) -> Vec<&str> {
        let mut memo = Memo::default();
        let mut out = Vec::new();
        self.with_scratch(event, &mut memo, |holds| {
            for (rule, title) in self.titles.iter().enumerate() {
                if self.rules[rule].is_some() && holds(rule) {
                    out.push(title.as_str());
                }
            }
        });
        out
    }

    /// False only when the tape shows that no rule's gate holds on this event: then `may_match`
    /// is false and `candidates` empty on its `Value`. Atoms are decided on the tape as on the
    /// `Value` (`item_on_tape`); one the tape cannot decide (an array or object, a keyword search,
    /// a matcher that reads other fields) is taken to hold, so the answer is true and the caller
    /// asks the `Value`.
    pub fn may_pass_on_tape(&mut self, event: &TapeEvent, memo: &mut TapeMemo) -> bool {
        if self.open {
            return true;
        }
        self.count_and_reorder();
        memo.atoms.clear();
        memo.atoms.resize(self.atoms.len(), OnTape::NotYet);
        memo.screens.clear();
        memo.screens.resize(self.screens.len(), OnTape::NotYet);
        memo.fields.clear();
        memo.fields.resize(self.fields.len(), None);
        (0..self.rules.len()).any(|rule| {
            self.gate_holds(rule, |atom| self.atom_on_tape(atom, event, memo) != OnTape::False)
        })
    }

    /// Whether rule `rule`'s gate holds (true for a rule without clauses): every clause has an
    /// atom for which `atom_holds` is true. Each clause tested and each that fails is counted for
    /// `reorder`, on the `Value` and on the tape alike.
    fn gate_holds(&self, rule: usize, mut atom_holds: impl FnMut(usize) -> bool) -> bool {
        let Some(clauses) = &self.rules[rule] else { return true };
        clauses.iter().all(|clause| {
            clause.tried.set(clause.tried.get().saturating_add(1));
            let holds = clause.atoms.iter().any(|&atom| atom_holds(atom));
            if !holds {
                clause.failed.set(clause.failed.get().saturating_add(1));
            }
            holds
        })
    }

    fn atom_on_tape(&self, index: usize, event: &TapeEvent, memo: &mut TapeMemo) -> OnTape {
        if memo.atoms[index] != OnTape::NotYet {
            return memo.atoms[index];
        }
        let verdict = match &self.atoms[index] {
            Atom::Item { item, field: Some(field), screen } => {
                let found = match memo.fields[*field] {
                    Some(found) => found,
                    None => {
                        let found = self.fields[*field].walk_tape(event);
                        memo.fields[*field] = Some(found);
                        found
                    }
                };
                let screened_out = screen.is_some_and(|screen| {
                    if memo.screens[screen] == OnTape::NotYet {
                        let hit = match found {
                            TapeWalk::Found(node) => match event.leaf(node) {
                                Leaf::Str(text) => self.screens[screen].may_hit_text(text),
                                _ => true,
                            },
                            _ => true,
                        };
                        memo.screens[screen] = if hit { OnTape::True } else { OnTape::False };
                    }
                    memo.screens[screen] == OnTape::False
                });
                if screened_out {
                    OnTape::False
                } else {
                    item_on_tape(item, found, event)
                }
            }
            // An item without a field, a keyword search: they read every string of the event.
            Atom::Item { item, field: None, .. } => {
                let probe = Probe::new(event);
                decided(&probe, item_holds(item, &probe))
            }
            Atom::Keywords(matcher) => {
                let probe = Probe::new(event);
                decided(&probe, matcher.matches_keyword(&probe))
            }
        };
        memo.atoms[index] = verdict;
        verdict
    }

    /// Runs `work` with a test of one rule's gate on this event (true for a rule without
    /// clauses), the atoms' verdicts and the field lookups remembered in `memo` while it runs.
    fn with_scratch<T>(
        &self,
        event: &CanhEvent,
        memo: &mut Memo,
        work: impl FnOnce(&mut dyn FnMut(usize) -> bool) -> T,
    ) -> T {
        memo.verdicts.clear();
        memo.verdicts.resize(self.atoms.len(), Verdict::Unknown);
        memo.screens.clear();
        memo.screens.resize(self.screens.len(), Verdict::Unknown);
        let mut lookups = reuse(std::mem::take(&mut memo.lookups));
        lookups.resize(self.fields.len(), Lookup::NotYet);
        let mut tops = reuse(std::mem::take(&mut memo.tops));
        tops.resize(self.tops.len(), Lookup::NotYet);
        let mut lookups = Lookups { fields: lookups, tops };
        let (verdicts, screens) = (&mut memo.verdicts, &mut memo.screens);
        let mut holds = |rule: usize| {
            self.gate_holds(rule, |atom| self.atom(atom, event, verdicts, screens, &mut lookups))
        };
        let out = work(&mut holds);
        memo.lookups = reuse(lookups.fields);
        memo.tops = reuse(lookups.tops);
        out
    }

    /// The value of field `field` of the event, its top-level object looked up once per event.
    fn lookup<'e>(&self, field: usize, event: &CanhEvent<'e>, tops: &mut [Lookup<'e>]) -> Walk<'e> {
        let path = &self.fields[field];
        let Some(top) = self.field_tops[field] else { return event.lookup_path(path) };
        // A top-level key equal to the whole dotted path comes first, as in the plain walk (a
        // comparison of lengths per key; Canh's events have no such key).
        if let Some(value) = event.root().get(path.as_str()) {
            return Walk::Found(value);
        }
        let found = match tops[top] {
            Lookup::Done(found) => found,
            Lookup::NotYet => {
                let found = event.top_level(&self.tops[top]);
                tops[top] = Lookup::Done(found);
                found
            }
        };
        CanhEvent::lookup_under(found, path)
    }

    fn count_and_reorder(&mut self) {
        self.since_reorder += 1;
        let interval = self.reorder_interval.max(FIRST_REORDER);
        if self.since_reorder >= interval {
            self.since_reorder = 0;
            self.reorder_interval = interval.saturating_mul(2).min(REORDER_EVERY);
            self.reorder();
        }
    }

    /// Each rule's clauses, the most often failing first (a stable sort: equal rates keep their
    /// order); then the counts are halved, so the order follows a change in the traffic.
    fn reorder(&mut self) {
        for clauses in self.rules.iter_mut().flatten() {
            let rate = |clause: &Clause| match clause.tried.get() {
                0 => 0.0,
                tried => f64::from(clause.failed.get()) / f64::from(tried),
            };
            clauses.sort_by(|a, b| rate(b).total_cmp(&rate(a)));
            for clause in clauses.iter() {
                clause.tried.set(clause.tried.get() / 2);
                clause.failed.set(clause.failed.get() / 2);
            }
        }
    }

    fn atom<'e>(
        &self,
        index: usize,
        event: &CanhEvent<'e>,
        verdicts: &mut [Verdict],
        screens: &mut [Verdict],
        lookups: &mut Lookups<'e>,
    ) -> bool {
        match verdicts[index] {
            Verdict::True => return true,
            Verdict::False => return false,
            Verdict::Unknown => {}
        }
        let holds = match &self.atoms[index] {
            Atom::Item { item, field: Some(field), screen } => {
                let found = match lookups.fields[*field] {
                    Lookup::Done(found) => found,
                    Lookup::NotYet => {
                        let found = self.lookup(*field, event, &mut lookups.tops);
                        lookups.fields[*field] = Lookup::Done(found);
                        found
                    }
                };
                let screened_out = screen.is_some_and(|screen| {
                    if screens[screen] == Verdict::Unknown {
                        let hit = self.screens[screen].may_hit(found);
                        screens[screen] = if hit { Verdict::True } else { Verdict::False };
                    }
                    screens[screen] == Verdict::False
                });
                !screened_out && item_holds_at(item, found, event)
            }
            Atom::Item { item, field: None, .. } => item_holds(item, event),
            Atom::Keywords(matcher) => matcher.matches_keyword(event),
        };
        verdicts[index] = if holds { Verdict::True } else { Verdict::False };
        holds
    }
}

/// Builds gates, giving equal items one atom.
#[derive(Default)]
struct Builder {
    atoms: Vec<Atom>,
    seen: HashMap<String, usize>,
    fields: Vec<FieldPath>,
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

    /// The index of a field in `fields`.
    fn field(&mut self, name: &str) -> usize {
        match self.fields.iter().position(|f| f.as_str() == name) {
            Some(index) => index,
            None => {
                self.fields.push(FieldPath::new(name));
                self.fields.len() - 1
            }
        }
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
                    .map(|item| {
                        let field = item.field.as_ref().map(|f| self.field(f));
                        let atom = Atom::Item { item: item.clone(), field, screen: None };
                        self.atom(format!("item {item:?}"), atom)
                    })
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

/// Clauses a gate of `or` may have at most (see `any`).
const MAX_OR_CLAUSES: usize = 16;

/// One of the parts holds. Exactly, that is every clause made of one clause of each part, joined
/// (`a or (b and c)` is `(a or b) and (a or c)`); when that would make more than
/// `MAX_OR_CLAUSES` clauses, only the one clause made of each part's shortest.
fn any(mut parts: Vec<Gate>) -> Gate {
    if parts.len() == 1 {
        return parts.remove(0);
    }
    let mut sides: Vec<Vec<Vec<usize>>> = Vec::new();
    for part in parts {
        let Gate::All(clauses) = part else { return Gate::Open };
        if clauses.is_empty() {
            return Gate::Open;
        }
        sides.push(clauses);
    }
    let combinations =
        sides.iter().try_fold(1usize, |product, clauses| product.checked_mul(clauses.len()));
    if combinations.is_none_or(|n| n > MAX_OR_CLAUSES) {
        for clauses in &mut sides {
            let shortest = clauses.iter().min_by_key(|c| c.len()).cloned().unwrap_or_default();
            *clauses = vec![shortest];
        }
    }
    let mut joined: Vec<Vec<usize>> = vec![Vec::new()];
    for clauses in sides {
        let mut next = Vec::with_capacity(joined.len() * clauses.len());
        for prefix in &joined {
            for clause in &clauses {
                let mut atoms = prefix.clone();
                for &atom in clause {
                    if !atoms.contains(&atom) {
                        atoms.push(atom);
                    }
                }
                next.push(atoms);
            }
        }
        joined = next;
    }
    if joined.iter().any(Vec::is_empty) {
        Gate::Open
    } else {
        Gate::All(joined)
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

/// `item_holds` with the item's field already looked up (`Unsure`: left to `item_holds`).
fn item_holds_at(item: &CompiledDetectionItem, found: Walk, event: &impl Event) -> bool {
    let value = match found {
        Walk::Unsure => return item_holds(item, event),
        Walk::Found(value) => Some(value),
        Walk::Absent => None,
    };
    if let Some(expect_exists) = item.exists {
        return value.is_some_and(|v| !v.is_null()) == expect_exists;
    }
    match value {
        Some(value) => {
            // Answered on the JSON value where possible, without building rsigma's value.
            let direct = match value {
                Value::String(text) if text.is_ascii() => ascii_matches(&item.matcher, text),
                Value::Number(number) => numeric_matches(&item.matcher, number),
                _ => None,
            };
            match direct {
                Some(verdict) => verdict,
                None => matches(&item.matcher, &EventValue::from(value), event),
            }
        }
        None => matches!(item.matcher, CompiledMatcher::Null),
    }
}

/// `item_holds_at` on the value a walk on a tape found, when the tape can tell: the same steps on
/// the same value (a string borrowed from the tape, a number, boolean or null as its `Value`),
/// with a `Probe` for the event; `Maybe` when the value is an object or array, the walk was
/// unsure, or the matcher asked the event something.
fn item_on_tape(item: &CompiledDetectionItem, found: TapeWalk, event: &TapeEvent) -> OnTape {
    let probe = Probe::new(event);
    let verdict = match found {
        TapeWalk::Unsure => return OnTape::Maybe,
        TapeWalk::Absent => item_holds_at(item, Walk::Absent, &probe),
        TapeWalk::Found(node) => match event.leaf(node) {
            // Not null: there.
            Leaf::Container if item.exists.is_some() => item.exists == Some(true),
            Leaf::Container => match event.event_value(node) {
                Some(value) => matches(&item.matcher, &value, &probe),
                None => return OnTape::Maybe,
            },
            Leaf::Scalar(scalar) => item_holds_at(item, Walk::Found(&scalar.to_value()), &probe),
            Leaf::Str(text) => match item.exists {
                // A string is there and not null.
                Some(expect_exists) => expect_exists,
                None => {
                    let value = EventValue::Str(Cow::Borrowed(text));
                    if text.is_ascii() {
                        match ascii_matches(&item.matcher, text) {
                            Some(verdict) => verdict,
                            None => matches(&item.matcher, &value, &probe),
                        }
                    } else {
                        matches(&item.matcher, &value, &probe)
                    }
                }
            },
        },
    };
    decided(&probe, verdict)
}

/// A verdict reached with `probe`: `Maybe` when the matcher asked the probe what it cannot tell.
fn decided(probe: &Probe, verdict: bool) -> OnTape {
    match (probe.asked.get(), verdict) {
        (true, _) => OnTape::Maybe,
        (false, true) => OnTape::True,
        (false, false) => OnTape::False,
    }
}

/// What rsigma's numeric matchers answer for a JSON number, or `None` for other matchers. rsigma
/// reads the number as an `i64` when it is one, else as an `f64` (`EventValue::from`), and
/// compares it as an `f64`.
fn numeric_matches(matcher: &CompiledMatcher, number: &serde_json::Number) -> Option<bool> {
    let value = match number.as_i64() {
        Some(int) => int as f64,
        None => number.as_f64().unwrap_or(f64::NAN),
    };
    let verdict = match matcher {
        CompiledMatcher::NumericEq(n) => (value - n).abs() < f64::EPSILON,
        CompiledMatcher::NumericGt(n) => value > *n,
        CompiledMatcher::NumericGte(n) => value >= *n,
        CompiledMatcher::NumericLt(n) => value < *n,
        CompiledMatcher::NumericLte(n) => value <= *n,
        _ => return None,
    };
    Some(verdict)
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
        // A list of case-insensitive values (`flow.state: [S0, REJ]`): rsigma lowercases the
        // string once (a copy when it has a capital letter) and tests each child on it.
        CompiledMatcher::CaseInsensitiveGroup { .. } => {
            return ascii_matches_lowered(matcher, text)
        }
        _ => return None,
    };
    Some(verdict)
}

/// What rsigma's `matches_pre_lowered` answers for the lowercased ASCII `text`, or `None` for
/// matchers other than case-insensitive literals and groups of them.
fn ascii_matches_lowered(matcher: &CompiledMatcher, text: &str) -> Option<bool> {
    let verdict = match matcher {
        CompiledMatcher::Exact { value, case_insensitive: true } => eq_lower(text, value),
        CompiledMatcher::Contains { value, case_insensitive: true } => contains_lower(text, value),
        CompiledMatcher::StartsWith { value, case_insensitive: true } => {
            text.len() >= value.len() && eq_lower(&text[..value.len()], value)
        }
        CompiledMatcher::EndsWith { value, case_insensitive: true } => {
            text.len() >= value.len() && eq_lower(&text[text.len() - value.len()..], value)
        }
        CompiledMatcher::Not(inner) => !ascii_matches_lowered(inner, text)?,
        CompiledMatcher::AnyOf(children)
        | CompiledMatcher::CaseInsensitiveGroup { children, mode: GroupMode::Any } => {
            for child in children {
                if ascii_matches_lowered(child, text)? {
                    return Some(true);
                }
            }
            false
        }
        CompiledMatcher::AllOf(children)
        | CompiledMatcher::CaseInsensitiveGroup { children, mode: GroupMode::All } => {
            for child in children {
                if !ascii_matches_lowered(child, text)? {
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
        let mut filter = Prefilter::build([&compile(SCAN)]);
        assert!(!filter.is_open());
        assert_eq!(filter.rules.len(), 1);
        // `tcp`, `no_session or RSTO`, `no_session or no payload`.
        assert_eq!(filter.rules[0].as_ref().map(Vec::len), Some(3), "{:?}", filter.rules);
        let mut memo = Memo::default();
        let mut pass = |event: serde_json::Value, memo: &mut Memo| {
            filter.may_match(&CanhEvent::new(&event), memo)
        };
        let flow = |state: &str, bytes: u64| {
            json!({"network": {"transport": "TCP"},
                   "flow": {"state": state, "orig_payload_bytes": bytes}})
        };
        assert!(pass(flow("s0", 10), &mut memo));
        assert!(pass(flow("RSTO", 0), &mut memo));
        assert!(!pass(flow("RSTO", 10), &mut memo), "both items of `connect` are in the gate");
        assert!(!pass(flow("SF", 0), &mut memo));
        assert!(!pass(
            json!({"network": {"transport": "udp"}, "flow": {"state": "S0"}}),
            &mut memo
        ));
    }

    #[test]
    fn screens_change_no_verdict() {
        let rules: Vec<CompiledRule> = [
            "url|contains: [Foo, bar, ../]",
            "url|re|i: ['un.on', 'x{2}', 'zz$']",
            "url|re: 'CaseSensitive'",
            "url|contains|cased: [Baz]",
            "url|startswith: /a",
        ]
        .iter()
        .enumerate()
        .map(|(i, item)| {
            compile(&format!(
                "title: r{i}\nlogsource: {{product: x}}\ndetection:\n  sel:\n    {item}\n  \
                 condition: sel\n"
            ))
        })
        .collect();
        let mut screened = Prefilter::build(&rules);
        assert_eq!(screened.screens.len(), 1, "one screen for `url`: {screened:?}");
        let mut plain = Prefilter::build(&rules);
        plain.screens.clear();
        for atom in &mut plain.atoms {
            if let Atom::Item { screen, .. } = atom {
                *screen = None;
            }
        }
        let urls = [
            "/",
            "/index",
            "/FOO",
            "/foo",
            "/bar",
            "/BAR",
            "/UNION",
            "/union",
            "/uni0n",
            "/xx",
            "/XX",
            "/zz",
            "/zz/",
            "/CaseSensitive",
            "/casesensitive",
            "/Baz",
            "/baz",
            "/a",
            "/ä/union",
            "/Ä/foo",
            "/../",
            "",
        ];
        let mut hits = 0;
        for url in urls {
            for event in [json!({"url": url}), json!({"url": [url, "/"]}), json!({"other": 1})] {
                let event = CanhEvent::new(&event);
                let want = plain.passing(&event);
                assert_eq!(screened.passing(&event), want, "{url}");
                let mut memo = Memo::default();
                assert_eq!(screened.may_match(&event, &mut memo), !want.is_empty(), "{url}");
                hits += want.len();
            }
        }
        assert!(hits > 20, "the texts hit the rules: {hits}");
    }

    /// A new prefilter settles its clause order early: the first reordering comes after
    /// `FIRST_REORDER` gates, not `REORDER_EVERY`, and the interval then doubles.
    #[test]
    fn the_first_reordering_comes_early() {
        let mut filter = Prefilter::build([&compile(SCAN)]);
        let first = |filter: &Prefilter| filter.rules[0].as_ref().map(|c| c[0].atoms.clone());
        let built = first(&filter);
        let mut memo = Memo::default();
        let event = json!({"network": {"transport": "tcp"},
                           "flow": {"state": "SF", "orig_payload_bytes": 10}});
        for _ in 0..FIRST_REORDER {
            assert!(!filter.may_match(&CanhEvent::new(&event), &mut memo));
        }
        assert_ne!(first(&filter), built, "`tcp` never fails: it goes behind the state clauses");
        assert_eq!(filter.reorder_interval, 2 * FIRST_REORDER);
        for _ in 0..4 * REORDER_EVERY {
            filter.may_match(&CanhEvent::new(&event), &mut memo);
        }
        assert_eq!(filter.reorder_interval, REORDER_EVERY, "doubled up to the settled interval");
    }

    /// The clauses are reordered by how often they fail, and the verdicts stay those of the
    /// gate as built.
    #[test]
    fn reordering_follows_failures_and_keeps_verdicts() {
        let mut filter = Prefilter::build([&compile(SCAN)]);
        let first = |filter: &Prefilter| filter.rules[0].as_ref().map(|c| c[0].atoms.clone());
        let built = first(&filter);
        assert_eq!(built.as_ref().map(Vec::len), Some(1), "the single-atom `tcp` clause first");
        let mut memo = Memo::default();
        let states = ["SF", "SF", "S0", "RSTO", "REJ", "SF", "S1"];
        for i in 0..3 * REORDER_EVERY as usize {
            let event = json!({"network": {"transport": "tcp"},
                               "flow": {"state": states[i % states.len()],
                                        "orig_payload_bytes": i % 3}});
            let event = CanhEvent::new(&event);
            let want = !filter.passing(&event).is_empty();
            assert_eq!(filter.may_match(&event, &mut memo), want, "event {i}");
        }
        // `tcp` holds on every event: it went behind the clauses on the state.
        assert_ne!(first(&filter), built, "{:?}", filter.rules);
    }

    /// A top-level key equal to a whole dotted path is what rsigma reads first: the gate, which
    /// shares the lookup of the top-level object among fields, must read it too.
    #[test]
    fn a_flat_dotted_key_comes_first() {
        let rule = compile(SCAN);
        let filter = Prefilter::build([&rule]);
        let events = [
            json!({"network": {"transport": "tcp"}, "flow.state": "S0", "flow": {"state": "SF"}}),
            json!({"network": {"transport": "tcp"}, "flow.state": "SF", "flow": {"state": "S0"}}),
            json!({"network.transport": "udp", "network": {"transport": "tcp"},
                   "flow": {"state": "S0"}}),
            json!({"network": {"transport": "tcp"}, "flow": {"state": "S0"}}),
        ];
        let mut verdicts = Vec::new();
        for event in &events {
            let fields = CanhEvent::new(event);
            let want = rsigma_eval::evaluate_rule(&rule, &rsigma_eval::JsonEvent::borrow(event));
            assert_eq!(!filter.passing(&fields).is_empty(), want.is_some(), "{event}");
            verdicts.push(want.is_some());
        }
        assert_eq!(verdicts, [true, false, false, true]);
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
            let mut filter = Prefilter::build([&rule]);
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
    fn numeric_shortcut_answers_like_the_matcher() {
        let rule = compile(
            "title: t\nlogsource: {product: x}\ndetection:\n  sel:\n    a: 22\n    \
             b|gt: 10\n    c|gte: 500000000\n    d|lt: 5000\n    e|lte: -1.5\n    f: 0\n  \
             condition: sel\n",
        );
        let numbers = [
            json!(0),
            json!(22),
            json!(22.0),
            json!(-1.5),
            json!(-2),
            json!(10),
            json!(10.000001),
            json!(4999),
            json!(5000),
            json!(500000000),
            json!(499999999.9),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
        ];
        let mut numeric = 0;
        for detection in rule.detections.values() {
            let CompiledDetection::AllOf(items) = detection else { continue };
            for item in items {
                for number in &numbers {
                    let serde_json::Value::Number(n) = number else { continue };
                    let event = json!({"z": number});
                    let wrapped = CanhEvent::new(&event);
                    let want = item.matcher.matches(&EventValue::from(number), &wrapped);
                    if let Some(verdict) = numeric_matches(&item.matcher, n) {
                        assert_eq!(verdict, want, "{item:?} {number}");
                        numeric += 1;
                    }
                }
            }
        }
        assert!(numeric >= 4 * numbers.len(), "the comparisons are numeric matchers: {numeric}");
    }

    #[test]
    fn ascii_shortcut_answers_like_the_matcher() {
        let rule = compile(
            "title: t\nlogsource: {product: x}\ndetection:\n  sel:\n    a: Ab\n    \
             b|contains: [dEf, x]\n    c|startswith: GH\n    d|endswith: '.Exe'\n    \
             e|contains|cased: Kk\n    f: [Sx, tY, '']\n    g|contains: [Ab, cD, '.exe']\n    \
             h|startswith: [gH, X]\n  condition: sel\n",
        );
        let texts = [
            "ab", "AB", "aB ", "xdefx", "DEF", "gh1", "G", "a.exe", "A.EXE", "exe", "Kk", "kk", "",
            "ä", "SX", "sx", "Ty", "x", "XCd",
        ];
        let mut groups = 0;
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
                    if matches!(item.matcher, CompiledMatcher::CaseInsensitiveGroup { .. })
                        && text.is_ascii()
                    {
                        assert!(ascii_matches(&item.matcher, text).is_some(), "{item:?}");
                        groups += 1;
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 8 * texts.len());
        assert!(groups > 0, "lists of values compile to case-insensitive groups");
    }
}
