//! The alert JSON other systems read (the `<prefix>alert` topic, the alerts table's `raw`), locked
//! by a golden file. After a deliberate change, regenerate with `CANH_REGEN_GOLDEN=1` and review the
//! diff.

use canh_collector::detect::load::{load_text, LoadedRules};
use canh_collector::detect::mapping::Mapping;
use canh_collector::detect::{Detector, Settings};
use canh_event::{Event, Timestamp};
use std::path::Path;

#[test]
fn ssh_brute_force_alert_matches_the_golden_file() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rule = std::fs::read_to_string(manifest.join("../rules/ssh_bruteforce.yml")).expect("rule");
    let mut loaded = LoadedRules::default();
    load_text(&rule, "ssh_bruteforce.yml", &Mapping::builtin(), &mut loaded);
    let mut detector = Detector::new(loaded, Mapping::builtin(), Settings::default());
    let events: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            serde_json::json!({
                "@timestamp": format!("2026-11-23T03:00:{:02}Z", i * 3),
                "event": {"id": format!("evt-{i:02}"), "kind": "event", "dataset": "log",
                          "category": ["authentication"], "outcome": "failure"},
                "observer": {"id": "hn-01"}, "organization": {"id": "hanoi"},
                "canh": {"schema_version": 1},
                "source": {"ip": "198.51.100.7", "port": 40000 + i},
                "user": {"name": "root"}, "process": {"name": "sshd", "pid": 811},
                "message": "Failed password for root from 198.51.100.7 port 40000 ssh2"
            })
        })
        .collect();
    let alerts = detector.process(&events, Timestamp(0));
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    // What other systems rely on, stated outright as well as in the golden file.
    assert_eq!(Event::from_json(alert.to_json().as_bytes()).expect("a valid event"), *alert);
    let summary = alert.alert.as_ref().expect("alert summary");
    assert_eq!(summary.event_ids.first().map(String::as_str), Some("evt-00"));
    assert_eq!(summary.event_ids.len(), 10);

    let text = serde_json::to_string_pretty(alert).expect("json") + "\n";
    let golden = manifest.join("tests/golden/alert_ssh_bruteforce.json");
    if std::env::var_os("CANH_REGEN_GOLDEN").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let want =
        std::fs::read_to_string(&golden).expect("golden file (CANH_REGEN_GOLDEN=1 writes it)");
    assert_eq!(text, want, "alert JSON changed; review, then CANH_REGEN_GOLDEN=1");
}
