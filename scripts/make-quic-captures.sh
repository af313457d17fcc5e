#!/usr/bin/env bash
# Rebuilds the QUIC captures under sensor/tests/quic/: aioquic's client and server handshake over
# loopback while tcpdump records them (scripts/quic-handshake.py). The shared data holds no QUIC,
# so these captures are the sensor's QUIC test data; the values the test expects come from
# Wireshark's dissection of them (it removes the Initial packets' protection itself; see
# sensor/tests/quic/README.md).
#
# Needs root (capture on lo), tcpdump, openssl and aioquic (pip install aioquic).
# Usage: scripts/make-quic-captures.sh [OUT_DIR]
set -euo pipefail

here=$(realpath "$(dirname "$0")")
out=$(realpath "${1:-$here/../sensor/tests/quic}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365 \
    -subj "/CN=quic.canh.test/O=Canh Test" 2>/dev/null

# capture NAME PORT SNI VERSION RETRY ALPN...
capture() {
    local name=$1 port=$2
    shift 2
    tcpdump -i lo -U -w "$name.pcap" "udp port $port" 2>/dev/null &
    local dump=$!
    sleep 1
    timeout 20 python3 "$here/quic-handshake.py" "$port" cert.pem key.pem "$@"
    sleep 1
    kill "$dump"
    wait "$dump" 2>/dev/null || true
    cp "$name.pcap" "$out/"
}

mkdir -p "$out"
capture quic-v1 4443 www.example.org 0x00000001 no-retry h3
capture quic-v2-retry 4444 video.example.net 0x6b3343cf retry h3 h3-29
# Enough ALPN names to make the ClientHello larger than one Initial packet.
many=$(for i in $(seq 1 90); do printf 'proto-%02d ' "$i"; done)
# shellcheck disable=SC2086
capture quic-v1-long-hello 4445 big.example.com 0x00000001 no-retry $many
