//! The daemon's own health, each cycle, as an intake service check.

use super::{Outlet, Spec};
use crate::forward::encode::intake::health_message;

pub(crate) const SPEC: Spec = Spec::intake("health", "forward.health");

pub(crate) struct Pipeline {
    pub(crate) out: Outlet,
}

impl Pipeline {
    /// `healthy` and `message` as the status registry had them before the cycle.
    pub(crate) fn submit(&self, healthy: bool, message: &str, now_s: u64) {
        let h = self.out.hostname();
        self.out
            .submit_intake(&health_message(h, healthy, message, now_s));
    }
}
