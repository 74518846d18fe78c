#!/usr/bin/env bash
# The deployed shape at a fleet's size, on one machine: REPLICAS telemetry
# processes, each behind its own proxy-api (as each controller pod of
# `conduit install --controller-replicas N` runs them), every telemetry
# knowing the whole cluster (one `--cluster` file of PODS pods) and pushing
# remote write, with its own `replica` external label, to one receiver; and
# REPLICAS `conduit simulate-proxy` fleets, one per proxy-api, each a third
# of the pods (their own namespace), so that every replica holds the series
# of the proxies connected to it.
#
# Phases:
#   load    every pod reports REPORTS_PER_POD times (medium reports: ten
#           request scopes each), as fast as the replicas take them (or at
#           RATE reports/s in all);
#   steady  no reports: after SETTLE, for STEADY (several remote-write
#           intervals): what the replicas cost to hold and push what they
#           hold.
# Prints, per replica: live label sets, RSS, CPU per report during the load,
# CPU per second while steady (remote write's collection and encoding), and
# remote-write samples and bytes per second; and the proxy-apis' RSS and
# CPU per report. The receiver reads each request whole and answers 204; it
# counts bytes, it does not decode them (the telemetry's own counters say
# how many samples were sent).
#
# Loopback only. Every parameter can be overridden from the environment:
#   PODS=100000 REPLICAS=3 SHAPE=medium RATE=0 REPORTS_PER_POD=1
#   SETTLE=25 STEADY=35 (seconds) INTERVAL=10s MAX_SERIES=4000000 SEED=1 BASE_PORT=18300
#   SKIP_BUILD=1   (use the binaries already in target/release)
#
# Usage: bench/scale.sh                 (the 100k-pod row of SCALING.md)
#        PODS=10000 bench/scale.sh      (the 10k row)
set -euo pipefail

PODS=${PODS:-100000}
REPLICAS=${REPLICAS:-3}
SHAPE=${SHAPE:-medium}
RATE=${RATE:-0}
REPORTS_PER_POD=${REPORTS_PER_POD:-1}
STEADY=${STEADY:-35}
SETTLE=${SETTLE:-25}
INTERVAL=${INTERVAL:-10s}
MAX_SERIES=${MAX_SERIES:-4000000}
SEED=${SEED:-1}
BASE_PORT=${BASE_PORT:-18300}
SKIP_BUILD=${SKIP_BUILD:-}
SINK_PORT=$BASE_PORT
# Replica r listens on BASE_PORT+10*(r+1) .. +3.
# Parsing a 100k-pod cluster file takes a while on a busy machine: 2 min.
PORT_WAIT_TRIES=2400

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CONDUIT=$TARGET_DIR/release/conduit
WORK=$(mktemp -d "${TMPDIR:-/tmp}/conduit-scale.XXXXXX")
PIDS=()
SERVER_PREFIX=()
LOG_TAG=scale
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

((REPLICAS >= 1)) || die "REPLICAS must be at least 1"
per_replica=$((PODS / REPLICAS))
((per_replica >= 1)) || die "PODS must be at least REPLICAS"

if [[ -z $SKIP_BUILD ]]; then
    log "building the release binary"
    (cd "$ROOT" && cargo build --release --bin conduit)
fi
[[ -x $CONDUIT ]] || die "missing $CONDUIT"
command -v python3 >/dev/null || die "python3 is needed for the remote-write receiver"

fleet() {
    local r=$1 port=$2
    shift 2
    "$CONDUIT" --log-level warn simulate-proxy --addr "127.0.0.1:$port" \
        --pods "$per_replica" --first-pod "$((r * per_replica))" --namespace "scale-$r" --seed "$((SEED + r))" \
        --shape "$SHAPE" "$@"
}

# One cluster file for every replica: the fleets' files, concatenated as
# one multi-document YAML.
log "pods=$PODS replicas=$REPLICAS ($per_replica pods each) shape=$SHAPE rate=$RATE reports/pod=$REPORTS_PER_POD"
for ((r = 0; r < REPLICAS; r++)); do
    fleet "$r" 9 --reports 0 --cluster-out "$WORK/cluster-$r.yaml" >/dev/null
    { cat "$WORK/cluster-$r.yaml"; echo "---"; } >>"$WORK/cluster.yaml"
done
log "cluster file: $(du -h "$WORK/cluster.yaml" | cut -f1)"

# The receiver: reads each body whole, answers 204, counts bytes.
cat >"$WORK/sink.py" <<'PY'
import http.server, sys, threading
total = [0, 0]
lock = threading.Lock()
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        left = n
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        with lock:
            total[0] += 1
            total[1] += n
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_GET(self):
        body = ("%d %d\n" % (total[0], total[1])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
start_server sink "$SINK_PORT" -- python3 "$WORK/sink.py" "$SINK_PORT"

telemetry_pids=()
proxy_api_pids=()
for ((r = 0; r < REPLICAS; r++)); do
    base=$((BASE_PORT + 10 * (r + 1)))
    start_server "telemetry-$r" "$base" "$((base + 1))" -- \
        "$CONDUIT" controller telemetry "-addr=127.0.0.1:$base" "-metrics-addr=127.0.0.1:$((base + 1))" \
        --cluster "$WORK/cluster.yaml" "-max-series=$MAX_SERIES" \
        "-remote-write-url=http://127.0.0.1:$SINK_PORT/api/v1/write" \
        "-remote-write-interval=$INTERVAL" "-remote-write-external-label=replica=controller-$r"
    telemetry_pids+=("$SERVER_PID")
    start_server "proxy-api-$r" "$((base + 2))" "$((base + 3))" -- \
        "$CONDUIT" controller proxy-api "-addr=127.0.0.1:$((base + 2))" "-metrics-addr=127.0.0.1:$((base + 3))" \
        "-telemetry-addr=127.0.0.1:$base" "-destination-addr=127.0.0.1:9"
    proxy_api_pids+=("$SERVER_PID")
done

# Telemetry's /ready waits for the cluster file to be applied.
for ((r = 0; r < REPLICAS; r++)); do
    admin=$((BASE_PORT + 10 * (r + 1) + 1))
    for ((i = 0; i < PORT_WAIT_TRIES; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/ready") == 200 ]] && break
        sleep 0.1
    done
done

# Scrapes replica $1's admin port once into $WORK/metrics-$1 (a scrape of a
# replica holding a third of the 100k row is large: read it once).
scrape() { curl -s -o "$WORK/metrics-$1" "http://127.0.0.1:$((BASE_PORT + 10 * ($1 + 1) + 1))/metrics"; }
metric() { # replica name: the sum of a metric's samples in its last scrape
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f\n", s }' "$WORK/metrics-$1"
}
alive() { kill -0 "$1" 2>/dev/null || die "process $1 ($2) is gone: $(tail -n 5 "$WORK/$2.log")"; }
ticks_of() { local t=0 pid; for pid in "$@"; do t=$((t + $(cpu_ticks "$pid"))); done; echo "$t"; }

declare -A before_load
for pid in "${telemetry_pids[@]}" "${proxy_api_pids[@]}"; do before_load[$pid]=$(cpu_ticks "$pid"); done

reports=$((per_replica * REPORTS_PER_POD))
log "load: $reports reports per fleet"
load_start=$(date +%s.%N)
fleet_pids=()
for ((r = 0; r < REPLICAS; r++)); do
    fleet "$r" "$((BASE_PORT + 10 * (r + 1) + 2))" --reports "$reports" \
        --rate "$(awk -v a="$RATE" -v n="$REPLICAS" 'BEGIN { print a / n }')" \
        --duration 1h --json >"$WORK/fleet-$r.json" 2>"$WORK/fleet-$r.log" &
    fleet_pids+=("$!")
done
for pid in "${fleet_pids[@]}"; do wait "$pid" || die "a fleet failed: $(cat "$WORK"/fleet-*.log)"; done
load_secs=$(awk -v s="$load_start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')

declare -A load_ticks steady_ticks ok_of
for ((r = 0; r < REPLICAS; r++)); do
    ok_of[$r]=$(sed -n 's/.*"ok":\([0-9]*\).*/\1/p' "$WORK/fleet-$r.json")
    log "fleet $r: $(cat "$WORK/fleet-$r.json")"
done
for ((r = 0; r < REPLICAS; r++)); do
    alive "${telemetry_pids[$r]}" "telemetry-$r"
    alive "${proxy_api_pids[$r]}" "proxy-api-$r"
done
for pid in "${telemetry_pids[@]}" "${proxy_api_pids[@]}"; do
    load_ticks[$pid]=$(($(cpu_ticks "$pid") - before_load[$pid]))
done

# Steady: nothing reports; remote write pushes what the replicas hold,
# measured after SETTLE, once what queued up during the load has gone out.
log "settling for ${SETTLE}s"
sleep "$SETTLE"
declare -A sent_before samples_before steady_before
for ((r = 0; r < REPLICAS; r++)); do
    alive "${telemetry_pids[$r]}" "telemetry-$r"
    scrape "$r"
    sent_before[$r]=$(metric "$r" conduit_remote_write_sent_bytes_total)
    samples_before[$r]=$(metric "$r" conduit_remote_write_samples_total)
    steady_before[$r]=$(cpu_ticks "${telemetry_pids[$r]}")
done
log "steady: ${STEADY}s without reports"
sleep "$STEADY"

printf '\n%-14s %10s %9s %12s %12s %14s %14s\n' replica "label sets" "RSS MiB" "µs/report" "cores steady" "rw samples/s" "rw MB/s"
tot_series=0 tot_rss=0 tot_samples=0 tot_bytes=0 tot_steady=0
for ((r = 0; r < REPLICAS; r++)); do
    pid=${telemetry_pids[$r]}
    alive "$pid" "telemetry-$r"
    steady=$(($(cpu_ticks "$pid") - steady_before[$r]))
    rss=$(rss_kib "$pid")
    scrape "$r"
    series=$(metric "$r" conduit_telemetry_series_live)
    folded=$(metric "$r" conduit_telemetry_series_folded_total)
    ((folded == 0)) || log "replica $r folded $folded label sets: raise MAX_SERIES"
    sent=$(($(metric "$r" conduit_remote_write_sent_bytes_total) - sent_before[$r]))
    samples=$(($(metric "$r" conduit_remote_write_samples_total) - samples_before[$r]))
    awk -v r="controller-$r" -v s="$series" -v rss="$rss" -v lt="${load_ticks[$pid]}" -v ok="${ok_of[$r]}" \
        -v st="$steady" -v hz="$CLK_TCK" -v d="$STEADY" -v sm="$samples" -v b="$sent" 'BEGIN {
        printf "%-14s %10d %9.1f %12.1f %12.3f %14.0f %14.2f\n", r, s, rss / 1024,
            (ok > 0 ? lt / hz * 1e6 / ok : 0), st / hz / d, sm / d, b / d / 1e6 }'
    tot_series=$((tot_series + series)) tot_rss=$((tot_rss + rss))
    tot_samples=$((tot_samples + samples)) tot_bytes=$((tot_bytes + sent)) tot_steady=$((tot_steady + steady))
done
ok_total=0
for ((r = 0; r < REPLICAS; r++)); do ok_total=$((ok_total + ok_of[$r])); done
awk -v s="$tot_series" -v rss="$tot_rss" -v st="$tot_steady" -v hz="$CLK_TCK" -v d="$STEADY" \
    -v sm="$tot_samples" -v b="$tot_bytes" 'BEGIN {
    printf "%-14s %10d %9.1f %12s %12.3f %14.0f %14.2f\n", "all", s, rss / 1024, "", st / hz / d, sm / d, b / d / 1e6 }'
printf '\n%-14s %9s %12s\n' proxy-api "RSS MiB" "µs/report"
for ((r = 0; r < REPLICAS; r++)); do
    pid=${proxy_api_pids[$r]}
    awk -v r="proxy-api-$r" -v rss="$(rss_kib "$pid")" -v lt="${load_ticks[$pid]}" -v ok="${ok_of[$r]}" -v hz="$CLK_TCK" \
        'BEGIN { printf "%-14s %9.1f %12.1f\n", r, rss / 1024, (ok > 0 ? lt / hz * 1e6 / ok : 0) }'
done
read -r sink_requests sink_bytes < <(curl -s "http://127.0.0.1:$SINK_PORT/")
awk -v n="$ok_total" -v t="$load_secs" -v q="$sink_requests" -v b="$sink_bytes" 'BEGIN {
    printf "\nreports accepted: %d in %.1f s (%.0f/s); receiver: %d requests, %.1f MB\n", n, t, n / t, q, b / 1e6 }'
