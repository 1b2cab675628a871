#!/usr/bin/env bash
# Sidecar memory under slow clients: the RSS of a release trace-sidecar holding
# CONNECTIONS (default 5000) slow connections that each send a request head a byte every
# PERIOD seconds (default 2) and reconnect when the sidecar cuts them (at its 10 s head
# deadline, or to make room at its bound), against its idle RSS in the same run.
#
# Builds the release trace-sidecar and the `slowloris` client of integration-tests, then
# for each case of CASES, `bound:kind` (default "1024:head 8192:head 8192:after-a-request":
# the default STS_TRACE_MAX_CONNECTIONS, and one above CONNECTIONS so that every slow
# connection is held; `head` dribbles the first request's head, `after-a-request` sends a
# whole request first, so that hyper holds the connection with its buffers) starts a
# sidecar on a free loopback port (no daemon: it buffers nothing, since nothing sends
# spans), samples its VmRSS every 0.5 s for IDLE_SECONDS (default 5), starts the slow
# clients for DURATION seconds (default 40), samples again, and prints the idle and
# attacked maxima, the connections it held at the end, its counters, and the RSS added per
# held connection. RLIMIT_NOFILE is raised for both (as root; the sidecar raises its own
# to its bound).
#
# Exit status: 0 when measured, 2 when a process died or could not be measured.
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-5000}
PERIOD=${PERIOD:-2}
CASES=${CASES:-1024:head 8192:head 8192:after-a-request}
IDLE_SECONDS=${IDLE_SECONDS:-5}
DURATION=${DURATION:-40}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
source bench/lib.sh

sidecar_pid=
attack_pid=
bench_setup attack_pid:KILL sidecar_pid

files=$((CONNECTIONS * 2 + 4096))
ulimit -Hn "$files" 2>/dev/null || true
ulimit -n "$files" || fail "cannot raise RLIMIT_NOFILE to $files (run as root)"

echo "== building trace-sidecar and slowloris (release)"
cargo build --release --locked -p trace-sidecar --bin trace-sidecar -p integration-tests --bin slowloris
target_dir=${CARGO_TARGET_DIR:-$root/target}
# Private copies: a concurrent build cannot replace them while they run.
cp "$target_dir/release/trace-sidecar" "$target_dir/release/slowloris" "$work/"

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

# sample_max PID SECONDS: the largest VmRSS (kB) of PID in samples every 0.5 s.
sample_max() {
    local pid=$1 until=$((SECONDS + $2)) max=0 kb
    while ((SECONDS < until)); do
        kb=$(rss_kb "$pid")
        [[ -n $kb ]] || fail "process $pid is gone"
        ((kb > max)) && max=$kb
        sleep 0.5
    done
    echo "$max"
}

# health PORT KEY: one counter of the sidecar's /health.
health() {
    "$work/trace-sidecar" status --addr "127.0.0.1:$1" |
        python3 -c "import json, sys; print(json.load(sys.stdin)['$2'])"
}

results=()
for case in $CASES; do
    bound=${case%%:*} kind=${case#*:}
    flags=(--reconnect)
    case $kind in
        head) ;;
        after-a-request) flags+=(--after-a-request) ;;
        *) fail "unknown kind in CASES: $kind (head or after-a-request)" ;;
    esac
    port=$(free_port)
    echo "== trace-sidecar on 127.0.0.1:$port, STS_TRACE_MAX_CONNECTIONS=$bound"
    STS_TRACE_LISTEN_ADDR=127.0.0.1:$port STS_DAEMON_ADDR=127.0.0.1:$(free_port) \
        STS_TRACE_MAX_CONNECTIONS=$bound STS_LOG_LEVEL=error \
        "$work/trace-sidecar" run 2>"$work/sidecar.log" &
    sidecar_pid=$!
    for _ in $(seq 100); do
        "$work/trace-sidecar" status --addr "127.0.0.1:$port" >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$work/trace-sidecar" status --addr "127.0.0.1:$port" >/dev/null || fail "the sidecar does not answer"
    idle_kb=$(sample_max "$sidecar_pid" "$IDLE_SECONDS")

    echo "   $CONNECTIONS slow connections ($kind), a byte every ${PERIOD}s, for ${DURATION}s"
    "$work/slowloris" --addr "127.0.0.1:$port" --connections "$CONNECTIONS" --period "$PERIOD" \
        "${flags[@]}" --seconds "$((DURATION + 3))" >"$work/attack.log" 2>&1 &
    attack_pid=$!
    attacked_kb=$(sample_max "$sidecar_pid" "$DURATION")
    # Less the status request's own connection.
    held=$(($(health "$port" connections_open) - 1))
    cut=$(health "$port" header_timeouts)
    shed=$(health "$port" connections_shed)
    refused=$(health "$port" connections_refused)
    echo "   slowloris: $(grep -m1 holding "$work/attack.log" || echo 'did not open its connections'); last: $(tail -n 1 "$work/attack.log")"
    wait "$attack_pid" || fail "slowloris failed: $(tail -n 3 "$work/attack.log")"
    attack_pid=
    stop_pid "$sidecar_pid"
    sidecar_pid=

    per_kb=$(awk -v a="$attacked_kb" -v i="$idle_kb" -v n="$held" 'BEGIN { printf "%.1f", n ? (a - i) / n : 0 }')
    results+=("$(printf '%6s %16s %10s %12s %6s %10s %8s %8s %8s' "$bound" "$kind" "$(mb "$idle_kb")" \
        "$(mb "$attacked_kb")" "$held" "$cut" "$shed" "$refused" "$per_kb")")
done

echo
printf '%6s %16s %10s %12s %6s %10s %8s %8s %8s\n' bound kind "idle (MB)" "attack (MB)" held \
    "head cuts" shed refused "kB/held"
printf '%s\n' "${results[@]}"
