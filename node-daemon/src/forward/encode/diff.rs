//! Only what changed between cycles: the receiver takes incremental topology updates with
//! `delete_ids` between complete snapshots; a complete snapshot is sent at start and every
//! `full_every` cycles, so the receiver's view is rebuilt regularly whatever was lost.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io;

use super::intake::Elements;

#[derive(Debug)]
pub struct TopologyDiff {
    full_every: u64,
    cycles: u64,
    /// externalId -> hash of what was last sent.
    sent: BTreeMap<String, u64>,
}

/// One update to send.
#[derive(Debug, PartialEq)]
pub struct Update {
    pub elements: Elements,
    pub delete_ids: Vec<String>,
    pub(crate) full: bool,
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Feeds serialized JSON into a hasher, so that hashing a component needs no string.
struct HashWriter<'a>(&'a mut DefaultHasher);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The hash of a component's type and data as they would be sent.
fn component_hash(type_name: &str, data: &serde_json::Value) -> u64 {
    let mut h = DefaultHasher::new();
    type_name.hash(&mut h);
    serde_json::to_writer(HashWriter(&mut h), data).expect("hashing cannot fail");
    h.finish()
}

impl TopologyDiff {
    pub fn new(full_every: u64) -> Self {
        Self {
            full_every: full_every.max(1),
            cycles: 0,
            sent: BTreeMap::new(),
        }
    }

    /// The update that brings the receiver from what was sent last to `now`.
    pub fn update(&mut self, now: Elements) -> Update {
        let full = self.cycles % self.full_every == 0;
        self.cycles += 1;
        let mut current = BTreeMap::new();
        let mut changed = Elements::default();
        for c in now.components {
            let h = component_hash(c.type_name, &c.data);
            current.insert(c.external_id.clone(), h);
            if full || self.sent.get(&c.external_id) != Some(&h) {
                changed.components.push(c);
            }
        }
        for r in now.relations {
            let id = r.external_id();
            let h = hash_of(&r.type_name);
            current.insert(id.clone(), h);
            if full || self.sent.get(&id) != Some(&h) {
                changed.relations.push(r);
            }
        }
        let delete_ids = self
            .sent
            .keys()
            .filter(|id| !current.contains_key(*id))
            .cloned()
            .collect();
        self.sent = current;
        Update {
            elements: changed,
            delete_ids,
            full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::encode::intake::{Component, Link};
    use serde_json::json;

    fn component(id: &str, v: i64) -> Component {
        Component {
            external_id: id.into(),
            type_name: "process",
            data: json!({"v": v}),
        }
    }

    fn elements(components: Vec<Component>) -> Elements {
        Elements {
            components,
            relations: vec![Link {
                source: "a".into(),
                target: "h".into(),
                type_name: "runs-on".into(),
            }],
        }
    }

    #[test]
    fn full_then_changes_then_deletes_then_full_again() {
        let mut d = TopologyDiff::new(3);
        let first = d.update(elements(vec![component("a", 1), component("b", 1)]));
        assert!(first.full);
        assert_eq!(first.elements.components.len(), 2);
        assert_eq!(first.elements.relations.len(), 1);

        let second = d.update(elements(vec![component("a", 2), component("b", 1)]));
        assert!(!second.full);
        assert_eq!(second.elements.components, vec![component("a", 2)]);
        assert!(second.elements.relations.is_empty());
        assert!(second.delete_ids.is_empty());

        let third = d.update(Elements {
            components: vec![component("a", 2)],
            relations: vec![],
        });
        assert_eq!(third.delete_ids, vec!["a->h".to_string(), "b".to_string()]);
        assert!(third.elements.components.is_empty());

        let fourth = d.update(Elements {
            components: vec![component("a", 2)],
            relations: vec![],
        });
        assert!(fourth.full, "every third update is complete");
        assert_eq!(fourth.elements.components.len(), 1);
    }
}
