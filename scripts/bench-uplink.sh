#!/usr/bin/env bash
# Benchmark of the sensor uplink (BENCHMARKS.md, "Sensor uplink"): `canh-sensor run` on a capture
# into a private Tansu broker with the memory engine, against `canh-sensor pcap` on the same file.
#
# Usage: scripts/bench-uplink.sh PCAP [CONFIG_LINE...]
#   CONFIG_LINE: extra lines for the sensor config, e.g. '[uplink]' 'write_ahead = false' or
#   'compression = "lz4"' (lines before the first [section] go into [kafka]).
# Environment:
#   CANH_SENSOR   sensor binary (default: target/release/canh-sensor of this repo)
#   BENCH_DIR     work folder, emptied first (default: /tmp/canh-bench-uplink)
#   BENCH_PORT    the broker's port (default: 39193)
#   BENCH_OFFLINE 0 = skip the offline run
#   BENCH_BROKER  "down" = point the sensor at a closed port (spool fill); "keep" = leave the broker
#                 and the spool of an earlier run (drain); default: a fresh broker
# Prints: the offline run's time, the run's time, per-thread CPU of the sensor (sampled from /proc
# every 0.2 s; the last sample before exit), the broker's CPU, the sensor's final stats lines, the
# files left in the spool folder.
set -euo pipefail
export LC_ALL=C

pcap=${1:?usage: bench-uplink.sh PCAP [CONFIG_LINE...]}
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
source "$repo/scripts/bench-lib.sh"
sensor=${CANH_SENSOR:-$repo/target/release/canh-sensor}
dir=${BENCH_DIR:-/tmp/canh-bench-uplink}
port=${BENCH_PORT:-39193}
tansu=${CARGO_HOME:-$HOME/.cargo}/bin/tansu
[ -x "$tansu" ] || tansu=$(command -v tansu)
mode=${BENCH_BROKER:-fresh}

say() { printf '== %s\n' "$*"; }

if [ "${BENCH_OFFLINE:-1}" != 0 ]; then
    say "offline: canh-sensor pcap $pcap > /dev/null   (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    /usr/bin/time -f "offline: %e wall %U user %S sys %M KB" "$sensor" pcap "$pcap" 2>&1 >/dev/null |
        grep -v INFO || true
fi

broker_pid=
if [ "$mode" != keep ]; then
    rm -rf "$dir"
fi
mkdir -p "$dir/kafka" "$dir/state"
if [ "$mode" != down ]; then
    (cd "$dir/kafka" && RUST_LOG=warn NO_COLOR=1 exec "$tansu" broker --cluster-id bench \
        --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >>"$dir/kafka/tansu.log" 2>&1) &
    broker_pid=$!
    trap 'kill "$broker_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        (cd "$dir/kafka" && RUST_LOG=error timeout 5 "$tansu" topic list \
            --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1) && break
        sleep 0.3
    done
    for d in flow dns http tls ssh icmp log alert sensor; do
        (cd "$dir/kafka" && RUST_LOG=error timeout 30 "$tansu" topic create "canh-$d" \
            --partitions 4 --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1) || true
    done
    brokers=127.0.0.1:$port
else
    brokers=127.0.0.1:1
fi

kafka_lines=()
other_lines=()
in_section=0
for line in "$@"; do
    case $line in \[*) in_section=1 ;; esac
    if [ $in_section = 0 ]; then kafka_lines+=("$line"); else other_lines+=("$line"); fi
done
config=$dir/sensor.toml
{
    printf '[sensor]\nid = "bench"\ntenant = "bench"\nstate_dir = "%s"\n\n' "$dir/state"
    printf '[kafka]\nbrokers = "%s"\n' "$brokers"
    printf '%s\n' "${kafka_lines[@]+"${kafka_lines[@]}"}"
    printf '\n[input]\npcap_files = ["%s"]\n\n' "$pcap"
    printf '%s\n' "${other_lines[@]+"${other_lines[@]}"}"
} >"$config"
say "config:"
sed 's/^/   /' "$config"

broker_cpu() {
    [ -n "$broker_pid" ] || { echo 0; return; }
    local pid
    pid=$(pgrep -P "$broker_pid" -f "tansu broker" || echo "$broker_pid")
    awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0
}
tick=$(getconf CLK_TCK)
b0=$(broker_cpu)
say "run: canh-sensor run   (load: $(cut -d' ' -f1-3 /proc/loadavg))"
CANH_LOG=info,librdkafka=off,rdkafka=off /usr/bin/time -f "run: %e wall %U user %S sys %M KB" \
    "$sensor" run --config "$config" 2>"$dir/sensor.log" &
time_pid=$!
sleep 0.05
spid=$(pgrep -P "$time_pid" || true)
declare -A last
while kill -0 "$time_pid" 2>/dev/null; do
    if [ -n "$spid" ]; then
        for f in /proc/"$spid"/task/*/stat; do
            read -r l <"$f" 2>/dev/null || continue
            tid=${l%% *}
            last[$tid]=$l
        done
    fi
    sleep 0.2
done
wait "$time_pid" || true
b1=$(broker_cpu)
say "sensor threads (CPU s, last sample):"
for l in "${last[@]}"; do echo "$l"; done | thread_cpu | awk -F '\t' '{
    printf "   %-16s %7.2f\n", $1, $2; total += $2
} END { printf "   %-16s %7.2f\n", "all", total }'
echo "   broker CPU s: $(awk -v a="$b0" -v b="$b1" -v t="$tick" 'BEGIN{printf "%.2f", (b-a)/t}')"
grep -E "run:|capture (file )?read|why events|sensor stopped|WARN|ERROR" "$dir/sensor.log" | sed 's/^/   /'
spool=$dir/state/spool
echo "   spool folder at exit: $(find "$spool" -name '*.seg' 2>/dev/null | wc -l) segments," \
    "$(find "$spool" -name '*.free' 2>/dev/null | wc -l) retired files kept for reuse"
say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
