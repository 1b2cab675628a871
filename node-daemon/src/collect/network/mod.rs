//! Network tracer: every TCP connection and UDP socket of every process, with the owning
//! process and container, direction, and (for TCP) bytes, retransmits and RTT.
//!
//! A [`Backend`] observes sockets; this module turns observations into connection records
//! the same way for every backend: directions from the whole host's listeners and
//! addresses ([`direction`]), rates and closed connections from the bounded table
//! ([`table`]). The eBPF backend ([`ebpf`]) asks kernel programs; the polling backend
//! ([`proc_backend`]) reads /proc and sock_diag where eBPF is refused, not built, or
//! forced away by `STS_NETWORK_BACKEND=proc`.

pub(crate) mod conntrack;
mod diag;
pub(crate) mod direction;
pub mod ebpf;
mod namespaces;
mod netlink;
mod owners;
mod proc_backend;
pub(crate) mod proc_net;
pub(crate) mod socket;
pub(crate) mod table;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use crate::config::{NetworkBackend, NetworkConfig};
use crate::model::Connection;
use conntrack::Conntrack;
pub(crate) use conntrack::Translation;
use direction::Topology;
use proc_net::TCP_LISTEN;
pub use socket::{Backend, Observation, Protocol, Socket};
use table::Table;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot list /proc: {0}")]
    ListProc(#[source] std::io::Error),
    #[error("cannot read kernel constants: {0}")]
    Kernel(#[source] std::io::Error),
    #[error(transparent)]
    Ebpf(#[from] ebpf::EbpfError),
}

/// What one cycle found besides the connections: for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkCounts {
    pub(crate) namespaces: u64,
    pub(crate) sockets: u64,
    pub(crate) listening: u64,
    /// Open connections reported.
    pub connections: u64,
    pub(crate) tcp: u64,
    pub(crate) udp: u64,
    /// Reported once, gone since the last cycle.
    pub(crate) closed: u64,
    /// Sockets no process was found for (not reported).
    pub(crate) unowned: u64,
    pub(crate) malformed: u64,
    pub(crate) diag_failed: u64,
    /// Not tracked because the table is full (drop counter `network.table_full`).
    pub(crate) table_full: u64,
    pub(crate) fd_budget_exhausted: u64,
    /// Closed connections the kernel could not hand over (ring buffer full).
    pub(crate) closed_lost: u64,
    /// Sockets the kernel programs could not keep state for.
    pub(crate) untracked: u64,
    /// Conntrack lookups of unpaired client ends (published ports).
    pub(crate) nat_lookups: u64,
    pub(crate) nat_lookups_skipped: u64,
}

#[derive(Debug, Clone)]
pub struct NetworkScan {
    pub(crate) connections: Vec<Connection>,
    /// Destination NAT of this namespace (Docker's published ports), to pair both legs.
    pub(crate) translations: Vec<Translation>,
    pub counts: NetworkCounts,
}

pub struct NetworkCollector {
    backend: Box<dyn Backend>,
    table: Table,
    ephemeral: std::ops::RangeInclusive<u16>,
    conntrack: Conntrack,
    /// Why the last conntrack lookup failed, for status.
    conntrack_error: Option<String>,
}

impl NetworkCollector {
    /// The backend `STS_NETWORK_BACKEND` asks for: `auto` takes eBPF and falls back to
    /// polling (saying why in status), `ebpf` fails when eBPF is unavailable.
    pub fn new(config: &NetworkConfig) -> Result<Self, NetworkError> {
        let backend: Box<dyn Backend> = match config.backend {
            NetworkBackend::Ebpf => Box::new(ebpf::EbpfBackend::start()?),
            NetworkBackend::Auto => match ebpf::EbpfBackend::start() {
                Ok(backend) => Box::new(backend),
                Err(e) => {
                    tracing::warn!("network tracer: eBPF unavailable, polling /proc: {e}");
                    Box::new(proc_backend::ProcBackend::new(format!(
                        "eBPF unavailable: {}",
                        e.short_reason()
                    ))?)
                }
            },
            NetworkBackend::Proc => Box::new(proc_backend::ProcBackend::new(
                "forced by STS_NETWORK_BACKEND=proc".to_string(),
            )?),
        };
        Ok(Self::with_backend(backend, config.max_connections))
    }

    pub(crate) fn with_backend(backend: Box<dyn Backend>, max_connections: usize) -> Self {
        Self {
            backend,
            table: Table::new(max_connections),
            ephemeral: direction::ephemeral_ports(),
            conntrack: Conntrack::default(),
            conntrack_error: None,
        }
    }

    /// Which backend runs and why, e.g. `proc: forced by STS_NETWORK_BACKEND=proc; ...`.
    pub fn describe(&self) -> String {
        let nat = match &self.conntrack_error {
            None => "NAT legs paired from conntrack".to_string(),
            Some(e) => format!("NAT legs not paired: conntrack: {e}"),
        };
        format!("{}; {nat}", self.backend.describe())
    }

    pub fn collect(&mut self) -> Result<NetworkScan, NetworkError> {
        let obs = self.backend.observe()?;
        let now = Instant::now();
        let topology = Topology::new(&obs.sockets, self.ephemeral.clone());
        let mut counts = NetworkCounts {
            namespaces: obs.namespaces,
            sockets: obs.sockets.len() as u64,
            unowned: obs.unowned,
            malformed: obs.malformed,
            diag_failed: obs.diag_failed,
            fd_budget_exhausted: obs.fd_budget_exhausted,
            closed_lost: obs.closed_lost,
            untracked: obs.untracked,
            ..NetworkCounts::default()
        };
        let mut fresh = Vec::with_capacity(obs.sockets.len());
        for s in &obs.sockets {
            if s.protocol == Protocol::Tcp && s.state == TCP_LISTEN {
                counts.listening += 1;
                continue;
            }
            if let Some(c) = record(&topology, s) {
                fresh.push(c);
            }
        }
        let closed: Vec<Connection> = obs
            .closed
            .iter()
            .filter_map(|s| record(&topology, s))
            .collect();
        let update = self.table.update(fresh, closed, obs.reports_closes, now);
        let translations = self.translations(&update.connections, &mut counts);
        counts.connections = update.open;
        counts.closed = update.closed;
        counts.table_full = update.overflow;
        for c in update.connections.iter().filter(|c| !c.closed) {
            match c.protocol {
                "tcp" => counts.tcp += 1,
                _ => counts.udp += 1,
            }
        }
        Ok(NetworkScan {
            connections: update.connections,
            translations,
            counts,
        })
    }
}

impl NetworkCollector {
    /// The destination NAT of client ends whose remote address is on this host but that no
    /// server end answers to (a published port); `NAT_LOOKUPS_PER_CYCLE` at most.
    fn translations(
        &mut self,
        connections: &[Connection],
        counts: &mut NetworkCounts,
    ) -> Vec<Translation> {
        let ends: HashSet<(SocketAddr, SocketAddr)> = connections
            .iter()
            .filter(|c| c.protocol == "tcp")
            .map(|c| (c.local, c.remote))
            .collect();
        let unpaired = connections.iter().filter(|c| {
            c.protocol == "tcp"
                && !c.closed
                && c.side == Some("client")
                && c.direction == "local"
                && !ends.contains(&(c.remote, c.local))
        });
        let mut out = Vec::new();
        for c in unpaired {
            if counts.nat_lookups == NAT_LOOKUPS_PER_CYCLE {
                counts.nat_lookups_skipped += 1;
                continue;
            }
            counts.nat_lookups += 1;
            match self.conntrack.lookup(c.local, c.remote) {
                Ok(found) => {
                    self.conntrack_error = None;
                    out.extend(found);
                }
                Err(e) => {
                    self.conntrack_error = Some(e.to_string());
                    break;
                }
            }
        }
        out
    }
}

/// Conntrack lookups per cycle at most (unpaired client ends beyond are not stitched and
/// are counted in `nat_lookups_skipped`).
pub(crate) const NAT_LOOKUPS_PER_CYCLE: u64 = 4096;

/// The connection record of an owned socket; None for sockets without an owner and for
/// TCP sockets without a peer (bound, not connected).
pub(crate) fn record(topology: &Topology, s: &Socket) -> Option<Connection> {
    let owner = s.owner.as_ref()?;
    if s.protocol == Protocol::Tcp && s.remote.port() == 0 {
        return None;
    }
    let (direction, side) = topology.classify(s);
    let tcp_counters = s.counters.filter(|_| s.protocol == Protocol::Tcp);
    Some(Connection {
        pid: owner.pid,
        process_create_time_ms: owner.create_time_ms,
        container_id: owner.container_id.as_deref().map(String::from),
        netns: s.netns,
        protocol: s.protocol.as_str(),
        ip_version: if s.local.is_ipv4() { 4 } else { 6 },
        local: s.local,
        remote: s.remote,
        direction: direction.as_str(),
        side: side.map(direction::Side::as_str),
        state: state_name(s.protocol, s.state),
        bytes_sent: s.counters.map(|c| c.bytes_sent),
        bytes_received: s.counters.map(|c| c.bytes_received),
        bytes_sent_per_sec: None,
        bytes_received_per_sec: None,
        retransmits: tcp_counters.map(|c| c.retransmits),
        rtt_us: tcp_counters.map(|c| c.rtt_us),
        tx_queue: s.tx_queue,
        rx_queue: s.rx_queue,
        inode: s.inode,
        start_time_ms: s.start_time_ms,
        closed: false,
    })
}

/// The kernel's TCP states (include/net/tcp_states.h); UDP uses 1 when connected.
pub(crate) fn state_name(protocol: Protocol, state: u8) -> &'static str {
    if protocol == Protocol::Udp {
        return if state == 1 {
            "connected"
        } else {
            "unconnected"
        };
    }
    match state {
        1 => "established",
        2 => "syn_sent",
        3 => "syn_recv",
        4 => "fin_wait1",
        5 => "fin_wait2",
        6 => "time_wait",
        7 => "close",
        8 => "close_wait",
        9 => "last_ack",
        10 => "listen",
        11 => "closing",
        12 => "new_syn_recv",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
