#!/usr/bin/env bash
# End-to-end ingest throughput and cost: the same `conduit simulate-proxy`
# load against
#   discard    examples/discard_server (tonic decodes each ReportRequest and
#              drops it: the floor every other path is compared with), and
#   telemetry  `conduit controller telemetry` (decode + validate + enrich +
#              aggregate), reports sent straight to it;
#   proxy-api  `conduit controller proxy-api` in front of a telemetry process:
#              the path an installed proxy's report takes;
#   run        `conduit run`'s proxy-api port (reports to the ingester of the
#              same process),
# in alternating rounds (discard, then each path, round after round). Prints,
# per path, the medians of: reports/s, the servers' CPU time per report
# (utime + stime from /proc/PID/stat, every process of the path summed), the
# load generator's p50/p99; and each against the discard server's.
#
# Loopback only. Every parameter can be overridden from the environment:
#   PODS=100 RATE=0 SHAPE=medium DURATION=10s CONCURRENCY=64 SEED=1
#   CONNECTIONS=          (simulate-proxy's default when empty)
#   PATHS="telemetry proxy-api run"  (the paths measured beside discard)
#   BASE_PORT=18100       (the servers listen on BASE_PORT..BASE_PORT+19)
#   ONLY=                 (discard | a path: run that one side only)
#   SKIP_BUILD=1          (use the binaries already in target/release)
#   PIN=1                 (taskset: servers on CPU 0, load on CPU 1; for 2+ cores)
#   TELEMETRY_FLAGS=      (extra flags for conduit controller telemetry)
#   ROUNDS=3              (alternating rounds; the medians are compared)
#
# Usage: bench/e2e.sh            (from anywhere inside the checkout)
#        CONCURRENCY=1 bench/e2e.sh   (a lone proxy: the latency one report sees)
set -euo pipefail

PODS=${PODS:-100}
RATE=${RATE:-0}
SHAPE=${SHAPE:-medium}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-64}
SEED=${SEED:-1}
CONNECTIONS=${CONNECTIONS:-}
PATHS=${PATHS:-telemetry proxy-api run}
BASE_PORT=${BASE_PORT:-18100}
DISCARD_PORT=$BASE_PORT
TELEMETRY_PORT=$((BASE_PORT + 1))
METRICS_PORT=$((BASE_PORT + 2))
PROXY_API_PORT=$((BASE_PORT + 3))
PROXY_API_METRICS_PORT=$((BASE_PORT + 4))
# `conduit run` listens on ten ports: BASE_PORT+10 .. BASE_PORT+19.
RUN_PORT=$((BASE_PORT + 10))
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

LOG_TAG=e2e
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

SERVER_PREFIX=()
load_cpu=()
if [[ -n $PIN ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
    SERVER_PREFIX=(taskset -c 0)
    load_cpu=(taskset -c 1)
fi

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

# Runs the load against port $1, with every pid after it the servers of the
# path; prints "rate cpu_us_per_report p50_ms p99_ms" and logs the summary.
measure() {
    local port=$1 name=$2
    shift 2
    local pids=("$@") before=0 after=0 pid json
    for pid in "${pids[@]}"; do before=$((before + $(cpu_ticks "$pid"))); done
    json=$(simulate "$port" --json)
    for pid in "${pids[@]}"; do after=$((after + $(cpu_ticks "$pid"))); done
    printf 'e2e: %-10s %s\n' "$name:" "$json" >&2
    local ok p50 p99
    ok=$(sed -n 's/.*"ok":\([0-9]*\).*/\1/p' <<<"$json")
    p50=$(sed -n 's/.*"p50_ms":\([0-9.]*\).*/\1/p' <<<"$json")
    p99=$(sed -n 's/.*"p99_ms":\([0-9.]*\).*/\1/p' <<<"$json")
    awk -v r="$(rate_of "$json")" -v t=$((after - before)) -v hz="$CLK_TCK" -v ok="$ok" \
        -v p50="$p50" -v p99="$p99" \
        'BEGIN { printf "%s %.2f %s %s\n", r, (ok > 0 ? t / hz * 1e6 / ok : 0), p50, p99 }'
}

if [[ -z $SKIP_BUILD ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --bin conduit --example discard_server)
fi
[[ -x $CONDUIT ]] || die "missing $CONDUIT"

log "pods=$PODS rate=$RATE shape=$SHAPE duration=$DURATION concurrency=$CONCURRENCY seed=$SEED paths=\"$PATHS\""

start_telemetry() {
    start_server telemetry "$TELEMETRY_PORT" "$METRICS_PORT" -- \
        "$CONDUIT" controller telemetry \
        "-addr=127.0.0.1:$TELEMETRY_PORT" "-metrics-addr=127.0.0.1:$METRICS_PORT" \
        --cluster "$WORK/cluster.yaml" $TELEMETRY_FLAGS
}

run_discard() {
    start_server discard "$DISCARD_PORT" -- "$DISCARD" --addr "127.0.0.1:$DISCARD_PORT"
    local pid=$SERVER_PID
    measure "$DISCARD_PORT" discard "$pid"
    stop_server "$pid"
}

run_telemetry() {
    start_telemetry
    local pid=$SERVER_PID
    measure "$TELEMETRY_PORT" telemetry "$pid"
    stop_server "$pid"
}

run_proxy-api() {
    start_telemetry
    local telemetry=$SERVER_PID
    start_server proxy-api "$PROXY_API_PORT" "$PROXY_API_METRICS_PORT" -- \
        "$CONDUIT" controller proxy-api \
        "-addr=127.0.0.1:$PROXY_API_PORT" "-metrics-addr=127.0.0.1:$PROXY_API_METRICS_PORT" \
        "-telemetry-addr=127.0.0.1:$TELEMETRY_PORT" "-destination-addr=127.0.0.1:9"
    local proxy_api=$SERVER_PID
    measure "$PROXY_API_PORT" proxy-api "$proxy_api" "$telemetry"
    stop_server "$proxy_api"
    stop_server "$telemetry"
}

run_run() {
    local p=$RUN_PORT
    start_server run "$p" -- \
        "$CONDUIT" run --cluster "$WORK/cluster.yaml" \
        --proxy-api-addr "127.0.0.1:$p" --proxy-api-metrics-addr "127.0.0.1:$((p + 1))" \
        --telemetry-addr "127.0.0.1:$((p + 2))" --metrics-addr "127.0.0.1:$((p + 3))" \
        --api-addr "127.0.0.1:$((p + 4))" --api-metrics-addr "127.0.0.1:$((p + 5))" \
        --tap-addr "127.0.0.1:$((p + 6))" --tap-metrics-addr "127.0.0.1:$((p + 7))" \
        --destination-addr "127.0.0.1:$((p + 8))" --destination-metrics-addr "127.0.0.1:$((p + 9))" \
        --web-addr "127.0.0.1:0" --web-metrics-addr "127.0.0.1:0"
    local pid=$SERVER_PID
    measure "$p" run "$pid"
    stop_server "$pid"
}

# The fleet is a function of pods, namespace and seed, so this cluster file
# matches the pods the load run reports as.
simulate "$TELEMETRY_PORT" --reports 0 --cluster-out "$WORK/cluster.yaml" >/dev/null
sides=(discard $PATHS)
if [[ -n $ONLY ]]; then sides=("$ONLY"); fi
[[ " ${sides[*]} " != *" discard "* ]] || [[ -x $DISCARD ]] || die "missing $DISCARD"
for side in "${sides[@]}"; do
    declare -F "run_$side" >/dev/null || die "no such path: $side (discard telemetry proxy-api run)"
done

# Rounds alternate the servers so drift on a shared machine hits each; the
# medians are compared.
declare -A results
for ((round = 1; round <= ROUNDS; round++)); do
    for side in "${sides[@]}"; do
        results[$side]+="$("run_$side")"$'\n'
    done
done

# Column $2 of side $1's rounds (1 rate, 2 CPU µs/report, 3 p50, 4 p99).
column() { awk -v c="$2" 'NF { print $c }' <<<"${results[$1]}"; }

printf '%-10s %-28s %10s %10s %8s %8s %8s %8s\n' path "rates (rounds)" "median/s" "×discard" "cpu µs" "×discard" "p50 ms" "p99 ms"
for side in "${sides[@]}"; do
    rates=$(column "$side" 1 | paste -sd/)
    rate=$(column "$side" 1 | median)
    cpu=$(column "$side" 2 | median)
    p50=$(column "$side" 3 | median)
    p99=$(column "$side" 4 | median)
    if [[ -n ${results[discard]:-} ]]; then
        d_rate=$(column discard 1 | median)
        d_cpu=$(column discard 2 | median)
    else
        d_rate=0 d_cpu=0
    fi
    awk -v s="$side" -v rs="$rates" -v r="$rate" -v c="$cpu" -v dr="$d_rate" -v dc="$d_cpu" \
        -v p50="$p50" -v p99="$p99" 'BEGIN {
        rr = dr > 0 ? sprintf("%.3f", r / dr) : "n/a"
        cr = dc > 0 ? sprintf("%.2f", c / dc) : "n/a"
        printf "%-10s %-28s %10.1f %10s %8.1f %8s %8s %8s\n", s, rs, r, rr, c, cr, p50, p99
    }'
done
