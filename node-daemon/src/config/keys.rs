//! Every key the daemon reads, each said once: its name, its default, the line the docs
//! give it and how status shows its value (secrets redacted). `Config::from_raw` parses
//! each key by name and takes its default from here; the environment is read for these
//! names and no other, the YAML file refuses any other, and the status summary and the
//! README's table are made from this list.

use std::time::Duration;

use url::Url;

use super::{secret, ApiKey, Config};

/// One configuration key.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub default: KeyDefault,
    /// The key's line in the docs table (Markdown, no `|`).
    pub doc: &'static str,
    /// The effective value as status shows it. None for a file holding another key's
    /// secret: status shows it under that key.
    pub show: Option<fn(&Config) -> String>,
}

/// What a key is when it is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDefault {
    /// This text, parsed as if it had been given.
    Value(&'static str),
    /// No value: the feature is off, or nothing is sent.
    Unset,
    /// Taken from another key or found on the host; the text (Markdown) says where.
    Derived(&'static str),
}

impl Key {
    /// The default as the docs table writes it.
    pub fn default_doc(&self) -> String {
        match self.default {
            KeyDefault::Value(value) => format!("`{value}`"),
            KeyDefault::Unset => "unset".into(),
            KeyDefault::Derived(text) => text.into(),
        }
    }

    /// The default text of a key whose default is a value.
    pub fn default_value(&self) -> &'static str {
        match self.default {
            KeyDefault::Value(value) => value,
            _ => panic!("{} has no default value", self.name),
        }
    }
}

/// The key named `name`; every name the code reads is here (a test reads them all).
pub fn find(name: &str) -> &'static Key {
    KEYS.iter()
        .find(|key| key.name == name)
        .unwrap_or_else(|| panic!("{name} is not in config::keys::KEYS"))
}

/// Every key's name, in the order of `KEYS`.
pub fn names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|key| key.name)
}

fn url(value: &Option<Url>) -> String {
    value.as_ref().map_or("<unset>".into(), secret::redact_url)
}

fn secs(value: Duration) -> String {
    format!("{}s", value.as_secs_f64())
}

fn redacted(value: &Option<ApiKey>) -> String {
    value.as_ref().map_or("<unset>".into(), ApiKey::redacted)
}

fn percent(value: Option<f64>) -> String {
    value.map_or("<unset>".into(), |v| v.to_string())
}

/// Every key, in the order the docs list them.
pub const KEYS: &[Key] = &[
    Key {
        name: "STS_API_KEY",
        default: KeyDefault::Unset,
        doc: "StackState API key. Never printed: status shows `<set, redacted>`.",
        show: Some(|c| redacted(&c.api_key)),
    },
    Key {
        name: "STS_STS_URL",
        default: KeyDefault::Unset,
        doc: "Receiver base URL (`https://<stackstate>/stsAgent`). Unset: collect and serve status, send nothing.",
        show: Some(|c| url(&c.sts_url)),
    },
    Key {
        name: "STS_PROCESS_AGENT_URL",
        default: KeyDefault::Derived("`STS_STS_URL`"),
        doc: "Receiver for processes, containers and connections.",
        show: Some(|c| url(&c.process_agent_url)),
    },
    Key {
        name: "STS_APM_URL",
        default: KeyDefault::Derived("`STS_STS_URL`"),
        doc: "Receiver for traces.",
        show: Some(|c| url(&c.apm_url)),
    },
    Key {
        name: "STS_SKIP_SSL_VALIDATION",
        default: KeyDefault::Value("false"),
        doc: "Accept any receiver certificate (a warning is logged at start).",
        show: Some(|c| c.skip_ssl_validation.to_string()),
    },
    Key {
        name: "STS_OTLP_ENDPOINT",
        default: KeyDefault::Unset,
        doc: "OTLP export of the correlated traces and the host, process and container metrics, beside the receiver or alone (then `STS_STS_URL` may be unset). gRPC: `http://collector:4317`; HTTP: the base `/v1/traces` and `/v1/metrics` are appended to. Unset: no OTLP export.",
        show: Some(|c| c.otlp.as_ref().map_or("<unset>".into(), |o| secret::redact_url(&o.endpoint))),
    },
    Key {
        name: "STS_OTLP_PROTOCOL",
        default: KeyDefault::Value("http/protobuf"),
        doc: "`grpc` or `http/protobuf`, as `OTEL_EXPORTER_OTLP_PROTOCOL`.",
        show: Some(|c| c.otlp.as_ref().map_or("<unset>".into(), |o| o.protocol.as_str().into())),
    },
    Key {
        name: "STS_OTLP_HEADERS",
        default: KeyDefault::Unset,
        doc: "Headers sent with every export, as `OTEL_EXPORTER_OTLP_HEADERS`: `name=value` pairs, comma-separated, values percent-encoded (`authorization=Bearer%20<token>`). Never printed: status shows the names only.",
        show: Some(|c| match c.otlp.as_ref().map(|o| &o.headers) {
            Some(headers) if !headers.is_empty() => {
                let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
                format!("{} (values redacted)", names.join(","))
            }
            _ => "<unset>".into(),
        }),
    },
    Key {
        name: "STS_OTLP_HEADERS_FILE",
        default: KeyDefault::Unset,
        doc: "A file holding `STS_OTLP_HEADERS` (trimmed; give one of the two).",
        show: None,
    },
    Key {
        name: "STS_OTLP_SKIP_SSL_VALIDATION",
        default: KeyDefault::Value("false"),
        doc: "Accept any certificate from the OTLP endpoint (a warning is logged at start).",
        show: Some(|c| c.otlp.as_ref().is_some_and(|o| o.skip_ssl_validation).to_string()),
    },
    Key {
        name: "STS_QUEUE_DIR",
        default: KeyDefault::Value("/var/lib/stackstate-node-daemon/queue"),
        doc: "The forwarding pipelines' disk queues. Empty: memory only, 32 MiB a pipeline.",
        show: Some(|c| {
            c.queue_dir
                .as_ref()
                .map_or("<memory only>".into(), |d| d.display().to_string())
        }),
    },
    Key {
        name: "STS_QUEUE_MAX_BYTES",
        default: KeyDefault::Value("536870912"),
        doc: "Bytes all queues hold together (512 MiB), shared by weight: each traces pipeline (StackState, OTLP) 4, every other pipeline 1 (without OTLP: traces 1/2, the others 1/8 each). Beyond it the oldest batches are dropped and counted.",
        show: Some(|c| c.queue_max_bytes.to_string()),
    },
    Key {
        name: "STS_PROCESS_AGENT_ENABLED",
        default: KeyDefault::Value("true"),
        doc: "`false`: no process or container collection, no process agent messages.",
        show: Some(|c| c.process_agent_enabled.to_string()),
    },
    Key {
        name: "STS_PROCESS_AGENT_INTERVAL",
        default: KeyDefault::Value("30"),
        doc: "Seconds between the process agent protocol's messages (processes, containers, connections), as the agent's checks.",
        show: Some(|c| secs(c.process_agent.interval)),
    },
    Key {
        name: "STS_PROCESS_SHORT_LIVED_QUALIFIER_SECS",
        default: KeyDefault::Value("60"),
        doc: "Processes younger than this (seconds) are not reported; `0`: all are.",
        show: Some(|c| secs(c.process_agent.short_lived_processes)),
    },
    Key {
        name: "STS_NETWORK_RELATION_SHORT_LIVED_QUALIFIER_SECS",
        default: KeyDefault::Value("60"),
        doc: "Connections seen for less than this (seconds) are not reported; `0`: all are.",
        show: Some(|c| secs(c.process_agent.short_lived_connections)),
    },
    Key {
        name: "STS_PROCESS_BLACKLIST_PATTERNS",
        default: KeyDefault::Derived(
            "the process agent's list (`node-daemon/src/config/default-process-blacklist.txt`)",
        ),
        doc: "Regexes matched against the command line: a JSON array (`[\"^java\",\"^node\"]`) or comma-separated. Setting it replaces the default list.",
        show: Some(|c| format!("{} patterns", c.process.blacklist.patterns.len())),
    },
    Key {
        name: "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU",
        default: KeyDefault::Value("0"),
        doc: "Re-admit the blacklisted processes among the N heaviest by CPU.",
        show: Some(|c| c.process.blacklist.top_cpu.to_string()),
    },
    Key {
        name: "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_READ",
        default: KeyDefault::Value("0"),
        doc: "... among the N heaviest by IO read rate.",
        show: Some(|c| c.process.blacklist.top_io_read.to_string()),
    },
    Key {
        name: "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_WRITE",
        default: KeyDefault::Value("0"),
        doc: "... among the N heaviest by IO write rate.",
        show: Some(|c| c.process.blacklist.top_io_write.to_string()),
    },
    Key {
        name: "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM",
        default: KeyDefault::Value("0"),
        doc: "... among the N heaviest by resident memory.",
        show: Some(|c| c.process.blacklist.top_mem.to_string()),
    },
    Key {
        name: "STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD",
        default: KeyDefault::Unset,
        doc: "Re-admit any blacklisted process above this CPU % (percent of one CPU).",
        show: Some(|c| percent(c.process.blacklist.cpu_threshold)),
    },
    Key {
        name: "STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD",
        default: KeyDefault::Unset,
        doc: "Re-admit any blacklisted process above this % of host memory (RSS).",
        show: Some(|c| percent(c.process.blacklist.mem_threshold)),
    },
    Key {
        name: "STS_CUSTOM_SENSITIVE_WORDS",
        default: KeyDefault::Unset,
        doc: "Extra words whose values are masked in command lines (a list, as for the patterns).",
        show: Some(|c| format!("{} extra words", c.process.extra_sensitive_words.len())),
    },
    Key {
        name: "STS_NETWORK_TRACING_ENABLED",
        default: KeyDefault::Value("true"),
        doc: "The network tracer (needs `STS_PROCESS_AGENT_ENABLED` too).",
        show: Some(|c| c.network_tracing_enabled.to_string()),
    },
    Key {
        name: "STS_NETWORK_BACKEND",
        default: KeyDefault::Value("auto"),
        doc: "`auto`: eBPF, or polling when eBPF is refused or was not built (status says why); `ebpf`: eBPF or refuse to start; `proc`: polling.",
        show: Some(|c| c.network.backend.as_str().to_string()),
    },
    Key {
        name: "STS_NETWORK_MAX_CONNECTIONS",
        default: KeyDefault::Value("100000"),
        doc: "Connections tracked at most; more are not reported and are counted (`network.table_full`).",
        show: Some(|c| c.network.max_connections.to_string()),
    },
    Key {
        name: "STS_APM_ENABLED",
        default: KeyDefault::Value("true"),
        doc: "The sidecars' relay. `false`: sidecars are refused (they keep buffering) and no span is sent.",
        show: Some(|c| c.apm_enabled.to_string()),
    },
    Key {
        name: "STS_TRACE_RECENT_SPANS",
        default: KeyDefault::Value("10000"),
        doc: "Correlated spans kept in memory for `GetRecentSpans` (a window for operators and tests); `0` when `STS_STS_URL` is set and this is not.",
        show: Some(|c| c.trace_recent_spans.to_string()),
    },
    Key {
        name: "STS_RELAY_ADDR",
        default: KeyDefault::Value("0.0.0.0:7183"),
        doc: "The sidecars' relay (and its health service), where sidecars reach the host.",
        show: Some(|c| c.relay_addr.to_string()),
    },
    Key {
        name: "STS_RELAY_TOKEN",
        default: KeyDefault::Unset,
        doc: "Shared secret sidecars must send (compared in constant time); refused batches are counted (`relay_refused_total`) and logged at most once a minute an address. Never printed.",
        show: Some(|c| redacted(&c.relay_token)),
    },
    Key {
        name: "STS_RELAY_TOKEN_FILE",
        default: KeyDefault::Unset,
        doc: "A file holding `STS_RELAY_TOKEN` (trimmed; give one of the two).",
        show: None,
    },
    Key {
        name: "STS_GRPC_ADDR",
        default: KeyDefault::Value("127.0.0.1:7182"),
        doc: "The read API (status, snapshot, recent spans, reflection, health). Off loopback it needs a token.",
        show: Some(|c| c.grpc_addr.to_string()),
    },
    Key {
        name: "STS_GRPC_TOKEN",
        default: KeyDefault::Unset,
        doc: "The read API's token: calls send `authorization: Bearer <token>`; `status` and `snapshot --from-daemon` send it too. Never printed.",
        show: Some(|c| redacted(&c.grpc_token)),
    },
    Key {
        name: "STS_GRPC_TOKEN_FILE",
        default: KeyDefault::Unset,
        doc: "A file holding `STS_GRPC_TOKEN` (trimmed; give one of the two).",
        show: None,
    },
    Key {
        name: "STS_COLLECTION_INTERVAL",
        default: KeyDefault::Value("10"),
        doc: "Seconds between collection cycles (fractions allowed).",
        show: Some(|c| secs(c.collection_interval)),
    },
    Key {
        name: "STS_HOSTNAME",
        default: KeyDefault::Derived("the kernel's host name"),
        doc: "Host name used in every identifier.",
        show: Some(|c| c.hostname.clone().unwrap_or_else(|| "<from host>".into())),
    },
    Key {
        name: "STS_LOG_LEVEL",
        default: KeyDefault::Value("info"),
        doc: "`trace`, `debug`, `info`, `warn`/`warning`, `error`/`critical`, or a `tracing` filter.",
        show: Some(|c| c.log_level.clone()),
    },
    Key {
        name: "STS_CGROUP_ROOT",
        default: KeyDefault::Value("/sys/fs/cgroup"),
        doc: "Where the host's cgroups are mounted (`/cgroup` on Amazon Linux 1).",
        show: Some(|c| c.cgroup_root.display().to_string()),
    },
    Key {
        name: "STS_ECS_AGENT_URL",
        default: KeyDefault::Derived("discovered"),
        doc: "ECS agent introspection API; unset, these are tried in order: the `ecs-agent` container's address, the default gateway, `localhost`, port 51678.",
        show: Some(|c| url(&c.ecs_agent_url)),
    },
    Key {
        name: "STS_EC2_METADATA_URL",
        default: KeyDefault::Value("http://169.254.169.254"),
        doc: "IMDSv2, for the instance id, region, availability zone and type.",
        show: Some(|c| secret::redact_url(&c.ec2_metadata_url)),
    },
];
