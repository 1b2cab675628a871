//! node-daemon: the per-host collector of the StackState ECS agent.
//!
//! `config` reads the `STS_*` settings, `collect/*` read the host, `cycle` runs the
//! collectors once, `daemon` repeats that on an interval and serves `status` over gRPC;
//! `traces` takes the sidecars' spans and `forward` sends all of it to the receiver.
//! Layers point one way: `daemon` wires everything; `forward` uses `traces` (it is the
//! `SpanSink` the relay hands spans to) and `status` (it is a `Report`); `status` reads
//! `traces`; `span`, `model` and `clock` are shared by all.
//!
//! Items are `pub(crate)` unless the binary (`main.rs`, `cli/`), the benchmarks
//! (`benches/`, `integration-tests/benches/`), the tests (`tests/`, `integration-tests/`)
//! or the fuzz targets (`traces::wire`, `config`) use them.

// Shipped code handles its errors; tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used)]

pub mod clock;
pub mod collect;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod forward;
pub(crate) mod heap;
pub mod join;
pub mod model;
pub(crate) mod poison;
pub mod privilege;
pub(crate) mod shutdown;
pub mod span;
pub mod status;
pub mod traces;
