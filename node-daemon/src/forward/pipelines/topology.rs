//! The ECS topology: this host's cluster and its tasks, as intake topology messages of
//! what changed since the last cycle (a complete one now and then, `encode/diff.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::json;

use super::{Outlet, Spec};
use crate::forward::encode::diff::TopologyDiff;
use crate::forward::encode::intake::{topology_message, Component, Elements, Link};
use crate::model::{Container, Snapshot};
use crate::poison::IgnorePoison;

pub(crate) const SPEC: Spec = Spec::intake("topology", "forward.topology");

/// All of the ECS topology again every this many cycles; changes only in between.
const FULL_SNAPSHOT_EVERY: u64 = 6;

pub(crate) struct Pipeline {
    pub(crate) out: Outlet,
    diff: Mutex<TopologyDiff>,
}

impl Pipeline {
    pub(crate) fn new(out: Outlet) -> Self {
        Self {
            out,
            diff: Mutex::new(TopologyDiff::new(FULL_SNAPSHOT_EVERY)),
        }
    }

    /// The topology of this cycle, when there is one and anything changed (or it is
    /// time for all of it).
    pub(crate) fn submit(&self, snapshot: &Snapshot, now_s: u64) {
        let Some((cluster, elements)) = ecs_elements(snapshot) else {
            return;
        };
        let update = self.diff.lock().ignore_poison().update(elements);
        if update.full || !update.elements.is_empty() || !update.delete_ids.is_empty() {
            self.out.submit_intake(&topology_message(
                self.out.hostname(),
                &cluster,
                &update.elements,
                &update.delete_ids,
                now_s,
            ));
        }
    }
}

/// The ECS cluster of this host and the tasks on it, with their relations (tasks are
/// part of the cluster, containers part of their task). None off ECS. The host, its
/// processes and containers go by the process agent protocol.
pub(crate) fn ecs_elements(snapshot: &Snapshot) -> Option<(String, Elements)> {
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
pub(crate) fn cluster_name(cluster: &str) -> &str {
    cluster.rsplit('/').next().unwrap_or(cluster)
}

fn link(source: &str, target: &str, kind: &str) -> Link {
    Link {
        source: source.to_string(),
        target: target.to_string(),
        type_name: kind.to_string(),
    }
}
