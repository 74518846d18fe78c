# Process helpers shared by the load scripts in this directory (sourced, not
# run). The sourcing script sets WORK (a scratch directory), PIDS=() (every
# server started, for cleanup), PORT_WAIT_TRIES and LOG_TAG (the prefix of
# its log lines) first.

log() { echo "$LOG_TAG: $*" >&2; }
die() { log "$*"; exit 1; }

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
# ports listed before `--`; the command follows it. Sets SERVER_PID. A
# SERVER_PREFIX array (e.g. `taskset -c 0`) runs before the command.
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
    "${SERVER_PREFIX[@]}" "$@" >"$WORK/$name.log" 2>&1 &
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

CLK_TCK=$(getconf CLK_TCK)

# CPU time (clock ticks, user + system) process $1 has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Resident set size of process $1, in KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
