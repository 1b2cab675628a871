//! The StackState receiver's five pipelines (topology, process agent, metrics, traces,
//! health) over one HTTP(S) client, with the API key.

use std::sync::Arc;

use tokio::task::JoinHandle;
use url::Url;

use super::client::{Credentials, ReceiverClient};
use super::pipelines::{health, metrics, process_agent, topology, traces, Base, Outlet, Spec};
use super::queue_budget::QueueBudget;
use super::sink::batch::Batcher;
use super::{ForwardError, Sink};
use crate::config::Config;
use crate::model::Snapshot;
use crate::shutdown::Shutdown;
use crate::status::Registry;
use crate::traces::SpanSink;

/// Every pipeline's spec, for the queue budget.
pub(super) const SPECS: [&Spec; 5] = [
    &topology::SPEC,
    &process_agent::SPEC,
    &metrics::SPEC,
    &traces::SPEC,
    &health::SPEC,
];

pub(super) struct Receiver {
    topology: topology::Pipeline,
    process_agent: process_agent::Pipeline,
    metrics: metrics::Pipeline,
    pub(super) traces: Arc<traces::Pipeline>,
    health: health::Pipeline,
}

impl Receiver {
    /// Opens the queues and starts one sender per pipeline, to `sts_url`.
    pub(super) fn start(
        config: &Config,
        sts_url: &Url,
        batcher: &Arc<Batcher>,
        budget: &QueueBudget,
        shutdown: &Shutdown,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> Result<Self, ForwardError> {
        if config.skip_ssl_validation {
            tracing::warn!(
                "STS_SKIP_SSL_VALIDATION=true: the receiver's certificate is not verified"
            );
        }
        let client = ReceiverClient::new(config.skip_ssl_validation)?;
        if let Some(dir) = &config.queue_dir {
            process_agent::remove_obsolete_queue(dir);
        }
        let open = |spec: &'static Spec| -> Result<Outlet, ForwardError> {
            Ok(Outlet::new(budget.open(spec)?, batcher.clone()))
        };
        let receiver = Self {
            topology: topology::Pipeline::new(open(&topology::SPEC)?),
            process_agent: process_agent::Pipeline::new(open(&process_agent::SPEC)?, config)?,
            metrics: metrics::Pipeline {
                out: open(&metrics::SPEC)?,
            },
            traces: Arc::new(traces::Pipeline::new(open(&traces::SPEC)?)),
            health: health::Pipeline {
                out: open(&health::SPEC)?,
            },
        };
        let base = |base: Base| {
            let url = match base {
                Base::Sts | Base::Otlp => None,
                Base::ProcessAgent => config.process_agent_url.clone(),
                Base::Apm => config.apm_url.clone(),
            };
            url.unwrap_or_else(|| sts_url.clone())
        };
        let credentials = Credentials {
            api_key: config.api_key.clone(),
            ..Credentials::default()
        };
        for sink in receiver.sinks() {
            tasks.push(sink.spawn(&client, base(sink.spec.base), &credentials, shutdown));
        }
        let features = (receiver.process_agent).follow_features(
            client,
            base(Base::ProcessAgent),
            credentials,
            shutdown.clone(),
        );
        tasks.extend(features);
        Ok(receiver)
    }

    pub(super) fn sinks(&self) -> [&Sink; 5] {
        [
            &self.topology.out.sink,
            &self.process_agent.out.sink,
            &self.metrics.out.sink,
            &self.traces.out.sink,
            &self.health.out.sink,
        ]
    }

    /// Topology (changes only), process agent, metrics and health messages of one cycle.
    pub(super) fn submit_snapshot(&self, snapshot: &Snapshot, healthy: bool, health_message: &str) {
        let now = crate::clock::unix_s_now();
        self.topology.submit(snapshot, now);
        self.process_agent.submit(snapshot);
        self.metrics.submit(snapshot, now);
        self.health.submit(healthy, health_message, now);
    }

    pub(super) fn spans(&self) -> Arc<dyn SpanSink> {
        self.traces.clone()
    }

    /// Each sink's counts, the process agent's with its own.
    pub(super) fn report(&self, registry: &Registry) {
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
