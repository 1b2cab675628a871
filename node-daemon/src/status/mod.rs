//! The daemon's status: what collectors did, served over gRPC and printed by `status`.

pub mod print;
pub mod registry;
pub mod server;

pub use registry::Registry;
pub use server::{StatusService, STATUS_SERVICE_NAME};
