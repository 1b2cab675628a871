#!/usr/bin/env bash
# Process collector benchmark against psutil and a bare file-reading loop.
#
# Makes sure a Python with psutil is available (a venv at .venv of the workspace, created
# and provisioned with pip when psutil is missing), then runs
# `cargo bench -p node-daemon --bench process_scan`, which starts the extra idle
# processes itself and prints per-process costs and the ratios against the targets.
#
# Environment: BENCH_PYTHON (a Python with psutil; skips the venv), BENCH_EXTRA_PROCS
# (default 1000), BENCH_REPS (default 9).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [[ -z ${BENCH_PYTHON:-} ]]; then
    venv=$root/.venv
    if [[ ! -x $venv/bin/python ]]; then
        echo "== creating $venv"
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c 'import psutil' 2>/dev/null; then
        echo "== installing psutil into $venv"
        "$venv/bin/python" -m pip install --quiet psutil
    fi
    export BENCH_PYTHON=$venv/bin/python
fi
echo "== psutil $("$BENCH_PYTHON" -c 'import psutil; print(psutil.__version__)') ($BENCH_PYTHON)"

cargo bench -p node-daemon --bench process_scan
