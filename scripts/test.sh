#!/usr/bin/env bash
# Run Canh's whole test suite: install what is missing, start Kafka (Tansu) and ClickHouse on the
# test ports with their own data folder, check formatting and lints, build once, run every test,
# and stop the services again.
#
# Usage: scripts/test.sh
# The services use CANH_HOME=target/canh-test and ports 29092 (Kafka), 28123/29000 (ClickHouse)
# unless those variables are set, so a running demo (default ports) is left alone.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"

export CANH_HOME=${CANH_TEST_HOME:-$REPO_DIR/target/canh-test}
export CANH_KAFKA_PORT=${CANH_TEST_KAFKA_PORT:-29092}
export CANH_CLICKHOUSE_HTTP_PORT=${CANH_TEST_CLICKHOUSE_HTTP_PORT:-28123}
export CANH_CLICKHOUSE_TCP_PORT=${CANH_TEST_CLICKHOUSE_TCP_PORT:-29000}
export PATH=$HOME/.cargo/bin:$PATH

step() { echo "==> $*"; }

step "installing what is missing"
scripts/install.sh

step "checking formatting"
cargo fmt --all -- --check

step "starting services (CANH_HOME=$CANH_HOME)"
# Every run starts from empty services: no topic, table or offset of an earlier run leaks in.
scripts/services.sh reset >/dev/null
trap 'scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
scripts/services.sh start

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "building"
cargo build --workspace --bins --tests

step "testing"
results=$CANH_HOME/test-output.txt
cargo test --workspace 2>&1 | tee "$results"
# One closing line with the totals of every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$results"
