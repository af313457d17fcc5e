#!/usr/bin/env bash
# Storage latency benchmark (not a test): events produced at a fixed rate with @timestamp = send
# time, the collector (release build) running, and for every 100th flow event the time from its
# @timestamp until a ClickHouse query first returns it. Prints p50/p90/p99/max.
#
# Usage: scripts/bench-latency.sh RATE SECONDS
# Environment: BENCH_DETECTION=1|0 (rule pack on by default), BENCH_BROKER=sqlite|memory and
# BENCH_MEMORY_PORT as in scripts/bench-storage.sh, BENCH_BATCH (batch.max_records, default 50000),
# BENCH_MAX_WAIT (batch.max_wait, default 1s), BENCH_KAFKA_OPTIONS (extra [kafka.consumer] lines).
set -euo pipefail
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"
export PATH=$HOME/.cargo/bin:$PATH
RATE=${1:?usage: bench-latency.sh RATE SECONDS}
SECONDS_RUN=${2:?usage: bench-latency.sh RATE SECONDS}
KAFKA_PORT=${CANH_KAFKA_PORT:-19092}
CH_HTTP=${CANH_CLICKHOUSE_HTTP_PORT:-18123}
CH_TCP=${CANH_CLICKHOUSE_TCP_PORT:-19000}
DATA=${CANH_SAMPLES:-$REPO_DIR/../shared/data}
BROKER=${BENCH_BROKER:-sqlite}
RUN=lat$(date +%s)
WORK=$(mktemp -d)
broker_pid=""
collector_pid=""
cleanup() {
    if [ -n "$collector_pid" ]; then kill "$collector_pid" 2>/dev/null || true; fi
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
for d in flow dns http tls ssh icmp log alert sensor; do
    tansu topic create "$RUN-$d" --partitions 4 --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null
done
"$SENSOR" pcap "${CAPTURES[@]}" >"$WORK/templates.jsonl"

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
max_wait = "${BENCH_MAX_WAIT:-1s}"
[admin]
listen = "127.0.0.1:0"
TOML
if [ "${BENCH_DETECTION:-1}" = 1 ]; then
    printf '[detection]\nrules_dir = "%s/rules"\n' "$REPO_DIR" >>"$WORK/collector.toml"
fi
"$COLLECTOR" migrate --config "$WORK/collector.toml" 2>/dev/null
"$COLLECTOR" run --config "$WORK/collector.toml" 2>"$WORK/collector.log" &
collector_pid=$!
# Wait until the collector's group has joined (its admin port answers once consuming).
sleep 5
kill -0 "$collector_pid" || { cat "$WORK/collector.log"; exit 1; }
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu0=$(cpu_of "$collector_pid")
"$LOAD" latency --brokers "127.0.0.1:$KAFKA_PORT" --prefix "$RUN-" --templates "$WORK/templates.jsonl" \
    --sensor "$RUN" --rate "$RATE" --seconds "$SECONDS_RUN" \
    --clickhouse "http://127.0.0.1:$CH_HTTP" --database "$RUN"
cpu=$(echo "$(cpu_of "$collector_pid") - $cpu0" | bc)
kill -INT "$collector_pid"; wait "$collector_pid" || true
collector_pid=""
echo "broker: $BROKER   detection: ${BENCH_DETECTION:-1}   batch: ${BENCH_BATCH:-50000} / ${BENCH_MAX_WAIT:-1s}"
echo "collector CPU during the run: $cpu s   load: $(cut -d' ' -f1-3 /proc/loadavg)"
clickhouse-client --port "$CH_TCP" -q "DROP DATABASE IF EXISTS $RUN"
