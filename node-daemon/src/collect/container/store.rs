//! The containers the watcher knows, shared with the collection cycle.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::collect::ecs::EcsInfo;
use crate::model::ContainerInfo;
use crate::poison::IgnorePoison;

/// More containers than any Docker host runs; beyond it new ones are dropped and counted.
pub(crate) const MAX_CONTAINERS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    Connecting,
    Connected,
    /// The Docker API cannot be reached; the reason.
    Unavailable(String),
}

/// Docker API use since start, for status and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiCalls {
    pub lists: u64,
    pub inspects: u64,
    pub(crate) events: u64,
    pub(crate) resyncs: u64,
}

#[derive(Debug, Default)]
struct Inner {
    containers: BTreeMap<String, ContainerInfo>,
    ecs: EcsInfo,
    source: Source,
    calls: ApiCalls,
    dropped: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ContainerStore {
    inner: Arc<RwLock<Inner>>,
    /// Woken whenever a container appears, changes or goes, so the daemon can publish
    /// the change without waiting for its next cycle.
    changed: Arc<tokio::sync::Notify>,
}

impl ContainerStore {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().ignore_poison()
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().ignore_poison()
    }

    pub(crate) fn upsert(&self, info: ContainerInfo) {
        let mut inner = self.write();
        if inner.containers.len() >= MAX_CONTAINERS && !inner.containers.contains_key(&info.id) {
            inner.dropped += 1;
            return;
        }
        if inner.containers.get(&info.id) != Some(&info) {
            inner.containers.insert(info.id.clone(), info);
            self.changed.notify_one();
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        if self.write().containers.remove(id).is_some() {
            self.changed.notify_one();
        }
    }

    /// Keeps only the listed ids (a resync found the others gone).
    pub(crate) fn retain_ids(&self, ids: &std::collections::HashSet<String>) {
        let mut inner = self.write();
        let before = inner.containers.len();
        inner.containers.retain(|id, _| ids.contains(id));
        if inner.containers.len() != before {
            self.changed.notify_one();
        }
    }

    /// Completes after the next change (or at once if one happened since the last wait).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    pub(crate) fn contains(&self, id: &str, state: &str) -> bool {
        self.read()
            .containers
            .get(id)
            .is_some_and(|c| c.state == state)
    }

    pub(crate) fn get(&self, id: &str) -> Option<ContainerInfo> {
        self.read().containers.get(id).cloned()
    }

    pub(crate) fn containers(&self) -> Vec<ContainerInfo> {
        self.read().containers.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().containers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What ECS discovery found last.
    pub(crate) fn ecs(&self) -> EcsInfo {
        self.read().ecs.clone()
    }

    pub fn set_ecs(&self, ecs: EcsInfo) {
        self.write().ecs = ecs;
    }

    /// The address of the `ecs-agent` container, a place to look for its API.
    pub fn ecs_agent_ip(&self) -> Option<std::net::IpAddr> {
        let inner = self.read();
        let agent = inner
            .containers
            .values()
            .find(|c| c.role == Some("ecs-agent"))?;
        agent.ip_addresses.iter().find_map(|ip| ip.parse().ok())
    }

    pub(crate) fn set_source(&self, source: Source) {
        self.write().source = source;
    }

    pub(crate) fn source(&self) -> Source {
        self.read().source.clone()
    }

    pub(crate) fn count(&self, add: impl FnOnce(&mut ApiCalls)) {
        add(&mut self.write().calls);
    }

    pub fn calls(&self) -> ApiCalls {
        self.read().calls
    }

    /// Containers not kept because the store was full, since start.
    pub(crate) fn dropped(&self) -> u64 {
        self.read().dropped
    }
}
