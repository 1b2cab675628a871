//! Parsers for `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`: one socket a line.
//!
//! Addresses are hex in the kernel's byte order: IPv4 is one 32-bit word and IPv6 four,
//! each printed as the host (little-endian) value of the word, so the bytes of every word
//! are reversed; ports are plain big-endian hex numbers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::socket::Protocol;

/// `TCP_LISTEN` in the kernel's `st` column.
pub(crate) const TCP_LISTEN: u8 = 0x0A;

/// One line of a socket table, before its owner and counters are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) state: u8,
    pub(crate) tx_queue: u32,
    pub(crate) rx_queue: u32,
    /// 0 for sockets no file refers to (TIME_WAIT, orphans).
    pub(crate) inode: u64,
}

/// The TCP tables of one network namespace (when sock_diag does not answer).
pub(crate) const TCP_TABLES: [(&str, Protocol); 2] =
    [("tcp", Protocol::Tcp), ("tcp6", Protocol::Tcp)];
/// The UDP tables of one network namespace.
pub(crate) const UDP_TABLES: [(&str, Protocol); 2] =
    [("udp", Protocol::Udp), ("udp6", Protocol::Udp)];

/// Parses a whole table, skipping the header and lines that do not parse (counted).
pub(crate) fn parse_table(text: &[u8], out: &mut Vec<Entry>) -> u64 {
    let mut bad = 0;
    for line in text.split(|b| *b == b'\n').skip(1) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match std::str::from_utf8(line).ok().and_then(parse_line) {
            Some(entry) => out.push(entry),
            None => bad += 1,
        }
    }
    bad
}

/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`
pub(crate) fn parse_line(line: &str) -> Option<Entry> {
    let mut f = line.split_ascii_whitespace();
    f.next()?.strip_suffix(':')?;
    let local = parse_addr(f.next()?)?;
    let remote = parse_addr(f.next()?)?;
    let state = u8::from_str_radix(f.next()?, 16).ok()?;
    let (tx, rx) = f.next()?.split_once(':')?;
    let tx_queue = u32::from_str_radix(tx, 16).ok()?;
    let rx_queue = u32::from_str_radix(rx, 16).ok()?;
    let inode = f.nth(4)?.parse().ok()?;
    Some(Entry {
        local,
        remote,
        state,
        tx_queue,
        rx_queue,
        inode,
    })
}

/// `0100007F:0050` or 32 hex digits and a port; v4-mapped IPv6 addresses become IPv4.
pub(crate) fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?);
            }
            normalize(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One 32-bit word printed as a little-endian host value: the bytes in memory order.
fn word(hex: &str) -> Option<[u8; 4]> {
    Some(u32::from_str_radix(hex, 16).ok()?.to_le_bytes())
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, a dual-stack socket talking IPv4) as plain IPv4,
/// so that both ends of one connection carry the same addresses.
pub(crate) fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on this machine (kernel 6.18) and on an ECS host.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1065 1 000000009a32a0a0 100 0 0 10 0
   1: 0100007F:921F 0100007F:E65A 06 00000000:00000000 03:00000B0E 00000000     0        0 0 3 0000000098edbd8f
   2: 0200110A:9C40 0300110A:1F90 01 0000001C:00000004 01:00000014 00000000  1000        0 123456 2 0000000011223344 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D432 01 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 20 4 30 10 -1
   3: B80D0120000000000000000001000000:0035 B80D0120000000000000000002000000:C000 01 00000000:00000000 00:00000000 00000000     0        0 2004 1 0000000000000000 20 4 30 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  581: 3500007F:0035 00000000:0000 07 00000000:00000300 00:00000000 00000000   101        0 9001 2 0000000000000000 0
  600: 0100007F:A000 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 9002 2 0000000000000000 7
";

    fn parse(text: &str) -> Vec<Entry> {
        let mut out = Vec::new();
        assert_eq!(parse_table(text.as_bytes(), &mut out), 0);
        out
    }

    #[test]
    fn tcp4_lines() {
        let e = parse(TCP);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].local, "0.0.0.0:2024".parse().unwrap());
        assert_eq!(e[0].state, TCP_LISTEN);
        assert_eq!(e[0].inode, 1065);
        assert_eq!(e[1].local, "127.0.0.1:37407".parse().unwrap());
        assert_eq!(e[1].remote, "127.0.0.1:58970".parse().unwrap());
        assert_eq!((e[1].state, e[1].inode), (6, 0), "TIME_WAIT has no inode");
        assert_eq!(e[2].local, "10.17.0.2:40000".parse().unwrap());
        assert_eq!(e[2].remote, "10.17.0.3:8080".parse().unwrap());
        assert_eq!((e[2].tx_queue, e[2].rx_queue), (0x1c, 4));
        assert_eq!(e[2].inode, 123_456);
    }

    #[test]
    fn tcp6_lines_with_mapped_and_global_addresses() {
        let e = parse(TCP6);
        assert_eq!(e[0].local, "[::]:8080".parse().unwrap());
        assert_eq!(e[1].local, "[::1]:8080".parse().unwrap());
        assert_eq!(e[1].remote, "[::1]:54321".parse().unwrap());
        assert_eq!(e[2].local, "127.0.0.1:8080".parse().unwrap(), "v4-mapped");
        assert_eq!(e[2].remote, "127.0.0.1:54322".parse().unwrap());
        assert_eq!(e[3].local, "[2001:db8::1]:53".parse().unwrap());
        assert_eq!(e[3].remote, "[2001:db8::2]:49152".parse().unwrap());
    }

    #[test]
    fn udp_lines() {
        let e = parse(UDP);
        assert_eq!(e[0].local, "127.0.0.53:53".parse().unwrap());
        assert_eq!(e[0].remote.port(), 0);
        assert_eq!((e[0].state, e[0].rx_queue, e[0].inode), (7, 0x300, 9001));
        assert_eq!(e[1].remote, "127.0.0.1:53".parse().unwrap());
    }

    #[test]
    fn malformed_lines_are_counted_not_fatal() {
        let text = "header\n   0: 0100007F:0050 zz:0000 01 0:0 0 0 0 0 5\n   1: 0100007F 0100007F:0050 01\n";
        let mut out = Vec::new();
        assert_eq!(parse_table(text.as_bytes(), &mut out), 2);
        assert!(out.is_empty());
        assert_eq!(parse_addr("0100007F:0050"), "127.0.0.1:80".parse().ok());
        assert_eq!(parse_addr("01007F:0050"), None);
    }
}
