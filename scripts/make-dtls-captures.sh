#!/usr/bin/env bash
# Rebuilds the DTLS captures under sensor/tests/dtls/: a real OpenSSL client and server handshake
# DTLS 1.0 and DTLS 1.2 over loopback while tcpdump records them. The shared data holds no DTLS,
# so these two captures are the sensor's DTLS test data; the values the test expects come from
# Wireshark's dissection of them and from the certificate (see sensor/tests/dtls/README.md).
#
# Needs root (capture on lo), openssl and tcpdump. Usage: scripts/make-dtls-captures.sh [OUT_DIR]
set -euo pipefail

out=$(realpath "${1:-$(dirname "$0")/../sensor/tests/dtls}")
work=$(mktemp -d)
trap 'pkill -f "s_server -accept 443[45]" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

# A throwaway self-signed certificate, valid for a year from today.
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365 \
    -subj "/CN=dtls.canh.test/O=Canh Test" 2>/dev/null

# capture NAME PORT SERVER_OPTIONS CLIENT_OPTIONS
capture() {
    local name=$1 port=$2 server=$3 client=$4
    tcpdump -i lo -U -w "$name.pcap" "udp port $port" 2>/dev/null &
    local dump=$!
    sleep 1
    # shellcheck disable=SC2086
    openssl s_server -accept "$port" -cert cert.pem -key key.pem -quiet $server >/dev/null 2>&1 &
    local srv=$!
    sleep 1
    # shellcheck disable=SC2086
    (sleep 1; echo "hello from the client") |
        timeout 5 openssl s_client -connect "127.0.0.1:$port" $client >"$name.client.txt" 2>&1 || true
    sleep 1
    kill "$srv" 2>/dev/null || true
    kill "$dump"
    wait "$dump" 2>/dev/null || true
    cp "$name.pcap" "$out/"
    grep -E 'Protocol  :|Cipher    :' "$name.client.txt"
}

mkdir -p "$out"
capture dtls1_0 4434 "-dtls1 -cipher DEFAULT:@SECLEVEL=0 -no_ticket" \
    "-dtls1 -cipher DEFAULT:@SECLEVEL=0 -servername vpn.example.net -mtu 600"
capture dtls1_2 4435 "-dtls1_2 -alpn webrtc" \
    "-dtls1_2 -servername media.example.org -alpn webrtc"
openssl x509 -in cert.pem -noout -subject -dates
