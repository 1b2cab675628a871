//! The memory budget of one decode: every allocation the decoders make for the decoded
//! traces is charged here first, and a decode that would exceed its budget fails instead.

use std::mem::size_of;

use super::error::{Fail, Reason};

pub(crate) struct Budget {
    left: usize,
    limit: usize,
    body: usize,
}

impl Budget {
    pub fn new(limit: usize, body: usize) -> Self {
        Budget {
            left: limit,
            limit,
            body,
        }
    }

    /// What is left of the budget.
    pub fn left(&self) -> usize {
        self.left
    }

    /// Charges `bytes` about to be allocated; `offset` locates the error if they don't fit.
    #[inline]
    pub fn charge(&mut self, bytes: usize, offset: usize) -> Result<(), Fail> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(self.exceeded(offset)),
        }
    }

    #[cold]
    fn exceeded(&self, offset: usize) -> Fail {
        Fail::new(
            Reason::TooLarge {
                limit: self.limit,
                body: self.body,
            },
            offset,
        )
    }

    /// Charges `n` elements of `T` about to be reserved in a `Vec`.
    #[inline]
    pub fn charge_vec<T>(&mut self, n: usize, offset: usize) -> Result<(), Fail> {
        self.charge(n.saturating_mul(size_of::<T>()), offset)
    }

    /// Charges a `HashMap<K, V>` table about to be made for `entries` entries.
    #[inline]
    pub fn charge_map<K, V>(&mut self, entries: usize, offset: usize) -> Result<(), Fail> {
        self.charge(map_table_bytes::<K, V>(entries), offset)
    }

    /// Copies text from the payload into an owned `String`. Invalid UTF-8 sequences become
    /// U+FFFD, as the Datadog agent repairs them, rather than failing the payload.
    #[inline]
    pub fn string(&mut self, bytes: &[u8], offset: usize) -> Result<String, Fail> {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                self.charge(text.len(), offset)?;
                Ok(text.to_owned())
            }
            Err(_) => self.repair(bytes, offset),
        }
    }

    #[cold]
    pub fn repair(&mut self, bytes: &[u8], offset: usize) -> Result<String, Fail> {
        let chunk_len = |c: std::str::Utf8Chunk<'_>| {
            c.valid().len() + if c.invalid().is_empty() { 0 } else { 3 }
        };
        let len = bytes.utf8_chunks().map(chunk_len).sum();
        self.charge(len, offset)?;
        let mut text = String::with_capacity(len);
        for chunk in bytes.utf8_chunks() {
            text.push_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
        Ok(text)
    }

    /// Pushes onto a `Vec` whose final length is not known in advance, charging each
    /// growth in full (the old buffer may live on while the new one is filled).
    pub fn push<T>(&mut self, vec: &mut Vec<T>, item: T, offset: usize) -> Result<(), Fail> {
        if vec.len() == vec.capacity() {
            let grown = vec.capacity().saturating_mul(2).max(4);
            self.charge_vec::<T>(grown, offset)?;
            vec.reserve_exact(grown - vec.len());
        }
        vec.push(item);
        Ok(())
    }
}

impl Budget {
    /// Inserts into a `HashMap` whose final size is not known in advance, charging each
    /// growth of its table in full.
    pub fn insert<V>(
        &mut self,
        map: &mut std::collections::HashMap<String, V>,
        key: String,
        value: V,
        offset: usize,
    ) -> Result<(), Fail> {
        if map.len() == map.capacity() {
            self.charge_map::<String, V>(map.capacity() + 1, offset)?;
            map.reserve(1);
        }
        map.insert(key, value);
        Ok(())
    }
}

/// An upper bound on the bytes `HashMap::with_capacity(entries)` allocates: hashbrown
/// rounds the bucket count up to a power of two at most 7/8 full, each bucket holding a
/// `(K, V)` and a control byte, plus one group (16) of trailing control bytes and alignment.
pub(crate) fn map_table_bytes<K, V>(entries: usize) -> usize {
    let buckets = match entries {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        8..=14 => 16,
        _ => (entries.saturating_mul(8) / 7).next_power_of_two(),
    };
    buckets.saturating_mul(size_of::<(K, V)>() + 1) + 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_the_limit() {
        let mut budget = Budget::new(100, 10);
        budget.charge(60, 0).unwrap();
        budget.charge(40, 0).unwrap();
        let err = budget.charge(1, 7).unwrap_err();
        assert_eq!(err.offset, 7);
        assert_eq!(
            err.reason,
            Reason::TooLarge {
                limit: 100,
                body: 10
            }
        );
        assert!(Budget::new(1 << 40, 1)
            .charge_vec::<u64>(usize::MAX / 4, 0)
            .is_err());
    }

    #[test]
    fn repairs_invalid_utf8() {
        let mut budget = Budget::new(1000, 10);
        let text = budget.string(b"caf\xc3\xa9 \xff\xfe!", 0).unwrap();
        assert_eq!(text, "café \u{fffd}\u{fffd}!");
        assert_eq!(text.capacity(), text.len(), "sized exactly");
        assert_eq!(budget.left, 1000 - text.len());
    }

    #[test]
    fn map_estimate_covers_hashbrown() {
        for entries in [1usize, 3, 4, 7, 8, 14, 15, 28, 29, 100, 1000] {
            let map = std::collections::HashMap::<String, String>::with_capacity(entries);
            let buckets = (map.capacity() + 1).next_power_of_two();
            assert!(
                map_table_bytes::<String, String>(entries) >= buckets * 49,
                "{entries} entries: {} buckets",
                buckets
            );
        }
    }

    #[test]
    fn push_grows_by_doubling() {
        let mut budget = Budget::new(4 * 8 + 8 * 8, 0);
        let mut vec = Vec::<u64>::new();
        for i in 0..8 {
            budget.push(&mut vec, i, 0).unwrap();
        }
        assert_eq!(vec.capacity(), 8);
        assert!(
            budget.push(&mut vec, 8, 0).is_err(),
            "growing to 16 exceeds"
        );
    }
}
