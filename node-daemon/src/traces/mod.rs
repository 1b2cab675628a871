//! Traces: the relay server sidecars stream spans to, and the PID correlation that ties
//! each span to its host process, container and ECS task.

mod correlate;
mod dedup;
mod relay;
mod span;
mod state;
pub mod wire;

pub use correlate::Correlator;
pub use relay::{RelayServer, RelayService, MAX_BATCH_BYTES};
pub use span::CorrelatedSpan;
pub use state::TraceState;
