//! Joins what the collectors found: processes to their containers and tasks, and the
//! relations between host, processes, containers and ECS tasks.

use std::collections::HashMap;

use crate::collect::ecs::EcsInfo;
use crate::model::{Container, Process, Relation};

mod pairing;
pub use pairing::{connects_to, pair, CONNECTS_TO};

pub(crate) const RUNS_ON: &str = "runs-on";
pub(crate) const RUNS_IN: &str = "runs-in";
pub(crate) const PART_OF: &str = "part-of";

/// Fills each process's ECS task from its container and returns the relations:
/// process runs-in container, container part-of task (by task ARN), and every process
/// and container runs-on the host.
pub(crate) fn join(
    host_urn: &str,
    processes: &mut [Process],
    containers: &[Container],
) -> Vec<Relation> {
    let by_id: HashMap<&str, &Container> =
        containers.iter().map(|c| (c.info.id.as_str(), c)).collect();
    let mut relations = Vec::with_capacity(processes.len() * 2 + containers.len() * 2);
    for process in processes.iter_mut() {
        relations.push(relation(RUNS_ON, &process.urn, host_urn));
        let Some(container) = process.container_id.as_deref().and_then(|id| by_id.get(id)) else {
            continue;
        };
        relations.push(relation(RUNS_IN, &process.urn, &container.urn));
        process.ecs_task_arn = container.info.ecs.as_ref().map(|e| e.task_arn.clone());
    }
    for container in containers {
        relations.push(relation(RUNS_ON, &container.urn, host_urn));
        if let Some(ecs) = &container.info.ecs {
            relations.push(relation(PART_OF, &container.urn, &ecs.task_arn));
        }
    }
    relations
}

fn relation(kind: &'static str, source: &str, target: &str) -> Relation {
    Relation {
        kind,
        source: source.to_string(),
        target: target.to_string(),
        traffic: None,
    }
}

/// Adds the task's desired and known status from the ECS agent to each ECS container.
pub(crate) fn enrich_ecs(containers: &mut [Container], ecs: &EcsInfo) {
    for container in containers {
        let Some(labels) = container.info.ecs.as_mut() else {
            continue;
        };
        if let Some(task) = ecs.tasks.iter().find(|t| t.arn == labels.task_arn) {
            labels.task_desired_status = Some(task.desired_status.clone());
            labels.task_known_status = Some(task.known_status.clone());
        }
    }
}
