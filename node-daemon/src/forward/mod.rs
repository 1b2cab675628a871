//! Forwarding: to the StackState receiver (`receiver.rs`: five pipelines in `pipelines/`,
//! topology, process agent, metrics, traces, health) and, when configured, over OTLP
//! (`otlp/`: traces and metrics), alone or beside the receiver. Each pipeline is a
//! [`Sink`] with its own queue (`queue/`, on disk under `STS_QUEUE_DIR`, sized by
//! `queue_budget.rs`) and sender, over an HTTP(S) or gRPC client (`client/`); the
//! receiver's bodies are made in `encode/`. Choices where the public facts leave one are
//! listed in docs/FORWARDING.md.

pub mod client;
pub mod encode;
pub mod otlp;
pub mod pipelines;
pub mod queue;
mod queue_budget;
mod receiver;
pub mod sink;

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::model::Snapshot;
use crate::shutdown::Shutdown;
use crate::span::CorrelatedSpan;
use crate::status::{Registry, Report};
use crate::traces::{RelayBatch, SpanSink};
use queue_budget::QueueBudget;
use receiver::Receiver;
pub(crate) use sink::Sink;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("STS_QUEUE_DIR: cannot use {path}: {reason}")]
    Queue { path: String, reason: String },
    #[error("process agent messages: {0}")]
    ProcessAgent(#[from] pipelines::process_agent::CompressError),
}

/// A running forwarder and its tasks (one sender per pipeline, and the process agent's
/// features).
pub(crate) type Started = (Arc<Forwarder>, Vec<JoinHandle<()>>);

pub(crate) struct Forwarder {
    receiver: Option<Receiver>,
    otlp: Option<Arc<otlp::Export>>,
}

impl Forwarder {
    /// Opens the queues and starts one sender per pipeline. `None` when neither a
    /// receiver (`STS_STS_URL`) nor an OTLP endpoint is configured (the embedded default).
    pub(crate) fn start(
        config: &Config,
        hostname: &str,
        shutdown: &Shutdown,
    ) -> Result<Option<Started>, ForwardError> {
        if config.sts_url.is_none() && config.otlp.is_none() {
            return Ok(None);
        }
        let mut specs = Vec::new();
        if config.sts_url.is_some() {
            specs.extend(receiver::SPECS);
        }
        if config.otlp.is_some() {
            specs.extend(otlp::SPECS);
        }
        let budget = QueueBudget::new(config.queue_dir.clone(), config.queue_max_bytes, specs);
        let batcher = Arc::new(sink::batch::Batcher::new(hostname));
        let mut tasks = Vec::new();
        let receiver = match &config.sts_url {
            Some(url) => Some(Receiver::start(
                config, url, &batcher, &budget, shutdown, &mut tasks,
            )?),
            None => None,
        };
        let otlp = match &config.otlp {
            Some(otlp) => Some(Arc::new(otlp::Export::start(
                otlp, &batcher, &budget, shutdown, &mut tasks,
            )?)),
            None => None,
        };
        Ok(Some((Arc::new(Self { receiver, otlp }), tasks)))
    }

    fn sinks(&self) -> Vec<&Sink> {
        let receiver = self.receiver.iter().flat_map(|r| r.sinks());
        receiver
            .chain(self.otlp.iter().flat_map(|o| o.sinks()))
            .collect()
    }

    /// Registers each pipeline's line in status.
    pub(crate) fn register(&self, registry: &Registry) {
        for sink in self.sinks() {
            registry.register(sink.spec.status, true);
        }
    }

    /// Sends one cycle: to the receiver as topology (changes only), process agent,
    /// metrics and health messages; over OTLP as metrics.
    pub(crate) fn submit_snapshot(&self, snapshot: &Snapshot, healthy: bool, health_message: &str) {
        if let Some(receiver) = &self.receiver {
            receiver.submit_snapshot(snapshot, healthy, health_message);
        }
        if let Some(otlp) = &self.otlp {
            otlp.submit_snapshot(snapshot);
        }
    }

    /// Where the relay hands correlated spans: the receiver's traces pipeline, the OTLP
    /// export's, or both.
    pub(crate) fn spans(&self) -> Arc<dyn SpanSink> {
        let mut sinks: Vec<Arc<dyn SpanSink>> = Vec::new();
        sinks.extend(self.receiver.as_ref().map(Receiver::spans));
        sinks.extend(self.otlp.clone().map(|o| o as Arc<dyn SpanSink>));
        match sinks.len() {
            1 => sinks.remove(0),
            _ => Arc::new(Both(sinks)),
        }
    }
}

/// Spans for the receiver and the OTLP endpoint: each queues them (cheap clones of the
/// relayed bytes); a sidecar batch is known after a restart if either queue holds it.
struct Both(Vec<Arc<dyn SpanSink>>);

impl SpanSink for Both {
    fn submit(&self, spans: Vec<CorrelatedSpan>, from: RelayBatch) {
        if let Some((last, rest)) = self.0.split_last() {
            for sink in rest {
                sink.submit(spans.clone(), from.clone());
            }
            last.submit(spans, from);
        }
    }

    fn queued_at_start(&self) -> Vec<RelayBatch> {
        let mut seen = std::collections::HashSet::new();
        let all = self.0.iter().flat_map(|s| s.queued_at_start());
        all.filter(|batch| seen.insert(batch.clone())).collect()
    }
}

impl Report for Forwarder {
    /// Each sink's counts, the process agent's with its own.
    fn report(&self, registry: &Registry) {
        if let Some(receiver) = &self.receiver {
            receiver.report(registry);
        }
        if let Some(otlp) = &self.otlp {
            otlp.report(registry);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::shutdown;
    use crate::traces::relay::tests::batch;
    use crate::traces::{Correlator, RelayService, TraceState};

    /// Both destinations configured (neither answers), queues on disk in `dir`.
    fn config(dir: &std::path::Path) -> Config {
        Config::from_pairs(&[
            ("STS_STS_URL", "http://127.0.0.1:9/stsAgent"),
            ("STS_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("STS_QUEUE_DIR", &dir.display().to_string()),
        ])
        .unwrap()
    }

    #[test]
    fn spans_go_to_both_queues_and_either_knows_a_batch_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (_trigger, stop) = shutdown::channel();
        // A runtime per daemon: dropping it ends the senders holding the queues' locks.
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        runtime().block_on(async {
            let (forwarder, _tasks) = super::Forwarder::start(&config(dir.path()), "h", &stop)
                .unwrap()
                .unwrap();
            let names: Vec<&str> = forwarder.sinks().iter().map(|s| s.spec.name).collect();
            assert_eq!(names.len(), 7, "{names:?}");
            let state = TraceState::new(0);
            let relay = RelayService::new(
                state,
                Correlator::new("h", None),
                None,
                Some(forwarder.spans()),
            );
            assert_eq!(relay.take(batch(5, 3), "peer").unwrap().reason, "");
            let receiver = forwarder.receiver.as_ref().unwrap();
            let otlp = forwarder.otlp.as_ref().unwrap();
            assert_eq!(receiver.traces.out.sink.queued().0, 1);
            assert_eq!(otlp.traces.sink.queued().0, 1);
        });
        // Only the OTLP queue is left holding it: still a duplicate to the next daemon.
        std::fs::remove_dir_all(dir.path().join("traces")).unwrap();
        runtime().block_on(async {
            let (forwarder, _tasks) = super::Forwarder::start(&config(dir.path()), "h", &stop)
                .unwrap()
                .unwrap();
            let state = TraceState::new(0);
            let relay = RelayService::new(
                state.clone(),
                Correlator::new("h", None),
                None,
                Some(forwarder.spans()),
            );
            assert_eq!(relay.take(batch(5, 3), "peer").unwrap().reason, "duplicate");
            assert_eq!(state.spans_duplicate(), 3);
        });
    }
}
