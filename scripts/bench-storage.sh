#!/usr/bin/env bash
# Storage benchmark (not a test): pre-fill Kafka with real sensor events, then time the collector
# (release build, rule pack active) storing them in ClickHouse. Prints events/s and the collector's
# CPU seconds per million events.
#
# Usage: scripts/bench-storage.sh [COPIES]   (default 10 sensor runs over the capture set)
# Uses the services of CANH_HOME / CANH_KAFKA_PORT / CANH_CLICKHOUSE_* (start them first).
set -euo pipefail
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"
export PATH=$HOME/.cargo/bin:$PATH
COPIES=${1:-10}
KAFKA_PORT=${CANH_KAFKA_PORT:-19092}
CH_HTTP=${CANH_CLICKHOUSE_HTTP_PORT:-18123}
CH_TCP=${CANH_CLICKHOUSE_TCP_PORT:-19000}
DATA=${CANH_SAMPLES:-$REPO_DIR/../shared/data}
RUN=bench$(date +%s)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CAPTURES=("$DATA/pcap/samples/tcp-synflood-spoofed.pcap" "$DATA/pcap/samples/ultra-lab-03-14.pcapng"
    "$DATA/pcap/samples/cerber-ransomware.pcapng" "$DATA/pcap/samples/synscan.pcapng")

cargo build --release -q -p canh-sensor -p canh-collector
SENSOR=target/release/canh-sensor
COLLECTOR=target/release/canh-collector

for d in flow dns http tls ssh icmp log alert sensor; do
    tansu topic create "$RUN-$d" --partitions 4 --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null
done
per_copy=$("$SENSOR" pcap "${CAPTURES[@]}" | grep -c '"dataset":"flow"')
list=$(printf '"%s", ' "${CAPTURES[@]}")
fill_start=$(date +%s.%N)
for i in $(seq 1 "$COPIES"); do
    cat >"$WORK/sensor-$i.toml" <<TOML
[sensor]
id = "bench-$i"
tenant = "bench"
state_dir = "$WORK/state-$i"
[kafka]
brokers = "127.0.0.1:$KAFKA_PORT"
topic_prefix = "$RUN-"
idempotence = false
[input]
pcap_files = [${list%, }]
[uplink]
health_interval = "0s"
TOML
    "$SENSOR" run --config "$WORK/sensor-$i.toml" 2>/dev/null
done
fill_end=$(date +%s.%N)
flows=$((per_copy * COPIES))
echo "filled: $flows flow events (+ metadata) in $(echo "$fill_end - $fill_start" | bc) s"

cat >"$WORK/collector.toml" <<TOML
[kafka]
brokers = "127.0.0.1:$KAFKA_PORT"
group_id = "$RUN"
topic_prefix = "$RUN-"
[clickhouse]
url = "http://127.0.0.1:$CH_HTTP"
database = "$RUN"
[batch]
max_records = 50000
max_wait = "1s"
[admin]
listen = "127.0.0.1:0"
[retention.days]
flows = 36500
dns = 36500
http = 36500
tls = 36500
ssh = 36500
icmp = 36500
TOML
# BENCH_DETECTION=0 measures storage alone.
if [ "${BENCH_DETECTION:-1}" = 1 ]; then
    printf '[detection]\nrules_dir = "%s/rules"\nlateness = "3650days"\n' "$REPO_DIR" >>"$WORK/collector.toml"
fi
ch() { clickhouse-client --port "$CH_TCP" --database "$RUN" -q "$1" 2>/dev/null || echo 0; }
start=$(date +%s.%N)
"$COLLECTOR" run --config "$WORK/collector.toml" 2>"$WORK/collector.log" &
pid=$!
stored=0
while [ "$stored" -lt "$flows" ]; do
    sleep 0.5
    stored=$(ch "SELECT count() FROM flows")
    kill -0 "$pid" || { cat "$WORK/collector.log"; exit 1; }
done
end=$(date +%s.%N)
records=$(ch "SELECT (SELECT count() FROM flows) + (SELECT count() FROM dns) + (SELECT count() FROM http) + (SELECT count() FROM tls) + (SELECT count() FROM ssh) + (SELECT count() FROM icmp)")
ticks=$(getconf CLK_TCK)
cpu=$(awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$pid/stat")
kill "$pid"; wait "$pid" || true
wall=$(echo "$end - $start" | bc)
echo "stored: $records events ($flows flows) in $wall s wall = $(echo "$records / $wall" | bc) events/s"
echo "collector CPU: $cpu s = $(echo "scale=1; $cpu * 1000000 / $records" | bc) CPU-s per million events"
echo "alerts: $(ch "SELECT count() FROM alerts FINAL")   load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tansu CPU during the run: see top; broker pid $(pgrep -f "tansu broker.*$KAFKA_PORT" | head -1)"
clickhouse-client --port "$CH_TCP" -q "DROP DATABASE IF EXISTS $RUN"
