//! ECS discovery: which cluster, container instance and tasks this host runs, and which
//! EC2 instance it is. Three sources, asked concurrently on each [`EcsDiscovery::refresh`]:
//!
//! - the ECS agent introspection API (`/v1/metadata`: cluster, container instance ARN,
//!   agent version; `/v1/tasks`: every task with its desired/known status and Docker ids),
//!   found as the reference agents find it: the configured URL, then
//!   `http://<ecs-agent container address>:51678`, `http://<default gateway>:51678`
//!   (from `/proc/net/route`), `http://localhost:51678`. See `agent.rs` for the rules of
//!   discovery, rediscovery and caching.
//! - the task metadata endpoint v4 of the daemon's own container
//!   (`ECS_CONTAINER_METADATA_URI_V4`), when set: `own_task`.
//! - IMDSv2 for the instance identity document: `instance`. See `imds.rs` for the token
//!   flow and when IMDSv1 is used.
//!
//! Nothing here fails or blocks the daemon: every request has `timeout` for the whole
//! exchange, bodies above `max_body_bytes` are refused, and a refresh always returns an
//! [`EcsInfo`]; failures end in its `reason`. Off ECS the worst refresh takes about
//! `timeout` per agent candidate that does not answer (IMDS and the task endpoint are asked
//! at the same time), and a failed discovery is retried only after `cache_ttl`.
//!
//! ```no_run
//! # async fn cycle() {
//! use node_daemon::collect::ecs::{EcsDiscovery, EcsOptions};
//! let mut ecs = EcsDiscovery::new(EcsOptions::from_env());
//! let info = ecs.refresh(None).await;
//! println!("{}", info.status_line());
//! if let Some(task) = info.task_of_container("9581a69a761a557f...") {
//!     println!("{} {}:{}", task.arn, task.family, task.version);
//! }
//! # }
//! ```
//!
//! Logging: `debug!` for every failure (they are expected off ECS and repeat every
//! `cache_ttl`), `info!` only when ECS is first detected or stops being detected.

mod agent;
mod cache;
mod endpoint;
mod error;
mod http;
mod imds;
mod model;
mod task_metadata;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, info, warn};
use url::Url;

pub use endpoint::ECS_AGENT_PORT;
pub(crate) use error::EcsError;
pub use model::{EcsTask, EcsTaskContainer};
pub(crate) use model::{InstanceIdentity, TaskMetadata};

/// The variable the ECS agent sets in every container of a task (agent 1.39+).
pub(crate) const TASK_METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";
pub(crate) const DEFAULT_IMDS_URL: &str = "http://169.254.169.254/";
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_STATIC_TTL: Duration = Duration::from_secs(600);
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct EcsOptions {
    /// `STS_ECS_AGENT_URL`: the introspection API base URL, tried first.
    pub agent_url: Option<Url>,
    /// Port of the discovered candidates (container address, gateway, localhost).
    pub agent_port: u16,
    /// `STS_EC2_METADATA_URL`: IMDS base URL.
    pub imds_url: Url,
    /// `ECS_CONTAINER_METADATA_URI_V4` of the daemon's own container, if set.
    pub task_metadata_url: Option<Url>,
    /// For each request: connect, send, answer and body together.
    pub timeout: Duration,
    /// How long tasks, the own task and failures are reused.
    pub cache_ttl: Duration,
    /// How long the agent's metadata and the instance identity are reused.
    pub static_ttl: Duration,
    /// Where the default gateway is read.
    pub route_table: PathBuf,
    /// Larger answers are refused.
    pub max_body_bytes: usize,
}

impl Default for EcsOptions {
    fn default() -> Self {
        Self {
            agent_url: None,
            agent_port: ECS_AGENT_PORT,
            imds_url: Url::parse(DEFAULT_IMDS_URL).expect("valid default"),
            task_metadata_url: None,
            timeout: DEFAULT_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
            static_ttl: DEFAULT_STATIC_TTL,
            route_table: PathBuf::from("/proc/net/route"),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl EcsOptions {
    /// Defaults, with `task_metadata_url` from `ECS_CONTAINER_METADATA_URI_V4`. An unset or
    /// empty variable means none; an invalid one is logged once and ignored.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let task_metadata_url = lookup(TASK_METADATA_ENV)
            .filter(|v| !v.trim().is_empty())
            .and_then(|v| match Url::parse(v.trim()) {
                Ok(url) if url.scheme() == "http" && url.has_host() => Some(url),
                Ok(_) => {
                    warn!(variable = TASK_METADATA_ENV, value = %v, "not an http:// URL; ignored");
                    None
                }
                Err(e) => {
                    warn!(variable = TASK_METADATA_ENV, value = %v, error = %e, "not a URL; ignored");
                    None
                }
            });
        Self {
            task_metadata_url,
            ..Self::default()
        }
    }
}

/// What a refresh found. `detected` when the ECS agent or the task metadata endpoint
/// answered; `reason` says why not, or what part failed when detected.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EcsInfo {
    pub detected: bool,
    pub reason: Option<String>,
    /// The introspection base URL that answered.
    pub agent_url: Option<String>,
    /// From the agent, else from the own task.
    pub cluster: Option<String>,
    pub container_instance_arn: Option<String>,
    pub agent_version: Option<String>,
    /// Every task the agent knows on this instance, stopped ones included.
    pub tasks: Vec<EcsTask>,
    pub own_task: Option<TaskMetadata>,
    pub instance: Option<InstanceIdentity>,
}

impl EcsInfo {
    /// The task a Docker container (full 64-hex id) belongs to.
    pub fn task_of_container(&self, docker_id: &str) -> Option<&EcsTask> {
        self.tasks
            .iter()
            .find(|task| task.containers.iter().any(|c| c.docker_id == docker_id))
    }

    /// One line for status output: `ecs: not detected (<reason>)` or
    /// `ecs: cluster <c>, <n> tasks, agent <url>`.
    pub fn status_line(&self) -> String {
        if !self.detected {
            return match &self.reason {
                Some(reason) => format!("ecs: not detected ({reason})"),
                None => "ecs: not detected".to_string(),
            };
        }
        let mut line = format!(
            "ecs: cluster {}, {} tasks",
            self.cluster.as_deref().unwrap_or("?"),
            self.tasks.len()
        );
        if let Some(url) = &self.agent_url {
            line.push_str(&format!(", agent {url}"));
        }
        if let Some(reason) = &self.reason {
            line.push_str(&format!(" ({reason})"));
        }
        line
    }
}

/// Runs the refreshes and keeps what they learnt between them. Not `Clone`: one per daemon,
/// driven from one task.
#[derive(Debug)]
pub struct EcsDiscovery {
    options: EcsOptions,
    client: http::HttpClient,
    agent: agent::Agent,
    own_task: task_metadata::OwnTask,
    imds: imds::Imds,
    detected: bool,
}

impl EcsDiscovery {
    pub fn new(options: EcsOptions) -> Self {
        Self {
            client: http::HttpClient::new(options.timeout, options.max_body_bytes),
            options,
            agent: agent::Agent::default(),
            own_task: task_metadata::OwnTask::default(),
            imds: imds::Imds::default(),
            detected: false,
        }
    }

    /// One refresh; cached answers within their TTL are reused. `ecs_agent_ip` is the
    /// address of the Docker container named `ecs-agent` if the container collector saw
    /// one (a new address is tried at once even after a failure). Never errors.
    pub async fn refresh(&mut self, ecs_agent_ip: Option<IpAddr>) -> EcsInfo {
        let now = Instant::now();
        let Self {
            options,
            client,
            agent,
            own_task,
            imds,
            ..
        } = self;
        let (agent, own_task, instance) = tokio::join!(
            agent.refresh(client, options, ecs_agent_ip, now),
            own_task.refresh(client, options, now),
            imds.refresh(client, options, now),
        );

        let mut problems = Vec::new();
        problems.extend(agent.problem);
        let own_task = match own_task {
            Some(Ok(task)) => Some(task),
            Some(Err(e)) => {
                problems.push(format!("task metadata: {e}"));
                None
            }
            None => None,
        };
        let instance = instance
            .map_err(|e| problems.push(format!("instance identity: {e}")))
            .ok();
        let metadata = agent.metadata;
        let info = EcsInfo {
            detected: metadata.is_some() || own_task.is_some(),
            reason: (!problems.is_empty()).then(|| problems.join("; ")),
            agent_url: agent.base.map(String::from),
            cluster: metadata
                .as_ref()
                .map(|m| m.cluster.clone())
                .or_else(|| own_task.as_ref().map(|t| t.cluster.clone())),
            container_instance_arn: metadata
                .as_ref()
                .and_then(|m| m.container_instance_arn.clone()),
            agent_version: metadata.and_then(|m| m.version),
            tasks: agent.tasks,
            own_task,
            instance,
        };
        self.log_transition(&info);
        info
    }

    fn log_transition(&mut self, info: &EcsInfo) {
        match (self.detected, info.detected) {
            (false, true) => info!(
                cluster = info.cluster.as_deref().unwrap_or("?"),
                agent = info.agent_url.as_deref().unwrap_or("none"),
                tasks = info.tasks.len(),
                "ECS detected"
            ),
            (true, false) => info!(
                reason = info.reason.as_deref().unwrap_or(""),
                "ECS no longer detected"
            ),
            _ => debug!(status = %info.status_line(), "ECS refresh"),
        }
        self.detected = info.detected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = EcsOptions::default();
        assert_eq!(o.imds_url.as_str(), "http://169.254.169.254/");
        assert_eq!(o.agent_port, 51678);
        assert_eq!(o.timeout, Duration::from_secs(1));
        assert!(o.static_ttl > o.cache_ttl);
        assert_eq!(o.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!((o.agent_url, o.task_metadata_url), (None, None));
    }

    #[test]
    fn task_metadata_url_from_the_environment() {
        let with = |value: &'static str| {
            EcsOptions::from_lookup(move |name| {
                (name == TASK_METADATA_ENV).then(|| value.to_string())
            })
            .task_metadata_url
            .map(String::from)
        };
        assert_eq!(
            with("http://169.254.170.2/v4/0123abcd-0000"),
            Some("http://169.254.170.2/v4/0123abcd-0000".to_string())
        );
        assert_eq!(with(" "), None);
        assert_eq!(with("169.254.170.2/v4/x"), None);
        assert_eq!(with("https://169.254.170.2/v4/x"), None);
        assert_eq!(EcsOptions::from_lookup(|_| None), EcsOptions::default());
    }

    fn task(arn: &str, ids: &[&str]) -> EcsTask {
        EcsTask {
            arn: arn.into(),
            containers: ids
                .iter()
                .map(|id| EcsTaskContainer {
                    docker_id: id.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn task_of_container_by_docker_id() {
        let info = EcsInfo {
            tasks: vec![task("t1", &["a", "b"]), task("t2", &["c"])],
            ..Default::default()
        };
        assert_eq!(
            info.task_of_container("b").map(|t| t.arn.as_str()),
            Some("t1")
        );
        assert_eq!(
            info.task_of_container("c").map(|t| t.arn.as_str()),
            Some("t2")
        );
        assert_eq!(info.task_of_container("d"), None);
        assert_eq!(info.task_of_container(""), None);
    }

    #[test]
    fn status_lines() {
        let off = EcsInfo {
            reason: Some("no ECS agent answered (x)".into()),
            ..Default::default()
        };
        assert_eq!(
            off.status_line(),
            "ecs: not detected (no ECS agent answered (x))"
        );
        assert_eq!(EcsInfo::default().status_line(), "ecs: not detected");
        let on = EcsInfo {
            detected: true,
            cluster: Some("prod".into()),
            agent_url: Some("http://localhost:51678/".into()),
            tasks: vec![task("t1", &[])],
            ..Default::default()
        };
        assert_eq!(
            on.status_line(),
            "ecs: cluster prod, 1 tasks, agent http://localhost:51678/"
        );
    }
}
