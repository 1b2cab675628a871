# trace-sidecar: runs in application tasks, receives Datadog-protocol spans on :8126 and
# OTLP on :4317 (gRPC) and :4318 (HTTP), and relays them to node-daemon over gRPC. Built by docker/build-images.sh from the workspace
# root on the local Debian 12 base.
FROM sts-base:bookworm

# Not root: the sidecar only listens on unprivileged ports and opens a gRPC connection.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sts-trace
COPY target/release/trace-sidecar /usr/local/bin/trace-sidecar
USER 10001:10001

ENV STS_TRACE_LISTEN_ADDR=0.0.0.0:8126
ENV STS_OTLP_GRPC_ADDR=0.0.0.0:4317
ENV STS_OTLP_HTTP_ADDR=0.0.0.0:4318
EXPOSE 8126 4317 4318
CMD ["/usr/local/bin/trace-sidecar"]
