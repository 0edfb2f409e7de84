# The set-up bench/edge.sh and bench/edge-ab.sh share; sourced by both, not run on its own.
# Each function works in the caller's shell, on WORK and PIDS (bench/common.sh's
# bench_workdir sets them).
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

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
