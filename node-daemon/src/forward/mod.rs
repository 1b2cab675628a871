//! Forwarding to the StackState receiver: five pipelines (topology, process-agent,
//! metrics, traces, health), each a [`Sink`] with its own queue (on disk under
//! `STS_QUEUE_DIR`) and sender. Choices where the public facts leave one are listed in the
//! README.

pub mod client;
pub mod encode;
pub mod pipelines;
pub mod queue;
pub mod sink;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::config::{ApiKey, Config};
use crate::model::Snapshot;
use crate::span::CorrelatedSpan;
use client::ReceiverClient;
use encode::diff::TopologyDiff;
use encode::{gzip, intake, traces};
use pipelines::process_agent::{self, Features, Outgoing, ProcessAgent};
use queue::DiskQueue;
use sink::batch::{Batch, RelayBatch};
pub use sink::Sink;

/// All of the ECS topology again every this many cycles; changes only in between.
const FULL_SNAPSHOT_EVERY: u64 = 6;
/// Memory queue per pipeline when no disk queue is configured.
const MEMORY_CAP: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("STS_QUEUE_DIR: cannot use {path}: {reason}")]
    Queue { path: String, reason: String },
    #[error("process agent messages: {0}")]
    ProcessAgent(#[from] process_agent::CompressError),
}

/// A running forwarder and its tasks (one sender per pipeline).
pub type Started = (Arc<Forwarder>, Vec<JoinHandle<()>>);

/// How a pipeline's requests carry the API key (added when sending, never stored).
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    /// `?api_key=` on the URL, as the agent sends intake.
    Query,
    /// `DD-Api-Key` header, as the trace agent sends.
    Header,
    /// `sts-api-key` header, as the process agent sends.
    StsHeader,
}

pub struct Forwarder {
    hostname: String,
    pub topology: Sink,
    pub process_agent: Sink,
    pub metrics: Sink,
    pub traces: Sink,
    pub health: Sink,
    ecs_diff: Mutex<TopologyDiff>,
    /// None with `STS_PROCESS_AGENT_ENABLED=false`: no process agent messages at all.
    agent: Option<Mutex<ProcessAgent>>,
    collection_interval: Duration,
    /// Kept from batch to batch (a batch finding it busy gets one of its own).
    trace_encoder: Mutex<traces::Encoder>,
    /// The sidecar batches whose spans were in the traces queue when it was opened.
    relay_batches_queued: Mutex<Vec<RelayBatch>>,
    sequence: AtomicU64,
    started_ms: i64,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where intake messages (topology, metrics, health) and traces go, below their base URL.
pub const INTAKE_PATH: &str = "/intake";
pub const TRACES_PATH: &str = "/api/v0.2/traces";

/// The headers of a gzip body of `content_type` (every batch's body is one).
pub fn gzip_headers(content_type: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".to_string(), content_type.to_string()),
        ("Content-Encoding".to_string(), "gzip".to_string()),
    ]
}

/// A JSON message as a gzip body.
pub fn gzip_json(value: &impl serde::Serialize) -> Bytes {
    let json = serde_json::to_vec(value).expect("JSON to memory cannot fail");
    Bytes::from(gzip::gzip(&json))
}

impl Forwarder {
    /// Opens the queues and starts one sender per pipeline. `None` when no receiver is
    /// configured (the embedded default).
    pub fn start(
        config: &Config,
        hostname: &str,
        stop: watch::Receiver<bool>,
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
        let open = |name: &'static str, share: u64| -> Result<Sink, ForwardError> {
            let disk = match &config.queue_dir {
                Some(dir) => {
                    let dir = dir.join(name);
                    let max = (config.queue_max_bytes / share).max(1 << 20);
                    Some(DiskQueue::open(&dir, max).map_err(|e| ForwardError::Queue {
                        path: dir.display().to_string(),
                        reason: e.to_string(),
                    })?)
                }
                None => None,
            };
            Ok(Sink::new(name, MEMORY_CAP, disk))
        };
        if let Some(dir) = &config.queue_dir {
            remove_obsolete_queue(&dir.join("processes"));
        }
        let traces = open("traces", 2)?;
        let features = Features::default();
        // Before the sender can take any of them away.
        let relay_batches_queued = Mutex::new(traces.relay_batches());
        let forwarder = Arc::new(Self {
            hostname: hostname.to_string(),
            topology: open("topology", 8)?,
            process_agent: open("process-agent", 8)?,
            metrics: open("metrics", 8)?,
            traces,
            health: open("health", 8)?,
            ecs_diff: Mutex::new(TopologyDiff::new(FULL_SNAPSHOT_EVERY)),
            agent: match config.process_agent_enabled {
                true => Some(Mutex::new(ProcessAgent::new(
                    config.process_agent.into(),
                    features.clone(),
                )?)),
                false => None,
            },
            collection_interval: config.collection_interval,
            trace_encoder: Mutex::default(),
            relay_batches_queued,
            sequence: AtomicU64::new(0),
            started_ms: crate::status::unix_ms_now(),
        });
        let process_url = config
            .process_agent_url
            .clone()
            .unwrap_or_else(|| sts_url.clone());
        let apm_url = config.apm_url.clone().unwrap_or_else(|| sts_url.clone());
        let key = config.api_key.clone();
        let spawn = |sink: &Sink, base: Url, auth: Auth| {
            tokio::spawn(
                sink.clone()
                    .run(client.clone(), base, key.clone(), auth, stop.clone()),
            )
        };
        let mut tasks = vec![
            spawn(&forwarder.topology, sts_url.clone(), Auth::Query),
            spawn(
                &forwarder.process_agent,
                process_url.clone(),
                Auth::StsHeader,
            ),
            spawn(&forwarder.metrics, sts_url.clone(), Auth::Query),
            spawn(&forwarder.traces, apm_url, Auth::Header),
            spawn(&forwarder.health, sts_url, Auth::Query),
        ];
        if config.process_agent_enabled {
            tasks.push(tokio::spawn(features.follow(
                client.clone(),
                process_url,
                key.clone(),
                stop.clone(),
            )));
        }
        Ok(Some((forwarder, tasks)))
    }

    pub fn sinks(&self) -> [&Sink; 5] {
        [
            &self.topology,
            &self.process_agent,
            &self.metrics,
            &self.traces,
            &self.health,
        ]
    }

    /// Records each sink in the status registry: sent, retried, refused, queued, dropped.
    /// A failing receiver makes the sink `unavailable`, not the daemon unhealthy: a
    /// restart would not bring the receiver back.
    pub fn report(&self, registry: &crate::status::Registry) {
        let counts = self
            .agent
            .as_ref()
            .map(|a| lock(a).counts())
            .unwrap_or_default();
        registry.set_drops(
            "process_agent.connections_untracked",
            counts.untracked_total,
        );
        for sink in self.sinks() {
            let name = status_name(sink.name);
            let s = &sink.stats;
            let (queued, disk_dropped) = sink.queued();
            let dropped = s.dropped_batches.load(Ordering::Relaxed) + disk_dropped;
            registry.set_drops(&format!("{name}.batches"), dropped);
            registry.set_drops(
                &format!("{name}.spans"),
                s.dropped_spans.load(Ordering::Relaxed),
            );
            if s.failing.load(Ordering::Relaxed) {
                let error = s.last_error.lock().map(|e| e.clone()).unwrap_or_default();
                registry.record_unavailable(
                    name,
                    format!("receiver failing, {queued} batches queued: {error}"),
                );
                continue;
            }
            let mut values = vec![
                ("sent_batches", s.sent_batches.load(Ordering::Relaxed)),
                ("sent_bytes", s.sent_bytes.load(Ordering::Relaxed)),
                ("sent_spans", s.sent_spans.load(Ordering::Relaxed)),
                ("retries", s.retries.load(Ordering::Relaxed)),
                (
                    "rejected_batches",
                    s.rejected_batches.load(Ordering::Relaxed),
                ),
                ("queued_batches", queued),
            ];
            if sink.name == self.process_agent.name {
                values.extend(process_agent::status_values(&counts));
            }
            // The sink's last run is the last batch the receiver took.
            registry.record_at(
                name,
                s.last_sent_unix_ms.load(Ordering::Relaxed),
                Duration::from_micros(s.last_send_us.load(Ordering::Relaxed)),
                Ok(values),
            );
        }
    }

    fn batch(
        &self,
        pipeline: &str,
        path: &str,
        content_type: &str,
        spans: u64,
        body: Bytes,
    ) -> Batch {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        Batch {
            id: format!("{}/{pipeline}/{}/{seq}", self.hostname, self.started_ms),
            path: path.to_string(),
            headers: gzip_headers(content_type),
            spans,
            relay: None,
            body,
        }
    }

    fn intake(&self, sink: &Sink, message: &impl serde::Serialize) {
        let body = gzip_json(message);
        sink.submit(self.batch(sink.name, INTAKE_PATH, "application/json", 0, body));
    }

    /// Turns one cycle into topology (changes only), metrics and health messages.
    pub fn submit_snapshot(&self, snapshot: &Snapshot, healthy: bool, health_message: &str) {
        let now = now_s();
        let h = &self.hostname;
        if let Some((cluster, elements)) = intake::ecs_elements(snapshot) {
            let update = lock(&self.ecs_diff).update(elements);
            if update.full || !update.elements.is_empty() || !update.delete_ids.is_empty() {
                self.intake(
                    &self.topology,
                    &intake::topology_message(
                        h,
                        &cluster,
                        &update.elements,
                        &update.delete_ids,
                        now,
                    ),
                );
            }
        }
        self.submit_process_agent(snapshot);
        self.intake(
            &self.metrics,
            &intake::metrics_message(h, &intake::snapshot_metrics(snapshot, now), now),
        );
        self.intake(
            &self.health,
            &intake::health_message(h, healthy, health_message, now),
        );
    }

    /// The process agent's messages of this cycle, when they are due.
    fn submit_process_agent(&self, snapshot: &Snapshot) {
        let Some(agent) = &self.agent else { return };
        let now_ms = crate::status::unix_ms_now().max(0) as u64;
        let messages = lock(agent).cycle(snapshot, now_ms, self.collection_interval);
        match messages {
            Ok(messages) => {
                let batches = messages
                    .into_iter()
                    .map(|m| self.process_agent_batch(m))
                    .collect();
                self.process_agent.submit_all(batches);
            }
            Err(e) => tracing::warn!("process agent messages not made: {e}"),
        }
    }

    fn process_agent_batch(&self, m: Outgoing) -> Batch {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        Batch {
            id: format!("{}/process-agent/{}/{seq}", self.hostname, self.started_ms),
            path: m.path.to_string(),
            headers: process_agent::headers(&self.hostname),
            spans: 0,
            relay: None,
            body: Bytes::from(m.body),
        }
    }

    /// The correlated spans of the sidecar batch `from`, queued (on disk with
    /// `STS_QUEUE_DIR`) when this returns: the relay acknowledges the sidecar's batch after
    /// it, and the sidecar forgets the spans then. The last of the batches they make
    /// records `from` (see `relay_batches_queued`).
    pub fn submit_spans(&self, spans: Vec<CorrelatedSpan>, from: RelayBatch) {
        let mut batches = traces::split(spans);
        let last = batches.pop();
        for spans in batches {
            self.send_spans(spans, None);
        }
        if let Some(spans) = last {
            self.send_spans(spans, Some(from));
        }
    }

    /// Forwards the spans; returns them back when `keep` (for the recent window), else
    /// an empty list (a copy shares the spans' bytes).
    pub fn submit_spans_keeping(
        &self,
        spans: Vec<CorrelatedSpan>,
        from: RelayBatch,
        keep: bool,
    ) -> Vec<CorrelatedSpan> {
        if keep {
            self.submit_spans(spans.clone(), from);
            spans
        } else {
            self.submit_spans(spans, from);
            Vec::new()
        }
    }

    /// The sidecar batches whose spans were queued but not yet sent when the daemon
    /// started (the first call; later ones get nothing). A daemon killed after queueing a
    /// batch's spans but before its acknowledgement reached the sidecar gets the batch
    /// again from the sidecar; the relay drops it as a duplicate from this list.
    pub fn relay_batches_queued(&self) -> Vec<RelayBatch> {
        std::mem::take(&mut *lock(&self.relay_batches_queued))
    }

    fn send_spans(&self, spans: Vec<CorrelatedSpan>, from: Option<RelayBatch>) {
        let count = spans.len() as u64;
        let body = match self.trace_encoder.try_lock() {
            Ok(mut encoder) => encoder.encode(&self.hostname, &spans),
            // A panic mid-batch leaves nothing to undo: encode starts afresh.
            Err(TryLockError::Poisoned(p)) => p.into_inner().encode(&self.hostname, &spans),
            Err(TryLockError::WouldBlock) => {
                traces::Encoder::default().encode(&self.hostname, &spans)
            }
        };
        let body = Bytes::from(body);
        let protobuf = "application/x-protobuf";
        let mut batch = self.batch("traces", TRACES_PATH, protobuf, count, body);
        batch.relay = from;
        self.traces.submit(batch);
    }
}

/// The status names of the pipelines.
pub const STATUS_NAMES: [&str; 5] = [
    "forward.topology",
    "forward.process-agent",
    "forward.metrics",
    "forward.traces",
    "forward.health",
];

fn status_name(sink: &str) -> &'static str {
    STATUS_NAMES
        .iter()
        .find(|n| n.strip_prefix("forward.") == Some(sink))
        .copied()
        .unwrap_or("forward")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds the API key to a request as the pipeline expects.
pub fn authorize(
    url: &mut Url,
    headers: &mut Vec<(&str, String)>,
    key: Option<&ApiKey>,
    auth: Auth,
) {
    let Some(key) = key else { return };
    match auth {
        Auth::Query => {
            url.query_pairs_mut().append_pair("api_key", key.expose());
        }
        Auth::Header => headers.push(("DD-Api-Key", key.expose().to_string())),
        Auth::StsHeader => headers.push(("sts-api-key", key.expose().to_string())),
    }
}

/// The `processes` queue of the intake topology the process agent protocol replaced:
/// what it holds would go to an instance the receiver no longer hears from.
fn remove_obsolete_queue(dir: &std::path::Path) {
    if !dir.exists() {
        return;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::info!(
            "removed {}: processes now go by the process agent protocol",
            dir.display()
        ),
        Err(e) => tracing::warn!("cannot remove the obsolete queue {}: {e}", dir.display()),
    }
}

/// Where the queues live by default.
pub fn default_queue_dir() -> PathBuf {
    PathBuf::from("/var/lib/stackstate-node-daemon/queue")
}
