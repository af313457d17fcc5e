#!/usr/bin/env bash
# ClickHouse's own cost of the collector's inserts (benchmark, not a test): replays the event rows
# of a storage bench run, kept with `BENCH_KEEP=1 scripts/bench-storage.sh`, into a fresh database
# as the collector writes them (BATCHES inserts per table, one after another, RowBinary over HTTP)
# and prints ClickHouse's CPU seconds for them. No collector, no Kafka: what it measures is the
# server and the disk under CANH_HOME (see collector/STORAGE.md, "ClickHouse's disk").
#
# Usage: scripts/bench-clickhouse-insert.sh KEPT_DATABASE [BATCHES] [VARIANT]
#   BATCHES  inserts per table (default 20: 50,000-event batches of a 1 M event run)
#   VARIANT  base (default): the schema as migrated; no-views: without the materialized views
# ClickHouse: the services of CANH_CLICKHOUSE_HTTP_PORT / CANH_HOME (scripts/services.sh).
set -euo pipefail
KEPT=${1:?usage: $0 KEPT_DATABASE [BATCHES] [VARIANT]}
BATCHES=${2:-20}
VARIANT=${3:-base}
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CH_HTTP=${CANH_CLICKHOUSE_HTTP_PORT:-18123}
CH_URL="http://127.0.0.1:$CH_HTTP/"
PID_FILE=${CANH_HOME:-$REPO_DIR/.canh}/run/clickhouse.pid
ch_pid=$(cut -d' ' -f1 "$PID_FILE")
DB=insertbench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TABLES=(flows dns http tls ssh icmp logs)

q() { curl -sS --fail-with-body "$CH_URL" --data-binary "$1"; }
# shellcheck source=scripts/bench-lib.sh
source "$REPO_DIR/scripts/bench-lib.sh"

# The kept rows, cut into BATCHES slices per table in the order they were consumed.
for t in "${TABLES[@]}"; do
    rows=$(q "SELECT count() FROM $KEPT.$t")
    per=$(((rows + BATCHES - 1) / BATCHES))
    [ "$per" -gt 0 ] || continue
    for i in $(seq 0 $((BATCHES - 1))); do
        q "SELECT * FROM $KEPT.$t ORDER BY kafka_partition, kafka_offset, event_id LIMIT $per OFFSET $((i * per)) FORMAT RowBinary" >"$WORK/$t.$i"
    done
done

q "DROP DATABASE IF EXISTS $DB" >/dev/null
printf '[kafka]\nbrokers = "127.0.0.1:1"\ngroup_id = "x"\n[clickhouse]\nurl = "%s"\ndatabase = "%s"\n' \
    "${CH_URL%/}" "$DB" >"$WORK/collector.toml"
"${BENCH_COLLECTOR:-$REPO_DIR/target/release/canh-collector}" migrate --config "$WORK/collector.toml" 2>/dev/null
case $VARIANT in
base) ;;
no-views)
    for view in $(q "SELECT name FROM system.tables WHERE database = '$DB' AND engine = 'MaterializedView'"); do
        q "DROP TABLE $DB.$view" >/dev/null
    done
    ;;
*)
    echo "VARIANT must be base or no-views" >&2
    exit 2
    ;;
esac
sleep 2

cpu0=$(cpu_of "$ch_pid")
start=$(date +%s.%N)
rows=0
for i in $(seq 0 $((BATCHES - 1))); do
    for t in "${TABLES[@]}"; do
        [ -s "$WORK/$t.$i" ] || continue
        curl -sS --fail-with-body "$CH_URL?database=$DB&query=INSERT%20INTO%20$t%20FORMAT%20RowBinary" \
            --data-binary "@$WORK/$t.$i" >/dev/null
    done
done
end=$(date +%s.%N)
cpu=$(echo "$(cpu_of "$ch_pid") - $cpu0" | bc)
for t in "${TABLES[@]}"; do rows=$((rows + $(q "SELECT count() FROM $DB.$t"))); done
parts=$(q "SELECT count() FROM system.parts WHERE database = '$DB' AND active")
echo "variant $VARIANT: $rows rows in $((BATCHES)) inserts per table, $(echo "$end - $start" | bc) s wall"
echo "ClickHouse CPU-s: $cpu ($(echo "scale=2; $cpu * 1000000 / $rows" | bc) per million rows); active parts after: $parts; load: $(cut -d' ' -f1-3 /proc/loadavg)"
q "DROP DATABASE IF EXISTS $DB" >/dev/null
