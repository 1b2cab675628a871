//! Host and container metrics: gauges of each cycle's snapshot, as intake metrics
//! messages.

use std::rc::Rc;

use super::{Outlet, Spec};
use crate::forward::encode::intake::{metrics_message, Gauge};
use crate::model::Snapshot;

pub(crate) const SPEC: Spec = Spec::intake("metrics", "forward.metrics");

pub(crate) struct Pipeline {
    pub(crate) out: Outlet,
}

impl Pipeline {
    pub(crate) fn submit(&self, snapshot: &Snapshot, now_s: u64) {
        let h = self.out.hostname();
        self.out.submit_intake(&metrics_message(
            h,
            &snapshot_metrics(snapshot, now_s),
            now_s,
        ));
    }
}

const MB: f64 = 1024.0 * 1024.0;

/// Gauges for the host (the core agent's names and units) and the containers (as the
/// process agent names them, tagged `containerId:<id>`).
pub fn snapshot_metrics(snapshot: &Snapshot, now_s: u64) -> Vec<Gauge<'_>> {
    let host = &snapshot.host;
    let h = host.hostname.as_str();
    let t = &host.telemetry;
    let mut out = Vec::new();
    let mut gauge = |name: &'static str, value: f64, tags: Rc<[String]>| {
        out.push(Gauge {
            name,
            timestamp: now_s,
            value,
            hostname: h,
            tags,
        });
    };
    let none = || Rc::<[String]>::from([]);
    gauge("system.cpu.user", t.cpu.user_pct, none());
    gauge("system.cpu.system", t.cpu.system_pct, none());
    gauge("system.cpu.iowait", t.cpu.iowait_pct, none());
    gauge("system.cpu.idle", t.cpu.idle_pct, none());
    gauge("system.load.1", t.load.load1, none());
    gauge("system.load.5", t.load.load5, none());
    gauge("system.load.15", t.load.load15, none());
    let m = &t.memory;
    let mb = |bytes: u64| bytes as f64 / MB;
    let memory = [
        ("system.mem.total", m.total_bytes),
        (
            "system.mem.used",
            m.total_bytes.saturating_sub(m.free_bytes),
        ),
        ("system.mem.free", m.free_bytes),
        ("system.mem.usable", m.available_bytes),
        ("system.swap.total", m.swap_total_bytes),
        ("system.swap.used", m.swap_used_bytes),
        (
            "system.swap.free",
            m.swap_total_bytes.saturating_sub(m.swap_used_bytes),
        ),
    ];
    for (name, bytes) in memory {
        gauge(name, mb(bytes), none());
    }
    for n in &t.network {
        let tags: Rc<[String]> = Rc::new([format!("device:{}", n.interface)]);
        gauge(
            "system.net.bytes_rcvd",
            n.rx_bytes_per_sec.unwrap_or(0.0),
            tags.clone(),
        );
        gauge(
            "system.net.bytes_sent",
            n.tx_bytes_per_sec.unwrap_or(0.0),
            tags,
        );
    }
    for d in &t.disks {
        let tags: Rc<[String]> = Rc::new([format!("device:{}", d.device)]);
        gauge(
            "system.io.rkb_s",
            d.read_bytes_per_sec.unwrap_or(0.0) / 1024.0,
            tags.clone(),
        );
        gauge(
            "system.io.wkb_s",
            d.write_bytes_per_sec.unwrap_or(0.0) / 1024.0,
            tags,
        );
    }
    for c in &snapshot.containers {
        let Some(ct) = &c.telemetry else { continue };
        let tags: Rc<[String]> = Rc::new([format!("containerId:{}", c.info.id)]);
        let bytes = |v: Option<u64>| v.map(|v| v as f64);
        let values = [
            ("rbps", ct.block_read_bytes_per_sec),
            ("wbps", ct.block_write_bytes_per_sec),
            ("netRcvdPs", ct.network_rx_packets_per_sec),
            ("netSentPs", ct.network_tx_packets_per_sec),
            ("netRcvdBps", ct.network_rx_bytes_per_sec),
            ("netSentBps", ct.network_tx_bytes_per_sec),
            ("userPct", ct.cpu_user_pct),
            ("systemPct", ct.cpu_system_pct),
            ("totalPct", ct.cpu_pct),
            ("memRss", bytes(ct.memory_rss_bytes)),
            ("memCache", bytes(ct.memory_cache_bytes)),
        ];
        for (name, value) in values {
            if let Some(v) = value {
                gauge(name, v, tags.clone());
            }
        }
    }
    out
}
