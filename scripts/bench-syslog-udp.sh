#!/usr/bin/env bash
# UDP ingest comparison: Debian's rsyslogd (imudp -> omfile, its own config in a temp dir, no system
# daemon) receives the same load as the sensor's benchmark sends: loghub OpenSSH lines with sendmmsg,
# CANH_BENCH_UDP_COUNT datagrams (default 1,000,000) paced at CANH_BENCH_UDP_RATE per second
# (default 200,000; 0 = as fast as the sender can).
# Usage: scripts/bench-syslog-udp.sh [RCVBUF_BYTES]   (default 8388608, as the sensor's default)
# Prints datagrams written to the file, the kernel drops of rsyslog's socket and rsyslogd's CPU
# time. Not a test. CANH_BENCH_SYSLOG_PORT picks rsyslog's port (default: a free one).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rcvbuf=${1:-8388608}
dir=$(mktemp -d)
port=${CANH_BENCH_SYSLOG_PORT:-$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
cat >"$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="$port" rcvbufSize="$rcvbuf")
*.* action(type="omfile" file="$dir/out.log")
CONF
/usr/sbin/rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/rsyslogd.pid" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
sleep 2
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
cpu_before=$(cpu)
CANH_BENCH_UDP_TARGET=127.0.0.1:$port cargo bench -q -p canh-sensor --bench logs_parse 2>/dev/null
# Wait until rsyslog stops writing.
last=-1
while true; do
    sleep 1
    n=$(wc -l <"$dir/out.log" 2>/dev/null || echo 0)
    [ "$n" = "$last" ] && break
    last=$n
done
hexport=$(printf '%04X' "$port")
drops=$(awk -v p=":$hexport" '$2 ~ p"$" {print $NF}' /proc/net/udp)
ticks=$(getconf CLK_TCK)
cpu_secs=$(awk -v a="$cpu_before" -v b="$(cpu)" -v t="$ticks" 'BEGIN {printf "%.2f", (b - a) / t}')
echo "rsyslogd: written $last lines, kernel drops $drops (rcvBufSize $rcvbuf), $cpu_secs s of CPU (all its threads)"
