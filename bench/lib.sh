# Shell helpers the bench scripts share; sourced, not run.

# stop_pid PID [SIGNAL]: sends SIGNAL (default TERM) to PID if it still runs, waits up to
# 5 s for it to end, then kills it.
stop_pid() {
    local pid=$1 signal=${2:-TERM}
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# fail MESSAGE...: prints the message on stderr and exits 2 (the bench could not run).
fail() {
    echo "$*" >&2
    exit 2
}

# free_port: a loopback TCP port nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# mb KB: kilobytes as megabytes with one decimal.
mb() {
    awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# bench_setup [VAR[:SIGNAL]]...: makes the scratch directory $work, removed at exit, and
# at exit (or on SIGINT/SIGTERM) stops the processes whose pids the named variables hold
# by then, in the order given, each with its SIGNAL (default TERM) as stop_pid does. A
# script that must undo more defines restore_at_exit, which runs after them.
bench_setup() {
    work=$(mktemp -d)
    stop_at_exit=("$@")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local status=$? entry var signal
    trap - EXIT INT TERM
    for entry in "${stop_at_exit[@]}"; do
        var=${entry%%:*}
        signal=TERM
        [[ $entry == *:* ]] && signal=${entry#*:}
        stop_pid "${!var:-}" "$signal"
    done
    if declare -F restore_at_exit >/dev/null; then
        restore_at_exit
    fi
    rm -rf "$work"
    exit "$status"
}
