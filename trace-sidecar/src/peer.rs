//! Which process is on the other end of a TCP connection, from the host /proc (the
//! sidecar's task runs with `pidMode: host`, so /proc lists every process of the host).
//!
//! The client socket is found in the `net/tcp{,6}` table of its network namespace (the
//! sidecar's own first, then one per other namespace) as the entry whose local address is
//! the connection's peer and whose remote address is the sidecar's end; then the process
//! holding that socket inode among the processes of that namespace.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the daemon needs of a client process to name it after it exited: its pid, its
/// start (`/proc/<pid>/stat` field 22, clock ticks since boot; with the pid, unique) and
/// its `/proc/<pid>/cgroup` (the container), read when it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProcess {
    pub pid: u32,
    pub start_ticks: u64,
    pub cgroup: String,
}

/// At most this much of a `/proc/<pid>/cgroup` is kept (the daemon reads the container id
/// from the first lines).
pub const MAX_CGROUP_BYTES: usize = 4096;

impl PeerProcess {
    /// None when the process is gone or its stat unreadable.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        let start_ticks = start_ticks(&stat)?;
        let mut cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        cgroup.truncate(sts_proto::utf8_head(&cgroup, MAX_CGROUP_BYTES).len());
        Some(Self {
            pid,
            start_ticks,
            cgroup,
        })
    }
}

/// Field 22 of a `/proc/<pid>/stat` line (the process name in field 2 may hold spaces and
/// parentheses: the fields after it follow its last `)`).
fn start_ticks(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Field 3 (state) is the first after the name: field 22 is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Finds the pid of the process that owns the client end of `peer` -> `local`.
pub fn find_peer_pid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let own_netns = std::fs::read_link("/proc/self/ns/net").ok();
    // pids grouped by network namespace; the sidecar's own namespace first.
    let mut by_netns: HashMap<std::path::PathBuf, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            by_netns.entry(ns).or_default().push(pid);
        }
    }
    let mut namespaces: Vec<(std::path::PathBuf, Vec<u32>)> = by_netns.into_iter().collect();
    namespaces.sort_by_key(|(ns, _)| Some(ns) != own_netns.as_ref());
    for (_, pids) in namespaces {
        let Some(&first) = pids.first() else { continue };
        let Some(inode) = socket_inode(first, peer, local) else {
            continue;
        };
        return pids.into_iter().find(|pid| holds_socket(*pid, inode));
    }
    None
}

/// The inode of the socket with local address `peer` and remote `local`, in the network
/// namespace of `pid`.
fn socket_inode(pid: u32, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        text.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (l, r, inode) = (f.get(1)?, f.get(2)?, f.get(9)?);
            let matches =
                same_endpoint(parse_hex_addr(l)?, peer) && same_endpoint(parse_hex_addr(r)?, local);
            matches
                .then(|| inode.parse().ok())
                .flatten()
                .filter(|i| *i != 0)
        })
    })
}

/// Equal, treating an IPv4-mapped IPv6 address as its IPv4 address.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

fn holds_socket(pid: u32, inode: u64) -> bool {
    let target = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target.as_str())
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6), each 32-bit word in host
/// (little-endian) order as the kernel prints them.
fn parse_hex_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.swap_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.swap_bytes().to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn start_ticks_after_a_name_with_parentheses() {
        let stat = b"42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_ticks(stat), Some(987654));
        assert_eq!(start_ticks(b"42 (x) S 1"), None);
        let me = PeerProcess::read(std::process::id()).expect("own process");
        assert!(me.start_ticks > 0 && me.cgroup.contains(':'));
    }

    #[test]
    fn hex_addresses() {
        assert_eq!(
            parse_hex_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_hex_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_hex_addr("0000000000000000FFFF00000100007F:0050"),
            Some("[::ffff:127.0.0.1]:80".parse().unwrap())
        );
        assert_eq!(parse_hex_addr("zz:1"), None);
        assert_eq!(parse_hex_addr("0100007F"), None);
    }

    #[test]
    fn finds_this_process_as_the_client_of_a_loopback_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        let local = server_side.local_addr().unwrap();
        assert_eq!(find_peer_pid(peer, local), Some(std::process::id()));
        drop(client);
        let gone: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(find_peer_pid(gone, local), None);
    }
}
