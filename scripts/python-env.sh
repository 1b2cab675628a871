#!/usr/bin/env bash
# Creates .venv with the Python peers the tests and benchmarks run against (psutil, ...).
# Re-installs only when the requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
req=integration-tests/python/requirements.txt
stamp=.venv/.requirements.sha256
sum=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $stamp && $(cat "$stamp") == "$sum" ]]; then
  exit 0
fi
python3 -m venv .venv || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv .venv; }
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
echo "$sum" > "$stamp"
