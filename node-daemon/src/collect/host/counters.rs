//! Parsers for the host-wide counter files of /proc.

use std::collections::BTreeMap;

use crate::collect::proc_files::keyed_u64;
use crate::model::{LoadAverage, Memory};

/// The aggregate `cpu` line of /proc/stat, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTicks {
    pub(crate) user: u64,
    pub(crate) system: u64,
    pub(crate) iowait: u64,
    pub(crate) idle: u64,
    pub(crate) total: u64,
}

pub(crate) fn parse_cpu(stat: &str) -> Option<CpuTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(CpuTicks {
        user: field(0) + field(1),
        system: field(2) + field(5) + field(6),
        iowait: field(4),
        idle: field(3),
        total: (0..8).map(field).sum(),
    })
}

pub(crate) fn parse_loadavg(text: &str) -> Option<LoadAverage> {
    let mut f = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some(LoadAverage {
        load1: f.next()??,
        load5: f.next()??,
        load15: f.next()??,
    })
}

/// Memory in bytes; "used" is total minus available, as `free` reports it.
pub(crate) fn parse_meminfo(text: &str) -> Option<Memory> {
    let kb = |key| keyed_u64(text, key).map(|v| v * 1024);
    let total = kb("MemTotal")?;
    let free = kb("MemFree")?;
    let available = kb("MemAvailable").unwrap_or(free);
    let swap_total = kb("SwapTotal").unwrap_or(0);
    let swap_free = kb("SwapFree").unwrap_or(0);
    Some(Memory {
        total_bytes: total,
        used_bytes: total.saturating_sub(available),
        available_bytes: available,
        free_bytes: free,
        swap_total_bytes: swap_total,
        swap_used_bytes: swap_total.saturating_sub(swap_free),
    })
}

/// Per interface: (rx_bytes, rx_packets, tx_bytes, tx_packets) from /proc/net/dev.
pub(crate) fn parse_net_dev(text: &str) -> BTreeMap<String, [u64; 4]> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            (v.len() >= 10).then(|| (name.trim().to_string(), [v[0], v[1], v[8], v[9]]))
        })
        .collect()
}

/// Per block device with any IO: (read_bytes, write_bytes) from /proc/diskstats.
/// Sectors there are always 512 bytes. Partitions are left out when their whole disk
/// is listed, so a disk's bytes are not counted twice.
pub(crate) fn parse_diskstats(text: &str) -> BTreeMap<String, (u64, u64)> {
    let all: BTreeMap<String, (u64, u64)> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let name = f.get(2)?;
            let read: u64 = f.get(5)?.parse().ok()?;
            let written: u64 = f.get(9)?.parse().ok()?;
            (read + written > 0).then(|| (name.to_string(), (read * 512, written * 512)))
        })
        .collect();
    all.iter()
        .filter(|(name, _)| !is_partition_of_listed_disk(name, &all))
        .map(|(n, v)| (n.clone(), *v))
        .collect()
}

fn is_partition_of_listed_disk(name: &str, all: &BTreeMap<String, (u64, u64)>) -> bool {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = if base.len() < name.len() {
        base.strip_suffix('p')
            .filter(|b| all.contains_key(*b))
            .unwrap_or(base)
    } else {
        return false;
    };
    base != name && all.contains_key(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line() {
        let t = parse_cpu("cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n").unwrap();
        assert_eq!(
            t,
            CpuTicks {
                user: 105,
                system: 55,
                iowait: 20,
                idle: 800,
                total: 980
            }
        );
        assert_eq!(parse_cpu("intr 1 2\n"), None);
    }

    #[test]
    fn load_and_memory() {
        let l = parse_loadavg("0.50 1.25 2.00 1/234 5678\n").unwrap();
        assert_eq!((l.load1, l.load5, l.load15), (0.5, 1.25, 2.0));
        assert!(parse_loadavg("x").is_none());
        let m = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 400 kB\nSwapTotal: 50 kB\nSwapFree: 20 kB\n").unwrap();
        assert_eq!(m.total_bytes, 1_024_000);
        assert_eq!(m.used_bytes, 600 * 1024);
        assert_eq!(m.free_bytes, 100 * 1024);
        assert_eq!(m.swap_used_bytes, 30 * 1024);
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        let n = parse_net_dev(text);
        assert_eq!(n["eth0"], [1000, 10, 2000, 20]);
        assert_eq!(n["lo"], [5, 1, 5, 1]);
    }

    #[test]
    fn diskstats_whole_disks_only() {
        let text = "253 0 vda 100 0 8 0 50 0 16 0 0 0 0\n253 1 vda1 100 0 8 0 50 0 16 0 0 0 0\n7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n259 0 nvme0n1 1 0 2 0 1 0 4 0 0 0 0\n259 1 nvme0n1p1 1 0 2 0 1 0 4 0 0 0 0\n";
        let d = parse_diskstats(text);
        assert_eq!(d.keys().collect::<Vec<_>>(), ["nvme0n1", "vda"]);
        assert_eq!(d["vda"], (8 * 512, 16 * 512));
    }
}
