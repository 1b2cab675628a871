//! What the last cycle saw, for the spans' resources: the host's attributes and each
//! process's (with its container and task).

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::resource;
use crate::model::{ContainerInfo, Snapshot};

#[derive(Default)]
pub(super) struct Known {
    pub(super) host: Vec<KeyValue>,
    /// By pid: the process's start time (Unix ms) and its attributes.
    processes: HashMap<u32, (u64, Vec<KeyValue>)>,
}

impl Known {
    /// The host's and every process's attributes in `snapshot`.
    pub(super) fn of(snapshot: &Snapshot, machine_id: Option<&str>) -> Self {
        let containers: HashMap<&str, &ContainerInfo> = snapshot
            .containers
            .iter()
            .map(|c| (c.info.id.as_str(), &c.info))
            .collect();
        let ecs = snapshot.host.ecs.as_ref();
        let processes = snapshot
            .processes
            .iter()
            .map(|p| {
                let container = p.container_id.as_deref().and_then(|id| containers.get(id));
                let attributes = resource::process(p, container.copied(), ecs);
                (p.pid, (p.create_time_ms, attributes))
            })
            .collect();
        Self {
            host: resource::host(&snapshot.host, machine_id),
            processes,
        }
    }

    /// The attributes of process `pid`, when it is the one started at `started` (Unix
    /// ms, when known: a pid may have been reused since).
    pub(super) fn process(&self, pid: u32, started: Option<u64>) -> Option<&[KeyValue]> {
        let (create_time_ms, attributes) = self.processes.get(&pid)?;
        match started {
            Some(ms) if ms != *create_time_ms => None,
            _ => Some(attributes),
        }
    }
}
