//! Messages of the receiver's intake (`<STS_STS_URL>/intake`): topology components and
//! relations with the identities of ARCHITECTURE.md, metrics, and the agent's health.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::ser::{SerializeTuple, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use crate::model::{Container, Snapshot};

/// The integration instance of the ECS topology: one per cluster (its url), shared by
/// every host's daemon, and sent without snapshots so that no host's message deletes
/// what another host reported.
pub const TOPOLOGY_INSTANCE: &str = "ecs";

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
    pub fn external_id(&self) -> String {
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
    pub fn is_empty(&self) -> bool {
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
pub fn health_message(hostname: &str, healthy: bool, message: &str, now_s: u64) -> Value {
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

/// The ECS cluster of this host and the tasks on it, with their relations (tasks are
/// part of the cluster, containers part of their task). None off ECS. The host, its
/// processes and containers go by the process agent protocol.
pub fn ecs_elements(snapshot: &Snapshot) -> Option<(String, Elements)> {
    let host_cluster = snapshot.host.ecs.as_ref().and_then(|e| e.cluster.clone());
    let mut tasks: BTreeMap<&str, &Container> = BTreeMap::new();
    let mut e = Elements::default();
    for c in &snapshot.containers {
        if let Some(ecs) = &c.info.ecs {
            e.relations.push(link(&c.urn, &ecs.task_arn, "part-of"));
            tasks.entry(ecs.task_arn.as_str()).or_insert(c);
        }
    }
    let cluster = host_cluster.or_else(|| {
        tasks
            .values()
            .find_map(|c| c.info.ecs.as_ref()?.cluster.clone())
    })?;
    e.components.push(Component {
        external_id: cluster_id(&cluster),
        type_name: "ecs-cluster",
        data: json!({"name": cluster_name(&cluster), "arn": cluster.starts_with("arn:").then_some(&cluster), "layer": "ECS Clusters", "domain": "ECS"}),
    });
    for (arn, c) in tasks {
        let Some(ecs) = &c.info.ecs else { continue };
        e.components.push(Component {
            external_id: arn.to_string(),
            type_name: "ecs-task",
            data: json!({
                "name": format!("{}:{}", ecs.family.as_deref().unwrap_or("?"), ecs.revision.as_deref().unwrap_or("?")),
                "family": ecs.family, "revision": ecs.revision, "cluster": ecs.cluster,
                "desiredStatus": ecs.task_desired_status, "knownStatus": ecs.task_known_status,
                "host": snapshot.host.hostname,
                "layer": "ECS Tasks", "domain": "ECS",
            }),
        });
        let task_cluster = ecs.cluster.as_deref().unwrap_or(&cluster);
        e.relations
            .push(link(arn, &cluster_id(task_cluster), "part-of"));
    }
    Some((cluster, e))
}

fn cluster_id(cluster: &str) -> String {
    if cluster.starts_with("arn:") {
        cluster.to_string()
    } else {
        format!("urn:ecs-cluster:/{cluster}")
    }
}

/// `arn:aws:ecs:<region>:<account>:cluster/<name>` or a bare name: the name.
pub fn cluster_name(cluster: &str) -> &str {
    cluster.rsplit('/').next().unwrap_or(cluster)
}

fn link(source: &str, target: &str, kind: &str) -> Link {
    Link {
        source: source.to_string(),
        target: target.to_string(),
        type_name: kind.to_string(),
    }
}

const MB: f64 = 1024.0 * 1024.0;

/// Gauges for the host (the core agent's names and units) and the containers (as the
/// process agent names them, tagged `containerId:<id>`).
pub fn snapshot_metrics(snapshot: &Snapshot, now_s: u64) -> Vec<Gauge<'_>> {
    let host = &snapshot.host;
    let h = host.hostname.as_str();
    let t = &host.telemetry;
    let mut out = Vec::new();
    let mut gauge = |name: &'static str, value: f64, tags: Rc<[String]>| {
        out.push(Gauge {
            name,
            timestamp: now_s,
            value,
            hostname: h,
            tags,
        });
    };
    let none = || Rc::<[String]>::from([]);
    gauge("system.cpu.user", t.cpu.user_pct, none());
    gauge("system.cpu.system", t.cpu.system_pct, none());
    gauge("system.cpu.iowait", t.cpu.iowait_pct, none());
    gauge("system.cpu.idle", t.cpu.idle_pct, none());
    gauge("system.load.1", t.load.load1, none());
    gauge("system.load.5", t.load.load5, none());
    gauge("system.load.15", t.load.load15, none());
    let m = &t.memory;
    let mb = |bytes: u64| bytes as f64 / MB;
    let memory = [
        ("system.mem.total", m.total_bytes),
        (
            "system.mem.used",
            m.total_bytes.saturating_sub(m.free_bytes),
        ),
        ("system.mem.free", m.free_bytes),
        ("system.mem.usable", m.available_bytes),
        ("system.swap.total", m.swap_total_bytes),
        ("system.swap.used", m.swap_used_bytes),
        (
            "system.swap.free",
            m.swap_total_bytes.saturating_sub(m.swap_used_bytes),
        ),
    ];
    for (name, bytes) in memory {
        gauge(name, mb(bytes), none());
    }
    for n in &t.network {
        let tags: Rc<[String]> = Rc::new([format!("device:{}", n.interface)]);
        gauge(
            "system.net.bytes_rcvd",
            n.rx_bytes_per_sec.unwrap_or(0.0),
            tags.clone(),
        );
        gauge(
            "system.net.bytes_sent",
            n.tx_bytes_per_sec.unwrap_or(0.0),
            tags,
        );
    }
    for d in &t.disks {
        let tags: Rc<[String]> = Rc::new([format!("device:{}", d.device)]);
        gauge(
            "system.io.rkb_s",
            d.read_bytes_per_sec.unwrap_or(0.0) / 1024.0,
            tags.clone(),
        );
        gauge(
            "system.io.wkb_s",
            d.write_bytes_per_sec.unwrap_or(0.0) / 1024.0,
            tags,
        );
    }
    for c in &snapshot.containers {
        let Some(ct) = &c.telemetry else { continue };
        let tags: Rc<[String]> = Rc::new([format!("containerId:{}", c.info.id)]);
        let bytes = |v: Option<u64>| v.map(|v| v as f64);
        let values = [
            ("rbps", ct.block_read_bytes_per_sec),
            ("wbps", ct.block_write_bytes_per_sec),
            ("netRcvdPs", ct.network_rx_packets_per_sec),
            ("netSentPs", ct.network_tx_packets_per_sec),
            ("netRcvdBps", ct.network_rx_bytes_per_sec),
            ("netSentBps", ct.network_tx_bytes_per_sec),
            ("userPct", ct.cpu_user_pct),
            ("systemPct", ct.cpu_system_pct),
            ("totalPct", ct.cpu_pct),
            ("memRss", bytes(ct.memory_rss_bytes)),
            ("memCache", bytes(ct.memory_cache_bytes)),
        ];
        for (name, value) in values {
            if let Some(v) = value {
                gauge(name, v, tags.clone());
            }
        }
    }
    out
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
