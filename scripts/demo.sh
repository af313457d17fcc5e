#!/usr/bin/env bash
# Canh's main job on sample data: install and start Kafka (Tansu) and ClickHouse, run the sensor
# on sample captures into Kafka, run the collector into ClickHouse, and print a summary.
#
# Usage: scripts/demo.sh
# Sample captures come from the shared data set beside the checkout (CANH_SAMPLES, default
# ../shared/data). Services keep their data in CANH_HOME (default .canh/) on the default ports; stop
# them with `scripts/services.sh stop`.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"
export PATH=$HOME/.cargo/bin:$PATH
export CANH_HOME=${CANH_HOME:-$REPO_DIR/.canh}
CANH_KAFKA_PORT=${CANH_KAFKA_PORT:-19092}
CANH_CLICKHOUSE_HTTP_PORT=${CANH_CLICKHOUSE_HTTP_PORT:-18123}
CANH_CLICKHOUSE_TCP_PORT=${CANH_CLICKHOUSE_TCP_PORT:-19000}
export CANH_KAFKA_PORT CANH_CLICKHOUSE_HTTP_PORT CANH_CLICKHOUSE_TCP_PORT
SAMPLES=${CANH_SAMPLES:-$REPO_DIR/../shared/data}
DEMO_DIR=$CANH_HOME/demo
DATABASE=canh_demo

step() { echo; echo "==> $*"; }
die() {
    echo "demo: error: $*" >&2
    exit 1
}

CAPTURES=(
    "$SAMPLES/pcap/zeek/wikipedia.pcap"
    "$SAMPLES/pcap/zeek/http-methods.pcap"
    "$SAMPLES/pcap/zeek/ssh-sshguess.pcap"
    "$SAMPLES/pcap/samples/synscan.pcapng"
    "$SAMPLES/pcap/samples/dns-tunnel-iodine.pcap"
    "$SAMPLES/pcap/samples/http-dvwa-sqlinjection.pcapng"
    "$SAMPLES/pcap/samples/ultra-lab-03-14.pcapng"
)
LOGS=(
    "$SAMPLES/logs/loghub/OpenSSH/OpenSSH_2k.log"
    "$SAMPLES/logs/sotm34/original/syslog/secure"
    "$SAMPLES/logs/sotm34/original/http/access_log"
)
for capture in "${CAPTURES[@]}" "${LOGS[@]}"; do
    [ -f "$capture" ] || die "sample capture $capture not found (set CANH_SAMPLES to the shared data folder)"
done

step "installing what is missing"
scripts/install.sh

# Each demo run gets its own topics and consumer group, and a fresh database, so the summary counts
# exactly this run.
RUN=demo$(date +%s)
DATASETS=(flow dns http tls ssh icmp log alert sensor)
CANH_TOPICS=$(printf "$RUN-%s " "${DATASETS[@]}")
export CANH_TOPICS

step "starting services and creating this run's topics"
scripts/services.sh start
clickhouse-client --port "$CANH_CLICKHOUSE_TCP_PORT" -q "DROP DATABASE IF EXISTS $DATABASE"

step "building canh-sensor and canh-collector"
cargo build --bins
SENSOR=$REPO_DIR/target/debug/canh-sensor
COLLECTOR=$REPO_DIR/target/debug/canh-collector

# Each run has its own topics and database, so the sensors start from scratch too: a log sensor
# state (file checkpoints) left by an earlier run would skip every line already sent then.
rm -rf "$DEMO_DIR/sensor-state" "$DEMO_DIR/sensor-logs-state"
mkdir -p "$DEMO_DIR"
capture_list=$(printf '"%s", ' "${CAPTURES[@]}")
cat >"$DEMO_DIR/sensor.toml" <<TOML
[sensor]
id = "demo-hn-01"
tenant = "hanoi"
state_dir = "$DEMO_DIR/sensor-state"

[kafka]
brokers = "127.0.0.1:$CANH_KAFKA_PORT"
topic_prefix = "$RUN-"
idempotence = false    # Tansu 0.6 mishandles idempotent producers after a restart (sensor/UPLINK.md)

[input]
pcap_files = [${capture_list%, }]
TOML
cat >"$DEMO_DIR/collector.toml" <<TOML
[kafka]
brokers = "127.0.0.1:$CANH_KAFKA_PORT"
group_id = "$RUN"
topic_prefix = "$RUN-"

[clickhouse]
url = "http://127.0.0.1:$CANH_CLICKHOUSE_HTTP_PORT"
database = "$DATABASE"

[admin]
listen = "127.0.0.1:19464"

[detection]
rules_dir = "$REPO_DIR/rules"
lateness = "3650days"   # the samples span years; keep all of them in correlation

# The sample captures are years old: keep their rows instead of dropping them as expired.
[retention.days]
flows = 36500
dns = 36500
http = 36500
tls = 36500
ssh = 36500
icmp = 36500
logs = 36500
TOML

step "offline: the first flows of a capture, as the sensor prints them"
"$SENSOR" pcap "$SAMPLES/pcap/zeek/http-get.pcap" | head -n 1

step "sensor: ${#CAPTURES[@]} captures -> Kafka"
expected=$("$SENSOR" pcap --sensor-id demo-hn-01 --tenant hanoi "${CAPTURES[@]}" | grep -c '"dataset":"flow"')
"$SENSOR" run --config "$DEMO_DIR/sensor.toml"

log_list=$(printf '"%s", ' "${LOGS[@]}")
cat >"$DEMO_DIR/sensor-logs.toml" <<TOML
[sensor]
id = "demo-hn-logs"
tenant = "hanoi"
state_dir = "$DEMO_DIR/sensor-logs-state"

[kafka]
brokers = "127.0.0.1:$CANH_KAFKA_PORT"
topic_prefix = "$RUN-"
idempotence = false

[logs]
timezone = "+07:00"

[[logs.files]]
paths = [${log_list%, }]
start_at = "beginning"

[admin]
listen = "127.0.0.1:19465"
TOML

step "log sensor: ${#LOGS[@]} log files -> Kafka"
log_lines=$(cat "${LOGS[@]}" | wc -l)
"$SENSOR" run --config "$DEMO_DIR/sensor-logs.toml" 2>"$DEMO_DIR/sensor-logs.log" &
log_sensor=$!
read_lines=0
for _ in $(seq 1 120); do
    sleep 1
    read_lines=$(curl -s http://127.0.0.1:19465/metrics | awk '/^canh_sensor_log_lines_total/ { n += $2 } END { print n + 0 }')
    [ "$read_lines" -ge "$log_lines" ] && break
done
kill "$log_sensor"
wait "$log_sensor" || die "the log sensor failed (log: $DEMO_DIR/sensor-logs.log)"
echo "$read_lines of $log_lines log lines read and sent"

step "collector: Kafka -> ClickHouse ($DATABASE), with Canh's rule pack"
"$COLLECTOR" run --config "$DEMO_DIR/collector.toml" 2>"$DEMO_DIR/collector.log" &
collector_pid=$!
trap 'kill $collector_pid 2>/dev/null || true' EXIT

ch() { clickhouse-client --port "$CANH_CLICKHOUSE_TCP_PORT" --database "$DATABASE" "$@"; }
stored=0
logs_stored=0
for _ in $(seq 1 180); do
    sleep 1
    stored=$(ch -q "SELECT count() FROM flows FINAL" 2>/dev/null || echo 0)
    logs_stored=$(ch -q "SELECT count() FROM logs FINAL" 2>/dev/null || echo 0)
    [ "$stored" -ge "$expected" ] && [ "$logs_stored" -ge "$read_lines" ] && break
done
kill "$collector_pid"
wait "$collector_pid" || true
trap - EXIT
[ "$stored" = "$expected" ] || die "ClickHouse holds $stored flows, the sensor sent $expected (log: $DEMO_DIR/collector.log)"
[ "$logs_stored" = "$read_lines" ] || die "ClickHouse holds $logs_stored log events, the log sensor read $read_lines lines"

step "summary from ClickHouse"
ch -q "SELECT count() AS flows, uniqExact(community_id) AS distinct_flows, sum(source_bytes + destination_bytes) AS ip_bytes FROM flows FINAL" --format PrettyCompact
ch -q "SELECT state, count() AS flows FROM flows FINAL GROUP BY state ORDER BY flows DESC" --format PrettyCompact
# Addresses are stored IPv6-mapped; show IPv4 ones in dotted form.
ip_text="if(substring(source_ip, 1, 12) = unhex('00000000000000000000FFFF'), IPv4NumToString(reinterpretAsUInt32(reverse(substring(source_ip, 13, 4)))), IPv6NumToString(source_ip))"
ch -q "SELECT $ip_text AS source, count() AS flows, uniqExact(destination_port) AS ports FROM flows FINAL GROUP BY source ORDER BY flows DESC LIMIT 5" --format PrettyCompact
ch -q "SELECT dataset, events FROM (SELECT 'dns' AS dataset, count() AS events FROM dns FINAL UNION ALL SELECT 'http' AS dataset, count() AS events FROM http FINAL UNION ALL SELECT 'tls' AS dataset, count() AS events FROM tls FINAL UNION ALL SELECT 'ssh' AS dataset, count() AS events FROM ssh FINAL UNION ALL SELECT 'logs' AS dataset, count() AS events FROM logs FINAL) ORDER BY events DESC" --format PrettyCompact
ch -q "SELECT appname, outcome, count() AS events FROM logs FINAL GROUP BY appname, outcome ORDER BY events DESC LIMIT 8" --format PrettyCompact
ch -q "SELECT rule_name, level, count() AS alerts, sum(count) AS matches FROM alerts FINAL GROUP BY rule_name, level ORDER BY alerts DESC" --format PrettyCompact
ch -q "SELECT count() AS dead_letters FROM dead_letters" --format PrettyCompact

cat <<TEXT

This run sent $expected flow events and $read_lines log events. Where to look next:
  clickhouse-client --port $CANH_CLICKHOUSE_TCP_PORT --database $DATABASE
      tables: flows, dns, http, tls, ssh, icmp, logs, alerts, dead_letters
  $DEMO_DIR/collector.log
      the collector's log
  $SENSOR pcap FILE.pcap
      flows of any capture as JSON lines
  $COLLECTOR token --name analyst --role analyst --tenant hanoi
      a bearer token for the HTTP API; put the printed entry in a users file, then
  $COLLECTOR api --config $DEMO_DIR/collector.toml
      serves the API and the dashboards at http://127.0.0.1:8080/ui/ (see README)
  scripts/services.sh stop
      stop Kafka and ClickHouse
TEXT
