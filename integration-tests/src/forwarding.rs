//! A daemon forwarding to a capture receiver: its environment with a fresh queue
//! directory (the same one for a restarted daemon), and readers of what arrived.

use std::path::PathBuf;

use serde_json::Value;

use crate::free_port;
use crate::receiver::{ProcessAgentMessage, Receiver};
use crate::status::collectors;
use crate::traces::{Daemon, DaemonPorts};
use sts_proto::process_agent::v1 as pb;

/// The API key the daemons of these tests send.
pub const API_KEY: &str = "it-forward-api-key-0042";

/// A directory removed at the end.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The environment of a daemon sending to a receiver: its URL, [`API_KEY`], a queue
/// directory of its own (`STS_QUEUE_DIR`, removed on drop), the process agent messages
/// every second without the short-lived filters, and `extra` (which wins); its daemons
/// collect every second unless `extra` sets `STS_COLLECTION_INTERVAL`.
pub struct ForwardSetup {
    pub queue: TempDir,
    pub env: Vec<(String, String)>,
}

impl ForwardSetup {
    pub fn new(receiver: &Receiver, extra: &[(&str, &str)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("sts-queue-{}-{}", std::process::id(), free_port()));
        let mut env: Vec<(String, String)> = vec![
            ("STS_STS_URL".into(), receiver.url()),
            ("STS_API_KEY".into(), API_KEY.into()),
            ("STS_QUEUE_DIR".into(), dir.display().to_string()),
            ("STS_PROCESS_AGENT_INTERVAL".into(), "1".into()),
            ("STS_PROCESS_SHORT_LIVED_QUALIFIER_SECS".into(), "0".into()),
            (
                "STS_NETWORK_RELATION_SHORT_LIVED_QUALIFIER_SECS".into(),
                "0".into(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self {
            queue: TempDir(dir),
            env,
        }
    }

    /// The environment, as `Daemon::start` takes it.
    pub fn vars(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// A daemon with this environment on `ports`.
    pub fn start_daemon(&self, ports: DaemonPorts) -> Daemon {
        Daemon::start_with_interval(ports, "1", &self.vars())
    }
}

/// Topology messages of one instance type, oldest first.
pub fn topologies(receiver: &Receiver, instance: &str) -> Vec<Value> {
    receiver
        .intake_messages()
        .into_iter()
        .flat_map(|m| m["topologies"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["instance"]["type"] == instance)
        .collect()
}

/// The external ids of a topology message's components.
pub fn component_ids(topology: &Value) -> Vec<String> {
    topology["components"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["externalId"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The forwarding sinks (`forward.<pipeline>`) of a `node-daemon status --json` answer.
pub fn forward_sinks(status: &Value) -> Vec<&Value> {
    collectors(status)
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("forward."))
        })
        .collect()
}

/// A sink sending (`ok`) with nothing left queued.
pub fn sink_idle(sink: &Value) -> bool {
    sink["state"] == "ok" && sink["counts"]["queued_batches"] == 0
}

/// Every process the accepted process agent messages carried (full messages and the
/// updates of incremental ones), oldest first.
pub fn reported_processes(receiver: &Receiver) -> Vec<pb::Process> {
    use pb::collector_command::Command as C;
    let mut out = Vec::new();
    for (_, m) in receiver.process_agent_messages() {
        match m {
            ProcessAgentMessage::Proc(p) => out.extend(p.processes),
            ProcessAgentMessage::Commands(c) => {
                out.extend(c.commands.into_iter().filter_map(|c| match c.command? {
                    C::UpdateProcess(p) | C::UpdateProcessMetrics(p) => Some(p),
                    _ => None,
                }))
            }
            ProcessAgentMessage::Connections(_) => {}
        }
    }
    out
}

/// Every connection the accepted `CollectorConnections` carried, oldest first.
pub fn reported_connections(receiver: &Receiver) -> Vec<pb::Connection> {
    receiver
        .process_agent_messages()
        .into_iter()
        .filter_map(|(_, m)| match m {
            ProcessAgentMessage::Connections(c) => Some(c.connections),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The accepted full `CollectorProc` messages, oldest first.
pub fn collector_procs(receiver: &Receiver) -> Vec<pb::CollectorProc> {
    receiver
        .process_agent_messages()
        .into_iter()
        .filter_map(|(_, m)| match m {
            ProcessAgentMessage::Proc(p) => Some(p),
            _ => None,
        })
        .collect()
}
