#!/usr/bin/env bash
# Daemon memory: RSS of `node-daemon run` with many extra processes on the host.
#
# Builds the release binary, starts EXTRA_PROCS idle processes (default 2000), runs
# `node-daemon run --interval INTERVAL` (default 10 s) for DURATION seconds (default 600),
# samples the daemon's VmRSS every SAMPLE_EVERY seconds (default 30) and prints the
# maximum and final RSS against the limit (LIMIT_MB, default 25).
#
# The idle processes are `/bin/sleep`, started by absolute path so that the default
# process blacklist (`^sleep`) does not hide them: every one of them is collected,
# cached and reported in every cycle. Everything started here is killed on exit.
#
# Exit status: 0 on PASS, 1 on FAIL, 2 when the daemon died or could not be measured.
set -euo pipefail

DURATION=${DURATION:-600}
EXTRA_PROCS=${EXTRA_PROCS:-2000}
INTERVAL=${INTERVAL:-10}
SAMPLE_EVERY=${SAMPLE_EVERY:-30}
LIMIT_MB=${LIMIT_MB:-25}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
source bench/lib.sh

idle_pids=()
daemon_pid=

restore_at_exit() {
    if ((${#idle_pids[@]})); then
        kill -KILL "${idle_pids[@]}" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
}
bench_setup daemon_pid

echo "== building node-daemon (release)"
cargo build --release -p node-daemon --bin node-daemon
target_dir=${CARGO_TARGET_DIR:-$root/target}
# The target directory may be shared: run a private copy so that a concurrent build
# cannot replace the binary under the running daemon.
cp "$target_dir/release/node-daemon" "$work/node-daemon"

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

hwm_kb() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

proc_count() {
    find /proc -maxdepth 1 -name '[0-9]*' 2>/dev/null | wc -l
}

echo "== starting $EXTRA_PROCS idle processes"
for ((i = 0; i < EXTRA_PROCS; i++)); do
    /bin/sleep 86400 </dev/null >/dev/null 2>&1 &
    idle_pids+=("$!")
done
echo "   /proc now lists $(proc_count) processes"

port=$(free_port)
echo "== node-daemon run --interval $INTERVAL on 127.0.0.1:$port for ${DURATION}s"
NO_COLOR=1 STS_GRPC_ADDR=127.0.0.1:$port STS_RELAY_ADDR=127.0.0.1:$(free_port) STS_LOG_LEVEL=${STS_LOG_LEVEL:-info} \
    "$work/node-daemon" run --interval "$INTERVAL" 2>"$work/daemon.log" &
daemon_pid=$!

max_kb=0
last_kb=0
start=$(date +%s)
printf '%8s %10s %10s %10s\n' "t (s)" "RSS (MB)" "HWM (MB)" "processes"
while :; do
    elapsed=$(($(date +%s) - start))
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "node-daemon exited early; its log:" >&2
        tail -n 20 "$work/daemon.log" >&2 || true
        exit 2
    fi
    kb=$(rss_kb "$daemon_pid")
    if [[ -z $kb ]]; then
        echo "cannot read VmRSS of $daemon_pid" >&2
        exit 2
    fi
    last_kb=$kb
    ((kb > max_kb)) && max_kb=$kb
    printf '%8d %10s %10s %10d\n' "$elapsed" "$(mb "$kb")" "$(mb "$(hwm_kb "$daemon_pid")")" "$(proc_count)"
    ((elapsed >= DURATION)) && break
    next=$((elapsed + SAMPLE_EVERY > DURATION ? DURATION - elapsed : SAMPLE_EVERY))
    sleep "$next"
done
hwm=$(hwm_kb "$daemon_pid")
cycles=$(grep -c ' cycle processes=' "$work/daemon.log" || true)
last_cycle=$(grep ' cycle processes=' "$work/daemon.log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g' || true)

echo
echo "cycles logged:   $cycles"
echo "last cycle:      ${last_cycle:-none}"
echo "RSS max sampled: $(mb "$max_kb") MB"
echo "RSS final:       $(mb "$last_kb") MB"
echo "VmHWM (peak):    $(mb "${hwm:-0}") MB"
limit_kb=$((LIMIT_MB * 1024))
if ((max_kb <= limit_kb)); then
    echo "RESULT: PASS (RSS <= $LIMIT_MB MB in every sample)"
else
    echo "RESULT: FAIL (limit $LIMIT_MB MB)"
    exit 1
fi
