//! Forwarding to the StackState receiver: five pipelines (`pipelines/`: topology, process
//! agent, metrics, traces, health), each a [`Sink`] with its own queue (`queue/`, on disk
//! under `STS_QUEUE_DIR`) and sender, over one HTTP(S) client (`client.rs`); bodies are
//! made in `encode/`. Choices where the public facts leave one are listed in docs/FORWARDING.md.

pub mod client;
pub mod encode;
pub mod pipelines;
pub mod queue;
pub mod sink;

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::model::Snapshot;
use crate::shutdown::Shutdown;
use crate::status::{Registry, Report};
use crate::traces::SpanSink;
use client::ReceiverClient;
use pipelines::{health, metrics, process_agent, topology, traces, Base, Outlet, Spec};
pub(crate) use sink::Sink;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("STS_QUEUE_DIR: cannot use {path}: {reason}")]
    Queue { path: String, reason: String },
    #[error("process agent messages: {0}")]
    ProcessAgent(#[from] process_agent::CompressError),
}

/// A running forwarder and its tasks (one sender per pipeline, and the process agent's
/// features).
pub(crate) type Started = (Arc<Forwarder>, Vec<JoinHandle<()>>);

pub(crate) struct Forwarder {
    topology: topology::Pipeline,
    process_agent: process_agent::Pipeline,
    metrics: metrics::Pipeline,
    traces: Arc<traces::Pipeline>,
    health: health::Pipeline,
}

impl Forwarder {
    /// Opens the queues and starts one sender per pipeline. `None` when no receiver is
    /// configured (the embedded default).
    pub(crate) fn start(
        config: &Config,
        hostname: &str,
        shutdown: &Shutdown,
    ) -> Result<Option<Started>, ForwardError> {
        let Some(sts_url) = config.sts_url.clone() else {
            return Ok(None);
        };
        if config.skip_ssl_validation {
            tracing::warn!(
                "STS_SKIP_SSL_VALIDATION=true: the receiver's certificate is not verified"
            );
        }
        let client = ReceiverClient::new(config.skip_ssl_validation)?;
        if let Some(dir) = &config.queue_dir {
            process_agent::remove_obsolete_queue(dir);
        }
        let batcher = Arc::new(sink::batch::Batcher::new(hostname));
        let open = |spec: &'static Spec| -> Result<Outlet, ForwardError> {
            let sink = Sink::open(spec, config.queue_dir.as_deref(), config.queue_max_bytes)?;
            Ok(Outlet::new(sink, batcher.clone()))
        };
        let forwarder = Arc::new(Self {
            topology: topology::Pipeline::new(open(&topology::SPEC)?),
            process_agent: process_agent::Pipeline::new(open(&process_agent::SPEC)?, config)?,
            metrics: metrics::Pipeline {
                out: open(&metrics::SPEC)?,
            },
            traces: Arc::new(traces::Pipeline::new(open(&traces::SPEC)?)),
            health: health::Pipeline {
                out: open(&health::SPEC)?,
            },
        });
        let base = |base: Base| {
            let url = match base {
                Base::Sts => None,
                Base::ProcessAgent => config.process_agent_url.clone(),
                Base::Apm => config.apm_url.clone(),
            };
            url.unwrap_or_else(|| sts_url.clone())
        };
        let key = &config.api_key;
        let mut tasks: Vec<JoinHandle<()>> = forwarder
            .sinks()
            .into_iter()
            .map(|sink| {
                let base = base(sink.spec.base);
                let run = sink
                    .clone()
                    .run(client.clone(), base, key.clone(), shutdown.clone());
                tokio::spawn(run)
            })
            .collect();
        let process_url = base(Base::ProcessAgent);
        let features = (forwarder.process_agent).follow_features(
            client,
            process_url,
            key.clone(),
            shutdown.clone(),
        );
        tasks.extend(features);
        Ok(Some((forwarder, tasks)))
    }

    fn sinks(&self) -> [&Sink; 5] {
        [
            &self.topology.out.sink,
            &self.process_agent.out.sink,
            &self.metrics.out.sink,
            &self.traces.out.sink,
            &self.health.out.sink,
        ]
    }

    /// Registers each pipeline's line in status.
    pub(crate) fn register(&self, registry: &Registry) {
        for sink in self.sinks() {
            registry.register(sink.spec.status, true);
        }
    }

    /// Turns one cycle into topology (changes only), process agent, metrics and health
    /// messages.
    pub(crate) fn submit_snapshot(&self, snapshot: &Snapshot, healthy: bool, health_message: &str) {
        let now = crate::clock::unix_s_now();
        self.topology.submit(snapshot, now);
        self.process_agent.submit(snapshot);
        self.metrics.submit(snapshot, now);
        self.health.submit(healthy, health_message, now);
    }

    /// Where the relay hands correlated spans: the traces pipeline.
    pub(crate) fn spans(&self) -> Arc<dyn SpanSink> {
        self.traces.clone()
    }
}

impl Report for Forwarder {
    /// Each sink's counts, the process agent's with its own.
    fn report(&self, registry: &Registry) {
        let agent_values = self.process_agent.report(registry);
        for sink in self.sinks() {
            let extra: &[_] = match sink.spec.name == process_agent::SPEC.name {
                true => &agent_values,
                false => &[],
            };
            sink.report(registry, extra);
        }
    }
}
