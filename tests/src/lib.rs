//! Helpers for the end-to-end tests: where the services and binaries are, and how to set up an
//! isolated namespace (topics, consumer group, database) for one test.
//!
//! The services are started by `scripts/test.sh` (ports from CANH_KAFKA_PORT and
//! CANH_CLICKHOUSE_HTTP_PORT); the binaries are built by it before the tests run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn kafka_port() -> u16 {
    env_port("CANH_KAFKA_PORT", 29092)
}

pub fn clickhouse_http_port() -> u16 {
    env_port("CANH_CLICKHOUSE_HTTP_PORT", 28123)
}

fn env_port(name: &str, default: u16) -> u16 {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a port")),
        Err(_) => default,
    }
}

pub fn brokers() -> String {
    format!("127.0.0.1:{}", kafka_port())
}

pub fn clickhouse_url() -> String {
    format!("http://127.0.0.1:{}", clickhouse_http_port())
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The shared third-party data set beside the checkout.
pub fn shared_data() -> PathBuf {
    repo().join("../shared/data")
}

/// A workspace binary built next to this test executable (target/<profile>/NAME).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/NAME
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Names unique to one test run: topic prefix, consumer group, database.
pub struct Namespace {
    pub id: String,
}

impl Namespace {
    pub fn new(test: &str) -> Namespace {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis();
        Namespace { id: format!("{test}_{}_{}", std::process::id(), millis % 100_000_000) }
    }

    pub fn topic_prefix(&self) -> String {
        format!("{}-", self.id)
    }

    pub fn database(&self) -> String {
        self.id.clone()
    }

    /// Create one topic per dataset with `partitions` partitions on the test broker.
    pub fn create_topics(&self, partitions: u32) {
        for dataset in canh_event::Dataset::ALL {
            let topic = format!("{}{}", self.topic_prefix(), dataset.as_str());
            let output = Command::new(tansu())
                .args(["topic", "create", &topic, "--partitions", &partitions.to_string()])
                .args(["--broker", &format!("tcp://{}", brokers())])
                .output()
                .expect("run tansu topic create");
            assert!(
                output.status.success(),
                "tansu topic create {topic}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

fn tansu() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_bin = Path::new(&home).join(".cargo/bin/tansu");
    if cargo_bin.exists() {
        cargo_bin
    } else {
        PathBuf::from("tansu")
    }
}

/// A ClickHouse client for the test server, optionally bound to a database.
pub fn clickhouse(database: Option<&str>) -> clickhouse::Client {
    let client = clickhouse::Client::default().with_url(clickhouse_url()).with_validation(false);
    match database {
        Some(db) => client.with_database(db),
        None => client,
    }
}

/// Poll `probe` until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(value) = probe().await {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// GET a path from an HTTP server on 127.0.0.1 and return the body (empty on any failure).
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The value of one Prometheus sample (`name{labels}` exactly as exposed), or 0.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}
