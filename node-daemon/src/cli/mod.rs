//! The subcommands of the `node-daemon` binary.

pub(crate) mod daemon_client;
pub(crate) mod run;
pub(crate) mod snapshot;
pub(crate) mod status;
