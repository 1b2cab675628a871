//! The `struct sock_record` of `bpf/network.h`, read field by field at its offsets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::collect::network::proc_net::normalize;
use crate::collect::network::socket::Protocol;

/// Size of one record; the iterator writes them back to back.
pub(crate) const RECORD_LEN: usize = 112;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const RECORD_CLOSED: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Kernel address of the sock: the socket's identity while it lives.
    pub(crate) sk: u64,
    pub(crate) inode: u64,
    /// The owner's start, ns since boot; with `pid`, 0 when the owner is unknown.
    pub(crate) owner_start_ns: u64,
    /// Boot-clock ns when the connection opened; 0 when it predates the tracer.
    pub(crate) start_ns: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) pid: u32,
    pub(crate) netns: u32,
    pub(crate) retransmits: u32,
    pub(crate) srtt_us: u32,
    pub(crate) tx_queue: u32,
    pub(crate) rx_queue: u32,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) state: u8,
    /// A TCP connection that reached TCP_CLOSE, with its final counters.
    pub(crate) closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record of {0} bytes, expected {RECORD_LEN}")]
    Length(usize),
    #[error("address family {0} is neither AF_INET nor AF_INET6")]
    Family(u8),
    #[error("protocol {0} is neither TCP nor UDP")]
    Protocol(u8),
}

pub(crate) fn parse(b: &[u8]) -> Result<Record, RecordError> {
    if b.len() != RECORD_LEN {
        return Err(RecordError::Length(b.len()));
    }
    let u64_at = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let u16_at = |at: usize| u16::from_ne_bytes(b[at..at + 2].try_into().expect("2 bytes"));
    let family = b[108];
    let addr = |at: usize, port: u16| -> Result<SocketAddr, RecordError> {
        let ip = match family {
            AF_INET => IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])),
            AF_INET6 => {
                let octets: [u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
                normalize(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            other => return Err(RecordError::Family(other)),
        };
        Ok(SocketAddr::new(ip, port))
    };
    let protocol = match b[109] {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        other => return Err(RecordError::Protocol(other)),
    };
    let remote = addr(88, u16_at(106))?;
    let state = match protocol {
        Protocol::Tcp => b[110],
        // The kernel keeps UDP sockets in TCP_ESTABLISHED once connected, else TCP_CLOSE;
        // records use the /proc convention of this module (1 connected, 7 not).
        Protocol::Udp if remote.port() != 0 => 1,
        Protocol::Udp => 7,
    };
    Ok(Record {
        sk: u64_at(0),
        inode: u64_at(8),
        owner_start_ns: u64_at(16),
        start_ns: u64_at(24),
        bytes_sent: u64_at(32),
        bytes_received: u64_at(40),
        pid: u32_at(48),
        netns: u32_at(52),
        retransmits: u32_at(56),
        srtt_us: u32_at(60),
        tx_queue: u32_at(64),
        rx_queue: u32_at(68),
        local: addr(72, u16_at(104))?,
        remote,
        protocol,
        state,
        closed: b[111] == RECORD_CLOSED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(family: u8, protocol: u8) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..8].copy_from_slice(&0xffff_8880_1234_5678u64.to_ne_bytes());
        b[8..16].copy_from_slice(&4242u64.to_ne_bytes());
        b[32..40].copy_from_slice(&1000u64.to_ne_bytes());
        b[40..48].copy_from_slice(&77u64.to_ne_bytes());
        b[48..52].copy_from_slice(&31337u32.to_ne_bytes());
        b[52..56].copy_from_slice(&4026531840u32.to_ne_bytes());
        b[60..64].copy_from_slice(&250u32.to_ne_bytes());
        b[104..106].copy_from_slice(&8080u16.to_ne_bytes());
        b[106..108].copy_from_slice(&40000u16.to_ne_bytes());
        b[108] = family;
        b[109] = protocol;
        b[110] = 1;
        b
    }

    #[test]
    fn ipv4_tcp_record() {
        let mut b = raw(AF_INET, IPPROTO_TCP);
        b[72..76].copy_from_slice(&[127, 0, 0, 1]);
        b[88..92].copy_from_slice(&[10, 1, 2, 3]);
        let r = parse(&b).unwrap();
        assert_eq!(r.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(r.remote, "10.1.2.3:40000".parse().unwrap());
        assert_eq!((r.pid, r.netns, r.inode), (31337, 4026531840, 4242));
        assert_eq!((r.bytes_sent, r.bytes_received, r.srtt_us), (1000, 77, 250));
        assert_eq!((r.protocol, r.state, r.closed), (Protocol::Tcp, 1, false));
    }

    #[test]
    fn mapped_ipv6_becomes_ipv4_and_udp_state_follows_the_peer() {
        let mut b = raw(AF_INET6, IPPROTO_UDP);
        b[72 + 10] = 0xff;
        b[72 + 11] = 0xff;
        b[72 + 12..72 + 16].copy_from_slice(&[192, 168, 0, 9]);
        b[111] = RECORD_CLOSED;
        let r = parse(&b).unwrap();
        assert_eq!(r.local, "192.168.0.9:8080".parse().unwrap());
        assert_eq!(r.remote, "[::]:40000".parse().unwrap());
        assert_eq!((r.protocol, r.state, r.closed), (Protocol::Udp, 1, true));
        b[106..108].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(parse(&b).unwrap().state, 7);
    }

    #[test]
    fn bad_records_are_errors() {
        assert_eq!(parse(&[0; 10]), Err(RecordError::Length(10)));
        assert_eq!(parse(&raw(1, IPPROTO_TCP)), Err(RecordError::Family(1)));
        assert_eq!(parse(&raw(AF_INET, 132)), Err(RecordError::Protocol(132)));
    }
}
