//! Daemon configuration: the StackState agent's `STS_*` environment variables, optionally
//! over a YAML file with the same keys. Every value is validated at start; an error names
//! the variable and says why.

pub mod keys;
pub mod otlp;
mod parse;
pub mod secret;
mod source;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use url::Url;

pub use otlp::{OtlpConfig, OtlpProtocol};
pub use secret::ApiKey;
pub use source::RawValues;

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
    #[error("{var}: {reason} (the value is a secret and not shown)")]
    Secret { var: &'static str, reason: String },
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
    /// OTLP export, beside the receiver or alone; None without `STS_OTLP_ENDPOINT`.
    pub otlp: Option<OtlpConfig>,
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
        let otlp = otlp::load(&get)?;
        // With a receiver or an OTLP endpoint the spans go there; a window would copy
        // every span.
        let trace_recent_spans = match sts_url.is_some() || otlp.is_some() {
            true => get
                .opt("STS_TRACE_RECENT_SPANS", parse::count)?
                .unwrap_or(0),
            false => get.value("STS_TRACE_RECENT_SPANS", parse::count)?,
        };
        Ok(Self {
            api_key: get.opt("STS_API_KEY", |key| Ok(ApiKey::new(key.trim())))?,
            process_agent_url: get
                .opt("STS_PROCESS_AGENT_URL", parse::http_url)?
                .or_else(|| sts_url.clone()),
            apm_url: get
                .opt("STS_APM_URL", parse::http_url)?
                .or_else(|| sts_url.clone()),
            sts_url,
            skip_ssl_validation: get.value("STS_SKIP_SSL_VALIDATION", parse::boolean)?,
            process_agent_enabled: get.value("STS_PROCESS_AGENT_ENABLED", parse::boolean)?,
            process_agent: ProcessAgentConfig {
                interval: get.value("STS_PROCESS_AGENT_INTERVAL", parse::seconds)?,
                short_lived_processes: get.value(
                    "STS_PROCESS_SHORT_LIVED_QUALIFIER_SECS",
                    parse::seconds_or_zero,
                )?,
                short_lived_connections: get.value(
                    "STS_NETWORK_RELATION_SHORT_LIVED_QUALIFIER_SECS",
                    parse::seconds_or_zero,
                )?,
            },
            apm_enabled: get.value("STS_APM_ENABLED", parse::boolean)?,
            network_tracing_enabled: get.value("STS_NETWORK_TRACING_ENABLED", parse::boolean)?,
            network: NetworkConfig {
                backend: get.value("STS_NETWORK_BACKEND", NetworkBackend::parse)?,
                max_connections: get.value("STS_NETWORK_MAX_CONNECTIONS", parse::positive_count)?,
            },
            process: ProcessConfig {
                blacklist: BlacklistConfig {
                    patterns: get
                        .opt("STS_PROCESS_BLACKLIST_PATTERNS", parse::regexes)?
                        .unwrap_or_else(default_blacklist),
                    top_cpu: get.value("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU", parse::count)?,
                    top_io_read: get
                        .value("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_READ", parse::count)?,
                    top_io_write: get.value(
                        "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_WRITE",
                        parse::count,
                    )?,
                    top_mem: get.value("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM", parse::count)?,
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
            hostname: get.opt("STS_HOSTNAME", |host| Ok(host.trim().to_string()))?,
            log_level: get.value("STS_LOG_LEVEL", parse::log_level)?,
            grpc_addr,
            grpc_token,
            relay_addr,
            collection_interval: get.value("STS_COLLECTION_INTERVAL", parse::seconds)?,
            cgroup_root: get.value("STS_CGROUP_ROOT", parse::absolute_path)?,
            ecs_agent_url: get.opt("STS_ECS_AGENT_URL", parse::http_url)?,
            ec2_metadata_url: get.value("STS_EC2_METADATA_URL", parse::http_url)?,
            relay_token: secret::from_value_or_file(
                raw,
                "STS_RELAY_TOKEN",
                "STS_RELAY_TOKEN_FILE",
            )?,
            trace_recent_spans,
            // An empty value (not an unset one) keeps the queues in memory.
            queue_dir: match raw.get("STS_QUEUE_DIR").map(str::trim) {
                Some("") => None,
                _ => Some(get.value("STS_QUEUE_DIR", parse::absolute_path)?),
            },
            queue_max_bytes: get.value("STS_QUEUE_MAX_BYTES", parse::count)? as u64,
            otlp,
        })
    }

    /// The configuration of these variables and no others (for tests).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let raw = RawValues::load(None, |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })?;
        Self::from_raw(&raw)
    }

    /// The effective configuration for the status output: every key, secrets redacted.
    pub fn summary(&self) -> BTreeMap<String, String> {
        keys::KEYS
            .iter()
            .filter_map(|key| Some((key.name.to_string(), key.show?(self))))
            .collect()
    }
}

/// The read API's address and token, and the relay's address. The read API serves
/// every process's command line and every span: off loopback it needs a token.
fn listeners(get: &Getter) -> Result<(SocketAddr, Option<ApiKey>, SocketAddr), ConfigError> {
    let grpc_addr = get.value("STS_GRPC_ADDR", parse::socket_addr)?;
    let relay_addr = get.value("STS_RELAY_ADDR", parse::socket_addr)?;
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

    /// The key's value, or its default from `keys` parsed the same way.
    fn value<T>(
        &self,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.opt(var, &parse)? {
            Some(value) => Ok(value),
            None => {
                let default = keys::find(var).default_value();
                Ok(parse(default)
                    .unwrap_or_else(|reason| panic!("{var}: the default `{default}`: {reason}")))
            }
        }
    }
}

#[cfg(test)]
mod tests;
