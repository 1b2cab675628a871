//! The bounded in-memory record of captured requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use super::captured::{Captured, Endpoint};
use super::proto::Span;

/// How many requests are kept by default; older ones are dropped and counted.
pub const DEFAULT_MAX_REQUESTS: usize = 100_000;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counters {
    /// Requests recorded over the receiver's life (kept or dropped).
    pub total: u64,
    /// Requests dropped from the front to respect the bound.
    pub dropped: u64,
    /// Connections reset on accept by a counted `Refuse`.
    pub reset_connections: u64,
}

struct Inner {
    requests: VecDeque<Captured>,
    counters: Counters,
    max: usize,
}

/// Shared by the server tasks and the accessors; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    changed: watch::Sender<u64>,
}

impl Store {
    pub fn new(max: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                requests: VecDeque::new(),
                counters: Counters::default(),
                max: max.max(1),
            })),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not hide what was captured.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_seq(&self) -> u64 {
        let mut inner = self.lock();
        inner.counters.total += 1;
        inner.counters.total
    }

    pub(crate) fn push(&self, captured: Captured) {
        let mut inner = self.lock();
        if inner.requests.len() >= inner.max {
            inner.requests.pop_front();
            inner.counters.dropped += 1;
        }
        inner.requests.push_back(captured);
        drop(inner);
        self.changed.send_modify(|n| *n += 1);
    }

    pub(crate) fn count_reset(&self) {
        self.lock().counters.reset_connections += 1;
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// Forgets every recorded request (counters stay).
    pub fn clear(&self) {
        self.lock().requests.clear();
    }

    /// Every kept request, oldest first; `None` means every endpoint.
    pub fn requests(&self, endpoint: Option<Endpoint>) -> Vec<Captured> {
        self.lock()
            .requests
            .iter()
            .filter(|c| endpoint.map_or(true, |e| c.endpoint == e))
            .cloned()
            .collect()
    }

    /// Kept requests with `seq > after`.
    pub fn requests_after(&self, endpoint: Option<Endpoint>, after: u64) -> Vec<Captured> {
        self.lock()
            .requests
            .iter()
            .filter(|c| c.seq > after && endpoint.map_or(true, |e| c.endpoint == e))
            .cloned()
            .collect()
    }

    /// The spans of every accepted traces request, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.with(|all| {
            all.iter()
                .filter(|c| c.accepted())
                .flat_map(|c| c.spans().into_iter().cloned())
                .collect()
        })
    }

    /// (trace id, span id) of the spans of every accepted traces request, in arrival
    /// order (also when only the ids are kept).
    pub fn span_ids(&self) -> Vec<(u64, u64)> {
        self.with(|all| {
            all.iter()
                .filter(|c| c.accepted())
                .flat_map(|c| c.span_ids())
                .collect()
        })
    }

    /// How many spans the accepted traces requests carried.
    pub fn span_count(&self) -> usize {
        self.with(|all| {
            all.iter()
                .filter(|c| c.accepted())
                .map(Captured::span_count)
                .sum()
        })
    }

    /// The JSON bodies of every accepted intake request, in arrival order.
    pub fn intake_messages(&self) -> Vec<Value> {
        self.with(|all| {
            all.iter()
                .filter(|c| c.accepted())
                .filter_map(|c| c.intake_json().cloned())
                .collect()
        })
    }

    /// Runs `f` over the kept requests under the lock.
    pub fn with<T>(&self, f: impl FnOnce(&[Captured]) -> T) -> T {
        let mut inner = self.lock();
        f(inner.requests.make_contiguous())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
