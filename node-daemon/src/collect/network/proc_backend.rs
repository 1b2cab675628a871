//! The polling backend: per network namespace, the socket tables of /proc, the owners
//! from `/proc/<pid>/fd`, and TCP counters from sock_diag.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};

use super::diag::DiagSocket;
use super::namespaces::{self, netns_of};
use super::owners::Owners;
use super::proc_net::{self, Entry, TABLES};
use super::socket::{Backend, Observation, Protocol, Socket, TcpCounters};
use super::NetworkError;
use crate::collect::kernel::Kernel;

pub struct ProcBackend {
    /// Why this backend runs, for status.
    reason: String,
    owners: Owners,
    own_netns: Option<u64>,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    diag_buf: Vec<u8>,
    counters: HashMap<u64, TcpCounters>,
    /// The last sock_diag failure, for status.
    diag_error: Option<String>,
}

impl ProcBackend {
    pub fn new(reason: String) -> Result<Self, NetworkError> {
        Ok(Self {
            reason,
            owners: Owners::new(Kernel::read().map_err(NetworkError::Kernel)?),
            own_netns: netns_of("/proc/thread-self/ns/net"),
            buf: Vec::with_capacity(64 * 1024),
            entries: Vec::new(),
            diag_buf: Vec::new(),
            counters: HashMap::new(),
            diag_error: None,
        })
    }

    /// Appends the four socket tables of a namespace, read through one of its processes.
    fn read_tables(&mut self, netns: u64, pids: &[u32], out: &mut Vec<Socket>) -> u64 {
        for &pid in pids {
            let mut malformed = 0;
            let start = out.len();
            let mut ok = true;
            for (file, protocol) in TABLES {
                self.buf.clear();
                let read = File::open(format!("/proc/{pid}/net/{file}"))
                    .and_then(|mut f| f.read_to_end(&mut self.buf));
                match read {
                    Ok(_) => {}
                    // No IPv6 in this kernel: the v6 tables are absent.
                    Err(e) if e.kind() == io::ErrorKind::NotFound && file.ends_with('6') => {
                        continue
                    }
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
                self.entries.clear();
                malformed += proc_net::parse_table(&self.buf, &mut self.entries);
                out.extend(self.entries.drain(..).map(|e| Socket {
                    netns,
                    protocol,
                    local: e.local,
                    remote: e.remote,
                    state: e.state,
                    inode: e.inode,
                    tx_queue: e.tx_queue,
                    rx_queue: e.rx_queue,
                    owner: None,
                    counters: None,
                }));
            }
            if ok {
                return malformed;
            }
            // The process exited meanwhile: read the namespace through the next one.
            out.truncate(start);
        }
        0
    }

    /// sock_diag counters of every TCP socket of the namespace.
    fn diag(&mut self, netns: u64, pids: &[u32]) -> io::Result<()> {
        let socket = if Some(netns) == self.own_netns {
            DiagSocket::open()?
        } else {
            let ns = pids
                .iter()
                .find_map(|pid| File::open(format!("/proc/{pid}/ns/net")).ok())
                .ok_or_else(|| io::Error::other("every process of the namespace exited"))?;
            DiagSocket::open_in(&ns)?
        };
        self.counters.clear();
        for family in [libc::AF_INET, libc::AF_INET6] {
            socket.tcp_counters(family as u8, &mut self.diag_buf, &mut self.counters)?;
        }
        Ok(())
    }
}

impl Backend for ProcBackend {
    fn describe(&self) -> String {
        match &self.diag_error {
            None => format!("proc: {}; TCP counters from sock_diag", self.reason),
            Some(e) => format!("proc: {}; no TCP counters: sock_diag: {e}", self.reason),
        }
    }

    fn observe(&mut self) -> Result<Observation, NetworkError> {
        self.owners.start_cycle();
        let groups = namespaces::group_by_netns().map_err(NetworkError::ListProc)?;
        let mut obs = Observation::default();
        let mut diag_error = None;
        for (&netns, pids) in &groups {
            let start = obs.sockets.len();
            obs.malformed += self.read_tables(netns, pids, &mut obs.sockets);
            if obs.sockets.len() == start {
                continue;
            }
            obs.namespaces += 1;
            let sockets = &mut obs.sockets[start..];
            obs.unowned += self.owners.resolve(pids, sockets).unowned;
            let tcp_owned = sockets
                .iter()
                .any(|s| s.protocol == Protocol::Tcp && s.owner.is_some());
            if !tcp_owned {
                continue;
            }
            match self.diag(netns, pids) {
                Ok(()) => {
                    for s in obs.sockets[start..].iter_mut() {
                        if s.protocol == Protocol::Tcp {
                            s.counters = self.counters.get(&s.inode).copied();
                        }
                    }
                }
                Err(e) => {
                    obs.diag_failed += 1;
                    diag_error = Some(e.to_string());
                }
            }
        }
        self.diag_error = diag_error;
        obs.fd_budget_exhausted = self.owners.exhausted();
        let seen: HashSet<u64> = obs.sockets.iter().map(|s| s.inode).collect();
        self.owners.end_cycle(&seen);
        Ok(obs)
    }
}
