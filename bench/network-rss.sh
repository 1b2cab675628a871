#!/usr/bin/env bash
# Daemon memory with 10,000 open connections: the RSS of `node-daemon run --interval 2`
# with the eBPF network backend while a helper process holds PAIRS loopback TCP pairs
# open (default 5,000: 10,000 connections, both ends owned by the helper).
#
# Builds the release node-daemon and the helper (integration-tests/src/bin/tcp-hold.rs),
# starts the helper, then `node-daemon run --interval INTERVAL` (default 2) with
# STS_NETWORK_BACKEND=ebpf, STS_GRPC_ADDR on a free loopback port and no STS_STS_URL,
# checks through `node-daemon status --json` that the network collector runs the eBPF
# backend, samples the daemon's VmRSS and VmHWM every SAMPLE_EVERY seconds (default 5)
# for DURATION seconds (default 60) together with the connections the last cycle
# reported, and judges the largest VmRSS sampled while the connections are held (the
# daemon's RSS with them) against LIMIT_MB (default 40). The peak (VmHWM) is printed too:
# it is set at start-up, while the eBPF loader parses the kernel's BTF, whatever the
# number of connections, and the heap is handed back right after. With
# COMPARE_PROC=1 (default) the same run follows with STS_NETWORK_BACKEND=proc, the
# polling backend, for comparison (information, no limit).
#
# Exit status: 0 on PASS, 1 on FAIL, 2 when the daemon died or could not be measured
# (among others: fewer connections reported than held, or no eBPF backend).
set -euo pipefail

DURATION=${DURATION:-60}
PAIRS=${PAIRS:-5000}
INTERVAL=${INTERVAL:-2}
SAMPLE_EVERY=${SAMPLE_EVERY:-5}
LIMIT_MB=${LIMIT_MB:-40}
COMPARE_PROC=${COMPARE_PROC:-1}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
source bench/lib.sh

holder_pid=
daemon_pid=
bench_setup daemon_pid holder_pid

((EUID == 0)) || fail "run as root (the daemon's eBPF programs need it)"

echo "== building node-daemon and tcp-hold (release)"
cargo build --release -p node-daemon --bin node-daemon
cargo build --release -p integration-tests --bin tcp-hold
target_dir=${CARGO_TARGET_DIR:-$root/target}
# The target directory may be shared: run private copies so that a concurrent build
# cannot replace a binary while it runs.
cp "$target_dir/release/node-daemon" "$target_dir/release/tcp-hold" "$work/"

kb_of() {
    awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status" 2>/dev/null
}

# "<ran|pending> <connections> <detail>" of the network collector, from `status --json`.
network_status() {
    "$work/node-daemon" status --json --addr "$1" 2>/dev/null | python3 -c '
import json, sys
for c in json.load(sys.stdin)["collectors"]:
    if c["name"] == "network":
        ran = "ran" if c["last_run_unix_ms"] else "pending"
        print(ran, c["counts"].get("connections", 0), c["detail"])
' 2>/dev/null || true
}

echo "== holding $PAIRS loopback TCP pairs open"
"$work/tcp-hold" --pairs "$PAIRS" >"$work/hold.out" 2>&1 &
holder_pid=$!
for _ in $(seq 600); do
    grep -q '^holding' "$work/hold.out" && break
    kill -0 "$holder_pid" 2>/dev/null || { cat "$work/hold.out" >&2; fail "tcp-hold exited"; }
    sleep 0.1
done
grep '^holding' "$work/hold.out" || fail "tcp-hold did not open its connections"
held=$((PAIRS * 2))

# Runs the daemon with backend $1 for DURATION seconds; sets peak_kb (VmHWM), max_kb (the
# largest VmRSS sampled) and final_kb.
run_daemon() {
    local backend=$1 port addr status= start elapsed kb hwm connections
    port=$(free_port)
    addr=127.0.0.1:$port
    echo
    echo "== node-daemon run --interval $INTERVAL, STS_NETWORK_BACKEND=$backend, for ${DURATION}s"
    env -u STS_STS_URL -u STS_COLLECTION_INTERVAL -u STS_CONFIG_FILE \
        NO_COLOR=1 STS_NETWORK_BACKEND="$backend" STS_GRPC_ADDR="$addr" STS_RELAY_ADDR="127.0.0.1:$(free_port)" \
        STS_QUEUE_DIR="$work/queue" STS_LOG_LEVEL="${STS_LOG_LEVEL:-info}" \
        "$work/node-daemon" run --interval "$INTERVAL" >"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    start=$(date +%s)
    for _ in $(seq 300); do
        kill -0 "$daemon_pid" 2>/dev/null ||
            { tail -n 20 "$work/daemon.log" >&2; fail "node-daemon exited at start"; }
        status=$(network_status "$addr")
        [[ $status == "ran "* ]] && break
        sleep 0.2
    done
    [[ $status == "ran "* ]] || fail "node-daemon's network collector did not finish a cycle"
    echo "   network collector: ${status#ran * }"
    if [[ $backend == ebpf && ${status#ran * } != ebpf:* ]]; then
        fail "node-daemon does not run the eBPF backend"
    fi
    printf '%8s %10s %10s %12s\n' "t (s)" "RSS (MB)" "HWM (MB)" "connections"
    max_kb=0
    while :; do
        elapsed=$(($(date +%s) - start))
        kill -0 "$daemon_pid" 2>/dev/null ||
            { tail -n 20 "$work/daemon.log" >&2; fail "node-daemon exited early"; }
        kb=$(kb_of "$daemon_pid" VmRSS)
        hwm=$(kb_of "$daemon_pid" VmHWM)
        [[ -n $kb && -n $hwm ]] || fail "cannot read the memory of $daemon_pid"
        if ((kb > max_kb)); then
            max_kb=$kb
        fi
        status=$(network_status "$addr")
        connections=$(cut -d' ' -f2 <<<"$status")
        printf '%8d %10s %10s %12s\n' "$elapsed" "$(mb "$kb")" "$(mb "$hwm")" "${connections:-?}"
        ((elapsed >= DURATION)) && break
        sleep "$((elapsed + SAMPLE_EVERY > DURATION ? DURATION - elapsed : SAMPLE_EVERY))"
    done
    final_kb=$kb
    peak_kb=$hwm
    ((${connections:-0} >= held)) ||
        fail "the last cycle reported ${connections:-no} connections, $held are held open"
    echo "   cycles logged: $(grep -c ' cycle processes=' "$work/daemon.log" || true)"
    stop_pid "$daemon_pid"
    daemon_pid=
}

run_daemon ebpf
ebpf_peak=$peak_kb
ebpf_max=$max_kb
ebpf_final=$final_kb
if ((COMPARE_PROC)); then
    run_daemon proc
    proc_peak=$peak_kb
    proc_max=$max_kb
    proc_final=$final_kb
fi

echo
echo "node-daemon (eBPF) with $held connections: VmHWM (peak) $(mb "$ebpf_peak") MB," \
    "RSS max sampled $(mb "$ebpf_max") MB, final $(mb "$ebpf_final") MB"
if ((COMPARE_PROC)); then
    echo "node-daemon (proc) with $held connections: VmHWM (peak) $(mb "$proc_peak") MB," \
        "RSS max sampled $(mb "$proc_max") MB, final $(mb "$proc_final") MB;" \
        "eBPF / proc peak = $(awk -v a="$ebpf_peak" -v b="$proc_peak" 'BEGIN { printf "%.2f", a / b }')"
fi
if ((ebpf_max <= LIMIT_MB * 1024)); then
    echo "RESULT: PASS (RSS with $held connections $(mb "$ebpf_max") MB <= $LIMIT_MB MB)"
else
    echo "RESULT: FAIL (RSS with $held connections $(mb "$ebpf_max") MB > $LIMIT_MB MB)"
    exit 1
fi
