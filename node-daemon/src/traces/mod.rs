//! Traces: the relay server sidecars stream spans to, and the PID correlation that ties
//! each span to its host process, container and ECS task.

mod correlate;
mod dedup;
mod relay;
mod state;

pub use correlate::Correlator;
pub use relay::{RelayService, MAX_BATCH_BYTES};
pub use state::TraceState;
