//! Collectors: each reads one part of the host and returns plain data for the snapshot.

pub mod container;
pub mod ecs;
pub(crate) mod host;
pub(crate) mod kernel;
pub mod network;
pub mod proc_files;
pub mod process;
