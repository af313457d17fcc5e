//! Detection over a tape (`Detector::process_tape`, the collector's path) against detection over
//! the events' `serde_json::Value`s (`Detector::process`, the plain path): the same alerts, the
//! same counters, on the pack, the pack with the applicable SigmaHQ rules, and with indicators;
//! over the detection mix, the rule tests' events and the golden events. An event the tape lets
//! skip the plain path must match nothing there, and every field a prefilter reads must read the
//! same on the tape as on the `Value`.

#[path = "../benches/support/mix.rs"]
mod mix;
#[path = "support/rules.rs"]
mod rules;

use canh_collector::detect::fields::{CanhEvent, Walk};
use canh_collector::detect::intel::{IntelReport, IntelSet};
use canh_collector::detect::load::load_dirs;
use canh_collector::detect::mapping::Mapping;
use canh_collector::detect::tape::{Leaf, Tape, TapeWalk};
use canh_collector::detect::{Detector, Settings, Stats};
use canh_event::Timestamp;
use rules::{pack, root, rule_test_events, sigmahq};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn detector(dirs: &[&Path]) -> Detector {
    let mapping = Mapping::builtin();
    let loaded = load_dirs(dirs, &mapping).expect("rules");
    let settings = Settings { lateness_secs: 3650 * 86_400, ..Settings::default() };
    Detector::new(loaded, mapping, settings)
}

/// The golden events of the schema (one per dataset).
fn golden_events() -> Vec<Value> {
    let dir = root().join("../event/tests/golden");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            serde_json::from_str(&std::fs::read_to_string(path).expect("golden")).expect("json")
        })
        .collect()
}

/// The events as the collector gives them to detection, on a tape and as `Value`s: a Canh event
/// decoded to its type and written from it (the `Value` is `serde_json::to_value` of the typed
/// event), anything else (rule tests' partial events) as it is.
fn inputs(events: &[Value]) -> (Tape, Vec<Value>, usize) {
    let mut tape = Tape::new();
    let mut values = Vec::new();
    let mut typed = 0;
    for event in events {
        let bytes = serde_json::to_vec(event).expect("json");
        match canh_event::Event::from_json(&bytes) {
            Ok(decoded) => {
                tape.push(&decoded).expect("on the tape");
                values.push(serde_json::to_value(&decoded).expect("to_value"));
                typed += 1;
            }
            Err(_) => {
                tape.push(event).expect("on the tape");
                values.push(event.clone());
            }
        }
        let last = tape.len() - 1;
        assert_eq!(tape.value(last), values[last], "the tape gives back the event");
    }
    (tape, values, typed)
}

fn all_events() -> Vec<Value> {
    let mut events = mix::events(10_000);
    events.extend(rule_test_events());
    events.extend(golden_events());
    events
}

/// Indicators taken from the events themselves (two each of the destination addresses, DNS names, TLS names and
/// JA3 hashes of the mix), so that the indicator path has hits.
fn intel_from(events: &[Value]) -> IntelSet {
    let mut lines = vec!["type,value,description".to_string()];
    let mut take = |kind: &str, pointer: &str, every: usize| {
        let mut seen = 0;
        for event in events {
            let value = event.pointer(pointer).and_then(Value::as_str);
            // A JA3 indicator is an MD5 hash: the events' JA3 strings that are not are left out.
            let value = value.filter(|v| kind != "ja3" || v.len() == 32);
            if let Some(value) = value {
                seen += 1;
                if seen % every == 0 && seen / every <= 2 {
                    lines.push(format!("{kind},{value},from the test events"));
                }
            }
        }
    };
    take("ip", "/destination/ip", 97);
    take("domain", "/dns/question/name", 53);
    take("domain", "/tls/client/server_name", 31);
    take("ja3", "/tls/client/ja3", 41);
    let mut set = IntelSet::default();
    let mut report = IntelReport::default();
    set.load_text(&lines.join("\n"), "test.csv", &mut report).expect("indicators load");
    assert!(!set.is_empty());
    set
}

/// `process_tape` over chunks of the events against `process` over the same events' `Value`s in
/// the tape's event-time order: the same alerts, chunk by chunk, and the same counters. Returns
/// (alerts, events made `Value`s).
fn same_alerts(dirs: &[&Path], intel: bool) -> (usize, u64) {
    let events = all_events();
    let mut on_tape = detector(dirs);
    let mut plain = detector(dirs);
    if intel {
        on_tape.set_intel(intel_from(&events));
        plain.set_intel(intel_from(&events));
    }
    let mut alerts = 0;
    for chunk in events.chunks(1000) {
        let (tape, values, _) = inputs(chunk);
        let ordered: Vec<Value> =
            tape.time_order().into_iter().map(|i| values[i as usize].clone()).collect();
        let got = on_tape.process_tape(&tape, Timestamp(0));
        let want = plain.process(&ordered, Timestamp(0));
        assert_eq!(got, want);
        alerts += got.len();
    }
    let fallbacks = on_tape.stats().tape_fallbacks;
    let stats = Stats { tape_fallbacks: 0, ..on_tape.stats().clone() };
    assert_eq!(&stats, plain.stats());
    assert_eq!(on_tape.rule_health(), plain.rule_health());
    let events_seen = plain.stats().events;
    eprintln!(
        "{dirs:?} intel {intel}: {alerts} alerts, {fallbacks} of {events_seen} events made Values"
    );
    assert!(fallbacks < events_seen, "{fallbacks} of {events_seen} events made Values");
    (alerts, fallbacks)
}

#[test]
fn the_pack_gives_the_same_alerts_on_the_tape() {
    let (alerts, fallbacks) = same_alerts(&[&pack()], false);
    assert!(alerts > 20, "alerts raised: {alerts}");
    // Most of the mix is decided on the tape: that is the point of it.
    assert!(fallbacks < 2_000, "{fallbacks} events made Values");
}

#[test]
fn the_pack_and_sigmahq_give_the_same_alerts_on_the_tape() {
    let (alerts, _) = same_alerts(&[&pack(), &sigmahq()], false);
    assert!(alerts > 20, "alerts raised: {alerts}");
}

#[test]
fn indicators_give_the_same_alerts_on_the_tape() {
    let (with, _) = same_alerts(&[&pack()], true);
    let (without, _) = same_alerts(&[&pack()], false);
    assert!(with > without + 10, "indicator alerts: {with} against {without} without");
}

/// Event by event: an event whose `Value` some rule matches (or an indicator hits) is one the
/// tape sends to the plain path.
#[test]
fn every_matching_event_is_made_a_value() {
    let events = all_events();
    let (tape, values, typed) = inputs(&events);
    assert!(typed > 10_000, "typed events: {typed}");
    for dirs in [vec![pack()], vec![pack(), sigmahq()]] {
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let mut plain = detector(&dirs);
        let mut on_tape = detector(&dirs);
        on_tape.set_intel(intel_from(&events));
        let mut intel_only = detector(&[]);
        intel_only.set_intel(intel_from(&events));
        let (mut matched, mut skipped) = (0, 0);
        for (index, value) in values.iter().enumerate() {
            let matches = !plain.matching_rules(value).is_empty()
                || !intel_only.process(std::slice::from_ref(value), Timestamp(0)).is_empty();
            let needs = on_tape.needs_value(&tape.event(index));
            assert!(!matches || needs, "event {index} matches but the tape skips it: {value}");
            matched += usize::from(matches);
            skipped += usize::from(!needs);
        }
        assert!(matched > 100, "matching events: {matched}");
        assert!(skipped > values.len() / 3, "skipped on the tape: {skipped} of {}", values.len());
    }
}

/// Every field a prefilter reads answers on the tape as on the event's `Value`: a field missing
/// from the tape (or read differently) fails here.
#[test]
fn every_field_the_prefilters_read_is_on_the_tape() {
    let events = all_events();
    let (tape, values, _) = inputs(&events);
    let mut detector = detector(&[&pack(), &sigmahq()]);
    detector.prepare_routes(&values);
    let fields = detector.prefilter_fields();
    assert!(fields.len() > 20, "fields read: {}", fields.len());
    let mut found = 0;
    for (index, value) in values.iter().enumerate() {
        let on_value = CanhEvent::new(value);
        let event = tape.event(index);
        for field in &fields {
            let want = on_value.lookup_path(field);
            let got = field.walk_tape(&event);
            let same = match (got, want) {
                (TapeWalk::Absent, Walk::Absent) | (TapeWalk::Unsure, Walk::Unsure) => true,
                (TapeWalk::Found(node), Walk::Found(want)) => {
                    found += 1;
                    match event.leaf(node) {
                        Leaf::Str(text) => want.as_str() == Some(text),
                        Leaf::Scalar(scalar) => &scalar.to_value() == want,
                        Leaf::Container => want.is_object() || want.is_array(),
                    }
                }
                _ => false,
            };
            assert!(same, "{} in event {index}: {got:?} against {want:?}", field.as_str());
        }
    }
    assert!(found > 50_000, "fields found: {found}");
}
