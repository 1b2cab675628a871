//! How bodies are made: gzip, the intake's JSON, topology changes and the trace payload.

pub mod diff;
pub mod gzip;
pub mod intake;
pub mod traces;
