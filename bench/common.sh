# What the bench scripts share (edge.sh and edge-ab.sh through edge-common.sh, mcrouter.sh,
# redis.sh): sourced, not run on its own. Each function works in the caller's shell, on WORK
# and PIDS (bench_workdir sets them).

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

# Waits until every PORT on 127.0.0.1 accepts connections; stops the script, naming the port,
# if one does not within 10 s.
wait_for_ports() { # port...
    local port
    for port in "$@"; do
        for _ in $(seq 200); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue 2
            sleep 0.05
        done
        echo "nothing listens on port $port" >&2
        exit 1
    done
}

# CPU time (user + system, all threads) process PID has used, in clock ticks of TCK per second.
# The command name in field 2 may hold spaces, so fields are counted after its closing
# parenthesis.
TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
