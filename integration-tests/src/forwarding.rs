//! A daemon forwarding to a capture receiver: its environment with a fresh queue
//! directory (the same one for a restarted daemon), and readers of what arrived.

use std::path::PathBuf;

use serde_json::Value;

use crate::free_port;
use crate::receiver::Receiver;
use crate::status::collectors;
use crate::traces::Daemon;

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
/// directory of its own (`STS_QUEUE_DIR`, removed on drop), and `extra` (which wins); its
/// daemons collect every second unless `extra` sets `STS_COLLECTION_INTERVAL`.
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
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self {
            queue: TempDir(dir),
            env,
        }
    }

    /// A daemon with this environment, its gRPC on `port`.
    pub fn start_daemon(&self, port: u16) -> Daemon {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Daemon::start_with_interval(port, "1", &env)
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
