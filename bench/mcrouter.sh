#!/usr/bin/env bash
# Benchmark: our mcrouter against nutcracker (and memcached directly, for scale) over the same
# memcached servers, in one run: several cases, each the median of ROUNDS alternating rounds.
#
# Usage: bench/mcrouter.sh [SECONDS] [ROUNDS]   (default 5 s per run, 3 rounds: about 3 min)
# Environment: CONCURRENCY (memaslap connections, default 32), ROUTER_THREADS (default 1),
#              BASE_PORT (default 31200; uses BASE_PORT..BASE_PORT+8),
#              MCROUTER_BIN and PIPELINE_BIN (prebuilt binaries; skip the release build).
# Needs the Debian packages memcached, libmemcached-tools (memcaslap) and nutcracker.
#
# Cases (an op is a key asked for or stored):
#   get_set      memaslap, 90% get / 10% set, 1 KiB values, one key per get
#   multiget10   memaslap with 10 keys per get (-d 10)
#   pipelined    crates/mcrouter/examples/pipeline.rs: 8 connections, 32 gets per write
#   wan_tree     our router with Wikimedia's WAN route tree (mcrouter's format: prefix routes,
#                OperationSelectorRoute, AllSync/AllAsync, FailoverWithExptimeRoute to a
#                gutter) against the same router with a plain pool route; memaslap as get_set
# The proxy's CPU per op comes from /proc/PID/stat before and after each run: on a shared
# 2-core machine it is much steadier than ops/s.
#
# The last lines are machine-readable, one per case and metric:
#   ratio case=NAME metric=NAME value=X      (X > 1: ours is ahead)
set -euo pipefail

SECONDS_PER_RUN=${1:-5}
ROUNDS=${2:-3}
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

if [ -z "${MCROUTER_BIN:-}" ] || [ -z "${PIPELINE_BIN:-}" ]; then
    echo "building mcrouter and the pipelining client (release)..." >&2
    cargo build --release -q -p mcrouter --bin mcrouter --example pipeline \
        --manifest-path "$ROOT/Cargo.toml" >&2
fi
ROUTER_BIN=${MCROUTER_BIN:-$CARGO_TARGET_DIR/release/mcrouter}
PIPELINE=${PIPELINE_BIN:-$CARGO_TARGET_DIR/release/examples/pipeline}

. "$ROOT/bench/common.sh"
bench_workdir mcrouter-bench

MC1=$BASE_PORT MC2=$((BASE_PORT + 1)) GUTTER=$((BASE_PORT + 2)) REMOTE=$((BASE_PORT + 3))
NUT=$((BASE_PORT + 4)) NUT_STATS=$((BASE_PORT + 5)) ROUTER=$((BASE_PORT + 6))
WAN=$((BASE_PORT + 7))

for port in "$MC1" "$MC2" "$GUTTER" "$REMOTE"; do
    memcached -l 127.0.0.1 -p "$port" -U 0 -t 1 -m 256 -c 4096 -u root &
    PIDS+=($!)
done
wait_for_ports "$MC1" "$MC2" "$GUTTER" "$REMOTE"

# The same pool for both proxies, with the same ring (ketama over MD5): each key lands on the
# same server through either.
cat >"$WORK/nutcracker.yml" <<CFG
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
CFG
"$NUTCRACKER" -c "$WORK/nutcracker.yml" -s "$NUT_STATS" -o "$WORK/nutcracker.log" &
PIDS+=($!); NUT_PID=$!

cat >"$WORK/plain.json" <<CFG
{"pools": {"local": {"servers": ["127.0.0.1:$MC1", "127.0.0.1:$MC2"]}},
 "local_pool": "local"}
CFG
# Wikimedia's WAN tree (what mcrouter::config::wan_routes builds), in mcrouter's format.
local_route='{"type": "FailoverWithExptimeRoute", "normal": "PoolRoute|eqiad",
              "failover": ["PoolRoute|gutter"], "failover_exptime": 10,
              "failover_errors": ["tko"]}'
cat >"$WORK/wan.json" <<CFG
{"pools": {"eqiad": {"servers": ["127.0.0.1:$MC1:ascii:plain", "127.0.0.1:$MC2:ascii:plain"]},
           "codfw": {"servers": ["127.0.0.1:$REMOTE:ascii:plain"]},
           "gutter": {"servers": ["127.0.0.1:$GUTTER:ascii:plain"]}},
 "routes": [
   {"aliases": ["/eqiad/mw/"], "route": $local_route},
   {"aliases": ["/codfw/mw/"], "route": "PoolRoute|codfw"},
   {"aliases": ["/eqiad/mw-wan/"],
    "route": {"type": "OperationSelectorRoute", "default_policy": $local_route,
              "operation_policies": {
                "set": {"type": "AllSyncRoute", "children": [$local_route]},
                "delete": {"type": "AllSyncRoute", "children": [$local_route]}}}},
   {"aliases": ["/codfw/mw-wan/"],
    "route": {"type": "OperationSelectorRoute", "default_policy": $local_route,
              "operation_policies": {
                "set": {"type": "AllAsyncRoute", "children": ["PoolRoute|codfw"]},
                "delete": {"type": "AllAsyncRoute", "children": ["PoolRoute|codfw"]}}}}],
 "default_route": "/eqiad/mw/",
 "tko": {"timeouts_until_tko": 10, "probe_delay_initial_ms": 3000}}
CFG
"$ROUTER_BIN" --check --config "$WORK/wan.json" >/dev/null
for spec in "plain.json $ROUTER" "wan.json $WAN"; do
    read -r file port <<<"$spec"
    "$ROUTER_BIN" --config "$WORK/$file" --listen "127.0.0.1:$port" \
        --threads "$ROUTER_THREADS" 2>"$WORK/$file.log" &
    PIDS+=($!)
    [ "$port" = "$ROUTER" ] && ROUTER_PID=$! || WAN_PID=$!
done
wait_for_ports "$NUT" "$ROUTER" "$WAN"

# One load run against SERVERS; prints "ops seconds". Loads: memaslap [DIVISION], pipeline.
load() { # kind servers
    case $1 in
        memaslap|multiget10)
            memcaslap -s "$2" -t "${SECONDS_PER_RUN}s" -c "$CONCURRENCY" -T 1 \
                -S "${SECONDS_PER_RUN}s" $([ "$1" = multiget10 ] && echo "-d 10") \
                >"$WORK/out" 2>&1 || true
            awk '/^Run time:/ { for (i = 1; i <= NF; i++) {
                    if ($i == "Ops:") ops = $(i + 1)
                    if ($i == "time:") { s = $(i + 1); sub(/s$/, "", s) } } }
                 END { print ops + 0, s + 0 }' "$WORK/out" ;;
        pipelined)
            "$PIPELINE" "$2" 8 32 "$SECONDS_PER_RUN" | awk '{ print $2, $4 }' ;;
    esac
}

# One measured run: prints "ops_per_s proxy_us_per_op" ("-" without a proxy).
measure() { # kind servers pid
    local before=0 after=0 ops secs
    [ -n "$3" ] && before=$(cpu_ticks "$3")
    read -r ops secs < <(load "$1" "$2")
    [ -n "$3" ] && after=$(cpu_ticks "$3")
    awk -v o="$ops" -v s="$secs" -v t="$((after - before))" -v hz="$TCK" -v p="$3" \
        'BEGIN { printf "%.0f %s\n", o / s, (p == "" ? "-" : sprintf("%.2f", t / hz * 1e6 / o)) }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "-") }'; }

declare -A OPS CPU
# Runs a case: its targets alternate, ROUNDS times; keeps the medians in OPS/CPU[case.target].
run_case() { # case kind target=servers=pid...
    local case=$1 kind=$2; shift 2
    declare -A ops cpu
    for _ in $(seq "$ROUNDS"); do
        for spec in "$@"; do
            IFS='=' read -r name servers pid <<<"$spec"
            read -r o c < <(measure "$kind" "$servers" "$pid")
            ops[$name]+="$o "; cpu[$name]+="$c "
        done
    done
    for spec in "$@"; do
        IFS='=' read -r name _ _ <<<"$spec"
        OPS[$case.$name]=$(tr ' ' '\n' <<<"${ops[$name]}" | grep -v '^$' | median)
        CPU[$case.$name]=$(tr ' ' '\n' <<<"${cpu[$name]}" | grep -v '^$' | median)
        printf "%-11s %-14s %10s ops/s %8s µs/op\n" "$case" "$name" "${OPS[$case.$name]}" \
            "${CPU[$case.$name]}"
    done
}

DIRECT="127.0.0.1:$MC1,127.0.0.1:$MC2"
echo "case        target              throughput   proxy CPU (medians of $ROUNDS x ${SECONDS_PER_RUN}s)"
run_case get_set memaslap "direct=$DIRECT=" "nutcracker=127.0.0.1:$NUT=$NUT_PID" \
    "mcrouter=127.0.0.1:$ROUTER=$ROUTER_PID"
run_case multiget10 multiget10 "nutcracker=127.0.0.1:$NUT=$NUT_PID" \
    "mcrouter=127.0.0.1:$ROUTER=$ROUTER_PID"
run_case pipelined pipelined "nutcracker=127.0.0.1:$NUT=$NUT_PID" \
    "mcrouter=127.0.0.1:$ROUTER=$ROUTER_PID"
run_case wan_tree memaslap "plain-pool=127.0.0.1:$ROUTER=$ROUTER_PID" \
    "wan-tree=127.0.0.1:$WAN=$WAN_PID"
echo "($CONCURRENCY memaslap connections, router threads: $ROUTER_THREADS, $(nproc) cores," \
    "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"

ratio() { # case metric numerator denominator
    awk -v c="$1" -v m="$2" -v a="$3" -v b="$4" \
        'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "ratio case=%s metric=%s value=%.3f\n", c, m, a / b }'
}
for case in get_set multiget10 pipelined; do
    ratio "$case" throughput "${OPS[$case.mcrouter]}" "${OPS[$case.nutcracker]}"
    ratio "$case" cpu_per_op "${CPU[$case.nutcracker]}" "${CPU[$case.mcrouter]}"
done
ratio wan_tree cpu_per_op "${CPU[wan_tree.plain-pool]}" "${CPU[wan_tree.wan-tree]}"
ratio wan_tree throughput "${OPS[wan_tree.wan-tree]}" "${OPS[wan_tree.plain-pool]}"
