//! The daemon's status: what collectors did, served over gRPC and printed by `status`.

pub mod print;
pub mod registry;
pub mod server;

pub use registry::Registry;
pub use server::{StatusService, STATUS_SERVICE_NAME};

use std::sync::{Arc, Mutex};

/// The latest cycle's snapshot, serialized once when published.
#[derive(Debug, Clone, Default)]
pub struct LatestSnapshot(Arc<Mutex<(Option<Arc<str>>, i64)>>);

impl LatestSnapshot {
    pub fn publish(&self, snapshot: &crate::model::Snapshot) {
        match serde_json::to_string(snapshot) {
            Ok(json) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (Some(json.into()), now);
            }
            Err(e) => tracing::warn!("cannot serialize the snapshot: {e}"),
        }
    }

    /// The JSON and the Unix milliseconds it was published at.
    pub fn get(&self) -> (Option<Arc<str>>, i64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
