#!/usr/bin/env bash
# Benchmark: memaslap against (a) memcached directly, (b) nutcracker, (c) our mcrouter, in one
# run over the same two memcached servers, and print ops/s, latency and the ratios.
#
# Usage: bench/mcrouter.sh [SECONDS]      (default 5 s per target; ~20 s in all plus the build)
# Environment: CONCURRENCY (default 32 connections), ROUTER_THREADS (default 1),
#              DIVISION (keys per get: memaslap's -d, default 1; 10 is a multi-get mix),
#              BASE_PORT (default 31200; uses BASE_PORT..BASE_PORT+4),
#              MCROUTER_BIN (a prebuilt binary; skips the release build).
# Needs the Debian packages memcached, libmemcached-tools (memcaslap) and nutcracker.
#
# Each run also prints the CPU time per op (user + system, in µs) of memaslap, of the two
# memcached together and of the proxy, from rusage and /proc/PID/stat before and after the run,
# and a CPU budget: the best ratio to direct a proxy with that CPU cost per op could reach on
# this machine, next to the measured one.
#
# Latency: memaslap reports min/avg/max and a log2 histogram; "p99<=" is the upper bound of the
# power-of-two bucket that holds the 99th percentile (the best percentile figure it gives).
set -euo pipefail

SECONDS_PER_RUN=${1:-5}
CONCURRENCY=${CONCURRENCY:-32}
ROUTER_THREADS=${ROUTER_THREADS:-1}
BASE_PORT=${BASE_PORT:-31200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-mcrouter}

for tool in memcached memcaslap nutcracker; do
    if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
        echo "missing $tool: apt-get install -y memcached libmemcached-tools nutcracker" >&2
        exit 1
    fi
done
NUTCRACKER=$(command -v nutcracker || echo /usr/sbin/nutcracker)

if [ -n "${MCROUTER_BIN:-}" ]; then
    ROUTER_BIN=$MCROUTER_BIN
else
    echo "building mcrouter (release)..." >&2
    cargo build --release -q -p mcrouter --manifest-path "$ROOT/Cargo.toml" >&2
    ROUTER_BIN=$CARGO_TARGET_DIR/release/mcrouter
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

MC1=$BASE_PORT
MC2=$((BASE_PORT + 1))
NUT=$((BASE_PORT + 2))
NUT_STATS=$((BASE_PORT + 3))
ROUTER=$((BASE_PORT + 4))

wait_port() {
    for _ in $(seq 1 500); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.01
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

for port in "$MC1" "$MC2"; do
    memcached -l 127.0.0.1 -p "$port" -U 0 -t 1 -m 256 -c 4096 -u root &
    PIDS+=($!)
done
wait_port "$MC1"
wait_port "$MC2"

# The same pool for both proxies, with the same ring (ketama over MD5): each key lands on the
# same server through either.
cat >"$WORK/nutcracker.yml" <<EOF
pool:
  listen: 127.0.0.1:$NUT
  hash: md5
  distribution: ketama
  redis: false
  auto_eject_hosts: false
  timeout: 500
  servers:
    - 127.0.0.1:$MC1:1
    - 127.0.0.1:$MC2:1
EOF
"$NUTCRACKER" -c "$WORK/nutcracker.yml" -s "$NUT_STATS" -o "$WORK/nutcracker.log" &
PIDS+=($!)

cat >"$WORK/mcrouter.json" <<EOF
{"pools": {"local": {"servers": ["127.0.0.1:$MC1", "127.0.0.1:$MC2"]}},
 "local_pool": "local"}
EOF
"$ROUTER_BIN" --config "$WORK/mcrouter.json" --listen "127.0.0.1:$ROUTER" \
    --threads "$ROUTER_THREADS" 2>"$WORK/mcrouter.log" &
PIDS+=($!)
wait_port "$NUT"
wait_port "$ROUTER"

# CPU time (user + system) of a running process and all its threads, in clock ticks. The
# command name in field 2 may hold spaces, so fields are counted after its closing parenthesis.
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
TICK=$(getconf CLK_TCK)

# One memaslap run against $1. Prints "ops/s avg_us p99_us ops seconds gen_cpu_s"; ops count
# keys (a multi-get of N keys is N ops), gen_cpu_s is memaslap's own user + system time (from
# its rusage, via the shell's `time`).
run() {
    local TIMEFORMAT='%3U %3S'
    { time {
        memcaslap -s "$1" -t "${SECONDS_PER_RUN}s" -c "$CONCURRENCY" -T 1 \
            -S "${SECONDS_PER_RUN}s" ${DIVISION:+-d "$DIVISION"} >"$WORK/out" 2>&1 || true
    }; } 2>"$WORK/time"
    read -r user sys <"$WORK/time"
    awk -v gen="$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" '
        /^Run time:/ {
            for (i = 1; i <= NF; i++) {
                if ($i == "TPS:") tps = $(i + 1)
                if ($i == "Ops:") ops = $(i + 1)
                if ($i == "time:") { secs = $(i + 1); sub(/s$/, "", secs) }
            }
        }
        /^Total Statistics \(/ { total = 1; n = $3; gsub(/\(/, "", n) }
        total && /Avg:/ { avg = $2 }
        total && /^ +[0-9]+:/ {
            k = $1; sub(/:/, "", k)
            for (i = 2; i <= NF; i++) { bucket[k + i - 2] = $i; if (k + i - 2 > maxk) maxk = k + i - 2 }
        }
        total && /^$/ { total = 0 }
        END {
            seen = 0; p99 = 0
            for (k = 0; k <= maxk; k++) {
                seen += bucket[k]
                if (!p99 && seen >= 0.99 * n) p99 = 2 ^ (k + 1)
            }
            printf "%s %s %s %s %s %s\n", tps, avg, p99, ops, secs, gen
        }' "$WORK/out"
}

# Non-idle ticks of the whole machine, all cores together.
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# µs of CPU per op from a tick delta.
per_op() {
    awk -v t="$1" -v hz="$TICK" -v ops="$2" 'BEGIN { printf "%.2f", t / hz * 1e6 / ops }'
}

MC_PIDS=("${PIDS[0]}" "${PIDS[1]}")
NUT_PID=${PIDS[2]}
ROUTER_PID=${PIDS[3]}
declare -A TPS GEN MC PROXY TOTAL

printf "%-11s %9s %7s %8s %6s | %-8s %8s %9s %6s %6s | %5s %6s %5s\n" target ops/s avg_us \
    p99_us "/dir" "CPU:" memaslap memcached proxy total busy others load
for target in direct nutcracker mcrouter; do
    case $target in
        direct) servers="127.0.0.1:$MC1,127.0.0.1:$MC2"; proxy= ;;
        nutcracker) servers="127.0.0.1:$NUT"; proxy=$NUT_PID ;;
        mcrouter) servers="127.0.0.1:$ROUTER"; proxy=$ROUTER_PID ;;
    esac
    load=$(cut -d' ' -f1 /proc/loadavg)
    mc_before=$(($(cpu_ticks "${MC_PIDS[0]}") + $(cpu_ticks "${MC_PIDS[1]}")))
    proxy_before=$([ -n "$proxy" ] && cpu_ticks "$proxy" || echo 0)
    machine_before=$(machine_ticks)
    read -r tps avg p99 ops secs gen < <(run "$servers")
    machine=$(($(machine_ticks) - machine_before))
    mc=$(($(cpu_ticks "${MC_PIDS[0]}") + $(cpu_ticks "${MC_PIDS[1]}") - mc_before))
    px=$(($([ -n "$proxy" ] && cpu_ticks "$proxy" || echo 0) - proxy_before))
    TPS[$target]=$tps
    GEN[$target]=$(awk -v g="$gen" -v ops="$ops" 'BEGIN { printf "%.2f", g * 1e6 / ops }')
    MC[$target]=$(per_op "$mc" "$ops")
    PROXY[$target]=$(per_op "$px" "$ops")
    TOTAL[$target]=$(awk -v a="${GEN[$target]}" -v b="${MC[$target]}" -v c="${PROXY[$target]}" \
        'BEGIN { printf "%.2f", a + b + c }')
    # Cores kept busy by these processes: 2.0 means the run was CPU-bound on this machine.
    busy=$(awk -v g="$gen" -v t="$((mc + px))" -v hz="$TICK" -v s="$secs" \
        'BEGIN { printf "%.2f", (g + t / hz) / s }')
    # Cores used by anything else meanwhile (other builds, the kernel's own threads): a run
    # with more than a few hundredths here was not alone on the machine.
    others=$(awk -v all="$machine" -v b="$busy" -v hz="$TICK" -v s="$secs" \
        'BEGIN { o = all / hz / s - b; printf "%.2f", o < 0 ? 0 : o }')
    ratio=$(awk -v a="$tps" -v b="${TPS[direct]}" 'BEGIN { printf "%.2f", a / b }')
    printf "%-11s %9s %7s %8s %6s | %-8s %8s %9s %6s %6s | %5s %6s %5s\n" "$target" "$tps" \
        "$avg" "<=$p99" "$ratio" "µs/op" "${GEN[$target]}" "${MC[$target]}" \
        "$([ -n "$proxy" ] && echo "${PROXY[$target]}" || echo -)" "${TOTAL[$target]}" "$busy" \
        "$others" "$load"
done
awk -v m="${TPS[mcrouter]}" -v n="${TPS[nutcracker]}" \
    'BEGIN { printf "mcrouter / nutcracker: %.2f\n", m / n }'
echo "(${SECONDS_PER_RUN} s per target, $CONCURRENCY connections," \
    "memaslap 90% get / 10% set${DIVISION:+, $DIVISION keys per get}," \
    "router threads: $ROUTER_THREADS, $(nproc) cores; busy = cores used by memaslap, memcached" \
    "and the proxy, others = by the rest of the machine, both during the run;" \
    "load = 1-min load average before it)"

# The CPU budget. With the cores saturated, throughput = cores / (CPU per op of everything
# on the path). Direct needs G + M per op (memaslap + memcached); a proxy adds its own P, so
# the best ratio any proxy with that P reaches here is (G + M) / (G + M + P). The second
# prediction uses the G and M measured in the proxy's own run (both change behind a proxy:
# memaslap talks to one server instead of two, memcached gets batched requests).
echo
echo "CPU budget on $(nproc) cores:"
awk -v g="${GEN[direct]}" -v m="${MC[direct]}" -v cores="$(nproc)" 'BEGIN {
    gm = g + m
    printf "  direct: G + M = %.2f + %.2f = %.2f µs/op -> at most %d ops/s\n", g, m, gm, cores * 1e6 / gm
    printf "  within 15%% of direct needs P <= 0.176 (G + M) = %.2f µs/op\n", gm * 0.15 / 0.85
}'
for target in nutcracker mcrouter; do
    awk -v t="$target" -v g="${GEN[direct]}" -v m="${MC[direct]}" -v p="${PROXY[$target]}" \
        -v own="${TOTAL[$target]}" -v tps="${TPS[$target]}" -v dir="${TPS[direct]}" 'BEGIN {
        gm = g + m
        printf "  %-10s P = %5.2f µs/op: predicted (G+M)/(G+M+P) = %.2f, with its run'"'"'s G and M = %.2f, measured %.2f\n",
            t, p, gm / (gm + p), gm / own, tps / dir
    }'
done
