#!/usr/bin/env bash
# Benchmark: two edge builds side by side, doing the same job at the same time (TLS
# termination in pod mode in front of one static backend on loopback), to tell whether a
# change to the edge saves CPU. bench/edge.sh compares the edge with haproxy; this compares
# the edge with itself, without haproxy's run-to-run spread in the ratio.
#
# Usage: bench/edge-ab.sh BIN_A BIN_B [ROUNDS] [SECONDS] [WRK_ARGS...]
#   e.g. bench/edge-ab.sh /tmp/edge-before target/release/edge 8 3 -H 'Connection: close'
# Defaults: 8 rounds of 3 s; keep-alive requests (wrk -t2 -c64) unless WRK_ARGS say otherwise.
# Each round runs wrk against A, then B; odd rounds start with B, so that neither build always
# runs right after the other's load.
# Prints each build's proxy CPU microseconds per request (user + system, all threads) per round
# and their medians, and last one machine-readable line, `ratio case=ab metric=cpu_per_request
# value=X`: B's CPU per request over A's, below 1 meaning B is cheaper.
# Needs: wrk, haproxy (the backend), openssl.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
A=$1 B=$2 ROUNDS=${3:-8} DUR=${4:-3}
shift $(( $# < 4 ? $# : 4 ))
for bin in wrk haproxy openssl; do
    command -v "$bin" >/dev/null || { echo "missing $bin: apt-get install -y wrk haproxy openssl" >&2; exit 1; }
done
for bin in "$A" "$B"; do
    [ -x "$bin" ] || { echo "not an executable edge build: $bin" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/edge-common.sh"
bench_workdir edge-ab
bench_certificate
BACKEND_PORT=18090 PORT_A=18453 PORT_B=18454
bench_backend $BACKEND_PORT

start_edge() { # binary port
    bench_edge_config "$WORK/edge-$2.toml" "$2" $BACKEND_PORT
    RUST_LOG=warn "$1" --config "$WORK/edge-$2.toml" >/dev/null 2>&1 &
}
start_edge "$A" $PORT_A; PID_A=$!; PIDS+=($PID_A)
start_edge "$B" $PORT_B; PID_B=$!; PIDS+=($PID_B)
wait_for_ports $BACKEND_PORT $PORT_A $PORT_B

# Proxy CPU microseconds per request of one wrk run: port pid wrk-args...
run() {
    local port=$1 pid=$2; shift 2
    local c0 out rps
    c0=$(cpu_ticks "$pid")
    out=$(wrk -t2 -c64 -d"${DUR}s" "$@" "https://127.0.0.1:$port/" 2>&1)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    awk -v t=$(( $(cpu_ticks "$pid") - c0 )) -v r="${rps:-0}" -v d="$DUR" -v k="$TCK" \
        'BEGIN { if (r > 0) printf "%.1f\n", t / k * 1e6 / (r * d); else print "nan" }'
}

CPU_A=() CPU_B=()
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        CPU_B+=("$(run $PORT_B "$PID_B" "$@")"); CPU_A+=("$(run $PORT_A "$PID_A" "$@")")
    else
        CPU_A+=("$(run $PORT_A "$PID_A" "$@")"); CPU_B+=("$(run $PORT_B "$PID_B" "$@")")
    fi
    echo "round $round: A ${CPU_A[-1]} µs, B ${CPU_B[-1]} µs per request" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
MED_A=$(median "${CPU_A[@]}") MED_B=$(median "${CPU_B[@]}")
echo "A $A: ${CPU_A[*]} (median $MED_A µs per request)"
echo "B $B: ${CPU_B[*]} (median $MED_B µs per request)"
echo "wrk -t2 -c64 -d${DUR}s $*; $(nproc) cores shared; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v a="$MED_A" -v b="$MED_B" 'BEGIN { printf "ratio case=ab metric=cpu_per_request value=%.3f\n", b / a }'
