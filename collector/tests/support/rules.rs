//! Where the detection tests find rules and their test events (shared by the test files that
//! include it with `#[path = "support/rules.rs"]`).

use canh_collector::detect::ruletest::TestFile;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The rule pack.
pub fn pack() -> PathBuf {
    root().join("../rules")
}

/// SigmaHQ's rule tree in the shared data.
pub fn sigmahq() -> PathBuf {
    root().join("../../shared/data/sigma/rules")
}

/// Every event of the pack's rule test files (must match and must not match).
pub fn rule_test_events() -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(pack()).expect("rules dir") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().ends_with(".test.yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("test file");
        let tests: TestFile = yaml_serde::from_str(&text).expect("test file parses");
        for case in tests.must_match.iter().chain(&tests.must_not_match) {
            out.extend(case.events.iter().cloned());
        }
    }
    out
}
