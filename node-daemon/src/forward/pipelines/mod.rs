//! The five pipelines, a file each: what it sends and how it builds its messages. Each
//! names itself in a [`Spec`] (its queue, its URL, its key, its line in status).

pub(crate) mod health;
pub mod metrics;
pub mod process_agent;
pub(crate) mod topology;
pub(crate) mod traces;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Serialize;

use super::client::{Auth, MAX_ANSWER_BODY};
use super::encode::intake::INTAKE_PATH;
use super::encode::traces::split;
use super::encode::{gzip_headers, gzip_json};
use super::otlp::partial::Refused;
use super::sink::batch::{Batch, Batcher};
use super::Sink;
use crate::poison::IgnorePoison;
use crate::span::CorrelatedSpan;
use crate::traces::{record_on_last, RelayBatch};

/// What tells one pipeline from another.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Its queue's directory under `STS_QUEUE_DIR`, and its part of batch ids and logs.
    pub(crate) name: &'static str,
    /// Its collector in status.
    pub(crate) status: &'static str,
    /// Its queue's share of `STS_QUEUE_MAX_BYTES`: this over what the configured
    /// pipelines weigh together.
    pub(crate) queue_weight: u64,
    pub(crate) base: Base,
    pub(crate) auth: Auth,
    pub(crate) answer: Answer,
}

impl Spec {
    /// An intake pipeline's (topology, metrics, health): `STS_STS_URL`, the key as
    /// `?api_key=`, a queue weight of 1.
    const fn intake(name: &'static str, status: &'static str) -> Self {
        Self {
            name,
            status,
            queue_weight: 1,
            base: Base::Sts,
            auth: Auth::Query,
            answer: Answer::Ignored,
        }
    }
}

/// Which of the receiver's URLs a pipeline sends to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Base {
    /// `STS_STS_URL`.
    Sts,
    /// `STS_PROCESS_AGENT_URL`, else `STS_STS_URL`.
    ProcessAgent,
    /// `STS_APM_URL`, else `STS_STS_URL`.
    Apm,
    /// `STS_OTLP_ENDPOINT` (the OTLP export's pipelines).
    Otlp,
}

/// What a pipeline reads in an answer that took its batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    /// Nothing: a 2xx (or gRPC's OK) is all.
    Ignored,
    /// OTLP's partial success: `read` finds what the endpoint refused of the batch, counted
    /// among the drops as `<status>.<counted>`.
    PartialSuccess {
        counted: &'static str,
        read: fn(&[u8]) -> Option<Refused>,
    },
}

impl Answer {
    /// How much of an accepted answer the sender keeps for this.
    pub(crate) fn kept(self) -> usize {
        match self {
            Answer::Ignored => 0,
            Answer::PartialSuccess { .. } => MAX_ANSWER_BODY,
        }
    }
}

/// Where a pipeline's batches go: its sink, and the batcher all pipelines number theirs
/// with.
pub(crate) struct Outlet {
    pub(crate) sink: Sink,
    batcher: Arc<Batcher>,
}

impl Outlet {
    pub(crate) fn new(sink: Sink, batcher: Arc<Batcher>) -> Self {
        Self { sink, batcher }
    }

    /// The host the messages speak for.
    pub(crate) fn hostname(&self) -> &str {
        self.batcher.hostname()
    }

    /// A batch of this pipeline with the next id.
    pub(crate) fn batch(
        &self,
        path: &str,
        headers: Vec<(String, String)>,
        spans: u64,
        body: Bytes,
    ) -> Batch {
        let name = self.sink.spec.name;
        self.batcher.batch(name, path, headers, spans, body)
    }

    /// Queues an intake message (topology, metrics, health).
    pub(crate) fn submit_intake(&self, message: &impl Serialize) {
        let headers = gzip_headers("application/json");
        let batch = self.batch(INTAKE_PATH, headers, 0, gzip_json(message));
        self.sink.submit(batch);
    }

    /// Queues the spans of the sidecar batch `from` as gzip'd protobuf batches of `path`:
    /// split as `encode/traces.rs` splits them, each body and the count of spans it holds
    /// made by `encode`, the last batch recording `from`.
    pub(crate) fn submit_relayed(
        &self,
        path: &str,
        spans: Vec<CorrelatedSpan>,
        from: RelayBatch,
        mut encode: impl FnMut(&[CorrelatedSpan]) -> (Bytes, u64),
    ) {
        for (spans, relay) in record_on_last(split(spans), from) {
            let (body, count) = encode(&spans);
            let headers = gzip_headers("application/x-protobuf");
            let mut batch = self.batch(path, headers, count, body);
            batch.relay = relay;
            self.sink.submit(batch);
        }
    }
}

/// The sidecar batches a traces pipeline's queue recorded when it was opened (read
/// before its sender starts and can take any of them away), handed out once.
pub(crate) struct QueuedAtStart(Mutex<Vec<RelayBatch>>);

impl QueuedAtStart {
    pub(crate) fn read(sink: &Sink) -> Self {
        Self(Mutex::new(sink.relay_batches()))
    }

    pub(crate) fn take(&self) -> Vec<RelayBatch> {
        std::mem::take(&mut *self.0.lock().ignore_poison())
    }
}
