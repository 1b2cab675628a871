//! The process agent pipeline: the messages of [`ProcessAgent`] as batches, the features
//! the receiver offers, and the process agent's lines in status.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use url::Url;

use super::{headers, status_values, CompressError, Features, Outgoing, ProcessAgent};
use crate::config::Config;
use crate::forward::client::{Auth, Credentials, ReceiverClient};
use crate::forward::pipelines::{Answer, Base, Outlet, Spec};
use crate::model::Snapshot;
use crate::poison::IgnorePoison;
use crate::shutdown::Shutdown;
use crate::status::Registry;

pub(crate) const SPEC: Spec = Spec {
    name: "process-agent",
    status: "forward.process-agent",
    queue_weight: 1,
    base: Base::ProcessAgent,
    auth: Auth::StsHeader,
    answer: Answer::Ignored,
};

pub(crate) struct Pipeline {
    pub(crate) out: Outlet,
    /// None with `STS_PROCESS_AGENT_ENABLED=false`: no process agent messages at all.
    agent: Option<Mutex<ProcessAgent>>,
    features: Features,
    collection_interval: Duration,
}

impl Pipeline {
    pub(crate) fn new(out: Outlet, config: &Config) -> Result<Self, CompressError> {
        let features = Features::default();
        let agent = match config.process_agent_enabled {
            true => Some(Mutex::new(ProcessAgent::new(
                config.process_agent.into(),
                features.clone(),
            )?)),
            false => None,
        };
        Ok(Self {
            out,
            agent,
            features,
            collection_interval: config.collection_interval,
        })
    }

    /// The process agent's messages of this cycle, when they are due.
    pub(crate) fn submit(&self, snapshot: &Snapshot) {
        let Some(agent) = &self.agent else { return };
        let now_ms = crate::clock::unix_ms_now().max(0) as u64;
        let messages =
            agent
                .lock()
                .ignore_poison()
                .cycle(snapshot, now_ms, self.collection_interval);
        match messages {
            Ok(messages) => {
                let batches = messages.into_iter().map(|m| self.batch(m)).collect();
                self.out.sink.submit_all(batches);
            }
            Err(e) => tracing::warn!("process agent messages not made: {e}"),
        }
    }

    fn batch(&self, m: Outgoing) -> crate::forward::sink::batch::Batch {
        let headers = headers(self.out.hostname());
        self.out.batch(m.path, headers, 0, Bytes::from(m.body))
    }

    /// Asks the receiver for its features until `shutdown` (None when the process agent
    /// is off).
    pub(crate) fn follow_features(
        &self,
        client: ReceiverClient,
        base: Url,
        credentials: Credentials,
        shutdown: Shutdown,
    ) -> Option<JoinHandle<()>> {
        self.agent.as_ref()?;
        let follow = self
            .features
            .clone()
            .follow(client, base, credentials, shutdown);
        Some(tokio::spawn(follow))
    }

    /// Records the connections the tracker had no room for; the values the pipeline's
    /// status shows besides the sink's counters.
    pub(crate) fn report(&self, registry: &Registry) -> Vec<(&'static str, u64)> {
        let counts = self
            .agent
            .as_ref()
            .map(|a| a.lock().ignore_poison().counts())
            .unwrap_or_default();
        registry.set_drops(
            "process_agent.connections_untracked",
            counts.untracked_total,
        );
        status_values(&counts)
    }
}

/// Removes the `processes` queue of the intake topology the process agent protocol
/// replaced: what it holds would go to an instance the receiver no longer hears from.
pub(crate) fn remove_obsolete_queue(queue_dir: &Path) {
    let dir = queue_dir.join("processes");
    if !dir.exists() {
        return;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => tracing::info!(
            "removed {}: processes now go by the process agent protocol",
            dir.display()
        ),
        Err(e) => tracing::warn!("cannot remove the obsolete queue {}: {e}", dir.display()),
    }
}
