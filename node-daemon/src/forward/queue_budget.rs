//! How `STS_QUEUE_MAX_BYTES` is shared: each configured pipeline's queue holds its
//! weight's part of it.

use std::path::PathBuf;

use super::pipelines::Spec;
use super::{ForwardError, Sink};

pub(super) struct QueueBudget {
    dir: Option<PathBuf>,
    max_bytes: u64,
    total_weight: u64,
}

impl QueueBudget {
    /// The budget of `STS_QUEUE_DIR` and `STS_QUEUE_MAX_BYTES` over the pipelines of
    /// `specs`.
    pub(super) fn new<'a>(
        dir: Option<PathBuf>,
        max_bytes: u64,
        specs: impl IntoIterator<Item = &'a Spec>,
    ) -> Self {
        let total_weight = specs
            .into_iter()
            .map(|s| s.queue_weight)
            .sum::<u64>()
            .max(1);
        Self {
            dir,
            max_bytes,
            total_weight,
        }
    }

    /// The sink of `spec`, its queue sized by its weight.
    pub(super) fn open(&self, spec: &'static Spec) -> Result<Sink, ForwardError> {
        let share = self.max_bytes / self.total_weight * spec.queue_weight;
        Sink::open(spec, self.dir.as_deref(), share)
    }
}
