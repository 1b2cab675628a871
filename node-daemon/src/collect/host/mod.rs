//! Host collector: static facts and host-wide telemetry, with rates over the interval.

mod counters;
mod info;

use std::collections::BTreeMap;
use std::io;
use std::time::Instant;

pub(crate) use counters::parse_net_dev;
use counters::CpuTicks;
pub(crate) use info::HostInfo;

use crate::collect::kernel::Kernel;
use crate::collect::proc_files::FileReader;
use crate::model::{host_urn, CpuPercent, DiskCounters, Host, HostTelemetry, InterfaceCounters};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {0}")]
    Parse(&'static str),
}

struct Previous {
    at: Instant,
    cpu: CpuTicks,
    net: BTreeMap<String, [u64; 4]>,
    disks: BTreeMap<String, (u64, u64)>,
}

pub(crate) struct HostCollector {
    info: HostInfo,
    kernel: Kernel,
    reader: FileReader,
    previous: Option<Previous>,
}

impl HostCollector {
    pub(crate) fn new(configured_hostname: Option<&str>) -> Result<Self, HostError> {
        let read_err = |path| move |source| HostError::Read { path, source };
        Ok(Self {
            info: HostInfo::read(configured_hostname).map_err(read_err("/proc/sys/kernel"))?,
            kernel: Kernel::read().map_err(read_err("/proc/stat"))?,
            reader: FileReader::default(),
            previous: None,
        })
    }

    pub(crate) fn hostname(&self) -> &str {
        &self.info.hostname
    }

    fn read(&mut self, path: &'static str) -> Result<&str, HostError> {
        self.reader
            .read_str(path)
            .map_err(|source| HostError::Read { path, source })
    }

    pub(crate) fn collect(&mut self) -> Result<Host, HostError> {
        let now = Instant::now();
        let cpu =
            counters::parse_cpu(self.read("/proc/stat")?).ok_or(HostError::Parse("/proc/stat"))?;
        let load = counters::parse_loadavg(self.read("/proc/loadavg")?)
            .ok_or(HostError::Parse("/proc/loadavg"))?;
        let memory = counters::parse_meminfo(self.read("/proc/meminfo")?)
            .ok_or(HostError::Parse("/proc/meminfo"))?;
        let uptime_seconds = self
            .read("/proc/uptime")?
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or(HostError::Parse("/proc/uptime"))?;
        let net = counters::parse_net_dev(self.read("/proc/net/dev")?);
        let disks = counters::parse_diskstats(self.read("/proc/diskstats")?);

        let previous = self.previous.as_ref();
        let elapsed = previous.map(|p| now.duration_since(p.at).as_secs_f64());
        let rate = |now: u64, before: Option<u64>| {
            Some(now.saturating_sub(before?) as f64 / elapsed.filter(|s| *s > 0.0)?)
        };
        let network = net
            .iter()
            .map(|(name, &[rx, rx_packets, tx, tx_packets])| {
                let before = previous.and_then(|p| p.net.get(name));
                InterfaceCounters {
                    interface: name.clone(),
                    rx_bytes: rx,
                    tx_bytes: tx,
                    rx_packets,
                    tx_packets,
                    rx_bytes_per_sec: rate(rx, before.map(|b| b[0])),
                    tx_bytes_per_sec: rate(tx, before.map(|b| b[2])),
                }
            })
            .collect();
        let disk_counters = disks
            .iter()
            .map(|(name, &(read, written))| {
                let before = previous.and_then(|p| p.disks.get(name));
                DiskCounters {
                    device: name.clone(),
                    read_bytes: read,
                    write_bytes: written,
                    read_bytes_per_sec: rate(read, before.map(|b| b.0)),
                    write_bytes_per_sec: rate(written, before.map(|b| b.1)),
                }
            })
            .collect();
        let cpu_pct = cpu_percent(cpu, previous.map(|p| p.cpu).unwrap_or_default());
        self.previous = Some(Previous {
            at: now,
            cpu,
            net,
            disks,
        });

        Ok(Host {
            hostname: self.info.hostname.clone(),
            urn: host_urn(&self.info.hostname),
            os: self.info.os.clone(),
            kernel: self.info.kernel.clone(),
            cpu_count: self.info.cpu_count,
            memory_total_bytes: memory.total_bytes,
            boot_time_ms: self.kernel.boot_time_s * 1000,
            uptime_seconds,
            telemetry: HostTelemetry {
                cpu: cpu_pct,
                load,
                memory,
                network,
                disks: disk_counters,
            },
            ecs: None,
        })
    }
}

/// Percentages of the ticks between two samples (since boot when `before` is zero).
fn cpu_percent(now: CpuTicks, before: CpuTicks) -> CpuPercent {
    let total = now.total.saturating_sub(before.total);
    if total == 0 {
        return CpuPercent::default();
    }
    let pct = |a: u64, b: u64| a.saturating_sub(b) as f64 * 100.0 / total as f64;
    CpuPercent {
        user_pct: pct(now.user, before.user),
        system_pct: pct(now.system, before.system),
        iowait_pct: pct(now.iowait, before.iowait),
        idle_pct: pct(now.idle, before.idle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_samples_give_rates() {
        let mut host = HostCollector::new(None).unwrap();
        let first = host.collect().unwrap();
        assert!(first.memory_total_bytes > 0);
        assert!(first.telemetry.network.iter().any(|n| n.interface == "lo"));
        assert!(first
            .telemetry
            .network
            .iter()
            .all(|n| n.rx_bytes_per_sec.is_none()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let second = host.collect().unwrap();
        assert!(second
            .telemetry
            .network
            .iter()
            .all(|n| n.rx_bytes_per_sec.is_some()));
        let c = &second.telemetry.cpu;
        let sum = c.user_pct + c.system_pct + c.iowait_pct + c.idle_pct;
        assert!(sum <= 100.01, "{sum}");
        assert!(second.urn.starts_with("urn:host:/"));
    }

    #[test]
    fn cpu_percent_of_the_interval() {
        let before = CpuTicks {
            user: 10,
            system: 10,
            iowait: 0,
            idle: 80,
            total: 100,
        };
        let now = CpuTicks {
            user: 60,
            system: 20,
            iowait: 10,
            idle: 110,
            total: 200,
        };
        let p = cpu_percent(now, before);
        assert_eq!(
            (p.user_pct, p.system_pct, p.iowait_pct, p.idle_pct),
            (50.0, 10.0, 10.0, 30.0)
        );
        assert_eq!(cpu_percent(before, before).idle_pct, 0.0);
    }
}
