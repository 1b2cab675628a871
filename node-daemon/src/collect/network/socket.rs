//! What a backend observes, before directions, rates and the connection table: the common
//! ground of the /proc polling backend and the eBPF backend.

use std::net::SocketAddr;
use std::sync::Arc;

use super::NetworkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// The process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) pid: u32,
    pub(crate) create_time_ms: u64,
    pub(crate) container_id: Option<Arc<str>>,
}

/// Kernel TCP counters (`struct tcp_info`) of one socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcpCounters {
    /// Data bytes sent (retransmissions counted once; no SYN or FIN).
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) retransmits: u64,
    /// Smoothed round-trip time.
    pub(crate) rtt_us: u64,
}

/// One socket of one network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    /// Inode number of the network namespace.
    pub(crate) netns: u64,
    pub(crate) protocol: Protocol,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// The kernel's state number (`TCP_ESTABLISHED` = 1 ...; UDP uses 1 when connected,
    /// 7 when not).
    pub(crate) state: u8,
    pub(crate) inode: u64,
    pub(crate) tx_queue: u32,
    pub(crate) rx_queue: u32,
    /// None when no process holds the socket (TIME_WAIT, orphans) or the owner was not found.
    pub(crate) owner: Option<Owner>,
    /// Byte counters (UDP: eBPF backend only), and for TCP retransmits and RTT; None when
    /// the backend could not read them.
    pub(crate) counters: Option<TcpCounters>,
    /// Unix ms when the connection opened, when the backend saw it open.
    pub(crate) start_time_ms: Option<u64>,
}

/// Everything one backend poll found.
#[derive(Debug, Default)]
pub struct Observation {
    /// Every socket, listening ones included (they decide directions).
    pub(crate) sockets: Vec<Socket>,
    pub(crate) namespaces: u64,
    /// Sockets with an inode whose process was not found.
    pub(crate) unowned: u64,
    /// Lines of the socket tables that did not parse.
    pub(crate) malformed: u64,
    /// Namespaces whose sock_diag query failed (their TCP counters are unknown).
    pub(crate) diag_failed: u64,
    /// `/proc/<pid>/fd` links not read because the per-cycle budget was spent.
    pub(crate) fd_budget_exhausted: u64,
    /// TCP connections closed since the last poll, with final counters (eBPF backend).
    pub(crate) closed: Vec<Socket>,
    /// True when the backend reports every TCP close in `closed`: a connection missing
    /// from `sockets` is then only closing (its owner let go of it), not gone.
    pub(crate) reports_closes: bool,
    /// Closed connections the kernel could not hand over (ring buffer full).
    pub(crate) closed_lost: u64,
    /// Sockets the kernel side could not keep state for (no memory).
    pub(crate) untracked: u64,
}

/// A source of socket observations. The polling backend reads /proc and sock_diag; the eBPF
/// backend asks its kernel programs, with the same records.
pub trait Backend: Send {
    /// For status: the backend's name and why it was chosen, e.g.
    /// `proc: forced by STS_NETWORK_BACKEND=proc`.
    fn describe(&self) -> String;
    fn observe(&mut self) -> Result<Observation, NetworkError>;
}
