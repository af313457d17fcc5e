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
