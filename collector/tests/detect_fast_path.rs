//! The fast detection path (one indexed engine per set of routed families, fields read through
//! `CanhEvent`) against the plain one (`Settings::fast_path = false`: every routed rule on every
//! event through rsigma's `evaluate_rule` over `JsonEvent`). Any prefilter or shortcut that drops
//! or adds a match fails here: the same events must give the same verdicts and the same alerts.

#[path = "../benches/support/mix.rs"]
mod mix;
#[path = "support/rules.rs"]
mod rules;

use canh_collector::detect::load::{load_dirs, LoadedRules};
use canh_collector::detect::mapping::Mapping;
use canh_collector::detect::{Detector, Settings};
use canh_event::Timestamp;
use rules::{pack, root, rule_test_events, sigmahq};
use serde_json::Value;
use std::path::Path;

fn load(dirs: &[&Path], mapping: &Mapping) -> LoadedRules {
    load_dirs(dirs, mapping).expect("rules")
}

fn detector(dirs: &[&Path], mapping: fn() -> Mapping, fast_path: bool) -> Detector {
    let settings = Settings { fast_path, ..Settings::default() };
    Detector::new(load(dirs, &mapping()), mapping(), settings)
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// Per event, the rules that match, both ways; returns how many matches there were.
fn same_verdicts(fast: &mut Detector, plain: &mut Detector, events: &[Value]) -> usize {
    let mut matches = 0;
    for (index, event) in events.iter().enumerate() {
        let mut want = plain.matching_rules(event);
        let mut got = fast.matching_rules(event);
        want.sort();
        got.sort();
        assert_eq!(got, want, "event {index}: {event}");
        matches += got.len();
    }
    matches
}

#[test]
fn pack_and_sigmahq_on_the_mix_and_rule_tests_give_the_same_alerts() {
    same_alerts_on_the_mix_and_rule_tests(&[&pack(), &sigmahq()], 300, 20);
}

/// The pack alone: its routes evaluate only the rules whose gate holds (with SigmaHQ, the log
/// route has keyword rules and goes to the whole engine instead).
#[test]
fn pack_on_the_mix_and_rule_tests_gives_the_same_alerts() {
    same_alerts_on_the_mix_and_rule_tests(&[&pack()], 300, 20);
}

fn same_alerts_on_the_mix_and_rule_tests(dirs: &[&Path], min_matches: usize, min_alerts: usize) {
    let mut events = mix::events(10_000);
    events.extend(rule_test_events());
    let mut fast = detector(dirs, Mapping::builtin, true);
    let mut plain = detector(dirs, Mapping::builtin, false);
    let matches = same_verdicts(&mut fast, &mut plain, &events);
    assert!(matches > min_matches, "the events exercise the rules: {matches} matches");

    let mut fast = detector(dirs, Mapping::builtin, true);
    let mut plain = detector(dirs, Mapping::builtin, false);
    let mut alerts = 0;
    for chunk in events.chunks(1000) {
        let got = fast.process(chunk, Timestamp(0));
        let want = plain.process(chunk, Timestamp(0));
        assert_eq!(got, want);
        alerts += got.len();
    }
    assert!(alerts > min_alerts, "alerts raised: {alerts}");
    assert_eq!(fast.stats(), plain.stats());
}

#[test]
fn all_sigmahq_rules_on_the_oracle_events_give_the_same_verdicts() {
    let data = root().join("../../shared/data/sigma-oracle");
    let mut events = read_lines(&data.join("events.jsonl"));
    events.extend(read_lines(&data.join("correlation/corr_events.jsonl")));
    let dirs: [&Path; 1] = [&sigmahq()];
    let mut fast = detector(&dirs, Mapping::identity, true);
    let mut plain = detector(&dirs, Mapping::identity, false);
    assert!(fast.rule_count() > 3000, "{}", fast.rule_count());
    let matches = same_verdicts(&mut fast, &mut plain, &events);
    assert!(matches > 100, "the oracle events match rules: {matches}");
}
