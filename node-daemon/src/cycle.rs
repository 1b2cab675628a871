//! One collection cycle over every enabled collector, recorded in the status registry.

use std::time::Instant;

use crate::collect::container::{ContainerCollector, ContainerStore, Source};
use crate::collect::host::{HostCollector, HostError};
use crate::collect::network::{NetworkCollector, NetworkError};
use crate::collect::process::{ProcessCollector, ProcessError};
use crate::config::Config;
use crate::join::{connects_to, enrich_ecs, join};
use crate::model::Snapshot;
use crate::status::Registry;

pub(crate) const HOST: &str = "host";
pub(crate) const PROCESSES: &str = "processes";
pub(crate) const CONTAINERS: &str = "containers";
pub(crate) const NETWORK: &str = "network";

/// The collector that failed; the reason is the error's source.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("host collector")]
    Host(#[from] HostError),
    #[error("process collector")]
    Process(#[from] ProcessError),
    #[error("network collector")]
    Network(#[from] NetworkError),
}

pub struct Collectors {
    host: HostCollector,
    /// None when `STS_PROCESS_AGENT_ENABLED=false` (processes and containers both).
    processes: Option<ProcessCollector>,
    containers: Option<ContainerCollector>,
    /// None unless both `STS_PROCESS_AGENT_ENABLED` and `STS_NETWORK_TRACING_ENABLED`.
    network: Option<NetworkCollector>,
    registry: Registry,
}

impl Collectors {
    pub fn new(config: &Config, registry: Registry) -> Result<Self, CycleError> {
        let host = HostCollector::new(config.hostname.as_deref())?;
        let enabled = config.process_agent_enabled;
        let processes = enabled
            .then(|| ProcessCollector::new(&config.process, host.hostname()))
            .transpose()?;
        let containers = enabled.then(|| {
            ContainerCollector::new(
                host.hostname(),
                ContainerStore::default(),
                &config.cgroup_root,
            )
        });
        let network = (enabled && config.network_tracing_enabled)
            .then(|| NetworkCollector::new(&config.network))
            .transpose()?;
        registry.register(HOST, true);
        registry.register(PROCESSES, enabled);
        registry.register(CONTAINERS, enabled);
        registry.register(NETWORK, network.is_some());
        if let Some(network) = &network {
            registry.set_detail(NETWORK, network.describe());
        }
        Ok(Self {
            host,
            processes,
            containers,
            network,
            registry,
        })
    }

    pub(crate) fn hostname(&self) -> &str {
        self.host.hostname()
    }

    /// The store the Docker watcher fills; None when container collection is off.
    pub fn container_store(&self) -> Option<ContainerStore> {
        self.containers.as_ref().map(|c| c.store().clone())
    }

    /// The network tracer's backend and why, None when it is off.
    pub fn network_backend(&self) -> Option<String> {
        self.network.as_ref().map(NetworkCollector::describe)
    }

    /// Runs every collector once. A failing collector is recorded and its part of the
    /// snapshot left empty; only a failing host collector fails the cycle.
    pub fn collect(&mut self) -> Result<Snapshot, CycleError> {
        let started = Instant::now();
        let host = self.host.collect();
        self.registry.record(
            HOST,
            started.elapsed(),
            host.as_ref()
                .map(|h| {
                    vec![
                        ("interfaces", h.telemetry.network.len() as u64),
                        ("disks", h.telemetry.disks.len() as u64),
                    ]
                })
                .map_err(ToString::to_string),
        );
        let host = host?;

        let mut processes = Vec::new();
        if let Some(collector) = &mut self.processes {
            let started = Instant::now();
            let outcome = match collector.collect(host.memory_total_bytes) {
                Ok(scan) => {
                    let c = scan.counts;
                    self.registry.add_drops("process.vanished", c.vanished);
                    self.registry.add_drops("process.unreadable", c.unreadable);
                    processes = scan.processes;
                    Ok(vec![
                        ("reported", c.reported),
                        ("seen", c.seen),
                        ("kernel_threads", c.kernel_threads),
                        ("blacklisted", c.blacklisted),
                        ("readmitted", c.readmitted),
                        ("vanished", c.vanished),
                        ("unreadable", c.unreadable),
                    ])
                }
                Err(e) => Err(e.to_string()),
            };
            self.registry.record(PROCESSES, started.elapsed(), outcome);
        }

        let mut containers = Vec::new();
        if let Some(collector) = &mut self.containers {
            let started = Instant::now();
            containers = collector.collect();
            let store = collector.store();
            self.registry
                .set_drops("container.store_full", store.dropped());
            match store.source() {
                Source::Unavailable(reason) => self.registry.record_unavailable(CONTAINERS, reason),
                Source::Connecting => {}
                Source::Connected => {
                    let calls = store.calls();
                    let running = containers
                        .iter()
                        .filter(|c| c.info.state == "running")
                        .count();
                    let ecs = containers.iter().filter(|c| c.info.ecs.is_some()).count();
                    self.registry.record(
                        CONTAINERS,
                        started.elapsed(),
                        Ok(vec![
                            ("containers", containers.len() as u64),
                            ("running", running as u64),
                            ("ecs", ecs as u64),
                            ("docker_events", calls.events),
                            ("docker_lists", calls.lists),
                            ("docker_inspects", calls.inspects),
                        ]),
                    );
                }
            }
        }

        let mut connections = Vec::new();
        let mut translations = Vec::new();
        if let Some(collector) = &mut self.network {
            let started = Instant::now();
            let outcome = match collector.collect() {
                Ok(scan) => {
                    let c = scan.counts;
                    self.registry.add_drops("network.table_full", c.table_full);
                    self.registry
                        .add_drops("network.fd_budget_exhausted", c.fd_budget_exhausted);
                    self.registry
                        .add_drops("network.closed_lost", c.closed_lost);
                    self.registry.add_drops("network.untracked", c.untracked);
                    self.registry
                        .add_drops("network.nat_lookups_skipped", c.nat_lookups_skipped);
                    connections = scan.connections;
                    translations = scan.translations;
                    Ok(vec![
                        ("connections", c.connections),
                        ("tcp", c.tcp),
                        ("udp", c.udp),
                        ("closed", c.closed),
                        ("listening", c.listening),
                        ("sockets", c.sockets),
                        ("namespaces", c.namespaces),
                        ("unowned", c.unowned),
                        ("malformed", c.malformed),
                        ("diag_failed", c.diag_failed),
                        ("table_full", c.table_full),
                        ("nat_lookups", c.nat_lookups),
                    ])
                }
                Err(e) => Err(e.to_string()),
            };
            self.registry.set_detail(NETWORK, collector.describe());
            self.registry.record(NETWORK, started.elapsed(), outcome);
        }

        let mut host = host;
        if let Some(collector) = &self.containers {
            let ecs = collector.store().ecs();
            enrich_ecs(&mut containers, &ecs);
            host.ecs = Some(ecs);
        }
        let mut relations = join(&host.urn, &mut processes, &containers);
        relations.extend(connects_to(
            &connections,
            &translations,
            &processes,
            &containers,
        ));
        Ok(Snapshot {
            host,
            processes,
            containers,
            connections,
            relations,
            translations,
        })
    }
}
