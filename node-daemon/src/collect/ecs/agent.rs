//! Finding the ECS agent introspection API and reading `/v1/metadata` and `/v1/tasks`.
//!
//! Candidates, in order (duplicates dropped): the configured URL, the `ecs-agent`
//! container's address, the default gateway, localhost; the last three on the agent port.
//! The first whose `/v1/metadata` answers 200 with a parsable body is remembered.
//!
//! - The remembered agent is asked again when its answers are older than their TTL
//!   (metadata: `static_ttl`, tasks: `cache_ttl`). If any request to it fails it is
//!   forgotten and discovery runs again in the same refresh; when it did not answer at
//!   all (refused, timeout, closed) it is skipped in that round so a hanging agent costs
//!   one timeout, not two.
//! - When the agent answered `/v1/metadata` but `/v1/tasks` failed, ECS is detected with
//!   no tasks and the failure is kept as the tasks answer for `cache_ttl`.
//! - When no candidate answered, the failure is kept for `cache_ttl` and no request is
//!   made until then, unless the caller reports an `ecs-agent` address not tried yet.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use tracing::debug;
use url::Url;

use super::cache::{fresh, Cached};
use super::endpoint::{self, AGENT_METADATA, AGENT_TASKS};
use super::http::HttpClient;
use super::model::{AgentMetadata, AgentTasks, EcsTask};
use super::{EcsError, EcsOptions};
use sts_proto::route::default_gateway;

/// What the agent part of a refresh found.
#[derive(Debug, Clone, Default)]
pub(super) struct AgentView {
    pub(crate) base: Option<Url>,
    pub(crate) metadata: Option<AgentMetadata>,
    pub(crate) tasks: Vec<EcsTask>,
    /// Why there is no agent, or why there are no tasks.
    pub(crate) problem: Option<String>,
}

#[derive(Debug)]
struct Found {
    base: Url,
    metadata: Cached<AgentMetadata>,
    tasks: Option<Cached<Result<Vec<EcsTask>, String>>>,
}

#[derive(Debug)]
struct Failure {
    reason: Cached<String>,
    agent_ip: Option<IpAddr>,
}

#[derive(Debug, Default)]
pub(super) struct Agent {
    found: Option<Found>,
    failure: Option<Failure>,
}

impl Agent {
    pub(crate) async fn refresh(
        &mut self,
        client: &HttpClient,
        options: &EcsOptions,
        agent_ip: Option<IpAddr>,
        now: Instant,
    ) -> AgentView {
        let mut errors = Vec::new();
        let mut skip = None;
        if let Some(mut found) = self.found.take() {
            match found.update(client, options, now).await {
                Ok(()) => {
                    let view = found.view();
                    self.found = Some(found);
                    return view;
                }
                Err(e) => {
                    debug!(agent = %found.base, error = %e, "ECS agent stopped answering; rediscovering");
                    if e.is_unreachable() {
                        skip = Some(found.base);
                    }
                    errors.push(e.to_string());
                }
            }
        } else if let Some(failure) = &self.failure {
            let new_address = agent_ip.is_some() && agent_ip != failure.agent_ip;
            if failure.reason.is_fresh(now) && !new_address {
                return AgentView {
                    problem: Some(failure.reason.value.clone()),
                    ..AgentView::default()
                };
            }
        }
        self.discover(client, options, agent_ip, skip, errors, now)
            .await
    }

    async fn discover(
        &mut self,
        client: &HttpClient,
        options: &EcsOptions,
        agent_ip: Option<IpAddr>,
        skip: Option<Url>,
        mut errors: Vec<String>,
        now: Instant,
    ) -> AgentView {
        let gateway = read_gateway(&options.route_table);
        for base in candidates(
            options.agent_url.as_ref(),
            agent_ip,
            gateway,
            options.agent_port,
        ) {
            if skip.as_ref() == Some(&base) {
                continue;
            }
            match metadata(client, &base).await {
                Ok(metadata) => {
                    let tasks = tasks(client, &base).await.map_err(|e| {
                        debug!(agent = %base, error = %e, "ECS agent tasks unavailable");
                        e.to_string()
                    });
                    let found = Found {
                        metadata: Cached::new(metadata, now, options.static_ttl),
                        tasks: Some(Cached::new(tasks, now, options.cache_ttl)),
                        base,
                    };
                    let view = found.view();
                    self.found = Some(found);
                    self.failure = None;
                    return view;
                }
                Err(e) => {
                    debug!(candidate = %base, error = %e, "no ECS agent here");
                    errors.push(e.to_string());
                }
            }
        }
        let reason = format!("no ECS agent answered ({})", errors.join("; "));
        self.failure = Some(Failure {
            reason: Cached::new(reason.clone(), now, options.cache_ttl),
            agent_ip,
        });
        AgentView {
            problem: Some(reason),
            ..AgentView::default()
        }
    }
}

impl Found {
    /// Asks again for what is older than its TTL; any failure is returned.
    async fn update(
        &mut self,
        client: &HttpClient,
        options: &EcsOptions,
        now: Instant,
    ) -> Result<(), EcsError> {
        if !self.metadata.is_fresh(now) {
            self.metadata =
                Cached::new(metadata(client, &self.base).await?, now, options.static_ttl);
        }
        if fresh(&self.tasks, now).is_none() {
            let tasks = tasks(client, &self.base).await?;
            self.tasks = Some(Cached::new(Ok(tasks), now, options.cache_ttl));
        }
        Ok(())
    }

    fn view(&self) -> AgentView {
        let (tasks, problem) = match self.tasks.as_ref().map(|c| &c.value) {
            Some(Ok(tasks)) => (tasks.clone(), None),
            Some(Err(e)) => (Vec::new(), Some(format!("tasks: {e}"))),
            None => (Vec::new(), None),
        };
        AgentView {
            base: Some(self.base.clone()),
            metadata: Some(self.metadata.value.clone()),
            tasks,
            problem,
        }
    }
}

async fn metadata(client: &HttpClient, base: &Url) -> Result<AgentMetadata, EcsError> {
    client
        .get_json(&endpoint::join(base, AGENT_METADATA)?, &[])
        .await
}

async fn tasks(client: &HttpClient, base: &Url) -> Result<Vec<EcsTask>, EcsError> {
    let answer: AgentTasks = client
        .get_json(&endpoint::join(base, AGENT_TASKS)?, &[])
        .await?;
    Ok(answer.tasks)
}

fn read_gateway(route_table: &Path) -> Option<Ipv4Addr> {
    match std::fs::read_to_string(route_table) {
        Ok(text) => default_gateway(&text),
        Err(e) => {
            debug!(path = %route_table.display(), error = %e, "no default gateway candidate");
            None
        }
    }
}

/// The base URLs to try, in order, without duplicates.
pub(super) fn candidates(
    configured: Option<&Url>,
    agent_ip: Option<IpAddr>,
    gateway: Option<Ipv4Addr>,
    port: u16,
) -> Vec<Url> {
    let found = [
        configured.cloned(),
        agent_ip.map(|ip| endpoint::base_url(ip, port)),
        gateway.map(|ip| endpoint::base_url(ip.into(), port)),
        Some(endpoint::localhost_url(port)),
    ];
    let mut urls: Vec<Url> = Vec::with_capacity(found.len());
    for url in found.into_iter().flatten() {
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::ecs::endpoint::ECS_AGENT_PORT;

    fn strings(urls: Vec<Url>) -> Vec<String> {
        urls.into_iter().map(String::from).collect()
    }

    #[test]
    fn candidate_order() {
        let configured = Url::parse("http://agent.internal:8080/").unwrap();
        let got = candidates(
            Some(&configured),
            Some("172.17.0.5".parse().unwrap()),
            Some(Ipv4Addr::new(10, 0, 0, 1)),
            ECS_AGENT_PORT,
        );
        assert_eq!(
            strings(got),
            [
                "http://agent.internal:8080/",
                "http://172.17.0.5:51678/",
                "http://10.0.0.1:51678/",
                "http://localhost:51678/",
            ]
        );
    }

    #[test]
    fn only_localhost_without_hints_and_no_duplicates() {
        assert_eq!(
            strings(candidates(None, None, None, ECS_AGENT_PORT)),
            ["http://localhost:51678/"]
        );
        let configured = Url::parse("http://10.0.0.1:51678").unwrap();
        let got = candidates(
            Some(&configured),
            Some("10.0.0.1".parse().unwrap()),
            Some(Ipv4Addr::new(10, 0, 0, 1)),
            ECS_AGENT_PORT,
        );
        assert_eq!(
            strings(got),
            ["http://10.0.0.1:51678/", "http://localhost:51678/"]
        );
    }
}
