#!/usr/bin/env bash
# Rebuilds the sensor's own DTLS and QUIC test captures (sensor/tests/dtls/, sensor/tests/quic/):
# real clients and servers handshake over loopback while tcpdump records them. The shared data
# holds neither protocol. The values the tests expect come from Wireshark's dissection of the
# captures and from the certificate (see the README.md in each folder).
#
#   DTLS: OpenSSL's s_server and s_client, DTLS 1.0 and 1.2.
#   QUIC: aioquic's client and server (scripts/quic-handshake.py): version 1; version 2 with a
#         Retry; a ClientHello over two Initial packets.
#
# Needs root (capture on lo), tcpdump, openssl, and for QUIC aioquic (pip install aioquic).
# Usage: scripts/make-handshake-captures.sh [dtls|quic|all]
set -euo pipefail

here=$(realpath "$(dirname "$0")")
tests=$(realpath "$here/../sensor/tests")
what=${1:-all}
work=$(mktemp -d)
trap 'pkill -f "s_server -accept 443[45]" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

# A throwaway self-signed certificate, valid for a year from today.
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365 \
    -subj "/CN=dtls.canh.test/O=Canh Test" 2>/dev/null

# record OUT_DIR NAME PORT COMMAND...: COMMAND's traffic on udp PORT into OUT_DIR/NAME.pcap.
record() {
    local dir=$1 name=$2 port=$3
    shift 3
    tcpdump -i lo -U -w "$name.pcap" "udp port $port" 2>/dev/null &
    local dump=$!
    sleep 1
    "$@"
    sleep 1
    kill "$dump"
    wait "$dump" 2>/dev/null || true
    mkdir -p "$dir"
    cp "$name.pcap" "$dir/"
}

# dtls PORT SERVER_OPTIONS CLIENT_OPTIONS
dtls() {
    local port=$1 server=$2 client=$3
    # shellcheck disable=SC2086
    openssl s_server -accept "$port" -cert cert.pem -key key.pem -quiet $server >/dev/null 2>&1 &
    local srv=$!
    sleep 1
    # shellcheck disable=SC2086
    (sleep 1; echo "hello from the client") |
        timeout 5 openssl s_client -connect "127.0.0.1:$port" $client >client.txt 2>&1 || true
    kill "$srv" 2>/dev/null || true
    grep -E 'Protocol  :|Cipher    :' client.txt
}

# quic PORT SNI VERSION RETRY ALPN...
quic() {
    local port=$1
    shift
    timeout 20 python3 "$here/quic-handshake.py" "$port" cert.pem key.pem "$@"
}

if [ "$what" = dtls ] || [ "$what" = all ]; then
    record "$tests/dtls" dtls1_0 4434 dtls 4434 "-dtls1 -cipher DEFAULT:@SECLEVEL=0 -no_ticket" \
        "-dtls1 -cipher DEFAULT:@SECLEVEL=0 -servername vpn.example.net -mtu 600"
    record "$tests/dtls" dtls1_2 4435 dtls 4435 "-dtls1_2 -alpn webrtc" \
        "-dtls1_2 -servername media.example.org -alpn webrtc"
    openssl x509 -in cert.pem -noout -subject -dates
fi
if [ "$what" = quic ] || [ "$what" = all ]; then
    record "$tests/quic" quic-v1 4443 quic 4443 www.example.org 0x00000001 no-retry h3
    record "$tests/quic" quic-v2-retry 4444 quic 4444 video.example.net 0x6b3343cf retry h3 h3-29
    # Enough ALPN names to make the ClientHello larger than one Initial packet.
    mapfile -t many < <(for i in $(seq 1 90); do printf 'proto-%02d\n' "$i"; done)
    record "$tests/quic" quic-v1-long-hello 4445 quic 4445 big.example.com 0x00000001 no-retry \
        "${many[@]}"
fi
