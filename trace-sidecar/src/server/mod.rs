//! The HTTP/1.1 server trace clients talk to, on TCP and optionally on a unix socket.

mod accept;
mod connection;
mod deadlines;
mod first_head;
mod limits;
mod routes;
mod slots;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use accept::{serve, Listener};
pub use connection::{look_up, Connection, Peer};
pub use limits::Limits;
pub use routes::{read_body_within, reply, BodyError, Reply, ENDPOINTS, MAX_BODY_BYTES};
pub use slots::Slots;

use crate::relay::Relay;

#[derive(Debug, Default)]
pub struct ServerStats {
    pub received_spans: AtomicU64,
    pub rejected_payloads: AtomicU64,
    /// Connections accepted and given a slot.
    pub connections: AtomicU64,
    /// Connections closed at once: every slot was serving a request.
    pub connections_refused: AtomicU64,
    /// Connections waiting for a request head, closed to give their slot to a new one.
    pub connections_shed: AtomicU64,
    /// accept() failures (out of descriptors, mostly).
    pub accept_errors: AtomicU64,
    /// Connections closed because their request head did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Requests answered 408 because their body did not arrive in time.
    pub body_timeouts: AtomicU64,
    /// Kept-alive connections closed after idling too long.
    pub idle_timeouts: AtomicU64,
    /// Requests answered 431: a head too large or with too many headers.
    pub heads_too_large: AtomicU64,
    /// OTLP spans buffered for the relay (also in `received_spans`).
    pub otlp_spans_received: AtomicU64,
    /// OTLP spans refused (an invalid id), answered as a partial success.
    pub otlp_spans_rejected: AtomicU64,
    /// OTLP requests refused whole: unreadable, too large, of another content type.
    pub otlp_requests_rejected: AtomicU64,
    /// OTLP requests that came gzip'd, inflated or refused.
    pub otlp_requests_gzip: AtomicU64,
}

/// Which API a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The Datadog trace API (`/v0.4/traces`, ...).
    Datadog,
    /// OTLP/HTTP (`/v1/traces`).
    Otlp,
}

/// What every connection's handlers share.
#[derive(Debug, Clone)]
pub struct Shared {
    pub relay: Relay,
    pub stats: Arc<ServerStats>,
    pub limits: Limits,
    /// The open connections, TCP and unix socket together.
    pub slots: Arc<Slots>,
    /// What this listener's connections are served.
    pub api: Api,
}

impl Shared {
    pub fn new(relay: Relay, limits: Limits) -> Self {
        Self {
            relay,
            stats: Arc::default(),
            slots: Slots::new(limits.max_connections),
            limits,
            api: Api::Datadog,
        }
    }

    /// The same state, for a listener that serves `api`.
    pub fn serving(&self, api: Api) -> Self {
        Self {
            api,
            ..self.clone()
        }
    }

    /// The `/health` document, also what `trace-sidecar status` prints.
    pub fn health(&self) -> serde_json::Value {
        let relay = &self.relay.stats;
        let buffer = self.relay.buffer();
        let connected = relay.connected.load(Ordering::Relaxed);
        let stats = &self.stats;
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "daemon_connected": connected,
            "daemon_error": relay.last_error.lock().map(|e| e.clone()).unwrap_or_default(),
            "spans_received": count(&stats.received_spans),
            "spans_relayed": relay.relayed_spans.load(Ordering::Relaxed),
            "spans_dropped": buffer.dropped_spans(),
            "spans_buffered": buffer.spans(),
            "buffer_bytes": buffer.bytes(),
            "payloads_rejected": count(&stats.rejected_payloads),
            "connections": count(&stats.connections),
            "connections_open": self.slots.open(),
            "connections_max": self.slots.max(),
            "connections_refused": count(&stats.connections_refused),
            "connections_shed": count(&stats.connections_shed),
            "accept_errors": count(&stats.accept_errors),
            "header_timeouts": count(&stats.header_timeouts),
            "body_timeouts": count(&stats.body_timeouts),
            "idle_timeouts": count(&stats.idle_timeouts),
            "heads_too_large": count(&stats.heads_too_large),
            "otlp_spans_received": count(&stats.otlp_spans_received),
            "otlp_spans_rejected": count(&stats.otlp_spans_rejected),
            "otlp_requests_rejected": count(&stats.otlp_requests_rejected),
            "otlp_requests_gzip": count(&stats.otlp_requests_gzip),
        })
    }
}
