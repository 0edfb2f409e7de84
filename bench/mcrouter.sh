#!/usr/bin/env bash
# Benchmark: memaslap against (a) memcached directly, (b) nutcracker, (c) our mcrouter, in one
# run over the same two memcached servers, and print ops/s, latency and the ratios.
#
# Usage: bench/mcrouter.sh [SECONDS]      (default 5 s per target; ~20 s in all plus the build)
# Environment: CONCURRENCY (default 32 connections), ROUTER_THREADS (default 1),
#              BASE_PORT (default 31200; uses BASE_PORT..BASE_PORT+4),
#              MCROUTER_BIN (a prebuilt binary; skips the release build).
# Needs the Debian packages memcached, libmemcached-tools (memcaslap) and nutcracker.
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

# Prints "ops/s avg_us p99_us" for one memaslap run.
run() {
    memcaslap -s "$1" -t "${SECONDS_PER_RUN}s" -c "$CONCURRENCY" -T 1 -S "${SECONDS_PER_RUN}s" \
        >"$WORK/out" 2>&1 || true
    awk '
        /^Run time:/ { for (i = 1; i <= NF; i++) if ($i == "TPS:") tps = $(i + 1) }
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
            printf "%s %s %s\n", tps, avg, p99
        }' "$WORK/out"
}

printf "%-12s %10s %9s %9s %8s\n" target ops/s avg_us p99_us "vs direct"
declare -A TPS
for target in direct nutcracker mcrouter; do
    case $target in
        direct) servers="127.0.0.1:$MC1,127.0.0.1:$MC2" ;;
        nutcracker) servers="127.0.0.1:$NUT" ;;
        mcrouter) servers="127.0.0.1:$ROUTER" ;;
    esac
    read -r tps avg p99 < <(run "$servers")
    TPS[$target]=$tps
    ratio=$(awk -v a="$tps" -v b="${TPS[direct]}" 'BEGIN { printf "%.2f", a / b }')
    printf "%-12s %10s %9s %9s %8s\n" "$target" "$tps" "$avg" "<=$p99" "$ratio"
done
awk -v m="${TPS[mcrouter]}" -v n="${TPS[nutcracker]}" \
    'BEGIN { printf "mcrouter / nutcracker: %.2f\n", m / n }'
echo "(${SECONDS_PER_RUN} s per target, $CONCURRENCY connections, memaslap 90% get / 10% set," \
    "router threads: $ROUTER_THREADS, $(nproc) cores)"
