//! node-daemon: the per-host collector of the StackState ECS agent.
//!
//! `config` reads the `STS_*` settings, `collect/*` read the host, `cycle` runs the
//! collectors once, `daemon` repeats that on an interval and serves `status` over gRPC.

pub mod clock;
pub mod collect;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod forward;
pub mod heap;
pub mod join;
pub mod model;
pub mod poison;
pub mod shutdown;
pub mod span;
pub mod status;
pub mod thread_cpu;
pub mod traces;
