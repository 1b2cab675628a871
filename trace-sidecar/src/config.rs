//! trace-sidecar settings, from the environment. An invalid value stops the sidecar with
//! a message that names the variable.

pub mod keys;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::server::Limits;

#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason} (got `{value}`)")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// The relay token: its `Debug` never shows the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RelayToken(String);

impl RelayToken {
    /// The token itself, for the one field that carries it to the daemon.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RelayToken {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl std::fmt::Debug for RelayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "RelayToken(<empty>)"
        } else {
            "RelayToken(<redacted>)"
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// STS_TRACE_LISTEN_ADDR, default 0.0.0.0:8126.
    pub listen_addr: SocketAddr,
    /// STS_TRACE_LISTEN_SOCKET: also listen on this unix socket.
    pub listen_socket: Option<PathBuf>,
    /// STS_DAEMON_ADDR as `http://host:port`; default the default gateway on port 7183
    /// (the daemon's STS_RELAY_ADDR).
    pub daemon_url: String,
    /// STS_RELAY_TOKEN, or the contents of the file STS_RELAY_TOKEN_FILE names.
    pub relay_token: Option<RelayToken>,
    /// STS_TRACE_BUFFER_BYTES, default 64 MiB.
    pub buffer_bytes: usize,
    /// STS_TASK_ARN: shown in the daemon's status; the daemon finds it by address otherwise.
    pub task_arn: String,
    /// STS_TRACE_MAX_CONNECTIONS, STS_TRACE_HEADER_TIMEOUT, STS_TRACE_BODY_TIMEOUT,
    /// STS_TRACE_IDLE_TIMEOUT (seconds), STS_TRACE_MAX_HEADER_BYTES: see [`Limits`].
    pub limits: Limits,
    /// STS_OTLP_GRPC_ADDR, default 0.0.0.0:4317; None (set empty) serves no OTLP/gRPC.
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// STS_OTLP_HTTP_ADDR, default 0.0.0.0:4318; None (set empty) serves no OTLP/HTTP.
    pub otlp_http_addr: Option<SocketAddr>,
    pub log_level: String,
}

const DAEMON_PORT: u16 = 7183;

impl Config {
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| {
            env(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let invalid = |var: &'static str, value: &str, reason: &str| ConfigError {
            var,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let listen_addr = match get("STS_TRACE_LISTEN_ADDR") {
            Some(v) => v
                .parse()
                .map_err(|_| invalid("STS_TRACE_LISTEN_ADDR", &v, "expected <ip>:<port>"))?,
            None => SocketAddr::from(([0, 0, 0, 0], 8126)),
        };
        // Unset: the default port; set empty: that listener is off.
        let optional_addr = |var: &'static str, default: u16| match env(var) {
            None => Ok(Some(SocketAddr::from(([0, 0, 0, 0], default)))),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| invalid(var, &v, "expected <ip>:<port>, or empty to turn it off")),
        };
        let otlp_grpc_addr = optional_addr("STS_OTLP_GRPC_ADDR", 4317)?;
        let otlp_http_addr = optional_addr("STS_OTLP_HTTP_ADDR", 4318)?;
        let daemon_url = match get("STS_DAEMON_ADDR") {
            Some(v) => daemon_url(&v).ok_or_else(|| {
                invalid(
                    "STS_DAEMON_ADDR",
                    &v,
                    "expected <host>:<port> or http://<host>:<port>",
                )
            })?,
            None => {
                let gateway = std::fs::read_to_string("/proc/net/route")
                    .ok()
                    .and_then(|t| sts_proto::route::default_gateway(&t))
                    .map_or_else(|| "127.0.0.1".to_string(), |g| g.to_string());
                format!("http://{gateway}:{DAEMON_PORT}")
            }
        };
        let buffer_bytes = match get("STS_TRACE_BUFFER_BYTES") {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1 << 20)
                .ok_or_else(|| {
                    invalid(
                        "STS_TRACE_BUFFER_BYTES",
                        &v,
                        "expected a number of bytes, at least 1048576",
                    )
                })?,
            None => 64 << 20,
        };
        let relay_token = match (get("STS_RELAY_TOKEN"), get("STS_RELAY_TOKEN_FILE")) {
            (Some(_), Some(path)) => {
                return Err(invalid(
                    "STS_RELAY_TOKEN_FILE",
                    &path,
                    "STS_RELAY_TOKEN is set too: give the token one way",
                ))
            }
            (Some(token), None) => Some(RelayToken(token)),
            (None, Some(path)) => Some(RelayToken(
                sts_proto::secret_file::read(Path::new(&path)).map_err(|e| {
                    invalid(
                        "STS_RELAY_TOKEN_FILE",
                        &path,
                        &format!("cannot read it: {e}"),
                    )
                })?,
            )),
            (None, None) => None,
        };
        let defaults = Limits::default();
        let count = |var: &'static str, default: usize, range: std::ops::RangeInclusive<usize>| {
            let Some(v) = get(var) else {
                return Ok(default);
            };
            v.parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    let reason = format!(
                        "expected a whole number from {} to {}",
                        range.start(),
                        range.end()
                    );
                    invalid(var, &v, &reason)
                })
        };
        let seconds = |var: &'static str, default: Duration| {
            let Some(v) = get(var) else {
                return Ok(default);
            };
            v.parse::<f64>()
                .ok()
                .filter(|s| (0.01..=3600.0).contains(s))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| invalid(var, &v, "expected seconds, from 0.01 to 3600"))
        };
        let limits = Limits {
            max_connections: count(
                "STS_TRACE_MAX_CONNECTIONS",
                defaults.max_connections,
                1..=1_000_000,
            )?,
            header_timeout: seconds("STS_TRACE_HEADER_TIMEOUT", defaults.header_timeout)?,
            body_timeout: seconds("STS_TRACE_BODY_TIMEOUT", defaults.body_timeout)?,
            idle_timeout: seconds("STS_TRACE_IDLE_TIMEOUT", defaults.idle_timeout)?,
            max_header_bytes: count(
                "STS_TRACE_MAX_HEADER_BYTES",
                defaults.max_header_bytes,
                1024..=1 << 20,
            )?,
        };
        Ok(Self {
            limits,
            listen_addr,
            otlp_grpc_addr,
            otlp_http_addr,
            listen_socket: get("STS_TRACE_LISTEN_SOCKET").map(PathBuf::from),
            daemon_url,
            relay_token,
            buffer_bytes,
            task_arn: get("STS_TASK_ARN").unwrap_or_default(),
            log_level: get("STS_LOG_LEVEL")
                .unwrap_or_else(|| "info".into())
                .to_ascii_lowercase(),
        })
    }
}

/// `host:port` or `http://host:port` as an http URL; None when it is neither.
fn daemon_url(raw: &str) -> Option<String> {
    let rest = raw.strip_prefix("http://").unwrap_or(raw);
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    (!host.is_empty() && !host.contains('/')).then(|| format!("http://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env(|k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen_addr.to_string(), "0.0.0.0:8126");
        assert!(c.daemon_url.starts_with("http://") && c.daemon_url.ends_with(":7183"));
        assert_eq!(c.buffer_bytes, 64 << 20);
        assert!(c.relay_token.is_none());
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.limits.max_connections, 1024);
        assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.otlp_grpc_addr, Some("0.0.0.0:4317".parse().unwrap()));
        assert_eq!(c.otlp_http_addr, Some("0.0.0.0:4318".parse().unwrap()));
    }

    #[test]
    fn otlp_listeners_set_off_or_invalid() {
        let c = config(&[
            ("STS_OTLP_GRPC_ADDR", ""),
            ("STS_OTLP_HTTP_ADDR", "127.0.0.1:9318"),
        ])
        .unwrap();
        assert_eq!(c.otlp_grpc_addr, None);
        assert_eq!(c.otlp_http_addr, Some("127.0.0.1:9318".parse().unwrap()));
        let e = config(&[("STS_OTLP_GRPC_ADDR", "4317")]).unwrap_err();
        assert_eq!(e.var, "STS_OTLP_GRPC_ADDR");
    }

    #[test]
    fn limits_from_the_environment_and_their_errors() {
        let c = config(&[
            ("STS_TRACE_MAX_CONNECTIONS", "64"),
            ("STS_TRACE_HEADER_TIMEOUT", "0.5"),
            ("STS_TRACE_BODY_TIMEOUT", "2"),
            ("STS_TRACE_IDLE_TIMEOUT", "90"),
            ("STS_TRACE_MAX_HEADER_BYTES", "4096"),
        ])
        .unwrap();
        assert_eq!(
            c.limits,
            Limits {
                max_connections: 64,
                header_timeout: Duration::from_millis(500),
                body_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(90),
                max_header_bytes: 4096,
            }
        );
        for (var, value) in [
            ("STS_TRACE_MAX_CONNECTIONS", "0"),
            ("STS_TRACE_MAX_CONNECTIONS", "many"),
            ("STS_TRACE_HEADER_TIMEOUT", "0"),
            ("STS_TRACE_BODY_TIMEOUT", "-1"),
            ("STS_TRACE_IDLE_TIMEOUT", "1h"),
            ("STS_TRACE_MAX_HEADER_BYTES", "100"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{var}:")), "{err}");
            assert!(err.contains(&format!("(got `{value}`)")), "{err}");
        }
    }

    #[test]
    fn daemon_address_forms_and_errors() {
        assert_eq!(
            config(&[("STS_DAEMON_ADDR", "10.0.0.1:7182")])
                .unwrap()
                .daemon_url,
            "http://10.0.0.1:7182"
        );
        assert_eq!(
            config(&[("STS_DAEMON_ADDR", "http://daemon:9000/")])
                .unwrap()
                .daemon_url,
            "http://daemon:9000"
        );
        let err = config(&[("STS_DAEMON_ADDR", "daemon")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("STS_DAEMON_ADDR:"), "{err}");
        let err = config(&[("STS_TRACE_BUFFER_BYTES", "12")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("STS_TRACE_BUFFER_BYTES:"), "{err}");
        assert!(config(&[("STS_TRACE_LISTEN_ADDR", "8126")]).is_err());
    }

    #[test]
    fn the_relay_token_comes_from_a_file_and_never_shows() {
        let dir = std::env::temp_dir().join(format!("sidecar-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  from-a-file\n").unwrap();
        let path = path.to_str().unwrap();
        let c = config(&[("STS_RELAY_TOKEN_FILE", path)]).unwrap();
        assert_eq!(c.relay_token.as_ref().unwrap().expose(), "from-a-file");
        assert!(!format!("{c:?}").contains("from-a-file"));
        let err = config(&[("STS_RELAY_TOKEN_FILE", path), ("STS_RELAY_TOKEN", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("STS_RELAY_TOKEN_FILE:") && err.contains("one way"),
            "{err}"
        );
        let err = config(&[("STS_RELAY_TOKEN_FILE", "/nonexistent/token")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("STS_RELAY_TOKEN_FILE: cannot read it"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_key_is_read_and_nothing_else() {
        let asked = std::cell::RefCell::new(Vec::new());
        Config::from_env(|k| {
            asked.borrow_mut().push(k.to_string());
            None
        })
        .unwrap();
        let mut asked = asked.into_inner();
        asked.sort_unstable();
        let mut known: Vec<&str> = keys::KEYS.iter().map(|k| k.name).collect();
        known.sort_unstable();
        assert_eq!(asked, known);
    }

    #[test]
    fn a_documented_default_given_is_the_same_as_none() {
        let unset = format!("{:?}", config(&[]).unwrap());
        for key in keys::KEYS {
            let Some(value) = key
                .default
                .strip_prefix('`')
                .and_then(|d| d.strip_suffix('`'))
            else {
                continue;
            };
            let given = format!("{:?}", config(&[(key.name, value)]).unwrap());
            assert_eq!(given, unset, "{} = {value}", key.name);
        }
    }
}
