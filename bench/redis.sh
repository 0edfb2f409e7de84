#!/usr/bin/env bash
# Benchmark: redis-benchmark against nutcracker (twemproxy) and against our redis-proxy, over
# the same two redis-servers, in one run, alternating the two proxies in every round so load
# from other processes on a shared machine hits both alike.
#
# Usage: bench/redis.sh [REQUESTS] [ROUNDS]     (default 200000 requests per run, 3 rounds;
#                                                 about 2 minutes in all plus the build)
# Environment: CONCURRENCY (default 32 connections), BASE_PORT (default 31300; uses
#              BASE_PORT..BASE_PORT+4), REDIS_PROXY_BIN (a prebuilt binary; skips the build),
#              CASES (default "get set incr mset get-pipelined").
# Needs the Debian packages redis-server, redis-tools (redis-benchmark) and nutcracker.
#
# Cases: get, set, incr (one key per request, random keys over 100,000, 64-byte values), mset
# (10 keys per request: cut by server by both proxies), get-pipelined (16 requests per
# write). Each run reports the proxy's requests/s (from redis-benchmark) and its CPU time per
# request (user + system, from /proc/PID/stat before and after the run, all threads). Both
# proxies run one thread (nutcracker has no other mode; ours gets --threads 1).
#
# The last lines are machine-readable, one per case and metric, with the medians over the
# rounds:
#   ratio case=NAME metric=cpu_per_request value=X   (nutcracker's CPU / ours: X > 1, we use less)
#   ratio case=NAME metric=throughput value=X        (our requests/s / nutcracker's: X > 1, faster)
set -euo pipefail

REQUESTS=${1:-200000}
ROUNDS=${2:-3}
CONCURRENCY=${CONCURRENCY:-32}
BASE_PORT=${BASE_PORT:-31300}
CASES=${CASES:-get set incr mset get-pipelined}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-redis-proxy}

for tool in redis-server redis-benchmark nutcracker; do
    if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
        echo "missing $tool: apt-get install -y redis-server redis-tools nutcracker" >&2
        exit 1
    fi
done
NUTCRACKER=$(command -v nutcracker || echo /usr/sbin/nutcracker)

if [ -n "${REDIS_PROXY_BIN:-}" ]; then
    PROXY_BIN=$REDIS_PROXY_BIN
else
    echo "building redis-proxy (release)..." >&2
    cargo build --release -q -p redis-proxy --manifest-path "$ROOT/Cargo.toml" >&2
    PROXY_BIN=$CARGO_TARGET_DIR/release/redis-proxy
fi

. "$ROOT/bench/common.sh"
bench_workdir redis-bench

R1=$BASE_PORT
R2=$((BASE_PORT + 1))
NUT=$((BASE_PORT + 2))
NUT_STATS=$((BASE_PORT + 3))
OURS=$((BASE_PORT + 4))

for port in "$R1" "$R2"; do
    mkdir -p "$WORK/redis-$port"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$WORK/redis-$port" --daemonize no --loglevel warning >/dev/null &
    PIDS+=($!)
done
wait_for_ports "$R1" "$R2"

# The same pool for both proxies, with the same ring (ketama over MD5 of "host:port"): each
# key lands on the same server through either.
cat >"$WORK/nutcracker.yml" <<EOF
pool:
  listen: 127.0.0.1:$NUT
  hash: md5
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  timeout: 500
  servers:
    - 127.0.0.1:$R1:1
    - 127.0.0.1:$R2:1
EOF
"$NUTCRACKER" -c "$WORK/nutcracker.yml" -s "$NUT_STATS" -o "$WORK/nutcracker.log" &
NUT_PID=$!
PIDS+=($NUT_PID)

cat >"$WORK/redis-proxy.json" <<EOF
{"pools": {"bench": {"listen": "127.0.0.1:$OURS",
                     "servers": ["127.0.0.1:$R1", "127.0.0.1:$R2"]}}}
EOF
"$PROXY_BIN" --config "$WORK/redis-proxy.json" --threads 1 2>"$WORK/redis-proxy.log" &
OURS_PID=$!
PIDS+=($OURS_PID)
wait_for_ports "$NUT" "$OURS"

# One redis-benchmark run of case $1 against port $2. Prints requests/s.
bench() {
    local args=(-h 127.0.0.1 -p "$2" -c "$CONCURRENCY" -n "$REQUESTS" -r 100000 -d 64 --csv)
    case $1 in
        get) args+=(-t get) ;;
        set) args+=(-t set) ;;
        incr) args+=(-t incr) ;;
        mset) args+=(-t mset) ;;
        get-pipelined) args+=(-t get -P 16) ;;
        *) echo "unknown case $1" >&2; exit 1 ;;
    esac
    # redis-benchmark asks CONFIG GET first, which neither proxy serves: its warning is noise.
    redis-benchmark "${args[@]}" 2>/dev/null | awk -F'"' 'NR == 2 { print $4 }'
}

# Fill the keys the gets read, once, through a proxy (the servers are shared).
redis-benchmark -h 127.0.0.1 -p "$OURS" -c "$CONCURRENCY" -n 100000 -r 100000 -d 64 -t set \
    -q >/dev/null 2>&1

declare -A RPS CPU
printf "%-14s %-6s %-11s %12s %14s\n" case round proxy requests/s "CPU µs/req"
for round in $(seq 1 "$ROUNDS"); do
    for case in $CASES; do
        # Alternate who goes first, so neither always runs on a warmer (or busier) machine.
        if [ $((round % 2)) -eq 1 ]; then order="nutcracker wikikube"; else order="wikikube nutcracker"; fi
        for proxy in $order; do
            if [ "$proxy" = nutcracker ]; then port=$NUT; pid=$NUT_PID; else port=$OURS; pid=$OURS_PID; fi
            before=$(cpu_ticks "$pid")
            rps=$(bench "$case" "$port")
            ticks=$(($(cpu_ticks "$pid") - before))
            cpu=$(awk -v t="$ticks" -v hz="$TCK" -v n="$REQUESTS" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
            RPS[$case,$proxy,$round]=$rps
            CPU[$case,$proxy,$round]=$cpu
            printf "%-14s %-6s %-11s %12s %14s\n" "$case" "$round" "$proxy" "$rps" "$cpu"
        done
    done
done

median() {
    tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "medians over $ROUNDS rounds ($REQUESTS requests per run, $CONCURRENCY connections, $(nproc) cores," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end):"
printf "%-14s %14s %14s %16s %16s\n" case "nut req/s" "ours req/s" "nut CPU µs/req" "ours CPU µs/req"
LINES=()
for case in $CASES; do
    rn=""; ro=""; cn=""; co=""; ratios_cpu=""; ratios_rps=""
    for round in $(seq 1 "$ROUNDS"); do
        rn+="${RPS[$case,nutcracker,$round]} "; ro+="${RPS[$case,wikikube,$round]} "
        cn+="${CPU[$case,nutcracker,$round]} "; co+="${CPU[$case,wikikube,$round]} "
        # Ratios within a round (the two runs side by side), then their median.
        ratios_cpu+="$(awk -v a="${CPU[$case,nutcracker,$round]}" -v b="${CPU[$case,wikikube,$round]}" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }') "
        ratios_rps+="$(awk -v a="${RPS[$case,wikikube,$round]}" -v b="${RPS[$case,nutcracker,$round]}" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }') "
    done
    printf "%-14s %14s %14s %16s %16s\n" "$case" "$(echo "$rn" | median)" "$(echo "$ro" | median)" \
        "$(echo "$cn" | median)" "$(echo "$co" | median)"
    LINES+=("ratio case=$case metric=cpu_per_request value=$(echo "$ratios_cpu" | median)")
    LINES+=("ratio case=$case metric=throughput value=$(echo "$ratios_rps" | median)")
done
echo
printf "%s\n" "${LINES[@]}"
