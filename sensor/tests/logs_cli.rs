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

/// IIS W3C extended logs (records written for this test from Microsoft's field list): the
/// `#Fields:` header names the columns, in `auto` and in `w3c`; a file without the header is read
/// with IIS's default columns.
#[test]
fn iis_w3c_files_with_and_without_header() {
    let with_header = b"#Software: Microsoft Internet Information Services 10.0\r
#Version: 1.0\r
#Date: 2026-11-20 00:00:00\r
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken\r
2026-11-20 00:00:01 192.0.2.10 GET /login.aspx ReturnUrl=%2f 443 - 203.0.113.7 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 46\r
2026-11-20 00:00:02 192.0.2.10 POST /login.aspx - 443 EXAMPLE\\bob 203.0.113.7 Mozilla/5.0+(Windows+NT+10.0) https://portal.example.org/login.aspx 401 1 1326 15\r
#Fields: date time c-ip cs-method cs-uri-stem sc-status\r
2026-11-20 00:00:03 203.0.113.8 GET /robots.txt 404\r
";
    for format in ["auto", "w3c"] {
        let events = run_logs(&["--format", format, "-"], with_header);
        assert_eq!(events.len(), 8, "{format}: one event per line");
        for i in [0, 1, 2, 3, 6] {
            assert_eq!(events[i].event.action.as_deref(), Some("w3c-directive"), "{format}");
        }
        let records = [&events[4], &events[5], &events[7]];
        for e in records {
            assert_eq!(e.log.as_ref().and_then(|l| l.parse_error.as_deref()), None, "{format}");
            assert_eq!(e.event.action.as_deref(), Some("http-request"), "{format}");
        }
        let ip = |e: &&Event| e.source.as_ref().and_then(|s| s.ip).map(|i| i.to_string());
        assert_eq!(ip(&records[0]).as_deref(), Some("203.0.113.7"));
        assert_eq!(
            records[0].url.as_ref().and_then(|u| u.original.as_deref()),
            Some("/login.aspx?ReturnUrl=%2f")
        );
        assert_eq!(
            records[0].user_agent.as_ref().map(|u| u.original.as_str()),
            Some("Mozilla/5.0 (Windows NT 10.0)")
        );
        assert_eq!(records[1].user.as_ref().map(|u| u.name.as_str()), Some("EXAMPLE\\bob"));
        assert_eq!(records[1].event.outcome.as_deref(), Some("failure"));
        // The second #Fields: header changes the columns.
        assert_eq!(ip(&records[2]).as_deref(), Some("203.0.113.8"));
        assert_eq!(
            records[2].http.as_ref().and_then(|h| h.response.as_ref()).and_then(|r| r.status_code),
            Some(404)
        );
        assert_eq!(
            records[2].timestamp,
            canh_event::Timestamp::parse("2026-11-20T00:00:03Z").expect("valid")
        );
    }
    // Without the header: IIS's default columns (here the IIS 8.5+ selection, 15 columns).
    let without =
        b"2026-11-20 00:00:01 192.0.2.10 GET /a.aspx - 80 - 203.0.113.9 curl/8.5.0 - 200 0 0 3\n";
    for format in ["auto", "w3c"] {
        let events = run_logs(&["--format", format, "-"], without);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.action.as_deref(), Some("http-request"), "{format}");
        assert_eq!(
            events[0].destination.as_ref().and_then(|d| d.port),
            Some(80),
            "{format}: s-port"
        );
    }
    // A line that is not W3C in `w3c` is an event with a parse error.
    let events = run_logs(&["--format", "w3c", "-"], b"<13>Nov 23 16:00:00 h app: x\n");
    assert_eq!(events[0].log.as_ref().and_then(|l| l.parse_error.as_deref()), Some("not_w3c_log"));
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
