//! Detection: Sigma rules (with v2 correlations) over Canh events, alerts out. A pure core: events
//! and the current time in, alert events out; no files, clocks or sockets in here (rule files are
//! read by `load`, called from the shell).
//!
//! The path of one event:
//! 1. routed by dataset to the logsource families whose rules can apply (`mapping`), field names
//!    already mapped to Canh's; the rules of the families it was routed to are evaluated by one
//!    rsigma `Engine` built for that set of families (its candidate index then runs once per
//!    event, not once per family), reading fields through `fields::CanhEvent`; a `prefilter`
//!    built from the same rules skips the engine for events none of them can match, and for
//!    the others hands over the rules whose gate holds, decided one by one as the engine
//!    would (routes whose gates search keywords run the whole engine instead);
//! 2. matches of rules that a correlation references feed one shared rsigma `CorrelationEngine`,
//!    on event time; an event later than the newest seen minus `lateness` is kept out of
//!    correlation (rsigma 0.23 can raise a false `event_count` alert on such an event);
//! 3. every match and correlation becomes an alert event, deduplicated per rule and group over
//!    `dedup_window` (a later batch's matches re-emit the alert under its id with the count
//!    updated), and dropped if a live suppression covers it.
//!
//! The collector hands a batch over as a `tape::Tape` (`process_tape`): routing, the prefilter and
//! the indicator lookups read it, and only events a rule may match become the `serde_json::Value`
//! the steps above read. `process` takes `Value`s (the `detect` command, tests, benches).

pub mod fields;
pub mod intel;
pub mod load;
pub mod mapping;
pub mod prefilter;
pub mod ruletest;
pub mod suppress;
pub mod tape;

use canh_event::{Dataset, Event, Timestamp};
use fields::{CanhEvent, FieldPath};
use intel::IntelSet;
use load::LoadedRules;
use mapping::Mapping;
use prefilter::Prefilter;
use rsigma_eval::event::JsonEvent;
use rsigma_eval::{
    CompiledRule, CorrelationConfig, CorrelationEngine, CorrelationEventMode, DetectionBody,
    Engine, EvaluationResult, ResultBody, RuleHeader, TimestampFallback,
};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use suppress::Suppression;
use tape::{Tape, TapeEvent};

/// The tenant field: every correlation is grouped by it as well, so two tenants never share a
/// window.
const TENANT_FIELD: &str = "organization.id";

/// Sensors whose event-time watermark is tracked at most.
const MAX_SENSORS: usize = 100_000;

/// Fields that key a single-event alert for deduplication, when the event has them.
const DETECTION_GROUP_FIELDS: [&str; 3] = ["source.ip", "destination.ip", "user.name"];

/// One event in this many has its per-family evaluation timed; the time is scaled up by it. Two
/// clock reads per family on every event would cost more than some families' evaluation.
const TIME_SAMPLE: u64 = 8;

/// Events whose memory `fields::warm` reads in one go, a group ahead of the one being processed.
const WARM_GROUP: usize = 8;

/// The rule-group name of correlation rules and of indicator rules in `RuleHealth`.
pub const CORRELATION_GROUP: &str = "correlation";
pub const INTEL_GROUP: &str = "intel";

#[derive(Debug, Clone)]
pub struct Settings {
    /// How far behind the newest event time an event may be and still enter correlation.
    pub lateness_secs: i64,
    /// Correlation state entries (correlation x group) kept at most; more are evicted.
    pub max_keys: usize,
    /// Alerts of one rule and group within this window fold into one.
    pub dedup_window_secs: i64,
    /// Event ids kept per alert.
    pub max_event_ids: usize,
    /// Entries kept per correlation window (one correlation and group), newest first. rsigma 0.23
    /// keeps every matching event of a window and counts a value_count window's distinct values
    /// anew on every event, so without a cap one busy group (a port scan, a brute force at line
    /// rate) costs memory and time per event in proportion to its window: quadratic. With the cap
    /// a count saturates at it (value_count: distinct values among the newest entries), far above
    /// the pack's thresholds (10-30).
    pub max_group_entries: usize,
    /// Group every correlation by `organization.id` too (off for the flat oracle events).
    pub group_by_tenant: bool,
    /// Evaluate through one indexed engine per set of routed families, reading fields through
    /// `CanhEvent`. Off: every routed rule on every event with rsigma's plain `evaluate_rule`
    /// over `JsonEvent`, the reference the fast path is tested against (same alerts, slower).
    pub fast_path: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lateness_secs: 300,
            max_keys: 100_000,
            dedup_window_secs: 600,
            max_event_ids: 50,
            max_group_entries: 1_000,
            group_by_tenant: true,
            fast_path: true,
        }
    }
}

/// Counters since the detector was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    /// Rule evaluations run (events x families routed to).
    pub family_evaluations: u64,
    pub matches: u64,
    pub late_events: u64,
    pub events_without_time: u64,
    pub evictions: u64,
    pub alerts: u64,
    pub deduplicated: u64,
    pub suppressed: u64,
    /// Events of a tape (`process_tape`) that were made a `Value` for the plain path.
    pub tape_fallbacks: u64,
}

/// What the alert of one rule carries about the rule.
#[derive(Debug, Clone)]
struct RuleMeta {
    id: String,
    title: String,
    level: Option<String>,
    tags: Vec<String>,
    /// The rule group it is evaluated in: a logsource family name, `correlation` or `intel`.
    group: String,
}

/// Per-rule counters since the detector was built (carried over a reload for rules that stay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounters {
    /// Events the rule matched (detection rules, indicators) or correlation alerts it raised.
    pub hits: u64,
    /// Matches a correlation could not use: the event had no usable `@timestamp`, or it came
    /// later than `lateness` behind its sensor's newest event.
    pub errors: u64,
}

/// Evaluation counters of one rule group (a logsource family: rsigma evaluates a family's rules
/// in one call, so time is measured per family, not per rule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounters {
    /// Events evaluated by the group's rules.
    pub evaluations: u64,
    /// Estimated evaluation time: sampled on one event in `TIME_SAMPLE`, scaled up; an event's
    /// families are evaluated together, so its time is shared among them by rule count.
    pub nanos: u64,
}

/// One rule's health, as the admin endpoint and the API show it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHealth {
    pub rule_id: String,
    pub title: String,
    pub level: String,
    pub group: String,
    pub hits: u64,
    pub errors: u64,
}

/// Turns the detector's running counters into per-interval changes: for metrics after each batch,
/// and for the `rule_stats` rows written every interval. Survives rule reloads (a counter that went
/// down, a rule removed and added again, counts from zero).
#[derive(Debug, Default)]
pub struct HealthLedger {
    rules: HashMap<String, RuleCounters>,
    groups: HashMap<String, GroupCounters>,
    pending_rules: BTreeMap<String, RuleHealth>,
    pending_groups: HashMap<String, GroupCounters>,
}

fn delta(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

impl HealthLedger {
    /// What changed since the last call: rules (hits and errors in `RuleHealth` are the changes)
    /// and groups. Also kept for the next `take_interval`.
    pub fn observe(
        &mut self,
        detector: &Detector,
    ) -> (Vec<RuleHealth>, Vec<(String, GroupCounters)>) {
        let mut rules = Vec::new();
        for mut rule in detector.rule_health() {
            let before = self.rules.get(&rule.rule_id).copied().unwrap_or_default();
            let now = RuleCounters { hits: rule.hits, errors: rule.errors };
            self.rules.insert(rule.rule_id.clone(), now);
            rule.hits = delta(now.hits, before.hits);
            rule.errors = delta(now.errors, before.errors);
            let pending = self
                .pending_rules
                .entry(rule.rule_id.clone())
                .or_insert_with(|| RuleHealth { hits: 0, errors: 0, ..rule.clone() });
            pending.hits += rule.hits;
            pending.errors += rule.errors;
            pending.title.clone_from(&rule.title);
            pending.level.clone_from(&rule.level);
            pending.group.clone_from(&rule.group);
            rules.push(rule);
        }
        let mut groups = Vec::new();
        for (name, now) in detector.group_health() {
            let before = self.groups.get(&name).copied().unwrap_or_default();
            self.groups.insert(name.clone(), now);
            let change = GroupCounters {
                evaluations: delta(now.evaluations, before.evaluations),
                nanos: delta(now.nanos, before.nanos),
            };
            let pending = self.pending_groups.entry(name.clone()).or_default();
            pending.evaluations += change.evaluations;
            pending.nanos += change.nanos;
            groups.push((name, change));
        }
        (rules, groups)
    }

    /// Every rule's changes since the last take, with its group's, and start a new interval.
    pub fn take_interval(&mut self) -> Vec<(RuleHealth, GroupCounters)> {
        let groups = std::mem::take(&mut self.pending_groups);
        std::mem::take(&mut self.pending_rules)
            .into_values()
            .map(|rule| {
                let group = groups.get(&rule.group).copied().unwrap_or_default();
                (rule, group)
            })
            .collect()
    }
}

/// The alerts of the batch being processed: candidates, folded while the batch runs, made events
/// at the end; and dedup key -> index in `alerts`, so matches within one batch fold into one.
#[derive(Default)]
struct BatchRun {
    alerts: Vec<Candidate>,
    in_batch: HashMap<String, usize>,
}

/// The rules of one set of families (those an event was routed to), in one engine.
struct Route {
    families: Vec<usize>,
    engine: Engine,
    /// False for events none of the route's rules can match: the engine is not run for them.
    prefilter: Prefilter,
    /// Events that pass the prefilter go to the whole engine (its candidate index picks the
    /// rules) rather than to the rules whose gate holds: when some gate has a keyword search,
    /// testing every gate costs more (a scan of the event's strings per keyword atom).
    whole_engine: bool,
    /// Events routed here, and those of them the prefilter let through to the engine.
    events: u64,
    engine_runs: u64,
}

/// How many events one route saw and how many of them reached rsigma's engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCount {
    /// The logsource families of the route, by name.
    pub families: Vec<String>,
    pub events: u64,
    pub engine_runs: u64,
}

pub struct Detector {
    mapping: Mapping,
    /// Each family's compiled rules (same index as `mapping.families`).
    family_rules: Vec<Vec<CompiledRule>>,
    /// One engine per set of families events were routed to, built on first use: a handful
    /// (one or two per dataset), each rule held by the few routes that include its family.
    routes: Vec<Route>,
    /// Scratch space of the prefilters.
    memo: prefilter::Memo,
    /// Scratch space of the prefilters on a tape.
    tape_memo: prefilter::TapeMemo,
    /// Scratch space: the rules of a route whose gate holds on the event.
    candidates: Vec<usize>,
    correlation: Option<CorrelationEngine>,
    /// Rule identities a correlation references -> whether the rule raises alerts itself too.
    correlated: HashMap<String, bool>,
    /// Fields copied from an event into the small view the correlation engine reads.
    correlation_fields: Vec<String>,
    /// `correlation_fields`, split once.
    correlation_paths: Vec<FieldPath>,
    /// Rule key of a detection rule a correlation references -> the fields (indices into
    /// `correlation_fields`) that the correlations referencing it read from an event: its match
    /// feeds only those, so the view handed to the correlation engine holds only them.
    correlation_reads: HashMap<String, Vec<usize>>,
    /// The fields alerts are built from, split once.
    paths: AlertPaths,
    meta: HashMap<String, RuleMeta>,
    settings: Settings,
    suppressions: Vec<Suppression>,
    /// Newest event time seen per sensor (`observer.id`), seconds: a sensor replaying its spool
    /// after an outage is late against itself, not against the sensors that kept sending.
    watermarks: HashMap<String, i64>,
    /// Shortest correlation timespan, seconds (lateness beyond it widens windows: see `Settings`).
    shortest_timespan: Option<u64>,
    /// (rule id, tenant, group) -> the alert still open for that key (see `Open`).
    dedup: HashMap<String, Open>,
    stats: Stats,
    routed: Vec<usize>,
    /// Families that hold at least one rule: the only ones worth routing to.
    active: Vec<usize>,
    /// The `active` families per dataset.
    route_table: mapping::RouteTable,
    intel: IntelSet,
    intel_hits: Vec<intel::Hit>,
    /// Rule key -> counters; every loaded rule has an entry, so silent rules show as zero.
    rule_counters: HashMap<String, RuleCounters>,
    /// Per family (same index as `family_rules`).
    group_counters: Vec<GroupCounters>,
}

impl Detector {
    /// Build engines from loaded rules. Never fails: rules the engines refuse were already
    /// reported by the loader (a correlation the engine refuses is dropped here, and counted).
    pub fn new(loaded: LoadedRules, mapping: Mapping, settings: Settings) -> Detector {
        let mut per_family: Vec<Vec<rsigma_eval::CompiledRule>> =
            mapping.families.iter().map(|_| Vec::new()).collect();
        let mut meta = HashMap::new();
        let correlated_refs = load::correlation_refs(&loaded.correlations);
        let mut correlated = HashMap::new();
        let mut correlation_rules = Vec::new();
        // (rule key, id, name) of the detection rules correlations reference.
        let mut referenced: Vec<(String, Option<String>, Option<String>)> = Vec::new();
        // Per correlation: the rules it references and the fields it reads from an event.
        let mut reads: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for rule in loaded.rules {
            let key = rule_key(rule.compiled.id.as_deref(), &rule.compiled.title);
            let key_for_lookup = key.clone();
            meta.insert(
                key.clone(),
                RuleMeta {
                    id: key,
                    title: rule.compiled.title.clone(),
                    level: rule.compiled.level.map(|l| level_name(&l)),
                    tags: rule.compiled.tags.clone(),
                    group: mapping.families[rule.family].name.clone(),
                },
            );
            let generate = rule
                .rule
                .id
                .iter()
                .chain(rule.rule.name.iter())
                .filter_map(|r| correlated_refs.get(r))
                .fold(None, |acc: Option<bool>, &g| Some(acc.unwrap_or(false) || g));
            if let Some(generate) = generate {
                correlated.insert(key_for_lookup.clone(), generate);
                referenced.push((
                    key_for_lookup.clone(),
                    rule.rule.id.clone(),
                    rule.rule.name.clone(),
                ));
                correlation_rules.push(rule.rule);
            }
            per_family[rule.family].push(rule.compiled);
        }
        let mut correlation_fields: HashSet<String> = HashSet::new();
        let mut correlation_timespans: Vec<u64> = Vec::new();
        let mut correlation = None;
        if !loaded.correlations.is_empty() {
            let mut engine = CorrelationEngine::new(CorrelationConfig {
                timestamp_fallback: TimestampFallback::Skip,
                max_state_entries: settings.max_keys.max(1),
                correlation_event_mode: CorrelationEventMode::Refs,
                max_correlation_events: settings.max_event_ids.max(1),
                max_group_entries: Some(settings.max_group_entries.max(1)),
                ..CorrelationConfig::default()
            });
            for rule in &correlation_rules {
                // Already compiled once by the loader; a second refusal cannot happen for the
                // same rule, and would only cost its correlations.
                let _ = engine.add_rule(rule);
            }
            for (mut correlation_rule, _path) in loaded.correlations {
                if settings.group_by_tenant
                    && !correlation_rule.group_by.iter().any(|f| f == TENANT_FIELD)
                {
                    correlation_rule.group_by.push(TENANT_FIELD.to_string());
                }
                let mut fields: Vec<String> = correlation_rule.group_by.clone();
                correlation_timespans.push(correlation_rule.timespan.seconds);
                if let rsigma_parser::CorrelationCondition::Threshold {
                    field: Some(more), ..
                } = &correlation_rule.condition
                {
                    fields.extend(more.iter().cloned());
                }
                for alias in &correlation_rule.aliases {
                    fields.extend(alias.mapping.values().cloned());
                }
                correlation_fields.extend(fields.iter().cloned());
                reads.push((correlation_rule.rules.clone(), fields));
                let key = rule_key(correlation_rule.id.as_deref(), &correlation_rule.title);
                // A correlation another correlation builds on raises its own alert only with
                // `generate: true`, like a detection rule.
                let generate = correlation_rule
                    .id
                    .iter()
                    .chain(correlation_rule.name.iter())
                    .filter_map(|r| correlated_refs.get(r))
                    .fold(None, |acc: Option<bool>, &g| Some(acc.unwrap_or(false) || g));
                if let Some(generate) = generate {
                    correlated.insert(key.clone(), generate);
                }
                meta.insert(
                    key.clone(),
                    RuleMeta {
                        id: key,
                        title: correlation_rule.title.clone(),
                        level: correlation_rule.level.map(|l| level_name(&l)),
                        tags: correlation_rule.tags.clone(),
                        group: CORRELATION_GROUP.to_string(),
                    },
                );
                if engine.add_correlation(&correlation_rule).is_err() {
                    meta.remove(&rule_key(correlation_rule.id.as_deref(), &correlation_rule.title));
                }
            }
            correlation = Some(engine);
        }
        let mut correlation_fields: Vec<String> = correlation_fields.into_iter().collect();
        correlation_fields.sort();
        let mut correlation_reads: HashMap<String, Vec<usize>> = HashMap::new();
        for (key, id, name) in referenced {
            let mut indices: Vec<usize> = reads
                .iter()
                .filter(|(refs, _)| {
                    refs.iter().any(|r| id.as_deref() == Some(r) || name.as_deref() == Some(r))
                })
                .flat_map(|(_, fields)| fields)
                .filter_map(|f| correlation_fields.iter().position(|c| c == f))
                .collect();
            indices.sort_unstable();
            indices.dedup();
            correlation_reads.insert(key, indices);
        }
        let active: Vec<usize> =
            (0..per_family.len()).filter(|&i| !per_family[i].is_empty()).collect();
        let route_table = mapping.route_table(active.iter().copied());
        let shortest_timespan = correlation_timespans.into_iter().min();
        let rule_counters = meta.keys().map(|k| (k.clone(), RuleCounters::default())).collect();
        let group_counters = vec![GroupCounters::default(); per_family.len()];
        Detector {
            mapping,
            family_rules: per_family,
            routes: Vec::new(),
            memo: prefilter::Memo::default(),
            tape_memo: prefilter::TapeMemo::default(),
            candidates: Vec::new(),
            correlation,
            correlated,
            correlation_paths: correlation_fields.iter().map(|f| FieldPath::new(f)).collect(),
            correlation_fields,
            correlation_reads,
            paths: AlertPaths::new(),
            meta,
            settings,
            suppressions: Vec::new(),
            watermarks: HashMap::new(),
            shortest_timespan,
            dedup: HashMap::new(),
            stats: Stats::default(),
            routed: Vec::new(),
            active,
            route_table,
            intel: IntelSet::default(),
            intel_hits: Vec::new(),
            rule_counters,
            group_counters,
        }
    }

    /// Match these indicators from now on (replacing any earlier set). Each kind present becomes
    /// a rule (`canh-intel-ip`, ...) with its own alerts and health counters.
    pub fn set_intel(&mut self, set: IntelSet) {
        for kind in intel::Kind::ALL {
            let (id, _) = kind.rule();
            self.meta.remove(id);
            self.rule_counters.remove(id);
        }
        for kind in set.kinds() {
            let (id, title) = kind.rule();
            self.meta.insert(
                id.to_string(),
                RuleMeta {
                    id: id.to_string(),
                    title: title.to_string(),
                    level: Some("high".into()),
                    tags: vec!["attack.command_and_control".into()],
                    group: INTEL_GROUP.to_string(),
                },
            );
            self.rule_counters.insert(id.to_string(), RuleCounters::default());
        }
        self.intel = set;
    }

    /// Per-rule hits and errors, sorted by rule id.
    pub fn rule_health(&self) -> Vec<RuleHealth> {
        let mut out: Vec<RuleHealth> = self
            .meta
            .values()
            .map(|meta| {
                let counters = self.rule_counters.get(&meta.id).copied().unwrap_or_default();
                RuleHealth {
                    rule_id: meta.id.clone(),
                    title: meta.title.clone(),
                    level: meta.level.clone().unwrap_or_default(),
                    group: meta.group.clone(),
                    hits: counters.hits,
                    errors: counters.errors,
                }
            })
            .collect();
        out.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        out
    }

    /// Evaluation counters per rule group that holds rules: (group name, counters).
    pub fn group_health(&self) -> Vec<(String, GroupCounters)> {
        self.active
            .iter()
            .map(|&i| (self.mapping.families[i].name.clone(), self.group_counters[i]))
            .collect()
    }

    /// Matches that correlation could not use count as errors of their rules.
    fn count_lost(&mut self, detections: &[EvaluationResult]) {
        for detection in detections {
            let key = rule_key(detection.header.rule_id.as_deref(), &detection.header.rule_title);
            self.count_rule(&key, 0, 1);
        }
    }

    fn count_rule(&mut self, rule: &str, hits: u64, errors: u64) {
        if let Some(counters) = self.rule_counters.get_mut(rule) {
            counters.hits += hits;
            counters.errors += errors;
        }
    }

    /// Take over the correlation windows, deduplication memory and event-time watermark of the
    /// detector this one replaces (a rule reload). Windows of correlations that no longer exist
    /// are dropped by the library.
    pub fn carry_state_from(&mut self, old: &Detector) {
        if let (Some(new), Some(previous)) = (self.correlation.as_mut(), old.correlation.as_ref()) {
            new.import_state(previous.export_state());
        }
        self.dedup = old.dedup.clone();
        self.watermarks = old.watermarks.clone();
        for (rule, counters) in &old.rule_counters {
            if let Some(mine) = self.rule_counters.get_mut(rule) {
                *mine = *counters;
            }
        }
        for (index, family) in self.mapping.families.iter().enumerate() {
            let old_index = old.mapping.families.iter().position(|f| f.name == family.name);
            if let Some(old_index) = old_index {
                self.group_counters[index] = old.group_counters[old_index];
            }
        }
    }

    pub fn set_suppressions(&mut self, suppressions: Vec<Suppression>) {
        self.suppressions = suppressions;
    }

    /// Whether the configured lateness exceeds the shortest correlation window. rsigma 0.23 keeps
    /// a group's newer entries when a late event arrives, so an event `lateness` behind can see up
    /// to `timespan + lateness` of events: keep lateness at or below the shortest timespan.
    pub fn lateness_exceeds_shortest_window(&self) -> Option<u64> {
        let shortest = self.shortest_timespan?;
        (self.settings.lateness_secs > i64::try_from(shortest).unwrap_or(i64::MAX))
            .then_some(shortest)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn rule_count(&self) -> usize {
        self.family_rules.iter().map(Vec::len).sum::<usize>()
            + self.correlation.as_ref().map_or(0, CorrelationEngine::correlation_rule_count)
    }

    /// Correlation state entries held now.
    pub fn correlation_keys(&self) -> usize {
        self.correlation.as_ref().map_or(0, CorrelationEngine::state_count)
    }

    /// Per route (set of families events were routed to, fast path only): events routed there
    /// and how many of them the prefilter let through to rsigma's engine.
    pub fn route_counts(&self) -> Vec<RouteCount> {
        self.routes
            .iter()
            .map(|route| RouteCount {
                families: route
                    .families
                    .iter()
                    .map(|&f| self.mapping.families[f].name.clone())
                    .collect(),
                events: route.events,
                engine_runs: route.engine_runs,
            })
            .collect()
    }

    /// Rule ids (or titles) that match this one event, without touching correlation state or
    /// producing alerts. What the Sigma oracle test compares.
    pub fn matching_rules(&mut self, event: &Value) -> Vec<String> {
        let mut routed = std::mem::take(&mut self.routed);
        let fields = CanhEvent::new(event);
        self.route_table.route(&self.mapping, fields.root(), &mut routed);
        let out = self
            .evaluate_routed(&fields, &routed)
            .iter()
            .map(|result| rule_key(result.header.rule_id.as_deref(), &result.header.rule_title))
            .collect();
        self.routed = routed;
        out
    }

    /// The matches of the rules of the routed families on the event.
    fn evaluate_routed(&mut self, fields: &CanhEvent, routed: &[usize]) -> Vec<EvaluationResult> {
        if routed.is_empty() {
            return Vec::new();
        }
        if !self.settings.fast_path {
            let plain = JsonEvent::borrow(fields.value());
            return routed
                .iter()
                .flat_map(|&family| &self.family_rules[family])
                .filter_map(|rule| rsigma_eval::evaluate_rule(rule, &plain))
                .collect();
        }
        let route = self.route(routed);
        let route = &mut self.routes[route];
        route.events += 1;
        if route.prefilter.is_open() {
            route.engine_runs += 1;
            return route.engine.evaluate(fields);
        }
        if route.whole_engine {
            if !route.prefilter.may_match(fields, &mut self.memo) {
                return Vec::new();
            }
            route.engine_runs += 1;
            return route.engine.evaluate(fields);
        }
        // Only the rules whose gate holds, in the engine's order, each decided as the engine
        // decides it (`Engine::evaluate` runs `evaluate_rule` on its candidates in ascending
        // order; `lean_evaluate` gives the same verdict with a smaller result), without the
        // engine's candidate index, which the gates make redundant here.
        let candidates = &mut self.candidates;
        route.prefilter.candidates(fields, &mut self.memo, candidates);
        if candidates.is_empty() {
            return Vec::new();
        }
        route.engine_runs += 1;
        let rules = route.engine.rules();
        candidates.iter().filter_map(|&rule| lean_evaluate(&rules[rule], fields)).collect()
    }

    /// Build the engines (and prefilters) of the routes these events take, without evaluating
    /// them: otherwise the first event of each route pays for it (milliseconds: the prefilter
    /// compiles its screens' regexes). Benches call it so they time detection alone.
    pub fn prepare_routes(&mut self, events: &[Value]) {
        if !self.settings.fast_path {
            return;
        }
        let mut routed = std::mem::take(&mut self.routed);
        for event in events {
            self.route_table.route(&self.mapping, &fields::Root::new(event), &mut routed);
            if !routed.is_empty() {
                self.route(&routed);
            }
        }
        self.routed = routed;
    }

    /// The route (engine) of this set of families, built the first time the set is seen.
    fn route(&mut self, families: &[usize]) -> usize {
        // Element by element: the lists are a few numbers, and slice equality calls `bcmp`.
        let same = |route: &Route| {
            route.families.len() == families.len()
                && route.families.iter().zip(families).all(|(a, b)| a == b)
        };
        if let Some(index) = self.routes.iter().position(same) {
            return index;
        }
        let mut engine = Engine::new();
        engine.extend_compiled_rules(
            families.iter().flat_map(|&f| self.family_rules[f].iter().cloned()),
        );
        let prefilter = Prefilter::build(engine.rules());
        self.routes.push(Route {
            families: families.to_vec(),
            engine,
            whole_engine: prefilter.has_keywords(),
            prefilter,
            events: 0,
            engine_runs: 0,
        });
        self.routes.len() - 1
    }

    /// Run detection over a batch of events (JSON objects, Canh's schema) and return the alerts.
    /// `now` is the wall-clock time, used only for suppression expiry. The events are taken in
    /// groups of `WARM_GROUP`, the next group's memory read ahead (`fields::warm`).
    pub fn process(&mut self, events: &[Value], now: Timestamp) -> Vec<Event> {
        let mut run = BatchRun::default();
        fields::warm(&events[..events.len().min(WARM_GROUP)]);
        for (index, event) in events.iter().enumerate() {
            if index % WARM_GROUP == 0 {
                // The group after this one, read while this group is processed.
                let ahead = events.get(index + WARM_GROUP..).unwrap_or_default();
                fields::warm(&ahead[..ahead.len().min(WARM_GROUP)]);
            }
            self.process_event(event, now, &mut run);
        }
        self.finish(run)
    }

    /// `process` over the events of a tape, in event-time order (`Tape::time_order`): the same
    /// alerts as `process` over their `Value`s in that order. Each event is routed, its route's
    /// prefilter asked and the indicators looked up on the tape; only an event the prefilter
    /// may let through (or an open or keyword route, or an indicator hit) is made a `Value` and
    /// goes through `process`'s steps. The others match nothing there either: they are only
    /// counted, as `process` counts them.
    pub fn process_tape(&mut self, tape: &Tape, now: Timestamp) -> Vec<Event> {
        let mut run = BatchRun::default();
        // Scratch of this loop (`process_event` has its own, in `self`).
        let mut routed = Vec::new();
        let mut intel_hits = Vec::new();
        for index in tape.time_order() {
            let event = tape.event(index as usize);
            self.route_table.route_tape(&self.mapping, &event, &mut routed);
            let sampled = (self.stats.events + 1).is_multiple_of(TIME_SAMPLE);
            let started = sampled.then(Instant::now);
            let may_match = self.may_match_on_tape(&event, &routed);
            if !self.intel.is_empty() {
                self.intel.matches_tape(&event, &mut intel_hits);
            }
            if may_match || !intel_hits.is_empty() {
                self.stats.tape_fallbacks += 1;
                self.process_event(&tape.value(index as usize), now, &mut run);
                continue;
            }
            // What `process_event` and `evaluate` count for an event that matches nothing.
            self.stats.events += 1;
            if routed.is_empty() {
                continue;
            }
            self.stats.family_evaluations += routed.len() as u64;
            for &family in &routed {
                self.group_counters[family].evaluations += 1;
            }
            if let Some(started) = started {
                self.share_time(&routed, started);
            }
        }
        self.finish(run)
    }

    /// Whether `process_tape` makes this event a `Value` for the plain path: a rule may match it
    /// (as far as the tape tells) or an indicator hits it. An event for which it is false has no
    /// match and no indicator hit on its `Value`. For tests.
    pub fn needs_value(&mut self, event: &TapeEvent) -> bool {
        let mut routed = std::mem::take(&mut self.routed);
        self.route_table.route_tape(&self.mapping, event, &mut routed);
        let may_match = self.may_match_on_tape(event, &routed);
        self.routed = routed;
        let mut hits = Vec::new();
        if !self.intel.is_empty() {
            self.intel.matches_tape(event, &mut hits);
        }
        may_match || !hits.is_empty()
    }

    /// The fields the prefilters of the routes built so far read (see `prepare_routes`). For
    /// tests.
    pub fn prefilter_fields(&self) -> Vec<FieldPath> {
        let mut out: Vec<FieldPath> = Vec::new();
        for route in &self.routes {
            for field in route.prefilter.fields() {
                if !out.iter().any(|f| f.as_str() == field.as_str()) {
                    out.push(field.clone());
                }
            }
        }
        out
    }

    /// Whether a rule of the routed families may match the event, as far as the tape tells
    /// (false: none matches its `Value`). Counts the event on its route when false.
    fn may_match_on_tape(&mut self, event: &TapeEvent, routed: &[usize]) -> bool {
        if routed.is_empty() {
            return false;
        }
        if !self.settings.fast_path {
            return true;
        }
        let route = self.route(routed);
        let route = &mut self.routes[route];
        if route.prefilter.is_open() {
            return true;
        }
        if route.prefilter.may_pass_on_tape(event, &mut self.tape_memo) {
            return true;
        }
        route.events += 1;
        false
    }

    /// One event of `process`.
    fn process_event(&mut self, event: &Value, now: Timestamp, run: &mut BatchRun) {
        let mut routed = std::mem::take(&mut self.routed);
        let mut intel_hits = std::mem::take(&mut self.intel_hits);
        self.stats.events += 1;
        let fields = CanhEvent::new(event);
        self.route_table.route(&self.mapping, fields.root(), &mut routed);
        let detections = self.evaluate(&fields, &routed);
        if !self.intel.is_empty() {
            self.intel.matches(event, &mut intel_hits);
        }
        if !(detections.is_empty() && intel_hits.is_empty()) {
            self.alerts_of(&fields, detections, &intel_hits, now, run);
        }
        self.routed = routed;
        self.intel_hits = intel_hits;
    }

    /// The alerts of one event's matches, into the batch's.
    fn alerts_of(
        &mut self,
        fields: &CanhEvent,
        detections: Vec<EvaluationResult>,
        intel_hits: &[intel::Hit],
        now: Timestamp,
        run: &mut BatchRun,
    ) {
        self.stats.matches += (detections.len() + intel_hits.len()) as u64;
        let time = event_time(fields.root());
        let event = EventFields::new(fields.root());
        let mut candidates = Vec::new();
        let mut for_correlation = Vec::new();
        for detection in detections {
            let key = rule_key(detection.header.rule_id.as_deref(), &detection.header.rule_title);
            let (referenced, generate) = self.correlation_role(&key);
            self.count_rule(&key, 1, 0);
            if !referenced || generate {
                candidates.push(self.detection_alert(key, event, time));
            }
            if referenced {
                for_correlation.push(detection);
            }
        }
        for hit in intel_hits {
            let candidate = self.intel_alert(hit, event, time);
            self.count_rule(&candidate.rule, 1, 0);
            candidates.push(candidate);
        }
        if !for_correlation.is_empty() {
            candidates.extend(self.correlate(event, time, for_correlation));
        }
        for candidate in candidates {
            self.emit(candidate, now, &mut run.alerts, &mut run.in_batch);
        }
    }

    /// The batch's alerts as events, and what a later batch folds into.
    fn finish(&mut self, run: BatchRun) -> Vec<Event> {
        let BatchRun { alerts, in_batch } = run;
        // What this batch made of each alert is what a later batch's matches fold into.
        for (key, index) in in_batch {
            if let Some(open) = self.dedup.get_mut(&key) {
                open.state.clone_from(&alerts[index]);
            }
        }
        // `emit` keeps only candidates of rules with metadata.
        alerts
            .into_iter()
            .filter_map(|c| self.meta.get(&c.rule).map(|meta| alert_event(meta, c)))
            .collect()
    }

    /// The matches of the rules of these families on the event, counted per family; evaluation
    /// time is sampled on one event in `TIME_SAMPLE` and shared among the families by rule count.
    fn evaluate(&mut self, event: &CanhEvent, routed: &[usize]) -> Vec<EvaluationResult> {
        if routed.is_empty() {
            return Vec::new();
        }
        self.stats.family_evaluations += routed.len() as u64;
        for &family in routed {
            self.group_counters[family].evaluations += 1;
        }
        if !self.stats.events.is_multiple_of(TIME_SAMPLE) {
            return self.evaluate_routed(event, routed);
        }
        let started = Instant::now();
        let detections = self.evaluate_routed(event, routed);
        self.share_time(routed, started);
        detections
    }

    /// The time since `started`, on a sampled event, shared among the routed families by rule
    /// count (scaled up by `TIME_SAMPLE`).
    fn share_time(&mut self, routed: &[usize], started: Instant) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let total: u64 = routed.iter().map(|&f| self.family_rules[f].len() as u64).sum();
        for &family in routed {
            let rules = self.family_rules[family].len() as u64;
            let share = nanos.saturating_mul(TIME_SAMPLE).saturating_mul(rules) / total.max(1);
            let counters = &mut self.group_counters[family];
            counters.nanos = counters.nanos.saturating_add(share);
        }
    }

    /// The fields (indices into `correlation_fields`) the correlations fed by these matches read,
    /// in ascending order; `None`: all of them (a rule not in `correlation_reads`).
    fn correlation_view_fields(&self, detections: &[EvaluationResult]) -> Option<Vec<usize>> {
        let mut out: Vec<usize> = Vec::new();
        for detection in detections {
            let key = detection.header.rule_id.as_deref().unwrap_or(&detection.header.rule_title);
            out.extend(self.correlation_reads.get(key)?);
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    fn correlation_role(&self, key: &str) -> (bool, bool) {
        match self.correlated.get(key) {
            Some(&generate) => (true, generate),
            None => (false, false),
        }
    }

    fn correlate(
        &mut self,
        event: EventFields,
        time: Option<Timestamp>,
        detections: Vec<EvaluationResult>,
    ) -> Vec<Candidate> {
        if self.correlation.is_none() {
            return Vec::new();
        }
        let Some(time) = time else {
            self.stats.events_without_time += 1;
            self.count_lost(&detections);
            return Vec::new();
        };
        let secs = time.secs();
        let sensor = match event.get(&self.paths.sensor) {
            Some(Value::String(text)) => Cow::Borrowed(text.as_str()),
            other => Cow::Owned(other.and_then(scalar_text).unwrap_or_default()),
        };
        let watermark = match self.watermarks.get_mut(sensor.as_ref()) {
            Some(watermark) => {
                *watermark = (*watermark).max(secs);
                *watermark
            }
            None => {
                if self.watermarks.len() >= MAX_SENSORS {
                    // More sensors than any deployment has: start over rather than grow.
                    self.watermarks.clear();
                }
                self.watermarks.insert(sensor.into_owned(), secs);
                secs
            }
        };
        if secs < watermark - self.settings.lateness_secs {
            self.stats.late_events += 1;
            self.count_lost(&detections);
            return Vec::new();
        }
        let reads = self.correlation_view_fields(&detections);
        let Some(engine) = self.correlation.as_mut() else { return Vec::new() };
        // Evict here rather than inside the engine, so the evictions can be counted.
        let before = engine.state_count();
        if before >= self.settings.max_keys {
            engine.evict_expired(secs);
            self.stats.evictions += (before - engine.state_count()) as u64;
        }
        let view = correlation_view(
            event,
            &self.paths,
            &self.correlation_fields,
            &self.correlation_paths,
            reads.as_deref(),
        );
        let results = engine.process_with_detections(&JsonEvent::borrow(&view), detections, secs);
        let mut out = Vec::new();
        for result in results {
            let ResultBody::Correlation(body) = &result.body else { continue };
            if let Some(false) = self
                .correlated
                .get(&rule_key(result.header.rule_id.as_deref(), &result.header.rule_title))
            {
                continue;
            }
            let key = rule_key(result.header.rule_id.as_deref(), &result.header.rule_title);
            if let Some(counters) = self.rule_counters.get_mut(&key) {
                counters.hits += 1;
            }
            let group: BTreeMap<String, String> = body.group_key.iter().cloned().collect();
            let refs = body.event_refs.clone().unwrap_or_default();
            let first = refs.iter().map(|r| r.timestamp).min().unwrap_or(secs);
            let event_ids: Vec<String> = refs.iter().filter_map(|r| r.id.clone()).collect();
            out.push(Candidate {
                rule: key,
                group,
                event_ids,
                first_seen: Timestamp::from_secs_nanos(first.min(secs), 0),
                last_seen: time,
                count: body.aggregated_value.max(0.0).round() as u64,
                tenant: event.text(&self.paths.tenant),
                sensor: event.text(&self.paths.sensor),
            });
        }
        out
    }

    fn intel_alert(
        &self,
        hit: &intel::Hit,
        event: EventFields,
        time: Option<Timestamp>,
    ) -> Candidate {
        let indicator = &self.intel.indicators[hit.indicator];
        let mut candidate = self.detection_alert(indicator.kind.rule().0.to_string(), event, time);
        let group = &mut candidate.group;
        group.insert("threat.indicator.type".into(), indicator.kind.as_str().into());
        group.insert("threat.indicator.value".into(), indicator.value.clone());
        group.insert("threat.indicator.field".into(), hit.field.into());
        group.insert("threat.indicator.provider".into(), indicator.source.clone());
        if !indicator.description.is_empty() {
            group.insert("threat.indicator.description".into(), indicator.description.clone());
        }
        candidate
    }

    fn detection_alert(
        &self,
        rule: String,
        event: EventFields,
        time: Option<Timestamp>,
    ) -> Candidate {
        let mut group = BTreeMap::new();
        for (field, path) in DETECTION_GROUP_FIELDS.iter().zip(&self.paths.group) {
            if let Some(value) = event.text(path) {
                group.insert(field.to_string(), value);
            }
        }
        let time = time.unwrap_or_default();
        Candidate {
            rule,
            group,
            event_ids: event.text(&self.paths.event_id).into_iter().collect(),
            first_seen: time,
            last_seen: time,
            count: 1,
            tenant: event.text(&self.paths.tenant),
            sensor: event.text(&self.paths.sensor),
        }
    }

    fn emit(
        &mut self,
        candidate: Candidate,
        now: Timestamp,
        alerts: &mut Vec<Candidate>,
        in_batch: &mut HashMap<String, usize>,
    ) {
        if suppress::find(&self.suppressions, &candidate.rule, &candidate.group, now).is_some() {
            self.stats.suppressed += 1;
            return;
        }
        let key = format!(
            "{}\u{0}{}\u{0}{:?}",
            candidate.rule,
            candidate.tenant.as_deref().unwrap_or_default(),
            candidate.group
        );
        let secs = candidate.last_seen.secs();
        let window = self.settings.dedup_window_secs;
        if let Some(&index) = in_batch.get(&key) {
            let alert = &mut alerts[index];
            if secs - alert.first_seen.secs() <= window {
                fold(alert, candidate, self.settings.max_event_ids);
                self.stats.deduplicated += 1;
                return;
            }
        }
        if let Some(open) = self.dedup.get(&key) {
            if !in_batch.contains_key(&key) && (secs - open.since).abs() <= window {
                // An alert of an earlier batch: emitted again with the match folded in (the same
                // rule, tenant, group and first time give the same id, `alert_id`), so the stored
                // row (the highest version wins) counts every match whatever the batch boundaries.
                let mut alert = open.state.clone();
                fold(&mut alert, candidate, self.settings.max_event_ids);
                self.stats.deduplicated += 1;
                if alert == open.state {
                    // Nothing new (a late match, evidence list full): the stored row says it.
                    return;
                }
                in_batch.insert(key, alerts.len());
                alerts.push(alert);
                return;
            }
        }
        if self.dedup.len() >= self.settings.max_keys {
            let horizon = secs - window;
            let before = self.dedup.len();
            self.dedup.retain(|_, open| open.since >= horizon);
            if self.dedup.len() >= self.settings.max_keys {
                self.dedup.clear();
            }
            self.stats.evictions += (before - self.dedup.len()) as u64;
        }
        if !self.meta.contains_key(&candidate.rule) {
            return;
        }
        // The batch's final state of the alert replaces this copy at the end of `process`.
        self.dedup.insert(key.clone(), Open { since: secs, state: candidate.clone() });
        in_batch.insert(key, alerts.len());
        self.stats.alerts += 1;
        alerts.push(candidate);
    }
}

/// An alert that matches of its key (rule, tenant, group) still fold into: those within
/// `dedup_window_secs` of `since`, the time of the match that opened it, in whatever batch they
/// come. Bounded by `max_keys` like the correlation state.
#[derive(Debug, Clone)]
struct Open {
    since: i64,
    /// The alert as last emitted, as a candidate (a few hundred bytes and its event ids, not a
    /// whole `Event`).
    state: Candidate,
}

/// Fold a later match of the same key into an alert: its event ids (up to `max_ids`), its count,
/// its last time. The first time stays: with the rule, tenant and group it names the alert's row
/// (its id and the table's sorting key), which every update must keep.
fn fold(alert: &mut Candidate, candidate: Candidate, max_ids: usize) {
    for id in candidate.event_ids {
        if alert.event_ids.len() < max_ids && !alert.event_ids.contains(&id) {
            alert.event_ids.push(id);
        }
    }
    alert.count = merged_count(alert.count, candidate.count);
    alert.last_seen = alert.last_seen.max(candidate.last_seen);
}

/// Whether `rule` matches, as `rsigma_eval::evaluate_rule` decides it (the first of its conditions
/// that holds, by rsigma's own `eval_condition`), with a result that carries what Canh reads from
/// one (the rule's id and title, for alerts and for the correlation engine, which looks rules up by
/// id) and the matched selections. `evaluate_rule` evaluates a matching condition twice (a yes/no
/// pass, then one that collects details), then collects the matched fields and copies the rule's
/// tags into the result: on the sshd lines, where every line matches a rule that feeds a
/// correlation, that was most of the rule evaluation's cost. Tags come from the rule's metadata
/// when an alert is built, never from here.
fn lean_evaluate(rule: &CompiledRule, event: &impl rsigma_eval::Event) -> Option<EvaluationResult> {
    let mut selections = Vec::new();
    for condition in &rule.conditions {
        selections.clear();
        if rsigma_eval::compiler::eval_condition(
            condition,
            &rule.detections,
            event,
            &mut selections,
        ) {
            return Some(EvaluationResult {
                header: RuleHeader {
                    rule_title: rule.title.clone(),
                    rule_id: rule.id.clone(),
                    level: rule.level,
                    tags: Vec::new(),
                    custom_attributes: rule.custom_attributes.clone(),
                    enrichments: None,
                },
                body: ResultBody::Detection(DetectionBody {
                    matched_selections: selections,
                    matched_fields: Vec::new(),
                    event: None,
                }),
            });
        }
    }
    None
}

/// A single-event match or a correlation, before deduplication.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    rule: String,
    group: BTreeMap<String, String>,
    event_ids: Vec<String>,
    first_seen: Timestamp,
    last_seen: Timestamp,
    count: u64,
    tenant: Option<String>,
    sensor: Option<String>,
}

/// Single-event alerts count events (add up); a correlation reports its aggregate (keep the
/// largest).
fn merged_count(current: u64, incoming: u64) -> u64 {
    if incoming == 1 {
        current + 1
    } else {
        current.max(incoming)
    }
}

fn alert_event(meta: &RuleMeta, candidate: Candidate) -> Event {
    let id = alert_id(&meta.id, &candidate);
    let mut alert = Event::new(
        Dataset::Alert,
        id,
        candidate.last_seen,
        candidate.sensor.as_deref().unwrap_or_default(),
        candidate.tenant.as_deref().unwrap_or_default(),
    );
    alert.message = Some(meta.title.clone());
    alert.rule = Some(canh_event::Rule {
        id: meta.id.clone(),
        name: meta.title.clone(),
        level: meta.level.clone(),
        tags: if meta.tags.is_empty() { None } else { Some(meta.tags.clone()) },
    });
    let techniques = technique_ids(&meta.tags);
    if !techniques.is_empty() {
        alert.threat =
            Some(canh_event::Threat { technique: canh_event::ThreatTechnique { id: techniques } });
    }
    alert.event.severity = meta.level.as_deref().map(severity);
    alert.alert = Some(canh_event::Alert {
        event_ids: candidate.event_ids,
        group: candidate.group,
        first_seen: candidate.first_seen,
        last_seen: candidate.last_seen,
        count: candidate.count,
    });
    alert
}

/// Deterministic alert id: the same rule, tenant, group and first time give the same id, so a
/// replayed batch writes the same alert row again rather than a second one.
fn alert_id(rule: &str, candidate: &Candidate) -> String {
    let mut hasher = Sha1::new();
    hasher.update(b"canh-alert\0");
    hasher.update(rule.as_bytes());
    hasher.update([0u8]);
    hasher.update(candidate.tenant.as_deref().unwrap_or_default().as_bytes());
    for (field, value) in &candidate.group {
        hasher.update([0u8]);
        hasher.update(field.as_bytes());
        hasher.update([b'=']);
        hasher.update(value.as_bytes());
    }
    hasher.update(candidate.first_seen.nanos().to_be_bytes());
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// ATT&CK technique ids from Sigma tags: `attack.t1059.001` -> `T1059.001`. Tactic tags
/// (`attack.credential_access`) and groups/software (`attack.g0016`) are not techniques.
pub fn technique_ids(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let Some(rest) = tag.to_ascii_lowercase().strip_prefix("attack.t").map(str::to_string)
        else {
            continue;
        };
        let (main, sub) = match rest.split_once('.') {
            Some((main, sub)) => (main.to_string(), Some(sub.to_string())),
            None => (rest.clone(), None),
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&main, 4) || sub.as_deref().is_some_and(|s| !digits(s, 3)) {
            continue;
        }
        let id = match sub {
            Some(sub) => format!("T{main}.{sub}"),
            None => format!("T{main}"),
        };
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

fn level_name(level: &rsigma_parser::Level) -> String {
    use rsigma_parser::Level;
    match level {
        Level::Informational => "informational",
        Level::Low => "low",
        Level::Medium => "medium",
        Level::High => "high",
        Level::Critical => "critical",
    }
    .to_string()
}

/// ECS `event.severity` for a Sigma level.
fn severity(level: &str) -> u8 {
    match level {
        "critical" => 99,
        "high" => 73,
        "medium" => 47,
        "low" => 21,
        _ => 1,
    }
}

/// How alerts name a rule: its id, or its title when it has none.
fn rule_key(id: Option<&str>, title: &str) -> String {
    id.unwrap_or(title).to_string()
}

fn event_time(event: &fields::Root) -> Option<Timestamp> {
    event.get("@timestamp").and_then(Value::as_str).and_then(|t| Timestamp::parse(t).ok())
}

/// The fields alerts and correlation read, split once.
struct AlertPaths {
    event_id: FieldPath,
    sensor: FieldPath,
    tenant: FieldPath,
    /// `DETECTION_GROUP_FIELDS`, in order.
    group: Vec<FieldPath>,
}

impl AlertPaths {
    fn new() -> AlertPaths {
        AlertPaths {
            event_id: FieldPath::new("event.id"),
            sensor: FieldPath::new("observer.id"),
            tenant: FieldPath::new(TENANT_FIELD),
            group: DETECTION_GROUP_FIELDS.iter().map(|f| FieldPath::new(f)).collect(),
        }
    }
}

/// A matched event, read the way `mapping::lookup` reads it, with whether it has a key with a
/// dot found out once (when not, no lookup probes for a key equal to the whole dotted path).
#[derive(Clone, Copy)]
struct EventFields<'r, 'a> {
    root: &'r fields::Root<'a>,
}

impl<'r, 'a> EventFields<'r, 'a> {
    fn new(root: &'r fields::Root<'a>) -> EventFields<'r, 'a> {
        EventFields { root }
    }

    fn get(&self, path: &FieldPath) -> Option<&'a Value> {
        path.get_in_root(self.root)
    }

    fn text(&self, path: &FieldPath) -> Option<String> {
        self.get(path).and_then(scalar_text)
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The few fields the correlation engine reads, as a flat object (`{"source.ip": ..}`), plus the
/// event id it keeps as a reference. Saves it walking (and, for references, serialising) the whole
/// event. `only`: the indices of the fields wanted (those the correlations fed by this event's
/// matches read; the engine copies the view once per correlation it updates); `None`: all.
fn correlation_view(
    event: EventFields,
    paths: &AlertPaths,
    fields: &[String],
    field_paths: &[FieldPath],
    only: Option<&[usize]>,
) -> Value {
    let mut view = Map::new();
    if let Some(id) = event.text(&paths.event_id) {
        view.insert("event_id".into(), Value::String(id));
    }
    let mut add = |index: usize| {
        if let Some(value) = event.get(&field_paths[index]) {
            view.insert(fields[index].clone(), value.clone());
        }
    };
    match only {
        Some(indices) => indices.iter().for_each(|&i| add(i)),
        None => (0..fields.len()).for_each(add),
    }
    Value::Object(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRUTE_FORCE: &str = concat!(
        "title: fail\nid: f1\nname: fail\nlogsource: {product: linux, service: sshd}\n",
        "detection:\n  sel: {event.outcome: failure}\n  condition: sel\n---\n",
        "title: brute\nid: b1\ntags: [attack.t1110]\ncorrelation:\n  type: event_count\n",
        "  rules: [fail]\n  group-by: [source.ip]\n  timespan: 5m\n  condition: {gte: 5}\n",
    );

    fn detector(settings: Settings) -> Detector {
        let mut loaded = LoadedRules::default();
        load::load_text(BRUTE_FORCE, "b.yml", &Mapping::builtin(), &mut loaded);
        assert!(loaded.report.errors.is_empty(), "{:?}", loaded.report.errors);
        Detector::new(loaded, Mapping::builtin(), settings)
    }

    fn failure(ip: &str, secs: i64) -> Value {
        serde_json::json!({
            "@timestamp": Timestamp::from_secs_nanos(1_800_000_000 + secs, 0).to_string(),
            "event": {"id": format!("{ip}-{secs}"), "dataset": "log", "outcome": "failure"},
            "observer": {"id": "s1"}, "organization": {"id": "t1"},
            "process": {"name": "sshd"}, "source": {"ip": ip}
        })
    }

    #[test]
    fn correlation_alert_carries_group_tenant_and_events() {
        let mut d = detector(Settings::default());
        let events: Vec<Value> = (0..5).map(|i| failure("192.0.2.1", i)).collect();
        let alerts = d.process(&events, Timestamp(0));
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(alert.event.dataset, Dataset::Alert);
        assert_eq!(alert.organization.id, "t1");
        assert_eq!(alert.observer.id, "s1");
        let summary = alert.alert.as_ref().expect("summary");
        assert_eq!(summary.group.get("source.ip").map(String::as_str), Some("192.0.2.1"));
        assert_eq!(summary.group.get("organization.id").map(String::as_str), Some("t1"));
        assert_eq!(summary.event_ids.len(), 5);
        assert_eq!(summary.count, 5);
        assert_eq!(summary.first_seen.secs(), 1_800_000_000);
        assert_eq!(summary.last_seen.secs(), 1_800_000_004);
        let techniques = &alert.threat.as_ref().expect("threat").technique.id;
        assert_eq!(techniques, &["T1110"]);
    }

    #[test]
    fn tenants_never_share_a_window() {
        let mut d = detector(Settings::default());
        let mut events = Vec::new();
        for i in 0..4 {
            events.push(failure("192.0.2.1", i));
            let mut other = failure("192.0.2.1", i);
            other["organization"]["id"] = Value::String("t2".into());
            events.push(other);
        }
        assert!(d.process(&events, Timestamp(0)).is_empty());
    }

    #[test]
    fn very_late_events_stay_out_of_correlation() {
        let mut d = detector(Settings { lateness_secs: 60, ..Settings::default() });
        let mut events = vec![failure("192.0.2.9", 1000)];
        events.extend((0..4).map(|i| failure("192.0.2.1", i)));
        let alerts = d.process(&events, Timestamp(0));
        assert!(alerts.is_empty());
        assert_eq!(d.stats().late_events, 4);
    }

    #[test]
    fn lateness_is_per_sensor() {
        let mut d = detector(Settings { lateness_secs: 60, ..Settings::default() });
        let mut events = vec![failure("192.0.2.9", 1000)];
        for i in 0..5 {
            let mut replayed = failure("192.0.2.1", i);
            replayed["observer"]["id"] = Value::String("s2".into());
            events.push(replayed);
        }
        assert_eq!(d.process(&events, Timestamp(0)).len(), 1, "s2 is on time against itself");
        assert_eq!(d.stats().late_events, 0);
        assert_eq!(d.lateness_exceeds_shortest_window(), None);
        let d = detector(Settings { lateness_secs: 600, ..Settings::default() });
        assert_eq!(d.lateness_exceeds_shortest_window(), Some(300));
    }

    #[test]
    fn correlation_state_is_capped_and_evictions_counted() {
        let mut d = detector(Settings { max_keys: 10, ..Settings::default() });
        let events: Vec<Value> = (0..100).map(|i| failure(&format!("10.0.0.{i}"), i)).collect();
        d.process(&events, Timestamp(0));
        assert!(d.correlation_keys() <= 10, "{}", d.correlation_keys());
        assert!(d.stats().evictions > 0);
    }

    #[test]
    fn a_busy_window_keeps_at_most_max_group_entries() {
        let mut d = detector(Settings { max_group_entries: 20, ..Settings::default() });
        let events: Vec<Value> = (0..100).map(|i| failure("192.0.2.1", i)).collect();
        let alerts = d.process(&events, Timestamp(0));
        assert_eq!(alerts.len(), 1, "still detected");
        let summary = alerts[0].alert.as_ref().expect("summary");
        assert_eq!(summary.count, 20, "the count saturates at the cap");
        let mut uncapped = detector(Settings::default());
        let alerts = uncapped.process(&events, Timestamp(0));
        assert_eq!(alerts[0].alert.as_ref().expect("summary").count, 100);
    }

    #[test]
    fn repeated_alerts_fold_within_the_window_and_suppressions_silence() {
        let mut d = detector(Settings::default());
        let events: Vec<Value> = (0..12).map(|i| failure("192.0.2.1", i)).collect();
        let first = d.process(&events[..6], Timestamp(0));
        let second = d.process(&events[6..], Timestamp(0));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].alert.as_ref().map(|a| a.count), Some(6));
        // The later batch's matches fold into the same alert, emitted again with its id.
        assert_eq!(second.len(), 1, "one update, not a second alert");
        assert_eq!(second[0].event.id, first[0].event.id);
        let (a, b) = (first[0].alert.as_ref().expect("a"), second[0].alert.as_ref().expect("b"));
        assert_eq!(b.count, 12);
        assert_eq!(b.first_seen, a.first_seen);
        assert!(b.last_seen > a.last_seen && second[0].timestamp == b.last_seen);
        assert_eq!(b.event_ids.len(), 12);
        assert_eq!(b.event_ids[..6], a.event_ids[..]);
        assert_eq!(d.stats().deduplicated, 7, "fires at events 6..=12 fold into the first");
        assert_eq!(d.stats().alerts, 1);

        let mut d = detector(Settings::default());
        let list = suppress::parse(
            "[[suppress]]\nrule = \"b1\"\ngroup = { \"source.ip\" = \"192.0.2.1\" }\n\
             expires = \"2100-01-01T00:00:00Z\"\nreason = \"lab\"\n",
            "s.toml",
        )
        .expect("suppressions");
        d.set_suppressions(list);
        assert!(d.process(&events, Timestamp(0)).is_empty());
        assert!(d.stats().suppressed > 0);
    }

    /// `process` reads a group of events ahead (`fields::warm`) while it works on the current
    /// one: batches of every size around the group's give the alerts of one event at a time.
    #[test]
    fn batches_of_any_size_give_the_same_alerts() {
        // Five failures per source in a row: each source's alert is complete at its fifth event,
        // whatever the batches (no later match folds into it).
        let events: Vec<Value> = (0..3 * WARM_GROUP as i64 + 3)
            .map(|i| failure(&format!("192.0.2.{}", i / 5), i))
            .collect();
        let mut one_by_one = detector(Settings::default());
        let want: Vec<Event> = events
            .iter()
            .flat_map(|e| one_by_one.process(std::slice::from_ref(e), Timestamp(0)))
            .collect();
        assert_eq!(want.len(), events.len() / 5, "one brute-force alert per source");
        for size in [1, WARM_GROUP - 1, WARM_GROUP, WARM_GROUP + 1, 2 * WARM_GROUP, events.len()] {
            let mut d = detector(Settings::default());
            let got: Vec<Event> =
                events.chunks(size).flat_map(|chunk| d.process(chunk, Timestamp(0))).collect();
            let json = |alerts: &[Event]| serde_json::to_string(alerts).expect("alerts");
            assert_eq!(json(&got), json(&want), "batches of {size}");
        }
        assert_eq!(fields::warm(&[]), 0);
    }

    /// An alert's count and evidence do not depend on where the batches split its matches: the
    /// last emitted version of each alert id (what the alerts table keeps) is the same for every
    /// batch size, and counts every match.
    #[test]
    fn the_last_version_of_an_alert_counts_every_match_whatever_the_batches() {
        let rule = "title: each\nid: e1\nlogsource: {product: linux, service: sshd}\n\
                    detection:\n  sel: {event.outcome: failure}\n  condition: sel\n";
        let events: Vec<Value> =
            (0..21).map(|i| failure(&format!("192.0.2.{}", i % 3), i)).collect();
        let mut by_size = Vec::new();
        for size in [1, 2, 5, 7, events.len()] {
            let mut loaded = LoadedRules::default();
            load::load_text(rule, "e.yml", &Mapping::builtin(), &mut loaded);
            let mut d = Detector::new(loaded, Mapping::builtin(), Settings::default());
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            for chunk in events.chunks(size) {
                for alert in d.process(chunk, Timestamp(0)) {
                    last.insert(alert.event.id.clone(), alert.to_json());
                }
            }
            assert_eq!(last.len(), 3, "one alert per source (batches of {size})");
            for json in last.values() {
                let alert = Event::from_json(json.as_bytes()).expect("alert");
                let summary = alert.alert.expect("summary");
                assert_eq!(summary.count, 7, "batches of {size}");
                assert_eq!(summary.event_ids.len(), 7);
            }
            by_size.push((size, last));
        }
        for (size, last) in &by_size[1..] {
            assert_eq!(last, &by_size[0].1, "batches of {size} against batches of 1");
        }
    }

    /// A later match that changes nothing (the aggregate as before, an older time, the evidence
    /// list full) is not emitted again: every emitted version differs from the one before.
    #[test]
    fn a_match_that_changes_nothing_is_not_emitted_again() {
        let rules = concat!(
            "title: p\nid: p1\nname: port\nlogsource: {product: linux, service: sshd}\n",
            "detection:\n  sel: {event.outcome: failure}\n  condition: sel\n---\n",
            "title: ports\nid: v1\ncorrelation:\n  type: value_count\n  rules: [port]\n",
            "  group-by: [source.ip]\n  timespan: 5m\n  condition: {field: source.port, gte: 2}\n",
        );
        let mut loaded = LoadedRules::default();
        load::load_text(rules, "v.yml", &Mapping::builtin(), &mut loaded);
        assert!(loaded.report.errors.is_empty(), "{:?}", loaded.report.errors);
        let settings = Settings { max_event_ids: 2, ..Settings::default() };
        let mut d = Detector::new(loaded, Mapping::builtin(), settings);
        let event = |id: &str, secs: i64, port: u16| {
            let mut e = failure("192.0.2.9", secs);
            e["event"]["id"] = id.into();
            e["source"]["port"] = port.into();
            e
        };
        let first = d.process(&[event("a", 10, 1), event("b", 11, 2)], Timestamp(0));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].alert.as_ref().map(|a| a.count), Some(2));
        // A port already counted, earlier than the alert's last time: nothing changes.
        assert!(d.process(&[event("c", 5, 1)], Timestamp(0)).is_empty());
        // A third port raises the count: emitted again under the same id.
        let third = d.process(&[event("d", 12, 3)], Timestamp(0));
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].event.id, first[0].event.id);
        assert_eq!(third[0].alert.as_ref().map(|a| a.count), Some(3));
    }

    #[test]
    fn a_reload_keeps_the_windows() {
        let mut old = detector(Settings::default());
        let events: Vec<Value> = (0..5).map(|i| failure("192.0.2.1", i)).collect();
        assert!(old.process(&events[..3], Timestamp(0)).is_empty());
        let mut new = detector(Settings::default());
        new.carry_state_from(&old);
        assert_eq!(new.process(&events[3..], Timestamp(0)).len(), 1);
    }

    #[test]
    fn indicator_hits_become_alerts_with_their_source() {
        let mut d = detector(Settings::default());
        let mut set = IntelSet::default();
        set.load_text(
            "domain,c2.example.net,example c2\nip,192.0.2.66,example server\n",
            "intel.csv",
            &mut intel::IntelReport::default(),
        )
        .expect("indicators");
        d.set_intel(set);
        let dns = serde_json::json!({
            "@timestamp": "2026-01-01T00:00:00Z", "event": {"id": "d1", "dataset": "dns"},
            "observer": {"id": "s1"}, "organization": {"id": "t1"},
            "source": {"ip": "10.0.0.5"}, "destination": {"ip": "10.0.0.53"},
            "dns": {"question": {"name": "x.c2.example.net"}}
        });
        let mut flow = dns.clone();
        flow["event"] = serde_json::json!({"id": "f1", "dataset": "flow"});
        flow["destination"]["ip"] = Value::String("192.0.2.66".into());
        let alerts = d.process(&[dns, flow], Timestamp(0));
        assert_eq!(alerts.len(), 2);
        let rule = alerts[0].rule.as_ref().expect("rule");
        assert_eq!(rule.id, "canh-intel-domain");
        assert_eq!(rule.level.as_deref(), Some("high"));
        let group = &alerts[0].alert.as_ref().expect("summary").group;
        assert_eq!(group["threat.indicator.value"], "c2.example.net");
        assert_eq!(group["threat.indicator.field"], "dns.question.name");
        assert_eq!(group["threat.indicator.provider"], "intel.csv");
        assert_eq!(group["threat.indicator.description"], "example c2");
        assert_eq!(alerts[1].rule.as_ref().expect("rule").id, "canh-intel-ip");
        let health = d.rule_health();
        let hits =
            |id: &str| health.iter().find(|r| r.rule_id == id).map(|r| (r.hits, r.group.clone()));
        assert_eq!(hits("canh-intel-ip"), Some((1, INTEL_GROUP.to_string())));
        assert_eq!(hits("canh-intel-domain"), Some((1, INTEL_GROUP.to_string())));
        assert_eq!(hits("canh-intel-ja3"), None, "no ja3 indicators, no ja3 rule");
    }

    #[test]
    fn rule_health_counts_hits_errors_and_group_time() {
        let mut d = detector(Settings { lateness_secs: 60, ..Settings::default() });
        let mut events: Vec<Value> = (0..5).map(|i| failure("192.0.2.1", i + 1000)).collect();
        events.push(failure("192.0.2.2", 0)); // late: its match is an error of rule f1
        let mut no_time = failure("192.0.2.3", 1001);
        no_time.as_object_mut().expect("object").remove("@timestamp");
        events.push(no_time); // no time: an error too
        events.extend((0..16).map(|i| failure("192.0.2.9", 1001 + i)));
        let mut ledger = HealthLedger::default();
        d.process(&events, Timestamp(0));
        let health = d.rule_health();
        let f1 = health.iter().find(|r| r.rule_id == "f1").expect("f1");
        assert_eq!((f1.hits, f1.errors), (23, 2));
        assert_eq!(f1.group, "linux_sshd");
        let b1 = health.iter().find(|r| r.rule_id == "b1").expect("b1");
        assert_eq!(b1.group, CORRELATION_GROUP);
        assert!(b1.hits >= 2, "one correlation alert per source: {b1:?}");
        let groups = d.group_health();
        let (name, sshd) = &groups[0];
        assert_eq!(name, "linux_sshd");
        assert_eq!(sshd.evaluations, 23);
        assert!(sshd.nanos > 0, "sampled time is recorded");

        let (rules, _) = ledger.observe(&d);
        assert_eq!(rules.iter().find(|r| r.rule_id == "f1").map(|r| r.hits), Some(23));
        d.process(&events[..3], Timestamp(0));
        let (rules, groups) = ledger.observe(&d);
        assert_eq!(rules.iter().find(|r| r.rule_id == "f1").map(|r| r.hits), Some(3));
        assert_eq!(groups[0].1.evaluations, 3);
        let interval = ledger.take_interval();
        let (f1, group) = interval.iter().find(|(r, _)| r.rule_id == "f1").expect("f1 row");
        assert_eq!((f1.hits, group.evaluations), (26, 26));
        assert!(ledger.take_interval().iter().all(|(r, g)| r.hits == 0 && g.evaluations == 0));

        // A reload carries the counters, so the ledger sees no drop.
        let mut new = detector(Settings::default());
        new.carry_state_from(&d);
        assert_eq!(new.rule_health(), d.rule_health());
    }

    /// The bench mix's ordinary events (no attack) pass no gate of the pack: the engines are not
    /// run for them.
    #[test]
    fn ordinary_events_skip_the_engines() {
        let pack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let loaded = load::load_dir(&pack, &Mapping::builtin()).expect("pack");
        let mut d = Detector::new(loaded, Mapping::builtin(), Settings::default());
        let base = serde_json::json!({
            "@timestamp": "2026-01-01T00:00:00Z", "event": {"id": "e1", "dataset": "flow"},
            "observer": {"id": "s1"}, "organization": {"id": "t1"},
            "source": {"ip": "10.1.2.3", "port": 40000, "bytes": 1234},
            "destination": {"ip": "203.0.113.9", "port": 443},
            "network": {"transport": "tcp", "community_id": "1:abc"},
            "flow": {"state": "SF", "history": "ShADadFf", "orig_payload_bytes": 99}
        });
        let mut dns = base.clone();
        dns["event"]["dataset"] = "dns".into();
        dns["dns"] = serde_json::json!({"type": "query", "question": {"name": "www.gov.vn",
            "type": "A", "class": "IN"}, "response_code": "NOERROR"});
        let mut http = base.clone();
        http["event"]["dataset"] = "http".into();
        http["url"] = serde_json::json!({"domain": "portal.example.vn", "original": "/a.js?v=1"});
        http["http"] = serde_json::json!({"request": {"method": "GET"}});
        http["user_agent"] = serde_json::json!({"original": "Mozilla/5.0 Chrome/120.0"});
        for event in [base, dns, http] {
            let mut routed = Vec::new();
            d.mapping.route_among(&event, d.active.iter().copied(), &mut routed);
            assert!(!routed.is_empty());
            let route = d.route(&routed);
            let prefilter = &mut d.routes[route].prefilter;
            assert!(!prefilter.is_open());
            let fields = CanhEvent::new(&event);
            assert_eq!(prefilter.passing(&fields), Vec::<&str>::new(), "{event}");
            assert!(!prefilter.may_match(&fields, &mut prefilter::Memo::default()));
        }
    }

    #[test]
    fn technique_ids_from_tags() {
        let tags: Vec<String> = [
            "attack.credential_access",
            "attack.t1110",
            "attack.t1110.001",
            "attack.T1059.001",
            "attack.g0016",
            "attack.t1110",
            "attack.t12",
            "cve.2021-44228",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(technique_ids(&tags), ["T1110", "T1110.001", "T1059.001"]);
    }
}
