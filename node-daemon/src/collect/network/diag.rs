//! NETLINK_SOCK_DIAG (inet_diag) with `INET_DIAG_INFO`: every TCP socket of one network
//! namespace with its `struct tcp_info` counters. It lists the same sockets as
//! /proc/net/tcp{,6} at a fraction of the cost (one walk of the kernel's hash tables per
//! family, where reading /proc walks them again for every page of text), so it is the
//! TCP lister when it works and /proc the fallback.
//!
//! A netlink socket answers for the namespace it was created in, so for another namespace
//! the socket is created on a short-lived thread that first `setns(2)`s into it (the
//! calling thread never changes namespace). The socket is closed at the end of the cycle:
//! kept open it would keep a dead container's namespace alive.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use super::netlink::{self, u32_at, u64_at, NetlinkSocket, NLMSG_HDRLEN};
use super::proc_net::{normalize, Entry};
use super::socket::TcpCounters;

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;
const INET_DIAG_INFO: u16 = 2;
const TCP_TIME_WAIT: u32 = 6;
const TCP_SYN_RECV: u32 = 3;
/// States 1..=11 but those without a socket file (TIME_WAIT, request sockets).
const STATES: u32 = 0xFFE & !((1 << TCP_TIME_WAIT) | (1 << TCP_SYN_RECV));

/// Offsets in `struct tcp_info` (linux/tcp.h).
mod tcp_info {
    pub(crate) const RTT: usize = 68;
    pub(crate) const TOTAL_RETRANS: usize = 100;
    pub(crate) const BYTES_ACKED: usize = 120;
    pub(crate) const BYTES_RECEIVED: usize = 128;
    pub(crate) const BYTES_SENT: usize = 200;
    pub(crate) const BYTES_RETRANS: usize = 208;
    /// Linux 4.1+; shorter answers carry no byte counters.
    pub(crate) const MIN_LEN: usize = 136;
}

pub(crate) struct DiagSocket(NetlinkSocket);

impl DiagSocket {
    pub(crate) fn open() -> io::Result<Self> {
        NetlinkSocket::open(NETLINK_SOCK_DIAG).map(Self)
    }

    /// A sock_diag socket in the namespace `ns` (an open `/proc/<pid>/ns/net`).
    pub(crate) fn open_in(ns: &File) -> io::Result<Self> {
        let ns = ns.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns takes a descriptor and a flag; it changes only this
                // thread, which ends right after creating the socket.
                if unsafe { libc::setns(ns, libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Self::open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        })
    }

    /// Every TCP socket of `family` (AF_INET or AF_INET6) with a socket file, and its
    /// counters when the kernel gave them.
    pub(crate) fn tcp_sockets(
        &self,
        family: u8,
        buf: &mut Vec<u8>,
        out: &mut Vec<(Entry, Option<TcpCounters>)>,
    ) -> io::Result<()> {
        self.0.dump(&request(family), buf, |kind, body| {
            if kind == SOCK_DIAG_BY_FAMILY {
                out.extend(parse_diag_msg(body));
            }
        })
    }
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for a dump with `INET_DIAG_INFO`.
fn request(family: u8) -> [u8; NLMSG_HDRLEN + 56] {
    const LEN: usize = NLMSG_HDRLEN + 56;
    let mut r = [0u8; LEN];
    r[..NLMSG_HDRLEN].copy_from_slice(&netlink::request_header(LEN, SOCK_DIAG_BY_FAMILY));
    let req = &mut r[NLMSG_HDRLEN..];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    req[2] = 1 << (INET_DIAG_INFO - 1);
    req[4..8].copy_from_slice(&STATES.to_ne_bytes());
    r
}

/// `struct inet_diag_msg` (family, state, `inet_diag_sockid` with big-endian ports and
/// network-order addresses, queues, inode) and the tcp_info of its attributes.
fn parse_diag_msg(body: &[u8]) -> Option<(Entry, Option<TcpCounters>)> {
    if body.len() < DIAG_MSG_LEN {
        return None;
    }
    let ip = |at: usize| -> Option<IpAddr> {
        match i32::from(body[0]) {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&body[at..at + 4]).ok()?,
            ))),
            libc::AF_INET6 => Some(normalize(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&body[at..at + 16]).ok()?,
            )))),
            _ => None,
        }
    };
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let entry = Entry {
        local: SocketAddr::new(ip(8)?, port(4)),
        remote: SocketAddr::new(ip(24)?, port(6)),
        state: body[1],
        rx_queue: u32_at(body, 56)?,
        tx_queue: u32_at(body, 60)?,
        inode: u64::from(u32_at(body, 68)?),
    };
    Some((entry, tcp_info_of(&body[DIAG_MSG_LEN..])))
}

fn tcp_info_of(attrs: &[u8]) -> Option<TcpCounters> {
    netlink::attrs(attrs)
        .find(|(kind, _)| *kind == INET_DIAG_INFO)
        .and_then(|(_, info)| parse_tcp_info(info))
}

pub(crate) fn parse_tcp_info(info: &[u8]) -> Option<TcpCounters> {
    if info.len() < tcp_info::MIN_LEN {
        return None;
    }
    // Data bytes put on the wire once: neither SYN nor FIN, retransmissions taken out
    // (Linux 4.19+). Older kernels: bytes acknowledged, which counts an active opener's SYN.
    let bytes_sent = match (
        u64_at(info, tcp_info::BYTES_SENT),
        u64_at(info, tcp_info::BYTES_RETRANS),
    ) {
        (Some(sent), Some(retrans)) => sent.saturating_sub(retrans),
        _ => u64_at(info, tcp_info::BYTES_ACKED)?,
    };
    Some(TcpCounters {
        bytes_sent,
        bytes_received: u64_at(info, tcp_info::BYTES_RECEIVED)?,
        retransmits: u64::from(u32_at(info, tcp_info::TOTAL_RETRANS)?),
        rtt_us: u64::from(u32_at(info, tcp_info::RTT)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn tcp_info_fields_at_their_offsets() {
        let mut info = vec![0u8; 232];
        info[68..72].copy_from_slice(&250u32.to_ne_bytes());
        info[100..104].copy_from_slice(&3u32.to_ne_bytes());
        info[120..128].copy_from_slice(&1001u64.to_ne_bytes());
        info[128..136].copy_from_slice(&77u64.to_ne_bytes());
        info[200..208].copy_from_slice(&1500u64.to_ne_bytes());
        info[208..216].copy_from_slice(&500u64.to_ne_bytes());
        let c = parse_tcp_info(&info).unwrap();
        assert_eq!(
            c,
            TcpCounters {
                bytes_sent: 1000,
                bytes_received: 77,
                retransmits: 3,
                rtt_us: 250
            }
        );
        // A 4.1 .. 4.18 kernel: bytes acknowledged.
        assert_eq!(parse_tcp_info(&info[..192]).unwrap().bytes_sent, 1001);
        assert_eq!(parse_tcp_info(&info[..120]), None, "too old a kernel");
    }

    #[test]
    fn counts_the_bytes_of_a_loopback_connection() {
        use std::os::unix::fs::MetadataExt;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 1234]).unwrap();
        let mut got = vec![0u8; 1234];
        server.read_exact(&mut got).unwrap();
        server.write_all(&[1u8; 99]).unwrap();
        client.read_exact(&mut got[..99]).unwrap();

        let inode = |s: &TcpStream| {
            let fd = s.as_raw_fd();
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino()
        };
        let socket = DiagSocket::open().expect("sock_diag works as root");
        let mut out = Vec::new();
        socket
            .tcp_sockets(libc::AF_INET as u8, &mut Vec::new(), &mut out)
            .unwrap();
        let find = |out: &[(Entry, Option<TcpCounters>)], s: &TcpStream| {
            out.iter()
                .find(|(e, _)| e.inode == inode(s))
                .cloned()
                .expect("socket listed")
        };
        let (e, c) = find(&out, &client);
        assert_eq!(e.local, client.local_addr().unwrap());
        assert_eq!(e.remote, listener.local_addr().unwrap());
        assert_eq!(e.state, 1);
        let c = c.unwrap();
        assert_eq!((c.bytes_sent, c.bytes_received), (1234, 99));
        assert!(c.rtt_us > 0);
        let s = find(&out, &server).1.unwrap();
        assert_eq!((s.bytes_sent, s.bytes_received), (99, 1234));
        let listening = out
            .iter()
            .find(|(e, _)| e.local == listener.local_addr().unwrap() && e.state == 10);
        assert!(listening.is_some(), "listeners are listed too");

        // The same through a thread that entered this very namespace.
        let ns = File::open("/proc/self/ns/net").unwrap();
        let again = DiagSocket::open_in(&ns).unwrap();
        let mut out2 = Vec::new();
        again
            .tcp_sockets(libc::AF_INET as u8, &mut Vec::new(), &mut out2)
            .unwrap();
        assert_eq!(find(&out2, &client).1.unwrap().bytes_sent, 1234);
    }
}
