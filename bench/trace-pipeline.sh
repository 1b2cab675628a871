#!/usr/bin/env bash
# End-to-end trace pipeline benchmark: spans per CPU-second of trace-sidecar + node-daemon
# over the Datadog v0.4 path (target >= 500,000, about 8x the ~60,000 spans/s per core
# Datadog publishes for its trace agent) and over OTLP/HTTP and OTLP/gRPC (target >= 0.70
# of the v0.4 figure of the same run), the sidecar's RSS at 60,000 spans/s on each (target
# <= 20 MB) and the span-to-daemon latency (p50/p99/max) at that rate.
#
# Builds the release binaries, then runs `cargo bench -p integration-tests --bench
# trace_pipeline`, which starts a release node-daemon and trace-sidecar on free loopback
# ports (nothing is forwarded) and drives them with pre-encoded /v0.4/traces payloads and
# the same spans as OTLP ExportTraceServiceRequests; the header of
# integration-tests/benches/trace_pipeline.rs says what is measured and how.
#
# Environment (all optional): BENCH_WIRES (default v04,otlp-http,otlp-grpc),
# BENCH_PHASES (A = throughput, B = paced; default AB),
# BENCH_CLIENTS (client threads of phase A, default 3), BENCH_SECONDS (default 10),
# BENCH_WINDOW (spans at most sent and not yet received by the daemon, default 50000),
# BENCH_RATE (phase B, default 60000 spans/s), BENCH_PACED_SECONDS (default 15),
# BENCH_TRACES / BENCH_SPANS (payload shape, default 100 traces x 10 spans).
#
# The machine's other load shows in the wall-clock figures (the bench prints the load
# average and the run-queue wait of both processes); the per-CPU-second figure much less.
#
# Exit status: 0 when every target is met, 1 when one is missed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

echo "== cargo build --release --workspace"
cargo build --release --workspace
echo "== cargo bench -p integration-tests --bench trace_pipeline"
cargo bench -p integration-tests --bench trace_pipeline
