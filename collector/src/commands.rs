//! The offline commands: `detect`, `rules report`, `rules test`, `rules lint`. They read files and
//! print; the work is done by `canh_collector::detect`. Each returns Ok(false) when it ran but
//! found failures (the process then exits 1).

use anyhow::Context;
use canh_collector::detect::load;
use canh_collector::detect::mapping::Mapping;
use canh_collector::detect::tape::Tape;
use canh_collector::detect::{intel, ruletest, suppress, Detector, Settings};
use canh_event::Timestamp;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Events handed to the detector at a time.
const CHUNK: usize = 4096;

/// What `canh-collector detect` is asked.
#[derive(clap::Args)]
pub struct DetectArgs {
    /// Directory of Sigma rule files.
    #[arg(long)]
    rules: PathBuf,
    /// Events file (JSON lines); `-` or nothing reads standard input.
    events: Option<PathBuf>,
    /// How far behind the newest event an event may arrive and still be correlated.
    #[arg(long, default_value = "5m")]
    lateness: String,
    /// Alerts of one rule and group within this window fold into one.
    #[arg(long, default_value = "10m")]
    dedup_window: String,
    /// Correlation keys kept at most.
    #[arg(long, default_value_t = 100_000)]
    max_keys: usize,
    /// Suppressions file (TOML).
    #[arg(long)]
    suppressions: Option<PathBuf>,
    /// Threat-intelligence indicator file (CSV or STIX 2.1 bundle); may be repeated.
    #[arg(long)]
    intel: Vec<PathBuf>,
    /// Print each alert when raised and again whenever later matches update it (same id;
    /// the last line of an id is its state). Without it, each alert is printed once, with
    /// its final count, when the input ends.
    #[arg(long)]
    stream: bool,
    /// Detect the collector's way: each chunk of events written on a tape (a Canh event from its
    /// typed form) and detected in event-time order (`Detector::process_tape`). Without it, the
    /// events are detected as read, as JSON values.
    #[arg(long)]
    tape: bool,
}

/// The alerts of one chunk of events: `process` over the values, or with `on_tape` `process_tape`
/// over them written on `tape` (a Canh event decoded to its type first, as the consumer has it;
/// anything else as it is).
fn detect_chunk(
    detector: &mut Detector,
    chunk: &[serde_json::Value],
    on_tape: bool,
    tape: &mut Tape,
) -> Vec<canh_event::Event> {
    if !on_tape {
        return detector.process(chunk, now());
    }
    tape.clear();
    for value in chunk {
        let typed = serde_json::to_vec(value)
            .ok()
            .and_then(|bytes| canh_event::Event::from_json(&bytes).ok());
        let _ = match typed {
            Some(event) => tape.push(&event),
            None => tape.push(value),
        };
    }
    detector.process_tape(tape, now())
}

pub fn detect(args: &DetectArgs) -> anyhow::Result<bool> {
    let secs = |text: &str, what: &str| -> anyhow::Result<i64> {
        let duration =
            humantime::parse_duration(text).with_context(|| format!("--{what} {text:?}"))?;
        Ok(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX))
    };
    let settings = Settings {
        lateness_secs: secs(&args.lateness, "lateness")?,
        dedup_window_secs: secs(&args.dedup_window, "dedup-window")?,
        max_keys: args.max_keys,
        ..Settings::default()
    };
    let mapping = Mapping::builtin();
    let loaded = load::load_dir(&args.rules, &mapping)
        .with_context(|| format!("reading rules directory {}", args.rules.display()))?;
    for err in &loaded.report.errors {
        eprintln!("canh-collector: rule rejected: {err}");
    }
    eprintln!(
        "canh-collector: {} rule(s) loaded from {} file(s), {} not applicable",
        loaded.report.applicable,
        loaded.report.files,
        loaded.report.skipped.values().sum::<usize>()
    );
    let mut detector = Detector::new(loaded, mapping, settings);
    if let Some(shortest) = detector.lateness_exceeds_shortest_window() {
        eprintln!(
            "canh-collector: warning: --lateness exceeds the shortest correlation window \
             ({shortest}s); late events can widen it"
        );
    }
    if let Some(path) = &args.suppressions {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading suppressions {}", path.display()))?;
        detector.set_suppressions(suppress::parse(&text, &path.display().to_string())?);
    }
    if !args.intel.is_empty() {
        let (set, report) = intel::load_files(&args.intel)?;
        eprintln!(
            "canh-collector: {} indicator(s) loaded from {} file(s) {:?}, {} unsupported {:?}",
            set.indicators.len(),
            report.files,
            report.loaded,
            report.unsupported.values().sum::<usize>(),
            report.unsupported
        );
        for example in &report.unsupported_examples {
            eprintln!("canh-collector: indicator skipped: {example}");
        }
        detector.set_intel(set);
    }

    let input: Box<dyn BufRead> = match &args.events {
        None => Box::new(std::io::stdin().lock()),
        Some(path) if path == Path::new("-") => Box::new(std::io::stdin().lock()),
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
    };
    let mut out = Alerts {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        stream: args.stream,
        held: Vec::new(),
        index: std::collections::HashMap::new(),
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut tape = Tape::new();
    let mut bad_lines = 0u64;
    for (index, line) in input.lines().enumerate() {
        let line = line.context("reading events")?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(value) if value.is_object() => chunk.push(value),
            Ok(_) | Err(_) => {
                bad_lines += 1;
                eprintln!("canh-collector: line {}: not a JSON object, skipped", index + 1);
            }
        }
        if chunk.len() >= CHUNK {
            out.take(detect_chunk(&mut detector, &chunk, args.tape, &mut tape))?;
            chunk.clear();
        }
    }
    out.take(detect_chunk(&mut detector, &chunk, args.tape, &mut tape))?;
    let alerts = out.finish()?;
    let stats = detector.stats();
    eprintln!(
        "canh-collector: {} event(s), {} bad line(s), {} alert(s), {} deduplicated, {} suppressed, \
         {} too late for correlation, {} correlation key(s) evicted",
        stats.events,
        bad_lines,
        alerts,
        stats.deduplicated,
        stats.suppressed,
        stats.late_events,
        stats.evictions
    );
    Ok(true)
}

/// Where `detect` prints alerts. A later batch's matches re-emit an alert with the same id and a
/// higher count: streamed, every version is printed; otherwise each id's last version is held and
/// printed at the end, in the order the alerts were first raised.
struct Alerts<W: Write> {
    out: W,
    stream: bool,
    held: Vec<canh_event::Event>,
    index: std::collections::HashMap<String, usize>,
}

impl<W: Write> Alerts<W> {
    fn take(&mut self, alerts: Vec<canh_event::Event>) -> anyhow::Result<()> {
        for alert in alerts {
            if self.stream {
                writeln!(self.out, "{}", alert.to_json()).context("writing alerts")?;
                // Only the distinct ids are kept, for the count.
                self.index.entry(alert.event.id).or_default();
            } else if let Some(&at) = self.index.get(&alert.event.id) {
                self.held[at] = alert;
            } else {
                self.index.insert(alert.event.id.clone(), self.held.len());
                self.held.push(alert);
            }
        }
        Ok(())
    }

    /// Print what is held; the number of distinct alerts.
    fn finish(mut self) -> anyhow::Result<u64> {
        for alert in &self.held {
            writeln!(self.out, "{}", alert.to_json()).context("writing alerts")?;
        }
        self.out.flush().context("writing alerts")?;
        Ok(self.index.len() as u64)
    }
}

fn now() -> Timestamp {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_secs_nanos(
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        since.subsec_nanos(),
    )
}

pub fn report(dir: &Path) -> anyhow::Result<bool> {
    let loaded = load::load_dir(dir, &Mapping::builtin())
        .with_context(|| format!("reading rules directory {}", dir.display()))?;
    print!("{}", loaded.report.render());
    Ok(true)
}

pub fn test(dir: &Path) -> anyhow::Result<bool> {
    let mut failed = 0usize;
    let mut passed = 0usize;
    for path in load::rule_files(dir).with_context(|| format!("reading {}", dir.display()))? {
        let shown = path.display().to_string();
        let test_path = path.with_extension("test.yml");
        let rule_text =
            std::fs::read_to_string(&path).with_context(|| format!("reading {shown}"))?;
        let Ok(test_text) = std::fs::read_to_string(&test_path) else {
            println!("FAIL {shown}: no test file {}", test_path.display());
            failed += 1;
            continue;
        };
        for result in ruletest::run(&shown, &rule_text, &test_text) {
            let expectation = if result.expect_match { "must match" } else { "must not match" };
            if result.passed {
                passed += 1;
                println!("ok   {shown}: {expectation}: {}", result.case);
            } else {
                failed += 1;
                println!("FAIL {shown}: {expectation}: {}: {}", result.case, result.detail);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0 && passed > 0)
}

pub fn lint(dir: &Path) -> anyhow::Result<bool> {
    let mut problems = 0usize;
    let files = load::rule_files(dir).with_context(|| format!("reading {}", dir.display()))?;
    for path in &files {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {shown}"))?;
        let has_test = path.with_extension("test.yml").exists();
        for problem in ruletest::lint_pack(&shown, &text, has_test) {
            problems += 1;
            println!("{problem}");
        }
    }
    println!("{} file(s), {problems} problem(s)", files.len());
    Ok(problems == 0)
}
