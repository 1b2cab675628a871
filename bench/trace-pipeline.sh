#!/usr/bin/env bash
# End-to-end trace pipeline benchmark: spans per CPU-second of trace-sidecar + node-daemon
# (target >= 500,000, about 8x the ~60,000 spans/s per core Datadog publishes for its trace
# agent), the sidecar's RSS at 60,000 spans/s (target <= 20 MB) and the p99 span-to-daemon
# latency at that rate.
#
# Builds the release binaries, then runs `cargo bench -p integration-tests --bench
# trace_pipeline`, which starts a release node-daemon and trace-sidecar on free loopback
# ports (nothing is forwarded; see the bench's header for what it measures and how).
#
# Environment (all optional): BENCH_CLIENTS (client threads in the throughput phase,
# default 3), BENCH_SECONDS (default 10), BENCH_RATE (paced phase, default 60000 spans/s),
# BENCH_PACED_SECONDS (default 15), BENCH_TRACES / BENCH_SPANS (payload shape, default 100
# traces x 10 spans), BENCH_PHASES (A, B or AB, default AB).
#
# Exit status: 0 when every target is met, 1 when one is missed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

echo "== cargo build --release --workspace"
cargo build --release --workspace
echo "== cargo bench -p integration-tests --bench trace_pipeline"
cargo bench -p integration-tests --bench trace_pipeline
