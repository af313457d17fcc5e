#!/usr/bin/env bash
# Build the optimised packet sensor: the `release-sensor` cargo profile (fat LTO, one codegen unit)
# plus profile-guided optimisation (PGO) trained on the shared sample captures and logs.
#
# Usage: scripts/build-release.sh [--no-pgo]
#   The result (its path is printed at the end): with PGO
#   target/x86_64-unknown-linux-gnu/release-sensor/canh-sensor (target/HOST/...: the PGO builds pass
#   --target), without target/release-sensor/canh-sensor. Each stays where cargo put it, so a later
#   cargo build of either kind never leaves the other kind's binary behind under its name.
#   --no-pgo      only the release-sensor profile (cargo build --profile release-sensor)
# Environment:
#   CANH_SAMPLES  the shared data set (default ../shared/data beside the checkout): training input
#   LLVM_PROFDATA an llvm-profdata to use; it must be of rustc's LLVM major version
#
# PGO needs an llvm-profdata of the LLVM that rustc is built on (`rustc -vV`); an older one cannot
# read the profiles. It is looked for in rustup's llvm-tools component (added with `rustup component
# add llvm-tools` when missing), then as llvm-profdata-MAJOR and llvm-profdata on PATH. When none
# fits, or there is no training data, this says so and builds without PGO.
#
# Steps with PGO: an instrumented build (-Cprofile-generate) in target/pgo-instrumented, runs of it
# over every capture under $CANH_SAMPLES/pcap/{samples,zeek,suricata-verify} (`canh-sensor pcap`) and
# the log files under $CANH_SAMPLES/logs (`canh-sensor logs`), the profiles merged, then the build
# with -Cprofile-use. Both builds pass --target so build scripts and proc macros are not
# instrumented. `cargo build --release` is not affected. Figures: BENCHMARKS.md, packet section,
# "PGO / LTO, eighth round".
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"
export CARGO_INCREMENTAL=0

pgo=1
case ${1:-} in
--no-pgo) pgo=0 ;;
"") ;;
*)
    echo "usage: scripts/build-release.sh [--no-pgo]" >&2
    exit 2
    ;;
esac

DATA=${CANH_SAMPLES:-$REPO_DIR/../shared/data}
HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')

plain_build() {
    cargo build --profile release-sensor -p canh-sensor --bin canh-sensor
    echo "built $REPO_DIR/target/release-sensor/canh-sensor (release-sensor profile: fat LTO, no PGO)"
}

# An llvm-profdata whose LLVM major version is rustc's, or nothing.
fits() {
    [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "LLVM version $LLVM_MAJOR\."
}
find_profdata() {
    if [ -n "${LLVM_PROFDATA:-}" ]; then
        fits "$LLVM_PROFDATA" && echo "$LLVM_PROFDATA"
        return 0
    fi
    local rustup_tool
    rustup_tool=$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata
    if ! fits "$rustup_tool" && command -v rustup >/dev/null; then
        echo "adding rustup's llvm-tools component for llvm-profdata" >&2
        timeout 300 rustup component add llvm-tools >&2 || true
    fi
    local c
    for c in "$rustup_tool" "$(command -v "llvm-profdata-$LLVM_MAJOR" || true)" \
        "$(command -v llvm-profdata || true)"; do
        if [ -n "$c" ] && fits "$c"; then
            echo "$c"
            return 0
        fi
    done
}

if [ "$pgo" = 0 ]; then
    plain_build
    exit 0
fi

PROFDATA=$(find_profdata)
if [ -z "$PROFDATA" ]; then
    echo "NO PGO: no llvm-profdata of LLVM $LLVM_MAJOR (rustc's) found; install one (rustup component add" >&2
    echo "llvm-tools, or set LLVM_PROFDATA). Building the release-sensor profile without PGO." >&2
    plain_build
    exit 0
fi
shopt -s nullglob
CAPTURES=("$DATA"/pcap/samples/* "$DATA"/pcap/zeek/*.pcap "$DATA"/pcap/suricata-verify/*.pcap)
LOGS=()
while IFS= read -r -d '' f; do LOGS+=("$f"); done < <(find "$DATA/logs" -type f -size +0 -print0 2>/dev/null | sort -z)
if [ ${#CAPTURES[@]} = 0 ]; then
    echo "NO PGO: no training captures under $DATA/pcap (set CANH_SAMPLES). Building without PGO." >&2
    plain_build
    exit 0
fi

PROFILES=$REPO_DIR/target/pgo-profiles
rm -rf "$PROFILES"
mkdir -p "$PROFILES"
echo "==> instrumented build (llvm-profdata: $PROFDATA)"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$PROFILES" \
    cargo build --profile release-sensor -p canh-sensor --bin canh-sensor --target "$HOST" \
    --target-dir "$REPO_DIR/target/pgo-instrumented"
TRAINER=$REPO_DIR/target/pgo-instrumented/$HOST/release-sensor/canh-sensor

echo "==> training on ${#CAPTURES[@]} captures and ${#LOGS[@]} log files from $DATA"
for f in "${CAPTURES[@]}"; do
    LLVM_PROFILE_FILE="$PROFILES/pcap-%p-%m.profraw" "$TRAINER" pcap "$f" >/dev/null 2>&1 || true
done
for f in "${LOGS[@]}"; do
    LLVM_PROFILE_FILE="$PROFILES/logs-%p-%m.profraw" "$TRAINER" logs "$f" >/dev/null 2>&1 || true
done
runs=$(find "$PROFILES" -name '*.profraw' | wc -l)
"$PROFDATA" merge -o "$PROFILES/merged.profdata" "$PROFILES"/*.profraw
rm -f "$PROFILES"/*.profraw

echo "==> optimised build (-Cprofile-use)"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PROFILES/merged.profdata" \
    cargo build --profile release-sensor -p canh-sensor --bin canh-sensor --target "$HOST"
echo "built $REPO_DIR/target/$HOST/release-sensor/canh-sensor (release-sensor profile: fat LTO + PGO, $runs training runs)"
