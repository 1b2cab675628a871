//! A netlink socket that asks one dump of the kernel and hands each answer message to the
//! caller, and the attributes (`struct nlattr`) inside them: what sock_diag ([`super::diag`])
//! and ctnetlink ([`super::conntrack`]) have in common.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Attribute type bits that are flags, not the type (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;
const RECV_BUF: usize = 64 * 1024;

pub(crate) struct NetlinkSocket(OwnedFd);

impl NetlinkSocket {
    /// A socket of the netlink `protocol` in the calling thread's network namespace, with a
    /// 2 s receive timeout so that a silent kernel cannot hang a cycle.
    pub(crate) fn open(protocol: libc::c_int) -> io::Result<Self> {
        // SAFETY: socket() takes plain integers and returns a new descriptor or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                protocol,
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

    /// Sends `request` (a single-answer request) and calls `on_message` with the type and
    /// body of the answer; an error answer is an error.
    pub(crate) fn ask(
        &self,
        request: &[u8],
        buf: &mut Vec<u8>,
        mut on_message: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.send(request)?;
        let n = self.receive(buf)?;
        messages(&buf[..n], &mut on_message).map(drop)
    }

    fn send(&self, request: &[u8]) -> io::Result<()> {
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
        Ok(())
    }

    /// One datagram into `buf`; its length.
    fn receive(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.resize(RECV_BUF, 0);
        loop {
            // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends `request` (a whole netlink message asking for a dump) and calls `on_message`
    /// with the type and body of every answer until the kernel says the dump is done.
    pub(crate) fn dump(
        &self,
        request: &[u8],
        buf: &mut Vec<u8>,
        mut on_message: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.send(request)?;
        loop {
            let n = self.receive(buf)?;
            if messages(&buf[..n], &mut on_message)? {
                return Ok(());
            }
        }
    }
}

/// A request header: `nlmsghdr` of `len` bytes in all (header included), dump flags.
pub(crate) fn request_header(len: usize, kind: u16) -> [u8; NLMSG_HDRLEN] {
    header(len, kind, NLM_F_REQUEST | NLM_F_DUMP)
}

/// A `nlmsghdr` of `len` bytes in all with the given flags.
pub(crate) fn header(len: usize, kind: u16, flags: u16) -> [u8; NLMSG_HDRLEN] {
    let mut h = [0u8; NLMSG_HDRLEN];
    h[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    h[4..6].copy_from_slice(&kind.to_ne_bytes());
    h[6..8].copy_from_slice(&flags.to_ne_bytes());
    h[8..12].copy_from_slice(&1u32.to_ne_bytes());
    h
}

/// One attribute, padded to 4 bytes; nest by giving another's bytes as the payload (with
/// [`NLA_F_NESTED`] in `kind`).
pub(crate) fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(align4(4 + payload.len()));
    a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize(align4(a.len()), 0);
    a
}

pub(crate) const NLA_F_NESTED: u16 = 0x8000;

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages of one datagram; true once the dump is done.
fn messages(mut data: &[u8], on_message: &mut impl FnMut(u16, &[u8])) -> io::Result<bool> {
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
            _ => on_message(kind, body),
        }
        data = &data[align4(len).min(data.len())..];
    }
    Ok(false)
}

/// The attributes of a message body or of a nested attribute: (type, payload). Stops at
/// the first malformed one.
pub(crate) fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > data.len() {
            return None;
        }
        let payload = &data[4..len];
        data = &data[align4(len).min(data.len())..];
        Some((kind, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_padded_nested_and_malformed() {
        let mut data = attr(1, &[7]);
        data.extend(attr(NLA_F_NESTED | 2, &attr(3, &[1, 2, 3, 4])));
        let all: Vec<_> = attrs(&data).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], (1, &[7u8][..]));
        assert_eq!(all[1].0, 2, "the nested flag is not part of the type");
        assert_eq!(attrs(all[1].1).next(), Some((3, &[1u8, 2, 3, 4][..])));
        // A length past the end stops the walk.
        let mut bad = attr(1, &[7]);
        bad[0] = 200;
        assert_eq!(attrs(&bad).count(), 0);
    }

    #[test]
    fn done_error_and_truncated_messages() {
        let mut seen = Vec::new();
        let mut done = request_header(NLMSG_HDRLEN, NLMSG_DONE).to_vec();
        let mut data = request_header(NLMSG_HDRLEN + 4, 77).to_vec();
        data.extend_from_slice(&[1, 2, 3, 4]);
        data.append(&mut done);
        assert!(messages(&data, &mut |k, b: &[u8]| seen.push((k, b.to_vec()))).unwrap());
        assert_eq!(seen, vec![(77, vec![1, 2, 3, 4])]);
        let mut error = request_header(NLMSG_HDRLEN + 4, NLMSG_ERROR).to_vec();
        error.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        let e = messages(&error, &mut |_, _| {}).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(messages(&data[..10 + NLMSG_HDRLEN], &mut |_, _| {}).is_ok());
        let mut truncated = request_header(100, 77).to_vec();
        truncated.extend_from_slice(&[0; 8]);
        assert!(messages(&truncated, &mut |_, _| {}).is_err());
    }
}
