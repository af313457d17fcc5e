#!/usr/bin/env bash
# Storage latency benchmark (not a test): events produced at a fixed rate with @timestamp = send
# time, the collector (release build) running, and for every 100th flow event the time from its
# @timestamp until a ClickHouse query first returns it. Prints p50/p90/p99/max.
#
# Usage: scripts/bench-latency.sh RATE SECONDS
# Environment: the BENCH_* settings of scripts/bench-setup.sh (broker, partitions, rule pack,
# batch, batch.max_wait, consumer options).
set -euo pipefail
RATE=${1:?usage: bench-latency.sh RATE SECONDS}
SECONDS_RUN=${2:?usage: bench-latency.sh RATE SECONDS}
RUN=lat$(date +%s)
# shellcheck source=scripts/bench-setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-setup.sh"

"$COLLECTOR" run --config "$WORK/collector.toml" 2>"$WORK/collector.log" &
collector_pid=$!
# Give the collector's consumer group time to join before the first event is sent.
sleep 5
kill -0 "$collector_pid" || {
    cat "$WORK/collector.log"
    exit 1
}
cpu0=$(cpu_of "$collector_pid")
"$LOAD" latency --brokers "127.0.0.1:$KAFKA_PORT" --prefix "$RUN-" --templates "$WORK/templates.jsonl" \
    --sensor "$RUN" --rate "$RATE" --seconds "$SECONDS_RUN" --pack-bytes "${BENCH_PACK_BYTES:-131072}" \
    --pack-compression "${BENCH_PACK_COMPRESSION:-zstd}" \
    --clickhouse "http://127.0.0.1:$CH_HTTP" --database "$RUN"
cpu=$(echo "$(cpu_of "$collector_pid") - $cpu0" | bc)
kill -INT "$collector_pid"
wait "$collector_pid" || true
collector_pid=""
echo "broker: $BROKER   detection: ${BENCH_DETECTION:-1}   partitions: ${BENCH_PARTITIONS:-4}   batch: ${BENCH_BATCH:-50000} / ${BENCH_MAX_WAIT:-1s}"
echo "collector CPU during the run: $cpu s ($(echo "scale=1; $cpu * 1000000 / ($RATE * $SECONDS_RUN)" | bc) per million sent)   load: $(cut -d' ' -f1-3 /proc/loadavg)"
clickhouse-client --port "$CH_TCP" -q "DROP DATABASE IF EXISTS $RUN"
