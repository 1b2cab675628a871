//! OTLP export (`STS_OTLP_ENDPOINT`): the correlated spans (`spans.rs`) and each cycle's
//! host, process and container metrics (`metrics.rs`), under resources with the
//! semantic conventions' attributes (`resource.rs`, from what the last cycle saw:
//! `known.rs`), over OTLP/HTTP (`/v1/traces`, `/v1/metrics`, protobuf) or OTLP/gRPC,
//! gzip-compressed, with `STS_OTLP_HEADERS`. Two pipelines with their own queues and
//! senders, as the receiver's; they run beside the receiver's or alone.

mod known;
mod metrics;
pub(crate) mod partial;
mod resource;
mod spans;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use tokio::task::JoinHandle;

use super::client::{Auth, Credentials, ReceiverClient, Route};
use super::encode::gzip::gzip;
use super::encode::gzip_headers;
use super::pipelines::{Answer, Base, Outlet, QueuedAtStart, Spec};
use super::queue_budget::QueueBudget;
use super::sink::batch::Batcher;
use super::{ForwardError, Sink};
use crate::clock::unix_ms_now;
use crate::config::{OtlpConfig, OtlpProtocol};
use crate::model::Snapshot;
use crate::poison::IgnorePoison;
use crate::shutdown::Shutdown;
use crate::span::CorrelatedSpan;
use crate::status::Registry;
use crate::traces::{RelayBatch, SpanSink};
use known::Known;

const TRACES_PATH: &str = "/v1/traces";
const METRICS_PATH: &str = "/v1/metrics";
/// Resources in one metrics request at most.
const MAX_RESOURCES: usize = 500;

/// The batch paths' gRPC methods.
const GRPC_ROUTES: &[Route] = &[
    (
        TRACES_PATH,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    ),
    (
        METRICS_PATH,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    ),
];

pub(crate) const TRACES: Spec = Spec {
    name: "otlp-traces",
    status: "forward.otlp.traces",
    queue_weight: 4,
    base: Base::Otlp,
    auth: Auth::EndpointHeaders,
    answer: Answer::PartialSuccess {
        counted: "rejected_spans",
        read: partial::of_traces,
    },
};

pub(crate) const METRICS: Spec = Spec {
    name: "otlp-metrics",
    status: "forward.otlp.metrics",
    queue_weight: 1,
    base: Base::Otlp,
    auth: Auth::EndpointHeaders,
    answer: Answer::PartialSuccess {
        counted: "rejected_data_points",
        read: partial::of_metrics,
    },
};

pub(super) const SPECS: [&Spec; 2] = [&TRACES, &METRICS];

pub(crate) struct Export {
    pub(super) traces: Outlet,
    metrics: Outlet,
    known: Mutex<Arc<Known>>,
    machine_id: Option<String>,
    queued_at_start: QueuedAtStart,
    /// Spans that did not decode (and so were not sent).
    undecodable_spans: AtomicU64,
}

impl Export {
    /// Opens the two queues and starts their senders.
    pub(super) fn start(
        config: &OtlpConfig,
        batcher: &Arc<Batcher>,
        budget: &QueueBudget,
        shutdown: &Shutdown,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> Result<Self, ForwardError> {
        if config.skip_ssl_validation {
            tracing::warn!(
                "STS_OTLP_SKIP_SSL_VALIDATION=true: the OTLP endpoint's certificate is not verified"
            );
        }
        let client = match config.protocol {
            OtlpProtocol::Grpc => ReceiverClient::grpc(config.skip_ssl_validation, GRPC_ROUTES)?,
            OtlpProtocol::HttpProtobuf => ReceiverClient::new(config.skip_ssl_validation)?,
        };
        let traces = Outlet::new(budget.open(&TRACES)?, batcher.clone());
        let metrics = Outlet::new(budget.open(&METRICS)?, batcher.clone());
        let credentials = Credentials {
            api_key: None,
            headers: config.headers.clone().into(),
        };
        for sink in [&traces.sink, &metrics.sink] {
            let base = config.endpoint.clone();
            tasks.push(sink.spawn(&client, base, &credentials, shutdown));
        }
        tracing::info!(
            endpoint = %crate::config::secret::redact_url(&config.endpoint),
            protocol = config.protocol.as_str(),
            "exporting traces and metrics over OTLP"
        );
        let queued_at_start = QueuedAtStart::read(&traces.sink);
        Ok(Self {
            traces,
            metrics,
            known: Mutex::default(),
            machine_id: resource::machine_id(),
            queued_at_start,
            undecodable_spans: AtomicU64::new(0),
        })
    }

    pub(super) fn sinks(&self) -> [&Sink; 2] {
        [&self.traces.sink, &self.metrics.sink]
    }

    /// Records what the cycle saw (for the spans' resources) and queues its metrics.
    pub(super) fn submit_snapshot(&self, snapshot: &Snapshot) {
        let known = Arc::new(Known::of(snapshot, self.machine_id.as_deref()));
        *self.known.lock().ignore_poison() = known.clone();
        let now_ns = u64::try_from(unix_ms_now())
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        let request = metrics::request(snapshot, &known, now_ns);
        // A host of thousands of processes makes requests of a few hundred resources each,
        // well under the 4 MiB gRPC servers take by default.
        let mut resources = request.resource_metrics;
        let mut batches = Vec::new();
        while !resources.is_empty() {
            let rest = resources.split_off(resources.len().min(MAX_RESOURCES));
            let part = ExportMetricsServiceRequest {
                resource_metrics: std::mem::replace(&mut resources, rest),
            };
            let body = Bytes::from(gzip(&part.encode_to_vec()));
            let headers = gzip_headers("application/x-protobuf");
            batches.push(self.metrics.batch(METRICS_PATH, headers, 0, body));
        }
        self.metrics.sink.submit_all(batches);
    }

    pub(super) fn report(&self, registry: &Registry) {
        let undecodable = self.undecodable_spans.load(Ordering::Relaxed);
        registry.set_drops(&format!("{}.undecodable_spans", TRACES.status), undecodable);
        for sink in self.sinks() {
            sink.report(registry, &[]);
        }
    }
}

impl SpanSink for Export {
    /// Queued (on disk with `STS_QUEUE_DIR`) when this returns.
    fn submit(&self, spans: Vec<CorrelatedSpan>, from: RelayBatch) {
        let known = self.known.lock().ignore_poison().clone();
        self.traces
            .submit_relayed(TRACES_PATH, spans, from, |spans| {
                let (request, undecodable) = spans::request(spans, &known);
                self.undecodable_spans
                    .fetch_add(undecodable, Ordering::Relaxed);
                let body = Bytes::from(gzip(&request.encode_to_vec()));
                (body, spans.len() as u64 - undecodable)
            });
    }

    fn queued_at_start(&self) -> Vec<RelayBatch> {
        self.queued_at_start.take()
    }
}
