#!/usr/bin/env bash
# Builds and runs node-daemon on this host. Without STS_STS_URL it runs the embedded
# default: it collects, serves its read API (status) on STS_GRPC_ADDR (127.0.0.1:7182) and
# the sidecars' relay on STS_RELAY_ADDR (0.0.0.0:7183), but sends nothing.
# Query it from another shell with: target/release/node-daemon status
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p node-daemon
exec target/release/node-daemon run "$@"
