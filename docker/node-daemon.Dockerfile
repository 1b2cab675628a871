# node-daemon: one per EC2 instance (ECS DAEMON service, pidMode host, networkMode host).
# Built by docker/build-images.sh from the workspace root; the base is a local debootstrap
# of Debian 12, the same release (glibc 2.36) the binary is built on.
FROM sts-base:bookworm

# Runs as root, on purpose: the daemon reads every host process's /proc entries
# (/proc/<pid>/io, exe and fd need ptrace access and directory search, granted to root by
# the SYS_PTRACE and DAC_READ_SEARCH capabilities of the task definition), talks to the
# Docker socket (root:docker 0660 on the host) and loads eBPF programs (bpf() and
# perf_event_open need root's capabilities). A non-root user would need file capabilities
# on the binary and the docker group id of each host; it would not hold fewer privileges,
# because the ones that matter are the capabilities, and the task definition drops all the
# others (ecs/README.md, "Privileges taken and why").
USER 0:0
COPY target/release/node-daemon /usr/local/bin/node-daemon

# gRPC status (sts.daemon.v1.Status, grpc.health.v1.Health) on the host network.
EXPOSE 7182 7183
# ECS uses the healthCheck of the task definition (the same command); this one serves
# plain `docker run`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/node-daemon", "status", "--timeout", "4"]
CMD ["/usr/local/bin/node-daemon", "run"]
