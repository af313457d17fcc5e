#!/usr/bin/env bash
# Install what Canh's local services and builds need, on Debian 12:
#   - Debian packages: ClickHouse 18.16 (server + client), build libraries, tshark, tcpreplay,
#     iproute2, curl, rsyslog (only its binary is used, by a test; no system daemon is started here)
#   - Tansu 0.6.0 (Kafka-compatible broker) into ~/.cargo/bin with `cargo install`
#
# Usage: scripts/install.sh
#
# Idempotent: packages already installed and a Tansu that already reports 0.6.0 are skipped, so a second
# run takes a few seconds. A fresh Tansu build takes about 20 minutes on 2 cores.
# Runs as root, or as a user with sudo (only for apt-get).
set -euo pipefail

TANSU_VERSION=0.6.0
# Without these features the broker has no storage engine (dynostore: memory/s3, libsql: sqlite).
TANSU_FEATURES=dynostore,libsql

APT_PACKAGES=(
    clickhouse-server
    clickhouse-client
    libpcap-dev
    libssl-dev
    libsasl2-dev
    pkg-config
    cmake
    tshark
    tcpreplay # live capture test: replays captures onto a veth pair
    iproute2  # live capture test: network namespace and veth pair (ip netns, ip link)
    curl # scripts/services.sh uses it to check ClickHouse
    chromium        # headless browser test of the dashboards
    chromium-driver # WebDriver for that test
    prometheus      # scrape and rule tests (promtool)
    rsyslog         # real syslog client: the sensor's omfwd forwarding test runs its own rsyslogd
)

CARGO_BIN_DIR=${CARGO_HOME:-$HOME/.cargo}/bin
TANSU_BIN=$CARGO_BIN_DIR/tansu

say() { echo "install: $*"; }
die() {
    echo "install: error: $*" >&2
    exit 1
}

# True when the Debian package is installed (not just known to dpkg, e.g. removed but not purged).
is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if is_installed "$pkg"; then
            continue
        fi
        missing+=("$pkg")
    done

    if [ ${#missing[@]} -eq 0 ]; then
        say "apt packages already installed, skipped: ${APT_PACKAGES[*]}"
        return
    fi

    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "not root and no sudo: cannot install ${missing[*]}"
        sudo=(sudo)
    fi

    say "installing apt packages: ${missing[*]}"
    # noninteractive: tshark's package otherwise asks whether non-root users may capture.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# True when the installed Tansu reports the wanted version.
tansu_is_current() {
    [ -x "$TANSU_BIN" ] || return 1
    "$TANSU_BIN" --version 2>/dev/null | grep -qw "$TANSU_VERSION"
}

install_tansu() {
    if tansu_is_current; then
        say "tansu $TANSU_VERSION already installed, skipped: $TANSU_BIN"
        return
    fi

    # Another `cargo install tansu` (an earlier run of this script, another terminal) would build the
    # same thing for 20 minutes in parallel: wait for it instead, then check again.
    local other
    while other=$(pgrep -f "cargo install tansu" | grep -vx "$$" | head -n 1) && [ -n "$other" ]; do
        say "another 'cargo install tansu' is running (pid $other); waiting for it to finish"
        while kill -0 "$other" 2>/dev/null; do sleep 10; done
        if tansu_is_current; then
            say "tansu $TANSU_VERSION installed by the other build: $TANSU_BIN"
            return
        fi
    done

    local cargo
    cargo=$(command -v cargo || true)
    if [ -z "$cargo" ] && [ -x "$CARGO_BIN_DIR/cargo" ]; then
        cargo=$CARGO_BIN_DIR/cargo
    fi
    [ -n "$cargo" ] || die "cargo not found (install Rust with rustup first)"

    say "building tansu $TANSU_VERSION with cargo (about 20 minutes on 2 cores)"
    "$cargo" install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES"
    tansu_is_current || die "tansu installed but '$TANSU_BIN --version' does not report $TANSU_VERSION"
    say "tansu $TANSU_VERSION installed: $TANSU_BIN"
}

# Packages first: building Tansu needs cmake and pkg-config.
install_apt_packages
install_tansu
say "done"
