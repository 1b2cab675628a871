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

pub(crate) use cgroup_stats::{CgroupReader, CgroupStats};
pub use store::{ApiCalls, ContainerStore, Source};
pub use watcher::{connect, load_once, resync, DockerError, Watcher};

use crate::collect::host::parse_net_dev;
use crate::model::{container_urn, Container, ContainerTelemetry};

pub struct ContainerCollector {
    hostname: String,
    store: ContainerStore,
    cgroups: CgroupReader,
    /// The counters of the last cycle, per container id (for the rates).
    previous: HashMap<String, Counters>,
}

/// A container's cumulative counters and when they were read.
#[derive(Debug, Clone, Copy)]
struct Counters {
    at: Instant,
    /// Total, user and kernel CPU time (ns).
    cpu_ns: [Option<u64>; 3],
    block: [Option<u64>; 2],
    /// Bytes received, packets received, bytes sent, packets sent.
    network: Option<[u64; 4]>,
}

impl Counters {
    fn read(stats: &CgroupStats, network: Option<[u64; 4]>, at: Instant) -> Self {
        Self {
            at,
            cpu_ns: [stats.cpu_usage_ns, stats.cpu_user_ns, stats.cpu_system_ns],
            block: [stats.block_read_bytes, stats.block_write_bytes],
            network,
        }
    }
}

/// Per-second rates between two samples of one counter.
struct Rates {
    elapsed_s: Option<f64>,
}

impl Rates {
    fn of(&self, now: Option<u64>, before: Option<u64>) -> Option<f64> {
        let elapsed = self.elapsed_s?;
        Some(now?.saturating_sub(before?) as f64 / elapsed)
    }
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
                    let network = (info.network_mode != "host")
                        .then(|| info.pid.and_then(container_network))
                        .flatten();
                    let counters = Counters::read(&stats, network, now);
                    previous.insert(info.id.clone(), counters);
                    let before = self.previous.get(&info.id);
                    telemetry(&stats, &counters, before)
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

fn telemetry(stats: &CgroupStats, now: &Counters, before: Option<&Counters>) -> ContainerTelemetry {
    let rates = Rates {
        elapsed_s: before
            .map(|b| now.at.duration_since(b.at).as_secs_f64())
            .filter(|s| *s > 0.0),
    };
    let cpu_pct = |i: usize| {
        let ns_per_s = rates.of(now.cpu_ns[i], before.and_then(|b| b.cpu_ns[i]))?;
        Some(ns_per_s / 1e9 * 100.0)
    };
    let block = |i: usize| rates.of(now.block[i], before.and_then(|b| b.block[i]));
    let net = |i: usize| {
        rates.of(
            now.network.map(|n| n[i]),
            before.and_then(|b| b.network).map(|n| n[i]),
        )
    };
    ContainerTelemetry {
        cpu_pct: cpu_pct(0),
        cpu_user_pct: cpu_pct(1),
        cpu_system_pct: cpu_pct(2),
        cpu_usage_seconds: stats.cpu_usage_ns.map(|ns| ns as f64 / 1e9),
        memory_usage_bytes: stats.memory_usage_bytes,
        memory_limit_bytes: stats.memory_limit_bytes,
        network_rx_bytes: now.network.map(|n| n[0]),
        network_tx_bytes: now.network.map(|n| n[2]),
        block_read_bytes: stats.block_read_bytes,
        block_write_bytes: stats.block_write_bytes,
        memory_rss_bytes: stats.memory_rss_bytes,
        memory_cache_bytes: stats.memory_cache_bytes,
        block_read_bytes_per_sec: block(0),
        block_write_bytes_per_sec: block(1),
        network_rx_bytes_per_sec: net(0),
        network_tx_bytes_per_sec: net(2),
        network_rx_packets_per_sec: net(1),
        network_tx_packets_per_sec: net(3),
    }
}

/// Bytes and packets received, bytes and packets sent on the container's own interfaces
/// (all but `lo`), from its main process's view of /proc/net/dev.
fn container_network(pid: u32) -> Option<[u64; 4]> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(
        parse_net_dev(&text)
            .into_iter()
            .filter(|(name, _)| name != "lo")
            .fold([0; 4], |sum, (_, counters)| {
                std::array::from_fn(|i| sum[i] + counters[i])
            }),
    )
}
