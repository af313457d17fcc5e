#!/usr/bin/env bash
# Start, stop and inspect Canh's local services: Tansu (Kafka API, sqlite storage) and ClickHouse.
#
# Usage: scripts/services.sh start|stop|status|reset
#   start   start both (if not already running), wait until ready, create the Kafka topics
#   stop    stop both: SIGTERM, then SIGKILL after CANH_STOP_TIMEOUT seconds
#   status  print the state of each; exit 0 only when both are running
#   reset   stop, then delete CANH_HOME (all Kafka and ClickHouse data, logs)
#
# Everything a run writes lives in CANH_HOME:
#   kafka/kafka.db            Tansu's sqlite storage
#   clickhouse/               rendered config.xml + users.xml, data/ and tmp/
#   logs/                     tansu.log, clickhouse-server.log, clickhouse-server.err.log, clickhouse.out
#   run/                      tansu.pid, clickhouse.pid
# Two instances (for example the demo and the tests) run side by side when they differ in CANH_HOME and
# all three ports. Needs scripts/install.sh to have run.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---- configuration: environment variables and their defaults ----
CANH_HOME=${CANH_HOME:-$REPO_DIR/.canh}
CANH_KAFKA_PORT=${CANH_KAFKA_PORT:-19092}
CANH_CLICKHOUSE_HTTP_PORT=${CANH_CLICKHOUSE_HTTP_PORT:-18123}
CANH_CLICKHOUSE_TCP_PORT=${CANH_CLICKHOUSE_TCP_PORT:-19000}
CANH_TOPICS=${CANH_TOPICS:-canh-flow canh-dns canh-http canh-tls canh-ssh canh-icmp canh-log canh-sensor canh-alert}
CANH_TOPIC_PARTITIONS=${CANH_TOPIC_PARTITIONS:-4}
CANH_START_TIMEOUT=${CANH_START_TIMEOUT:-60} # seconds to wait for each service to become ready
CANH_STOP_TIMEOUT=${CANH_STOP_TIMEOUT:-30}   # seconds between SIGTERM and SIGKILL
CANH_TANSU_LOG=${CANH_TANSU_LOG:-warn}       # RUST_LOG filter for the broker's log

say() { echo "services: $*"; }
die() {
    echo "services: error: $*" >&2
    exit 1
}

# A relative CANH_HOME would change meaning with the cwd: make it absolute.
case $CANH_HOME in
/*) ;;
*) CANH_HOME=$PWD/$CANH_HOME ;;
esac
# The path goes into ClickHouse's XML config through sed: keep it to characters that need no escaping.
[[ $CANH_HOME =~ ^[A-Za-z0-9._/+@:-]+$ ]] ||
    die "CANH_HOME may only contain letters, digits and . _ / + @ : - (got '$CANH_HOME')"

# Fails unless variable $1 holds a whole number from $2 to $3.
require_number() {
    local name=$1 min=$2 max=$3 value=${!1}
    if ! [[ $value =~ ^[0-9]+$ ]] || [ "$value" -lt "$min" ] || [ "$value" -gt "$max" ]; then
        die "$name must be a number from $min to $max, not '$value'"
    fi
}
require_number CANH_KAFKA_PORT 1 65535
require_number CANH_CLICKHOUSE_HTTP_PORT 1 65535
require_number CANH_CLICKHOUSE_TCP_PORT 1 65535
require_number CANH_TOPIC_PARTITIONS 1 10000
require_number CANH_START_TIMEOUT 1 3600
require_number CANH_STOP_TIMEOUT 1 3600
if [ "$CANH_CLICKHOUSE_HTTP_PORT" = "$CANH_CLICKHOUSE_TCP_PORT" ] ||
    [ "$CANH_KAFKA_PORT" = "$CANH_CLICKHOUSE_HTTP_PORT" ] ||
    [ "$CANH_KAFKA_PORT" = "$CANH_CLICKHOUSE_TCP_PORT" ]; then
    die "CANH_KAFKA_PORT, CANH_CLICKHOUSE_HTTP_PORT and CANH_CLICKHOUSE_TCP_PORT must differ"
fi

# The Tansu that scripts/install.sh installs; else whatever is on PATH.
TANSU_BIN=${CARGO_HOME:-$HOME/.cargo}/bin/tansu
if [ ! -x "$TANSU_BIN" ]; then
    TANSU_BIN=$(command -v tansu || echo tansu)
fi
CLICKHOUSE_TEMPLATE_DIR=$REPO_DIR/scripts/clickhouse

KAFKA_DIR=$CANH_HOME/kafka
CLICKHOUSE_DIR=$CANH_HOME/clickhouse
LOG_DIR=$CANH_HOME/logs
RUN_DIR=$CANH_HOME/run
TANSU_PID_FILE=$RUN_DIR/tansu.pid
CLICKHOUSE_PID_FILE=$RUN_DIR/clickhouse.pid
TANSU_LOG=$LOG_DIR/tansu.log
CLICKHOUSE_LOG=$LOG_DIR/clickhouse-server.log
CLICKHOUSE_ERR_LOG=$LOG_DIR/clickhouse-server.err.log
CLICKHOUSE_OUT_LOG=$LOG_DIR/clickhouse.out # the server's own stdout/stderr (start-up failures land here)
# Written by the first start into a new or empty CANH_HOME. start refuses a non-empty folder without it
# and reset deletes only a folder with it, so a mistyped CANH_HOME (/, $HOME) is harmless.
HOME_MARKER=$CANH_HOME/.canh-home
KAFKA_BROKER=tcp://127.0.0.1:$CANH_KAFKA_PORT
# What a live pid's command line must contain to count as our service (see running_pid). The config
# path tells this instance's ClickHouse apart from another instance's.
TANSU_MATCH="tansu broker"
CLICKHOUSE_MATCH=$CLICKHOUSE_DIR/config.xml

# ---- processes and ports ----

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# Prints the pid in pid file $1 when that process is alive and its command line contains $2
# (guards against a stale pid file whose pid now belongs to another program).
running_pid() {
    local pid_file=$1 match=$2 pid
    [ -f "$pid_file" ] || return 1
    pid=$(cat "$pid_file")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$match" || return 1
    echo "$pid"
}

# Prints the last lines of log file $1 to stderr, to explain a failure.
show_log_tail() {
    [ -s "$1" ] || return 0
    echo "--- last lines of $1 ---" >&2
    tail -n 20 "$1" >&2
    echo "---" >&2
}

# Starts a command in the background, detached from this shell (own session, immune to hangup and to
# Ctrl-C in the caller's terminal), with cwd $1, output appended to $2, pid written to $3.
start_detached() {
    local cwd=$1 log=$2 pid_file=$3
    shift 3
    echo "=== $(date -Is) started by services.sh: $*" >>"$log"
    # No job control here, so the subshell is not a process-group leader and setsid does not fork:
    # $! is the pid of the service itself.
    (cd "$cwd" && exec setsid nohup "$@" >>"$log" 2>&1 </dev/null) &
    echo $! >"$pid_file"
}

# Stops the process of pid file $1, named $2 in messages, whose command line contains $3.
stop_process() {
    local pid_file=$1 name=$2 match=$3 pid
    if ! pid=$(running_pid "$pid_file" "$match"); then
        say "$name: not running"
        rm -f "$pid_file"
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + CANH_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            say "$name: still running ${CANH_STOP_TIMEOUT}s after SIGTERM, sending SIGKILL (pid $pid)"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$pid_file"
    say "$name: stopped (pid $pid)"
}

# Fails unless port $1 (used by service $2) is free.
require_free_port() {
    if port_open "$1"; then
        die "$2: port $1 is already in use by another process (see: ss -ltnp 'sport = :$1')"
    fi
}

# ---- Tansu ----

# Runs a tansu admin command, killed after $1 seconds: a broker that accepts connections but does not
# answer (stopped, overloaded) would otherwise block it forever.
tansu_cli() {
    local seconds=$1
    shift
    # tansu loads a .env file from its cwd and reads RUST_LOG: run it from a folder we own, with a
    # fixed log filter, so the caller's environment cannot change what it does.
    (cd "$KAFKA_DIR" && RUST_LOG=error NO_COLOR=1 timeout "$seconds" "$TANSU_BIN" "$@")
}

tansu_ready() {
    port_open "$CANH_KAFKA_PORT" && tansu_cli 5 topic list --broker "$KAFKA_BROKER" >/dev/null 2>&1
}

start_tansu() {
    local pid
    if pid=$(running_pid "$TANSU_PID_FILE" "$TANSU_MATCH"); then
        if tansu_ready; then
            say "tansu: already running (pid $pid, port $CANH_KAFKA_PORT)"
            return
        fi
        say "tansu: process $pid is alive but not ready yet; waiting"
    else
        if [ -f "$TANSU_PID_FILE" ]; then
            say "tansu: removing stale pid file (process $(cat "$TANSU_PID_FILE") is not running)"
            rm -f "$TANSU_PID_FILE"
        fi
        command -v "$TANSU_BIN" >/dev/null || die "tansu: '$TANSU_BIN' not found; run scripts/install.sh"
        require_free_port "$CANH_KAFKA_PORT" tansu
        say "tansu: starting on port $CANH_KAFKA_PORT (log $TANSU_LOG)"
        # The sqlite URL is resolved relative to the broker's cwd (Tansu joins host and path onto it,
        # even for sqlite:///absolute/path), so the broker runs in KAFKA_DIR with a relative URL.
        # RUST_LOG/NO_COLOR: plain-text log at CANH_TANSU_LOG level; the default would log only errors.
        start_detached "$KAFKA_DIR" "$TANSU_LOG" "$TANSU_PID_FILE" \
            env RUST_LOG="$CANH_TANSU_LOG" NO_COLOR=1 \
            "$TANSU_BIN" broker \
            --cluster-id canh \
            --listener-url "$KAFKA_BROKER" \
            --advertised-listener-url "$KAFKA_BROKER" \
            --storage-engine sqlite://kafka.db
        pid=$(cat "$TANSU_PID_FILE")
    fi

    local deadline=$((SECONDS + CANH_START_TIMEOUT))
    until tansu_ready; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail "$TANSU_LOG"
            die "tansu: exited during start-up; see $TANSU_LOG"
        fi
        if [ $SECONDS -ge $deadline ]; then
            show_log_tail "$TANSU_LOG"
            die "tansu: not ready on port $CANH_KAFKA_PORT after ${CANH_START_TIMEOUT}s (pid $pid); see $TANSU_LOG (if it runs with other ports, stop it first)"
        fi
        sleep 0.3
    done
    say "tansu: ready (pid $pid, $KAFKA_BROKER)"
}

# Creates each topic of CANH_TOPICS that does not exist yet.
create_topics() {
    local existing topic out created=() kept=()
    existing=$(tansu_cli 15 topic list --broker "$KAFKA_BROKER") ||
        die "tansu: cannot list topics on $KAFKA_BROKER; see $TANSU_LOG"
    for topic in $CANH_TOPICS; do
        # `topic list` prints a JSON array of the metadata topics: [{"error_code":0,"name":"x",...},...]
        if grep -q "\"name\":\"$topic\"" <<<"$existing"; then
            kept+=("$topic")
            continue
        fi
        # On failure tansu exits 1 and prints the Kafka error text; "already exists" (a concurrent
        # create won the race) is fine.
        if out=$(tansu_cli 40 topic create "$topic" --partitions "$CANH_TOPIC_PARTITIONS" --broker "$KAFKA_BROKER" 2>&1); then
            created+=("$topic")
        elif grep -q "already exists" <<<"$out"; then
            kept+=("$topic")
        else
            echo "$out" >&2
            die "tansu: cannot create topic $topic"
        fi
    done
    [ ${#created[@]} -eq 0 ] || say "topics created (${CANH_TOPIC_PARTITIONS} partitions): ${created[*]}"
    [ ${#kept[@]} -eq 0 ] || say "topics already there: ${kept[*]}"
}

# ---- ClickHouse ----

clickhouse_ready() {
    [ "$(curl -s --max-time 2 "http://127.0.0.1:$CANH_CLICKHOUSE_HTTP_PORT/ping" 2>/dev/null)" = "Ok." ]
}

# Renders config.xml from the template (every start, so changed ports take effect) next to users.xml.
write_clickhouse_config() {
    mkdir -p "$CLICKHOUSE_DIR"/{data,tmp,user_files,format_schemas}
    sed -e "s#@CANH_HOME@#$CANH_HOME#g" \
        -e "s#@HTTP_PORT@#$CANH_CLICKHOUSE_HTTP_PORT#g" \
        -e "s#@TCP_PORT@#$CANH_CLICKHOUSE_TCP_PORT#g" \
        "$CLICKHOUSE_TEMPLATE_DIR/config.xml.in" >"$CLICKHOUSE_DIR/config.xml"
    cp "$CLICKHOUSE_TEMPLATE_DIR/users.xml" "$CLICKHOUSE_DIR/users.xml"
}

# ClickHouse writes a few dozen files per insert. On ext4 mounted without a journal the kernel
# checks each free inode it considers for a recent deletion, which took most of ClickHouse's CPU
# on such a disk (collector/STORAGE.md, "ClickHouse's disk"): say so, and go on.
warn_unjournaled_disk() {
    local dir=$1 source fstype dev
    read -r source fstype < <(findmnt -no SOURCE,FSTYPE -T "$dir" 2>/dev/null) || return 0
    [ "$fstype" = ext4 ] || return 0
    dev=$(basename "$source")
    if [ "$(cat "/sys/fs/ext4/$dev/journal_task" 2>/dev/null)" = "<none>" ]; then
        say "clickhouse: note: $dir is on ext4 without a journal ($source); inserts cost ClickHouse" \
            "much more CPU there, use a journaled filesystem for its data (collector/STORAGE.md)"
    fi
}

start_clickhouse() {
    local pid
    if pid=$(running_pid "$CLICKHOUSE_PID_FILE" "$CLICKHOUSE_MATCH"); then
        if clickhouse_ready; then
            say "clickhouse: already running (pid $pid, http $CANH_CLICKHOUSE_HTTP_PORT, tcp $CANH_CLICKHOUSE_TCP_PORT)"
            return
        fi
        say "clickhouse: process $pid is alive but not ready yet; waiting"
    else
        if [ -f "$CLICKHOUSE_PID_FILE" ]; then
            say "clickhouse: removing stale pid file (process $(cat "$CLICKHOUSE_PID_FILE") is not running)"
            rm -f "$CLICKHOUSE_PID_FILE"
        fi
        command -v clickhouse-server >/dev/null || die "clickhouse: clickhouse-server not found; run scripts/install.sh"
        require_free_port "$CANH_CLICKHOUSE_HTTP_PORT" clickhouse
        require_free_port "$CANH_CLICKHOUSE_TCP_PORT" clickhouse
        write_clickhouse_config
        warn_unjournaled_disk "$CLICKHOUSE_DIR"
        say "clickhouse: starting on http $CANH_CLICKHOUSE_HTTP_PORT, tcp $CANH_CLICKHOUSE_TCP_PORT (log $CLICKHOUSE_LOG)"
        start_detached "$CLICKHOUSE_DIR" "$CLICKHOUSE_OUT_LOG" "$CLICKHOUSE_PID_FILE" \
            clickhouse-server --config-file="$CLICKHOUSE_DIR/config.xml"
        pid=$(cat "$CLICKHOUSE_PID_FILE")
    fi

    local deadline=$((SECONDS + CANH_START_TIMEOUT))
    until clickhouse_ready; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail "$CLICKHOUSE_OUT_LOG"
            show_log_tail "$CLICKHOUSE_ERR_LOG"
            die "clickhouse: exited during start-up; see $CLICKHOUSE_ERR_LOG and $CLICKHOUSE_OUT_LOG"
        fi
        if [ $SECONDS -ge $deadline ]; then
            show_log_tail "$CLICKHOUSE_ERR_LOG"
            die "clickhouse: no 'Ok.' from http://127.0.0.1:$CANH_CLICKHOUSE_HTTP_PORT/ping after ${CANH_START_TIMEOUT}s (pid $pid); see $CLICKHOUSE_ERR_LOG (if it runs with other ports, stop it first)"
        fi
        sleep 0.3
    done
    say "clickhouse: ready (pid $pid, http://127.0.0.1:$CANH_CLICKHOUSE_HTTP_PORT, tcp $CANH_CLICKHOUSE_TCP_PORT)"
}

# ---- commands ----

cmd_start() {
    if [ ! -f "$HOME_MARKER" ] && [ -n "$(ls -A "$CANH_HOME" 2>/dev/null)" ]; then
        die "CANH_HOME $CANH_HOME is a non-empty folder not made by this script; choose a new or empty one"
    fi
    mkdir -p "$KAFKA_DIR" "$CLICKHOUSE_DIR" "$LOG_DIR" "$RUN_DIR"
    touch "$HOME_MARKER"
    start_tansu
    create_topics
    start_clickhouse
    say "all running (CANH_HOME=$CANH_HOME)"
}

cmd_stop() {
    # Without the marker this folder was never started by us: touch nothing in it.
    if [ ! -f "$HOME_MARKER" ]; then
        say "nothing to stop: $CANH_HOME was not started by this script"
        return
    fi
    stop_process "$TANSU_PID_FILE" tansu "$TANSU_MATCH"
    stop_process "$CLICKHOUSE_PID_FILE" clickhouse "$CLICKHOUSE_MATCH"
}

# Prints a note when pid file $1 exists although its process is gone (e.g. after kill -9).
stale_note() {
    [ -f "$1" ] || return 0
    echo " (stale pid file $1; the next start removes it)"
}

# Prints one line per service; exit status 0 only when both run and answer.
cmd_status() {
    local pid status=0
    if ! pid=$(running_pid "$TANSU_PID_FILE" "$TANSU_MATCH"); then
        say "tansu: stopped$(stale_note "$TANSU_PID_FILE")"
        status=3
    elif ! tansu_ready; then
        say "tansu: running (pid $pid) but not answering on port $CANH_KAFKA_PORT; see $TANSU_LOG"
        status=3
    else
        say "tansu: running (pid $pid, $KAFKA_BROKER)"
    fi
    if ! pid=$(running_pid "$CLICKHOUSE_PID_FILE" "$CLICKHOUSE_MATCH"); then
        say "clickhouse: stopped$(stale_note "$CLICKHOUSE_PID_FILE")"
        status=3
    elif ! clickhouse_ready; then
        say "clickhouse: running (pid $pid) but not answering on http port $CANH_CLICKHOUSE_HTTP_PORT; see $CLICKHOUSE_ERR_LOG"
        status=3
    else
        say "clickhouse: running (pid $pid, http $CANH_CLICKHOUSE_HTTP_PORT, tcp $CANH_CLICKHOUSE_TCP_PORT)"
    fi
    say "CANH_HOME=$CANH_HOME"
    return $status
}

cmd_reset() {
    if [ ! -e "$CANH_HOME" ]; then
        say "nothing to delete: $CANH_HOME does not exist"
        return
    fi
    [ -f "$HOME_MARKER" ] || die "refusing to delete $CANH_HOME: it has no $(basename "$HOME_MARKER") marker (not made by this script)"
    cmd_stop
    rm -rf "$CANH_HOME"
    say "deleted $CANH_HOME"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
reset) cmd_reset ;;
*)
    echo "usage: $0 start|stop|status|reset" >&2
    exit 2
    ;;
esac
