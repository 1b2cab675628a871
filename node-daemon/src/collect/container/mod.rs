//! Container collector: a watcher task follows the Docker engine into a shared store;
//! each cycle turns the store into container records with cgroup telemetry, making no
//! Docker API call.

mod cgroup_stats;
mod inspect;
mod store;
mod watcher;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

pub use cgroup_stats::{CgroupReader, CgroupStats};
pub use inspect::{ecs_from_labels, role_of, PAUSE_CONTAINER_NAME};
pub use store::{ApiCalls, ContainerStore, Source};
pub use watcher::{connect, load_once, resync, DockerError, Watcher};

use crate::collect::host::parse_net_dev;
use crate::model::{container_urn, Container, ContainerTelemetry};

pub struct ContainerCollector {
    hostname: String,
    store: ContainerStore,
    cgroups: CgroupReader,
    /// CPU usage (ns) and when it was read, per container id.
    previous: HashMap<String, (u64, Instant)>,
}

impl ContainerCollector {
    pub fn new(hostname: &str, store: ContainerStore, cgroup_root: &Path) -> Self {
        Self {
            hostname: hostname.to_string(),
            store,
            cgroups: CgroupReader::new(cgroup_root),
            previous: HashMap::new(),
        }
    }

    pub fn store(&self) -> &ContainerStore {
        &self.store
    }

    pub fn collect(&mut self) -> Vec<Container> {
        let now = Instant::now();
        let infos = self.store.containers();
        let mut previous = HashMap::with_capacity(infos.len());
        let containers = infos
            .into_iter()
            .map(|info| {
                let telemetry = (info.state == "running").then(|| {
                    let stats = self.cgroups.read(&info.id, info.pid).unwrap_or_default();
                    let cpu_pct = stats.cpu_usage_ns.and_then(|ns| {
                        previous.insert(info.id.clone(), (ns, now));
                        let (before, at) = self.previous.get(&info.id)?;
                        let elapsed = now.duration_since(*at).as_secs_f64();
                        (elapsed > 0.0)
                            .then(|| ns.saturating_sub(*before) as f64 / 1e9 / elapsed * 100.0)
                    });
                    let network = (info.network_mode != "host")
                        .then(|| info.pid.and_then(container_network))
                        .flatten();
                    ContainerTelemetry {
                        cpu_pct,
                        cpu_usage_seconds: stats.cpu_usage_ns.map(|ns| ns as f64 / 1e9),
                        memory_usage_bytes: stats.memory_usage_bytes,
                        memory_limit_bytes: stats.memory_limit_bytes,
                        network_rx_bytes: network.map(|(rx, _)| rx),
                        network_tx_bytes: network.map(|(_, tx)| tx),
                        block_read_bytes: stats.block_read_bytes,
                        block_write_bytes: stats.block_write_bytes,
                    }
                });
                Container {
                    urn: container_urn(&self.hostname, &info.id),
                    info,
                    telemetry,
                }
            })
            .collect();
        self.previous = previous;
        containers
    }
}

/// Bytes received and sent on the container's own interfaces (all but `lo`), from its
/// main process's view of /proc/net/dev.
fn container_network(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(
        parse_net_dev(&text)
            .into_iter()
            .filter(|(name, _)| name != "lo")
            .fold((0, 0), |(rx, tx), (_, [r, _, t, _])| (rx + r, tx + t)),
    )
}
