//! `canh-sensor logs` end to end: exactly one JSON event per input line on real files and on
//! hostile input (invalid UTF-8, over-long lines, empty lines, no final newline).

use canh_event::Event;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(path)
}

fn run_logs(args: &[&str], stdin: &[u8]) -> Vec<Event> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_canh-sensor"))
        .arg("logs")
        .args(["--reference-time", "2026-11-23T10:00:00Z"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("canh-sensor runs");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    let output = child.wait_with_output().expect("canh-sensor finishes");
    assert!(output.status.success(), "canh-sensor logs {args:?} failed");
    output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| Event::from_json(l).expect("every output line is an event"))
        .collect()
}

/// Lines as `wc -l` counts them, plus a last line without a newline.
fn line_count(bytes: &[u8]) -> usize {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

#[test]
fn one_event_per_line_on_real_logs() {
    let files = [
        "logs/loghub/OpenSSH/OpenSSH_2k.log",
        "logs/loghub/Linux/Linux_2k.log",
        "logs/loghub/Apache/Apache_2k.log",
        "logs/loghub/Thunderbird/Thunderbird_2k.log",
        "logs/elastic-examples/apache_logs",
        "logs/sotm34/original/syslog/secure.6",
        "logs/sotm34/original/http/access_log.1",
    ];
    for file in files {
        let path = data(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let events = run_logs(&[path.to_str().expect("utf-8 path")], b"");
        assert_eq!(events.len(), line_count(&bytes), "{file}");
        let unparsed = events
            .iter()
            .filter(|e| e.log.as_ref().is_some_and(|l| l.parse_error.is_some()))
            .count();
        println!("{file}: {} lines, {unparsed} unparsed", events.len());
        // The originals come back in order.
        let first = bytes.split(|&b| b == b'\n').next().expect("a line");
        let first = String::from_utf8_lossy(first.strip_suffix(b"\r").unwrap_or(first));
        assert_eq!(events[0].event.original.as_deref(), Some(&*first), "{file}");
    }
}

#[test]
fn hostile_lines_keep_their_bytes() {
    let long = vec![b'A'; 100_000];
    let mut input = Vec::new();
    input.extend_from_slice(b"<13>Nov 23 16:00:00 h app: caf\xe9 back\\slash\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(&long);
    input.extend_from_slice(b"\n\x00\x01\x02\nno newline at the end");
    let events = run_logs(&["--max-line-bytes", "1000", "-"], &input);
    assert_eq!(events.len(), 5);
    let log = |i: usize| events[i].log.clone().expect("log part");
    assert_eq!(log(0).escaped, Some(true));
    assert_eq!(
        events[0].event.original.as_deref(),
        Some("<13>Nov 23 16:00:00 h app: caf\\xe9 back\\\\slash")
    );
    assert_eq!(log(0).parse_error, None);
    assert_eq!(log(1).parse_error.as_deref(), Some("empty"));
    assert_eq!(log(2).truncated, Some(true));
    assert_eq!(events[2].event.original.as_ref().map(String::len), Some(1000));
    assert!(log(3).parse_error.is_some());
    assert_eq!(events[4].event.original.as_deref(), Some("no newline at the end"));
    // Event ids are distinct.
    let mut ids: Vec<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
}

#[test]
fn unknown_format_is_refused() {
    let status = Command::new(env!("CARGO_BIN_EXE_canh-sensor"))
        .args(["logs", "--format", "xml", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runs");
    assert!(!status.success());
}
