//! Relay acknowledgement and duplicates.
//!
//! A sidecar keeps each batch until the daemon acknowledges it, and sends it again on its
//! next stream when no acknowledgement came. The relay acknowledges a batch once its spans
//! are queued ([`SpanSink::submit`] returns then; on disk with `STS_QUEUE_DIR`), so a span
//! the sidecar has let go of is never only in the daemon's memory. The last queued batch of
//! those spans records the sidecar batch ([`record_on_last`]); a restarted daemon finds
//! these records in its queue ([`SpanSink::queued_at_start`]) and counts their batches as
//! taken, so that one whose acknowledgement never reached the sidecar is dropped as a
//! duplicate when it comes again ([`Duplicates`]). A duplicate is acknowledged as
//! accepted, with the reason "duplicate", and its spans are counted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sts_proto::daemon::v1::BatchAck;

use super::wire::BatchHeader;
use crate::poison::IgnorePoison;
use crate::span::CorrelatedSpan;

/// A sidecar's relay batch: `SpanBatch.sidecar_id` and `batch_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RelayBatch {
    pub(crate) sidecar_id: String,
    pub(crate) batch_id: u64,
}

/// Where the relay hands the correlated spans of each batch (the forwarder's traces
/// pipeline).
pub(crate) trait SpanSink: Send + Sync {
    /// Queues the spans of the sidecar batch `from` before it returns, the last of the
    /// batches they make recording `from` ([`record_on_last`]).
    fn submit(&self, spans: Vec<CorrelatedSpan>, from: RelayBatch);

    /// The sidecar batches recorded by the batches that were queued but not yet sent when
    /// the daemon started (the first call; later ones get nothing).
    fn queued_at_start(&self) -> Vec<RelayBatch>;
}

/// `parts`, the batches the spans of `from` make, in order, each with the sidecar batch
/// it records: `from` goes with the last, so that it is queued once all its spans are.
pub(crate) fn record_on_last<T>(
    parts: Vec<T>,
    from: RelayBatch,
) -> impl Iterator<Item = (T, Option<RelayBatch>)> {
    let last = parts.len().saturating_sub(1);
    let mut from = Some(from);
    parts
        .into_iter()
        .enumerate()
        .map(move |(i, part)| (part, if i == last { from.take() } else { None }))
}

/// The reply to a batch whose spans were taken.
pub(crate) fn taken(header: &BatchHeader) -> BatchAck {
    ack(header, true, String::new())
}

/// The reply to a batch taken before: accepted, so that the sidecar lets it go.
pub(crate) fn duplicate(header: &BatchHeader) -> BatchAck {
    ack(header, true, "duplicate".into())
}

/// The reply to a batch refused for good: the sidecar drops and counts its spans.
pub(crate) fn refused(header: &BatchHeader, reason: String) -> BatchAck {
    ack(header, false, reason)
}

fn ack(header: &BatchHeader, accepted: bool, reason: String) -> BatchAck {
    BatchAck {
        sidecar_id: header.sidecar_id.clone(),
        batch_id: header.batch_id,
        accepted,
        reason,
    }
}

/// Sidecars whose seen batch ids are remembered at most.
const MAX_TRACKED_SIDECARS: usize = 4096;

/// The batches taken from each sidecar, in bounded memory.
#[derive(Debug, Default)]
pub(crate) struct Duplicates {
    seen: Mutex<HashMap<String, SeenBatches>>,
}

impl Duplicates {
    /// With the batches a previous daemon queued already taken.
    pub(crate) fn new(queued: Vec<RelayBatch>) -> Self {
        let mut seen: HashMap<String, SeenBatches> = HashMap::new();
        for batch in queued {
            seen.entry(batch.sidecar_id)
                .or_default()
                .insert(batch.batch_id);
        }
        Self {
            seen: Mutex::new(seen),
        }
    }

    /// Marks the batch taken; false when it was taken before (a duplicate).
    pub(crate) fn first_time(&self, sidecar_id: &str, batch_id: u64) -> bool {
        let mut seen = self.seen.lock().ignore_poison();
        if !seen.contains_key(sidecar_id) && seen.len() >= MAX_TRACKED_SIDECARS {
            seen.clear();
        }
        seen.entry(sidecar_id.to_string())
            .or_default()
            .insert(batch_id)
    }
}

/// Which batch ids of a sidecar were already taken: ids at or below `floor` were all
/// seen; `above` holds seen ids past a gap.
#[derive(Debug, Default)]
struct SeenBatches {
    floor: u64,
    above: BTreeSet<u64>,
}

/// Ids kept past a gap; beyond this the oldest are folded into the floor.
const WINDOW: usize = 4096;

impl SeenBatches {
    /// Marks `id` seen; false when it was seen before (a duplicate).
    fn insert(&mut self, id: u64) -> bool {
        if id <= self.floor || !self.above.insert(id) {
            return false;
        }
        while self.above.first() == Some(&(self.floor + 1)) {
            self.floor += 1;
            self.above.pop_first();
        }
        if self.above.len() > WINDOW {
            // A sidecar that skipped ids (it restarted with a new id space, or batches were
            // dropped on its side): treat everything below the window as seen.
            if let Some(first) = self.above.pop_first() {
                self.floor = first;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_in_and_out_of_order() {
        let mut seen = SeenBatches::default();
        assert!(seen.insert(1));
        assert!(seen.insert(3));
        assert!(!seen.insert(1));
        assert!(!seen.insert(3));
        assert!(seen.insert(2));
        assert!(!seen.insert(2));
        assert_eq!(seen.floor, 3);
        assert!(seen.above.is_empty());
    }

    #[test]
    fn the_sidecar_batch_is_recorded_by_the_last_part_only() {
        let from = RelayBatch {
            sidecar_id: "app-1".into(),
            batch_id: 9,
        };
        let parts: Vec<_> = record_on_last(vec!['a', 'b', 'c'], from.clone()).collect();
        assert_eq!(parts, [('a', None), ('b', None), ('c', Some(from.clone()))]);
        assert_eq!(record_on_last(Vec::<char>::new(), from).count(), 0);
    }

    #[test]
    fn batches_queued_before_a_restart_are_duplicates() {
        let queued = RelayBatch {
            sidecar_id: "app-1".into(),
            batch_id: 5,
        };
        let duplicates = Duplicates::new(vec![queued]);
        assert!(!duplicates.first_time("app-1", 5));
        assert!(duplicates.first_time("app-1", 6));
        assert!(!duplicates.first_time("app-1", 6));
        assert!(duplicates.first_time("app-2", 5));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut seen = SeenBatches::default();
        for id in (2..100_000).step_by(2) {
            seen.insert(id);
        }
        assert!(seen.above.len() <= WINDOW + 1);
    }
}
