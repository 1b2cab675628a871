//! The answers of the ECS agent introspection API, the task metadata endpoint v4 and the
//! IMDS identity document, with the field names those services use (PascalCase for ECS,
//! camelCase for IMDS; see testdata/ecs-api and testdata/ec2-imds). They serialize with
//! snake_case names for status and snapshot output.
//!
//! Unknown fields are ignored. Identity fields (`Cluster` of `/v1/metadata`, task `Arn`,
//! `TaskARN`, `DockerId`, `instanceId`, `region`) are required; everything else may be
//! missing, and lists and maps may also be `null` (Go encodes empty slices so).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// `null` or missing reads as the empty value.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `GET /v1/metadata` of the ECS agent introspection API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct AgentMetadata {
    /// Short name or ARN, as the agent was configured.
    #[serde(rename = "Cluster")]
    pub(crate) cluster: String,
    /// Absent or null until the instance has registered.
    #[serde(rename = "ContainerInstanceArn", default)]
    pub(crate) container_instance_arn: Option<String>,
    #[serde(rename = "Version", default)]
    pub(crate) version: Option<String>,
}

/// `GET /v1/tasks` of the ECS agent introspection API.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct AgentTasks {
    #[serde(rename = "Tasks", default, deserialize_with = "nullable")]
    pub(crate) tasks: Vec<EcsTask>,
}

/// One task the ECS agent manages on this instance (`/v1/tasks`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "PascalCase"))]
pub struct EcsTask {
    pub arn: String,
    #[serde(default)]
    pub family: String,
    /// The task definition revision.
    #[serde(default)]
    pub version: String,
    /// Empty when the agent did not say (stopped tasks may lack it).
    #[serde(default)]
    pub desired_status: String,
    #[serde(default)]
    pub known_status: String,
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<EcsTaskContainer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "PascalCase"))]
pub struct EcsTaskContainer {
    /// The 64-hex Docker id.
    pub docker_id: String,
    /// The Docker container name (`ecs-<family>-<rev>-<name>-<suffix>`).
    #[serde(default)]
    pub docker_name: String,
    /// The container name in the task definition.
    #[serde(default)]
    pub name: String,
}

/// `GET ${ECS_CONTAINER_METADATA_URI_V4}/task`: the task of the container that asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "PascalCase"))]
pub struct TaskMetadata {
    #[serde(default)]
    pub(crate) cluster: String,
    #[serde(rename(deserialize = "TaskARN"))]
    pub task_arn: String,
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub(crate) desired_status: String,
    #[serde(default)]
    pub(crate) known_status: String,
    #[serde(default)]
    pub(crate) availability_zone: Option<String>,
    /// `EC2`, `FARGATE` or `EXTERNAL`.
    #[serde(default)]
    pub launch_type: Option<String>,
    #[serde(default)]
    pub(crate) service_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<TaskContainer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "PascalCase"))]
pub struct TaskContainer {
    pub(crate) docker_id: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) docker_name: String,
    #[serde(default)]
    pub(crate) image: String,
    #[serde(rename(deserialize = "ImageID"), default)]
    pub(crate) image_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) desired_status: String,
    #[serde(default)]
    pub(crate) known_status: String,
    /// `NORMAL`, or `CNI_PAUSE` for the pause container of an awsvpc task.
    #[serde(rename(deserialize = "Type"), default)]
    pub(crate) container_type: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub networks: Vec<ContainerNetwork>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "PascalCase"))]
pub struct ContainerNetwork {
    /// `bridge`, `host`, `awsvpc`, `none`.
    #[serde(default)]
    pub(crate) network_mode: String,
    #[serde(
        rename(deserialize = "IPv4Addresses"),
        default,
        deserialize_with = "nullable"
    )]
    pub ipv4_addresses: Vec<String>,
    #[serde(
        rename(deserialize = "IPv6Addresses"),
        default,
        deserialize_with = "nullable"
    )]
    pub(crate) ipv6_addresses: Vec<String>,
}

/// The EC2 instance identity document (`/latest/dynamic/instance-identity/document`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all(deserialize = "camelCase"))]
pub struct InstanceIdentity {
    pub instance_id: String,
    pub region: String,
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub(crate) account_id: Option<String>,
    #[serde(default)]
    pub private_ip: Option<String>,
    #[serde(default)]
    pub(crate) image_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(path: &str) -> Vec<u8> {
        let path = format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn parse<T: serde::de::DeserializeOwned>(path: &str) -> T {
        serde_json::from_slice(&recorded(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn agent_metadata_awsdocs_and_datadog() {
        let m: AgentMetadata = parse("ecs-api/introspection/awsdocs_v1_metadata.json");
        assert_eq!(
            m,
            AgentMetadata {
                cluster: "cluster_name".into(),
                container_instance_arn: Some(
                    "arn:aws:ecs:region:aws_account_id:container-instance/cluster_name/container_instance_id"
                        .into()
                ),
                version: Some("Amazon ECS Agent - v1.30.0 (02ff320c)".into()),
            }
        );
        let m: AgentMetadata = parse("ecs-api/introspection/datadog_v1_metadata.json");
        assert_eq!(m.cluster, "ecs_cluster");
        assert_eq!(
            m.container_instance_arn.as_deref(),
            Some("arn:aws:ecs:us-west-1:601427279990:container-instance/ede93446-9e5f-4c52-83d0-796d7194548a")
        );
        assert_eq!(
            m.version.as_deref(),
            Some("Amazon ECS Agent - v1.32.0 (a7f81040)")
        );
    }

    #[test]
    fn agent_metadata_before_registration_and_without_cluster() {
        let m: AgentMetadata =
            serde_json::from_str(r#"{"Cluster":"c","ContainerInstanceArn":null}"#).unwrap();
        assert_eq!((m.container_instance_arn, m.version), (None, None));
        assert!(serde_json::from_str::<AgentMetadata>(r#"{"Version":"x"}"#).is_err());
        assert!(serde_json::from_str::<AgentMetadata>("<html>").is_err());
    }

    #[test]
    fn agent_tasks_awsdocs() {
        let t: AgentTasks = parse("ecs-api/introspection/awsdocs_v1_tasks.json");
        assert_eq!(
            t.tasks,
            [EcsTask {
                arn: "arn:aws:ecs:us-west-2:012345678910:task/default/example5-58ff-46c9-ae05-543f8example".into(),
                family: "hello_world".into(),
                version: "8".into(),
                desired_status: "RUNNING".into(),
                known_status: "RUNNING".into(),
                containers: vec![
                    EcsTaskContainer {
                        docker_id: "9581a69a761a557fbfce1d0f6745e4af5b9dbfb86b6b2c5c4df156f1a5932ff1".into(),
                        docker_name: "ecs-hello_world-8-mysql-fcae8ac8f9f1d89d8301".into(),
                        name: "mysql".into(),
                    },
                    EcsTaskContainer {
                        docker_id: "bf25c5c5b2d4dba68846c7236e75b6915e1e778d31611e3c6a06831e39814a15".into(),
                        docker_name: "ecs-hello_world-8-wordpress-e8bfddf9b488dff36c00".into(),
                        name: "wordpress".into(),
                    },
                ],
            }]
        );
    }

    #[test]
    fn agent_tasks_stopped_task_without_desired_status() {
        let t: AgentTasks =
            parse("ecs-api/introspection/awsdocs_v1_tasks_running_and_stopped.json");
        let states: Vec<(&str, &str, usize)> = t
            .tasks
            .iter()
            .map(|t| {
                (
                    t.desired_status.as_str(),
                    t.known_status.as_str(),
                    t.containers.len(),
                )
            })
            .collect();
        assert_eq!(states, [("", "STOPPED", 2), ("RUNNING", "RUNNING", 2)]);
        assert_eq!(t.tasks[1].family, "console-sample-app-static");
        assert_eq!(t.tasks[1].version, "6");
        assert_eq!(
            t.tasks[1].containers[1].docker_id,
            "096d685fb85a1ff3e021c8254672ab8497e3c13986b9cf005cbae9460b7b901e"
        );
    }

    #[test]
    fn agent_tasks_datadog_and_extra_fields_ignored() {
        let t: AgentTasks = parse("ecs-api/introspection/datadog_v1_tasks.json");
        assert_eq!(t.tasks.len(), 1);
        assert_eq!(
            t.tasks[0].arn,
            "arn:aws:ecs:us-east-1:<aws_account_id>:task/example5-58ff-46c9-ae05-543f8example"
        );
        let t: AgentTasks = parse(
            "ecs-api/introspection/datadog_workloadmeta_v1_tasks_with_image_and_volumes.json",
        );
        let families: Vec<&str> = t.tasks.iter().map(|t| t.family.as_str()).collect();
        assert_eq!(families, ["nginx", "datadog-agent"]);
        assert_eq!(t.tasks[1].containers[0].name, "datadog-agent");
        assert_eq!(
            t.tasks[1].containers[0].docker_name,
            "datadog-agent-15-datadog-agent-b2bb99c4dda5b2b25000"
        );
    }

    #[test]
    fn agent_tasks_null_and_empty() {
        let t: AgentTasks = serde_json::from_str(r#"{"Tasks":null}"#).unwrap();
        assert!(t.tasks.is_empty());
        let t: AgentTasks =
            serde_json::from_str(r#"{"Tasks":[{"Arn":"a","Containers":null}]}"#).unwrap();
        assert_eq!(t.tasks[0].arn, "a");
        assert!(t.tasks[0].containers.is_empty());
        // A task without its ARN cannot be identified.
        assert!(serde_json::from_str::<AgentTasks>(r#"{"Tasks":[{"Family":"f"}]}"#).is_err());
    }

    #[test]
    fn task_metadata_v4_awsvpc_with_pause() {
        let t: TaskMetadata =
            parse("ecs-api/task-metadata-v4/awsdocs_v4_task_metadata_ec2_awsvpc_with_pause.json");
        assert_eq!(t.cluster, "default");
        assert_eq!(
            t.task_arn,
            "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c"
        );
        assert_eq!((t.family.as_str(), t.revision.as_str()), ("curltest", "26"));
        assert_eq!(t.availability_zone.as_deref(), Some("us-west-2d"));
        assert_eq!(t.launch_type.as_deref(), Some("EC2"));
        assert_eq!(t.service_name.as_deref(), Some("MyService"));
        let pause = &t.containers[0];
        assert_eq!(pause.name, "~internal~ecs~pause");
        assert_eq!(pause.container_type.as_deref(), Some("CNI_PAUSE"));
        assert_eq!(pause.image_id, "");
        let curl = &t.containers[1];
        assert_eq!(
            curl.docker_id,
            "ee08638adaaf009d78c248913f629e38299471d45fe7dc944d1039077e3424ca"
        );
        assert_eq!(
            curl.docker_name,
            "ecs-curltest-26-curl-a0e7dba5aca6d8cb2e00"
        );
        assert_eq!(
            curl.image_id,
            "sha256:d691691e9652791a60114e67b365688d20d19940dde7c4736ea30e660d8d3553"
        );
        assert_eq!(
            curl.labels
                .get("com.amazonaws.ecs.task-definition-version")
                .map(String::as_str),
            Some("26")
        );
        assert_eq!(
            curl.networks,
            [ContainerNetwork {
                network_mode: "awsvpc".into(),
                ipv4_addresses: vec!["10.0.2.61".into()],
                ipv6_addresses: vec![],
            }]
        );
    }

    #[test]
    fn task_metadata_v4_bridge_daemon_and_three_containers() {
        let t: TaskMetadata = parse(
            "ecs-api/task-metadata-v4/datadog_v4_task_ec2_bridge_daemon_agent_with_ports_volumes.json",
        );
        assert_eq!(t.family, "datadog-agent");
        assert_eq!(t.containers.len(), 1);
        assert_eq!(t.containers[0].image, "datadog/datadog-agent:7.50.0");
        assert_eq!(t.containers[0].networks[0].network_mode, "bridge");
        assert_eq!(t.containers[0].networks[0].ipv4_addresses, ["172.17.0.2"]);
        assert_eq!(t.containers[0].labels.len(), 7);

        // Task-level Limits with a fractional CPU, and no LaunchType.
        let t: TaskMetadata = parse(
            "ecs-api/task-metadata-v4/otelcontrib_v4_task_metadata_ec2_bridge_3containers.json",
        );
        assert_eq!(t.cluster, "test200");
        assert_eq!(t.launch_type, None);
        let names: Vec<&str> = t.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["nginx100", "nginx300", "nginx200"]);
        let ips: Vec<&str> = t
            .containers
            .iter()
            .map(|c| c.networks[0].ipv4_addresses[0].as_str())
            .collect();
        assert_eq!(ips, ["172.17.0.3", "172.17.0.4", "172.17.0.2"]);
    }

    #[test]
    fn task_metadata_v4_with_tags_and_tag_errors() {
        for file in [
            "ecs-api/task-metadata-v4/awsdocs_v4_task_with_tags_ec2.json",
            "ecs-api/task-metadata-v4/awsdocs_v4_task_with_tags_error_ec2.json",
        ] {
            let t: TaskMetadata = parse(file);
            assert_eq!(t.family, "curltest", "{file}");
            assert_eq!(t.containers.len(), 2, "{file}");
            assert_eq!(t.containers[1].name, "curl", "{file}");
        }
    }

    #[test]
    fn task_metadata_requires_the_task_arn() {
        assert!(serde_json::from_str::<TaskMetadata>(r#"{"Cluster":"c"}"#).is_err());
        let t: TaskMetadata = serde_json::from_str(
            r#"{"TaskARN":"a","Containers":[{"DockerId":"d","Labels":null,"Networks":null}]}"#,
        )
        .unwrap();
        assert_eq!(t.containers[0].docker_id, "d");
        assert!(t.containers[0].labels.is_empty());
    }

    #[test]
    fn instance_identity_document() {
        let doc: InstanceIdentity = parse("ec2-imds/datadog_instance_identity_document.json");
        assert_eq!(
            doc,
            InstanceIdentity {
                instance_id: "i-aaaaaaaaaaaaaaaaa".into(),
                region: "us-east-1".into(),
                availability_zone: Some("us-east-1a".into()),
                instance_type: Some("m4.2xlarge".into()),
                account_id: Some("REMOVED".into()),
                private_ip: Some("1.2.3.4".into()),
                image_id: Some("ami-aaaaaaaa".into()),
            }
        );
        let minimal: InstanceIdentity =
            serde_json::from_str(r#"{"instanceId":"i-1","region":"eu-west-1"}"#).unwrap();
        assert_eq!(minimal.instance_type, None);
        assert!(serde_json::from_str::<InstanceIdentity>(r#"{"region":"x"}"#).is_err());
    }

    #[test]
    fn serializes_snake_case() {
        let doc: InstanceIdentity = parse("ec2-imds/datadog_instance_identity_document.json");
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["instance_id"], "i-aaaaaaaaaaaaaaaaa");
        assert_eq!(json["availability_zone"], "us-east-1a");
    }
}
