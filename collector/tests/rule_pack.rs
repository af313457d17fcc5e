//! Canh's rule pack (`rules/`): every rule file loads, passes the pack lint, and every case of its
//! test file passes (events that must raise the rule's alert do, the others do not).

use canh_collector::detect::load::rule_files;
use canh_collector::detect::ruletest;
use std::path::Path;

#[test]
fn every_rule_passes_its_tests_and_the_lint() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let files = rule_files(&dir).expect("rules directory");
    assert!(files.len() >= 15, "the pack has {} rule files", files.len());
    let mut failures = Vec::new();
    let mut cases = 0;
    for path in &files {
        let shown = path.display().to_string();
        let rule_text = std::fs::read_to_string(path).expect("rule file");
        let test_path = path.with_extension("test.yml");
        failures.extend(ruletest::lint_pack(&shown, &rule_text, test_path.exists()));
        let Ok(test_text) = std::fs::read_to_string(&test_path) else { continue };
        for result in ruletest::run(&shown, &rule_text, &test_text) {
            cases += 1;
            if !result.passed {
                failures.push(format!(
                    "{}: {} (must {}match): {}",
                    result.rule_file,
                    result.case,
                    if result.expect_match { "" } else { "not " },
                    result.detail
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases >= 2 * files.len(), "only {cases} cases for {} files", files.len());
}

/// `canh-collector detect` over more events than it hands the detector at a time (4,096): the
/// alert that spans both chunks is printed once with every match counted, or, with `--stream`,
/// once per chunk under the same id, the last line equal to the default output.
#[test]
fn detect_prints_each_alert_once_with_matches_of_every_chunk() {
    let events: String = (0..5000)
        .map(|i| {
            let event = serde_json::json!({
                "@timestamp": format!("2026-11-23T10:00:{:02}.{:06}Z", i / 1000, i % 1000),
                "event": {"id": format!("e{i}"), "kind": "event", "dataset": "dns"},
                "observer": {"id": "s1"}, "organization": {"id": "t1"},
                "canh": {"schema_version": 1},
                "source": {"ip": "10.1.2.3", "port": 40000}, "destination": {"ip": "10.1.2.4", "port": 53},
                "dns": {"question": {"name": format!("{}.t.example.net", "a".repeat(50))}}
            });
            format!("{event}\n")
        })
        .collect();
    let run = |extra: &[&str]| -> Vec<serde_json::Value> {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_canh-collector"))
            .args(["detect", "--rules"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules"))
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run canh-collector detect");
        child.stdin.take().expect("stdin").write_all(events.as_bytes()).expect("feed events");
        let output = child.wait_with_output().expect("detect output");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("alert JSON"))
            .collect()
    };
    let once = run(&[]);
    assert_eq!(once.len(), 1, "one alert: {once:?}");
    assert_eq!(once[0]["alert"]["count"], 5000);
    let streamed = run(&["--stream"]);
    assert_eq!(streamed.len(), 2, "the alert, then its update after the second chunk");
    assert_eq!(streamed[0]["event"]["id"], once[0]["event"]["id"]);
    assert_eq!(streamed[0]["alert"]["count"], 4096);
    assert_eq!(streamed[1], once[0]);
}
