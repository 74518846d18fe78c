#!/usr/bin/env bash
# End-to-end ingest throughput: the same `conduit simulate-proxy` load against
#   1. examples/discard_server  (tonic decodes each ReportRequest and drops it:
#      the floor), and
#   2. `conduit controller telemetry` (decode + validate + enrich + aggregate),
# then prints both summaries and the throughput ratio telemetry/discard.
#
# Loopback only. Every parameter can be overridden from the environment:
#   PODS=100 RATE=0 SHAPE=medium DURATION=10s CONCURRENCY=64 SEED=1
#   CONNECTIONS=          (simulate-proxy's default when empty)
#   DISCARD_PORT=18187 TELEMETRY_PORT=18087 METRICS_PORT=19997
#   ONLY=                 (discard | telemetry: run one side only)
#   SKIP_BUILD=1          (use the binaries already in target/release)
#   PIN=1                 (taskset: server on CPU 0, load on CPU 1; for 2+ cores)
#   TELEMETRY_FLAGS=      (extra flags for conduit controller telemetry)
#   ROUNDS=3              (alternating rounds; the medians are compared)
#
# Usage: bench/e2e.sh            (from anywhere inside the checkout)
set -euo pipefail

PODS=${PODS:-100}
RATE=${RATE:-0}
SHAPE=${SHAPE:-medium}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-64}
SEED=${SEED:-1}
CONNECTIONS=${CONNECTIONS:-}
DISCARD_PORT=${DISCARD_PORT:-18187}
TELEMETRY_PORT=${TELEMETRY_PORT:-18087}
METRICS_PORT=${METRICS_PORT:-19997}
ONLY=${ONLY:-}
SKIP_BUILD=${SKIP_BUILD:-}
PIN=${PIN:-}
# Extra flags for the telemetry component, e.g.
# TELEMETRY_FLAGS=-prometheus-url=http://127.0.0.1:9 (Stat from Prometheus:
# no embedded Stat store; nothing is queried during the run).
TELEMETRY_FLAGS=${TELEMETRY_FLAGS:-}
ROUNDS=${ROUNDS:-3}
# How long a server may take to open its port: 200 tries of 50 ms.
PORT_WAIT_TRIES=200

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CONDUIT=$TARGET_DIR/release/conduit
DISCARD=$TARGET_DIR/release/examples/discard_server
WORK=$(mktemp -d "${TMPDIR:-/tmp}/conduit-e2e.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "e2e: $*" >&2; }
die() { log "$*"; exit 1; }

server_cpu=()
load_cpu=()
if [[ -n $PIN ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
    server_cpu=(taskset -c 0)
    load_cpu=(taskset -c 1)
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until 127.0.0.1:$1 accepts connections, while process $2 lives.
wait_for_port() {
    local port=$1 pid=$2 i
    for ((i = 0; i < PORT_WAIT_TRIES; i++)); do
        port_open "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# Refuses to measure whatever else might already be listening on a port.
require_free() {
    local port
    for port in "$@"; do
        ! port_open "$port" || die "127.0.0.1:$port is already in use; set *_PORT"
    done
}

# Starts a server in the background, logging to $WORK/$1.log; waits for the
# given ports.
start_server() {
    local name=$1
    shift
    local ports=()
    while [[ $1 != -- ]]; do
        ports+=("$1")
        shift
    done
    shift
    require_free "${ports[@]}"
    "${server_cpu[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    local port
    for port in "${ports[@]}"; do
        if ! wait_for_port "$port" "$pid"; then
            tail -n 20 "$WORK/$name.log" >&2 || true
            die "$name did not open 127.0.0.1:$port"
        fi
    done
    SERVER_PID=$pid
}

stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

simulate() {
    local port=$1
    shift
    local extra=()
    [[ -n $CONNECTIONS ]] && extra+=(--connections "$CONNECTIONS")
    "${load_cpu[@]}" "$CONDUIT" --log-level warn simulate-proxy \
        --addr "127.0.0.1:$port" --pods "$PODS" --rate "$RATE" --shape "$SHAPE" \
        --duration "$DURATION" --concurrency "$CONCURRENCY" --seed "$SEED" \
        "${extra[@]}" "$@"
}

rate_of() { sed -n 's/.*"rate":\([0-9.]*\).*/\1/p' <<<"$1"; }

if [[ -z $SKIP_BUILD ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --bin conduit --example discard_server)
fi
[[ -x $CONDUIT ]] || die "missing $CONDUIT"

log "pods=$PODS rate=$RATE shape=$SHAPE duration=$DURATION concurrency=$CONCURRENCY seed=$SEED"

run_discard() {
    start_server discard "$DISCARD_PORT" -- "$DISCARD" --addr "127.0.0.1:$DISCARD_PORT"
    local json
    json=$(simulate "$DISCARD_PORT" --json)
    stop_server "$SERVER_PID"
    echo "discard:   $json" >&2
    rate_of "$json"
}

run_telemetry() {
    start_server telemetry "$TELEMETRY_PORT" "$METRICS_PORT" -- \
        "$CONDUIT" controller telemetry \
        "-addr=127.0.0.1:$TELEMETRY_PORT" "-metrics-addr=127.0.0.1:$METRICS_PORT" \
        --cluster "$WORK/cluster.yaml" $TELEMETRY_FLAGS
    local json
    json=$(simulate "$TELEMETRY_PORT" --json)
    stop_server "$SERVER_PID"
    echo "telemetry: $json" >&2
    rate_of "$json"
}

# The fleet is a function of pods, namespace and seed, so this cluster file
# matches the pods the load run reports as.
simulate "$TELEMETRY_PORT" --reports 0 --cluster-out "$WORK/cluster.yaml" >/dev/null
[[ $ONLY == telemetry ]] || [[ -x $DISCARD ]] || die "missing $DISCARD"

# Rounds alternate the two servers so drift on a shared machine hits both;
# the medians are compared.
discard_rates=()
telemetry_rates=()
for ((round = 1; round <= ROUNDS; round++)); do
    [[ $ONLY == telemetry ]] || discard_rates+=("$(run_discard)")
    [[ $ONLY == discard ]] || telemetry_rates+=("$(run_telemetry)")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if [[ ${#discard_rates[@]} -gt 0 && ${#telemetry_rates[@]} -gt 0 ]]; then
    d=$(median "${discard_rates[@]}")
    t=$(median "${telemetry_rates[@]}")
    echo "discard rates:   ${discard_rates[*]}"
    echo "telemetry rates: ${telemetry_rates[*]}"
    awk -v t="$t" -v d="$d" -v n="$ROUNDS" 'BEGIN {
        if (d > 0) printf "ratio telemetry/discard: %.3f (medians of %d rounds: %.1f/s vs %.1f/s)\n", t / d, n, t, d
        else print "ratio telemetry/discard: n/a (discard rate is 0)"
    }'
fi
