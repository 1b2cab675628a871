//! The subcommands of the `node-daemon` binary.

pub mod run;
pub mod snapshot;
pub mod status;
