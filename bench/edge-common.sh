# The set-up bench/edge.sh and bench/edge-ab.sh share; sourced by both, not run on its own.
# Each function works in the caller's shell, on WORK and PIDS (bench_workdir sets them).

# A scratch directory in WORK, and PIDS, the background processes to kill: both go on exit.
bench_workdir() { # name
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

# One self-signed ECDSA P-256 certificate for bench.example: $WORK/cert.pem and $WORK/key.pem.
bench_certificate() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=bench.example -addext subjectAltName=DNS:bench.example \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
}

# Writes FILE: the edge's pod-mode config listening on 127.0.0.1:PORT with the bench
# certificate, forwarding to the backend on 127.0.0.1:BACKEND_PORT.
bench_edge_config() { # file port backend_port
    cat > "$1" <<CFG
[listen]
address = "127.0.0.1:$2"
[[tls.certificates]]
names = ["bench.example"]
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
[pod]
upstream = "127.0.0.1:$3"
CFG
}

# The backend on 127.0.0.1:PORT, started in the background: a single-threaded haproxy answering
# a fixed 13-byte page itself, which is faster than any proxy in front of it, so the proxies
# are what is measured.
bench_backend() { # port
    cat > "$WORK/backend.cfg" <<CFG
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend static
    bind 127.0.0.1:$1
    http-request return status 200 content-type text/plain string "Hello, wiki!\n"
CFG
    haproxy -f "$WORK/backend.cfg" -db >/dev/null 2>&1 &
    PIDS+=($!)
}

# Waits (up to 10 s each) until every PORT on 127.0.0.1 accepts connections.
wait_for_ports() { # port...
    local port
    for port in "$@"; do
        for _ in $(seq 100); do
            (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
            sleep 0.1
        done
    done
}

# CPU time (user + system, all threads) process PID has used, in clock ticks of TCK per second.
TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid
    awk '{print $14 + $15}' "/proc/$1/stat"
}
