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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::proc_net::{normalize, Entry};
use super::socket::TcpCounters;

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;
const INET_DIAG_INFO: u16 = 2;
const TCP_TIME_WAIT: u32 = 6;
const TCP_SYN_RECV: u32 = 3;
/// States 1..=11 but those without a socket file (TIME_WAIT, request sockets).
const STATES: u32 = 0xFFE & !((1 << TCP_TIME_WAIT) | (1 << TCP_SYN_RECV));
const RECV_BUF: usize = 64 * 1024;

/// Offsets in `struct tcp_info` (linux/tcp.h).
mod tcp_info {
    pub const RTT: usize = 68;
    pub const TOTAL_RETRANS: usize = 100;
    pub const BYTES_ACKED: usize = 120;
    pub const BYTES_RECEIVED: usize = 128;
    pub const BYTES_SENT: usize = 200;
    pub const BYTES_RETRANS: usize = 208;
    /// Linux 4.1+; shorter answers carry no byte counters.
    pub const MIN_LEN: usize = 136;
}

pub struct DiagSocket(OwnedFd);

impl DiagSocket {
    /// A sock_diag socket in this thread's namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket() takes plain integers and returns a new descriptor or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket() and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO reads a timeval of the given size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Self(fd))
    }

    /// A sock_diag socket in the namespace `ns` (an open `/proc/<pid>/ns/net`).
    pub fn open_in(ns: &File) -> io::Result<Self> {
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
    pub fn tcp_sockets(
        &self,
        family: u8,
        buf: &mut Vec<u8>,
        out: &mut Vec<(Entry, Option<TcpCounters>)>,
    ) -> io::Result<()> {
        let request = request(family);
        // SAFETY: sockaddr_nl is plain data; zeroed it addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and the address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                std::ptr::addr_of!(kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.resize(RECV_BUF, 0);
        loop {
            // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if parse_messages(&buf[..n as usize], out)? {
                return Ok(());
            }
        }
    }
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for a dump with `INET_DIAG_INFO`.
fn request(family: u8) -> [u8; NLMSG_HDRLEN + 56] {
    const LEN: usize = NLMSG_HDRLEN + 56;
    let mut r = [0u8; LEN];
    r[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let req = &mut r[NLMSG_HDRLEN..];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    req[2] = 1 << (INET_DIAG_INFO - 1);
    req[4..8].copy_from_slice(&STATES.to_ne_bytes());
    r
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses one datagram of netlink messages; true once the dump is done.
fn parse_messages(
    mut data: &[u8],
    out: &mut Vec<(Entry, Option<TcpCounters>)>,
) -> io::Result<bool> {
    while data.len() >= NLMSG_HDRLEN {
        let len = u32_at(data, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let body = &data[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(body, 0).map_or(0, |e| e as i32);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(socket) = parse_diag_msg(body) {
                    out.push(socket);
                }
            }
            _ => {}
        }
        data = &data[align4(len).min(data.len())..];
    }
    Ok(false)
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

fn tcp_info_of(mut attrs: &[u8]) -> Option<TcpCounters> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == INET_DIAG_INFO {
            return parse_tcp_info(&attrs[4..len]);
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

pub fn parse_tcp_info(info: &[u8]) -> Option<TcpCounters> {
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
    fn an_error_answer_is_an_error() {
        let mut msg = vec![0u8; 36];
        msg[0..4].copy_from_slice(&36u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        let e = parse_messages(&msg, &mut Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        msg[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert!(parse_messages(&msg, &mut Vec::new()).unwrap());
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
