#!/usr/bin/env bash
# Storage benchmark (not a test): pre-fill Kafka, then time the collector (release build) storing
# the events in ClickHouse. Prints events/s, and CPU seconds per million events of the collector,
# the broker and ClickHouse over the consume phase.
#
# Usage: scripts/bench-storage.sh [EVENTS]   (default 1000000)
# Environment:
#   BENCH_DETECTION=1|0   rule pack on (default) or off
#   BENCH_BROKER=sqlite|memory
#                         sqlite (default): the broker of scripts/services.sh (CANH_KAFKA_PORT);
#                         memory: a private Tansu with the non-durable memory://tansu/ engine on
#                         BENCH_MEMORY_PORT (default CANH_KAFKA_PORT + 2), stopped at the end
#   BENCH_BATCH=N         batch.max_records (default 50000)
#   BENCH_KAFKA_OPTIONS   extra `[kafka.consumer]` lines for the collector config, e.g.
#                         'fetch_wait_max = "500ms"'
#   BENCH_PERF=1          record the collector with `perf record -g` into $CANH_HOME/perf-storage.data
# Events are copies of the sensor's output for four captures (collector/examples/storage_load.rs):
# new ids, one sensor id, @timestamp = fill time. ClickHouse: the services of CANH_CLICKHOUSE_*.
set -euo pipefail
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"
export PATH=$HOME/.cargo/bin:$PATH
EVENTS=${1:-1000000}
KAFKA_PORT=${CANH_KAFKA_PORT:-19092}
CH_HTTP=${CANH_CLICKHOUSE_HTTP_PORT:-18123}
CH_TCP=${CANH_CLICKHOUSE_TCP_PORT:-19000}
DATA=${CANH_SAMPLES:-$REPO_DIR/../shared/data}
BROKER=${BENCH_BROKER:-sqlite}
RUN=bench$(date +%s)
WORK=$(mktemp -d)
broker_pid=""
cleanup() {
    if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
CAPTURES=("$DATA/pcap/samples/tcp-synflood-spoofed.pcap" "$DATA/pcap/samples/ultra-lab-03-14.pcapng"
    "$DATA/pcap/samples/cerber-ransomware.pcapng" "$DATA/pcap/samples/synscan.pcapng")

cargo build --release -q -p canh-sensor -p canh-collector --bin canh-sensor --bin canh-collector \
    --example storage_load
SENSOR=target/release/canh-sensor
COLLECTOR=${BENCH_COLLECTOR:-target/release/canh-collector}
LOAD=target/release/examples/storage_load

case $BROKER in
sqlite) ;;
memory)
    KAFKA_PORT=${BENCH_MEMORY_PORT:-$((KAFKA_PORT + 2))}
    tansu broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 50); do
        (echo >"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break
        sleep 0.2
    done
    ;;
*) echo "BENCH_BROKER must be sqlite or memory" >&2; exit 2 ;;
esac
if [ -z "$broker_pid" ]; then
    broker_pid_seen=$(pgrep -f "tansu broker.*127.0.0.1:$KAFKA_PORT" | head -1)
else
    broker_pid_seen=$broker_pid
fi
ch_pid=$(pgrep -f "clickhouse-server.*" | while read -r p; do
    grep -q "$CH_HTTP\|$CH_TCP" "/proc/$p/cmdline" 2>/dev/null && echo "$p"; done | head -1 || true)
if [ -z "$ch_pid" ] && [ -n "${CANH_HOME:-}" ] && [ -f "$CANH_HOME/run/clickhouse.pid" ]; then
    ch_pid=$(cat "$CANH_HOME/run/clickhouse.pid")
fi

for d in flow dns http tls ssh icmp log alert sensor; do
    tansu topic create "$RUN-$d" --partitions 4 --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null
done
"$SENSOR" pcap "${CAPTURES[@]}" >"$WORK/templates.jsonl"
"$LOAD" fill --brokers "127.0.0.1:$KAFKA_PORT" --prefix "$RUN-" --templates "$WORK/templates.jsonl" \
    --events "$EVENTS" --sensor "$RUN"

cat >"$WORK/collector.toml" <<TOML
[kafka]
brokers = "127.0.0.1:$KAFKA_PORT"
group_id = "$RUN"
topic_prefix = "$RUN-"
${BENCH_KAFKA_OPTIONS:+[kafka.consumer]}
${BENCH_KAFKA_OPTIONS:-}
[clickhouse]
url = "http://127.0.0.1:$CH_HTTP"
database = "$RUN"
[batch]
max_records = ${BENCH_BATCH:-50000}
max_wait = "1s"
[admin]
listen = "127.0.0.1:0"
TOML
if [ "${BENCH_DETECTION:-1}" = 1 ]; then
    printf '[detection]\nrules_dir = "%s/rules"\nlateness = "3650days"\n' "$REPO_DIR" >>"$WORK/collector.toml"
fi
"$COLLECTOR" migrate --config "$WORK/collector.toml" 2>/dev/null
ch() { clickhouse-client --port "$CH_TCP" --database "$RUN" -q "$1" 2>/dev/null || echo 0; }
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
stored_query="SELECT (SELECT count() FROM flows) + (SELECT count() FROM dns) + (SELECT count() FROM http) \
+ (SELECT count() FROM tls) + (SELECT count() FROM ssh) + (SELECT count() FROM icmp) + (SELECT count() FROM logs)"
broker_cpu0=$(cpu_of "$broker_pid_seen")
ch_cpu0=$(cpu_of "${ch_pid:-0}")
start=$(date +%s.%N)
if [ "${BENCH_PERF:-0}" = 1 ]; then
    perf record -g -o "${CANH_HOME:-$WORK}/perf-storage.data" -- \
        "$COLLECTOR" run --config "$WORK/collector.toml" 2>"$WORK/collector.log" &
    sleep 0.5
    pid=$(pgrep -P $! -f canh-collector || echo $!)
else
    "$COLLECTOR" run --config "$WORK/collector.toml" 2>"$WORK/collector.log" &
    pid=$!
fi
stored=0
first=""
first_stored=0
while [ "$stored" -lt "$EVENTS" ]; do
    sleep 0.2
    stored=$(ch "$stored_query")
    if [ -z "$first" ] && [ "$stored" -gt 0 ]; then first=$(date +%s.%N); first_stored=$stored; fi
    kill -0 "$pid" || { cat "$WORK/collector.log"; exit 1; }
done
end=$(date +%s.%N)
cpu=$(cpu_of "$pid")
broker_cpu=$(echo "$(cpu_of "$broker_pid_seen") - $broker_cpu0" | bc)
ch_cpu=$(echo "$(cpu_of "${ch_pid:-0}") - $ch_cpu0" | bc)
kill -INT "$pid"; wait "$pid" || true
wall=$(echo "$end - $start" | bc)
per_m() { echo "scale=1; $1 * 1000000 / $stored" | bc; }
echo "broker: $BROKER   detection: ${BENCH_DETECTION:-1}   batch: ${BENCH_BATCH:-50000}   options: ${BENCH_KAFKA_OPTIONS:-none}"
sustained=$(echo "($stored - $first_stored) / ($end - $first)" | bc)
echo "stored: $stored events in $wall s wall from the collector's start (group join included) = $(echo "$stored / $wall" | bc) events/s; after the first write: $sustained events/s"
echo "CPU-s (per million events): collector $cpu ($(per_m "$cpu")), broker $broker_cpu ($(per_m "$broker_cpu")), clickhouse $ch_cpu ($(per_m "$ch_cpu"))"
echo "alerts: $(ch "SELECT count() FROM alerts FINAL")   dead letters: $(ch "SELECT count() FROM dead_letters")   load: $(cut -d' ' -f1-3 /proc/loadavg)"
clickhouse-client --port "$CH_TCP" -q "DROP DATABASE IF EXISTS $RUN"
