//! The five pipelines, a file each: what it sends and how it builds its messages. Each
//! names itself in a [`Spec`] (its queue, its URL, its key, its line in status).

pub mod health;
pub mod metrics;
pub mod process_agent;
pub mod topology;
pub mod traces;

use std::sync::Arc;

use serde::Serialize;

use super::client::Auth;
use super::encode::intake::INTAKE_PATH;
use super::encode::{gzip_headers, gzip_json};
use super::sink::batch::{Batch, Batcher};
use super::Sink;

/// What tells one pipeline from another.
#[derive(Debug)]
pub struct Spec {
    /// Its queue's directory under `STS_QUEUE_DIR`, and its part of batch ids and logs.
    pub name: &'static str,
    /// Its collector in status.
    pub status: &'static str,
    /// Its queue takes 1/`queue_share` of `STS_QUEUE_MAX_BYTES`.
    pub queue_share: u64,
    pub base: Base,
    pub auth: Auth,
}

/// Which of the receiver's URLs a pipeline sends to.
#[derive(Debug, Clone, Copy)]
pub enum Base {
    /// `STS_STS_URL`.
    Sts,
    /// `STS_PROCESS_AGENT_URL`, else `STS_STS_URL`.
    ProcessAgent,
    /// `STS_APM_URL`, else `STS_STS_URL`.
    Apm,
}

/// Where a pipeline's batches go: its sink, and the batcher all pipelines number theirs
/// with.
pub struct Outlet {
    pub sink: Sink,
    batcher: Arc<Batcher>,
}

impl Outlet {
    pub fn new(sink: Sink, batcher: Arc<Batcher>) -> Self {
        Self { sink, batcher }
    }

    /// The host the messages speak for.
    pub fn hostname(&self) -> &str {
        self.batcher.hostname()
    }

    /// A batch of this pipeline with the next id.
    pub fn batch(
        &self,
        path: &str,
        headers: Vec<(String, String)>,
        spans: u64,
        body: bytes::Bytes,
    ) -> Batch {
        let name = self.sink.spec.name;
        self.batcher.batch(name, path, headers, spans, body)
    }

    /// Queues an intake message (topology, metrics, health).
    pub fn submit_intake(&self, message: &impl Serialize) {
        let headers = gzip_headers("application/json");
        let batch = self.batch(INTAKE_PATH, headers, 0, gzip_json(message));
        self.sink.submit(batch);
    }
}
