//! End to end against a real Kafka (Tansu) and ClickHouse 18.16: events produced to the dataset
//! topics come out as rows in `alerts` and as records on `<prefix>alert`. Needs the services:
//!
//! ```text
//! CANH_KAFKA_PORT=29092 CANH_CLICKHOUSE_HTTP_PORT=28123 CANH_CLICKHOUSE_TCP_PORT=29000 scripts/services.sh start
//! CANH_E2E_KAFKA=127.0.0.1:29092 CANH_E2E_CLICKHOUSE=http://127.0.0.1:28123 \
//!     cargo test -p canh-collector --test detect_e2e -- --ignored
//! ```

use canh_collector::metrics::Metrics;
use canh_collector::{config, consume, store};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

fn event(i: usize, dataset: &str, extra: serde_json::Value) -> String {
    let mut value = serde_json::json!({
        "@timestamp": format!("2026-11-23T10:00:{:02}Z", i),
        "event": {"id": format!("e2e-{dataset}-{i}"), "kind": "event", "dataset": dataset},
        "observer": {"id": "hn-01"}, "organization": {"id": "hanoi"},
        "canh": {"schema_version": 1}
    });
    if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        for (key, val) in extra {
            match (target.get_mut(key), val) {
                (Some(serde_json::Value::Object(a)), serde_json::Value::Object(b)) => {
                    a.extend(b.clone());
                }
                _ => {
                    target.insert(key.clone(), val.clone());
                }
            }
        }
    }
    value.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka and ClickHouse: see the module comment"]
async fn events_in_alerts_out_in_clickhouse_and_kafka() {
    let brokers = std::env::var("CANH_E2E_KAFKA").expect("CANH_E2E_KAFKA");
    let clickhouse = std::env::var("CANH_E2E_CLICKHOUSE").expect("CANH_E2E_CLICKHOUSE");
    let run_id = std::process::id();
    let database = format!("canh_e2e_detect_{run_id}");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let config_path = std::env::temp_dir().join(format!("canh-e2e-detect-{run_id}.toml"));
    std::fs::write(
        &config_path,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"e2e-detect-{run_id}\"\n\
             [clickhouse]\nurl = \"{clickhouse}\"\ndatabase = \"{database}\"\n\
             [batch]\nmax_wait = \"200ms\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [detection]\nrules_dir = \"{rules}\"\n"
        ),
    )
    .expect("config");
    let settings = config::load(&config_path).expect("valid config");
    store::migrate(&clickhouse, "default", &database).await.expect("migrate");

    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
    let failure = serde_json::json!({
        "event": {"category": ["authentication"], "outcome": "failure"},
        "source": {"ip": "198.51.100.7"}, "user": {"name": "root"}, "process": {"name": "sshd"}
    });
    let mut records = Vec::new();
    for i in 0..12 {
        records.push(("canh-log", event(i, "log", failure.clone())));
    }
    let sqli = serde_json::json!({
        "source": {"ip": "203.0.113.9"},
        "url": {"original": "/x.php?id=1%20union%20select%201"}
    });
    records.push(("canh-http", event(20, "http", sqli)));
    for (topic, payload) in &records {
        producer
            .send(FutureRecord::<(), _>::to(topic).payload(payload), Duration::from_secs(10))
            .await
            .expect("produced");
    }

    let db = store::client(&clickhouse, "default", Some(&database));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (_reload_tx, reload_rx) = watch::channel(0u64);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics = Arc::new(Metrics::new());
    let consumer_db = db.clone();
    let consumer_metrics = metrics.clone();
    let task = tokio::spawn(async move {
        consume::run(&settings, consumer_db, consumer_metrics, stop_rx, reload_rx, ready).await
    });

    let mut alerts: Vec<(String, u64)> = Vec::new();
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        alerts = db
            .query("SELECT rule_id, count FROM alerts FINAL ORDER BY rule_id")
            .fetch_all()
            .await
            .expect("query alerts");
        if alerts.len() >= 2 {
            break;
        }
    }
    let _ = stop_tx.send(true);
    task.await.expect("joined").expect("consumer ran");

    let brute_force = "d26d852c-a98b-4b41-bd0f-3d4021971e2c";
    let sql_injection = "58bf43b2-fd4f-4d78-a96e-8be24cf6960c";
    assert!(alerts.iter().any(|(rule, count)| rule == brute_force && *count >= 10), "{alerts:?}");
    assert!(alerts.iter().any(|(rule, _)| rule == sql_injection), "{alerts:?}");

    // The same alerts are on the alert topic.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("e2e-detect-read-{run_id}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["canh-alert"]).expect("subscribe");
    let mut seen = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen && tokio::time::Instant::now() < deadline {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await
        else {
            continue;
        };
        let payload = message.payload().unwrap_or_default();
        seen = String::from_utf8_lossy(payload).contains(brute_force);
    }
    assert!(seen, "the brute-force alert is on canh-alert");
    db.query(&format!("DROP DATABASE IF EXISTS {database}")).execute().await.expect("drop");
}
