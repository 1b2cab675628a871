//! Traces: the relay server sidecars stream spans to, the PID correlation that ties each
//! span to its host process, container and ECS task, and the acknowledgement that lets a
//! sidecar forget a batch (`acks.rs`). Correlated spans go to a [`SpanSink`] (the
//! forwarder's traces pipeline); nothing here knows the forwarder.

mod acks;
mod correlate;
pub(crate) mod relay;
mod state;
pub mod wire;

pub(crate) use acks::{record_on_last, RelayBatch, SpanSink};
pub use correlate::Correlator;
pub(crate) use relay::RelayService;
pub(crate) use state::TraceState;

/// HTTP/2 flow control of the daemon's gRPC server, sized for relay batches (1 MiB, at most
/// 8 unacknowledged per sidecar): with the protocol's default 64 KiB windows and 16 KiB
/// frames a sidecar writes a batch in dozens of small pieces, each a loopback TCP send and a
/// wake-up of the daemon; 2 MiB windows and 1 MiB frames let it go in a few writes.
pub(crate) const RELAY_STREAM_WINDOW: u32 = 2 << 20;
pub(crate) const RELAY_CONNECTION_WINDOW: u32 = 4 << 20;
pub(crate) const RELAY_MAX_FRAME: u32 = 1 << 20;
