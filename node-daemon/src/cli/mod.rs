//! The subcommands of the `node-daemon` binary.

pub mod daemon_client;
pub mod run;
pub mod snapshot;
pub mod status;
