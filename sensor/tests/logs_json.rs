//! The log path writes each event's JSON straight from the borrowed parse
//! (`LineParser::write_json`, `LogEvent::write_json`); `canh-sensor logs` and the pipeline use it.
//! Here it must give, for every line of every real log sample in every format, the same bytes as
//! the owned event's writer (`LineParser::event(..).write_json(..)`, itself checked against
//! serde_json in the event crate), and the same Kafka key as `produce::key_of`. Also lines that
//! are not UTF-8, carry a carriage return, are cut, or hold JSON's special characters.

use canh_event::Timestamp;
use canh_sensor::flow::Identity;
use canh_sensor::logs::{log_event_id, LineFormat, LineOptions, LineParser};
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/logs")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contents(path: &Path) -> Vec<u8> {
    if path.extension().is_some_and(|e| e == "gz") {
        let output =
            std::process::Command::new("gzip").arg("-dc").arg(path).output().expect("gzip runs");
        // The first 20,000 lines are plenty and keep the test short.
        let text = output.stdout;
        let end = text
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(20_000)
            .map_or(text.len(), |(i, _)| i);
        return text[..end].to_vec();
    }
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compare both writers on every line of `text`; returns the number of lines compared.
fn compare(name: &str, text: &[u8], format: LineFormat, truncated: bool) -> usize {
    let who = Identity { sensor_id: "s-1".into(), tenant: "t\"1".into(), community_id_seed: 0 };
    let options = LineOptions { format, utc_offset_secs: 7 * 3600, default_priority: Some(13) };
    let received = Timestamp::parse("2026-11-23T10:00:00Z").expect("valid");
    // Two parsers in step: W3C headers change how the following lines are read.
    let (mut direct, mut owned) = (LineParser::new(options), LineParser::new(options));
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    let mut n = 0;
    for (seq, line) in (0u64..).zip(text.split(|&b| b == b'\n')) {
        fast.clear();
        slow.clear();
        let error = direct.write_json(line, truncated, received, seq, &who, &mut fast);
        let event = owned.event(line, truncated, received, seq, &who);
        event.write_json(&mut slow);
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&slow),
            "{name} ({format:?}) line {seq}: {:?}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(
            error.map(|e| e.reason()),
            event.log.as_ref().and_then(|l| l.parse_error.as_deref()),
            "{name} line {seq}"
        );
        let fields = direct.fields(line, truncated, received);
        assert_eq!(fields.key(&who), canh_sensor::produce::key_of(&event), "{name} line {seq}");
        assert_eq!(event.event.id, log_event_id(&who.sensor_id, seq));
        n += 1;
    }
    n
}

const FORMATS: [LineFormat; 6] = [
    LineFormat::Auto,
    LineFormat::Syslog,
    LineFormat::Json,
    LineFormat::Access,
    LineFormat::Error,
    LineFormat::W3c,
];

#[test]
fn direct_json_matches_the_owned_event_on_every_real_sample() {
    let mut paths = Vec::new();
    files(&data_dir(), &mut paths);
    assert!(paths.len() >= 20, "only {} files under {}", paths.len(), data_dir().display());
    let mut lines = 0;
    for path in &paths {
        let text = contents(path);
        let name = path.display().to_string();
        for format in FORMATS {
            lines += compare(&name, &text, format, false);
        }
    }
    println!("{lines} lines compared over {} files in six formats", paths.len());
    assert!(lines > 100_000, "only {lines} lines compared");
}

#[test]
fn direct_json_matches_on_hostile_lines() {
    let lines: &[&[u8]] = &[
        b"<13>Nov 23 16:00:00 h app: caf\xe9 \\o/ \"quoted\"\r",
        b"<34>Oct 11 22:14:15 host\xff sshd[12]: Failed password for r\xe9ot from 192.0.2.1 port 22 ssh2",
        b"<38>Mar 27 19:06:53 web sshd(pam_unix)[\xff]: session opened for user foo by (uid=0)",
        b"<4>Mar 27 19:06:53 fw kernel: DROP \xfe IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 PROTO=TCP SPT=1 DPT=2",
        b"<165>1 2003-10-11T22:14:15.003Z h\xe9 app\xff 1 ID\x01 [id@1 a=\"x\\\"y\"][b c=\"\xff\"] \xEF\xBB\xBFmsg\ttab",
        b"192.0.2.1 - us\xe9r [10/Oct/2000:13:55:36 -0700] \"GET /a\xff HTTP/1.0\" 200 5 \"-\" \"agent\x7f\"",
        b"[Sun Dec 04 04:47:44 2005] [error] [client 192.0.2.1] File does not exist: /x\xff",
        b"[error] [client 192.0.2.1] no stamp \xff",
        b"2016/08/10 12:34:56 [error] 1234#0: *1 x\xff, client: 192.0.2.1, request: \"GET /y HTTP/1.1\"",
        b"#Fields: date time cs-method cs-uri-stem cs-username c-ip sc-status cs(User-Agent)",
        b"2024-05-01 10:00:00 GET /p\xff b\xe9b 192.0.2.1 200 Mozilla+5.0\xff",
        b"{\"msg\":\"m\\u0001\",\"level\":\"WARN\",\"host\":{\"name\":\"h\"}}",
        b"<13>Nov 23 16:00:00 h su: message repeated 2 times: [ FAILED su for root by al\xe9ce]",
        b"",
        b"   ",
        b"\x00\x01\x02",
    ];
    let text = lines.join(&b"\n"[..]);
    for format in FORMATS {
        for truncated in [false, true] {
            compare("hostile", &text, format, truncated);
        }
    }
}
