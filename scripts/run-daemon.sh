#!/usr/bin/env bash
# Builds and runs node-daemon on this host. Without STS_STS_URL it runs the embedded
# default: it collects and serves status on STS_GRPC_ADDR (0.0.0.0:7182) but sends nothing.
# Query it from another shell with: target/release/node-daemon status
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p node-daemon
exec target/release/node-daemon run "$@"
