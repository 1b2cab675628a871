//! One pipeline's sender. Batches go to the pipeline's disk queue as they are made (so a
//! crash or an outage loses nothing and order is kept), or to a bounded memory queue when
//! no disk queue is configured; the sender takes them oldest first. Retries network
//! errors, 408, 429 and 5xx with jittered exponential backoff; other 4xx are logged with
//! the receiver's message, counted and skipped. What an OTLP endpoint refused of a batch
//! it took (partial success) is logged and counted among the drops.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tracing::{info, warn};
use url::Url;

pub mod batch;

use super::client::{authorize, endpoint, Credentials, ReceiverClient, SendError};
use super::pipelines::{Answer, Spec};
use super::queue::{DiskQueue, RecordId};
use super::ForwardError;
use crate::clock::unix_ms_now;
use crate::poison::IgnorePoison;
use crate::shutdown::Shutdown;
use crate::status::Registry;
use crate::traces::RelayBatch;
use batch::{push_batches, Batch};

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Memory queue per pipeline when no disk queue is configured.
const MEMORY_CAP: usize = 32 << 20;
/// How much of each queued record `relay_batches` reads: the batch header (ids, path,
/// two headers, counts) is well under this.
const RELAY_PREFIX: usize = 4096;
/// How much of an endpoint's partial-success message is logged.
const MAX_MESSAGE_CHARS: usize = 512;

/// What a sink did since start, for status.
#[derive(Debug, Default)]
pub(crate) struct SinkStats {
    pub(crate) sent_batches: AtomicU64,
    pub(crate) sent_bytes: AtomicU64,
    pub(crate) sent_spans: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) rejected_batches: AtomicU64,
    /// Spans or data points an OTLP endpoint refused of batches it took (partial success).
    pub(crate) rejected_items: AtomicU64,
    /// Dropped because the memory queue was full or the disk refused the batch.
    pub(crate) dropped_batches: AtomicU64,
    pub(crate) dropped_spans: AtomicU64,
    pub(crate) failing: AtomicBool,
    pub(crate) last_error: Mutex<String>,
    /// When the receiver last took a batch (Unix ms, 0 before the first), and how long
    /// that request took (µs).
    pub(crate) last_sent_unix_ms: AtomicI64,
    pub(crate) last_send_us: AtomicU64,
}

enum Store {
    Memory {
        batches: VecDeque<Batch>,
        bytes: usize,
        cap: usize,
    },
    Disk(DiskQueue),
}

#[derive(Clone)]
pub(crate) struct Sink {
    pub(crate) spec: &'static Spec,
    store: Arc<Mutex<Store>>,
    wake: Arc<Notify>,
    pub(crate) stats: Arc<SinkStats>,
}

impl Sink {
    /// The sink of `spec`, its queue in `queue_dir` (`STS_QUEUE_DIR`) holding at most
    /// `max_bytes` (at least 1 MiB), or in memory without a directory.
    pub(crate) fn open(
        spec: &'static Spec,
        queue_dir: Option<&Path>,
        max_bytes: u64,
    ) -> Result<Self, ForwardError> {
        let disk = match queue_dir {
            Some(dir) => {
                let dir = dir.join(spec.name);
                let max = max_bytes.max(1 << 20);
                Some(DiskQueue::open(&dir, max).map_err(|e| ForwardError::Queue {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                })?)
            }
            None => None,
        };
        Ok(Self::new(spec, MEMORY_CAP, disk))
    }

    /// With a disk queue every batch is stored durably; without, at most `memory_cap`
    /// bytes wait in memory and the oldest are dropped (and counted) beyond it.
    fn new(spec: &'static Spec, memory_cap: usize, disk: Option<DiskQueue>) -> Self {
        let store = match disk {
            Some(disk) => Store::Disk(disk),
            None => Store::Memory {
                batches: VecDeque::new(),
                bytes: 0,
                cap: memory_cap,
            },
        };
        Self {
            spec,
            store: Arc::new(Mutex::new(store)),
            wake: Arc::default(),
            stats: Arc::default(),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().ignore_poison()
    }

    /// Batches waiting, and records the disk queue dropped at its cap.
    pub(crate) fn queued(&self) -> (u64, u64) {
        match &*self.store() {
            Store::Memory { batches, .. } => (batches.len() as u64, 0),
            Store::Disk(d) => (d.len(), d.dropped_records()),
        }
    }

    /// The sidecar batches recorded by the queued batches (none in memory only).
    pub(crate) fn relay_batches(&self) -> Vec<RelayBatch> {
        let mut found = Vec::new();
        if let Store::Disk(disk) = &*self.store() {
            let scanned = disk.scan_pending(RELAY_PREFIX, |record| {
                if let Ok(Batch { relay: Some(r), .. }) = Batch::header_from_prefix(record) {
                    found.push(r);
                }
            });
            if let Err(e) = scanned {
                warn!(sink = self.spec.name, "cannot read the disk queue: {e}");
            }
        }
        found
    }

    /// Queues a batch; never waits for the network.
    pub(crate) fn submit(&self, batch: Batch) {
        self.submit_all(vec![batch]);
    }

    /// Queues batches in order (on disk with one sync for all); never waits for the
    /// network.
    pub(crate) fn submit_all(&self, batches: Vec<Batch>) {
        if batches.is_empty() {
            return;
        }
        let mut store = self.store();
        match &mut *store {
            Store::Disk(disk) => {
                for (outcome, batch) in push_batches(disk, &batches).into_iter().zip(&batches) {
                    if let Err(e) = outcome {
                        warn!(
                            sink = self.spec.name,
                            "cannot queue a batch on disk: {e}; dropped"
                        );
                        self.count_drop(batch);
                    }
                }
            }
            Store::Memory {
                batches: queued,
                bytes,
                cap,
            } => {
                for batch in batches {
                    while *bytes + batch.len() > *cap {
                        let Some(old) = queued.pop_front() else {
                            break;
                        };
                        *bytes -= old.len();
                        self.count_drop(&old);
                    }
                    *bytes += batch.len();
                    queued.push_back(batch);
                }
            }
        }
        drop(store);
        self.wake.notify_one();
    }

    fn count_drop(&self, batch: &Batch) {
        self.stats.dropped_batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .dropped_spans
            .fetch_add(batch.spans, Ordering::Relaxed);
    }

    /// The oldest batch and how to remove it once sent.
    fn next(&self) -> Option<(Batch, Option<RecordId>)> {
        let mut store = self.store();
        match &mut *store {
            Store::Memory { batches, .. } => batches.front().map(|b| (b.clone(), None)),
            Store::Disk(disk) => loop {
                match disk.peek() {
                    Ok(Some(record)) => match Batch::from_record(record.payload) {
                        Ok(batch) => return Some((batch, Some(record.id))),
                        Err(e) => {
                            warn!(sink = self.spec.name, "{e}; skipped");
                            let _ = disk.ack(record.id);
                            self.stats.dropped_batches.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Ok(None) => return None,
                    Err(e) => {
                        warn!(sink = self.spec.name, "cannot read the disk queue: {e}");
                        return None;
                    }
                }
            },
        }
    }

    fn done(&self, batch: &Batch, record: Option<RecordId>) {
        let mut store = self.store();
        match (&mut *store, record) {
            (Store::Disk(disk), Some(id)) => {
                if let Err(e) = disk.ack(id) {
                    warn!(sink = self.spec.name, "cannot advance the disk queue: {e}");
                }
            }
            (Store::Memory { batches, bytes, .. }, _)
                if batches.front().is_some_and(|b| b.id == batch.id) =>
            {
                let b = batches.pop_front().expect("front exists");
                *bytes -= b.len();
            }
            _ => {}
        }
    }

    /// Records the sink in the status registry: sent, retried, refused, queued, dropped,
    /// and `extra` values of its pipeline. A failing receiver makes the sink
    /// `unavailable`, not the daemon unhealthy: a restart would not bring the receiver
    /// back.
    pub(crate) fn report(&self, registry: &Registry, extra: &[(&'static str, u64)]) {
        let name = self.spec.status;
        let s = &self.stats;
        let (queued, disk_dropped) = self.queued();
        let dropped = s.dropped_batches.load(Ordering::Relaxed) + disk_dropped;
        registry.set_drops(&format!("{name}.batches"), dropped);
        registry.set_drops(
            &format!("{name}.spans"),
            s.dropped_spans.load(Ordering::Relaxed),
        );
        let refused = match self.spec.answer {
            Answer::PartialSuccess { counted, .. } => {
                let refused = s.rejected_items.load(Ordering::Relaxed);
                registry.set_drops(&format!("{name}.{counted}"), refused);
                Some((counted, refused))
            }
            Answer::Ignored => None,
        };
        if s.failing.load(Ordering::Relaxed) {
            let error = s.last_error.lock().ignore_poison().clone();
            registry.record_unavailable(
                name,
                format!("receiver failing, {queued} batches queued: {error}"),
            );
            return;
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
        values.extend(refused);
        values.extend_from_slice(extra);
        // The sink's last run is the last batch the receiver took.
        registry.record_at(
            name,
            s.last_sent_unix_ms.load(Ordering::Relaxed),
            Duration::from_micros(s.last_send_us.load(Ordering::Relaxed)),
            Ok(values),
        );
    }

    /// Starts [`Sink::run`] on its own task.
    pub(crate) fn spawn(
        &self,
        client: &ReceiverClient,
        base: Url,
        credentials: &Credentials,
        shutdown: &Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let run = self
            .clone()
            .run(client.clone(), base, credentials.clone(), shutdown.clone());
        tokio::spawn(run)
    }

    /// Sends until `shutdown`, to `base` + each batch's path (its gRPC method for a gRPC
    /// client).
    async fn run(
        self,
        client: ReceiverClient,
        base: Url,
        credentials: Credentials,
        mut shutdown: Shutdown,
    ) {
        let auth = self.spec.auth;
        let mut backoff = MIN_BACKOFF;
        loop {
            let Some((batch, record)) = self.next() else {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = shutdown.wait() => return,
                }
            };
            let mut url = endpoint(&base, client.route(&batch.path));
            let mut headers = batch.request_headers();
            authorize(&mut url, &mut headers, &credentials, auth);
            let started = Instant::now();
            let outcome = tokio::select! {
                outcome = client.post(&url, &headers, batch.body.clone(), self.spec.answer.kept()) => outcome,
                _ = shutdown.wait() => return,
            };
            match outcome {
                Ok(answer) => {
                    self.done(&batch, record);
                    self.read_answer(&batch, &answer);
                    let s = &self.stats;
                    s.sent_batches.fetch_add(1, Ordering::Relaxed);
                    s.sent_bytes
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    s.sent_spans.fetch_add(batch.spans, Ordering::Relaxed);
                    s.last_send_us
                        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    s.last_sent_unix_ms.store(unix_ms_now(), Ordering::Relaxed);
                    if s.failing.swap(false, Ordering::Relaxed) {
                        info!(
                            sink = self.spec.name,
                            "receiver reachable again; draining the queue"
                        );
                    }
                    backoff = MIN_BACKOFF;
                }
                Err(SendError::Rejected(message)) => {
                    warn!(sink = self.spec.name, batch = %batch.id, "receiver refused a batch: {message}");
                    self.done(&batch, record);
                    self.stats.rejected_batches.fetch_add(1, Ordering::Relaxed);
                    *self.stats.last_error.lock().ignore_poison() = message;
                }
                Err(SendError::Retry(message)) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if !self.stats.failing.swap(true, Ordering::Relaxed) {
                        warn!(
                            sink = self.spec.name,
                            "cannot send: {message}; queueing and retrying"
                        );
                    }
                    *self.stats.last_error.lock().ignore_poison() = message;
                    tokio::select! {
                        _ = tokio::time::sleep(jittered(backoff)) => {}
                        _ = shutdown.wait() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

impl Sink {
    /// Counts and logs what an answer that took `batch` still refused of it.
    fn read_answer(&self, batch: &Batch, answer: &[u8]) {
        let Answer::PartialSuccess { read, .. } = self.spec.answer else {
            return;
        };
        let Some(refused) = read(answer) else {
            return;
        };
        let message: String = refused.message.chars().take(MAX_MESSAGE_CHARS).collect();
        if refused.count == 0 {
            info!(sink = self.spec.name, batch = %batch.id, "the endpoint took the batch with a warning: {message}");
            return;
        }
        self.stats
            .rejected_items
            .fetch_add(refused.count, Ordering::Relaxed);
        warn!(
            sink = self.spec.name,
            batch = %batch.id,
            "the endpoint refused {} of the batch: {message}",
            refused.count
        );
    }
}

fn jittered(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    // 75% to 125% of the nominal delay.
    d.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(4));
            assert!(j >= Duration::from_secs(3) && j <= Duration::from_secs(5));
        }
    }
}
