# Setup shared by scripts/bench-storage.sh and scripts/bench-latency.sh (sourced, not run):
# release build, the broker (sqlite of scripts/services.sh or a private memory one), the run's
# topics, the event templates, and the collector's config in $WORK/collector.toml, migrated.
#
# The caller sets RUN (topic prefix, group and database name) and may set LATENESS (the rule pack's
# `detection.lateness`) before sourcing. Environment read here:
#   CANH_KAFKA_PORT, CANH_CLICKHOUSE_HTTP_PORT, CANH_CLICKHOUSE_TCP_PORT, CANH_SAMPLES
#   BENCH_BROKER=sqlite|memory
#                         sqlite (default): the broker of scripts/services.sh (CANH_KAFKA_PORT);
#                         memory: a private Tansu with the non-durable memory://tansu/ engine on
#                         BENCH_MEMORY_PORT (default CANH_KAFKA_PORT + 2), stopped at the end
#   BENCH_PARTITIONS      partitions per topic (default 4)
#   BENCH_DETECTION=1|0   rule pack on (default) or off
#   BENCH_BATCH=N         batch.max_records (default 50000)
#   BENCH_MAX_WAIT        batch.max_wait (default 1s)
#   BENCH_KAFKA_OPTIONS   extra `[kafka.consumer]` lines, e.g. 'fetch_wait_max = "500ms"'
#   BENCH_BATCH_OPTIONS   extra `[batch]` lines, e.g. 'in_flight = 0'
#   BENCH_CLICKHOUSE_OPTIONS  extra `[clickhouse]` lines, e.g. 'compression = "none"'
#   BENCH_COLLECTOR       the collector binary (default target/release/canh-collector)
#   BENCH_MIX=mixed|detect|flood  the event templates (below)
#   BENCH_PACK_BYTES      events per Kafka record as the sensor packs them, up to this many bytes
#                         (default 131072, the sensor's uplink.pack_bytes); 0: one event per record
#   BENCH_PACK_COMPRESSION  zstd (default: each pack one zstd frame, as the sensor sends them) or none
# Sets: KAFKA_PORT CH_HTTP CH_TCP WORK SENSOR COLLECTOR LOAD broker_pid collector_pid, and the
# functions cpu_of PID (user+sys CPU seconds) and ch QUERY (one value from the run's database).
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"
export PATH=$HOME/.cargo/bin:$PATH
: "${RUN:?set RUN before sourcing bench-setup.sh}"
KAFKA_PORT=${CANH_KAFKA_PORT:-19092}
CH_HTTP=${CANH_CLICKHOUSE_HTTP_PORT:-18123}
CH_TCP=${CANH_CLICKHOUSE_TCP_PORT:-19000}
DATA=${CANH_SAMPLES:-$REPO_DIR/../shared/data}
BROKER=${BENCH_BROKER:-sqlite}
WORK=$(mktemp -d)
broker_pid=""
collector_pid=""
bench_cleanup() {
    if [ -n "$collector_pid" ]; then kill "$collector_pid" 2>/dev/null || true; fi
    if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap bench_cleanup EXIT
# BENCH_MIX picks the event templates:
#   mixed (default): benign and attack captures plus real logs (the Zeek traces, the samples without
#     the SYN flood, SotM34's secure and web logs, loghub's Linux log and Elastic's Apache access
#     log). storage_load re-times every copy to its send time, so the ~1,000 ports of synscan.pcapng
#     repeat every ~0.4 s of event time from one source to one host and keep one correlation window
#     full for the whole run: with the rule pack this is a worst case for detection, not a typical
#     stream (BENCHMARKS.md, storage section, "Round 3" and "Round 4").
#   detect: the detection benchmark's synthetic mix (collector/benches/support/mix.rs, 200,000
#     templates: ~50% flow, 20% dns, 15% http, 10% tls, 5% sshd log, ~1% attacks from random
#     sources): the realistic mix, where correlation groups stay small.
#   flood: the spoofed SYN flood (37,669 flows, each a new source: the worst case for correlation
#     state) with three other captures, the mix of the earlier runs in BENCHMARKS.md.
CAPTURES=()
LOGS=()
case ${BENCH_MIX:-mixed} in
mixed)
    CAPTURES=("$DATA"/pcap/zeek/*.pcap "$DATA/pcap/samples/ultra-lab-03-14.pcapng"
        "$DATA/pcap/samples/cerber-ransomware.pcapng" "$DATA/pcap/samples/synscan.pcapng"
        "$DATA/pcap/samples/dns-tunnel-iodine.pcap" "$DATA/pcap/samples/http-dvwa-sqlinjection.pcapng")
    LOGS=("$DATA/logs/sotm34/original/syslog/secure" "$DATA/logs/sotm34/original/http/access_log"
        "$DATA/logs/loghub/Linux/Linux_2k.log" "$DATA/logs/elastic-examples/apache_logs")
    ;;
detect) ;;
flood)
    CAPTURES=("$DATA/pcap/samples/tcp-synflood-spoofed.pcap" "$DATA/pcap/samples/ultra-lab-03-14.pcapng"
        "$DATA/pcap/samples/cerber-ransomware.pcapng" "$DATA/pcap/samples/synscan.pcapng")
    ;;
*)
    echo "BENCH_MIX must be mixed, detect or flood" >&2
    exit 2
    ;;
esac

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
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break
        sleep 0.2
    done
    if ! (echo >"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then
        echo "the memory broker does not listen on $KAFKA_PORT after 20 s:" >&2
        cat "$WORK/tansu.log" >&2
        exit 1
    fi
    ;;
*)
    echo "BENCH_BROKER must be sqlite or memory" >&2
    exit 2
    ;;
esac
for d in flow dns http tls ssh icmp log alert sensor; do
    tansu topic create "$RUN-$d" --partitions "${BENCH_PARTITIONS:-4}" \
        --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null
done
if [ ${#CAPTURES[@]} -gt 0 ]; then
    "$SENSOR" pcap "${CAPTURES[@]}" >"$WORK/templates.jsonl"
else
    "$LOAD" templates --events 200000 >"$WORK/templates.jsonl"
fi
if [ ${#LOGS[@]} -gt 0 ]; then
    "$SENSOR" logs --format auto "${LOGS[@]}" >>"$WORK/templates.jsonl"
fi

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
${BENCH_CLICKHOUSE_OPTIONS:-}
[batch]
max_records = ${BENCH_BATCH:-50000}
max_wait = "${BENCH_MAX_WAIT:-1s}"
${BENCH_BATCH_OPTIONS:-}
[admin]
listen = "127.0.0.1:0"
TOML
if [ "${BENCH_DETECTION:-1}" = 1 ]; then
    printf '[detection]\nrules_dir = "%s/rules"\n' "$REPO_DIR" >>"$WORK/collector.toml"
    if [ -n "${LATENESS:-}" ]; then
        printf 'lateness = "%s"\n' "$LATENESS" >>"$WORK/collector.toml"
    fi
fi
"$COLLECTOR" migrate --config "$WORK/collector.toml" 2>/dev/null

# shellcheck source=scripts/bench-lib.sh
source "$REPO_DIR/scripts/bench-lib.sh"
ch() { clickhouse-client --port "$CH_TCP" --database "$RUN" -q "$1" 2>/dev/null || echo 0; }
