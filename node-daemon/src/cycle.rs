//! One collection cycle over every enabled collector, recorded in the status registry.

use std::time::Instant;

use crate::collect::host::{HostCollector, HostError};
use crate::collect::process::{ProcessCollector, ProcessError};
use crate::config::Config;
use crate::model::Snapshot;
use crate::status::Registry;

pub const HOST: &str = "host";
pub const PROCESSES: &str = "processes";

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("host collector: {0}")]
    Host(#[from] HostError),
    #[error("process collector: {0}")]
    Process(#[from] ProcessError),
}

pub struct Collectors {
    host: HostCollector,
    /// None when `STS_PROCESS_AGENT_ENABLED=false`.
    processes: Option<ProcessCollector>,
    registry: Registry,
}

impl Collectors {
    pub fn new(config: &Config, registry: Registry) -> Result<Self, CycleError> {
        let host = HostCollector::new(config.hostname.as_deref())?;
        let processes = config
            .process_agent_enabled
            .then(|| ProcessCollector::new(&config.process, host.hostname()))
            .transpose()?;
        registry.register(HOST, true);
        registry.register(PROCESSES, processes.is_some());
        Ok(Self {
            host,
            processes,
            registry,
        })
    }

    pub fn hostname(&self) -> &str {
        self.host.hostname()
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
            let scan = collector.collect(host.memory_total_bytes);
            let outcome = match scan {
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

        Ok(Snapshot {
            host,
            processes,
            containers: Vec::new(),
            connections: Vec::new(),
            relations: Vec::new(),
        })
    }
}
