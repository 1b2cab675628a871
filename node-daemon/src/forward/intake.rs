//! Messages of the receiver's intake (`<STS_STS_URL>/intake`): topology components and
//! relations with the identities of ARCHITECTURE.md, metrics, and the agent's health.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::ser::{SerializeTuple, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use crate::join::CONNECTS_TO;
use crate::model::{Container, Host, Process, Snapshot};

/// The integration instance that owns what the daemon reports, per topology pipeline.
pub const TOPOLOGY_INSTANCE: &str = "ecs-node";
pub const PROCESS_INSTANCE: &str = "ecs-processes";

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

/// One intake message around a topology update. `full` marks a complete snapshot (the
/// receiver deletes whatever the instance sent before and is missing from it).
pub fn topology_message(
    hostname: &str,
    instance: &str,
    update: &Elements,
    delete_ids: &[String],
    full: bool,
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
            "start_snapshot": full,
            "stop_snapshot": full,
            "instance": {"type": instance, "url": hostname},
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

/// Host, ECS cluster and tasks, and containers, with their relations.
pub fn node_elements(snapshot: &Snapshot) -> Elements {
    let host = &snapshot.host;
    let mut e = Elements::default();
    e.components.push(host_component(host));
    let cluster = host.ecs.as_ref().and_then(|ecs| ecs.cluster.clone());
    if let Some(cluster) = &cluster {
        e.components.push(Component {
            external_id: cluster_id(cluster),
            type_name: "ecs-cluster",
            data: json!({"name": cluster, "layer": "ECS Clusters", "domain": "ECS"}),
        });
        e.relations
            .push(link(&host.urn, &cluster_id(cluster), "member-of"));
    }
    let mut tasks: BTreeMap<&str, &Container> = BTreeMap::new();
    for c in &snapshot.containers {
        e.components.push(container_component(c));
        e.relations.push(link(&c.urn, &host.urn, "runs-on"));
        if let Some(ecs) = &c.info.ecs {
            e.relations.push(link(&c.urn, &ecs.task_arn, "part-of"));
            tasks.entry(ecs.task_arn.as_str()).or_insert(c);
        }
    }
    for (arn, c) in tasks {
        let ecs = c
            .info
            .ecs
            .as_ref()
            .expect("only ECS containers are in tasks");
        e.components.push(Component {
            external_id: arn.to_string(),
            type_name: "ecs-task",
            data: json!({
                "name": format!("{}:{}", ecs.family.as_deref().unwrap_or("?"), ecs.revision.as_deref().unwrap_or("?")),
                "family": ecs.family, "revision": ecs.revision, "cluster": ecs.cluster,
                "desiredStatus": ecs.task_desired_status, "knownStatus": ecs.task_known_status,
                "layer": "ECS Tasks", "domain": "ECS",
            }),
        });
        if let Some(task_cluster) = ecs.cluster.as_ref().or(cluster.as_ref()) {
            e.relations
                .push(link(arn, &cluster_id(task_cluster), "part-of"));
        }
    }
    e
}

/// Processes and what they run in and on, plus the `connects-to` relations between
/// processes and between containers (their traffic goes as metrics: [`snapshot_metrics`]).
pub fn process_elements(snapshot: &Snapshot) -> Elements {
    let mut e = Elements::default();
    for p in &snapshot.processes {
        e.components.push(process_component(p));
    }
    for r in &snapshot.relations {
        if r.source.starts_with("urn:process:") || r.kind == CONNECTS_TO {
            e.relations.push(link(&r.source, &r.target, r.kind));
        }
    }
    e
}

fn cluster_id(cluster: &str) -> String {
    if cluster.starts_with("arn:") {
        cluster.to_string()
    } else {
        format!("urn:ecs-cluster:/{cluster}")
    }
}

fn link(source: &str, target: &str, kind: &str) -> Link {
    Link {
        source: source.to_string(),
        target: target.to_string(),
        type_name: kind.to_string(),
    }
}

fn host_component(host: &Host) -> Component {
    let instance = host.ecs.as_ref().and_then(|e| e.instance.as_ref());
    let identifiers: Vec<String> = instance
        .map(|i| format!("urn:host:/{}", i.instance_id))
        .into_iter()
        .collect();
    Component {
        external_id: host.urn.clone(),
        type_name: "host",
        data: json!({
            "name": host.hostname, "os": host.os, "kernel": host.kernel, "cpuCount": host.cpu_count,
            "memoryBytes": host.memory_total_bytes, "bootTimeMs": host.boot_time_ms,
            "identifiers": identifiers,
            "ec2": instance,
            "layer": "Machines", "domain": "ECS",
        }),
    }
}

fn container_component(c: &Container) -> Component {
    let i = &c.info;
    Component {
        external_id: c.urn.clone(),
        type_name: "container",
        data: json!({
            "name": i.name, "containerId": i.id, "image": i.image, "imageId": i.image_id,
            "state": i.state, "created": i.created, "labels": i.labels,
            "networkMode": i.network_mode, "ipAddresses": i.ip_addresses, "ports": i.ports,
            "ecs": i.ecs, "role": i.role,
            "identifiers": [format!("urn:container:/{}", i.id)],
            "layer": "Containers", "domain": "ECS",
        }),
    }
}

fn process_component(p: &Process) -> Component {
    Component {
        external_id: p.urn.clone(),
        type_name: "process",
        data: json!({
            "name": p.name, "pid": p.pid, "ppid": p.ppid, "createTime": p.create_time_ms,
            "exe": p.exe, "command": {"args": p.cmdline}, "user": p.user,
            "containerId": p.container_id, "ecsTaskArn": p.ecs_task_arn,
            "layer": "Processes", "domain": "ECS",
        }),
    }
}

/// Gauges for the host, processes, containers and connections.
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
    gauge("system.mem.used", t.memory.used_bytes as f64, none());
    gauge("system.mem.usable", t.memory.available_bytes as f64, none());
    gauge("system.swap.used", t.memory.swap_used_bytes as f64, none());
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
    for p in &snapshot.processes {
        let tags: Rc<[String]> = Rc::new([
            p.urn.clone(),
            format!("pid:{}", p.pid),
            format!("process_name:{}", p.name),
        ]);
        gauge("process.cpu.pct", p.cpu_pct.unwrap_or(0.0), tags.clone());
        gauge("process.mem.rss", p.rss_bytes as f64, tags.clone());
        gauge("process.threads", p.threads as f64, tags.clone());
        if let Some(fds) = p.open_fds {
            gauge("process.open_fds", fds as f64, tags.clone());
        }
        if let (Some(r), Some(w)) = (p.read_bytes, p.write_bytes) {
            gauge("process.io.read_bytes", r as f64, tags.clone());
            gauge("process.io.write_bytes", w as f64, tags);
        }
    }
    // The traffic of each `connects-to` relation, seen from its client, tagged with the
    // relation's external id and both ends.
    for r in &snapshot.relations {
        let Some(traffic) = &r.traffic else { continue };
        let tags: Rc<[String]> = Rc::new([
            format!("relation:{}->{}", r.source, r.target),
            format!("source:{}", r.source),
            format!("target:{}", r.target),
        ]);
        gauge("connection.count", traffic.connections as f64, tags.clone());
        let values = [
            (
                "connection.bytes_sent",
                traffic.bytes_sent.map(|v| v as f64),
            ),
            (
                "connection.bytes_received",
                traffic.bytes_received.map(|v| v as f64),
            ),
            ("connection.bytes_sent_per_sec", traffic.bytes_sent_per_sec),
            (
                "connection.bytes_received_per_sec",
                traffic.bytes_received_per_sec,
            ),
        ];
        for (name, value) in values {
            if let Some(v) = value {
                gauge(name, v, tags.clone());
            }
        }
    }
    for c in &snapshot.containers {
        let Some(ct) = &c.telemetry else { continue };
        let mut tags = vec![c.urn.clone(), format!("container_name:{}", c.info.name)];
        if let Some(ecs) = &c.info.ecs {
            tags.push(format!("task_arn:{}", ecs.task_arn));
        }
        let tags: Rc<[String]> = tags.into();
        let pairs = [
            ("container.cpu.pct", ct.cpu_pct),
            (
                "container.mem.usage",
                ct.memory_usage_bytes.map(|v| v as f64),
            ),
            (
                "container.mem.limit",
                ct.memory_limit_bytes.map(|v| v as f64),
            ),
            ("container.net.rcvd", ct.network_rx_bytes.map(|v| v as f64)),
            ("container.net.sent", ct.network_tx_bytes.map(|v| v as f64)),
            ("container.io.read", ct.block_read_bytes.map(|v| v as f64)),
            ("container.io.write", ct.block_write_bytes.map(|v| v as f64)),
        ];
        for (name, value) in pairs {
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
