//! Process collector: scans /proc, applies the blacklist and scrubs command lines.
//!
//! What cannot change for a given (pid, start time, command name) — command line, exe,
//! user, container id and the blacklist verdict — is read once and cached; a steady-state
//! cycle reads only `stat`, `io` and the size of `fd` per process.

mod blacklist;
mod cgroup;
mod pid_dir;
mod scan;
mod scrub;
mod stat;
mod users;

pub(crate) use cgroup::container_id;
pub use scan::{ProcessCollector, ProcessScan, ScanCounts};
pub(crate) use stat::parse_stat;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot list /proc: {0}")]
    ListProc(#[source] std::io::Error),
    #[error("cannot read kernel constants: {0}")]
    Kernel(#[source] std::io::Error),
}
