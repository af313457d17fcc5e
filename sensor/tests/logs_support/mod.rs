//! Shared by the log tests: the floors file.

use std::path::PathBuf;

/// The floor `section.key` from `tests/logs_floors.toml`.
pub fn floor(section: &str, key: &str) -> f64 {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/logs_floors.toml");
    let text = std::fs::read_to_string(&path).expect("tests/logs_floors.toml is checked in");
    let table: toml::Table = toml::from_str(&text).expect("floors file is TOML");
    table
        .get(section)
        .and_then(|s| s.get(key))
        .and_then(|v| v.as_float())
        .unwrap_or_else(|| panic!("no floor {section}.{key} in {}", path.display()))
}
