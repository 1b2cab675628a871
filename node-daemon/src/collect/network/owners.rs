//! Which process holds each socket: `/proc/<pid>/fd/*` links read `socket:[<inode>]`.
//!
//! Reading every descriptor of every process each cycle would cost more than the rest of
//! the collection, so the inode-to-pid map is kept between cycles. Only inodes that are new
//! (or whose holder exited) send the collector to the descriptors of that namespace's
//! processes, and the scan stops as soon as they are all found. An inode that a complete
//! scan could not place (held by no process of its namespace) is remembered as such until
//! it disappears, so it does not trigger a scan every cycle. A per-cycle budget of
//! descriptor links bounds the worst case.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::socket::{Owner, Socket};
use crate::collect::kernel::Kernel;
use crate::collect::proc_files::FileReader;
use crate::collect::process::{container_id, parse_stat};

/// Descriptor links read per cycle at most, over all namespaces.
pub(crate) const FD_LINKS_PER_CYCLE: u64 = 1_000_000;

#[derive(Debug)]
struct PidInfo {
    starttime: u64,
    create_time_ms: u64,
    container_id: Option<Arc<str>>,
    /// The cycle in which `starttime` was last checked.
    checked: u64,
}

pub(crate) struct Owners {
    kernel: Kernel,
    by_inode: HashMap<u64, u32>,
    unresolvable: HashSet<u64>,
    pids: HashMap<u32, PidInfo>,
    cycle: u64,
    budget: u64,
    exhausted: u64,
    reader: FileReader,
    path: String,
}

/// What resolving one namespace cost and found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) unowned: u64,
    pub(crate) fd_links_read: u64,
}

impl Owners {
    pub(crate) fn new(kernel: Kernel) -> Self {
        Self {
            kernel,
            by_inode: HashMap::new(),
            unresolvable: HashSet::new(),
            pids: HashMap::new(),
            cycle: 0,
            budget: FD_LINKS_PER_CYCLE,
            exhausted: 0,
            reader: FileReader::default(),
            path: String::with_capacity(48),
        }
    }

    pub(crate) fn start_cycle(&mut self) {
        self.cycle += 1;
        self.budget = FD_LINKS_PER_CYCLE;
        self.exhausted = 0;
    }

    /// Links left unread this cycle because the budget was spent.
    pub(crate) fn exhausted(&self) -> u64 {
        self.exhausted
    }

    /// Fills the owner of each socket of one namespace; `pids` are that namespace's
    /// processes, ascending.
    pub(crate) fn resolve(&mut self, pids: &[u32], sockets: &mut [Socket]) -> Resolved {
        let mut wanted: HashSet<u64> = sockets
            .iter()
            .map(|s| s.inode)
            .filter(|&inode| inode != 0 && !self.unresolvable.contains(&inode))
            .filter(|inode| {
                !matches!(self.by_inode.get(inode), Some(pid) if pids.binary_search(pid).is_ok())
            })
            .collect();
        for inode in &wanted {
            self.by_inode.remove(inode);
        }
        let mut resolved = Resolved::default();
        if !wanted.is_empty() {
            let complete = self.scan(pids, &mut wanted, &mut resolved.fd_links_read);
            if complete {
                self.unresolvable.extend(wanted.iter().copied());
            }
        }
        for socket in sockets.iter_mut() {
            socket.owner = None;
            if socket.inode == 0 {
                continue;
            }
            let pid = self.by_inode.get(&socket.inode).copied();
            socket.owner = pid.and_then(|pid| self.owner(pid));
            resolved.unowned += u64::from(socket.owner.is_none());
        }
        resolved
    }

    /// Reads the descriptors of `pids` until every wanted inode is placed. True when every
    /// process was read completely (so the inodes left are held by none of them).
    fn scan(&mut self, pids: &[u32], wanted: &mut HashSet<u64>, read: &mut u64) -> bool {
        for &pid in pids {
            if wanted.is_empty() {
                return false;
            }
            self.path.clear();
            let _ = write!(self.path, "/proc/{pid}/fd");
            let Ok(dir) = std::fs::read_dir(&self.path) else {
                continue;
            };
            for entry in dir {
                let Ok(entry) = entry else { continue };
                if self.budget == 0 {
                    self.exhausted += 1;
                    return false;
                }
                self.budget -= 1;
                *read += 1;
                let Ok(target) = std::fs::read_link(entry.path()) else {
                    continue;
                };
                let Some(inode) = target.to_str().and_then(socket_inode) else {
                    continue;
                };
                if wanted.remove(&inode) {
                    self.by_inode.insert(inode, pid);
                }
            }
        }
        true
    }

    /// The process behind a pid, its start time checked once per cycle.
    fn owner(&mut self, pid: u32) -> Option<Owner> {
        let cycle = self.cycle;
        let fresh = self.pids.get(&pid).is_some_and(|p| p.checked == cycle);
        if !fresh {
            self.path.clear();
            let _ = write!(self.path, "/proc/{pid}/stat");
            let Some(stat) = self.reader.read(&self.path).ok().and_then(parse_stat) else {
                self.pids.remove(&pid);
                return None;
            };
            match self.pids.get_mut(&pid) {
                Some(p) if p.starttime == stat.starttime => p.checked = cycle,
                _ => {
                    self.path.clear();
                    let _ = write!(self.path, "/proc/{pid}/cgroup");
                    let container_id = self
                        .reader
                        .read_str(&self.path)
                        .ok()
                        .and_then(container_id)
                        .map(Arc::from);
                    self.pids.insert(
                        pid,
                        PidInfo {
                            starttime: stat.starttime,
                            create_time_ms: self.kernel.create_time_ms(stat.starttime),
                            container_id,
                            checked: cycle,
                        },
                    );
                }
            }
        }
        let p = &self.pids[&pid];
        Some(Owner {
            pid,
            create_time_ms: p.create_time_ms,
            container_id: p.container_id.clone(),
        })
    }

    /// Forgets inodes not seen this cycle and processes not checked in it.
    pub(crate) fn end_cycle(&mut self, seen: &HashSet<u64>) {
        self.by_inode.retain(|inode, _| seen.contains(inode));
        self.unresolvable.retain(|inode| seen.contains(inode));
        let cycle = self.cycle;
        self.pids.retain(|_, p| p.checked == cycle);
    }
}

/// `socket:[12345]` -> 12345.
pub(crate) fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::network::socket::Protocol;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    fn socket(inode: u64) -> Socket {
        Socket {
            netns: 1,
            protocol: Protocol::Tcp,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            state: 1,
            inode,
            tx_queue: 0,
            rx_queue: 0,
            owner: None,
            counters: None,
            start_time_ms: None,
        }
    }

    #[test]
    fn link_targets() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn finds_own_socket_then_answers_from_the_cache() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino();
        let me = std::process::id();
        let mut owners = Owners::new(Kernel::read().unwrap());
        owners.start_cycle();
        // 1 is not this process: a socket nobody holds, after a complete scan.
        let mut sockets = vec![socket(inode), socket(1), socket(0)];
        let r = owners.resolve(&[me], &mut sockets);
        let owner = sockets[0].owner.as_ref().expect("own socket found");
        assert_eq!(owner.pid, me);
        assert!(owner.create_time_ms > 1_600_000_000_000);
        assert_eq!(r.unowned, 1, "inode 1 is unowned; inode 0 is not counted");
        assert!(r.fd_links_read >= 3);
        assert!(owners.unresolvable.contains(&1));

        owners.end_cycle(&[inode, 1].into_iter().collect());
        owners.start_cycle();
        let r = owners.resolve(&[me], &mut sockets);
        assert_eq!(r.fd_links_read, 0, "nothing new: no descriptor read");
        assert_eq!(sockets[0].owner.as_ref().unwrap().pid, me);

        // The holder is not among the namespace's processes any more: scan again.
        owners.start_cycle();
        let r = owners.resolve(&[], &mut sockets);
        assert_eq!((r.fd_links_read, r.unowned), (0, 2));
        assert!(sockets[0].owner.is_none());
    }
}
