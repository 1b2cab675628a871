//! The polling backend: per network namespace, TCP sockets and their counters from
//! sock_diag (the /proc tables when it fails), UDP sockets from /proc, and the owners
//! from `/proc/<pid>/fd`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};

use super::diag::DiagSocket;
use super::namespaces::{self, netns_of};
use super::owners::Owners;
use super::proc_net::{self, Entry, TCP_TABLES, UDP_TABLES};
use super::socket::{Backend, Observation, Protocol, Socket, TcpCounters};
use super::NetworkError;
use crate::collect::kernel::Kernel;

pub(crate) struct ProcBackend {
    /// Why this backend runs, for status.
    reason: String,
    owners: Owners,
    own_netns: Option<u64>,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    diag_buf: Vec<u8>,
    diag_entries: Vec<(Entry, Option<TcpCounters>)>,
    /// The last sock_diag failure, for status.
    diag_error: Option<String>,
}

impl ProcBackend {
    pub(crate) fn new(reason: String) -> Result<Self, NetworkError> {
        Ok(Self {
            reason,
            owners: Owners::new(Kernel::read().map_err(NetworkError::Kernel)?),
            own_netns: netns_of("/proc/thread-self/ns/net"),
            buf: Vec::with_capacity(64 * 1024),
            entries: Vec::new(),
            diag_buf: Vec::new(),
            diag_entries: Vec::new(),
            diag_error: None,
        })
    }

    /// Appends socket tables of a namespace, read through one of its processes.
    fn read_tables(
        &mut self,
        netns: u64,
        pids: &[u32],
        tables: &[(&str, Protocol)],
        out: &mut Vec<Socket>,
    ) -> u64 {
        for &pid in pids {
            let mut malformed = 0;
            let start = out.len();
            let mut ok = true;
            for &(file, protocol) in tables {
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
                    start_time_ms: None,
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

    /// Every TCP socket of the namespace, with counters, from sock_diag.
    fn diag(&mut self, netns: u64, pids: &[u32], out: &mut Vec<Socket>) -> io::Result<()> {
        let socket = if Some(netns) == self.own_netns {
            DiagSocket::open()?
        } else {
            let ns = pids
                .iter()
                .find_map(|pid| File::open(format!("/proc/{pid}/ns/net")).ok())
                .ok_or_else(|| io::Error::other("every process of the namespace exited"))?;
            DiagSocket::open_in(&ns)?
        };
        self.diag_entries.clear();
        for family in [libc::AF_INET, libc::AF_INET6] {
            socket.tcp_sockets(family as u8, &mut self.diag_buf, &mut self.diag_entries)?;
        }
        out.extend(self.diag_entries.drain(..).map(|(e, counters)| Socket {
            netns,
            protocol: Protocol::Tcp,
            local: e.local,
            remote: e.remote,
            state: e.state,
            inode: e.inode,
            tx_queue: e.tx_queue,
            rx_queue: e.rx_queue,
            owner: None,
            counters,
            start_time_ms: None,
        }));
        Ok(())
    }
}

impl Backend for ProcBackend {
    fn describe(&self) -> String {
        match &self.diag_error {
            None => format!(
                "proc: {}; TCP sockets and counters from sock_diag",
                self.reason
            ),
            Some(e) => format!(
                "proc: {}; TCP from /proc without counters: sock_diag: {e}",
                self.reason
            ),
        }
    }

    fn observe(&mut self) -> Result<Observation, NetworkError> {
        self.owners.start_cycle();
        let groups = namespaces::group_by_netns().map_err(NetworkError::ListProc)?;
        let mut obs = Observation::default();
        let mut diag_error = None;
        for (&netns, pids) in &groups {
            let start = obs.sockets.len();
            let tables: &[(&str, Protocol)] = match self.diag(netns, pids, &mut obs.sockets) {
                Ok(()) => &UDP_TABLES,
                Err(e) => {
                    obs.diag_failed += 1;
                    diag_error = Some(e.to_string());
                    &[TCP_TABLES, UDP_TABLES].concat()
                }
            };
            obs.malformed += self.read_tables(netns, pids, tables, &mut obs.sockets);
            if obs.sockets.len() == start {
                continue;
            }
            obs.namespaces += 1;
            obs.unowned += self.owners.resolve(pids, &mut obs.sockets[start..]).unowned;
        }
        self.diag_error = diag_error;
        obs.fd_budget_exhausted = self.owners.exhausted();
        let seen: HashSet<u64> = obs.sockets.iter().map(|s| s.inode).collect();
        self.owners.end_cycle(&seen);
        Ok(obs)
    }
}
