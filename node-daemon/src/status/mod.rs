//! The daemon's status: what collectors did, served over gRPC and printed by `status`.

pub mod print;
pub mod registry;
pub mod server;

pub use registry::{unix_ms_now, Registry};
pub use server::{StatusService, STATUS_SERVICE_NAME};

use std::sync::{Arc, Mutex};

/// The latest cycle's snapshot, kept as collected and serialized only when asked for (a
/// JSON copy of every cycle would cost more memory than the snapshot itself).
#[derive(Debug, Clone, Default)]
pub struct LatestSnapshot(Arc<Mutex<(Option<Arc<crate::model::Snapshot>>, i64)>>);

impl LatestSnapshot {
    pub fn publish(&self, snapshot: crate::model::Snapshot) {
        let latest = (Some(Arc::new(snapshot)), unix_ms_now());
        // The previous snapshot is freed outside the lock.
        let _previous = std::mem::replace(
            &mut *self.0.lock().unwrap_or_else(|p| p.into_inner()),
            latest,
        );
    }

    /// The snapshot as JSON (None before the first cycle) and the Unix milliseconds it was
    /// published at.
    pub fn json(&self) -> (Option<String>, i64) {
        let (snapshot, at) = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let json = snapshot.and_then(|s| match serde_json::to_string(&*s) {
            Ok(json) => Some(json),
            Err(e) => {
                tracing::warn!("cannot serialize the snapshot: {e}");
                None
            }
        });
        (json, at)
    }
}
