//! Follows the Docker engine: list and inspect at start, then the events stream, with a
//! periodic full resync and reconnection with backoff when the socket goes away.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::shutdown::Shutdown;
use bollard::container::{InspectContainerOptions, ListContainersOptions};
use bollard::system::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::store::{ContainerStore, Source};
use crate::model::ContainerInfo;

/// Event actions after which the container is inspected again.
const REINSPECT: &[&str] = &[
    "create", "start", "die", "stop", "kill", "pause", "unpause", "rename", "restart", "update",
    "oom",
];

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot connect to the Docker engine (DOCKER_HOST or /var/run/docker.sock): {0}")]
    Connect(#[source] bollard::errors::Error),
    #[error("Docker API call {call} failed: {source}")]
    Api {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker events stream ended")]
    EventsEnded,
}

/// Connects with DOCKER_HOST or the default socket and agrees on an API version, so an
/// older engine (API 1.41 on Docker 20.10, as ECS-optimized AMIs ship) works.
pub async fn connect() -> Result<Docker, DockerError> {
    let docker = Docker::connect_with_local_defaults().map_err(DockerError::Connect)?;
    docker
        .negotiate_version()
        .await
        .map_err(DockerError::Connect)
}

/// Lists every container (running or not) and inspects those the store does not hold in
/// the same state; drops from the store what the engine no longer has.
pub async fn resync(docker: &Docker, store: &ContainerStore) -> Result<(), DockerError> {
    let options = ListContainersOptions::<String> {
        all: true,
        ..Default::default()
    };
    let listed = docker
        .list_containers(Some(options))
        .await
        .map_err(|source| DockerError::Api {
            call: "list",
            source,
        })?;
    store.count(|c| {
        c.lists += 1;
        c.resyncs += 1;
    });
    let mut ids = HashSet::with_capacity(listed.len());
    for summary in listed {
        let Some(id) = summary.id else { continue };
        let state = summary.state.unwrap_or_default();
        if !store.contains(&id, &state) {
            inspect_into(docker, store, &id).await?;
        }
        ids.insert(id);
    }
    store.retain_ids(&ids);
    Ok(())
}

/// Inspects one container into the store; one that vanished meanwhile is removed.
async fn inspect_into(
    docker: &Docker,
    store: &ContainerStore,
    id: &str,
) -> Result<(), DockerError> {
    store.count(|c| c.inspects += 1);
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspect) => {
            if let Some(info) = ContainerInfo::from_inspect(inspect) {
                store.upsert(info);
            }
            Ok(())
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            store.remove(id);
            Ok(())
        }
        Err(source) => Err(DockerError::Api {
            call: "inspect",
            source,
        }),
    }
}

/// Connects and lists once, for a one-off snapshot; records the outcome as the source.
pub async fn load_once(store: &ContainerStore) -> Result<(), DockerError> {
    let outcome = async {
        let docker = connect().await?;
        resync(&docker, store).await
    }
    .await;
    store.set_source(match &outcome {
        Ok(()) => Source::Connected,
        Err(e) => Source::Unavailable(e.to_string()),
    });
    outcome
}

pub struct Watcher {
    pub(crate) store: ContainerStore,
    pub(crate) resync_every: Duration,
}

impl Watcher {
    /// Runs until `stop`.
    pub(crate) async fn run(self, mut stop: Shutdown) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let outcome = tokio::select! {
                outcome = self.connect_and_follow() => outcome,
                _ = stop.wait() => return,
            };
            if let Err(e) = outcome {
                if self.store.source() != Source::Unavailable(e.to_string()) {
                    warn!("containers: {e}; retrying");
                }
                self.store.set_source(Source::Unavailable(e.to_string()));
            }
            let jitter = Duration::from_millis(
                u64::from(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_millis()),
                ) % 250,
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff + jitter) => {}
                _ = stop.wait() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn connect_and_follow(&self) -> Result<(), DockerError> {
        let docker = connect().await?;
        // Ask for events from a moment before the listing, so a container started in
        // between is not missed; inspecting it twice is harmless.
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(2);
        let options = EventsOptions::<String> {
            since: Some(since.to_string()),
            until: None,
            filters: HashMap::from([("type".to_string(), vec!["container".to_string()])]),
        };
        let mut events = docker.events(Some(options));
        resync(&docker, &self.store).await?;
        if self.store.source() != Source::Connected {
            info!(
                containers = self.store.len(),
                "containers: following the Docker engine"
            );
        }
        self.store.set_source(Source::Connected);
        let mut resync_timer = tokio::time::interval(self.resync_every);
        resync_timer.tick().await;
        loop {
            tokio::select! {
                event = events.next() => {
                    let event = event
                        .ok_or(DockerError::EventsEnded)?
                        .map_err(|source| DockerError::Api { call: "events", source })?;
                    self.store.count(|c| c.events += 1);
                    let (Some(action), Some(id)) = (event.action, event.actor.and_then(|a| a.id)) else {
                        continue;
                    };
                    debug!(%action, %id, "docker event");
                    if action == "destroy" {
                        self.store.remove(&id);
                    } else if REINSPECT.iter().any(|a| action.starts_with(a)) {
                        inspect_into(&docker, &self.store, &id).await?;
                    }
                }
                _ = resync_timer.tick() => resync(&docker, &self.store).await?,
            }
        }
    }
}
