//! Every variable the sidecar reads, with its default and the line the README's table
//! gives it (a test checks that `Config::from_env` reads these and no other, and another
//! that the README's table is made from them).

/// One variable.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    /// The default as the docs table writes it (Markdown): a value in backticks is one that
    /// means the same given as left unset.
    pub default: &'static str,
    /// The key's line in the docs table (Markdown, no `|`).
    pub doc: &'static str,
}

/// Every variable, in the order the docs list them.
pub const KEYS: &[Key] = &[
    Key {
        name: "STS_TRACE_LISTEN_ADDR",
        default: "`0.0.0.0:8126`",
        doc: "Where trace clients send spans (the Datadog trace API over HTTP).",
    },
    Key {
        name: "STS_TRACE_LISTEN_SOCKET",
        default: "unset",
        doc: "A Unix socket to serve trace clients on as well.",
    },
    Key {
        name: "STS_OTLP_GRPC_ADDR",
        default: "`0.0.0.0:4317`",
        doc: "Where OpenTelemetry clients send spans over OTLP/gRPC; empty: not served.",
    },
    Key {
        name: "STS_OTLP_HTTP_ADDR",
        default: "`0.0.0.0:4318`",
        doc: "Where OpenTelemetry clients send spans over OTLP/HTTP (`/v1/traces`, protobuf or JSON); empty: not served.",
    },
    Key {
        name: "STS_DAEMON_ADDR",
        default: "the default gateway, port `7183`",
        doc: "The daemon's relay, `host:port` or `http://host:port`: with host networking the daemon's relay listens on the host, the task's gateway.",
    },
    Key {
        name: "STS_RELAY_TOKEN",
        default: "unset",
        doc: "The daemon's `STS_RELAY_TOKEN`, sent with every batch. Never printed.",
    },
    Key {
        name: "STS_RELAY_TOKEN_FILE",
        default: "unset",
        doc: "A file holding `STS_RELAY_TOKEN` (trimmed; give one of the two).",
    },
    Key {
        name: "STS_TRACE_BUFFER_BYTES",
        default: "`67108864`",
        doc: "Bytes of spans held while the daemon is away (64 MiB; at least 1 MiB); beyond it the oldest are dropped and counted.",
    },
    Key {
        name: "STS_TRACE_MAX_CONNECTIONS",
        default: "`1024`",
        doc: "Client connections open at once, TCP (OTLP/HTTP included) and Unix socket together; OTLP/gRPC has as many of its own, a connection past them waiting to be accepted. At the bound a new connection takes the slot of the one that has waited longest for a request (closed, counted as `connections_shed`); when every slot serves a request it is closed at once (`connections_refused`).",
    },
    Key {
        name: "STS_TRACE_HEADER_TIMEOUT",
        default: "`10`",
        doc: "Seconds a request head (start line and headers) may take: from the connection's start, or from the head's first byte on a kept-alive connection; then the connection is closed (`header_timeouts`).",
    },
    Key {
        name: "STS_TRACE_BODY_TIMEOUT",
        default: "`30`",
        doc: "Seconds a request body may take after its head; then 408 and the connection is closed (`body_timeouts`).",
    },
    Key {
        name: "STS_TRACE_IDLE_TIMEOUT",
        default: "`60`",
        doc: "Seconds a kept-alive connection may wait between requests (`idle_timeouts`).",
    },
    Key {
        name: "STS_TRACE_MAX_HEADER_BYTES",
        default: "`16384`",
        doc: "The largest request head in bytes (1024 to 1048576); a larger one, or one of more than 100 headers, is answered 431 (`heads_too_large`).",
    },
    Key {
        name: "STS_TASK_ARN",
        default: "unset",
        doc: "The task's ARN, shown in the daemon's status; unset, the daemon finds the task from the sidecar's address.",
    },
    Key {
        name: "STS_LOG_LEVEL",
        default: "`info`",
        doc: "`trace`, `debug`, `info`, `warn`, `error`, or a `tracing` filter.",
    },
];
