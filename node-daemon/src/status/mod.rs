//! The daemon's status: what collectors did, served over gRPC and printed by `status`.

pub mod print;
pub(crate) mod registry;
pub(crate) mod server;

pub use registry::Registry;
pub(crate) use server::{StatusService, STATUS_SERVICE_NAME};

/// A part of the daemon that records its live counts in the registry when status is
/// asked for (the forwarder's sinks), besides what collectors record each cycle.
pub(crate) trait Report: Send + Sync {
    fn report(&self, registry: &Registry);
}

use std::sync::{Arc, Mutex};

use crate::clock::unix_ms_now;
use crate::poison::IgnorePoison;

/// The latest cycle's snapshot, kept as collected and serialized only when asked for (a
/// JSON copy of every cycle would cost more memory than the snapshot itself).
#[derive(Debug, Clone, Default)]
pub(crate) struct LatestSnapshot(Arc<Mutex<(Option<Arc<crate::model::Snapshot>>, i64)>>);

impl LatestSnapshot {
    pub(crate) fn publish(&self, snapshot: crate::model::Snapshot) {
        let latest = (Some(Arc::new(snapshot)), unix_ms_now());
        // The previous snapshot is freed outside the lock.
        let _previous = std::mem::replace(&mut *self.0.lock().ignore_poison(), latest);
    }

    /// The snapshot as JSON (None before the first cycle) and the Unix milliseconds it was
    /// published at.
    pub(crate) fn json(&self) -> (Option<String>, i64) {
        let (snapshot, at) = self.0.lock().ignore_poison().clone();
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
