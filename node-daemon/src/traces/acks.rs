//! Which batch ids of a sidecar were already taken, in bounded memory.

use std::collections::BTreeSet;

/// Ids at or below `floor` were all seen; `above` holds seen ids past a gap.
#[derive(Debug, Default)]
pub struct SeenBatches {
    floor: u64,
    above: BTreeSet<u64>,
}

/// Ids kept past a gap; beyond this the oldest are folded into the floor.
const WINDOW: usize = 4096;

impl SeenBatches {
    /// Marks `id` seen; false when it was seen before (a duplicate).
    pub fn insert(&mut self, id: u64) -> bool {
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
    fn memory_stays_bounded() {
        let mut seen = SeenBatches::default();
        for id in (2..100_000).step_by(2) {
            seen.insert(id);
        }
        assert!(seen.above.len() <= WINDOW + 1);
    }
}
