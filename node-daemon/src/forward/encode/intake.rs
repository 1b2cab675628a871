//! Messages of the receiver's intake (`<STS_STS_URL>/intake`): topology components and
//! relations, metrics, and the agent's health. What they hold is made by the pipelines
//! (`pipelines/{topology,metrics,health}.rs`).

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::ser::{SerializeTuple, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

/// Where intake messages (topology, metrics, health) go, below their base URL.
pub const INTAKE_PATH: &str = "/intake";

/// The integration instance of the ECS topology: one per cluster (its url), shared by
/// every host's daemon, and sent without snapshots so that no host's message deletes
/// what another host reported.
pub(crate) const TOPOLOGY_INSTANCE: &str = "ecs";

#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub external_id: String,
    pub type_name: &'static str,
    pub data: Value,
}

impl Component {
    fn to_json(&self) -> Value {
        json!({"externalId": self.external_id, "type": {"name": self.type_name}, "data": self.data})
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub source: String,
    pub target: String,
    pub type_name: String,
}

impl Link {
    pub(crate) fn external_id(&self) -> String {
        format!("{}->{}", self.source, self.target)
    }

    fn to_json(&self) -> Value {
        json!({
            "externalId": self.external_id(),
            "type": {"name": self.type_name},
            "sourceId": self.source,
            "targetId": self.target,
            "data": {},
        })
    }
}

/// The elements of one topology instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Elements {
    pub components: Vec<Component>,
    pub relations: Vec<Link>,
}

impl Elements {
    pub(crate) fn is_empty(&self) -> bool {
        self.components.is_empty() && self.relations.is_empty()
    }
}

/// One intake message with a topology update of the instance `(TOPOLOGY_INSTANCE, url)`:
/// never a snapshot, so the receiver deletes only `delete_ids`.
pub fn topology_message(
    hostname: &str,
    url: &str,
    update: &Elements,
    delete_ids: &[String],
    now_s: u64,
) -> Value {
    json!({
        "collection_timestamp": now_s,
        "internalHostname": hostname,
        "events": {},
        "metrics": [],
        "service_checks": [],
        "health": [],
        "topologies": [{
            "start_snapshot": false,
            "stop_snapshot": false,
            "instance": {"type": TOPOLOGY_INSTANCE, "url": url},
            "components": update.components.iter().map(Component::to_json).collect::<Vec<_>>(),
            "relations": update.relations.iter().map(Link::to_json).collect::<Vec<_>>(),
            "delete_ids": delete_ids,
        }],
    })
}

/// An intake message that carries metrics only; serialized straight from the gauges.
#[derive(Serialize)]
pub struct MetricsMessage<'a> {
    collection_timestamp: u64,
    #[serde(rename = "internalHostname")]
    internal_hostname: &'a str,
    events: BTreeMap<(), ()>,
    metrics: &'a [Gauge<'a>],
    service_checks: [(); 0],
    health: [(); 0],
    topologies: [(); 0],
}

pub fn metrics_message<'a>(
    hostname: &'a str,
    metrics: &'a [Gauge<'a>],
    now_s: u64,
) -> MetricsMessage<'a> {
    MetricsMessage {
        collection_timestamp: now_s,
        internal_hostname: hostname,
        events: BTreeMap::new(),
        metrics,
        service_checks: [],
        health: [],
        topologies: [],
    }
}

/// One gauge, as the intake takes it: `[name, timestamp, value, {hostname, tags, type}]`.
/// The tags are shared by the gauges of one process, container or relation.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge<'a> {
    pub name: &'static str,
    pub timestamp: u64,
    pub value: f64,
    pub hostname: &'a str,
    pub tags: Rc<[String]>,
}

impl Serialize for Gauge<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Meta<'a> {
            hostname: &'a str,
            tags: &'a [String],
            #[serde(rename = "type")]
            kind: &'static str,
        }
        let mut tuple = serializer.serialize_tuple(4)?;
        tuple.serialize_element(self.name)?;
        tuple.serialize_element(&self.timestamp)?;
        tuple.serialize_element(&self.value)?;
        tuple.serialize_element(&Meta {
            hostname: self.hostname,
            tags: &self.tags,
            kind: "gauge",
        })?;
        tuple.end()
    }
}

/// The daemon's own health as a service check (0 ok, 2 critical).
pub(crate) fn health_message(hostname: &str, healthy: bool, message: &str, now_s: u64) -> Value {
    json!({
        "collection_timestamp": now_s,
        "internalHostname": hostname,
        "events": {},
        "metrics": [],
        "service_checks": [{
            "check": "stackstate.node_daemon.up",
            "host_name": hostname,
            "status": if healthy { 0 } else { 2 },
            "timestamp": now_s,
            "message": message,
            "tags": [],
        }],
        "health": [],
        "topologies": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_message_has_every_intake_key_and_gauges_as_tuples() {
        let tags: Rc<[String]> = Rc::new(["pid:7".to_string()]);
        let gauges = [Gauge {
            name: "process.mem.rss",
            timestamp: 1_700_000_000,
            value: 4096.0,
            hostname: "h",
            tags,
        }];
        let sent = serde_json::to_value(metrics_message("h", &gauges, 1_700_000_001)).unwrap();
        assert_eq!(
            sent,
            json!({
                "collection_timestamp": 1_700_000_001u64,
                "internalHostname": "h",
                "events": {},
                "metrics": [["process.mem.rss", 1_700_000_000u64, 4096.0,
                             {"hostname": "h", "tags": ["pid:7"], "type": "gauge"}]],
                "service_checks": [],
                "health": [],
                "topologies": [],
            })
        );
    }
}
