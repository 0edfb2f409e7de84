#!/usr/bin/env bash
# Benchmark: edge (pod mode) against haproxy doing the same job: TLS termination, adding
# X-Client-IP / X-Forwarded-For / X-Forwarded-Proto, forwarding over pooled HTTP/1.1 to the
# same static backend on loopback, with the same certificate. One run, bounded in time.
#
# Usage: bench/edge.sh [SECONDS_PER_RUN] [ROUNDS]   (default 3 s, 3 rounds)
# Each case alternates edge and haproxy ROUNDS times and reports the medians, so that load
# from other processes on a shared machine hits both alike.
# Environment: EDGE_BIN (a prebuilt edge binary; skips the release build, e.g. to compare two
# builds with the same command), IDLE_CONNECTIONS.
# Needs: wrk, haproxy, openssl, curl, python3, and h2load (nghttp2-client) for the HTTP/2 rows.
# Prints one table with requests/s and p99 latency per case and the edge/haproxy ratios, the
# memory each proxy takes per idle TLS connection (RSS growth over IDLE_CONNECTIONS, default
# 9900, held open by a Python client), and last, one machine-readable line per case and
# metric: `ratio case=NAME metric=NAME value=X`, X > 1 meaning edge is ahead (requests per
# CPU-second: haproxy's CPU per request over edge's; p99 and memory: haproxy's over edge's).
set -euo pipefail

DUR=${1:-3}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-edge}
for bin in wrk haproxy openssl curl; do
    command -v "$bin" >/dev/null || { echo "missing $bin: apt-get install -y wrk haproxy openssl curl nghttp2-client" >&2; exit 1; }
done

. "$ROOT/bench/edge-common.sh"
bench_workdir edge-bench

if [ -z "${EDGE_BIN:-}" ]; then
    echo "building edge (release)..." >&2
    (cd "$ROOT" && cargo build --release -p edge --quiet)
fi
EDGE=${EDGE_BIN:-$CARGO_TARGET_DIR/release/edge}

bench_certificate
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"

BACKEND_PORT=18080 EDGE_PORT=18443 HAPROXY_PORT=18444
bench_backend $BACKEND_PORT

# haproxy as the TLS terminator, configured for the same job as edge.
cat > "$WORK/haproxy.cfg" <<CFG
global
    nbthread 2
    ssl-default-bind-options ssl-min-ver TLSv1.2
    # The edge's suite order (crates/edge/src/certificates.rs), so both do the same work;
    # haproxy enforces its own order by default, as the edge does.
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
    tune.ssl.default-dh-param 2048
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend tls
    bind 127.0.0.1:$HAPROXY_PORT ssl crt $WORK/haproxy.pem alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Client-IP %[src]
    http-request set-header X-Forwarded-Proto https
    default_backend httpd
backend httpd
    http-reuse always
    server httpd 127.0.0.1:$BACKEND_PORT
CFG
# Room for the idle-connection case. This machine's hard limit is 20,000 descriptors per
# process, and haproxy refuses to start when 2 x maxconn (its maxsock) exceeds it: hence
# maxconn 9990 and 9,900 idle connections by default rather than 10,000.
ulimit -n 20000 2>/dev/null || true
sed -i 's/^global$/global\n    maxconn 9990\n    ulimit-n 20000/' "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 & PIDS+=($!); HAPROXY_PID=$!

bench_edge_config "$WORK/edge.toml" $EDGE_PORT $BACKEND_PORT
# Access logs off in both: haproxy has no log target here either.
RUST_LOG=warn "$EDGE" --config "$WORK/edge.toml" >/dev/null 2>&1 & PIDS+=($!); EDGE_PID=$!

wait_for_ports $BACKEND_PORT $EDGE_PORT $HAPROXY_PORT
for port in $EDGE_PORT $HAPROXY_PORT; do
    curl -sf --cacert "$WORK/cert.pem" --resolve bench.example:$port:127.0.0.1 \
        "https://bench.example:$port/" >/dev/null || { echo "proxy on $port does not answer" >&2; exit 1; }
done
# Both must negotiate the same TLS 1.3 suite with wrk's and h2load's client (OpenSSL's
# defaults), or one would be doing cheaper work than the other.
suite() { openssl s_client -connect "127.0.0.1:$1" -servername bench.example </dev/null 2>/dev/null | sed -n 's/.*Cipher is //p' | head -1; }
EDGE_SUITE=$(suite $EDGE_PORT) HAPROXY_SUITE=$(suite $HAPROXY_PORT)
[ -n "$EDGE_SUITE" ] && [ "$EDGE_SUITE" = "$HAPROXY_SUITE" ] || {
    echo "the proxies negotiate different TLS suites: edge '$EDGE_SUITE', haproxy '$HAPROXY_SUITE'" >&2; exit 1; }

# The proxy's CPU time per request (cpu_ticks, bench/common.sh): throughput on a shared
# machine moves with the neighbours' load, CPU per request much less, so it is reported too.
pid_of() { if [ "$1" = "$EDGE_PORT" ]; then echo "$EDGE_PID"; else echo "$HAPROXY_PID"; fi; }
# microseconds of proxy CPU per request: ticks, requests/s, seconds
us_per_req() { awk -v t="$1" -v r="$2" -v d="$3" -v k="$TCK" 'BEGIN { if (r+0 > 0) printf "%.1f", t / k * 1e6 / (r * d); else print "-" }'; }

# wrk prints "Requests/sec: N" and, with --latency, a "99%" line; both normalized to ms.
run_wrk() { # port extra-args...
    local port=$1; shift
    local out pid c0
    pid=$(pid_of "$port"); c0=$(cpu_ticks "$pid")
    out=$(wrk -t2 -c64 -d"${DUR}s" --latency "$@" "https://127.0.0.1:$port/" 2>&1)
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
    local errors
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    [ -n "$errors" ] && echo "  note ($port $*): $errors" >&2
    echo "$rps $p99 $(us_per_req $(( $(cpu_ticks "$pid") - c0 )) "$rps" "$DUR")"
}

run_h2load() { # port
    command -v h2load >/dev/null || { echo "- - -"; return; }
    local out pid c0
    pid=$(pid_of "$1"); c0=$(cpu_ticks "$pid")
    out=$(h2load -D "$DUR" -c 32 -m 16 -t 2 --log-file="$WORK/h2load.log" "https://127.0.0.1:$1/" 2>&1)
    local rps
    rps=$(awk '/^finished in/ {for (i=1;i<=NF;i++) if ($i=="req/s,") print $(i-1)}' <<<"$out")
    # The 99th percentile of the per-request times h2load logs (third column, microseconds).
    local p
    p=$(cut -f3 "$WORK/h2load.log" | sort -n \
        | awk '{v[NR]=$1} END {if (NR) {i=int(NR*0.99); if (i<1) i=1; printf "%.2f", v[i]/1000}}')
    rm -f "$WORK/h2load.log"
    echo "${rps:--} ${p:--} $(us_per_req $(( $(cpu_ticks "$pid") - c0 )) "${rps:-0}" "$DUR")"
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "-")}'; }

# Runs a case ROUNDS times on each proxy, alternating; prints the medians:
# "edge_rps edge_p99 edge_cpu hap_rps hap_p99 hap_cpu".
measure() { # runner args...
    local runner=$1; shift
    local er=() ep=() ec=() hr=() hp=() hc=() a b c
    for _ in $(seq "$ROUNDS"); do
        read -r a b c <<<"$($runner $EDGE_PORT "$@")"; er+=("$a"); ep+=("$b"); ec+=("$c")
        read -r a b c <<<"$($runner $HAPROXY_PORT "$@")"; hr+=("$a"); hp+=("$b"); hc+=("$c")
    done
    local m=()
    for arr in er ep ec hr hp hc; do
        local -n ref=$arr
        m+=("$(printf '%s\n' "${ref[@]}" | median)")
    done
    echo "${m[*]}"
}

printf '%-33s %10s %9s %8s | %10s %9s %8s | %6s %6s %6s\n' case edge_rps p99 us/req haproxy_rps p99 us/req rps p99 cpu
row() { # name "edge_rps edge_p99 edge_cpu hap_rps hap_p99 hap_cpu"
    read -r er ep ec hr hp hc <<<"$2"
    awk -v n="$1" -v er="$er" -v ep="$ep" -v ec="$ec" -v hr="$hr" -v hp="$hp" -v hc="$hc" 'BEGIN {
        rr = (hr+0 > 0) ? sprintf("%.2f", er/hr) : "-"; pr = (hp+0 > 0) ? sprintf("%.2f", ep/hp) : "-";
        cr = (hc+0 > 0) ? sprintf("%.2f", ec/hc) : "-";
        printf "%-33s %10s %7sms %8s | %10s %7sms %8s | %6s %6s %6s\n", n, er, ep, ec, hr, hp, hc, rr, pr, cr }'
}

KEEPALIVE=$(measure run_wrk)
row "https/1.1 keep-alive (wrk -c64)" "$KEEPALIVE"
NEWCONN=$(measure run_wrk -H 'Connection: close')
row "https/1.1 new TLS 1.3 conn per request" "$NEWCONN"
H2=$(measure run_h2load)
row "h2 keep-alive (h2load -c32 -m16)" "$H2"
echo "(medians of $ROUNDS alternating runs of ${DUR}s; us/req = proxy CPU microseconds per request;"
echo " ratios are edge/haproxy: rps higher is better, p99 and cpu lower is better; $(nproc) cores shared;"
echo " load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); h2 p99 from h2load's per-request log; TLS 1.3 suite $EDGE_SUITE)"

# Memory per idle TLS connection: RSS growth of each proxy while a client holds
# IDLE_CONNECTIONS TLS connections open (handshake done, no request), divided by their number.
IDLE=${IDLE_CONNECTIONS:-9900}
cat > "$WORK/idle.py" <<'PY'
import socket, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conns = []
for _ in range(n):
    conns.append(ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                 server_hostname="bench.example"))
print("ready", flush=True)
sys.stdin.read()
PY
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
idle_bytes() { # port pid
    local before after
    before=$(rss_kb "$2")
    coproc HOLD { python3 "$WORK/idle.py" "$1" "$IDLE"; }
    local line; read -r line <&"${HOLD[0]}"
    sleep 1
    after=$(rss_kb "$2")
    exec {HOLD[1]}>&-
    wait "$HOLD_PID" 2>/dev/null || true
    awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }'
}
EDGE_IDLE=$(idle_bytes $EDGE_PORT $EDGE_PID)
HAP_IDLE=$(idle_bytes $HAPROXY_PORT $HAPROXY_PID)
echo "idle TLS connections ($IDLE): edge $EDGE_IDLE bytes each, haproxy $HAP_IDLE bytes each (RSS growth)"

ratio() { # case metric numerator denominator
    awk -v c="$1" -v m="$2" -v a="$3" -v b="$4" \
        'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "ratio case=%s metric=%s value=%.3f\n", c, m, a / b }'
}
field() { awk -v i="$2" '{ print $i }' <<<"$1"; }
ratio https11_keepalive requests_per_cpu_second "$(field "$KEEPALIVE" 6)" "$(field "$KEEPALIVE" 3)"
ratio https11_keepalive throughput "$(field "$KEEPALIVE" 1)" "$(field "$KEEPALIVE" 4)"
ratio new_tls13_connections connections_per_cpu_second "$(field "$NEWCONN" 6)" "$(field "$NEWCONN" 3)"
ratio new_tls13_connections throughput "$(field "$NEWCONN" 1)" "$(field "$NEWCONN" 4)"
ratio h2_keepalive requests_per_cpu_second "$(field "$H2" 6)" "$(field "$H2" 3)"
ratio h2_keepalive throughput "$(field "$H2" 1)" "$(field "$H2" 4)"
ratio h2_keepalive p99 "$(field "$H2" 5)" "$(field "$H2" 2)"
ratio idle_tls_connection memory "$HAP_IDLE" "$EDGE_IDLE"
