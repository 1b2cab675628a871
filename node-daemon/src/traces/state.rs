//! What the trace relay has received: totals, each sidecar, and a window of recent
//! correlated spans for `GetRecentSpans` (kept as their bytes, decoded when asked for).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sts_proto::daemon::v1::{SidecarStatus, Span};

use bytes::Bytes;

use crate::clock::unix_ms_now;
use crate::poison::IgnorePoison;
use crate::span::CorrelatedSpan;

#[derive(Debug)]
struct Sidecar {
    addr: String,
    task_arn: String,
    connected: bool,
    spans: u64,
    dropped: u64,
    last_seen_ms: i64,
    /// Spans counted since `rate_since`, for spans/s.
    rate_spans: u64,
    rate_since: Instant,
    rate: f64,
}

#[derive(Debug)]
struct Inner {
    recent: VecDeque<CorrelatedSpan>,
    sidecars: BTreeMap<String, Sidecar>,
}

#[derive(Debug, Clone)]
pub(crate) struct TraceState {
    inner: Arc<Mutex<Inner>>,
    recent_capacity: usize,
    received: Arc<AtomicU64>,
    duplicates: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl TraceState {
    pub(crate) fn new(recent_capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                recent: VecDeque::with_capacity(recent_capacity.min(1024)),
                sidecars: BTreeMap::new(),
            })),
            recent_capacity,
            received: Arc::default(),
            duplicates: Arc::default(),
            refused: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().ignore_poison()
    }

    /// Whether `taken` keeps spans for `recent` (else it only counts them).
    pub(crate) fn keeps_recent(&self) -> bool {
        self.recent_capacity > 0
    }

    pub(crate) fn spans_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub(crate) fn spans_duplicate(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Batches refused for a wrong or missing relay token, since start.
    pub(crate) fn batches_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn add_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_duplicates(&self, spans: u64) {
        self.duplicates.fetch_add(spans, Ordering::Relaxed);
    }

    /// Records a taken batch of `count` spans of a sidecar and keeps `spans` in the recent
    /// window (they may be none when no window is kept).
    pub(crate) fn taken(
        &self,
        sidecar_id: &str,
        addr: &str,
        task_arn: &str,
        dropped: u64,
        count: u64,
        spans: Vec<CorrelatedSpan>,
    ) {
        self.received.fetch_add(count, Ordering::Relaxed);
        let mut inner = self.lock();
        let sidecar = sidecar_entry(&mut inner.sidecars, sidecar_id);
        sidecar.addr = addr.to_string();
        sidecar.task_arn = task_arn.to_string();
        sidecar.connected = true;
        sidecar.spans += count;
        sidecar.dropped = dropped;
        sidecar.last_seen_ms = unix_ms_now();
        sidecar.rate_spans += count;
        let elapsed = sidecar.rate_since.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            sidecar.rate = sidecar.rate_spans as f64 / elapsed;
            sidecar.rate_spans = 0;
            sidecar.rate_since = Instant::now();
        }
        if self.recent_capacity == 0 {
            return;
        }
        // Only the last `recent_capacity` of the batch can stay.
        let skip = spans.len().saturating_sub(self.recent_capacity);
        for span in compact(&spans[skip..]) {
            if inner.recent.len() == self.recent_capacity {
                inner.recent.pop_front();
            }
            inner.recent.push_back(span);
        }
    }

    pub(crate) fn disconnected(&self, sidecar_id: &str) {
        if let Some(s) = self.lock().sidecars.get_mut(sidecar_id) {
            s.connected = false;
            s.rate = 0.0;
        }
    }

    /// The last `limit` spans of the window (all for 0), decoded. Every span was checked
    /// when its batch was read; one that would not decode is left out.
    pub(crate) fn recent(&self, limit: usize) -> Vec<Span> {
        let spans: Vec<CorrelatedSpan> = {
            let inner = self.lock();
            let skip = if limit == 0 {
                0
            } else {
                inner.recent.len().saturating_sub(limit)
            };
            inner.recent.iter().skip(skip).cloned().collect()
        };
        spans.iter().filter_map(|s| s.decode().ok()).collect()
    }

    pub(crate) fn sidecars(&self) -> Vec<SidecarStatus> {
        self.lock()
            .sidecars
            .iter()
            .map(|(id, s)| SidecarStatus {
                sidecar_id: id.clone(),
                addr: s.addr.clone(),
                task_arn: s.task_arn.clone(),
                connected: s.connected,
                spans_received: s.spans,
                spans_per_second: s.rate,
                dropped_spans: s.dropped,
                last_seen_unix_ms: s.last_seen_ms,
            })
            .collect()
    }
}

/// The spans with their relayed bytes copied into one allocation of their size: a span's
/// bytes are a slice of the buffer its batch arrived in, which a window of small batches
/// (a span a second) would keep alive, 8 KiB or more each, for hours.
fn compact(spans: &[CorrelatedSpan]) -> Vec<CorrelatedSpan> {
    let len = |s: &CorrelatedSpan| s.common.len() + s.raw.len();
    let total = spans.iter().map(len).sum();
    let mut packed = Vec::with_capacity(total);
    for span in spans {
        packed.extend_from_slice(&span.common);
        packed.extend_from_slice(&span.raw);
    }
    let packed = Bytes::from(packed);
    let mut at = 0;
    spans
        .iter()
        .map(|span| {
            // The trace's common fields and the span's own, as one encoding.
            let raw = packed.slice(at..at + len(span));
            at += len(span);
            CorrelatedSpan {
                common: Bytes::new(),
                raw,
                extra: span.extra.clone(),
                trace_id: span.trace_id,
                start: span.start,
                duration: span.duration,
            }
        })
        .collect()
}

/// At most this many sidecars are remembered; the longest unseen is forgotten first.
const MAX_SIDECARS: usize = 4096;

fn sidecar_entry<'a>(sidecars: &'a mut BTreeMap<String, Sidecar>, id: &str) -> &'a mut Sidecar {
    if !sidecars.contains_key(id) && sidecars.len() >= MAX_SIDECARS {
        if let Some(oldest) = sidecars
            .iter()
            .filter(|(_, s)| !s.connected)
            .min_by_key(|(_, s)| s.last_seen_ms)
            .map(|(k, _)| k.clone())
        {
            sidecars.remove(&oldest);
        }
    }
    sidecars.entry(id.to_string()).or_insert_with(|| Sidecar {
        addr: String::new(),
        task_arn: String::new(),
        connected: true,
        spans: 0,
        dropped: 0,
        last_seen_ms: 0,
        rate_spans: 0,
        rate_since: Instant::now(),
        rate: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u64) -> CorrelatedSpan {
        CorrelatedSpan::from_span(&Span {
            span_id: id,
            ..Span::default()
        })
    }

    #[test]
    fn recent_window_is_bounded_and_ordered() {
        let state = TraceState::new(3);
        state.taken(
            "s1",
            "10.0.0.1:5",
            "arn:t",
            0,
            5,
            (1..=5).map(span).collect(),
        );
        let ids: Vec<u64> = state.recent(0).iter().map(|s| s.span_id).collect();
        assert_eq!(ids, [3, 4, 5]);
        // Kept in one allocation of their own, not in the buffer they came in.
        let inner = state.lock();
        let first = inner.recent[0].raw.as_ptr() as usize;
        let last = &inner.recent[2].raw;
        assert_eq!(
            last.as_ptr() as usize + last.len() - first,
            inner.recent.iter().map(|s| s.raw.len()).sum::<usize>()
        );
        drop(inner);
        assert_eq!(state.recent(2).len(), 2);
        assert_eq!(state.spans_received(), 5);
        let sidecars = state.sidecars();
        assert_eq!(
            (sidecars[0].spans_received, sidecars[0].connected),
            (5, true)
        );
        state.disconnected("s1");
        assert!(!state.sidecars()[0].connected);
    }
}
