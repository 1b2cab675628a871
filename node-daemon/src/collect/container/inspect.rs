//! From Docker's inspect answer to the container record the daemon keeps.

use std::collections::BTreeMap;

use bollard::models::ContainerInspectResponse;

use crate::model::{ContainerInfo, EcsContainer, PublishedPort};

/// The labels the ECS agent puts on every container it starts.
pub(crate) const LABEL_TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
pub(crate) const LABEL_CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
pub(crate) const LABEL_FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
pub(crate) const LABEL_REVISION: &str = "com.amazonaws.ecs.task-definition-version";
pub(crate) const LABEL_CLUSTER: &str = "com.amazonaws.ecs.cluster";
/// The container name ECS gives the pause container of an awsvpc task.
pub(crate) const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";

impl ContainerInfo {
    pub(crate) fn from_inspect(inspect: ContainerInspectResponse) -> Option<Self> {
        let id = inspect.id?;
        let name = inspect
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let config = inspect.config.unwrap_or_default();
        let state = inspect.state.unwrap_or_default();
        let labels: BTreeMap<String, String> =
            config.labels.unwrap_or_default().into_iter().collect();
        let network = inspect.network_settings.unwrap_or_default();
        let mut ip_addresses: Vec<String> = network
            .networks
            .unwrap_or_default()
            .into_values()
            .flat_map(|n| [n.ip_address, n.global_ipv6_address])
            .flatten()
            .filter(|ip| !ip.is_empty())
            .collect();
        ip_addresses.sort();
        ip_addresses.dedup();
        let mut ports: Vec<PublishedPort> = network
            .ports
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(container_port, bindings)| match bindings {
                Some(bindings) if !bindings.is_empty() => bindings
                    .into_iter()
                    .map(|b| PublishedPort {
                        container_port: container_port.clone(),
                        host_ip: b.host_ip.filter(|ip| !ip.is_empty()),
                        host_port: b.host_port.and_then(|p| p.parse().ok()),
                    })
                    .collect(),
                _ => vec![PublishedPort {
                    container_port,
                    host_ip: None,
                    host_port: None,
                }],
            })
            .collect();
        ports.sort_by(|a, b| (&a.container_port, &a.host_ip).cmp(&(&b.container_port, &b.host_ip)));
        let ecs = ecs_from_labels(&labels);
        let role = role_of(&name, &labels);
        Some(Self {
            id,
            name,
            image: config.image.unwrap_or_default(),
            image_id: inspect.image.unwrap_or_default(),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            created: inspect.created.unwrap_or_default(),
            started_at: state.started_at.filter(|s| !s.starts_with("0001-")),
            labels,
            pid: state
                .pid
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0),
            network_mode: inspect
                .host_config
                .and_then(|h| h.network_mode)
                .unwrap_or_default(),
            ip_addresses,
            ports,
            restart_count: inspect.restart_count.map_or(0, |n| n.max(0) as u64),
            ecs,
            role,
        })
    }
}

pub(crate) fn ecs_from_labels(labels: &BTreeMap<String, String>) -> Option<EcsContainer> {
    let get = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
    Some(EcsContainer {
        task_arn: get(LABEL_TASK_ARN)?,
        family: get(LABEL_FAMILY),
        revision: get(LABEL_REVISION),
        container_name: get(LABEL_CONTAINER_NAME),
        cluster: get(LABEL_CLUSTER),
        task_desired_status: None,
        task_known_status: None,
    })
}

/// `ecs-pause` for pause containers, `ecs-agent` for the ECS agent itself.
pub(crate) fn role_of(name: &str, labels: &BTreeMap<String, String>) -> Option<&'static str> {
    if labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(PAUSE_CONTAINER_NAME)
        || name.contains("-internalecspause-")
    {
        Some("ecs-pause")
    } else if name == "ecs-agent" {
        Some("ecs-agent")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerConfig, ContainerState, ContainerStateStatusEnum, EndpointSettings, HostConfig,
        NetworkSettings, PortBinding,
    };

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ecs_labels_and_roles() {
        let l = labels(&[
            (LABEL_TASK_ARN, "arn:aws:ecs:us-west-2:1:task/default/abc"),
            (LABEL_FAMILY, "web"),
            (LABEL_REVISION, "7"),
            (LABEL_CONTAINER_NAME, "app"),
            (LABEL_CLUSTER, "default"),
        ]);
        let ecs = ecs_from_labels(&l).unwrap();
        assert_eq!(ecs.family.as_deref(), Some("web"));
        assert_eq!(ecs.revision.as_deref(), Some("7"));
        assert_eq!(ecs_from_labels(&labels(&[(LABEL_FAMILY, "web")])), None);
        assert_eq!(
            role_of(
                "x",
                &labels(&[(LABEL_CONTAINER_NAME, PAUSE_CONTAINER_NAME)])
            ),
            Some("ecs-pause")
        );
        assert_eq!(
            role_of("ecs-web-7-internalecspause-a1b2", &labels(&[])),
            Some("ecs-pause")
        );
        assert_eq!(role_of("ecs-agent", &labels(&[])), Some("ecs-agent"));
        assert_eq!(role_of("app", &l), None);
    }

    #[test]
    fn inspect_fields() {
        let inspect = ContainerInspectResponse {
            id: Some("a".repeat(64)),
            name: Some("/web".into()),
            created: Some("2026-01-01T00:00:00Z".into()),
            image: Some("sha256:abc".into()),
            restart_count: Some(2),
            state: Some(ContainerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                pid: Some(4242),
                started_at: Some("2026-01-01T00:00:01Z".into()),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                image: Some("nginx:1".into()),
                labels: Some([(LABEL_TASK_ARN.to_string(), "arn:t".to_string())].into()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("bridge".into()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(
                    [(
                        "bridge".to_string(),
                        EndpointSettings {
                            ip_address: Some("172.17.0.2".into()),
                            ..Default::default()
                        },
                    )]
                    .into(),
                ),
                ports: Some(
                    [
                        (
                            "80/tcp".to_string(),
                            Some(vec![PortBinding {
                                host_ip: Some("0.0.0.0".into()),
                                host_port: Some("8080".into()),
                            }]),
                        ),
                        ("443/tcp".to_string(), None),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = ContainerInfo::from_inspect(inspect).unwrap();
        assert_eq!(info.name, "web");
        assert_eq!(info.state, "running");
        assert_eq!(info.pid, Some(4242));
        assert_eq!(info.image, "nginx:1");
        assert_eq!(info.image_id, "sha256:abc");
        assert_eq!(info.network_mode, "bridge");
        assert_eq!(info.ip_addresses, ["172.17.0.2"]);
        assert_eq!(info.restart_count, 2);
        assert_eq!(info.ports.len(), 2);
        assert_eq!(info.ports[1].host_port, Some(8080));
        assert_eq!(info.ports[0].host_port, None);
        assert_eq!(info.ecs.unwrap().task_arn, "arn:t");
    }

    #[test]
    fn stopped_container_has_no_pid() {
        let inspect = ContainerInspectResponse {
            id: Some("b".repeat(64)),
            state: Some(ContainerState {
                pid: Some(0),
                started_at: Some("0001-01-01T00:00:00Z".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = ContainerInfo::from_inspect(inspect).unwrap();
        assert_eq!((info.pid, info.started_at), (None, None));
        assert!(ContainerInfo::from_inspect(ContainerInspectResponse::default()).is_none());
    }
}
