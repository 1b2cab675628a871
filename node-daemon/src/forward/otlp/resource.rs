//! Resource attributes from the OpenTelemetry semantic conventions, for the host, a
//! process, a container and its ECS task.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

use crate::collect::ecs::EcsInfo;
use crate::model::{split_image, ContainerInfo, EcsContainer, Host, Process};

pub(super) fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
    }
}

pub(super) fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
    }
}

pub(super) fn double(key: &str, value: f64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::DoubleValue(value)),
        }),
    }
}

/// The host's: `host.*`, `os.type`, `cloud.*` from the EC2 identity when there is one.
/// `host.id` is the instance id, else the machine id.
pub(super) fn host(host: &Host, machine_id: Option<&str>) -> Vec<KeyValue> {
    let mut attributes = vec![
        string("host.name", host.hostname.as_str()),
        string("os.type", "linux"),
        string("os.description", host.os.as_str()),
    ];
    let ecs = host.ecs.as_ref();
    match ecs.and_then(|e| e.instance.as_ref()) {
        Some(instance) => {
            attributes.push(string("host.id", instance.instance_id.as_str()));
            attributes.push(string("cloud.provider", "aws"));
            let platform = match ecs.is_some_and(|e| e.detected) {
                true => "aws_ecs",
                false => "aws_ec2",
            };
            attributes.push(string("cloud.platform", platform));
            attributes.push(string("cloud.region", instance.region.as_str()));
            if let Some(zone) = &instance.availability_zone {
                attributes.push(string("cloud.availability_zone", zone.as_str()));
            }
            if let Some(account) = &instance.account_id {
                attributes.push(string("cloud.account.id", account.as_str()));
            }
            if let Some(kind) = &instance.instance_type {
                attributes.push(string("host.type", kind.as_str()));
            }
        }
        None => attributes.extend(machine_id.map(|id| string("host.id", id))),
    }
    attributes
}

/// `/etc/machine-id` (the host's, through `/proc/1/root` when the daemon runs in a
/// container with the host's pid namespace), trimmed.
pub(super) fn machine_id() -> Option<String> {
    ["/proc/1/root/etc/machine-id", "/etc/machine-id"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

/// A process's: `process.*` (the command line is the scrubbed one), and its container's
/// when it runs in one.
pub(super) fn process(
    process: &Process,
    container: Option<&ContainerInfo>,
    ecs: Option<&EcsInfo>,
) -> Vec<KeyValue> {
    let mut attributes = vec![
        int("process.pid", i64::from(process.pid)),
        int("process.parent_pid", i64::from(process.ppid)),
        string("process.executable.name", process.name.as_str()),
        string("process.command_line", process.cmdline.join(" ")),
        string("process.owner", process.user.as_str()),
    ];
    if let Some(exe) = &process.exe {
        attributes.push(string("process.executable.path", exe.as_str()));
    }
    if let Some(container) = container {
        attributes.extend(self::container(container, ecs));
    } else if let Some(id) = &process.container_id {
        attributes.push(string("container.id", id.as_str()));
    }
    attributes
}

/// A container's: `container.*`, and its task's `aws.ecs.*` when ECS started it.
pub(super) fn container(container: &ContainerInfo, ecs: Option<&EcsInfo>) -> Vec<KeyValue> {
    let mut attributes = vec![
        string("container.id", container.id.as_str()),
        string("container.name", container.name.trim_start_matches('/')),
        string("container.image.name", split_image(&container.image).0),
        string("container.runtime", "docker"),
    ];
    if let Some(task) = &container.ecs {
        attributes.extend(task_attributes(task, ecs));
    }
    attributes
}

/// `aws.ecs.*` of a task: its ARN, family, revision, cluster ARN and launch type.
pub(super) fn task_attributes(task: &EcsContainer, ecs: Option<&EcsInfo>) -> Vec<KeyValue> {
    let mut attributes = vec![
        string("aws.ecs.task.arn", task.task_arn.as_str()),
        // The daemon runs on container instances: the EC2 launch type.
        string("aws.ecs.launchtype", "ec2"),
    ];
    if let Some(family) = &task.family {
        attributes.push(string("aws.ecs.task.family", family.as_str()));
    }
    if let Some(revision) = &task.revision {
        attributes.push(string("aws.ecs.task.revision", revision.as_str()));
    }
    let cluster = task
        .cluster
        .as_deref()
        .or_else(|| ecs.and_then(|e| e.cluster.as_deref()));
    if let Some(arn) = cluster.and_then(|c| cluster_arn(c, &task.task_arn)) {
        attributes.push(string("aws.ecs.cluster.arn", arn));
    }
    if let Some(arn) = ecs.and_then(|e| e.container_instance_arn.as_deref()) {
        attributes.push(string("aws.ecs.container.arn", arn));
    }
    attributes
}

/// The cluster's ARN: `cluster` when it is one, else made from the task ARN's region and
/// account (`arn:aws:ecs:<region>:<account>:task/...`).
fn cluster_arn(cluster: &str, task_arn: &str) -> Option<String> {
    if cluster.starts_with("arn:") {
        return Some(cluster.to_string());
    }
    let (prefix, _) = task_arn.split_once(":task/")?;
    Some(format!("{prefix}:cluster/{cluster}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_arns_come_from_the_task_arn() {
        let task = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0123abcd";
        assert_eq!(
            cluster_arn("prod", task).as_deref(),
            Some("arn:aws:ecs:eu-west-1:123456789012:cluster/prod")
        );
        let arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/other";
        assert_eq!(cluster_arn(arn, task).as_deref(), Some(arn));
        assert_eq!(cluster_arn("prod", "not-an-arn"), None);
    }
}
