//! The relay to node-daemon: a bounded buffer and the gRPC sender that drains it.

mod buffer;
mod sender;

pub use buffer::{BatchLimits, Buffer};
pub use sender::{run, stopped, Relay, RelayStats, SenderConfig};
