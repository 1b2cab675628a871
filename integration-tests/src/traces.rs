//! A daemon and a sidecar wired together for the trace tests, and a real ddtrace client.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sts_proto::daemon::v1::status_client::StatusClient;
use sts_proto::daemon::v1::{GetRecentSpansRequest, Span};

use crate::{binary, free_port, python, wait_for, workspace_root, Guard};

/// A daemon's two ports on loopback: the read API's (status) and the relay's.
#[derive(Debug, Clone, Copy)]
pub struct DaemonPorts {
    pub grpc: u16,
    pub relay: u16,
}

impl DaemonPorts {
    pub fn free() -> Self {
        Self {
            grpc: free_port(),
            relay: free_port(),
        }
    }
}

pub struct Daemon {
    pub guard: Guard,
    /// The read API's port.
    pub port: u16,
    /// The relay's port, where sidecars send.
    pub relay_port: u16,
}

impl Daemon {
    pub fn start(ports: DaemonPorts, env: &[(&str, &str)]) -> Self {
        Self::start_with_interval(ports, "60", env)
    }

    /// Collecting every `interval` seconds, unless `env` sets `STS_COLLECTION_INTERVAL`
    /// (`env` wins over every default here).
    pub fn start_with_interval(ports: DaemonPorts, interval: &str, env: &[(&str, &str)]) -> Self {
        let DaemonPorts { grpc: port, relay } = ports;
        let mut command = Command::new(binary("node-daemon"));
        command
            .arg("run")
            .env("STS_COLLECTION_INTERVAL", interval)
            .env("STS_GRPC_ADDR", format!("127.0.0.1:{port}"))
            .env("STS_RELAY_ADDR", format!("127.0.0.1:{relay}"))
            .env("STS_TRACE_RECENT_SPANS", "100000")
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let daemon = Self {
            guard: Guard::spawn(&mut command),
            port,
            relay_port: relay,
        };
        wait_for(Duration::from_secs(20), || daemon.status().map(|_| ())).expect("daemon answers");
        daemon
    }

    pub fn status(&self) -> Option<Value> {
        let addr = format!("127.0.0.1:{}", self.port);
        let out = crate::node_daemon(&[], &["status", "--json", "--addr", &addr]);
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Every span the daemon keeps in its recent window.
    pub fn spans(&self) -> Vec<Span> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let Ok(client) = StatusClient::connect(format!("http://127.0.0.1:{}", self.port)).await
            else {
                return Vec::new();
            };
            // 10,000 correlated spans are about 7 MB, past tonic's default 4 MiB.
            let mut client = client.max_decoding_message_size(256 << 20);
            let client = client.get_recent_spans(GetRecentSpansRequest { limit: 0 });
            client
                .await
                .map(|r| r.into_inner().spans)
                .unwrap_or_default()
        })
    }

    /// The host name the daemon puts in every identifier.
    pub fn hostname(&self) -> String {
        let status = self.status().expect("daemon answers");
        status["hostname"].as_str().expect("hostname").to_string()
    }

    /// Waits until the daemon holds at least `n` spans of `service`; returns them.
    pub fn wait_spans(&self, service: &str, n: usize, within: Duration) -> Vec<Span> {
        let mut last = Vec::new();
        wait_for(within, || {
            last = self
                .spans()
                .into_iter()
                .filter(|s| s.service == service)
                .collect();
            (last.len() >= n).then_some(())
        });
        last
    }
}

pub struct Sidecar {
    pub guard: Guard,
    pub port: u16,
}

impl Sidecar {
    /// A sidecar on `listen` relaying to the daemon's relay port `daemon_port`.
    pub fn start(listen: &str, daemon_port: u16, env: &[(&str, &str)]) -> Self {
        let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
        let mut command = Command::new(binary("trace-sidecar"));
        command
            .env("STS_TRACE_LISTEN_ADDR", listen)
            .env("STS_DAEMON_ADDR", format!("127.0.0.1:{daemon_port}"))
            // Off unless `env` sets them: tests run in parallel, the default ports are shared.
            .env("STS_OTLP_GRPC_ADDR", "")
            .env("STS_OTLP_HTTP_ADDR", "")
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let sidecar = Self {
            guard: Guard::spawn(&mut command),
            port,
        };
        wait_for(Duration::from_secs(10), || sidecar.health()).expect("sidecar answers");
        sidecar
    }

    pub fn health(&self) -> Option<Value> {
        let out = Command::new(binary("trace-sidecar"))
            .args(["status", "--addr", &format!("127.0.0.1:{}", self.port)])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// The outcome line of integration-tests/python/trace_client.py.
#[derive(Debug)]
pub struct ClientRun {
    pub pid: u32,
    pub create_time_ms: u64,
    pub spans: usize,
}

/// Checks what the daemon says of the process of a span of `service` (its `meta`) from the
/// client `run`: its pid, its create time (psutil's, within 2 ms), the host, and the
/// service, service instance and process URNs made of them.
pub fn assert_identity(
    service: &str,
    meta: &HashMap<String, String>,
    run: &ClientRun,
    hostname: &str,
) {
    assert_eq!(meta["span.pid"], run.pid.to_string(), "{meta:?}");
    let ms: u64 = meta["span.starttime"].parse().unwrap();
    assert!(
        ms.abs_diff(run.create_time_ms) <= 2,
        "create time {ms} vs psutil {}",
        run.create_time_ms
    );
    assert_eq!(meta["span.hostname"], hostname);
    assert_eq!(meta["span.serviceURN"], format!("urn:service:/{service}"));
    assert_eq!(meta["span.serviceName"], service);
    assert_eq!(
        meta["span.serviceInstanceURN"],
        format!(
            "urn:service-instance:/{service}:/{hostname}:{}:{ms}",
            run.pid
        )
    );
    assert_eq!(
        meta["span.processURN"],
        format!("urn:process:/{hostname}:{}:{ms}", run.pid)
    );
}

/// Environment for ddtrace pointed at `agent_url` with the given API version.
pub fn ddtrace_env(
    agent_url: &str,
    version: &str,
    service: &str,
    traces: usize,
    spans: usize,
) -> BTreeMap<String, String> {
    [
        ("DD_TRACE_AGENT_URL", agent_url.to_string()),
        ("DD_TRACE_API_VERSION", version.to_string()),
        ("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false".into()),
        ("DD_REMOTE_CONFIGURATION_ENABLED", "false".into()),
        ("DD_TRACE_STARTUP_LOGS", "false".into()),
        ("SERVICE", service.to_string()),
        ("TRACES", traces.to_string()),
        ("SPANS", spans.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs the ddtrace client on the host and parses its outcome line.
pub fn run_client(env: &BTreeMap<String, String>) -> ClientRun {
    let script = workspace_root().join("integration-tests/python/trace_client.py");
    let out = Command::new(python())
        .arg(script)
        .envs(env)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_client(&out.stdout)
}

pub fn parse_client(stdout: &[u8]) -> ClientRun {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("client printed nothing"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"));
    ClientRun {
        pid: v["pid"].as_u64().unwrap() as u32,
        create_time_ms: v["create_time_ms"].as_u64().unwrap(),
        spans: v["spans"].as_u64().unwrap() as usize,
    }
}

/// A daemon and a sidecar on free loopback ports.
pub fn stack() -> (Daemon, Sidecar) {
    let daemon = Daemon::start(DaemonPorts::free(), &[]);
    let sidecar = Sidecar::start(
        &format!("127.0.0.1:{}", free_port()),
        daemon.relay_port,
        &[],
    );
    (daemon, sidecar)
}
