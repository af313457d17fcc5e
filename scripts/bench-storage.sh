#!/usr/bin/env bash
# Storage benchmark (not a test): pre-fill Kafka, then time the collector (release build) storing
# the events in ClickHouse. Prints events/s, and CPU seconds per million events of the collector,
# the broker and ClickHouse over the consume phase.
#
# Usage: scripts/bench-storage.sh [EVENTS]   (default 1000000)
# Environment: the BENCH_* settings of scripts/bench-setup.sh (broker, partitions, rule pack,
# batch, consumer options), and
#   BENCH_PERF=1          record the collector with `perf record -g` into $CANH_HOME/perf-storage.data
#   BENCH_KEEP=1          keep the run's database (named in the output) instead of dropping it
# Events are copies of the sensor's output for four captures (collector/examples/storage_load.rs):
# new ids, one sensor id, @timestamp = fill time. ClickHouse: the services of CANH_CLICKHOUSE_*.
set -euo pipefail
EVENTS=${1:-1000000}
RUN=bench$(date +%s)
# The events are older than the default lateness by the time they are consumed.
LATENESS=3650days
# shellcheck source=scripts/bench-setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-setup.sh"

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

"$LOAD" fill --brokers "127.0.0.1:$KAFKA_PORT" --prefix "$RUN-" --templates "$WORK/templates.jsonl" \
    --events "$EVENTS" --sensor "$RUN" --pack-bytes "${BENCH_PACK_BYTES:-131072}" \
    --pack-compression "${BENCH_PACK_COMPRESSION:-zstd}"

# Stored rows, polled 5 times a second: the rows of the tables' active parts (what `count()` counts,
# from metadata), over HTTP. `clickhouse-client` costs ~0.06 CPU-s per start and `count()` reads
# a column in ClickHouse 18.16: polled that way the measuring took about a third of a core.
stored_query="SELECT sum(rows) FROM system.parts WHERE database = '$RUN' AND active \
AND table IN ('flows', 'dns', 'http', 'tls', 'ssh', 'icmp', 'logs')"
stored_rows() {
    local rows
    rows=$(curl -s --max-time 5 "http://127.0.0.1:$CH_HTTP/" --data-binary "$stored_query" 2>/dev/null)
    case $rows in '' | *[!0-9]*) echo 0 ;; *) echo "$rows" ;; esac
}
broker_cpu0=$(cpu_of "$broker_pid_seen")
ch_cpu0=$(cpu_of "${ch_pid:-0}")
start=$(date +%s.%N)
if [ "${BENCH_PERF:-0}" = 1 ]; then
    perf record -g -o "${CANH_HOME:-$WORK}/perf-storage.data" -- \
        "$COLLECTOR" run --config "$WORK/collector.toml" 2>"$WORK/collector.log" &
    sleep 0.5
    collector_pid=$(pgrep -P $! -f canh-collector || echo $!)
else
    "$COLLECTOR" run --config "$WORK/collector.toml" 2>"$WORK/collector.log" &
    collector_pid=$!
fi
stored=0
first=""
first_stored=0
while [ "$stored" -lt "$EVENTS" ]; do
    sleep 0.2
    stored=$(stored_rows)
    if [ -z "$first" ] && [ "$stored" -gt 0 ]; then
        first=$(date +%s.%N)
        first_stored=$stored
    fi
    kill -0 "$collector_pid" || {
        cat "$WORK/collector.log"
        exit 1
    }
done
end=$(date +%s.%N)
cpu=$(cpu_of "$collector_pid")
peak_rss=$(awk '/^VmHWM/ { print $2, $3 }' "/proc/$collector_pid/status" 2>/dev/null || echo "?")
broker_cpu=$(echo "$(cpu_of "$broker_pid_seen") - $broker_cpu0" | bc)
ch_cpu=$(echo "$(cpu_of "${ch_pid:-0}") - $ch_cpu0" | bc)
# CPU-s per thread name of the collector (reader and writer tasks run on tokio's workers;
# detection on its blocking threads; librdkafka's own threads are named rdk:*).
threads=$(cat /proc/"$collector_pid"/task/*/stat 2>/dev/null | thread_cpu |
    awk -F '\t' '$2 >= 0.05 { printf "%s %s (%s), ", $1, $2, $3 }')
# The writer's time per batch from the collector's own metrics (its admin port is chosen by the OS).
admin_port=$(ss -ltnpH 2>/dev/null | awk -v p="pid=$collector_pid," '$0 ~ p { n = split($4, a, ":"); print a[n]; exit }')
stages=""
if [ -n "$admin_port" ]; then
    stages=$(curl -s --max-time 5 "http://127.0.0.1:$admin_port/metrics" | awk '
        /^canh_collector_(write|detect|commit)_seconds_(sum|count) / { v[$1] = $2 }
        END { for (s in v) if (s ~ /_count$/) { n = s; sub(/_count$/, "", n); sub(/^canh_collector_/, "", n)
            printf "%s %d batches, mean %.3f s; ", n, v[s], (v[s] > 0 ? v[substr(s, 1, length(s) - 6) "_sum"] / v[s] : 0) } }')
fi
kill -INT "$collector_pid"
wait "$collector_pid" || true
collector_pid=""
wall=$(echo "$end - $start" | bc)
per_m() { echo "scale=1; $1 * 1000000 / $stored" | bc; }
echo "broker: $BROKER   detection: ${BENCH_DETECTION:-1}   partitions: ${BENCH_PARTITIONS:-4}   batch: ${BENCH_BATCH:-50000}   options: ${BENCH_KAFKA_OPTIONS:-none}"
sustained=$(echo "($stored - $first_stored) / ($end - $first)" | bc)
echo "stored: $stored events in $wall s wall from the collector's start (group join included) = $(echo "$stored / $wall" | bc) events/s; after the first write: $sustained events/s"
echo "CPU-s (per million events): collector $cpu ($(per_m "$cpu")), broker $broker_cpu ($(per_m "$broker_cpu")), clickhouse $ch_cpu ($(per_m "$ch_cpu"))"
echo "collector peak RSS: $peak_rss"
echo "collector CPU-s by thread name (threads): ${threads%, }"
echo "collector stages: ${stages%; }"
echo "alerts: $(ch "SELECT count() FROM alerts FINAL")   dead letters: $(ch "SELECT count() FROM dead_letters")   load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "kept database: $RUN"
else
    clickhouse-client --port "$CH_TCP" -q "DROP DATABASE IF EXISTS $RUN"
fi
