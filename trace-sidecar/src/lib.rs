//! trace-sidecar: receives Datadog-protocol spans from an application's trace client and
//! relays them to node-daemon. The library part holds what the server is made of.

// Shipped code handles its errors; tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used)]

pub mod config;
pub mod decode;
pub mod otlp;
pub mod peer;
pub mod relay;
pub mod server;
