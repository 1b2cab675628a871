//! Daemon configuration: the StackState agent's `STS_*` environment variables, optionally
//! over a YAML file with the same keys. Every value is validated at start; an error names
//! the variable and says why.

mod parse;
pub mod secret;
mod source;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use url::Url;

pub use secret::ApiKey;
pub use source::RawValues;

/// Every key the daemon reads, in the order the status summary lists them.
pub const KNOWN_KEYS: &[&str] = &[
    "STS_API_KEY",
    "STS_STS_URL",
    "STS_PROCESS_AGENT_URL",
    "STS_APM_URL",
    "STS_SKIP_SSL_VALIDATION",
    "STS_PROCESS_AGENT_ENABLED",
    "STS_PROCESS_AGENT_INTERVAL",
    "STS_PROCESS_SHORT_LIVED_QUALIFIER_SECS",
    "STS_NETWORK_RELATION_SHORT_LIVED_QUALIFIER_SECS",
    "STS_APM_ENABLED",
    "STS_NETWORK_TRACING_ENABLED",
    "STS_NETWORK_MAX_CONNECTIONS",
    "STS_NETWORK_BACKEND",
    "STS_PROCESS_BLACKLIST_PATTERNS",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_READ",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_WRITE",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD",
    "STS_CUSTOM_SENSITIVE_WORDS",
    "STS_HOSTNAME",
    "STS_LOG_LEVEL",
    "STS_GRPC_ADDR",
    "STS_GRPC_TOKEN",
    "STS_GRPC_TOKEN_FILE",
    "STS_RELAY_ADDR",
    "STS_COLLECTION_INTERVAL",
    "STS_CGROUP_ROOT",
    "STS_ECS_AGENT_URL",
    "STS_EC2_METADATA_URL",
    "STS_RELAY_TOKEN",
    "STS_RELAY_TOKEN_FILE",
    "STS_TRACE_RECENT_SPANS",
    "STS_QUEUE_DIR",
    "STS_QUEUE_MAX_BYTES",
];

/// The blacklist of the original process agent, one regex a line.
const DEFAULT_BLACKLIST: &str = include_str!("default-process-blacklist.txt");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {reason} (got `{value}`)")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{var}: cannot read {path}: {reason}")]
    SecretFile {
        var: &'static str,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Conflict(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub api_key: Option<ApiKey>,
    pub sts_url: Option<Url>,
    /// Defaults to `sts_url`, as in the StackState agent.
    pub process_agent_url: Option<Url>,
    /// Defaults to `sts_url`, as in the StackState agent.
    pub apm_url: Option<Url>,
    pub skip_ssl_validation: bool,
    pub process_agent_enabled: bool,
    /// The process agent protocol's messages (processes, containers, connections).
    pub process_agent: ProcessAgentConfig,
    pub apm_enabled: bool,
    pub network_tracing_enabled: bool,
    pub network: NetworkConfig,
    pub process: ProcessConfig,
    pub hostname: Option<String>,
    pub log_level: String,
    /// The read API (status, snapshot, recent spans, reflection): loopback by default.
    pub grpc_addr: SocketAddr,
    /// Token the read API asks for (`authorization: Bearer`); required off loopback.
    pub grpc_token: Option<ApiKey>,
    /// The sidecars' relay and `grpc.health.v1`.
    pub relay_addr: SocketAddr,
    pub collection_interval: Duration,
    /// Where the host's cgroup hierarchy is mounted (`/cgroup` on Amazon Linux 1).
    pub cgroup_root: PathBuf,
    /// ECS agent introspection API, tried before the discovered addresses.
    pub ecs_agent_url: Option<Url>,
    /// EC2 instance metadata service (IMDSv2).
    pub ec2_metadata_url: Url,
    /// Shared secret sidecars must present; None accepts any sidecar.
    pub relay_token: Option<ApiKey>,
    /// Correlated spans kept in memory for `GetRecentSpans`: 10,000 by default without a
    /// receiver, none with one.
    pub trace_recent_spans: usize,
    /// Disk queue of the forwarder; None (an empty STS_QUEUE_DIR) keeps queues in memory.
    pub queue_dir: Option<PathBuf>,
    pub queue_max_bytes: u64,
}

/// The process agent protocol's schedule and filters, with the agent's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessAgentConfig {
    /// How often the messages go (`STS_PROCESS_AGENT_INTERVAL`, 30 s).
    pub interval: Duration,
    /// Processes younger than this are not reported (60 s).
    pub short_lived_processes: Duration,
    /// Connections seen for less than this are not reported (60 s).
    pub short_lived_connections: Duration,
}

/// The network tracer (`STS_NETWORK_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub backend: NetworkBackend,
    /// Connections tracked at most; more are dropped and counted (`network.table_full`).
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkBackend {
    /// The best backend this kernel and build allow.
    Auto,
    /// Polling /proc and sock_diag, whatever else is possible.
    Proc,
    /// The eBPF programs or a refusal to start.
    Ebpf,
}

impl NetworkBackend {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "proc" => Ok(Self::Proc),
            "ebpf" => Ok(Self::Ebpf),
            _ => Err("expected `auto`, `ebpf` or `proc`".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Proc => "proc",
            Self::Ebpf => "ebpf",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub blacklist: BlacklistConfig,
    /// Words on top of the built-in list whose values are masked in command lines.
    pub extra_sensitive_words: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BlacklistConfig {
    /// A process whose command line matches any of these is not reported...
    pub patterns: Vec<Regex>,
    /// ...unless it is among the N heaviest processes by one of these measures...
    pub top_cpu: usize,
    pub top_io_read: usize,
    pub top_io_write: usize,
    pub top_mem: usize,
    /// ...or above one of these thresholds (percent of one CPU / of host memory).
    pub cpu_threshold: Option<f64>,
    pub mem_threshold: Option<f64>,
}

impl Default for BlacklistConfig {
    fn default() -> Self {
        Self {
            patterns: default_blacklist(),
            top_cpu: 0,
            top_io_read: 0,
            top_io_write: 0,
            top_mem: 0,
            cpu_threshold: None,
            mem_threshold: None,
        }
    }
}

pub fn default_blacklist() -> Vec<Regex> {
    DEFAULT_BLACKLIST
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| Regex::new(line).expect("the default blacklist is valid"))
        .collect()
}

impl Config {
    /// Loads from the process environment over the optional YAML file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_raw(&RawValues::load(file, |key| std::env::var(key).ok())?)
    }

    pub fn from_raw(raw: &RawValues) -> Result<Self, ConfigError> {
        let get = Getter { raw };
        let (grpc_addr, grpc_token, relay_addr) = listeners(&get)?;
        let sts_url = get.opt("STS_STS_URL", parse::http_url)?;
        let api_key = raw
            .get("STS_API_KEY")
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(ApiKey::new);
        Ok(Self {
            api_key,
            process_agent_url: get
                .opt("STS_PROCESS_AGENT_URL", parse::http_url)?
                .or_else(|| sts_url.clone()),
            apm_url: get
                .opt("STS_APM_URL", parse::http_url)?
                .or_else(|| sts_url.clone()),
            sts_url,
            skip_ssl_validation: get.or("STS_SKIP_SSL_VALIDATION", false, parse::boolean)?,
            process_agent_enabled: get.or("STS_PROCESS_AGENT_ENABLED", true, parse::boolean)?,
            process_agent: ProcessAgentConfig {
                interval: get.or(
                    "STS_PROCESS_AGENT_INTERVAL",
                    Duration::from_secs(30),
                    parse::seconds,
                )?,
                short_lived_processes: get.or(
                    "STS_PROCESS_SHORT_LIVED_QUALIFIER_SECS",
                    Duration::from_secs(60),
                    parse::seconds_or_zero,
                )?,
                short_lived_connections: get.or(
                    "STS_NETWORK_RELATION_SHORT_LIVED_QUALIFIER_SECS",
                    Duration::from_secs(60),
                    parse::seconds_or_zero,
                )?,
            },
            apm_enabled: get.or("STS_APM_ENABLED", true, parse::boolean)?,
            network_tracing_enabled: get.or("STS_NETWORK_TRACING_ENABLED", true, parse::boolean)?,
            network: NetworkConfig {
                backend: get.or(
                    "STS_NETWORK_BACKEND",
                    NetworkBackend::Auto,
                    NetworkBackend::parse,
                )?,
                max_connections: get.or("STS_NETWORK_MAX_CONNECTIONS", 100_000, |raw| {
                    parse::count(raw).and_then(|n| {
                        if n == 0 {
                            Err("must be at least 1".into())
                        } else {
                            Ok(n)
                        }
                    })
                })?,
            },
            process: ProcessConfig {
                blacklist: BlacklistConfig {
                    patterns: get
                        .opt("STS_PROCESS_BLACKLIST_PATTERNS", parse::regexes)?
                        .unwrap_or_else(default_blacklist),
                    top_cpu: get.or("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU", 0, parse::count)?,
                    top_io_read: get.or(
                        "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_READ",
                        0,
                        parse::count,
                    )?,
                    top_io_write: get.or(
                        "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_WRITE",
                        0,
                        parse::count,
                    )?,
                    top_mem: get.or("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM", 0, parse::count)?,
                    cpu_threshold: get.opt(
                        "STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD",
                        parse::percent,
                    )?,
                    mem_threshold: get.opt(
                        "STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD",
                        parse::percent,
                    )?,
                },
                extra_sensitive_words: get
                    .opt("STS_CUSTOM_SENSITIVE_WORDS", parse::list)?
                    .unwrap_or_default(),
            },
            hostname: raw
                .get("STS_HOSTNAME")
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from),
            log_level: get.or("STS_LOG_LEVEL", "info".to_string(), parse::log_level)?,
            grpc_addr,
            grpc_token,
            relay_addr,
            collection_interval: get.or(
                "STS_COLLECTION_INTERVAL",
                Duration::from_secs(10),
                parse::seconds,
            )?,
            cgroup_root: get.or(
                "STS_CGROUP_ROOT",
                PathBuf::from("/sys/fs/cgroup"),
                parse::absolute_path,
            )?,
            ecs_agent_url: get.opt("STS_ECS_AGENT_URL", parse::http_url)?,
            ec2_metadata_url: get.or(
                "STS_EC2_METADATA_URL",
                Url::parse("http://169.254.169.254").expect("valid default"),
                parse::http_url,
            )?,
            relay_token: secret::from_value_or_file(
                raw,
                "STS_RELAY_TOKEN",
                "STS_RELAY_TOKEN_FILE",
            )?,
            // With a receiver the spans go there; a window would copy every span.
            trace_recent_spans: get.or(
                "STS_TRACE_RECENT_SPANS",
                if raw.get("STS_STS_URL").is_some_and(|u| !u.trim().is_empty()) {
                    0
                } else {
                    10_000
                },
                parse::count,
            )?,
            queue_dir: match raw.get("STS_QUEUE_DIR").map(str::trim) {
                Some("") => None,
                Some(_) => Some(get.or("STS_QUEUE_DIR", PathBuf::new(), parse::absolute_path)?),
                None => Some(crate::forward::default_queue_dir()),
            },
            queue_max_bytes: get.or("STS_QUEUE_MAX_BYTES", 512 << 20, parse::count)? as u64,
        })
    }

    /// The effective configuration for the status output: every key, secrets redacted.
    pub fn summary(&self) -> BTreeMap<String, String> {
        let url = |u: &Option<Url>| u.as_ref().map_or("<unset>".into(), secret::redact_url);
        let b = &self.process.blacklist;
        let opt = |v: Option<f64>| v.map_or("<unset>".into(), |v| v.to_string());
        let secs = |d: Duration| format!("{}s", d.as_secs_f64());
        let redacted = |k: &Option<ApiKey>| k.as_ref().map_or("<unset>".into(), ApiKey::redacted);
        let entries: [(&str, String); 34] = [
            ("STS_API_KEY", redacted(&self.api_key)),
            ("STS_STS_URL", url(&self.sts_url)),
            ("STS_PROCESS_AGENT_URL", url(&self.process_agent_url)),
            ("STS_APM_URL", url(&self.apm_url)),
            (
                "STS_SKIP_SSL_VALIDATION",
                self.skip_ssl_validation.to_string(),
            ),
            (
                "STS_PROCESS_AGENT_ENABLED",
                self.process_agent_enabled.to_string(),
            ),
            (
                "STS_PROCESS_AGENT_INTERVAL",
                secs(self.process_agent.interval),
            ),
            (
                "STS_PROCESS_SHORT_LIVED_QUALIFIER_SECS",
                secs(self.process_agent.short_lived_processes),
            ),
            (
                "STS_NETWORK_RELATION_SHORT_LIVED_QUALIFIER_SECS",
                secs(self.process_agent.short_lived_connections),
            ),
            ("STS_APM_ENABLED", self.apm_enabled.to_string()),
            (
                "STS_NETWORK_TRACING_ENABLED",
                self.network_tracing_enabled.to_string(),
            ),
            (
                "STS_NETWORK_MAX_CONNECTIONS",
                self.network.max_connections.to_string(),
            ),
            (
                "STS_NETWORK_BACKEND",
                self.network.backend.as_str().to_string(),
            ),
            (
                "STS_PROCESS_BLACKLIST_PATTERNS",
                format!("{} patterns", b.patterns.len()),
            ),
            (
                "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU",
                b.top_cpu.to_string(),
            ),
            (
                "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_READ",
                b.top_io_read.to_string(),
            ),
            (
                "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_WRITE",
                b.top_io_write.to_string(),
            ),
            (
                "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM",
                b.top_mem.to_string(),
            ),
            (
                "STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD",
                opt(b.cpu_threshold),
            ),
            (
                "STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD",
                opt(b.mem_threshold),
            ),
            (
                "STS_CUSTOM_SENSITIVE_WORDS",
                format!("{} extra words", self.process.extra_sensitive_words.len()),
            ),
            (
                "STS_HOSTNAME",
                self.hostname
                    .clone()
                    .unwrap_or_else(|| "<from host>".into()),
            ),
            ("STS_LOG_LEVEL", self.log_level.clone()),
            ("STS_GRPC_ADDR", self.grpc_addr.to_string()),
            ("STS_GRPC_TOKEN", redacted(&self.grpc_token)),
            ("STS_RELAY_ADDR", self.relay_addr.to_string()),
            ("STS_COLLECTION_INTERVAL", secs(self.collection_interval)),
            ("STS_CGROUP_ROOT", self.cgroup_root.display().to_string()),
            ("STS_ECS_AGENT_URL", url(&self.ecs_agent_url)),
            (
                "STS_EC2_METADATA_URL",
                secret::redact_url(&self.ec2_metadata_url),
            ),
            ("STS_RELAY_TOKEN", redacted(&self.relay_token)),
            (
                "STS_TRACE_RECENT_SPANS",
                self.trace_recent_spans.to_string(),
            ),
            (
                "STS_QUEUE_DIR",
                self.queue_dir
                    .as_ref()
                    .map_or("<memory only>".into(), |d| d.display().to_string()),
            ),
            ("STS_QUEUE_MAX_BYTES", self.queue_max_bytes.to_string()),
        ];
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

/// The read API's address and token, and the relay's address. The read API serves
/// every process's command line and every span: off loopback it needs a token.
fn listeners(get: &Getter) -> Result<(SocketAddr, Option<ApiKey>, SocketAddr), ConfigError> {
    let grpc_addr = get.or(
        "STS_GRPC_ADDR",
        SocketAddr::from(([127, 0, 0, 1], 7182)),
        parse::socket_addr,
    )?;
    let relay_addr = get.or(
        "STS_RELAY_ADDR",
        SocketAddr::from(([0, 0, 0, 0], 7183)),
        parse::socket_addr,
    )?;
    let grpc_token = secret::from_value_or_file(get.raw, "STS_GRPC_TOKEN", "STS_GRPC_TOKEN_FILE")?;
    if !grpc_addr.ip().is_loopback() && grpc_token.is_none() {
        return Err(ConfigError::Conflict(format!(
            "STS_GRPC_ADDR {grpc_addr} is not a loopback address: the read API then needs a token (STS_GRPC_TOKEN or STS_GRPC_TOKEN_FILE)"
        )));
    }
    let overlap = |a: std::net::IpAddr, b: std::net::IpAddr| {
        a == b || a.is_unspecified() || b.is_unspecified()
    };
    if grpc_addr.port() == relay_addr.port() && overlap(grpc_addr.ip(), relay_addr.ip()) {
        return Err(ConfigError::Conflict(format!(
            "STS_RELAY_ADDR {relay_addr} overlaps STS_GRPC_ADDR {grpc_addr}: the relay and the read API need a port each"
        )));
    }
    Ok((grpc_addr, grpc_token, relay_addr))
}

/// Looks up and parses one variable, turning a parse failure into an error that names it.
struct Getter<'a> {
    raw: &'a RawValues,
}

impl Getter<'_> {
    fn opt<T>(
        &self,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw.get(var) {
            None => Ok(None),
            Some(value) if value.trim().is_empty() => Ok(None),
            Some(value) => parse(value)
                .map(Some)
                .map_err(|reason| ConfigError::Invalid {
                    var,
                    value: value.to_string(),
                    reason,
                }),
        }
    }

    fn or<T>(
        &self,
        var: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self.opt(var, parse)?.unwrap_or(default))
    }
}

#[cfg(test)]
mod tests;
