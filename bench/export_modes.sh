#!/bin/bash
# Series and /metrics bytes per -export mode: the demo mesh, a 1,000-pod fleet of random
# pairs, and a 1,000-pod fleet with a call graph (--call-graph).
set -e
BIN=${BIN:-target/release/conduit}
OUT=${OUT:-$(mktemp -d)}; BIN=$(realpath $BIN); cd $OUT
fleet() { # name, sim flags...
  local name=$1; shift
  $BIN simulate-proxy "$@" --reports 0 --cluster-out $name.yaml --seed 7 >>log.txt 2>&1
  for mode in pods deployments both; do
    $BIN controller telemetry -addr=127.0.0.1:18087 -metrics-addr=127.0.0.1:19997 --cluster $name.yaml -export=$mode >/dev/null 2>&1 &
    local pid=$!
    sleep 2
    $BIN simulate-proxy --addr 127.0.0.1:18087 "$@" --seed 7 --rate 0 --concurrency 16 --reports $REPORTS >>log.txt 2>&1
    curl -s 127.0.0.1:19997/metrics > $name-$mode.txt
    kill $pid; wait $pid 2>/dev/null || true
    local bytes=$(grep -E '^(requests_total|responses_total|response_latency_ms|tcp_)' $name-$mode.txt | wc -c)
    local lines=$(grep -cE '^(requests_total|responses_total|response_latency_ms|tcp_)' $name-$mode.txt)
    local req=$(grep -c '^requests_total' $name-$mode.txt)
    local all=$(wc -c < $name-$mode.txt)
    echo "$name $mode requests_total_series=$req mesh_sample_lines=$lines mesh_bytes=$bytes metrics_bytes=$all"
  done
}
REPORTS=2000 fleet demo --demo-mesh
REPORTS=${FLEET_REPORTS:-20000} fleet fleet1000 --pods 1000 --shape medium
REPORTS=${FLEET_REPORTS:-20000} fleet graph1000 --pods 1000 --call-graph
