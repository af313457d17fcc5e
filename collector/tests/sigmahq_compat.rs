//! SigmaHQ compatibility: every file of `../shared/data/sigma/rules` goes through the loader without
//! crashing it, and the number of rules applicable to Canh's events does not fall below the floor
//! checked in beside this test (a figure to raise over time, never to lower quietly).

use canh_collector::detect::load::{load_dir, rule_files};
use canh_collector::detect::mapping::Mapping;
use std::path::Path;

#[test]
fn sigmahq_rules_load_and_the_applicable_count_holds() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../../shared/data/sigma/rules");
    let files = rule_files(&dir).expect("SigmaHQ rules directory");
    assert!(files.len() > 3000, "expected the full SigmaHQ set, found {} files", files.len());

    let loaded = load_dir(&dir, &Mapping::builtin()).expect("loads");
    let report = &loaded.report;
    eprint!("{}", report.render());
    assert_eq!(report.files, files.len(), "every file was looked at");
    let skipped: usize = report.skipped.values().sum();
    assert_eq!(
        report.applicable + skipped,
        report.rules_parsed,
        "every parsed rule is accounted for"
    );

    let floor: usize = std::fs::read_to_string(manifest.join("tests/sigmahq_applicable_floor.txt"))
        .expect("floor file")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        report.applicable >= floor,
        "applicable SigmaHQ rules fell to {} (floor {floor})",
        report.applicable
    );
}
